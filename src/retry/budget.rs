//! The retry budget shared by every clone of a layer: retries are a share of recent successes,
//! plus a small floor per second, so an outage cannot multiply the load on the API.

use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// How many one-second slots the budget remembers.
const SLOTS: usize = 10;

/// The budget: `ratio` retries per success over the last ten seconds, plus `min_per_sec`
/// retries per second whatever the successes (a reserve of ten seconds' worth).
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
    /// (successes, retries) per second.
    slots: [(u32, u32); SLOTS],
}

impl Budget {
    pub(crate) fn new(ratio: f64, min_per_sec: u32) -> Self {
        Self {
            ratio,
            reserve: f64::from(min_per_sec) * SLOTS as f64,
            window: Mutex::new(Window {
                start: Instant::now(),
                current: 0,
                slots: [(0, 0); SLOTS],
            }),
        }
    }

    /// Records a success.
    pub(crate) fn deposit(&self) {
        if self.ratio == 0.0 {
            return;
        }
        self.window().count(Instant::now(), true);
    }

    /// Takes one retry from the budget; `false` when there is none left.
    pub(crate) fn withdraw(&self) -> bool {
        let mut window = self.window();
        let now = Instant::now();
        window.advance(now);
        let (successes, retries) = window.slots.iter().fold((0u64, 0u64), |(s, r), (ds, dr)| {
            (s + u64::from(*ds), r + u64::from(*dr))
        });
        let allowed = self.ratio * successes as f64 + self.reserve;
        if (retries as f64) + 1.0 > allowed {
            return false;
        }
        window.count(now, false);
        true
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        // Counters only: a panic elsewhere cannot leave them inconsistent.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
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
                *slot = (0, 0);
            }
        }
        self.current = self.current.max(second);
        (self.current % SLOTS as u64) as usize
    }

    fn count(&mut self, now: Instant, success: bool) {
        let index = self.advance(now);
        if let Some((successes, retries)) = self.slots.get_mut(index) {
            let counter = if success { successes } else { retries };
            *counter = counter.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn without_successes_only_the_reserve_is_spent() {
        let budget = Budget::new(0.2, 1);
        let allowed = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(allowed, 10);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!budget.withdraw(), "the reserve is for the whole window");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!((0..100).filter(|_| budget.withdraw()).count(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_earn_a_share_of_retries() {
        let budget = Budget::new(0.5, 0);
        assert!(!budget.withdraw());
        for _ in 0..10 {
            budget.deposit();
        }
        assert_eq!((0..100).filter(|_| budget.withdraw()).count(), 5);
        // Successes older than the window no longer count.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_budget_never_allows_a_retry() {
        let budget = Budget::new(0.0, 0);
        budget.deposit();
        assert!(!budget.withdraw());
    }
}
