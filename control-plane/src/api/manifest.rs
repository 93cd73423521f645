//! The one manifest parser: multi-document YAML (JSON is YAML too) into
//! validated objects, all or nothing. A document of kind `List` (what
//! `corral get -o json` prints for several objects) stands for its items.
//!
//! Every problem names the file, the document, the field path and the line:
//! syntax errors carry serde_yaml_ng's location, and the line of a field
//! path is found by walking the document again (see [`locate`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::Object;

/// What is wrong with a manifest, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: document {document}{}: {path}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ManifestError {
    pub source_name: String,
    /// 1-based index of the YAML document.
    pub document: usize,
    /// 1-based line in the whole text, when known.
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

/// Parses every document of `text` (named `source_name` in errors) and
/// validates each object. Every problem of each document is reported;
/// nothing is returned unless every document is valid.
pub fn parse(source_name: &str, text: &str) -> Result<Vec<Object>, Vec<ManifestError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = index + 1;
        let err = |path: String, message: String| ManifestError {
            source_name: source_name.to_string(),
            document,
            line: locate(text, index, &path),
            path,
            message,
        };
        let value = match serde_json::Value::deserialize(de) {
            Ok(serde_json::Value::Null) => continue, // an empty document (a trailing `---`)
            Ok(v) => v,
            Err(e) => {
                let mut error = err(".".into(), e.to_string());
                error.line = e.location().map(|l| l.line());
                errors.push(error);
                break; // the YAML stream cannot be read past a syntax error
            }
        };
        for (prefix, item) in items(value) {
            let at =
                |path: &str| if prefix.is_empty() { path.to_string() } else { format!("{prefix}.{path}") };
            match Object::from_value(item) {
                Ok(obj) => {
                    let problems = obj.validate();
                    if problems.is_empty() {
                        objects.push(obj);
                    }
                    errors.extend(problems.into_iter().map(|p| err(at(&p.path), p.message)));
                }
                Err(e) => errors.push(err(at(&e.path), e.message)),
            }
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// The objects of one document with the path prefix of each: the document
/// itself, or the items of a `kind: List`.
fn items(value: serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let is_list = value.get("kind").and_then(|k| k.as_str()) == Some("List")
        && value.get("items").is_some_and(|i| i.is_array());
    match (is_list, value) {
        (true, serde_json::Value::Object(mut m)) => {
            let Some(serde_json::Value::Array(items)) = m.remove("items") else { unreachable!("checked") };
            items.into_iter().enumerate().map(|(i, v)| (format!("items[{i}]"), v)).collect()
        }
        (_, value) => vec![(String::new(), value)],
    }
}

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Splits `spec.containers[0].resources.limits[cpu]` into its steps.
/// `[key]` holds a map key that may contain dots (`labels[app.kubernetes.io/name]`).
fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner.find(']').unwrap_or(inner.len());
            let key = &inner[..end];
            out.push(key.parse().map(Segment::Index).unwrap_or_else(|_| Segment::Key(key.to_string())));
            rest = inner.get(end + 1..).unwrap_or_default();
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Segment::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    out
}

/// The 1-based line of `path` in document `index` of `text`: the line of
/// the deepest part of the path that the document has (a missing field is
/// reported at its parent; `.` at the document's first line).
pub fn locate(text: &str, index: usize, path: &str) -> Option<usize> {
    let steps = segments(path);
    (0..=steps.len()).rev().find_map(|n| {
        let de = serde_yaml_ng::Deserializer::from_str(text).nth(index)?;
        // The walk stops with an error raised at the node it looks for;
        // serde_yaml_ng stamps that error with the node's position.
        match (Walk { steps: &steps[..n] }).deserialize(de) {
            Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.line()),
            _ => None,
        }
    })
}

const FOUND: &str = "corral: found the field";

/// Walks the document along `steps` and fails at the last one.
struct Walk<'a> {
    steps: &'a [Segment],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.steps.is_empty() {
            // Any node: the visitor refuses it, and the error carries its position.
            return d.deserialize_any(Here);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping or sequence")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Segment::Key(want) = &self.steps[0] else { return Ok(()) };
        let last = self.steps.len() == 1;
        while let Some(hit) = map.next_key_seed(Key { want, last })? {
            match hit {
                true => return map.next_value_seed(Walk { steps: &self.steps[1..] }),
                false => map.next_value::<IgnoredAny>().map(|_| ())?,
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Segment::Index(want) = self.steps[0] else { return Ok(()) };
        for _ in 0..want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Walk { steps: &self.steps[1..] }).map(|_| ())
    }
    // Scalars: the path goes deeper than the document.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A mapping key: `Ok(true)` if it is the one wanted, an error (at the
/// key's position) if it is the one wanted and the end of the path.
struct Key<'a> {
    want: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    // The error must come from inside the visitor: serde_yaml_ng stamps it
    // with the position of the node being visited.
    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match (key == self.want, self.last) {
            (true, true) => Err(E::custom(FOUND)),
            (hit, _) => Ok(hit),
        }
    }
}

/// Refuses whatever node it is given, so that the error carries the node's position.
struct Here;

impl Visitor<'_> for Here {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(FOUND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_keys_and_indexes() {
        use Segment::*;
        assert_eq!(
            segments("spec.containers[0].resources.limits[cpu]"),
            vec![
                Key("spec".into()),
                Key("containers".into()),
                Index(0),
                Key("resources".into()),
                Key("limits".into()),
                Key("cpu".into())
            ]
        );
        assert_eq!(
            segments("metadata.labels[app.kubernetes.io/name]")[2],
            Key("app.kubernetes.io/name".into())
        );
        assert!(segments(".").is_empty());
    }

    const TWO_DOCS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: x\n  - name: b\n    image: y\n    resources:\n      limits: {cpu: lots}\n";

    #[test]
    fn fields_are_located_by_line_in_the_whole_text() {
        // (document index, path, line)
        let cases = [
            (0, "kind", Some(2)),
            (0, "metadata.name", Some(3)),
            (0, "spec.ports[0].port", Some(4)),
            (1, "kind", Some(7)),
            (1, "spec.containers", Some(11)),
            (1, "spec.containers[1].name", Some(14)),
            (1, "spec.containers[1].resources.limits[cpu]", Some(17)),
            // Missing fields are reported at their deepest present parent.
            (1, "spec.containers[1].ports", Some(14)),
            (1, "spec.selector", Some(10)),
            (1, ".", Some(6)),
        ];
        for (doc, path, want) in cases {
            assert_eq!(locate(TWO_DOCS, doc, path), want, "{doc} {path}");
        }
    }

    #[test]
    fn errors_name_file_document_line_and_field() {
        let text =
            TWO_DOCS.replace("lots", "500m").replace("    image: y\n", "    image: y\n    tolerations: []\n");
        let errs = parse("app.yaml", &text).unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec!["app.yaml: document 2 (line 16): spec.containers[1].tolerations: is not supported by Corral (see the supported subset in the README)"]
        );
        let errs = parse("app.yaml", &TWO_DOCS.replace("tolerations", "x")).unwrap_err();
        assert_eq!(errs[0].line, Some(17), "{errs:?}");
        assert!(errs[0].path.ends_with("cpu"), "{errs:?}");
    }

    #[test]
    fn a_list_stands_for_its_items() {
        let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"bogus": 1}}]}"#;
        let errs = parse("l.json", list).unwrap_err();
        assert_eq!((errs[0].path.as_str(), errs[0].line), ("items[1].spec.bogus", Some(3)), "{errs:?}");
        let ok = parse("l.json", &list.replace(r#""bogus": 1"#, r#""ports": [{"port": 81}]"#)).unwrap();
        assert_eq!(ok.iter().map(|o| o.meta().name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }
}
