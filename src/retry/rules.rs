//! The admission rules a store applies, each in one place: what a throttle does to a
//! partition, how a shut gate is kept and merged, the cap on any wait, which retries take from
//! the budget, and the pacing slot's arithmetic.
//!
//! Both stores call them: this process's [`State`](super::state::State) and a fleet's (whose
//! Lua scripts must run inside Redis for atomicity; they are checked against these rules by
//! one conformance table run on both stores). The planner ([`plan`](super::plan)) reads what
//! the stores keep. Pure: no clock, no lock, no I/O.

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::later;
use super::plan::{Gate, Step};

/// What a throttle (a 429 or 503 the policy retries) does to its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect {
    /// It shuts the gate: it came with a wait, and gates are on.
    pub(crate) close: bool,
    /// It paces the partition: a 429 (a quota's refusal, not an outage), and pacing is on.
    pub(crate) pace: bool,
}

impl Effect {
    /// The effect of a throttle with `status` and the server's `hint`, under a layer whose
    /// gates and pacing are on or off. A zero hint names no wait: it shuts nothing.
    pub(crate) fn of(
        gates: bool,
        pacing: bool,
        status: StatusCode,
        hint: Option<Duration>,
    ) -> Self {
        Self {
            close: gates && hint.is_some_and(|h| !h.is_zero()),
            pace: pacing && status == StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// Whether it changes anything shared.
    pub(crate) fn any(self) -> bool {
        self.close || self.pace
    }
}

/// How long a throttle holds its partition: the server's wait, capped at `max_cooldown`
/// (no gate, and no pacing, holds a partition longer without a probe).
pub(crate) fn held_for(hint: Duration, max_cooldown: Duration) -> Duration {
    hint.min(max_cooldown)
}

/// What an un-hinted failure (a 5xx without a hint, a 503 without `Retry-After`, a transport
/// error, a timeout) does to its partition's streak of them, under a breaker that trips after
/// `failures` in a row: the streak after it, and whether it is long enough to trip it. A streak is
/// one of failures none older than [`STREAK`] before the next; an answer from a healthy
/// server ends it.
pub(crate) fn failed(
    streak: u32,
    last: Option<Instant>,
    now: Instant,
    failures: u32,
) -> (u32, bool) {
    let kept = if last.is_some_and(|at| now.saturating_duration_since(at) <= STREAK) {
        streak
    } else {
        0
    };
    let streak = kept.saturating_add(1);
    (streak, streak >= failures)
}

/// How long an un-hinted failure keeps its partition's streak going.
pub(crate) const STREAK: Duration = Duration::from_secs(10);

/// A shut gate as a store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shut {
    /// Nothing goes before: the server's wait, capped at `max_cooldown`; for a tripped
    /// breaker, its next probe.
    pub(crate) reopen: Instant,
    /// When the server asked clients to come back; for a tripped breaker, how long it may
    /// stay tripped without a probe answering (`max_cooldown`).
    pub(crate) asked: Instant,
    pub(crate) status: StatusCode,
    /// Shut by un-hinted failures, not by a server's wait: requests are not held for it,
    /// they fail at once, and one probe goes after `reopen`.
    pub(crate) breaker: bool,
}

impl Shut {
    /// The gate a throttle with a wait of `hint` shuts at `now`: no gate holds a partition
    /// past `max_cooldown` without a probe, however long the server asked for.
    pub(crate) fn after(now: Instant, hint: Duration, status: StatusCode, cap: Duration) -> Self {
        Self {
            reopen: later(now, held_for(hint, cap)),
            asked: later(now, hint),
            status,
            breaker: false,
        }
    }

    /// The breaker tripped at `now` by un-hinted failures (the last one `status`): a probe
    /// may go after `probe_every`; tripped for at most `cap` unless a probe re-trips it.
    pub(crate) fn tripped(
        now: Instant,
        probe_every: Duration,
        status: StatusCode,
        cap: Duration,
    ) -> Self {
        Self {
            reopen: later(now, probe_every.min(cap)),
            asked: later(now, cap),
            status,
            breaker: true,
        }
    }

    /// This gate shut again by `newer`: the later reopening and the later ask (a shorter
    /// wait never opens what a longer one shut), with the newer status. A gate of the other
    /// kind (a server's wait over a tripped breaker, or the reverse) is the latest word: it
    /// replaces this one.
    pub(crate) fn merge(self, newer: Self) -> Self {
        if self.breaker != newer.breaker {
            return newer;
        }
        Self {
            reopen: self.reopen.max(newer.reopen),
            asked: self.asked.max(newer.asked),
            status: newer.status,
            breaker: newer.breaker,
        }
    }

    /// The gate at `now`: shut before its reopening, then probing (`free` when no probe is
    /// out) until the ask ends, then open. A tripped breaker is never waited for: it says
    /// when its next probe may go.
    pub(crate) fn at(self, now: Instant, free: bool) -> Gate {
        if now >= self.asked {
            Gate::Open
        } else if self.breaker {
            Gate::Tripped {
                probe_at: self.reopen,
                status: self.status,
                free: free && now >= self.reopen,
            }
        } else if now < self.reopen {
            Gate::Closed {
                reopen: self.reopen,
                asked: self.asked,
                status: self.status,
            }
        } else {
            Gate::Probing {
                asked: self.asked,
                status: self.status,
                free,
            }
        }
    }
}

/// The longest a request may be held from `now`: `max_retry_after`, and short of its
/// deadline. A wait of more than that is not waited for.
pub(crate) fn cap(max_retry_after: Duration, deadline: Option<Instant>, now: Instant) -> Duration {
    match deadline {
        // Short of it: a wait that ends at the deadline leaves no time for the attempt.
        Some(deadline) => max_retry_after.min(
            deadline
                .saturating_duration_since(now)
                .saturating_sub(Duration::from_nanos(1)),
        ),
        None => max_retry_after,
    }
}

/// Whether a request at `step` takes a retry from the budget: every retry but a 429 retried at
/// a pacing slot (the quota's pace, not an outage's amplification). `at_slot`: it goes at one
/// (for a fleet asking before it knows: whether it may).
pub(crate) fn spends(step: Step, at_slot: bool) -> bool {
    match step {
        Step::Fresh | Step::Resume => false,
        Step::Retry { throttle, .. } => !(throttle && at_slot),
    }
}

/// The pacing slot of a request that may go at `earliest`, when the partition's next free
/// slot is `next` (a GCRA step): the later of the two.
pub(crate) fn slot(next: Instant, earliest: Instant) -> Instant {
    next.max(earliest)
}

/// The next free slot once `slot` is taken at `rate` requests a second (a pacer's rate is
/// positive; one that is not paces nothing).
pub(crate) fn after_slot(slot: Instant, rate: f64) -> Instant {
    let interval = if rate > 0.0 {
        Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    };
    later(slot, interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const TOO_MANY: StatusCode = StatusCode::TOO_MANY_REQUESTS;
    const UNAVAILABLE: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

    #[test]
    fn a_hinted_throttle_shuts_and_a_429_paces() {
        let cases = [
            // gates, pacing, status, hint, close, pace
            (true, true, TOO_MANY, Some(S), true, true),
            (true, true, TOO_MANY, None, false, true),
            (true, true, TOO_MANY, Some(Duration::ZERO), false, true),
            (true, true, UNAVAILABLE, Some(S), true, false),
            (true, true, UNAVAILABLE, None, false, false),
            (false, true, TOO_MANY, Some(S), false, true),
            (true, false, TOO_MANY, Some(S), true, false),
            (false, false, TOO_MANY, Some(S), false, false),
        ];
        for (gates, pacing, status, hint, close, pace) in cases {
            let effect = Effect::of(gates, pacing, status, hint);
            assert_eq!(
                effect,
                Effect { close, pace },
                "{gates} {pacing} {status} {hint:?}"
            );
            assert_eq!(effect.any(), close || pace);
        }
    }

    #[test]
    fn a_gate_reopens_within_the_cap_and_only_moves_later() {
        let now = Instant::now();
        let long = Shut::after(now, 60 * S, TOO_MANY, 5 * S);
        assert_eq!((long.reopen, long.asked), (now + 5 * S, now + 60 * S));
        let short = Shut::after(now + S, S, UNAVAILABLE, 5 * S);
        let merged = long.merge(short);
        assert_eq!(
            merged,
            Shut {
                reopen: now + 5 * S,
                asked: now + 60 * S,
                status: UNAVAILABLE,
                breaker: false,
            }
        );
        assert_eq!(short.merge(long).reopen, now + 5 * S);
        // Shut, then probing, then open.
        assert!(matches!(long.at(now, true), Gate::Closed { .. }));
        assert_eq!(
            long.at(now + 5 * S, false),
            Gate::Probing {
                asked: now + 60 * S,
                status: TOO_MANY,
                free: false
            }
        );
        assert_eq!(long.at(now + 60 * S, true), Gate::Open);
    }

    #[test]
    fn the_cap_is_max_retry_after_and_short_of_the_deadline() {
        let now = Instant::now();
        assert_eq!(cap(60 * S, None, now), 60 * S);
        assert_eq!(
            cap(60 * S, Some(now + 2 * S), now),
            2 * S - Duration::from_nanos(1)
        );
        assert_eq!(cap(S, Some(now + 2 * S), now), S);
        assert_eq!(cap(S, Some(now), now + S), Duration::ZERO);
    }

    #[test]
    fn only_an_outage_retry_spends_the_budget() {
        let retry = |throttle| Step::Retry {
            hint: None,
            throttle,
        };
        assert!(!spends(Step::Fresh, false));
        assert!(!spends(Step::Resume, true));
        assert!(spends(retry(false), true));
        assert!(spends(retry(true), false));
        assert!(!spends(retry(true), true));
    }

    #[test]
    fn slots_follow_each_other_at_the_rate() {
        let now = Instant::now();
        assert_eq!(slot(now + S, now), now + S);
        assert_eq!(slot(now, now + S), now + S);
        assert_eq!(after_slot(now, 4.0), now + S / 4);
        // A tiny rate is a long interval, not none; nothing panics.
        assert!(after_slot(now, f64::MIN_POSITIVE) > now + 1000 * S);
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::MAX] {
            assert!(after_slot(now, rate) >= now);
        }
    }
}
