//! The connection to the server: plain TCP, or TCP wrapped in TLS for
//! `https://` and `wss://` endpoints (rustls with the ring provider).
//!
//! The server's certificate is checked against the Mozilla roots
//! (`webpki-roots`) plus, optionally, the CA certificates of a PEM file
//! ([`SessionConfig::ca_file`](crate::SessionConfig::ca_file)), for the host
//! name of the URL. The same [`Stream`] carries the login POSTs and the
//! websocket.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::Endpoint;

/// Why a TLS setting or a TLS connection failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read the CA file {}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The CA file holds no usable certificate.
    #[error("the CA file {} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The host of the URL cannot be a TLS server name.
    #[error("{host:?} is not a valid TLS server name")]
    ServerName {
        /// The host.
        host: String,
    },
    /// The rustls configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The client TLS configuration: the Mozilla roots plus the certificates of
/// `ca_file`, if given.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let ca_err = |reason: String| TlsError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| ca_err(format!("bad PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ca_err(format!("a certificate is not usable as a CA: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::NoCertificate {
                path: path.to_owned(),
            });
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A connection to the server, plain or TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connect to `endpoint`, with TLS when the endpoint asks for it (`tls` is
/// then the configuration to use). Errors are reasons, without the endpoint.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Stream, String> {
    let tcp = TcpStream::connect((endpoint.connect_host(), endpoint.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    // Small request/reply frames: do not let Nagle hold one back until the
    // peer's delayed ACK.
    tcp.set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    if !endpoint.tls {
        return Ok(Stream::Plain(tcp));
    }
    let Some(config) = tls else {
        return Err("no TLS configuration for a TLS endpoint".into());
    };
    let tls = handshake(tcp, &endpoint.host, config, "as the CA file, ca_file").await?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// The TLS handshake over `tcp` with the server `host` (a DNS name or an IP
/// address; an IPv6 address with or without its brackets), checked with `config`.
/// A failure is a reason naming `host`; when the server's certificate is not
/// signed by a trusted CA it says to give that CA's certificate `where_ca`
/// (the setting that takes it, such as "as the CA file, ca_file").
pub async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
    where_ca: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = server_name(host).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let hint = if e.to_string().contains("UnknownIssuer") {
                format!(
                    " (the server's certificate is not signed by a trusted CA: give the certificate of the CA that signed it {where_ca})"
                )
            } else {
                String::new()
            };
            format!("TLS handshake with {host} failed: {e}{hint}")
        })
}

/// The TLS server name of `host` (a DNS name or an IP address; an IPv6 address
/// with or without its brackets).
fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::ServerName {
        host: host.to_owned(),
    })
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = client_config(Some(&missing)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("cannot read the CA file {}", missing.display())),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("the CA file {} contains no PEM", empty.display())),
            "{e}"
        );
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn server_names() {
        let name = server_name;
        assert!(name("localhost").is_ok());
        assert!(name("127.0.0.1").is_ok());
        assert!(name("[::1]").is_ok());
        assert!(name("bad host").is_err());
    }
}
