//! `purge`: closed orders and flat positions older than an age, with their
//! event logs and index entries, and those collections' orphan event logs
//! (`util::delete_orphan_log`); a dry run unless `--execute`. Each value is
//! read again under a `WATCH` and deleted only if still closed and old
//! enough, so a write that lands meanwhile wins and the entity stays.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::admin::{self, Admin as Conn, Layout};
use redis::Value;

use super::util::{self, human, CliError, Progress};
use super::Setup;

#[derive(Args, Debug)]
pub(crate) struct PurgeArgs {
    /// Age: closed (order: last event; position: ts_closed) more than this
    /// long ago. A number and a unit: 90m, 12h, 30d, 2w.
    #[arg(long, value_name = "AGE", value_parser = util::parse_age)]
    older_than: Duration,
    /// Only orders (default: orders and positions).
    #[arg(long)]
    orders: bool,
    /// Only positions (default: orders and positions).
    #[arg(long)]
    positions: bool,
    /// Only list what would be deleted (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Delete.
    #[arg(long)]
    execute: bool,
    /// Entities per transaction.
    #[arg(long, default_value_t = 100, value_name = "N")]
    batch: usize,
}

pub(crate) fn run(setup: &Setup, a: PurgeArgs) -> Result<ExitCode, CliError> {
    let layout = util::layout(setup)?;
    let enc = setup.config.encoding;
    let mut conn = Conn::connect(&setup.config)?;
    let now = crate::model::UnixNanos::now().0;
    let cutoff = now.saturating_sub(u64::try_from(a.older_than.as_nanos()).unwrap_or(u64::MAX));
    let both = a.orders == a.positions;
    let wanted =
        |c: &str| (c == "orders" && (both || a.orders)) || (c == "positions" && (both || a.positions));

    let survey = util::survey_existing(&mut conn, &layout)?;
    let targets: Vec<&(String, String)> = survey.entities.iter().filter(|(c, _)| wanted(c)).collect();
    let cmds: Vec<redis::Cmd> = targets.iter().map(|(c, id)| redis::Cmd::get(layout.entity(c, id))).collect();
    let mut progress = Progress::new("purge scan", cmds.len() as u64, setup.quiet);
    let replies = conn.pipeline(&cmds, 1000, Some(&mut progress))?;
    progress.finish();
    let mut candidates = Vec::new();
    let mut undecodable = 0;
    for ((c, id), reply) in targets.iter().zip(replies) {
        let b = match reply {
            Value::BulkString(b) => b,
            // Refused: not "nothing to purge". (A key of another type is
            // not a snapshot; `verify` reports it.)
            Value::ServerError(e) if e.code() != "WRONGTYPE" => {
                return Err(util::err(format!("{}: {e}", layout.entity(c, id))))
            }
            _ => continue,
        };
        match admin::closed_at(c, &b, enc) {
            Ok(Some(at)) if at < cutoff => candidates.push((c.clone(), id.clone(), at)),
            Ok(_) => {}
            Err(_) => undecodable += 1,
        }
    }
    let with_logs =
        candidates.iter().filter(|(c, id, _)| survey.logs.contains(&(c.clone(), id.clone()))).count();
    let age = |at: u64| human(Duration::from_nanos(now.saturating_sub(at)));
    // Event logs of these collections whose id has no snapshot (an event
    // appended after a delete or purge): nothing loads them, and an entity
    // written later under the id would inherit them.
    let orphans: Vec<&(String, String)> = survey
        .logs
        .iter()
        .filter(|(c, id)| wanted(c) && !survey.entities.contains(&(c.clone(), id.clone())))
        .collect();

    if !a.execute {
        for (c, id, at) in candidates.iter().take(20) {
            println!("would delete {} (closed {} ago)", layout.entity(c, id), age(*at));
        }
        if candidates.len() > 20 {
            println!("... and {} more", candidates.len() - 20);
        }
        for (c, id) in orphans.iter().take(20) {
            println!("would delete orphan log {} (no {})", layout.events(c, id), layout.entity(c, id));
        }
        if orphans.len() > 20 {
            println!("... and {} more orphan logs", orphans.len() - 20);
        }
        println!(
            "dry run: {} entities ({} with event logs) closed more than {} ago and {} orphan event log(s) would be deleted from {}; --execute deletes them",
            candidates.len(),
            with_logs,
            human(a.older_than),
            orphans.len(),
            layout.prefix()
        );
    } else {
        let mut progress = Progress::new("purge", candidates.len() as u64, setup.quiet);
        let (mut deleted, mut kept) = (0usize, 0usize);
        for chunk in candidates.chunks(a.batch.max(1)) {
            let (d, k) = purge_batch(&mut conn, &layout, enc, cutoff, chunk)?;
            deleted += d;
            kept += k;
            progress.add(chunk.len() as u64);
        }
        let mut orphans_deleted = 0usize;
        for (c, id) in &orphans {
            orphans_deleted += usize::from(util::delete_orphan_log(&mut conn, &layout, c, id)?);
        }
        progress.finish();
        println!(
            "purged {deleted} entities (with their event logs and index entries) closed more than {} ago and {orphans_deleted} orphan event log(s) from {}{}",
            human(a.older_than),
            layout.prefix(),
            if kept > 0 { format!("; {kept} changed meanwhile and were kept") } else { String::new() }
        );
    }
    if undecodable > 0 {
        println!("{undecodable} value(s) did not decode and were left alone: see `tradecache verify`");
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes one batch under a `WATCH` of its values; returns (deleted,
/// kept). A batch whose transaction is aborted (a value changed) is retried
/// one entity at a time.
fn purge_batch(
    conn: &mut Conn,
    layout: &Layout,
    enc: crate::Encoding,
    cutoff: u64,
    chunk: &[(String, String, u64)],
) -> Result<(usize, usize), CliError> {
    let keys: Vec<String> = chunk.iter().map(|(c, id, _)| layout.entity(c, id)).collect();
    for _ in 0..2 {
        let mut deleting = 0;
        let still_closed = |conn: &mut Conn| {
            let gets: Vec<redis::Cmd> = keys.iter().map(redis::Cmd::get).collect();
            let mut cmds = Vec::new();
            for ((c, id, _), v) in chunk.iter().zip(conn.pipeline(&gets, gets.len(), None)?) {
                if let Value::BulkString(b) = v {
                    if matches!(admin::closed_at(c, &b, enc), Ok(Some(at)) if at < cutoff) {
                        // With the open/closed indexes the flusher keeps.
                        cmds.extend([
                            redis::Cmd::del(&[layout.entity(c, id), layout.events(c, id)]),
                            redis::Cmd::srem(layout.index(c), id),
                            redis::Cmd::srem(layout.open_index(c), id),
                            redis::Cmd::zrem(layout.closed_index(c), id),
                        ]);
                        deleting += 1;
                    }
                }
            }
            Ok((deleting > 0).then_some(cmds))
        };
        match util::watched(conn, &keys, "a delete was refused", still_closed)? {
            Some(_) => return Ok((deleting, chunk.len() - deleting)),
            None if deleting == 0 => return Ok((0, chunk.len())),
            // A watched value changed: retried, a batch one entity at a time.
            None if chunk.len() > 1 => {
                return chunk.iter().try_fold((0, 0), |(d, k), one| {
                    let (a, b) = purge_batch(conn, layout, enc, cutoff, std::slice::from_ref(one))?;
                    Ok((d + a, k + b))
                })
            }
            None => {}
        }
    }
    Ok((0, chunk.len()))
}
