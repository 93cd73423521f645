//! `corral master`: runs one master until SIGTERM or Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use control_plane::api::pod_security::{HostPathPrefix, PodSecurity};
use control_plane::clock::SystemClock;
use control_plane::controllers::node_ipam::IpamConfig;
use control_plane::leader::manager::ControllerConfig;
use control_plane::{ClientError, Master, MasterConfig};
use raft_store::state_machine::History;
use raft_store::transport::TcpDialer;
use raft_store::{NodeId, RaftNodeConfig};
use tokio_stream::wrappers::TcpListenerStream;

use super::{CliError, Result};

#[derive(Debug, Clone, Args)]
pub struct MasterArgs {
    /// This master's id in the cluster (1, 2, 3, ...).
    #[arg(long)]
    pub id: NodeId,
    /// The address to listen on, also the address others reach this master at.
    #[arg(long)]
    pub listen: String,
    /// Where this master keeps its Raft log and state (RocksDB).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The initial voters of a new cluster, including this master: id=host:port,...
    #[arg(long, value_delimiter = ',', conflicts_with = "join")]
    pub peers: Vec<String>,
    /// Join a running cluster through any of its masters (host:port,...).
    #[arg(long, value_delimiter = ',')]
    pub join: Vec<String>,
    /// Serve Prometheus metrics (term, leadership, log indexes) over HTTP on this address.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Lowest election timeout in milliseconds (the highest is twice this).
    #[arg(long, default_value_t = 500)]
    pub election_timeout_ms: u64,
    /// Build a snapshot (and purge the log behind it) every this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot for followers that lag a little.
    #[arg(long, default_value_t = 1_000)]
    pub keep_behind_snapshot: u64,
    /// A node silent this long (no heartbeat) becomes NotReady.
    #[arg(long, default_value_t = 10)]
    pub node_grace_seconds: i64,
    /// ... and this much longer, its pods are failed and replaced elsewhere.
    #[arg(long, default_value_t = 20)]
    pub node_eviction_seconds: i64,
    /// How often the horizontal pod autoscalers decide (Kubernetes: 15 s).
    #[arg(long, default_value_t = 15)]
    pub hpa_sync_seconds: u64,
    /// Revisions of watch history kept for watchers that resume.
    #[arg(long, default_value_t = 100_000)]
    pub history: u64,
    /// The range nodes' pod CIDRs are allocated from (all masters of a cluster give the same).
    #[arg(long, default_value = control_plane::controllers::node_ipam::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: ipnet::Ipv4Net,
    /// The prefix length of each node's pod CIDR (24: up to 254 pods a node).
    #[arg(long, default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// Where pods may mount hostPath volumes: PREFIX[:rw],... (read-only
    /// unless `:rw`; none by default). The host's root, the Docker socket,
    /// /etc, /proc, /sys, /dev and /root stay refused even under a prefix.
    /// Give every master the same list.
    #[arg(long, value_delimiter = ',', value_name = "PREFIX[:rw]")]
    pub allowed_host_paths: Vec<HostPathPrefix>,
}

/// Parses `--peers 1=127.0.0.1:7001,2=...` into ids and addresses.
pub fn parse_peers(peers: &[String]) -> Result<BTreeMap<NodeId, String>> {
    let mut out = BTreeMap::new();
    for p in peers {
        let (id, addr) = p.split_once('=').ok_or_else(|| {
            CliError::msg(format!("--peers: {p:?} is not id=host:port (e.g. 1=127.0.0.1:7001)"))
        })?;
        let id: NodeId = id
            .parse()
            .map_err(|_| CliError::msg(format!("--peers: {id:?} in {p:?} is not a numeric master id")))?;
        if out.insert(id, addr.to_string()).is_some() {
            return Err(CliError::msg(format!("--peers: master id {id} is listed twice")));
        }
    }
    Ok(out)
}

pub async fn run(args: MasterArgs) -> Result<()> {
    let peers = parse_peers(&args.peers)?;
    let ipam = IpamConfig::new(args.cluster_cidr, args.node_cidr_mask_size).map_err(CliError::msg)?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await.map_err(|e| {
        CliError::msg(format!("cannot listen on {}: {e}: is another master using it?", args.listen))
    })?;
    let mut raft = RaftNodeConfig::new(args.id, args.data_dir.clone());
    raft.heartbeat_ms = args.heartbeat_ms;
    raft.election_min_ms = args.election_timeout_ms;
    raft.election_max_ms = args.election_timeout_ms * 2;
    raft.snapshot_every = args.snapshot_every;
    raft.keep_behind_snapshot = args.keep_behind_snapshot;
    raft.history = History { retain_revisions: args.history };
    let controllers = ControllerConfig {
        node_grace_seconds: args.node_grace_seconds,
        node_eviction_seconds: args.node_eviction_seconds,
        hpa_sync: Duration::from_secs(args.hpa_sync_seconds.max(1)),
        ipam,
        ..Default::default()
    };
    let config = MasterConfig {
        raft,
        advertise: args.listen.clone(),
        peers,
        clock: Arc::new(SystemClock),
        controllers,
        pod_security: PodSecurity { allowed_host_paths: args.allowed_host_paths.clone() },
    };
    let dialer = Arc::new(TcpDialer::default());
    let master = Master::start(config, dialer).await.map_err(|e| {
        CliError::msg(format!("master {} cannot start from {}: {e}", args.id, args.data_dir.display()))
    })?;
    tracing::info!(master = args.id, addr = %args.listen, data_dir = %args.data_dir.display(), "master serving");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let master = master.clone();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stop_rx.await;
            };
            master.serve(TcpListenerStream::new(listener), shutdown).await
        })
    };

    if !args.join.is_empty() {
        match master.join(args.join.clone(), Duration::from_secs(600)).await {
            Ok(msg) => tracing::info!(master = args.id, "{msg}"),
            Err(
                e @ (ClientError::Refused(_) | ClientError::InvalidArgument(_) | ClientError::NotFound(_)),
            ) => {
                master.shutdown().await;
                return Err(CliError::msg(format!("the cluster refused master {} joining: {e}", args.id)));
            }
            Err(e) => tracing::warn!(master = args.id, error = %e, "join did not complete; still serving"),
        }
    }

    let metrics_stop = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = &args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::msg(format!("cannot serve metrics on {addr}: {e}")))?;
        tracing::info!(master = args.id, %addr, "serving metrics");
        tokio::spawn(control_plane::metrics::serve(listener, master.node().clone(), metrics_stop.clone()));
    }

    wait_for_signal().await;
    metrics_stop.cancel();
    tracing::info!(master = args.id, "shutting down");
    let _ = stop_tx.send(());
    master.shutdown().await;
    match serving.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::msg(e)),
        Err(e) => Err(CliError::msg(format!("server task failed: {e}"))),
    }
}

pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
