//! Which certificate authorities the HTTP channels trust for `https://` endpoints.
//!
//! reqwest's default verifier (rustls-platform-verifier) reads the system's roots when the
//! client is built and refuses to build one when there are none: on a minimal base image
//! without `ca-certificates`, `serve` exited at start ("No CA certificates were loaded from
//! the system") even when every endpoint was `http://` or SMTP. So the system's roots are
//! used when the system has any (an operator's own CA keeps working), and otherwise the
//! Mozilla set built into the binary (webpki-root-certs, the same list Debian's
//! `ca-certificates` ships), said once in the log. SMTP over TLS (lettre) already checks
//! against the bundled Mozilla roots.

use std::sync::OnceLock;

/// Where the roots come from, decided once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The system's store (SSL_CERT_FILE / SSL_CERT_DIR, else the distribution's bundle).
    System(usize),
    /// None could be loaded: the Mozilla roots built into the binary.
    Bundled,
}

static ROOTS: OnceLock<Roots> = OnceLock::new();

/// The roots this process uses; the first call reads the system's store and logs the choice.
pub fn roots() -> Roots {
    *ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        let mut store = rustls::RootCertStore::empty();
        let (usable, _) = store.add_parsable_certificates(found.certs);
        if usable > 0 {
            tracing::debug!(
                roots = usable,
                "https:// endpoints use the system's CA roots"
            );
            return Roots::System(usable);
        }
        // File paths only, never contents: nothing secret.
        for e in &errors {
            tracing::warn!(error = %e, "cannot load the system's CA certificates");
        }
        tracing::info!(
            roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS.len(),
            "no CA certificates on this system (install ca-certificates, or set SSL_CERT_FILE \
             to a PEM bundle, to use your own); https:// endpoints are checked against the \
             bundled Mozilla roots"
        );
        Roots::Bundled
    })
}

/// The builder with the roots of [`roots`].
pub fn apply(b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    match roots() {
        Roots::System(_) => Ok(b),
        Roots::Bundled => {
            let certs = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| reqwest::Certificate::from_der(c))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(b.tls_certs_only(certs))
        }
    }
}
