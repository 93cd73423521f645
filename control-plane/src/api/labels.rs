//! Object names, labels and label selectors, following Kubernetes: validation of DNS-1123
//! names, label keys and label values; the structured [`LabelSelector`] that manifests carry
//! (`matchLabels` / `matchExpressions`); and the string [`Selector`] that `-l` accepts
//! (`app=web,tier in (a,b),!gpu`). Both kinds of selector match a label map the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const DNS1123_LABEL_MAX_LEN: usize = 63;
const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;
const LABEL_NAME_MAX_LEN: usize = 63;
const LABEL_VALUE_MAX_LEN: usize = 63;

const DNS1123_LABEL_FORMAT: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
     characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')";
const DNS1123_SUBDOMAIN_FORMAT: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. \
     'example.com')";
const QUALIFIED_NAME_FORMAT: &str = "a qualified name must consist of alphanumeric characters, '-', '_' \
     or '.', and must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or \
     '123-abc') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_NAME_FORMAT: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and \
     must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc')";
const LABEL_VALUE_FORMAT: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue', \
     or 'my_value', or '12345')";

/// Checks a Kubernetes object name: a lowercase RFC 1123 subdomain of at most 253 characters
/// (dot-separated parts of lowercase alphanumerics and '-', each starting and ending with an
/// alphanumeric, e.g. `web-1` or `example.com`).
pub fn validate_dns1123_subdomain(s: &str) -> Result<(), String> {
    verdict(s, subdomain_problems(s))
}

/// Checks a lowercase RFC 1123 label: at most 63 lowercase alphanumerics and '-', starting and
/// ending with an alphanumeric (e.g. `my-name`).
pub fn validate_dns1123_label(s: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    if s.is_empty() {
        problems.push("must be non-empty".to_string());
    } else {
        if s.len() > DNS1123_LABEL_MAX_LEN {
            problems.push(format!("must be no more than {DNS1123_LABEL_MAX_LEN} characters"));
        }
        if !is_dns1123_label(s) {
            problems.push(DNS1123_LABEL_FORMAT.to_string());
        }
    }
    verdict(s, problems)
}

/// Checks a label (or annotation) key: an optional DNS-1123 subdomain prefix and '/', then a
/// name of at most 63 alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric
/// (e.g. `app`, `example.com/gpu`).
pub fn validate_label_key(k: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    let name = match k.split_once('/') {
        None => k,
        Some((_, name)) if name.contains('/') => {
            return verdict(k, vec![QUALIFIED_NAME_FORMAT.to_string()]);
        }
        Some((prefix, name)) => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                problems.extend(subdomain_problems(prefix).into_iter().map(|p| format!("prefix part {p}")));
            }
            name
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else {
        if name.len() > LABEL_NAME_MAX_LEN {
            problems.push(format!("name part must be no more than {LABEL_NAME_MAX_LEN} characters"));
        }
        if !is_label_text(name) {
            problems.push(LABEL_NAME_FORMAT.to_string());
        }
    }
    verdict(k, problems)
}

/// Checks a label value: empty, or at most 63 alphanumerics, '-', '_' and '.', starting and
/// ending with an alphanumeric.
pub fn validate_label_value(v: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    if v.len() > LABEL_VALUE_MAX_LEN {
        problems.push(format!("must be no more than {LABEL_VALUE_MAX_LEN} characters"));
    }
    if !v.is_empty() && !is_label_text(v) {
        problems.push(LABEL_VALUE_FORMAT.to_string());
    }
    verdict(v, problems)
}

fn subdomain_problems(s: &str) -> Vec<String> {
    if s.is_empty() {
        return vec!["must be non-empty".to_string()];
    }
    let mut problems = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        problems.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX_LEN} characters"));
    }
    if !s.split('.').all(is_dns1123_label) {
        problems.push(DNS1123_SUBDOMAIN_FORMAT.to_string());
    }
    problems
}

/// `Ok` when there are no problems, else `"<value>": <problem>; <problem>`.
fn verdict(value: &str, problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{value:?}: {}", problems.join("; ")))
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label(s: &str) -> bool {
    let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    bytes.first().is_some_and(lower_alnum)
        && bytes.last().is_some_and(lower_alnum)
        && bytes.iter().all(|b| lower_alnum(b) || *b == b'-')
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_text(s: &str) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A structured label selector as written in manifests (`selector:` of a workload).
///
/// All of `match_labels` and all of `match_expressions` must hold; an empty selector matches
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements on labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One entry of `matchExpressions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key the requirement is about.
    pub key: String,
    /// How the label's value is tested.
    pub operator: SelectorOperator,
    /// Non-empty for `In` and `NotIn`; empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a [`LabelSelectorRequirement`], serialized as `In`, `NotIn`, `Exists` or
/// `DoesNotExist`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl From<SelectorOperator> for Operator {
    fn from(op: SelectorOperator) -> Self {
        match op {
            SelectorOperator::In => Operator::In,
            SelectorOperator::NotIn => Operator::NotIn,
            SelectorOperator::Exists => Operator::Exists,
            SelectorOperator::DoesNotExist => Operator::DoesNotExist,
        }
    }
}

impl LabelSelector {
    /// Whether `labels` satisfy every requirement (Kubernetes semantics; `NotIn` and
    /// `DoesNotExist` hold for absent labels). An empty selector matches everything; a
    /// requirement whose values break its operator's rules (see [`LabelSelector::validate`])
    /// matches nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(key, value)| labels.get(key) == Some(value))
            && self
                .match_expressions
                .iter()
                .all(|r| requirement_matches(&r.key, r.operator.into(), &r.values, labels))
    }

    /// Checks keys, values and operator/values agreement. Errors are `(field path relative to
    /// the selector, message)`, e.g. `("matchExpressions[0].values", "must be specified when
    /// `operator` is 'In' or 'NotIn'")`.
    pub fn validate(&self) -> Result<(), Vec<(String, String)>> {
        let mut errors = Vec::new();
        for (key, value) in &self.match_labels {
            if let Err(e) = validate_label_key(key) {
                errors.push(("matchLabels".to_string(), e));
            }
            if let Err(e) = validate_label_value(value) {
                errors.push((format!("matchLabels[{key}]"), e));
            }
        }
        for (i, r) in self.match_expressions.iter().enumerate() {
            let path = format!("matchExpressions[{i}]");
            if let Err(e) = validate_label_key(&r.key) {
                errors.push((format!("{path}.key"), e));
            }
            match r.operator {
                SelectorOperator::In | SelectorOperator::NotIn if r.values.is_empty() => errors.push((
                    format!("{path}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'".to_string(),
                )),
                SelectorOperator::Exists | SelectorOperator::DoesNotExist if !r.values.is_empty() => errors
                    .push((
                        format!("{path}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string(),
                    )),
                _ => {}
            }
            for (j, value) in r.values.iter().enumerate() {
                if let Err(e) = validate_label_value(value) {
                    errors.push((format!("{path}.values[{j}]"), e));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The operator of a string-selector [`Requirement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value` or `key==value`: the label is present with this value.
    Equals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present with one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
}

/// One comma-separated term of a string selector.
///
/// `values` holds exactly one value for `Equals`/`NotEquals`, at least one for `In`/`NotIn`
/// and none for `Exists`/`DoesNotExist`; a requirement that breaks this matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        requirement_matches(&self.key, self.operator, &self.values, labels)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let single = self.values.first().map_or("", String::as_str);
        // A list holding only the empty value is written `(,)`: `()` is rejected by the parser.
        let list = match self.values.as_slice() {
            [only] if only.is_empty() => ",".to_string(),
            values => values.join(","),
        };
        match self.operator {
            Operator::Equals => write!(f, "{key}={single}"),
            Operator::NotEquals => write!(f, "{key}!={single}"),
            Operator::In => write!(f, "{key} in ({list})"),
            Operator::NotIn => write!(f, "{key} notin ({list})"),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

fn requirement_matches(
    key: &str,
    operator: Operator,
    values: &[String],
    labels: &BTreeMap<String, String>,
) -> bool {
    let actual = labels.get(key);
    match operator {
        Operator::Equals => matches!(values, [v] if actual == Some(v)),
        Operator::NotEquals => matches!(values, [v] if actual != Some(v)),
        Operator::In => actual.is_some_and(|a| values.contains(a)),
        Operator::NotIn => !values.is_empty() && actual.is_none_or(|a| !values.contains(a)),
        Operator::Exists => values.is_empty() && actual.is_some(),
        Operator::DoesNotExist => values.is_empty() && actual.is_none(),
    }
}

/// A label selector in the string form of kubectl's `-l`: comma-separated requirements, all of
/// which must hold (`app=web`, `app==web`, `app!=web`, `tier in (a,b)`, `tier notin (a, b)`,
/// `gpu`, `!gpu`). The empty string selects everything. `Display` writes a form that parses
/// back to an equal selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// A selector requiring all of `requirements`.
    pub fn new(requirements: Vec<Requirement>) -> Self {
        Selector(requirements)
    }

    /// The requirements, in the order written.
    pub fn requirements(&self) -> &[Requirement] {
        &self.0
    }

    /// Whether the selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `labels` satisfy every requirement; an empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Converts `matchLabels` to `Equals` requirements (in key order) followed by
/// `matchExpressions`. The result matches exactly what the [`LabelSelector`] matches; for a
/// selector that fails [`LabelSelector::validate`], its `Display` may not parse back.
impl From<&LabelSelector> for Selector {
    fn from(selector: &LabelSelector) -> Self {
        let labels = selector.match_labels.iter().map(|(key, value)| Requirement {
            key: key.clone(),
            operator: Operator::Equals,
            values: vec![value.clone()],
        });
        let expressions = selector.match_expressions.iter().map(|r| Requirement {
            key: r.key.clone(),
            operator: r.operator.into(),
            values: dedup(r.values.iter().cloned()),
        });
        Selector(labels.chain(expressions).collect())
    }
}

/// `values` without repeats, first occurrences kept in order.
fn dedup(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Why a string is not a label selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid label selector: {message} (at character {column})")]
pub struct SelectorParseError {
    /// The text that was parsed.
    pub input: String,
    /// 1-based character position of the offending token (one past the end for a premature end).
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

impl FromStr for Selector {
    type Err = SelectorParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser::new(s).parse_selector()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenKind {
    Ident(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Open,
    Close,
    Comma,
    End,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Ident(s) => write!(f, "{s:?}"),
            TokenKind::Bang => f.write_str("'!'"),
            TokenKind::Equals => f.write_str("'='"),
            TokenKind::DoubleEquals => f.write_str("'=='"),
            TokenKind::NotEquals => f.write_str("'!='"),
            TokenKind::Open => f.write_str("'('"),
            TokenKind::Close => f.write_str("')'"),
            TokenKind::Comma => f.write_str("','"),
            TokenKind::End => f.write_str("the end of the selector"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    /// 1-based character position.
    column: usize,
}

fn lex(input: &str) -> Vec<Token> {
    let is_special = |c: char| c.is_whitespace() || matches!(c, '!' | '=' | '(' | ')' | ',');
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let column = i + 1;
        let next_is_equals = chars.get(i + 1) == Some(&'=');
        let (kind, len) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '!' if next_is_equals => (TokenKind::NotEquals, 2),
            '!' => (TokenKind::Bang, 1),
            '=' if next_is_equals => (TokenKind::DoubleEquals, 2),
            '=' => (TokenKind::Equals, 1),
            '(' => (TokenKind::Open, 1),
            ')' => (TokenKind::Close, 1),
            ',' => (TokenKind::Comma, 1),
            _ => {
                let len = chars[i..].iter().take_while(|&&c| !is_special(c)).count();
                (TokenKind::Ident(chars[i..i + len].iter().collect()), len)
            }
        };
        tokens.push(Token { kind, column });
        i += len;
    }
    tokens.push(Token { kind: TokenKind::End, column: chars.len() + 1 });
    tokens
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    end: Token,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        let tokens = lex(input);
        let end = Token { kind: TokenKind::End, column: input.chars().count() + 1 };
        Parser { input, tokens, pos: 0, end }
    }

    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.end)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        self.pos += 1;
        token
    }

    fn error(&self, column: usize, message: impl Into<String>) -> SelectorParseError {
        SelectorParseError { input: self.input.to_string(), column, message: message.into() }
    }

    fn parse_selector(mut self) -> Result<Selector, SelectorParseError> {
        let mut requirements = Vec::new();
        if self.peek().kind == TokenKind::End {
            return Ok(Selector(requirements));
        }
        loop {
            requirements.push(self.parse_requirement()?);
            let token = self.next();
            match token.kind {
                TokenKind::Comma => {}
                TokenKind::End => return Ok(Selector(requirements)),
                other => {
                    return Err(self.error(token.column, format!("expected ',' or the end, found {other}")));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorParseError> {
        let token = self.next();
        let key = match token.kind {
            TokenKind::Bang => {
                let key_token = self.next();
                let TokenKind::Ident(key) = key_token.kind else {
                    return Err(self.error(
                        key_token.column,
                        format!("expected a label key after '!', found {}", key_token.kind),
                    ));
                };
                self.check_key(&key, key_token.column)?;
                return Ok(Requirement { key, operator: Operator::DoesNotExist, values: Vec::new() });
            }
            TokenKind::Ident(key) => key,
            other => {
                return Err(self.error(token.column, format!("expected a label key or '!', found {other}")));
            }
        };
        self.check_key(&key, token.column)?;

        let op_token = self.peek().clone();
        let (operator, values) = match &op_token.kind {
            TokenKind::Comma | TokenKind::End => (Operator::Exists, Vec::new()),
            TokenKind::Equals | TokenKind::DoubleEquals => {
                self.pos += 1;
                (Operator::Equals, vec![self.parse_single_value()?])
            }
            TokenKind::NotEquals => {
                self.pos += 1;
                (Operator::NotEquals, vec![self.parse_single_value()?])
            }
            TokenKind::Ident(word) if word == "in" || word == "notin" => {
                self.pos += 1;
                let operator = if word == "in" { Operator::In } else { Operator::NotIn };
                (operator, self.parse_value_list(word)?)
            }
            other => {
                return Err(self.error(
                    op_token.column,
                    format!(
                        "expected '=', '==', '!=', 'in', 'notin', ',' or the end after key {key:?}, found {other}"
                    ),
                ));
            }
        };
        Ok(Requirement { key, operator, values })
    }

    /// The value after `=`, `==` or `!=`; empty when a ',' or the end follows directly.
    fn parse_single_value(&mut self) -> Result<String, SelectorParseError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Ident(value) => {
                self.pos += 1;
                self.check_value(&value, token.column)?;
                Ok(value)
            }
            TokenKind::Comma | TokenKind::End => Ok(String::new()),
            other => Err(self.error(token.column, format!("expected a label value, found {other}"))),
        }
    }

    /// `( value, value, ... )` after `in` / `notin`; an item may be empty (`(a,)` holds "a" and "").
    fn parse_value_list(&mut self, word: &str) -> Result<Vec<String>, SelectorParseError> {
        let open = self.next();
        if open.kind != TokenKind::Open {
            return Err(self.error(open.column, format!("expected '(' after '{word}', found {}", open.kind)));
        }
        if self.peek().kind == TokenKind::Close {
            let column = self.peek().column;
            return Err(self.error(
                column,
                format!("'{word}' needs at least one value in the parentheses, e.g. tier {word} (web,api)"),
            ));
        }
        let mut values = Vec::new();
        loop {
            let token = self.peek().clone();
            let value = match token.kind {
                TokenKind::Ident(value) => {
                    self.pos += 1;
                    self.check_value(&value, token.column)?;
                    value
                }
                TokenKind::Comma | TokenKind::Close => String::new(),
                other => {
                    return Err(self.error(
                        token.column,
                        format!("expected a label value, ',' or ')' in the '{word}' list, found {other}"),
                    ));
                }
            };
            values.push(value);
            let token = self.next();
            match token.kind {
                TokenKind::Comma => {}
                TokenKind::Close => return Ok(dedup(values)),
                other => {
                    return Err(self.error(
                        token.column,
                        format!("expected ',' or ')' in the '{word}' list, found {other}"),
                    ));
                }
            }
        }
    }

    fn check_key(&self, key: &str, column: usize) -> Result<(), SelectorParseError> {
        validate_label_key(key).map_err(|e| self.error(column, format!("invalid label key {e}")))
    }

    fn check_value(&self, value: &str, column: usize) -> Result<(), SelectorParseError> {
        validate_label_value(value).map_err(|e| self.error(column, format!("invalid label value {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement { key: key.to_string(), operator, values: values.iter().map(|v| v.to_string()).collect() }
    }

    fn expr(key: &str, operator: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn selector(s: &str) -> Selector {
        s.parse().unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn dns1123_subdomains_follow_kubernetes_rules() {
        let long_ok = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(long_ok.len(), 253);
        let valid = ["a", "web", "web-1", "1web", "123", "example.com", "a.b.c", "a-b.c-d", long_ok.as_str()];
        for s in valid {
            assert_eq!(validate_dns1123_subdomain(s), Ok(()), "{s:?}");
        }
        let format = |s: &str| format!("{s:?}: {DNS1123_SUBDOMAIN_FORMAT}");
        let too_long = format!("{long_ok}e");
        let cases: Vec<(&str, String)> = vec![
            ("Web_1", format("Web_1")),
            ("Web", format("Web")),
            ("-web", format("-web")),
            ("web-", format("web-")),
            (".web", format(".web")),
            ("web.", format("web.")),
            ("a..b", format("a..b")),
            ("a.-b", format("a.-b")),
            ("a_b", format("a_b")),
            ("a b", format("a b")),
            ("wéb", format("wéb")),
            ("", r#""": must be non-empty"#.to_string()),
            (too_long.as_str(), format!("{too_long:?}: must be no more than 253 characters")),
        ];
        for (s, expected) in cases {
            assert_eq!(validate_dns1123_subdomain(s), Err(expected), "{s:?}");
        }
    }

    #[test]
    fn dns1123_subdomain_errors_read_like_kubernetes() {
        assert_eq!(
            validate_dns1123_subdomain("Web_1"),
            Err("\"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                 characters, '-' or '.', and must start and end with an alphanumeric character (e.g. \
                 'example.com')"
                .to_string())
        );
        let long_and_bad = "A".repeat(254);
        assert_eq!(
            validate_dns1123_subdomain(&long_and_bad),
            Err(format!("{long_and_bad:?}: must be no more than 253 characters; {DNS1123_SUBDOMAIN_FORMAT}"))
        );
    }

    #[test]
    fn dns1123_labels_follow_kubernetes_rules() {
        let max = "a".repeat(63);
        for s in ["a", "my-name", "123-abc", "0", max.as_str()] {
            assert_eq!(validate_dns1123_label(s), Ok(()), "{s:?}");
        }
        let format = |s: &str| format!("{s:?}: {DNS1123_LABEL_FORMAT}");
        let over = "a".repeat(64);
        let cases: Vec<(&str, String)> = vec![
            ("example.com", format("example.com")),
            ("My-name", format("My-name")),
            ("-a", format("-a")),
            ("a-", format("a-")),
            ("a_b", format("a_b")),
            ("", r#""": must be non-empty"#.to_string()),
            (over.as_str(), format!("{over:?}: must be no more than 63 characters")),
        ];
        for (s, expected) in cases {
            assert_eq!(validate_dns1123_label(s), Err(expected), "{s:?}");
        }
    }

    #[test]
    fn label_keys_accept_an_optional_subdomain_prefix() {
        let name63 = "n".repeat(63);
        let prefixed_max = format!("{}/{name63}", "p".repeat(253));
        let valid = [
            "app",
            "App",
            "app.kubernetes.io/name",
            "example.com/gpu",
            "corral.dev/Node_Pool.v2",
            "a",
            "1",
            "a-b_c.d",
            name63.as_str(),
            prefixed_max.as_str(),
        ];
        for k in valid {
            assert_eq!(validate_label_key(k), Ok(()), "{k:?}");
        }
    }

    #[test]
    fn label_keys_reject_bad_prefixes_and_names() {
        let name64 = "n".repeat(64);
        let prefix254 = format!("{}/x", "p".repeat(254));
        let cases: Vec<(String, String)> = vec![
            ("".into(), "name part must be non-empty".into()),
            ("example.com/".into(), "name part must be non-empty".into()),
            ("/gpu".into(), "prefix part must be non-empty".into()),
            ("Example.com/gpu".into(), format!("prefix part {DNS1123_SUBDOMAIN_FORMAT}")),
            ("example_com/gpu".into(), format!("prefix part {DNS1123_SUBDOMAIN_FORMAT}")),
            (prefix254.clone(), "prefix part must be no more than 253 characters".into()),
            ("a/b/c".into(), QUALIFIED_NAME_FORMAT.into()),
            ("example.com/-gpu".into(), LABEL_NAME_FORMAT.into()),
            ("gpu_".into(), LABEL_NAME_FORMAT.into()),
            (".gpu".into(), LABEL_NAME_FORMAT.into()),
            ("has space".into(), LABEL_NAME_FORMAT.into()),
            ("tier=web".into(), LABEL_NAME_FORMAT.into()),
            (name64.clone(), "name part must be no more than 63 characters".into()),
            ("/".into(), "prefix part must be non-empty; name part must be non-empty".into()),
        ];
        for (k, problem) in cases {
            assert_eq!(validate_label_key(&k), Err(format!("{k:?}: {problem}")), "{k:?}");
        }
    }

    #[test]
    fn label_values_allow_empty_and_reject_64_chars() {
        let max = "v".repeat(63);
        for v in ["", "web", "MyValue", "my_value", "12345", "v1.2.3", "a-b", max.as_str()] {
            assert_eq!(validate_label_value(v), Ok(()), "{v:?}");
        }
        let over = "v".repeat(64);
        let cases: Vec<(&str, String)> = vec![
            (over.as_str(), "must be no more than 63 characters".into()),
            ("-web", LABEL_VALUE_FORMAT.into()),
            ("web.", LABEL_VALUE_FORMAT.into()),
            ("a/b", LABEL_VALUE_FORMAT.into()),
            ("a b", LABEL_VALUE_FORMAT.into()),
            ("wéb", LABEL_VALUE_FORMAT.into()),
            (" ", LABEL_VALUE_FORMAT.into()),
        ];
        for (v, problem) in cases {
            assert_eq!(validate_label_value(v), Err(format!("{v:?}: {problem}")), "{v:?}");
        }
    }

    #[test]
    fn label_selectors_match_with_kubernetes_semantics() {
        use SelectorOperator::*;
        let web = labels(&[("app", "web"), ("tier", "front"), ("example.com/gpu", "")]);
        let cases: Vec<(&str, LabelSelector, bool)> = vec![
            ("empty selector matches everything", LabelSelector::default(), true),
            (
                "matchLabels equal",
                LabelSelector { match_labels: labels(&[("app", "web")]), ..Default::default() },
                true,
            ),
            (
                "matchLabels all must hold",
                LabelSelector {
                    match_labels: labels(&[("app", "web"), ("tier", "back")]),
                    ..Default::default()
                },
                false,
            ),
            (
                "matchLabels missing key",
                LabelSelector { match_labels: labels(&[("zone", "a")]), ..Default::default() },
                false,
            ),
            (
                "matchLabels empty value matches present empty label",
                LabelSelector { match_labels: labels(&[("example.com/gpu", "")]), ..Default::default() },
                true,
            ),
            (
                "matchLabels empty value needs the label present",
                LabelSelector { match_labels: labels(&[("zone", "")]), ..Default::default() },
                false,
            ),
            ("In hit", exprs(vec![expr("tier", In, &["front", "back"])]), true),
            ("In miss", exprs(vec![expr("tier", In, &["back"])]), false),
            ("In absent label", exprs(vec![expr("zone", In, &["a"])]), false),
            ("NotIn miss", exprs(vec![expr("tier", NotIn, &["back"])]), true),
            ("NotIn hit", exprs(vec![expr("tier", NotIn, &["front"])]), false),
            ("NotIn absent label", exprs(vec![expr("zone", NotIn, &["a"])]), true),
            ("Exists", exprs(vec![expr("example.com/gpu", Exists, &[])]), true),
            ("Exists absent", exprs(vec![expr("zone", Exists, &[])]), false),
            ("DoesNotExist", exprs(vec![expr("zone", DoesNotExist, &[])]), true),
            ("DoesNotExist present", exprs(vec![expr("app", DoesNotExist, &[])]), false),
            ("In empty values matches nothing", exprs(vec![expr("app", In, &[])]), false),
            ("NotIn empty values matches nothing", exprs(vec![expr("zone", NotIn, &[])]), false),
            ("Exists with values matches nothing", exprs(vec![expr("app", Exists, &["web"])]), false),
            (
                "DoesNotExist with values matches nothing",
                exprs(vec![expr("zone", DoesNotExist, &["a"])]),
                false,
            ),
            (
                "labels and expressions combine",
                LabelSelector {
                    match_labels: labels(&[("app", "web")]),
                    match_expressions: vec![expr("tier", In, &["back"])],
                },
                false,
            ),
        ];
        for (name, sel, expected) in cases {
            assert_eq!(sel.matches(&web), expected, "{name}");
            assert_eq!(Selector::from(&sel).matches(&web), expected, "{name} (as Selector)");
        }
        assert!(LabelSelector::default().matches(&BTreeMap::new()));
    }

    fn exprs(match_expressions: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector { match_labels: BTreeMap::new(), match_expressions }
    }

    #[test]
    fn label_selectors_validate_with_field_paths() {
        use SelectorOperator::*;
        let ok = LabelSelector {
            match_labels: labels(&[("app", "web"), ("example.com/gpu", "")]),
            match_expressions: vec![
                expr("tier", In, &["a", "b"]),
                expr("tier", NotIn, &[""]),
                expr("gpu", Exists, &[]),
                expr("x", DoesNotExist, &[]),
            ],
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(LabelSelector::default().validate(), Ok(()));

        let paths = |sel: LabelSelector| -> Vec<String> {
            sel.validate().expect_err("invalid").into_iter().map(|(path, _)| path).collect()
        };
        let cases: Vec<(LabelSelector, Vec<&str>)> = vec![
            (exprs(vec![expr("tier", In, &[])]), vec!["matchExpressions[0].values"]),
            (
                exprs(vec![expr("gpu", Exists, &[]), expr("tier", NotIn, &[])]),
                vec!["matchExpressions[1].values"],
            ),
            (exprs(vec![expr("gpu", Exists, &["yes"])]), vec!["matchExpressions[0].values"]),
            (exprs(vec![expr("gpu", DoesNotExist, &["x"])]), vec!["matchExpressions[0].values"]),
            (exprs(vec![expr("bad key", In, &["a"])]), vec!["matchExpressions[0].key"]),
            (exprs(vec![expr("tier", In, &["ok", "-bad"])]), vec!["matchExpressions[0].values[1]"]),
            (
                exprs(vec![expr("Bad.com/x", In, &[])]),
                vec!["matchExpressions[0].key", "matchExpressions[0].values"],
            ),
            (
                LabelSelector { match_labels: labels(&[("a/b/c", "ok")]), ..Default::default() },
                vec!["matchLabels"],
            ),
            (
                LabelSelector { match_labels: labels(&[("app", &"v".repeat(64))]), ..Default::default() },
                vec!["matchLabels[app]"],
            ),
        ];
        for (sel, expected) in cases {
            assert_eq!(paths(sel.clone()), expected, "{sel:?}");
        }
    }

    #[test]
    fn label_selector_validation_messages_explain_the_problem() {
        use SelectorOperator::*;
        let sel = exprs(vec![
            expr("tier", In, &[]),
            expr("gpu", Exists, &["yes"]),
            expr("example.com/", In, &["a"]),
        ]);
        assert_eq!(
            sel.validate(),
            Err(vec![
                (
                    "matchExpressions[0].values".to_string(),
                    "must be specified when `operator` is 'In' or 'NotIn'".to_string()
                ),
                (
                    "matchExpressions[1].values".to_string(),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'".to_string()
                ),
                (
                    "matchExpressions[2].key".to_string(),
                    "\"example.com/\": name part must be non-empty".to_string()
                ),
            ])
        );
    }

    #[test]
    fn label_selectors_use_kubernetes_json() {
        use SelectorOperator::*;
        let cases: Vec<(&str, LabelSelector)> = vec![
            ("{}", LabelSelector::default()),
            (
                r#"{"matchLabels":{"app":"web"}}"#,
                LabelSelector { match_labels: labels(&[("app", "web")]), ..Default::default() },
            ),
            (
                r#"{"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]},{"key":"gpu","operator":"Exists"},{"key":"x","operator":"NotIn","values":["c"]},{"key":"y","operator":"DoesNotExist"}]}"#,
                exprs(vec![
                    expr("tier", In, &["a", "b"]),
                    expr("gpu", Exists, &[]),
                    expr("x", NotIn, &["c"]),
                    expr("y", DoesNotExist, &[]),
                ]),
            ),
        ];
        for (json, sel) in cases {
            assert_eq!(serde_json::from_str::<LabelSelector>(json).expect(json), sel, "{json}");
            assert_eq!(serde_json::to_string(&sel).expect("serialize"), json);
        }
        // Omitted and explicitly empty fields read the same.
        let explicit: LabelSelector = serde_json::from_str(
            r#"{"matchLabels":{},"matchExpressions":[{"key":"g","operator":"Exists","values":[]}]}"#,
        )
        .expect("explicit empties");
        assert_eq!(explicit, exprs(vec![expr("g", Exists, &[])]));
    }

    #[test]
    fn label_selectors_reject_unknown_fields_and_operators() {
        let cases: &[(&str, &str)] = &[
            (r#"{"matchLabel":{"app":"web"}}"#, "unknown field `matchLabel`"),
            (r#"{"match_labels":{"app":"web"}}"#, "unknown field `match_labels`"),
            (r#"{"matchExpressions":[{"key":"a","operator":"in","values":["x"]}]}"#, "unknown variant `in`"),
            (
                r#"{"matchExpressions":[{"key":"a","operator":"Equals","values":["x"]}]}"#,
                "unknown variant `Equals`",
            ),
            (
                r#"{"matchExpressions":[{"key":"a","operator":"Exists","value":"x"}]}"#,
                "unknown field `value`",
            ),
            (r#"{"matchExpressions":[{"operator":"Exists"}]}"#, "missing field `key`"),
        ];
        for &(json, expected) in cases {
            let err = serde_json::from_str::<LabelSelector>(json).expect_err(json).to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn string_selectors_parse_kubectl_syntax() {
        use Operator::*;
        let cases: Vec<(&str, Vec<Requirement>)> = vec![
            ("", vec![]),
            ("   ", vec![]),
            ("app=web", vec![req("app", Equals, &["web"])]),
            ("app==web", vec![req("app", Equals, &["web"])]),
            ("app!=web", vec![req("app", NotEquals, &["web"])]),
            (" app = web ", vec![req("app", Equals, &["web"])]),
            ("app=", vec![req("app", Equals, &[""])]),
            ("app!=", vec![req("app", NotEquals, &[""])]),
            ("tier in (a,b)", vec![req("tier", In, &["a", "b"])]),
            ("tier in(a)", vec![req("tier", In, &["a"])]),
            ("tier notin (a, b)", vec![req("tier", NotIn, &["a", "b"])]),
            ("tier in ( a , b , a )", vec![req("tier", In, &["a", "b"])]),
            ("tier in (a,)", vec![req("tier", In, &["a", ""])]),
            ("tier in (,)", vec![req("tier", In, &[""])]),
            ("gpu", vec![req("gpu", Exists, &[])]),
            ("!gpu", vec![req("gpu", DoesNotExist, &[])]),
            ("! gpu", vec![req("gpu", DoesNotExist, &[])]),
            ("example.com/gpu", vec![req("example.com/gpu", Exists, &[])]),
            ("!example.com/gpu", vec![req("example.com/gpu", DoesNotExist, &[])]),
            ("example.com/gpu=nvidia-a100", vec![req("example.com/gpu", Equals, &["nvidia-a100"])]),
            ("in=x", vec![req("in", Equals, &["x"])]),
            ("app=in", vec![req("app", Equals, &["in"])]),
            (
                "app=web, tier in (a,b),!gpu,zone,env!=prod",
                vec![
                    req("app", Equals, &["web"]),
                    req("tier", In, &["a", "b"]),
                    req("gpu", DoesNotExist, &[]),
                    req("zone", Exists, &[]),
                    req("env", NotEquals, &["prod"]),
                ],
            ),
            ("app=,tier", vec![req("app", Equals, &[""]), req("tier", Exists, &[])]),
            ("\tapp\t=\tweb\n", vec![req("app", Equals, &["web"])]),
        ];
        for (input, expected) in cases {
            assert_eq!(selector(input).requirements(), expected.as_slice(), "{input:?}");
        }
    }

    #[test]
    fn string_selectors_reject_malformed_input_with_position() {
        // (input, column, message)
        let cases: &[(&str, usize, &str)] = &[
            ("tier in ()", 10, "'in' needs at least one value in the parentheses, e.g. tier in (web,api)"),
            (
                "tier notin ( )",
                14,
                "'notin' needs at least one value in the parentheses, e.g. tier notin (web,api)",
            ),
            ("tier in (a", 11, "expected ',' or ')' in the 'in' list, found the end of the selector"),
            ("tier in a", 9, "expected '(' after 'in', found \"a\""),
            ("tier in", 8, "expected '(' after 'in', found the end of the selector"),
            ("tier in (a b)", 12, "expected ',' or ')' in the 'in' list, found \"b\""),
            ("tier in (a=b)", 11, "expected ',' or ')' in the 'in' list, found '='"),
            ("tier in ((a))", 10, "expected a label value, ',' or ')' in the 'in' list, found '('"),
            (
                "app web",
                5,
                "expected '=', '==', '!=', 'in', 'notin', ',' or the end after key \"app\", found \"web\"",
            ),
            ("app=web=x", 8, "expected ',' or the end, found '='"),
            ("app=web)", 8, "expected ',' or the end, found ')'"),
            ("app=(web)", 5, "expected a label value, found '('"),
            ("a,", 3, "expected a label key or '!', found the end of the selector"),
            ("a,,b", 3, "expected a label key or '!', found ','"),
            (",a", 1, "expected a label key or '!', found ','"),
            ("=web", 1, "expected a label key or '!', found '='"),
            ("!", 2, "expected a label key after '!', found the end of the selector"),
            ("!!gpu", 2, "expected a label key after '!', found '!'"),
            ("!gpu=x", 5, "expected ',' or the end, found '='"),
            (
                "gpu!",
                4,
                "expected '=', '==', '!=', 'in', 'notin', ',' or the end after key \"gpu\", found '!'",
            ),
            ("example.com/=x", 1, "invalid label key \"example.com/\": name part must be non-empty"),
            ("-app=x", 1, "invalid label key \"-app\": name part must consist of alphanumeric characters"),
            ("Example.com/gpu", 1, "invalid label key \"Example.com/gpu\": prefix part a lowercase RFC 1123"),
            ("app=-web", 5, "invalid label value \"-web\": a valid label must be an empty string"),
            ("é=x", 1, "invalid label key \"é\""),
            ("app=wéb", 5, "invalid label value \"wéb\""),
        ];
        for &(input, column, message) in cases {
            let err = input.parse::<Selector>().expect_err(input);
            assert_eq!(err.input, input);
            assert_eq!(err.column, column, "{input:?}: {err}");
            assert!(err.message.starts_with(message), "{input:?}: {}", err.message);
        }
        let value64 = format!("app in (a,{})", "v".repeat(64));
        let err = value64.parse::<Selector>().expect_err("64-char value");
        assert_eq!(err.column, 11);
        assert!(err.message.ends_with("must be no more than 63 characters"), "{}", err.message);
    }

    #[test]
    fn string_selector_errors_quote_the_input() {
        let err = "tier in ()".parse::<Selector>().expect_err("empty list");
        assert_eq!(
            err.to_string(),
            "\"tier in ()\" is not a valid label selector: 'in' needs at least one value in the \
             parentheses, e.g. tier in (web,api) (at character 10)"
        );
    }

    #[test]
    fn string_selectors_match_with_kubernetes_semantics() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("example.com/gpu", ""), ("env", "")]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=api", false),
            ("zone=a", false),
            ("app!=api", true),
            ("app!=web", false),
            ("zone!=a", true),
            ("env=", true),
            ("zone=", false),
            ("env!=", false),
            ("zone!=", true),
            ("tier in (front,back)", true),
            ("tier in (back)", false),
            ("zone in (a)", false),
            ("env in (a,)", true),
            ("tier notin (back)", true),
            ("tier notin (front)", false),
            ("zone notin (a)", true),
            ("example.com/gpu", true),
            ("zone", false),
            ("!zone", true),
            ("!example.com/gpu", false),
            ("app=web,tier in (front),!zone", true),
            ("app=web,tier in (back)", false),
        ];
        for &(input, expected) in cases {
            assert_eq!(selector(input).matches(&web), expected, "{input:?}");
        }
        assert!(selector("").matches(&BTreeMap::new()));
        assert!(selector("").is_empty());
    }

    #[test]
    fn hand_built_requirements_that_break_operator_rules_match_nothing() {
        use Operator::*;
        let any = labels(&[("app", "web")]);
        let cases = [
            req("app", Equals, &[]),
            req("app", Equals, &["web", "api"]),
            req("app", NotEquals, &[]),
            req("app", In, &[]),
            req("zone", NotIn, &[]),
            req("app", Exists, &["web"]),
            req("zone", DoesNotExist, &["x"]),
        ];
        for r in cases {
            assert!(!Selector::new(vec![r.clone()]).matches(&any), "{r:?}");
        }
    }

    #[test]
    fn string_selectors_display_round_trips() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("app=web", "app=web"),
            ("app==web", "app=web"),
            (" app != web ", "app!=web"),
            ("app=", "app="),
            ("tier notin (a, b)", "tier notin (a,b)"),
            ("tier in (b,a,b)", "tier in (b,a)"),
            ("tier in (a,)", "tier in (a,)"),
            ("tier in (,a)", "tier in (,a)"),
            ("tier in (,)", "tier in (,)"),
            ("gpu, !example.com/gpu", "gpu,!example.com/gpu"),
            ("app=web,tier in (a,b),!gpu,zone", "app=web,tier in (a,b),!gpu,zone"),
        ];
        for &(input, shown) in cases {
            let parsed = selector(input);
            assert_eq!(parsed.to_string(), shown, "{input:?}");
            assert_eq!(selector(shown), parsed, "{input:?} reparsed");
        }
    }

    #[test]
    fn label_selectors_convert_to_string_selectors() {
        use SelectorOperator::*;
        let sel = LabelSelector {
            match_labels: labels(&[("tier", "front"), ("app", "web")]),
            match_expressions: vec![
                expr("zone", In, &["a", "b", "a"]),
                expr("env", NotIn, &["prod"]),
                expr("example.com/gpu", Exists, &[]),
                expr("legacy", DoesNotExist, &[]),
            ],
        };
        let converted = Selector::from(&sel);
        let text = "app=web,tier=front,zone in (a,b),env notin (prod),example.com/gpu,!legacy";
        assert_eq!(converted.to_string(), text);
        assert_eq!(selector(text), converted);
        assert_eq!(Selector::from(&LabelSelector::default()), Selector::default());
    }
}
