//! Human-written quantities in the configuration: durations (`1h`, `5min`,
//! `1h 30min`, `250ms`) and byte sizes (`64MiB`, `512 KiB`, `1048576`).

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a duration.
    #[error("invalid duration {0:?}: expected a number and a unit, e.g. 30s, 5min, 1h, 2d, 250ms")]
    Duration(String),
    /// Not a byte size.
    #[error(
        "invalid size {0:?}: expected bytes or a number with KiB, MiB, GiB (or KB, MB, GB), e.g. 64MiB"
    )]
    Bytes(String),
}

/// Parse a duration into microseconds. Units: `us`, `ms`, `s`/`sec`, `m`/`min`,
/// `h`, `d`, `w` and their long forms; several terms add up (`1h 30min`).
pub fn parse_duration_us(text: &str) -> Result<u64, QuantityError> {
    humantime::parse_duration(text.trim())
        .ok()
        .and_then(|d| u64::try_from(d.as_micros()).ok())
        .ok_or_else(|| QuantityError::Duration(text.to_owned()))
}

/// Parse a byte size: a plain integer, or a number with a binary (`KiB`, `MiB`, `GiB`)
/// or decimal (`KB`, `MB`, `GB`) unit.
pub fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    let err = || QuantityError::Bytes(text.to_owned());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| err())?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(err()),
    };
    let bytes = num * factor;
    if bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64 {
        Ok(bytes as u64)
    } else {
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("1h").unwrap(), 3_600_000_000);
        assert_eq!(parse_duration_us("5min").unwrap(), 300_000_000);
        assert_eq!(parse_duration_us("1h 30min").unwrap(), 5_400_000_000);
        assert_eq!(parse_duration_us("250ms").unwrap(), 250_000);
        assert_eq!(parse_duration_us(" 2d ").unwrap(), 172_800_000_000);
        assert!(parse_duration_us("5").is_err());
        assert!(parse_duration_us("soon").is_err());
        assert_eq!(
            parse_duration_us("-1h").unwrap_err().to_string(),
            "invalid duration \"-1h\": expected a number and a unit, e.g. 30s, 5min, 1h, 2d, 250ms"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("512 KiB").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("1GB").unwrap(), 1_000_000_000);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("12 parsecs").is_err());
    }
}
