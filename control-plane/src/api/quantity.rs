//! Kubernetes resource quantities (`500m`, `0.5`, `2`, `128Mi`, `1G`, `12e6`): parsing by the
//! Kubernetes rules, exact rounding up to whole units and to milli-units, and serde as a JSON
//! string or JSON number that serializes back to the text it was written as.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest text accepted as a quantity; real quantities are a handful of characters.
const MAX_INPUT_LEN: usize = 1024;
/// How much of an over-long input is quoted back in an error.
const QUOTED_PREFIX_CHARS: usize = 64;
/// Bound on the magnitude of a written exponent (`1e999999999999` is clamped, not overflowed).
const MAX_EXPONENT: i64 = 1_000_000_000;

/// A Kubernetes resource quantity such as `500m`, `0.5`, `128Mi` or `1G`.
///
/// The text is kept as written for display and serialization; [`Quantity::value`] and
/// [`Quantity::millis`] give its magnitude rounded up. Equality compares the written form, so
/// `"500m"` and `"0.5"` are different quantities with the same `millis()`; compare magnitudes
/// with `millis()` or `value()`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity {
    raw: String,
    value: u64,
    millis: u64,
}

/// Why a text is not an acceptable resource quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The text does not follow the quantity syntax.
    #[error(
        "{input:?} is not a quantity: use a number with an optional suffix such as 500m, 0.5, 128Mi or 1G"
    )]
    Invalid { input: String },
    /// The text is a negative number; resource quantities must be zero or more.
    #[error("{input:?} is not a valid quantity: resource quantities must not be negative")]
    Negative { input: String },
    /// The quantity rounded up to whole units does not fit in a `u64`.
    #[error("{input:?} is too large: a quantity must be at most 18446744073709551615 whole units")]
    TooLarge { input: String },
}

impl Quantity {
    /// The quantity × 1000, rounded up (`"500m"` → 500, `"0.5"` → 500, `"1u"` → 1).
    ///
    /// Saturates at `u64::MAX` for quantities above about 1.8 × 10¹⁶ units, which only whole-unit
    /// resources such as memory reach.
    pub fn millis(&self) -> u64 {
        self.millis
    }

    /// The quantity rounded up to a whole unit (`"128Mi"` → 134217728, `"100m"` → 1).
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The quantity as it was written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = parse(s)?;
        let value = parsed.scaled(0).ok_or_else(|| QuantityError::TooLarge { input: shown(s) })?;
        let millis = parsed.scaled(3).unwrap_or(u64::MAX);
        Ok(Quantity { raw: s.to_string(), value, millis })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity such as 500m, 0.5, 128Mi or 1G (a string or a number)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        if !v.is_finite() {
            return Err(E::custom(QuantityError::Invalid { input: v.to_string() }));
        }
        // `Display` for f64 prints the shortest text that reads back as the same number
        // (0.5 → "0.5", 2.0 → "2"), never in exponent form.
        self.visit_str(&v.to_string())
    }
}

/// A parsed quantity: the decimal digits `int_digits` then `frac_digits`, × 10^`exp10` × 2^`shift`.
struct Parsed<'a> {
    int_digits: &'a str,
    frac_digits: &'a str,
    exp10: i64,
    shift: u32,
}

impl Parsed<'_> {
    /// The quantity × 10^`extra_exp10`, rounded up; `None` when that exceeds `u64::MAX`.
    fn scaled(&self, extra_exp10: i64) -> Option<u64> {
        let mut n = BigUint::default();
        for d in self.int_digits.bytes().chain(self.frac_digits.bytes()) {
            n.mul_add(10, u32::from(d - b'0'));
        }
        for _ in 0..self.shift / 10 {
            n.mul_add(1024, 0);
        }
        let exp10 = self.exp10 + extra_exp10;
        let mut inexact = false;
        if exp10 >= 0 {
            // Stop early: once zero it stays zero, once past u64 it stays past it.
            for _ in 0..exp10 {
                if n.is_zero() || n.exceeds_u64() {
                    break;
                }
                n.mul_add(10, 0);
            }
        } else {
            // Ends after at most as many steps as `n` has decimal digits.
            for _ in 0..exp10.unsigned_abs() {
                if n.is_zero() {
                    break;
                }
                inexact |= n.div_rem(10) != 0;
            }
        }
        n.to_u64()?.checked_add(u64::from(inexact))
    }
}

fn parse(input: &str) -> Result<Parsed<'_>, QuantityError> {
    let invalid = || QuantityError::Invalid { input: shown(input) };
    if input.len() > MAX_INPUT_LEN {
        return Err(invalid());
    }
    let (negative, unsigned) = match input.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, input.strip_prefix('+').unwrap_or(input)),
    };

    let number_len = unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
        return Err(invalid());
    }
    let (shift, suffix_exp10) = parse_suffix(suffix).ok_or_else(invalid)?;
    if negative {
        return Err(QuantityError::Negative { input: shown(input) });
    }

    Ok(Parsed {
        int_digits: int_part,
        frac_digits: frac_part,
        exp10: suffix_exp10 - frac_part.len() as i64,
        shift,
    })
}

/// The binary shift and decimal exponent a suffix stands for; `None` if it is not a suffix.
fn parse_suffix(suffix: &str) -> Option<(u32, i64)> {
    let decimal = |exp10| Some((0, exp10));
    let binary = |shift| Some((shift, 0));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            decimal(parse_exponent(exponent)?)
        }
    }
}

/// An optionally signed decimal integer, clamped to ±[`MAX_EXPONENT`].
fn parse_exponent(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude = digits.bytes().fold(0i64, |acc, b| (acc * 10 + i64::from(b - b'0')).min(MAX_EXPONENT));
    Some(if negative { -magnitude } else { magnitude })
}

/// `input` for quoting in an error, shortened when it is very long.
fn shown(input: &str) -> String {
    if input.chars().count() <= QUOTED_PREFIX_CHARS {
        input.to_string()
    } else {
        let prefix: String = input.chars().take(QUOTED_PREFIX_CHARS).collect();
        format!("{prefix}…")
    }
}

/// A minimal unsigned big integer (little-endian base-2³² limbs, no high zero limbs), enough
/// to scale a mantissa exactly before rounding.
#[derive(Default)]
struct BigUint(Vec<u32>);

impl BigUint {
    /// `self = self * mul + add`.
    fn mul_add(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = (v & 0xFFFF_FFFF) as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push((carry & 0xFFFF_FFFF) as u32);
        }
        self.trim();
    }

    /// `self = self / div`, returning the remainder.
    fn div_rem(&mut self, div: u32) -> u32 {
        let div = u64::from(div);
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = ((cur / div) & 0xFFFF_FFFF) as u32;
            rem = cur % div;
        }
        self.trim();
        (rem & 0xFFFF_FFFF) as u32
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn exceeds_u64(&self) -> bool {
        self.0.len() > 2
    }

    fn to_u64(&self) -> Option<u64> {
        match self.0.as_slice() {
            [] => Some(0),
            [lo] => Some(u64::from(*lo)),
            [lo, hi] => Some(u64::from(*lo) | (u64::from(*hi) << 32)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn quantities_parse_kubernetes_suffixes() {
        // (input, value rounded up, millis rounded up)
        let cases: &[(&str, u64, u64)] = &[
            ("0", 0, 0),
            ("2", 2, 2000),
            ("+2", 2, 2000),
            ("500m", 1, 500),
            ("1500m", 2, 1500),
            ("0.5", 1, 500),
            (".5", 1, 500),
            ("5.", 5, 5000),
            ("0.25", 1, 250),
            ("100m", 1, 100),
            ("1u", 1, 1),
            ("1n", 1, 1),
            ("1000000n", 1, 1),
            ("1000000000n", 1, 1000),
            ("1k", 1000, 1_000_000),
            ("1M", 1_000_000, 1_000_000_000),
            ("1G", 1_000_000_000, 1_000_000_000_000),
            ("1T", 1_000_000_000_000, 1_000_000_000_000_000),
            ("1P", 1_000_000_000_000_000, 1_000_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000, u64::MAX),
            ("1Ki", 1024, 1_024_000),
            ("1.5Ki", 1536, 1_536_000),
            ("128Mi", 134_217_728, 134_217_728_000),
            ("1Gi", 1 << 30, (1u64 << 30) * 1000),
            ("1Ti", 1 << 40, (1u64 << 40) * 1000),
            ("1Pi", 1 << 50, (1u64 << 50) * 1000),
            ("1Ei", 1 << 60, u64::MAX),
            ("0.5Gi", 1 << 29, (1u64 << 29) * 1000),
            ("1e3", 1000, 1_000_000),
            ("12E6", 12_000_000, 12_000_000_000),
            ("1e+3", 1000, 1_000_000),
            ("1e-3", 1, 1),
            ("25e-2", 1, 250),
            ("1.5e1", 15, 15_000),
            ("0000128Mi", 134_217_728, 134_217_728_000),
        ];
        for &(input, value, millis) in cases {
            let quantity = q(input);
            assert_eq!(quantity.value(), value, "value() of {input:?}");
            assert_eq!(quantity.millis(), millis, "millis() of {input:?}");
        }
    }

    #[test]
    fn quantities_round_fractions_up_exactly() {
        let cases: &[(&str, u64, u64)] = &[
            ("0.0001", 1, 1),
            ("0.1m", 1, 1),
            ("1.0001", 2, 1001),
            ("0.3333333333333333333333333333333333333333", 1, 334),
            ("1.2345678901234567890123456789Ki", 1265, 1_264_198),
            ("0.999Ki", 1023, 1_022_976),
            ("0.1Ki", 103, 102_400),
            ("1e-1000000", 1, 1),
            ("0e999999999999999999999", 0, 0),
            ("0.000", 0, 0),
        ];
        for &(input, value, millis) in cases {
            let quantity = q(input);
            assert_eq!(quantity.value(), value, "value() of {input:?}");
            assert_eq!(quantity.millis(), millis, "millis() of {input:?}");
        }
    }

    #[test]
    fn quantities_reject_malformed_text_with_a_hint() {
        let cases = [
            "", " ", "12x", "1e", "1e+", "1.2.3", ".", "m", "Mi", "1 Mi", " 1", "1 ", "1mi", "1KI", "1K",
            "1ki", "1Ei3", "1e3m", "1.5e1.5", "0x10", "1_000", "inf", "NaN", "1/2", "１", "--1", "-+1",
            "+-1", "1e--3",
        ];
        for input in cases {
            let err = input.parse::<Quantity>().expect_err(input);
            assert_eq!(err, QuantityError::Invalid { input: input.to_string() }, "{input:?}");
            assert_eq!(
                err.to_string(),
                format!(
                    "{input:?} is not a quantity: use a number with an optional suffix such as 500m, 0.5, \
                     128Mi or 1G"
                )
            );
        }
    }

    #[test]
    fn quantities_reject_negative_values() {
        for input in ["-1", "-0.5", "-500m", "-128Mi", "-1e3", "-0"] {
            let err = input.parse::<Quantity>().expect_err(input);
            assert_eq!(err, QuantityError::Negative { input: input.to_string() });
            assert_eq!(
                err.to_string(),
                format!("{input:?} is not a valid quantity: resource quantities must not be negative")
            );
        }
    }

    #[test]
    fn quantities_reject_values_beyond_u64() {
        let fits: &[(&str, u64)] = &[
            ("18446744073709551615", u64::MAX),
            ("15Ei", 15 << 60),
            ("18.446744073709551615E", u64::MAX),
            ("18446744073709551614.5", u64::MAX),
        ];
        for &(input, value) in fits {
            assert_eq!(q(input).value(), value, "{input:?}");
        }
        for input in [
            "18446744073709551616",
            "18446744073709551615.1",
            "16Ei",
            "20E",
            "1e20",
            "1e999999999999999999999",
            "99999999999999999999999999999999999999999999999999Ei",
        ] {
            let err = input.parse::<Quantity>().expect_err(input);
            assert_eq!(err, QuantityError::TooLarge { input: input.to_string() }, "{input:?}");
            assert!(err.to_string().starts_with(&format!("{input:?} is too large")), "{err}");
        }
    }

    #[test]
    fn quantities_quote_only_a_prefix_of_very_long_input() {
        let long = "9".repeat(2000);
        let err = long.parse::<Quantity>().expect_err("too long");
        let QuantityError::Invalid { input } = &err else { panic!("unexpected {err:?}") };
        assert_eq!(input, &format!("{}…", "9".repeat(64)));
    }

    #[test]
    fn quantities_display_and_serialize_the_original_text() {
        for input in ["500m", "0.5", "128Mi", "1G", "+2", "12E6", "0000128Mi"] {
            let quantity = q(input);
            assert_eq!(quantity.to_string(), input);
            assert_eq!(quantity.as_str(), input);
            let json = serde_json::to_string(&quantity).expect("serialize");
            assert_eq!(json, serde_json::to_string(input).expect("serialize str"));
        }
    }

    #[test]
    fn quantities_deserialize_from_json_strings_and_numbers() {
        // (json, original text kept, value, millis)
        let cases: &[(&str, &str, u64, u64)] = &[
            (r#""500m""#, "500m", 1, 500),
            (r#""128Mi""#, "128Mi", 134_217_728, 134_217_728_000),
            (r#""1G""#, "1G", 1_000_000_000, 1_000_000_000_000),
            ("0.5", "0.5", 1, 500),
            ("2", "2", 2, 2000),
            ("2.0", "2", 2, 2000),
            ("0.1", "0.1", 1, 100),
            ("1e3", "1000", 1000, 1_000_000),
            ("0", "0", 0, 0),
        ];
        for &(json, raw, value, millis) in cases {
            let quantity: Quantity = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(quantity.as_str(), raw, "{json}");
            assert_eq!(quantity.value(), value, "{json}");
            assert_eq!(quantity.millis(), millis, "{json}");
        }
    }

    #[test]
    fn quantities_deserialization_errors_explain_the_problem() {
        let cases: &[(&str, &str)] = &[
            (r#""12x""#, r#""12x" is not a quantity: use a number"#),
            ("-1", r#""-1" is not a valid quantity: resource quantities must not be negative"#),
            ("-0.5", r#""-0.5" is not a valid quantity"#),
            (r#""16Ei""#, r#""16Ei" is too large"#),
            ("1e30", "is too large"),
            ("true", "expected a quantity such as 500m"),
            ("null", "expected a quantity such as 500m"),
            ("[1]", "expected a quantity such as 500m"),
        ];
        for &(json, expected) in cases {
            let err = serde_json::from_str::<Quantity>(json).expect_err(json).to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn quantities_deserialize_inside_manifests() {
        #[derive(Deserialize, Serialize)]
        struct Resources {
            cpu: Quantity,
            memory: Quantity,
        }
        let parsed: Resources = serde_json::from_str(r#"{"cpu": 0.5, "memory": "128Mi"}"#).expect("parse");
        assert_eq!(parsed.cpu.millis(), 500);
        assert_eq!(parsed.memory.value(), 134_217_728);
        assert_eq!(serde_json::to_string(&parsed).expect("serialize"), r#"{"cpu":"0.5","memory":"128Mi"}"#);
    }
}
