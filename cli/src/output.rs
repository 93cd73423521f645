//! The one table printer and the `-o` output formats of the CLI.

use comfy_table::presets::NOTHING;
use comfy_table::{Cell, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// An aligned table for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

/// A kubectl-style table: upper-case headers, no borders, aligned columns.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(NOTHING);
    t.set_header(headers.iter().map(|h| Cell::new(h.to_uppercase())));
    for row in rows {
        t.add_row(row);
    }
    // comfy-table pads the first column with one space: trim it per line.
    t.to_string().lines().map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end()).collect::<Vec<_>>().join("\n")
}
