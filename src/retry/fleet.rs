//! A fleet's shared state in Redis (feature `redis`); see [`RedisFleet`].

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::StatusCode;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use super::hooks::Throttled;
use super::layer::Settings;
use super::plan::{Gate, Inputs, Plan, Snapshot, plan};
use super::rules::{self, Effect};
use super::state::{Observation, Partition, Signal, State};
use super::store::{Question, Remote};
use crate::ConfigError;

/// How often the "anything throttled?" key is read at most, per process.
const FLAG_EVERY: Duration = Duration::from_millis(5);

/// How long a reading of it is trusted: a process idle for longer asks the fleet about its
/// next request (one round trip) rather than act on an old "no".
const FLAG_TRUSTED: Duration = Duration::from_millis(100);

/// How long a process plans alone after Redis failed, before asking again (in the
/// background).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How often a Redis failure is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The default timeout of one Redis operation.
pub const DEFAULT_FLEET_TIMEOUT: Duration = Duration::from_millis(50);

/// A fleet's shared state in Redis or Valkey (feature `redis`), for
/// [`RetryBuilder::fleet`](super::RetryBuilder::fleet): many processes on one key share the
/// retry layer's gates, pacing and retry budget.
///
/// Each process keeps its own state (what every retry layer keeps) and adds the fleet's to
/// it:
///
/// - **Gates**: a 429 or 503 with a hint shuts the partition's gate in Redis as well (a hash
///   with the reopening, the server's ask and the status, expiring when the ask ends; its
///   reopening only moves later and is never past `max_cooldown`). Every process reads it
///   before sending while anything is throttled; past the reopening one process, not one per
///   process, gets the probe (`SET NX` with a lease).
/// - **Pacing**: while a partition is paced, each request asks a Lua script for its slot: a
///   GCRA step on one "theoretical arrival time" per partition, at the fleet's rate (a rate the
///   server stated, or the sum of the rates each process measured from its own answers, and
///   cut when a throttle cuts it). A request that waited for its slot and finds the gate shut
///   takes a new slot after the gate, as from the local pacer. One round trip per request
///   while throttled; none while nothing is.
/// - **"Anything throttled?"**: one key, read at most every 5 ms in the background and
///   cached; while it and the local state say no, requests do exactly what they do without a
///   fleet. A reading older than 100 ms (a process that was idle) is not trusted: the next
///   request asks.
/// - **Allowance** (with the quota fields read): what an answer says is left of the quota is
///   merged into the partition's allowance in Redis (a hash, expiring after its window), and
///   each request that goes while it holds takes a ticket from a counter there, in the round
///   trip that asks for its gate and slot; one that would go with nothing left before the
///   reset waits for it. Tickets number the requests of an origin and key, whatever quota
///   their answers name. A reading subtracts the tickets taken after its request's, as a
///   single process's does, and those taken before it whose answers have not come yet
///   (processes' requests reach the server out of order). Until its report has landed, a
///   process's reading also goes with the partition's next requests it asks about.
/// - **Budget**: healthy answers and retries counted in per-second hashes that expire; a
///   retry takes one from the fleet's pooled allowance (the ratio of the fleet's healthy
///   answers in the last ten seconds, plus each live process's reserve) or stops. Deposits
///   are batched with the flag's reads.
///
/// **Failure is local, never fatal**: every operation is bounded by a timeout (50 ms by
/// default); an error or a timeout makes the process plan alone (its own state is always
/// kept up to date, so nothing is lost), logs once per interval at WARN, and asks Redis again
/// in the background each second; the first answer rejoins. A request never waits on Redis
/// longer than the timeout, and never while Redis is known to be down.
///
/// Keys carry a prefix and the partition: the origin and a SHA-1 of a salt and the
/// credential header values (never the key). Values are numbers and a random process name.
///
/// ```no_run
/// use tower_infoplug::InfoPlugLayer;
/// use tower_infoplug::retry::RedisFleet;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = RedisFleet::builder("redis://127.0.0.1:6379").prefix("billing-workers").build()?;
/// let layer = InfoPlugLayer::builder(tower_infoplug::ApiKey::from_env()?, "https://api.infoplug.io")
///     .retry(|r| r.fleet(fleet))
///     .build()?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisFleet {
    fleet: Arc<Fleet>,
}

impl RedisFleet {
    /// A fleet on the Redis at `url` (`redis://`, `rediss://` needs the `redis` crate's TLS
    /// features), with the default prefix `infoplug` and a 50 ms timeout.
    pub fn builder(url: &str) -> RedisFleetBuilder {
        RedisFleetBuilder {
            target: Target::Single(url.to_owned()),
            prefix: "infoplug".to_owned(),
            timeout: DEFAULT_FLEET_TIMEOUT,
        }
    }

    /// A fleet on the Redis Cluster reached through any of `nodes` (`redis://` URLs; the
    /// client learns the others and the slot map from them), otherwise as
    /// [`builder`](Self::builder). Every key of a fleet carries its prefix as a hash tag, so
    /// one fleet's state lives on one master: a fleet's traffic to Redis is small, and fleets
    /// under different prefixes spread over the cluster. When that master fails, the fleet's
    /// processes plan alone (each at its share) until the cluster serves the slot again.
    #[cfg(feature = "redis-cluster")]
    pub fn cluster(nodes: &[&str]) -> RedisFleetBuilder {
        RedisFleetBuilder {
            target: Target::Cluster(nodes.iter().map(|n| (*n).to_owned()).collect()),
            prefix: "infoplug".to_owned(),
            timeout: DEFAULT_FLEET_TIMEOUT,
        }
    }

    /// Whether the last operation on Redis succeeded: `false` while the process plans alone.
    pub fn is_connected(&self) -> bool {
        self.fleet.up.load(Ordering::Acquire)
    }

    /// The prefix of every key this fleet writes.
    pub fn prefix(&self) -> &str {
        &self.fleet.prefix
    }

    /// Asks Redis once now, bounded by the fleet's timeout: whether it answered (and so
    /// whether this process shares its state from its next request). The fleet never needs
    /// it (it connects on its first request and rejoins by itself); a process calls it to
    /// say at its start whether it shares its rate-limit state, or plans alone.
    ///
    /// ```no_run
    /// use tower_infoplug::retry::RedisFleet;
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let fleet = RedisFleet::builder("redis://127.0.0.1:6379").build()?;
    /// if !fleet.check().await {
    ///     eprintln!("no Redis: this worker plans alone until it answers");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check(&self) -> bool {
        let fleet = &self.fleet;
        let flag = fleet.flag_key();
        // The flag's reading, with no deposits: what a request would read first.
        let args = args![0u64, fleet.budget_prefix(), &*fleet.me];
        match fleet
            .call::<Vec<i64>>(&fleet.scripts.refresh, &[&flag], &args)
            .await
        {
            Some(reply) => {
                fleet.read(&reply);
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for RedisFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may hold a password.
        f.debug_struct("RedisFleet")
            .field("prefix", &self.fleet.prefix)
            .field("timeout", &self.fleet.timeout)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisFleet`].
#[must_use = "call `build` to get the fleet"]
pub struct RedisFleetBuilder {
    target: Target,
    prefix: String,
    timeout: Duration,
}

/// Where a fleet's Redis is.
enum Target {
    Single(String),
    #[cfg(feature = "redis-cluster")]
    Cluster(Vec<String>),
}

/// The connection to a fleet's Redis.
enum Conn {
    /// One Redis, through the connection manager (it reconnects by itself).
    Single(ConnectionManager),
    /// A cluster.
    #[cfg(feature = "redis-cluster")]
    Cluster(Box<Cluster>),
}

/// A cluster's client, and the connection made on the first operation (made again on a
/// later one while it could not be). Boxed in [`Conn`]: the client's settings are large.
#[cfg(feature = "redis-cluster")]
struct Cluster {
    client: redis::cluster::ClusterClient,
    conn: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

impl RedisFleetBuilder {
    /// The prefix of every key (default `infoplug`; 1 to 100 bytes, no braces: it is the keys'
    /// hash tag): processes share state only under the same prefix.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// How long one Redis operation may take before the process plans alone (default 50 ms;
    /// 1 ms to 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and prepares the connection, which is made in the background: a
    /// Redis that is down now is not an error (the fleet joins when it answers). Needs a Tokio
    /// runtime.
    pub fn build(self) -> Result<RedisFleet, ConfigError> {
        let invalid = |reason: &str| ConfigError::OutOfRange {
            setting: "fleet",
            expected: reason.to_owned(),
        };
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&self.timeout) {
            return Err(invalid("a timeout from 1 ms to 10 s"));
        }
        if self.prefix.is_empty() || self.prefix.len() > 100 || self.prefix.contains(['{', '}']) {
            return Err(invalid("a prefix of 1 to 100 bytes without braces"));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(invalid("to be built within a Tokio runtime"));
        }
        // The URL is not quoted in the error: it may hold a password.
        let conn = match &self.target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|_| invalid("a redis:// URL that the redis crate accepts"))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                Conn::Single(
                    ConnectionManager::new_lazy_with_config(client, config)
                        .map_err(|_| invalid("a Redis connection that can be set up"))?,
                )
            }
            #[cfg(feature = "redis-cluster")]
            Target::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(invalid("at least one cluster node"));
                }
                let client =
                    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(self.timeout)
                        .response_timeout(self.timeout)
                        .retries(1)
                        .build()
                        .map_err(|_| {
                            invalid("redis:// URLs of cluster nodes that the redis crate accepts")
                        })?;
                Conn::Cluster(Box::new(Cluster {
                    client,
                    conn: tokio::sync::OnceCell::new(),
                }))
            }
        };
        let me = {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u32(std::process::id());
            format!("{:016x}", hasher.finish())
        };
        Ok(RedisFleet {
            fleet: Arc::new(Fleet {
                conn,
                prefix: self.prefix.into(),
                timeout: self.timeout,
                me: me.into(),
                epoch: Instant::now(),
                up: AtomicBool::new(false),
                contacted: AtomicBool::new(false),
                retry_at: AtomicU64::new(0),
                warned_at: AtomicU64::new(0),
                flag: AtomicBool::new(false),
                flag_checked: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
                deposits: AtomicU64::new(0),
                procs: AtomicU32::new(1),
                carried: Mutex::new(Vec::new()),
                scripts: Scripts::new(),
            }),
        })
    }
}

impl fmt::Debug for RedisFleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleetBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What every process's layer shares with Redis.
pub(crate) struct Fleet {
    conn: Conn,
    prefix: Box<str>,
    timeout: Duration,
    /// This process's name in the fleet's hashes: random, nothing else.
    me: Box<str>,
    epoch: Instant,
    /// Whether the last operation succeeded.
    up: AtomicBool,
    /// Whether any operation has ended yet: until then requests ask Redis (bounded by the
    /// timeout) rather than plan alone, so a fleet starting together shares from its first
    /// request.
    contacted: AtomicBool,
    /// While down, when (ms after `epoch`) to ask again.
    retry_at: AtomicU64,
    warned_at: AtomicU64,
    /// The cached "anything throttled?" and when (ms after `epoch`) it was read.
    flag: AtomicBool,
    flag_checked: AtomicU64,
    refreshing: AtomicBool,
    /// Healthy answers not yet added to the fleet's budget.
    deposits: AtomicU64,
    /// The processes seen in the fleet over ten seconds, at the last reading.
    procs: AtomicU32,
    /// Readings reported but not known to have landed (see [`Carried`]).
    carried: Mutex<Vec<Carried>>,
    scripts: Scripts,
}

/// A reading on its way to Redis in the background: until its report has landed, it goes
/// with its partition's admits too (merged before the request takes its ticket), so the
/// requests a process asks about right after the answer are bounded by it, whichever of the
/// two reaches Redis first. Without it, a fleet's requests went unbounded until its first
/// reading landed, and that first window cost it refusals.
struct Carried {
    /// The partition's allowance key.
    allow: String,
    reading: Reported,
}

/// A reading as it was reported, with when its reset comes.
#[derive(Clone, Copy)]
struct Reported {
    remaining: u64,
    reset_at: Instant,
    quota: Option<(u64, Duration)>,
    /// The ticket of the request it answered.
    ticket: u64,
}

/// The most readings carried at once (one per partition with a report on its way).
const MAX_CARRIED: usize = 64;

struct Scripts {
    admit: Script,
    close: Script,
    pace: Script,
    read: Script,
    answered: Script,
    reopen: Script,
    release: Script,
    refresh: Script,
}

/// The fleet's "now" in milliseconds, from Redis's clock: every process reads the same one.
const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Extends the "anything throttled?" flag (KEYS[flag]) to `want` ms from now.
const EXTEND_FLAG: &str = "local function extend(flag, want)
  if want > 0 and redis.call('PTTL', flag) < want then
    redis.call('SET', flag, '1', 'PX', math.floor(want))
  end
end
";

/// Merges a reading into a partition's allowance as it stands now (`rules::Allowance::read`,
/// `at`, `merge`): `merge(allow, started, in_flight, unscoped, scoped, i)` reads the reading
/// from `ARGV[i..i + 4]`
/// (remaining, reset in ms from now, quota with 0 for none stated, window in ms, and the
/// ticket of the request it answered). Returns when the allowance ends for good (ms). The
/// tickets of the requests on their way (a sorted set by when they went: the answers'
/// reports take theirs out; one with no answer reported `LOST_AFTER` ms after it went, or
/// the oldest beyond `MAX_IN_FLIGHT`, is taken as lost) count as not seen by the server.
const MERGE: &str = "local MAX_IN_FLIGHT = 1024
local LOST_AFTER = 10000
-- What is left of allowance `a` (its `left` and `ubase` fields) now that `unscoped` requests
-- of the origin went with no quota known: a quota an answer named (`scoped`) counts those
-- sent since it was set, which may have been its.
local function left_of(left, ubase, unscoped, scoped)
  if scoped then return math.max(left - (unscoped - (tonumber(ubase) or unscoped)), 0) end
  return left
end
local function merge(akey, skey, ikey, ukey, scoped, i)
  local started = tonumber(redis.call('GET', skey) or '0')
  local unscoped = tonumber(redis.call('GET', ukey) or '0')
  local ticket = tonumber(ARGV[i + 4])
  -- What the server had not seen when it answered: every request numbered after this one;
  -- and, for a reading that starts an allowance (or replaces a refill's guess), those
  -- numbered before it still on their way (no answer reported yet), which later readings of
  -- the same allowance count through it (an allowance only comes down).
  redis.call('ZREM', ikey, ticket)
  local after = math.max(started - (ticket + 1), 0)
  local fleft = math.max(tonumber(ARGV[i]) - after, 0)
  local function first()
    local early = 0
    for _, other in ipairs(redis.call('ZRANGE', ikey, 0, -1)) do
      if tonumber(other) < ticket then early = early + 1 end
    end
    return math.max(fleft - early, 0)
  end
  local funtil = now + tonumber(ARGV[i + 1])
  local fquota, fwindow = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local left, till, tk, quota, window = nil, funtil, ticket, fquota, fwindow
  local since, contra, refilled = started, 0, 0
  local a = redis.call('HMGET', akey, 'left', 'until', 'ticket', 'quota', 'window', 'since',
    'contradicted', 'refilled', 'ubase')
  if a[1] then
    local sleft, still, stk = left_of(tonumber(a[1]), a[9], unscoped, scoped), tonumber(a[2]),
      tonumber(a[3])
    local squota, swindow = tonumber(a[4]) or 0, tonumber(a[5]) or 0
    local ssince, scontra = tonumber(a[6]) or 0, tonumber(a[7]) or 0
    local srefilled = tonumber(a[8]) or 0
    local alive = true
    if now >= still then
      if squota > 0 and scontra == 0 and now < still + swindow then
        sleft, still, stk, srefilled = squota, still + swindow, started, 1
      else
        alive = false
      end
    end
    if alive then
      if ticket < stk then
        left, till, tk, quota, window = sleft, still, stk, squota, swindow
        since, contra, refilled = ssince, scontra, srefilled
      else
        if srefilled == 0 then
          left, till = math.min(sleft, fleft), math.min(still, funtil)
        else
          left = math.min(sleft, first())
        end
        if fquota > 0 then
          if squota > 0 then window = math.max(fwindow, swindow) end
        else
          quota, window = squota, swindow
        end
        since, contra = ssince, scontra
      end
    end
  end
  if not left then left = first() end
  redis.call('HSET', akey, 'left', left, 'until', till, 'ticket', tk, 'quota', quota,
    'window', window, 'since', since, 'contradicted', contra, 'refilled', refilled, 'ubase',
    unscoped)
  local last = till + (quota > 0 and window or 0)
  redis.call('PEXPIREAT', akey, math.floor(last) + 1000)
  return last
end
";

/// The partition's waiting requests and their slots, as `rules::Lanes` keeps them, for
/// priorities across the fleet: `S` the slots given out (a list, earliest first), `H` their
/// holders' names in the order they go (the i-th holds the i-th slot), `M` each holder's
/// `rank:passed`. A request of the rank of those waiting goes to the end (a few commands);
/// only one ranking above them walks back over those it passes. Needs `now`;
/// `{max_passed}` and `{forget}` are filled in from the local rules.
const LANES: &str = "local function lanes_went(S, H, M, id)
  local index = redis.call('LPOS', H, id)
  if index then
    redis.call('LSET', S, index, '#')
    redis.call('LREM', S, 1, '#')
    redis.call('LSET', H, index, '#')
    redis.call('LREM', H, 1, '#')
    redis.call('HDEL', M, id)
  end
end
local function lanes_when(S, H, id)
  local index = redis.call('LPOS', H, id)
  if not index then return nil end
  return tonumber(redis.call('LINDEX', S, index))
end
local function lanes_keep(S, H, M)
  local last = tonumber(redis.call('LINDEX', S, -1))
  if not last then
    redis.call('DEL', S, H, M)
    return
  end
  local keep = math.max(math.floor(last - now) + {forget}, 1)
  redis.call('PEXPIRE', S, keep)
  redis.call('PEXPIRE', H, keep)
  redis.call('PEXPIRE', M, keep)
end
local function rank_of(M, id)
  local r, p = string.match(redis.call('HGET', M, id) or '', '^(%d+):(%d+)$')
  return tonumber(r) or 0, tonumber(p) or 0
end
-- Request `id` of `rank`, not to go before `earliest`, takes a slot; the schedule gave out
-- `fresh` for it. Returns the slot it holds: an earlier one held by requests it ranks above
-- (each of them moves one slot later), or `fresh`.
local function lanes_take(S, H, M, id, rank, earliest, fresh)
  while true do
    local first = tonumber(redis.call('LINDEX', S, 0))
    if not first or first >= now - {forget} then break end
    redis.call('LPOP', S)
    local gone = redis.call('LPOP', H)
    if gone then redis.call('HDEL', M, gone) end
  end
  lanes_went(S, H, M, id)
  local n = redis.call('LLEN', H)
  local last = tonumber(redis.call('LINDEX', S, -1))
  if not last or last <= fresh then
    redis.call('RPUSH', S, fresh)
  else
    local slots = redis.call('LRANGE', S, 0, -1)
    local k = #slots + 1
    for i = 1, #slots do
      if tonumber(slots[i]) > fresh then
        k = i
        break
      end
    end
    table.insert(slots, k, fresh)
    redis.call('DEL', S)
    for i = 1, #slots do redis.call('RPUSH', S, slots[i]) end
  end
  local index = 0
  for i = n - 1, 0, -1 do
    local r, p = rank_of(M, redis.call('LINDEX', H, i))
    if r >= rank or p >= {max_passed} then
      index = i + 1
      break
    end
  end
  local before = 0
  while before < n do
    local slot = tonumber(redis.call('LINDEX', S, before))
    if not slot or slot >= earliest then break end
    before = before + 1
  end
  index = math.max(index, before)
  if index >= n then
    redis.call('RPUSH', H, id)
  else
    for i = index, n - 1 do
      local other = redis.call('LINDEX', H, i)
      local r, p = rank_of(M, other)
      redis.call('HSET', M, other, r .. ':' .. (p + 1))
    end
    redis.call('LINSERT', H, 'BEFORE', redis.call('LINDEX', H, index), id)
  end
  redis.call('HSET', M, id, rank .. ':0')
  return tonumber(redis.call('LINDEX', S, math.min(index, n)))
end
";

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| Script::new(&format!("{NOW}{EXTEND_FLAG}{body}"));
        let merging = |body: &str| Script::new(&format!("{NOW}{EXTEND_FLAG}{MERGE}{body}"));
        let lanes = LANES
            .replace("{max_passed}", &rules::MAX_PASSED.to_string())
            .replace("{forget}", &super::pacer::FORGET.as_millis().to_string());
        let admitting =
            |body: &str| Script::new(&format!("{NOW}{EXTEND_FLAG}{MERGE}{lanes}{body}"));
        Self {
            // KEYS: gate, probe, rates, tat, allow, started, in flight, unscoped, the lanes'
            // slots, holders and ranks (see `LANES`). ARGV:
            // me, my rate, stated (1, 2: configured, 0 not), my rate's lifetime (ms), earliest
            // slot (ms from now), cap (ms), take a slot (1 yes, 0 no, 2 only while the gate is
            // shut: a resumed request's slot was in its shadow), probe lease (ms), ask the
            // budget (1/0), ratio, reserve, budget key prefix, answers are read for the quota
            // (1/0), the partition is a quota an answer named (1/0), the request's number in
            // this process ('' for none) and its rank (see `LANES`), then a reading carried
            // (see `Carried`) as `MERGE` reads it, or -1 for none.
            // Returns {code, reopen_in, asked_in, status, budget, slot_in, ticket, hold_in,
            // held_in}: code 1 closed, 2 probe granted, 3 probe out elsewhere, 0 open; budget 1
            // taken, 0 refused, -1 not asked; slot_in the pacing slot (taken unless past the
            // cap), -1 not paced; ticket the request's (see `rules::Allowance`), taken when it
            // goes now, else -1; hold_in, when nothing is left of the allowance before it
            // would go: the allowance's reset, else -1; held_in, for a resumed request whose
            // slot a request ranking above it moved later: where it is now, else -1.
            admit: admitting(
                "local follow = ARGV[13] == '1'
local scoped = ARGV[14] == '1'
-- The request's name in the lanes (this process's and its number) and rank, if it has one.
local lane = ARGV[15] ~= '' and (ARGV[1] .. ':' .. ARGV[15]) or nil
local rank = tonumber(ARGV[16]) or 0
-- A reading of this process's whose report may not have landed yet: merged first.
if follow and tonumber(ARGV[17]) >= 0 then merge(KEYS[5], KEYS[6], KEYS[7], KEYS[8], scoped, 17) end
-- The allowance as it stands now (rules::Allowance::at): refilled at its reset for one
-- window when the quota is stated and no refusal contradicted it, else gone.
local allow = nil
if follow then
  local a = redis.call('HMGET', KEYS[5], 'left', 'until', 'quota', 'window', 'contradicted',
    'ubase')
  if a[1] then
    local unscoped = tonumber(redis.call('GET', KEYS[8]) or '0')
    local left, till = left_of(tonumber(a[1]), a[6], unscoped, scoped), tonumber(a[2])
    local quota, window = tonumber(a[3]) or 0, tonumber(a[4]) or 0
    if now >= till then
      if quota > 0 and a[5] ~= '1' and now < till + window then
        left, till = quota, till + window
        local started = tonumber(redis.call('GET', KEYS[6]) or '0')
        redis.call('HSET', KEYS[5], 'left', left, 'until', till, 'ticket', started, 'refilled', 1,
          'ubase', unscoped)
      else
        redis.call('DEL', KEYS[5])
        left = nil
      end
    end
    if left then allow = {left, till, a[5] == '1'} end
  end
end
-- A request that goes now takes a ticket, and one of what is left before the reset; one
-- that would go before the reset with nothing left is held until it.
local function finish(code, reopen_in, asked_in, status, budget, slot_in, held_in)
  local ticket, hold_in = -1, -1
  if follow then
    local at_in = math.max(tonumber(ARGV[5]), held_in)
    if code == 1 then at_in = math.max(at_in, asked_in) end
    if slot_in >= 0 then at_in = math.max(at_in, slot_in) end
    if allow and allow[1] <= 0 and now + at_in < allow[2] then
      hold_in = allow[2] - now
    elseif at_in <= 0 then
      ticket = redis.call('INCR', KEYS[6]) - 1
      redis.call('PEXPIRE', KEYS[6], 3600000)
      redis.call('ZADD', KEYS[7], now, ticket)
      redis.call('PEXPIRE', KEYS[7], LOST_AFTER)
      redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (now - LOST_AFTER))
      if redis.call('ZCARD', KEYS[7]) > MAX_IN_FLIGHT then
        redis.call('ZREMRANGEBYRANK', KEYS[7], 0, -MAX_IN_FLIGHT - 1)
      end
      if not scoped then
        redis.call('INCR', KEYS[8])
        redis.call('PEXPIRE', KEYS[8], 3600000)
      end
      if allow and now < allow[2] then redis.call('HINCRBY', KEYS[5], 'left', -1) end
    end
  end
  return {code, reopen_in, asked_in, status, budget, slot_in, ticket, hold_in, held_in}
end
local my_rate = tonumber(ARGV[2])
if my_rate > 0 then
  local life = tonumber(ARGV[4])
  redis.call('HSET', KEYS[3], ARGV[1], my_rate .. ':' .. ARGV[3] .. ':' .. (now + life))
  if redis.call('PTTL', KEYS[3]) < life then redis.call('PEXPIRE', KEYS[3], life) end
end
local code, reopen_in, asked_in, status = 0, 0, 0, 0
local gate = redis.call('HMGET', KEYS[1], 'reopen', 'asked', 'status')
if gate[1] then
  local reopen, asked = tonumber(gate[1]), tonumber(gate[2])
  status = tonumber(gate[3])
  if now < reopen then
    code, reopen_in, asked_in = 1, reopen - now, asked - now
  elseif now < asked then
    asked_in = asked - now
    if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[8]) then
      return {3, 0, asked_in, status, -1, -1, -1, -1, -1}
    end
    code = 2
  end
end
local budget = -1
if ARGV[9] == '1' then
  local sec = tonumber(t[1])
  local ok, retries, procs, seen = 0, 0, 0, {}
  for i = 0, 9 do
    local v = redis.call('HGETALL', ARGV[12] .. (sec - i))
    for j = 1, #v, 2 do
      local field = v[j]
      if field == 'ok' then ok = ok + tonumber(v[j + 1])
      elseif field == 'retries' then retries = retries + tonumber(v[j + 1])
      elseif not seen[field] then seen[field] = true; procs = procs + 1 end
    end
  end
  -- The processes' allowances pooled: the ratio of the fleet's healthy answers, and each
  -- process's reserve.
  if retries + 1 > tonumber(ARGV[10]) * ok + tonumber(ARGV[11]) * math.max(procs, 1) then
    return {code, reopen_in, asked_in, status, 0, -1, -1, -1, -1}
  end
  redis.call('HINCRBY', ARGV[12] .. sec, 'retries', 1)
  redis.call('EXPIRE', ARGV[12] .. sec, 20)
  budget = 1
end
if code == 2 or ARGV[7] == '0' or (ARGV[7] == '2' and code ~= 1) then
  -- A resumed request asks where its slot is now: one ranking above it may have moved it
  -- later; else it goes, and holds it no more.
  local held_in = -1
  if lane and ARGV[7] == '2' and redis.call('EXISTS', KEYS[10]) == 1 then
    local held = lanes_when(KEYS[9], KEYS[10], lane)
    if held and held > now then
      held_in = math.ceil(held - now)
    elseif held then
      lanes_went(KEYS[9], KEYS[10], KEYS[11], lane)
      lanes_keep(KEYS[9], KEYS[10], KEYS[11])
    end
  end
  return finish(code, reopen_in, asked_in, status, budget, -1, held_in)
end
local entries = redis.call('HGETALL', KEYS[3])
local stated, measured, configured = 0, 0, false
for i = 1, #entries, 2 do
  local r, s, e = string.match(entries[i + 1], '^([^:]+):([^:]+):([^:]+)$')
  if tonumber(e) and tonumber(e) > now then
    if s ~= '0' then stated = math.max(stated, tonumber(r)) else measured = measured + tonumber(r) end
    if s == '2' then configured = true end
  else
    redis.call('HDEL', KEYS[3], entries[i])
  end
end
local rate = stated > 0 and stated or measured
-- While an allowance holds, only a configured quota paces: what the server says is left is
-- better than a pace learned or taken from its refusals.
if allow and not allow[3] and not configured then rate = 0 end
if rate <= 0 then return finish(code, reopen_in, asked_in, status, budget, -1, -1) end
-- A request held by the gate takes its slot after the gate, as the local pacer does.
local earliest = tonumber(ARGV[5])
if code == 1 then earliest = math.max(earliest, asked_in) end
local slot = math.max(tonumber(redis.call('GET', KEYS[4]) or '0'), now + earliest)
if slot - now <= tonumber(ARGV[6]) then
  local next = slot + 1000 / rate
  redis.call('SET', KEYS[4], tostring(next), 'PX', math.floor(next - now) + 60000)
  -- One that waits holds its slot in the lanes, which decide it (one going now holds none).
  if lane and slot > now then
    slot = lanes_take(KEYS[9], KEYS[10], KEYS[11], lane, rank, now + earliest, slot)
    lanes_keep(KEYS[9], KEYS[10], KEYS[11])
  elseif lane and redis.call('EXISTS', KEYS[10]) == 1 then
    lanes_went(KEYS[9], KEYS[10], KEYS[11], lane)
    lanes_keep(KEYS[9], KEYS[10], KEYS[11])
  end
end
-- Past the cap the slot is reported, not taken: the request will not wait for it.
if slot - now > tonumber(ARGV[6]) then
  return {code, reopen_in, asked_in, status, budget, math.ceil(slot - now), -1, -1, -1}
end
return finish(code, reopen_in, asked_in, status, budget, math.ceil(slot - now), -1)",
            ),
            // KEYS: gate, probe, flag. ARGV: reopen_in, asked_in, status, was the probe (1/0).
            close: script(
                "local reopen, asked = now + tonumber(ARGV[1]), now + tonumber(ARGV[2])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
else
  local old = redis.call('HMGET', KEYS[1], 'reopen', 'asked')
  if old[1] then
    reopen = math.max(reopen, tonumber(old[1]))
    asked = math.max(asked, tonumber(old[2]))
  end
end
redis.call('HSET', KEYS[1], 'reopen', reopen, 'asked', asked, 'status', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], asked)
extend(KEYS[3], asked - now)
return 1",
            ),
            // KEYS: rates, flag. ARGV: me, rate, stated (1, 2: configured, 0 not), lifetime
            // (ms).
            pace: script(
                "local life = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. (now + life))
if redis.call('PTTL', KEYS[1]) < life then redis.call('PEXPIRE', KEYS[1], life) end
extend(KEYS[2], life)
return 1",
            ),
            // KEYS: allow, started, in flight, unscoped, flag. ARGV: remaining, reset (ms), quota
            // (0: none stated), window (ms), the ticket of the request it answered, the
            // partition is a quota an answer named (1/0).
            read: merging(
                "local last = merge(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[6] == '1', 1)
extend(KEYS[5], last - now)
return 1",
            ),
            // KEYS: allow, in flight. ARGV: ticket, refused (1/0). A request with a ticket
            // was answered without a reading: it is no longer on its way; and a refusal of one
            // sent under the allowance contradicts it (rules::Allowance::refused).
            answered: script(
                "redis.call('ZREM', KEYS[2], ARGV[1])
local since = redis.call('HGET', KEYS[1], 'since')
if ARGV[2] == '1' and since and tonumber(ARGV[1]) >= tonumber(since) then
  redis.call('HSET', KEYS[1], 'contradicted', 1)
end
return 1",
            ),
            // KEYS: gate, probe. The probe's answer had no hint: the gate reopens.
            reopen: script("redis.call('DEL', KEYS[1], KEYS[2])\nreturn now"),
            // KEYS: probe. ARGV: me. The probe got no answer: another may probe.
            release: script(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return now",
            ),
            // KEYS: flag. ARGV: healthy answers to deposit, budget key prefix, me. The
            // second's hash also names the processes seen in it (for their reserves).
            // Returns {flag set (1/0), processes seen over the last ten seconds}.
            refresh: script(
                "local n = tonumber(ARGV[1])
local sec = tonumber(t[1])
local key = ARGV[2] .. sec
if n > 0 then redis.call('HINCRBY', key, 'ok', n) end
redis.call('HSET', key, 'proc:' .. ARGV[3], 1)
redis.call('EXPIRE', key, 20)
local procs, seen = 0, {}
for i = 0, 9 do
  local names = redis.call('HKEYS', ARGV[2] .. (sec - i))
  for j = 1, #names do
    local name = names[j]
    if name ~= 'ok' and name ~= 'retries' and not seen[name] then
      seen[name] = true
      procs = procs + 1
    end
  end
end
return {redis.call('EXISTS', KEYS[1]), procs}",
            ),
        }
    }
}

/// The keys of one partition.
struct Keys {
    gate: String,
    probe: String,
    rates: String,
    tat: String,
    /// What the server said is left of the quota (see `rules::Allowance`).
    allow: String,
    /// The tickets handed out to requests as they go (one numbering for every quota of the
    /// origin and credential).
    started: String,
    /// The tickets of requests on their way (no answer reported yet).
    in_flight: String,
    /// How many requests of the origin went with no quota named (the first to a path, before
    /// its answer said which quota it counts against).
    unscoped: String,
    /// Whether the partition is a quota an answer named: its allowance counts the requests
    /// that went unscoped since it was set, which may have been its.
    scoped: bool,
    /// The requests waiting for the partition's slots, by priority: their slots, their
    /// names, their ranks (see `LANES`).
    lanes: [String; 3],
}

impl Fleet {
    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Every key of a fleet carries its prefix as a hash tag (`{prefix}`): in a Redis Cluster
    /// they all live in one slot, so each script, which reads a partition's keys beside the
    /// fleet's flag and budget, runs on one node.
    fn keys(&self, partition: &Partition) -> Keys {
        let base = format!("{{{}}}:p:{}", self.prefix, partition.fleet_name());
        let origin = format!("{{{}}}:p:{}", self.prefix, partition.fleet_base());
        Keys {
            gate: format!("{base}:gate"),
            probe: format!("{base}:probe"),
            rates: format!("{base}:rates"),
            tat: format!("{base}:tat"),
            allow: format!("{base}:allow"),
            // One numbering for the origin and credential, whatever quota a request counts
            // against: a request is numbered before its answer says which (endpoint quotas),
            // and a reading subtracts every request numbered after its own.
            started: format!("{origin}:started"),
            in_flight: format!("{origin}:in_flight"),
            unscoped: format!("{origin}:unscoped"),
            lanes: [
                format!("{base}:lanes:slots"),
                format!("{base}:lanes:holders"),
                format!("{base}:lanes:ranks"),
            ],
            scoped: partition.is_scoped(),
        }
    }

    fn flag_key(&self) -> String {
        format!("{{{}}}:throttled", self.prefix)
    }

    fn budget_prefix(&self) -> String {
        format!("{{{}}}:budget:", self.prefix)
    }

    /// Whether requests may ask Redis now (the last operation succeeded).
    fn up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Reads the refresh script's reply `{flag, processes}`.
    fn read(&self, reply: &[i64]) {
        let field = |i: usize| reply.get(i).copied().unwrap_or(0);
        self.flag.store(field(0) == 1, Ordering::Release);
        let procs = u32::try_from(field(1)).unwrap_or(u32::MAX).max(1);
        self.procs.store(procs, Ordering::Relaxed);
    }

    /// The share of a fleet-wide rate this process may take while it plans alone: one over
    /// the processes it last saw in the fleet (1 until it saw any).
    pub(crate) fn share(&self) -> u32 {
        self.procs.load(Ordering::Relaxed).max(1)
    }

    /// Whether requests ask Redis: it answered last time, or it has not been tried yet.
    fn may_ask(&self) -> bool {
        self.up() || !self.contacted.load(Ordering::Acquire)
    }

    /// Whether anything is throttled in the fleet, as last read (a reading older than
    /// [`FLAG_TRUSTED`] counts as "maybe"); reads it again in the background when the reading
    /// is older than [`FLAG_EVERY`] (or, while Redis is down, once every [`RETRY_EVERY`]).
    fn throttled(self: &Arc<Self>) -> bool {
        let now = self.ms(Instant::now());
        let up = self.up();
        let age = now.saturating_sub(self.flag_checked.load(Ordering::Relaxed));
        let due = if up {
            age >= FLAG_EVERY.as_millis() as u64
        } else {
            now >= self.retry_at.load(Ordering::Relaxed)
        };
        if due && !self.refreshing.swap(true, Ordering::AcqRel) {
            let fleet = Arc::clone(self);
            let spawned = spawn(async move {
                let deposits = fleet.deposits.swap(0, Ordering::Relaxed);
                let flag = fleet.flag_key();
                let args = args![deposits, fleet.budget_prefix(), &*fleet.me];
                match fleet
                    .call::<Vec<i64>>(&fleet.scripts.refresh, &[&flag], &args)
                    .await
                {
                    Some(reply) => fleet.read(&reply),
                    // Nothing is lost: the deposits go with the next reading.
                    None => {
                        fleet.deposits.fetch_add(deposits, Ordering::Relaxed);
                    }
                }
                fleet
                    .flag_checked
                    .store(fleet.ms(Instant::now()), Ordering::Relaxed);
                fleet.refreshing.store(false, Ordering::Release);
            });
            if !spawned {
                self.refreshing.store(false, Ordering::Release);
            }
        }
        (up && age >= FLAG_TRUSTED.as_millis() as u64) || self.flag.load(Ordering::Acquire)
    }

    /// Runs `script` on `keys` and `args`, bounded by the timeout; `None` (and the process
    /// plans alone for a while) when Redis failed or was too slow. A connection found broken
    /// (Redis restarted) is tried once more within the same bound, over the connection
    /// manager's new one.
    async fn call<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[Vec<u8>],
    ) -> Option<T> {
        let attempt = async {
            let mut last = None;
            for _ in 0..2 {
                let mut invocation = script.prepare_invoke();
                for key in keys {
                    invocation.key(*key);
                }
                for arg in args {
                    invocation.arg(arg.as_slice());
                }
                let invoked = match &self.conn {
                    Conn::Single(conn) => invocation.invoke_async::<T>(&mut conn.clone()).await,
                    #[cfg(feature = "redis-cluster")]
                    Conn::Cluster(cluster) => {
                        let Cluster { client, conn } = &**cluster;
                        match conn.get_or_try_init(|| client.get_async_connection()).await {
                            Ok(conn) => invocation.invoke_async::<T>(&mut conn.clone()).await,
                            Err(error) => Err(error),
                        }
                    }
                };
                match invoked {
                    Ok(value) => return Ok(value),
                    Err(error) if error.is_connection_dropped() || error.is_io_error() => {
                        last = Some(error);
                    }
                    Err(error) => return Err(error),
                }
            }
            Err(last
                .unwrap_or_else(|| redis::RedisError::from((redis::ErrorKind::Io, "no attempt"))))
        };
        let outcome = tokio::time::timeout(self.timeout, attempt).await;
        self.contacted.store(true, Ordering::Release);
        match outcome {
            Ok(Ok(value)) => {
                if !self.up.swap(true, Ordering::AcqRel) {
                    super::trace::warn_event!(prefix = %self.prefix, "Redis answers: sharing the fleet's rate-limit state again");
                }
                Some(value)
            }
            Ok(Err(error)) => {
                self.down(error.kind());
                None
            }
            Err(_) => {
                self.down(redis::ErrorKind::Io);
                None
            }
        }
    }

    #[allow(unused_variables)] // without the `tracing` feature
    fn down(&self, kind: redis::ErrorKind) {
        let now = self.ms(Instant::now());
        self.up.store(false, Ordering::Release);
        self.retry_at
            .store(now + RETRY_EVERY.as_millis() as u64, Ordering::Relaxed);
        let warned = self.warned_at.load(Ordering::Relaxed);
        if (warned == 0 || now.saturating_sub(warned) >= WARN_EVERY.as_millis() as u64)
            && self
                .warned_at
                .compare_exchange(warned, now.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            super::trace::warn_event!(
                prefix = %self.prefix,
                error = ?kind,
                "Redis failed or was too slow: planning with this process's state alone until it answers"
            );
        }
    }

    /// Asks the fleet about a request (see `Scripts::admit`).
    async fn admit(self: Arc<Self>, keys: Keys, ask: Ask) -> Option<Remote> {
        let args = args![
            &*self.me,
            ask.rate.map_or(0.0, |(rate, _, _)| rate),
            stated_arg(
                ask.rate.is_some_and(|(_, stated, _)| stated),
                ask.configured
            ),
            ask.rate.map_or(0, |(_, _, life)| ms(life).max(1)),
            ms(ask.earliest),
            ms(ask.cap),
            ask.slot as u8,
            ms(ask.lease).max(1),
            u8::from(ask.budget.is_some()),
            ask.budget.map_or(0.0, |(ratio, _)| ratio),
            ask.budget.map_or(0.0, |(_, reserve)| reserve),
            self.budget_prefix(),
            u8::from(ask.follow),
            u8::from(keys.scoped),
            ask.lane.map_or(String::new(), |(lane, _)| lane.to_string()),
            ask.lane.map_or(0, |(_, rank)| rank)
        ];
        let mut args = args;
        match self.carried(&keys.allow, ask.follow) {
            Some(c) => args.extend(args![
                c.remaining,
                ms(c.reset_at.saturating_duration_since(Instant::now())),
                c.quota.map_or(0, |(q, _)| q),
                c.quota.map_or(0, |(_, w)| ms(w)),
                c.ticket
            ]),
            None => args.extend(args![-1]),
        }
        let keys = [
            &*keys.gate,
            &keys.probe,
            &keys.rates,
            &keys.tat,
            &keys.allow,
            &keys.started,
            &keys.in_flight,
            &keys.unscoped,
            &keys.lanes[0],
            &keys.lanes[1],
            &keys.lanes[2],
        ];
        let reply: Vec<i64> = self.call(&self.scripts.admit, &keys, &args).await?;
        Some(decode_admit(&reply, Instant::now()))
    }

    /// The reading carried for the partition whose allowance is `allow`, if answers are read.
    fn carried(&self, allow: &str, follow: bool) -> Option<Reported> {
        if !follow {
            return None;
        }
        let now = Instant::now();
        let carried = self.carried.lock().unwrap_or_else(PoisonError::into_inner);
        // One whose reset passed says nothing of the allowance now.
        carried
            .iter()
            .find(|c| c.allow == allow && c.reading.reset_at > now)
            .map(|c| c.reading)
    }

    /// Carries `reading` for the partition whose allowance is `allow` until its report lands
    /// (a newer one replaces an older: it supersedes it in Redis as well).
    fn carry(&self, allow: &str, reading: Reported) {
        let mut carried = self.carried.lock().unwrap_or_else(PoisonError::into_inner);
        match carried.iter_mut().find(|c| c.allow == allow) {
            Some(c) if c.reading.ticket <= reading.ticket => c.reading = reading,
            Some(_) => {}
            None => {
                if carried.len() == MAX_CARRIED {
                    carried.remove(0);
                }
                carried.push(Carried {
                    allow: allow.to_owned(),
                    reading,
                });
            }
        }
    }

    /// The report of the reading of the answer to `ticket` landed (or failed: then the
    /// process plans alone): it is no longer carried, unless a newer one replaced it.
    fn landed(&self, allow: &str, ticket: u64) {
        let mut carried = self.carried.lock().unwrap_or_else(PoisonError::into_inner);
        carried.retain(|c| c.allow != allow || c.reading.ticket != ticket);
    }

    /// Writes what an attempt showed, in the background.
    fn report(self: &Arc<Self>, keys: Keys, report: Report) {
        // Without a runtime nothing is shared: the local state has it all.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.may_ask() {
            return;
        }
        // A reading goes with the partition's admits until its report landed.
        let landing = match &report {
            Report::Read {
                remaining,
                reset,
                quota,
                ticket,
            } => {
                let reading = Reported {
                    remaining: *remaining,
                    reset_at: super::later(Instant::now(), *reset),
                    quota: *quota,
                    ticket: *ticket,
                };
                self.carry(&keys.allow, reading);
                Some((keys.allow.clone(), *ticket))
            }
            _ => None,
        };
        let fleet = Arc::clone(self);
        drop(runtime.spawn(async move {
            let scripts = &fleet.scripts;
            let flag = fleet.flag_key();
            let (script, keys, args) = match report {
                Report::Close {
                    reopen_in,
                    asked_in,
                    status,
                    probe,
                    breaker,
                } => (
                    &scripts.close,
                    vec![keys.gate, keys.probe, flag],
                    args![
                        ms(reopen_in),
                        ms(asked_in),
                        status.as_u16() + if breaker { BREAKER } else { 0 },
                        u8::from(probe)
                    ],
                ),
                Report::Pace { rate, stated, life } => (
                    &scripts.pace,
                    vec![keys.rates, flag],
                    args![&*fleet.me, rate, stated, ms(life).max(1)],
                ),
                Report::Read {
                    remaining,
                    reset,
                    quota,
                    ticket,
                } => (
                    &scripts.read,
                    vec![
                        keys.allow,
                        keys.started,
                        keys.in_flight,
                        keys.unscoped,
                        flag,
                    ],
                    args![
                        remaining,
                        ms(reset),
                        quota.map_or(0, |(q, _)| q),
                        quota.map_or(0, |(_, w)| ms(w)),
                        ticket,
                        u8::from(keys.scoped)
                    ],
                ),
                Report::Answered { ticket, refused } => (
                    &scripts.answered,
                    vec![keys.allow, keys.in_flight],
                    args![ticket, u8::from(refused)],
                ),
                Report::Reopen => (&scripts.reopen, vec![keys.gate, keys.probe], Vec::new()),
                Report::Release => (&scripts.release, vec![keys.probe], args![&*fleet.me]),
            };
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let done = fleet.call::<i64>(script, &keys, &args).await;
            if done.is_some() {
                fleet.flag.store(true, Ordering::Release);
            }
            if let Some((allow, ticket)) = landing {
                fleet.landed(&allow, ticket);
            }
        }));
    }
}

/// Script arguments, each as Redis encodes it.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {{
        let mut args: Vec<Vec<u8>> = Vec::new();
        $(args.extend(redis::ToRedisArgs::to_redis_args(&$arg));)*
        args
    }};
}
use args;

/// Runs `work` on the current Tokio runtime; `false` when there is none (then nothing is
/// shared: the local state has it all).
fn spawn(work: impl Future<Output = ()> + Send + 'static) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            drop(runtime.spawn(work));
            true
        }
        Err(_) => false,
    }
}

/// The scripts' `stated` argument: 2 for a quota the user configured, 1 for a rate the server
/// stated, 0 for one measured or searched.
fn stated_arg(stated: bool, configured: bool) -> u8 {
    if configured { 2 } else { u8::from(stated) }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What a tripped breaker's gate adds to its status in the fleet: the scripts keep and return
/// the status as they get it, so the kind of gate needs no field of its own.
const BREAKER: u16 = 1000;

/// The admit script's reply `{code, reopen_in, asked_in, status, budget, slot_in, ticket,
/// hold_in, held_in}` (see `Scripts::admit`), read at `now`: whatever Redis sends, a gate, a
/// slot, a budget answer, a ticket, a hold and a moved slot (a field missing or out of range
/// reads as nothing held).
fn decode_admit(reply: &[i64], now: Instant) -> Remote {
    let field = |i: usize| reply.get(i).copied().unwrap_or(0);
    let after = |v: i64| super::later(now, Duration::from_millis(u64::try_from(v).unwrap_or(0)));
    let kept = u16::try_from(field(3)).unwrap_or(429);
    let breaker = kept >= BREAKER;
    let status = || StatusCode::from_u16(kept % BREAKER).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let gate = match field(0) {
        1..=3 if breaker => Gate::Tripped {
            probe_at: after(field(1)),
            status: status(),
            free: field(0) == 2,
        },
        1 => Gate::Closed {
            reopen: after(field(1)),
            asked: after(field(2)),
            status: status(),
        },
        2 | 3 => Gate::Probing {
            asked: after(field(2)),
            status: status(),
            free: field(0) == 2,
        },
        _ => Gate::Open,
    };
    Remote {
        gate,
        slot: Some(reply.get(5).copied().unwrap_or(-1))
            .filter(|slot| *slot >= 0)
            .map(after),
        budget: match field(4) {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        },
        ticket: u64::try_from(reply.get(6).copied().unwrap_or(-1)).ok(),
        hold: Some(reply.get(7).copied().unwrap_or(-1))
            .filter(|hold| *hold >= 0)
            .map(after),
        held: Some(reply.get(8).copied().unwrap_or(-1))
            .filter(|held| *held >= 0)
            .map(after),
    }
}

/// Whether a request takes a pacing slot from the fleet (the admit script's argument).
#[derive(Debug, Clone, Copy)]
enum Take {
    No = 0,
    Yes = 1,
    /// Only if the gate is shut: a resumed request keeps the slot it waited for, unless a
    /// gate shut over it (then it takes one after the gate, or the whole crowd held by the
    /// gate would leave at its reopening).
    IfShut = 2,
}

/// What a request asks the fleet.
struct Ask {
    /// Whether the rate is a quota the user configured.
    configured: bool,
    /// This process's pacing of the partition: rate, stated, how long it lasts.
    rate: Option<(f64, bool, Duration)>,
    /// The request's own earliest time (backoff, hint), from now.
    earliest: Duration,
    /// The longest the request may wait.
    cap: Duration,
    /// Whether to take a pacing slot.
    slot: Take,
    /// The probe's lease.
    lease: Duration,
    /// For a retry, the budget's ratio and reserve.
    budget: Option<(f64, f64)>,
    /// Whether answers are read for what is left of the quota: the fleet keeps the allowance
    /// and hands out tickets.
    follow: bool,
    /// The request's number in this process and its rank, for the lanes.
    lane: Option<(u64, u16)>,
}

/// What an attempt tells the fleet.
enum Report {
    Close {
        reopen_in: Duration,
        asked_in: Duration,
        status: StatusCode,
        probe: bool,
        /// A tripped breaker's gate (kept with its status plus [`BREAKER`]).
        breaker: bool,
    },
    Pace {
        rate: f64,
        /// The scripts' `stated` argument (see [`stated_arg`]).
        stated: u8,
        life: Duration,
    },
    /// What a healthy answer said is left of the quota, read from the answer to the request
    /// with `ticket` (in the partition's numbering).
    Read {
        remaining: u64,
        reset: Duration,
        quota: Option<(u64, Duration)>,
        ticket: u64,
    },
    /// The request with `ticket` was answered without a reading (`refused`: a 429 or 503).
    Answered {
        ticket: u64,
        refused: bool,
    },
    Reopen,
    Release,
}

/// A layer's state with a fleet's added.
pub(crate) struct FleetState {
    local: State,
    fleet: Arc<Fleet>,
    /// The budget's ratio and its reserve (retries over ten seconds), if there is a budget.
    budget: Option<(f64, f64)>,
    /// Whether answers are read for what is left of the quota.
    follows: bool,
    /// With `follows`, whether the server's last healthy answer said nothing of what is left
    /// (false before the first): unless it did, every request asks the fleet and takes a
    /// ticket, so the fleet's first crowd is counted too (a reading of an answer to a request
    /// that took none cannot tell which requests went after it), and no request goes
    /// unnumbered because the cached "anything throttled?" was read before the first reading
    /// reached Redis.
    silent: AtomicBool,
}

impl FleetState {
    pub(crate) fn new(
        local: State,
        fleet: &RedisFleet,
        budget: Option<(f64, u32)>,
        follows: bool,
    ) -> Self {
        Self {
            local,
            fleet: Arc::clone(&fleet.fleet),
            budget: budget.map(|(ratio, min)| (ratio, f64::from(min) * 10.0)),
            follows,
            silent: AtomicBool::new(false),
        }
    }
}

impl fmt::Debug for FleetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetState")
            .field("local", &self.local)
            .field("prefix", &self.fleet.prefix)
            .field("connected", &self.fleet.up())
            .finish_non_exhaustive()
    }
}

impl FleetState {
    pub(crate) fn throttled(&self) -> bool {
        // Both read: the flag's refresh keeps ticking while anything is throttled locally.
        let fleet = self.fleet.throttled();
        self.local.throttled() || fleet || (self.follows && !self.silent.load(Ordering::Relaxed))
    }

    /// This process's share of a fleet-wide rate while it plans alone.
    pub(crate) fn share(&self) -> u32 {
        self.fleet.share()
    }

    pub(crate) fn local(&self) -> &State {
        &self.local
    }

    /// The question to ask the fleet's store about a request; `partition` back when there is
    /// none to ask (Redis is down, or the request would not go whatever the fleet said), for
    /// this process to plan alone.
    pub(crate) fn ask<F: FnOnce() -> Partition>(
        &self,
        inputs: &Inputs,
        settings: &Settings,
        partition: F,
    ) -> Result<Question, F> {
        if !self.fleet.may_ask() {
            return Err(partition);
        }
        // The request's own earliest time: the plan with nothing held back.
        let open = Snapshot {
            gate: Gate::Open,
            pace: None,
            budget: true,
            allowance: None,
        };
        let Plan::Go { at, .. } = plan(settings, inputs, &open) else {
            return Err(partition);
        };
        let now = inputs.now;
        let partition = partition();
        let ask = Ask {
            rate: self
                .local
                .pacing_of(&partition, now)
                .map(|(rate, stated, ends)| (rate, stated, ends.saturating_duration_since(now))),
            configured: self.local.configured(),
            earliest: at.saturating_duration_since(now),
            cap: rules::cap(
                inputs.max_retry_after.unwrap_or(settings.max_retry_after),
                inputs.deadline,
                now,
            ),
            slot: match inputs.step {
                _ if !settings.pacing => Take::No,
                // One that waited for a gate alone takes one, as from the local pacer.
                super::plan::Step::Resume if inputs.slot.is_some() => Take::IfShut,
                _ => Take::Yes,
            },
            lease: self.local.max_cooldown(),
            // Asked before the slot is known: a 429 retried while pacing may take one.
            budget: self
                .budget
                .filter(|_| rules::spends(inputs.step, settings.pacing)),
            follow: settings.hint_fields.follows(),
            lane: inputs.lane,
        };
        let keys = self.fleet.keys(&partition);
        Ok(Box::pin(Arc::clone(&self.fleet).admit(keys, ask)))
    }

    pub(crate) fn observe(
        &self,
        seen: &Observation,
        partition: impl FnOnce() -> Partition,
        now: impl Fn() -> Instant,
    ) -> Option<Throttled> {
        if seen.signal == Signal::Healthy {
            self.fleet.deposits.fetch_add(1, Ordering::Relaxed);
            if self.follows {
                self.silent.store(seen.reading.is_none(), Ordering::Relaxed);
            }
        }
        // What the server says is left is the fleet's: its allowance is kept in Redis, where
        // the tickets of the whole fleet's requests are counted (not in each process: a
        // process that counts only its own requests takes the others' share as its own).
        let reading = seen.reading;
        let unread;
        let seen = if reading.is_some() {
            unread = Observation {
                reading: None,
                ..*seen
            };
            &unread
        } else {
            seen
        };
        // A ticket the fleet handed out (`u64::MAX`: none; see `Engine::send`).
        let ticket = Some(seen.ticket).filter(|t| *t != u64::MAX);
        let refused = matches!(seen.signal, Signal::Throttled { .. });
        // An answer to a request the fleet numbered takes it off the requests on their way.
        let reports = refused
            || seen.probe
            || seen.unhinted.is_some()
            || reading.is_some()
            || ticket.is_some();
        if !reports || !self.fleet.may_ask() {
            return self.local.observe(seen, partition, now);
        }
        let partition = partition();
        if let Some(reading) = reading {
            // This process's next requests ask the fleet (and take tickets) at once, not once
            // the report landed and the flag was read again: sent unasked, they would go
            // uncounted.
            self.fleet.flag.store(true, Ordering::Release);
            // Only the reading of a request the fleet numbered is merged: one that took no
            // ticket cannot say which requests went after it (and the next request, asked, is
            // numbered).
            if let Some(ticket) = ticket {
                self.fleet.report(
                    self.fleet.keys(&partition),
                    Report::Read {
                        remaining: reading.remaining,
                        reset: reading.reset,
                        quota: reading.quota,
                        ticket,
                    },
                );
            }
        }
        if let Some(ticket) = ticket
            && (refused || reading.is_none())
        {
            self.fleet.report(
                self.fleet.keys(&partition),
                Report::Answered { ticket, refused },
            );
        }
        let throttled = self.local.observe(seen, || partition.clone(), &now);
        let report = |report| self.fleet.report(self.fleet.keys(&partition), report);
        // The breaker this process tripped is the fleet's: its gate, kept as a breaker's.
        if let Some(tripped) = throttled.filter(|t| t.tripped) {
            report(Report::Close {
                reopen_in: tripped.gated_for.unwrap_or_default(),
                asked_in: self.local.max_cooldown(),
                status: tripped.status,
                probe: seen.probe,
                breaker: true,
            });
            return throttled;
        }
        match seen.signal {
            Signal::Throttled { status, hint, .. } => {
                let effect = Effect::of(self.local.gates(), self.local.pacing(), status, hint);
                let hint = hint.unwrap_or_default();
                if effect.close {
                    report(Report::Close {
                        reopen_in: rules::held_for(hint, self.local.max_cooldown()),
                        asked_in: hint,
                        status,
                        probe: seen.probe,
                        breaker: false,
                    });
                } else if seen.probe {
                    report(Report::Reopen);
                }
                let at = now();
                if effect.pace
                    && let Some((rate, stated, ends)) = self.local.pacing_of(&partition, at)
                {
                    report(Report::Pace {
                        rate,
                        stated: stated_arg(stated, self.local.configured()),
                        life: ends.saturating_duration_since(at),
                    });
                }
            }
            // Only a probe's outcome reopens or releases the fleet's gate.
            _ if !seen.probe => {}
            Signal::Failed => report(Report::Release),
            Signal::Healthy | Signal::Answered | Signal::Refused => report(Report::Reopen),
        }
        throttled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admit_reply_reads_as_nothing_held_whatever_redis_sends() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        for reply in [&[][..], &[-5, -1, -1, 99_999, 7, -9, -1, -3, -2], &[0; 3]] {
            let remote = decode_admit(reply, now);
            assert_eq!(remote.gate, Gate::Open, "{reply:?}");
            assert_eq!(
                (remote.slot, remote.ticket, remote.hold, remote.held),
                (None, None, None, None),
                "{reply:?}"
            );
        }
        // A paced request's slot and ticket; a resumed one's moved slot.
        let remote = decode_admit(&[0, 0, 0, 0, -1, 40, 7, -1, -1], now);
        assert_eq!((remote.slot, remote.ticket), (Some(now + ms(40)), Some(7)));
        assert_eq!(
            (remote.hold, remote.held, remote.budget),
            (None, None, None)
        );
        let remote = decode_admit(&[0, 0, 0, 0, -1, -1, -1, -1, 55], now);
        assert_eq!((remote.slot, remote.held), (None, Some(now + ms(55))));
    }
}
