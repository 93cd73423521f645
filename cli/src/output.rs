//! The one table printer of the CLI, kubectl's AGE, and the `-o` formats.
//!
//! Tables are plain aligned columns (two spaces apart, upper-case headers).
//! On a terminal (and without `NO_COLOR`) the header is bold and status
//! words are coloured; piped output has no escape codes.

use std::io::IsTerminal;

use control_plane::api::Time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// An aligned table for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

/// Whether to colour what goes to stdout.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Column widths fixed by a header and a first set of rows; rows printed
/// later (`get -w`) line up with them, widening a column only when a value
/// does not fit.
#[derive(Debug, Clone)]
pub struct Columns {
    widths: Vec<usize>,
    colour: bool,
}

impl Columns {
    pub fn new(headers: &[&str], rows: &[Vec<String>], colour: bool) -> Self {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        Columns { widths, colour }
    }

    pub fn header(&self, headers: &[&str]) -> String {
        let upper: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
        let line = self.layout(&upper, |_| None);
        match self.colour {
            true => format!("\x1b[1m{line}\x1b[0m"),
            false => line,
        }
    }

    pub fn row(&self, row: &[String]) -> String {
        self.layout(row, |cell| if self.colour { status_colour(cell) } else { None })
    }

    fn layout(&self, cells: &[String], colour: impl Fn(&str) -> Option<&'static str>) -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i + 1 == cells.len();
            let pad = self.widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            match colour(cell) {
                Some(code) => line.push_str(&format!("\x1b[{code}m{cell}\x1b[0m")),
                None => line.push_str(cell),
            }
            if !last {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        line.trim_end().to_string()
    }
}

/// The ANSI colour of a status word: green when well, yellow while on the
/// way, red when broken.
fn status_colour(cell: &str) -> Option<&'static str> {
    let word = cell.split(',').next().unwrap_or(cell);
    match word {
        "Running" | "Ready" | "Succeeded" | "Completed" | "Normal" => Some("32"),
        "Pending" | "ContainerCreating" | "Terminating" | "PodInitializing" => Some("33"),
        "Failed" | "Error" | "NotReady" | "Unknown" | "CrashLoopBackOff" | "Warning" | "OOMKilled" => {
            Some("31")
        }
        w if w.starts_with("Err") => Some("31"),
        _ => None,
    }
}

/// A whole table: header and rows, no colour (for programs' logs and tests).
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    render(headers, &rows, false)
}

/// A whole table, coloured if `colour`.
pub fn render(headers: &[&str], rows: &[Vec<String>], colour: bool) -> String {
    let cols = Columns::new(headers, rows, colour);
    std::iter::once(cols.header(headers))
        .chain(rows.iter().map(|r| cols.row(r)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// kubectl's AGE: 42s, 5m, 3h, 2d.
pub fn age(created: Option<Time>, now: Time) -> String {
    let Some(c) = created else { return "<unknown>".into() };
    let s = (now.0 - c.0).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tables_align_columns_two_spaces_apart_without_trailing_blanks() {
        let out = table(&["name", "status"], vec![cells(&["web-1", "Running"]), cells(&["a", "Pending"])]);
        assert_eq!(out, "NAME   STATUS\nweb-1  Running\na      Pending");
    }

    #[test]
    fn later_rows_line_up_with_the_first_table() {
        let cols = Columns::new(&["name", "ready"], &[cells(&["web", "1/1"])], false);
        assert_eq!(cols.row(&cells(&["w", "0/1"])), "w     0/1");
        assert_eq!(cols.row(&cells(&["a-longer-name", "0/1"])), "a-longer-name  0/1");
    }

    #[test]
    fn colour_marks_status_words_only_when_asked() {
        let cols = Columns::new(&["status"], &[], true);
        assert_eq!(cols.row(&cells(&["Running"])), "\x1b[32mRunning\x1b[0m");
        assert_eq!(cols.row(&cells(&["CrashLoopBackOff"])), "\x1b[31mCrashLoopBackOff\x1b[0m");
        assert_eq!(cols.row(&cells(&["web"])), "web");
        assert!(!table(&["status"], vec![cells(&["Running"])]).contains('\x1b'));
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = Time(10_000_000);
        for (ago, want) in [(5, "5s"), (119, "119s"), (300, "5m"), (7200, "2h"), (200_000, "2d")] {
            assert_eq!(age(Some(Time(now.0 - ago)), now), want);
        }
        assert_eq!(age(None, now), "<unknown>");
    }
}
