//! `verify`: every index entry against its value, every value against its
//! index, every value and event through the crate's decoders, every event
//! log for duplicate or out-of-order event ids. `--repair` fixes what can be
//! fixed without choosing between two versions of the data.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::ExitCode;

use clap::Args;

use super::admin::{self, Admin as Conn, Layout};
use crate::Encoding;
use redis::Value;
use serde::Serialize;
use serde_json::json;

use super::util::{self, bytes, err, CliError, Progress, Survey};
use super::Setup;

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// Print the findings as JSON lines.
    #[arg(long)]
    json: bool,
    /// Fix what has one right answer: remove index entries whose value is
    /// gone, index values missing from their index, put open/closed index
    /// entries where the value says, drop repeated events from logs
    /// (keeping the first of each id), delete orphan event logs. Each fix is
    /// one WATCH/MULTI/EXEC, skipped if the key changes meanwhile.
    #[arg(long)]
    repair: bool,
}

/// What a finding is about; its name (the variant's, in kebab case) is in
/// docs/recovery.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    IndexWithoutValue,
    ValueWithoutIndex,
    InvalidIndexEntry,
    WrongType,
    Undecodable,
    UndecodableEvent,
    DuplicateEvent,
    OutOfOrderEvent,
    LogWithoutValue,
    OrphanLog,
    ClosedNotInClosedIndex,
    ClosedInOpenIndex,
    OpenNotInOpenIndex,
    OpenInClosedIndex,
    InOpenAndClosedIndex,
    InNeitherOpenNorClosedIndex,
    OpenClosedEntryWithoutValue,
    IndexNotInRegistry,
}

impl Kind {
    fn name(self) -> String {
        json!(self).as_str().unwrap_or_default().to_string()
    }

    /// What an open/closed finding means, for its detail.
    fn open_closed_detail(self, open: &str, closed: &str) -> String {
        match self {
            Kind::ClosedNotInClosedIndex => format!("closed, but not in {closed}: purges never see it"),
            Kind::ClosedInOpenIndex => format!("closed, but in {open}: load_open() loads it"),
            Kind::OpenNotInOpenIndex => format!("open, but not in {open}: load_open() does not load it"),
            Kind::OpenInClosedIndex => format!("open, but in {closed}: a purge may delete it"),
            Kind::InOpenAndClosedIndex => format!("in both {open} and {closed}"),
            Kind::InNeitherOpenNorClosedIndex => {
                format!("in neither {open} nor {closed}: load_open() and purges do not see it")
            }
            _ => String::new(),
        }
    }

    /// Warnings do not make `verify` fail: `load()` is not affected.
    fn is_problem(self) -> bool {
        self != Kind::LogWithoutValue
    }
}

#[derive(Debug)]
struct Finding {
    kind: Kind,
    key: String,
    detail: String,
    /// (collection, id) for the fixes.
    target: (String, String),
}

impl Finding {
    fn new(kind: Kind, key: String, detail: impl Into<String>, c: &str, id: &str) -> Finding {
        Finding { kind, key, detail: detail.into(), target: (c.to_string(), id.to_string()) }
    }
}

pub(crate) fn run(setup: &Setup, a: VerifyArgs) -> Result<ExitCode, CliError> {
    let layout = util::layout(setup)?;
    let mut conn = Conn::connect(&setup.config)?;
    let enc = setup.config.encoding;
    let survey = util::survey_existing(&mut conn, &layout)?;
    let members = util::index_members(&mut conn, &layout, &survey)?;
    let mut findings = Vec::new();

    // Index sets: readable, valid ids, each with a value.
    let mut indexed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (c, m) in &members {
        let ids = match m {
            Ok(ids) => ids,
            Err(e) => {
                findings.push(Finding::new(Kind::WrongType, layout.index(c), e, c, ""));
                continue;
            }
        };
        let set = indexed.entry(c.as_str()).or_default();
        for id in ids {
            if crate::Ident::new(id).is_err() {
                let detail = format!("member {id:?} is not a valid id");
                findings.push(Finding::new(Kind::InvalidIndexEntry, layout.index(c), detail, c, id));
                continue;
            }
            set.insert(id.as_str());
            if !survey.entities.contains(&(c.clone(), id.clone())) {
                let detail = format!("{id} is indexed but {} does not exist", layout.entity(c, id));
                findings.push(Finding::new(Kind::IndexWithoutValue, layout.index(c), detail, c, id));
            }
        }
    }

    // The registry of collections: when complete, it names every index set
    // (`load()` of every collection reads the ones it names).
    if let Some(registry) = layout.registry() {
        match conn.query(&redis::Cmd::smembers(&registry)) {
            Err(e) => findings.push(Finding::new(Kind::WrongType, registry.clone(), e.0, "", "")),
            Ok(Value::Array(names) | Value::Set(names)) => {
                let names: BTreeSet<Vec<u8>> = names.into_iter().filter_map(bytes).collect();
                let complete = names.contains(&b""[..]);
                for c in survey.indexes.iter().filter(|c| complete && !names.contains(c.as_bytes())) {
                    let detail = format!(
                        "{} exists but {c:?} is not in {registry}: collections() and a load of every \
                         collection do not see it",
                        layout.index(c)
                    );
                    findings.push(Finding::new(Kind::IndexNotInRegistry, registry.clone(), detail, c, ""));
                }
            }
            Ok(_) => {}
        }
    }

    let open_closed = open_closed_lists(&mut conn, &layout, &survey, &mut findings)?;

    // Values: decodable, of the right type, indexed, in the open/closed index their state says.
    let cmds: Vec<redis::Cmd> =
        survey.entities.iter().map(|(c, id)| redis::Cmd::get(layout.entity(c, id))).collect();
    let total = (cmds.len() + survey.logs.len()) as u64;
    let mut progress = Progress::new("verify", total, setup.quiet);
    let replies = conn.pipeline(&cmds, 1000, Some(&mut progress))?;
    for ((c, id), reply) in survey.entities.iter().zip(replies) {
        let key = layout.entity(c, id);
        let problem = match reply {
            Value::BulkString(b) => {
                if let Some(kind) = open_closed.get(c).and_then(|lists| misplaced(lists, c, id, &b, enc)) {
                    let detail = kind.open_closed_detail(&layout.open_index(c), &layout.closed_index(c));
                    findings.push(Finding::new(kind, key.clone(), detail, c, id));
                }
                admin::entity_to_json(c, id, &b, enc).err().map(|e| (Kind::Undecodable, e))
            }
            Value::Nil => continue, // deleted since the scan
            Value::ServerError(e) => Some((Kind::WrongType, e.to_string())),
            other => Some((Kind::WrongType, format!("unexpected reply {other:?}"))),
        };
        if let Some((kind, detail)) = problem {
            findings.push(Finding::new(kind, key.clone(), detail, c, id));
        }
        if !indexed.get(c.as_str()).is_some_and(|s| s.contains(id.as_str())) {
            let detail = format!("{id} is not in {}: load() does not see it", layout.index(c));
            findings.push(Finding::new(Kind::ValueWithoutIndex, key, detail, c, id));
        }
    }

    // Event logs.
    let cmds: Vec<redis::Cmd> =
        survey.logs.iter().map(|(c, id)| redis::Cmd::lrange(layout.events(c, id), 0, -1)).collect();
    let replies = conn.pipeline(&cmds, 200, Some(&mut progress))?;
    progress.finish();
    let mut events_checked = 0u64;
    for ((c, id), reply) in survey.logs.iter().zip(replies) {
        let key = layout.events(c, id);
        // A market-data series is a list without a snapshot by design. A
        // log of a collection with snapshots (a reference one, or one with
        // an index set) whose id has none is an orphan: load() attaches it
        // to nothing, and an entity written later under the id inherits it.
        // Elsewhere the collection may be a series of the user's: a warning.
        let series = admin::MARKET_DATA_COLLECTIONS.contains(&c.as_str());
        if !series && !survey.entities.contains(&(c.clone(), id.clone())) {
            let entity = layout.entity(c, id);
            let finding = if admin::REFERENCE_COLLECTIONS.contains(&c.as_str()) || survey.indexes.contains(c)
            {
                let detail = format!(
                    "orphan: no {entity} (not in {}); load() attaches it to nothing and an entity written \
                     later as {id} would inherit it; --repair deletes it",
                    layout.index(c)
                );
                Finding::new(Kind::OrphanLog, key.clone(), detail, c, id)
            } else {
                let detail = format!("no {entity}: load() does not read this log");
                Finding::new(Kind::LogWithoutValue, key.clone(), detail, c, id)
            };
            findings.push(finding);
        }
        let items = match reply {
            Value::Array(items) => items,
            Value::Nil => continue,
            Value::ServerError(e) => {
                findings.push(Finding::new(Kind::WrongType, key, e.to_string(), c, id));
                continue;
            }
            other => {
                findings.push(Finding::new(Kind::WrongType, key, format!("unexpected {other:?}"), c, id));
                continue;
            }
        };
        let (mut seen, mut last, mut dups, mut disorder) = (HashSet::new(), 0, Vec::new(), Vec::new());
        for (i, item) in items.into_iter().filter_map(bytes).enumerate() {
            events_checked += 1;
            match admin::event_to_json(c, &item, enc) {
                Ok((_, Some(eid))) => {
                    if !seen.insert(eid) {
                        dups.push(eid);
                    } else if eid < last {
                        disorder.push((i, eid, last));
                    }
                    last = last.max(eid);
                }
                Ok((_, None)) => {}
                Err(e) => {
                    findings.push(Finding::new(Kind::UndecodableEvent, format!("{key}[{i}]"), e, c, id))
                }
            }
        }
        if !dups.is_empty() {
            let shown: Vec<String> = dups.iter().take(10).map(u64::to_string).collect();
            let more = if dups.len() > 10 { format!(" and {} more", dups.len() - 10) } else { String::new() };
            let detail = format!("event id(s) {}{more} repeated (load() keeps the first)", shown.join(", "));
            findings.push(Finding::new(Kind::DuplicateEvent, key.clone(), detail, c, id));
        }
        if let Some((i, eid, before)) = disorder.first() {
            let n = disorder.len();
            let detail = format!("{n} event(s) out of order; first: [{i}] id {eid} after id {before}");
            findings.push(Finding::new(Kind::OutOfOrderEvent, key, detail, c, id));
        }
    }

    // A batch landing during the scan can make an entity and its index
    // disagree for a moment: keep only what a second look confirms.
    recheck(&mut conn, &layout, &mut findings)?;
    findings.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));

    let problems = findings.iter().filter(|f| f.kind.is_problem()).count();
    let warnings = findings.len() - problems;
    for f in &findings {
        if a.json {
            println!(
                "{}",
                json!({ "severity": if f.kind.is_problem() { "problem" } else { "warning" },
                        "kind": f.kind.name(), "key": f.key, "detail": f.detail })
            );
        } else {
            let sev = if f.kind.is_problem() { "PROBLEM" } else { "warning" };
            println!("{sev} {:<20} {}: {}", f.kind.name(), f.key, f.detail);
        }
    }
    let summary = format!(
        "verify {}: {} values, {} event logs ({events_checked} events), {} index sets checked: {problems} problem(s), {warnings} warning(s)",
        layout.prefix(),
        survey.entities.len(),
        survey.logs.len(),
        survey.indexes.len()
    );
    if a.json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    if a.repair && !findings.is_empty() {
        let fixed = repair(&mut conn, &layout, enc, &findings)?;
        println!("repaired {fixed} finding(s); run verify again to see what is left");
        return Ok(ExitCode::SUCCESS);
    }
    Ok(if problems > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Re-reads index membership and existence for the index findings.
fn recheck(conn: &mut Conn, layout: &Layout, findings: &mut Vec<Finding>) -> Result<(), CliError> {
    let rechecked =
        |f: &Finding| matches!(f.kind, Kind::IndexWithoutValue | Kind::ValueWithoutIndex | Kind::OrphanLog);
    let mut cmds = Vec::new();
    for (c, id) in findings.iter().filter(|f| rechecked(f)).map(|f| &f.target) {
        cmds.extend([redis::Cmd::sismember(layout.index(c), id), redis::Cmd::exists(layout.entity(c, id))]);
    }
    let replies = conn.pipeline(&cmds, 1000, None)?;
    // A refused check is not "fixed since": it would drop the finding. An
    // index key that is not a set (its own `wrong-type` finding) holds no
    // member.
    let refused = replies.iter().find_map(|r| match r {
        Value::ServerError(e) if e.code() != "WRONGTYPE" => Some(e),
        _ => None,
    });
    if let Some(e) = refused {
        return Err(err(format!("checking the findings again: {e}")));
    }
    let mut replies = replies.chunks(2);
    findings.retain(|f| {
        if !rechecked(f) {
            return true;
        }
        let r = replies.next().unwrap_or_default();
        let member = matches!(r.first(), Some(Value::Int(1)) | Some(Value::Boolean(true)));
        let exists = matches!(r.get(1), Some(Value::Int(1)));
        match f.kind {
            Kind::IndexWithoutValue => member && !exists,
            Kind::OrphanLog => !exists,
            _ => exists && !member,
        }
    });
    Ok(())
}

/// [`util::watched`], applied or not; a command Redis refused is an error.
fn watched(
    conn: &mut Conn,
    watch: &[String],
    check: impl FnOnce(&mut Conn) -> Result<Option<Vec<redis::Cmd>>, CliError>,
) -> Result<bool, CliError> {
    Ok(util::watched(conn, watch, "a repair was refused", check)?.is_some())
}

/// Repairs what `findings` name that can be repaired, apart from what
/// touches a key of the wrong type (the operator's first); the first
/// repair that fails is an error naming its finding.
fn repair(conn: &mut Conn, layout: &Layout, enc: Encoding, findings: &[Finding]) -> Result<usize, CliError> {
    let wrong: HashSet<&str> =
        findings.iter().filter(|f| f.kind == Kind::WrongType).map(|f| f.key.as_str()).collect();
    let mut fixed = 0;
    for f in findings {
        let (c, id) = &f.target;
        let keys = [layout.index(c), layout.open_index(c), layout.closed_index(c), layout.entity(c, id)];
        if keys.iter().any(|k| wrong.contains(k.as_str())) {
            continue;
        }
        let done = repair_one(conn, layout, enc, f)
            .map_err(|e| err(format!("repairing {} {}: {}", f.kind.name(), f.key, e.0)))?;
        if done {
            println!("repaired {} {}", f.kind.name(), f.key);
            fixed += 1;
        }
    }
    Ok(fixed)
}

/// Repairs one finding; whether it applied.
fn repair_one(conn: &mut Conn, layout: &Layout, enc: Encoding, f: &Finding) -> Result<bool, CliError> {
    let (c, id) = &f.target;
    let (index, entity, events) = (layout.index(c), layout.entity(c, id), layout.events(c, id));
    let (open, closed) = (layout.open_index(c), layout.closed_index(c));
    // The open/closed repairs watch the value and both indexes.
    let open_closed = [entity.clone(), open.clone(), closed.clone()];
    Ok(match f.kind {
        Kind::IndexWithoutValue => watched(conn, &[index.clone(), entity.clone()], |conn| {
            Ok((conn.query(&redis::Cmd::exists(&entity))? == Value::Int(0))
                .then(|| vec![redis::Cmd::srem(&index, id)]))
        })?,
        Kind::InvalidIndexEntry => {
            watched(conn, std::slice::from_ref(&index), |_| Ok(Some(vec![redis::Cmd::srem(&index, id)])))?
        }
        Kind::ValueWithoutIndex => watched(conn, &[index.clone(), entity.clone()], |conn| {
            Ok((conn.query(&redis::Cmd::exists(&entity))? == Value::Int(1))
                .then(|| vec![redis::Cmd::sadd(&index, id)]))
        })?,
        Kind::DuplicateEvent => watched(conn, std::slice::from_ref(&events), |conn| {
            let Value::Array(items) = conn.query(&redis::Cmd::lrange(&events, 0, -1))? else {
                return Ok(None);
            };
            let mut seen = HashSet::new();
            let first = |item: &Vec<u8>| match admin::event_to_json(c, item, enc) {
                Ok((_, Some(eid))) => seen.insert(eid),
                _ => true,
            };
            let keep: Vec<Vec<u8>> = items.into_iter().filter_map(bytes).filter(first).collect();
            let mut cmds = vec![redis::Cmd::del(&events)];
            if !keep.is_empty() {
                cmds.push(redis::Cmd::rpush(&events, &keep));
            }
            Ok(Some(cmds))
        })?,
        Kind::OrphanLog => util::delete_orphan_log(conn, layout, c, id)?,
        Kind::IndexNotInRegistry => match layout.registry() {
            Some(r) => watched(conn, std::slice::from_ref(&r), |_| Ok(Some(vec![redis::Cmd::sadd(&r, c)])))?,
            None => false,
        },
        Kind::OpenClosedEntryWithoutValue => watched(conn, &open_closed, |conn| {
            Ok((conn.query(&redis::Cmd::exists(&entity))? == Value::Int(0))
                .then(|| vec![redis::Cmd::srem(&open, id), redis::Cmd::zrem(&closed, id)]))
        })?,
        // The state is read again and the entry put where it says (a closed
        // entry keeps its score; a new one is scored by the value's last
        // update, or now).
        Kind::ClosedInOpenIndex
        | Kind::ClosedNotInClosedIndex
        | Kind::OpenInClosedIndex
        | Kind::OpenNotInOpenIndex => watched(conn, &open_closed, |conn| {
            let Value::BulkString(b) = conn.query(&redis::Cmd::get(&entity))? else { return Ok(None) };
            let Ok(Some((is_closed, updated_ms))) = admin::open_closed_state(c, &b, enc) else {
                return Ok(None);
            };
            Ok(Some(if is_closed {
                let score = updated_ms.unwrap_or(crate::model::UnixNanos::now().0 / 1_000_000);
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&closed).arg("NX").arg(score).arg(id);
                vec![zadd, redis::Cmd::srem(&open, id)]
            } else {
                vec![redis::Cmd::sadd(&open, id), redis::Cmd::zrem(&closed, id)]
            }))
        })?,
        // Two versions of the data, none readable, or a state only the
        // engine's type knows: an operator decides (docs/recovery.md).
        _ => false,
    })
}

/// The open and closed members of every collection that has snapshots and is
/// a reference one or has such an index, after adding the findings of
/// unreadable indexes and of entries whose snapshot is gone.
fn open_closed_lists<'s>(
    conn: &mut Conn,
    layout: &Layout,
    survey: &'s Survey,
    findings: &mut Vec<Finding>,
) -> Result<BTreeMap<&'s String, [BTreeSet<String>; 2]>, CliError> {
    let reference =
        survey.entities.iter().map(|(c, _)| c).filter(|c| admin::REFERENCE_COLLECTIONS.contains(&c.as_str()));
    let collections: BTreeSet<&String> = survey.open_closed.iter().map(|(c, _)| c).chain(reference).collect();
    let mut cmds = Vec::new();
    for c in &collections {
        cmds.extend([
            redis::Cmd::smembers(layout.open_index(c)),
            redis::Cmd::zrange(layout.closed_index(c), 0, -1),
        ]);
    }
    let mut replies = conn.pipeline(&cmds, 100, None)?.into_iter();
    let mut by_collection: BTreeMap<&String, [BTreeSet<String>; 2]> = BTreeMap::new();
    for c in collections {
        let lists = by_collection.entry(c).or_default();
        for (list, key) in lists.iter_mut().zip([layout.open_index(c), layout.closed_index(c)]) {
            let ids = match util::members(replies.next().unwrap_or(Value::Nil)) {
                Ok(ids) => ids,
                Err(e) => {
                    findings.push(Finding::new(Kind::WrongType, key, e, c, ""));
                    continue;
                }
            };
            // Entries whose snapshot is gone.
            for id in ids.iter().filter(|id| !survey.entities.contains(&(c.clone(), (*id).clone()))) {
                let detail = format!("{id} is listed but {} does not exist", layout.entity(c, id));
                findings.push(Finding::new(Kind::OpenClosedEntryWithoutValue, key.clone(), detail, c, id));
            }
            *list = ids;
        }
    }
    Ok(by_collection)
}

/// What is wrong with where the snapshot `b` of `c`/`id` is listed: each
/// snapshot is in exactly one of `index:{c}:open` (a set, what `load_open`
/// reads) and `index:{c}:closed` (sorted by last update, what purges read),
/// the one its state says. Only a reference collection's state is decoded
/// (`--repair` puts the entry back); of others, an id in both or in neither
/// is reported and left to the operator.
fn misplaced(lists: &[BTreeSet<String>; 2], c: &str, id: &str, b: &[u8], enc: Encoding) -> Option<Kind> {
    let (in_open, in_closed) = (lists[0].contains(id), lists[1].contains(id));
    match admin::open_closed_state(c, b, enc) {
        Ok(Some((true, _))) if in_open => Some(Kind::ClosedInOpenIndex),
        Ok(Some((true, _))) if !in_closed => Some(Kind::ClosedNotInClosedIndex),
        Ok(Some((false, _))) if in_closed => Some(Kind::OpenInClosedIndex),
        Ok(Some((false, _))) if !in_open => Some(Kind::OpenNotInOpenIndex),
        Ok(None) if in_open && in_closed => Some(Kind::InOpenAndClosedIndex),
        Ok(None) if !in_open && !in_closed => Some(Kind::InNeitherOpenNorClosedIndex),
        _ => None, // consistent, or undecodable (reported as such)
    }
}
