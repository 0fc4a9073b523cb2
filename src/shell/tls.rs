//! HTTPS on the listener: `--tls-cert FILE --tls-key FILE` (PEM), served by rustls (the same
//! crypto provider the SMTP and webhook clients use). HTTP/2 and HTTP/1.1 are offered by
//! ALPN. The files are read once at start; a bad one stops the start with its path named.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::shell::settings::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("--tls-key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("--tls-cert / --tls-key: {0}")]
    Config(#[from] rustls::Error),
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |message: String| TlsError::Cert {
        path: path.to_path_buf(),
        message,
    };
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate (BEGIN CERTIFICATE) in the file".into()
        ));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error never holds key material: it is about the file (missing, no PEM section).
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_path_buf(),
        message: format!("{e} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)"),
    })
}

/// The acceptor for these files.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs(&files.cert)?, key(&files.key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
