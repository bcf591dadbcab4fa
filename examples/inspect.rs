//! Lists a trader's keys by collection and prints values decoded to JSON,
//! for a person debugging production state.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6390 CACHE_TRADER_ID=DEMO-001 \
//!     cargo run --example inspect                 # keys per collection
//! ... cargo run --example inspect -- orders       # every order, as JSON
//! ... cargo run --example inspect -- orders O-1   # one order and its events
//! ```

use std::collections::BTreeMap;

use tradecache::admin::{self, Admin};
use tradecache::{Config, Encoding};

/// A stored value as JSON, decoded by the crate's own decoder (as `load`
/// reads it: reference collections into their types, others schemaless);
/// `event` for an item of an event log.
fn to_json(collection: &str, id: &str, bytes: &[u8], enc: Encoding, event: bool) -> String {
    let value = if event {
        admin::event_to_json(collection, bytes, enc).map(|(v, _)| v)
    } else {
        admin::entity_to_json(collection, id, bytes, enc)
    };
    match value {
        Ok(v) => v.to_string(),
        Err(e) => format!("<undecodable: {e}; {} bytes>", bytes.len()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let enc = admin::encoding(&config);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let prefix = config.trader_key();
    let url = config.redacted_url();
    // Connected as `Cache::open` connects (Sentinel, Cluster, TLS, ACL):
    // the server the configuration names, never a default one.
    let mut con = Admin::connect(&config)?;
    let pattern = if prefix.is_empty() { "*".to_string() } else { format!("{prefix}:*") };
    // SCAN, not KEYS: never blocks a production server for the whole keyspace.
    let keys: Vec<String> =
        con.scan(&pattern)?.into_iter().map(|k| String::from_utf8_lossy(&k).into_owned()).collect();
    let strip = |k: &str| k.strip_prefix(&format!("{prefix}:")).unwrap_or(k).to_string();
    match args.as_slice() {
        [] => {
            let mut by: BTreeMap<String, usize> = BTreeMap::new();
            for k in &keys {
                let rest = strip(k);
                let coll = rest.split(':').next().unwrap_or("").to_string();
                let kind = if rest.ends_with(":events") { format!("{coll} (event logs)") } else { coll };
                *by.entry(kind).or_default() += 1;
            }
            println!("{url} {pattern}: {} keys", keys.len());
            for (c, n) in by {
                println!("  {c:<28} {n}");
            }
        }
        [coll, rest @ ..] => {
            for k in &keys {
                let r = strip(k);
                let mut parts = r.splitn(3, ':');
                let (c, id) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                if c != coll || rest.first().is_some_and(|want| want != id) {
                    continue;
                }
                match con.key_type(k)?.as_str() {
                    "string" => {
                        let v = con.get(k)?.unwrap_or_default();
                        println!("{k} = {}", to_json(c, id, &v, enc, false));
                    }
                    "list" => {
                        let items = con.list(k)?;
                        println!("{k} ({} items)", items.len());
                        for (i, v) in items.iter().enumerate() {
                            println!("  [{i}] {}", to_json(c, id, v, enc, true));
                        }
                    }
                    "set" => {
                        let members: Vec<String> =
                            con.members(k)?.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
                        println!("{k} = {members:?}");
                    }
                    other => println!("{k}: {other}"),
                }
            }
        }
    }
    Ok(())
}
