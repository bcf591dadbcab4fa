//! `tradecache`, the operator's command-line tool (feature `cli`; `main.rs`
//! beside this file only calls [`main`]); see `tradecache --help` and
//! docs/recovery.md. Compiled into the library as its hidden `cli` module
//! so that it uses the crate's own connection, key layout and decoders
//! (`admin.rs`) without their being public.

use std::process::ExitCode;

use crate::Config;
use clap::{Args, Parser, Subcommand};

mod admin;
mod inspect;
mod purge;
mod stats;
mod transfer;
mod util;
mod verify;

/// Inspect, check, back up, restore and prune the state tradecache keeps in
/// Redis.
///
/// Connection and keys are configured as for the library: REDIS_URL (or
/// REDIS_HOST, REDIS_PORT, REDIS_USERNAME, REDIS_PASSWORD, REDIS_DB,
/// REDIS_SSL, REDIS_SENTINELS, REDIS_CLUSTER, ...) and CACHE_TRADER_ID,
/// CACHE_INSTANCE_ID, CACHE_USE_INSTANCE_ID, CACHE_ENCODING, ...; the
/// options below override them.
///
/// Exit status: 0 success; 1 `verify` found problems; 2 an error (bad
/// arguments or configuration, Redis unreachable, `import` refused).
#[derive(Parser, Debug)]
#[command(name = "tradecache", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Redis URL (redis[s]://[user[:password]@]host[:port][/db]); default
    /// from REDIS_URL / REDIS_* variables. Prefer REDIS_PASSWORD for the
    /// password: arguments are visible to other local users.
    #[arg(long, global = true, value_name = "URL")]
    url: Option<String>,
    /// Trader id (the keys' `trader-{ID}` prefix); default CACHE_TRADER_ID.
    #[arg(long, short = 't', global = true, value_name = "ID")]
    trader: Option<String>,
    /// Instance id (keys `trader-{ID}:{INSTANCE}:…`); default
    /// CACHE_INSTANCE_ID when CACHE_USE_INSTANCE_ID is on.
    #[arg(long, short = 'i', global = true, value_name = "INSTANCE")]
    instance: Option<String>,
    /// No progress output on stderr.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List traders and instances (without a trader id), a trader's keys by
    /// collection, or values decoded to JSON.
    Inspect(inspect::InspectArgs),
    /// Key counts, memory, writer markers and the Redis server's
    /// persistence and replication status for one trader.
    Stats(stats::StatsArgs),
    /// Check index entries (open/closed too) against values, event logs for
    /// duplicate or out-of-order event ids, and orphan event logs (no
    /// snapshot); exit 1 on problems.
    Verify(verify::VerifyArgs),
    /// Write a trader's whole state as JSON lines (a backup any tool reads).
    Export(transfer::ExportArgs),
    /// Restore a trader's state from an export; refuses to replace existing
    /// state without --force.
    Import(transfer::ImportArgs),
    /// Delete closed orders and flat positions older than an age, with their
    /// event logs and index entries, and the orphan event logs (no snapshot)
    /// of those collections (a dry run unless --execute).
    Purge(purge::PurgeArgs),
}

/// The configuration every subcommand starts from, and whether a trader id
/// was given at all (argument or environment).
pub(crate) struct Setup {
    pub(crate) config: Config,
    pub(crate) trader_given: bool,
    pub(crate) quiet: bool,
}

fn setup(g: &Global) -> Result<Setup, util::CliError> {
    let mut config = Config::from_env()?;
    if let Some(url) = &g.url {
        config = config.from_url(url)?;
    }
    let env_trader = std::env::var("CACHE_TRADER_ID").is_ok_and(|v| !v.trim().is_empty());
    if let Some(t) = &g.trader {
        config = config.trader_id(t.as_str());
    }
    if let Some(i) = &g.instance {
        config = config.instance_id(i.as_str()).use_instance_id(true);
    }
    config.validate()?;
    Ok(Setup { config, trader_given: env_trader || g.trader.is_some(), quiet: g.quiet })
}

fn run(cli: Cli) -> Result<ExitCode, util::CliError> {
    let setup = setup(&cli.global)?;
    match cli.command {
        Command::Inspect(a) => inspect::run(&setup, a),
        Command::Stats(a) => stats::run(&setup, a),
        Command::Verify(a) => verify::run(&setup, a),
        Command::Export(a) => transfer::export(&setup, a),
        Command::Import(a) => transfer::import(&setup, a),
        Command::Purge(a) => purge::run(&setup, a),
    }
}

/// The `tradecache` binary: parses the arguments, runs the subcommand,
/// and prints an error on stderr (exit status 2).
pub fn main() -> ExitCode {
    run(Cli::parse()).unwrap_or_else(|e| {
        eprintln!("tradecache: {}", e.0);
        ExitCode::from(2)
    })
}
