//! The reads, on connections of their own (never the flusher's).
//! Loading a trader's state back: ids from the index sets, values from
//! pipelined reads in chunks on parallel workers, long event logs in
//! slices, decode problems reported by key.
//!
//! This file: the public surface (`Cache::load`, `load_open`, `load_all`,
//! `load_events`) and the consistent-cut retries. `reader.rs`: the
//! parallel workers; `values.rs`: replies into values; `report.rs`: what a
//! load returns; `point.rs`: point reads and market-data series;
//! `raw.rs`: the reads of `crate::raw` (`get_raw`, `load_raw`, …). Values
//! decode through serde (`codec::decode`): a hand-written decoder of the
//! hot model types saved 14.5% of `load()` at 100,000 orders and 12.6% at
//! 1,000,000 in an A/B on the same data (docs/performance.md), under the
//! 15% that would pay for a second copy of the stored schema, so it was
//! removed.

use std::time::Instant;

use crate::config::Config;
use crate::entity::{Entity, Event};
use crate::error::{Error, Result};
use crate::model::{Account, AccountEvent, Instrument, Order, OrderEvent, Position};
use crate::Cache;

pub(crate) mod point;
mod raw;
mod reader;
mod report;
mod values;

pub(crate) use reader::*;
pub use report::{LoadIssue, LoadReport, Snapshot};
pub(crate) use values::*;

pub(crate) fn check_strict(cfg: &Config, report: &LoadReport) -> Result<()> {
    if cfg.strict_load && !report.issues.is_empty() {
        return Err(Error::Load { count: report.issues.len(), first: report.issues[0].to_string() });
    }
    Ok(())
}

impl Cache {
    /// Loads every instrument, account (with its events), order (with its
    /// events) and position of this trader, on a connection of its own.
    ///
    /// The result is a consistent cut (what some prefix of this writer's
    /// acknowledged batches produced) when [`LoadReport::consistent`] says
    /// so: the commit marker is read before and after, and the state read
    /// again (up to three times in all) when a batch landed in between. At
    /// startup, before writing, the first read is consistent. Writes of
    /// other writer ids to the same trader are not watched.
    ///
    /// # Errors
    ///
    /// Connection failures; with `strict_load`, [`Error::Load`] when any
    /// value could not be used (otherwise such values are listed in
    /// [`Snapshot::report`]).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// cache.put(&Position::example("P-1"))?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let snapshot = cache.load()?;
    /// assert!(snapshot.report.consistent);
    /// assert!(snapshot.positions.iter().any(|p| p.id.as_str() == "P-1"));
    /// # Ok(()) }
    /// ```
    pub fn load(&self) -> Result<Snapshot> {
        self.load_with(false)
    }

    /// As [`Cache::load`], but only the open entities ([`Entity::is_closed`]
    /// is `false`) with their event logs: orders that are still working,
    /// positions that are not flat, and every instrument and account
    /// (which never close). The ids come from `index:{collection}:open`,
    /// which every batch keeps in step with its writes, so a restart reads
    /// live state, not history: 1,000 open orders next to 100,000 closed
    /// ones cost what 1,000 orders cost.
    ///
    /// Entities written before the open index existed (in
    /// `index:{collection}` but in neither `…:open` nor `…:closed`) are
    /// read in full and kept when open; [`LoadReport::unclassified`] counts
    /// them (their next write classifies them).
    ///
    /// ```no_run
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cache = Cache::open(Config::from_env()?.trader_id("T1"))?;
    /// let live = cache.load_open()?;
    /// assert!(live.orders.iter().all(|o| !o.status.is_closed()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::load`].
    pub fn load_open(&self) -> Result<Snapshot> {
        self.load_with(true)
    }

    fn load_with(&self, open_only: bool) -> Result<Snapshot> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let marker = self.keys().writer(&self.config().writer_id);
        let mut attempts = 0;
        let mut snap = loop {
            attempts += 1;
            let before = r.marker(&marker)?;
            let mut snap = load_state(&mut r, open_only)?;
            snap.report.consistent = r.marker(&marker)? == before;
            if snap.report.consistent || attempts == LOAD_ATTEMPTS {
                break snap;
            }
        };
        snap.report.attempts = attempts;
        snap.report.elapsed = start.elapsed();
        check_strict(self.config(), &snap.report)?;
        Ok(snap)
    }
}

/// How many times `Cache::load` reads while batches keep landing.
const LOAD_ATTEMPTS: u32 = 3;

/// One read of the whole state (or of its open entities).
fn load_state(r: &mut Reader<'_>, open_only: bool) -> Result<Snapshot> {
    let mut snap = Snapshot::default();
    let inst = r.load::<Instrument, OrderEvent>(false, open_only)?;
    snap.instruments = inst.items;
    snap.report.merge(inst.report);
    let acc = r.load::<Account, AccountEvent>(true, open_only)?;
    snap.accounts = acc.items;
    snap.account_events = acc.events;
    snap.report.merge(acc.report);
    let ord = r.load::<Order, OrderEvent>(true, open_only)?;
    snap.orders = ord.items;
    snap.order_events = ord.events;
    snap.report.merge(ord.report);
    let pos = r.load::<Position, OrderEvent>(false, open_only)?;
    snap.positions = pos.items;
    snap.report.merge(pos.report);
    Ok(snap)
}

impl Cache {
    /// Loads every entity of one type (any [`Entity`], including your own),
    /// sorted by id.
    ///
    /// # Errors
    ///
    /// As [`Cache::load`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::Position;
    /// cache.put(&Position::example("P-1"))?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let (positions, report) = cache.load_all::<Position>()?;
    /// assert!(report.issues.is_empty());
    /// assert!(positions.iter().any(|p| p.id.as_str() == "P-1"));
    /// # Ok(()) }
    /// ```
    pub fn load_all<T: Entity>(&self) -> Result<(Vec<T>, LoadReport)> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let mut loaded = r.load::<T, NoEvent<T>>(false, false)?;
        loaded.report.elapsed = start.elapsed();
        check_strict(self.config(), &loaded.report)?;
        Ok((loaded.items, loaded.report))
    }

    /// Loads every entity of one type with its event log (`E`, the events
    /// of `E::Of`: any [`Entity`] and [`Event`], including your own), in the
    /// parallel, pipelined reads of [`Cache::load`]: entities sorted by id,
    /// each log in append order with duplicates dropped, keyed by entity
    /// id (an entity without events has no entry). What [`Cache::load`]
    /// does for orders, for a type of your own: one call instead of a
    /// round trip per log.
    ///
    /// # Errors
    ///
    /// As [`Cache::load`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::{Order, OrderEvent, OrderEventKind, UnixNanos};
    /// use tradecache::Ident;
    /// cache.put(&Order::example("O-1"))?;
    /// let event = OrderEvent {
    ///     event_id: 1,
    ///     client_order_id: Ident::new("O-1")?,
    ///     ts_event: UnixNanos(1),
    ///     kind: OrderEventKind::Canceled,
    /// };
    /// cache.append("O-1", &event)?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let (orders, events, report) = cache.load_all_with_events::<OrderEvent>()?;
    /// assert!(report.issues.is_empty());
    /// assert!(orders.iter().any(|o| o.client_order_id.as_str() == "O-1"));
    /// assert_eq!(events[&Ident::new("O-1")?].last(), Some(&event));
    /// # Ok(()) }
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn load_all_with_events<E: Event>(
        &self,
    ) -> Result<(Vec<E::Of>, std::collections::HashMap<crate::Ident, Vec<E>>, LoadReport)> {
        let () = crate::entity::Checked::<E::Of>::ENTITY;
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let mut loaded = r.load::<E::Of, E>(true, false)?;
        loaded.report.elapsed = start.elapsed();
        check_strict(self.config(), &loaded.report)?;
        Ok((loaded.items, loaded.events, loaded.report))
    }

    /// Loads one entity's event log, in append order, duplicates dropped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`] for an id that [`Cache::append`] would refuse;
    /// otherwise as [`Cache::load`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tradecache::{Cache, Config};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let cache = Cache::open(Config::from_env()?.trader_id("DOC-001"))?;
    /// use tradecache::model::{Order, OrderEvent, OrderEventKind, UnixNanos};
    /// use tradecache::Ident;
    /// cache.put(&Order::example("O-1"))?;
    /// let event = OrderEvent {
    ///     event_id: 1,
    ///     client_order_id: Ident::new("O-1")?,
    ///     ts_event: UnixNanos(1),
    ///     kind: OrderEventKind::Canceled,
    /// };
    /// cache.append("O-1", &event)?;
    /// cache.flush(Duration::from_secs(1))?;
    /// let (events, _report) = cache.load_events::<OrderEvent>("O-1")?;
    /// assert_eq!(events.last(), Some(&event));
    /// # Ok(()) }
    /// ```
    pub fn load_events<E: Event>(&self, id: &str) -> Result<(Vec<E>, LoadReport)> {
        let () = crate::entity::Checked::<E::Of>::ENTITY;
        crate::ident::validate(id)?;
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let mut report = LoadReport::default();
        let events = r.events::<E>(id, &mut report)?;
        report.elapsed = start.elapsed();
        check_strict(self.config(), &report)?;
        Ok((events, report))
    }
}

/// A stand-in event type for loads without event logs.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct NoEvent<T>(#[serde(skip)] std::marker::PhantomData<T>);

impl<T: Entity> Event for NoEvent<T> {
    type Of = T;
    fn event_id(&self) -> u64 {
        0
    }
}
