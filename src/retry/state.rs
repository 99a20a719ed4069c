//! What every clone of a retry layer shares: the gates and pacers of its partitions, and the
//! retry budget.
//!
//! A **partition** is an origin (as [`Origin`] normalises it) and a credential: a keyed hash
//! of the `X-INFOPLUG-API-KEY` and `Authorization` values the request carries when it reaches
//! the retry layer (none, when the auth layer below adds the configured key). One tenant's
//! 429 does not hold another tenant's requests. The hash keys are random per layer, and the
//! key itself is never kept.
//!
//! **Cost while nothing is throttled**: a request reads one atomic flag before it is sent and
//! adds one to an atomic counter when its answer shows a healthy server. No lock, no clock,
//! no map. Only once a partition holds a gate or a pacer do requests take the lock.
//!
//! The rules are [`plan`](super::plan)'s and [`rules`](super::rules)'s; this module keeps
//! the state they read and applies what a plan took, under the table's lock (the budget's
//! window has a lock of its own, taken inside it and never the other way round). What
//! changed is reported to metrics once the lock is released.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderMap, StatusCode, Uri};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::StopReason;
use super::budget::Budget;
use super::hints::Reading;
use super::hooks::Throttled;
use super::later;
use super::layer::{Breaker, Quota, Settings};
use super::pacer::{Pacer, Throttle};
use super::plan::{Gate, Inputs, Pace, Plan, Snapshot, Step, plan};
use super::rules::{self, Allowance, Effect, Shut};
use super::store::Remote;
use super::telemetry::Changed;
use crate::origin::Site;

/// Which gate and pacer a request is held by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Partition {
    /// `None` for requests without an `http(s)` authority: they share one partition.
    origin: Option<Site>,
    credential: u128,
    /// The quota the server said the request's endpoint counts against (see
    /// [`hints::scope`](super::hints::scope)); 0: none said (the origin's, which every
    /// throttle of the origin and credential holds).
    scope: u64,
}

impl Partition {
    /// The partition's name in a fleet's shared store: its origin and the credential hash in
    /// hex (the hash only: a key never leaves the process), and the quota, when the server
    /// named one.
    #[cfg(feature = "redis")]
    pub(crate) fn fleet_name(&self) -> String {
        match self.scope {
            0 => self.fleet_base(),
            scope => format!("{}|{scope:016x}", self.fleet_base()),
        }
    }

    /// Whether the partition is a quota an answer named (not the origin's and credential's).
    #[cfg(feature = "redis")]
    pub(crate) fn is_scoped(&self) -> bool {
        self.scope != 0
    }

    /// The name of the origin and credential in a fleet's shared store, whatever the quota.
    #[cfg(feature = "redis")]
    pub(crate) fn fleet_base(&self) -> String {
        let origin = self.origin.as_ref().map_or("-".into(), ToString::to_string);
        format!("{origin}|{:032x}", self.credential)
    }

    /// How metrics name the partition: its origin and the first 32 bits of the keyed
    /// credential hash (random per layer, so it names nothing outside this process), and of
    /// the quota's number, when the server named one.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(&self) -> String {
        let short = (self.credential >> 96) as u32;
        let origin = self.origin.as_ref().map_or("-".into(), ToString::to_string);
        match self.scope {
            0 => format!("{origin}#{short:08x}"),
            scope => format!("{origin}#{short:08x}/{:08x}", (scope >> 32) as u32),
        }
    }

    /// The same origin and credential, counted against the quota `scope`.
    pub(crate) fn scoped(&self, scope: u64) -> Self {
        Self {
            scope,
            ..self.clone()
        }
    }
}

/// What an attempt showed, for the stores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observation {
    pub(crate) signal: Signal,
    /// The schedule of the pacing slot the attempt went at, if it went at one.
    pub(crate) slot: Option<u32>,
    /// Whether it went as the gate's probe.
    pub(crate) probe: bool,
    /// For a healthy answer: what the server says is left of its quota.
    pub(crate) reading: Option<Reading>,
    /// The ticket the attempt took as it started (0 when answers are not read for the quota):
    /// a reading is of the answer to this request.
    pub(crate) ticket: u64,
    /// A failure the server gave no reason or wait for (a 5xx without a hint, a 503 without
    /// `Retry-After`, a transport error, a timeout), and the status it counts as (503 for
    /// one without an answer): what the circuit breaker counts.
    pub(crate) unhinted: Option<StatusCode>,
}

/// What an attempt's outcome tells the shared state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Signal {
    /// A 2xx, 3xx, or 4xx other than 429: the server is healthy and admitted the request.
    Healthy,
    /// A 429 or 503 the policy would retry: the server asked clients to slow down.
    Throttled {
        status: StatusCode,
        hint: Option<Duration>,
        /// A quota the server stated (`RateLimit-Policy`), in requests a second.
        quota: Option<f64>,
    },
    /// Another answer the server's rate limiter let through (a 5xx not retried as a throttle):
    /// it counts towards what the server admits, not towards its health.
    Answered,
    /// A 429 the policy would not retry (its body vetoed it): neither health nor admission.
    Refused,
    /// No answer: a transport error or a timeout.
    Failed,
}

#[derive(Debug)]
pub(crate) struct State {
    gates: bool,
    pacing: bool,
    max_cooldown: Duration,
    /// A quota the user configured: every partition is paced from its first request.
    quota: Option<Quota>,
    breaker: Option<Breaker>,
    /// The most partitions the table keeps: past it, the least recently throttled go.
    max_partitions: usize,
    /// Whether any partition holds a gate, a pacer or a streak of un-hinted failures: the one
    /// thing the common case reads.
    throttled: AtomicBool,
    /// Healthy answers, ever: the budget's deposits and the first pacing measurement.
    healthy: AtomicU64,
    /// Tickets handed out to requests as they start, while answers are read for what is left
    /// of the quota (see [`Allowance`]).
    started: AtomicU64,
    /// Numbers handed out to requests as they are first planned (see [`State::lane`]).
    lanes: AtomicU64,
    /// Whether any partition was ever told a limit on requests in flight: until then a
    /// request that goes looks for no place (and takes no lock to look).
    limits_in_flight: AtomicBool,
    /// Whether endpoints are told apart by the quota their answers name (the draft's fields
    /// are read, and no quota is configured: that one is the key's, whatever the endpoint).
    scoping: bool,
    /// The quota each path's answers last named, by origin, credential and path (see
    /// [`route`]); at most [`MAX_ROUTES`].
    routes: Mutex<HashMap<u64, u64>>,
    /// Other answers the rate limiter let through (5xx): with `healthy`, what the server
    /// admitted, for the pacing's measurement.
    unhealthy: AtomicU64,
    /// `healthy` and `unhealthy` when the current quiet spell began, and (in nanoseconds
    /// after `epoch`, 0 until known) when its first healthy answer came.
    quiet_base: AtomicU64,
    quiet_base_unhealthy: AtomicU64,
    quiet_since: AtomicU64,
    epoch: Instant,
    budget: Option<Budget>,
    keys: Keys,
    partitions: Mutex<Table>,
}

/// How credentials are hashed into partitions.
#[derive(Debug)]
enum Keys {
    /// Random per layer: nothing outside this process can tell two credentials apart.
    Random([std::collections::hash_map::RandomState; 2]),
    /// SHA-1 of a salt and the credential: the same partition in every process of a fleet
    /// with the same salt (see [`fleet`](super::fleet)).
    #[cfg(feature = "redis")]
    Stable(Box<[u8]>),
}

/// The partitions that hold something back.
#[derive(Debug, Default)]
struct Table {
    held: HashMap<Partition, Held>,
    /// When every partition was last looked at for what has expired.
    swept: Option<Instant>,
}

/// The most paths whose quota is remembered.
const MAX_ROUTES: usize = 4096;

/// A path of an (unscoped) partition, as the routes know it.
fn route(partition: &Partition, path: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    partition.hash(&mut hasher);
    path.hash(&mut hasher);
    hasher.finish()
}

/// For a path whose last segment names one resource (an id: it has a digit in it), the path
/// of its siblings (`/v1/users` of `/v1/users/2`): they count against the same quota. `None`
/// for other paths (`/v1/search` is not `/v1/profile`).
fn parent(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let (parent, last) = trimmed.rsplit_once('/')?;
    (!parent.is_empty() && last.bytes().any(|b| b.is_ascii_digit())).then_some(parent)
}

/// How often all partitions are looked at, besides the one a request touches.
const SWEEP: Duration = Duration::from_secs(1);

/// What holds one partition back.
#[derive(Debug, Default)]
struct Held {
    gate: Option<Closed>,
    pacer: Option<Pacer>,
    /// What the server said is left of its quota, counted down since.
    allowance: Option<Allowance>,
    /// The most requests in flight the server said it allows.
    in_flight: Option<InFlight>,
    /// Un-hinted failures in a row, and when the last came.
    failures: u32,
    failed_at: Option<Instant>,
    /// When the partition was last throttled (or entered): the table forgets the least
    /// recent first once it is full.
    touched: Option<Instant>,
}

/// A limit on the requests in flight, and the places under it.
#[derive(Debug)]
struct InFlight {
    limit: u32,
    /// One permit per place: a request holds one from its sending to its answer.
    places: Arc<Semaphore>,
    /// Kept until then, unless an answer says it again.
    until: Instant,
}

/// How long an in-flight limit is kept after the last answer that stated it.
const IN_FLIGHT_KEPT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Closed {
    shut: Shut,
    /// Until when the probe that is out holds its turn.
    probe: Option<Instant>,
}

impl State {
    pub(crate) fn new(settings: &Settings, gates: bool, budget: Option<Budget>) -> Self {
        Self {
            gates,
            pacing: settings.pacing,
            max_cooldown: settings.max_cooldown,
            quota: settings.quota,
            breaker: settings.breaker,
            max_partitions: settings.max_partitions,
            // With a configured quota every request is planned: it takes a slot.
            throttled: AtomicBool::new(settings.quota.is_some()),
            healthy: AtomicU64::new(0),
            started: AtomicU64::new(0),
            lanes: AtomicU64::new(1),
            limits_in_flight: AtomicBool::new(false),
            scoping: settings.hint_fields.rate_limit && settings.quota.is_none(),
            routes: Mutex::default(),
            unhealthy: AtomicU64::new(0),
            quiet_base: AtomicU64::new(0),
            quiet_base_unhealthy: AtomicU64::new(0),
            quiet_since: AtomicU64::new(0),
            epoch: Instant::now(),
            budget,
            keys: Keys::Random(Default::default()),
            partitions: Mutex::default(),
        }
    }

    /// A state whose partitions are named the same by every process with this `salt`.
    #[cfg(feature = "redis")]
    pub(crate) fn with_stable_partitions(mut self, salt: &[u8]) -> Self {
        self.keys = Keys::Stable(salt.into());
        self
    }

    /// Whether a throttle with a hint shuts a gate.
    #[cfg(feature = "redis")]
    pub(crate) fn gates(&self) -> bool {
        self.gates
    }

    /// Whether a quota is configured (every partition's pacing is it).
    #[cfg(feature = "redis")]
    pub(crate) fn configured(&self) -> bool {
        self.quota.is_some()
    }

    /// Whether a 429 starts pacing.
    #[cfg(feature = "redis")]
    pub(crate) fn pacing(&self) -> bool {
        self.pacing
    }

    /// The longest a gate stays shut without a probe.
    #[cfg(feature = "redis")]
    pub(crate) fn max_cooldown(&self) -> Duration {
        self.max_cooldown
    }

    /// The partition's pacing as this process knows it: its rate at `now`, whether the
    /// server stated it, and when it ends; `None` while the rate is only searched.
    #[cfg(feature = "redis")]
    pub(crate) fn pacing_of(
        &self,
        partition: &Partition,
        now: Instant,
    ) -> Option<(f64, bool, Instant)> {
        let table = self.lock();
        let Some(pacer) = table.held.get(partition).and_then(|h| h.pacer.as_ref()) else {
            // A configured quota is the fleet's from the first request, for as long as the
            // pacer about to be made for it would last.
            return self
                .quota
                .map(|q| (q.rate, true, later(now, super::pacer::IDLE)));
        };
        (pacer.pacing() && (!pacer.searched() || pacer.is_configured()))
            .then(|| (pacer.rate_at(now), pacer.stated(), pacer.ends()))
    }

    /// Whether anything is throttled: one atomic load.
    pub(crate) fn throttled(&self) -> bool {
        self.throttled.load(Ordering::Acquire)
    }

    /// The partition of a request.
    pub(crate) fn partition(&self, uri: &Uri, headers: &HeaderMap) -> Partition {
        static CREDENTIALS: [http::HeaderName; 2] =
            [crate::X_INFOPLUG_API_KEY, http::header::AUTHORIZATION];
        let credentials = || {
            CREDENTIALS
                .iter()
                .flat_map(|name| headers.get_all(name).iter().map(move |v| (name, v)))
        };
        let credential = match &self.keys {
            Keys::Random(keys) => {
                let [a, b] = keys.each_ref().map(|keys| {
                    let mut hasher = keys.build_hasher();
                    for (name, value) in credentials() {
                        name.as_str().hash(&mut hasher);
                        value.as_bytes().hash(&mut hasher);
                    }
                    hasher.finish()
                });
                u128::from(a) << 64 | u128::from(b)
            }
            #[cfg(feature = "redis")]
            Keys::Stable(salt) => {
                let mut sha = sha1_smol::Sha1::new();
                sha.update(salt);
                for (name, value) in credentials() {
                    // Lengths first, so no two lists of fields hash alike.
                    for part in [name.as_str().as_bytes(), value.as_bytes()] {
                        sha.update(&(part.len() as u64).to_be_bytes());
                        sha.update(part);
                    }
                }
                let digest = sha.digest().bytes();
                let mut first = [0; 16];
                first.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
                u128::from_be_bytes(first)
            }
        };
        let mut partition = Partition {
            origin: uri.authority().and_then(|_| Site::of(uri)),
            credential,
            scope: 0,
        };
        if self.scoping {
            // The path's own quota, else its siblings' (`/v1/users/2` counts as `/v1/users/1`
            // did), else none known yet.
            let routes = self.routes();
            partition.scope = [Some(uri.path()), parent(uri.path())]
                .into_iter()
                .flatten()
                .find_map(|path| routes.get(&route(&partition, path)).copied())
                .unwrap_or(0);
        }
        partition
    }

    /// Whether endpoints are told apart by the quota their answers name.
    pub(crate) fn scoping(&self) -> bool {
        self.scoping
    }

    /// Requests to `path` count against `partition`'s quota (its scope), as an answer to
    /// one said.
    pub(crate) fn learn(&self, partition: &Partition, path: &str) {
        let origin = partition.scoped(0);
        let mut routes = self.routes();
        for path in [Some(path), parent(path)].into_iter().flatten() {
            let route = route(&origin, path);
            if routes.len() >= MAX_ROUTES && !routes.contains_key(&route) {
                // Full: start again; each path learns its quota again from its next answer.
                routes.clear();
            }
            routes.insert(route, partition.scope);
        }
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<u64, u64>> {
        // Plain data, updated in single steps.
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Plans under the lock, and applies what the plan took.
    /// `partition` is only asked for when some partition holds something.
    pub(crate) fn plan(
        &self,
        settings: &Settings,
        partition: impl FnOnce() -> Partition,
        inputs: &Inputs,
    ) -> Plan {
        self.plan_with(settings, partition, inputs, None, 1)
    }

    /// [`plan`](Self::plan), with what the fleet's shared store said (when it answered): its
    /// gate counts as well as this process's (the stricter wins), its pacing slot (already
    /// taken there) replaces the local pacer's, and its budget answer the local budget's.
    /// Without an answer, a rate that is the fleet's (stated or configured) is taken at one
    /// `share`th of it: the processes of the fleet each plan alone.
    pub(crate) fn plan_with(
        &self,
        settings: &Settings,
        partition: impl FnOnce() -> Partition,
        inputs: &Inputs,
        remote: Option<&Remote>,
        share: u32,
    ) -> Plan {
        let now = inputs.now;
        let mut changed = Changed::default();
        let mut table = self.lock();
        let configured = self.quota;
        let partition =
            (remote.is_some() || configured.is_some() || !table.held.is_empty()).then(partition);
        if let Some(partition) = &partition {
            self.tidy(&mut table, partition, now, &mut changed);
            if let Some(quota) = configured
                && table.held.get(partition).is_none_or(|h| h.pacer.is_none())
            {
                let pacer = Pacer::configured(quota.rate, quota.burst, now, self.max_cooldown);
                let held = table.held.entry(partition.clone()).or_default();
                held.pacer = Some(pacer);
                held.touched = Some(now);
                self.bound(&mut table, &mut changed);
            }
        }
        let held = partition.as_ref().and_then(|p| table.held.get_mut(p));
        let local_gate = held
            .as_ref()
            .and_then(|h| h.gate)
            .map_or(Gate::Open, |gate| gate.at(now));
        let retry = matches!(inputs.step, Step::Retry { .. });
        // A fleet's allowance is kept in its store, which says only whether it holds the
        // request: until the reset, when nothing is left.
        let allowance = match remote {
            Some(remote) => remote.hold.map(Allowance::spent_until),
            None => held.as_ref().and_then(|h| h.allowance),
        };
        let snapshot = Snapshot {
            allowance,
            gate: remote.map_or(local_gate, |r| local_gate.stricter(r.gate)),
            pace: {
                // A search waiting for its second refusal paces only the retries of refused
                // requests: they are the crowd it may have to pace.
                let refused = matches!(inputs.step, Step::Retry { throttle: true, .. });
                // What the server says is left replaces a rate learned from its refusals (a
                // configured quota still holds).
                let local = held
                    .as_ref()
                    .and_then(|h| h.pacer.as_ref())
                    .filter(|p| p.pacing() || refused)
                    .filter(|p| allowance.is_none_or(|a| a.contradicted) || p.is_configured());
                match remote {
                    // The fleet's slot, already taken there, of this process's schedule; or
                    // where a resumed request's slot is now, in the fleet's lanes.
                    Some(remote) => remote.slot.or(remote.held).map(|next| Pace {
                        next,
                        generation: local.map_or(0, Pacer::generation),
                        held: remote.held,
                    }),
                    None => local.map(|pacer| Pace {
                        next: inputs
                            .lane
                            .map_or_else(|| pacer.next(), |(_, rank)| pacer.next_for(rank, now)),
                        generation: pacer.generation(),
                        held: inputs
                            .lane
                            .filter(|_| inputs.step == Step::Resume)
                            .and_then(|(lane, _)| pacer.held(lane)),
                    }),
                }
            },
            // Only a retry asks the budget: a fresh or resumed request neither spends from it
            // nor marks its window.
            budget: !retry
                || match remote.and_then(|r| r.budget) {
                    Some(fleet) => fleet,
                    None => self
                        .budget
                        .as_ref()
                        .is_none_or(|b| b.available(self.healthy.load(Ordering::Relaxed))),
                },
        };
        let mut plan = plan(settings, inputs, &snapshot);
        // What the store took (a slot, a retry) is not taken here again.
        let (slot_here, spend_here) = match remote {
            Some(remote) => (false, remote.budget.is_none()),
            None => (true, true),
        };
        match &mut plan {
            Plan::Go {
                at,
                slot,
                probe,
                spend,
            } => {
                if let Some(held) = held {
                    if let Some(allowance) = &mut held.allowance
                        && *at < allowance.until
                    {
                        allowance.left = allowance.left.saturating_sub(1);
                    }
                    if slot_here && let Some(pacer) = &mut held.pacer {
                        // A fleet-wide rate (stated or configured) planned here alone is
                        // this process's share of it.
                        let share = if pacer.stated() || pacer.is_configured() {
                            share
                        } else {
                            1
                        };
                        match inputs.lane {
                            // One that waits holds its slot in the lanes, which decide it.
                            Some(lane) if slot.is_some() && *at > now => {
                                *at = pacer.take_lane(*at, share, lane, now);
                            }
                            _ if slot.is_some() => pacer.take_shared(*at, share),
                            // A request going now holds no slot any more.
                            Some((lane, _)) if *at <= now => pacer.went(lane),
                            _ => {}
                        }
                        if slot.is_some() {
                            changed.paced = Some(pacer.rate_at(*at));
                        }
                    }
                    if *probe && let Some(gate) = &mut held.gate {
                        gate.probe = Some(later(now, self.max_cooldown));
                        changed.probe = true;
                    }
                }
                if spend_here
                    && *spend
                    && let Some(budget) = &self.budget
                {
                    budget.spend();
                }
            }
            Plan::Stop(stop) => {
                changed.budget_refused = stop.reason == StopReason::BudgetExhausted;
                // A request that stops holds no slot any more.
                if let Some((lane, _)) = inputs.lane
                    && let Some(pacer) = held.and_then(|h| h.pacer.as_mut())
                {
                    pacer.went(lane);
                }
            }
        }
        drop(table);
        changed.report(partition.as_ref());
        plan
    }

    /// Records what an attempt showed; what a throttle did to the partition, if it shut its
    /// gate or set its pacing. `partition` and `now` are only asked for when the outcome
    /// changes shared state.
    pub(crate) fn observe(
        &self,
        seen: &Observation,
        partition: impl FnOnce() -> Partition,
        now: impl Fn() -> Instant,
    ) -> Option<Throttled> {
        let shared = match seen.signal {
            Signal::Healthy => {
                let before = self.healthy.fetch_add(1, Ordering::Relaxed);
                if before == self.quiet_base.load(Ordering::Relaxed) {
                    // The first of a quiet spell: when the pacer's first measurement begins.
                    self.quiet_since
                        .store(self.since_epoch(now()).max(1), Ordering::Relaxed);
                }
                self.throttled() || seen.reading.is_some()
            }
            Signal::Throttled { status, hint, .. } => {
                Effect::of(self.gates, self.pacing, status, hint).any()
            }
            Signal::Answered => {
                self.unhealthy.fetch_add(1, Ordering::Relaxed);
                self.throttled()
            }
            Signal::Refused | Signal::Failed => false,
        };
        // The breaker counts un-hinted failures; an answer that ends a streak comes here
        // anyway (a streak keeps the partition in the table, so `throttled` is set).
        let counts = seen.unhinted.is_some() && self.breaker.is_some();
        if !shared && !counts && !seen.probe {
            return None;
        }
        let partition = partition();
        let now = now();
        let mut changed = Changed::default();
        let mut throttled = None;
        let mut table = self.lock();
        match seen.signal {
            Signal::Throttled {
                status,
                hint,
                quota,
            } => {
                let said = (status, hint, quota);
                throttled = self.throttle(&mut table, &partition, seen, said, now, &mut changed);
            }
            Signal::Healthy | Signal::Answered | Signal::Refused | Signal::Failed => {
                if seen.probe
                    && let Some(held) = table.held.get_mut(&partition)
                {
                    match seen.signal {
                        // No answer: another request may probe.
                        Signal::Failed => {
                            if let Some(gate) = &mut held.gate {
                                gate.probe = None;
                            }
                        }
                        // An answer without a hint: the gate reopens.
                        _ => held.gate = None,
                    }
                }
                if let Some(reading) = seen.reading {
                    let started = self.started();
                    let fresh = Allowance::read(reading, seen.ticket, started, now);
                    let held = table.held.entry(partition.clone()).or_default();
                    // Merged into the allowance as it stands now: one whose reset passed
                    // untidied would otherwise win with its past reset.
                    held.allowance = Some(match held.allowance.and_then(|a| a.at(now, started)) {
                        Some(allowance) => allowance.merge(fresh),
                        None => fresh,
                    });
                    held.touched = Some(now);
                    self.throttled.store(true, Ordering::Release);
                }
                if matches!(seen.signal, Signal::Healthy | Signal::Answered)
                    && let Some(pacer) = table
                        .held
                        .get_mut(&partition)
                        .and_then(|held| held.pacer.as_mut())
                {
                    pacer.admitted();
                }
            }
        }
        if let Some(breaker) = self.breaker
            && let Some(tripped) = self.count(&mut table, &partition, seen, breaker, now)
        {
            changed.closed = Some(tripped.status);
            throttled = Some(tripped);
        }
        self.tidy(&mut table, &partition, now, &mut changed);
        self.bound(&mut table, &mut changed);
        drop(table);
        changed.report(Some(&partition));
        throttled
    }

    /// What a throttle does to `partition` (under the table's lock): its gate, its pacing;
    /// what it did, if anything.
    fn throttle(
        &self,
        table: &mut Table,
        partition: &Partition,
        seen: &Observation,
        (status, hint, quota): (StatusCode, Option<Duration>, Option<f64>),
        now: Instant,
        changed: &mut Changed,
    ) -> Option<Throttled> {
        let mut throttled = None;
        let effect = Effect::of(self.gates, self.pacing, status, hint);
        let hint = hint.unwrap_or_default();
        if effect.any() {
            self.throttled.store(true, Ordering::Release);
        }
        let quiet = self.quiet();
        let held = table.held.entry(partition.clone()).or_default();
        held.touched = Some(now);
        if let Some(allowance) = &mut held.allowance {
            allowance.refused(seen.ticket);
        }
        // Refused although this client kept to what the server said was left: the
        // quota is not its alone, and the rate it states is not this client's to take.
        let quota = quota.filter(|_| !held.allowance.is_some_and(|a| a.contradicted));
        if effect.close {
            let fresh = Shut::after(now, hint, status, self.max_cooldown);
            held.gate = Some(match held.gate {
                // The probe's answer is the server's latest word.
                Some(gate) if !seen.probe => Closed {
                    shut: gate.shut.merge(fresh),
                    probe: gate.probe,
                },
                _ => Closed {
                    shut: fresh,
                    probe: None,
                },
            });
            changed.closed = Some(status);
        } else if seen.probe {
            held.gate = None;
        }
        if effect.pace {
            // Capped as the gate is: no pacing holds a partition past max_cooldown.
            let throttle = Throttle {
                now,
                reopen: later(now, rules::held_for(hint, self.max_cooldown)),
                quota,
            };
            match &mut held.pacer {
                Some(pacer) => pacer.throttled(throttle, seen.slot),
                None => {
                    let (admitted, since) = quiet;
                    held.pacer = Some(Pacer::start(throttle, admitted, since, self.max_cooldown));
                }
            }
            changed.paced = held.pacer.as_ref().map(|pacer| pacer.rate_at(now));
        }
        if effect.any() {
            throttled = Some(Throttled {
                status,
                tripped: false,
                gated_for: held
                    .gate
                    .filter(|_| effect.close)
                    .map(|gate| gate.shut.reopen.saturating_duration_since(now)),
                paced: held.pacer.as_ref().filter(|_| effect.pace).map(|pacer| {
                    (
                        pacer.rate_at(now),
                        pacer.ends().saturating_duration_since(now),
                    )
                }),
            });
        }
        throttled
    }

    /// Keeps the table within `max_partitions`: once past it, the least recently throttled
    /// tenth go at once (one sort for many insertions). A partition forgotten holds nothing
    /// back: its waiting requests plan again when they wake, and go.
    fn bound(&self, table: &mut Table, changed: &mut Changed) {
        let len = table.held.len();
        if len <= self.max_partitions {
            return;
        }
        let keep = self.max_partitions - self.max_partitions / 10;
        let mut by_age: Vec<(Option<Instant>, Partition)> = table
            .held
            .iter()
            .map(|(partition, held)| (held.touched, partition.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(touched, _)| *touched);
        for (_, partition) in by_age.into_iter().take(len - keep) {
            if table
                .held
                .remove(&partition)
                .is_some_and(|h| h.pacer.is_some())
            {
                changed.unpaced.push(partition);
            }
        }
    }

    /// The circuit breaker's count for what an attempt showed: a streak of un-hinted failures
    /// grows (and trips the breaker once long enough, or when a gate's probe meets one), any
    /// other answer ends it. What tripped, if it did.
    fn count(
        &self,
        table: &mut Table,
        partition: &Partition,
        seen: &Observation,
        breaker: Breaker,
        now: Instant,
    ) -> Option<Throttled> {
        let Some(status) = seen.unhinted else {
            // The transport's refusal to send says nothing of the server.
            if seen.signal != Signal::Failed
                && let Some(held) = table.held.get_mut(partition)
            {
                held.failures = 0;
            }
            return None;
        };
        self.throttled.store(true, Ordering::Release);
        let held = table.held.entry(partition.clone()).or_default();
        held.touched = Some(now);
        let (streak, long) = rules::failed(held.failures, held.failed_at, now, breaker.failures);
        held.failures = streak;
        held.failed_at = Some(now);
        // Tripped once the streak is long enough and no gate holds the partition, or at once
        // by a gate's probe that met such a failure: the server's latest word.
        if !(seen.probe || (long && held.gate.is_none())) {
            return None;
        }
        let shut = Shut::tripped(now, breaker.probe_every, status, self.max_cooldown);
        held.gate = Some(Closed { shut, probe: None });
        Some(Throttled {
            status,
            tripped: true,
            gated_for: Some(shut.reopen.saturating_duration_since(now)),
            paced: None,
        })
    }

    /// Answers the server admitted since the quiet spell began, and when the first healthy one
    /// came.
    fn quiet(&self) -> (u64, Option<Instant>) {
        let since_base = |count: &AtomicU64, base: &AtomicU64| {
            count
                .load(Ordering::Relaxed)
                .saturating_sub(base.load(Ordering::Relaxed))
        };
        let admitted = since_base(&self.healthy, &self.quiet_base)
            + since_base(&self.unhealthy, &self.quiet_base_unhealthy);
        let since = match self.quiet_since.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(later(self.epoch, Duration::from_nanos(nanos))),
        };
        (admitted, since)
    }

    /// Drops what no longer holds anything back: in `partition` always, in every partition
    /// once per [`SWEEP`] (so that many tenants do not make every request walk them all).
    /// Once nothing is held, the common case is lock free again and a new quiet spell begins.
    fn tidy(&self, table: &mut Table, partition: &Partition, now: Instant, changed: &mut Changed) {
        if table.swept.is_none_or(|at| now >= later(at, SWEEP)) {
            table.swept = Some(now);
            let started = self.started();
            table
                .held
                .retain(|partition, held| held.expire(partition, now, started, changed));
        } else if let Some(held) = table.held.get_mut(partition)
            && !held.expire(partition, now, self.started(), changed)
        {
            table.held.remove(partition);
        }
        if table.held.is_empty() && self.throttled() && self.quota.is_none() {
            self.throttled.store(false, Ordering::Release);
            self.quiet_base
                .store(self.healthy.load(Ordering::Relaxed), Ordering::Relaxed);
            self.quiet_base_unhealthy
                .store(self.unhealthy.load(Ordering::Relaxed), Ordering::Relaxed);
            self.quiet_since.store(0, Ordering::Relaxed);
        }
    }

    /// The server says `partition` allows at most `limit` requests in flight: from now on
    /// (for [`IN_FLIGHT_KEPT`] after the last answer that says so), a request takes one of
    /// that many places to be sent ([`places`](Self::places)).
    pub(crate) fn limit_in_flight(&self, partition: &Partition, limit: u32, now: Instant) {
        let mut table = self.lock();
        let held = table.held.entry(partition.clone()).or_default();
        held.touched = Some(now);
        let until = later(now, IN_FLIGHT_KEPT);
        match &mut held.in_flight {
            Some(known) => {
                // Places in use when the limit falls stay in use: it binds as they free.
                if limit > known.limit {
                    known.places.add_permits((limit - known.limit) as usize);
                } else {
                    known.places.forget_permits((known.limit - limit) as usize);
                }
                known.limit = limit;
                known.until = until;
            }
            None => {
                held.in_flight = Some(InFlight {
                    limit,
                    places: Arc::new(Semaphore::new(limit as usize)),
                    until,
                });
            }
        }
        self.throttled.store(true, Ordering::Release);
        self.limits_in_flight.store(true, Ordering::Release);
        self.bound(&mut table, &mut Changed::default());
    }

    /// The places under `partition`'s limit on requests in flight, when it has one.
    pub(crate) fn places(&self, partition: &Partition) -> Option<Arc<Semaphore>> {
        if !self.limits_in_flight.load(Ordering::Acquire) {
            return None;
        }
        let table = self.lock();
        let in_flight = table.held.get(partition)?.in_flight.as_ref()?;
        Some(Arc::clone(&in_flight.places))
    }

    /// A ticket for a request about to start (see [`Allowance`]).
    pub(crate) fn start(&self) -> u64 {
        self.started.fetch_add(1, Ordering::Relaxed)
    }

    /// A number for a request planned for the first time: how the lanes of a paced partition
    /// know it (see [`Lanes`](super::rules::Lanes)).
    pub(crate) fn lane(&self) -> u64 {
        self.lanes.fetch_add(1, Ordering::Relaxed)
    }

    /// Tickets handed out so far.
    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Plain data, updated in single steps: a panic elsewhere cannot leave it half-done.
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Held {
    /// Drops what has expired at `now`; whether anything is still held.
    fn expire(
        &mut self,
        partition: &Partition,
        now: Instant,
        started: u64,
        changed: &mut Changed,
    ) -> bool {
        self.allowance = self.allowance.and_then(|a| a.at(now, started));
        if self.gate.is_some_and(|gate| now >= gate.shut.asked) {
            self.gate = None;
        }
        if self.pacer.as_ref().is_some_and(|p| p.ended(now)) {
            self.pacer = None;
            changed.unpaced.push(partition.clone());
        }
        if self
            .failed_at
            .is_some_and(|at| now.saturating_duration_since(at) > rules::STREAK)
        {
            self.failures = 0;
            self.failed_at = None;
        }
        if self.in_flight.as_ref().is_some_and(|f| now >= f.until) {
            self.in_flight = None;
        }
        self.gate.is_some()
            || self.pacer.is_some()
            || self.allowance.is_some()
            || self.in_flight.is_some()
            || self.failures > 0
    }
}

impl Closed {
    fn at(self, now: Instant) -> Gate {
        self.shut
            .at(now, self.probe.is_none_or(|until| now >= until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryLayer;

    const S: Duration = Duration::from_secs(1);

    /// A layer's settings as they come, its state, and the partition of `https://api.test/`.
    fn by_default() -> (Settings, State, Partition) {
        let settings = RetryLayer::new().shared.settings.clone();
        let state = State::new(&settings, true, None);
        let api = state.partition(&"https://api.test/".parse().unwrap(), &HeaderMap::new());
        (settings, state, api)
    }

    fn seen(signal: Signal, probe: bool) -> Observation {
        Observation {
            signal,
            slot: None,
            probe,
            reading: None,
            ticket: 0,
            unhinted: None,
        }
    }

    fn state() -> State {
        State::new(&RetryLayer::new().shared.settings, true, None)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn partitions_follow_origins_and_credentials() {
        let state = state();
        let p = |uri: &str, h: &[(&str, &str)]| state.partition(&uri.parse().unwrap(), &headers(h));
        assert_eq!(
            p("https://API.infoplug.io/v1/a", &[]),
            p("https://api.infoplug.io:443/v2?x", &[])
        );
        assert_eq!(p("http://h/x", &[]), p("http://h:80/y", &[]));
        assert_ne!(p("https://h/", &[]), p("http://h/", &[]));
        assert_ne!(p("https://a.example/", &[]), p("https://b.example/", &[]));
        assert_eq!(p("/v1/a", &[]), p("/v1/b", &[]));
        let tenant_a = [("x-infoplug-api-key", "ip_tenant_a")];
        let tenant_b = [("x-infoplug-api-key", "ip_tenant_b")];
        assert_ne!(p("https://h/", &tenant_a), p("https://h/", &tenant_b));
        assert_ne!(p("https://h/", &tenant_a), p("https://h/", &[]));
        assert_eq!(p("https://h/a", &tenant_a), p("https://h/b", &tenant_a));
        assert_ne!(
            p("https://h/", &[("authorization", "Bearer x")]),
            p("https://h/", &[("authorization", "Bearer y")])
        );
        // Nothing of the key is kept in the partition's Debug.
        let shown = format!("{:?}", p("https://h/", &tenant_a));
        assert!(!shown.contains("tenant"), "{shown}");
    }

    fn fresh(now: Instant) -> Inputs {
        Inputs::fresh(now)
    }

    /// 100,000 credentials throttled at once: the table never keeps more than its cap; the
    /// least recently throttled are forgotten (their requests go), the latest still held.
    #[tokio::test(start_paused = true)]
    async fn the_partition_table_is_bounded_and_forgets_the_least_recently_throttled() {
        let settings = RetryLayer::builder()
            .max_partitions(1000)
            .build()
            .unwrap()
            .shared
            .settings
            .clone();
        let state = State::new(&settings, true, None);
        let uri: Uri = "https://api.test/".parse().unwrap();
        let tenant = |i: usize| {
            let key = format!("ip_tenant_{i}");
            state.partition(&uri, &headers(&[("x-infoplug-api-key", &key)]))
        };
        let t0 = Instant::now();
        let throttle = Signal::Throttled {
            status: StatusCode::TOO_MANY_REQUESTS,
            hint: Some(30 * S),
            quota: None,
        };
        let mut most = 0;
        for i in 0..100_000 {
            let at = t0 + Duration::from_micros(i as u64);
            state.observe(&seen(throttle, false), || tenant(i), || at);
            most = most.max(state.lock().held.len());
        }
        assert!(most <= 1000, "{most} partitions kept");
        let now = t0 + S;
        // The first tenant was forgotten: its request goes now. The last is still held.
        assert!(matches!(
            state.plan(&settings, || tenant(0), &fresh(now)),
            Plan::Go { at, .. } if at == now
        ));
        assert!(matches!(
            state.plan(&settings, || tenant(99_999), &fresh(now)),
            Plan::Go { at, .. } if at > now + 28 * S
        ));
        assert!(RetryLayer::builder().max_partitions(0).build().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_hint_closes_the_gate_for_max_cooldown_then_one_probe_goes() {
        let (settings, state, api) = by_default();
        let t0 = Instant::now();
        let throttle = Signal::Throttled {
            status: StatusCode::SERVICE_UNAVAILABLE,
            hint: Some(3600 * S),
            quota: None,
        };
        state.observe(&seen(throttle, false), || api.clone(), || t0);
        assert!(state.throttled());
        let cooling = |plan| matches!(plan, Plan::Stop(stop) if stop.retry_after.is_some());
        assert!(cooling(state.plan(&settings, || api.clone(), &fresh(t0))));
        let after = t0 + settings.max_cooldown;
        let probe = state.plan(&settings, || api.clone(), &fresh(after));
        assert!(matches!(probe, Plan::Go { probe: true, .. }), "{probe:?}");
        // One at a time.
        assert!(cooling(state.plan(
            &settings,
            || api.clone(),
            &fresh(after)
        )));
        // The probe's answer has no hint: the gate is open, and nothing is held any more.
        state.observe(&seen(Signal::Healthy, true), || api.clone(), || after);
        assert!(matches!(
            state.plan(&settings, || api.clone(), &fresh(after)),
            Plan::Go { probe: false, .. }
        ));
        assert!(!state.throttled());
    }

    /// Every metric the state reports is reported once its lock is released: a recorder (the
    /// user's code) that takes the same lock from its callback does not deadlock. Before,
    /// the gate's closure, the paced rate, the probe and the end of a pacing were recorded
    /// under it.
    #[cfg(feature = "metrics")]
    #[test]
    fn no_recorder_runs_under_the_lock() {
        use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
        use std::sync::atomic::AtomicUsize;

        #[derive(Default)]
        struct Probe {
            state: std::sync::OnceLock<Arc<State>>,
            names: Mutex<Vec<String>>,
            under_lock: AtomicUsize,
        }
        impl Probe {
            fn saw(&self, key: &Key) {
                if let Some(state) = self.state.get()
                    && state.partitions.try_lock().is_err()
                {
                    self.under_lock.fetch_add(1, Ordering::Relaxed);
                }
                self.names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(key.name().to_owned());
            }
        }
        impl metrics::Recorder for Probe {
            fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
            fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
                self.saw(key);
                Counter::noop()
            }
            fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
                self.saw(key);
                Gauge::noop()
            }
            fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
                self.saw(key);
                Histogram::noop()
            }
        }

        let settings = RetryLayer::builder()
            .max_cooldown(S)
            .build()
            .unwrap()
            .shared
            .settings
            .clone();
        let state = Arc::new(State::new(&settings, true, Some(Budget::new(0.0, 0))));
        let probe = Probe::default();
        let _ = probe.state.set(Arc::clone(&state));
        let api = state.partition(&"https://api.test/".parse().unwrap(), &HeaderMap::new());
        let t0 = Instant::now();
        metrics::with_local_recorder(&probe, || {
            // A 429 with a stated quota and a long hint: the gate shuts and the pace is set.
            let throttle = Signal::Throttled {
                status: StatusCode::TOO_MANY_REQUESTS,
                hint: Some(5 * S),
                quota: Some(10.0),
            };
            state.observe(&seen(throttle, false), || api.clone(), || t0);
            // Past the reopening, a request probes and takes a slot.
            let probing = state.plan(&settings, || api.clone(), &fresh(t0 + 2 * S));
            assert!(
                matches!(probing, Plan::Go { probe: true, .. }),
                "{probing:?}"
            );
            // A retry the empty budget refuses.
            let retry = Inputs {
                attempts: 1,
                step: Step::Retry {
                    hint: None,
                    throttle: false,
                },
                ..fresh(t0 + 2 * S)
            };
            let refused = state.plan(&settings, || api.clone(), &retry);
            assert!(matches!(refused, Plan::Stop(_)), "{refused:?}");
            // Much later, the pacing ends.
            let _ = state.plan(&settings, || api.clone(), &fresh(t0 + 3600 * S));
        });
        let names = probe.names.lock().unwrap().clone();
        for name in [
            "infoplug_gate_closures_total",
            "infoplug_paced_rate",
            "infoplug_probes_total",
            "infoplug_budget_refusals_total",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
        }
        assert!(
            names.iter().filter(|n| *n == "infoplug_paced_rate").count() >= 3,
            "{names:?}"
        );
        assert_eq!(probe.under_lock.load(Ordering::Relaxed), 0, "{names:?}");
    }

    /// A reading that comes after the stored allowance lapsed, with no plan in between to tidy
    /// it, is the server's word: it holds. Before, it was merged into the lapsed allowance,
    /// whose past reset won, and the tidy that followed dropped both.
    #[tokio::test(start_paused = true)]
    async fn a_reading_after_a_lapsed_allowance_holds() {
        let (settings, state, api) = by_default();
        let t0 = Instant::now();
        let none_left = |ticket| Observation {
            reading: Some(Reading {
                remaining: 0,
                reset: S,
                quota: None,
            }),
            ticket,
            ..seen(Signal::Healthy, false)
        };
        let first = state.start();
        state.observe(&none_left(first), || api.clone(), || t0);
        let held = |now| match state.plan(&settings, || api.clone(), &fresh(now)) {
            Plan::Go { at, .. } => at > now,
            Plan::Stop(_) => true,
        };
        assert!(held(t0));
        // Two seconds on (the first allowance lapsed a second ago, untidied), the server says
        // again that nothing is left for another second.
        let second = state.start();
        state.observe(&none_left(second), || api.clone(), || t0 + 2 * S);
        assert!(held(t0 + 2 * S));
        assert!(!held(t0 + 3 * S));
    }
    /// With the draft's fields read, a path's requests count against the quota its answers
    /// named, and so do its siblings' when the path ends in an id; other paths know nothing
    /// until their own answer. The table of paths is bounded.
    #[test]
    fn a_path_learns_the_quota_its_answers_name() {
        let settings = RetryLayer::builder()
            .rate_limit_headers(true)
            .build()
            .unwrap()
            .shared
            .settings
            .clone();
        let state = State::new(&settings, true, None);
        let p = |uri: &str| state.partition(&uri.parse().unwrap(), &HeaderMap::new());
        let users = p("https://api.test/v1/users/17").scoped(7);
        state.learn(&users, "/v1/users/17");
        assert_eq!(p("https://api.test/v1/users/17"), users);
        assert_eq!(p("https://api.test/v1/users/18?x=1"), users);
        assert_eq!(p("https://api.test/v1/users/18").scope, 7);
        // Not an id: its own quota, known once answered.
        let search = p("https://api.test/v1/search").scoped(9);
        state.learn(&search, "/v1/search");
        assert_eq!(p("https://api.test/v1/search?q=a").scope, 9);
        assert_eq!(p("https://api.test/v1/profile").scope, 0);
        assert_eq!(p("https://other.test/v1/search").scope, 0);
        assert_eq!(parent("/v1/users/a1b2/"), Some("/v1/users"));
        assert_eq!(
            (parent("/v1/users"), parent("/7"), parent("")),
            (None, None, None)
        );
        // Bounded: past MAX_ROUTES paths, it starts again.
        for i in 0..MAX_ROUTES {
            state.learn(&search, &format!("/v1/p{i}x"));
            assert!(state.routes().len() <= MAX_ROUTES);
        }
        // A configured quota is the key's: no path is told apart.
        let told = RetryLayer::builder()
            .rate_limit_headers(true)
            .quota(10, S)
            .build()
            .unwrap();
        assert!(!State::new(&told.shared.settings, true, None).scoping());
    }
}
