//! Metric kinds and sample values (spec §6.3).
//!
//! **Owns:** the two kinds and their wire letters (`"d"` datasource, `"p"`
//! datapoint), the datasource size limit, and datapoint content: a decimal
//! string as Python's `Decimal` reads it, refused when it is NaN, infinite, or
//! too large for an `f64`, and written back in `str(Decimal)` form so a server
//! returns what the original returned (`"+1.3E+3"` → `"1.3E+3"`, `" 23 "` → `"23"`).

use std::fmt;

/// The largest datasource text, in UTF-8 bytes (2^17).
pub const MAX_DATASOURCE_BYTES: usize = 131_072;

/// The kind of a metric; fixed by the first write to its uri.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Text samples; wire letter `"d"`.
    Datasource,
    /// Numeric samples; wire letter `"p"`.
    Datapoint,
}

impl Kind {
    /// The wire letter: `"d"` or `"p"`.
    pub fn letter(self) -> &'static str {
        match self {
            Kind::Datasource => "d",
            Kind::Datapoint => "p",
        }
    }

    /// Read a wire letter.
    pub fn from_letter(s: &str) -> Option<Kind> {
        match s {
            "d" => Some(Kind::Datasource),
            "p" => Some(Kind::Datapoint),
            _ => None,
        }
    }

    /// `datasource` or `datapoint`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Datasource => "datasource",
            Kind::Datapoint => "datapoint",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A datasource text over [`MAX_DATASOURCE_BYTES`].
    #[error("datasource content is {0} bytes, over the limit of 131072 bytes")]
    TooLong(usize),
    /// A datapoint content that is not a decimal number.
    #[error("datapoint content {0:?} is not a decimal number")]
    NotANumber(String),
    /// A datapoint content that is NaN or infinite.
    #[error("datapoint content {0:?} is not finite (NaN and infinities are not allowed)")]
    NotFinite(String),
    /// A datapoint content beyond the range of an `f64`.
    #[error("datapoint content {0:?} is out of range")]
    OutOfRange(String),
}

/// Check a datasource text: at most [`MAX_DATASOURCE_BYTES`] UTF-8 bytes (empty is fine).
pub fn check_datasource(content: &str) -> Result<(), ValueError> {
    if content.len() > MAX_DATASOURCE_BYTES {
        Err(ValueError::TooLong(content.len()))
    } else {
        Ok(())
    }
}

/// A validated datapoint value: its canonical decimal text and its `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct Datapoint {
    /// The value as Python's `str(Decimal(content))` writes it.
    pub text: String,
    /// The value as the nearest `f64`.
    pub value: f64,
}

/// Read a datapoint content the way the server does: `Decimal(content)` must
/// parse (surrounding whitespace allowed) and be finite, and, as the agent also
/// requires, fit an `f64`.
pub fn parse_datapoint(content: &str) -> Result<Datapoint, ValueError> {
    let trimmed = content.trim_matches(|c: char| c.is_ascii_whitespace());
    let not_a_number = || ValueError::NotANumber(content.to_owned());
    let lower = trimmed.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if ["inf", "infinity", "nan", "snan"].contains(&unsigned)
        || unsigned.starts_with("nan")
        || unsigned.starts_with("snan")
    {
        return Err(ValueError::NotFinite(content.to_owned()));
    }
    let decimal = Decimal::parse(trimmed).ok_or_else(not_a_number)?;
    let value: f64 = trimmed.parse().map_err(|_| not_a_number())?;
    if !value.is_finite() {
        return Err(ValueError::OutOfRange(content.to_owned()));
    }
    Ok(Datapoint {
        text: decimal.to_python_string(),
        value,
    })
}

/// The decimal text of an `f64` for the wire (`1.5` → `"1.5"`, `2.0` → `"2"`);
/// `None` for NaN and infinities, which the protocol refuses.
pub fn format_datapoint(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    if value == value.trunc() && value.abs() < 1e16 {
        // Integral values print without a fraction, as `int` did in the agent.
        Some(format!("{}", value as i64))
    } else {
        Some(format!("{value}"))
    }
}

/// A finite decimal: sign, coefficient digits, exponent (value = ±coeff × 10^exp).
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    /// `[+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?`, ASCII only.
    fn parse(s: &str) -> Option<Decimal> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp_text) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match mantissa.split_once('.') {
            Some((i, f)) => (i, f),
            None => (mantissa, ""),
        };
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty())
            || !all_digits(int_part)
            || !all_digits(frac_part)
        {
            return None;
        }
        let mut exponent: i64 = 0;
        if let Some(e) = exp_text {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !all_digits(digits) || digits.len() > 15 {
                return None;
            }
            exponent = e.parse().ok()?;
        }
        let frac_len = i64::try_from(frac_part.len()).ok()?;
        let mut digits = format!("{int_part}{frac_part}");
        let first = digits.find(|c| c != '0').unwrap_or(digits.len());
        digits.drain(..first);
        if digits.is_empty() {
            digits.push('0');
        }
        Some(Decimal {
            negative,
            digits,
            exponent: exponent - frac_len,
        })
    }

    /// Python's `Decimal.__str__` (to-scientific-string, General Decimal Arithmetic).
    fn to_python_string(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        let n = self.digits.len() as i64;
        let left_digits = self.exponent + n;
        let dot_place = if self.exponent <= 0 && left_digits > -6 {
            left_digits
        } else {
            1
        };
        let (int_part, frac_part) = if dot_place <= 0 {
            (
                "0".to_owned(),
                format!(".{}{}", "0".repeat((-dot_place) as usize), self.digits),
            )
        } else if dot_place >= n {
            (
                format!("{}{}", self.digits, "0".repeat((dot_place - n) as usize)),
                String::new(),
            )
        } else {
            let (i, f) = self.digits.split_at(dot_place as usize);
            (i.to_owned(), format!(".{f}"))
        };
        let exp = if left_digits == dot_place {
            String::new()
        } else {
            format!("E{:+}", left_digits - dot_place)
        };
        format!("{sign}{int_part}{frac_part}{exp}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datapoint_text_matches_python_str_decimal() {
        // Pairs printed by Python 3.6: str(Decimal(s)).
        for (input, python) in [
            ("+1.3E+3", "1.3E+3"),
            (" 23 ", "23"),
            ("32\n", "32"),
            ("0.333", "0.333"),
            ("1e2", "1E+2"),
            ("-0", "-0"),
            ("001", "1"),
            ("1.50", "1.50"),
            ("0.0000001", "1E-7"),
            ("1E-7", "1E-7"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            (".5", "0.5"),
            ("5.", "5"),
            ("-.5e-3", "-0.0005"),
            ("14.63", "14.63"),
        ] {
            assert_eq!(parse_datapoint(input).unwrap().text, python, "{input:?}");
        }
        assert_eq!(parse_datapoint("1.5").unwrap().value, 1.5);
    }

    #[test]
    fn datapoint_refusals() {
        for s in ["NaN", "nan", "-Infinity", "inf", "sNaN", "+Inf", "NaN123"] {
            assert_eq!(
                parse_datapoint(s),
                Err(ValueError::NotFinite(s.to_owned())),
                "{s}"
            );
        }
        for s in [
            "1,1", "1.1.1", "-1.e", "1e", "", " ", "abc", "1 2", "0x10", "e5", ".",
        ] {
            assert_eq!(
                parse_datapoint(s),
                Err(ValueError::NotANumber(s.to_owned())),
                "{s:?}"
            );
        }
        assert_eq!(
            parse_datapoint("1e400"),
            Err(ValueError::OutOfRange("1e400".to_owned()))
        );
    }

    #[test]
    fn datasource_limit_counts_bytes() {
        assert!(check_datasource("").is_ok());
        assert!(check_datasource(&"x".repeat(MAX_DATASOURCE_BYTES)).is_ok());
        assert_eq!(
            check_datasource(&"ñ".repeat(65_537)),
            Err(ValueError::TooLong(131_074))
        );
    }

    #[test]
    fn formats_f64_for_the_wire() {
        assert_eq!(format_datapoint(2.0).as_deref(), Some("2"));
        assert_eq!(format_datapoint(-1.25).as_deref(), Some("-1.25"));
        assert_eq!(format_datapoint(f64::NAN), None);
        assert_eq!(format_datapoint(f64::INFINITY), None);
        let big = format_datapoint(1e300).unwrap();
        assert_eq!(parse_datapoint(&big).unwrap().value, 1e300);
    }

    #[test]
    fn kind_letters() {
        assert_eq!(Kind::from_letter("d"), Some(Kind::Datasource));
        assert_eq!(Kind::from_letter("p"), Some(Kind::Datapoint));
        assert_eq!(Kind::from_letter("x"), None);
        assert_eq!(Kind::Datapoint.letter(), "p");
    }
}
