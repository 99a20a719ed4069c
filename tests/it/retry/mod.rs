//! The retry layer: decisions, waits, cooldown, budget, bodies and cancellation, under paused
//! time in memory and over loopback HTTP against the emulator; one file per subject, sharing
//! the helpers below.

use crate::common;

mod bodies;
mod breaker;
mod budget;
mod composition;
mod cooldown;
mod decisions;
mod hints;
mod loopback;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{Fixed, arrivals, exact, get, info, read_body};
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_infoplug::auth::Auth;
use tower_infoplug::classify::Classify;
use tower_infoplug::retry::Retry;
use tower_infoplug::retry::{
    Deadline, DefaultPolicy, Jitter, ReplayBody, ResetFormat, RetryBuilder, RetryError, RetryLayer,
    StopReason, VerdictHeaders,
};
use tower_infoplug::{ApiKey, AuthLayer, ClassifyLayer, ErrorCode, InfoPlugLayer, ResponseExt};
use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

type Stack<T> = Retry<Classify<Auth<T>>>;

/// Retry over classify over auth over the in-process emulator.
fn stack(api: &Emulator, retry: RetryBuilder) -> Stack<Emulator> {
    ServiceBuilder::new()
        .layer(retry.build().unwrap())
        .layer(ClassifyLayer::new())
        .layer(AuthLayer::new(ApiKey::new(TEST_KEY).unwrap()))
        .service(api.clone())
}

fn post(path: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post(path)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}
