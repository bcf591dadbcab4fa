//! TLS for the tests of feature `tls`: a test PKI made with `openssl`, and
//! a redis-server with a TLS port.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::{free_port, RedisServer};

/// A test PKI made with `openssl` in a temp dir: a CA, a server
/// certificate for `127.0.0.1`/`localhost` signed by it, a client
/// certificate signed by it, and an unrelated second CA.
pub struct Certs {
    dir: TempDir,
}

impl Certs {
    /// Generates everything (P-256 keys, valid for 2 days). Panics with
    /// install advice if `openssl` is missing.
    pub fn generate() -> Certs {
        let dir = tempfile::Builder::new().prefix("tradecache-tls-").tempdir().expect("temp dir for certs");
        let certs = Certs { dir };
        certs.make_ca("ca", "tradecache test CA");
        certs.make_ca("other-ca", "unrelated CA");
        certs.make_leaf(
            "server",
            "127.0.0.1",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        certs.make_leaf("client", "tradecache client", "extendedKeyUsage=clientAuth\n");
        certs
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed nothing here (a "wrong CA").
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    /// The server certificate (SAN `IP:127.0.0.1`, `DNS:localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.crt")
    }

    /// The server's private key.
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// A client certificate signed by [`Self::ca`].
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.crt")
    }

    /// The client certificate's private key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    fn make_ca(&self, name: &str, cn: &str) {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    fn make_leaf(&self, name: &str, cn: &str, ext: &str) {
        let ext_file = format!("{name}.ext");
        fs::write(
            self.path(&ext_file),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
        )
        .expect("write extensions file");
        openssl(
            self.dir.path(),
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                &ext_file,
            ],
        );
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).stdin(Stdio::null()).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "openssl {} failed ({}):\n{}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run openssl ({e}): the TLS tests make their certificates with it. \
             Install it (Debian: apt-get install openssl), or run `scripts/ensure-redis` as root."
        ),
    }
}

/// A redis-server with a TLS port next to its plaintext one (the plaintext
/// port serves the readiness checks and assertions, and lets tests check
/// that a TLS client never talks plaintext).
pub struct TlsServer {
    /// The server; its `port()` is the plaintext port.
    pub server: RedisServer,
    /// The TLS port.
    pub tls_port: u16,
}

impl TlsServer {
    /// Starts a server with `tls-port`, the certificates of `certs`, and
    /// `tls-auth-clients yes` (mutual TLS) or `no`.
    pub fn start(certs: &Certs, auth_clients: bool) -> TlsServer {
        let tls_port = free_port();
        let server = RedisServer::builder()
            .appendonly(false)
            .arg("tls-port", tls_port.to_string())
            .arg("tls-cert-file", certs.server_cert().display().to_string())
            .arg("tls-key-file", certs.server_key().display().to_string())
            .arg("tls-ca-cert-file", certs.ca().display().to_string())
            .arg("tls-auth-clients", if auth_clients { "yes" } else { "no" })
            .start();
        TlsServer { server, tls_port }
    }
}
