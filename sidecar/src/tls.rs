//! TLS on Vigil's own listener (rustls): certificate and key files are read and checked while the
//! configuration is validated, so a missing, expired, mismatched or unreadable file stops
//! startup with a message naming it, before any port is bound.
//!
//! Handshakes run in their own tasks with a deadline: a client that opens a connection and sends
//! nothing never holds up the others (see [`TlsListener`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// A client has this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections whose handshake finished but that axum has not taken yet.
const ACCEPTED_BACKLOG: usize = 128;

/// The checked TLS material of the listener.
#[derive(Clone)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// The ring provider, explicitly: the process may link more than one.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain; errors name the file. Expired or not-yet-valid leaf
/// certificates are refused.
pub fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{what} [{}]: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} [{}]: invalid PEM: {e}", path.display()))?;
    let Some(leaf) = certs.first() else {
        return Err(format!(
            "{what} [{}]: no CERTIFICATE block found",
            path.display()
        ));
    };
    check_validity(leaf, &chrono::Utc::now())
        .map_err(|e| format!("{what} [{}]: {e}", path.display()))?;
    Ok(certs)
}

/// Refuses a certificate outside its validity period at `now`.
pub fn check_validity(
    cert: &CertificateDer<'_>,
    now: &chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not a valid X.509 certificate: {e}"))?;
    let validity = parsed.validity();
    let now = now.timestamp();
    if now > validity.not_after.timestamp() {
        return Err(format!("certificate expired on {}", validity.not_after));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "certificate is not valid before {}",
            validity.not_before
        ));
    }
    Ok(())
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1); errors name the file.
pub fn read_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{what} [{}]: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{what} [{}]: no usable private key: {e}", path.display()))
}

/// Builds the listener's TLS configuration from `cert_file` and `key_file`, checking that the
/// key belongs to the certificate. Every problem names the file(s) concerned.
pub fn server_tls(cert_file: &Path, key_file: &Path) -> Result<ServerTls, Vec<String>> {
    let certs = read_certs(cert_file, "server.tls_cert");
    let key = read_key(key_file, "server.tls_key");
    let (certs, key) = match (certs, key) {
        (Ok(c), Ok(k)) => (c, k),
        (c, k) => return Err(c.err().into_iter().chain(k.err()).collect()),
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![format!("TLS: {e}")])?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            vec![format!(
                "server.tls_key [{}] does not fit server.tls_cert [{}]: {e}",
                key_file.display(),
                cert_file.display()
            )]
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls {
        cert_file: cert_file.to_path_buf(),
        key_file: key_file.to_path_buf(),
        config: Arc::new(config),
    })
}

/// A TCP listener whose connections come out TLS-terminated, for `axum::serve`. A background
/// task accepts and hands each handshake to its own task, so slow or broken clients only fail
/// themselves.
pub struct TlsListener {
    accepted: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: &ServerTls) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        let (tx, accepted) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            accepted,
            local,
            acceptor: task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The acceptor task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(dir: &Path, days_from: i64, days_to: i64) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days_from);
        params.not_after = now + time::Duration::days(days_to);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn valid_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = self_signed(dir.path(), -1, 30);
        let tls = server_tls(&c, &k).unwrap();
        assert_eq!(tls.cert_file, c);
    }

    #[test]
    fn expired_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = self_signed(dir.path(), -30, -1);
        let errors = server_tls(&c, &k).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("expired"), "{errors:?}");
        assert!(errors[0].contains(&c.display().to_string()), "{errors:?}");
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, _) = self_signed(dir.path(), -1, 30);
        let other = rcgen::KeyPair::generate().unwrap();
        let k = dir.path().join("other.pem");
        std::fs::write(&k, other.serialize_pem()).unwrap();
        let errors = server_tls(&c, &k).unwrap_err();
        assert!(errors[0].contains("does not fit"), "{errors:?}");
        assert!(errors[0].contains(&k.display().to_string()), "{errors:?}");
    }

    #[test]
    fn missing_and_garbage_files_are_both_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("garbage.pem");
        std::fs::write(&c, "not a certificate").unwrap();
        let k = dir.path().join("missing.pem");
        let errors = server_tls(&c, &k).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("garbage.pem"), "{errors:?}");
        assert!(errors[1].contains("missing.pem"), "{errors:?}");
    }
}
