//! `stats`: key counts, sampled memory, writer markers, Redis status.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::admin::{Admin as Conn, Layout};
use crate::store::marker::Marker;
use redis::Value;
use serde_json::{json, Value as Json};

use super::util::{self, bytes, err, human, text, CliError, Survey};
use super::Setup;

#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Keys of each kind whose MEMORY USAGE is read; the total is estimated
    /// from their average.
    #[arg(long, default_value_t = 200, value_name = "N")]
    sample: usize,
    /// Refresh every SECS seconds (a live view; stop with Ctrl-C).
    #[arg(long, value_name = "SECS")]
    watch: Option<u64>,
    /// With --watch: stop after N views.
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
}

pub(crate) fn run(setup: &Setup, a: StatsArgs) -> Result<ExitCode, CliError> {
    let layout = util::layout(setup)?;
    let mut conn = Conn::connect(&setup.config)?;
    for shown in 1u64.. {
        let report = collect(&mut conn, &layout, a.sample)?;
        if a.json {
            println!("{report}");
        } else {
            print_text(setup, &layout, &report);
        }
        let Some(every) = a.watch else { break };
        if a.count.is_some_and(|n| shown >= n) {
            break;
        }
        std::thread::sleep(Duration::from_secs(every.max(1)));
        if !a.json {
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `INFO section` as a map.
fn info(conn: &mut Conn, section: &str) -> Result<BTreeMap<String, String>, CliError> {
    let body = match conn.query(redis::cmd("INFO").arg(section))? {
        Value::BulkString(b) => text(&b),
        other => return Err(err(format!("unexpected INFO reply {other:?}"))),
    };
    Ok(body
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// MEMORY USAGE of up to `n` keys spread over `keys`: (sampled, bytes).
fn sample_memory(conn: &mut Conn, keys: &[String], n: usize) -> Result<(usize, u64), CliError> {
    if keys.is_empty() || n == 0 {
        return Ok((0, 0));
    }
    let step = (keys.len() / n).max(1);
    let cmds: Vec<redis::Cmd> =
        keys.iter().step_by(step).take(n).map(|k| redis::cmd("MEMORY").arg("USAGE").arg(k).clone()).collect();
    let mut total = 0;
    let mut sampled = 0;
    for v in conn.pipeline(&cmds, 500, None)? {
        if let Value::Int(b) = v {
            total += u64::try_from(b).unwrap_or(0);
            sampled += 1;
        }
    }
    Ok((sampled, total))
}

fn collect(conn: &mut Conn, layout: &Layout, sample: usize) -> Result<Json, CliError> {
    let survey: Survey = util::survey_existing(conn, layout)?;
    let members = util::index_members(conn, layout, &survey)?;
    let mut collections = serde_json::Map::new();
    for c in survey.collections() {
        let values = survey.entities.iter().filter(|(x, _)| *x == c).count();
        let logs = survey.logs.iter().filter(|(x, _)| *x == c).count();
        let indexed = members.get(&c).and_then(|m| m.as_ref().ok()).map(|m| m.len());
        collections.insert(c, json!({ "values": values, "event_logs": logs, "indexed": indexed }));
    }

    // Memory: sampled per collection and kind of key (one account's long
    // log must not stand for every order's short one), extrapolated by
    // each group's count; a group no larger than the sample is exact.
    let entities = survey.entities.iter().map(|(c, i)| ((c, 0), layout.entity(c, i)));
    let keys = entities
        .chain(survey.logs.iter().map(|(c, i)| ((c, 1), layout.events(c, i))))
        .chain(survey.indexes.iter().map(|c| ((c, 2), layout.index(c))));
    let mut groups: BTreeMap<(&String, u8), Vec<String>> = BTreeMap::new();
    for (group, key) in keys {
        groups.entry(group).or_default().push(key);
    }
    let mut estimated = 0.0;
    let mut sampled_keys = 0;
    let mut memory_error = None;
    for keys in groups.values() {
        match sample_memory(conn, keys, sample) {
            Ok((n, b)) if n > 0 => {
                sampled_keys += n;
                estimated += b as f64 / n as f64 * keys.len() as f64;
            }
            Ok(_) => {}
            Err(e) => memory_error = Some(e.0),
        }
    }

    let now_us = crate::model::UnixNanos::now().0 / 1000;
    let mut writers = Vec::new();
    // Idle times first: reading a marker resets its own. The flusher reads
    // it after every transaction, so this is the time since its last batch.
    // Not available under an LFU maxmemory-policy, or to an ACL without it.
    let idle_cmds: Vec<redis::Cmd> =
        survey.writers.iter().map(|w| redis::Cmd::object_idletime(layout.writer(w))).collect();
    let idles = conn.pipeline(&idle_cmds, 100, None)?;
    for ((w, raw), idle) in util::markers(conn, layout, &survey)?.into_iter().zip(idles) {
        let key = layout.writer(&w);
        let idle_s = if let Value::Int(s) = idle { Some(s) } else { None };
        let parsed = raw.as_deref().and_then(Marker::parse).map(|m| (m.epoch, m.batch));
        writers.push(json!({
            "writer_id": w,
            "key": key,
            "marker": raw.as_deref().map(text),
            "epoch": parsed.map(|p| p.0),
            "batch": parsed.map(|p| p.1),
            // Epochs are the claim's wall-clock time in µs (or a counter
            // after a clock step back): the time since the writer opened.
            "opened_s_ago": parsed.and_then(|p| now_us.checked_sub(p.0)).filter(|d| *d < 1 << 50).map(|d| d / 1_000_000),
            "idle_s": idle_s,
        }));
    }

    let mut info_fields = BTreeMap::new();
    for section in ["persistence", "replication", "memory"] {
        info_fields.extend(info(conn, section)?);
    }
    let mut redis: serde_json::Map<String, Json> = [
        "aof_enabled",
        "aof_last_write_status",
        "aof_last_bgrewrite_status",
        "aof_rewrite_in_progress",
        "rdb_last_bgsave_status",
        "rdb_changes_since_last_save",
        "loading",
        "role",
        "connected_slaves",
        "master_link_status",
        "master_repl_offset",
        "used_memory",
        "used_memory_human",
        "maxmemory",
        "maxmemory_human",
        "maxmemory_policy",
    ]
    .into_iter()
    .filter_map(|k| Some((k.to_string(), json!(info_fields.get(k)?))))
    .collect();
    let replicas: Vec<&String> = info_fields
        .iter()
        .filter(|(k, _)| k.starts_with("slave") && k[5..].parse::<u32>().is_ok())
        .map(|(_, v)| v)
        .collect();
    redis.insert("replicas".into(), json!(replicas));
    // Refused by an ACL without +config|get: then left out.
    let fsync_value = match conn.raw(redis::cmd("CONFIG").arg("GET").arg("appendfsync"))? {
        Value::Array(kv) => kv.into_iter().nth(1).and_then(bytes),
        _ => None,
    };
    if let Some(v) = fsync_value {
        redis.insert("appendfsync".into(), json!(text(&v)));
    }

    Ok(json!({
        "trader_key": layout.prefix(),
        "keys": survey.state_keys() + survey.writers.len(),
        "collections": collections,
        "memory": {
            "sampled_keys": sampled_keys,
            "estimated_bytes": estimated.round() as u64,
            "error": memory_error,
        },
        "writers": writers,
        "redis": redis,
    }))
}

fn print_text(setup: &Setup, layout: &Layout, r: &Json) {
    println!("{} {}: {} keys", setup.config.redacted_url(), layout.prefix(), r["keys"]);
    if let Some(cols) = r["collections"].as_object() {
        for (c, v) in cols {
            let indexed = v["indexed"].as_u64().map_or("-".into(), |n| n.to_string());
            println!(
                "  {c:<16} {:>8} values {:>8} event logs {:>8} indexed",
                v["values"], v["event_logs"], indexed
            );
        }
    }
    let est = r["memory"]["estimated_bytes"].as_u64().unwrap_or(0);
    println!(
        "  memory ~{:.1} MiB (MEMORY USAGE of {} keys, extrapolated){}",
        est as f64 / (1024.0 * 1024.0),
        r["memory"]["sampled_keys"],
        r["memory"]["error"].as_str().map(|e| format!(" [{e}]")).unwrap_or_default()
    );
    for w in r["writers"].as_array().into_iter().flatten() {
        let opened =
            w["opened_s_ago"].as_u64().map_or("?".into(), |s| human(Duration::from_secs(s)) + " ago");
        let idle = w["idle_s"].as_i64().map_or("?".into(), |s| human(Duration::from_secs(s.max(0) as u64)));
        println!(
            "  writer {:<10} marker {} (batch {}, opened {opened}, last batch or read {idle} ago)",
            w["writer_id"].as_str().unwrap_or(""),
            w["marker"].as_str().unwrap_or("(gone)"),
            w["batch"],
        );
    }
    let rd = &r["redis"];
    let g = |k: &str| rd[k].as_str().unwrap_or("?").to_string();
    println!(
        "  redis: role {}, aof {} (last write {}, last rewrite {}, appendfsync {}), rdb last save {}",
        g("role"),
        if g("aof_enabled") == "1" { "on" } else { "off" },
        g("aof_last_write_status"),
        g("aof_last_bgrewrite_status"),
        g("appendfsync"),
        g("rdb_last_bgsave_status")
    );
    println!(
        "  redis: memory {} of maxmemory {} ({}), {} replica(s) {}",
        g("used_memory_human"),
        if g("maxmemory") == "0" { "unlimited".into() } else { g("maxmemory_human") },
        g("maxmemory_policy"),
        g("connected_slaves"),
        rd["replicas"]
            .as_array()
            .map(|v| v.iter().filter_map(Json::as_str).collect::<Vec<_>>().join("; "))
            .unwrap_or_default()
    );
}
