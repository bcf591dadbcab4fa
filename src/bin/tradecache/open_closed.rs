//! `verify`'s check of the open/closed indexes: every snapshot the flusher
//! wrote is in exactly one of `index:{c}:open` (a set) and
//! `index:{c}:closed` (a sorted set by last update), the one its state
//! says; `load_open` reads the first and purges the second, so an entry
//! missing there hides the entity from them. For the reference
//! collections the state is decoded from the value (and `--repair` puts
//! the entry back); for others only their own type knows it, so an id in
//! both or in neither is reported and left to the operator.

use std::collections::{BTreeMap, BTreeSet};

use super::admin::{self, Admin as Conn, Layout};
use crate::Encoding;
use redis::Value;

use super::util::{self, CliError, Survey};
use super::verify::{watched, Finding, Kind};

/// Adds the open/closed findings of every collection that has snapshots
/// and either is a reference collection or has an open or closed index.
pub(crate) fn check(
    conn: &mut Conn,
    layout: &Layout,
    enc: Encoding,
    survey: &Survey,
    findings: &mut Vec<Finding>,
) -> Result<(), CliError> {
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
    // Each collection's open and closed members.
    let mut by_collection: BTreeMap<&String, [BTreeSet<String>; 2]> = BTreeMap::new();
    for &c in &collections {
        let lists = by_collection.entry(c).or_default();
        for (list, key) in lists.iter_mut().zip([layout.open_index(c), layout.closed_index(c)]) {
            match util::members(replies.next().unwrap_or(Value::Nil)) {
                Ok(ids) => *list = ids,
                Err(e) => findings.push(Finding::new(Kind::WrongType, key, e, c, "")),
            }
        }
    }

    // Entries whose snapshot is gone.
    for (c, lists) in &by_collection {
        for (ids, key) in lists.iter().zip([layout.open_index(c), layout.closed_index(c)]) {
            for id in ids.iter().filter(|id| !survey.entities.contains(&((*c).clone(), (*id).clone()))) {
                let detail = format!("{id} is listed but {} does not exist", layout.entity(c, id));
                findings.push(Finding::new(Kind::OpenClosedEntryWithoutValue, key.clone(), detail, c, id));
            }
        }
    }

    // Each snapshot in the index its state says.
    let targets: Vec<&(String, String)> =
        survey.entities.iter().filter(|(c, _)| by_collection.contains_key(c)).collect();
    let gets: Vec<redis::Cmd> = targets.iter().map(|(c, id)| redis::Cmd::get(layout.entity(c, id))).collect();
    let values = conn.pipeline(&gets, 1000, None)?;
    for ((c, id), v) in targets.into_iter().zip(values) {
        let Some(m) = by_collection.get(c) else { continue };
        let (in_open, in_closed) = (m[0].contains(id), m[1].contains(id));
        let Value::BulkString(b) = v else { continue }; // gone, or reported by verify
        let kind = match admin::open_closed_state(c, &b, enc) {
            Ok(Some((true, _))) if in_open => Some(Kind::ClosedInOpenIndex),
            Ok(Some((true, _))) if !in_closed => Some(Kind::ClosedNotInClosedIndex),
            Ok(Some((false, _))) if in_closed => Some(Kind::OpenInClosedIndex),
            Ok(Some((false, _))) if !in_open => Some(Kind::OpenNotInOpenIndex),
            Ok(None) if in_open && in_closed => Some(Kind::InOpenAndClosedIndex),
            Ok(None) if !in_open && !in_closed => Some(Kind::InNeitherOpenNorClosedIndex),
            _ => None, // consistent, or undecodable (verify reports it)
        };
        if let Some(kind) = kind {
            let detail = kind.open_closed_detail(&layout.open_index(c), &layout.closed_index(c));
            findings.push(Finding::new(kind, layout.entity(c, id), detail, c, id));
        }
    }
    Ok(())
}

/// Repairs one open/closed finding under a `WATCH` of the value and both
/// indexes: the state is read again and the entry put where it says (a
/// closed entry keeps its score; a new one is scored by the value's last
/// update, or now). Returns whether it applied.
pub(crate) fn repair(conn: &mut Conn, layout: &Layout, enc: Encoding, f: &Finding) -> Result<bool, CliError> {
    let (c, id) = &f.target;
    let (entity, open, closed) = (layout.entity(c, id), layout.open_index(c), layout.closed_index(c));
    let watch = [entity.clone(), open.clone(), closed.clone()];
    match f.kind {
        Kind::OpenClosedEntryWithoutValue => watched(conn, &watch, |conn| {
            Ok((conn.query(&redis::Cmd::exists(&entity))? == Value::Int(0))
                .then(|| vec![redis::Cmd::srem(&open, id), redis::Cmd::zrem(&closed, id)]))
        }),
        Kind::ClosedInOpenIndex
        | Kind::ClosedNotInClosedIndex
        | Kind::OpenInClosedIndex
        | Kind::OpenNotInOpenIndex => watched(conn, &watch, |conn| {
            let Value::BulkString(b) = conn.query(&redis::Cmd::get(&entity))? else { return Ok(None) };
            let Ok(Some((is_closed, updated_ms))) = admin::open_closed_state(c, &b, enc) else {
                return Ok(None);
            };
            Ok(Some(if is_closed {
                let score = updated_ms.unwrap_or(util::now_ns() / 1_000_000);
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&closed).arg("NX").arg(score).arg(id);
                vec![zadd, redis::Cmd::srem(&open, id)]
            } else {
                vec![redis::Cmd::sadd(&open, id), redis::Cmd::zrem(&closed, id)]
            }))
        }),
        _ => Ok(false),
    }
}
