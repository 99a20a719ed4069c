//! Wait arithmetic: full-jitter exponential backoff, hint floors, and the jitter source.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A source of jitter: numbers uniform in `[0, 1)`.
///
/// The default is a small, fast generator seeded at random. Tests inject a fixed one to make
/// waits exact:
///
/// ```
/// use tower_infoplug::retry::Jitter;
///
/// struct Half;
/// impl Jitter for Half {
///     fn sample(&self) -> f64 { 0.5 }
/// }
/// assert_eq!(Half.sample(), 0.5);
/// ```
pub trait Jitter: Send + Sync + 'static {
    /// The next sample, in `[0, 1)` (values outside are clamped).
    fn sample(&self) -> f64;
}

/// The default [`Jitter`]: xorshift64*, seeded from the standard library's per-process random
/// keys, advanced with one atomic operation per sample. Not for cryptography.
pub struct RandomJitter {
    state: AtomicU64,
}

impl RandomJitter {
    /// A generator with a random seed.
    pub fn new() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x9e37_79b9_7f4a_7c15);
        Self {
            state: AtomicU64::new(hasher.finish() | 1),
        }
    }
}

impl Default for RandomJitter {
    fn default() -> Self {
        Self::new()
    }
}

impl Jitter for RandomJitter {
    fn sample(&self) -> f64 {
        let step = |mut x: u64| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x
        };
        let previous = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| Some(step(x)))
            .unwrap_or_else(|x| x);
        let out = step(previous).wrapping_mul(0x2545_f491_4f6c_dd1d);
        // The top 53 bits as a fraction in [0, 1).
        (out >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl fmt::Debug for RandomJitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RandomJitter")
    }
}

/// Wall-clock time, to read HTTP-date hints against; injectable for tests.
pub trait WallClock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> WallClock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// Clamps a sample into `[0, 1]`; NaN counts as 0.
pub(super) fn unit(sample: f64) -> f64 {
    if sample.is_nan() {
        0.0
    } else {
        sample.clamp(0.0, 1.0)
    }
}

/// Full-jitter exponential backoff before retry number `retry` (1 for the first retry):
/// uniform in `[0, min(cap, base * 2^(retry-1))]`. The jitter is applied after the cap, so
/// clients that all reached the cap still spread out.
pub(crate) fn backoff(retry: u32, base: Duration, cap: Duration, sample: f64) -> Duration {
    let exponent = retry.saturating_sub(1).min(31);
    let ceiling = base.saturating_mul(1u32 << exponent).min(cap);
    ceiling.mul_f64(unit(sample))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_up_to_the_cap_then_jitters_below_it() {
        let base = 100 * MS;
        let cap = 1000 * MS;
        let top = |retry| backoff(retry, base, cap, 1.0);
        assert_eq!(
            [top(1), top(2), top(3), top(4), top(5)],
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, cap]
        );
        assert_eq!(top(u32::MAX), cap);
        assert_eq!(backoff(9, base, cap, 0.0), Duration::ZERO);
        assert_eq!(backoff(9, base, cap, 0.25), 250 * MS);
        assert_eq!(backoff(0, base, cap, 1.0), base);
    }

    #[test]
    fn out_of_range_samples_are_clamped() {
        assert_eq!(backoff(1, MS, MS, f64::NAN), Duration::ZERO);
        assert_eq!(backoff(1, MS, MS, 7.0), MS);
        assert_eq!(backoff(1, MS, MS, -1.0), Duration::ZERO);
    }

    #[test]
    fn random_jitter_is_uniform_enough() {
        let jitter = RandomJitter::new();
        let samples: Vec<f64> = (0..10_000).map(|_| jitter.sample()).collect();
        assert!(samples.iter().all(|s| (0.0..1.0).contains(s)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
        let low = samples.iter().filter(|s| **s < 0.1).count();
        assert!((800..1200).contains(&low), "{low}");
    }

    proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap(
            retry in any::<u32>(),
            base in 0u64..100_000,
            cap in 0u64..100_000,
            sample in any::<f64>(),
        ) {
            let wait = backoff(retry, Duration::from_millis(base), Duration::from_millis(cap), sample);
            prop_assert!(wait <= Duration::from_millis(cap));
        }
    }
}
