//! The connection reads use (`get`, `get_events`, `load_ticks`): opened
//! lazily, never the flusher's, replaced once when it fails after being
//! idle.

use parking_lot::Mutex;
use redis::Value;

use super::{Conn, Packer};
use crate::config::Config;
use crate::error::Result;

/// The read connection: opened at the first read, reused, dropped after an
/// I/O error (and opened again by the next read). Reads from several
/// threads take turns on it.
#[derive(Default)]
pub(crate) struct ReadLink {
    conn: Mutex<Option<Conn>>,
}

impl ReadLink {
    /// Sends the commands `pack` packs in one round trip and returns their
    /// replies, in order. A connection that fails on its first use after
    /// being idle is replaced once (Redis restarted, a failover, an idle
    /// timeout): a read is safe to repeat.
    pub(crate) fn pipeline(
        &self,
        cfg: &Config,
        slot_key: impl Fn() -> String,
        pack: impl Fn(&mut Packer),
    ) -> Result<Vec<Value>> {
        let mut packer = Packer::default();
        pack(&mut packer);
        let mut guard = self.conn.lock();
        loop {
            let fresh = guard.is_none();
            if fresh {
                *guard = Some(super::connect(cfg, &slot_key(), None).map_err(|f| f.into_error())?);
            }
            let Some(conn) = guard.as_mut() else { continue };
            match conn.round_trip(&packer) {
                Ok(v) => return Ok(v),
                Err(f) => {
                    // Whatever the error, this connection's state is unknown.
                    *guard = None;
                    if fresh {
                        return Err(f.into_error());
                    }
                }
            }
        }
    }
}
