//! The proxy's shell: the listening sockets of a [`ProxyTable`] and the
//! connections forwarded through them. It decides nothing beyond which
//! backend a new connection tries first (round robin) and what to do when a
//! connect fails (try the next one, each at most once).
//!
//! Choices worth knowing:
//! - Listeners bind with `SO_REUSEADDR` and `SO_REUSEPORT`, since several
//!   agents on one machine serve the same cluster IP and port; the kernel
//!   spreads connections over them.
//! - A backend list is swapped in place: a change applies to the next
//!   accepted connection. Established connections are never cut by an
//!   apply, not even those to an endpoint that was removed (Kubernetes keeps
//!   them too; the endpoint's pod going away ends them). Removing a route
//!   closes its listener before [`Proxy::apply`] returns; its connections
//!   carry on. Dropping the [`Proxy`] (or cancelling its token) ends all.
//! - A connection for which no backend answers is reset (RST), so that the
//!   client sees an error at once rather than an empty reply.
//! - A bind failure is logged, shown in [`Proxy::status`] and retried on
//!   the next apply.
//! - There is no memory of failed backends: each connection tries from its
//!   round-robin position, paying a connect timeout per dead backend.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::plan::{ProxyTable, Route, ServicePortName};

/// How the proxy connects and listens.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// How long one connect to a backend may take before the next is tried.
    pub connect_timeout: Duration,
    /// The listen backlog of every listener.
    pub backlog: u32,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig { connect_timeout: Duration::from_secs(1), backlog: 1024 }
    }
}

/// One listener as [`Proxy::status`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStatus {
    pub listen: SocketAddr,
    pub service: ServicePortName,
    pub backends: Vec<SocketAddr>,
    /// Why the address could not be bound; `None` while it is listening.
    pub error: Option<String>,
}

/// A listener's counters since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    pub accepted: u64,
    /// Client connections open now (connecting or forwarding).
    pub active: u64,
    /// Connections closed because no backend answered (or there was none).
    pub failed: u64,
}

/// Bytes buffered per direction of a forwarded connection.
const COPY_BUFFER: usize = 64 * 1024;

/// The running proxy. Share it by reference or `Arc`; every method takes
/// `&self`. Each apply changes the listener map at once, under a lock, so
/// of concurrent applies the last one to take it wins.
pub struct Proxy {
    config: ProxyConfig,
    /// Ends every listener and connection of this proxy; a child of the
    /// caller's token, cancelled on drop.
    cancel: CancellationToken,
    listeners: Mutex<BTreeMap<SocketAddr, Listener>>,
}

struct Listener {
    listen: SocketAddr,
    service: ServicePortName,
    shared: Arc<Shared>,
    state: State,
}

enum State {
    Listening { stop: CancellationToken, task: JoinHandle<()> },
    Failed(String),
}

/// What the accept loop and the connections read while `apply` writes.
#[derive(Default)]
struct Shared {
    backends: RwLock<Arc<[SocketAddr]>>,
    next: AtomicUsize,
    accepted: AtomicU64,
    active: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    fn backends(&self) -> Arc<[SocketAddr]> {
        // The lock only guards an Arc swap, which cannot panic: poison is impossible in practice.
        self.backends.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_backends(&self, backends: &[SocketAddr]) -> bool {
        let mut current = self.backends.write().unwrap_or_else(PoisonError::into_inner);
        if **current == *backends {
            return false;
        }
        *current = backends.into();
        true
    }
}

impl Proxy {
    /// A proxy with the default [`ProxyConfig`] and no listeners yet.
    pub fn start(cancel: CancellationToken) -> Proxy {
        Proxy::with_config(ProxyConfig::default(), cancel)
    }

    pub fn with_config(config: ProxyConfig, cancel: CancellationToken) -> Proxy {
        Proxy { config, cancel: cancel.child_token(), listeners: Mutex::new(BTreeMap::new()) }
    }

    /// Makes the listeners those of `table`: opens new addresses, retries
    /// the ones that failed to bind, swaps backend lists, and closes the
    /// addresses no longer in the table (they are closed when this returns).
    /// Must run inside a Tokio runtime. Does nothing once cancelled.
    pub async fn apply(&self, table: &ProxyTable) {
        if self.cancel.is_cancelled() {
            return;
        }
        let closing = {
            let mut listeners = self.lock();
            let wanted: BTreeMap<SocketAddr, &Route> = table.routes.iter().map(|r| (r.listen, r)).collect();
            let gone: Vec<SocketAddr> =
                listeners.keys().filter(|a| !wanted.contains_key(a)).copied().collect();
            let closing: Vec<Listener> = gone.iter().filter_map(|a| listeners.remove(a)).collect();
            for route in wanted.values() {
                let listener = listeners.entry(route.listen).or_insert_with(|| Listener::new(route));
                listener.update(route);
                if let State::Failed(_) = listener.state {
                    listener.bind(&self.config, &self.cancel);
                }
            }
            closing
        };
        for listener in closing {
            listener.close().await;
        }
    }

    /// Every listener, by address, with its backends and bind error.
    pub fn status(&self) -> Vec<ListenerStatus> {
        self.lock()
            .values()
            .map(|l| ListenerStatus {
                listen: l.listen,
                service: l.service.clone(),
                backends: l.shared.backends().to_vec(),
                error: match &l.state {
                    State::Listening { .. } => None,
                    State::Failed(e) => Some(e.clone()),
                },
            })
            .collect()
    }

    /// The counters of every listener, by address.
    pub fn stats(&self) -> BTreeMap<SocketAddr, ListenerStats> {
        self.lock()
            .iter()
            .map(|(&addr, l)| {
                let s = &l.shared;
                let stats = ListenerStats {
                    accepted: s.accepted.load(Ordering::Relaxed),
                    active: s.active.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                };
                (addr, stats)
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, Listener>> {
        // Nothing panics while holding this lock (no I/O, no user code).
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Listener {
    fn new(route: &Route) -> Listener {
        Listener {
            listen: route.listen,
            service: route.service.clone(),
            shared: Arc::default(),
            state: State::Failed("not bound yet".into()),
        }
    }

    fn update(&mut self, route: &Route) {
        let listen = self.listen;
        if self.service != route.service {
            info!(%listen, from = %self.service, to = %route.service, "listener changes service");
            self.service = route.service.clone();
        }
        if self.shared.set_backends(&route.backends) {
            let (service, backends) = (&self.service, route.backends.len());
            debug!(%listen, %service, backends, "backends changed");
        }
    }

    /// Binds the address; on failure keeps the error for `status` and logs
    /// it once per distinct error.
    fn bind(&mut self, config: &ProxyConfig, cancel: &CancellationToken) {
        let (listen, service) = (self.listen, &self.service);
        match bind(listen, config.backlog) {
            Ok(socket) => {
                info!(%listen, %service, "listening");
                let stop = cancel.child_token();
                let conn =
                    Conn { config: config.clone(), shared: self.shared.clone(), cancel: cancel.clone() };
                let task = tokio::spawn(accept_loop(socket, listen, stop.clone(), conn));
                self.state = State::Listening { stop, task };
            }
            Err(e) => {
                let error = e.to_string();
                match &self.state {
                    State::Failed(previous) if *previous == error => {
                        debug!(%listen, %service, %error, "bind still failing")
                    }
                    _ => warn!(%listen, %service, %error, "cannot listen; retrying on the next apply"),
                }
                self.state = State::Failed(error);
            }
        }
    }

    async fn close(self) {
        if let State::Listening { stop, task } = self.state {
            stop.cancel();
            if let Err(e) = task.await {
                warn!(listen = %self.listen, error = %e, "accept loop ended abnormally");
            }
            info!(listen = %self.listen, service = %self.service, "closed");
        }
    }
}

fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// What every connection of one listener needs.
#[derive(Clone)]
struct Conn {
    config: ProxyConfig,
    shared: Arc<Shared>,
    /// The proxy's token, not the listener's: closing a listener leaves
    /// its connections running.
    cancel: CancellationToken,
}

async fn accept_loop(socket: TcpListener, listen: SocketAddr, stop: CancellationToken, conn: Conn) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok((client, _peer)) => {
                conn.shared.accepted.fetch_add(1, Ordering::Relaxed);
                // Taken here, in accept order, so that round robin is exact.
                let first = conn.shared.next.fetch_add(1, Ordering::Relaxed);
                let backends = conn.shared.backends();
                tokio::spawn(serve(client, backends, first, Active::new(conn.clone())));
            }
            Err(error) => {
                // Out of file descriptors and the like: pause rather than spin.
                warn!(%listen, %error, "accept failed; retrying in 100 ms");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Counts a connection as active for as long as it lives.
struct Active(Conn);

impl Active {
    fn new(conn: Conn) -> Active {
        conn.shared.active.fetch_add(1, Ordering::Relaxed);
        Active(conn)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.shared.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve(mut client: TcpStream, backends: Arc<[SocketAddr]>, first: usize, active: Active) {
    let conn = &active.0;
    let upstream = tokio::select! {
        _ = conn.cancel.cancelled() => return,
        upstream = connect_any(&backends, first, conn.config.connect_timeout) => upstream,
    };
    let Some(mut upstream) = upstream else {
        conn.shared.failed.fetch_add(1, Ordering::Relaxed);
        // RST rather than FIN: the client learns at once that nobody answered.
        if let Err(error) = client.set_zero_linger() {
            debug!(%error, "cannot set SO_LINGER on a client connection");
        }
        return;
    };
    for stream in [&client, &upstream] {
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%error, "cannot set TCP_NODELAY");
        }
    }
    tokio::select! {
        _ = conn.cancel.cancelled() => {}
        // 64 KiB buffers each way (tokio's default is 8 KiB): bulk transfers
        // make 8 times fewer reads and writes.
        copied = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, COPY_BUFFER, COPY_BUFFER) => {
            if let Err(error) = copied {
                debug!(%error, "forwarded connection ended with an error");
            }
        }
    }
}

/// Connects to the backends in turn from position `first`, each at most once.
async fn connect_any(backends: &[SocketAddr], first: usize, timeout: Duration) -> Option<TcpStream> {
    for i in 0..backends.len() {
        let backend = backends[(first + i) % backends.len()];
        match tokio::time::timeout(timeout, TcpStream::connect(backend)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(error)) => debug!(%backend, %error, "backend refused; trying the next"),
            Err(_) => debug!(%backend, ?timeout, "backend connect timed out; trying the next"),
        }
    }
    None
}

#[cfg(test)]
mod tests;
