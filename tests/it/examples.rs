//! The examples that run unattended, run as users run them: as programs.
//!
//! `cargo test --all-features` builds the examples before it runs the tests; these tests find
//! the binaries next to their own.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use common::{example, http_client, read_body};
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tower_infoplug_mock::{Emulator, Reply, TEST_KEY};

/// Runs an example to its end (within a minute), returning its standard output.
async fn run_to_end(name: &str) -> String {
    run_with(name, &[], &[]).await
}

/// Runs an example with `args` and only the `env` variables of ours it is given.
async fn run_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = Command::new(example(name));
    command
        .args(args)
        .env_remove("INFOPLUG_BASE_URL")
        .env_remove("INFOPLUG_API_KEY")
        .envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("finishes within a minute")
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The whitespace-separated words of the line that starts with `label`.
fn row<'a>(stdout: &'a str, label: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} row in:\n{stdout}"));
    line[label.len()..].split_whitespace().collect()
}

#[tokio::test]
async fn the_quickstart_prints_the_scripted_outcomes() {
    quickstart_rows(&run_to_end("quickstart").await);
}

#[cfg(feature = "reqwest")]
#[tokio::test]
async fn the_reqwest_quickstart_prints_the_same_outcomes() {
    quickstart_rows(&run_to_end("quickstart_reqwest").await);
}

fn quickstart_rows(out: &str) {
    let out = out.to_owned();
    assert_eq!(row(&out, "profile")[..3], ["200", "-", "1"], "{out}");
    assert_eq!(row(&out, "rate limited")[..3], ["200", "-", "2"], "{out}");
    assert_eq!(row(&out, "503 storm")[..3], ["200", "-", "4"], "{out}");
    assert_eq!(
        row(&out, "bad parameter")[..3],
        ["400", "invalid_parameter", "1"],
        "{out}"
    );
    assert!(out.contains("(parameter `linkedin_url`)"), "{out}");
    assert_eq!(row(&out, "search (POST)")[..3], ["200", "-", "1"], "{out}");
    assert_eq!(
        row(&out, "out of credits")[..3],
        ["402", "insufficient_credits", "1"],
        "{out}"
    );
    // The 429's Retry-After: 1 was waited for.
    let waited: u64 = row(&out, "rate limited")[3]
        .trim_end_matches("ms")
        .parse()
        .unwrap();
    assert!(waited >= 1000, "{out}");
    assert!(out.contains("saw 10 requests (10 with the key)"), "{out}");
}

#[tokio::test]
async fn the_custom_transports_retry_and_classify() {
    let out = run_to_end("custom_transport").await;
    assert!(
        out.contains("in-memory transport: 200 OK after 2 attempts"),
        "{out}"
    );
    assert!(out.contains("attempt 2: key, 12 body bytes"), "{out}");
    assert!(
        out.contains("reqwest: 402 Payment Required insufficient_credits after 2 attempts"),
        "{out}"
    );
}

#[tokio::test]
async fn the_hyper_client_talks_to_a_started_emulator_by_default() {
    let out = run_to_end("hyper_client").await;
    assert!(out.contains("200 OK after 1 attempt(s): ok"), "{out}");
    assert!(
        out.contains("400 Bad Request after 1 attempt(s)") && out.contains("limit_out_of_range"),
        "{out}"
    );
}

/// The emulator behind a TLS acceptor on loopback, with a self-signed certificate for
/// 127.0.0.1; the certificate's PEM is written to `pem`.
async fn tls_emulator(api: Emulator, pem: &std::path::Path) -> String {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::PrivatePkcs8KeyDer;

    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(pem, cert.cert.pem()).unwrap();
    let key = PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the example makes two requests on at most two connections.
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, api) = (acceptor.clone(), api.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, std::convert::Infallible>(api.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    format!("https://{addr}")
}

#[tokio::test]
async fn the_hyper_client_speaks_https_through_rustls() {
    let api = Emulator::new();
    let pem = std::env::temp_dir().join(format!("infoplug-test-{}.pem", std::process::id()));
    let base = tls_emulator(api.clone(), &pem).await;
    let out = run_with(
        "hyper_client",
        &[],
        &[
            ("INFOPLUG_BASE_URL", &base),
            ("INFOPLUG_API_KEY", TEST_KEY),
            ("SSL_CERT_FILE", pem.to_str().unwrap()),
        ],
    )
    .await;
    let _ = std::fs::remove_file(&pem);
    assert!(out.contains(&format!("talking to {base}")), "{out}");
    assert!(out.contains("200 OK after 1 attempt(s): ok"), "{out}");
    let seen = api.requests();
    assert_eq!(seen.len(), 2, "{out}");
    assert!(
        seen.iter()
            .all(|r| r.header("x-infoplug-api-key") == Some(TEST_KEY))
    );
}

/// `--redis` with nothing listening: the example says so on its first line (and warns),
/// before any request, and every request still ends.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_fleet_example_says_at_once_when_no_redis_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let out = run_with(
        "fleet",
        &[
            "--redis",
            &url,
            "--workers",
            "2",
            "--requests",
            "60",
            "--quota",
            "100",
        ],
        &[],
    )
    .await;
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.contains("state: each worker's own (Redis did not answer"),
        "{out}"
    );
    assert_eq!(row(&out, "requests that ended in a 200:"), ["60"], "{out}");
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_fleet_example_runs_its_workers_each_with_its_own_state() {
    let out = run_with(
        "fleet",
        &[
            "--workers",
            "2",
            "--in-flight",
            "4",
            "--requests",
            "120",
            "--quota",
            "100",
        ],
        &[],
    )
    .await;
    assert!(out.contains("state: each worker's own"), "{out}");
    assert!(out.contains("requests that ended in a 200: 120"), "{out}");
    assert!(out.contains("makespan: "), "{out}");
}

#[tokio::test]
async fn every_example_answers_help_with_its_usage() {
    for name in [
        "quickstart",
        "hyper_client",
        "emulator",
        "gateway",
        "custom_transport",
    ] {
        let out = run_with(name, &["--help"], &[]).await;
        assert!(out.starts_with("usage: "), "{name}: {out}");
    }
    #[cfg(feature = "redis")]
    assert!(
        run_with("fleet", &["--help"], &[])
            .await
            .starts_with("usage: ")
    );
    #[cfg(feature = "reqwest")]
    assert!(
        run_with("quickstart_reqwest", &["--help"], &[])
            .await
            .starts_with("usage: ")
    );
}

/// A running example that prints `listening on IP:PORT` first; interrupted when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(name: &str, args: &[&str], key: Option<&str>) -> Self {
        let mut command = Command::new(example(name));
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.env_remove("INFOPLUG_API_KEY");
        if let Some(key) = key {
            command.env("INFOPLUG_API_KEY", key);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("prints its address within 30 s")
            .unwrap()
            .unwrap_or_default();
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// A GET of `path` on it.
    fn get(&self, path: &str) -> Request<Full<Bytes>> {
        Request::get(format!("{}{path}", self.base))
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// Sends SIGINT, as Ctrl-C does, and waits for a clean exit.
    async fn interrupt(mut self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits within 10 s of Ctrl-C")
            .unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

#[tokio::test]
async fn the_emulator_example_serves_until_interrupted() {
    let server = Server::start("emulator", &["--listen", "127.0.0.1:0"], None).await;
    let req = Request::get(format!("{}/v1/profile", server.base))
        .header("x-infoplug-api-key", TEST_KEY)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = http_client().request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    server.interrupt().await;
}

/// The gateway on a free port in front of `upstream`, holding the emulator's key.
async fn start_gateway(upstream: &str, settings: &[&str]) -> Server {
    let mut args = vec!["--listen", "127.0.0.1:0", "--upstream", upstream];
    args.extend_from_slice(settings);
    Server::start("gateway", &args, Some(TEST_KEY)).await
}

#[tokio::test]
async fn the_gateway_holds_the_key_and_reports_what_it_did() {
    let api = Emulator::new();
    let upstream = api.serve().await.unwrap();
    let gateway = start_gateway(&upstream.base_url(), &["--max-attempts", "3"]).await;
    let client = http_client();
    let send = |method: &str, path: &str, body: &'static str| {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", gateway.base))
            .header("x-infoplug-api-key", "a-client-must-not-choose-the-key")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "dropped")
            .header("x-trace", "kept")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        client.request(req)
    };

    // A plain success: forwarded with the gateway's key, one attempt.
    let res = send(
        "GET",
        "/v1/profile?linkedin_url=https://linkedin.com/in/x",
        "",
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infoplug-attempts"], "1");
    assert!(res.headers().get("x-infoplug-error").is_none());
    let seen = &api.requests()[0];
    assert_eq!(seen.header("x-infoplug-api-key"), Some(TEST_KEY));
    assert_eq!(seen.uri.path(), "/v1/profile");
    assert_eq!(
        seen.uri.query(),
        Some("linkedin_url=https://linkedin.com/in/x")
    );
    assert_eq!(seen.header("x-trace"), Some("kept"));
    assert_eq!(seen.header("x-hop"), None);

    // A 503 then success: retried behind the gateway; a POST body goes through whole.
    api.push(Reply::rate_limited(0));
    let res = send("POST", "/v1/search", "{\"q\":\"rust\"}")
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infoplug-attempts"], "2");
    let bodies: Vec<_> = api.requests()[1..].iter().map(|r| r.body.clone()).collect();
    assert_eq!(bodies, vec![Bytes::from_static(b"{\"q\":\"rust\"}"); 2]);

    // A contract error: streamed back unchanged, with its code.
    api.push(Reply::status(402));
    let res = send("GET", "/v1/jobs", "").await.unwrap();
    assert_eq!(res.status(), 402);
    assert_eq!(res.headers()["x-infoplug-error"], "insufficient_credits");
    let body = read_body(res.into_body()).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["message"], "insufficient_credits");
    gateway.interrupt().await;

    // An upstream that is not there: a 502 in the contract's format.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = start_gateway(&format!("http://{closed}"), &["--max-attempts", "2"]).await;
    let req = Request::get(format!("{}/v1/profile", dead.base))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.request(req).await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-infoplug-attempts"], "2");
    let body = read_body(res.into_body()).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["message"], "error");
    assert!(
        json["details"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{json}"
    );
    dead.interrupt().await;
}

#[tokio::test]
async fn the_gateway_refuses_locally_while_the_api_asks_for_an_hour_then_probes() {
    let api = Emulator::new();
    let upstream = api.serve().await.unwrap();
    let gateway = start_gateway(&upstream.base_url(), &["--max-retry-after", "0.3"]).await;
    let client = http_client();
    let get = || client.request(gateway.get("/v1/profile"));

    // The upstream asks for an hour: its own answer comes back at once.
    api.push(Reply::rate_limited(3600));
    let res = get().await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "3600");

    // Meanwhile the gateway answers for the API, and says when to come back.
    let res = get().await.unwrap();
    assert_eq!(res.status(), 429);
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3599..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(res.headers()["x-infoplug-error"], "rate_limit_exceeded");
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = read_body(res.into_body()).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["message"], "rate_limit_exceeded");
    assert_eq!(api.request_count(), 1, "refused without a call upstream");

    // Past the cooldown cap, one request probes; the API has recovered, and so has the
    // gateway: it is not locked out for the hour.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(api.request_count(), 3);
    gateway.interrupt().await;
}

/// An upstream that keeps failing without a word trips the gateway's circuit breaker: its
/// clients then get a 503 that says when the next probe goes, without a call upstream.
#[tokio::test]
async fn the_gateway_answers_a_tripped_breaker_with_a_503_and_its_probe_time() {
    let api = Emulator::builder().no_rate_limit().build();
    let upstream = api.serve().await.unwrap();
    let gateway = start_gateway(&upstream.base_url(), &["--max-attempts", "1"]).await;
    let client = http_client();
    let get = || client.request(gateway.get("/v1/profile"));
    api.set_outage(Some(Reply::status(500)));
    for _ in 0..10 {
        assert_eq!(get().await.unwrap().status(), 500);
    }
    let res = get().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body = read_body(res.into_body()).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        json["details"]
            .as_str()
            .unwrap()
            .contains("one request a second probes it"),
        "{json}"
    );
    assert_eq!(api.request_count(), 10, "refused without a call upstream");
    gateway.interrupt().await;
}

#[tokio::test]
async fn the_gateway_refuses_to_start_without_a_usable_key() {
    for (key, expected) in [
        (None, "INFOPLUG_API_KEY"),
        (Some("ip_live_secret\n"), "offset 14"),
    ] {
        let mut command = Command::new(example("gateway"));
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
        ]);
        command.env_remove("INFOPLUG_API_KEY");
        if let Some(key) = key {
            command.env("INFOPLUG_API_KEY", key);
        }
        let out = tokio::time::timeout(Duration::from_secs(30), command.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "nothing listens");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("ip_live_secret"), "{stderr}");
    }
    let out = Command::new(example("gateway"))
        .args(["--listen"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: gateway"));
}
