//! What a cache reports about itself: the public [`crate::Stats`] and
//! [`crate::Health`] views (`stats.rs`), the Prometheus text
//! ([`crate::exposition`], `exposition.rs`) and the `metrics` facade
//! (`facade.rs`, feature `metrics`). The kv cache's own are in
//! `crate::kv` (`counters.rs`, `prometheus.rs`).

pub mod exposition;
#[cfg(feature = "metrics")]
pub(crate) mod facade;
pub(crate) mod stats;
