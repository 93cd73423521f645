//! The one manifest parser: multi-document YAML (JSON is YAML too) into
//! validated objects, all or nothing.

use serde::Deserialize;

use super::Object;

/// What is wrong with a manifest, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: document {document}{}: {path}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ManifestError {
    pub source_name: String,
    /// 1-based index of the YAML document.
    pub document: usize,
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

/// Parses every document of `text` (named `source_name` in errors) and
/// validates each object. The first problem of each document is reported;
/// nothing is returned unless every document is valid.
pub fn parse(source_name: &str, text: &str) -> Result<Vec<Object>, Vec<ManifestError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = index + 1;
        let err = |line: Option<usize>, path: String, message: String| ManifestError {
            source_name: source_name.to_string(),
            document,
            line,
            path,
            message,
        };
        let value = match serde_json::Value::deserialize(de) {
            Ok(serde_json::Value::Null) => continue, // an empty document (a trailing `---`)
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                errors.push(err(line, ".".into(), e.to_string()));
                break; // the YAML stream cannot be read past a syntax error
            }
        };
        match Object::from_value(value) {
            Ok(obj) => {
                let problems = obj.validate();
                if problems.is_empty() {
                    objects.push(obj);
                }
                for p in problems {
                    errors.push(err(None, p.path, p.message));
                }
            }
            Err(e) => errors.push(err(None, e.path, e.message)),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}
