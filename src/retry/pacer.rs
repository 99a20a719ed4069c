//! Pacing after a 429: a partition's requests are released at a learned rate, not at once.
//!
//! Sans-IO: every method takes the time. The shared state keeps one `Pacer` per throttled
//! partition and asks it for slots (a virtual schedule: each request takes the next free
//! instant, one interval after the last one taken).
//!
//! The rate is learned the way adaptive clients do it (measure, decrease on a throttle,
//! recover gradually), with the measurement taken from what the server admitted:
//! - on a throttle, the rate becomes the answers other than 429 of the cycle that just ended
//!   (what the server's limiter let through, its 5xx included) over
//!   the cycle's length, up to the moment the server named to come back (a fixed window's
//!   or a token bucket's refill rate, as seen from here); with the `RateLimit` fields read, a
//!   `RateLimit-Policy` quota (`q` over `w`) sets it directly;
//! - a throttle with no hint, or a first throttle whose cycle measures nothing (fewer than
//!   [`MIN_ADMITTED`] answers: a limiter met at once, as a leaky bucket without burst refuses
//!   all but one of a crowd), says nothing of the server's window, so the rate is *searched*:
//!   from [`START`] it doubles every [`DOUBLE_EVERY`] until a throttle, which sets a ceiling
//!   and cuts the rate to [`BACK_OFF`] of it (a throttle with a hint, whose overshoot costs
//!   the server's wait, sets [`HINTED`] of it); from there the rate grows back along a cubic
//!   curve, steep at first, flat near the ceiling (reached after [`FLAT`]), then up again (a
//!   limit that rose is found); each throttle on the way sets a new ceiling. Slots stay evenly
//!   spaced, since a leaky bucket refuses any request sooner than its interval;
//! - a measured or stated rate is held for [`HOLD`], then grows (cubically, slowly at first)
//!   for [`GROW`]; a throttle on the way measures again, or else cuts the rate (a paced cycle's
//!   measurement is taken only when it keeps at least [`BACK_OFF`] of the rate: below that it
//!   counts the wait the server asked for, not what it admits); a rate that doubled without
//!   a throttle has recovered, and pacing ends;
//! - a search paces everything only once a second request is refused: one request refused
//!   alone is no crowd, and is left to its gate and its own wait (until then only the
//!   retries of refused requests take slots);
//! - a throttle voids the slots given out before it (their holders take new ones at the new
//!   rate: at the old spacing, a leaky bucket would refuse every other one); the new schedule
//!   starts when the server named or, without a hint, one interval after the refusal (the
//!   limiter admitted a request just before it);
//! - only a request sent at a slot of the current schedule counts as a new throttle: one sent
//!   before (it had already left when the throttle was learned), at a voided slot, or
//!   outside the pace is part of a crowd the rate already answered for.

use std::time::Duration;

use tokio::time::Instant;

use super::later;
use super::rules::{self, Lanes};

/// How long a measured rate is kept as it is.
pub(crate) const HOLD: Duration = Duration::from_secs(10);
/// How long after the hold a measured rate takes to double, ending the pacing.
pub(crate) const GROW: Duration = Duration::from_secs(10);
/// The fewest admitted answers a rate is measured from.
pub(crate) const MIN_ADMITTED: u64 = 8;
/// The shortest cycle a rate is measured over.
const MIN_CYCLE: Duration = Duration::from_millis(100);
/// How many of the server's windows (its named wait, or a second) a cycle may span and still
/// measure its rate.
const WINDOWS: u32 = 10;
/// What a throttle keeps of the rate it met, when it measures nothing.
pub(crate) const BACK_OFF: f64 = 0.8;
/// What a search keeps of the rate a throttle with a hint met, as the ceiling it grows back
/// to: each overshoot costs the partition the server's wait, so the limit (below the rate it
/// met) is approached from under it. A throttle without a hint costs one interval, and the
/// ceiling is the rate met.
pub(crate) const HINTED: f64 = 0.95;
/// The rate a search starts from, in requests a second.
pub(crate) const START: f64 = 4.0;
/// How often a search's rate doubles until the first throttle.
pub(crate) const DOUBLE_EVERY: Duration = Duration::from_millis(250);
/// How many doublings a search makes before it ends the pacing (the rate is then thousands
/// of times [`START`]: nothing is held back any more).
const DOUBLINGS: u32 = 12;
/// How long after a throttle a searched rate is back at the ceiling it met.
pub(crate) const FLAT: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pacer {
    /// Requests a second at the start of the cycle.
    rate: f64,
    /// The slowest rate allowed: one request per `max_cooldown`, so no pacing can hold a
    /// partition longer than a gate may.
    floor: f64,
    /// When the cycle began: the moment the server named to come back.
    since: Instant,
    /// Answers other than 429 in this cycle.
    admitted: u64,
    /// The next free slot.
    next: Instant,
    /// Whether the rate is one the server stated (a quota, or what it says is left), which is
    /// the whole key's, rather than one measured from this process's own answers.
    stated: bool,
    /// How the rate moves from `since` on.
    growth: Growth,
    /// How many times the slots given out were voided (see [`Pacer::generation`]).
    generation: u32,
    /// A search that waits for a second refusal before it paces anything: one request
    /// refused alone is no crowd to pace (its gate and its own wait are all there is).
    pending: bool,
    /// A quota the user configured: the rate never goes above it, and the pacing does not
    /// end while requests come (see [`Pacer::configured`]).
    ceiling: Option<f64>,
    /// How far ahead of the pace a request may go: a configured burst, less one interval.
    tolerance: Duration,
    /// Who holds the slots given out (of this schedule) and not yet reached.
    lanes: Lanes,
}

/// How long a configured pacer is kept without a request taking a slot: then it is dropped,
/// and the next request starts a fresh one (with its burst).
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// How long past its slot a waiting request's slot is kept for it: one whose holder has not
/// come by then (dropped while it waited) is forgotten.
pub(crate) const FORGET: Duration = Duration::from_secs(1);

/// The slowest rate a pacer holds: one request per `max_cooldown`, so no pacing can hold a
/// partition longer than a gate may.
fn floor(max_cooldown: Duration) -> f64 {
    1.0 / max_cooldown.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// How a pacer's rate changes with time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Growth {
    /// A measured or stated rate: held for [`HOLD`], then up to twice over [`GROW`].
    Held,
    /// Searching upwards from `rate`: doubles every [`DOUBLE_EVERY`].
    Doubling,
    /// Searched: from [`BACK_OFF`] of `ceiling` back to it over [`FLAT`], cubically, then up.
    /// `guess`: the ceiling is a rate a search met (a guess at the whole limiter), not a
    /// measured or stated rate that was cut (still this process's share, or the server's word).
    Cubic { ceiling: f64, guess: bool },
}

/// What a throttle tells the pacer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throttle {
    pub(crate) now: Instant,
    /// When the server said to come back (`now` without a hint).
    pub(crate) reopen: Instant,
    /// A quota the server stated, in requests a second.
    pub(crate) quota: Option<f64>,
}

impl Throttle {
    /// The wait the server named.
    fn wait(&self) -> Duration {
        self.reopen.saturating_duration_since(self.now)
    }
}

impl Pacer {
    /// A pacer for a partition that was not paced: at a quota the server stated, or the rate of
    /// `admitted` answers (other than 429) since `quiet` (when they began to be counted), or
    /// else searching from [`START`].
    pub(crate) fn start(
        throttle: Throttle,
        admitted: u64,
        quiet: Option<Instant>,
        max_cooldown: Duration,
    ) -> Self {
        let cycle = quiet.map_or(Duration::ZERO, |q| {
            throttle.reopen.saturating_duration_since(q)
        });
        let known = throttle
            .quota
            .or_else(|| measure(admitted, cycle, throttle.wait()));
        let mut pacer = Self {
            rate: known.unwrap_or(START),
            floor: floor(max_cooldown),
            since: throttle.reopen,
            admitted: 0,
            next: throttle.reopen,
            stated: throttle.quota.is_some(),
            growth: if known.is_some() {
                Growth::Held
            } else {
                Growth::Doubling
            },
            generation: 0,
            pending: known.is_none(),
            ceiling: None,
            tolerance: Duration::ZERO,
            lanes: Lanes::default(),
        };
        pacer.next = pacer.restart(&throttle);
        pacer
    }

    /// A pacer for a quota the user configured, `rate` requests a second of which `burst` may
    /// go at once, from `now`.
    pub(crate) fn configured(rate: f64, burst: u32, now: Instant, max_cooldown: Duration) -> Self {
        let interval = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(Duration::MAX);
        Self {
            rate,
            floor: floor(max_cooldown),
            since: now,
            admitted: 0,
            next: now,
            stated: true,
            growth: Growth::Held,
            generation: 0,
            pending: false,
            ceiling: Some(rate),
            tolerance: interval.saturating_mul(burst.saturating_sub(1)),
            lanes: Lanes::default(),
        }
    }

    /// A throttle of a request that went at a slot of schedule `slot` (`None`: at no slot).
    pub(crate) fn throttled(&mut self, throttle: Throttle, slot: Option<u32>) {
        if self.pending {
            // A second refusal, of the same crowd or not: the search paces from now on,
            // starting over from its first rate at the time the server named.
            self.pending = false;
            self.since = self.since.max(throttle.reopen);
            self.next = self.next.max(self.restart(&throttle));
            return;
        }
        if slot != Some(self.generation) {
            // Not sent at a slot of the current schedule: part of a crowd the pace already
            // answered for (sent before it, or at a slot a throttle since voided), or sent
            // outside the pace. It says nothing about the rate.
            return;
        }
        let cycle = throttle.reopen.saturating_duration_since(self.since);
        let met = self.rate_at(throttle.now);
        // A measurement below what backing off keeps is not the server's rate but the wait
        // it asked for, counted in the cycle (a leaky bucket that adds a constant
        // `Retry-After` to its refusals).
        let known = throttle.quota.or_else(|| {
            measure(self.admitted, cycle, throttle.wait()).filter(|rate| *rate >= met * BACK_OFF)
        });
        // A cut keeps what the rate it cut was: the server's word, a share this process
        // measured, or a search's guess.
        self.stated = throttle.quota.is_some() || (known.is_none() && self.stated);
        let guess = self.searched();
        // A search's overshoot that cost the server's wait is not repeated at the same rate.
        let ceiling = if guess && !throttle.wait().is_zero() {
            met * HINTED
        } else {
            met
        };
        (self.rate, self.growth) = match known {
            Some(rate) => (rate, Growth::Held),
            None => (ceiling * BACK_OFF, Growth::Cubic { ceiling, guess }),
        };
        self.since = throttle.reopen;
        self.admitted = 0;
        // The slots given out at the old rate are void: the schedule starts again, and their
        // holders take new slots.
        self.next = self.restart(&throttle);
        self.generation = self.generation.wrapping_add(1);
        self.lanes = Lanes::default();
    }

    /// Where the schedule starts again after `throttle`: at the moment the server named, or,
    /// without a hint, one interval after the refusal. The limiter admitted a request just
    /// before it (the one the refused request came too soon after), and a leaky bucket refuses
    /// anything sooner than its interval: a first slot at the refusal itself would be refused
    /// too, and taken for the rate's own miss.
    fn restart(&self, throttle: &Throttle) -> Instant {
        if throttle.wait().is_zero() {
            rules::after_slot(throttle.reopen, self.rate_at(throttle.reopen))
        } else {
            throttle.reopen
        }
    }

    /// Whether the rate was searched rather than measured or stated (or cut from either): a
    /// search's rate is this process's guess at the whole limiter, not a share of what it
    /// admitted, so a fleet does not add it to the others'. A measured share that a throttle
    /// cut is still a share: the fleet must hear of the cut, or it keeps pacing at the old sum.
    pub(crate) fn searched(&self) -> bool {
        matches!(
            self.growth,
            Growth::Doubling | Growth::Cubic { guess: true, .. }
        )
    }

    /// Whether the pacer paces: not while a search waits for a second refusal.
    pub(crate) fn pacing(&self) -> bool {
        !self.pending
    }

    /// An answer other than a 429 in this cycle.
    pub(crate) fn admitted(&mut self) {
        self.admitted += 1;
    }

    /// The earliest free slot: the next one, less what a configured burst allows.
    pub(crate) fn next(&self) -> Instant {
        self.next.checked_sub(self.tolerance).unwrap_or(self.next)
    }

    /// Which schedule the slots given out now belong to: a throttle voids the slots of the
    /// schedule before it, and a request resuming with one of those takes a new slot.
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    /// Takes the slot at `at` (no earlier than [`next`](Self::next)).
    #[cfg(test)]
    pub(crate) fn take(&mut self, at: Instant) {
        self.take_shared(at, 1);
    }

    /// Takes the slot at `at` at one `share`th of the rate: a process of a fleet planning
    /// alone, at its part of the fleet's rate.
    pub(crate) fn take_shared(&mut self, at: Instant, share: u32) {
        let rate = self.rate_at(at) / f64::from(share.max(1));
        self.next = rules::after_slot(rules::slot(self.next, at), rate);
    }

    /// The slot a request of `rank` would take at `now`: one already given out to a request
    /// it ranks above (see [`Lanes`]), or else the next free one.
    pub(crate) fn next_for(&self, rank: u16, now: Instant) -> Instant {
        self.lanes.ahead(rank, now).unwrap_or_else(|| self.next())
    }

    /// [`take_shared`](Self::take_shared) for request `lane` of `rank` that is to wait for
    /// its slot, planned at `at` (from [`next_for`](Self::next_for), or later): the slot it
    /// holds, which the lanes decide.
    pub(crate) fn take_lane(
        &mut self,
        at: Instant,
        share: u32,
        (lane, rank): (u64, u16),
        now: Instant,
    ) -> Instant {
        let fresh = rules::slot(self.next(), at);
        self.take_shared(at, share);
        self.lanes.forget(now.checked_sub(FORGET).unwrap_or(now));
        self.lanes.take(lane, rank, at, fresh)
    }

    /// The slot request `lane` holds, as the lanes have it now (a request ranking above it
    /// may have moved it later).
    pub(crate) fn held(&self, lane: u64) -> Option<Instant> {
        self.lanes.when(lane)
    }

    /// Request `lane` goes, or no longer holds its slot.
    pub(crate) fn went(&mut self, lane: u64) {
        if !self.lanes.is_empty() {
            self.lanes.went(lane);
        }
    }

    /// The rate at `now`: held, then recovering; or searched.
    pub(crate) fn rate_at(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.since).as_secs_f64();
        let rate = match self.growth {
            Growth::Held => {
                let x = ((t - HOLD.as_secs_f64()) / GROW.as_secs_f64()).max(0.0);
                self.rate * (1.0 + x * x * x)
            }
            Growth::Doubling => {
                let steps = (t / DOUBLE_EVERY.as_secs_f64()).min(f64::from(DOUBLINGS));
                self.rate * steps.exp2()
            }
            Growth::Cubic { ceiling, .. } => {
                // ceiling * (1 + c (t - FLAT)^3), with c such that it starts at BACK_OFF.
                let flat = FLAT.as_secs_f64();
                let c = (1.0 - BACK_OFF) / (flat * flat * flat);
                let x = t - flat;
                ceiling * (1.0 + c * x * x * x)
            }
        };
        let rate = if rate.is_finite() { rate } else { f64::MAX };
        let rate = rate.max(self.floor);
        self.ceiling.map_or(rate, |ceiling| rate.min(ceiling))
    }

    /// Whether the rate has recovered, so the partition need not be paced any more.
    pub(crate) fn ended(&self, now: Instant) -> bool {
        now >= self.ends()
    }

    /// Whether the pacer is for a quota the user configured.
    pub(crate) fn is_configured(&self) -> bool {
        self.ceiling.is_some()
    }

    /// When the pacing ends unless another throttle comes: a held rate once it has doubled, a
    /// search once it stops doubling, a searched rate once it is twice its ceiling.
    pub(crate) fn ends(&self) -> Instant {
        if self.ceiling.is_some() {
            // A configured quota holds while requests come; an idle one is dropped.
            return later(self.next, IDLE);
        }
        let after = match self.growth {
            Growth::Held => HOLD + GROW,
            Growth::Doubling => DOUBLE_EVERY * DOUBLINGS,
            // 1 + c (t - FLAT)^3 = 2 when t - FLAT = FLAT / cbrt(1 - BACK_OFF).
            Growth::Cubic { .. } => FLAT + FLAT.div_f64((1.0 - BACK_OFF).cbrt()),
        };
        later(self.since, after)
    }

    /// Whether the rate is the server's word rather than this process's measurement.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn stated(&self) -> bool {
        self.stated
    }
}

/// `admitted` answers over `cycle`, when that is enough to go by: a wait the server named
/// (only a hint names a window to measure over; a refusal without one says nothing of it, and
/// the rate is searched), enough answers, over a cycle long enough to time and short enough
/// to be about the server's window (at most [`WINDOWS`] times the wait it named, or a
/// second). Over a longer cycle the count says how busy the caller was, not what the server
/// admits: eight requests in an idle hour followed by a 429 must not pace the next burst at
/// one request every seven minutes.
fn measure(admitted: u64, cycle: Duration, wait: Duration) -> Option<f64> {
    let longest = wait.max(Duration::from_secs(1)).saturating_mul(WINDOWS);
    (!wait.is_zero() && admitted >= MIN_ADMITTED && (MIN_CYCLE..=longest).contains(&cycle))
        .then(|| admitted as f64 / cycle.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn throttle(now: Instant, hint: Duration) -> Throttle {
        Throttle {
            now,
            reopen: now + hint,
            quota: None,
        }
    }

    /// Whether the pacer searches (no measured or stated rate): it starts at [`START`].
    fn searching(pacer: &Pacer) -> bool {
        pacer.growth == Growth::Doubling
    }

    #[test]
    fn the_first_cycle_measures_what_the_server_admitted() {
        let t0 = Instant::now();
        // 200 answers from t0 on, then a 429 at 5 ms saying "1 s".
        let pacer = Pacer::start(throttle(t0 + 5 * MS, S), 200, Some(t0), 60 * S);
        let rate = pacer.rate_at(t0 + S);
        assert!((198.0..=200.0).contains(&rate), "{rate}");
        assert_eq!(
            pacer.next(),
            t0 + 1005 * MS,
            "nothing before the server's time"
        );
    }

    #[test]
    fn slots_are_one_interval_apart_and_never_in_the_past_of_the_schedule() {
        let t0 = Instant::now();
        let mut pacer = Pacer::start(
            Throttle {
                now: t0,
                reopen: t0 + S,
                quota: Some(100.0),
            },
            0,
            None,
            60 * S,
        );
        let mut slots = Vec::new();
        for _ in 0..3 {
            let at = pacer.next();
            pacer.take(at);
            slots.push(at);
        }
        assert_eq!(slots, [t0 + S, t0 + 1010 * MS, t0 + 1020 * MS]);
        // After a quiet spell, the next slot is the time it is asked for.
        pacer.take(t0 + 2 * S);
        assert_eq!(pacer.next(), t0 + 2010 * MS);
    }

    #[test]
    fn too_few_answers_measure_nothing_and_the_rate_is_searched() {
        let t0 = Instant::now();
        assert!(searching(&Pacer::start(
            throttle(t0, S),
            MIN_ADMITTED - 1,
            Some(t0 - S),
            60 * S
        )));
        // Nor does a cycle too short to time.
        assert!(searching(&Pacer::start(
            throttle(t0, Duration::ZERO),
            100,
            Some(t0 - MS),
            60 * S
        )));
        // Nor one far longer than the server's window: that measures how busy the caller
        // was, not what the server admits.
        assert!(searching(&Pacer::start(
            throttle(t0, S),
            100,
            Some(t0 - 3600 * S),
            60 * S
        )));
        assert!(!searching(&Pacer::start(
            throttle(t0, S),
            100,
            Some(t0 - 9 * S),
            60 * S
        )));
        assert!(!searching(&Pacer::start(
            throttle(t0, 60 * S),
            100,
            Some(t0 - 500 * S),
            60 * S
        )));
    }

    #[test]
    fn a_cut_share_is_still_a_share_and_a_cut_word_still_the_servers() {
        let t0 = Instant::now();
        // This process's share of a fixed window, measured (about 50 a second)...
        let mut share = Pacer::start(throttle(t0 + 25 * MS, S), 50, Some(t0), 60 * S);
        assert!(!share.searched() && !share.stated());
        // ...then refused at one of its slots 4 s on, the cycle measuring too little to go
        // by: the rate is cut, and it is still this process's share, which a fleet adds to
        // the others' (as a search's guess it was left out, and the fleet kept pacing at the
        // old sum: a 429 and a shut second every couple of seconds).
        let at = t0 + 4 * S;
        share.throttled(throttle(at, S), Some(share.generation()));
        assert!((share.rate_at(at) - BACK_OFF * 50.0 / 1.025).abs() < 0.01);
        assert!(!share.searched() && !share.stated());
        // A rate the server stated, cut, is still the server's word (never added up).
        let mut word = Pacer::start(
            Throttle {
                quota: Some(100.0),
                ..throttle(t0, S)
            },
            0,
            None,
            60 * S,
        );
        word.throttled(throttle(at, S), Some(word.generation()));
        assert!(!word.searched() && word.stated());
        assert!((word.rate_at(at) - BACK_OFF * 100.0).abs() < 1e-9);
        // A search's guess, cut, is still a guess.
        let mut guess = search(t0);
        let at = t0 + 3 * DOUBLE_EVERY;
        guess.throttled(throttle(at, Duration::ZERO), Some(guess.generation()));
        assert!(guess.searched());
    }

    /// A search that met its second refusal.
    fn search(t0: Instant) -> Pacer {
        let mut pacer = Pacer::start(throttle(t0, Duration::ZERO), 1, Some(t0), 60 * S);
        assert!(!pacer.pacing(), "one refusal paces nothing");
        pacer.throttled(throttle(t0, Duration::ZERO), None);
        assert!(pacer.pacing(), "a second one does");
        pacer
    }

    /// Against nginx's `limit_req` (a leaky bucket, no burst), one run in two ran at 1.7x
    /// its ideal: the first slot of a schedule was the refusal's own instant, a request sent
    /// there came less than an interval after the one the limiter had just admitted, and its
    /// 429 was taken for the rate's miss (the search's ceiling became its first rate, 4 a
    /// second, for 16 s). The same after a cut: three cuts in 140 ms.
    #[test]
    fn a_schedule_restarted_without_a_hint_starts_one_interval_after_the_refusal() {
        let t0 = Instant::now();
        // The first refusal's own retry, and the search that a second one starts.
        let first = Pacer::start(throttle(t0, Duration::ZERO), 1, Some(t0), 60 * S);
        assert_eq!(first.next(), t0 + Duration::from_secs_f64(1.0 / START));
        let pacer = search(t0);
        assert_eq!(pacer.next(), t0 + Duration::from_secs_f64(1.0 / START));
        // A cut: one interval of the cut rate after the refusal.
        let mut pacer = search(t0);
        let at = t0 + 3 * DOUBLE_EVERY;
        pacer.take(at - 10 * MS);
        pacer.throttled(throttle(at, Duration::ZERO), Some(pacer.generation()));
        let cut = BACK_OFF * 8.0 * START;
        assert_eq!(pacer.next(), at + Duration::from_secs_f64(1.0 / cut));
        // With a hint, the schedule starts when the server said.
        let mut pacer = search(t0);
        pacer.take(at - 10 * MS);
        pacer.throttled(throttle(at, S), Some(pacer.generation()));
        assert_eq!(pacer.next(), at + S);
    }

    /// Against nginx with `Retry-After: 1` on its refusals, each overshoot of a search shut
    /// the partition for that second; growing back to the very rate refused overshot again
    /// every 5 s (1.46x the ideal; with the ceiling under it, 1.35x).
    #[test]
    fn a_search_refused_with_a_hint_grows_back_to_under_the_rate_it_met() {
        let t0 = Instant::now();
        let at = t0 + 3 * DOUBLE_EVERY;
        let met = 8.0 * START;
        let mut hinted = search(t0);
        hinted.throttled(throttle(at, S), Some(hinted.generation()));
        assert!((hinted.rate_at(at + S + FLAT) - HINTED * met).abs() < 1e-9);
        let mut bare = search(t0);
        bare.throttled(throttle(at, Duration::ZERO), Some(bare.generation()));
        assert!((bare.rate_at(at + FLAT) - met).abs() < 1e-9);
        // Both start from what backing off keeps of the rate met.
        assert!((hinted.rate_at(at + S) - BACK_OFF * HINTED * met).abs() < 1e-9);
        assert!((bare.rate_at(at) - BACK_OFF * met).abs() < 1e-9);
    }

    #[test]
    fn a_search_doubles_from_its_start_then_ends() {
        let t0 = Instant::now();
        let pacer = search(t0);
        assert_eq!(pacer.rate_at(t0), START);
        assert_eq!(pacer.rate_at(t0 + DOUBLE_EVERY), 2.0 * START);
        assert_eq!(pacer.rate_at(t0 + 4 * DOUBLE_EVERY), 16.0 * START);
        assert!(!pacer.ended(t0 + 12 * DOUBLE_EVERY - MS));
        assert!(pacer.ended(t0 + 12 * DOUBLE_EVERY));
    }

    #[test]
    fn a_throttle_without_hint_cuts_the_rate_then_it_grows_back_to_the_ceiling_and_past() {
        let t0 = Instant::now();
        let mut pacer = search(t0);
        // Refused at eight times the start (three doublings in), sent after the search began.
        let at = t0 + 3 * DOUBLE_EVERY;
        pacer.throttled(throttle(at, Duration::ZERO), Some(pacer.generation()));
        let ceiling = 8.0 * START;
        assert!((pacer.rate_at(at) - BACK_OFF * ceiling).abs() < 1e-9);
        let early = pacer.rate_at(at + FLAT / 3);
        assert!(early > BACK_OFF * ceiling && early < ceiling, "{early}");
        assert!((pacer.rate_at(at + FLAT) - ceiling).abs() < 1e-9);
        let late = pacer.rate_at(at + 2 * FLAT);
        assert!(late > ceiling, "a limit that rose is found: {late}");
        // It ends once it is twice the ceiling.
        let end = pacer.ends();
        assert!((pacer.rate_at(end) - 2.0 * ceiling).abs() < 1e-6);
        // A throttle below the ceiling sets the new one.
        let again = at + 2 * S;
        let met = pacer.rate_at(again);
        pacer.throttled(throttle(again, Duration::ZERO), Some(pacer.generation()));
        assert!((pacer.rate_at(again) - BACK_OFF * met).abs() < 1e-9);
        assert!((pacer.rate_at(again + FLAT) - met).abs() < 1e-9);
    }

    #[test]
    fn a_throttle_voids_the_slots_given_out_before_it() {
        let t0 = Instant::now();
        let mut pacer = search(t0);
        for _ in 0..5 {
            pacer.take(pacer.next());
        }
        let before = pacer.generation();
        let at = t0 + 100 * MS;
        assert!(
            pacer.next() > at + 300 * MS,
            "five slots, the first a quarter second apart"
        );
        pacer.throttled(throttle(at, Duration::ZERO), Some(before));
        assert_ne!(pacer.generation(), before);
        // The schedule starts again one interval (at the cut rate) after the refusal: the
        // limiter admitted a request just before it.
        let interval = Duration::from_secs_f64(1.0 / pacer.rate_at(at));
        assert_eq!(pacer.next(), at + interval, "the schedule starts again");
        // A straggler (at a slot of the voided schedule) voids nothing, nor does a request
        // sent outside the pace.
        let now = pacer.generation();
        pacer.throttled(throttle(at + MS, Duration::ZERO), Some(before));
        pacer.throttled(throttle(at + MS, Duration::ZERO), None);
        assert_eq!(pacer.generation(), now);
    }

    #[test]
    fn a_measured_rate_is_held_then_recovers_and_pacing_ends() {
        let t0 = Instant::now();
        let pacer = Pacer::start(throttle(t0, S), 100, Some(t0 - S), 60 * S);
        let base = pacer.rate_at(t0 + S);
        assert_eq!(base, 50.0);
        assert_eq!(pacer.rate_at(t0 + S + HOLD), base);
        let grown = pacer.rate_at(t0 + S + HOLD + GROW / 2);
        assert!(grown > base && grown < base * 1.2, "{grown}");
        assert_eq!(pacer.rate_at(t0 + S + HOLD + GROW), 2.0 * base);
        assert!(!pacer.ended(t0 + S + HOLD + GROW - MS));
        assert!(pacer.ended(t0 + S + HOLD + GROW));
    }

    #[test]
    fn a_throttle_in_a_paced_cycle_measures_again_and_stragglers_do_not() {
        let t0 = Instant::now();
        let mut pacer = Pacer::start(throttle(t0, S), 100, Some(t0 - S), 60 * S);
        // A request sent before the pace began: the same crowd.
        pacer.throttled(throttle(t0 + MS, S), None);
        assert_eq!(pacer.rate_at(t0 + S), 50.0);
        // Sent in the cycle: 90 were admitted over the 2 s up to the new reopening.
        for _ in 0..90 {
            pacer.admitted();
        }
        pacer.throttled(throttle(t0 + 2 * S, S), Some(pacer.generation()));
        assert_eq!(pacer.rate_at(t0 + 3 * S), 45.0);
        // A measurement below what backing off keeps counts the asked wait, not the server's
        // rate: the rate backs off instead (30 admitted over 2 s would say 15).
        for _ in 0..30 {
            pacer.admitted();
        }
        pacer.throttled(throttle(t0 + 4 * S, S), Some(pacer.generation()));
        assert!((pacer.rate_at(t0 + 5 * S) - 45.0 * BACK_OFF).abs() < 1e-9);
        // Nothing admitted in a cycle: the rate backs off from where it is.
        let met = pacer.rate_at(t0 + 6 * S);
        pacer.throttled(throttle(t0 + 6 * S, S), Some(pacer.generation()));
        assert!((pacer.rate_at(t0 + 7 * S) - met * BACK_OFF).abs() < 1e-9);
    }

    #[test]
    fn no_rate_holds_a_partition_longer_than_max_cooldown() {
        let t0 = Instant::now();
        // Eight answers over ten minutes, with a minute's wait, would pace at one request a
        // minute and more.
        let pacer = Pacer::start(throttle(t0, 60 * S), 8, Some(t0 - 540 * S), 2 * S);
        assert_eq!(pacer.rate_at(t0 + 60 * S), 0.5);
    }
}
