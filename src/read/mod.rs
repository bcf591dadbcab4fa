//! The reads, on connections of their own (never the flusher's). This
//! file: the loads (`Cache::load`, `load_open`, `load_all`, `load_events`)
//! and the consistent-cut retries; `reader.rs`: the parallel workers;
//! `values.rs`: replies into values; `point.rs`: point reads and
//! market-data series; `raw.rs`: the reads of `crate::raw`. Values decode
//! through serde (docs/performance.md weighs a hand-written decoder).

use std::time::Instant;

use crate::config::Config;
use crate::entity::{Entity, Event};
use crate::error::{Error, Result};
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

/// How many times a load reads while batches keep landing.
const LOAD_ATTEMPTS: u32 = 3;

impl Cache {
    /// Loads every instrument, account (with its events), order (with its
    /// events) and position of this trader, on a connection of its own.
    ///
    /// The result is a consistent cut (what some prefix of this writer's
    /// acknowledged batches produced) when [`LoadReport::consistent`] says
    /// so: the state is read again (three times at most) when a batch
    /// landed while reading. Writes of other writer ids are not watched.
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
    /// is `false`) with their event logs: working orders, positions that
    /// are not flat, every instrument and account. The ids come from
    /// `index:{collection}:open`, so 1,000 open orders next to 100,000
    /// closed ones cost what 1,000 orders cost. Entities in neither the
    /// open nor the closed index (written before those existed) are read
    /// and kept when open ([`LoadReport::unclassified`] counts them).
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
        let mut snap = Snapshot::default();
        snap.report = self.read_consistent(|r, _| {
            let mut report = LoadReport::default();
            (snap.instruments, _) = r.load::<_, Vec<u8>>(false, open_only, &mut report)?;
            (snap.accounts, snap.account_events) = r.load(true, open_only, &mut report)?;
            (snap.orders, snap.order_events) = r.load(true, open_only, &mut report)?;
            (snap.positions, _) = r.load::<_, Vec<u8>>(false, open_only, &mut report)?;
            Ok((report, false))
        })?;
        Ok(snap)
    }

    /// Reads with `read` (given the attempt, from 1) until no batch of this
    /// writer landed meanwhile (its commit marker is the same before and
    /// after), [`LOAD_ATTEMPTS`] times at most or until `read` says stop;
    /// then fills in the report and applies `strict_load`.
    pub(super) fn read_consistent(
        &self,
        mut read: impl FnMut(&mut Reader<'_>, u32) -> Result<(LoadReport, bool)>,
    ) -> Result<LoadReport> {
        let marker = self.keys().writer(&self.config().writer_id);
        let ((), report) = self.read_once(|r, report| {
            let mut attempts = 0;
            *report = loop {
                attempts += 1;
                let before = r.marker(&marker)?;
                let (mut report, stop) = read(r, attempts)?;
                report.consistent = r.marker(&marker)? == before;
                if report.consistent || attempts == LOAD_ATTEMPTS || stop {
                    break report;
                }
            };
            report.attempts = attempts;
            Ok(())
        })?;
        Ok(report)
    }

    /// One read with `read` on a reader of its own, timed, `strict_load` applied.
    fn read_once<T>(
        &self,
        read: impl FnOnce(&mut Reader<'_>, &mut LoadReport) -> Result<T>,
    ) -> Result<(T, LoadReport)> {
        let start = Instant::now();
        let mut r = Reader::open(self.config(), self.keys())?;
        let mut report = LoadReport::default();
        let out = read(&mut r, &mut report)?;
        report.elapsed = start.elapsed();
        check_strict(self.config(), &report)?;
        Ok((out, report))
    }

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
        let ((items, _), report) = self.read_once(|r, report| r.load::<T, Vec<u8>>(false, false, report))?;
        Ok((items, report))
    }

    /// Loads every entity of one type with its event log (`E`, the events
    /// of `E::Of`, including types of your own), in the parallel, pipelined
    /// reads of [`Cache::load`]: entities sorted by id, each log in append
    /// order with duplicates dropped, keyed by entity id (an entity without
    /// events has no entry).
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
        let ((items, events), report) =
            self.read_once(|r, report| r.load::<E::Of, E>(true, false, report))?;
        Ok((items, events, report))
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
        self.read_once(|r, report| r.events::<E>(id, report))
    }
}
