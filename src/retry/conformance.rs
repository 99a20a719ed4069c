//! One contract, two stores: the same table of scenarios (gate, merge, probe, cap, pacing
//! slots and a gate over them, a configured quota, budget, the circuit breaker) run against this process's store in every `cargo test`, and against a
//! fleet's store in Redis (the Lua scripts) where a `redis-server` can be started, so a
//! script that drifts from [`rules`](super::rules) fails a test.
//!
//! Each scenario is a list of steps at times after its start: a throttle one process saw,
//! and requests asking to go. On the local store one state sees both; on the fleet one
//! process sees the throttles and *another* asks, so its plans come from Redis alone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::StopReason;
use super::hints::Reading;
use super::layer::RetryLayer;
use super::plan::{Inputs, Plan, Step};
use super::state::{Observation, Signal};
use super::store::Planned;
#[cfg(feature = "redis")]
use super::store::Store;

const MS: Duration = Duration::from_millis(1);

/// What a step does, `at` ms after the scenario starts.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A throttle seen: status, hint (ms), stated quota (requests a second).
    Throttle(u16, Option<u64>, Option<f64>),
    /// A request asks to go (a retry after a failure when `retry`), and is expected to.
    Ask { retry: bool, want: Want },
    /// A request that waited for its pacing slot (of the first schedule) asks again.
    Resume(Want),
    /// Request number `id` of `priority` asks to go (`resume`: it waited for its slot, of the
    /// first schedule, and asks again), and is expected to.
    Lane {
        id: u64,
        priority: u8,
        resume: bool,
        want: Want,
    },
    /// An un-hinted failure seen (a status, or 0 for no answer), by the gate's probe or not.
    Fail(u16, bool),
    /// A healthy answer seen, by the gate's probe or not.
    Healthy(bool),
    /// A healthy answer that says what is left of the quota: remaining, reset (ms), and the
    /// quota and its window (ms) when stated; read from the answer to the first request
    /// (ticket 0: every step that reads comes before any request asks).
    Read(u64, u64, Option<(u64, u64)>),
}

/// What the plan should be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Go this many ms after the scenario's start, as the probe or not.
    Go {
        at: u64,
        probe: bool,
    },
    Stop(StopReason),
}

struct Scenario {
    name: &'static str,
    /// A quota the layers were configured with: requests a second.
    quota: Option<u32>,
    steps: &'static [(u64, Op)],
}

/// Request `id` of `priority` (resumed when `resume`) goes at `at`.
const fn lane(id: u64, priority: u8, resume: bool, at: u64) -> Op {
    Op::Lane {
        id,
        priority,
        resume,
        want: Want::Go { at, probe: false },
    }
}

const fn go(at: u64) -> Op {
    Op::Ask {
        retry: false,
        want: Want::Go { at, probe: false },
    }
}

/// The table. Layer: `max_cooldown` 1 s, `max_retry_after` 60 s, a budget of ratio 0 with
/// one retry a second (a reserve of 10); jitter samples 0.
const TABLE: &[Scenario] = &[
    Scenario {
        quota: None,
        name: "what is left of the quota bounds the requests before its reset, then refills",
        steps: &[
            (0, Op::Read(1, 500, Some((2, 1000)))),
            (100, go(100)),
            (100, go(500)),
            (600, go(600)),
            (600, go(600)),
            (600, go(1500)),
        ],
    },
    Scenario {
        quota: None,
        name: "a refusal under the allowance contradicts it: no refill",
        steps: &[
            (0, Op::Read(0, 500, Some((1, 1000)))),
            (50, Op::Throttle(429, None, None)),
            (600, go(600)),
            (600, go(600)),
        ],
    },
    Scenario {
        quota: None,
        name: "while an allowance holds, a pace taken from a 429 does not pace",
        steps: &[
            (0, Op::Throttle(429, None, Some(10.0))),
            (10, Op::Read(50, 1000, None)),
            (100, go(100)),
            (100, go(100)),
        ],
    },
    Scenario {
        quota: Some(20),
        name: "while an allowance holds, a configured quota still paces",
        steps: &[(0, Op::Read(50, 1000, None)), (10, go(10)), (10, go(61))],
    },
    Scenario {
        quota: None,
        name: "an allowance lapses at its reset when no quota is stated",
        steps: &[(0, Op::Read(0, 400, None)), (100, go(400)), (500, go(500))],
    },
    Scenario {
        quota: Some(20),
        name: "a higher priority takes the earliest slot waiting requests hold; they move one later",
        // 50.5 ms apart: 3 waits for the fresh slot the interactive request was given.
        steps: &[
            (0, lane(1, 128, false, 0)),
            (0, lane(2, 128, false, 51)),
            (0, lane(3, 128, false, 101)),
            (0, lane(4, 192, false, 51)),
            (60, lane(2, 128, true, 101)),
            (110, lane(3, 128, true, 152)),
        ],
    },
    Scenario {
        quota: Some(20),
        name: "a configured quota gives slots from the first request",
        // 20 a second less the 1% headroom: 50.5 ms apart.
        steps: &[(0, go(0)), (0, go(51)), (0, go(101)), (120, go(152))],
    },
    Scenario {
        quota: Some(20),
        name: "requests whose slots a gate shut over take new ones after it",
        // Without new slots, both would leave at the reopening: a crowd, in a fixed window.
        steps: &[
            (0, go(0)),
            (0, go(51)),
            (10, Op::Throttle(503, Some(1000), None)),
            (
                60,
                Op::Resume(Want::Go {
                    at: 1010,
                    probe: false,
                }),
            ),
            (
                60,
                Op::Resume(Want::Go {
                    at: 1061,
                    probe: false,
                }),
            ),
        ],
    },
    Scenario {
        quota: None,
        name: "a hinted 503 shuts the gate until the server's ask",
        steps: &[(0, Op::Throttle(503, Some(2000), None)), (100, go(2000))],
    },
    Scenario {
        quota: None,
        name: "a shorter hint never opens what a longer one shut",
        steps: &[
            (0, Op::Throttle(503, Some(2000), None)),
            (50, Op::Throttle(503, Some(300), None)),
            (150, go(2000)),
        ],
    },
    Scenario {
        quota: None,
        name: "past the capped reopening one request probes, the next waits for the ask",
        steps: &[
            (0, Op::Throttle(503, Some(3000), None)),
            (1200, probes(1200)),
            (1250, go(3000)),
        ],
    },
    Scenario {
        quota: None,
        name: "an ask past max_retry_after is not waited for",
        steps: &[
            (0, Op::Throttle(429, Some(90_000), None)),
            (100, stops(false, StopReason::CoolingDown)),
        ],
    },
    Scenario {
        quota: None,
        name: "a stated quota gives slots one interval apart",
        steps: &[
            (0, Op::Throttle(429, None, Some(10.0))),
            (100, go(100)),
            (100, go(200)),
            (100, go(300)),
            (100, go(400)),
        ],
    },
    Scenario {
        quota: None,
        name: "un-hinted failures short of the breaker's count trip nothing",
        steps: &[
            (0, Op::Fail(500, false)),
            (0, Op::Fail(0, false)),
            (50, go(50)),
        ],
    },
    Scenario {
        quota: None,
        name: "the breaker trips, fails requests at once, probes, trips again, closes",
        // Three failures in a row (breaker: 3, a probe every 300 ms).
        steps: &[
            (0, Op::Fail(500, false)),
            (0, Op::Fail(0, false)),
            (0, Op::Fail(503, false)),
            (50, open()),
            (350, probes(350)),
            (360, open()),
            // The probe fails: tripped again, for another interval from now.
            (400, Op::Fail(502, true)),
            (450, open()),
            (720, probes(720)),
            // The probe's healthy answer closes it.
            (730, Op::Healthy(true)),
            (760, go(760)),
        ],
    },
    Scenario {
        quota: None,
        name: "the budget gives its reserve, then refuses",
        steps: &[
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, retry_goes()),
            (0, stops(true, StopReason::BudgetExhausted)),
        ],
    },
];

/// A request that the tripped breaker does not send.
const fn open() -> Op {
    stops(false, StopReason::CircuitOpen)
}

/// A request that goes at `at` ms as the gate's probe.
const fn probes(at: u64) -> Op {
    Op::Ask {
        retry: false,
        want: Want::Go { at, probe: true },
    }
}

/// A request (a retry when `retry`) that is not sent, for `reason`.
const fn stops(retry: bool, reason: StopReason) -> Op {
    Op::Ask {
        retry,
        want: Want::Stop(reason),
    }
}

const fn retry_goes() -> Op {
    Op::Ask {
        retry: true,
        want: Want::Go {
            at: 0,
            probe: false,
        },
    }
}

fn layer(scenario: &Scenario) -> super::layer::RetryBuilder {
    let layer = RetryLayer::builder()
        .rate_limit_headers(true)
        .max_cooldown(Duration::from_secs(1))
        .circuit_breaker(3, Duration::from_millis(300))
        .budget(0.0, 1);
    match scenario.quota {
        Some(requests) => layer.quota(requests, Duration::from_secs(1)),
        None => layer,
    }
}

/// A request resumed at `now` that waited for a slot of the first schedule.
fn resumed(now: Instant) -> Inputs {
    Inputs {
        step: Step::Resume,
        slot: Some(0),
        ..Inputs::fresh(now)
    }
}

/// What an `Op::Lane` step plans, at `now`.
fn laned(now: Instant, id: u64, priority: u8, resume: bool) -> Inputs {
    let asked = if resume {
        resumed(now)
    } else {
        Inputs::fresh(now)
    };
    Inputs {
        lane: Some((id, super::rules::rank(false, priority))),
        ..asked
    }
}

/// What a request step plans at `now`, and what it is expected to come to.
fn asked(op: Op, now: Instant) -> (Inputs, Want) {
    match op {
        Op::Ask { retry, want } => (inputs(now, retry), want),
        Op::Resume(want) => (resumed(now), want),
        Op::Lane {
            id,
            priority,
            resume,
            want,
        } => (laned(now, id, priority, resume), want),
        _ => panic!("{op:?} is not a request"),
    }
}

/// The request a step plans, at `now`.
fn inputs(now: Instant, retry: bool) -> Inputs {
    if !retry {
        return Inputs::fresh(now);
    }
    Inputs {
        attempts: 1,
        step: Step::Retry {
            hint: None,
            throttle: false,
        },
        ..Inputs::fresh(now)
    }
}

fn throttle(status: u16, hint: Option<u64>, quota: Option<f64>) -> Observation {
    Observation {
        signal: Signal::Throttled {
            status: StatusCode::from_u16(status).unwrap(),
            hint: hint.map(Duration::from_millis),
            quota,
        },
        slot: None,
        probe: false,
        reading: None,
        ticket: 0,
        unhinted: None,
    }
}

/// What an `Op::Fail` or `Op::Healthy` step saw.
fn answer(op: Op) -> Observation {
    let (signal, unhinted, probe, reading) = match op {
        Op::Fail(0, probe) => (
            Signal::Failed,
            Some(StatusCode::SERVICE_UNAVAILABLE),
            probe,
            None,
        ),
        Op::Fail(status, probe) => (
            Signal::Answered,
            Some(StatusCode::from_u16(status).unwrap()),
            probe,
            None,
        ),
        Op::Healthy(probe) => (Signal::Healthy, None, probe, None),
        Op::Read(remaining, reset, quota) => {
            let reading = Reading {
                remaining,
                reset: Duration::from_millis(reset),
                quota: quota.map(|(q, w)| (q, Duration::from_millis(w))),
            };
            (Signal::Healthy, None, false, Some(reading))
        }
        _ => panic!("{op:?} is not an answer"),
    };
    Observation {
        signal,
        slot: None,
        probe,
        reading,
        // The first request's (see `Op::Read`).
        ticket: 0,
        unhinted,
    }
}

/// Whether `plan` is what `want` says, `at` within `slack` (Redis runs in real time).
fn check(name: &str, start: Instant, plan: Plan, want: Want, slack: Duration) {
    match (plan, want) {
        (Plan::Go { at, probe, .. }, Want::Go { at: ms, probe: p }) => {
            let expected = start + Duration::from_millis(ms);
            let off = if at > expected {
                at - expected
            } else {
                expected - at
            };
            assert!(
                off <= slack && probe == p,
                "{name}: went at {:?} (probe {probe}), wanted {ms} ms (probe {p})",
                at.saturating_duration_since(start)
            );
        }
        (Plan::Stop(stop), Want::Stop(reason)) => {
            assert_eq!(stop.reason, reason, "{name}");
        }
        (plan, want) => panic!("{name}: {plan:?}, wanted {want:?}"),
    }
}

#[test]
fn the_local_store_keeps_the_contract() {
    for scenario in TABLE {
        let layer = layer(scenario).build().unwrap();
        let (store, settings) = (&layer.shared.state, &layer.shared.settings);
        let partition = store.partition(&"https://api.test/".parse().unwrap(), &HeaderMap::new());
        let start = Instant::now();
        for &(at, op) in scenario.steps {
            let now = start + Duration::from_millis(at);
            match op {
                Op::Throttle(status, hint, quota) => {
                    store.observe(&throttle(status, hint, quota), || partition.clone(), || now);
                }
                Op::Fail(..) | Op::Healthy(_) | Op::Read(..) => {
                    store.observe(&answer(op), || partition.clone(), || now);
                }
                Op::Ask { .. } | Op::Resume(_) | Op::Lane { .. } => {
                    let (asked, want) = asked(op, now);
                    let Planned::Now(plan) = store.plan(settings, || partition.clone(), &asked)
                    else {
                        panic!("the local store asks no one");
                    };
                    // A configured quota's interval is not a whole number of ms.
                    check(scenario.name, start, plan, want, 2 * MS);
                }
            }
        }
    }
}

#[cfg(feature = "redis")]
#[path = "../../tests/common/redis.rs"]
mod redis_server;

/// The same table against Redis: process A sees the throttles, process B asks.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn the_fleet_store_keeps_the_contract() {
    let redis = redis_server::RedisServer::start();
    fleet_keeps_the_contract(|| super::RedisFleet::builder(&redis.url())).await;
}

/// The same table against a Redis Cluster of three masters.
#[cfg(feature = "redis-cluster")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn the_cluster_store_keeps_the_contract() {
    let cluster = redis_server::RedisCluster::start();
    let urls = cluster.urls();
    let nodes: Vec<&str> = urls.iter().map(String::as_str).collect();
    fleet_keeps_the_contract(|| super::RedisFleet::cluster(&nodes)).await;
}

#[cfg(feature = "redis")]
async fn fleet_keeps_the_contract(fleet: impl Fn() -> super::RedisFleetBuilder) {
    for (i, scenario) in TABLE.iter().enumerate() {
        let fleet = fleet()
            .prefix(&format!("conformance-{i}"))
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let a = layer(scenario).fleet(fleet.clone()).build().unwrap();
        let b = layer(scenario).fleet(fleet.clone()).build().unwrap();
        // A process joins on its first reading of the fleet's flag.
        for _ in 0..200 {
            if fleet.is_connected() {
                break;
            }
            let _ = b.shared.state.throttled();
            tokio::time::sleep(10 * MS).await;
        }
        assert!(fleet.is_connected(), "Redis did not answer");
        let settings = &b.shared.settings;
        let uri = "https://api.test/".parse().unwrap();
        let (store_a, store_b) = (&a.shared.state, &b.shared.state);
        assert!(matches!(store_b, Store::Fleet(_)));
        let partition = store_b.partition(&uri, &HeaderMap::new());
        let start = Instant::now();
        for &(at, op) in scenario.steps {
            tokio::time::sleep_until(start + Duration::from_millis(at)).await;
            match op {
                Op::Throttle(status, hint, quota) => {
                    store_a.observe(
                        &throttle(status, hint, quota),
                        || partition.clone(),
                        Instant::now,
                    );
                    // The report goes in the background: let it land.
                    tokio::time::sleep(20 * MS).await;
                }
                Op::Fail(..) | Op::Healthy(_) | Op::Read(..) => {
                    store_a.observe(&answer(op), || partition.clone(), Instant::now);
                    tokio::time::sleep(20 * MS).await;
                }
                Op::Ask { .. } | Op::Resume(_) | Op::Lane { .. } => {
                    let now = Instant::now();
                    let (asked, want) = asked(op, now);
                    let Planned::Ask(question) =
                        store_b.plan(settings, || partition.clone(), &asked)
                    else {
                        panic!("{}: the fleet's store was not asked", scenario.name);
                    };
                    let remote = question.await;
                    assert!(remote.is_some(), "{}: Redis did not answer", scenario.name);
                    let now = Instant::now();
                    let plan =
                        store_b.resolve(settings, &partition, &Inputs { now, ..asked }, remote);
                    // The plan is made when Redis answers: slots and gates are relative to it.
                    let lateness = now.saturating_duration_since(start + Duration::from_millis(at));
                    check(scenario.name, start, plan, want, lateness + 30 * MS);
                }
            }
        }
    }
}
