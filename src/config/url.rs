//! URLs: [`Config::from_url`], and showing a URL without its password.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Config, Problems, Secret, PORT_ALLOWED};
use crate::error::ConfigError;

/// The port of a `redis://` URL without one.
pub(super) const DEFAULT_PORT: u16 = 6379;
pub(super) const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for HostPort {
    /// `host:port`, with an IPv6 address in brackets (`[::1]:6379`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Config {
    /// Applies a URL onto this configuration:
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
    ///
    /// The URL sets host, port (6379 if absent), username and password
    /// (none if absent), db (0 if absent) and tls; the user and password
    /// are percent-decoded (`p%40ss` is `p@ss`). IPv6 addresses go in
    /// brackets: `redis://[::1]:6379`. Query strings are not accepted.
    ///
    /// ```
    /// use tradecache::Config;
    ///
    /// let config = Config::builder().trader_id("T1").from_url("redis://:pw@10.0.0.5/3").unwrap();
    /// assert_eq!(config.redacted_url(), "redis://:<redacted>@10.0.0.5:6379/3");
    /// assert!(Config::builder().from_url("http://host").is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with one problem (field `url`) per defect found: a
    /// scheme other than `redis`/`rediss`, a missing or malformed host, a
    /// bad port or db, bad percent-encoding. The URL shown in it has its
    /// password replaced by `<redacted>`.
    pub fn from_url(mut self, url: &str) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        apply_url(&mut self, url, "url", &mut problems);
        problems.finish(self)
    }
}

/// Parses `url` and applies it to `c`, recording each problem under
/// `field`. On any problem, `c` is left unchanged.
pub(super) fn apply_url(c: &mut Config, url: &str, field: &str, problems: &mut Problems) {
    let shown = redact_url(url);
    let before = problems.0.len();
    let mut bad = |allowed: &str| problems.push(field, shown.as_str(), allowed);
    let url = url.trim();

    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme, rest),
        None => {
            bad("a URL of the form redis://[user[:password]@]host[:port][/db] (or rediss:// for TLS)");
            return;
        }
    };
    let tls = if scheme.eq_ignore_ascii_case("redis") {
        false
    } else if scheme.eq_ignore_ascii_case("rediss") {
        true
    } else {
        bad("the scheme redis:// or rediss:// (TLS)");
        false
    };

    // The user info ends at the last '@', so that an unencoded '@' or '/'
    // in a password does not end it early.
    let (userinfo, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (mut username, mut password) = (None, None);
    if let Some(info) = userinfo {
        let (user, pass) = match info.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (info, None),
        };
        match percent_decode(user) {
            Some(u) => username = Some(u).filter(|u| !u.is_empty()),
            None => bad("a percent-encoded user name (%XX with two hex digits, valid UTF-8)"),
        }
        if let Some(pass) = pass {
            match percent_decode(pass) {
                Some(p) => password = Some(p).filter(|p| !p.is_empty()),
                None => bad("a percent-encoded password (%XX with two hex digits, valid UTF-8)"),
            }
        }
    }

    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut node = None;
    if authority.is_empty() {
        bad("a host after redis:// (a host name, IPv4 address or [IPv6] address)");
    } else {
        match parse_host_port(authority, DEFAULT_PORT) {
            Ok(hp) => node = Some(hp),
            Err(all) => all.into_iter().for_each(&mut bad),
        }
    }

    let (path, query) = match path.find(['?', '#']) {
        Some(i) => (&path[..i], Some(&path[i..])),
        None => (path, None),
    };
    if query.is_some() {
        bad("no query string or fragment (put the database in the path: /0)");
    }
    let db_text = path.strip_prefix('/').unwrap_or(path);
    let db = if db_text.is_empty() {
        0
    } else {
        match db_text.parse::<i64>() {
            Ok(db) if db >= 0 => db,
            _ => {
                bad("a database number (0 or more) as the path: /0");
                0
            }
        }
    };

    if problems.0.len() > before {
        return;
    }
    if let Some(HostPort { host, port }) = node {
        c.host = host;
        c.port = port;
    }
    c.username = username;
    c.password = password.map(Secret);
    c.db = db;
    c.tls = tls;
}

/// `url` with the password (and anything else that might hold one: a
/// query string, or without user info a "port" that is not a number, as in
/// `redis://:secret`) replaced by `<redacted>`.
///
/// The user info is everything before the last `@`, after a well-formed
/// `scheme://` if the URL starts with one: a mistyped scheme or a `://`
/// inside the password does not move it (both found by tests/fuzz.rs).
fn redact_url(url: &str) -> String {
    let (head, rest) = url.split_at(scheme_prefix_len(url));
    let mut out = head.to_string();
    let rest = match rest.rfind('@') {
        Some(at) => {
            let info = &rest[..at];
            match info.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(info),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // `redis://:secret` or `redis://user:secret/0` (the '@' forgotten)
    // reads as a port that is not a number: hide it and all that follows
    // (with or without user info: `redis://@:secret` too).
    let after_ipv6 = if authority.starts_with('[') { authority.find(']').map_or(0, |i| i + 1) } else { 0 };
    if let Some(i) = authority[after_ipv6..].find(':').map(|i| i + after_ipv6) {
        if !authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&authority[..=i]);
            out.push_str(REDACTED);
            return out;
        }
    }
    out.push_str(authority);
    match tail.find(['?', '#']) {
        Some(i) => {
            out.push_str(&tail[..=i]);
            out.push_str(REDACTED);
        }
        None => out.push_str(tail),
    }
    out
}

/// The length of a leading `scheme://` (RFC 3986: a letter, then letters,
/// digits, `+`, `-`, `.`), or 0.
fn scheme_prefix_len(url: &str) -> usize {
    let b = url.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    let end = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))
        .unwrap_or(b.len());
    if url[end..].starts_with("://") {
        end + 3
    } else {
        0
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes everything but unreserved characters, for the user of a URL.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn parse_port(text: &str) -> Result<u16, &'static str> {
    match text.parse::<u64>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(PORT_ALLOWED),
    }
}

/// `host`, `host:port`, `[ipv6]` or `[ipv6]:port`; every problem found.
pub(super) fn parse_host_port(item: &str, default_port: u16) -> Result<HostPort, Vec<&'static str>> {
    const IPV6: &str = "an IPv6 address in brackets: [::1]:6379";
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(vec![IPV6]);
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(vec![IPV6]);
        }
        match (after, after.strip_prefix(':')) {
            ("", _) => (host, None),
            (_, Some(port)) => (host, Some(port)),
            (_, None) => return Err(vec!["host:port, or [ipv6]:port"]),
        }
    } else if item.matches(':').count() > 1 {
        return Err(vec!["host:port, with an IPv6 address in brackets: [::1]:6379"]);
    } else {
        match item.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (item, None),
        }
    };
    let mut problems = Vec::new();
    if let Some(allowed) = host_problem(host) {
        problems.push(allowed);
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => parse_port(p).unwrap_or_else(|allowed| {
            problems.push(allowed);
            0
        }),
    };
    if problems.is_empty() {
        Ok(HostPort { host: host.to_string(), port })
    } else {
        Err(problems)
    }
}

/// What is wrong with `host`, if anything: it must be a host name, an IPv4
/// address or an IPv6 address without brackets.
pub(super) fn host_problem(host: &str) -> Option<&'static str> {
    const NAME: &str = "a host name (letters, digits, '-', '.', '_'), an IPv4 address, \
                        or an IPv6 address without brackets";
    if host.is_empty() {
        return Some("a host name or IP address (not empty)");
    }
    if host.contains(':') {
        return host.parse::<Ipv6Addr>().is_err().then_some(NAME);
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host.parse::<Ipv4Addr>().is_err().then_some(NAME);
    }
    let ok = host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.starts_with(['.', '-']);
    (!ok).then_some(NAME)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    // --- URLs ---

    fn url(u: &str) -> Result<Config, ConfigError> {
        Config::default().from_url(u)
    }

    #[test]
    fn url_forms() {
        let c = url("redis://localhost").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db, c.tls), ("localhost", 6379, 0, false));
        assert_eq!((c.username.clone(), c.password.clone()), (None, None));

        let c = url("rediss://cache.example.com:6380/5").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db, c.tls), ("cache.example.com", 6380, 5, true));

        let c = url("redis://alice:s3cret@10.1.2.3:7000/1").unwrap();
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password, Some(Secret("s3cret".into())));
        assert_eq!((c.host.as_str(), c.port, c.db), ("10.1.2.3", 7000, 1));

        let c = url("redis://:onlypass@h/").unwrap();
        assert_eq!((c.username.clone(), c.password.clone()), (None, Some(Secret("onlypass".into()))));

        let c = url("REDIS://[::1]:6390").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 6390));

        // Percent-encoded user and password; an unencoded '@' in a password.
        let c = url("redis://us%3Aer:p%40ss%2Fw%3Ard%25@h:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("us:er"));
        assert_eq!(c.password, Some(Secret("p@ss/w:rd%".into())));
        let c = url("redis://u:p@ss@h").unwrap();
        assert_eq!(c.password, Some(Secret("p@ss".into())));
        assert_eq!(c.host, "h");

        // A URL replaces earlier connection settings; other settings stay.
        let c = Config::builder()
            .username("old")
            .password("old")
            .db(9)
            .tls(true)
            .trader_id("T7")
            .from_url("redis://new-host")
            .unwrap();
        assert_eq!((c.username, c.password, c.db, c.tls), (None, None, 0, false));
        assert_eq!(c.trader_id, "T7");
    }

    #[test]
    fn url_errors() {
        let cases: &[(&str, usize)] = &[
            ("http://h:6379", 1),
            ("localhost:6379", 1),
            ("redis://", 1),
            ("redis://:6379/0", 1),
            ("redis://h:abc", 1),
            ("redis://h:0", 1),
            ("redis://h:65536", 1),
            ("redis://h/abc", 1),
            ("redis://h/-1", 1),
            ("redis://h/0?db=1", 1),
            ("redis://::1:6379", 1),
            ("redis://[::1", 1),
            ("redis://bad host", 1),
            ("redis://u:p%zz@h", 1),
            ("redis://u:%ff@h", 1),
            ("ftp://u:p@:abc/x", 4),
        ];
        for (u, n) in cases {
            let e = problems(url(u));
            assert_eq!(e.problems.len(), *n, "{u}: {e}");
            assert!(e.problems.iter().all(|p| p.field == "url"), "{u}: {e}");
        }
        // The env variable is named as the field.
        let e = problems(from(&[("REDIS_URL", "redis://h:0")]));
        assert_eq!(fields(&e), vec!["REDIS_URL"]);
        assert_eq!(e.problems[0].value, "redis://h:0");
    }

    #[test]
    fn url_errors_hide_password() {
        let p = PASSWORD;
        for u in [
            format!("redis://user:{p}@h:notaport/0"),
            format!("redis://:{p}@/0"),
            format!("http://user:{p}@h"),
            format!("redis://user:{p}/with/slash@h:x"),
            format!("redis://user:{p}%zz@h"),
            format!("redis://:{p}"),
            format!("redis:/user:{p}@h:x"),
            format!("redis://h/0?password={p}"),
        ] {
            let e = problems(url(&u));
            assert_no_secret(&e, p);
            assert!(e.problems[0].value.contains(REDACTED), "{u}: {e}");
        }
        // A port that is not a number is hidden too (it may be a password
        // whose '@' was forgotten; tests/fuzz.rs found `redis://@:secret`).
        let e = problems(url(&format!("redis://alice:{p}@h:x/0")));
        assert_eq!(e.problems[0].value, "redis://alice:<redacted>@h:<redacted>");
    }

    #[test]
    fn redact_url_cases() {
        assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_url("redis://u@h"), "redis://u@h");
        assert_eq!(redact_url("redis://u:pw@h"), "redis://u:<redacted>@h");
        assert_eq!(redact_url("redis://[::1]:6379"), "redis://[::1]:6379");
        assert_eq!(redact_url("u:pw@h"), "u:<redacted>@h");
        // Found by tests/fuzz.rs (config_url): "://" after the user info,
        // or inside the password.
        assert_eq!(redact_url("redis:/:pw@localhost://"), "redis:<redacted>@localhost://");
        assert_eq!(redact_url("redis:pw@h"), "redis:<redacted>@h");
        assert_eq!(redact_url("redis:/:pw://@localhost"), "redis:<redacted>@localhost");
        assert_eq!(redact_url("redis://u:p://w@h:1/2"), "redis://u:<redacted>@h:1/2");
        // The '@' forgotten: the non-number port and all after it.
        assert_eq!(redact_url("redis://:secret"), "redis://:<redacted>");
        assert_eq!(redact_url("redis://u:se/cret?x"), "redis://u:<redacted>");
        assert_eq!(redact_url("redis://[::1]:6379/0?x"), "redis://[::1]:6379/0?<redacted>");
        assert_eq!(redact_url("redis://@:secret"), "redis://@:<redacted>");
        assert_eq!(redact_url("redis://:secret:"), "redis://:<redacted>");
        assert_eq!(redact_url("redis://[::1]"), "redis://[::1]");
        assert_eq!(redact_url("redis://[::1]:x"), "redis://[::1]:<redacted>");
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_decode("a%20b%2F").as_deref(), Some("a b/"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_encode("a b:@~"), "a%20b%3A%40~");
    }
}
