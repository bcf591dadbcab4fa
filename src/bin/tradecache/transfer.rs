//! `export` and `import`: a trader's whole state as JSON lines.
//!
//! ```text
//! {"format":"tradecache-export","version":1,"trader_key":"trader-T1",...}   header
//! {"collection":"orders","id":"O-1","value":{...},"events":[{...},...]}     one line per id
//! {"collection":"orders","id":"O-9","events":[...]}                         a log without a value
//! {"collection":"orders","id":"O-7","value":{...},"indexed":false}          a value missing from its index
//! {"collection":"orders","id":"O-2","value":{...},"open":true}              in index:orders:open
//! {"collection":"orders","id":"O-3","value":{...},"closed":"1700000000000"} in index:orders:closed, with its score
//! {"end":true,"lines":3,"values":2,"events":5,"consistent":true}           footer
//! ```
//!
//! Values and events are decoded and re-encoded through the crate's own
//! types for the reference collections, so an import writes exactly what
//! the engine would have written; the footer lets `import` refuse a
//! truncated file before touching Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;

use super::admin::{self, Admin as Conn, Layout};
use crate::entity::{collection_problem, CollectionOf};
use crate::Encoding;
use redis::Value;
use serde_json::{json, Value as Json};

use super::util::{self, bytes, err, text, CliError, Progress};
use super::Setup;

const FORMAT: &str = "tradecache-export";
const VERSION: u64 = 1;

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// Write to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Leave out (and list on stderr) values that do not decode, instead of
    /// failing.
    #[arg(long)]
    skip_undecodable: bool,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// Read from FILE instead of standard input.
    #[arg(long, short = 'f', value_name = "FILE")]
    input: Option<PathBuf>,
    /// Replace the trader's existing state (its values, event logs and index
    /// sets are deleted first; writers' markers are kept and fenced).
    #[arg(long)]
    force: bool,
}

fn marker_map(conn: &mut Conn, layout: &Layout, survey: &util::Survey) -> Result<Json, CliError> {
    let markers = util::markers(conn, layout, survey)?.into_iter();
    Ok(Json::Object(markers.map(|(w, v)| (w, v.map_or(Json::Null, |b| Json::String(text(&b))))).collect()))
}

pub(crate) fn export(setup: &Setup, a: ExportArgs) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let layout = util::layout(setup)?;
    let enc = setup.config.encoding;
    let mut conn = Conn::connect(&setup.config)?;
    let survey = util::survey_existing(&mut conn, &layout)?;
    let markers_before = marker_map(&mut conn, &layout, &survey)?;
    let members = util::index_members(&mut conn, &layout, &survey)?;
    // An index set that cannot be read would mark every id "not indexed".
    if let Some((c, Err(e))) = members.iter().find(|(_, m)| m.is_err()) {
        return Err(err(format!("{}: {e} (`tradecache verify` reports it)", layout.index(c))));
    }
    let indexed =
        |c: &str, id: &str| members.get(c).and_then(|m| m.as_ref().ok()).is_some_and(|m| m.contains(id));
    let (open, closed) = open_closed_members(&mut conn, &layout, &survey)?;

    let out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::fs::File::create(p).map_err(|e| err(format!("{}: {e}", p.display())))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let header = json!({
        "format": FORMAT,
        "version": VERSION,
        "trader_key": layout.prefix(),
        "encoding": enc.as_str(),
        "source": setup.config.redacted_url(),
        "exported_at_ns": crate::model::UnixNanos::now().0,
        "markers": markers_before,
    });
    writeln!(out, "{header}")?;

    let ids: Vec<&(String, String)> = survey.entities.union(&survey.logs).collect();
    let mut progress = Progress::new("export", ids.len() as u64, setup.quiet);
    let (mut lines, mut values, mut events, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    // A value or event that does not decode: left out with --skip-undecodable, else an error.
    let mut undecodable = |what: String, e: String, hint: &str| {
        if !a.skip_undecodable {
            return Err(err(format!("{what} does not decode ({e}); {hint}")));
        }
        eprintln!("export: left out {what}: {e}");
        skipped += 1;
        Ok(())
    };
    for chunk in ids.chunks(500) {
        let mut cmds = Vec::with_capacity(chunk.len() * 2);
        for (c, id) in chunk {
            cmds.push(redis::Cmd::get(layout.entity(c, id)));
            cmds.push(redis::Cmd::lrange(layout.events(c, id), 0, -1));
        }
        let replies = conn.pipeline(&cmds, cmds.len(), None)?;
        let mut it = replies.into_iter();
        for &(c, id) in chunk {
            let (value, log) = (it.next().unwrap_or(Value::Nil), it.next().unwrap_or(Value::Nil));
            let mut line = json!({ "collection": c, "id": id });
            let entity = layout.entity(c, id);
            match value {
                Value::BulkString(b) => match admin::entity_to_json(c, id, &b, enc) {
                    Ok(j) => {
                        line["value"] = j;
                        if !indexed(c, id) {
                            line["indexed"] = json!(false);
                        }
                        if open.contains(&(c.clone(), id.clone())) {
                            line["open"] = json!(true);
                        }
                        if let Some(score) = closed.get(&(c.clone(), id.clone())) {
                            line["closed"] = json!(score);
                        }
                        values += 1;
                    }
                    Err(e) => undecodable(
                        entity.clone(),
                        e,
                        "`tradecache verify` lists such values, --skip-undecodable leaves them out",
                    )?,
                },
                Value::Nil => {}
                Value::ServerError(e) => return Err(err(format!("{entity}: {e} (not a tradecache value)"))),
                other => return Err(err(format!("{entity}: unexpected {other:?}"))),
            }
            let log_key = layout.events(c, id);
            match log {
                Value::Array(items) if !items.is_empty() => {
                    let mut list = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().filter_map(bytes).enumerate() {
                        match admin::event_to_json(c, &item, enc) {
                            Ok((j, _)) => list.push(j),
                            Err(e) => {
                                undecodable(format!("{log_key}[{i}]"), e, "--skip-undecodable leaves it out")?
                            }
                        }
                    }
                    events += list.len() as u64;
                    line["events"] = Json::Array(list);
                }
                Value::Array(_) | Value::Nil => {}
                Value::ServerError(e) => return Err(err(format!("{log_key}: {e} (not an event log)"))),
                other => return Err(err(format!("{log_key}: unexpected {other:?}"))),
            }
            if line.get("value").is_some() || line.get("events").is_some() {
                writeln!(out, "{line}")?;
                lines += 1;
            }
        }
        progress.add(chunk.len() as u64);
    }
    progress.finish();
    let markers_after = marker_map(&mut conn, &layout, &survey)?;
    let consistent = markers_after == markers_before;
    let footer =
        json!({ "end": true, "lines": lines, "values": values, "events": events, "consistent": consistent });
    writeln!(out, "{footer}")?;
    out.flush()?;
    if !consistent {
        eprintln!(
            "export: warning: a writer applied batches while exporting; each entity is whole but entities may be from different batches (stop the engine, or export again)"
        );
    }
    if !setup.quiet {
        eprintln!(
            "export {}: {lines} ids, {values} values, {events} events{} in {:.2}s",
            layout.prefix(),
            if skipped > 0 { format!(", {skipped} left out") } else { String::new() },
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The members of the open indexes, and of the closed ones with their
/// scores (as Redis prints them, so they come back exactly).
type OpenClosed = (BTreeSet<(String, String)>, BTreeMap<(String, String), String>);

fn open_closed_members(
    conn: &mut Conn,
    layout: &Layout,
    survey: &util::Survey,
) -> Result<OpenClosed, CliError> {
    let (mut open, mut closed) = (BTreeSet::new(), BTreeMap::new());
    for (c, is_open) in &survey.open_closed {
        let cmd = if *is_open {
            redis::Cmd::smembers(layout.open_index(c))
        } else {
            redis::Cmd::zrange_withscores(layout.closed_index(c), 0, -1)
        };
        let items: Vec<String> = match conn.query(&cmd)? {
            Value::Array(v) | Value::Set(v) => v.into_iter().filter_map(bytes).map(|b| text(&b)).collect(),
            other => return Err(err(format!("index of {c}: unexpected {other:?}"))),
        };
        if *is_open {
            open.extend(items.into_iter().map(|id| (c.clone(), id)));
        } else {
            closed.extend(items.chunks_exact(2).map(|p| ((c.clone(), p[0].clone()), p[1].clone())));
        }
    }
    Ok((open, closed))
}

/// One id of the export, encoded for the target.
struct Prepared {
    collection: String,
    id: String,
    value: Option<Vec<u8>>,
    indexed: bool,
    /// In the open index; in the closed one, with this score.
    open: bool,
    closed: Option<String>,
    events: Vec<Vec<u8>>,
}

fn parse(setup: &Setup, input: Box<dyn BufRead>) -> Result<(Json, Vec<Prepared>), CliError> {
    let enc = setup.config.encoding;
    // Timestamps encoded as the flusher does (ISO 8601 with JSON and `timestamps_as_iso8601`).
    let _iso = crate::model::IsoScope::enter(setup.config.timestamps_as_iso8601 && enc == Encoding::Json);
    let mut header = None;
    let mut footer = None;
    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    let (mut values, mut events) = (0u64, 0u64);
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| err(format!("line {n}: {what}"));
        if footer.is_some() {
            return Err(bad("data after the end line".into()));
        }
        let j: Json = serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
        if header.is_none() {
            if j["format"] != FORMAT {
                return Err(bad(format!(
                    "not a {FORMAT} file (its first line has no \"format\":\"{FORMAT}\")"
                )));
            }
            if j["version"].as_u64().is_none_or(|v| v > VERSION) {
                return Err(bad(format!(
                    "format version {} is newer than this tool's ({VERSION})",
                    j["version"]
                )));
            }
            header = Some(j);
            continue;
        }
        if j["end"] == true {
            footer = Some(j);
            continue;
        }
        let field = |k: &str| j[k].as_str().map(str::to_string).ok_or_else(|| bad(format!("no \"{k}\"")));
        let (collection, id) = (field("collection")?, field("id")?);
        for (what, v) in [("collection", &collection), ("id", &id)] {
            if let Err(e) = crate::Ident::new(v) {
                return Err(bad(format!("{what} {v:?}: {e}")));
            }
        }
        // An entity's collection, or one of the crate's market-data series (without snapshots).
        let as_entity = collection_problem(&collection, CollectionOf::Entity);
        if let Some(why) = as_entity.and(collection_problem(&collection, CollectionOf::CrateSeries)) {
            return Err(bad(format!("collection {collection:?}: {why}")));
        }
        if let (Some(why), Some(_)) = (as_entity, j.get("value")) {
            return Err(bad(format!("collection {collection:?} has no snapshots: {why}")));
        }
        if !seen.insert((collection.clone(), id.clone())) {
            return Err(bad(format!("{collection} {id} appears twice")));
        }
        let value = j.get("value").map(|v| admin::entity_from_json(&collection, &id, v, enc));
        let value = value.transpose().map_err(|e| bad(format!("value: {e}")))?;
        values += u64::from(value.is_some());
        let list = match j.get("events") {
            Some(list) => list.as_array().ok_or_else(|| bad("\"events\" is not an array".into()))?.as_slice(),
            None => &[],
        };
        let evs = list.iter().enumerate().map(|(i, e)| {
            admin::event_from_json(&collection, e, enc).map_err(|e| bad(format!("event {i}: {e}")))
        });
        let evs = evs.collect::<Result<Vec<_>, _>>()?;
        events += evs.len() as u64;
        let indexed = value.is_some() && j.get("indexed") != Some(&Json::Bool(false));
        let open = j.get("open") == Some(&Json::Bool(true));
        let closed = match j.get("closed") {
            None => None,
            Some(Json::String(score)) if score.parse::<f64>().is_ok() => Some(score.clone()),
            Some(other) => return Err(bad(format!("\"closed\" is {other}, not a score"))),
        };
        items.push(Prepared { collection, id, value, indexed, open, closed, events: evs });
    }
    let header = header.ok_or_else(|| err("empty input: no export header"))?;
    let footer = footer.ok_or_else(|| err("no end line: the export is truncated (nothing was written)"))?;
    if footer["lines"].as_u64() != Some(items.len() as u64)
        || footer["values"].as_u64() != Some(values)
        || footer["events"].as_u64() != Some(events)
    {
        return Err(err(format!(
            "the end line says {} lines, {} values, {} events; the file has {}, {values}, {events} (nothing was written)",
            footer["lines"],
            footer["values"],
            footer["events"],
            items.len()
        )));
    }
    Ok((header, items))
}

pub(crate) fn import(setup: &Setup, a: ImportArgs) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let layout = util::layout(setup)?;
    let input: Box<dyn BufRead> = match &a.input {
        Some(p) => Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            std::fs::File::open(p).map_err(|e| err(format!("{}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    // Everything is read, checked and encoded before Redis is touched.
    let (header, items) = parse(setup, input)?;
    let mut conn = Conn::connect(&setup.config)?;
    let survey = util::survey(&mut conn, &layout)?;
    if survey.state_keys() > 0 && !a.force {
        return Err(err(format!(
            "{} already holds {} keys ({} values, {} event logs): refusing to overwrite; --force replaces them",
            layout.prefix(),
            survey.state_keys(),
            survey.entities.len(),
            survey.logs.len()
        )));
    }
    if header["trader_key"].as_str() != Some(layout.prefix()) && !setup.quiet {
        eprintln!("import: the export is of {}, importing into {}", header["trader_key"], layout.prefix());
    }
    // A writer still running would mix its batches into the restored
    // state: claim its marker so that its next transaction is refused.
    for w in &survey.writers {
        let key = layout.writer(w);
        let epoch = conn.fence(&key)?;
        if !setup.quiet {
            eprintln!("import: fenced writer {key} (new epoch {epoch}); restart the engine after the import");
        }
    }
    if survey.state_keys() > 0 {
        let mut old: Vec<String> = survey.entities.iter().map(|(c, i)| layout.entity(c, i)).collect();
        old.extend(survey.logs.iter().map(|(c, i)| layout.events(c, i)));
        old.extend(survey.indexes.iter().map(|c| layout.index(c)));
        old.extend(survey.open_closed.iter().map(|(c, open)| {
            if *open {
                layout.open_index(c)
            } else {
                layout.closed_index(c)
            }
        }));
        for chunk in old.chunks(500) {
            conn.query(&redis::Cmd::unlink(chunk))?;
        }
        if !setup.quiet {
            eprintln!("import: deleted {} existing keys of {}", old.len(), layout.prefix());
        }
    }
    let mut progress = Progress::new("import", items.len() as u64, setup.quiet);
    let (mut values, mut events) = (0u64, 0u64);
    let registry = layout.registry();
    for chunk in items.chunks(500) {
        let mut cmds = Vec::with_capacity(chunk.len() * 4);
        // The collections this chunk writes (but market-data series), in
        // the registry of collections: `load()` of every collection finds
        // the indexed ones there, `clear` the logs of the others.
        let mut named: Vec<&str> = Vec::new();
        for p in chunk {
            if let Some(v) = &p.value {
                cmds.push(redis::Cmd::set(layout.entity(&p.collection, &p.id), v.as_slice()));
                values += 1;
            }
            let log = layout.events(&p.collection, &p.id);
            cmds.push(redis::Cmd::del(&log));
            if !p.events.is_empty() {
                cmds.push(redis::Cmd::rpush(&log, &p.events));
                events += p.events.len() as u64;
            }
            if p.indexed {
                cmds.push(redis::Cmd::sadd(layout.index(&p.collection), &p.id));
            }
            let series = collection_problem(&p.collection, CollectionOf::Entity).is_some();
            if !series && !named.contains(&p.collection.as_str()) {
                named.push(&p.collection);
            }
            if p.open {
                cmds.push(redis::Cmd::sadd(layout.open_index(&p.collection), &p.id));
            }
            if let Some(score) = &p.closed {
                cmds.push(redis::Cmd::zadd(layout.closed_index(&p.collection), &p.id, score));
            }
        }
        if let (Some(r), false) = (&registry, named.is_empty()) {
            cmds.push(redis::Cmd::sadd(r, &named));
        }
        conn.exec(cmds, "a write was refused")?.ok_or_else(|| err("transaction not applied"))?;
        progress.add(chunk.len() as u64);
    }
    // Every collection imported is registered, and the trader holds no
    // other state (refused, or deleted with --force): the registry's empty
    // member says it is complete, so that readers trust it.
    if let Some(r) = &registry {
        conn.query(&redis::Cmd::sadd(r, ""))?;
    }
    progress.finish();
    if !setup.quiet {
        eprintln!(
            "import {}: {} ids, {values} values, {events} events in {:.2}s",
            layout.prefix(),
            items.len(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
