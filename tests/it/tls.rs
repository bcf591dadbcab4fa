//! TLS (cargo feature `tls`): a verified connection round-trips, mutual TLS
//! works, a wrong CA or a missing client certificate fails `open` clearly,
//! and a TLS client never falls back to plaintext (nor the reverse).

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::tls::{Certs, TlsServer};
use crate::harness::*;
use tradecache::model::Position;
use tradecache::{Cache, Config, Error, ErrorKind, Ident};

/// A config for the TLS port of `server`, trusting `ca`.
fn tls_config(server: &TlsServer, ca: std::path::PathBuf, trader: &str) -> Config {
    tls_config_system_roots(server, trader).tls_ca(ca)
}

/// A config for the TLS port of `server`, trusting the system's roots.
fn tls_config_system_roots(server: &TlsServer, trader: &str) -> Config {
    // A TLS handshake takes more CPU than the plaintext connects the
    // harness's 500 ms bound is made for: on a loaded machine it outlasted
    // it, and `open` failed with a timeout. A bound, not an assertion.
    config(server.tls_port, trader).tls(true).connect_timeout(Duration::from_secs(5))
}

/// `Cache::open(cfg)` fails with [`ErrorKind::Tls`], the text says TLS,
/// and the TLS failure was not retried: it ended the attempts. An attempt
/// before it may have failed for a reason a retry can fix (on a loaded
/// machine, the handshake can outlast `connect_timeout`), and been retried;
/// so the attempts are read from the log `open` writes for each, not
/// assumed to be one.
fn open_fails_with_tls(cfg: Config) {
    capture_logs();
    let from = logged().len();
    let err = Cache::open(cfg).unwrap_err();
    eprintln!("expected TLS failure: {err}");
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("(TLS: "), "{err}");
    let Error::Connect { addr, attempts, .. } = &err else { panic!("not a connect error: {err:?}") };
    // This test's server owns its port: no other test logs attempts to it.
    let tries: Vec<String> = logged()
        .split_off(from)
        .into_iter()
        .filter(|l| l.contains(&format!(" to {addr} failed: ")))
        .collect();
    let tls_at: Vec<usize> =
        tries.iter().enumerate().filter(|(_, l)| l.contains("(TLS: ")).map(|(i, _)| i).collect();
    if tries.len() > 1 {
        eprintln!("retried before the TLS failure: {tries:#?}");
    }
    assert_eq!(tries.len(), *attempts as usize, "one log line per attempt: {tries:#?}");
    assert_eq!(
        tls_at,
        [tries.len() - 1],
        "a TLS failure is not retried, and only the last attempt met one: {tries:#?}"
    );
}

/// Writes an order with events and a position, flushes, loads them back.
fn round_trip(cache: &Cache) {
    let order = write_order_and_position(cache);
    cache.flush(Duration::from_secs(10)).unwrap();
    let snap = cache.load().unwrap();
    assert_eq!(snap.orders, vec![order]);
    assert_eq!(snap.order_events[&Ident::new("O-1").unwrap()].len(), 2);
    assert_eq!(snap.positions, vec![Position::example("P-1")]);
    assert!(snap.report.is_clean(), "{:?}", snap.report);
    // Point reads go over TLS too, on their own connection.
    assert_eq!(cache.get::<Position>("P-1").unwrap(), Some(Position::example("P-1")));
    assert_eq!(cache.get_events::<tradecache::model::OrderEvent>("O-1").unwrap().len(), 2);
}

#[test]
fn verified_connection_round_trips_and_reconnects_over_tls() {
    let certs = Certs::generate();
    let server = TlsServer::start(&certs, false);
    let cache = Cache::open(tls_config(&server, certs.ca(), "TLS1")).unwrap();
    round_trip(&cache);

    // The server sees the flusher as a TLS client (its last command was
    // the GET of its marker, after EXEC); after its connection is killed, it comes back over TLS and
    // goes on writing.
    let mut admin = server.server.client();
    let admin_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut admin).unwrap();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let tls_laddr = format!("laddr=127.0.0.1:{} ", server.tls_port);
    let flusher = clients
        .lines()
        .find(|l| l.contains(&tls_laddr) && l.contains(" cmd=get "))
        .unwrap_or_else(|| panic!("no flusher connection on the TLS port:\n{clients}"));
    let id = flusher.split(' ').find_map(|f| f.strip_prefix("id=")).unwrap();
    let _: () = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query(&mut admin).unwrap();
    for n in 1..=100 {
        cache.append("A", &Tick { n }).unwrap();
    }
    cache.flush(Duration::from_secs(10)).unwrap();
    assert_exactly_once(&ticks(&mut admin, "TLS1", "A"), 100);
    assert!(cache.stats().reconnects >= 1, "{:?}", cache.stats());
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let others: Vec<&str> = clients.lines().filter(|l| !l.starts_with(&format!("id={admin_id} "))).collect();
    assert!(
        !others.is_empty() && others.iter().all(|l| l.contains(&tls_laddr)),
        "a connection not on the TLS port:\n{clients}"
    );
    cache.close(Duration::from_secs(5)).unwrap();
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let certs = Certs::generate();
    let server = TlsServer::start(&certs, true);
    let with_cert =
        tls_config(&server, certs.ca(), "MTLS").tls_cert(certs.client_cert()).tls_key(certs.client_key());
    let cache = Cache::open(with_cert).unwrap();
    round_trip(&cache);
    cache.close(Duration::from_secs(5)).unwrap();

    // Without one, the server ends the handshake and `open` says so.
    open_fails_with_tls(tls_config(&server, certs.ca(), "MTLS"));

    // A client certificate the server's CA did not sign is refused too.
    let other = Certs::generate();
    let foreign =
        tls_config(&server, certs.ca(), "MTLS").tls_cert(other.client_cert()).tls_key(other.client_key());
    open_fails_with_tls(foreign);
}

#[test]
fn wrong_ca_fails_open_clearly() {
    let certs = Certs::generate();
    let server = TlsServer::start(&certs, false);
    open_fails_with_tls(tls_config(&server, certs.other_ca(), "TLS2"));

    // Without a CA, the system roots are used: they do not know ours either.
    open_fails_with_tls(tls_config_system_roots(&server, "TLS2"));

    // A CA file that does not exist is named in the error.
    let missing = certs.ca().with_file_name("missing.crt");
    let err = Cache::open(tls_config(&server, missing.clone(), "TLS2")).unwrap_err();
    assert!(err.to_string().contains("missing.crt"), "{err}");
    // ... as a configuration problem at once, not after connect retries.
    assert!(matches!(&err, tradecache::Error::Config(c) if c.mentions("tls_ca")), "{err:?}");
}

#[test]
fn no_fallback_between_tls_and_plaintext() {
    let certs = Certs::generate();
    let server = TlsServer::start(&certs, false);
    // TLS asked, plaintext port: the handshake fails, nothing is sent in clear.
    // (Redis reads the client hello as an unfinished inline command and
    // waits: the handshake times out.)
    let err = Cache::open(config(server.server.port(), "TLS3").tls(true).tls_ca(certs.ca())).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Tls), "{err}");
    assert!(err.to_string().contains("TLS port"), "{err}");
    // Plaintext asked, TLS port: the server does not speak RESP in clear.
    let err = Cache::open(config(server.tls_port, "TLS3")).unwrap_err();
    eprintln!("plaintext to the TLS port: {err}");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    // Neither wrote anything.
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut server.server.client()).unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn rediss_url_and_tls_variables() {
    let certs = Certs::generate();
    let server = TlsServer::start(&certs, true);
    let vars: HashMap<&str, String> = HashMap::from([
        ("REDIS_URL", format!("rediss://127.0.0.1:{}/3", server.tls_port)),
        ("REDIS_TLS_CA", certs.ca().display().to_string()),
        ("REDIS_TLS_CERT", certs.client_cert().display().to_string()),
        ("REDIS_TLS_KEY", certs.client_key().display().to_string()),
        ("REDIS_TIMEOUT", "2".to_string()),
        ("CACHE_TRADER_ID", "ENV1".to_string()),
        ("CACHE_CONNECT_ATTEMPTS", "2".to_string()),
    ]);
    let cfg = Config::from_vars(|k| vars.get(k).cloned()).unwrap();
    let cache = Cache::open(cfg).unwrap();
    round_trip(&cache);
    cache.close(Duration::from_secs(5)).unwrap();
    let mut admin = server.server.client();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut admin).unwrap();
    let n: u64 = redis::cmd("EXISTS").arg("trader-ENV1:positions:P-1").query(&mut admin).unwrap();
    assert_eq!(n, 1, "the URL's database 3 holds the data");

    // REDIS_SSL=true with host and port does the same.
    let vars: HashMap<&str, String> = HashMap::from([
        ("REDIS_HOST", "127.0.0.1".to_string()),
        ("REDIS_PORT", server.tls_port.to_string()),
        ("REDIS_SSL", "true".to_string()),
        ("REDIS_TLS_CA", certs.ca().display().to_string()),
        ("REDIS_TLS_CERT", certs.client_cert().display().to_string()),
        ("REDIS_TLS_KEY", certs.client_key().display().to_string()),
        ("CACHE_TRADER_ID", "ENV2".to_string()),
    ]);
    let cache = Cache::open(Config::from_vars(|k| vars.get(k).cloned()).unwrap()).unwrap();
    round_trip(&cache);
    cache.close(Duration::from_secs(5)).unwrap();
}
