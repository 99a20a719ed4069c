//! The state behind the planner: one small contract ([`Backend`]) with two implementations,
//! this process's [`State`] (the default) and, with the `redis` feature, a fleet's
//! ([`FleetState`](super::fleet::FleetState)) that adds a shared store to it.
//!
//! The default costs nothing it did not cost before: the dispatch is an enum `match` the
//! compiler sees through, and a request reads one atomic flag while nothing is throttled.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{HeaderMap, StatusCode, Uri};
use tokio::time::Instant;

use super::later;
use super::layer::Settings;
use super::plan::{Gate, Inputs, Plan};
use super::state::{Partition, Signal, State};

/// What the planner reads and the outcome of an attempt writes.
pub(crate) trait Backend {
    /// Whether anything may be throttled: while not, requests skip planning altogether.
    fn throttled(&self) -> bool;

    /// The partition of a request.
    fn partition(&self, uri: &Uri, headers: &HeaderMap) -> Partition;

    /// A plan now, or a question to a shared store first (then [`Backend::resolve`]).
    fn plan(
        &self,
        settings: &Settings,
        partition: impl FnOnce() -> Partition,
        inputs: &Inputs,
    ) -> Planned;

    /// The plan once the store answered (`None`: it did not, in time).
    fn resolve(
        &self,
        settings: &Settings,
        partition: &Partition,
        inputs: &Inputs,
        remote: Option<Remote>,
    ) -> Plan;

    /// What an attempt showed; see [`State::observe`].
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &self,
        signal: Signal,
        partition: impl FnOnce() -> Partition,
        now: impl Fn() -> Instant,
        slot: Option<u32>,
        probe: bool,
        follow: Option<f64>,
    );
}

/// A plan, or a question to ask first.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Planned {
    Now(Plan),
    /// Ask the store; bounded by its timeout, so it always ends.
    Ask(Question),
}

/// A question to a fleet's shared store, in flight.
pub(crate) type Question = Pin<Box<dyn Future<Output = Option<Remote>> + Send>>;

/// What a fleet's shared store says about a partition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Remote {
    pub(crate) gate: RemoteGate,
    /// The pacing slot the store gave this request, from when it answered; `None`: the
    /// partition is not paced in the fleet.
    pub(crate) slot: Option<Duration>,
    /// For a retry, whether the fleet's budget gave one (and took it); `None`: not asked.
    pub(crate) budget: Option<bool>,
}

/// The fleet's gate of a partition, relative to when the store answered (the store's clock
/// and ours need not agree; durations do).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum RemoteGate {
    Open,
    Closed {
        reopen_in: Duration,
        asked_in: Duration,
        status: StatusCode,
    },
    /// Past its reopening: `free` when the store gave this request the probe.
    Probing {
        asked_in: Duration,
        status: StatusCode,
        free: bool,
    },
}

impl RemoteGate {
    pub(crate) fn at(self, now: Instant) -> Gate {
        match self {
            Self::Open => Gate::Open,
            Self::Closed {
                reopen_in,
                asked_in,
                status,
            } => Gate::Closed {
                reopen: later(now, reopen_in),
                asked: later(now, asked_in),
                status,
            },
            Self::Probing {
                asked_in,
                status,
                free,
            } => Gate::Probing {
                asked: later(now, asked_in),
                status,
                free,
            },
        }
    }
}

impl Backend for State {
    fn throttled(&self) -> bool {
        State::throttled(self)
    }

    fn partition(&self, uri: &Uri, headers: &HeaderMap) -> Partition {
        State::partition(self, uri, headers)
    }

    fn plan(
        &self,
        settings: &Settings,
        partition: impl FnOnce() -> Partition,
        inputs: &Inputs,
    ) -> Planned {
        Planned::Now(State::plan(self, settings, partition, inputs))
    }

    fn resolve(
        &self,
        settings: &Settings,
        partition: &Partition,
        inputs: &Inputs,
        remote: Option<Remote>,
    ) -> Plan {
        self.plan_with(settings, || partition.clone(), inputs, remote.as_ref())
    }

    fn observe(
        &self,
        signal: Signal,
        partition: impl FnOnce() -> Partition,
        now: impl Fn() -> Instant,
        slot: Option<u32>,
        probe: bool,
        follow: Option<f64>,
    ) {
        State::observe(self, signal, partition, now, slot, probe, follow);
    }
}

/// The backend a layer was built with.
pub(crate) enum States {
    Local(State),
    #[cfg(feature = "redis")]
    Fleet(super::fleet::FleetState),
}

impl fmt::Debug for States {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(state) => state.fmt(f),
            #[cfg(feature = "redis")]
            Self::Fleet(fleet) => fleet.fmt(f),
        }
    }
}

/// Each method dispatches by a `match` on the variant.
macro_rules! dispatch {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            Self::Local($backend) => $call,
            #[cfg(feature = "redis")]
            Self::Fleet($backend) => $call,
        }
    };
}

impl Backend for States {
    #[inline]
    fn throttled(&self) -> bool {
        dispatch!(self, backend => backend.throttled())
    }

    fn partition(&self, uri: &Uri, headers: &HeaderMap) -> Partition {
        dispatch!(self, backend => Backend::partition(backend, uri, headers))
    }

    fn plan(
        &self,
        settings: &Settings,
        partition: impl FnOnce() -> Partition,
        inputs: &Inputs,
    ) -> Planned {
        dispatch!(self, backend => Backend::plan(backend, settings, partition, inputs))
    }

    fn resolve(
        &self,
        settings: &Settings,
        partition: &Partition,
        inputs: &Inputs,
        remote: Option<Remote>,
    ) -> Plan {
        dispatch!(self, backend => backend.resolve(settings, partition, inputs, remote))
    }

    fn observe(
        &self,
        signal: Signal,
        partition: impl FnOnce() -> Partition,
        now: impl Fn() -> Instant,
        slot: Option<u32>,
        probe: bool,
        follow: Option<f64>,
    ) {
        dispatch!(self, backend => Backend::observe(backend, signal, partition, now, slot, probe, follow));
    }
}
