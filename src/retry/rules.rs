//! The admission rules a store applies, each in one place: what a throttle does to a
//! partition, how a shut gate is kept and merged, the cap on any wait, which retries take from
//! the budget, and the pacing slot's arithmetic.
//!
//! Both stores call them: this process's [`State`](super::state::State) and a fleet's (whose
//! Lua scripts must run inside Redis for atomicity; they are checked against these rules by
//! one conformance table run on both stores). The planner ([`plan`](super::plan)) reads what
//! the stores keep. Pure: no clock, no lock, no I/O.

use std::collections::VecDeque;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::hints::Reading;
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

/// How many times a request waiting for its pacing slot may be passed over by requests that
/// rank above it: then none passes it any more, so a lower priority waits at most that many
/// slots longer than first come, first served would have it wait.
pub(crate) const MAX_PASSED: u16 = 32;

/// Who holds the pacing slots given out and not yet reached, and who takes which: a retry
/// before a fresh request, a higher [`Priority`](super::Priority) before a lower, first come
/// first served among equals, and no one passed over more than [`MAX_PASSED`] times.
///
/// A request that ranks above some holders takes the earliest slot it may (none before its
/// own earliest time), and each holder from there on moves one slot later; the slot the pacer
/// gives out for it goes to the last. So a priority changes who goes when, never how many go:
/// the pace is the same. Holders learn their slot when they wake for it ([`when`](Self::when)):
/// a slot only ever moves later, so one that moved means waiting again.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Lanes {
    /// The slots given out, earliest first.
    slots: VecDeque<Instant>,
    /// Their holders, in the order they go: the `i`-th holds `slots[i]`.
    holders: VecDeque<Holder>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Holder {
    /// The request's number (see [`State::lane`](super::state::State::lane)).
    id: u64,
    rank: u16,
    /// How many times a request ranking above it took a slot ahead of it.
    passed: u16,
}

/// How a request ranks for the next slot: any retry above any fresh request, then by priority.
pub(crate) fn rank(retry: bool, priority: u8) -> u16 {
    u16::from(retry) << 8 | u16::from(priority)
}

impl Lanes {
    /// The index of the slot a request of `rank`, not to go before `earliest`, would take:
    /// after every holder it may not pass, at no slot before `earliest` (`slots.len()`: a
    /// slot not given out yet).
    fn position(&self, rank: u16, earliest: Instant) -> usize {
        let after = self
            .holders
            .iter()
            .rposition(|h| h.rank >= rank || h.passed >= MAX_PASSED)
            .map_or(0, |i| i + 1);
        after.max(self.slots.partition_point(|slot| *slot < earliest))
    }

    /// The slot already given out that a request of `rank` would take at `now`, if it would
    /// take one: else the pacer's next free slot is its.
    pub(crate) fn ahead(&self, rank: u16, now: Instant) -> Option<Instant> {
        self.slots.get(self.position(rank, now)).copied()
    }

    /// Request `id` of `rank`, not to go before `earliest`, takes a slot; the pacer gave out
    /// `fresh` for it. The slot it holds, which may be one given out earlier (its holder and
    /// those after it each move one slot later).
    pub(crate) fn take(
        &mut self,
        id: u64,
        rank: u16,
        earliest: Instant,
        fresh: Instant,
    ) -> Instant {
        self.went(id);
        let sorted = self.slots.partition_point(|slot| *slot <= fresh);
        self.slots.insert(sorted, fresh);
        let index = self.position(rank, earliest).min(self.holders.len());
        for holder in self.holders.range_mut(index..) {
            holder.passed = holder.passed.saturating_add(1);
        }
        self.holders.insert(
            index,
            Holder {
                id,
                rank,
                passed: 0,
            },
        );
        self.slots.get(index).copied().unwrap_or(fresh)
    }

    /// The slot request `id` holds now, if it holds one.
    pub(crate) fn when(&self, id: u64) -> Option<Instant> {
        let index = self.holders.iter().position(|h| h.id == id)?;
        self.slots.get(index).copied()
    }

    /// Request `id` goes (or gave up its slot): the slot it holds is spent.
    pub(crate) fn went(&mut self, id: u64) {
        if let Some(index) = self.holders.iter().position(|h| h.id == id) {
            self.holders.remove(index);
            self.slots.remove(index);
        }
    }

    /// Forgets the slots before `before`: their holders went without saying so (a request
    /// dropped while it waited) or are gone; one that comes back holds no slot and goes.
    pub(crate) fn forget(&mut self, before: Instant) {
        while self.slots.front().is_some_and(|slot| *slot < before) {
            self.slots.pop_front();
            self.holders.pop_front();
        }
    }

    /// Whether no slot is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }
}

/// What the server said is left of its quota, counted down by the requests started since: no
/// more than `left` requests start before `until` (the IETF draft: a client SHOULD NOT exceed
/// `r` before `t`).
///
/// Requests are numbered as they start (a *ticket*). A reading taken from the answer to
/// request `ticket` does not count the requests started after it (the server may not have
/// seen them when it answered): they come off what it says is left. Readings of requests
/// started earlier than the one the allowance was read from are older news, and change
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allowance {
    /// Requests that may still start before `until`.
    pub(crate) left: u64,
    /// When the server said its quota is whole again.
    pub(crate) until: Instant,
    /// The ticket of the request whose answer this was read from; for a refill, the first
    /// ticket of its window.
    pub(crate) ticket: u64,
    /// What a window holds, and the window, when the server states them: at `until` the
    /// allowance refills to the quota for one more window; without, it lapses there.
    pub(crate) quota: Option<(u64, Duration)>,
    /// Tickets handed out when it was first read: a request refused with a ticket from
    /// `since` on was sent under it.
    pub(crate) since: u64,
    /// A request sent under it was refused: the quota is not this client's alone (other
    /// clients, or processes not sharing a fleet, spend it too), so pacing learned from the
    /// refusals holds as well.
    pub(crate) contradicted: bool,
    /// Refilled rather than read: its `until` is a guess (the last reset plus a window) that
    /// the first reading of the window replaces. Limiters that start a window at its first
    /// request move their windows later than such a grid.
    pub(crate) refilled: bool,
}

impl Allowance {
    /// The allowance `reading` gives at `now`, read from the answer to request `ticket` when
    /// `started` tickets have been handed out.
    pub(crate) fn read(reading: Reading, ticket: u64, started: u64, now: Instant) -> Self {
        let after = started.saturating_sub(ticket.saturating_add(1));
        Self {
            left: reading.remaining.saturating_sub(after),
            until: later(now, reading.reset),
            ticket,
            quota: reading.quota,
            since: started,
            contradicted: false,
            refilled: false,
        }
    }

    /// Nothing left until `until`: a fleet's store's word on its allowance.
    pub(crate) fn spent_until(until: Instant) -> Self {
        Self {
            left: 0,
            until,
            ticket: 0,
            quota: None,
            since: 0,
            contradicted: false,
            refilled: false,
        }
    }

    /// A request with `ticket` was refused: if it was sent under this allowance, the allowance
    /// is contradicted.
    pub(crate) fn refused(&mut self, ticket: u64) {
        self.contradicted |= ticket >= self.since;
    }

    /// This allowance told `newer`: older news changes nothing; a newer reading of the same
    /// window lowers what is left and brings the reset nearer, never the reverse (a server
    /// that rounds its reset up is then followed to its earliest word), except that a refill's
    /// guessed reset gives way to the server's. The quota is the newer one, over the longer of
    /// the two windows (a window only guessed from resets is at least the longest seen).
    pub(crate) fn merge(self, newer: Self) -> Self {
        if newer.ticket < self.ticket {
            return self;
        }
        let quota = match (self.quota, newer.quota) {
            (Some((_, old)), Some((quota, window))) => Some((quota, window.max(old))),
            (old, new) => new.or(old),
        };
        Self {
            left: self.left.min(newer.left),
            until: if self.refilled {
                newer.until
            } else {
                self.until.min(newer.until)
            },
            ticket: newer.ticket,
            quota,
            since: self.since,
            contradicted: self.contradicted,
            refilled: false,
        }
    }

    /// The allowance at `now`, when `started` tickets have been handed out: itself before its
    /// reset; in the window after it, refilled to the stated quota (its first ticket
    /// `started`: readings of requests before it are of an earlier window); else `None`,
    /// nothing known (no quota stated, contradicted, or a whole window went by unseen).
    pub(crate) fn at(self, now: Instant, started: u64) -> Option<Self> {
        if now < self.until {
            return Some(self);
        }
        // A contradicted allowance is not refilled: the window's quota is not this client's.
        let (quota, window) = self.quota.filter(|_| !self.contradicted)?;
        let until = later(self.until, window);
        (now < until).then_some(Self {
            left: quota,
            until,
            ticket: started,
            quota: self.quota,
            refilled: true,
            ..self
        })
    }

    /// Whether a request planned to go at `at` must wait for the reset: nothing left before it.
    pub(crate) fn holds(self, at: Instant) -> bool {
        self.left == 0 && at < self.until
    }
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

    #[test]
    fn an_allowance_counts_what_started_after_its_reading_and_refills_once() {
        let now = Instant::now();
        let reading = |remaining, reset, quota| Reading {
            remaining,
            reset,
            quota,
        };
        // Read from the answer to request 3 when 10 have started: 6 started after it, which
        // the server may not have counted yet.
        let a = Allowance::read(reading(8, S, Some((20, S))), 3, 10, now);
        assert_eq!((a.left, a.until, a.ticket), (2, now + S, 3));
        let none_left = Allowance::read(reading(4, S, None), 3, 10, now);
        assert_eq!(none_left.left, 0);
        assert!(none_left.holds(now) && !none_left.holds(now + S));
        assert!(!a.holds(now));

        // Older news changes nothing; a newer reading lowers what is left and brings the reset
        // nearer, never the reverse.
        let older = Allowance::read(reading(0, 5 * S, None), 2, 10, now);
        assert_eq!(a.merge(older), a);
        let newer = Allowance::read(reading(9, S / 2, None), 8, 10, now);
        let merged = a.merge(newer);
        assert_eq!(
            (merged.left, merged.until, merged.ticket),
            (2, now + S / 2, 8)
        );
        assert_eq!(merged.quota, Some((20, S)), "the stated quota is kept");
        // A window guessed from resets is the longest seen.
        let guessed = |reset| Allowance::read(reading(1, reset, Some((20, reset))), 9, 10, now);
        assert_eq!(guessed(S).merge(guessed(S / 2)).quota, Some((20, S)));
        let later_reset = Allowance::read(reading(1, 3 * S, None), 9, 10, now);
        assert_eq!(a.merge(later_reset).until, now + S);

        // At its reset: refilled to the stated quota for one window, its first ticket the
        // next one handed out; a window later, or without a stated quota, nothing is known.
        assert_eq!(a.at(now + S / 2, 12), Some(a));
        let refilled = a.at(now + S, 12).unwrap();
        assert_eq!(
            (refilled.left, refilled.until, refilled.ticket),
            (20, now + 2 * S, 12)
        );
        assert_eq!(a.at(now + 2 * S, 12), None);
        // The first reading of a refilled window replaces its guessed reset, later or not.
        let read_later = Allowance::read(reading(5, S + S / 2, None), 13, 14, now + S);
        let merged = refilled.merge(read_later);
        assert_eq!((merged.left, merged.until), (5, now + 2 * S + S / 2));
        assert!(!merged.refilled);
        // A refusal of a request sent under it contradicts it, and that is kept; one sent
        // before it was read does not.
        let mut kept = a;
        kept.refused(9);
        assert!(!kept.contradicted, "ticket 9 started before the reading");
        kept.refused(10);
        assert!(kept.contradicted && kept.merge(newer).contradicted);
        assert_eq!(kept.at(now + S, 12), None, "not refilled");
        assert_eq!(none_left.at(now + S, 12), None);
        // Nothing overflows on absurd figures.
        let huge = Allowance::read(
            reading(u64::MAX, Duration::MAX, Some((u64::MAX, Duration::MAX))),
            u64::MAX,
            0,
            now,
        );
        assert!(huge.at(now, 0).is_some());
        let _ = huge.at(huge.until, u64::MAX);
    }
    #[test]
    fn lanes_give_the_next_slot_to_retries_then_priority_then_first_come() {
        let now = Instant::now();
        let ms = Duration::from_millis(1);
        let t = |i: u32| now + 100 * ms * i;
        let (batch, interactive) = (rank(false, 64), rank(false, 192));
        let mut lanes = Lanes::default();
        // Three batch requests take the slots the pacer gives out, in turn.
        for id in 1..=3 {
            assert_eq!(lanes.ahead(batch, now), None);
            assert_eq!(lanes.take(id, batch, now, t(id as u32)), t(id as u32));
        }
        // An interactive request takes the first of them; each batch holder moves one on, and
        // the slot given out for it goes to the last.
        assert_eq!(lanes.ahead(interactive, now), Some(t(1)));
        assert_eq!(lanes.take(10, interactive, now, t(4)), t(1));
        assert_eq!(
            (1..=3).map(|id| lanes.when(id)).collect::<Vec<_>>(),
            [t(2), t(3), t(4)].map(Some)
        );
        // A second interactive request goes after the first, and a retry before both.
        assert_eq!(lanes.take(11, interactive, now, t(5)), t(2));
        assert_eq!(lanes.take(20, rank(true, 64), now, t(6)), t(1));
        assert_eq!(
            [20, 10, 11, 1, 2, 3].map(|id| lanes.when(id)),
            [1, 2, 3, 4, 5, 6].map(|i| Some(t(i)))
        );
        // None goes before its own earliest time: between slots, the next one.
        assert_eq!(lanes.take(12, interactive, t(4) + ms, t(7)), t(5));
        assert_eq!(lanes.when(1), Some(t(4)));
        assert_eq!(lanes.when(2), Some(t(6)));
        // Going spends the slot; the others keep theirs.
        lanes.went(20);
        assert_eq!(lanes.when(20), None);
        assert_eq!(lanes.when(10), Some(t(2)));
        // Slots long past are forgotten with their holders.
        lanes.forget(t(3));
        assert_eq!((lanes.when(10), lanes.when(11)), (None, Some(t(3))));
        assert!(!lanes.is_empty());
    }

    #[test]
    fn a_holder_passed_over_max_passed_times_is_passed_no_more() {
        let now = Instant::now();
        let ms = Duration::from_millis(1);
        let mut lanes = Lanes::default();
        lanes.take(0, rank(false, 0), now, now + ms);
        for i in 1..=u64::from(MAX_PASSED) {
            let fresh = now + ms * (i as u32 + 1);
            // Each interactive request goes ahead of the batch one while it may be passed.
            assert_eq!(
                lanes.take(i, rank(false, 255), now, fresh),
                now + ms * i as u32
            );
        }
        assert_eq!(lanes.when(0), Some(now + ms * (u32::from(MAX_PASSED) + 1)));
        // Passed MAX_PASSED times: the next goes after it.
        let last = now + ms * (u32::from(MAX_PASSED) + 2);
        assert_eq!(lanes.take(99, rank(true, 255), now, last), last);
        assert_eq!(lanes.when(0), Some(now + ms * (u32::from(MAX_PASSED) + 1)));
    }
}
