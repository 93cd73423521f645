//! The simulation harness: whole Corral clusters on turmoil's simulated
//! network, running the real raft-store and control-plane code. Masters are
//! turmoil hosts with their own RocksDB data dirs; the Raft transport and
//! the API clients dial through [`SimDialer`], and masters serve on
//! [`sim_incoming`] connections.
//!
//! Every run is seeded; [`run_seeded`] prints the seed and the one-line
//! command that replays it.
//!
//! On top of it: the fault vocabulary and nemesis ([`nemesis`]), the
//! clients ([`workload`]), the recorded history ([`history`]) and its
//! linearizability check ([`linearizability`]), what the checks see inside
//! the masters ([`observe`]), and a whole run with every invariant checked
//! ([`scenario`]); node agents on the in-memory runtime as hosts of their
//! own ([`run_node`]) and a run with pods ([`pods`]).

pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod observe;
pub mod pods;
pub mod scenario;
pub mod workload;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use control_plane::api::Time;
use control_plane::clock::{Clock, SharedClock};
use control_plane::{CorralClient, Master, MasterConfig};
use futures::Stream;
use hyper_util::rt::TokioIo;
use node::agent::AgentConfig;
use node::runtime::sim::SimRuntime;
use raft_store::db::IoMode;
use raft_store::state_machine::History;
use raft_store::transport::{endpoint, DialError, DialTimeouts, Dialer};
use raft_store::{NodeId, RaftNodeConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Uri};

/// The port every simulated master serves on.
pub const PORT: u16 = 7000;

/// The simulated host name of master `id`.
pub fn master_host(id: NodeId) -> String {
    format!("m{id}")
}

pub fn master_addr(id: NodeId) -> String {
    format!("{}:{PORT}", master_host(id))
}

/// Dials through turmoil's simulated network.
#[derive(Debug, Clone, Default)]
pub struct SimDialer;

impl Dialer for SimDialer {
    fn channel(&self, addr: &str) -> Result<Channel, DialError> {
        let connector = tower::service_fn(|uri: Uri| async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(PORT);
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok::<_, io::Error>(TokioIo::new(stream))
        });
        Ok(endpoint(addr, DialTimeouts::default())?.connect_with_connector_lazy(connector))
    }
}

/// A simulated TCP connection a master accepted.
pub struct SimConn(turmoil::net::TcpStream);

impl Connected for SimConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SimConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The connections accepted on `listener`, as tonic's server wants them.
pub fn sim_incoming(listener: turmoil::net::TcpListener) -> impl Stream<Item = io::Result<SimConn>> {
    futures::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(stream, _)| SimConn(stream));
        Some((conn, listener))
    })
}

/// Runs master `id` of a cluster of `peers` masters on this turmoil host,
/// with its data in `data_dir` (kept across a bounce).
pub async fn run_master(id: NodeId, peers: u64, data_dir: std::path::PathBuf) -> turmoil::Result {
    let mut raft = RaftNodeConfig::new(id, data_dir);
    raft.io = IoMode::Inline;
    raft.small_db = true;
    raft.history = History { retain_revisions: 10_000 };
    raft.snapshot_every = 200;
    raft.keep_behind_snapshot = 20;
    let peers = (1..=peers).map(|p| (p, master_addr(p))).collect();
    let config = MasterConfig {
        raft,
        advertise: master_addr(id),
        peers,
        clock: Arc::new(SimClock),
        controllers: Default::default(),
        pod_security: Default::default(),
    };
    let master = Master::start(config, Arc::new(SimDialer)).await?;
    // Dropped with this future when the host crashes.
    let _seen = observe::register(master.node());
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    master.serve(sim_incoming(listener), std::future::pending()).await?;
    Ok(())
}

/// Wall-clock time in a simulation: a fixed epoch plus turmoil's simulated
/// time, the same on every host. Masters stamp objects and judge heartbeat
/// ages with it and agents stamp heartbeats with it, so a node's silence is
/// measured in simulated seconds (the system clock would measure it in
/// however long the machine took to simulate them) and a run replays.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimClock;

/// Where [`SimClock`] starts: 2023-11-14.
pub const SIM_EPOCH: i64 = 1_700_000_000;

impl Clock for SimClock {
    fn now(&self) -> Time {
        Time(SIM_EPOCH + history::sim_now().as_secs() as i64)
    }
}

/// The simulated host name of node agent `i` (from 1).
pub fn node_host(i: usize) -> String {
    format!("n{i}")
}

/// The container engine of a simulated node: created by the node's host
/// on its first start and kept across agent restarts (as Docker outlives
/// the agent); the checks read it from outside.
pub type RuntimeSlot = Arc<std::sync::Mutex<Option<SimRuntime>>>;

/// Runs the node agent `name` on this turmoil host, on the in-memory
/// runtime in `slot`, talking to `masters` through the simulated network.
/// The proxy, DNS and log servers are left out (they bind OS sockets).
pub async fn run_node(name: String, masters: Vec<NodeId>, slot: RuntimeSlot) -> turmoil::Result {
    let runtime = slot.lock().expect("runtime slot").get_or_insert_with(SimRuntime::new).clone();
    let mut cfg = AgentConfig::new(name.clone(), turmoil::lookup(name.as_str()));
    cfg.cpu = Some("4".parse()?);
    cfg.memory = Some("8Gi".parse()?);
    cfg.serve_network = false;
    cfg.clock = SharedClock(Arc::new(SimClock));
    let client = sim_client(&masters, Duration::from_secs(5));
    let cancel = tokio_util::sync::CancellationToken::new();
    node::agent::run(client, Arc::new(runtime), cfg, cancel).await?;
    Ok(())
}

/// A client of the simulated cluster.
pub fn sim_client(ids: &[NodeId], timeout: Duration) -> CorralClient {
    CorralClient::new(ids.iter().map(|id| master_addr(*id)).collect(), Arc::new(SimDialer))
        .with_timeout(timeout)
}

/// The seeds to run: `CHAOS_SEED=n` replays one, `CHAOS_SEEDS=n` runs seeds
/// 1..=n (a soak), otherwise the fixed CI set.
pub fn seeds(ci: &[u64]) -> Vec<u64> {
    if let Some(seed) = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    if let Some(n) = std::env::var("CHAOS_SEEDS").ok().and_then(|s| s.parse::<u64>().ok()) {
        return (1..=n).collect();
    }
    ci.to_vec()
}

/// Runs `scenario` once per seed, every seed even after a failure (a soak
/// reports all its anomalies); fails naming each failing seed and how to
/// replay it.
pub fn run_seeded(test: &str, ci: &[u64], scenario: impl Fn(u64) -> turmoil::Result) {
    let _ = tracing_subscriber::fmt()
        // Quiet unless asked (RUST_LOG=chaos_tests=info shows the nemesis):
        // openraft logs every unreachable peer as an error.
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
    let mut failures = Vec::new();
    for seed in seeds(ci) {
        eprintln!("{test}: seed {seed}");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed)));
        let failure = match result {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        };
        eprintln!("{test}: seed {seed} FAILED: {failure}");
        failures.push(format!(
            "{test} failed with seed {seed}: {failure}\nreplay: CHAOS_SEED={seed} cargo test -p chaos-tests --test {test} -- --nocapture"
        ));
    }
    assert!(failures.is_empty(), "{} failing seed(s):\n{}", failures.len(), failures.join("\n"));
}
