//! What the subcommands share: errors, SCAN, pipelined reads, the survey of
//! a trader's keys, progress output, durations.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::admin::{self, Admin as Conn, KeyKind, Layout};
use redis::Value;

use super::Setup;

/// A failure the CLI reports (exit status 2).
#[derive(Debug)]
pub(crate) struct CliError(pub(crate) String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::Error> for CliError {
    fn from(e: crate::Error) -> Self {
        CliError(e.to_string())
    }
}

impl From<crate::ConfigError> for CliError {
    fn from(e: crate::ConfigError) -> Self {
        CliError(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError(format!("I/O: {e}"))
    }
}

pub(crate) fn err(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

/// Refuses to go on without a trader id (the commands that read or write
/// one trader's keys).
pub(crate) fn require_trader(setup: &Setup) -> Result<(), CliError> {
    if setup.trader_given {
        Ok(())
    } else {
        Err(err("which trader? give --trader ID (or set CACHE_TRADER_ID); `inspect` lists them"))
    }
}

/// Connects with the library's connection code.
pub(crate) fn connect(setup: &Setup) -> Result<Conn, CliError> {
    Ok(Conn::connect(&setup.config)?)
}

/// Sends `cmds` in pipelines of `chunk` and returns one reply per command,
/// server errors as `Value::ServerError` (never a failure of the whole
/// pipeline).
pub(crate) fn pipeline(
    conn: &mut Conn,
    cmds: &[redis::Cmd],
    chunk: usize,
    mut progress: Option<&mut Progress>,
) -> Result<Vec<Value>, CliError> {
    let mut out = Vec::with_capacity(cmds.len());
    for part in cmds.chunks(chunk.max(1)) {
        conn.send(part)?;
        for _ in part {
            out.push(conn.read_reply()?);
        }
        if let Some(p) = progress.as_deref_mut() {
            p.add(part.len() as u64);
        }
    }
    Ok(out)
}

/// One command; a server error reply is an error.
pub(crate) fn query(conn: &mut Conn, cmd: &redis::Cmd) -> Result<Value, CliError> {
    match conn.query(cmd)? {
        Value::ServerError(e) => Err(err(format!("{}: {e}", conn.addr()))),
        v => Ok(v),
    }
}

/// Every key matching `pattern`, by `SCAN`, sorted, without duplicates.
pub(crate) fn scan(conn: &mut Conn, pattern: &str) -> Result<Vec<Vec<u8>>, CliError> {
    Ok(conn.scan(pattern)?)
}

pub(crate) fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

pub(crate) fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// A trader's keys, classified.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// Snapshot keys: (collection, id).
    pub(crate) entities: BTreeSet<(String, String)>,
    /// Event logs: (collection, id).
    pub(crate) logs: BTreeSet<(String, String)>,
    /// Index sets by collection.
    pub(crate) indexes: BTreeSet<String>,
    /// Writer ids with a commit marker.
    pub(crate) writers: BTreeSet<String>,
    /// Open/closed indexes: (collection, open?).
    pub(crate) open_closed: BTreeSet<(String, bool)>,
    /// Streams and heartbeats.
    pub(crate) live: usize,
}

impl Survey {
    /// Collections that appear anywhere, sorted.
    pub(crate) fn collections(&self) -> BTreeSet<String> {
        let mut c: BTreeSet<String> = self.indexes.iter().cloned().collect();
        c.extend(self.entities.iter().map(|(c, _)| c.clone()));
        c.extend(self.logs.iter().map(|(c, _)| c.clone()));
        c
    }

    /// Whether the trader has no key at all: no marker, no index, nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.state_keys() == 0 && self.writers.is_empty() && self.live == 0
    }

    /// Keys that hold state (everything but the writers' markers).
    pub(crate) fn state_keys(&self) -> usize {
        self.entities.len() + self.logs.len() + self.indexes.len() + self.open_closed.len()
    }
}

/// The layout of the configured trader; refuses a configuration without a
/// trader prefix (nothing tells its keys from others').
pub(crate) fn layout(setup: &Setup) -> Result<Layout, CliError> {
    let layout = admin::layout(&setup.config);
    if layout.pattern().is_none() {
        return Err(err(
            "use_trader_prefix is off: this tool needs the trader prefix to find a trader's keys",
        ));
    }
    Ok(layout)
}

/// Scans and classifies the trader's keys.
pub(crate) fn survey(conn: &mut Conn, layout: &Layout) -> Result<Survey, CliError> {
    let pattern = layout.pattern().ok_or_else(|| err("no trader prefix"))?;
    let keys = scan(conn, &pattern)?;
    // Index sets first: their collections tell a log from an instance's key.
    let mut known: BTreeSet<Vec<u8>> = admin::REFERENCE_COLLECTIONS
        .iter()
        .chain(admin::MARKET_DATA_COLLECTIONS.iter())
        .map(|c| c.as_bytes().to_vec())
        .collect();
    for k in &keys {
        if let Some(KeyKind::Index { collection }) = admin::classify(layout, k, &[]) {
            known.insert(collection.into_bytes());
        }
    }
    // And the registry's: a collection written only with `append` has no
    // index set, but its logs are the trader's.
    known.extend(registered(conn, layout)?);
    let known: Vec<&[u8]> = known.iter().map(Vec::as_slice).collect();
    let mut s = Survey::default();
    for k in &keys {
        match admin::classify(layout, k, &known) {
            Some(KeyKind::Entity { collection, id }) => {
                s.entities.insert((collection, id));
            }
            Some(KeyKind::Events { collection, id }) => {
                s.logs.insert((collection, id));
            }
            Some(KeyKind::Index { collection }) => {
                s.indexes.insert(collection);
            }
            Some(KeyKind::Writer { writer_id }) => {
                s.writers.insert(writer_id);
            }
            Some(KeyKind::OpenClosed { collection, open }) => {
                s.open_closed.insert((collection, open));
            }
            Some(KeyKind::Live) => s.live += 1,
            None => {}
        }
    }
    Ok(s)
}

/// The collections the registry of collections names (`None`: there is
/// none, or the key holds another type, which `verify` reports). A
/// refused `SMEMBERS` is an error: the logs of the collections it names
/// would go unseen.
fn registered(conn: &mut Conn, layout: &Layout) -> Result<Vec<Vec<u8>>, CliError> {
    let Some(key) = layout.registry() else { return Ok(Vec::new()) };
    match conn.query(&redis::Cmd::smembers(&key))? {
        Value::Array(v) | Value::Set(v) => {
            Ok(v.into_iter().filter_map(bytes).filter(|c| !c.is_empty()).collect())
        }
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Ok(Vec::new()),
        Value::ServerError(e) => Err(err(format!("{}: SMEMBERS {key}: {e}", conn.addr()))),
        other => Err(err(format!("SMEMBERS {key}: unexpected {other:?}"))),
    }
}

/// [`survey`] for the commands that read an existing trader: a trader
/// without a single key is an error (a mistyped id must not look like an
/// empty, healthy state or give an empty backup).
pub(crate) fn survey_existing(conn: &mut Conn, layout: &Layout) -> Result<Survey, CliError> {
    let s = survey(conn, layout)?;
    if s.is_empty() {
        return Err(err(format!(
            "no keys under {}: (no commit marker, no index, no values): is the trader (and instance) id \
             right? `tradecache inspect` lists the traders present",
            layout.prefix()
        )));
    }
    Ok(s)
}

/// The members of each index set.
pub(crate) fn index_members(
    conn: &mut Conn,
    layout: &Layout,
    survey: &Survey,
) -> Result<BTreeMap<String, Result<BTreeSet<String>, String>>, CliError> {
    let cmds: Vec<redis::Cmd> =
        survey.indexes.iter().map(|c| redis::Cmd::smembers(layout.index(c))).collect();
    let replies = pipeline(conn, &cmds, 100, None)?;
    let mut out = BTreeMap::new();
    for (c, reply) in survey.indexes.iter().zip(replies) {
        let members = match reply {
            Value::Array(v) | Value::Set(v) => {
                Ok(v.into_iter().filter_map(bytes).map(|b| text(&b)).collect())
            }
            Value::ServerError(e) => Err(e.to_string()),
            other => Err(format!("unexpected reply {other:?}")),
        };
        out.insert(c.clone(), members);
    }
    Ok(out)
}

/// Deletes the orphan event log of `collection`/`id` (a log whose id has
/// no snapshot), guarded so that a snapshot appearing meanwhile keeps it:
/// `WATCH` the snapshot key, check it is absent, `UNLINK` the log in
/// `MULTI`/`EXEC` (aborted by Redis if the snapshot was written since the
/// `WATCH`). Returns whether the log was deleted.
pub(crate) fn delete_orphan_log(
    conn: &mut Conn,
    layout: &Layout,
    collection: &str,
    id: &str,
) -> Result<bool, CliError> {
    let entity = layout.entity(collection, id);
    let mut watch = redis::cmd("WATCH");
    watch.arg(&entity);
    query(conn, &watch)?;
    if query(conn, &redis::Cmd::exists(&entity))? != Value::Int(0) {
        query(conn, &redis::cmd("UNWATCH"))?;
        return Ok(false);
    }
    let cmds = [redis::cmd("MULTI"), redis::Cmd::unlink(layout.events(collection, id)), redis::cmd("EXEC")];
    match pipeline(conn, &cmds, cmds.len(), None)?.pop() {
        Some(Value::Array(r)) => match r.first() {
            Some(Value::Int(n)) => Ok(*n > 0),
            Some(Value::ServerError(e)) => Err(err(format!("UNLINK {}: {e}", layout.events(collection, id)))),
            _ => Ok(false),
        },
        // Nil: the snapshot was written meanwhile; the log is its own now.
        Some(Value::Nil) => Ok(false),
        other => Err(err(format!("orphan log transaction: unexpected {other:?}"))),
    }
}

/// A writer id and its marker's raw value (`None`: gone since the scan).
pub(crate) type Marker = (String, Option<Vec<u8>>);

/// The writers' markers.
pub(crate) fn markers(conn: &mut Conn, layout: &Layout, survey: &Survey) -> Result<Vec<Marker>, CliError> {
    let cmds: Vec<redis::Cmd> = survey.writers.iter().map(|w| redis::Cmd::get(layout.writer(w))).collect();
    let replies = pipeline(conn, &cmds, 100, None)?;
    let mut out = Vec::with_capacity(replies.len());
    for (w, reply) in survey.writers.iter().zip(replies) {
        match reply {
            // A refused read is not "gone since the scan".
            Value::ServerError(e) => return Err(err(format!("{}: {e}", layout.writer(w)))),
            r => out.push((w.clone(), bytes(r))),
        }
    }
    Ok(out)
}

/// Progress on stderr for runs longer than a second: a bar redrawn in place
/// on a terminal, a line every few seconds otherwise.
pub(crate) struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
    tty: bool,
}

impl Progress {
    pub(crate) fn new(label: &'static str, total: u64, quiet: bool) -> Self {
        Progress {
            label,
            total,
            done: 0,
            start: Instant::now(),
            last: None,
            enabled: !quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn add(&mut self, n: u64) {
        self.done += n;
        if !self.enabled || self.start.elapsed() < Duration::from_secs(1) {
            return;
        }
        let every = if self.tty { Duration::from_millis(200) } else { Duration::from_secs(2) };
        if self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        self.draw();
    }

    fn draw(&self) {
        let total = self.total.max(1);
        let pct = (self.done.min(total) * 100) / total;
        let filled = (pct / 4) as usize;
        let bar = format!("[{}{}]", "#".repeat(filled), " ".repeat(25 - filled));
        let line = format!(
            "{}: {bar} {pct:>3}% {}/{} {:.1}s",
            self.label,
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        let mut e = std::io::stderr().lock();
        let _ = if self.tty { write!(e, "\r{line}") } else { writeln!(e, "{line}") };
    }

    /// Ends the bar (a final line if one was shown).
    pub(crate) fn finish(&mut self) {
        if self.enabled && self.last.is_some() {
            self.draw();
            if self.tty {
                eprintln!();
            }
        }
    }
}

/// Parses `30d`, `12h`, `90m`, `45s`, `2w` (a number and one unit).
pub(crate) fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{s:?}: expected a number and a unit, like 30d or 12h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: the unit must be one of s, m, h, d, w")),
    };
    n.checked_mul(secs).map(Duration::from_secs).ok_or_else(|| format!("{s:?}: too large"))
}

/// `1h 02m`, `3m 05s`, `12s`, `450ms`: a short human duration.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s >= 1 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Nanoseconds since the epoch, now.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert!(parse_age("5").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("5y").is_err());
        assert!(parse_age("99999999999999999999w").is_err());
        assert_eq!(human(Duration::from_secs(3725)), "1h 02m");
        assert_eq!(human(Duration::from_millis(450)), "450ms");
    }
}
