//! TLS for the hub: the server's certificate and key from PEM files, a
//! listener that completes the TLS handshake of each connection off the accept
//! loop, and the client configuration the command line uses to reach a
//! running hub's `/admin` over TLS.
//!
//! rustls with the ring provider. The admin client does not check the
//! certificate against CAs: it accepts exactly the certificate the running hub
//! recorded in its run file (`hub.json`, mode 0600), which is the one it serves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// The longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// Why the TLS files are not usable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {}: {reason}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("the TLS certificate file {} contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("the TLS key file {} contains no PEM private key (expected -----BEGIN PRIVATE KEY-----, or an RSA or EC key)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key does not go with the certificate, or is of an unsupported kind.
    #[error("the TLS key {} cannot serve the certificate {}: {reason}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The recorded certificate of a running hub is not usable.
    #[error("the run file's TLS certificate is not valid hex")]
    BadPin,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The hub's TLS settings: the rustls server configuration and the served
/// certificate (recorded in the run file for the admin client).
#[derive(Clone)]
pub struct HubTls {
    /// The server configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// The end-entity certificate served (DER).
    pub certificate: CertificateDer<'static>,
}

impl std::fmt::Debug for HubTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubTls")
            .field("certificate_bytes", &self.certificate.len())
            .finish_non_exhaustive()
    }
}

impl HubTls {
    /// Load a certificate chain (PEM, the server's certificate first) and its
    /// private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<HubTls, TlsError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::Read {
                what,
                path: path.to_owned(),
                reason: e.to_string(),
            })
        };
        let cert_bytes = read("certificate", cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Read {
                what: "certificate",
                path: cert.to_owned(),
                reason: format!("bad PEM: {e}"),
            })?;
        let Some(first) = chain.first().cloned() else {
            return Err(TlsError::NoCertificate {
                path: cert.to_owned(),
            });
        };
        let key_bytes = read("key", key)?;
        let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                path: key.to_owned(),
            },
            e => TlsError::Read {
                what: "key",
                path: key.to_owned(),
                reason: format!("bad PEM: {e}"),
            },
        })?;
        let mismatch = |reason: String| TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| mismatch(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| mismatch(e.to_string()))?;
        Ok(HubTls {
            config: Arc::new(config),
            certificate: first,
        })
    }

    /// The served certificate as hex, for the run file.
    pub fn certificate_hex(&self) -> String {
        use std::fmt::Write;
        self.certificate.iter().fold(
            String::with_capacity(self.certificate.len() * 2),
            |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            },
        )
    }
}

/// A client configuration that accepts exactly the certificate `hex` (as
/// written by [`HubTls::certificate_hex`]), with its signatures checked.
pub fn pinned_client_config(hex: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    if !hex.len().is_multiple_of(2) {
        return Err(TlsError::BadPin);
    }
    let der = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or(TlsError::BadPin)?;
    let provider = provider();
    let verifier = Pinned {
        der,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| TlsError::BadPin)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts one certificate, byte for byte.
#[derive(Debug)]
struct Pinned {
    der: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one in the run file".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A listener whose connections are TLS: a task accepts TCP connections and
/// completes each handshake in a task of its own (at most `handshake_timeout`,
/// [`HANDSHAKE_TIMEOUT`] by default), so a slow or broken client never holds up the
/// others. A failed handshake is logged and the connection dropped. The task
/// stops when the listener is dropped.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serve TLS with `config` on `tcp`; a handshake not completed within
    /// `handshake_timeout` drops its connection.
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let accepting = tokio::spawn(accept_loop(tcp, acceptor, tx, handshake_timeout));
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    handshake_timeout: Duration,
) {
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            r = tcp.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    // Out of file descriptors, for example: wait for some to close.
                    tracing::error!("accept error: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        // Replies and notifications are small frames: without TCP_NODELAY,
        // Nagle holds one back until the agent's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::info!(
                    %peer,
                    "TLS handshake not completed within {handshake_timeout:?}"
                ),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task holds a sender for as long as it runs, and it
            // runs until this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
