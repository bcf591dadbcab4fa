//! Single flight for `get_or_compute`: concurrent misses of one key run
//! the computation once; the other callers wait for its result (the
//! encoded value) instead of computing it again.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::op::Value;

/// Set once by the leader: its value, or `None` if it had none to share
/// (its computation panicked): followers compute for themselves.
type Flight = OnceLock<Option<Value>>;

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Box<[u8]>, Arc<Flight>>>,
}

pub(crate) enum Role<'a> {
    /// Compute, then [`Leader::publish`].
    Leader(Leader<'a>),
    /// Another caller computed: its value, if it had one to share.
    Follower(Option<Value>),
}

pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: Box<[u8]>,
    flight: Arc<Flight>,
}

impl Flights {
    /// Joins the flight for `key`, or starts it.
    pub(crate) fn join(&self, key: &[u8]) -> Role<'_> {
        let mut map = self.map.lock();
        if let Some(flight) = map.get(key).cloned() {
            drop(map);
            return Role::Follower(flight.wait().clone());
        }
        let flight = Arc::new(Flight::new());
        map.insert(key.into(), flight.clone());
        Role::Leader(Leader { flights: self, key: key.into(), flight })
    }
}

impl Leader<'_> {
    /// Hands the result to the waiting callers and ends the flight (the
    /// first call only).
    pub(crate) fn publish(&self, value: Option<Value>) {
        let _ = self.flight.set(value);
        let mut map = self.flights.map.lock();
        if map.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            map.remove(&self.key);
        }
    }
}

impl Drop for Leader<'_> {
    /// A leader whose computation panicked still releases its followers.
    fn drop(&mut self) {
        self.publish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn one_computes_the_others_wait() {
        let flights = Flights::default();
        let computed = AtomicUsize::new(0);
        let barrier = std::sync::Barrier::new(8);
        let got: Vec<Option<Vec<u8>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        match flights.join(b"k") {
                            Role::Leader(l) => {
                                computed.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(50));
                                l.publish(Some(Arc::new(7u32)));
                                Some(b"7".to_vec())
                            }
                            Role::Follower(v) => v.map(|v| {
                                let mut out = Vec::new();
                                v.encode(crate::Encoding::Json, &mut out).unwrap();
                                out
                            }),
                        }
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(got.iter().all(|v| v.as_deref() == Some(&b"7"[..])), "{got:?}");
        // Threads that arrive after the flight ended start a new one, so
        // more than one computation is possible, never one per thread
        // while they overlap.
        assert!(computed.load(Ordering::SeqCst) >= 1);
        assert!(flights.map.lock().is_empty());
    }

    #[test]
    fn a_dropped_leader_releases_followers() {
        let flights = Flights::default();
        let Role::Leader(l) = flights.join(b"k") else { panic!("first is the leader") };
        std::thread::scope(|s| {
            let h = s.spawn(|| match flights.join(b"k") {
                Role::Follower(v) => v.is_none(),
                Role::Leader(_) => true,
            });
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(l);
            assert!(h.join().unwrap());
        });
    }
}
