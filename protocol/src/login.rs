//! The login handshake (spec §3.2): form fields, constants and the crypto of
//! both sides.
//!
//! 1. The agent POSTs `u` (username), `k` (base64 of its OpenSSH public key line)
//!    and `pv` (1) to `/login`.
//! 2. The server draws [`CHALLENGE_BYTES`] random bytes, answers
//!    `{"challenge": base64(RSA-OAEP-SHA256(challenge))}` ([`encrypt_challenge`])
//!    and remembers [`challenge_hash`] of them.
//! 3. The agent decrypts ([`decrypt_challenge`]), hashes (SHA-256 of the plaintext
//!    fed [`HASH_ROUNDS`] times) and signs the 32-byte hash with RSA-PSS-SHA256 and
//!    the maximum salt length ([`sign_challenge_hash`]); it POSTs `u`, `k`, `pv`,
//!    `c` = base64(hash) and `s` = base64(signature). [`answer_challenge`] does
//!    all of step 3.
//! 4. The server checks the hash was issued, unused and fresh, and verifies the
//!    signature ([`verify_challenge_signature`]); it answers `200 null` and sets
//!    the [`COOKIE_NAME`] cookie that authenticates the websocket.
//!
//! Base64 is the standard alphabet with padding everywhere.

use base64ct::{Base64, Encoding};
use rsa::sha2::{Digest, Sha256};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;

/// The RSA key types the helpers take, re-exported so users need not depend on `rsa`.
pub use rsa::{PrivateKey, PublicKey};

use crate::openssh::{KeyError, openssh_public_line, parse_openssh_public};

/// The login endpoint's path.
pub const LOGIN_PATH: &str = "/login";
/// The websocket's path.
pub const WEBSOCKET_PATH: &str = "/";
/// The cookie set by a successful login and sent with the websocket upgrade.
pub const COOKIE_NAME: &str = "kid";
/// Form field: the username.
pub const FIELD_USERNAME: &str = "u";
/// Form field: base64 of the OpenSSH public key line.
pub const FIELD_KEY: &str = "k";
/// Form field: the protocol version (`1`).
pub const FIELD_PROTOCOL_VERSION: &str = "pv";
/// Form field (second POST): base64 of the challenge hash.
pub const FIELD_CHALLENGE: &str = "c";
/// Form field (second POST): base64 of the signature of the hash.
pub const FIELD_SIGNATURE: &str = "s";
/// Size of the random challenge.
pub const CHALLENGE_BYTES: usize = 64;
/// How many times the challenge is fed to SHA-256.
pub const HASH_ROUNDS: usize = 30;
/// How long a challenge may be answered, in seconds.
pub const CHALLENGE_VALIDITY_SECS: u64 = 60;
/// The smallest RSA modulus accepted, in bits.
pub const MIN_KEY_BITS: usize = 4096;

/// A failure of the login crypto.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginCryptoError {
    /// A base64 field does not decode.
    #[error("`{field}` is not base64: {reason}")]
    Base64 {
        /// The field.
        field: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The `k` field does not hold an acceptable key.
    #[error("`k` does not hold an acceptable key: {0}")]
    Key(#[from] KeyError),
    /// The `k` field decodes to bytes that are not text.
    #[error("`k` does not decode to an OpenSSH key line")]
    KeyNotText,
    /// RSA-OAEP encryption or decryption failed.
    #[error("challenge {op} failed: {reason}")]
    Oaep {
        /// `encryption` or `decryption`.
        op: &'static str,
        /// The RSA library's message.
        reason: String,
    },
    /// Signing failed.
    #[error("signing the challenge failed: {0}")]
    Sign(String),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// The `k` field for a public key line: base64 of the line's bytes.
pub fn key_field(public_line: &str) -> String {
    Base64::encode_string(public_line.as_bytes())
}

/// The `k` field for a public key, from its canonical line.
pub fn key_field_of(key: &PublicKey) -> String {
    key_field(&openssh_public_line(key))
}

/// A decoded `k` field: the line exactly as sent and the key it holds.
#[derive(Debug, Clone)]
pub struct KeyFieldValue {
    /// The decoded line, byte for byte as sent (compared with registered keys).
    pub line: String,
    /// The parsed key (at least [`MIN_KEY_BITS`]).
    pub key: PublicKey,
}

/// Decode a `k` field: base64 of an OpenSSH RSA line of at least 4096 bits.
pub fn parse_key_field(k: &str) -> Result<KeyFieldValue, LoginCryptoError> {
    let bytes = decode_base64("k", k)?;
    let line = String::from_utf8(bytes).map_err(|_| LoginCryptoError::KeyNotText)?;
    let key = parse_openssh_public(&line)?;
    Ok(KeyFieldValue { line, key })
}

/// Standard base64 decoding that names the field on failure.
pub fn decode_base64(field: &'static str, text: &str) -> Result<Vec<u8>, LoginCryptoError> {
    Base64::decode_vec(text.trim()).map_err(|e| LoginCryptoError::Base64 {
        field,
        reason: e.to_string(),
    })
}

/// Standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// Fresh random challenge bytes.
pub fn new_challenge() -> Result<[u8; CHALLENGE_BYTES], LoginCryptoError> {
    let mut c = [0u8; CHALLENGE_BYTES];
    getrandom::fill(&mut c).map_err(|e| LoginCryptoError::Oaep {
        op: "encryption",
        reason: format!("no randomness: {e}"),
    })?;
    Ok(c)
}

/// SHA-256 of `plaintext` fed [`HASH_ROUNDS`] times in a row.
pub fn challenge_hash(plaintext: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for _ in 0..HASH_ROUNDS {
        h.update(plaintext);
    }
    h.finalize().into()
}

/// Server side: RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) of the challenge.
pub fn encrypt_challenge(key: &PublicKey, challenge: &[u8]) -> Result<Vec<u8>, LoginCryptoError> {
    key.oaep_encrypt::<Sha256>(challenge)
        .map_err(|e| LoginCryptoError::Oaep {
            op: "encryption",
            reason: e.to_string(),
        })
}

/// Agent side: undo [`encrypt_challenge`].
pub fn decrypt_challenge(key: &PrivateKey, ciphertext: &[u8]) -> Result<Vec<u8>, LoginCryptoError> {
    key.oaep_decrypt::<Sha256>(ciphertext)
        .map_err(|e| LoginCryptoError::Oaep {
            op: "decryption",
            reason: e.to_string(),
        })
}

/// The maximum PSS salt length for a key: `emLen − hLen − 2` with
/// `emLen = ⌈(modBits − 1) / 8⌉` (478 bytes for 4096 bits), as Python's
/// `PSS.MAX_LENGTH`.
pub fn max_pss_salt_len(key: &PublicKey) -> usize {
    let bits = key.n().bit_width_vartime() as usize;
    let em_len = (bits - 1).div_ceil(8);
    em_len.saturating_sub(32 + 2)
}

/// Agent side: RSA-PSS (SHA-256, MGF1-SHA-256, maximum salt) of the 32-byte hash.
/// The hash is the message: PSS hashes it again, as the Python agent does.
pub fn sign_challenge_hash(key: &PrivateKey, hash: &[u8]) -> Result<Vec<u8>, LoginCryptoError> {
    let salt = max_pss_salt_len(key.as_public_key());
    let signer = rsa::pss::SigningKey::<Sha256>::new_with_salt_len(key.clone(), salt);
    signer
        .try_sign(hash)
        .map(|s| s.to_vec())
        .map_err(|e| LoginCryptoError::Sign(e.to_string()))
}

/// Server side: check a signature made by [`sign_challenge_hash`].
pub fn verify_challenge_signature(
    key: &PublicKey,
    hash: &[u8],
    signature: &[u8],
) -> Result<(), LoginCryptoError> {
    let salt = max_pss_salt_len(key);
    let verifier = rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key.clone(), salt);
    let sig =
        rsa::pss::Signature::try_from(signature).map_err(|_| LoginCryptoError::BadSignature)?;
    verifier
        .verify(hash, &sig)
        .map_err(|_| LoginCryptoError::BadSignature)
}

/// Agent side of step 3: from the server's base64 challenge, the `c` and `s`
/// fields of the second POST.
pub fn answer_challenge(
    key: &PrivateKey,
    challenge_b64: &str,
) -> Result<(String, String), LoginCryptoError> {
    let ciphertext = decode_base64("challenge", challenge_b64)?;
    let plaintext = decrypt_challenge(key, &ciphertext)?;
    let hash = challenge_hash(&plaintext);
    let signature = sign_challenge_hash(key, &hash)?;
    Ok((encode_base64(&hash), encode_base64(&signature)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bits: usize) -> PrivateKey {
        PrivateKey::new(&mut getrandom::SysRng, bits).expect("keygen")
    }

    #[test]
    fn hash_is_sha256_of_thirty_copies() {
        let plain = b"abc";
        let mut all = Vec::new();
        for _ in 0..30 {
            all.extend_from_slice(plain);
        }
        let expect: [u8; 32] = Sha256::digest(&all).into();
        assert_eq!(challenge_hash(plain), expect);
    }

    #[test]
    fn full_handshake_with_a_4096_bit_key() {
        let private = key(4096);
        let public = private.as_public_key().clone();
        assert_eq!(max_pss_salt_len(&public), 478);
        // Server: parse `k`, encrypt a challenge.
        let k = key_field_of(&public);
        let parsed = parse_key_field(&k).unwrap();
        assert_eq!(parsed.key, public);
        assert_eq!(parsed.line, openssh_public_line(&public));
        let challenge = new_challenge().unwrap();
        let ct = encrypt_challenge(&parsed.key, &challenge).unwrap();
        assert_eq!(ct.len(), 512);
        // Agent: answer.
        let (c, s) = answer_challenge(&private, &encode_base64(&ct)).unwrap();
        // Server: check.
        let hash = decode_base64("c", &c).unwrap();
        assert_eq!(hash, challenge_hash(&challenge));
        let sig = decode_base64("s", &s).unwrap();
        assert_eq!(sig.len(), 512);
        verify_challenge_signature(&public, &hash, &sig).unwrap();
        // A different hash, or a tampered signature, does not verify.
        let mut other = hash.clone();
        other[0] ^= 1;
        assert_eq!(
            verify_challenge_signature(&public, &other, &sig),
            Err(LoginCryptoError::BadSignature)
        );
        let mut bad = sig.clone();
        bad[100] ^= 1;
        assert_eq!(
            verify_challenge_signature(&public, &hash, &bad),
            Err(LoginCryptoError::BadSignature)
        );
        assert_eq!(
            verify_challenge_signature(&public, &hash, b"short"),
            Err(LoginCryptoError::BadSignature)
        );
        // A signature with the default (32-byte) salt is refused: the salt must be maximal.
        let default_salt = rsa::pss::SigningKey::<Sha256>::new(private.clone())
            .try_sign(&hash)
            .unwrap()
            .to_vec();
        assert_eq!(
            verify_challenge_signature(&public, &hash, &default_salt),
            Err(LoginCryptoError::BadSignature)
        );
    }

    #[test]
    fn key_field_refusals() {
        assert!(matches!(
            parse_key_field("***"),
            Err(LoginCryptoError::Base64 { field: "k", .. })
        ));
        assert_eq!(
            parse_key_field(&encode_base64(&[0xff, 0xfe])).unwrap_err(),
            LoginCryptoError::KeyNotText
        );
        assert!(matches!(
            parse_key_field(&key_field("ssh-ed25519 AAAA")),
            Err(LoginCryptoError::Key(KeyError::BadPublicKey { .. }))
        ));
        let small = key(1024);
        assert_eq!(
            parse_key_field(&key_field_of(small.as_public_key())).unwrap_err(),
            LoginCryptoError::Key(KeyError::TooSmall { bits: 1024 })
        );
    }

    #[test]
    fn decrypt_refuses_garbage() {
        let private = key(2048);
        assert!(matches!(
            decrypt_challenge(&private, &[1u8; 256]),
            Err(LoginCryptoError::Oaep {
                op: "decryption",
                ..
            })
        ));
        assert!(matches!(
            answer_challenge(&private, "%%%"),
            Err(LoginCryptoError::Base64 {
                field: "challenge",
                ..
            })
        ));
    }
}
