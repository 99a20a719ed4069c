//! Debian's nginx with `limit_req` in front of a static JSON file, on a free loopback port,
//! every path inside a temporary folder; for the nginx tests and the goodput bench.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where Debian's package puts nginx.
pub const NGINX: &str = "/usr/sbin/nginx";

/// How nginx answers a request over its rate.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// A bare 429 (nginx's default with `limit_req_status 429`).
    Bare,
    /// A 429 with `Retry-After: 1`, added through a `map` on `$status`.
    RetryAfterOne,
}

/// nginx on a loopback port, stopped when dropped.
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Nginx {
    /// `limit_req` at `rate` a second with `burst` (`nodelay`), in front of `/data.json`.
    pub fn start(rate: u32, burst: u32, refusal: Refusal) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-infoplug-nginx-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("html")).unwrap();
        std::fs::write(dir.join("html/data.json"), br#"{"data":{"ok":true}}"#).unwrap();
        let burst = match burst {
            0 => String::new(),
            n => format!(" burst={n} nodelay"),
        };
        let retry_after = match refusal {
            Refusal::Bare => "",
            Refusal::RetryAfterOne => {
                "map $status $retry_after { 429 1; default \"\"; }\n    \
                 add_header Retry-After $retry_after always;"
            }
        };
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/json;
    limit_req_zone $binary_remote_addr zone=rl:1m rate={rate}r/s;
    limit_req_status 429;
    {retry_after}
    server {{
        listen 127.0.0.1:{port};
        root {d}/html;
        location = /data.json {{ limit_req zone=rl{burst}; }}
    }}
}}
"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/sbin/nginx (Debian package nginx)");
        let nginx = Self { child, dir, port };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "nginx did not start: {:?}",
            std::fs::read_to_string(nginx.dir.join("error.log"))
        );
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
