//! Where the CLI finds the masters: `--server`, else `CORRAL_SERVER`, else
//! the config file (`$CORRAL_CONFIG`, or `~/.corral/config`: YAML with
//! `server:`), else the addresses `corral up` uses.

use std::path::PathBuf;

use serde::Deserialize;

use crate::commands::{CliError, Result};

/// The masters of a cluster started by `corral up` with its defaults.
pub const DEFAULT_SERVERS: [&str; 3] = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// `a:1,b:2` or a list.
    server: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The config file's path, if there is a home to hold it.
pub fn path() -> Option<PathBuf> {
    match std::env::var_os("CORRAL_CONFIG") {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".corral").join("config")),
    }
}

/// The masters to use, given what `--server`/`CORRAL_SERVER` said (empty:
/// nothing) and the config file at `config` (a missing file is fine).
pub fn servers(given: Vec<String>, config: Option<PathBuf>) -> Result<Vec<String>> {
    let given: Vec<String> =
        given.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if !given.is_empty() {
        return Ok(given);
    }
    let from_file = match config {
        Some(p) if p.exists() => {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| CliError::msg(format!("cannot read {}: {e}", p.display())))?;
            let file: ConfigFile = serde_yaml_ng::from_str(&text).map_err(|e| {
                CliError::msg(format!(
                    "{}: {e} (expected e.g. `server: 127.0.0.1:7001,127.0.0.1:7002`)",
                    p.display()
                ))
            })?;
            match file.server {
                Some(OneOrMany::One(s)) => s.split(',').map(|a| a.trim().to_string()).collect(),
                Some(OneOrMany::Many(v)) => v,
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let from_file: Vec<String> = from_file.into_iter().filter(|s| !s.is_empty()).collect();
    Ok(match from_file.is_empty() {
        false => from_file,
        true => DEFAULT_SERVERS.iter().map(|s| s.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_or_env_then_config_file_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        let flag = vec!["10.0.0.1:7001".to_string()];
        assert_eq!(servers(flag.clone(), Some(file.clone())).unwrap(), flag);
        assert_eq!(servers(vec![], Some(file.clone())).unwrap(), DEFAULT_SERVERS, "no file: the defaults");
        std::fs::write(&file, "server: 10.0.0.2:7001, 10.0.0.3:7001\n").unwrap();
        assert_eq!(servers(vec![], Some(file.clone())).unwrap(), ["10.0.0.2:7001", "10.0.0.3:7001"]);
        std::fs::write(&file, "server: [10.0.0.4:7001]\n").unwrap();
        assert_eq!(servers(vec![], Some(file.clone())).unwrap(), ["10.0.0.4:7001"]);
        assert_eq!(servers(flag.clone(), Some(file.clone())).unwrap(), flag, "the flag wins over the file");
        std::fs::write(&file, "sever: x\n").unwrap();
        let err = servers(vec![], Some(file)).unwrap_err().to_string();
        assert!(err.contains("unknown field `sever`"), "{err}");
    }
}
