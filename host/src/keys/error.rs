//! Errors of the key module; each message names the file concerned.

use std::path::PathBuf;

/// Why the agent key could not be loaded, created or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The private key file exists but could not be read.
    #[error("cannot read the private key {}: {source}", path.display())]
    Read {
        /// The private key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a PEM private key at all.
    #[error(
        "{} is not a PEM private key ({reason}); komlogd needs an unencrypted RSA key in PEM \
         (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)",
        path.display()
    )]
    NotPem {
        /// The private key file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The file holds a private key of another algorithm.
    #[error("{} is not an RSA key ({kind}); komlogd needs an RSA key of at least 4096 bits", path.display())]
    NotRsa {
        /// The private key file.
        path: PathBuf,
        /// The algorithm found (e.g. `an EC key`).
        kind: String,
    },
    /// The file holds an encrypted private key.
    #[error(
        "{} is encrypted; komlogd needs an unencrypted private key (decrypt it with \
         `openssl pkey -in {} -out <new file>`)",
        path.display(),
        path.display()
    )]
    Encrypted {
        /// The private key file.
        path: PathBuf,
    },
    /// The file holds a private key in a format komlogd does not read.
    #[error("{} is {format}, which komlogd does not read; {hint}", path.display())]
    Unsupported {
        /// The private key file.
        path: PathBuf,
        /// The format found (e.g. `an OpenSSH-format private key`).
        format: String,
        /// How to convert it.
        hint: String,
    },
    /// The PEM is an RSA key but its contents do not decode or are inconsistent.
    #[error("{} is not a valid RSA private key: {reason}", path.display())]
    Malformed {
        /// The private key file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },
    /// The RSA key is smaller than [`super::MIN_BITS`].
    #[error("{} is a {bits}-bit RSA key; komlogd needs at least 4096 bits", path.display())]
    TooSmall {
        /// The private key file.
        path: PathBuf,
        /// The modulus size found.
        bits: usize,
    },
    /// Key generation failed (the system random number generator failed).
    #[error("cannot generate a new RSA key for {}: {reason}", path.display())]
    Generate {
        /// The private key file that was to be created.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The new key could not be encoded as PEM.
    #[error("cannot encode the new private key for {}: {reason}", path.display())]
    Encode {
        /// The private key file that was to be created.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Writing a key file (or its temporary file) failed; nothing was left behind.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file that was being written (the temporary file's target).
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
