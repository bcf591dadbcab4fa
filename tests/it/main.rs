//! The integration tests: one test binary, one module per topic, each test
//! against private `redis-server` processes that [`harness`] starts on free
//! loopback ports (never a Redis on 6379).
//!
//! Run one topic with a filter on the module path, e.g.
//! `cargo nextest run --test it -E 'test(/^fencing::/)'` or
//! `cargo test --test it fencing::`.

mod harness;

mod acl;
mod bad_input;
mod clear;
// Runs the `tradecache` binary (`CARGO_BIN_EXE_tradecache`), which is only
// built with the feature.
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_checks;
mod close;
mod cluster;
mod crash;
mod faults;
mod fencing;
mod flush_on_start;
mod fuzz;
mod harness_smoke;
mod in_doubt;
mod kv;
mod kv_consistency;
mod kv_stats;
mod live;
mod load;
mod metrics;
mod model_based;
mod model_purge;
mod outage;
mod pipeline;
mod raw;
mod reads;
mod reconnect;
mod recovery_scale;
mod registry;
mod retention;
mod sentinel;
#[cfg(feature = "tls")]
mod tls;
