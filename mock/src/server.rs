use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use tower_infoplug::Origin;

use crate::Emulator;

/// An [`Emulator`] served over HTTP/1.1 on loopback; built by [`Emulator::serve`].
///
/// Stops serving when dropped (open connections are closed too).
pub struct EmulatorServer {
    addr: SocketAddr,
    emulator: Emulator,
    task: JoinHandle<()>,
}

impl Emulator {
    /// Serves this emulator on `127.0.0.1`, on a free port.
    ///
    /// Must be called within a Tokio runtime; the server runs as a task on it.
    pub async fn serve(&self) -> io::Result<EmulatorServer> {
        self.serve_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves this emulator on `addr` (port 0 picks a free one).
    pub async fn serve_on(&self, addr: SocketAddr) -> io::Result<EmulatorServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept(listener, self.clone()));
        Ok(EmulatorServer {
            addr,
            emulator: self.clone(),
            task,
        })
    }
}

async fn accept(listener: TcpListener, emulator: Emulator) {
    // Owned by this task: aborting it drops the set, which aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let emulator = emulator.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let emulator = emulator.clone();
                async move { Ok::<_, Infallible>(emulator.handle(req).await) }
            });
            // A client that goes away mid-response is not the server's problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl EmulatorServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The origin to scope the key to.
    pub fn origin(&self) -> Origin {
        match Origin::parse(&self.base_url()) {
            Ok(origin) => origin,
            Err(_) => unreachable!("http://<socket address> is a valid origin"),
        }
    }

    /// `base_url` + `path_and_query`, as a URI (`path_and_query` starts with `/`).
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::uri::InvalidUri> {
        format!("{}{path_and_query}", self.base_url()).parse()
    }

    /// The emulator behind it (the same state: script it, read its recording).
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops serving and waits until the listener is closed.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for EmulatorServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for EmulatorServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorServer")
            .field("addr", &self.addr)
            .field("emulator", &self.emulator)
            .finish()
    }
}
