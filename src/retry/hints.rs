//! Server wait hints: `retry-after-ms`, `Retry-After`, the draft `RateLimit` field,
//! `X-RateLimit-Reset`; and the server's `x-should-retry` verdict.
//!
//! Pure functions of a header map and a wall-clock "now" (read only for a hint that names a
//! date or an epoch: most name seconds, and a 429 need not cost a clock read). A hint is a
//! floor for the wait: `Some(ZERO)` means the server named no floor (`0`, or a date in the
//! past), which the caller treats as "back off as usual", never as "retry at once". Anything
//! unparsable is `None`.

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue};

use super::backoff::WallClock;

const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// The longest delta-seconds value read as a number; longer digit strings are ignored rather
/// than saturated, since no server means a wait of centuries.
const MAX_DIGITS: usize = 12;

/// Epoch seconds from here on are read as a point in time by `X-RateLimit-Reset` (2001-09-09);
/// smaller values are deltas.
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

/// The wall-clock time, read only when a hint needs it: a fixed instant, or a clock.
pub(crate) trait WallTime {
    fn wall_time(&self) -> SystemTime;
}

impl WallTime for SystemTime {
    fn wall_time(&self) -> SystemTime {
        *self
    }
}

impl WallTime for dyn WallClock {
    fn wall_time(&self) -> SystemTime {
        self.now()
    }
}

impl<T: WallTime + ?Sized> WallTime for &T {
    fn wall_time(&self) -> SystemTime {
        (**self).wall_time()
    }
}

/// Which hint fields to read besides `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HintFields {
    pub(crate) retry_after_ms: bool,
    pub(crate) rate_limit: bool,
    pub(crate) x_rate_limit_reset: bool,
    /// Further reset headers, in the order they are read, with how each names its time.
    pub(crate) resets: &'static [(&'static str, ResetFormat)],
}

impl HintFields {
    /// Whether answers are read for what is left of the quota (the `RateLimit` fields, or the
    /// `X-RateLimit-*` ones): then every request takes a ticket as it starts.
    pub(crate) fn follows(self) -> bool {
        self.rate_limit || self.x_rate_limit_reset
    }
}

impl Default for HintFields {
    /// `retry-after-ms` is read (it is `Retry-After` to the millisecond); the others not.
    fn default() -> Self {
        Self {
            retry_after_ms: true,
            rate_limit: false,
            x_rate_limit_reset: false,
            resets: &[],
        }
    }
}

/// How a server's own reset header names the time to come back, for
/// [`RetryBuilder::reset_headers`](super::RetryBuilder::reset_headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResetFormat {
    /// Seconds from now, optionally with a fraction (`30`, `1.5`).
    Seconds,
    /// Milliseconds from now, optionally with a fraction (`1500`).
    Milliseconds,
    /// A point in time, in whole seconds since the Unix epoch (`1767225600`); one in the past
    /// names no wait.
    EpochSeconds,
}

/// The server's wait hint: `retry-after-ms` (if enabled) first, as the more precise form of
/// `Retry-After`, then `Retry-After`, then (if enabled) `RateLimit` / `RateLimit-Reset`, then
/// `X-RateLimit-Reset`, then the configured reset headers in their order. Of several lines of
/// one field, the largest valid value wins: an invalid line hides nothing, and the safer
/// reading is the longer wait.
pub(crate) fn wait_hint(
    headers: &HeaderMap,
    fields: HintFields,
    now: impl WallTime,
) -> Option<Duration> {
    let largest = |name, read: &dyn Fn(&HeaderValue) -> Option<Duration>| {
        headers.get_all(name).iter().filter_map(read).max()
    };
    if fields.retry_after_ms
        && let Some(hint) = largest(RETRY_AFTER_MS, &retry_after_ms)
    {
        return Some(hint);
    }
    if let Some(hint) = largest(RETRY_AFTER, &|v| retry_after(v, &now)) {
        return Some(hint);
    }
    if fields.rate_limit {
        let hint = headers
            .get_all("ratelimit")
            .iter()
            .filter_map(rate_limit_reset)
            .max()
            .or_else(|| largest(RATELIMIT_RESET, &delta_seconds));
        if hint.is_some() {
            return hint;
        }
    }
    if fields.x_rate_limit_reset
        && let Some(hint) = largest(X_RATELIMIT_RESET, &|v| {
            x_rate_limit_reset(v, now.wall_time())
        })
    {
        return Some(hint);
    }
    fields.resets.iter().find_map(|(name, format)| {
        headers
            .get_all(*name)
            .iter()
            .filter_map(|v| reset(v, *format, &now))
            .max()
    })
}

/// A configured reset header's value, read as `format` says.
fn reset(value: &HeaderValue, format: ResetFormat, now: impl WallTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    match format {
        ResetFormat::Seconds => decimal(text, 1000),
        ResetFormat::Milliseconds => decimal(text, 1),
        ResetFormat::EpochSeconds => until_epoch(seconds(text)?, now),
    }
}

/// The wait until `secs` seconds after the Unix epoch (none for a time already past).
fn until_epoch(secs: u64, now: impl WallTime) -> Option<Duration> {
    let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))?;
    Some(at.duration_since(now.wall_time()).unwrap_or(Duration::ZERO))
}

/// `Retry-After: <delta-seconds>` or `Retry-After: <HTTP-date>` (IMF-fixdate, RFC 850 or
/// asctime). Two forms servers send that the RFC does not name are read as well: seconds with
/// a fraction (`1.5`, rounded up to the next whole millisecond), and an IMF-fixdate whose zone
/// is written `UTC` or `+0000` instead of `GMT`.
pub(crate) fn retry_after(value: &HeaderValue, now: impl WallTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Some(delta) = decimal(text, 1000) {
        return Some(delta);
    }
    let date = httpdate::parse_http_date(text).ok().or_else(|| {
        let local = text
            .strip_suffix(" UTC")
            .or_else(|| text.strip_suffix(" +0000"))?;
        httpdate::parse_http_date(&format!("{local} GMT")).ok()
    })?;
    Some(
        date.duration_since(now.wall_time())
            .unwrap_or(Duration::ZERO),
    )
}

/// `retry-after-ms: <milliseconds>`: digits, optionally with a fraction (`1500`, `1500.5`),
/// rounded up to the next whole millisecond so the wait is never shorter than asked. Signs,
/// exponents, more than [`MAX_DIGITS`] integer digits and anything else are ignored.
pub(crate) fn retry_after_ms(value: &HeaderValue) -> Option<Duration> {
    decimal(value.to_str().ok()?.trim(), 1)
}

/// A non-negative decimal number of units of `unit_ms` milliseconds (1000: seconds, 1:
/// milliseconds), digits with an optional fraction, rounded up to the next whole millisecond
/// so a wait is never shorter than asked. Signs, exponents, a bare or trailing point, more
/// than [`MAX_DIGITS`] integer digits and anything else are `None`.
fn decimal(text: &str, unit_ms: u64) -> Option<Duration> {
    let (whole, fraction) = match text.split_once('.') {
        Some((_, "")) => return None,
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let whole = seconds(whole)?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The fraction's whole milliseconds, then one more if anything is left below them.
    let digits = unit_ms.ilog10() as usize;
    let (ms, rest) = fraction.split_at(digits.min(fraction.len()));
    let ms = ms
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(digits)
        .fold(0, |n, b| n * 10 + u64::from(b - b'0'));
    let up = u64::from(rest.bytes().any(|b| b != b'0'));
    Some(Duration::from_millis(
        whole
            .saturating_mul(unit_ms)
            .saturating_add(ms)
            .saturating_add(up),
    ))
}

/// The server's own verdict on retrying, from `x-should-retry` and the headers named in
/// `also`: `Some(true)` for `true`, `Some(false)` for `false` (any case, surrounding spaces
/// ignored), `None` for anything else or several disagreeing lines (no verdict is better than
/// a guessed one).
pub(crate) fn should_retry(headers: &HeaderMap, also: &[&str]) -> Option<bool> {
    let mut verdict = None;
    for value in headers.get_all(X_SHOULD_RETRY) {
        let this = verdict_of(value)?;
        if verdict.is_some_and(|v| v != this) {
            return None;
        }
        verdict = Some(this);
    }
    if also.is_empty() {
        return verdict;
    }
    named_verdicts(headers, also, verdict)
}

/// [`should_retry`] with the verdict so far, for the headers named in `also`.
#[cold]
fn named_verdicts(headers: &HeaderMap, also: &[&str], mut verdict: Option<bool>) -> Option<bool> {
    for value in also.iter().flat_map(|name| headers.get_all(*name)) {
        let this = verdict_of(value)?;
        if verdict.is_some_and(|v| v != this) {
            return None;
        }
        verdict = Some(this);
    }
    verdict
}

/// `true` or `false`, in any case, surrounding spaces ignored.
#[inline]
fn verdict_of(value: &HeaderValue) -> Option<bool> {
    match value.to_str().ok()?.trim() {
        v if v.eq_ignore_ascii_case("true") => Some(true),
        v if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A non-negative integer number of seconds, digits only.
fn delta_seconds(value: &HeaderValue) -> Option<Duration> {
    integer(value).map(Duration::from_secs)
}

/// A header value that is a non-negative integer, digits only (surrounding spaces ignored).
fn integer(value: &HeaderValue) -> Option<u64> {
    seconds(value.to_str().ok()?.trim())
}

/// The field `name` as [`integer`], from its first line.
fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    integer(headers.get(name)?)
}

fn seconds(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > MAX_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The wait one `RateLimit` field value names: the largest reset (`t=`, or `reset=` in
/// earlier drafts) of the policies that are exhausted. A policy whose remaining quota (`r=`,
/// `remaining=`) is above zero names no wait: `"burst";r=0;t=1, "daily";r=900;t=86000` is a
/// one-second wait, not a day.
fn rate_limit_reset(value: &HeaderValue) -> Option<Duration> {
    policies(value.to_str().ok()?)
        .filter(|p| p.counts_requests() && p.remaining.is_none_or(|r| r == 0))
        .filter_map(|p| p.reset)
        .max()
        .map(Duration::from_secs)
}

/// The quota, in requests a second, of the policy a 429's `RateLimit` field says is exhausted,
/// as its `RateLimit-Policy` field states it (`"burst";q=200;w=1`): the pacer's rate.
pub(crate) fn quota(headers: &HeaderMap) -> Option<f64> {
    let exhausted: Vec<&str> = policies_in(headers, "ratelimit")
        .filter(|p| p.counts_requests() && p.remaining == Some(0))
        .map(|p| p.name)
        .collect();
    policies_in(headers, "ratelimit-policy")
        .filter(|p| p.counts_requests() && exhausted.contains(&p.name))
        .filter_map(|p| {
            let (quota, window) = (p.quota?, p.window?);
            (quota > 0 && window > 0).then(|| quota as f64 / window as f64)
        })
        .min_by(f64::total_cmp)
}

/// What is left of the server's rate limit (remaining, reset, quota): the tightest policy of
/// the `RateLimit` field, else the `RateLimit-*` fields, else the `X-RateLimit-*` fields.
pub(crate) fn rate_limit_status(
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<(u64, Option<Duration>, Option<u64>)> {
    let number = |name| number(headers, name);
    if let Some(policy) = tightest(headers, |_| true) {
        let quota = || stated(headers, policy.name).and_then(|p| p.quota);
        return Some((
            policy.remaining?,
            policy.reset.map(Duration::from_secs),
            policy.quota.or_else(quota),
        ));
    }
    if let Some(remaining) = number("ratelimit-remaining") {
        let reset = number("ratelimit-reset").map(Duration::from_secs);
        return Some((remaining, reset, number("ratelimit-limit")));
    }
    let remaining = number("x-ratelimit-remaining")?;
    let reset = headers
        .get(X_RATELIMIT_RESET)
        .and_then(|v| x_rate_limit_reset(v, now));
    Some((remaining, reset, number("x-ratelimit-limit")))
}

/// What a server said, on one answer, is left of its quota: the allowance the layer follows
/// (see [`rules::Allowance`](super::rules::Allowance)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Requests the server would still admit.
    pub(crate) remaining: u64,
    /// Until the quota is whole again.
    pub(crate) reset: Duration,
    /// The requests a whole window holds, and the window, when the server states both (for
    /// `X-RateLimit-*`, which states no window, the reset stands for it): what the allowance
    /// refills to when `reset` passes.
    pub(crate) quota: Option<(u64, Duration)>,
}

/// What the server says is left of its quota (with the fields read): the most restrictive
/// `RateLimit` policy counted in requests (fewest remaining), with its `RateLimit-Policy`
/// quota and window; else `X-RateLimit-Remaining` and `X-RateLimit-Reset`. A policy in another
/// unit (`qu="content-bytes"`, `qu="concurrent-requests"`) is never read as a request count.
pub(crate) fn reading(
    headers: &HeaderMap,
    fields: HintFields,
    now: impl WallTime,
) -> Option<Reading> {
    if fields.rate_limit
        && let Some(policy) = tightest(headers, |p| p.reset.is_some())
    {
        let quota = stated(headers, policy.name)
            .and_then(|p| Some((p.quota?, Duration::from_secs(p.window?))))
            .filter(|(quota, window)| *quota > 0 && !window.is_zero());
        return Some(Reading {
            remaining: policy.remaining?,
            reset: Duration::from_secs(policy.reset?),
            quota,
        });
    }
    if fields.x_rate_limit_reset {
        let reset = x_rate_limit_reset(headers.get(X_RATELIMIT_RESET)?, now.wall_time())?;
        // No window is stated: it is at least the longest reset seen (see `Allowance::merge`).
        let quota = number(headers, "x-ratelimit-limit")
            .filter(|limit| *limit > 0 && !reset.is_zero())
            .map(|limit| (limit, reset));
        return Some(Reading {
            remaining: number(headers, "x-ratelimit-remaining")?,
            reset,
            quota,
        });
    }
    None
}

/// The quota an answer says it counted against, when its `RateLimit` field names one: a
/// number for the names and partition keys (`pk`) of its policies counted in requests, the
/// same in every process (a fleet's stores name partitions by it). Two endpoints that name
/// different policies count against different quotas.
pub(crate) fn scope(headers: &HeaderMap) -> Option<u64> {
    // Sorted (the order the server lists them in does not matter): on the stack for the
    // few policies an answer names, on the heap past eight.
    let mut few = [("", None); 8];
    let mut len = 0;
    let mut spilled: Vec<(&str, Option<&str>)> = Vec::new();
    let policies = policies_in(headers, RATELIMIT).filter(|p| p.counts_requests());
    for policy in policies.filter(|p| !p.name.is_empty()) {
        let named = (policy.name, policy.key);
        if let Some(free) = few.get_mut(len) {
            *free = named;
            len += 1;
        } else {
            if spilled.is_empty() {
                spilled.extend_from_slice(&few);
            }
            spilled.push(named);
        }
    }
    let named: &mut [(&str, Option<&str>)] = if spilled.is_empty() {
        few.get_mut(..len).unwrap_or_default()
    } else {
        &mut spilled
    };
    if named.is_empty() {
        return None;
    }
    named.sort_unstable();
    // FNV-1a: stable across processes and builds, unlike the standard library's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut last = None;
    for &(name, key) in named.iter() {
        // Each policy once.
        if last == Some((name, key)) {
            continue;
        }
        last = Some((name, key));
        for part in [name, "\0", key.unwrap_or(""), "\n"] {
            for byte in part.bytes() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    // 0 is "none named".
    Some(hash.max(1))
}

/// The most requests in flight an answer says its quota allows: the smallest `q` of the
/// `RateLimit-Policy` policies counted in requests in flight (`qu="concurrent-requests"`).
pub(crate) fn concurrency(headers: &HeaderMap) -> Option<u32> {
    policies_in(headers, RATELIMIT_POLICY)
        .filter(|p| p.unit == Some("concurrent-requests"))
        .filter_map(|p| p.quota)
        .filter(|q| *q > 0)
        .min()
        .map(|q| u32::try_from(q).unwrap_or(u32::MAX))
}

/// The unit of the first `RateLimit` policy an answer counts in something the layer does not
/// follow (neither requests nor requests in flight; `other` for a unit it does not know:
/// events name no free text of the server's).
#[cfg(feature = "tracing")]
pub(crate) fn ignored_unit(headers: &HeaderMap) -> Option<&'static str> {
    let unit = policies_in(headers, RATELIMIT)
        .filter_map(|p| p.unit)
        .find(|unit| !matches!(*unit, "requests" | "concurrent-requests"))?;
    Some(match unit {
        "content-bytes" => "content-bytes",
        _ => "other",
    })
}

/// The `RateLimit` policy counted in requests with the fewest left (of two, the later
/// reset), among those `keep` keeps.
fn tightest<'h>(headers: &'h HeaderMap, keep: impl Fn(&Policy<'h>) -> bool) -> Option<Policy<'h>> {
    policies_in(headers, RATELIMIT)
        .filter(|p| p.counts_requests() && p.remaining.is_some() && keep(p))
        .min_by_key(|p| (p.remaining, std::cmp::Reverse(p.reset)))
}

/// The `RateLimit-Policy` policy counted in requests that states the policy `name`.
fn stated<'h>(headers: &'h HeaderMap, name: &str) -> Option<Policy<'h>> {
    policies_in(headers, RATELIMIT_POLICY).find(|p| p.name == name && p.counts_requests())
}

/// One policy of a `RateLimit` or `RateLimit-Policy` field.
#[derive(Debug, Default, PartialEq, Eq)]
struct Policy<'a> {
    name: &'a str,
    remaining: Option<u64>,
    reset: Option<u64>,
    quota: Option<u64>,
    window: Option<u64>,
    /// The quota's unit (`qu`): requests when absent.
    unit: Option<&'a str>,
    /// The server's partition key (`pk`), as sent.
    key: Option<&'a str>,
}

impl Policy<'_> {
    /// Whether its figures count requests (the draft's default unit), not bytes or requests
    /// in flight.
    fn counts_requests(&self) -> bool {
        self.unit.is_none_or(|unit| unit == "requests")
    }
}

/// Every policy of every line of the field `name` (`RateLimit`, `RateLimit-Policy`).
fn policies_in<'h>(
    headers: &'h HeaderMap,
    name: impl http::header::AsHeaderName,
) -> impl Iterator<Item = Policy<'h>> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(policies)
}

/// The policies of a field value: the current draft's list (`"name";r=0;t=30, ...`), or the
/// earlier drafts' single dictionary (`limit=100, remaining=0, reset=30`).
fn policies(value: &str) -> impl Iterator<Item = Policy<'_>> {
    // A list's members are split at commas; a dictionary is one member (split at a line
    // break, which a field value never holds: no allocation either way).
    let members = if value.contains(';') { ',' } else { '\n' };
    value.split(members).map(|member| {
        let mut policy = Policy::default();
        for param in member.split([',', ';']) {
            let param = param.trim();
            let Some((key, value)) = param.split_once('=') else {
                policy.name = param.trim_matches('"');
                continue;
            };
            match key.trim() {
                "qu" => {
                    policy.unit = Some(value.trim().trim_matches('"'));
                    continue;
                }
                "pk" => {
                    policy.key = Some(value.trim());
                    continue;
                }
                _ => {}
            }
            let slot = match key.trim() {
                "r" | "remaining" => &mut policy.remaining,
                "t" | "reset" => &mut policy.reset,
                "q" | "limit" => &mut policy.quota,
                "w" => &mut policy.window,
                _ => continue,
            };
            *slot = seconds(value.trim());
        }
        policy
    })
}

/// `X-RateLimit-Reset`: seconds from now, or (from [`EPOCH_THRESHOLD`] on) Unix seconds.
fn x_rate_limit_reset(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let n = integer(value)?;
    if n < EPOCH_THRESHOLD {
        return Some(Duration::from_secs(n));
    }
    until_epoch(n, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Only `Retry-After` read.
    const NONE: HintFields = HintFields {
        retry_after_ms: false,
        rate_limit: false,
        x_rate_limit_reset: false,
        resets: &[],
    };

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    // 1994-11-06T08:49:37Z, the date in RFC 9110's examples.
    const NOW: u64 = 784_111_777;

    /// Every optional hint field read, no reset header named.
    fn every_field() -> HintFields {
        HintFields {
            retry_after_ms: true,
            rate_limit: true,
            x_rate_limit_reset: true,
            resets: &[],
        }
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn retry_after_reads_seconds_and_all_three_date_forms() {
        let now = at(NOW - 30);
        assert_eq!(retry_after(&hv("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&hv(" 7 "), now), Some(Duration::from_secs(7)));
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(&hv(date), now),
                Some(Duration::from_secs(30)),
                "{date}"
            );
        }
    }

    /// A 429's hint is nearly always seconds: reading it costs no clock read (a third of
    /// the hint's cost on the 429 -> 200 path); a date reads the clock once.
    #[test]
    fn a_hint_in_seconds_reads_no_clock() {
        struct Counted(std::cell::Cell<u32>);
        impl WallTime for Counted {
            fn wall_time(&self) -> SystemTime {
                self.0.set(self.0.get() + 1);
                at(NOW - 30)
            }
        }
        let clock = Counted(std::cell::Cell::new(0));
        let all = every_field();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, hv("3"));
        assert_eq!(
            wait_hint(&headers, all, &clock),
            Some(Duration::from_secs(3))
        );
        assert_eq!(clock.0.get(), 0);
        headers.insert(RETRY_AFTER, hv("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(
            wait_hint(&headers, all, &clock),
            Some(Duration::from_secs(30))
        );
        assert_eq!(clock.0.get(), 1);
    }

    /// Forms servers send that the RFC does not name: seconds with a fraction, rounded up to
    /// the millisecond (a wait is never shorter than asked), and a date in `UTC` or `+0000`.
    /// Before, each was ignored, and the retry went at the backoff alone.
    #[test]
    fn fractional_seconds_and_utc_dates_are_read() {
        let ms = Duration::from_millis;
        for (text, wait) in [
            ("1.5", ms(1500)),
            (" 0.25 ", ms(250)),
            ("2.0", ms(2000)),
            ("0.0001", ms(1)),
            ("1.0000", ms(1000)),
            ("0.999999", ms(1000)),
        ] {
            assert_eq!(retry_after(&hv(text), at(NOW)), Some(wait), "{text:?}");
        }
        let now = at(NOW - 30);
        for date in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 +0000",
        ] {
            assert_eq!(retry_after(&hv(date), now), Some(30 * ms(1000)), "{date}");
        }
    }

    #[test]
    fn zero_and_past_dates_name_no_floor() {
        let now = at(NOW + 5);
        assert_eq!(retry_after(&hv("0"), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&hv("Sun, 06 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn invalid_and_overflowing_hints_are_ignored() {
        for bad in [
            "-5",
            "1.",
            ".5",
            "1.5.5",
            "1e3",
            "+3",
            "5s",
            "",
            "soon",
            "0x10",
            "1 2",
            "99999999999999999999",
            "1234567890123",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 06 Nov 1994 08:49:37 +0100",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(&hv(bad), at(NOW)), None, "{bad:?}");
        }
        let binary = HeaderValue::from_bytes(b"\xff\xfe").unwrap();
        assert_eq!(retry_after(&binary, at(NOW)), None);
    }

    #[test]
    fn retry_after_wins_over_the_rate_limit_fields() {
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit", hv("\"default\";r=0;t=50"));
        headers.insert("x-ratelimit-reset", hv("40"));
        let all = every_field();
        assert_eq!(
            wait_hint(&headers, all, at(NOW)),
            Some(Duration::from_secs(50))
        );
        headers.insert(RETRY_AFTER, hv("3"));
        assert_eq!(
            wait_hint(&headers, all, at(NOW)),
            Some(Duration::from_secs(3))
        );
        // An invalid Retry-After does not hide a valid RateLimit.
        headers.insert(RETRY_AFTER, hv("later"));
        assert_eq!(
            wait_hint(&headers, all, at(NOW)),
            Some(Duration::from_secs(50))
        );
        // Fields that are not enabled are not read.
        assert_eq!(wait_hint(&headers, NONE, at(NOW)), None);
    }

    #[test]
    fn rate_limit_fields_in_their_draft_forms() {
        let read = |value: &str| rate_limit_reset(&hv(value));
        assert_eq!(read("\"default\";r=0;t=30"), Some(Duration::from_secs(30)));
        assert_eq!(
            read("\"a\";r=0;t=5, \"b\";r=0;t=60"),
            Some(Duration::from_secs(60))
        );
        // A policy with quota left names no wait.
        assert_eq!(
            read("\"a\";r=0;t=5, \"b\";r=3;t=60"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            read("\"burst\";r=0;t=1, \"daily\";r=900;t=86000"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(read("\"daily\";r=900;t=86000"), None);
        assert_eq!(read("limit=100, remaining=5, reset=12"), None);
        assert_eq!(
            read("limit=100, remaining=0, reset=12"),
            Some(Duration::from_secs(12))
        );
        assert_eq!(read("\"default\";r=0"), None);
        assert_eq!(read("t=-1"), None);

        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-reset", hv("9"));
        let fields = HintFields {
            retry_after_ms: true,
            rate_limit: true,
            resets: &[],
            x_rate_limit_reset: false,
        };
        assert_eq!(
            wait_hint(&headers, fields, at(NOW)),
            Some(Duration::from_secs(9))
        );
    }

    /// A server's own reset headers, once named with their format, are read after the
    /// standard ones, in the order given; before, such a 429 named no wait at all.
    #[test]
    fn configured_reset_headers_are_read_in_their_format_and_order() {
        let fields = HintFields {
            resets: &[
                ("X-App-Reset", ResetFormat::Seconds),
                ("x-app-reset-ms", ResetFormat::Milliseconds),
                ("x-app-reset-at", ResetFormat::EpochSeconds),
            ],
            ..HintFields::default()
        };
        let hint = |lines: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in lines {
                headers.append(*name, hv(value));
            }
            wait_hint(&headers, fields, at(NOW))
        };
        let ms = Duration::from_millis;
        assert_eq!(hint(&[("x-app-reset", "1.5")]), Some(ms(1500)));
        assert_eq!(hint(&[("x-app-reset-ms", "250.1")]), Some(ms(251)));
        let later = (NOW + 42).to_string();
        assert_eq!(hint(&[("x-app-reset-at", &later)]), Some(42 * ms(1000)));
        assert_eq!(hint(&[("x-app-reset-at", "1")]), Some(Duration::ZERO));
        // The first configured header that holds a valid value wins; of its lines, the
        // largest.
        assert_eq!(
            hint(&[("x-app-reset-ms", "9000"), ("x-app-reset", "2")]),
            Some(ms(2000))
        );
        assert_eq!(
            hint(&[("x-app-reset", "soon"), ("x-app-reset-ms", "700")]),
            Some(ms(700))
        );
        assert_eq!(
            hint(&[
                ("x-app-reset", "1"),
                ("x-app-reset", "3"),
                ("x-app-reset", "x")
            ]),
            Some(ms(3000))
        );
        // The standard fields come first; unnamed headers are not read.
        assert_eq!(
            hint(&[("x-app-reset", "9"), ("retry-after", "4")]),
            Some(ms(4000))
        );
        assert_eq!(hint(&[("x-other-reset", "9")]), None);
        assert_eq!(
            wait_hint(&HeaderMap::new(), HintFields::default(), at(NOW)),
            None
        );
    }

    #[test]
    fn x_rate_limit_reset_reads_deltas_and_epoch_seconds() {
        let now = at(1_700_000_000);
        let read = |value: &str| x_rate_limit_reset(&hv(value), now);
        assert_eq!(read("15"), Some(Duration::from_secs(15)));
        assert_eq!(read("1700000042"), Some(Duration::from_secs(42)));
        assert_eq!(read("1600000000"), Some(Duration::ZERO));
        assert_eq!(read("1.5"), None);
    }

    #[test]
    fn of_several_hint_lines_the_largest_valid_one_wins() {
        let mut headers = HeaderMap::new();
        headers.append(RETRY_AFTER, hv("soon"));
        headers.append(RETRY_AFTER, hv("4"));
        headers.append(RETRY_AFTER, hv("2"));
        assert_eq!(
            wait_hint(&headers, HintFields::default(), at(NOW)),
            Some(Duration::from_secs(4))
        );
        let mut headers = HeaderMap::new();
        headers.append("x-ratelimit-reset", hv("-1"));
        headers.append("x-ratelimit-reset", hv("7"));
        let fields = HintFields {
            retry_after_ms: true,
            rate_limit: false,
            resets: &[],
            x_rate_limit_reset: true,
        };
        assert_eq!(
            wait_hint(&headers, fields, at(NOW)),
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn the_quota_of_the_exhausted_policy_is_read_from_its_policy_field() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "ratelimit",
            hv("\"burst\";r=0;t=1, \"daily\";r=900;t=86000"),
        );
        headers.insert(
            "ratelimit-policy",
            hv("\"burst\";q=200;w=1, \"daily\";q=1000;w=86400"),
        );
        assert_eq!(quota(&headers), Some(200.0));
        headers.insert("ratelimit", hv("\"daily\";r=0;t=50"));
        assert_eq!(quota(&headers), Some(1000.0 / 86400.0));
        headers.insert("ratelimit", hv("\"burst\";r=5;t=1"));
        assert_eq!(quota(&headers), None, "nothing is exhausted");
        headers.insert("ratelimit", hv("\"burst\";r=0;t=1"));
        headers.insert("ratelimit-policy", hv("\"burst\";q=0;w=1"));
        assert_eq!(quota(&headers), None, "a zero quota paces nothing");
    }

    #[test]
    fn the_reading_is_the_fewest_requests_left_and_its_stated_quota() {
        let both = every_field();
        let s = Duration::from_secs;
        let mut headers = HeaderMap::new();
        assert_eq!(reading(&headers, both, at(NOW)), None);
        headers.insert(
            "ratelimit",
            hv("\"daily\";r=900;t=86000, \"burst\";r=5;t=2, \"bytes\";r=0;t=9;qu=\"content-bytes\""),
        );
        headers.insert(
            "ratelimit-policy",
            hv("\"burst\";q=20;w=1, \"daily\";q=1000;w=86400"),
        );
        // The byte quota is not a request count; of the others, the fewest left wins.
        assert_eq!(
            reading(&headers, both, at(NOW)),
            Some(Reading {
                remaining: 5,
                reset: s(2),
                quota: Some((20, s(1))),
            })
        );
        // A policy stated in another unit is not the request policy's quota.
        headers.insert(
            "ratelimit-policy",
            hv("\"burst\";q=20;w=1;qu=\"concurrent-requests\""),
        );
        assert_eq!(reading(&headers, both, at(NOW)).unwrap().quota, None);
        // In-flight limits are never read as request counts, here or in a 429's hints.
        headers.insert(
            "ratelimit",
            hv("\"conc\";r=0;t=5;qu=\"concurrent-requests\""),
        );
        assert_eq!(reading(&headers, both, at(NOW)), None);
        assert_eq!(
            rate_limit_reset(&hv("\"conc\";r=0;t=5;qu=\"concurrent-requests\"")),
            None
        );
        // X-RateLimit-*: no window is stated, the reset stands for it; without the limit,
        // nothing refills.
        headers.remove("ratelimit");
        headers.insert("x-ratelimit-remaining", hv("7"));
        headers.insert("x-ratelimit-reset", hv("3"));
        headers.insert("x-ratelimit-limit", hv("60"));
        assert_eq!(
            reading(&headers, both, at(NOW)),
            Some(Reading {
                remaining: 7,
                reset: s(3),
                quota: Some((60, s(3))),
            })
        );
        headers.remove("x-ratelimit-limit");
        assert_eq!(reading(&headers, both, at(NOW)).unwrap().quota, None);
        // Fields not asked for are not read.
        assert_eq!(reading(&headers, NONE, at(NOW)), None);
    }

    #[cfg(feature = "tracing")]
    #[test]
    fn a_policy_in_another_unit_is_named_by_its_unit_only() {
        let of = |field: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("ratelimit", hv(field));
            ignored_unit(&headers)
        };
        assert_eq!(
            of("\"a\";r=1;t=1, \"b\";r=0;t=9;qu=\"content-bytes\""),
            Some("content-bytes")
        );
        // Followed as a limit on requests in flight: not ignored.
        assert_eq!(of("\"c\";r=0;t=9;qu=\"concurrent-requests\""), None);
        assert_eq!(of("\"d\";r=0;t=9;qu=\"secret-thing\""), Some("other"));
        assert_eq!(of("\"e\";r=0;t=9;qu=\"requests\""), None);
        assert_eq!(of("\"f\";r=0;t=9"), None);
    }

    #[test]
    fn an_in_flight_limit_is_read_from_its_policy() {
        let mut headers = HeaderMap::new();
        assert_eq!(concurrency(&headers), None);
        headers.insert("ratelimit-policy", hv("\"default\";q=100;w=1"));
        assert_eq!(concurrency(&headers), None);
        headers.insert(
            "ratelimit-policy",
            hv("\"default\";q=100;w=1, \"c\";q=8;qu=\"concurrent-requests\", \"d\";q=4;qu=\"concurrent-requests\""),
        );
        assert_eq!(concurrency(&headers), Some(4));
        headers.insert(
            "ratelimit-policy",
            hv("\"c\";q=0;qu=\"concurrent-requests\""),
        );
        assert_eq!(concurrency(&headers), None);
        headers.insert(
            "ratelimit-policy",
            hv("\"c\";q=99999999999;qu=\"concurrent-requests\""),
        );
        assert_eq!(concurrency(&headers), Some(u32::MAX));
    }

    #[test]
    fn an_answer_names_the_quota_it_counted_against() {
        let of = |field: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("ratelimit", hv(field));
            scope(&headers)
        };
        let search = of("\"search\";r=0;t=5");
        assert!(search.is_some());
        assert_eq!(search, of("\"search\";r=9;t=60"));
        assert_ne!(search, of("\"default\";r=0;t=5"));
        // Its partition key counts; the order of policies does not; a byte quota does not.
        assert_ne!(search, of("\"search\";r=0;t=5;pk=:YWJj:"));
        assert_eq!(
            of("\"burst\";r=1;t=1, \"daily\";r=9;t=99"),
            of("\"daily\";r=9;t=99, \"burst\";r=1;t=1, \"b\";r=0;t=1;qu=\"content-bytes\"")
        );
        // A policy named twice counts once.
        assert_eq!(
            of("\"burst\";r=1;t=1, \"daily\";r=9;t=99"),
            of("\"daily\";r=9;t=99, \"burst\";r=1;t=1, \"burst\";r=0;t=1")
        );
        // Past eight policies, the same: whatever their order, each counts.
        let many: Vec<String> = (0..12).map(|i| format!("\"p{i}\";r=1;t=1")).collect();
        let reversed: Vec<String> = many.iter().rev().cloned().collect();
        assert_eq!(of(&many.join(", ")), of(&reversed.join(", ")));
        assert_ne!(of(&many.join(", ")), of(&many[..11].join(", ")));
        assert_ne!(of(&many[..9].join(", ")), of(&many[..8].join(", ")));
        // Nothing named: the earlier drafts' unnamed dictionary, or no field.
        assert_eq!(of("limit=100, remaining=0, reset=30"), None);
        assert_eq!(scope(&HeaderMap::new()), None);
        // The same number in every process: a fleet names partitions by it.
        assert_eq!(of("\"search\";r=0;t=5"), Some(0xd013_4c1b_5ed9_b853));
    }

    #[test]
    fn retry_after_ms_is_read_first_and_rounded_up() {
        let ms = Duration::from_millis;
        assert_eq!(retry_after_ms(&hv("1500")), Some(ms(1500)));
        assert_eq!(retry_after_ms(&hv(" 0 ")), Some(ms(0)));
        assert_eq!(retry_after_ms(&hv("1500.25")), Some(ms(1501)));
        assert_eq!(retry_after_ms(&hv("1500.000")), Some(ms(1500)));
        for invalid in [
            "", "-5", "+5", "1e3", "1.", ".5", "1.2.3", "1,5", "abc", "1 500",
        ] {
            assert_eq!(retry_after_ms(&hv(invalid)), None, "{invalid:?}");
        }
        assert_eq!(
            retry_after_ms(&hv("1234567890123")),
            None,
            "too many digits"
        );

        let mut headers = HeaderMap::new();
        headers.insert("retry-after", hv("2"));
        headers.insert("retry-after-ms", hv("1250"));
        let on = HintFields::default();
        assert_eq!(wait_hint(&headers, on, at(NOW)), Some(ms(1250)));
        let off = HintFields {
            retry_after_ms: false,
            ..on
        };
        assert_eq!(wait_hint(&headers, off, at(NOW)), Some(ms(2000)));
        // An invalid millisecond field hides nothing.
        headers.insert("retry-after-ms", hv("soon"));
        assert_eq!(wait_hint(&headers, on, at(NOW)), Some(ms(2000)));
    }

    #[test]
    fn should_retry_reads_true_and_false_only() {
        let verdict = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append("x-should-retry", hv(line));
            }
            should_retry(&headers, &[])
        };
        assert_eq!(verdict(&[]), None);
        assert_eq!(verdict(&["true"]), Some(true));
        assert_eq!(verdict(&[" FALSE "]), Some(false));
        assert_eq!(verdict(&["True", "true"]), Some(true));
        assert_eq!(verdict(&["true", "false"]), None, "disagreeing lines");
        for other in ["yes", "1", "", "truex"] {
            assert_eq!(verdict(&[other]), None, "{other:?}");
        }
    }

    #[test]
    fn the_rate_limit_status_from_each_field_family() {
        let status = |pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), hv(value));
            }
            rate_limit_status(&headers, at(NOW))
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(status(&[]), None);
        // The draft's list: the tightest policy, its quota from the policy field.
        assert_eq!(
            status(&[
                ("ratelimit", "\"daily\";r=900;t=3600, \"burst\";r=0;t=1"),
                (
                    "ratelimit-policy",
                    "\"burst\";q=10;w=1, \"daily\";q=1000;w=86400"
                ),
            ]),
            Some((0, secs(1), Some(10)))
        );
        // On a tie, the later reset.
        assert_eq!(
            status(&[("ratelimit", "\"a\";r=0;t=1, \"b\";r=0;t=9")]),
            Some((0, secs(9), None))
        );
        // The earlier draft's dictionary.
        assert_eq!(
            status(&[("ratelimit", "limit=100, remaining=42, reset=30")]),
            Some((42, secs(30), Some(100)))
        );
        // Separate fields, then the X- family (reset in Unix seconds read against now).
        assert_eq!(
            status(&[
                ("ratelimit-remaining", "5"),
                ("ratelimit-reset", "7"),
                ("ratelimit-limit", "60"),
                ("x-ratelimit-remaining", "1"),
            ]),
            Some((5, secs(7), Some(60)))
        );
        assert_eq!(
            status(&[
                ("x-ratelimit-remaining", "1"),
                ("x-ratelimit-reset", "20"),
                ("x-ratelimit-limit", "50"),
            ]),
            Some((1, secs(20), Some(50)))
        );
        let mut epoch = HeaderMap::new();
        epoch.insert("x-ratelimit-remaining", hv("0"));
        epoch.insert("x-ratelimit-reset", hv("2000000020"));
        assert_eq!(
            rate_limit_status(&epoch, at(2_000_000_000)),
            Some((0, secs(20), None))
        );
        // Nothing that names what is left is no status.
        assert_eq!(status(&[("x-ratelimit-limit", "50")]), None);
        assert_eq!(status(&[("ratelimit", "\"burst\";t=3")]), None);
        assert_eq!(status(&[("x-ratelimit-remaining", "-1")]), None);
    }

    proptest! {
        #[test]
        fn every_millisecond_value_round_trips(ms in 0u64..1_000_000_000_000, frac in 0u32..1000) {
            prop_assert_eq!(retry_after_ms(&hv(&ms.to_string())), Some(Duration::from_millis(ms)));
            let up = u64::from(frac > 0);
            prop_assert_eq!(
                retry_after_ms(&hv(&format!("{ms}.{frac:03}"))),
                Some(Duration::from_millis(ms + up))
            );
        }

        #[test]
        fn a_millisecond_hint_is_never_shorter_than_its_text(text in "[0-9]{1,6}(\\.[0-9]{1,4})?") {
            let asked: f64 = text.parse().unwrap();
            let read = retry_after_ms(&hv(&text)).unwrap();
            prop_assert!(read.as_secs_f64() * 1000.0 >= asked - 1e-6);
            prop_assert!(read.as_secs_f64() * 1000.0 < asked + 1.0);
        }

        #[test]
        fn should_retry_is_none_unless_the_text_is_a_boolean(text in "[ -~]{0,8}") {
            let mut headers = HeaderMap::new();
            headers.insert("x-should-retry", hv(&text));
            let expected = match text.trim().to_ascii_lowercase().as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            prop_assert_eq!(should_retry(&headers, &[]), expected);
        }

        #[test]
        fn any_header_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            now in 0u64..=u64::from(u32::MAX) * 4,
        ) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let mut headers = HeaderMap::new();
                for name in [
                    "retry-after", "retry-after-ms", "ratelimit", "ratelimit-reset",
                    "x-ratelimit-reset", "ratelimit-policy", "x-should-retry",
                ] {
                    headers.insert(name, value.clone());
                }
                let all = every_field();
                let _ = should_retry(&headers, &[]);
                let _ = rate_limit_status(&headers, at(now));
                let _ = wait_hint(&headers, all, at(now));
                let _ = quota(&headers);
            }
        }

        #[test]
        fn every_delta_seconds_value_round_trips(secs in 0u64..1_000_000_000_000) {
            prop_assert_eq!(
                retry_after(&hv(&secs.to_string()), at(NOW)),
                Some(Duration::from_secs(secs))
            );
        }

        /// A fractional number of seconds is never read shorter than written, and never a
        /// whole millisecond longer.
        #[test]
        fn a_fraction_of_a_second_rounds_up_to_the_millisecond(
            whole in 0u64..1_000_000,
            fraction in "[0-9]{1,9}",
        ) {
            let read = retry_after(&hv(&format!("{whole}.{fraction}")), at(NOW)).unwrap();
            // The exact value in nanoseconds (nine fraction digits at most).
            let nanos = u128::from(whole) * 1_000_000_000
                + format!("{fraction:0<9}").parse::<u128>().unwrap();
            prop_assert!(read.as_nanos() >= nanos);
            prop_assert!(read.as_nanos() < nanos + 1_000_000);
            prop_assert_eq!(read.subsec_nanos() % 1_000_000, 0);
        }

        #[test]
        fn every_future_http_date_is_its_distance_from_now(ahead in 0u64..10_000_000) {
            let date = httpdate::fmt_http_date(at(NOW + ahead));
            prop_assert_eq!(retry_after(&hv(&date), at(NOW)), Some(Duration::from_secs(ahead)));
        }
    }
}
