//! The retry budget shared by every clone of a layer: retries are a share of recent healthy
//! answers, plus a small floor per second, so an outage cannot multiply the load on the API.

use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// How many one-second slots the budget remembers.
const SLOTS: usize = 10;

/// The budget: `ratio` retries per success over the last ten seconds, plus `min_per_sec`
/// retries per second whatever the successes (a reserve of ten seconds' worth).
///
/// Only answers that show a healthy server count as successes (2xx, 3xx, and 4xx other than
/// 429): a 5xx, a 429 or a transport error never buys a retry, so an outage that begins with
/// failing requests gets fewer retries, not more. The shared state counts them (one relaxed
/// atomic increment: no lock, no clock) and hands the total in. The window is kept by the
/// retries, which are rare: the first retry decision in each second marks how many successes
/// there were then, and the successes of the window are those since the oldest mark still in
/// it. Successes before the first decision of a quiet period are not counted, so the budget
/// can only err on the side of fewer retries.
#[derive(Debug)]
pub(crate) struct Budget {
    ratio: f64,
    reserve: f64,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    /// The second (since `start`) that `slots[second % SLOTS]` counts.
    current: u64,
    slots: [Slot; SLOTS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The success count when this second's first decision was taken.
    mark: Option<u64>,
    retries: u32,
}

impl Budget {
    pub(crate) fn new(ratio: f64, min_per_sec: u32) -> Self {
        Self {
            ratio,
            reserve: f64::from(min_per_sec) * SLOTS as f64,
            window: Mutex::new(Window {
                start: Instant::now(),
                current: 0,
                slots: [Slot::default(); SLOTS],
            }),
        }
    }

    /// Whether a retry may be taken, `total` successes having been seen so far.
    pub(crate) fn available(&self, total: u64) -> bool {
        // Counters only: a panic elsewhere cannot leave them inconsistent.
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let index = window.advance(Instant::now());
        if let Some(slot) = window.slots.get_mut(index) {
            slot.mark.get_or_insert(total);
        }
        let baseline = window
            .slots
            .iter()
            .filter_map(|s| s.mark)
            .min()
            .unwrap_or(total);
        let retries: u64 = window.slots.iter().map(|s| u64::from(s.retries)).sum();
        let allowed = self.ratio * total.saturating_sub(baseline) as f64 + self.reserve;
        (retries as f64) + 1.0 <= allowed
    }

    /// Takes a retry (after [`available`](Self::available) said yes).
    pub(crate) fn spend(&self) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let index = window.advance(Instant::now());
        if let Some(slot) = window.slots.get_mut(index) {
            slot.retries = slot.retries.saturating_add(1);
        }
    }

    /// `available`, then `spend`: for the tests.
    #[cfg(test)]
    fn withdraw(&self, total: u64) -> bool {
        let yes = self.available(total);
        if yes {
            self.spend();
        }
        yes
    }
}

impl Window {
    /// Moves the window to `now`, clearing the seconds that passed; returns the slot index of
    /// the current second.
    fn advance(&mut self, now: Instant) -> usize {
        let second = now.saturating_duration_since(self.start).as_secs();
        let passed = second.saturating_sub(self.current);
        for i in 1..=passed.min(SLOTS as u64) {
            if let Some(slot) = self
                .slots
                .get_mut(((self.current + i) % SLOTS as u64) as usize)
            {
                *slot = Slot::default();
            }
        }
        self.current = self.current.max(second);
        (self.current % SLOTS as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn without_successes_only_the_reserve_is_spent() {
        let budget = Budget::new(0.2, 1);
        let total = 0;
        let allowed = (0..100).filter(|_| budget.withdraw(total)).count();
        assert_eq!(allowed, 10);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            !budget.withdraw(total),
            "the reserve is for the whole window"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!((0..100).filter(|_| budget.withdraw(total)).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_earn_a_share_of_retries() {
        let budget = Budget::new(0.5, 0);
        let mut total = 0;
        assert!(!budget.withdraw(total));
        total += 10;
        assert_eq!((0..100).filter(|_| budget.withdraw(total)).count(), 5);
        // Successes older than the window no longer count.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!budget.withdraw(total));
    }

    #[tokio::test(start_paused = true)]
    async fn successes_before_a_quiet_period_ends_do_not_count() {
        let budget = Budget::new(1.0, 0);
        let mut total = 50;
        // First decision: marks 50, counts nothing before it.
        assert!(!budget.withdraw(total));
        total += 3;
        assert_eq!((0..10).filter(|_| budget.withdraw(total)).count(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_budget_never_allows_a_retry() {
        let budget = Budget::new(0.0, 0);
        let total = 1;
        assert!(!budget.withdraw(total));
    }
}
