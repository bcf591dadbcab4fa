//! TLS through redis-rs's rustls backend (cargo feature `tls`).

use std::sync::Once;

use redis::{ClientTlsConfig, ConnectionInfo, TlsCertificates};

use crate::config::Config;

fn read(path: &std::path::Path, what: &str) -> redis::RedisResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "cannot read TLS file",
            format!("{what} {}: {e}", path.display()),
        ))
    })
}

/// A client for `info` (a `TcpTls` address) with the configured CA and
/// client certificate.
pub(crate) fn make_client(cfg: &Config, info: ConnectionInfo) -> redis::RedisResult<redis::Client> {
    // rustls needs a process-wide crypto provider; install ring's unless
    // the application installed one already. rustls 0.23.48 deprecates
    // ring's (no post-quantum key exchange), but the other, aws-lc-rs, is a
    // large C library to build: an application that wants it installs it
    // before opening, and it is kept (docs/deployment.md, TLS).
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        #[allow(deprecated)]
        let ring = rustls::crypto::ring::default_provider();
        let _ = ring.install_default();
    });
    let root_cert = cfg.tls_ca.as_deref().map(|p| read(p, "CA certificate")).transpose()?;
    let client_tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(ClientTlsConfig {
            client_cert: read(c, "client certificate")?,
            client_key: read(k, "client key")?,
        }),
        _ => None,
    };
    redis::Client::build_with_tls(info, TlsCertificates { client_tls, root_cert })
}

/// The `rustls::Error` behind `err`, if the TLS layer raised it.
fn rustls_error(err: &redis::RedisError) -> Option<&rustls::Error> {
    use std::error::Error as StdError;
    let mut next: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = next.map(super::retry::unshared) {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // rustls reports through `io::Error`s whose payload is the
        // `rustls::Error`; `io::Error::source` skips the payload itself.
        if let Some(tls) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()?.downcast_ref()) {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

/// For an error raised by the TLS layer, what it most likely means and
/// what to change (rustls's own texts, such as "received fatal alert:
/// UnknownCA", leave the user guessing). `None` for other errors.
pub(crate) fn explain(err: &redis::RedisError) -> Option<&'static str> {
    use rustls::AlertDescription as A;
    let e = rustls_error(err)?;
    Some(match e {
        rustls::Error::InvalidCertificate(_) => {
            "the server's certificate is not trusted: set tls_ca or REDIS_TLS_CA to the CA that signed it, \
             and connect by a name or address the certificate was issued for"
        }
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate: set tls_cert and tls_key, or REDIS_TLS_CERT and REDIS_TLS_KEY"
        }
        rustls::Error::AlertReceived(
            A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::CertificateExpired | A::AccessDenied,
        ) => "the server rejected the client certificate: is tls_cert signed by a CA the server trusts?",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server did not answer in TLS: is this its TLS port?"
        }
        _ => "the TLS handshake or session failed",
    })
}
