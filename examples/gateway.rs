//! An axum reverse proxy that holds the InfoPlug key, so applications behind it do not need it.
//!
//! ```text
//! INFOPLUG_API_KEY=... cargo run --example gateway --all-features -- \
//!     --listen ADDR --upstream URL \
//!     [--max-attempts N] [--max-retry-after SECS] [--max-cooldown SECS] \
//!     [--auth-header x-infoplug-api-key|authorization|bearer]
//! ```
//!
//! - The key comes from `INFOPLUG_API_KEY`; a missing or invalid key exits non-zero with a
//!   message that names the variable, never the key.
//! - The first line on standard output is `listening on IP:PORT`, printed once connections are
//!   accepted (`--listen 127.0.0.1:0` picks a free port).
//! - Each request is forwarded to the upstream (method, path and query, headers without the
//!   hop-by-hop ones, `host` and any credential the client sent, body) through the
//!   `InfoPlugLayer` stack, and the final upstream response is streamed back unchanged, plus
//!   `x-infoplug-attempts: N` and, for a classified error, `x-infoplug-error: <code>` (as in
//!   the error body, e.g. `rate_limit_exceeded`).
//! - A transport failure becomes a 502 with a JSON body in the contract's error format (504
//!   when the upstream timed out).
//! - A request the gateway does not forward because the API asked clients to wait longer than
//!   `--max-retry-after` (a shared gate or the pacing after a 429) gets the status that asked
//!   for it (429 or 503), `Retry-After` in whole seconds (rounded up), `x-infoplug-error` and a
//!   JSON body in the contract's format. The gate stays shut for `--max-cooldown` at most
//!   (default: `--max-retry-after`); then one request goes through to see whether the API
//!   has recovered. `SECS` may have decimals (`0.5`).
//! - Ctrl-C shuts it down cleanly: open requests finish, then it exits 0.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Extensions, StatusCode, Uri, Version};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_infoplug::{
    ApiKey, AuthHeader, ErrorCode, InfoPlugLayer, InfoPlugService, ReplayBody, ResponseExt,
    RetryError, StopReason,
};

type Upstream = InfoPlugService<Client<HttpConnector, ReplayBody<Body>>>;

const USAGE: &str = "usage: gateway --listen ADDR --upstream URL [--max-attempts N] \
                     [--max-retry-after SECS] [--max-cooldown SECS] \
                     [--auth-header x-infoplug-api-key|authorization|bearer]";

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    upstream: String,
    max_attempts: Option<u32>,
    max_retry_after: Option<Duration>,
    max_cooldown: Option<Duration>,
    auth_header: AuthHeader,
}

/// A number of seconds, decimals allowed.
fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{flag}: {value:?} is not a number of seconds"))
}

/// The arguments, or `None` for `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut listen, mut upstream) = (None, None);
    let (mut max_attempts, mut max_retry_after, mut max_cooldown) = (None, None, None);
    let mut auth_header = AuthHeader::api_key();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                listen = Some(
                    v.parse()
                        .map_err(|_| format!("--listen: {v:?} is not IP:PORT"))?,
                );
            }
            "--upstream" => upstream = Some(value()?),
            "--max-attempts" => {
                let v = value()?;
                max_attempts = Some(
                    v.parse()
                        .map_err(|_| format!("--max-attempts: {v:?} is not a number"))?,
                );
            }
            "--max-retry-after" => {
                max_retry_after = Some(seconds("--max-retry-after", &value()?)?);
            }
            "--max-cooldown" => max_cooldown = Some(seconds("--max-cooldown", &value()?)?),
            "--auth-header" => {
                auth_header = match value()?.to_ascii_lowercase().as_str() {
                    "x-infoplug-api-key" => AuthHeader::api_key(),
                    "authorization" => AuthHeader::authorization(),
                    "bearer" => AuthHeader::bearer(),
                    other => {
                        return Err(format!(
                            "--auth-header: {other:?} is not one of x-infoplug-api-key, authorization, bearer"
                        ));
                    }
                }
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Some(Args {
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        upstream: upstream.ok_or_else(|| format!("--upstream is required\n{USAGE}"))?,
        max_attempts,
        max_retry_after,
        max_cooldown,
        auth_header,
    }))
}

#[derive(Clone)]
struct Gateway {
    upstream: Upstream,
    /// The upstream base URL without a trailing slash; request paths are appended to it.
    base: Arc<str>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gateway: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    // The error names the variable and the problem, never the value.
    let key = ApiKey::from_env().map_err(|err| format!("cannot use the API key: {err}"))?;
    let mut stack = InfoPlugLayer::builder(key, &args.upstream).header(args.auth_header);
    if let Some(n) = args.max_attempts {
        stack = stack.retry(|r| r.max_attempts(n));
    }
    if let Some(max) = args.max_retry_after {
        stack = stack.retry(|r| r.max_retry_after(max));
    }
    if let Some(max) = args.max_cooldown {
        stack = stack.retry(|r| r.max_cooldown(max));
    }
    let stack = stack
        .build()
        .map_err(|err| format!("invalid setting: {err}"))?;
    let gateway = Gateway {
        upstream: stack.layer(Client::builder(TokioExecutor::new()).build_http()),
        base: args.upstream.trim_end_matches('/').into(),
    };

    let app = axum::Router::new().fallback(proxy).with_state(gateway);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    // Ctrl-C is only caught once its future has been polled: do that before saying we listen.
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    tokio::select! {
        biased;
        _ = &mut ctrl_c => return Ok(()),
        () = std::future::ready(()) => {}
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();

    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = ctrl_c.await;
        })
        .await
        .map_err(|err| format!("server error: {err}"))
}

async fn proxy(State(gateway): State<Gateway>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("{}{path}", gateway.base).parse::<Uri>() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "the request target cannot be forwarded",
            None,
        );
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::HOST);
    // The gateway holds the key: what a client sends is not forwarded.
    parts.headers.remove(tower_infoplug::X_INFOPLUG_API_KEY);
    parts.headers.remove(header::AUTHORIZATION);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.extensions = Extensions::new();

    match gateway
        .upstream
        .oneshot(http::Request::from_parts(parts, body))
        .await
    {
        Ok(res) => {
            let attempts = res.retry_info().attempts();
            let code = res.api_error().map(|err| err.code().as_str().to_owned());
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts
                .headers
                .insert("x-infoplug-attempts", HeaderValue::from(attempts));
            if let Some(value) = code.and_then(|c| HeaderValue::from_str(&c).ok()) {
                parts.headers.insert("x-infoplug-error", value);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(RetryError::CoolingDown { status, info }) => {
            // A tripped circuit breaker is an outage of the API: a 503 that says when the
            // next probe goes, whatever the failures it counted were.
            let (status, details) = if info.stop_reason() == StopReason::CircuitOpen {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the API failed repeatedly without saying why; one request a second probes it; not forwarded",
                )
            } else {
                (
                    status,
                    "the API asked clients to wait longer than this gateway waits; not forwarded",
                )
            };
            let code = ErrorCode::from_status(status);
            let mut res = error_response(status, code.as_str(), details, Some(info.attempts()));
            let headers = res.headers_mut();
            if let Some(wait) = info.retry_after() {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            if let Ok(value) = HeaderValue::from_str(code.as_str()) {
                headers.insert("x-infoplug-error", value);
            }
            res
        }
        Err(err) => {
            let attempts = err.info().attempts();
            let (status, details) = match &err {
                RetryError::TimedOut { .. } => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "the upstream did not answer in time".to_owned(),
                ),
                _ => (
                    StatusCode::BAD_GATEWAY,
                    format!("the upstream could not be reached: {err}"),
                ),
            };
            error_response(status, "error", &details, Some(attempts))
        }
    }
}

/// Removes the headers that describe one connection, not the message (RFC 9110, 7.6.1),
/// including those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// A response in the contract's error format.
fn error_response(
    status: StatusCode,
    message: &str,
    details: &str,
    attempts: Option<u32>,
) -> Response {
    let body = serde_json::json!({ "message": message, "details": details }).to_string();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(attempts) = attempts {
        res.headers_mut()
            .insert("x-infoplug-attempts", HeaderValue::from(attempts));
    }
    res
}
