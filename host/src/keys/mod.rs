//! The agent's RSA key pair: `key.priv` and `key.pub`.
//!
//! **Owns:** loading the private key (PKCS#8 `BEGIN PRIVATE KEY` or PKCS#1
//! `BEGIN RSA PRIVATE KEY`, unencrypted PEM), refusing keys that are not RSA or are
//! under [`MIN_BITS`], creating a new RSA-4096 pair on first run, and the OpenSSH
//! one-line public key format the server compares byte for byte
//! ([`openssh_public_line`], [`parse_openssh_public`]).
//!
//! **Does not:** sign, decrypt or talk to the server (login uses
//! [`AgentKey::private`] directly), nor decide where the key lives (the config's
//! `keyfile` does).
//!
//! **Files:** `key.priv` is unencrypted PKCS#8 PEM, mode 0600; `key.pub` is always
//! named `key.pub`, in the private key's directory, one line `ssh-rsa <base64>` with
//! no comment and no trailing newline, mode 0644. Both are written to temporary
//! files in the same directory and renamed into place, the public key first and the
//! private key last, so a crash or an error never leaves a private key without its
//! public key; on failure everything written is removed.
//!
//! **Tests:** `tests.rs` (files, modes, formats, refusals, failure clean-up); the
//! line format itself is `komlog_protocol::openssh`, tested there.

mod error;
mod files;
mod private;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

pub use error::KeyError;
pub use komlog_protocol::openssh::{openssh_public_line, parse_openssh_public};

/// The smallest RSA modulus, in bits, that komlogd (and the Komlog server) accepts.
pub const MIN_BITS: usize = 4096;

/// Size in bits of a newly generated key (public exponent 65537).
pub const GENERATED_BITS: usize = 4096;

/// Name of the public key file, always in the private key's directory.
pub const PUBLIC_KEY_FILE: &str = "key.pub";

/// Default name of the private key file, in the configuration directory.
pub const DEFAULT_PRIVATE_KEY_FILE: &str = "key.priv";

/// The agent's key pair, loaded or just created.
pub struct AgentKey {
    /// The RSA private key (at least [`MIN_BITS`] bits).
    pub private: PrivateKey,
    /// The public key as the canonical OpenSSH line `ssh-rsa <base64>`: no comment,
    /// no newline. This is what `key.pub` holds and what the login sends.
    pub public_line: String,
    /// True when this call generated the key pair (first run).
    pub created: bool,
}

impl AgentKey {
    /// Size of the modulus in bits.
    pub fn bits(&self) -> usize {
        modulus_bits(self.private.as_public_key())
    }

    /// The public half of the key.
    pub fn public(&self) -> &PublicKey {
        self.private.as_public_key()
    }
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("bits", &self.bits())
            .field("public_line", &self.public_line)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// The path of `key.pub` for a private key path: `key.pub` in the same directory.
pub fn public_key_path(private_path: &Path) -> PathBuf {
    dir_of(private_path).join(PUBLIC_KEY_FILE)
}

/// Load the agent's private key from `private_path`, or create the key pair there
/// when the file does not exist.
///
/// * Existing file: PKCS#8 or PKCS#1 PEM, unencrypted, RSA, at least [`MIN_BITS`]
///   bits; anything else is refused with a message naming the file. A missing
///   `key.pub` beside it is recreated from the private key (as is one that does not
///   hold this key's public half); failing to write it is only logged, since the
///   agent does not need it to run.
/// * Missing file: a new RSA-4096 key (e = 65537) is generated and both files are
///   written (see the module documentation); the public key is logged at info level
///   for the user to register.
///
/// The parent directory is not created: it is the configuration directory, or the
/// directory the user named in `keyfile`.
pub fn load_or_create(private_path: &Path) -> Result<AgentKey, KeyError> {
    match std::fs::read(private_path) {
        // The PEM text is wiped from memory once decoded.
        Ok(bytes) => load_existing(private_path, &Zeroizing::new(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = generate(private_path)?;
            create_with(private_path, key)
        }
        Err(source) => Err(KeyError::Read {
            path: private_path.to_owned(),
            source,
        }),
    }
}

/// Generate a new key for `private_path` (the path is only used in the error).
fn generate(private_path: &Path) -> Result<PrivateKey, KeyError> {
    let started = std::time::Instant::now();
    let key = PrivateKey::new(&mut getrandom::SysRng, GENERATED_BITS).map_err(|e| {
        KeyError::Generate {
            path: private_path.to_owned(),
            reason: e.to_string(),
        }
    })?;
    tracing::debug!(
        bits = GENERATED_BITS,
        elapsed = ?started.elapsed(),
        "generated a new RSA key"
    );
    Ok(key)
}

/// Write a freshly generated `key` as `private_path` and `key.pub` beside it.
fn create_with(private_path: &Path, key: PrivateKey) -> Result<AgentKey, KeyError> {
    let public_line = openssh_public_line(key.as_public_key());
    let pem = private::encode_pkcs8_pem(&key).map_err(|reason| KeyError::Encode {
        path: private_path.to_owned(),
        reason,
    })?;
    files::write_pair(private_path, pem.as_bytes(), public_line.as_bytes())?;
    tracing::info!(
        "This is the public key, add it to your Komlog account:\n{}",
        public_line
    );
    Ok(AgentKey {
        private: key,
        public_line,
        created: true,
    })
}

/// Decode an existing private key file and make sure `key.pub` matches it.
fn load_existing(private_path: &Path, bytes: &[u8]) -> Result<AgentKey, KeyError> {
    let private = private::decode(private_path, bytes)?;
    files::warn_if_loose_permissions(private_path);
    let public_line = openssh_public_line(private.as_public_key());
    ensure_public_file(private_path, &private, &public_line);
    Ok(AgentKey {
        private,
        public_line,
        created: false,
    })
}

/// Recreate `key.pub` when it is missing or does not hold `private`'s public half.
/// Failures are logged: the agent logs in with the private key alone.
fn ensure_public_file(private_path: &Path, private: &PrivateKey, public_line: &str) {
    let public_path = public_key_path(private_path);
    let why = match std::fs::read_to_string(&public_path) {
        Ok(text) => match parse_openssh_public(&text) {
            Ok(public) if &public != private.as_public_key() => "it holds a different key",
            // The server compares the line byte for byte and stores it without one.
            Ok(_) if text.split_ascii_whitespace().count() > 2 => "it has a comment after the key",
            Ok(_) => return,
            Err(_) => "it is not an OpenSSH RSA public key",
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "it was missing",
        Err(_) => "it could not be read",
    };
    match files::write_public(&public_path, public_line.as_bytes()) {
        Ok(()) => tracing::info!(
            path = %public_path.display(),
            "rewrote the public key file because {why}. This is the public key, add it to your Komlog account:\n{}",
            public_line
        ),
        Err(e) => tracing::warn!("{e} (rewriting it because {why})"),
    }
}

/// Bit length of a public key's modulus.
fn modulus_bits(key: &PublicKey) -> usize {
    key.n().bit_width_vartime() as usize
}

/// The directory of a file path (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
