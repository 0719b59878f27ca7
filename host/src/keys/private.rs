//! Reading and writing the private key PEM.

use std::path::Path;

use rsa::PrivateKey;
use rsa::pkcs1::RsaPrivateKeyRef;
use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::pkcs8::der::{Decode, pem};
use rsa::pkcs8::{
    EncodePrivateKey, LineEnding, ObjectIdentifier, PrivateKeyInfoRef, SecretDocument,
};

use super::{KeyError, MIN_BITS};

/// `rsaEncryption` and `id-RSASSA-PSS`: the PKCS#8 algorithms that hold RSA keys.
const RSA_OIDS: [ObjectIdentifier; 2] = [
    rsa::pkcs1::ALGORITHM_OID,
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10"),
];

/// Encode `key` as unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
/// The text is wiped from memory when dropped.
pub(super) fn encode_pkcs8_pem(key: &PrivateKey) -> Result<Zeroizing<String>, String> {
    key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())
}

/// Decode the contents of a private key file: unencrypted PKCS#8 or PKCS#1 PEM
/// holding an RSA key of at least [`MIN_BITS`] bits.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<PrivateKey, KeyError> {
    let not_pem = |reason: &str| KeyError::NotPem {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| not_pem("it is not text"))?;
    let Some(start) = text.find("-----BEGIN ") else {
        return Err(not_pem("no -----BEGIN line"));
    };
    // Text before the PEM block (OpenSSL's "Bag Attributes" and the like) is skipped.
    let text = &text[start..];
    let label = pem::decode_label(text.as_bytes())
        .map_err(|e| not_pem(&format!("bad PEM block: {e}")))?
        .to_owned();
    match label.as_str() {
        "PRIVATE KEY" => {
            let (_, doc) = SecretDocument::from_pem(text)
                .map_err(|e| not_pem(&format!("bad PEM block: {e}")))?;
            let info = PrivateKeyInfoRef::from_der(doc.as_bytes())
                .map_err(|e| malformed(format!("bad PKCS#8 structure: {e}")))?;
            let oid = info.algorithm.oid;
            if !RSA_OIDS.contains(&oid) {
                return Err(KeyError::NotRsa {
                    path: path.to_owned(),
                    kind: algorithm_name(oid),
                });
            }
            let rsa_key = RsaPrivateKeyRef::try_from(info.private_key)
                .map_err(|e| malformed(format!("bad RSA key inside PKCS#8: {e}")))?;
            from_pkcs1(path, rsa_key)
        }
        "RSA PRIVATE KEY" => {
            if text.contains("Proc-Type: 4,ENCRYPTED") {
                return Err(KeyError::Encrypted {
                    path: path.to_owned(),
                });
            }
            let (_, doc) = SecretDocument::from_pem(text)
                .map_err(|e| not_pem(&format!("bad PEM block: {e}")))?;
            let rsa_key = RsaPrivateKeyRef::from_der(doc.as_bytes())
                .map_err(|e| malformed(format!("bad PKCS#1 structure: {e}")))?;
            from_pkcs1(path, rsa_key)
        }
        "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted {
            path: path.to_owned(),
        }),
        "OPENSSH PRIVATE KEY" => Err(KeyError::Unsupported {
            path: path.to_owned(),
            format: "an OpenSSH-format private key".to_owned(),
            hint: format!(
                "if it is an RSA key, convert it with `ssh-keygen -p -m PKCS8 -f {}`",
                path.display()
            ),
        }),
        "EC PRIVATE KEY" => Err(not_rsa(path, "an EC key")),
        "DSA PRIVATE KEY" => Err(not_rsa(path, "a DSA key")),
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" => Err(KeyError::NotPem {
            path: path.to_owned(),
            reason: format!("it holds a {label}, not a private key"),
        }),
        other => Err(KeyError::NotPem {
            path: path.to_owned(),
            reason: format!("unexpected PEM label {other:?}"),
        }),
    }
}

fn not_rsa(path: &Path, kind: &str) -> KeyError {
    KeyError::NotRsa {
        path: path.to_owned(),
        kind: kind.to_owned(),
    }
}

/// Check the size, then build the key (which also checks its consistency).
fn from_pkcs1(path: &Path, rsa_key: RsaPrivateKeyRef<'_>) -> Result<PrivateKey, KeyError> {
    let bits = bit_len(rsa_key.modulus.as_bytes());
    if bits < MIN_BITS {
        return Err(KeyError::TooSmall {
            path: path.to_owned(),
            bits,
        });
    }
    PrivateKey::try_from(rsa_key).map_err(|e| KeyError::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Bit length of a big-endian unsigned integer.
fn bit_len(be: &[u8]) -> usize {
    let first = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    match be.get(first) {
        Some(&b) => (be.len() - first - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

/// A readable name for a PKCS#8 algorithm.
fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.10045.2.1" => "an EC key".to_owned(),
        "1.3.101.112" => "an Ed25519 key".to_owned(),
        "1.3.101.113" => "an Ed448 key".to_owned(),
        "1.3.101.110" => "an X25519 key".to_owned(),
        "1.3.101.111" => "an X448 key".to_owned(),
        "1.2.840.10040.4.1" => "a DSA key".to_owned(),
        other => format!("a key of algorithm {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::bit_len;

    #[test]
    fn bit_len_counts_significant_bits() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x7f, 0xff]), 15);
    }
}
