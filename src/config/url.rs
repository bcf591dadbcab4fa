//! URLs ([`Config::from_url`], and showing one without its password, with
//! the `url` crate), the `host:port` lists of `REDIS_SENTINELS` and
//! `REDIS_CLUSTER`, and the host rules that parsing and validation share.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::{Host, ParseError as E, Url};

use super::table::Refused;
use super::{Config, Problems, Secret, PORT_ALLOWED, REDACTED};
use crate::error::ConfigError;

/// Shown for a URL that does not parse or whose password was split.
pub(super) const UNPARSEABLE: &str = "<unparseable URL>";

const FORM: &str = "a URL of the form redis://[user[:password]@]host[:port][/db] (or rediss:// for TLS)";
const HOST_NAME: &str = "a host name (letters, digits, '-', '.', '_'), an IPv4 address, \
                         or an IPv6 address without brackets";
const PORT_AFTER_HOST: &str = "a port number from 1 to 65535 after the host (and '@', '/', '?' and '#' \
                               in a password percent-encoded)";
const IPV6: &str = "an IPv6 address in brackets: [::1]:6379";
const SPLIT_PASSWORD: &str = "a user and password with '@', '/', '?' and '#' percent-encoded \
                              (%40, %2F, %3F, %23): the '@' that ends them must be the last";

/// RFC 3986's unreserved characters, which a user name keeps unescaped.
const USER_KEEPS: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A `host:port` pair (sentinels, cluster seed nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for HostPort {
    /// `host:port`, with an IPv6 address in brackets (`[::1]:6379`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, close) = if self.host.contains(':') { ("[", "]") } else { ("", "") };
        write!(f, "{open}{}{close}:{}", self.host, self.port)
    }
}

impl Config {
    /// Applies a URL onto this configuration:
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
    ///
    /// The URL sets host, port (6379 if absent), username and password
    /// (none if absent), db (0 if absent) and tls; the user and password
    /// are percent-decoded (`p%40ss` is `p@ss`), and an `@`, `/`, `?`, `#`
    /// or `%` in them must be percent-encoded. IPv6 addresses go in
    /// brackets: `redis://[::1]:6379`. Query strings are not accepted.
    ///
    /// ```
    /// use tradecache::Config;
    ///
    /// let config = Config::builder().trader_id("T1").from_url("redis://:pw@10.0.0.5/3").unwrap();
    /// assert_eq!(config.redacted_url(), "redis://:<redacted>@10.0.0.5:6379/3");
    /// assert!(Config::builder().from_url("http://host").is_err());
    /// let err = Config::builder().from_url("redis://user:pass/word@host").unwrap_err();
    /// assert_eq!(err.problems[0].value, "<unparseable URL>");
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with one problem (field `url`) per defect found: a
    /// scheme other than `redis`/`rediss`, a missing or malformed host, a
    /// bad port or db, bad percent-encoding. The URL shown in it has its
    /// password replaced by `<redacted>`, or is `<unparseable URL>` when it
    /// cannot be parsed (it is never echoed).
    pub fn from_url(mut self, url: &str) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        if let Err(refused) = apply_url(&mut self, url) {
            problems.refused("url", UNPARSEABLE, refused);
        }
        problems.finish(self)
    }

    /// `redis[s]{plus}://`, then `user:<redacted>@`, `:<redacted>@`, `user@`
    /// or nothing (the user percent-encoded).
    pub(super) fn url_start(&self, plus: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self.username.as_deref().map(|u| utf8_percent_encode(u, USER_KEEPS).to_string());
        let userinfo = match (user, &self.password) {
            (user, Some(_)) => format!("{}:{REDACTED}@", user.unwrap_or_default()),
            (Some(user), None) => format!("{user}@"),
            (None, None) => String::new(),
        };
        format!("{scheme}{plus}://{userinfo}")
    }
}

/// A URL that can be shown: it parses, is written `scheme://…` (the
/// parser repairs `http:user@host` into `http://user@host`, which would
/// show a password typed after the scheme as the user), has a host, and
/// no `@` after its host (which would mean that an unencoded `/`, `?` or
/// `#` cut a password short, leaving the rest of it in the path).
fn parse(text: &str) -> Result<Url, &'static str> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|e| match e {
        E::EmptyHost => "a host after redis:// (a host name, IPv4 address or [IPv6] address)",
        E::InvalidPort => PORT_AFTER_HOST,
        E::InvalidIpv6Address => IPV6,
        E::InvalidIpv4Address | E::InvalidDomainCharacter | E::IdnaError => HOST_NAME,
        _ => FORM,
    })?;
    let written = text.get(url.scheme().len()..).is_some_and(|rest| rest.starts_with("://"));
    if !written || !url.has_host() {
        return Err(FORM);
    }
    let after_host = [Some(url.path()), url.query(), url.fragment()];
    if after_host.into_iter().flatten().any(|part| part.contains('@')) {
        return Err(SPLIT_PASSWORD);
    }
    Ok(url)
}

/// `url` as a message may show it: `<redacted>` for the password and for
/// anything else that might hold one: a query, a fragment, a path that is
/// not a database number, and the user with a scheme other than `redis[s]`
/// (`user://pass@host` is `user:` and password `//pass`, scheme forgotten).
fn shown(url: &Url) -> String {
    let userinfo = match (url.username(), url.password()) {
        ("", None) => String::new(),
        _ if !matches!(url.scheme(), "redis" | "rediss") => format!("{REDACTED}@"),
        (user, None) => format!("{user}@"),
        (user, Some(_)) => format!("{user}:{REDACTED}@"),
    };
    let port = url.port().map_or(String::new(), |port| format!(":{port}"));
    let path = url.path();
    let db_like =
        path.strip_prefix('/').is_some_and(|db| db.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
    let path = if path.is_empty() || db_like { path.to_string() } else { format!("/{REDACTED}") };
    let query = url.query().map_or(String::new(), |_| format!("?{REDACTED}"));
    let fragment = url.fragment().map_or(String::new(), |_| format!("#{REDACTED}"));
    let host = url.host_str().unwrap_or_default();
    format!("{}://{userinfo}{host}{port}{path}{query}{fragment}", url.scheme())
}

/// Applies the URL `text` to `c`, which any problem leaves unchanged.
pub(super) fn apply_url(c: &mut Config, text: &str) -> Result<(), Refused> {
    let url = parse(text).map_err(|allowed| Refused(vec![(Some(UNPARSEABLE.into()), allowed.into())]))?;
    let (username, password) = (percent_decode(url.username()), url.password().map(percent_decode));
    // An IPv6 address without the brackets of its `Display`.
    let host = match url.host() {
        Some(Host::Ipv6(addr)) => addr.to_string(),
        host => host.map_or(String::new(), |h| h.to_string()),
    };
    let port = url.port().unwrap_or(6379);
    let db = url.path().strip_prefix('/').unwrap_or(url.path());
    let db = if db.is_empty() { Some(0) } else { db.parse::<i64>().ok().filter(|db| *db >= 0) };
    let problems = [
        (!matches!(url.scheme(), "redis" | "rediss")).then_some("the scheme redis:// or rediss:// (TLS)"),
        username.is_none().then_some("a percent-encoded user name (%XX with two hex digits, valid UTF-8)"),
        (password == Some(None))
            .then_some("a percent-encoded password (%XX with two hex digits, valid UTF-8)"),
        host_problem(&host),
        (port == 0).then_some(PORT_ALLOWED),
        (url.query().is_some() || url.fragment().is_some())
            .then_some("no query string or fragment (put the database in the path: /0)"),
        db.is_none().then_some("a database number (0 or more) as the path: /0"),
    ];
    let shown = shown(&url);
    let refused: Vec<_> = problems.into_iter().flatten().map(|a| (Some(shown.clone()), a.into())).collect();
    let (true, Some(username), Some(db)) = (refused.is_empty(), username, db) else {
        return Err(Refused(refused));
    };
    let username = Some(username).filter(|u| !u.is_empty());
    let password = password.flatten().filter(|p| !p.is_empty()).map(Secret);
    *c = Config { host, port, username, password, db, tls: url.scheme() == "rediss", ..std::mem::take(c) };
    Ok(())
}

/// Decodes `%XX` escapes; `None` for a `%` without two hex digits, or not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let hex = |h: &str| h.get(..2).is_some_and(|h| h.as_bytes().iter().all(u8::is_ascii_hexdigit));
    let decoded = percent_decode_str(s).decode_utf8().ok()?;
    s.split('%').skip(1).all(hex).then(|| decoded.into())
}

/// `host`, `host:port`, `[ipv6]` or `[ipv6]:port`; every problem found.
fn parse_host_port(item: &str, default_port: u16) -> Result<HostPort, Vec<&'static str>> {
    let (host, port) = match item.strip_prefix('[').map(|rest| rest.split_once(']')) {
        Some(None) => return Err(vec![IPV6]),
        Some(Some((host, _))) if host.parse::<Ipv6Addr>().is_err() => return Err(vec![IPV6]),
        Some(Some((host, ""))) => (host, None),
        Some(Some((host, after))) if after.starts_with(':') => (host, Some(&after[1..])),
        Some(Some(_)) => return Err(vec!["host:port, or [ipv6]:port"]),
        None if item.matches(':').count() > 1 => {
            return Err(vec!["host:port, with an IPv6 address in brackets: [::1]:6379"])
        }
        None => item.split_once(':').map_or((item, None), |(host, port)| (host, Some(port))),
    };
    let port = port
        .filter(|p| !p.is_empty())
        .map_or(Ok(default_port), |p| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or(PORT_ALLOWED));
    match (host_problem(host), port) {
        (None, Ok(port)) => Ok(HostPort { host: host.to_string(), port }),
        (host, port) => Err(host.into_iter().chain(port.err()).collect()),
    }
}

/// What is wrong with `host`, if anything: it must be a host name, an IPv4
/// address or an IPv6 address without brackets.
pub(super) fn host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        return Some("a host name or IP address (not empty)");
    }
    let ok = if host.contains(':') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        host.parse::<IpAddr>().is_ok()
    } else {
        let name_byte = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        host.len() <= 253 && host.bytes().all(name_byte) && !host.starts_with(['.', '-'])
    };
    (!ok).then_some(HOST_NAME)
}

/// `host:port,host:port`, empty items skipped; one problem per defect.
pub(crate) fn host_list(v: &str, default_port: u16) -> Result<Vec<HostPort>, Refused> {
    let (mut nodes, mut refused) = (Vec::new(), Vec::new());
    for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse_host_port(item, default_port) {
            Ok(node) => nodes.push(node),
            Err(all) => refused.extend(all.into_iter().map(|a| (Some(item.to_string()), a.into()))),
        }
    }
    refused.is_empty().then_some(nodes).ok_or(Refused(refused))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::test_util::*;
    use super::*;

    fn url(u: &str) -> Result<Config, ConfigError> {
        Config::default().from_url(u)
    }

    /// What a problem about `text` shows of it.
    fn redact_url(text: &str) -> String {
        parse(text).map_or_else(|_| UNPARSEABLE.to_string(), |url| shown(&url))
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
        let c = url("  redis://Redis-1.Internal  ").unwrap();
        assert_eq!(c.host, "Redis-1.Internal");

        // Percent-encoded user and password; an unencoded '@' (or ':') in a
        // password: the user info ends at the last '@'.
        let c = url("redis://us%3Aer:p%40ss%2Fw%3Ard%25@h:1").unwrap();
        assert_eq!(c.username.as_deref(), Some("us:er"));
        assert_eq!(c.password, Some(Secret("p@ss/w:rd%".into())));
        let c = url("redis://u:p@s:s@h").unwrap();
        assert_eq!(c.password, Some(Secret("p@s:s".into())));
        assert_eq!(c.host, "h");
        let c = url("redis://%E2%82%AC:\u{20ac}%F0%9F%94%91@h").unwrap();
        assert_eq!(c.username.as_deref(), Some("\u{20ac}"));
        assert_eq!(c.password, Some(Secret("\u{20ac}\u{1f511}".into())));

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
            ("", 1),
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
            ("redis://h/0#x", 1),
            ("redis://::1:6379", 1),
            ("redis://[::1", 1),
            ("redis://bad host", 1),
            ("redis://999.1.1.1", 1),
            ("redis://u:p%zz@h", 1),
            ("redis://u:p%4@h", 1),
            ("redis://u:%ff@h", 1),
            ("redis://u%zz:p@h", 1),
            ("unix:///tmp/redis.sock", 1),
            ("unix://u:p@h:0/x?y", 4),
        ];
        for (u, n) in cases {
            let e = problems(url(u));
            assert_eq!(e.problems.len(), *n, "{u}: {e}");
            assert!(e.problems.iter().all(|p| p.field == "url"), "{u}: {e}");
            assert!(e.problems.iter().all(|p| !p.allowed.is_empty()), "{u}: {e}");
        }
        // The env variable is named as the field.
        let e = problems(from(&[("REDIS_URL", "redis://h:0")]));
        assert_eq!(fields(&e), vec!["REDIS_URL"]);
        assert_eq!(e.problems[0].value, "redis://h:0");
        // What does not parse is never echoed.
        let e = problems(url("redis://h:65536"));
        assert_eq!(e.problems[0].value, UNPARSEABLE);
        assert_eq!(e.problems[0].allowed, PORT_AFTER_HOST);
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
            format!("redis://h/{p}"),
            format!("redis://u:12/{p}@h"),
            format!("redis://u:{p}#x@h"),
        ] {
            let e = problems(url(&u));
            assert_no_secret(&e, p);
            let shown = &e.problems[0].value;
            assert!(shown.contains(REDACTED) || shown == UNPARSEABLE, "{u}: {e}");
        }
    }

    #[test]
    fn redact_url_cases() {
        for (text, shown) in [
            ("redis://h:6379/0", "redis://h:6379/0"),
            ("redis://u@h", "redis://u@h"),
            ("redis://u:pw@h", "redis://u:<redacted>@h"),
            ("redis://:pw@h/2", "redis://:<redacted>@h/2"),
            ("redis://u:p@w@h", "redis://u:<redacted>@h"),
            ("redis://[::1]:6379", "redis://[::1]:6379"),
            ("redis://[::1]:6379/0?x", "redis://[::1]:6379/0?<redacted>"),
            ("redis://h/0#pw", "redis://h/0#<redacted>"),
            ("redis://h/pw", "redis://h/<redacted>"),
            ("redis://h/-1", "redis://h/-1"),
            ("http://u:pw@h", "http://<redacted>@h/"),
            ("user://pw@h", "user://<redacted>@h"),
            // Not parseable, or a password cut short by '/', '?' or '#'
            // (found by tests/it/fuzz.rs against the hand-written parser).
            ("u:pw@h", UNPARSEABLE),
            ("redis:/:pw@localhost://", UNPARSEABLE),
            ("redis:pw@h", UNPARSEABLE),
            ("redis:/:pw://@localhost", UNPARSEABLE),
            ("redis://u:p://w@h:1/2", UNPARSEABLE),
            ("redis://:secret", UNPARSEABLE),
            ("redis://u:se/cret?x", UNPARSEABLE),
            ("redis://@:secret", UNPARSEABLE),
            ("redis://:secret:", UNPARSEABLE),
            ("redis://[::1]:x", UNPARSEABLE),
            ("redis://u:12/pw@h", UNPARSEABLE),
            ("redis://u:12?pw@h", UNPARSEABLE),
            ("http:pw@h", UNPARSEABLE),
            ("http:/pw@h", UNPARSEABLE),
            ("http:\\\\u:pw@h", UNPARSEABLE),
        ] {
            assert_eq!(redact_url(text), shown, "{text}");
        }
    }

    #[test]
    fn percent_coding() {
        assert_eq!(percent_decode("a%20b%2F").as_deref(), Some("a b/"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("\u{20ac}"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
        let c = Config::builder().username("a b:@~").password("x");
        assert_eq!(c.url_start(""), "redis://a%20b%3A%40~:<redacted>@");
    }

    /// Characters that need care in a URL's user info, and unicode.
    fn password() -> impl Strategy<Value = String> {
        // Pieces that can only come from the password ("Q" and three
        // digits: never a port, a host or a word of a message), joined by
        // characters that end or split URL parts.
        let piece = "Q[0-9]{3}";
        let sep = prop::sample::select(vec![
            "@",
            ":",
            "/",
            "%",
            "#",
            "?",
            "%4",
            "%zz",
            "%25",
            "@:",
            "://",
            "\u{20ac}",
            "\u{1f511}",
            "\u{e9}",
            " ",
            "[",
            "]",
            "",
            "",
        ]);
        prop::collection::vec((sep, piece), 1..5).prop_flat_map(|parts| {
            prop::sample::select(vec!["", "@", "/", "%", ":"]).prop_map(move |lead| {
                let mut s = lead.to_string();
                for (sep, piece) in &parts {
                    s.push_str(sep);
                    s.push_str(piece);
                }
                s
            })
        })
    }

    /// Each `Q123` piece of `password` that `text` shows.
    fn fragments_in(password: &str, text: &str) -> Vec<String> {
        let pieces = password.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| p.starts_with('Q'));
        pieces.filter(|p| text.contains(*p)).map(String::from).collect()
    }

    fn check(password: &str, what: &str, text: &str) -> Result<(), TestCaseError> {
        let seen = fragments_in(password, text);
        prop_assert!(seen.is_empty(), "{} shows {:?} of {:?}: {}", what, seen, password, text);
        Ok(())
    }

    /// Everything a configuration or an error shows of `c`.
    fn check_config(password: &str, c: &Config) -> Result<(), TestCaseError> {
        check(password, "Debug", &format!("{c:?} {c:#?}"))?;
        check(password, "redacted_url", &c.redacted_url())?;
        if let Err(e) = c.validate() {
            check(password, "validate", &format!("{e} {e:?}"))?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        /// No piece of a password ever shows in `redacted_url()`, `Debug`
        /// or a `ConfigError`, however it is given: to the setter, in
        /// `REDIS_PASSWORD`, or in a URL (percent-encoded or raw, in a
        /// URL with other defects or none).
        #[test]
        fn password_never_shows(
            pw in password(),
            user in prop::sample::select(vec!["", "engine", "a%40b", "\u{e9}"]),
            tail in prop::sample::select(vec!["", "/0", ":6380/2", ":0", ":x/1", "/db", "/0?x=1", "#f"]),
            scheme in prop::sample::select(vec!["redis://", "rediss://", "http://", "redis:/", "http:", "", "HTTP:/"]),
        ) {
            let c = Config::builder().username(user).password(pw.as_str());
            check_config(&pw, &c)?;
            check_config(&pw, &c.clone().tls(true).sentinels([("s1", 1)]).sentinel_master("m"))?;
            check_config(&pw, &c.clone().cluster_nodes([("n1", 1)]).db(3))?;
            let vars = [("REDIS_PASSWORD", pw.as_str()), ("REDIS_PORT", "x"), ("REDIS_USERNAME", user)];
            match from(&vars) {
                Ok(c) => check_config(&pw, &c)?,
                Err(e) => check(&pw, "from_vars", &format!("{e} {e:?}"))?,
            }

            let encoded = utf8_percent_encode(&pw, NON_ALPHANUMERIC).to_string();
            for pass in [encoded.as_str(), pw.as_str()] {
                let text = format!("{scheme}{user}:{pass}@redis.internal{tail}");
                match url(&text) {
                    Ok(c) => {
                        check_config(&pw, &c)?;
                        if pass == encoded {
                            prop_assert_eq!(c.password.as_ref().map(|s| s.0.as_str()), Some(pw.as_str()));
                        }
                    }
                    Err(e) => check(&pw, &format!("from_url({text:?})"), &format!("{e} {e:?}"))?,
                }
                match from(&[("REDIS_URL", text.as_str()), ("CACHE_ENCODING", "x")]) {
                    Ok(c) => check_config(&pw, &c)?,
                    Err(e) => check(&pw, "REDIS_URL", &format!("{e} {e:?}"))?,
                }
            }
        }
    }
}
