//! What a load returns: the [`Snapshot`], and the [`LoadReport`] of what it
//! read and what it could not use.

use crate::ident::Ident;
use crate::model::{Account, AccountEvent, Instrument, Order, OrderEvent, Position};
use std::collections::HashMap;
use std::time::Duration;

/// One value that could not be used during a load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadIssue {
    /// The Redis key concerned.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// What a load found besides the values themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// Values that did not decode, keys of the wrong Redis type, index
    /// entries without a value.
    pub issues: Vec<LoadIssue>,
    /// Repeated event ids dropped from event logs.
    pub duplicate_events: u64,
    /// Keys read.
    pub keys_read: u64,
    /// Round trips made.
    pub round_trips: u64,
    /// How long the load took.
    pub elapsed: Duration,
    /// [`crate::Cache::load`] only: no batch of this writer was applied while it
    /// read (its commit marker was the same before and after), so the
    /// state is exactly what some prefix of the acknowledged batches
    /// produced. `false` when batches kept landing through every attempt;
    /// each entity is then read whole, but entities (and an entity and its
    /// log) may be from different batches.
    pub consistent: bool,
    /// How many times [`crate::Cache::load`] read the state (it reads again when a
    /// batch landed meanwhile, up to three times).
    pub attempts: u32,
    /// [`crate::Cache::load_open`] only: ids in a collection's index that were in
    /// neither its open nor its closed index (written before those
    /// existed), read in full and kept when open.
    pub unclassified: u64,
}

impl LoadReport {
    pub(crate) fn merge(&mut self, other: LoadReport) {
        self.issues.extend(other.issues);
        self.duplicate_events += other.duplicate_events;
        self.keys_read += other.keys_read;
        self.round_trips += other.round_trips;
        self.unclassified += other.unclassified;
    }

    /// No issue was found.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
}

/// Everything a trader had persisted, as loaded by [`crate::Cache::load`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every instrument, sorted by id.
    pub instruments: Vec<Instrument>,
    /// Every account, sorted by id.
    pub accounts: Vec<Account>,
    /// Each account's events in append order (duplicates dropped).
    pub account_events: HashMap<Ident, Vec<AccountEvent>>,
    /// Every order, sorted by id.
    pub orders: Vec<Order>,
    /// Each order's events in append order (duplicates dropped).
    pub order_events: HashMap<Ident, Vec<OrderEvent>>,
    /// Every position, sorted by id.
    pub positions: Vec<Position>,
    /// What else the load found.
    pub report: LoadReport,
}
