//! The integration tests, one binary: the layers in memory and over loopback HTTP against the
//! emulator, one module per subject. Tests that need their own process are elsewhere:
//! `allocations` and `soak` (a counting allocator), `servers` (a real redis-server and nginx).

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used
)]

#[path = "../common/mod.rs"]
mod common;

mod classify;
mod emulator;
mod examples;
mod faults;
mod gates;
#[cfg(feature = "metrics")]
mod metrics_recorded;
#[cfg(feature = "reqwest")]
mod reqwest_client;
mod retry;
#[cfg(feature = "tracing")]
mod secrets;
mod stack;
#[cfg(feature = "tracing")]
mod tracing_events;
