//! Collection names that would alias the key layout's own keys, or are not
//! key-safe, are refused. The compiler refuses them for types (the
//! `compile_fail` tests in `src/entity.rs`); these check the same rule, one
//! name at a time, through the function the compiler evaluates, and that
//! `import` applies it to a backup's lines.

use tradecache::admin;

#[track_caller]
fn refused_entity(name: &str, why: &str) {
    let p =
        admin::entity_collection_problem(name).unwrap_or_else(|| panic!("{name:?} accepted for an entity"));
    assert!(p.contains(why), "{name:?}: {p}");
}

#[track_caller]
fn refused_series(name: &str, why: &str) {
    let p =
        admin::series_collection_problem(name).unwrap_or_else(|| panic!("{name:?} accepted for market data"));
    assert!(p.contains(why), "{name:?}: {p}");
}

#[test]
fn collection_index_is_reserved() {
    refused_entity("index", "key layout uses itself");
    refused_series("index", "key layout uses itself");
}

#[test]
fn collection_writer_is_reserved() {
    refused_entity("writer", "key layout uses itself");
    refused_series("writer", "key layout uses itself");
}

#[test]
fn collection_stream_is_reserved() {
    refused_entity("stream", "key layout uses itself");
    refused_series("stream", "key layout uses itself");
}

#[test]
fn collection_heartbeat_is_reserved() {
    refused_entity("heartbeat", "key layout uses itself");
    refused_series("heartbeat", "key layout uses itself");
}

#[test]
fn collection_quotes_is_reserved_for_quote_ticks() {
    refused_entity("quotes", "market-data series");
    refused_series("quotes", "crate's QuoteTick");
}

#[test]
fn collection_trades_is_reserved_for_trade_ticks() {
    refused_entity("trades", "market-data series");
    refused_series("trades", "crate's QuoteTick, TradeTick");
}

#[test]
fn collection_bars_is_reserved_for_bars() {
    refused_entity("bars", "market-data series");
    refused_series("bars", "TradeTick and Bar");
}

#[test]
fn market_data_may_not_use_an_entity_collection() {
    for name in admin::REFERENCE_COLLECTIONS {
        refused_series(name, "their event logs");
        assert_eq!(admin::entity_collection_problem(name), None, "{name}");
    }
}

#[test]
fn collection_names_must_be_key_safe() {
    refused_entity("", "empty");
    refused_entity(&"c".repeat(257), "longer than 256");
    for bad in ["a:b", "{t}", "a}", "a b", "a\tb", "a\nb", "a\u{7}", "caf\u{e9}", " "] {
        refused_entity(bad, "only ASCII letters");
        refused_series(bad, "only ASCII letters");
    }
}

#[test]
fn ordinary_names_are_accepted() {
    for ok in ["strategies", "counters", "funding", "a-b_c.d", "events", "x", &"c".repeat(256)] {
        assert_eq!(admin::entity_collection_problem(ok), None, "{ok}");
        assert_eq!(admin::series_collection_problem(ok), None, "{ok}");
    }
    for md in admin::MARKET_DATA_COLLECTIONS {
        assert_eq!(admin::stored_collection_problem(md), None, "{md}: the crate's series are stored state");
    }
}
