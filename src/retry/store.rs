//! The stores behind the planner: this process's [`State`] (the default) and, with the
//! `redis` feature, a fleet's ([`FleetState`](super::fleet::FleetState)) that adds a shared
//! store to it. Two known kinds, so an enum: static dispatch, and the default costs nothing it
//! did not cost before (a request reads one atomic flag while nothing is throttled).
//!
//! The rules both apply are [`rules`](super::rules)'s; what they keep is read by
//! [`plan`](super::plan).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::{HeaderMap, Uri};
use tokio::time::Instant;

use super::hooks::Throttled;
use super::layer::Settings;
use super::plan::{Gate, Inputs, Plan};
use super::state::{Observation, Partition, State};

/// A plan, or a question to ask first. (Without `redis` only `Now`: the engine's asking
/// path is compiled in every build, and dead without a fleet.)
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum Planned {
    Now(Plan),
    /// Ask the store; bounded by its timeout, so it always ends.
    Ask(Question),
}

/// A question to a fleet's shared store, in flight.
pub(crate) type Question = Pin<Box<dyn Future<Output = Option<Remote>> + Send>>;

/// What a fleet's shared store says about a partition, on this process's clock (taken when
/// the answer came: the store's clock and ours need not agree; durations do).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Remote {
    /// The fleet's gate; `free` when probing: the store gave this request the probe.
    pub(crate) gate: Gate,
    /// The pacing slot the store gave this request; `None`: the partition is not paced in
    /// the fleet.
    pub(crate) slot: Option<Instant>,
    /// For a retry, whether the fleet's budget gave one (and took it); `None`: not asked.
    pub(crate) budget: Option<bool>,
    /// The ticket the fleet handed the request, going now with answers read for the quota.
    pub(crate) ticket: Option<u64>,
    /// Nothing is left of the fleet's allowance before the request would go: not before
    /// then (its reset).
    pub(crate) hold: Option<Instant>,
    /// For a resumed request, the slot it holds in the fleet's lanes as it stands now, when a
    /// request ranking above it moved it later.
    pub(crate) held: Option<Instant>,
}

/// The store a layer was built with.
pub(crate) enum Store {
    Local(State),
    #[cfg(feature = "redis")]
    Fleet(super::fleet::FleetState),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(state) => state.fmt(f),
            #[cfg(feature = "redis")]
            Self::Fleet(fleet) => fleet.fmt(f),
        }
    }
}

impl Store {
    /// Whether anything may be throttled: while not, requests skip planning altogether.
    #[inline]
    pub(crate) fn throttled(&self) -> bool {
        match self {
            Self::Local(state) => state.throttled(),
            #[cfg(feature = "redis")]
            Self::Fleet(fleet) => fleet.throttled(),
        }
    }

    /// The partition of a request.
    pub(crate) fn partition(&self, uri: &Uri, headers: &HeaderMap) -> Partition {
        self.local().partition(uri, headers)
    }

    /// Whether a fleet's store adds to this process's state.
    pub(crate) fn is_fleet(&self) -> bool {
        match self {
            Self::Local(_) => false,
            #[cfg(feature = "redis")]
            Self::Fleet(_) => true,
        }
    }

    /// This process's state (a fleet's store adds to it).
    pub(crate) fn local(&self) -> &State {
        match self {
            Self::Local(state) => state,
            #[cfg(feature = "redis")]
            Self::Fleet(fleet) => fleet.local(),
        }
    }

    /// A plan now, or a question to a shared store first (then [`resolve`](Self::resolve)).
    pub(crate) fn plan(
        &self,
        settings: &Settings,
        partition: impl FnOnce() -> Partition,
        inputs: &Inputs,
    ) -> Planned {
        match self {
            Self::Local(state) => Planned::Now(state.plan(settings, partition, inputs)),
            #[cfg(feature = "redis")]
            Self::Fleet(fleet) => match fleet.ask(inputs, settings, partition) {
                Ok(question) => Planned::Ask(question),
                Err(partition) => Planned::Now(fleet.local().plan_with(
                    settings,
                    partition,
                    inputs,
                    None,
                    fleet.share(),
                )),
            },
        }
    }

    /// The plan once the store answered (`None`: it did not, in time).
    pub(crate) fn resolve(
        &self,
        settings: &Settings,
        partition: &Partition,
        inputs: &Inputs,
        remote: Option<Remote>,
    ) -> Plan {
        // A fleet that did not answer in time: this process plans alone, at its share.
        let share = match (self, &remote) {
            #[cfg(feature = "redis")]
            (Self::Fleet(fleet), None) => fleet.share(),
            _ => 1,
        };
        self.local().plan_with(
            settings,
            || partition.clone(),
            inputs,
            remote.as_ref(),
            share,
        )
    }

    /// What an attempt showed; see [`State::observe`]. `partition` and `now` are only asked
    /// for when it changes shared state.
    pub(crate) fn observe(
        &self,
        seen: &Observation,
        partition: impl FnOnce() -> Partition,
        now: impl Fn() -> Instant,
    ) -> Option<Throttled> {
        match self {
            Self::Local(state) => state.observe(seen, partition, now),
            #[cfg(feature = "redis")]
            Self::Fleet(fleet) => fleet.observe(seen, partition, now),
        }
    }
}
