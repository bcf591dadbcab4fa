//! Talking to Redis: everything below the flusher and the readers. This
//! file connects by deployment mode (standalone, Sentinel, Cluster), with
//! `open`'s bounded retries.

pub(crate) mod connect;
pub(crate) mod discovery;
pub(crate) mod read_link;
pub(crate) mod resp;
pub(crate) mod retry;
#[cfg(feature = "tls")]
pub(crate) mod tls;

use std::time::Instant;

use crate::config::Config;
use crate::error::Error;

pub(crate) use connect::{connect_to, ClientIdentity, Conn};
pub(crate) use resp::{Args, Packer, Span};
pub(crate) use retry::{deadline_after, reply_error, source_of, Action, Backoff, Cause, Failure, Retry};

/// Connects according to the configured mode, resolving the master through
/// Sentinel or the trader's slot owner through Cluster.
pub(crate) fn connect(cfg: &Config, slot_key: &str, deadline: Option<Instant>) -> Result<Conn, Failure> {
    if !cfg.sentinels.is_empty() {
        discovery::connect_sentinel(cfg, deadline)
    } else if !cfg.cluster_nodes.is_empty() {
        discovery::connect_cluster(cfg, slot_key, deadline)
    } else {
        connect_to(cfg, &cfg.host, cfg.port, deadline)
    }
}

/// `Cache::open`'s bounded connect: at most `connect_attempts` tries with
/// exponential backoff between them.
pub(crate) fn connect_with_retries(cfg: &Config, slot_key: &str) -> Result<Conn, Error> {
    let mut backoff = Backoff::new(cfg.open_backoff_min, cfg.open_backoff_max);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match connect(cfg, slot_key, None) {
            Ok(c) => return Ok(c),
            Err(f) => {
                log::warn!("tradecache: connect attempt {attempt} to {} failed: {}", f.addr, f.text);
                // A wrong password or certificate will not fix itself:
                // fail at once.
                if attempt >= cfg.connect_attempts || f.cause.is_permanent() {
                    return Err(f.into_connect_error(attempt));
                }
                std::thread::sleep(backoff.next_delay());
            }
        }
    }
}

#[cfg(test)]
pub(crate) use resp::tests::assert_spans_match;
