//! The tests against real servers others wrote: the Redis fleet against `redis-server` (and a
//! Redis Cluster), and the retry layer against nginx's `limit_req`. Each test starts its own
//! server on a free loopback port and is ignored unless the binary is installed:
//! `cargo test --all-features --test servers -- --include-ignored` runs them (`.ci/run` does).

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used
)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/nginx.rs"]
mod nginx_server;
#[cfg(feature = "redis")]
#[path = "../common/redis.rs"]
mod redis_server;

#[cfg(feature = "redis")]
mod fleet;
mod nginx;
