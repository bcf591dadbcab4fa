//! The key layout (docs/usage.md, "Keys"), one method a kind of key.
//!
//! Collection names are part of this layout, so the names it uses itself
//! are reserved: [`LAYOUT_NAMES`] for every type, [`MARKET_DATA_COLLECTIONS`]
//! for all but the crate's market-data types, [`ENTITY_COLLECTIONS`] for
//! market data (whose lists would otherwise be those entities' event logs).
//! `crate::entity` checks them at compile time; the rule is documented on
//! [`crate::Entity::COLLECTION`].

/// The first part after the prefix of the layout's own keys: index sets,
/// streams, commit markers, heartbeats.
pub(crate) const LAYOUT_NAMES: [&str; 4] = ["index", "writer", "stream", "heartbeat"];

/// The collections of the crate's market-data series (`QuoteTick`,
/// `TradeTick`, `Bar`): lists without a snapshot.
pub(crate) const MARKET_DATA_COLLECTIONS: [&str; 3] = ["quotes", "trades", "bars"];

/// The collections of the reference model's entities.
pub(crate) const ENTITY_COLLECTIONS: [&str; 4] = ["instruments", "accounts", "orders", "positions"];

/// Builds keys for one trader (and optionally one instance).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `"trader-T1"`, `"trader-T1:I1"`, `"{trader-T1}"` in cluster mode, or
    /// empty when the trader prefix is off.
    prefix: String,
    /// No other cache's keys start with `prefix:`: it names an instance
    /// (`trader-T1:I1`), or it is a cluster hash tag (`{trader-T1}`, which
    /// an instance's `{trader-T1:I1}` does not start with).
    exclusive: bool,
}

impl Keys {
    pub(crate) fn new(trader_key: &str, cluster: bool) -> Self {
        let prefix = if cluster && !trader_key.is_empty() {
            format!("{{{trader_key}}}")
        } else {
            trader_key.to_string()
        };
        // Trader ids cannot contain ':', so one names an instance.
        let exclusive = cluster || trader_key.contains(':');
        Keys { prefix, exclusive }
    }

    /// The prefix of every key: `trader-T1`, `{trader-T1}`, or empty.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Appends `{prefix}:{collection}:{id}` to `out` (`{collection}:{id}`
    /// without a prefix).
    pub(crate) fn write_entity(&self, out: &mut Vec<u8>, collection: &str, id: &str) {
        if !self.prefix.is_empty() {
            out.extend_from_slice(self.prefix.as_bytes());
            out.push(b':');
        }
        out.extend_from_slice(collection.as_bytes());
        out.push(b':');
        out.extend_from_slice(id.as_bytes());
    }

    /// Appends `{prefix}:{collection}:{id}:events` to `out`.
    pub(crate) fn write_events(&self, out: &mut Vec<u8>, collection: &str, id: &str) {
        self.write_entity(out, collection, id);
        out.extend_from_slice(b":events");
    }

    /// Appends `{prefix}:index:{collection}` to `out`.
    pub(crate) fn write_index(&self, out: &mut Vec<u8>, collection: &str) {
        self.write_entity(out, "index", collection);
    }

    /// The registry of collections, `{prefix}:index:` (the index key of no
    /// collection; `crate::store::registry` says how it stays true). `None`
    /// without a trader prefix, where a bare `index:` key could be an
    /// application's.
    pub(crate) fn registry(&self) -> Option<String> {
        (!self.prefix.is_empty()).then(|| format!("{}:index:", self.prefix))
    }

    /// Appends the registry's key ([`Keys::registry`]) to `out`; `false`
    /// (and nothing appended) without a trader prefix.
    pub(crate) fn write_registry(&self, out: &mut Vec<u8>) -> bool {
        if self.prefix.is_empty() {
            return false;
        }
        self.write_index(out, "");
        true
    }

    /// Appends `{prefix}:index:{collection}:open` (the open entities' ids).
    pub(crate) fn write_open_index(&self, out: &mut Vec<u8>, collection: &str) {
        self.write_index(out, collection);
        out.extend_from_slice(b":open");
    }

    /// Appends `{prefix}:index:{collection}:closed` (a sorted set of the
    /// closed entities' ids, scored by last update in ms since the epoch).
    pub(crate) fn write_closed_index(&self, out: &mut Vec<u8>, collection: &str) {
        self.write_index(out, collection);
        out.extend_from_slice(b":closed");
    }

    /// Appends `{prefix}:stream:{collection}` (published events).
    pub(crate) fn write_stream(&self, out: &mut Vec<u8>, collection: &str) {
        self.write_entity(out, "stream", collection);
    }

    pub(crate) fn open_index(&self, collection: &str) -> String {
        text(|v| self.write_open_index(v, collection))
    }

    pub(crate) fn closed_index(&self, collection: &str) -> String {
        text(|v| self.write_closed_index(v, collection))
    }

    /// The writer's heartbeat (`Config::heartbeat_interval`).
    pub(crate) fn heartbeat(&self, writer_id: &str) -> String {
        self.entity("heartbeat", writer_id)
    }

    pub(crate) fn entity(&self, collection: &str, id: &str) -> String {
        text(|v| self.write_entity(v, collection, id))
    }

    pub(crate) fn events(&self, collection: &str, id: &str) -> String {
        text(|v| self.write_events(v, collection, id))
    }

    pub(crate) fn index(&self, collection: &str) -> String {
        text(|v| self.write_index(v, collection))
    }

    /// The writer's commit marker: the number of its last applied batch.
    pub(crate) fn writer(&self, writer_id: &str) -> String {
        self.entity("writer", writer_id)
    }

    /// A `SCAN` pattern matching every key under this trader prefix; with
    /// no instance it matches the instances' keys too (see
    /// [`Keys::owns`]). `None` without a trader prefix.
    pub(crate) fn pattern(&self) -> Option<String> {
        self.glob(":*")
    }

    /// A `SCAN` pattern matching this cache's index sets.
    pub(crate) fn index_pattern(&self) -> Option<String> {
        self.glob(":index:*")
    }

    /// The prefix, escaped, then `tail`; `None` without a trader prefix.
    fn glob(&self, tail: &str) -> Option<String> {
        let escaped = String::from_utf8(escape_glob(self.prefix.as_bytes())).unwrap_or_default();
        (!self.prefix.is_empty()).then(|| escaped + tail)
    }

    /// The collection an index key (`{prefix}:index:{collection}`) names.
    pub(crate) fn index_collection<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let rest = self.rest(key)?;
        let c = rest.strip_prefix(b"index:")?;
        (!c.is_empty() && !c.contains(&b':')).then_some(c)
    }

    fn rest<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        if self.prefix.is_empty() {
            return None;
        }
        key.strip_prefix(self.prefix.as_bytes())?.strip_prefix(b":")
    }

    /// Whether `clear`/`flush_on_start` delete `key`: one of this cache's
    /// keys, and not a writer's commit marker (which carries the fencing
    /// epoch, so it is kept), heartbeat (which expires by itself) or the
    /// registry of collections (complete once seeded: `crate::store::registry`).
    ///
    /// Without an instance id, `trader-T1:*` also matches the keys of the
    /// trader's instances (`trader-T1:I1:orders:O-1`). The key shapes tell
    /// them apart: this cache's keys are `{collection}:{id}`,
    /// `index:{collection}`, `writer:{id}`, `stream:{collection}` (two parts
    /// after the prefix), `{collection}:{id}:events` and
    /// `index:{collection}:open|closed` (three, ending in `events`, or
    /// starting with `index`), an instance's have one part more. The one shape both can have,
    /// `{a}:{b}:events`, is taken as this cache's only when `a` is one of
    /// `collections` (the reference model's, those with an index set, and
    /// those this cache wrote) or a market-data series'
    /// ([`MARKET_DATA_COLLECTIONS`], which have no index set): an instance
    /// id is never a reference collection name nor a market-data series'
    /// (`Config::validate`).
    pub(crate) fn owns(&self, key: &[u8], collections: &[&[u8]]) -> bool {
        let Some(rest) = self.rest(key) else { return false };
        let parts: Vec<&[u8]> = rest.split(|b| *b == b':').collect();
        // The markers, heartbeats and the registry of collections
        // (`index:`, which names no collection) are kept.
        if parts.len() == 2
            && (parts[0] == b"writer"
                || parts[0] == b"heartbeat"
                || (parts[0] == b"index" && parts[1].is_empty()))
        {
            return false;
        }
        if self.exclusive {
            return true;
        }
        match parts.as_slice() {
            [_, _] => true,
            // An instance id is never `index` (`Config::validate`).
            [index, _, kind] if *index == b"index" => *kind == b"open" || *kind == b"closed",
            [collection, _, events] => {
                *events == b"events"
                    && (collections.contains(collection)
                        || MARKET_DATA_COLLECTIONS.iter().any(|m| m.as_bytes() == *collection))
            }
            _ => false,
        }
    }
}

/// `raw` with the glob metacharacters of `SCAN … MATCH` escaped (also
/// kv's namespace patterns).
pub(crate) fn escape_glob(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// The key `write` appends, as text (keys are built from `&str`s).
fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut v = Vec::new();
    write(&mut v);
    String::from_utf8(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("trader-TESTER-001", false);
        assert_eq!(
            k.entity("positions", "BTCUSDT-PERP.BINANCE-001"),
            "trader-TESTER-001:positions:BTCUSDT-PERP.BINANCE-001"
        );
        assert_eq!(k.events("orders", "O-1"), "trader-TESTER-001:orders:O-1:events");
        assert_eq!(k.index("orders"), "trader-TESTER-001:index:orders");
        assert_eq!(k.open_index("orders"), "trader-TESTER-001:index:orders:open");
        assert_eq!(k.closed_index("orders"), "trader-TESTER-001:index:orders:closed");
        assert_eq!(k.heartbeat("main"), "trader-TESTER-001:heartbeat:main");
        let mut stream = Vec::new();
        k.write_stream(&mut stream, "orders");
        assert_eq!(stream, b"trader-TESTER-001:stream:orders");
        assert_eq!(k.writer("main"), "trader-TESTER-001:writer:main");
        assert_eq!(k.pattern().as_deref(), Some("trader-TESTER-001:*"));
        assert_eq!(k.index_pattern().as_deref(), Some("trader-TESTER-001:index:*"));
    }

    #[test]
    fn cluster_hash_tag_and_no_prefix() {
        let k = Keys::new("trader-T1:I1", true);
        assert_eq!(k.entity("orders", "O-1"), "{trader-T1:I1}:orders:O-1");
        let k = Keys::new("", false);
        assert_eq!(k.entity("orders", "O-1"), "orders:O-1");
        assert_eq!(k.pattern(), None);
    }

    #[test]
    fn pattern_escapes_glob() {
        let k = Keys::new("trader-A*B", false);
        assert_eq!(k.pattern().as_deref(), Some("trader-A\\*B:*"));
    }

    #[test]
    fn owns_its_keys_and_no_instances() {
        let cols: [&[u8]; 2] = [b"orders", b"counters"];
        let k = Keys::new("trader-T", false);
        for own in [
            "trader-T:orders:O-1",
            "trader-T:orders:O-1:events",
            "trader-T:index:orders",
            "trader-T:index:orders:open",
            "trader-T:index:orders:closed",
            "trader-T:stream:orders",
            "trader-T:quotes:BTCUSDT-PERP.BINANCE:events",
            "trader-T:bars:BTCUSDT-PERP.BINANCE-1-MINUTE-LAST-EXTERNAL:events",
            "trader-T:x:y",
        ] {
            assert!(k.owns(own.as_bytes(), &cols), "{own}");
        }
        for other in [
            "trader-T:writer:main",    // the marker is kept
            "trader-T:heartbeat:main", // expires by itself
            "trader-T:index:",         // the registry is kept
            "trader-T:I1:index:",      // an instance's registry
            "trader-T:I1:index:orders:open",
            "trader-T:I1:stream:orders",
            "trader-T:I1:heartbeat:main",
            "trader-T:index:orders:other",
            "trader-T:I1:orders:O-1", // an instance's
            "trader-T:I1:orders:O-1:events",
            "trader-T:I1:index:orders",
            "trader-T:I1:writer:main",
            "trader-T:I1:orders:events",   // an instance's order "events"
            "trader-T:unknown:O-1:events", // not a known collection
            "trader-TX:orders:O-1",
            "trader-T",
            "other:orders:O-1",
        ] {
            assert!(!k.owns(other.as_bytes(), &cols), "{other}");
        }
        assert_eq!(k.index_collection(b"trader-T:index:orders"), Some(&b"orders"[..]));
        assert_eq!(k.index_collection(b"trader-T:I1:index:orders"), None);
        assert_eq!(k.index_collection(b"trader-T:index:"), None);
        assert_eq!(k.registry().as_deref(), Some("trader-T:index:"));
        assert_eq!(Keys::new("trader-T", true).registry().as_deref(), Some("{trader-T}:index:"));
        assert_eq!(Keys::new("", false).registry(), None);

        let k = Keys::new("trader-T:I1", false);
        assert!(k.owns(b"trader-T:I1:orders:O-1", &cols));
        assert!(k.owns(b"trader-T:I1:anything:O-1:events", &cols));
        assert!(!k.owns(b"trader-T:I1:writer:main", &cols));
        assert!(!k.owns(b"trader-T:I1:index:", &cols));
        assert!(!k.owns(b"trader-T:I2:orders:O-1", &cols));
        assert!(!k.owns(b"trader-T:orders:O-1", &cols));

        let k = Keys::new("trader-T", true);
        assert!(k.owns(b"{trader-T}:unknown:O-1:events", &cols));
        assert!(!k.owns(b"{trader-T:I1}:orders:O-1", &cols));

        assert!(!Keys::new("", false).owns(b"orders:O-1", &cols));
    }
}
