//! The retry planner: every rule about *when* a request may be sent, in one pure function.
//!
//! [`plan`] takes the time, two jitter samples, where the request stands ([`Step`]) and a
//! [`Snapshot`] of the shared state of its partition (gate, pacer, budget), and says what to
//! do: send at an instant (now, or later), or stop with a reason. It reads no clock, takes no
//! lock and touches no timer: the response future gathers its inputs, and the shared state
//! applies what the plan took (a pacing slot, the probe, a retry from the budget) under the
//! same lock it read the snapshot under.
//!
//! The rules, in the order they apply:
//!
//! | rule | what it does |
//! |---|---|
//! | attempts | a retry past `max_attempts` (a request's own [`RetryOverrides`](super::RetryOverrides) first) stops: [`AttemptsExhausted`](StopReason::AttemptsExhausted); a 429 to an attempt sent at a pacing slot is the pacer's miss, not the request's: up to `max_attempts - 1` of those (as many as its retries) do not count |
//! | hint cap | a hint above `max_retry_after` (the request's own first, as for every cap below) is not slept on: [`HintTooLong`](StopReason::HintTooLong) |
//! | replay | a body that cannot be sent again stops: [`BodyNotReplayable`](StopReason::BodyNotReplayable) |
//! | backoff | full-jitter exponential backoff before retry *n* |
//! | hint floor | a hint is a floor: `max(hint, backoff)` plus a bounded upward spread; `0` names no floor |
//! | deadline | an own wait that would cross the deadline stops: [`DeadlineTooClose`](StopReason::DeadlineTooClose) |
//! | gate | a closed gate is waited for only if what the server asked fits `max_retry_after` and the deadline, else [`CoolingDown`](StopReason::CoolingDown); past its capped reopening, one request probes |
//! | breaker | a partition whose breaker tripped on un-hinted failures sends nothing and holds nothing: [`CircuitOpen`](StopReason::CircuitOpen) at once, but for one probe at a time after each probe interval |
//! | pacing | a throttled partition releases requests at its pacer's slots, under the same cap; a slot voided by a throttle, or that a gate shut over, is taken again after it |
//! | budget | a retry takes one from the shared budget, or stops: [`BudgetExhausted`](StopReason::BudgetExhausted); a 429 retried at a pacing slot takes none |

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::StopReason;
use super::backoff::{backoff, unit};
use super::later;
use super::layer::Settings;
use super::rules::{self, Allowance};

/// The least upward spread a pacing layer allows a hinted wait (and the most it needs: the
/// pacer spreads crowds, the spread only keeps one caller off the exact second).
const MIN_SPREAD: Duration = Duration::from_millis(100);

/// The shared gate of a partition, as seen at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Requests may go.
    Open,
    /// Nothing goes before `reopen`; the server asked clients to stay away until `asked`
    /// (later than `reopen` when the ask was longer than `max_cooldown`).
    Closed {
        reopen: Instant,
        asked: Instant,
        status: StatusCode,
    },
    /// Past `reopen` but before `asked`: one request at a time may go, as a probe; `free`
    /// when none is out.
    Probing {
        asked: Instant,
        status: StatusCode,
        free: bool,
    },
    /// The partition's breaker tripped on un-hinted failures (`status` the last): nothing
    /// goes and nothing waits, but one probe after `probe_at` (`free`: it may go now).
    Tripped {
        probe_at: Instant,
        status: StatusCode,
        free: bool,
    },
}

impl Gate {
    /// The stricter of two views of one gate (this process's and the fleet's): closed over
    /// probing over open; of two closed gates, the later reopening and the later ask; a
    /// probe is free only if both say so.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn stricter(self, other: Gate) -> Gate {
        use Gate::{Closed, Open, Probing, Tripped};
        match (self, other) {
            (Open, gate) | (gate, Open) => gate,
            // Two views of a tripped breaker: the later probe, free only if both say so.
            (
                Tripped {
                    probe_at: a,
                    status,
                    free: f,
                },
                Tripped {
                    probe_at: b,
                    free: g,
                    ..
                },
            ) => Tripped {
                probe_at: a.max(b),
                status,
                free: f && g,
            },
            // A server's own wait over a breaker: the server answered since.
            (Tripped { .. }, gate) | (gate, Tripped { .. }) => gate,
            (
                Closed {
                    reopen: a,
                    asked: x,
                    status,
                },
                Closed {
                    reopen: b,
                    asked: y,
                    ..
                },
            ) => Closed {
                reopen: a.max(b),
                asked: x.max(y),
                status,
            },
            (
                Closed {
                    reopen,
                    asked,
                    status,
                },
                Probing { asked: other, .. },
            )
            | (
                Probing { asked: other, .. },
                Closed {
                    reopen,
                    asked,
                    status,
                },
            ) => Closed {
                reopen,
                asked: asked.max(other),
                status,
            },
            (
                Probing {
                    asked: a,
                    status,
                    free: f,
                },
                Probing {
                    asked: b, free: g, ..
                },
            ) => Probing {
                asked: a.max(b),
                status,
                free: f && g,
            },
        }
    }
}

/// A paced partition's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pace {
    /// The next free slot.
    pub(crate) next: Instant,
    /// Which schedule it belongs to: slots of an earlier one are void.
    pub(crate) generation: u32,
    /// For a request resuming with a slot of this schedule: the slot it holds as it stands
    /// now (a request ranking above it may have moved it later; see
    /// [`Lanes`](super::rules::Lanes)).
    pub(crate) held: Option<Instant>,
}

/// What the shared state says about a request's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) gate: Gate,
    /// The pacer's schedule, when the partition is paced.
    pub(crate) pace: Option<Pace>,
    /// Whether the retry budget has a retry to give.
    pub(crate) budget: bool,
    /// What the server said is left of its quota, counted down since.
    pub(crate) allowance: Option<Allowance>,
}

impl Inputs {
    /// A first attempt at `now`, with jitter samples of 0 and nothing else known.
    #[cfg(test)]
    pub(crate) fn fresh(now: Instant) -> Self {
        Self {
            now,
            samples: [0.0, 0.0],
            attempts: 0,
            misses: 0,
            deadline: None,
            replayable: true,
            probing: false,
            slot: None,
            lane: None,
            step: Step::Fresh,
            max_attempts: None,
            max_retry_after: None,
        }
    }
}

impl Snapshot {
    /// Nothing held back, budget available.
    #[cfg(test)]
    pub(crate) const OPEN: Self = Self {
        gate: Gate::Open,
        pace: None,
        budget: true,
        allowance: None,
    };
}

/// Where the request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Before its first attempt.
    Fresh,
    /// After a wait the planner chose, about to send: the gate is checked again, and the
    /// pacing slot only if a throttle voided it (the wait holds its retry).
    Resume,
    /// After an attempt whose outcome the policy would retry, with the server's hint if any;
    /// `throttle`: the outcome was a 429 (a quota's refusal, not an outage).
    Retry {
        hint: Option<Duration>,
        throttle: bool,
    },
}

/// The planner's inputs besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs {
    pub(crate) now: Instant,
    /// Two jitter samples in `[0, 1]`: the backoff's and the spread's.
    pub(crate) samples: [f64; 2],
    /// Attempts sent so far.
    pub(crate) attempts: u32,
    /// How many of them were sent at a pacing slot and refused with a 429.
    pub(crate) misses: u32,
    pub(crate) deadline: Option<Instant>,
    /// Whether the request body can be sent again.
    pub(crate) replayable: bool,
    /// Whether the request already holds the gate's probe (it took it, then had to wait).
    pub(crate) probing: bool,
    /// The schedule of the pacing slot the request holds, if it holds one.
    pub(crate) slot: Option<u32>,
    /// The request's number among those waiting for slots, and its rank for them (see
    /// [`Lanes`](super::rules::Lanes)); `None` when it has none.
    pub(crate) lane: Option<(u64, u16)>,
    pub(crate) step: Step,
    /// The request's own `max_attempts` and `max_retry_after`, when it carries them.
    pub(crate) max_attempts: Option<u32>,
    pub(crate) max_retry_after: Option<Duration>,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Send at `at` (`now`: at once). `slot`: `at` is the pacer's slot, taken, of that
    /// schedule; `probe`: the request goes as the gate's probe; `spend`: a retry is taken
    /// from the budget.
    Go {
        at: Instant,
        slot: Option<u32>,
        probe: bool,
        spend: bool,
    },
    /// Do not send; return what there is.
    Stop(Stop),
}

/// Why a request is not sent (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stop {
    pub(crate) reason: StopReason,
    /// How long the server asked to wait, when that is the reason.
    pub(crate) retry_after: Option<Duration>,
    /// The status that closed the gate or started the pacing, for [`StopReason::CoolingDown`].
    pub(crate) status: Option<StatusCode>,
}

impl Stop {
    /// A stop for `reason` alone, with no wait asked for.
    pub(crate) const fn at(reason: StopReason) -> Self {
        Self {
            reason,
            retry_after: None,
            status: None,
        }
    }

    fn because(reason: StopReason) -> Plan {
        Plan::Stop(Self::at(reason))
    }

    fn cooling(retry_after: Duration, status: StatusCode) -> Plan {
        Plan::Stop(Self {
            reason: StopReason::CoolingDown,
            retry_after: Some(retry_after),
            status: Some(status),
        })
    }
}

/// The plan for a request; see the [module docs](self).
pub(crate) fn plan(settings: &Settings, inputs: &Inputs, snapshot: &Snapshot) -> Plan {
    let now = inputs.now;
    let max_attempts = inputs.max_attempts.unwrap_or(settings.max_attempts);
    let max_retry_after = inputs.max_retry_after.unwrap_or(settings.max_retry_after);
    let waits_over = |at: Instant| inputs.deadline.is_some_and(|d| at >= d);
    let mut at = now;
    match inputs.step {
        Step::Fresh | Step::Resume => {}
        Step::Retry { hint, .. } => {
            // A pacer finds a rate no server announces by going past it now and then: the
            // request that went at such a slot is not to end for it, up to a bound.
            let counted = inputs
                .attempts
                .saturating_sub(inputs.misses.min(max_attempts.saturating_sub(1)));
            if counted >= max_attempts {
                return Stop::because(StopReason::AttemptsExhausted);
            }
            if let Some(hint) = hint.filter(|h| *h > max_retry_after) {
                return Plan::Stop(Stop {
                    reason: StopReason::HintTooLong,
                    retry_after: Some(hint),
                    status: None,
                });
            }
            if !inputs.replayable {
                return Stop::because(StopReason::BodyNotReplayable);
            }
            let backoff = backoff(
                counted,
                settings.base_backoff,
                settings.max_backoff,
                inputs.samples[0],
            );
            let wait = match hint {
                Some(floor) if !floor.is_zero() => {
                    floor
                        .max(backoff)
                        .saturating_add(spread(settings, floor, inputs.samples[1]))
                }
                _ => backoff,
            };
            at = later(now, wait);
            if waits_over(at) {
                return Stop::because(StopReason::DeadlineTooClose);
            }
        }
    }

    // The longest wait allowed, worked out only when something holds the request.
    let cap = || rules::cap(max_retry_after, inputs.deadline, now);
    let mut probe = false;
    let mut gated = false;
    let held = match snapshot.gate {
        Gate::Open => None,
        Gate::Closed { asked, status, .. } => Some((asked, status)),
        Gate::Probing { free, .. } if free || inputs.probing => {
            probe = true;
            None
        }
        Gate::Probing { asked, status, .. } => Some((asked, status)),
        Gate::Tripped { free, .. } if free || inputs.probing => {
            probe = true;
            None
        }
        Gate::Tripped {
            probe_at, status, ..
        } => {
            return Plan::Stop(Stop {
                reason: StopReason::CircuitOpen,
                retry_after: Some(probe_at.saturating_duration_since(now)),
                status: Some(status),
            });
        }
    };
    if let Some((asked, status)) = held.filter(|(asked, _)| *asked > at) {
        let asked_for = asked.saturating_duration_since(now);
        if asked_for > cap() {
            return Stop::cooling(asked_for, status);
        }
        at = later(asked, spread(settings, asked_for, inputs.samples[1]));
        if waits_over(at) {
            return Stop::cooling(asked_for, status);
        }
        gated = true;
    }

    let mut slot = None;
    // A resumed request keeps its slot, unless a throttle voided the schedule it was of or a
    // gate shut over it; one that waited for a gate alone takes one now. Else the crowd a
    // gate held would leave at its reopening, and spend a fixed window's quota at once.
    let takes_slot = |pace: &Pace| match inputs.step {
        Step::Resume => gated || inputs.slot != Some(pace.generation),
        Step::Fresh | Step::Retry { .. } => true,
    };
    if let Some(pace) = snapshot.pace.filter(takes_slot) {
        if pace.next > at {
            let asked_for = pace.next.saturating_duration_since(now);
            if asked_for > cap() {
                return Stop::cooling(asked_for, StatusCode::TOO_MANY_REQUESTS);
            }
            at = rules::slot(pace.next, at);
        }
        slot = Some(pace.generation);
    } else if let Some(held) = snapshot
        .pace
        .and_then(|pace| pace.held)
        .filter(|held| *held > at)
    {
        // The slot it waited for moved on: a request that ranks above it took it.
        let asked_for = held.saturating_duration_since(now);
        if asked_for > cap() || waits_over(held) {
            return Stop::cooling(asked_for, StatusCode::TOO_MANY_REQUESTS);
        }
        at = held;
    }

    // Nothing left of what the server said its quota holds: not before it is whole again.
    if let Some(allowance) = snapshot.allowance.filter(|a| a.holds(at)) {
        let asked_for = allowance.until.saturating_duration_since(now);
        if asked_for > cap() {
            return Stop::cooling(asked_for, StatusCode::TOO_MANY_REQUESTS);
        }
        at = allowance.until;
        if waits_over(at) {
            return Stop::cooling(asked_for, StatusCode::TOO_MANY_REQUESTS);
        }
    }

    let spend = rules::spends(inputs.step, slot.is_some());
    if spend && !snapshot.budget {
        return Stop::because(StopReason::BudgetExhausted);
    }
    Plan::Go {
        at,
        slot,
        probe,
        spend,
    }
}

/// The upward spread added to a wait of `wait` the server asked for. With pacing, at most
/// `max(10%, 100 ms)` of it (and at most `hint_jitter`): crowds are the pacer's to spread.
/// Without, at most `min(wait, hint_jitter)`, as before pacing existed.
fn spread(settings: &Settings, wait: Duration, sample: f64) -> Duration {
    let most = if settings.pacing {
        (wait / 10).max(MIN_SPREAD).min(settings.hint_jitter)
    } else {
        wait.min(settings.hint_jitter)
    };
    most.mul_f64(unit(sample))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryLayer;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);
    const TOO_MANY: StatusCode = StatusCode::TOO_MANY_REQUESTS;
    const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

    /// Settings as the layer's defaults: 3 attempts, backoff 100 ms to 10 s, hints up to 60 s,
    /// spread up to 1 s, pacing on.
    fn defaults() -> Settings {
        RetryLayer::new().shared.settings.clone()
    }

    struct Row {
        name: &'static str,
        settings: Settings,
        inputs: Inputs,
        snapshot: Snapshot,
        expected: Plan,
    }

    impl Row {
        /// A row with the default settings.
        fn new(name: &'static str, inputs: Inputs, snapshot: Snapshot, expected: Plan) -> Self {
            Self {
                name,
                settings: defaults(),
                inputs,
                snapshot,
                expected,
            }
        }

        fn with(self, settings: Settings) -> Self {
            Self { settings, ..self }
        }
    }

    fn go(at: Instant) -> Plan {
        Plan::Go {
            at,
            slot: None,
            probe: false,
            spend: false,
        }
    }

    fn probe_at(at: Instant) -> Plan {
        Plan::Go {
            at,
            slot: None,
            probe: true,
            spend: false,
        }
    }

    /// Sent at `at`, the pacer's slot of schedule `generation`, nothing spent.
    fn slot_at(at: Instant, generation: u32) -> Plan {
        Plan::Go {
            at,
            slot: Some(generation),
            probe: false,
            spend: false,
        }
    }

    fn retry_at(at: Instant) -> Plan {
        Plan::Go {
            at,
            slot: None,
            probe: false,
            spend: true,
        }
    }

    #[test]
    fn the_stricter_of_two_gates() {
        let now = Instant::now();
        let closed = |reopen, asked| Gate::Closed {
            reopen: now + reopen,
            asked: now + asked,
            status: TOO_MANY,
        };
        let probing = |asked, free| Gate::Probing {
            asked: now + asked,
            status: TOO_MANY,
            free,
        };
        let cases = [
            (Gate::Open, Gate::Open, Gate::Open),
            (Gate::Open, closed(S, 2 * S), closed(S, 2 * S)),
            (closed(S, 5 * S), closed(2 * S, 3 * S), closed(2 * S, 5 * S)),
            (probing(9 * S, true), closed(S, 2 * S), closed(S, 9 * S)),
            (
                probing(S, true),
                probing(2 * S, false),
                probing(2 * S, false),
            ),
            (probing(S, true), Gate::Open, probing(S, true)),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.stricter(b), expected, "{a:?} and {b:?}");
            assert_eq!(b.stricter(a), expected, "{b:?} and {a:?}");
        }
    }

    #[test]
    fn every_wait_rule_and_their_interactions() {
        let now = Instant::now();
        let fresh = Inputs {
            samples: [1.0, 0.0],
            ..Inputs::fresh(now)
        };
        let retry = |hint: Option<Duration>| Inputs {
            attempts: 1,
            step: Step::Retry {
                hint,
                throttle: false,
            },
            ..fresh
        };
        let closed = |reopen: Duration, asked: Duration, status| Snapshot {
            gate: Gate::Closed {
                reopen: now + reopen,
                asked: now + asked,
                status,
            },
            ..Snapshot::OPEN
        };
        let probing = |asked: Duration, free| Snapshot {
            gate: Gate::Probing {
                asked: now + asked,
                status: TOO_MANY,
                free,
            },
            ..Snapshot::OPEN
        };
        let paced_in = |next: Duration, generation| Snapshot {
            pace: Some(Pace {
                next: now + next,
                generation,
                held: None,
            }),
            ..Snapshot::OPEN
        };
        let paced = |next: Duration| paced_in(next, 0);
        let allowing = |left: u64, reset: Duration| Snapshot {
            allowance: Some(Allowance {
                left,
                until: now + reset,
                ticket: 0,
                quota: None,
                since: 0,
                contradicted: false,
                refilled: false,
            }),
            ..Snapshot::OPEN
        };
        // A retry after a 429 without a hint.
        let refused = Inputs {
            step: Step::Retry {
                hint: None,
                throttle: true,
            },
            ..retry(None)
        };
        let with_deadline = |inputs: Inputs, after: Duration| Inputs {
            deadline: Some(now + after),
            ..inputs
        };
        let no_pacing = Settings {
            pacing: false,
            ..defaults()
        };

        let rows = [
            // A fresh request.
            Row::new(
                "open gate, no pacing: send at once",
                fresh,
                Snapshot::OPEN,
                go(now),
            ),
            Row::new(
                "a closed gate within the cap is waited for, plus a spread",
                Inputs {
                    samples: [0.0, 1.0],
                    ..fresh
                },
                closed(5 * S, 5 * S, TOO_MANY),
                go(now + 5 * S + 500 * MS),
            ),
            Row::new(
                "a gate's spread is at least 100 ms with pacing",
                Inputs {
                    samples: [0.0, 1.0],
                    ..fresh
                },
                closed(S, S, TOO_MANY),
                go(now + S + 100 * MS),
            ),
            Row::new(
                "without pacing the spread is min(wait, hint_jitter), as before",
                Inputs {
                    samples: [0.0, 1.0],
                    ..fresh
                },
                closed(5 * S, 5 * S, TOO_MANY),
                go(now + 6 * S),
            )
            .with(no_pacing),
            Row::new(
                "cooldown above the cap on a fresh request fails fast with the ask",
                fresh,
                closed(60 * S, 3600 * S, UNAVAILABLE),
                Stop::cooling(3600 * S, UNAVAILABLE),
            ),
            Row::new(
                "a gate past the deadline fails fast",
                with_deadline(fresh, 4 * S),
                closed(5 * S, 5 * S, TOO_MANY),
                Stop::cooling(5 * S, TOO_MANY),
            ),
            Row::new(
                "a gate whose spread would cross the deadline fails fast",
                with_deadline(
                    Inputs {
                        samples: [0.0, 1.0],
                        ..fresh
                    },
                    5 * S + 100 * MS,
                ),
                closed(5 * S, 5 * S, TOO_MANY),
                Stop::cooling(5 * S, TOO_MANY),
            ),
            Row::new(
                "past a capped gate's reopening, a free probe goes at once",
                fresh,
                probing(3000 * S, true),
                probe_at(now),
            ),
            Row::new(
                "the request that holds the probe keeps it after a wait",
                Inputs {
                    step: Step::Resume,
                    probing: true,
                    ..fresh
                },
                probing(3000 * S, false),
                probe_at(now),
            ),
            Row::new(
                "while the probe is out, the rest fail fast on the server's ask",
                fresh,
                probing(3000 * S, false),
                Stop::cooling(3000 * S, TOO_MANY),
            ),
            Row::new(
                "a paced partition sends at its next slot",
                fresh,
                paced(40 * MS),
                slot_at(now + 40 * MS, 0),
            ),
            Row::new(
                "a request resuming for a slot that moved on waits for where it is now",
                Inputs {
                    step: Step::Resume,
                    slot: Some(0),
                    ..fresh
                },
                Snapshot {
                    pace: Some(Pace {
                        next: now + S,
                        generation: 0,
                        held: Some(now + 40 * MS),
                    }),
                    ..Snapshot::OPEN
                },
                go(now + 40 * MS),
            ),
            Row::new(
                "one whose slot moved past what it may wait is cooling down",
                Inputs {
                    step: Step::Resume,
                    slot: Some(0),
                    ..fresh
                },
                Snapshot {
                    pace: Some(Pace {
                        next: now + 90 * S,
                        generation: 0,
                        held: Some(now + 90 * S),
                    }),
                    ..Snapshot::OPEN
                },
                Stop::cooling(90 * S, TOO_MANY),
            ),
            Row::new(
                "a slot in the past is taken now",
                Inputs {
                    now: now + S,
                    ..fresh
                },
                paced(Duration::ZERO),
                slot_at(now + S, 0),
            ),
            Row::new(
                "a pacing slot beyond the cap fails fast",
                fresh,
                paced(61 * S),
                Stop::cooling(61 * S, TOO_MANY),
            ),
            Row::new(
                "a pacing slot past the deadline fails fast",
                with_deadline(fresh, 30 * MS),
                paced(40 * MS),
                Stop::cooling(40 * MS, TOO_MANY),
            ),
            Row::new(
                "nothing left of the announced quota holds a request until it is whole again",
                fresh,
                allowing(0, 2 * S),
                go(now + 2 * S),
            ),
            Row::new(
                "a request goes at once while the announced quota has some left",
                fresh,
                allowing(1, 2 * S),
                go(now),
            ),
            Row::new(
                "an announced reset past the cap is not waited for",
                with_deadline(fresh, S),
                allowing(0, 2 * S),
                Stop::cooling(2 * S, TOO_MANY),
            ),
            Row::new(
                "a request a gate holds past the reset goes without the allowance",
                fresh,
                Snapshot {
                    allowance: allowing(0, S).allowance,
                    ..closed(2 * S, 2 * S, TOO_MANY)
                },
                go(now + 2 * S),
            ),
            Row::new(
                "the pacer's slot comes after the gate",
                fresh,
                Snapshot {
                    pace: Some(Pace {
                        next: now + 2 * S,
                        generation: 0,
                        held: None,
                    }),
                    ..closed(S, S, TOO_MANY)
                },
                slot_at(now + 2 * S, 0),
            ),
            Row::new(
                "a resumed request checks the gate again but takes no second slot",
                Inputs {
                    step: Step::Resume,
                    slot: Some(0),
                    ..fresh
                },
                paced(2 * S),
                go(now),
            ),
            Row::new(
                "a resumed request whose slot a throttle voided takes a new one",
                Inputs {
                    step: Step::Resume,
                    slot: Some(0),
                    ..fresh
                },
                paced_in(2 * S, 1),
                slot_at(now + 2 * S, 1),
            ),
            Row::new(
                "a resumed request whose slot a gate shut over takes one after the gate",
                Inputs {
                    step: Step::Resume,
                    slot: Some(0),
                    ..fresh
                },
                Snapshot {
                    pace: Some(Pace {
                        next: now + 100 * MS,
                        generation: 0,
                        held: None,
                    }),
                    ..closed(S, S, UNAVAILABLE)
                },
                slot_at(now + S, 0),
            ),
            Row::new(
                "a request that waited for a gate alone takes a slot when it resumes",
                Inputs {
                    step: Step::Resume,
                    ..fresh
                },
                paced(2 * S),
                slot_at(now + 2 * S, 0),
            ),
            Row::new(
                "a resumed request meeting a gate closed meanwhile waits again",
                Inputs {
                    step: Step::Resume,
                    ..fresh
                },
                closed(2 * S, 2 * S, TOO_MANY),
                go(now + 2 * S),
            ),
            Row::new(
                "a fresh request needs no budget",
                fresh,
                Snapshot {
                    budget: false,
                    ..Snapshot::OPEN
                },
                go(now),
            ),
            // After an attempt the policy would retry.
            Row::new(
                "no hint: full-jitter backoff, one retry spent",
                Inputs {
                    samples: [0.5, 0.0],
                    ..retry(None)
                },
                Snapshot::OPEN,
                retry_at(now + 50 * MS),
            ),
            Row::new(
                "backoff doubles with the attempts",
                Inputs {
                    attempts: 2,
                    ..retry(None)
                },
                Snapshot::OPEN,
                retry_at(now + 200 * MS),
            ),
            Row::new(
                "a zero hint names no floor: backoff as usual",
                retry(Some(Duration::ZERO)),
                Snapshot::OPEN,
                retry_at(now + 100 * MS),
            ),
            Row::new(
                "a hint is a floor over the backoff",
                retry(Some(2 * S)),
                Snapshot::OPEN,
                retry_at(now + 2 * S),
            ),
            Row::new(
                "a lone request waits its hint plus at most max(10%, 100 ms)",
                Inputs {
                    samples: [0.0, 1.0],
                    ..retry(Some(S))
                },
                Snapshot::OPEN,
                retry_at(now + S + 100 * MS),
            ),
            Row::new(
                "and 10% of a longer hint",
                Inputs {
                    samples: [0.0, 1.0],
                    ..retry(Some(5 * S))
                },
                Snapshot::OPEN,
                retry_at(now + 5 * S + 500 * MS),
            ),
            Row::new(
                "the backoff wins over a shorter hint",
                Inputs {
                    attempts: 2,
                    ..retry(Some(50 * MS))
                },
                Snapshot::OPEN,
                retry_at(now + 200 * MS),
            ),
            Row::new(
                "attempts exhausted",
                Inputs {
                    attempts: 3,
                    ..retry(Some(S))
                },
                Snapshot::OPEN,
                Stop::because(StopReason::AttemptsExhausted),
            ),
            Row::new(
                "a 429 at a pacing slot is the pacer's miss: it does not count",
                Inputs {
                    attempts: 3,
                    misses: 1,
                    ..retry(None)
                },
                Snapshot::OPEN,
                retry_at(now + 200 * MS),
            ),
            Row::new(
                "up to max_attempts - 1 misses",
                Inputs {
                    attempts: 6,
                    misses: 4,
                    ..retry(None)
                },
                Snapshot::OPEN,
                Stop::because(StopReason::AttemptsExhausted),
            ),
            Row::new(
                "a hint above the cap is not slept on",
                retry(Some(61 * S)),
                Snapshot::OPEN,
                Plan::Stop(Stop {
                    reason: StopReason::HintTooLong,
                    retry_after: Some(61 * S),
                    status: None,
                }),
            ),
            Row::new(
                "a body that cannot be replayed stops",
                Inputs {
                    replayable: false,
                    ..retry(None)
                },
                Snapshot::OPEN,
                Stop::because(StopReason::BodyNotReplayable),
            ),
            Row::new(
                "an own wait past the deadline stops before the gate is looked at",
                with_deadline(retry(Some(2 * S)), S),
                closed(30 * S, 3600 * S, TOO_MANY),
                Stop::because(StopReason::DeadlineTooClose),
            ),
            Row::new(
                "cooldown above the cap on a retry returns at once, not after the hour",
                retry(None),
                closed(60 * S, 3600 * S, TOO_MANY),
                Stop::cooling(3600 * S, TOO_MANY),
            ),
            Row::new(
                "a gate within the cap lengthens a retry's wait",
                retry(None),
                closed(5 * S, 5 * S, UNAVAILABLE),
                retry_at(now + 5 * S),
            ),
            Row::new(
                "a gate shorter than the own wait does not lengthen it",
                retry(Some(5 * S)),
                closed(S, S, TOO_MANY),
                retry_at(now + 5 * S),
            ),
            Row::new(
                "a retry may go as the probe",
                retry(None),
                probing(3000 * S, true),
                Plan::Go {
                    at: now + 100 * MS,
                    slot: None,
                    probe: true,
                    spend: true,
                },
            ),
            Row::new(
                "a retry takes a pacing slot after its own wait",
                retry(Some(S)),
                paced(S + 5 * MS),
                Plan::Go {
                    at: now + S + 5 * MS,
                    slot: Some(0),
                    probe: false,
                    spend: true,
                },
            ),
            Row::new(
                "a 429 retried at a pacing slot takes nothing from the budget",
                refused,
                Snapshot {
                    budget: false,
                    ..paced(S)
                },
                slot_at(now + S, 0),
            ),
            Row::new(
                "a 429 retried with no pacing spends from the budget, and an empty one stops it",
                refused,
                Snapshot {
                    budget: false,
                    ..Snapshot::OPEN
                },
                Stop::because(StopReason::BudgetExhausted),
            ),
            Row::new(
                "a 5xx retried at a pacing slot still spends from the budget",
                retry(None),
                Snapshot {
                    budget: false,
                    ..paced(S)
                },
                Stop::because(StopReason::BudgetExhausted),
            ),
            Row::new(
                "an empty budget stops a retry",
                retry(None),
                Snapshot {
                    budget: false,
                    ..Snapshot::OPEN
                },
                Stop::because(StopReason::BudgetExhausted),
            ),
            Row::new(
                "limits that stop anyway come before the budget",
                with_deadline(retry(Some(2 * S)), S),
                Snapshot {
                    budget: false,
                    ..Snapshot::OPEN
                },
                Stop::because(StopReason::DeadlineTooClose),
            ),
        ];
        for row in rows {
            assert_eq!(
                plan(&row.settings, &row.inputs, &row.snapshot),
                row.expected,
                "{}",
                row.name
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn a_hinted_retry_is_never_earlier_than_asked_nor_later_than_the_spread_allows(
            hint_ms in 1u64..60_000,
            attempts in 1u32..3,
            samples in proptest::array::uniform2(0.0f64..=1.0),
        ) {
            let now = Instant::now();
            let hint = Duration::from_millis(hint_ms);
            let inputs = Inputs {
                now,
                samples,
                attempts,
                misses: 0,
                deadline: None,
                replayable: true,
                probing: false,
                step: Step::Retry { hint: Some(hint), throttle: false },
                ..Inputs::fresh(now)
            };
            let settings = defaults();
            let Plan::Go { at, .. } = plan(&settings, &inputs, &Snapshot::OPEN) else {
                proptest::prop_assert!(false, "a hint within the cap is retried");
                return Ok(());
            };
            let backoff = settings.base_backoff * 2u32.pow(attempts - 1);
            proptest::prop_assert!(at >= now + hint);
            proptest::prop_assert!(at <= now + hint.max(backoff) + (hint / 10).max(MIN_SPREAD));
        }
    }

    /// A request's own `max_attempts` and `max_retry_after` win over the layer's, both ways.
    #[test]
    fn a_requests_own_limits_win_over_the_layers() {
        let now = Instant::now();
        let settings = defaults();
        let retry = |attempts, hint| Inputs {
            attempts,
            step: Step::Retry {
                hint,
                throttle: false,
            },
            ..Inputs::fresh(now)
        };
        let goes =
            |inputs: &Inputs| matches!(plan(&settings, inputs, &Snapshot::OPEN), Plan::Go { .. });
        let stops = |inputs: &Inputs, reason| matches!(plan(&settings, inputs, &Snapshot::OPEN), Plan::Stop(stop) if stop.reason == reason);
        // The layer allows three attempts; a request may allow fewer, or more.
        assert!(goes(&retry(1, None)));
        let no_retry = Inputs {
            max_attempts: Some(1),
            ..retry(1, None)
        };
        assert!(stops(&no_retry, StopReason::AttemptsExhausted));
        assert!(stops(&retry(3, None), StopReason::AttemptsExhausted));
        let more = Inputs {
            max_attempts: Some(5),
            ..retry(3, None)
        };
        assert!(goes(&more));
        // The layer sleeps on hints up to 60 s; a request may allow less, or more.
        let hint = Some(2 * S);
        assert!(goes(&retry(1, hint)));
        let impatient = Inputs {
            max_retry_after: Some(S),
            ..retry(1, hint)
        };
        assert!(stops(&impatient, StopReason::HintTooLong));
        let patient = Inputs {
            max_retry_after: Some(300 * S),
            ..retry(1, Some(120 * S))
        };
        assert!(goes(&patient));
        assert!(stops(&retry(1, Some(120 * S)), StopReason::HintTooLong));
    }

    #[test]
    fn bad_samples_and_huge_durations_never_panic() {
        let now = Instant::now();
        let settings = Settings {
            max_retry_after: Duration::MAX,
            hint_jitter: Duration::MAX,
            ..defaults()
        };
        for sample in [f64::NAN, -1.0, 7.0, f64::INFINITY] {
            for hint in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
                let inputs = Inputs {
                    now,
                    samples: [sample, sample],
                    attempts: 1,
                    misses: 0,
                    deadline: Some(later(now, Duration::MAX)),
                    replayable: true,
                    probing: false,
                    step: Step::Retry {
                        hint: Some(hint),
                        throttle: false,
                    },
                    ..Inputs::fresh(now)
                };
                let snapshot = Snapshot {
                    gate: Gate::Closed {
                        reopen: later(now, Duration::MAX),
                        asked: later(now, Duration::MAX),
                        status: TOO_MANY,
                    },
                    pace: Some(Pace {
                        next: later(now, Duration::MAX),
                        generation: 0,
                        held: None,
                    }),
                    budget: true,
                    allowance: None,
                };
                let _ = plan(&settings, &inputs, &snapshot);
            }
        }
    }
}
