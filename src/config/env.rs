#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::docs;
    use super::super::table::render::{env_example, lines, markdown};
    use super::super::test_util::*;
    use super::super::*;
    use super::super::{DEFAULT_BLOCK_TIMEOUT, DEFAULT_REPLICA_WAIT_TIMEOUT};
    use crate::config::{HostPort, OverflowPolicy, Secret, PORT_ALLOWED};

    // --- encoding ---

    #[test]
    fn encoding_from_str() {
        assert_eq!("msgpack".parse::<Encoding>().unwrap(), Encoding::MsgPack);
        assert_eq!(" JSON ".parse::<Encoding>().unwrap(), Encoding::Json);
        let e = "yaml".parse::<Encoding>().unwrap_err();
        assert_eq!(e.problems[0].value, "yaml");
        assert!(e.to_string().contains("msgpack, json"), "{e}");
        assert_eq!(Encoding::Json.to_string(), "json");
    }

    // --- environment ---

    #[test]
    fn empty_env_is_default() {
        let c = from(&[]).unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
        let c = from(&[("REDIS_HOST", ""), ("REDIS_PORT", "  "), ("REDIS_PASSWORD", "")]).unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn env_sets_every_field() {
        let c = from(&[
            ("REDIS_HOST", "redis-1"),
            ("REDIS_PORT", "6380"),
            ("REDIS_USERNAME", "alice"),
            ("REDIS_PASSWORD", " pw with spaces "),
            ("REDIS_DB", "4"),
            ("REDIS_SSL", "Yes"),
            ("REDIS_TIMEOUT", "0.25"),
            ("REDIS_TLS_CA", "/ca.pem"),
            ("REDIS_TLS_CERT", "/c.pem"),
            ("REDIS_TLS_KEY", "/k.pem"),
            ("REDIS_SENTINELS", "s1:26379, s2 ,[::1]:26380"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("CACHE_TRADER_ID", "TESTER-001"),
            ("CACHE_INSTANCE_ID", "I-9"),
            ("CACHE_USE_TRADER_PREFIX", "true"),
            ("CACHE_USE_INSTANCE_ID", "1"),
            ("CACHE_ENCODING", "json"),
            ("CACHE_TIMESTAMPS_AS_ISO8601", "TRUE"),
            ("CACHE_FLUSH_ON_START", "yes"),
            ("CACHE_PERSIST_ACCOUNT_EVENTS", "no"),
            ("CACHE_MAX_VALUE_BYTES", "1024"),
            ("CACHE_WRITER_ID", "w-2"),
            ("CACHE_BUFFER_INTERVAL_MS", "5"),
            ("CACHE_CHANNEL_CAPACITY", "100"),
            ("CACHE_OVERFLOW", "block"),
            ("CACHE_BLOCK_TIMEOUT_MS", "3"),
            ("CACHE_MAX_BATCH", "50"),
            ("CACHE_MAX_PENDING_EVENTS", "60"),
            ("CACHE_CONNECT_ATTEMPTS", "9"),
            ("CACHE_BACKOFF_MIN_MS", "10"),
            ("CACHE_BACKOFF_MAX_MS", "20"),
            ("CACHE_RECONNECT_BACKOFF_MIN_MS", "30"),
            ("CACHE_RECONNECT_BACKOFF_MAX_MS", "40"),
            ("CACHE_IDLE_POLL_US", "7"),
            ("CACHE_CLOSE_TIMEOUT_MS", "9000"),
            ("CACHE_REPLICA_WAIT", "2"),
            ("CACHE_REPLICA_WAIT_TIMEOUT_MS", "50"),
            ("CACHE_LOAD_CHUNK", "77"),
            ("CACHE_STRICT_LOAD", "true"),
            ("CACHE_TICK_CAPACITY", "88"),
            ("CACHE_BAR_CAPACITY", "99"),
            ("CACHE_RETAIN_CLOSED_SECS", "86400"),
            ("CACHE_MAX_ACCOUNT_EVENTS", "1000"),
            ("CACHE_HEARTBEAT_MS", "250"),
            ("CACHE_PUBLISH_EVENTS", "yes"),
            ("CACHE_STREAM_MAXLEN", "5000"),
            ("CACHE_STREAM_MAX_AGE_SECS", "3600"),
        ])
        .unwrap();
        let ms = Duration::from_millis;
        assert_eq!((c.host.as_str(), c.port, c.db, c.tls), ("redis-1", 6380, 4, true));
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password, Some(Secret(" pw with spaces ".into())));
        assert_eq!((c.connect_timeout, c.response_timeout), (ms(250), ms(250)));
        assert_eq!(c.tls_ca, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.tls_cert, Some(PathBuf::from("/c.pem")));
        assert_eq!(c.tls_key, Some(PathBuf::from("/k.pem")));
        assert_eq!(
            c.sentinels,
            vec![
                HostPort { host: "s1".into(), port: 26379 },
                HostPort { host: "s2".into(), port: 26379 },
                HostPort { host: "::1".into(), port: 26380 },
            ]
        );
        assert_eq!(c.sentinel_master.as_deref(), Some("mymaster"));
        assert_eq!(c.trader_key(), "trader-TESTER-001:I-9");
        assert_eq!((c.encoding, c.timestamps_as_iso8601), (Encoding::Json, true));
        assert!(c.flush_on_start && !c.persist_account_events && c.strict_load);
        assert_eq!((c.max_value_bytes, c.writer_id.as_str()), (1024, "w-2"));
        assert_eq!(c.buffer_interval, ms(5));
        assert_eq!(c.channel_capacity, 100);
        assert_eq!(c.overflow, OverflowPolicy::Block { timeout: ms(3) });
        assert_eq!((c.max_batch, c.max_pending_events, c.connect_attempts), (50, 60, 9));
        assert_eq!((c.open_backoff_min, c.open_backoff_max), (ms(10), ms(20)));
        assert_eq!((c.reconnect_backoff_min, c.reconnect_backoff_max), (ms(30), ms(40)));
        assert_eq!(c.idle_poll, Duration::from_micros(7));
        assert_eq!(c.close_timeout, ms(9000));
        assert_eq!(c.replica_wait, Some((2, ms(50))));
        assert_eq!((c.load_chunk, c.tick_capacity, c.bar_capacity), (77, 88, 99));
        assert_eq!(c.retain_closed_for, Some(Duration::from_secs(86_400)));
        assert_eq!((c.max_account_events, c.heartbeat_interval), (Some(1000), Some(ms(250))));
        assert!(c.publish_events);
        assert_eq!((c.stream_max_len, c.stream_max_age), (5000, Some(Duration::from_secs(3600))));
        // 0 turns the optional ones off.
        let c = from(&[
            ("CACHE_RETAIN_CLOSED_SECS", "0"),
            ("CACHE_MAX_ACCOUNT_EVENTS", "0"),
            ("CACHE_HEARTBEAT_MS", "0"),
            ("CACHE_STREAM_MAX_AGE_SECS", "0"),
        ])
        .unwrap();
        assert_eq!((c.retain_closed_for, c.max_account_events), (None, None));
        assert_eq!((c.heartbeat_interval, c.stream_max_age), (None, None));

        let c =
            from(&[("REDIS_CLUSTER", "n1:7000,n2,[fe80::1]:7002"), ("CACHE_OVERFLOW", "Reject")]).unwrap();
        assert_eq!(c.cluster_nodes[1], HostPort { host: "n2".into(), port: 6379 });
        assert_eq!(c.cluster_nodes[2].host, "fe80::1");
        assert_eq!(c.overflow, OverflowPolicy::Reject);
    }

    #[test]
    fn env_defaults_for_block_and_replica_wait() {
        let c = from(&[("CACHE_OVERFLOW", "BLOCK"), ("CACHE_REPLICA_WAIT", "1")]).unwrap();
        assert_eq!(c.overflow, OverflowPolicy::Block { timeout: DEFAULT_BLOCK_TIMEOUT });
        assert_eq!(c.replica_wait, Some((1, DEFAULT_REPLICA_WAIT_TIMEOUT)));
        c.validate().unwrap();
        let c = from(&[("CACHE_REPLICA_WAIT", "0")]).unwrap();
        assert_eq!(c.replica_wait, None);
    }

    #[test]
    fn env_url_then_overrides() {
        let c = from(&[
            ("REDIS_URL", "redis://cache-1:6390/2"),
            ("REDIS_PASSWORD", PASSWORD),
            ("REDIS_PORT", "6391"),
        ])
        .unwrap();
        assert_eq!((c.host.as_str(), c.port, c.db), ("cache-1", 6391, 2));
        assert_eq!(c.password, Some(Secret(PASSWORD.into())));
        let c = from(&[("REDIS_URL", "rediss://h"), ("REDIS_SSL", "false")]).unwrap();
        assert!(!c.tls);
    }

    #[test]
    fn env_lists_every_problem() {
        let e = problems(from(&[
            ("REDIS_HOST", "bad host"),
            ("REDIS_PORT", "70000"),
            ("REDIS_DB", "-1"),
            ("REDIS_SSL", "maybe"),
            ("REDIS_TIMEOUT", "0"),
            ("REDIS_SENTINELS", "s1:26379,s2:x,::1:5"),
            ("REDIS_SENTINEL_MASTER", "my master"),
            ("REDIS_CLUSTER", "n1:0"),
            ("CACHE_TRADER_ID", "a:b"),
            ("CACHE_INSTANCE_ID", "a b"),
            ("CACHE_WRITER_ID", "{w}"),
            ("CACHE_USE_TRADER_PREFIX", "on"),
            ("CACHE_USE_INSTANCE_ID", "2"),
            ("CACHE_ENCODING", "yaml"),
            ("CACHE_TIMESTAMPS_AS_ISO8601", "t"),
            ("CACHE_FLUSH_ON_START", "x"),
            ("CACHE_PERSIST_ACCOUNT_EVENTS", "x"),
            ("CACHE_MAX_VALUE_BYTES", "0"),
            ("CACHE_BUFFER_INTERVAL_MS", "-5"),
            ("CACHE_CHANNEL_CAPACITY", "0"),
            ("CACHE_OVERFLOW", "drop"),
            ("CACHE_BLOCK_TIMEOUT_MS", "0"),
            ("CACHE_MAX_BATCH", "lots"),
            ("CACHE_MAX_PENDING_EVENTS", "0"),
            ("CACHE_MAX_PENDING_SNAPSHOTS", "0"),
            ("CACHE_MAX_BATCH_BYTES", "none"),
            ("CACHE_CONNECT_ATTEMPTS", "0"),
            ("CACHE_BACKOFF_MIN_MS", "1.5"),
            ("CACHE_BACKOFF_MAX_MS", "x"),
            ("CACHE_RECONNECT_BACKOFF_MIN_MS", "x"),
            ("CACHE_RECONNECT_BACKOFF_MAX_MS", "x"),
            ("CACHE_IDLE_POLL_US", "x"),
            ("CACHE_CLOSE_TIMEOUT_MS", "x"),
            ("CACHE_REPLICA_WAIT", "-1"),
            ("CACHE_REPLICA_WAIT_TIMEOUT_MS", "0"),
            ("CACHE_LOAD_CHUNK", "0"),
            ("CACHE_STRICT_LOAD", "x"),
            ("CACHE_TICK_CAPACITY", "0"),
            ("CACHE_BAR_CAPACITY", "99999999999999999999999"),
            ("CACHE_RETAIN_CLOSED_SECS", "-1"),
            ("CACHE_MAX_ACCOUNT_EVENTS", "x"),
            ("CACHE_HEARTBEAT_MS", "1.5"),
            ("CACHE_PUBLISH_EVENTS", "x"),
            ("CACHE_STREAM_MAXLEN", "0"),
            ("CACHE_STREAM_MAX_AGE_SECS", "x"),
        ]));
        let got = fields(&e);
        for name in Config::rows().map(|v| v.var) {
            if matches!(name, "REDIS_URL" | "REDIS_USERNAME" | "REDIS_PASSWORD")
                || name.starts_with("REDIS_TLS_")
            {
                continue;
            }
            assert!(got.contains(&name), "{name} not reported: {e}");
        }
        // Two bad items in REDIS_SENTINELS: one problem each.
        assert_eq!(got.iter().filter(|f| **f == "REDIS_SENTINELS").count(), 2, "{e}");
        let port = e.problems.iter().find(|p| p.field == "REDIS_PORT").unwrap();
        assert_eq!(port.value, "70000");
        assert_eq!(port.allowed, PORT_ALLOWED);
        for p in &e.problems {
            assert!(!p.allowed.is_empty(), "{p}");
        }
    }

    #[test]
    fn env_port_values() {
        for bad in ["0", "65536", "abc", "-1", "1.5", "99999999999999999999"] {
            let e = problems(from(&[("REDIS_PORT", bad)]));
            assert_eq!(fields(&e), vec!["REDIS_PORT"], "{bad}");
            assert_eq!(e.problems[0].value, bad);
        }
        assert_eq!(from(&[("REDIS_PORT", "65535")]).unwrap().port, 65535);
        assert_eq!(from(&[("REDIS_PORT", " 1 ")]).unwrap().port, 1);
    }

    #[test]
    fn env_block_timeout_needs_block() {
        let e = problems(from(&[("CACHE_BLOCK_TIMEOUT_MS", "5")]));
        assert_eq!(fields(&e), vec!["CACHE_BLOCK_TIMEOUT_MS"]);
        let e = problems(from(&[("CACHE_REPLICA_WAIT_TIMEOUT_MS", "5")]));
        assert_eq!(fields(&e), vec!["CACHE_REPLICA_WAIT_TIMEOUT_MS"]);
    }

    #[test]
    fn env_timeout_values() {
        let t = from(&[("REDIS_TIMEOUT", "3")]).unwrap();
        assert_eq!(t.connect_timeout, Duration::from_secs(3));
        for bad in ["0", "-1", "nan", "inf", "abc", "1e400"] {
            assert_eq!(fields(&problems(from(&[("REDIS_TIMEOUT", bad)]))), vec!["REDIS_TIMEOUT"]);
        }
    }

    #[test]
    fn env_never_shows_password() {
        // A password is never validated, so it can never be a problem's value,
        // even alongside other problems.
        let e = problems(from(&[("REDIS_PASSWORD", PASSWORD), ("REDIS_PORT", "x")]));
        assert_no_secret(&e, PASSWORD);
        let e = problems(from(&[("REDIS_URL", &format!("redis://u:{PASSWORD}@h:bad/0"))]));
        assert_no_secret(&e, PASSWORD);
    }

    /// The configuration table in docs/configuration.md, the table in the documentation of
    /// `from_vars` and `.env.example` are what the table renders. With
    /// `TRADECACHE_WRITE_DOCS=1`, this test writes them instead.
    #[test]
    fn docs_match_the_table() {
        let lines = lines(Config::rows(), &Config::default());
        docs::check_file("src/config/vars.md", &markdown(&lines, Some("Config")));
        docs::check_block("docs/configuration.md", "config-env", &markdown(&lines, None));
        docs::check_block(".env.example", "config-env", &env_example(&lines));
    }

    #[test]
    fn table_is_complete() {
        let mut names: Vec<&str> = Config::rows().map(|v| v.var).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Config::rows().count(), "a variable is listed twice");
        let defaults = Config::default();
        for var in Config::rows() {
            assert!(!var.doc.is_empty() && !var.values.is_empty() && !var.sets.is_empty(), "{}", var.var);
            // Each default, read back, is the default: the table says what
            // `Config::default()` does.
            // (Two variables refine another, which must be on.)
            let text = (var.default)(&defaults);
            let needs = match var.var {
                "CACHE_BLOCK_TIMEOUT_MS" => vec![("CACHE_OVERFLOW", "block")],
                "CACHE_REPLICA_WAIT_TIMEOUT_MS" => vec![("CACHE_REPLICA_WAIT", "1")],
                _ => vec![],
            };
            if !text.is_empty() {
                let expected = from(&needs).unwrap();
                let mut vars = needs.clone();
                vars.push((var.var, &text));
                let c = from(&vars).unwrap_or_else(|e| panic!("{}={text}: {e}", var.var));
                assert_eq!(format!("{c:?}"), format!("{expected:?}"), "{}={text}", var.var);
            }
        }
    }
}
