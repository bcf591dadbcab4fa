//! [`ErrorClass`], the classes errors are counted by (a leaf: it imports
//! nothing from the crate).

/// Error classes counted separately in [`crate::Stats::errors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Connection refused, reset or closed.
    Io,
    /// A connect or reply timed out.
    Timeout,
    /// `LOADING`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`, `NOREPLICAS`,
    /// `BUSY`, and `ASK` (the trader's cluster slot is being migrated).
    Busy,
    /// `READONLY` or `MOVED`: the server is a replica (a failover), or no
    /// longer owns the trader's cluster slot.
    ReadOnly,
    /// `OOM`: `maxmemory` reached under `noeviction`.
    Oom,
    /// `MISCONF`: the server cannot persist.
    Misconf,
    /// `NOAUTH`, `WRONGPASS`, `NOPERM`.
    Auth,
    /// A value could not be encoded.
    Encode,
    /// A value was larger than `max_value_bytes`.
    TooLarge,
    /// A command inside an applied transaction failed (e.g. `WRONGTYPE`).
    Command,
    /// Another writer opened as this one (same trader, instance and
    /// `writer_id`) and took over: this cache writes nothing more.
    Fenced,
    /// The commit marker is missing or behind what this writer had
    /// acknowledged: Redis lost acknowledged batches (AOF `everysec` loss,
    /// a failover to a lagging replica, a restore) or someone deleted it.
    /// The writes that may be gone are listed by
    /// [`crate::Cache::take_dropped`], and so are those of a batch in
    /// doubt at that moment that could not be proven applied.
    MarkerLost,
    /// Any other server error.
    Other,
}

impl ErrorClass {
    /// How many classes there are.
    pub(crate) const COUNT: usize = 13;

    /// Every class, in a fixed order.
    pub(crate) const ALL: [ErrorClass; ErrorClass::COUNT] = [
        ErrorClass::Io,
        ErrorClass::Timeout,
        ErrorClass::Busy,
        ErrorClass::ReadOnly,
        ErrorClass::Oom,
        ErrorClass::Misconf,
        ErrorClass::Auth,
        ErrorClass::Encode,
        ErrorClass::TooLarge,
        ErrorClass::Command,
        ErrorClass::Fenced,
        ErrorClass::MarkerLost,
        ErrorClass::Other,
    ];

    /// Its position in [`ErrorClass::ALL`] (for arrays of counters).
    pub(crate) fn index(self) -> usize {
        ErrorClass::ALL.iter().position(|c| *c == self).unwrap_or(ErrorClass::COUNT - 1)
    }

    /// A short lowercase name: `"oom"`, `"timeout"`, …
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Io => "io",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Busy => "busy",
            ErrorClass::ReadOnly => "readonly",
            ErrorClass::Oom => "oom",
            ErrorClass::Misconf => "misconf",
            ErrorClass::Auth => "auth",
            ErrorClass::Encode => "encode",
            ErrorClass::TooLarge => "too_large",
            ErrorClass::Command => "command",
            ErrorClass::Fenced => "fenced",
            ErrorClass::MarkerLost => "marker_lost",
            ErrorClass::Other => "other",
        }
    }
}
