//! The key layout of DESIGN.md:
//! `{trader_key}:{collection}:{id}`, `…:{id}:events`, `…:index:{collection}`
//! and the writer's commit marker `…:writer:{writer_id}`.

/// Builds keys for one trader (and optionally one instance).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `"trader-T1"`, `"trader-T1:I1"`, `"{trader-T1}"` in cluster mode, or
    /// empty when the trader prefix is off.
    prefix: String,
}

impl Keys {
    pub(crate) fn new(trader_key: &str, cluster: bool) -> Self {
        let prefix = if cluster && !trader_key.is_empty() {
            format!("{{{trader_key}}}")
        } else {
            trader_key.to_string()
        };
        Keys { prefix }
    }

    fn push_prefix(&self, out: &mut Vec<u8>) {
        if !self.prefix.is_empty() {
            out.extend_from_slice(self.prefix.as_bytes());
            out.push(b':');
        }
    }

    /// Appends `{prefix}:{collection}:{id}` to `out`.
    pub(crate) fn write_entity(&self, out: &mut Vec<u8>, collection: &str, id: &str) {
        self.push_prefix(out);
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
        self.push_prefix(out);
        out.extend_from_slice(b"index:");
        out.extend_from_slice(collection.as_bytes());
    }

    pub(crate) fn entity(&self, collection: &str, id: &str) -> String {
        let mut v = Vec::new();
        self.write_entity(&mut v, collection, id);
        String::from_utf8(v).unwrap_or_default()
    }

    pub(crate) fn events(&self, collection: &str, id: &str) -> String {
        let mut v = Vec::new();
        self.write_events(&mut v, collection, id);
        String::from_utf8(v).unwrap_or_default()
    }

    pub(crate) fn index(&self, collection: &str) -> String {
        let mut v = Vec::new();
        self.write_index(&mut v, collection);
        String::from_utf8(v).unwrap_or_default()
    }

    /// The writer's commit marker: the number of its last applied batch.
    pub(crate) fn writer(&self, writer_id: &str) -> String {
        if self.prefix.is_empty() {
            format!("writer:{writer_id}")
        } else {
            format!("{}:writer:{writer_id}", self.prefix)
        }
    }

    /// A `SCAN` pattern matching every key of this trader (and only it).
    pub(crate) fn pattern(&self) -> String {
        // Escape glob metacharacters that ids may legally contain.
        let mut p = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        if p.is_empty() {
            "*".into()
        } else {
            p + ":*"
        }
    }
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
        assert_eq!(k.writer("main"), "trader-TESTER-001:writer:main");
        assert_eq!(k.pattern(), "trader-TESTER-001:*");
    }

    #[test]
    fn cluster_hash_tag_and_no_prefix() {
        let k = Keys::new("trader-T1:I1", true);
        assert_eq!(k.entity("orders", "O-1"), "{trader-T1:I1}:orders:O-1");
        let k = Keys::new("", false);
        assert_eq!(k.entity("orders", "O-1"), "orders:O-1");
        assert_eq!(k.pattern(), "*");
    }

    #[test]
    fn pattern_escapes_glob() {
        let k = Keys::new("trader-A*B", false);
        assert_eq!(k.pattern(), "trader-A\\*B:*");
    }
}
