//! A `redis-server` on a free loopback port, killed when dropped; for the fleet tests and the
//! crate's store conformance table.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` on loopback `port` (no persistence), with what `configure` adds, once it
/// listens.
fn redis_server(port: u16, configure: impl FnOnce(&mut Command)) -> Child {
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    configure(&mut command);
    let child = command
        .spawn()
        .expect("redis-server is on the PATH (these tests are ignored unless asked for)");
    listening(port);
    child
}

/// Waits until something listens on loopback `port` (a `redis-server` just spawned).
fn listening(port: u16) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `redis-server` on a loopback port, killed when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::on(free_port())
    }

    pub fn on(port: u16) -> Self {
        let child = redis_server(port, |_| {});
        Self { child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three `redis-server --cluster-enabled yes` masters on loopback ports (no replicas), made
/// a cluster with `redis-cli --cluster create`; killed (and their directory removed) when
/// dropped. A node can be stopped and started again on its port: it rejoins with its own
/// `nodes.conf`.
pub struct RedisCluster {
    nodes: Vec<(u16, Option<Child>)>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "infoplug-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..3 {
            let port = free_port();
            let child = cluster.spawn(port);
            cluster.nodes.push((port, Some(child)));
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is on the PATH (Debian's redis-server ships it)");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_ok();
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        redis_server(port, |command| {
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
                .arg("--cluster-config-file")
                .arg(self.dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(&self.dir);
        })
    }

    /// Waits until every running node says `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let started = std::time::Instant::now();
        for (port, child) in &self.nodes {
            if child.is_none() {
                continue;
            }
            loop {
                let out = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the cluster did not become ok"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(port, _)| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// The node that serves `key`'s slot.
    pub fn node_of(&self, key: &str) -> usize {
        let (port, _) = &self.nodes[0];
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "cluster", "keyslot", key])
            .output()
            .unwrap();
        let slot: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let out = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "cluster", "slots"])
            .output()
            .unwrap();
        // Each range as lines: start, end, the master's IP, its port, its id, ...
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        for w in lines.windows(4) {
            let (Ok(start), Ok(end), Ok(port)) = (
                w[0].parse::<u16>(),
                w[1].parse::<u16>(),
                w[3].parse::<u16>(),
            ) else {
                continue;
            };
            if w[2] == "127.0.0.1" && (start..=end).contains(&slot) {
                return self.nodes.iter().position(|(p, _)| *p == port).unwrap();
            }
        }
        panic!("no node serves slot {slot}: {lines:?}");
    }

    /// Kills node `i`.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].1.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its port, with its `nodes.conf`.
    pub fn restart(&mut self, i: usize) {
        let port = self.nodes[i].0;
        let child = self.spawn(port);
        self.nodes[i].1 = Some(child);
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
