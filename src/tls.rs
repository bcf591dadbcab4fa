//! TLS through redis-rs's rustls backend (cargo feature `tls`).

use std::sync::Once;

use redis::{ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, TlsCertificates};

use crate::config::Config;

static PROVIDER: Once = Once::new();

/// rustls needs a process-wide crypto provider; install ring's unless the
/// application installed one already.
fn install_provider() {
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(path: &std::path::Path, what: &str) -> redis::RedisResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "cannot read TLS file",
            format!("{what} {}: {e}", path.display()),
        ))
    })
}

pub(crate) fn make_client(
    cfg: &Config,
    host: &str,
    port: u16,
    settings: RedisConnectionInfo,
) -> redis::RedisResult<redis::Client> {
    install_provider();
    let root_cert = cfg.tls_ca.as_deref().map(|p| read(p, "CA certificate")).transpose()?;
    let client_tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(ClientTlsConfig {
            client_cert: read(c, "client certificate")?,
            client_key: read(k, "client key")?,
        }),
        _ => None,
    };
    let info = ConnectionAddr::TcpTls { host: host.to_string(), port, insecure: false, tls_params: None }
        .into_connection_info()?
        .set_redis_settings(settings)
        .set_tcp_settings(crate::connection::tcp_settings());
    redis::Client::build_with_tls(info, TlsCertificates { client_tls, root_cert })
}
