//! TimeUUIDs (spec §6.4): the version-1 UUIDs that carry every sample time and
//! every message `seq`/`irt` on the wire.
//!
//! **Owns:** building them from microseconds (random clock sequence and node, or
//! the lowest/highest value for an instant), the 32-hex-digit wire form, parsing
//! (dashed or undashed, version 1 only), and Cassandra's TimeUUID order.
//!
//! **Order:** the 60-bit timestamp first; on a tie, bytes 8..15 one at a time as
//! *signed* bytes, byte 8 first masked with `0x3f`. [`TimeUuid::sort_key`] turns a
//! value into 16 bytes whose plain byte order is that order, for stores that sort
//! keys bytewise.

use std::cmp::Ordering;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// 100-ns intervals between 1582-10-15 (the UUID epoch) and 1970-01-01.
const UUID_EPOCH_OFFSET: u64 = 0x01B2_1DD2_1381_4000;

/// The largest 60-bit UUID timestamp.
const MAX_UUID_TIME: u64 = (1 << 60) - 1;

/// Why a text is not a TimeUUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeUuidError {
    /// Not 32 hex digits (optionally with the four dashes of the canonical form).
    #[error("{0:?} is not a uuid: expected 32 hex digits, optionally dashed as 8-4-4-4-12")]
    Syntax(String),
    /// A uuid of another version or variant.
    #[error("{0:?} is not a version-1 (time-based) uuid")]
    NotVersion1(String),
}

/// A version-1 UUID, RFC 4122 variant, compared in Cassandra's TimeUUID order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeUuid([u8; 16]);

impl TimeUuid {
    /// The lowest TimeUUID, `00000000-0000-1000-8080-808080808080`.
    pub const MIN: TimeUuid = TimeUuid([
        0, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
    ]);

    /// The highest TimeUUID, `ffffffff-ffff-1fff-bf7f-7f7f7f7f7f7f`.
    pub const MAX: TimeUuid = TimeUuid([
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xbf, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f,
        0x7f,
    ]);

    /// The earliest instant a TimeUUID carries, in microseconds since the Unix
    /// epoch: 1582-10-15T00:00:00Z, the start of the UUID epoch.
    pub const MIN_MICROS: i64 = -(UUID_EPOCH_OFFSET as i64 / 10);

    /// The latest instant a TimeUUID carries, in microseconds since the Unix
    /// epoch: 5236-03-31T21:21:00.684697Z, the largest 60-bit timestamp rounded
    /// down to a microsecond.
    pub const MAX_MICROS: i64 = ((MAX_UUID_TIME - UUID_EPOCH_OFFSET) / 10) as i64;

    /// A TimeUUID of the current time with a random clock sequence and node, as
    /// used for message `seq` values and stdin uploads.
    pub fn now() -> TimeUuid {
        // The clock is after 1970 and far before 5236, so this cannot fail.
        TimeUuid::random_at(now_micros()).unwrap_or(TimeUuid::MIN)
    }

    /// A TimeUUID of `micros` (since the Unix epoch, UTC) with a random 14-bit
    /// clock sequence and 48-bit node. `None` when the instant is outside what a
    /// 60-bit UUID timestamp holds (before 1582-10-15 or after 5236).
    pub fn random_at(micros: i64) -> Option<TimeUuid> {
        let r = random_u64();
        let cs = (r & 0x3fff) as u16;
        let node = (r >> 14) & 0xffff_ffff_ffff;
        TimeUuid::build(micros, cs, node)
    }

    /// The lowest TimeUUID of an instant (clock sequence 0x80, node 0x808080808080).
    pub fn lowest_at(micros: i64) -> Option<TimeUuid> {
        TimeUuid::build_raw(micros, [0x80; 8])
    }

    /// The highest TimeUUID of an instant (clock sequence 0x3f7f, node 0x7f7f7f7f7f7f).
    pub fn highest_at(micros: i64) -> Option<TimeUuid> {
        TimeUuid::build_raw(micros, [0xbf, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f])
    }

    /// A TimeUUID from an instant, a 14-bit clock sequence and a 48-bit node.
    pub fn build(micros: i64, clock_seq: u16, node: u64) -> Option<TimeUuid> {
        let mut tail = [0u8; 8];
        tail[0] = 0x80 | ((clock_seq >> 8) & 0x3f) as u8;
        tail[1] = (clock_seq & 0xff) as u8;
        tail[2..].copy_from_slice(&(node & 0xffff_ffff_ffff).to_be_bytes()[2..]);
        TimeUuid::build_raw(micros, tail)
    }

    fn build_raw(micros: i64, tail: [u8; 8]) -> Option<TimeUuid> {
        let ticks = i128::from(micros) * 10 + i128::from(UUID_EPOCH_OFFSET);
        let ticks = u64::try_from(ticks).ok().filter(|t| *t <= MAX_UUID_TIME)?;
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&((ticks & 0xffff_ffff) as u32).to_be_bytes());
        b[4..6].copy_from_slice(&(((ticks >> 32) & 0xffff) as u16).to_be_bytes());
        b[6..8].copy_from_slice(&((((ticks >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
        b[8..].copy_from_slice(&tail);
        Some(TimeUuid(b))
    }

    /// The 60-bit timestamp: 100-ns intervals since 1582-10-15.
    pub fn ticks(&self) -> u64 {
        let b = &self.0;
        let low = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let mid = u64::from(u16::from_be_bytes([b[4], b[5]]));
        let high = u64::from(u16::from_be_bytes([b[6], b[7]]) & 0x0fff);
        (high << 48) | (mid << 32) | low
    }

    /// The instant, in microseconds since the Unix epoch (UTC), rounded down.
    pub fn micros(&self) -> i64 {
        let since_unix = i128::from(self.ticks()) - i128::from(UUID_EPOCH_OFFSET);
        // 2^60 ticks / 10 fits an i64 with room to spare.
        since_unix.div_euclid(10) as i64
    }

    /// The 16 bytes of the uuid.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Rebuild from 16 bytes; `None` unless version 1 with the RFC 4122 variant.
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TimeUuid> {
        let version = bytes[6] >> 4;
        let variant = bytes[8] >> 6;
        (version == 1 && variant == 0b10).then_some(TimeUuid(bytes))
    }

    /// The wire form: 32 lowercase hex digits, no dashes.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
        s
    }

    /// Parse the undashed (wire) or dashed (8-4-4-4-12) form, in either case.
    /// Only version-1 uuids with the RFC 4122 variant are accepted.
    pub fn parse(text: &str) -> Result<TimeUuid, TimeUuidError> {
        let syntax = || TimeUuidError::Syntax(text.to_owned());
        let digits: Vec<u8> = match text.len() {
            32 => text.bytes().collect(),
            36 => {
                let b = text.as_bytes();
                if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                    return Err(syntax());
                }
                text.bytes().filter(|&c| c != b'-').collect()
            }
            _ => return Err(syntax()),
        };
        if digits.len() != 32 {
            return Err(syntax());
        }
        let mut bytes = [0u8; 16];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(syntax)?;
            let lo = hex_value(pair[1]).ok_or_else(syntax)?;
            bytes[i] = (hi << 4) | lo;
        }
        TimeUuid::from_bytes(bytes).ok_or_else(|| TimeUuidError::NotVersion1(text.to_owned()))
    }

    /// 16 bytes whose bytewise order is the TimeUUID order, and from which the
    /// uuid can be rebuilt ([`TimeUuid::from_sort_key`]): the 60-bit timestamp
    /// big-endian in 8 bytes, then bytes 8..15 with the sign bit flipped (byte 8
    /// first masked with `0x3f`, which drops only the fixed variant bits).
    pub fn sort_key(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.ticks().to_be_bytes());
        k[8] = (self.0[8] & 0x3f) ^ 0x80;
        for (out, b) in k[9..].iter_mut().zip(&self.0[9..]) {
            *out = b ^ 0x80;
        }
        k
    }

    /// The inverse of [`TimeUuid::sort_key`]; `None` for bytes no uuid maps to.
    pub fn from_sort_key(key: [u8; 16]) -> Option<TimeUuid> {
        let mut ticks_bytes = [0u8; 8];
        ticks_bytes.copy_from_slice(&key[..8]);
        let ticks = u64::from_be_bytes(ticks_bytes);
        if ticks > MAX_UUID_TIME || key[8] & 0xc0 != 0x80 {
            return None;
        }
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&((ticks & 0xffff_ffff) as u32).to_be_bytes());
        b[4..6].copy_from_slice(&(((ticks >> 32) & 0xffff) as u16).to_be_bytes());
        b[6..8].copy_from_slice(&((((ticks >> 48) & 0x0fff) as u16) | 0x1000).to_be_bytes());
        b[8] = (key[8] ^ 0x80) | 0x80;
        for (out, k) in b[9..].iter_mut().zip(&key[9..]) {
            *out = k ^ 0x80;
        }
        Some(TimeUuid(b))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// 64 random bits from the operating system; falls back to the clock if the
/// system generator fails (the bits only need to differ, not to be secret).
fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| now_micros() as u64 ^ 0x9e37_79b9_7f4a_7c15)
}

/// The current time in microseconds since the Unix epoch (0 if the clock is before it).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Ord for TimeUuid {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

impl PartialOrd for TimeUuid {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for TimeUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for TimeUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeUuid({})", self.hex())
    }
}

impl std::str::FromStr for TimeUuid {
    type Err = TimeUuidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TimeUuid::parse(s)
    }
}

impl serde::Serialize for TimeUuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for TimeUuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TimeUuid::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_and_max_match_the_python_constants() {
        assert_eq!(TimeUuid::MIN.hex(), "00000000000010008080808080808080");
        assert_eq!(TimeUuid::MAX.hex(), "ffffffffffff1fffbf7f7f7f7f7f7f7f");
        assert_eq!(
            TimeUuid::parse("00000000-0000-1000-8080-808080808080").unwrap(),
            TimeUuid::MIN
        );
        assert!(TimeUuid::MIN < TimeUuid::MAX);
    }

    #[test]
    fn round_trips_microseconds() {
        for us in [0i64, 1, 1_700_000_000_123_456, -12_219_292_800_000_000] {
            let t = TimeUuid::random_at(us).unwrap();
            assert_eq!(t.micros(), us, "{us}");
            assert_eq!(TimeUuid::parse(&t.hex()).unwrap(), t);
            assert!(TimeUuid::lowest_at(us).unwrap() <= t);
            assert!(t <= TimeUuid::highest_at(us).unwrap());
        }
        // Before 1582-10-15 there is no TimeUUID.
        assert!(TimeUuid::random_at(-12_219_292_800_000_001).is_none());
    }

    #[test]
    fn the_micros_range_is_exactly_what_a_timeuuid_carries() {
        assert_eq!(TimeUuid::MIN_MICROS, -12_219_292_800_000_000);
        assert_eq!(TimeUuid::MAX_MICROS, 103_072_857_660_684_697);
        assert_eq!(TimeUuid::MIN.micros(), TimeUuid::MIN_MICROS);
        assert_eq!(TimeUuid::MAX.micros(), TimeUuid::MAX_MICROS);
        for us in [TimeUuid::MIN_MICROS, TimeUuid::MAX_MICROS] {
            assert_eq!(TimeUuid::random_at(us).map(|t| t.micros()), Some(us));
        }
        assert!(TimeUuid::random_at(TimeUuid::MIN_MICROS - 1).is_none());
        assert!(TimeUuid::random_at(TimeUuid::MAX_MICROS + 1).is_none());
        assert!(TimeUuid::random_at(i64::MAX).is_none());
        assert!(TimeUuid::random_at(i64::MIN).is_none());
    }

    #[test]
    fn a_known_python_timeuuid_decodes() {
        // TimeUUID(t=1500000000.123456, random=False).hex in the Python agent.
        let t = TimeUuid::build(1_500_000_000_123_456, 0, 0).unwrap();
        assert_eq!(t.hex(), "bb359680683d11e78000000000000000");
        assert_eq!(t.micros(), 1_500_000_000_123_456);
    }

    #[test]
    fn parse_refuses_other_versions_and_bad_text() {
        // A uuid4.
        assert!(matches!(
            TimeUuid::parse("0b5ad3e4d8a94f8e9e3ac9b1c0b1a1a1"),
            Err(TimeUuidError::NotVersion1(_))
        ));
        // Version 1 but the NCS variant.
        assert!(matches!(
            TimeUuid::parse("a2da18801b6011e70000000000000000"),
            Err(TimeUuidError::NotVersion1(_))
        ));
        for bad in [
            "",
            "xyz",
            "a2da18801b6011e7800000000000000",
            "bb359680683d11e78000000000000000 ",
            "a2da1880-1b60-11e7-8000-00000000000g",
            "a2da18801-b60-11e7-8000-000000000000",
            "a2da1880-1b60-11e7-8000-0000-0000000",
        ] {
            assert!(
                matches!(TimeUuid::parse(bad), Err(TimeUuidError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(TimeUuid::parse("A2DA1880-1B60-11E7-8000-000000000000").is_ok());
    }

    #[test]
    fn cassandra_order_on_equal_timestamps_uses_signed_bytes() {
        let us = 1_600_000_000_000_000;
        // Node byte 0x7f is the largest signed byte, 0x80 the smallest.
        let a = TimeUuid::build(us, 0, 0x80_00_00_00_00_00).unwrap();
        let b = TimeUuid::build(us, 0, 0x7f_00_00_00_00_00).unwrap();
        let c = TimeUuid::build(us, 0, 0).unwrap();
        assert!(a < c && c < b);
        // Clock sequence (masked byte 8) before node.
        let d = TimeUuid::build(us, 0x0100, 0).unwrap();
        assert!(b < d);
        // Timestamp first.
        assert!(d < TimeUuid::build(us + 1, 0, 0x80_00_00_00_00_00).unwrap());
    }

    #[test]
    fn sort_key_round_trips_and_orders() {
        let mut v: Vec<TimeUuid> = (0..200)
            .map(|i| TimeUuid::random_at(1_000 + (i % 7)).unwrap())
            .collect();
        v.push(TimeUuid::MIN);
        v.push(TimeUuid::MAX);
        for t in &v {
            assert_eq!(TimeUuid::from_sort_key(t.sort_key()), Some(*t));
        }
        let mut by_ord = v.clone();
        by_ord.sort();
        let mut by_key = v;
        by_key.sort_by_key(|t| t.sort_key());
        assert_eq!(by_ord, by_key);
        assert_eq!(TimeUuid::from_sort_key([0xff; 16]), None);
    }

    #[test]
    fn serde_uses_the_hex_form() {
        let t = TimeUuid::MIN;
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"00000000000010008080808080808080\""
        );
        let back: TimeUuid = serde_json::from_str("\"00000000000010008080808080808080\"").unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<TimeUuid>("\"nope\"").is_err());
    }
}
