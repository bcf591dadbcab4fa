//! What the subcommands share: errors, SCAN, pipelined reads, the survey of
//! a trader's keys, progress output, durations.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::admin::{self, Admin as Conn, Layout};
use redis::Value;

use super::Setup;

/// A failure the CLI reports (exit status 2).
#[derive(Debug)]
pub(crate) struct CliError(pub(crate) String);

/// The crate's errors (configuration, connection, ids) as they print.
impl<E: Into<crate::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.into().to_string())
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
        let named = self.entities.iter().chain(&self.logs).map(|(c, _)| c);
        self.indexes.iter().chain(named).cloned().collect()
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

/// The layout of the configured trader; refuses to go on without a trader
/// id, or without a trader prefix (nothing tells its keys from others').
pub(crate) fn layout(setup: &Setup) -> Result<Layout, CliError> {
    if !setup.trader_given {
        return Err(err("which trader? give --trader ID (or set CACHE_TRADER_ID); `inspect` lists them"));
    }
    let layout = admin::layout(&setup.config);
    if layout.pattern().is_none() {
        return Err(err(
            "use_trader_prefix is off: this tool needs the trader prefix to find a trader's keys",
        ));
    }
    Ok(layout)
}

/// Scans and classifies the trader's keys: those of another trader, of an
/// instance (when this layout has none) or of another shape are left out.
pub(crate) fn survey(conn: &mut Conn, layout: &Layout) -> Result<Survey, CliError> {
    let pattern = layout.pattern().ok_or_else(|| err("no trader prefix"))?;
    let keys = conn.scan(&pattern)?;
    let prefix = format!("{}:", layout.prefix());
    let parts = |key: &[u8]| -> Vec<String> {
        let rest = key.strip_prefix(prefix.as_bytes()).and_then(|r| std::str::from_utf8(r).ok());
        rest.map(|r| r.split(':').map(str::to_string).collect()).unwrap_or_default()
    };
    // The collections known to exist tell `{collection}:{id}:events` from an
    // instance's `{instance}:{c}:{id}`: the reference ones, those with an
    // index set, and the registry's (a collection written only with
    // `append` has no index set, but its logs are the trader's).
    let mut known: BTreeSet<Vec<u8>> =
        admin::REFERENCE_COLLECTIONS.iter().map(|c| c.as_bytes().to_vec()).collect();
    known.extend(keys.iter().filter_map(|k| layout.index_collection(k)).map(<[u8]>::to_vec));
    known.extend(registered(conn, layout)?);
    let known: Vec<&[u8]> = known.iter().map(Vec::as_slice).collect();
    let mut s = Survey::default();
    for k in &keys {
        match parts(k).as_slice() {
            [w, id] if w == "writer" => {
                s.writers.insert(id.clone());
            }
            [kind, _] if kind == "heartbeat" || kind == "stream" => s.live += 1,
            [index, c, which] if index == "index" && (which == "open" || which == "closed") => {
                s.open_closed.insert((c.clone(), which == "open"));
            }
            _ if !layout.owns(k, &known) => {}
            [index, c] if index == "index" => {
                s.indexes.insert(c.clone());
            }
            [c, id] => {
                s.entities.insert((c.clone(), id.clone()));
            }
            [c, id, events] if events == "events" => {
                s.logs.insert((c.clone(), id.clone()));
            }
            _ => {}
        }
    }
    Ok(s)
}

/// The collections the registry of collections names (none when there is
/// no registry, or its key holds another type, which `verify` reports). A
/// refused `SMEMBERS` is an error: the logs of the collections it names
/// would go unseen.
fn registered(conn: &mut Conn, layout: &Layout) -> Result<Vec<Vec<u8>>, CliError> {
    let Some(key) = layout.registry() else { return Ok(Vec::new()) };
    match conn.raw(&redis::Cmd::smembers(&key))? {
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
    let replies = conn.pipeline(&cmds, 100, None)?;
    Ok(survey.indexes.iter().cloned().zip(replies.into_iter().map(members)).collect())
}

/// The members of a set (or the ids of a sorted set) as text; the error
/// says why the reply is not one.
pub(crate) fn members(reply: Value) -> Result<BTreeSet<String>, String> {
    match reply {
        Value::Array(v) | Value::Set(v) => Ok(v.into_iter().filter_map(bytes).map(|b| text(&b)).collect()),
        Value::Nil => Ok(BTreeSet::new()),
        Value::ServerError(e) => Err(e.to_string()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// `WATCH`es `keys`, then runs the commands `check` gives on a fresh read
/// in `MULTI`/`EXEC` ([`Conn::exec`], `what` naming a refusal) and returns
/// their replies; `None` when `check` gives none (then `UNWATCH`) or a
/// watched key changed meanwhile.
pub(crate) fn watched(
    conn: &mut Conn,
    keys: &[String],
    what: &str,
    check: impl FnOnce(&mut Conn) -> Result<Option<Vec<redis::Cmd>>, CliError>,
) -> Result<Option<Vec<Value>>, CliError> {
    conn.query(redis::cmd("WATCH").arg(keys))?;
    match check(conn)? {
        Some(cmds) => conn.exec(cmds, what),
        None => conn.query(&redis::cmd("UNWATCH")).map(|_| None),
    }
}

/// Deletes the orphan event log of `collection`/`id` (a log whose id has
/// no snapshot), guarded so that a snapshot appearing meanwhile keeps it:
/// the log is deleted under a `WATCH` of the snapshot, while it is absent.
/// Returns whether the log was deleted.
pub(crate) fn delete_orphan_log(
    conn: &mut Conn,
    layout: &Layout,
    collection: &str,
    id: &str,
) -> Result<bool, CliError> {
    let (entity, log) = (layout.entity(collection, id), layout.events(collection, id));
    let absent = |conn: &mut Conn| {
        Ok((conn.query(&redis::Cmd::exists(&entity))? == Value::Int(0))
            .then(|| vec![redis::Cmd::unlink(&log)]))
    };
    // `None`: the snapshot exists, or was written meanwhile: the log is its own now.
    let unlinked = watched(conn, std::slice::from_ref(&entity), &format!("UNLINK {log}"), absent)?;
    Ok(matches!(unlinked.as_deref(), Some([Value::Int(n), ..]) if *n > 0))
}

/// A writer id and its marker's raw value (`None`: gone since the scan).
pub(crate) type Marker = (String, Option<Vec<u8>>);

/// The writers' markers.
pub(crate) fn markers(conn: &mut Conn, layout: &Layout, survey: &Survey) -> Result<Vec<Marker>, CliError> {
    let cmds: Vec<redis::Cmd> = survey.writers.iter().map(|w| redis::Cmd::get(layout.writer(w))).collect();
    let replies = conn.pipeline(&cmds, 100, None)?;
    let markers = survey.writers.iter().zip(replies).map(|(w, reply)| match reply {
        // A refused read is not "gone since the scan".
        Value::ServerError(e) => Err(err(format!("{}: {e}", layout.writer(w)))),
        r => Ok((w.clone(), bytes(r))),
    });
    markers.collect()
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
