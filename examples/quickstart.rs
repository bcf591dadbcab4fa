//! The smallest useful program: open, write a position, wait until it is in
//! Redis, load it back. Needs a Redis at `REDIS_URL` (default
//! 127.0.0.1:6379); `make redis-up` starts a private one.

use std::time::Duration;

use tradecache::model::Position;
use tradecache::{Cache, Config};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = Cache::open(Config::from_env()?.trader_id("QUICKSTART-001"))?;
    let seq = cache.put(&Position::example("BTCUSDT-PERP.BINANCE-001"))?;
    cache.wait(seq, Duration::from_secs(1))?;
    let (positions, _) = cache.load_all::<Position>()?;
    println!("{positions:#?}");
    cache.close(Duration::from_secs(5))?;
    Ok(())
}
