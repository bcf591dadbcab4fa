//! Live event streams (`publish_events`): every event appended
//! to an entity's log is also added to `{trader}:stream:{collection}` with
//! `XADD`, in the same transaction as its `RPUSH`, with the entity id
//! (`id`) and the encoded event (`ev`). After the batch's last `XADD` to a
//! stream, one `XTRIM … MAXLEN ~ stream_max_len` trims it (once per batch
//! rather than with each `XADD`: cheaper for Redis, the same bound at the
//! end of every transaction), and with `stream_max_age` one
//! `XTRIM … MINID ~` by age, by the server's clock (see `trim`).
//!
//! Exactly once: a batch is applied whole or not at all, and a batch whose
//! reply was lost is replayed only when the commit marker shows it was not
//! applied; the `WATCH` on the marker aborts a late `EXEC` of a dropped
//! connection (see `mod.rs` and `marker.rs`). So the `XADD`s of a batch
//! land exactly once, in the batch's order, like its `RPUSH`es, and a
//! consumer reading the stream from the last id it saw gets every
//! acknowledged event once, in order, across reconnects and replays.

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
    /// log of `collection`/`id`. Each `XADD` is one command of the
    /// transaction (the caller adds its weights).
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
    /// `stream_max_age` `XTRIM … MINID ~ {server_now - age}`. Pushes each
    /// command's weight (0).
    ///
    /// The age cutoff goes by the server's clock (`server_now_ms`, see
    /// `Conn::server_clock`), because stream ids (`XADD … *`) are the
    /// server's milliseconds: a cutoff from the engine's clock, ahead of
    /// the server's by more than the age, would trim the very events this
    /// transaction adds. Without the server's clock there is no
    /// age trim (the length still bounds the stream): keeping entries a
    /// while longer is safer than trimming unread ones.
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
