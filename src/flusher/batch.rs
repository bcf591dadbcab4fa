//! One batch: building its transaction from pending writes, and the state
//! it is in until Redis confirms it. Building is pure (it reads nothing
//! from Redis), so the tests below check the RESP it produces without a
//! server.

use crate::config::Config;
use crate::error::DroppedWrite;
use crate::ident::Ident;
use crate::net::{Args, Packer, Span};
use crate::seq::Seq;
use crate::store::codec;
use crate::store::keys::Keys;
use crate::store::marker::Marker;
use crate::ErrorKind;

use super::index::{self, add_member, Indexed, Skipped, StateBufs};
use super::pending::{Item, Pending, Snap};
use super::streams::Streams;

/// `MULTI`, as every batch's transaction starts.
const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";

/// A packed transaction, kept until Redis confirms it.
pub(super) struct Batch {
    pub(super) no: u64,
    /// `MULTI` and the commands, packed once; `EXEC` (and `WAIT`) go after.
    pub(super) tx: Vec<u8>,
    /// Where each command's name and key stand in `tx` (0 is `MULTI`):
    /// what a refused command is reported by, and checked by.
    pub(super) spans: Vec<Span>,
    /// How many writes each command between `MULTI` and `EXEC` carries, in
    /// order: what a command that fails inside the transaction drops.
    pub(super) weights: Vec<u64>,
    /// Puts whose index commands were skipped, the id known indexed in the
    /// same state on the connection it was built for (`index.rs`).
    pub(super) unindexed: Vec<Skipped>,
    /// The sequence numbers this batch covers.
    pub(super) first_seq: u64,
    pub(super) max_seq: u64,
    /// The connection generation `tx` was built for.
    pub(super) generation: u64,
    /// What may show that the batch is not in Redis when the marker cannot
    /// (it is gone, `loss.rs`): its last log and the entries it leaves at
    /// that log's tail. `None` when it appends nothing (replaying it is
    /// harmless).
    pub(super) probe: Option<Probe>,
    state: State,
    /// Its `EXEC` may have applied (a lost reply, or a lost replica
    /// `WAIT`): set by `lost` and `reconnected`, never cleared. A batch only
    /// ever aborted by the marker's `WATCH` is known not to be in Redis.
    maybe_applied: bool,
}

/// The tail a batch leaves on one of its logs (`Batch::probe`).
pub(super) struct Probe {
    pub(super) key: Vec<u8>,
    pub(super) tail: Vec<Vec<u8>>,
}

/// Where a batch is. Changed only through `Batch`'s methods, each named
/// after the event that moves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Not sent on the current connection (or refused): its whole
    /// transaction goes out next time.
    Built,
    /// `MULTI` and its commands sent on the current connection; `EXEC` is
    /// held back until the batch before it is confirmed. `error`: the first
    /// error among the replies to them, once read.
    Queued { error: Option<(String, String)> },
    /// `EXEC` succeeded; only the replica `WAIT` is outstanding.
    Applied,
    /// Sent, but the reply was lost (or the `WATCH` on the marker aborted
    /// its `EXEC`): applied or not, the commit marker decides (`resolve`).
    InDoubt,
}

impl Batch {
    fn new(no: u64, first_seq: u64, generation: u64) -> Batch {
        Batch {
            no,
            tx: Vec::new(),
            spans: Vec::new(),
            weights: Vec::new(),
            unindexed: Vec::new(),
            first_seq,
            max_seq: 0,
            generation,
            probe: None,
            state: State::Built,
            maybe_applied: false,
        }
    }

    #[cfg(test)]
    pub(super) fn state(&self) -> &State {
        &self.state
    }

    /// The name and the key of command `i` of `tx` (0 is `MULTI`).
    pub(super) fn command(&self, i: usize) -> Option<(&[u8], &[u8])> {
        self.spans.get(i)?.name_key(&self.tx)
    }

    pub(super) fn is_built(&self) -> bool {
        self.state == State::Built
    }

    pub(super) fn is_queued(&self) -> bool {
        matches!(self.state, State::Queued { .. })
    }

    pub(super) fn is_applied(&self) -> bool {
        self.state == State::Applied
    }

    pub(super) fn is_in_doubt(&self) -> bool {
        self.state == State::InDoubt
    }

    /// Replies to `tx` (`MULTI` and the commands): `OK`, then one `QUEUED` each.
    pub(super) fn head_replies(&self) -> usize {
        self.weights.len() + 1
    }

    /// Its `MULTI` and commands were sent, without `EXEC`: Built → Queued.
    pub(super) fn sent_queued(&mut self) {
        if self.state == State::Built {
            self.state = State::Queued { error: None };
        }
    }

    /// A reply to its `MULTI` or one of its commands, while queued: keeps
    /// the first error (what a refused `EXEC` reports).
    pub(super) fn head_reply(&mut self, error: Option<(String, String)>) {
        if let State::Queued { error: first @ None } = &mut self.state {
            *first = error;
        }
    }

    /// The first error among the replies to its commands, if queued.
    pub(super) fn take_queued_error(&mut self) -> Option<(String, String)> {
        match &mut self.state {
            State::Queued { error } => error.take(),
            _ => None,
        }
    }

    /// What was queued on the connection is gone (dropped, `DISCARD`, a
    /// refused or aborted `EXEC`): Queued → Built; other states stay.
    pub(super) fn unqueued(&mut self) {
        if self.is_queued() {
            self.state = State::Built;
        }
    }

    /// Its `EXEC` succeeded (or the marker was rewritten for the replica
    /// `WAIT`): → Applied.
    pub(super) fn exec_applied(&mut self) {
        self.state = State::Applied;
    }

    /// The reply was lost (it may have applied), or the marker moved
    /// after it applied: → InDoubt.
    pub(super) fn lost(&mut self) {
        self.state = State::InDoubt;
        self.maybe_applied = true;
    }

    /// The `WATCH` on the marker aborted its `EXEC`: an earlier
    /// connection's may have applied (the marker decides): → InDoubt.
    pub(super) fn aborted(&mut self) {
        self.state = State::InDoubt;
    }

    /// Whether an `EXEC` of it may have applied (see `maybe_applied`).
    pub(super) fn maybe_applied(&self) -> bool {
        self.maybe_applied
    }

    /// A new connection: a batch waiting for its replicas may have lost
    /// them in a failover, so the marker decides again (Applied → InDoubt).
    pub(super) fn reconnected(&mut self) {
        if self.is_applied() {
            self.lost();
        }
    }

    /// The marker shows it was not applied: InDoubt → Built.
    pub(super) fn replay(&mut self) {
        self.state = State::Built;
    }

    /// The connection changed since it was built: the index commands it
    /// skipped (maybe missing now) are added right after `MULTI`.
    pub(super) fn reindex(&mut self, generation: u64, keys: &Keys, b: &mut Bufs, p: &mut Packer) {
        self.generation = generation;
        if self.unindexed.is_empty() {
            return;
        }
        let Some(commands) = self.tx.strip_prefix(MULTI) else { return };
        p.clear();
        p.cmd(&[b"MULTI"]);
        let mut weights =
            index::pack_reindex(p, keys, &self.unindexed, &mut b.sadd, &mut b.state, &mut b.key);
        registry_add(p, keys, &b.sadd, &[], &mut b.names, &mut b.key, &mut weights);
        p.extend(commands, self.spans.get(1..).unwrap_or_default(), MULTI.len());
        weights.extend_from_slice(&self.weights);
        self.tx = std::mem::take(&mut p.buf);
        self.spans = std::mem::take(&mut p.spans);
        self.weights = weights;
        self.unindexed.clear();
    }
}

/// Reused buffers for packing a batch: one variadic command per kind of
/// change (cheaper for Redis than many small ones).
#[derive(Default)]
pub(super) struct Bufs {
    /// `MSET` pairs of every snapshot put, and the commit marker.
    mset: Args,
    puts: u64,
    /// `DEL` of deleted entities, their logs, and logs restarted by a put.
    del: Args,
    deletes: u64,
    /// `SADD`/`SREM` members per index.
    sadd: Vec<(&'static str, Args)>,
    srem: Vec<(&'static str, Args)>,
    /// The open and closed indexes' commands (`index.rs`).
    state: StateBufs,
    /// The batch's events, encoded back to back, in order.
    events: Vec<BatchEvent>,
    event_bytes: Vec<u8>,
    /// One log's events, for its `RPUSH`.
    log: Args,
    /// The collections added to the registry (`crate::store::registry`).
    names: Args,
    /// Collections this flusher writes for the first time in this batch.
    new: Vec<&'static str>,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Bufs {
    fn clear(&mut self) {
        self.mset.clear();
        self.del.clear();
        self.puts = 0;
        self.deletes = 0;
        self.sadd.iter_mut().chain(self.srem.iter_mut()).for_each(|(_, a)| a.clear());
        self.state.clear();
        self.events.clear();
        self.event_bytes.clear();
        self.new.clear();
    }
}

/// One event of a batch, encoded in `Bufs::event_bytes`.
pub(super) struct BatchEvent {
    pub(super) collection: &'static str,
    pub(super) id: Ident,
    /// End offset in `event_bytes` (it starts where the one before ends).
    pub(super) end: usize,
    /// How many entries the list keeps (`LTRIM` after the `RPUSH`).
    cap: Option<usize>,
    /// Also added to the collection's stream (`publish_events`).
    publish: bool,
}

/// What building a batch reads.
pub(super) struct Spec<'a> {
    pub(super) cfg: &'a Config,
    pub(super) keys: &'a Keys,
    pub(super) marker_key: &'a [u8],
    /// The commit marker the batch sets (its number).
    pub(super) marker: Marker,
    /// The first sequence number it covers (the one after the last built).
    pub(super) first_seq: u64,
    /// The connection generation it is built for.
    pub(super) generation: u64,
    /// The largest value written, and the name of that limit
    /// ([`value_limit`]).
    pub(super) value_limit: (usize, &'static str),
    /// The packed heartbeat `SET`, when one is due (`heartbeat.rs`).
    pub(super) heartbeat: Option<&'a Packer>,
    /// The score of closed entities without a last update.
    pub(super) now_ms: u64,
    /// The server's clock, which stream trims by age go by (`streams.rs`).
    pub(super) server_now_ms: Option<u64>,
}

/// `SADD` to the registry of collections (`crate::store::registry`) of
/// every collection `sadd` adds ids to and of those in `new` (written for
/// the first time: an event-only collection's logs are found through the
/// registry too), in the transaction that creates their first key. Weight
/// 0: refused, it is counted as an error, not as dropped writes.
pub(super) fn registry_add(
    p: &mut Packer,
    keys: &Keys,
    sadd: &[(&'static str, Args)],
    new: &[&'static str],
    names: &mut Args,
    key: &mut Vec<u8>,
    weights: &mut Vec<u64>,
) {
    names.clear();
    let indexed = sadd.iter().filter(|(_, a)| !a.is_empty()).map(|(c, _)| *c);
    for collection in indexed.clone() {
        names.bulk(collection.as_bytes());
    }
    for collection in new.iter().filter(|c| !indexed.clone().any(|i| i == **c)) {
        names.bulk(collection.as_bytes());
    }
    key.clear();
    if !names.is_empty() && keys.write_registry(key) {
        p.cmd_args(&[b"SADD", key], names);
        weights.push(0);
    }
}

/// The largest value written: `max_value_bytes`, or less when the server
/// takes less (`proto-max-bulk-len`, `server_bulk_limit`), with the name
/// of the limit that applies.
pub(super) fn value_limit(cfg: &Config, server_bulk_limit: Option<usize>) -> (usize, &'static str) {
    match server_bulk_limit {
        Some(n) if n < cfg.max_value_bytes => (n, "the server's proto-max-bulk-len"),
        _ => (cfg.max_value_bytes, "max_value_bytes"),
    }
}

/// Encodes the oldest pending writes into one transaction: at most
/// `max_batch` entries and about `max_batch_bytes`, in sequence order,
/// and always exactly the writes of a sequence range (it grows past those
/// bounds to take every write a taken entry folded, `pending.rs`).
/// `MULTI`, one `MSET` of every snapshot and the marker, one `DEL`, one
/// `SADD`/`SREM` per index (`index.rs`), one `RPUSH` per run of appends to
/// one log (with its `LTRIM` and `XADD`s), and the heartbeat when due.
/// Snapshots come before events: a log restarted by a delete gets the
/// events that followed it. `None` when nothing is pending. Updates what
/// is known indexed and the collections written (`InFlight`'s).
pub(super) fn build(
    spec: &Spec<'_>,
    pending: &mut Pending,
    indexed: &mut Indexed,
    collections: &mut Vec<&'static str>,
    b: &mut Bufs,
    p: &mut Packer,
) -> Option<(Batch, Vec<DroppedWrite>)> {
    if pending.is_empty() {
        return None;
    }
    let cfg = spec.cfg;
    let keys = spec.keys;
    let mut batch = Batch::new(spec.marker.batch, spec.first_seq, spec.generation);
    let mut dropped = Vec::new();
    let enc = cfg.encoding;
    let _iso = crate::model::IsoScope::enter(cfg.timestamps_as_iso8601 && enc == crate::Encoding::Json);
    let (limit, limit_name) = spec.value_limit;
    b.clear();
    let mut taken = 0;
    let mut bytes = 0;
    // The last write an item taken so far stands for: the batch may end
    // only where no taken item reaches past the cut (`pending.rs`).
    let mut reach = 0;
    loop {
        let full = taken >= cfg.max_batch || bytes >= cfg.max_batch_bytes;
        if full && pending.next_position().is_none_or(|next| next > reach) {
            break;
        }
        let Some(item) = pending.take() else { break };
        taken += 1;
        reach = reach.max(item.reach());
        match item {
            Item::Snap(entry) => {
                let key = entry.key;
                let collection = key.0;
                if !collections.contains(&collection) {
                    collections.push(collection);
                    b.new.push(collection);
                }
                b.key.clear();
                keys.write_entity(&mut b.key, collection, &key.1);
                if let Snap::Put { rec, after_delete, since, puts } = entry.snap {
                    b.value.clear();
                    let r = rec.as_dyn().encode(enc, &mut b.value);
                    if let Some((class, detail)) = drop_reason(r, b.value.len(), limit, limit_name) {
                        // The value is lost (the caller is told); a delete
                        // folded into it is not.
                        let key = keys.entity(collection, &key.1);
                        dropped.push(DroppedWrite { seq: Seq::new(since), writes: puts, key, class, detail });
                        if !after_delete {
                            continue;
                        }
                    } else {
                        bytes += b.key.len() + b.value.len();
                        b.mset.bulk(&b.key);
                        b.mset.bulk(&b.value);
                        b.puts += 1;
                        if after_delete {
                            b.key.extend_from_slice(b":events");
                            b.del.bulk(&b.key);
                        }
                        // Open or closed: asked of the record here, on the
                        // flusher thread.
                        let open = !rec.as_dyn().is_closed();
                        let score = rec.as_dyn().last_updated().map_or(spec.now_ms, |t| t.0 / 1_000_000);
                        let skipped = b.state.put(&mut b.sadd, indexed, key, open, score);
                        batch.unindexed.extend(skipped);
                        continue;
                    }
                }
                // A delete (or a put after one that cannot be written).
                b.del.bulk(&b.key);
                b.key.extend_from_slice(b":events");
                b.del.bulk(&b.key);
                b.deletes += 1;
                bytes += 2 * b.key.len();
                add_member(&mut b.srem, collection, key.1.as_bytes());
                b.state.delete(collection, &key.1);
                indexed.remove(&key);
            }
            // Superseded by a delete taken in this batch: not written.
            Item::Event(ev) if ev.superseded_by.is_some() => {}
            Item::Event(ev) => {
                if !collections.contains(&ev.collection) {
                    collections.push(ev.collection);
                    // The crate's market-data series are found by name
                    // (`Keys::owns`), and are no collection of the registry.
                    if !crate::store::keys::MARKET_DATA_COLLECTIONS.contains(&ev.collection) {
                        b.new.push(ev.collection);
                    }
                }
                let start = b.event_bytes.len();
                let r = ev.rec.encode(enc, &mut b.event_bytes);
                let len = b.event_bytes.len() - start;
                if let Some((class, detail)) = drop_reason(r, len, limit, limit_name) {
                    b.event_bytes.truncate(start);
                    let key = keys.events(ev.collection, &ev.id);
                    dropped.push(DroppedWrite { seq: Seq::new(ev.seq), writes: 1, key, class, detail });
                    continue;
                }
                bytes += len;
                b.events.push(BatchEvent {
                    collection: ev.collection,
                    id: ev.id,
                    end: b.event_bytes.len(),
                    cap: ev.rec.cap(cfg),
                    publish: cfg.publish_events && !ev.rec.is_series(),
                });
            }
        }
    }
    batch.max_seq = pending.covered_seq();

    p.clear();
    p.cmd(&[b"MULTI"]);
    let marker = spec.marker.format();
    b.mset.bulk(spec.marker_key);
    b.mset.bulk(marker.as_bytes());
    p.cmd_args(&[b"MSET"], &b.mset);
    batch.weights.push(b.puts);
    if !b.del.is_empty() {
        p.cmd_args(&[b"DEL"], &b.del);
        batch.weights.push(b.deletes);
    }
    for (set, cmd) in [(&b.sadd, &b"SADD"[..]), (&b.srem, &b"SREM"[..])] {
        for (collection, ids) in set.iter().filter(|(_, a)| !a.is_empty()) {
            b.key.clear();
            keys.write_index(&mut b.key, collection);
            p.cmd_args(&[cmd, &b.key], ids);
            batch.weights.push(ids.n as u64);
        }
    }
    registry_add(p, keys, &b.sadd, &b.new, &mut b.names, &mut b.key, &mut batch.weights);
    b.state.pack(p, keys, &mut b.key, &mut batch.weights);
    // Events in order; consecutive appends to one log share an RPUSH.
    let mut start = 0;
    let mut streams = Streams::default();
    for run in b.events.chunk_by(|a, b| a.collection == b.collection && a.id == b.id) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else { continue };
        let events = || run_events(&b.event_bytes, start, run);
        b.log.clear();
        events().for_each(|e| b.log.bulk(e));
        b.key.clear();
        keys.write_events(&mut b.key, first.collection, &first.id);
        p.cmd_args(&[b"RPUSH", &b.key], &b.log);
        batch.weights.push(b.log.n as u64);
        if last.end == b.event_bytes.len() {
            // The batch's last log: the tail it leaves there (at most `cap`).
            let keep = first.cap.unwrap_or(usize::MAX).min(run.len());
            let tail = events().skip(run.len() - keep).map(<[u8]>::to_vec).collect();
            batch.probe = Some(Probe { key: b.key.clone(), tail });
        }
        // Market data and account events with `max_account_events`: a capped
        // list keeps its newest `cap` entries, trimmed in the same transaction.
        if let Some(cap) = first.cap {
            let start = format!("-{cap}");
            p.cmd(&[b"LTRIM", &b.key, start.as_bytes(), b"-1"]);
            batch.weights.push(0);
        }
        if first.publish {
            streams.publish(p, keys, first.collection, &first.id, events());
            batch.weights.extend(std::iter::repeat_n(0, run.len()));
        }
        start = last.end;
    }
    streams.trim(p, cfg, keys, spec.server_now_ms, &mut batch.weights);
    if let Some(cmd) = spec.heartbeat {
        p.append(cmd);
        batch.weights.push(0);
    }
    batch.tx = std::mem::take(&mut p.buf);
    batch.spans = std::mem::take(&mut p.spans);
    Some((batch, dropped))
}

/// The encoded events of `run`, the first starting at `start` in `bytes`
/// (empty rather than a panic were a range not there).
fn run_events<'a>(bytes: &'a [u8], start: usize, run: &'a [BatchEvent]) -> impl Iterator<Item = &'a [u8]> {
    run.iter().scan(start, move |at, ev| {
        let e = bytes.get(*at..ev.end).unwrap_or_default();
        *at = ev.end;
        Some(e)
    })
}

/// Why a value cannot be written, if it cannot: it did not encode, or it
/// is larger than `limit` (named `limit_name`).
fn drop_reason(
    r: Result<(), codec::EncodeError>,
    len: usize,
    limit: usize,
    limit_name: &str,
) -> Option<(ErrorKind, String)> {
    match r {
        Err(e) => Some((ErrorKind::Encode, format!("cannot encode the value: {e}"))),
        Ok(()) if len > limit => {
            Some((ErrorKind::TooLarge, format!("the value is {len} bytes; {limit_name} is {limit}")))
        }
        Ok(()) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::msg::{EventRecord, Record};
    use crate::model::{OrderEvent, OrderEventKind, Position, PositionSide, QuoteTick, UnixNanos};
    use std::time::Duration;

    const MARKER_KEY: &str = "trader-T:writer:main";

    /// Everything `build` takes, as the flusher holds it.
    struct Fixture {
        cfg: Config,
        keys: Keys,
        pending: Pending,
        indexed: Indexed,
        collections: Vec<&'static str>,
        bufs: Bufs,
        packer: Packer,
        value_limit: (usize, &'static str),
        no: u64,
        built_seq: u64,
        seq: u64,
        server_now_ms: Option<u64>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let cfg = Config::default();
            let value_limit = value_limit(&cfg, None);
            Fixture {
                cfg,
                keys: Keys::new("trader-T", false),
                pending: Pending::default(),
                indexed: Indexed::default(),
                collections: Vec::new(),
                bufs: Bufs::default(),
                packer: Packer::default(),
                server_now_ms: None,
                value_limit,
                no: 0,
                built_seq: 0,
                seq: 0,
            }
        }

        fn next_seq(&mut self) -> u64 {
            self.seq += 1;
            self.seq
        }

        fn put(&mut self, p: Position) {
            let seq = self.next_seq();
            self.pending.put(seq, Record::Position(p));
        }

        fn delete(&mut self, id: &str) {
            let seq = self.next_seq();
            self.pending.delete(seq, "positions", ident(id));
        }

        fn delete_order(&mut self, id: &str) {
            let seq = self.next_seq();
            self.pending.delete(seq, "orders", ident(id));
        }

        fn append(&mut self, order: &str, n: u64) {
            let seq = self.next_seq();
            self.pending.append(seq, "orders", ident(order), order_event(order, n));
        }

        fn build_with(&mut self, heartbeat: Option<&Packer>) -> Option<(Batch, Vec<DroppedWrite>)> {
            self.no += 1;
            let spec = Spec {
                cfg: &self.cfg,
                keys: &self.keys,
                marker_key: MARKER_KEY.as_bytes(),
                marker: Marker { epoch: 7, batch: self.no },
                first_seq: self.built_seq + 1,
                generation: 0,
                value_limit: self.value_limit,
                heartbeat,
                now_ms: 1_000,
                server_now_ms: self.server_now_ms,
            };
            let built = build(
                &spec,
                &mut self.pending,
                &mut self.indexed,
                &mut self.collections,
                &mut self.bufs,
                &mut self.packer,
            );
            if let Some((b, _)) = &built {
                self.built_seq = b.max_seq;
                // Every command's recorded name and key are what it packs.
                crate::net::assert_spans_match(&b.tx, &b.spans);
            }
            built
        }

        fn build(&mut self) -> (Batch, Vec<DroppedWrite>) {
            self.build_with(None).expect("something pending")
        }
    }

    fn ident(s: &str) -> Ident {
        Ident::new(s).expect("a valid id")
    }

    fn order_event(order: &str, n: u64) -> EventRecord {
        EventRecord::Order(OrderEvent {
            event_id: n,
            client_order_id: ident(order),
            ts_event: UnixNanos(n),
            kind: OrderEventKind::Canceled,
        })
    }

    fn position(id: &str, qty: u64) -> Position {
        let mut p = Position::example(id);
        p.quantity.raw = qty;
        p
    }

    fn encoded(p: &Position) -> Vec<u8> {
        let mut out = Vec::new();
        Record::Position(p.clone()).as_dyn().encode(crate::Encoding::MsgPack, &mut out).expect("encodes");
        out
    }

    /// Each command of packed RESP, as its arguments (lossy UTF-8).
    fn commands(mut buf: &[u8]) -> Vec<Vec<String>> {
        fn line(buf: &mut &[u8], tag: u8) -> usize {
            let end = buf.windows(2).position(|w| w == b"\r\n").expect("a line");
            assert_eq!(buf[0], tag, "RESP tag");
            let n = std::str::from_utf8(&buf[1..end]).unwrap().parse().unwrap();
            *buf = &buf[end + 2..];
            n
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let argc = line(&mut buf, b'*');
            let mut args = Vec::new();
            for _ in 0..argc {
                let len = line(&mut buf, b'$');
                args.push(String::from_utf8_lossy(&buf[..len]).into_owned());
                assert_eq!(&buf[len..len + 2], b"\r\n");
                buf = &buf[len + 2..];
            }
            out.push(args);
        }
        out
    }

    fn names(tx: &[u8]) -> Vec<String> {
        commands(tx).into_iter().map(|c| c[0].clone()).collect()
    }

    fn lossy(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn a_put_is_one_mset_with_the_marker_and_its_index_commands() {
        let mut f = Fixture::new();
        let p = position("P-1", 1_000);
        f.put(p.clone());
        let (batch, dropped) = f.build();
        assert!(dropped.is_empty());
        let cmds = commands(&batch.tx);
        let value = lossy(&encoded(&p));
        assert_eq!(cmds[0], ["MULTI"]);
        assert_eq!(
            cmds[1],
            ["MSET".to_string(), "trader-T:positions:P-1".into(), value, MARKER_KEY.into(), "7:1".into()]
        );
        assert_eq!(cmds[2], ["SADD", "trader-T:index:positions", "P-1"]);
        // The collection, in the registry of collections.
        assert_eq!(cmds[3], ["SADD", "trader-T:index:", "positions"]);
        // Open: into `…:open`, out of `…:closed`.
        assert_eq!(cmds[4], ["SADD", "trader-T:index:positions:open", "P-1"]);
        assert_eq!(cmds[5], ["ZREM", "trader-T:index:positions:closed", "P-1"]);
        assert_eq!(cmds.len(), 6, "EXEC is sent separately: {cmds:?}");
        // One weight per command after MULTI: the writes each carries (the
        // registry's SADD none).
        assert_eq!(batch.weights, [1, 1, 0, 1, 1]);
        assert_eq!(batch.head_replies(), cmds.len());
        assert_eq!((batch.no, batch.first_seq, batch.max_seq), (1, 1, 1));
        assert_eq!(batch.state(), &State::Built);
        assert_eq!(f.collections, ["positions"]);
        assert!(f.pending.is_empty());
        assert!(f.build_with(None).is_none(), "nothing pending, no batch");
    }

    #[test]
    fn coalesced_puts_write_the_last_value_once_and_a_known_index_is_skipped() {
        let mut f = Fixture::new();
        f.put(position("P-1", 1));
        f.put(position("P-2", 2));
        f.put(position("P-1", 3));
        let (batch, _) = f.build();
        let cmds = commands(&batch.tx);
        let mset = &cmds[1];
        assert_eq!(mset.len(), 1 + 2 * 3, "two snapshots and the marker: {mset:?}");
        assert_eq!(mset[1], "trader-T:positions:P-1");
        assert_eq!(mset[2], lossy(&encoded(&position("P-1", 3))));
        assert_eq!(mset[3], "trader-T:positions:P-2");
        assert_eq!(cmds[2], ["SADD", "trader-T:index:positions", "P-1", "P-2"]);
        assert_eq!(batch.weights[0], 2);
        assert_eq!(batch.max_seq, 3);

        // Known indexed and still open: no index commands, listed as skipped.
        f.put(position("P-1", 4));
        let (mut batch, _) = f.build();
        assert_eq!(names(&batch.tx), ["MULTI", "MSET"]);
        assert_eq!(batch.unindexed.len(), 1);
        assert_eq!((batch.first_seq, batch.max_seq), (4, 4));

        // Sent on a newer connection: the skipped commands come back right
        // after MULTI, with their weights in front.
        let mut bufs = Bufs::default();
        let mut packer = Packer::default();
        batch.reindex(1, &f.keys, &mut bufs, &mut packer);
        assert_eq!(names(&batch.tx), ["MULTI", "SADD", "SADD", "ZREM", "SADD", "MSET"]);
        crate::net::assert_spans_match(&batch.tx, &batch.spans);
        assert_eq!(batch.command(4), Some((&b"SADD"[..], &b"trader-T:index:"[..])));
        assert_eq!(batch.command(5), Some((&b"MSET"[..], &b"trader-T:positions:P-1"[..])));
        assert_eq!(batch.weights, [1, 1, 1, 0, 1]);
        assert_eq!(batch.head_replies(), 6);
        assert!(batch.unindexed.is_empty());
        assert_eq!(batch.generation, 1);
    }

    #[test]
    fn deletes_and_closed_entities_keep_the_indexes_in_step() {
        let mut f = Fixture::new();
        f.delete("P-1");
        let mut closed = position("P-2", 0);
        closed.side = PositionSide::Flat;
        f.put(closed);
        f.delete("P-3");
        f.put(position("P-3", 5)); // a put after a delete restarts the log
        let (batch, _) = f.build();
        let cmds = commands(&batch.tx);
        assert_eq!(
            names(&batch.tx),
            ["MULTI", "MSET", "DEL", "SADD", "SREM", "SADD", "SADD", "SREM", "ZADD", "ZREM"]
        );
        assert_eq!(
            cmds[2],
            [
                "DEL",
                "trader-T:positions:P-1",
                "trader-T:positions:P-1:events",
                "trader-T:positions:P-3:events"
            ]
        );
        assert_eq!(cmds[3], ["SADD", "trader-T:index:positions", "P-2", "P-3"]);
        assert_eq!(cmds[4], ["SREM", "trader-T:index:positions", "P-1"]);
        assert_eq!(cmds[5], ["SADD", "trader-T:index:", "positions"]);
        assert_eq!(cmds[6], ["SADD", "trader-T:index:positions:open", "P-3"]);
        assert_eq!(cmds[7], ["SREM", "trader-T:index:positions:open", "P-1", "P-2"]);
        // A closed entity is scored by its last update, in milliseconds.
        let score = (Position::example("P-2").ts_last.0 / 1_000_000).to_string();
        assert_eq!(
            cmds[8],
            ["ZADD".to_string(), "trader-T:index:positions:closed".into(), score, "P-2".into()]
        );
        assert_eq!(cmds[9], ["ZREM", "trader-T:index:positions:closed", "P-1", "P-3"]);
        // MSET carries two puts, DEL one delete (P-3's log restart rides on
        // its put).
        assert_eq!(batch.weights[..2], [2, 1]);
        assert_eq!(batch.max_seq, 4);
    }

    #[test]
    fn appends_to_one_log_share_an_rpush_and_capped_lists_are_trimmed() {
        let mut f = Fixture::new();
        f.cfg.tick_capacity = 3;
        f.append("O-1", 1);
        f.append("O-1", 2);
        f.append("O-2", 1);
        f.append("O-1", 3);
        let quote = QuoteTick::example("BTCUSDT-PERP.BINANCE", UnixNanos(1));
        let seq = f.next_seq();
        f.pending.append(seq, "quotes", ident("BTCUSDT-PERP.BINANCE"), EventRecord::Quote(quote));
        f.put(position("P-1", 1));
        let (batch, _) = f.build();
        let cmds = commands(&batch.tx);
        assert_eq!(
            names(&batch.tx),
            ["MULTI", "MSET", "SADD", "SADD", "SADD", "ZREM", "RPUSH", "RPUSH", "RPUSH", "RPUSH", "LTRIM"],
            "snapshots first, then the events in order"
        );
        let log = |c: &Vec<String>| (c[1].clone(), c.len() - 2);
        assert_eq!(log(&cmds[6]), ("trader-T:orders:O-1:events".into(), 2));
        assert_eq!(log(&cmds[7]), ("trader-T:orders:O-2:events".into(), 1));
        assert_eq!(log(&cmds[8]), ("trader-T:orders:O-1:events".into(), 1));
        assert_eq!(log(&cmds[9]), ("trader-T:quotes:BTCUSDT-PERP.BINANCE:events".into(), 1));
        assert_eq!(cmds[10], ["LTRIM", "trader-T:quotes:BTCUSDT-PERP.BINANCE:events", "-3", "-1"]);
        let mut first = Vec::new();
        order_event("O-1", 1).encode(f.cfg.encoding, &mut first).unwrap();
        assert_eq!(cmds[6][2], lossy(&first));
        assert_eq!(batch.weights, [1, 1, 0, 1, 1, 2, 1, 1, 1, 0]);
        assert_eq!(batch.max_seq, 6);
        assert_eq!(f.collections, ["orders", "quotes", "positions"]);
    }

    #[test]
    fn published_events_are_added_to_streams_and_trimmed_once() {
        let mut f = Fixture::new();
        f.cfg.publish_events = true;
        f.cfg.stream_max_len = 100;
        f.append("O-1", 1);
        f.append("O-1", 2);
        f.append("O-2", 1);
        let (batch, _) = f.build();
        let cmds = commands(&batch.tx);
        assert_eq!(
            names(&batch.tx),
            ["MULTI", "MSET", "SADD", "RPUSH", "XADD", "XADD", "RPUSH", "XADD", "XTRIM"]
        );
        // The collection's first write: registered, though it has no index.
        assert_eq!(cmds[2], ["SADD", "trader-T:index:", "orders"]);
        assert_eq!(cmds[4][..5], ["XADD", "trader-T:stream:orders", "*", "id", "O-1"]);
        assert_eq!(cmds[4][6], cmds[3][2], "the stream carries the log's bytes");
        assert_eq!(cmds[5][6], cmds[3][3]);
        assert_eq!(cmds[7][4], "O-2");
        assert_eq!(cmds[8], ["XTRIM", "trader-T:stream:orders", "MAXLEN", "~", "100"]);
        assert_eq!(batch.weights, [0, 0, 2, 0, 0, 1, 0, 0]);
    }

    /// The age cutoff is the server's clock less the age, whatever
    /// the engine's clock says; without the server's clock, no age trim.
    #[test]
    fn stream_age_trims_go_by_the_server_clock() {
        let mut f = Fixture::new();
        f.cfg.publish_events = true;
        f.cfg.stream_max_len = 100;
        f.cfg.stream_max_age = Some(Duration::from_secs(600));
        f.server_now_ms = Some(5_000_000);
        f.append("O-1", 1);
        let (batch, _) = f.build();
        let cmds = commands(&batch.tx);
        assert_eq!(names(&batch.tx), ["MULTI", "MSET", "SADD", "RPUSH", "XADD", "XTRIM", "XTRIM"]);
        assert_eq!(cmds[6], ["XTRIM", "trader-T:stream:orders", "MINID", "~", "4400000"]);
        assert_eq!(batch.weights, [0, 0, 1, 0, 0, 0]);

        // The collection is registered already: no SADD.
        f.server_now_ms = None;
        f.append("O-1", 2);
        let (batch, _) = f.build();
        assert_eq!(names(&batch.tx), ["MULTI", "MSET", "RPUSH", "XADD", "XTRIM"]);
    }

    #[test]
    fn oversize_values_are_dropped_and_reported_but_a_folded_delete_is_kept() {
        let mut f = Fixture::new();
        let small = encoded(&position("P-1", 1)).len();
        f.value_limit = (small - 1, "max_value_bytes");
        f.put(position("P-1", 1)); // seq 1: too large
        f.append("O-1", 1); // seq 2: fits
        f.delete("P-2"); // seq 3
        f.put(position("P-2", 2)); // seq 4: too large, after a delete
        let (batch, dropped) = f.build();
        assert_eq!(
            dropped.iter().map(|d| (d.seq.get(), d.writes, d.key.as_str(), d.class)).collect::<Vec<_>>(),
            [
                (1, 1, "trader-T:positions:P-1", ErrorKind::TooLarge),
                (4, 1, "trader-T:positions:P-2", ErrorKind::TooLarge)
            ]
        );
        assert_eq!(
            dropped[0].detail,
            format!("the value is {small} bytes; max_value_bytes is {}", small - 1)
        );
        let cmds = commands(&batch.tx);
        // Only the marker in MSET; P-2 is still deleted.
        assert_eq!(cmds[1], ["MSET", MARKER_KEY, "7:1"]);
        assert_eq!(cmds[2], ["DEL", "trader-T:positions:P-2", "trader-T:positions:P-2:events"]);
        // The registry's SADD names both collections, written for the
        // first time (though neither gets an index entry).
        assert_eq!(names(&batch.tx), ["MULTI", "MSET", "DEL", "SREM", "SADD", "SREM", "ZREM", "RPUSH"]);
        assert_eq!(cmds[4], ["SADD", "trader-T:index:", "positions", "orders"]);
        assert_eq!(batch.weights[..2], [0, 1]);
        assert_eq!(batch.max_seq, 4, "dropped writes are covered: their callers are told");
    }

    #[test]
    fn max_batch_and_max_batch_bytes_take_a_prefix_in_sequence_order() {
        let mut f = Fixture::new();
        f.cfg.max_batch = 2;
        for i in 1..=5 {
            f.put(position(&format!("P-{i}"), i));
        }
        let (a, _) = f.build();
        assert_eq!((a.first_seq, a.max_seq), (1, 2));
        assert_eq!(commands(&a.tx)[1].len(), 1 + 2 * 3);
        assert_eq!(f.pending.len(), 3);

        // About `max_batch_bytes`: the entry that reaches it is the last.
        f.cfg.max_batch = 100;
        f.cfg.max_batch_bytes = 1;
        let (b, _) = f.build();
        assert_eq!((b.no, b.first_seq, b.max_seq), (2, 3, 3));
        assert_eq!(
            commands(&b.tx)[1],
            [
                "MSET".to_string(),
                "trader-T:positions:P-3".into(),
                lossy(&encoded(&position("P-3", 3))),
                MARKER_KEY.into(),
                "7:2".into()
            ]
        );

        f.cfg.max_batch_bytes = usize::MAX;
        let (c, _) = f.build();
        assert_eq!((c.first_seq, c.max_seq), (4, 5));
        assert!(f.pending.is_empty());
    }

    /// Every batch applies exactly the writes with seq in (last built, its
    /// `max_seq`]: a put folded into an earlier entry carries a later
    /// write, so the cut cannot fall between them; nor between an event and
    /// the delete that superseded it.
    #[test]
    fn a_batch_is_a_sequence_prefix_whatever_was_folded() {
        let mut f = Fixture::new();
        f.cfg.max_batch = 2;
        f.put(position("X", 3)); // 1
        f.append("Y", 1); // 2
        f.append("Y", 2); // 3
        f.put(position("X", 5)); // 4: folds into seq 1's entry
        let (a, _) = f.build();
        let cmds = commands(&a.tx);
        // X holds write 4, so the batch covers 1..=4: both events too.
        assert_eq!(cmds[1][2], lossy(&encoded(&position("X", 5))));
        assert_eq!((a.first_seq, a.max_seq), (1, 4));
        assert!(cmds.iter().any(|c| c[0] == "RPUSH" && c.len() == 4), "{cmds:?}");
        assert!(f.pending.is_empty());

        // An event superseded by a later delete: taking the event's place
        // means taking the delete too.
        f.append("Z", 3); // 5
        f.put(position("W", 1)); // 6
        f.put(position("V", 1)); // 7
        f.delete_order("Z"); // 8: drops event 5
        let (b, _) = f.build();
        assert_eq!(b.first_seq, 5);
        assert!(b.max_seq >= 8 || b.max_seq < 5, "cut inside a fold: {}", b.max_seq);
        if b.max_seq < 8 {
            let (c, _) = f.build();
            assert_eq!(c.max_seq, 8);
        }
        assert!(f.pending.is_empty());

        // Without folds the cut stays at max_batch.
        for i in 0..5 {
            f.put(position(&format!("N-{i}"), i));
        }
        let (d, _) = f.build();
        assert_eq!((d.first_seq, d.max_seq), (9, 10));
    }

    #[test]
    fn the_heartbeat_rides_at_the_end_with_no_weight() {
        let mut f = Fixture::new();
        f.put(position("P-1", 1));
        let mut hb = Packer::default();
        hb.cmd(&[b"SET", b"trader-T:heartbeat:main", b"{}", b"PX", b"3000"]);
        let (batch, _) = f.build_with(Some(&hb)).expect("a batch");
        let cmds = commands(&batch.tx);
        assert_eq!(cmds.last().unwrap(), &["SET", "trader-T:heartbeat:main", "{}", "PX", "3000"]);
        assert_eq!(batch.weights.last(), Some(&0));
        assert_eq!(batch.head_replies(), cmds.len());
        assert_eq!(batch.command(1), Some((&b"MSET"[..], &b"trader-T:positions:P-1"[..])));
        assert_eq!(batch.command(cmds.len() - 1), Some((&b"SET"[..], &b"trader-T:heartbeat:main"[..])));
        crate::net::assert_spans_match(&batch.tx, &batch.spans);
    }

    #[test]
    fn the_value_limit_is_the_smaller_of_the_config_and_the_server() {
        let cfg = Config { max_value_bytes: 1_000, ..Config::default() };
        assert_eq!(value_limit(&cfg, None), (1_000, "max_value_bytes"));
        assert_eq!(value_limit(&cfg, Some(2_000)), (1_000, "max_value_bytes"));
        assert_eq!(value_limit(&cfg, Some(500)), (500, "the server's proto-max-bulk-len"));
    }

    #[test]
    fn a_batch_moves_through_its_states_only_by_its_transitions() {
        let mut f = Fixture::new();
        f.put(position("P-1", 1));
        let (mut b, _) = f.build();
        assert!(b.is_built());
        b.sent_queued();
        assert_eq!(b.state(), &State::Queued { error: None });
        b.head_reply(None);
        b.head_reply(Some(("ERR".into(), "first".into())));
        b.head_reply(Some(("ERR".into(), "second".into())));
        assert_eq!(b.take_queued_error(), Some(("ERR".into(), "first".into())));
        // The connection dropped: what was queued is gone.
        b.unqueued();
        assert!(b.is_built());
        b.sent_queued();
        b.exec_applied();
        assert!(b.is_applied());
        b.unqueued(); // only a queued batch is unqueued
        assert!(b.is_applied());
        assert_eq!(b.take_queued_error(), None);
        // Waiting for replicas across a reconnect: the marker decides.
        b.reconnected();
        assert!(b.is_in_doubt());
        b.unqueued();
        assert!(b.is_in_doubt());
        b.replay();
        assert!(b.is_built());
        b.reconnected(); // a built batch is simply sent again
        assert!(b.is_built());
        b.lost();
        assert!(b.is_in_doubt());
    }

    #[test]
    fn only_a_lost_reply_leaves_a_batch_maybe_applied() {
        let mut f = Fixture::new();
        f.put(position("P-1", 1));
        let (mut b, _) = f.build();
        // Aborted by the marker's WATCH: known not to be in Redis.
        b.aborted();
        assert!(b.is_in_doubt() && !b.maybe_applied());
        b.replay();
        b.lost();
        assert!(b.is_in_doubt() && b.maybe_applied());
        // Once it may have applied, a later abort does not undo that.
        b.replay();
        b.aborted();
        assert!(b.maybe_applied());
        let (mut b, _) = {
            f.put(position("P-2", 1));
            f.build()
        };
        b.exec_applied();
        b.reconnected();
        assert!(b.maybe_applied());
    }
}
