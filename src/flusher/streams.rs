//! Live event streams (`publish_events`): every event appended to an
//! entity's log is also added to `{trader}:stream:{collection}` with
//! `XADD` (`id`, `ev`), in the same transaction as its `RPUSH`, and each
//! stream is trimmed once per batch, after its last `XADD`. The `XADD`s
//! land exactly once, in order, like the `RPUSH`es: a batch applies whole
//! or not at all and is replayed only when the marker shows it did not.

use crate::config::Config;
use crate::net::Packer;
use crate::store::keys::Keys;

use crate::ident::Ident;

/// The streams one batch published to (for the trims).
#[derive(Default)]
pub(super) struct Streams {
    collections: Vec<&'static str>,
    key: Vec<u8>,
}

impl Streams {
    /// One `XADD` per event (`events`, encoded) of a run of appends to the
    /// log of `collection`/`id` (the caller adds the weights).
    pub(super) fn publish<'a>(
        &mut self,
        p: &mut Packer,
        keys: &Keys,
        collection: &'static str,
        id: &Ident,
        events: impl Iterator<Item = &'a [u8]>,
    ) {
        self.key.clear();
        keys.write_stream(&mut self.key, collection);
        for ev in events {
            p.cmd(&[b"XADD", &self.key, b"*", b"id", id.as_bytes(), b"ev", ev]);
        }
        if !self.collections.contains(&collection) {
            self.collections.push(collection);
        }
    }

    /// Per stream published to: `XTRIM … MAXLEN ~ stream_max_len`, and with
    /// `stream_max_age` `XTRIM … MINID ~ {server_now - age}` (weight 0).
    /// The age cutoff goes by the server's clock, as stream ids do (the
    /// engine's, ahead, could trim the events just added); without it
    /// there is no age trim.
    pub(super) fn trim(
        &mut self,
        p: &mut Packer,
        cfg: &Config,
        keys: &Keys,
        server_now_ms: Option<u64>,
        weights: &mut Vec<u64>,
    ) {
        let maxlen = cfg.stream_max_len.to_string();
        let min = cfg.stream_max_age.zip(server_now_ms).map(|(age, now)| {
            now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)).to_string()
        });
        for collection in &self.collections {
            self.key.clear();
            keys.write_stream(&mut self.key, collection);
            p.cmd(&[b"XTRIM", &self.key, b"MAXLEN", b"~", maxlen.as_bytes()]);
            weights.push(0);
            if let Some(min) = &min {
                p.cmd(&[b"XTRIM", &self.key, b"MINID", b"~", min.as_bytes()]);
                weights.push(0);
            }
        }
    }
}
