//! What the two quickstarts share: the scripted requests and how a row is printed.
#![allow(dead_code, unreachable_pub, clippy::print_stdout)]

use std::time::Duration;

use http::Method;
use tower_infoplug::{ApiError, ApiKey, InfoPlugLayer, RetryInfo};
use tower_infoplug_mock::{Emulator, EmulatorServer, Reply, TEST_KEY};

/// The emulator on a free loopback port (an account with 4 credits, so the script ends in a
/// 402), and the layer both quickstarts send through: retries honouring `Retry-After`, error
/// classification, the key.
pub async fn start() -> Result<(Emulator, EmulatorServer, InfoPlugLayer), Box<dyn std::error::Error>>
{
    let emulator = Emulator::builder().credits(4).build();
    let server = emulator.serve().await?;
    println!("InfoPlug emulator on {}\n", server.base_url());
    let layer = InfoPlugLayer::builder(ApiKey::new(TEST_KEY)?, &server.base_url())
        .retry(|r| {
            r.max_attempts(4)
                .backoff(Duration::from_millis(50), Duration::from_millis(400))
        })
        .build()?;
    Ok((emulator, server, layer))
}

/// A request of the script: its label, method, path and the replies scripted before it (the
/// emulator answers by the contract once they are used up).
pub struct Step {
    pub name: &'static str,
    pub method: Method,
    pub path: &'static str,
    pub replies: Vec<Reply>,
}

/// The body every request of the script sends.
pub const BODY: &[u8] = b"{\"q\":\"rust\"}";

/// A success, a 429 that recovers after `Retry-After`, a 503 storm, a 400 with its
/// `parameter`, a POST, and a 402 once the credits run out.
pub fn script() -> Vec<Step> {
    let step = |name, method, path, replies| Step {
        name,
        method,
        path,
        replies,
    };
    vec![
        step(
            "profile",
            Method::GET,
            "/v1/profile?linkedin_url=https://linkedin.com/in/x",
            vec![],
        ),
        step(
            "rate limited",
            Method::GET,
            "/v1/jobs",
            vec![Reply::rate_limited(1)],
        ),
        step(
            "503 storm",
            Method::GET,
            "/v1/company",
            vec![
                Reply::unavailable(),
                Reply::proxy_html(502),
                Reply::unavailable(),
            ],
        ),
        step(
            "bad parameter",
            Method::GET,
            "/v1/profile?linkedin_url=ftp://x",
            vec![],
        ),
        step("search (POST)", Method::POST, "/v1/search", vec![]),
        step("out of credits", Method::GET, "/v1/jobs", vec![]),
    ]
}

/// The table's header line.
pub fn print_header() {
    println!(
        "{:<15} {:>6}  {:<22} {:>8}  {:>8}  details",
        "request", "status", "code", "attempts", "waited"
    );
}

/// One row: what came back, after how many attempts and how much waiting.
pub fn print_row(
    name: &str,
    status: u16,
    error: Option<&ApiError>,
    info: &RetryInfo,
    body_len: usize,
) {
    let (code, details) = match error {
        Some(err) => (
            err.code().to_string(),
            match (err.parameter(), err.details()) {
                (Some(p), Some(d)) => format!("{d} (parameter `{p}`)"),
                (None, Some(d)) => d.to_owned(),
                _ => err
                    .body_issue()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            },
        ),
        None => ("-".into(), String::new()),
    };
    println!(
        "{name:<15} {status:>6}  {code:<22} {:>8}  {:>7}ms  {details} [{body_len} body bytes]",
        info.attempts(),
        info.waited().as_millis(),
    );
}

/// The closing line: what the emulator saw.
pub fn print_summary(emulator: &Emulator, took: Duration) {
    let seen = emulator.requests();
    let with_key = seen
        .iter()
        .filter(|r| r.header("x-infoplug-api-key") == Some(TEST_KEY))
        .count();
    println!(
        "\nThe emulator saw {} requests ({with_key} with the key) in {:.1}s.",
        seen.len(),
        took.as_secs_f64()
    );
}

/// `--help` (or `-h`) prints `usage` and asks the caller to exit; any other argument is an
/// error that names it.
pub fn help_or_no_args(usage: &str) -> Result<bool, String> {
    match std::env::args().nth(1).as_deref() {
        None => Ok(false),
        Some("-h" | "--help") => {
            println!("{usage}");
            Ok(true)
        }
        Some(other) => Err(format!("unexpected argument {other:?}\n\n{usage}")),
    }
}
