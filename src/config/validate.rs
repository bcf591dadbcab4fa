//! [`Config::validate`]: the rules between settings (each value alone is
//! checked by its [`Codec`](super::Codec)), and checks the codecs share.

use super::*;
use crate::ident;
use crate::store::keys::{ENTITY_COLLECTIONS, LAYOUT_NAMES, MARKET_DATA_COLLECTIONS};

/// An id (see [`crate::Ident`]).
pub(super) fn check_id(v: &str) -> Result<(), Refused> {
    ident::validate(v).map(|_| ()).map_err(|e| format!("an id ({e})").into())
}

/// An instance id: an id that would not read as this trader's own keys, so
/// not a layout name, reference collection or market-data series
/// (`trader-T:quotes:{x}:events` is T's quote list; `clear` tells T's keys
/// from its instances' by the part after the prefix, `Keys::owns`).
pub(super) fn check_instance(v: &Option<String>) -> Result<(), Refused> {
    let reserved = [&LAYOUT_NAMES[..], &ENTITY_COLLECTIONS, &MARKET_DATA_COLLECTIONS].concat();
    match v.as_deref() {
        Some(v) if reserved.contains(&v) => Err(format!("an id other than {}", reserved.join(", ")).into()),
        Some(v) => check_id(v),
        None => Ok(()),
    }
}

/// Each node is a host and a port that is not 0.
pub(super) fn check_nodes(nodes: &[HostPort]) -> Result<(), Refused> {
    let problem = |n: &HostPort| host_problem(&n.host).or((n.port == 0).then_some(PORT_ALLOWED));
    let bad: Vec<_> = nodes.iter().filter_map(|n| Some((Some(n.to_string()), problem(n)?.into()))).collect();
    bad.is_empty().then_some(()).ok_or(Refused(bad))
}

impl Config {
    /// At `open`: the TLS files named can be read, so that a wrong path fails
    /// at once, not as a connection error after every retry.
    pub(crate) fn check_files(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        let files = [("tls_ca", &self.tls_ca), ("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)];
        for (field, path) in files {
            let Some(path) = path else { continue };
            if let Err(e) = std::fs::File::open(path) {
                p.push(field, path.display().to_string(), format!("a readable PEM file ({e})"));
            }
        }
        p.finish(())
    }

    /// Checks the whole configuration; [`crate::Cache::open`] calls it.
    ///
    /// ```
    /// use tradecache::Config;
    ///
    /// let err = Config::builder().port(0).connect_attempts(0).validate().unwrap_err();
    /// assert!(err.mentions("port") && err.mentions("connect_attempts"));
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError`] with one [`ConfigProblem`](crate::ConfigProblem) per issue, in the
    /// order of the options, each naming the setter (`"port"`), the bad
    /// value (never a password) and what is allowed: what the options'
    /// docs say, timeouts above zero and backoff minimums of at least 1 ms.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.check_values(&mut p);
        let (clustered, sentinel) = (!self.cluster_nodes.is_empty(), !self.sentinels.is_empty());
        if let (Some(user), None) = (&self.username, &self.password) {
            p.push("username", user.as_str(), "a username only with a password");
        }
        if clustered && self.db > 0 {
            p.push("db", self.db.to_string(), "0 in cluster mode (a cluster has only db 0)");
        }
        if !self.tls && (self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some()) {
            p.push("tls", "false", "true when tls_ca, tls_cert or tls_key is set");
        }
        #[cfg(not(feature = "tls"))]
        if self.tls {
            p.push("tls", "true", "false: tradecache was built without its `tls` feature");
        }
        if let (Some(cert), None) = (&self.tls_cert, &self.tls_key) {
            p.push("tls_key", "", format!("a key file to go with tls_cert {}", cert.display()));
        }
        if let (None, Some(key)) = (&self.tls_cert, &self.tls_key) {
            p.push("tls_cert", "", format!("a certificate file to go with tls_key {}", key.display()));
        }
        if sentinel && self.sentinel_master.is_none() {
            p.push("sentinel_master", "", "the name of the master the sentinels monitor");
        }
        if let (false, Some(m)) = (sentinel, &self.sentinel_master) {
            p.push("sentinels", "", format!("at least one sentinel, since sentinel_master is {m:?}"));
        }
        if sentinel && clustered {
            let nodes = format!("{} node(s)", self.cluster_nodes.len());
            p.push("cluster_nodes", nodes, "either sentinels or cluster_nodes, not both");
        }
        if clustered && !self.use_trader_prefix {
            let allowed =
                "true in cluster mode (the trader key is the hash tag that keeps a batch in one slot)";
            p.push("use_trader_prefix", "false", allowed);
        }
        let timeouts =
            [("connect_timeout", self.connect_timeout), ("response_timeout", self.response_timeout)];
        for (field, _) in timeouts.into_iter().filter(|(_, d)| d.is_zero()) {
            p.push(field, "0s", "a timeout above zero");
        }
        for (field, min, max) in [
            ("open_backoff", self.open_backoff_min, self.open_backoff_max),
            ("reconnect_backoff", self.reconnect_backoff_min, self.reconnect_backoff_max),
        ] {
            if min > max {
                p.push(field, format!("min {min:?}, max {max:?}"), "a minimum no greater than the maximum");
            }
            if min < Duration::from_millis(1) {
                // A zero minimum retries a failing server in a busy loop.
                p.push(field, format!("min {min:?}"), "a minimum of at least 1ms");
            }
        }
        if self.use_instance_id && self.instance_id.is_none() {
            p.push("instance_id", "", "an instance id, since use_instance_id is true");
        }
        if self.use_instance_id && !self.use_trader_prefix {
            let allowed =
                "false when use_trader_prefix is false (the instance id is part of the trader prefix)";
            p.push("use_instance_id", "true", allowed);
        }
        if self.flush_on_start && !self.use_trader_prefix {
            let allowed = "false when use_trader_prefix is false: without a prefix this cache's keys cannot \
                           be told from other applications' (it would delete theirs)";
            p.push("flush_on_start", "true", allowed);
        }
        if self.timestamps_as_iso8601 && self.encoding != Encoding::Json {
            let allowed = "false unless encoding is Encoding::Json (msgpack stores nanoseconds)";
            p.push("timestamps_as_iso8601", "true", allowed);
        }
        if self.idle_poll > Duration::from_secs(1) {
            // The flusher sleeps this long between looks at the channel.
            p.push("idle_poll", format!("{:?}", self.idle_poll), "at most 1s (100µs by default)");
        }
        if self.purge_batch == 0 {
            p.push("purge_batch", "0", "1 or more");
        }
        if self.overflow == (OverflowPolicy::Block { timeout: Duration::ZERO }) {
            let allowed = "a block timeout above zero (or OverflowPolicy::Reject)";
            p.push("overflow", "Block { timeout: 0s }", allowed);
        }
        if let Some((replicas, timeout)) = self.replica_wait {
            let value = format!("Some(({replicas}, {timeout:?}))");
            if replicas == 0 {
                p.push("replica_wait", value.as_str(), "1 or more replicas, or None");
            }
            if timeout.is_zero() {
                p.push("replica_wait", value.as_str(), "a timeout above zero (WAIT with 0 blocks forever)");
            } else if timeout >= self.response_timeout {
                let below = self.response_timeout;
                let allowed =
                    format!("a timeout below response_timeout ({below:?}), or the reply to WAIT times out");
                p.push("replica_wait", value, allowed);
            }
        }
        p.sorted(Config::FIELDS).finish(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::REDIS_MAX_VALUE_BYTES;
    use super::*;

    // --- validation: one test per rule ---

    #[test]
    fn host_rules() {
        for good in ["localhost", "redis-1.internal", "10.0.0.1", "::1", "fe80::1", "my_host"] {
            Config::builder().host(good).validate().unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "a b", "a/b", "u@h", "h:6379", "[::1]", "999.1.1.1", "a\tb", "-x", "h?x"] {
            let e = Config::builder().host(bad).validate().expect_err(bad);
            assert_eq!(fields(&e), vec!["host"], "{bad:?}");
            assert_eq!(e.problems[0].value, bad);
        }
    }

    #[test]
    fn port_zero() {
        assert_only(Config::builder().port(0), "port");
    }

    #[test]
    fn username_without_password() {
        assert_only(Config::builder().username("u"), "username");
        Config::builder().username("u").password("p").validate().unwrap();
        Config::builder().password("p").validate().unwrap();
    }

    #[test]
    fn zero_timeouts() {
        assert_only(Config::builder().connect_timeout(Duration::ZERO), "connect_timeout");
        assert_only(Config::builder().response_timeout(Duration::ZERO), "response_timeout");
    }

    #[test]
    fn zero_connect_attempts() {
        assert_only(Config::builder().connect_attempts(0), "connect_attempts");
    }

    #[test]
    fn negative_db() {
        assert_only(Config::builder().db(-1), "db");
    }

    #[test]
    fn bad_ids() {
        for bad in ["", "a:b", "a{b", "a}b", "a b", "a\u{1}b"] {
            assert_only(Config::builder().trader_id(bad), "trader_id");
            assert_only(Config::builder().writer_id(bad), "writer_id");
            assert_only(Config::builder().instance_id(bad), "instance_id");
        }
    }

    #[test]
    fn use_instance_id_rules() {
        assert_only(Config::builder().use_instance_id(true), "instance_id");
        Config::builder().use_instance_id(true).instance_id("I1").validate().unwrap();
        assert_only(
            Config::builder().instance_id("I1").use_instance_id(true).use_trader_prefix(false),
            "use_instance_id",
        );
    }

    #[test]
    fn zero_sizes() {
        assert_only(Config::builder().channel_capacity(0), "channel_capacity");
        assert_only(Config::builder().max_batch(0), "max_batch");
        assert_only(Config::builder().max_pending_events(0), "max_pending_events");
        assert_only(Config::builder().load_chunk(0), "load_chunk");
        assert_only(Config::builder().tick_capacity(0), "tick_capacity");
        assert_only(Config::builder().bar_capacity(0), "bar_capacity");
        assert_only(Config::builder().purge_batch(0), "purge_batch");
        assert_only(Config::builder().stream_max_len(0), "stream_max_len");
        assert_only(Config::builder().max_account_events(Some(0)), "max_account_events");
        assert_only(
            Config::builder().retain_closed_for(Some(Duration::from_millis(999))),
            "retain_closed_for",
        );
        assert_only(Config::builder().heartbeat_interval(Some(Duration::ZERO)), "heartbeat_interval");
        assert_only(Config::builder().stream_max_age(Some(Duration::ZERO)), "stream_max_age");
        assert_only(Config::builder().max_value_bytes(0), "max_value_bytes");
        assert_only(Config::builder().max_value_bytes(REDIS_MAX_VALUE_BYTES + 1), "max_value_bytes");
    }

    #[test]
    fn idle_poll_at_most_a_second() {
        assert!(Config::builder().idle_poll(Duration::from_secs(1)).validate().is_ok());
        assert_only(Config::builder().idle_poll(Duration::from_millis(1_001)), "idle_poll");
        assert_only(Config::builder().idle_poll(Duration::MAX), "idle_poll");
    }

    #[test]
    fn backoff_min_above_max() {
        let s = Duration::from_secs;
        assert_only(Config::builder().open_backoff(s(2), s(1)), "open_backoff");
        assert_only(Config::builder().reconnect_backoff(s(2), s(1)), "reconnect_backoff");
        Config::builder().open_backoff(s(1), s(1)).validate().unwrap();
    }

    #[test]
    fn tls_rules() {
        assert_only(Config::builder().tls_ca("/ca.pem"), "tls");
        assert_only(Config::builder().tls_cert("/c").tls_key("/k"), "tls");
        let e = Config::builder().tls(true).tls_cert("/c").validate().unwrap_err();
        assert!(e.mentions("tls_key"), "{e}");
        let e = Config::builder().tls(true).tls_key("/k").validate().unwrap_err();
        assert!(e.mentions("tls_cert"), "{e}");
        #[cfg(feature = "tls")]
        Config::builder().tls(true).tls_cert("/c").tls_key("/k").validate().unwrap();
        #[cfg(not(feature = "tls"))]
        assert_only(Config::builder().tls(true), "tls");
    }

    #[test]
    fn sentinel_and_cluster_rules() {
        assert_only(Config::builder().sentinels([("s1", 26379)]), "sentinel_master");
        assert_only(Config::builder().sentinel_master("m"), "sentinels");
        Config::builder().sentinels([("s1", 26379)]).sentinel_master("m").validate().unwrap();
        let both =
            Config::builder().sentinels([("s1", 26379)]).sentinel_master("m").cluster_nodes([("n1", 7000)]);
        assert_only(both, "cluster_nodes");
        assert_only(Config::builder().sentinels([("s 1", 26379)]).sentinel_master("m"), "sentinels");
        assert_only(Config::builder().cluster_nodes([("n1", 0)]), "cluster_nodes");
        assert_only(Config::builder().cluster_nodes([("n1", 7000)]).db(1), "db");
        assert_only(
            Config::builder().cluster_nodes([("n1", 7000)]).use_trader_prefix(false),
            "use_trader_prefix",
        );
        Config::builder().cluster_nodes([("n1", 7000)]).validate().unwrap();
    }

    #[test]
    fn block_with_zero_timeout() {
        assert_only(
            Config::builder().overflow(OverflowPolicy::Block { timeout: Duration::ZERO }),
            "overflow",
        );
    }

    /// Settings that would make the flusher spin, or `flush_on_start`
    /// reach other applications' keys, are refused.
    #[test]
    fn trust_rules() {
        assert_only(
            Config::builder().reconnect_backoff(Duration::ZERO, Duration::from_millis(10)),
            "reconnect_backoff",
        );
        assert_only(
            Config::builder().open_backoff(Duration::ZERO, Duration::from_millis(10)),
            "open_backoff",
        );
        Config::builder()
            .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(1))
            .validate()
            .unwrap();
        assert_only(Config::builder().use_trader_prefix(false).flush_on_start(true), "flush_on_start");
        Config::builder().use_trader_prefix(false).validate().unwrap();
        for reserved in
            ["index", "writer", "stream", "heartbeat", "orders", "positions", "quotes", "trades", "bars"]
        {
            assert_only(Config::builder().instance_id(reserved), "instance_id");
        }
        Config::builder().instance_id("I1").use_instance_id(true).validate().unwrap();
        assert_only(Config::builder().max_pending_snapshots(0), "max_pending_snapshots");
        assert_only(Config::builder().max_batch_bytes(0), "max_batch_bytes");
    }

    #[test]
    fn replica_wait_rules() {
        let ms = Duration::from_millis;
        Config::builder().replica_wait(Some((1, ms(100)))).validate().unwrap();
        assert_only(Config::builder().replica_wait(Some((0, ms(100)))), "replica_wait");
        assert_only(Config::builder().replica_wait(Some((1, ms(0)))), "replica_wait");
        assert_only(Config::builder().replica_wait(Some((1, ms(2000)))), "replica_wait");
    }

    #[test]
    fn iso8601_needs_json() {
        assert_only(Config::builder().timestamps_as_iso8601(true), "timestamps_as_iso8601");
    }

    #[test]
    fn validation_lists_every_problem() {
        let e = Config::builder()
            .host("")
            .port(0)
            .username("u")
            .connect_attempts(0)
            .trader_id("a:b")
            .channel_capacity(0)
            .validate()
            .unwrap_err();
        assert_eq!(
            fields(&e),
            vec!["host", "port", "username", "connect_attempts", "trader_id", "channel_capacity"]
        );
        let text = e.to_string();
        assert!(text.contains("port = \"0\""), "{text}");
        assert!(text.contains("trader_id = \"a:b\""), "{text}");
    }
}
