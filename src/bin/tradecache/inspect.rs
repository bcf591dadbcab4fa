//! `inspect`: traders present, a trader's keys by collection, values as JSON.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;

use super::admin::{self, Admin as Conn};
use redis::Value;

use super::util::{self, bytes, err, text, CliError};
use super::Setup;

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// A collection (`orders`, `positions`, ...): print its values as JSON.
    collection: Option<String>,
    /// One id in the collection: print that value and its event log.
    id: Option<String>,
    /// List every trader and instance present, even when a trader id is
    /// configured.
    #[arg(long)]
    all: bool,
}

pub(crate) fn run(setup: &Setup, a: InspectArgs) -> Result<ExitCode, CliError> {
    let mut conn = Conn::connect(&setup.config)?;
    if a.all || !setup.trader_given {
        if a.collection.is_some() && !setup.trader_given {
            return Err(err("which trader? give --trader ID (or set CACHE_TRADER_ID)"));
        }
        list_traders(setup, &mut conn)?;
        return Ok(ExitCode::SUCCESS);
    }
    let layout = util::layout(setup)?;
    let survey = util::survey(&mut conn, &layout)?;
    let enc = setup.config.encoding;
    let Some(collection) = a.collection else {
        println!(
            "{} {}: {} keys",
            setup.config.redacted_url(),
            layout.pattern().unwrap_or_default(),
            survey.state_keys() + survey.writers.len()
        );
        let members = util::index_members(&mut conn, &layout, &survey)?;
        for c in survey.collections() {
            let values = survey.entities.iter().filter(|(x, _)| *x == c).count();
            let logs = survey.logs.iter().filter(|(x, _)| *x == c).count();
            let index = match members.get(&c) {
                Some(Ok(m)) => format!("{} ids indexed", m.len()),
                Some(Err(e)) => format!("index unreadable: {e}"),
                None => "no index".into(),
            };
            println!("  {c:<16} {values:>8} values  {logs:>8} event logs  {index}");
        }
        for (w, v) in util::markers(&mut conn, &layout, &survey)? {
            let shown = v.map(|b| text(&b)).unwrap_or_else(|| "(gone)".into());
            println!("  writer {w:<9} {}  marker {shown}", layout.writer(&w));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let ids: Vec<&String> = survey
        .entities
        .union(&survey.logs)
        .filter(|(c, id)| *c == collection && a.id.as_ref().is_none_or(|want| want == id))
        .map(|(_, id)| id)
        .collect();
    if ids.is_empty() {
        return Err(err(format!(
            "nothing under {}:{collection}{}",
            layout.prefix(),
            a.id.map(|i| format!(":{i}")).unwrap_or_default()
        )));
    }
    for id in ids {
        let key = layout.entity(&collection, id);
        match conn.raw(&redis::Cmd::get(&key))? {
            Value::BulkString(b) => match admin::entity_to_json(&collection, id, &b, enc) {
                Ok(j) => println!("{key} = {j}"),
                Err(e) => println!("{key}: undecodable ({e}; {} bytes)", b.len()),
            },
            Value::Nil => println!("{key}: no value"),
            other => println!("{key}: {other:?}"),
        }
        if a.id.is_some() {
            let key = layout.events(&collection, id);
            match conn.raw(&redis::Cmd::lrange(&key, 0, -1))? {
                Value::Array(items) => {
                    println!("{key} ({} events)", items.len());
                    for (i, v) in items.into_iter().enumerate() {
                        match bytes(v) {
                            Some(v) => match admin::event_to_json(&collection, &v, enc) {
                                Ok((j, _)) => println!("  [{i}] {j}"),
                                Err(e) => println!("  [{i}] undecodable ({e})"),
                            },
                            None => println!("  [{i}] not a stored event"),
                        }
                    }
                }
                Value::Nil => {}
                // Refused, or another type: said, never shown as no events.
                other => println!("{key}: {other:?}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Splits `trader-T1:…` / `{trader-T1:I1}:…` keys into (trader, instance,
/// what): the key shapes tell a trader's own keys from its instances'.
fn owner(key: &str) -> Option<(String, Option<String>, String)> {
    const KNOWN: [&str; 6] = ["instruments", "accounts", "orders", "positions", "index", "writer"];
    if let Some(rest) = key.strip_prefix('{') {
        // Cluster: the hash tag is the whole trader key.
        let (tag, rest) = rest.split_once("}:")?;
        let (trader, instance) = match tag.split_once(':') {
            Some((t, i)) => (t, Some(i.to_string())),
            None => (tag, None),
        };
        let trader = trader.strip_prefix("trader-")?;
        return Some((trader.to_string(), instance, kind(rest)));
    }
    let rest = key.strip_prefix("trader-")?;
    let parts: Vec<&str> = rest.split(':').collect();
    let trader = parts[0].to_string();
    match parts.len() {
        3 => Some((trader, None, kind(&parts[1..].join(":")))),
        4 if parts[3] == "events" && KNOWN.contains(&parts[1]) => {
            Some((trader, None, kind(&parts[1..].join(":"))))
        }
        // `index:{collection}:open|closed`.
        4 if parts[1] == "index" && matches!(parts[3], "open" | "closed") => {
            Some((trader, None, kind(&parts[1..].join(":"))))
        }
        4 | 5 => Some((trader, Some(parts[1].to_string()), kind(&parts[2..].join(":")))),
        _ => None,
    }
}

/// `orders`, `orders (event logs)`, `index`, `registry` (of collections),
/// `writer`.
fn kind(rest: &str) -> String {
    let parts: Vec<&str> = rest.split(':').collect();
    match parts.as_slice() {
        ["index", ""] => "registry".into(),
        ["index", _] => "index".into(),
        ["index", _, "open" | "closed"] => "index (open/closed)".into(),
        ["stream", _] => "stream".into(),
        ["heartbeat", _] => "heartbeat".into(),
        ["writer", _] => "writer".into(),
        [c, _, "events"] => format!("{c} (event logs)"),
        [c, ..] => (*c).to_string(),
        [] => String::new(),
    }
}

fn list_traders(setup: &Setup, conn: &mut Conn) -> Result<(), CliError> {
    if !setup.config.cluster_nodes.is_empty() {
        return Err(err(
            "listing traders scans one node, and a cluster spreads traders over several: give --trader",
        ));
    }
    // Keys by (trader, instance), by kind.
    let mut all: BTreeMap<(String, Option<String>), BTreeMap<String, usize>> = BTreeMap::new();
    for pattern in ["trader-*", "{trader-*"] {
        for k in conn.scan(pattern)? {
            if let Some((t, i, what)) = owner(&text(&k)) {
                *all.entry((t, i)).or_default().entry(what).or_default() += 1;
            }
        }
    }
    println!("{}: {} trader(s)/instance(s)", setup.config.redacted_url(), all.len());
    if all.is_empty() {
        println!("  no tradecache keys (trader-*) in this database");
        return Ok(());
    }
    println!("  {:<24} {:<12} {:>8}  collections", "TRADER", "INSTANCE", "KEYS");
    for ((t, i), by) in &all {
        let keys: usize = by.values().sum();
        let by: Vec<String> = by.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("  {t:<24} {:<12} {keys:>8}  {}", i.as_deref().unwrap_or("-"), by.join(", "));
    }
    println!("inspect one: tradecache --trader ID [--instance I] inspect [COLLECTION [ID]]");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        let o = |k: &str| owner(k).map(|(t, i, w)| format!("{t}|{}|{w}", i.unwrap_or_default()));
        assert_eq!(o("trader-T1:orders:O-1").as_deref(), Some("T1||orders"));
        assert_eq!(o("trader-T1:orders:O-1:events").as_deref(), Some("T1||orders (event logs)"));
        assert_eq!(o("trader-T1:index:orders").as_deref(), Some("T1||index"));
        assert_eq!(o("trader-T1:writer:main").as_deref(), Some("T1||writer"));
        assert_eq!(o("trader-T1:I1:orders:O-1").as_deref(), Some("T1|I1|orders"));
        assert_eq!(o("trader-T1:I1:orders:O-1:events").as_deref(), Some("T1|I1|orders (event logs)"));
        assert_eq!(o("{trader-T1:I1}:orders:O-1").as_deref(), Some("T1|I1|orders"));
        assert_eq!(o("{trader-T1}:index:orders").as_deref(), Some("T1||index"));
        assert_eq!(o("trader-T1").as_deref(), None);
        assert_eq!(o("other:x").as_deref(), None);
    }
}
