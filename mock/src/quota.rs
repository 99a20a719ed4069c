//! The emulator's rate limits, enforced the ways real APIs enforce them.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How an [`Emulator`](super::Emulator) limits the rate of each key's requests.
///
/// A request over the limit gets 429 `rate_limit_exceeded` with a `Retry-After` of the whole
/// seconds until a request would be admitted again, rounded up (at least 1).
///
/// ```
/// use std::time::Duration;
/// use tower_infoplug_mock::{Emulator, Quota};
///
/// let api = Emulator::builder()
///     .quota(Quota::token_bucket(200, 50))
///     .rate_limit_headers(true)
///     .build();
/// # let _ = api;
/// assert_eq!(
///     Quota::fixed_window(100, Duration::from_secs(1)),
///     Quota::fixed_window(100, Duration::from_secs(1)),
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    kind: Kind,
    refusal: Refusal,
}

/// What a refusal says about when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `Retry-After`: the whole seconds until a request would be admitted, rounded up.
    Exact,
    /// No hint at all: a bare 429 (nginx's `limit_req` by default).
    Bare,
    /// The same `Retry-After` on every refusal, whatever the limiter's state (a constant
    /// added by the proxy's configuration).
    Constant(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Fixed { requests: u32, window: Duration },
    Sliding { requests: u32, window: Duration },
    Bucket { per_second: u32, burst: u32 },
    Leaky { per_second: u32, burst: u32 },
}

impl Quota {
    /// At most `requests` per `window`; a window starts with the first request after the
    /// previous one ended.
    pub fn fixed_window(requests: u32, window: Duration) -> Self {
        Self {
            kind: Kind::Fixed { requests, window },
            refusal: Refusal::Exact,
        }
    }

    /// At most `requests` in any span of `window`.
    pub fn sliding_window(requests: u32, window: Duration) -> Self {
        Self {
            kind: Kind::Sliding { requests, window },
            refusal: Refusal::Exact,
        }
    }

    /// A bucket of `burst` tokens, refilled at `per_second`; each request takes one.
    pub fn token_bucket(per_second: u32, burst: u32) -> Self {
        Self {
            kind: Kind::Bucket { per_second, burst },
            refusal: Refusal::Exact,
        }
    }

    /// A leaky bucket as nginx's `limit_req` keeps it: requests drain at `per_second`, and a
    /// request that would make more than `burst` wait is refused (`burst = 0`: any request
    /// sooner than `1 / per_second` after the last admitted one; the `nodelay` form, so
    /// admitted requests are answered at once).
    pub fn leaky_bucket(per_second: u32, burst: u32) -> Self {
        Self {
            kind: Kind::Leaky { per_second, burst },
            refusal: Refusal::Exact,
        }
    }

    /// Refusals carry no hint at all: a bare 429, as nginx's `limit_req` sends by default.
    pub fn without_hint(self) -> Self {
        Self {
            refusal: Refusal::Bare,
            ..self
        }
    }

    /// Every refusal says `Retry-After: <secs>`, whatever the limiter's state, as a proxy
    /// configured to add a constant header does.
    pub fn constant_retry_after(self, secs: u64) -> Self {
        Self {
            refusal: Refusal::Constant(secs),
            ..self
        }
    }

    /// What a refusal says.
    pub(super) fn refusal(&self) -> Refusal {
        self.refusal
    }

    /// The limit as a `RateLimit-Policy` field value, for the policy `name`.
    pub(super) fn policy(&self, name: &str) -> String {
        let (quota, window) = self.limit();
        format!("\"{name}\";q={quota};w={window}")
    }

    /// Requests a window holds, and the window in whole seconds.
    pub(super) fn limit(&self) -> (u32, u64) {
        match self.kind {
            Kind::Fixed { requests, window } | Kind::Sliding { requests, window } => {
                (requests, ceil_secs(window))
            }
            Kind::Bucket { per_second, .. } | Kind::Leaky { per_second, .. } => (per_second, 1),
        }
    }

    pub(super) fn limiter(&self) -> Limiter {
        match self.kind {
            Kind::Fixed { requests, window } => Limiter::Fixed {
                requests,
                window,
                start: None,
                admitted: 0,
            },
            Kind::Sliding { requests, window } => Limiter::Sliding {
                requests,
                window,
                admitted: VecDeque::new(),
            },
            Kind::Bucket { per_second, burst } => Limiter::Bucket {
                rate: f64::from(per_second.max(1)),
                burst: f64::from(burst),
                tokens: f64::from(burst),
                at: None,
            },
            Kind::Leaky { per_second, burst } => Limiter::Leaky {
                rate: f64::from(per_second.max(1)),
                burst: f64::from(burst),
                excess: 0.0,
                last: None,
            },
        }
    }
}

/// One key's use of its quota.
#[derive(Debug)]
pub(super) enum Limiter {
    Fixed {
        requests: u32,
        window: Duration,
        start: Option<Instant>,
        admitted: u32,
    },
    Sliding {
        requests: u32,
        window: Duration,
        admitted: VecDeque<Instant>,
    },
    Bucket {
        rate: f64,
        burst: f64,
        tokens: f64,
        at: Option<Instant>,
    },
    Leaky {
        rate: f64,
        burst: f64,
        /// Requests still in the bucket after the last admitted one.
        excess: f64,
        last: Option<Instant>,
    },
}

/// The answer of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Admitted; `remaining` more would be now, and the quota is whole again in `reset`.
    Admitted { remaining: u32, reset: Duration },
    /// Refused; a request would be admitted in `wait`.
    Refused { wait: Duration },
}

impl Limiter {
    pub(super) fn admit(&mut self, now: Instant) -> Verdict {
        match self {
            Self::Fixed {
                requests,
                window,
                start,
                admitted,
            } => {
                let window = *window;
                let begun = start.filter(|s| now.saturating_duration_since(*s) < window);
                let begun = begun.unwrap_or_else(|| {
                    *admitted = 0;
                    now
                });
                *start = Some(begun);
                let left = window.saturating_sub(now.saturating_duration_since(begun));
                if *admitted >= *requests {
                    return Verdict::Refused { wait: left };
                }
                *admitted += 1;
                Verdict::Admitted {
                    remaining: *requests - *admitted,
                    reset: left,
                }
            }
            Self::Sliding {
                requests,
                window,
                admitted,
            } => {
                let window = *window;
                while admitted
                    .front()
                    .is_some_and(|at| now.saturating_duration_since(*at) >= window)
                {
                    admitted.pop_front();
                }
                let expires = |at: Option<&Instant>| {
                    at.map_or(Duration::ZERO, |at| {
                        window.saturating_sub(now.saturating_duration_since(*at))
                    })
                };
                if admitted.len() >= *requests as usize {
                    return Verdict::Refused {
                        wait: expires(admitted.front()),
                    };
                }
                admitted.push_back(now);
                Verdict::Admitted {
                    remaining: requests.saturating_sub(admitted.len() as u32),
                    reset: expires(admitted.back()),
                }
            }
            Self::Bucket {
                rate,
                burst,
                tokens,
                at,
            } => {
                let elapsed = at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
                *tokens = (*tokens + elapsed * *rate).min(*burst);
                *at = Some(now);
                if *tokens < 1.0 {
                    return Verdict::Refused {
                        wait: Duration::from_secs_f64((1.0 - *tokens) / *rate),
                    };
                }
                *tokens -= 1.0;
                Verdict::Admitted {
                    remaining: *tokens as u32,
                    reset: Duration::from_secs_f64((*burst - *tokens) / *rate),
                }
            }
            Self::Leaky {
                rate,
                burst,
                excess,
                last,
            } => {
                // nginx's arithmetic, in whole milliseconds: what is left in the bucket after
                // draining since the last admitted request, plus this one. The first request
                // of a key is always admitted.
                let next = match last {
                    None => 0.0,
                    Some(last) => {
                        let ms = now.saturating_duration_since(*last).as_millis() as f64;
                        (*excess - *rate * ms / 1000.0 + 1.0).max(0.0)
                    }
                };
                if next > *burst {
                    return Verdict::Refused {
                        wait: Duration::from_secs_f64((next - *burst) / *rate),
                    };
                }
                *excess = next;
                *last = Some(now);
                Verdict::Admitted {
                    remaining: (*burst - next) as u32,
                    reset: Duration::from_secs_f64(next / *rate),
                }
            }
        }
    }
}

/// Whole seconds, rounded up.
pub(super) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn admitted(verdicts: &[Verdict]) -> usize {
        verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Admitted { .. }))
            .count()
    }

    #[test]
    fn a_fixed_window_admits_its_quota_then_names_the_window_end() {
        let t0 = Instant::now();
        let mut limiter = Quota::fixed_window(3, S).limiter();
        let v: Vec<_> = (0..4).map(|i| limiter.admit(t0 + i * 100 * MS)).collect();
        assert_eq!(admitted(&v), 3);
        assert_eq!(v[3], Verdict::Refused { wait: 700 * MS });
        assert!(matches!(
            limiter.admit(t0 + S),
            Verdict::Admitted { remaining: 2, .. }
        ));
    }

    #[test]
    fn a_sliding_window_admits_again_when_the_oldest_leaves_it() {
        let t0 = Instant::now();
        let mut limiter = Quota::sliding_window(2, S).limiter();
        limiter.admit(t0);
        limiter.admit(t0 + 600 * MS);
        assert_eq!(
            limiter.admit(t0 + 900 * MS),
            Verdict::Refused { wait: 100 * MS }
        );
        assert!(matches!(limiter.admit(t0 + S), Verdict::Admitted { .. }));
        // The one at 600 ms is still in the window.
        assert_eq!(
            limiter.admit(t0 + 1100 * MS),
            Verdict::Refused { wait: 500 * MS }
        );
    }

    #[test]
    fn a_token_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut limiter = Quota::token_bucket(10, 5).limiter();
        let burst: Vec<_> = (0..6).map(|_| limiter.admit(t0)).collect();
        assert_eq!(admitted(&burst), 5);
        assert_eq!(burst[5], Verdict::Refused { wait: 100 * MS });
        assert!(matches!(
            limiter.admit(t0 + 100 * MS),
            Verdict::Admitted { .. }
        ));
        assert!(matches!(
            limiter.admit(t0 + 150 * MS),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn a_leaky_bucket_without_burst_refuses_anything_sooner_than_its_interval() {
        let t0 = Instant::now();
        let mut limiter = Quota::leaky_bucket(20, 0).limiter();
        assert!(matches!(limiter.admit(t0), Verdict::Admitted { .. }));
        // 49 ms later is too soon (and does not move the bucket); 50 ms is on time.
        assert_eq!(limiter.admit(t0 + 49 * MS), Verdict::Refused { wait: MS });
        assert!(matches!(
            limiter.admit(t0 + 50 * MS),
            Verdict::Admitted { .. }
        ));
        // Evenly spaced at the rate, all go through; faster, every other is refused.
        let on_time: Vec<_> = (2..12).map(|i| limiter.admit(t0 + i * 50 * MS)).collect();
        assert_eq!(admitted(&on_time), 10);
        let start = t0 + 600 * MS;
        let fast: Vec<_> = (0..10)
            .map(|i| limiter.admit(start + i * 40 * MS))
            .collect();
        assert_eq!(admitted(&fast), 5);
    }

    #[test]
    fn a_leaky_bucket_with_burst_takes_that_many_at_once() {
        let t0 = Instant::now();
        let mut limiter = Quota::leaky_bucket(10, 5).limiter();
        let burst: Vec<_> = (0..8).map(|_| limiter.admit(t0)).collect();
        assert_eq!(admitted(&burst), 6, "the first, then five in the bucket");
        assert!(matches!(
            limiter.admit(t0 + 100 * MS),
            Verdict::Admitted { .. }
        ));
    }

    #[test]
    fn policies_name_the_quota_and_its_window() {
        assert_eq!(
            Quota::fixed_window(200, S).policy("default"),
            "\"default\";q=200;w=1"
        );
        assert_eq!(
            Quota::sliding_window(5, 1500 * MS).policy("default"),
            "\"default\";q=5;w=2"
        );
        assert_eq!(
            Quota::token_bucket(50, 10).policy("search"),
            "\"search\";q=50;w=1"
        );
    }
}
