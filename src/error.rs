//! Error types.

use std::time::Duration;
use std::{fmt, io};

use crate::ident::IdError;
use crate::seq::Seq;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem found while validating a [`crate::Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value:?}: {allowed}")]
pub struct ConfigProblem {
    /// The field or environment variable at fault (`"port"`, `"REDIS_PORT"`).
    pub field: String,
    /// The bad value as given; passwords are never shown.
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

/// A configuration that cannot be used, with every problem found (not just
/// the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// One entry per problem.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    pub(crate) fn one(field: &str, value: impl Into<String>, allowed: impl Into<String>) -> Self {
        let problem = ConfigProblem { field: field.into(), value: value.into(), allowed: allowed.into() };
        ConfigError { problems: vec![problem] }
    }

    /// Whether some problem concerns `field`.
    pub fn mentions(&self, field: &str) -> bool {
        self.problems.iter().any(|p| p.field == field)
    }
}

/// What kind of failure an error is: the crate's one classification, stable
/// for matching.
///
/// [`Error::kind`] says what a call that failed met; [`crate::Stats::errors`]
/// (by [`ErrorKind::name`]), [`crate::Health::last_error_class`] and
/// [`DroppedWrite::class`] say what the flusher met. The flusher counts
/// finer than a returned error tells: a server's error reply is
/// [`ErrorKind::Server`] for the caller but is counted by its code
/// ([`ErrorKind::Busy`], [`ErrorKind::ReadOnly`], [`ErrorKind::Oom`],
/// [`ErrorKind::Misconf`], [`ErrorKind::Command`], [`ErrorKind::Other`]), and
/// a refused connection and a TLS failure are counted as [`ErrorKind::Io`].
/// Each variant says which of the two reports it.
///
/// ```
/// use tradecache::ErrorKind;
///
/// assert_eq!(ErrorKind::Oom.name(), "oom");
/// assert_eq!(ErrorKind::ConnectionRefused.name(), "connection_refused");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid. Returned.
    Config,
    /// The TCP connection was refused. Returned (counted as [`ErrorKind::Io`]).
    ConnectionRefused,
    /// Connecting or waiting for a reply timed out. Returned and counted.
    Timeout,
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`, `NOPERM`).
    /// Returned and counted.
    Auth,
    /// TLS handshake or certificate failure. Returned (counted as
    /// [`ErrorKind::Io`]).
    Tls,
    /// Connection refused, reset or closed, or another I/O failure.
    /// Returned and counted.
    Io,
    /// The server answered with an error. Returned (counted by its code).
    Server,
    /// A value could not be encoded or decoded. Returned (an encode failure
    /// on the flusher is counted as [`ErrorKind::Encode`]).
    Codec,
    /// An id is invalid. Returned.
    InvalidId,
    /// A value is larger than the configured maximum (`max_value_bytes`).
    /// Returned and counted.
    TooLarge,
    /// The cache is closed, or its flusher thread has stopped. Returned.
    Closed,
    /// Sentinel or cluster discovery failed. Returned (counted by its cause).
    Discovery,
    /// Another writer opened as this one (same trader, instance and
    /// `writer_id`) and took over; this cache writes nothing more. Returned
    /// and counted.
    Fenced,
    /// The caching layer ([`crate::kv`]) answered without Redis: its
    /// circuit breaker is open, or its writer's channel is full. Returned.
    Unavailable,
    /// `LOADING`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, `NOREPLICAS`,
    /// `BUSY`, and `ASK` (the trader's cluster slot is being migrated).
    /// Counted.
    Busy,
    /// `READONLY` or `MOVED`: the server is a replica (a failover), or no
    /// longer owns the trader's cluster slot. Counted.
    ReadOnly,
    /// `OOM`: `maxmemory` reached under `noeviction`. Counted.
    Oom,
    /// `MISCONF`: the server cannot persist. Counted.
    Misconf,
    /// A value could not be encoded (on the flusher). Counted.
    Encode,
    /// A command inside an applied transaction failed (e.g. `WRONGTYPE`).
    /// Counted.
    Command,
    /// The commit marker is missing or behind what this writer had
    /// acknowledged: Redis lost acknowledged batches (AOF `everysec` loss,
    /// a failover to a lagging replica, a restore) or someone deleted it.
    /// The writes that may be gone are listed by
    /// [`crate::Cache::take_dropped`], and so are those of a batch in
    /// doubt at that moment that could not be proven applied. Counted.
    MarkerLost,
    /// Any other server error. Counted.
    Other,
}

impl ErrorKind {
    /// How many kinds the flusher counts.
    pub(crate) const COUNT: usize = 13;

    /// The kinds the flusher counts, in the order they are reported.
    pub(crate) const ALL: [ErrorKind; ErrorKind::COUNT] = {
        use ErrorKind::*;
        [
            Io, Timeout, Busy, ReadOnly, Oom, Misconf, Auth, Encode, TooLarge, Command, Fenced, MarkerLost,
            Other,
        ]
    };

    /// Its position in [`ErrorKind::ALL`] (for arrays of counters); a kind
    /// that is not counted as itself goes to [`ErrorKind::Other`].
    pub(crate) fn index(self) -> usize {
        ErrorKind::ALL.iter().position(|c| *c == self).unwrap_or(ErrorKind::COUNT - 1)
    }

    /// A short lowercase name: `"oom"`, `"timeout"`, … (the keys of
    /// [`crate::Stats::errors`] and the `class` and `reason` labels of the
    /// Prometheus text).
    pub fn name(self) -> &'static str {
        self.names().0
    }

    /// [`ErrorKind::name`], and the words the messages of [`Error`] use.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::Config => ("config", "configuration"),
            ErrorKind::ConnectionRefused => ("connection_refused", "connection refused"),
            ErrorKind::Timeout => ("timeout", "timed out"),
            ErrorKind::Auth => ("auth", "authentication failed"),
            ErrorKind::Tls => ("tls", "TLS failure"),
            ErrorKind::Io => ("io", "I/O error"),
            ErrorKind::Server => ("server", "server error"),
            ErrorKind::Codec => ("codec", "codec error"),
            ErrorKind::InvalidId => ("invalid_id", "invalid id"),
            ErrorKind::TooLarge => ("too_large", "value too large"),
            ErrorKind::Closed => ("closed", "closed"),
            ErrorKind::Discovery => ("discovery", "discovery failed"),
            ErrorKind::Fenced => ("fenced", "fenced by a newer writer"),
            ErrorKind::Unavailable => ("unavailable", "unavailable"),
            ErrorKind::Busy => ("busy", "server error"),
            ErrorKind::ReadOnly => ("readonly", "server error"),
            ErrorKind::Oom => ("oom", "server error"),
            ErrorKind::Misconf => ("misconf", "server error"),
            ErrorKind::Encode => ("encode", "codec error"),
            ErrorKind::Command => ("command", "server error"),
            ErrorKind::MarkerLost => ("marker_lost", "server error"),
            ErrorKind::Other => ("other", "server error"),
        }
    }
}

/// An error from a [`crate::Cache`] operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An id is invalid.
    #[error("invalid id: {0}")]
    InvalidId(#[from] IdError),
    /// Connecting to Redis failed after every allowed attempt.
    #[error("cannot connect to Redis at {addr} after {attempts} attempt(s): {kind_text}: {detail}", kind_text = .kind.names().1)]
    Connect {
        /// `host:port` that was tried (never credentials).
        addr: String,
        /// How many attempts were made.
        attempts: u32,
        /// Refused, timeout, auth, TLS, I/O, …
        kind: ErrorKind,
        /// The last failure's text.
        detail: String,
        /// The last failure's underlying error, when there was one (the
        /// error's [`std::error::Error::source`]).
        source: Option<SourceError>,
    },
    /// A command failed on an established connection.
    #[error("redis error ({kind_text}) at {addr}: {detail}", kind_text = .kind.names().1)]
    Redis {
        /// `host:port` of the server.
        addr: String,
        /// The failure's kind.
        kind: ErrorKind,
        /// The failure's text.
        detail: String,
        /// The underlying error, when there was one (the error's
        /// [`std::error::Error::source`]): what redis-rs, the TLS layer,
        /// the operating system or the server reported.
        source: Option<SourceError>,
    },
    /// Waiting for an acknowledgement timed out.
    #[error("timed out after {0:?} waiting for Redis to acknowledge")]
    WaitTimeout(Duration),
    /// A value could not be encoded or decoded.
    #[error("codec error at {key}: {detail}")]
    Codec {
        /// The Redis key concerned.
        key: String,
        /// What went wrong.
        detail: String,
    },
    /// The load found values it could not use and `strict_load` is on.
    #[error("load found {count} unusable value(s); first: {first}")]
    Load {
        /// How many issues.
        count: usize,
        /// The first issue.
        first: String,
    },
    /// The cache is closed or its flusher thread has stopped.
    #[error("the cache is closed")]
    Closed,
    /// A write at or before the awaited one was accepted but dropped
    /// ([`DroppedWrite`]) by the flusher or the kv writer, and not collected
    /// with [`crate::Cache::take_dropped`] (or [`crate::kv::Kv::take_dropped`]) yet.
    #[error("{count} accepted write(s) dropped, not persisted (the first: {first}); collect them with take_dropped (Cache::take_dropped, or Kv::take_dropped for a kv::Kv)")]
    Dropped {
        /// Dropped writes not collected yet (the sum of their
        /// [`DroppedWrite::writes`]).
        count: u64,
        /// The earliest of them.
        first: Box<DroppedWrite>,
    },
    /// Another writer opened with the same trader, instance and
    /// `writer_id`, and took over (the newest `open` wins). Nothing this
    /// cache had not written by then is written.
    #[error("{detail}")]
    Fenced {
        /// The commit marker key both writers claim
        /// (`trader-T1:writer:main`).
        writer_key: String,
        /// What was found, naming the key and both epochs.
        detail: String,
    },
    /// The caching layer ([`crate::kv`]) did not go to Redis: its circuit
    /// breaker is open (after repeated failures), or its writer's channel
    /// is full. The text says which.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// `close` returned before every accepted write was persisted.
    #[error("closed with {} accepted write(s) not persisted (acked up to seq {})", .0.unpersisted, .0.acked_seq)]
    Unpersisted(CloseReport),
}

impl Error {
    /// A thread of the crate's (`what`: "the flusher thread") that could
    /// not be started.
    pub(crate) fn no_thread(what: &str, addr: String, e: &io::Error) -> Error {
        let source = Some(crate::net::source_of(e));
        Error::Redis { addr, kind: ErrorKind::Io, detail: format!("cannot start {what}: {e}"), source }
    }

    /// The kind of failure, for matching.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Config,
            Error::InvalidId(_) => ErrorKind::InvalidId,
            Error::Connect { kind, .. } | Error::Redis { kind, .. } => *kind,
            Error::WaitTimeout(_) => ErrorKind::Timeout,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Codec { .. } | Error::Load { .. } => ErrorKind::Codec,
            Error::Closed | Error::Unpersisted(_) => ErrorKind::Closed,
            Error::Fenced { .. } => ErrorKind::Fenced,
            Error::Dropped { first, .. } => match first.class {
                ErrorKind::TooLarge => ErrorKind::TooLarge,
                ErrorKind::Encode => ErrorKind::Codec,
                _ => ErrorKind::Server,
            },
        }
    }
}

/// Why a write was not accepted. The value comes back with the error, so
/// the engine can keep it, retry, or persist it another way.
///
/// ```
/// # use tradecache::PushError;
/// let err: PushError<u32> = PushError::Full(7);
/// assert!(err.is_full());
/// assert_eq!(err.into_inner(), Some(7));
/// ```
#[derive(thiserror::Error)]
pub enum PushError<T> {
    /// The channel to the flusher is full (Redis slow or down); the value is
    /// handed back and counted in [`crate::Stats::rejected`].
    #[error("the write channel is full; the value was not accepted")]
    Full(T),
    /// The cache is closed; the value is handed back.
    #[error("the cache is closed; the value was not accepted")]
    Closed(T),
    /// Another writer opened as this one and took over (see
    /// [`crate::Error::Fenced`] and [`crate::Health::fenced`]); the value is
    /// handed back.
    #[error("this writer was fenced by a newer one (see Cache::health); the value was not accepted")]
    Fenced(T),
    /// The id is invalid.
    #[error("invalid id: {0}")]
    InvalidId(IdError),
    /// A [`crate::raw::RawValue`] in another encoding than the one this
    /// cache writes ([`crate::Config::encoding`]): JSON bytes given to a
    /// MessagePack cache, say. Refused at the call, the value handed back
    /// (the readers of the collection expect one encoding).
    #[error(
        "the value is not in the encoding this cache writes (Config::encoding); the value was not accepted"
    )]
    WrongEncoding(T),
}

impl<T> PushError<T> {
    /// The value that was not accepted, when there is one.
    pub fn into_inner(self) -> Option<T> {
        match self {
            PushError::Full(v)
            | PushError::Closed(v)
            | PushError::Fenced(v)
            | PushError::WrongEncoding(v) => Some(v),
            PushError::InvalidId(_) => None,
        }
    }

    /// Whether the channel was full.
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }

    /// Whether the cache was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PushError::Closed(_))
    }

    /// Whether a newer writer took over.
    pub fn is_fenced(&self) -> bool {
        matches!(self, PushError::Fenced(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    // Like crossbeam's `TrySendError`: the payload is not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
            PushError::Fenced(_) => f.write_str("Fenced(..)"),
            PushError::InvalidId(e) => f.debug_tuple("InvalidId").field(e).finish(),
            PushError::WrongEncoding(_) => f.write_str("WrongEncoding(..)"),
        }
    }
}

/// An accepted write that the flusher could not persist, so dropped: its
/// value was larger than `max_value_bytes` or could not be encoded (both
/// found on the flusher thread, which does the encoding), or Redis refused
/// its command inside the transaction (a key of the wrong type, put there
/// by someone else). Collected with [`crate::Cache::take_dropped`]; until
/// then [`crate::Cache::wait`] and [`crate::Cache::flush`] report it as
/// [`Error::Dropped`].
///
/// ```
/// # use tradecache::{DroppedWrite, ErrorKind};
/// fn alert(d: &DroppedWrite) -> String {
///     match d.class {
///         ErrorKind::TooLarge => format!("raise max_value_bytes or shrink {}", d.key),
///         _ => d.to_string(),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DroppedWrite {
    /// The write's sequence number. For a command Redis refused inside a
    /// transaction, the first write of that batch (the flusher does not
    /// track which write each command came from).
    pub seq: Seq,
    /// How many writes this entry stands for: 1, or for a refused command
    /// the writes it carried (the batch's appends to one log, say); for
    /// [`ErrorKind::MarkerLost`], the sequence numbers from `seq` on
    /// (`seq` to `seq + writes - 1`) that may not be in Redis.
    pub writes: u64,
    /// The Redis key it was for (`…:events` for an event append; the
    /// commit marker or a log of the batch for a marker loss).
    pub key: String,
    /// [`ErrorKind::TooLarge`], [`ErrorKind::Encode`],
    /// [`ErrorKind::Command`] or [`ErrorKind::MarkerLost`].
    pub class: ErrorKind,
    /// What went wrong, for example `the value is 600000 bytes;
    /// max_value_bytes is 524288`.
    pub detail: String,
}

impl fmt::Display for DroppedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.writes {
            1 => write!(f, "write {}", self.seq.get())?,
            n => write!(f, "{n} writes from {}", self.seq.get())?,
        }
        write!(f, " to {} ({}): {}", self.key, self.class.name(), self.detail)
    }
}

/// The underlying error of an [`Error::Connect`] or an [`Error::Redis`],
/// returned by their [`source`](std::error::Error::source): what redis-rs,
/// the TLS layer, the operating system or the server reported, with its own
/// chain. Every level's text is scrubbed of credentials (a URL's
/// `user:password@` reads `<redacted>@`), so a chain can be logged whole.
///
/// It is a copy of the chain, not the original error value, so that this
/// crate's API does not depend on the Redis client's error types; the
/// operating system's [`std::io::ErrorKind`] is kept where a level was an
/// I/O error.
///
/// ```
/// # use tradecache::{Config, Cache};
/// # use std::error::Error as _;
/// # let config = Config::builder().port(1).connect_attempts(1);
/// if let Err(e) = Cache::open(config) {
///     let mut chain = vec![e.to_string()];
///     let mut next = e.source();
///     while let Some(cause) = next {
///         chain.push(cause.to_string());
///         next = cause.source();
///     }
///     eprintln!("{}", chain.join(": "));
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    text: String,
    io_kind: Option<io::ErrorKind>,
    source: Option<Box<SourceError>>,
}

impl SourceError {
    /// A level of a chain: its (scrubbed) text, its I/O kind, what caused it.
    pub(crate) fn new(text: String, io_kind: Option<io::ErrorKind>, source: Option<SourceError>) -> Self {
        SourceError { text, io_kind, source: source.map(Box::new) }
    }

    /// The operating system's error kind, when this level is an I/O error
    /// (`ConnectionRefused`, `TimedOut`, …).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        self.io_kind
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// What [`crate::Cache::close`] could and could not persist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloseReport {
    /// The last sequence number acknowledged by Redis.
    pub acked_seq: u64,
    /// Accepted writes that were not persisted (0 on a clean close).
    pub unpersisted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Error>();
        check::<ConfigError>();
        check::<PushError<String>>();
        check::<DroppedWrite>();
        check::<SourceError>();
    }
}
