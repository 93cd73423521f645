//! `corral apply -f FILE|DIR|-`: manifests in, objects created or updated.
//! Every document of every file is read and validated before anything is
//! written, so a mistake anywhere applies nothing.

use std::path::{Path, PathBuf};

use clap::Args;
use control_plane::api::{manifest, Object};

use super::{Cli, CliError, Result};

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory of them (.yaml, .yml, .json), or - for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// The text of every manifest named by `paths`, with the name to show in errors.
fn manifest_files(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| CliError::msg(format!("cannot read stdin: {e}")))?;
            out.push(("<stdin>".to_string(), text));
            continue;
        }
        let files = if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| CliError::msg(format!("cannot read {}: {e}", path.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml" || x == "json"))
                .collect();
            entries.sort();
            entries
        } else {
            vec![path.clone()]
        };
        for f in files {
            let text = std::fs::read_to_string(&f)
                .map_err(|e| CliError::msg(format!("cannot read {}: {e}", f.display())))?;
            out.push((f.display().to_string(), text));
        }
    }
    Ok(out)
}

/// Parses and validates every document of every file; all or nothing.
pub fn parse_all(paths: &[PathBuf]) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    let mut problems = Vec::new();
    for (name, text) in manifest_files(paths)? {
        match manifest::parse(&name, &text) {
            Ok(objs) => objects.extend(objs),
            Err(errs) => problems.extend(errs.into_iter().map(|e| e.to_string())),
        }
    }
    match problems.as_slice() {
        [] => Ok(objects),
        [one] => Err(CliError::msg(format!("nothing applied: {one}"))),
        many => {
            Err(CliError::msg(format!("nothing applied: {} problems:\n  {}", many.len(), many.join("\n  "))))
        }
    }
}

pub async fn apply(cli: &Cli, args: &ApplyArgs) -> Result<()> {
    let objects = parse_all(&args.files)?;
    let client = cli.client();
    for obj in &objects {
        let (_, action) = client.apply(obj).await?;
        println!("{}/{} {action}", obj.kind().qualified(), obj.meta().name);
    }
    Ok(())
}
