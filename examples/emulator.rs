//! Serves the embedded InfoPlug emulator, so curl, an application or the gateway example can
//! talk to it.
//!
//! ```text
//! cargo run --example emulator --all-features -- [--listen 127.0.0.1:3000] [--credits N] [--rate-limit PER_SECOND]
//! curl -H "X-INFOPLUG-API-KEY: ip_test_emulator_key" http://127.0.0.1:3000/v1/profile
//! ```
//!
//! Prints `listening on IP:PORT` and the key it accepts, then serves until Ctrl-C.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tower_infoplug_mock::{Emulator, TEST_KEY};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("emulator: {message}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: emulator [--listen IP:PORT] [--credits N] [--rate-limit PER_SECOND]

Serves the embedded InfoPlug emulator (default 127.0.0.1:3000) until Ctrl-C. It accepts the
key it prints; --credits starts the account with N credits (a 402 once they are spent);
--rate-limit answers 429 with Retry-After past PER_SECOND requests a second.";

async fn run() -> Result<(), String> {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3000));
    let mut builder = Emulator::builder();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            println!("{USAGE}");
            return Ok(());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => {
                listen = value
                    .parse()
                    .map_err(|_| format!("--listen: {value:?} is not IP:PORT"))?;
            }
            "--credits" => {
                builder = builder.credits(
                    value
                        .parse()
                        .map_err(|_| format!("--credits: {value:?} is not a number"))?,
                );
            }
            "--rate-limit" => {
                let per_second = value
                    .parse()
                    .map_err(|_| format!("--rate-limit: {value:?} is not a number"))?;
                builder = builder.rate_limit(per_second, Duration::from_secs(1));
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    let emulator = builder.build();
    let server = emulator
        .serve_on(listen)
        .await
        .map_err(|err| format!("cannot listen on {listen}: {err}"))?;
    // Ctrl-C is only caught once its future has been polled: do that before saying we listen.
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    tokio::select! {
        biased;
        _ = &mut ctrl_c => return Ok(()),
        () = std::future::ready(()) => {}
    }
    // Written, not `println!`ed: a reader that went away must not bring the server down.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on {}", server.addr());
    let _ = writeln!(
        out,
        "accepted key: {TEST_KEY} (X-INFOPLUG-API-KEY, or Authorization)"
    );
    let _ = out.flush();
    let _ = ctrl_c.await;
    let _ = writeln!(out, "served {} requests", emulator.request_count());
    server.shutdown().await;
    Ok(())
}
