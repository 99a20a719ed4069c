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
//! - a cycle with fewer than [`MIN_ADMITTED`] such answers measures nothing: the first
//!   throttle then starts no pacing (the gate and the spread of the wait are all there is),
//!   and a later one decreases the rate multiplicatively;
//! - a rate is held for [`HOLD`], then grows (cubically, slowly at first) for [`GROW`]; a
//!   throttle on the way measures again; a rate that doubled without one has recovered, and
//!   pacing ends;
//! - a request that was sent before the current cycle began (it had already left when the
//!   throttle was learned) does not count as a new throttle.

use std::time::Duration;

use tokio::time::Instant;

use super::later;

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
/// What a throttle within a measured cycle keeps of the rate.
const DECREASE: f64 = 0.7;

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
    /// A pacer for a partition that was not paced, if there is a rate to pace at: a quota the
    /// server stated, or `admitted` answers (other than 429) since `quiet` (when they began to be
    /// counted).
    pub(crate) fn start(
        throttle: Throttle,
        admitted: u64,
        quiet: Option<Instant>,
        max_cooldown: Duration,
    ) -> Option<Self> {
        let cycle = quiet.map_or(Duration::ZERO, |q| {
            throttle.reopen.saturating_duration_since(q)
        });
        let rate = throttle
            .quota
            .or_else(|| measure(admitted, cycle, throttle.wait()))?;
        Some(Self {
            rate,
            floor: 1.0 / max_cooldown.as_secs_f64().max(f64::MIN_POSITIVE),
            since: throttle.reopen,
            admitted: 0,
            next: throttle.reopen,
            stated: throttle.quota.is_some(),
        })
    }

    /// A throttle of a request sent at `sent` (`None`: before anything was paced).
    pub(crate) fn throttled(&mut self, throttle: Throttle, sent: Option<Instant>) {
        if sent.is_none_or(|sent| sent < self.since) {
            // Sent before the current cycle began: part of the crowd it already answered for.
            return;
        }
        let cycle = throttle.reopen.saturating_duration_since(self.since);
        self.stated = throttle.quota.is_some();
        self.rate = throttle
            .quota
            .or_else(|| measure(self.admitted, cycle, throttle.wait()))
            .unwrap_or_else(|| self.rate_at(throttle.now) * DECREASE);
        self.since = throttle.reopen;
        self.admitted = 0;
        self.next = self.next.max(throttle.reopen);
    }

    /// Paces at `rate`, what the server says is left of its quota over the time until it
    /// resets (`RateLimit: r/t`, `X-RateLimit-Remaining/Reset`), when it says so.
    pub(crate) fn follow(&mut self, rate: f64) {
        if rate.is_finite() && rate > 0.0 {
            self.rate = rate;
            self.stated = true;
        }
    }

    /// An answer other than a 429 in this cycle.
    pub(crate) fn admitted(&mut self) {
        self.admitted += 1;
    }

    /// The next free slot.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// Takes the slot at `at` (no earlier than [`next`](Self::next)).
    pub(crate) fn take(&mut self, at: Instant) {
        let interval = Duration::from_secs_f64(1.0 / self.rate_at(at));
        self.next = later(at.max(self.next), interval);
    }

    /// The rate at `now`: held, then recovering.
    pub(crate) fn rate_at(&self, now: Instant) -> f64 {
        let quiet = now.saturating_duration_since(self.since).as_secs_f64();
        let x = ((quiet - HOLD.as_secs_f64()) / GROW.as_secs_f64()).max(0.0);
        let grown = self.rate * (1.0 + x * x * x);
        let rate = if grown.is_finite() { grown } else { f64::MAX };
        rate.max(self.floor)
    }

    /// Whether the rate has recovered, so the partition need not be paced any more.
    pub(crate) fn ended(&self, now: Instant) -> bool {
        now >= self.ends()
    }

    /// When the pacing ends unless another throttle comes.
    pub(crate) fn ends(&self) -> Instant {
        later(self.since, HOLD + GROW)
    }

    /// Whether the rate is the server's word rather than this process's measurement.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn stated(&self) -> bool {
        self.stated
    }
}

/// `admitted` answers over `cycle`, when that is enough to go by: enough answers, over a
/// cycle long enough to time and short enough to be about the server's window (at most
/// [`WINDOWS`] times the wait it named, or a second). Over a longer cycle the count says
/// how busy the caller was, not what the server admits: eight requests in an idle hour
/// followed by a 429 must not pace the next burst at one request every seven minutes.
fn measure(admitted: u64, cycle: Duration, wait: Duration) -> Option<f64> {
    let longest = wait.max(Duration::from_secs(1)).saturating_mul(WINDOWS);
    (admitted >= MIN_ADMITTED && (MIN_CYCLE..=longest).contains(&cycle))
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

    #[test]
    fn the_first_cycle_measures_what_the_server_admitted() {
        let t0 = Instant::now();
        // 200 answers from t0 on, then a 429 at 5 ms saying "1 s".
        let pacer = Pacer::start(throttle(t0 + 5 * MS, S), 200, Some(t0), 60 * S).unwrap();
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
        )
        .unwrap();
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
    fn too_few_answers_measure_nothing() {
        let t0 = Instant::now();
        assert_eq!(
            Pacer::start(throttle(t0, S), MIN_ADMITTED - 1, Some(t0 - S), 60 * S),
            None
        );
        // Nor does a cycle too short to time.
        assert_eq!(
            Pacer::start(throttle(t0, Duration::ZERO), 100, Some(t0 - MS), 60 * S),
            None
        );
        // Nor one far longer than the server's window: that measures how busy the caller
        // was, not what the server admits.
        assert_eq!(
            Pacer::start(throttle(t0, S), 100, Some(t0 - 3600 * S), 60 * S),
            None
        );
        assert!(Pacer::start(throttle(t0, S), 100, Some(t0 - 9 * S), 60 * S).is_some());
        assert!(Pacer::start(throttle(t0, 60 * S), 100, Some(t0 - 500 * S), 60 * S).is_some());
    }

    #[test]
    fn a_measured_rate_is_held_then_recovers_and_pacing_ends() {
        let t0 = Instant::now();
        let pacer = Pacer::start(throttle(t0, S), 100, Some(t0 - S), 60 * S).unwrap();
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
        let mut pacer = Pacer::start(throttle(t0, S), 100, Some(t0 - S), 60 * S).unwrap();
        // A request sent before the cycle began: the same crowd.
        pacer.throttled(throttle(t0 + MS, S), Some(t0));
        assert_eq!(pacer.rate_at(t0 + S), 50.0);
        // Sent in the cycle: 30 were admitted over the 2 s up to the new reopening.
        for _ in 0..30 {
            pacer.admitted();
        }
        pacer.throttled(throttle(t0 + 2 * S, S), Some(t0 + 1500 * MS));
        assert_eq!(pacer.rate_at(t0 + 3 * S), 15.0);
        // Nothing admitted in a cycle: the rate decreases.
        pacer.throttled(throttle(t0 + 4 * S, S), Some(t0 + 3500 * MS));
        assert!((pacer.rate_at(t0 + 5 * S) - 10.5).abs() < 1e-9);
    }

    #[test]
    fn no_rate_holds_a_partition_longer_than_max_cooldown() {
        let t0 = Instant::now();
        // Eight answers over ten minutes, with a minute's wait, would pace at one request a
        // minute and more.
        let pacer = Pacer::start(throttle(t0, 60 * S), 8, Some(t0 - 540 * S), 2 * S).unwrap();
        assert_eq!(pacer.rate_at(t0 + 60 * S), 0.5);
    }
}
