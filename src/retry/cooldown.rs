//! The cooldown shared by every clone of a layer: after a 429 or 503 with a wait hint, no
//! request goes to that origin until the hint has passed.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use http::Uri;
use tokio::time::Instant;

/// Which origin a request is for, as a hash of scheme, host (case-folded) and port. Requests
/// without an authority share one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Partition(u64);

#[derive(Debug)]
pub(crate) struct Cooldown {
    /// The reference for `latest`.
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the last gate to close reopens; 0 when no gate ever
    /// closed. Lets the common case (no cooldown anywhere) skip the lock.
    latest: AtomicU64,
    gates: Mutex<HashMap<Partition, Instant>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Cooldown {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            latest: AtomicU64::new(0),
            gates: Mutex::new(HashMap::new()),
            hasher: Default::default(),
        }
    }

    pub(crate) fn partition(&self, uri: &Uri) -> Partition {
        let mut hasher = self.hasher.build_hasher();
        if let Some(authority) = uri.authority() {
            let scheme = uri.scheme_str().unwrap_or("http");
            let https = scheme.eq_ignore_ascii_case("https");
            hasher.write_u8(u8::from(https));
            if !https && !scheme.eq_ignore_ascii_case("http") {
                hasher.write(scheme.to_ascii_lowercase().as_bytes());
            }
            let host = authority.host();
            let host = host.strip_suffix('.').unwrap_or(host);
            for b in host.bytes() {
                hasher.write_u8(b.to_ascii_lowercase());
            }
            hasher.write_u16(authority.port_u16().unwrap_or(if https { 443 } else { 80 }));
        }
        Partition(hasher.finish())
    }

    /// Whether any gate ever closed: one atomic load, no clock.
    pub(crate) fn ever_closed(&self) -> bool {
        self.latest.load(Ordering::Relaxed) != 0
    }

    /// The partition of `uri`, computed once per request: `cache` keeps it between attempts.
    pub(crate) fn partition_cached(&self, cache: &mut Option<Partition>, uri: &Uri) -> Partition {
        *cache.get_or_insert_with(|| self.partition(uri))
    }

    /// Until when the partition is closed, if it is closed at `now`. The partition is only
    /// computed (hashed), and the lock only taken, when some gate is still closed.
    pub(crate) fn closed_until(
        &self,
        now: Instant,
        partition: impl FnOnce() -> Partition,
    ) -> Option<Instant> {
        let latest = self.latest.load(Ordering::Acquire);
        if latest == 0 || self.since_epoch(now) >= latest {
            return None;
        }
        let partition = partition();
        let gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        gates.get(&partition).copied().filter(|until| *until > now)
    }

    /// Closes `partition` until `until`; a gate only ever moves later.
    pub(crate) fn close(&self, partition: Partition, until: Instant) {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        let gate = gates.entry(partition).or_insert(until);
        *gate = (*gate).max(until);
        let now = Instant::now();
        gates.retain(|_, until| *until > now);
        self.latest
            .fetch_max(self.since_epoch(until).max(1), Ordering::AcqRel);
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn partitions_follow_origins() {
        let cooldown = Cooldown::new();
        let p = |s| cooldown.partition(&uri(s));
        assert_eq!(
            p("https://API.infoplug.io/v1/a"),
            p("https://api.infoplug.io:443/v2?x")
        );
        assert_eq!(p("http://h/x"), p("http://h:80/y"));
        assert_ne!(p("https://api.infoplug.io/"), p("http://api.infoplug.io/"));
        assert_ne!(
            p("https://api.infoplug.io/"),
            p("https://api.infoplug.io:8443/")
        );
        assert_ne!(p("https://a.example/"), p("https://b.example/"));
        assert_eq!(p("/v1/a"), p("/v1/b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_gate_only_moves_later_and_reopens_on_time() {
        let cooldown = Cooldown::new();
        let api = cooldown.partition(&uri("https://api.infoplug.io/"));
        let other = cooldown.partition(&uri("https://other.example/"));
        let now = Instant::now();
        assert_eq!(cooldown.closed_until(now, || api), None);
        cooldown.close(api, now + Duration::from_secs(5));
        cooldown.close(api, now + Duration::from_secs(2));
        assert_eq!(
            cooldown.closed_until(now, || api),
            Some(now + Duration::from_secs(5))
        );
        assert_eq!(cooldown.closed_until(now, || other), None);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(cooldown.closed_until(Instant::now(), || api), None);
    }
}
