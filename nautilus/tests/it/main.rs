//! The integration tests of tradecache-nautilus: one binary, a module per
//! topic, each test against its own redis-server.

mod fixtures;
mod harness;

mod every_method;
mod faults;
mod roundtrip;
