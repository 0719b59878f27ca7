//! The OpenSSH one-line public key format, `ssh-rsa <base64>`, in the canonical
//! form the Komlog server compares byte for byte: no comment, no newline.
//!
//! A trailing comment is tolerated when parsing, as the original server did when
//! an agent key was registered: [`openssh_public_line`] gives the canonical line to
//! store and compare (the agent rewrites a `key.pub` that carries a comment).
//!
//! The base64 payload is the SSH wire encoding (RFC 4253 §6.6): the string
//! `ssh-rsa`, then the mpints `e` and `n` (RFC 4251 §5: big-endian, minimal, with a
//! leading zero byte when the top bit is set).

use base64ct::{Base64, Encoding};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PublicKey};

use crate::login::MIN_KEY_BITS as MIN_BITS;

/// Why a text is not an acceptable OpenSSH RSA public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an OpenSSH RSA public key line.
    #[error("invalid OpenSSH RSA public key: {reason}")]
    BadPublicKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A well-formed RSA key under 4096 bits.
    #[error("a {bits}-bit RSA key; Komlog needs at least 4096 bits")]
    TooSmall {
        /// The modulus size found.
        bits: usize,
    },
}

const KEY_TYPE: &str = "ssh-rsa";

/// Largest modulus accepted when parsing (the `rsa` crate's own upper limit).
const MAX_BITS: usize = PublicKey::MAX_SIZE;

/// The canonical OpenSSH line of `key`: `ssh-rsa <base64>`, no comment, no newline.
pub fn openssh_public_line(key: &PublicKey) -> String {
    let mut blob = Vec::with_capacity(key.size() + 32);
    put_string(&mut blob, KEY_TYPE.as_bytes());
    put_mpint(&mut blob, &key.e_bytes());
    put_mpint(&mut blob, &key.n_bytes());
    format!("{KEY_TYPE} {}", Base64::encode_string(&blob))
}

/// Parse an OpenSSH RSA public key line, `ssh-rsa <base64>`.
///
/// Surrounding whitespace (a final newline) and a trailing comment are ignored.
/// Refused: another key type, bad base64, a payload whose type is not `ssh-rsa`,
/// bytes after `n`, non-minimal or negative integers, and moduli under
/// 4096 bits ([`KeyError::TooSmall`]).
pub fn parse_openssh_public(line: &str) -> Result<PublicKey, KeyError> {
    let bad = |reason: String| KeyError::BadPublicKey { reason };
    let mut fields = line.split_ascii_whitespace();
    let (Some(kind), Some(b64)) = (fields.next(), fields.next()) else {
        return Err(bad("expected `ssh-rsa <base64>`".to_owned()));
    };
    if kind != KEY_TYPE {
        return Err(bad(format!(
            "key type {kind:?} is not {KEY_TYPE:?} (Komlog agent keys are RSA)"
        )));
    }
    let blob = Base64::decode_vec(b64).map_err(|e| bad(format!("bad base64: {e}")))?;
    let mut rest = blob.as_slice();
    let inner = take_string(&mut rest).map_err(bad)?;
    if inner != KEY_TYPE.as_bytes() {
        return Err(bad(format!(
            "the encoded key type is {:?}, not {KEY_TYPE:?}",
            String::from_utf8_lossy(inner)
        )));
    }
    let e = take_mpint(&mut rest, "e").map_err(bad)?;
    let n = take_mpint(&mut rest, "n").map_err(bad)?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} unexpected bytes after the key",
            rest.len()
        )));
    }
    let bits = bit_len(n);
    if bits < MIN_BITS {
        return Err(KeyError::TooSmall { bits });
    }
    if bits > MAX_BITS {
        return Err(bad(format!(
            "a {bits}-bit RSA key; at most {MAX_BITS} bits are supported"
        )));
    }
    PublicKey::new(
        BoxedUint::from_be_slice_vartime(n),
        BoxedUint::from_be_slice_vartime(e),
    )
    .map_err(|err| bad(format!("not a usable RSA public key: {err}")))
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // RSA keys are far below 4 GiB; the length always fits.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Write a non-negative integer given as big-endian bytes as an SSH mpint.
fn put_mpint(out: &mut Vec<u8>, be: &[u8]) {
    let first = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let digits = &be[first..];
    if digits.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(digits.len() + 1);
        padded.push(0);
        padded.extend_from_slice(digits);
        put_string(out, &padded);
    } else {
        put_string(out, digits);
    }
}

fn take_string<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let Some((len, tail)) = rest.split_first_chunk::<4>() else {
        return Err("the key data is truncated".to_owned());
    };
    let len = u32::from_be_bytes(*len) as usize;
    if tail.len() < len {
        return Err("the key data is truncated".to_owned());
    }
    let (value, tail) = tail.split_at(len);
    *rest = tail;
    Ok(value)
}

/// Read a positive mpint and return its magnitude, big-endian, without the sign byte.
fn take_mpint<'a>(rest: &mut &'a [u8], name: &str) -> Result<&'a [u8], String> {
    let raw = take_string(rest)?;
    match raw {
        [] => Err(format!("{name} is zero")),
        [first, ..] if first & 0x80 != 0 => Err(format!("{name} is negative")),
        [0, second, ..] if second & 0x80 != 0 => Ok(&raw[1..]),
        [0, ..] => Err(format!("{name} has a superfluous leading zero byte")),
        _ => Ok(raw),
    }
}

/// Bit length of a big-endian magnitude with no leading zero byte.
fn bit_len(be: &[u8]) -> usize {
    match be.first() {
        Some(&b) => (be.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line whose blob is built from raw parts.
    fn line_of(parts: &[&[u8]]) -> String {
        let mut blob = Vec::new();
        for p in parts {
            put_string(&mut blob, p);
        }
        format!("ssh-rsa {}", Base64::encode_string(&blob))
    }

    /// A 4096-bit modulus-shaped byte string (not a real key, parse stops earlier).
    fn big_n() -> Vec<u8> {
        let mut n = vec![0u8; 513];
        n[1] = 0xc1;
        n[512] = 0x01;
        n
    }

    fn reason(r: Result<PublicKey, KeyError>) -> String {
        match r {
            Err(KeyError::BadPublicKey { reason }) => reason,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn mpint_encoding_is_minimal_with_sign_byte() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0, 0, 0x01, 0x00, 0x01]);
        assert_eq!(out, [0, 0, 0, 3, 1, 0, 1]);
        out.clear();
        put_mpint(&mut out, &[0x80]);
        assert_eq!(out, [0, 0, 0, 2, 0, 0x80]);
        out.clear();
        put_mpint(&mut out, &[0, 0]);
        assert_eq!(out, [0, 0, 0, 0]);
    }

    #[test]
    fn refuses_other_key_types_and_shapes() {
        assert!(reason(parse_openssh_public("ssh-ed25519 AAAA")).contains("ssh-ed25519"));
        assert!(reason(parse_openssh_public("")).contains("expected"));
        assert!(reason(parse_openssh_public("ssh-rsa")).contains("expected"));
        assert!(reason(parse_openssh_public("ssh-rsa !!!notbase64")).contains("base64"));
        assert!(reason(parse_openssh_public("ssh-rsa AAAA")).contains("truncated"));
    }

    #[test]
    fn refuses_wrong_inner_type_and_trailing_bytes() {
        let n = big_n();
        let inner = line_of(&[b"ssh-dss", &[1, 0, 1], &n]);
        assert!(reason(parse_openssh_public(&inner)).contains("ssh-dss"));
        let trailing = line_of(&[b"ssh-rsa", &[1, 0, 1], &n, b"x"]);
        assert!(reason(parse_openssh_public(&trailing)).contains("unexpected bytes"));
    }

    #[test]
    fn refuses_non_canonical_integers_and_small_keys() {
        let n = big_n();
        let negative = line_of(&[b"ssh-rsa", &[0x81], &n]);
        assert!(reason(parse_openssh_public(&negative)).contains("e is negative"));
        let padded = line_of(&[b"ssh-rsa", &[0, 1, 0, 1], &n]);
        assert!(reason(parse_openssh_public(&padded)).contains("leading zero"));
        let small = line_of(&[b"ssh-rsa", &[1, 0, 1], &[0, 0xc1, 1]]);
        assert_eq!(
            parse_openssh_public(&small).unwrap_err(),
            KeyError::TooSmall { bits: 16 }
        );
    }
}
