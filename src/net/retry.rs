//! The one failure model. Every error met on a connection becomes a
//! [`Failure`]: a [`Cause`] with the address and a text. Everything else is
//! a pure function of the cause: the public [`ErrorKind`], the class
//! counted in `stats()`/`health()` ([`ErrorKind`]), and what the writer
//! threads do about it ([`Action`]). Nothing reads a failure's text to
//! decide anything. Also the capped backoff between retries.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use redis::Value;

use crate::error::{Error, ErrorKind, SourceError};

/// Why something failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The TCP connection was refused.
    Refused,
    /// Another I/O failure: reset, closed, not connected.
    Io,
    /// The TLS layer failed (handshake, certificate).
    Tls,
    /// A connect or a reply timed out.
    Timeout,
    /// Credentials refused: `NOAUTH`, `WRONGPASS`, `NOPERM`.
    Auth,
    /// The server is temporarily unable. `ASK` too: a batch spans many
    /// keys, which a migration's target refuses with `TRYAGAIN` until all
    /// have moved; the migration ends with `MOVED`.
    Busy,
    /// `READONLY` or `MOVED`: a replica, or no longer the slot's owner.
    ReadOnly,
    /// `OOM`: `maxmemory` reached under `noeviction`.
    Oom,
    /// `MISCONF`: the server cannot persist.
    Misconf,
    /// `EXECABORT` for no cause we know: retry the transaction.
    ExecAbort,
    /// A sentinel does not know the master (yet).
    UnknownMaster,
    /// A reply of a shape we did not expect.
    Protocol,
    /// One command refused for a reason a retry will not fix
    /// (`WRONGTYPE`, `ERR`, any other code).
    Command,
    /// No sentinel or cluster seed led to a usable master; the cause met
    /// at the last node tried.
    Discovery(Box<Cause>),
    /// The connection failed while a transaction's outcome was unknown:
    /// whatever the cause, the connection is dropped and the batch
    /// settled by the commit marker.
    Unsettled(Box<Cause>),
    /// Another writer claimed the commit marker.
    Fenced,
}

/// What a writer thread does about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The connection is unusable or points at the wrong server: drop it,
    /// reconnect (re-resolving Sentinel/Cluster), resolve in-doubt batches.
    Reconnect,
    /// The server is temporarily unable: keep the batch, wait with
    /// backoff, retry.
    WaitRetry,
    /// The server refuses writes until an operator acts (`OOM`,
    /// `MISCONF`, auth): surface it in `health()`, retry with backoff.
    Backpressure,
    /// This one command failed for a reason a retry will not fix: count
    /// it and move on.
    Drop,
    /// Another writer claimed the commit marker: stop writing for good.
    Fence,
}

impl Cause {
    /// The cause of a Redis error code (the first word of an error reply).
    pub(crate) fn of_code(code: &str) -> Cause {
        match code {
            "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "NOREPLICAS" | "BUSY" | "ASK" => {
                Cause::Busy
            }
            "READONLY" | "MOVED" => Cause::ReadOnly,
            "OOM" => Cause::Oom,
            "MISCONF" => Cause::Misconf,
            "NOAUTH" | "WRONGPASS" | "NOPERM" => Cause::Auth,
            "EXECABORT" => Cause::ExecAbort,
            _ => Cause::Command,
        }
    }

    /// The cause of an error reply to `EXEC`. Redis 7 refuses an `EXEC`
    /// whose transaction cannot run any more (memory full, the server
    /// turned replica since `MULTI`) with `EXECABORT Transaction discarded
    /// because of: -OOM …`: the cause is the code after `because of:`.
    pub(crate) fn of_exec_error(code: &str, text: &str) -> Cause {
        let after = text.split_once("because of:").map(|(_, c)| c.trim_start().trim_start_matches('-'));
        match after.and_then(|c| c.split_whitespace().next()) {
            Some(word) if code == "EXECABORT" && word.bytes().all(|b| b.is_ascii_uppercase()) => {
                Cause::of_code(word)
            }
            _ => Cause::of_code(code),
        }
    }

    /// The cause of a redis-rs error (TLS failures are told apart by
    /// [`Failure::of`], which knows the TLS layer).
    pub(crate) fn of(err: &redis::RedisError) -> Cause {
        if err.is_timeout() {
            Cause::Timeout
        } else if let Some(code) = err.code() {
            Cause::of_code(code)
        } else if err.kind() == redis::ErrorKind::AuthenticationFailed {
            Cause::Auth
        } else if err.is_connection_refusal() {
            Cause::Refused
        } else {
            Cause::Io
        }
    }

    /// The public kind of the error it becomes.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Cause::Refused => ErrorKind::ConnectionRefused,
            Cause::Io => ErrorKind::Io,
            Cause::Tls => ErrorKind::Tls,
            Cause::Timeout => ErrorKind::Timeout,
            Cause::Auth => ErrorKind::Auth,
            Cause::Discovery(_) => ErrorKind::Discovery,
            Cause::Unsettled(c) => c.kind(),
            Cause::Fenced => ErrorKind::Fenced,
            Cause::Busy
            | Cause::ReadOnly
            | Cause::Oom
            | Cause::Misconf
            | Cause::ExecAbort
            | Cause::UnknownMaster
            | Cause::Protocol
            | Cause::Command => ErrorKind::Server,
        }
    }

    /// The class it is counted under in `stats()` and shown in `health()`.
    pub(crate) fn class(&self) -> ErrorKind {
        match self {
            Cause::Refused | Cause::Io | Cause::Tls => ErrorKind::Io,
            Cause::Timeout => ErrorKind::Timeout,
            Cause::Auth => ErrorKind::Auth,
            Cause::Busy => ErrorKind::Busy,
            Cause::ReadOnly => ErrorKind::ReadOnly,
            Cause::Oom => ErrorKind::Oom,
            Cause::Misconf => ErrorKind::Misconf,
            Cause::Command => ErrorKind::Command,
            Cause::ExecAbort | Cause::UnknownMaster | Cause::Protocol => ErrorKind::Other,
            Cause::Discovery(c) | Cause::Unsettled(c) => c.class(),
            Cause::Fenced => ErrorKind::Fenced,
        }
    }

    /// What to do about it.
    pub(crate) fn action(&self) -> Action {
        match self {
            Cause::Refused | Cause::Io | Cause::Tls | Cause::Timeout | Cause::ReadOnly | Cause::Protocol => {
                Action::Reconnect
            }
            Cause::Auth | Cause::Oom | Cause::Misconf => Action::Backpressure,
            Cause::Busy | Cause::ExecAbort | Cause::UnknownMaster => Action::WaitRetry,
            Cause::Command => Action::Drop,
            Cause::Discovery(c) => c.action(),
            Cause::Unsettled(_) => Action::Reconnect,
            Cause::Fenced => Action::Fence,
        }
    }

    /// A retry cannot help: wrong credentials or certificate. `open` fails
    /// at once, and discovery stops asking other nodes.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Cause::Auth | Cause::Tls => true,
            Cause::Discovery(c) | Cause::Unsettled(c) => c.is_permanent(),
            _ => false,
        }
    }
}

/// A failure to connect or talk: its cause, where, and what happened.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) cause: Cause,
    /// `host:port` (never credentials).
    pub(crate) addr: String,
    pub(crate) text: String,
    /// The error it came from, scrubbed, when there was one: the public
    /// error's `source()`.
    pub(crate) source: Option<SourceError>,
}

impl Failure {
    pub(crate) fn new(cause: Cause, addr: impl Into<String>, text: impl Into<String>) -> Failure {
        Failure { cause, addr: addr.into(), text: text.into(), source: None }
    }

    /// From a redis-rs error on the connection to `addr`.
    pub(crate) fn of(err: &redis::RedisError, addr: &str) -> Failure {
        #[cfg(feature = "tls")]
        if let Some(hint) = super::tls::explain(err) {
            let text = format!("{} (TLS: {hint})", scrub(&err.to_string()));
            return Failure::new(Cause::Tls, addr, text).with_source(source_of(err));
        }
        Failure::new(Cause::of(err), addr, scrub(&err.to_string())).with_source(source_of(err))
    }

    /// The same failure, with the error it came from.
    pub(crate) fn with_source(self, source: SourceError) -> Failure {
        Failure { source: Some(source), ..self }
    }

    /// Not connected at all (no connection to send on).
    pub(crate) fn not_connected() -> Failure {
        Failure::new(Cause::Io, "", "not connected")
    }

    pub(crate) fn class(&self) -> ErrorKind {
        self.cause.class()
    }

    pub(crate) fn action(&self) -> Action {
        self.cause.action()
    }

    /// The same failure met while a transaction's outcome was unknown: the
    /// connection must go (unless another writer took over, which decides
    /// first).
    pub(crate) fn unsettled(self) -> Failure {
        match self.cause {
            Cause::Fenced | Cause::Unsettled(_) => self,
            cause => Failure { cause: Cause::Unsettled(Box::new(cause)), ..self },
        }
    }

    pub(crate) fn into_error(self) -> Error {
        Error::Redis { kind: self.cause.kind(), addr: self.addr, detail: self.text, source: self.source }
    }

    /// The error `open` returns after `attempts` tries that ended in this.
    pub(crate) fn into_connect_error(self, attempts: u32) -> Error {
        Error::Connect {
            kind: self.cause.kind(),
            addr: self.addr,
            attempts,
            detail: self.text,
            source: self.source,
        }
    }
}

/// A copy of `err` and its chain of sources, each text scrubbed of
/// credentials, keeping the I/O kind of each level that is an I/O error
/// (at most 16 levels: a chain is not expected to be longer, or to loop).
pub(crate) fn source_of(err: &(dyn std::error::Error + 'static)) -> SourceError {
    fn level(e: &(dyn std::error::Error + 'static), depth: usize) -> SourceError {
        let source = e.source().filter(|_| depth < 16).map(|s| level(s, depth + 1));
        let io_kind = unshared(e).downcast_ref::<std::io::Error>().map(std::io::Error::kind);
        SourceError::new(scrub(&e.to_string()), io_kind, source)
    }
    level(err, 1)
}

/// `e`, or the error behind it when it is the `Arc` redis-rs keeps its
/// causes in (whose `source()` is that error's own).
pub(crate) fn unshared<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> &'e (dyn std::error::Error + 'static) {
    type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
    e.downcast_ref::<Shared>().map_or(e, |inner| &**inner)
}

/// The code and text of a server error reply value, if it is one.
pub(crate) fn reply_error(v: &Value) -> Option<(String, String)> {
    match v {
        Value::ServerError(e) => Some((e.code().to_string(), e.to_string())),
        _ => None,
    }
}

/// Removes anything that looks like URL credentials from a message.
pub(crate) fn scrub(text: &str) -> String {
    // redis-rs never prints passwords, but a URL with credentials may reach
    // an error text through user input; cut `user:pass@` out.
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        if let (Some(scheme), Some(at)) = (word.find("://"), word.rfind('@')) {
            if at > scheme {
                out.push_str(&word[..scheme + 3]);
                out.push_str("<redacted>@");
                out.push_str(&word[at + 1..]);
                continue;
            }
        }
        out.push_str(word);
    }
    out
}

/// Capped exponential backoff with jitter.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, next: min }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    /// The next delay: the current step with ±25 % jitter, then the step
    /// doubles up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        // Saturating: a configured maximum of `Duration::MAX` must not panic.
        self.next = self.next.saturating_mul(2).min(self.max);
        // Jitter only, no need for a real RNG: std's randomly keyed hasher
        // (each `RandomState` keyed anew).
        let frac = (RandomState::new().hash_one(base) % 1000) as f64 / 1000.0; // 0..1
        let factor = 0.75 + frac * 0.5;
        let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(self.max);
        jittered.min(self.max).max(Duration::from_millis(1).min(self.min))
    }
}

/// When a writer thread (the flusher, the kv writer) tries again after a
/// failure: the backoff between attempts, and when the next one may start.
pub(crate) struct Retry {
    backoff: Backoff,
    /// When the next attempt may start (passed or not; `None`: now).
    at: Option<Instant>,
}

impl Retry {
    pub(crate) fn new(min: Duration, max: Duration) -> Retry {
        Retry { backoff: Backoff::new(min, max), at: None }
    }

    /// The next attempt waits for the backoff's next delay.
    pub(crate) fn schedule(&mut self) {
        self.at = Some(deadline_after(self.backoff.next_delay()));
    }

    /// A write was acknowledged: the backoff starts from its minimum again.
    pub(crate) fn reset(&mut self) {
        self.backoff.reset();
        self.at = None;
    }

    /// Reconnected: the next attempt may start now (the backoff keeps
    /// growing until a write is acknowledged).
    pub(crate) fn reconnected(&mut self) {
        self.at = None;
    }

    /// Whether an attempt waits for the backoff (its time passed or not).
    pub(crate) fn is_scheduled(&self) -> bool {
        self.at.is_some()
    }

    /// Whether the next attempt is scheduled for later than now.
    pub(crate) fn is_waiting(&self) -> bool {
        self.at.is_some_and(|t| Instant::now() < t)
    }

    /// A short sleep, at most 5 ms and not past the next attempt or the
    /// `shutdown` deadline, so that the thread keeps draining its channel
    /// meanwhile.
    pub(crate) fn pause(&self, shutdown: Option<Instant>) {
        let now = Instant::now();
        let until = self.at.unwrap_or(now).min(shutdown.unwrap_or(now + Duration::from_secs(3600)));
        let slice = until.saturating_duration_since(now).min(Duration::from_millis(5));
        if !slice.is_zero() {
            std::thread::sleep(slice);
        }
    }
}

/// `now + d`, or a point a century away when that does not fit in an
/// `Instant`: a timeout of `Duration::MAX` means "no limit", not a panic.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(d.min(CENTURY)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of `err` and of each of its sources.
    fn chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
        std::iter::successors(Some(err), |e| e.source()).map(ToString::to_string).collect()
    }

    #[test]
    fn errors_keep_their_cause_as_a_walkable_scrubbed_source() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "redis://trader:hunter2@redis.internal:6379 refused",
        );
        let err = redis::RedisError::from(io);
        for public in [
            Failure::of(&err, "redis.internal:6379").into_error(),
            Failure::of(&err, "redis.internal:6379").into_connect_error(3),
        ] {
            let links = chain(&public);
            assert!(links.len() >= 3, "the error, redis-rs's, the I/O error: {links:?}");
            assert!(links.iter().all(|l| !l.contains("hunter2")), "{links:?}");
            assert!(!format!("{public:?}").contains("hunter2"), "{public:?}");
            assert!(links.iter().skip(1).any(|l| l.contains("<redacted>@redis.internal")), "{links:?}");
            let source = std::error::Error::source(&public).expect("a source");
            let kinds: Vec<_> = std::iter::successors(Some(source), |e| e.source())
                .filter_map(|e| e.downcast_ref::<SourceError>())
                .map(SourceError::io_kind)
                .collect();
            assert!(kinds.contains(&Some(std::io::ErrorKind::ConnectionRefused)), "{kinds:?}");
        }
        // A failure of our own making has no source; a server's reply is one.
        let own = Failure::new(Cause::Protocol, "h:1", "unexpected reply").into_error();
        assert!(std::error::Error::source(&own).is_none());
        let reply = Failure::new(Cause::Command, "h:1", "x")
            .with_source(SourceError::new("WRONGTYPE wrong kind".into(), None, None))
            .into_error();
        assert_eq!(chain(&reply)[1], "WRONGTYPE wrong kind");
    }

    fn classify_code(code: &str) -> (ErrorKind, Action) {
        let c = Cause::of_code(code);
        (c.class(), c.action())
    }

    fn classify(err: &redis::RedisError) -> (ErrorKind, Action) {
        let c = Cause::of(err);
        (c.class(), c.action())
    }

    fn exec_abort_cause(code: &str, text: &str) -> Cause {
        Cause::of_exec_error(code, text)
    }

    #[test]
    fn classification_per_code() {
        use Action::*;
        use ErrorKind as C;
        let table = [
            ("LOADING", C::Busy, WaitRetry),
            ("MASTERDOWN", C::Busy, WaitRetry),
            ("TRYAGAIN", C::Busy, WaitRetry),
            ("CLUSTERDOWN", C::Busy, WaitRetry),
            ("NOREPLICAS", C::Busy, WaitRetry),
            ("BUSY", C::Busy, WaitRetry),
            ("READONLY", C::ReadOnly, Reconnect),
            ("MOVED", C::ReadOnly, Reconnect),
            ("ASK", C::Busy, WaitRetry),
            ("OOM", C::Oom, Backpressure),
            ("MISCONF", C::Misconf, Backpressure),
            ("NOAUTH", C::Auth, Backpressure),
            ("WRONGPASS", C::Auth, Backpressure),
            ("NOPERM", C::Auth, Backpressure),
            ("EXECABORT", C::Other, WaitRetry),
            ("WRONGTYPE", C::Command, Drop),
            ("ERR", C::Command, Drop),
            ("SOMETHINGNEW", C::Command, Drop),
        ];
        for (code, class, action) in table {
            assert_eq!(classify_code(code), (class, action), "{code}");
        }
    }

    #[test]
    fn exec_abort_is_classified_by_its_cause() {
        let cases = [
            ("EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
            ("EXECABORT: Transaction discarded because of: -READONLY You can't write against a read only replica.", "READONLY"),
            ("EXECABORT Transaction discarded because of: MISCONF Errors writing to the AOF file", "MISCONF"),
            ("EXECABORT Transaction discarded because of previous errors.", "EXECABORT"),
            ("EXECABORT Transaction discarded because of: something odd", "EXECABORT"),
        ];
        for (text, cause) in cases {
            assert_eq!(exec_abort_cause("EXECABORT", text), Cause::of_code(cause), "{text}");
        }
        let oom = exec_abort_cause("EXECABORT", cases[0].0);
        assert_eq!((oom.class(), oom.action()), (ErrorKind::Oom, Action::Backpressure));
        let readonly = exec_abort_cause("EXECABORT", cases[1].0);
        assert_eq!((readonly.class(), readonly.action()), (ErrorKind::ReadOnly, Action::Reconnect));
        assert_eq!(exec_abort_cause("OOM", "OOM because of: READONLY"), Cause::Oom);
    }

    #[test]
    fn classification_of_server_replies() {
        for (reply, class, action) in [
            (
                &b"-READONLY You can't write against a read only replica.\r\n"[..],
                ErrorKind::ReadOnly,
                Action::Reconnect,
            ),
            (b"-LOADING Redis is loading the dataset in memory\r\n", ErrorKind::Busy, Action::WaitRetry),
            (b"-MASTERDOWN Link with MASTER is down\r\n", ErrorKind::Busy, Action::WaitRetry),
            (
                b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
                ErrorKind::Oom,
                Action::Backpressure,
            ),
            (
                b"-MISCONF Errors writing to the AOF file: No space left on device\r\n",
                ErrorKind::Misconf,
                Action::Backpressure,
            ),
            (b"-NOPERM this user has no permissions\r\n", ErrorKind::Auth, Action::Backpressure),
            (
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                ErrorKind::Command,
                Action::Drop,
            ),
            (
                b"-EXECABORT Transaction discarded because of previous errors.\r\n",
                ErrorKind::Other,
                Action::WaitRetry,
            ),
        ] {
            let Ok(Value::ServerError(e)) = redis::parse_redis_value(reply) else {
                panic!("not parsed as a server error: {reply:?}");
            };
            let err: redis::RedisError = e.into();
            assert_eq!(classify(&err), (class, action), "{err}");
            assert_eq!(Failure::of(&err, "h:1").class(), class);
        }
    }

    #[test]
    fn classification_of_client_errors() {
        use std::io;
        let timeout = redis::RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert_eq!(classify(&timeout), (ErrorKind::Timeout, Action::Reconnect));
        let would_block = redis::RedisError::from(io::Error::from(io::ErrorKind::WouldBlock));
        assert_eq!(classify(&would_block), (ErrorKind::Timeout, Action::Reconnect));
        let refused = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused), (ErrorKind::Io, Action::Reconnect));
        assert_eq!(Failure::of(&refused, "h:1").cause.kind(), ErrorKind::ConnectionRefused);
        let reset = redis::RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&reset), (ErrorKind::Io, Action::Reconnect));
        let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "invalid password"));
        assert_eq!(classify(&auth), (ErrorKind::Auth, Action::Backpressure));
        assert_eq!(Failure::of(&auth, "h:1").cause.kind(), ErrorKind::Auth);
    }

    #[test]
    fn huge_durations_do_not_panic() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        for _ in 0..4 {
            assert!(b.next_delay() > Duration::from_secs(3600));
        }
        let mut b = Backoff::new(Duration::from_millis(1), Duration::MAX);
        for _ in 0..200 {
            let _ = deadline_after(b.next_delay());
        }
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(3600));
        assert!(deadline_after(Duration::ZERO) <= Instant::now());
    }

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let d: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(d.iter().all(|d| *d <= Duration::from_millis(80)));
        assert!(d[0] >= Duration::from_micros(7_500) && d[0] <= Duration::from_micros(12_500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_micros(12_500));
    }

    #[test]
    fn scrub_removes_credentials() {
        assert_eq!(scrub("bad url redis://u:secret@h:1/0 x"), "bad url redis://<redacted>@h:1/0 x");
    }

    /// Kind, class and action follow from the cause alone, through every
    /// wrapper.
    #[test]
    fn wrapped_causes() {
        let d = Cause::Discovery(Box::new(Cause::Busy));
        assert_eq!(
            (d.kind(), d.class(), d.action()),
            (ErrorKind::Discovery, ErrorKind::Busy, Action::WaitRetry)
        );
        let u = Failure::new(Cause::Oom, "h:1", "x").unsettled();
        assert_eq!(
            (u.cause.kind(), u.class(), u.action()),
            (ErrorKind::Server, ErrorKind::Oom, Action::Reconnect)
        );
        assert_eq!(Failure::new(Cause::Fenced, "h:1", "x").unsettled().action(), Action::Fence);
        assert!(Cause::Discovery(Box::new(Cause::Tls)).is_permanent());
        assert!(!Cause::Discovery(Box::new(Cause::Refused)).is_permanent());
    }
}
