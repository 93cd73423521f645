//! `corral node`: runs a worker node agent on the local Docker engine until
//! SIGTERM or Ctrl-C. Its pods keep running when it stops; a new agent with
//! the same name adopts them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use node::agent::{self, AgentConfig};
use node::network::{Backend, NetworkConfig};
use node::runtime::docker::DockerRuntime;
use tokio_util::sync::CancellationToken;

use super::{Cli, CliError, Result};

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// The node's name (a DNS-1123 label, unique in the cluster).
    #[arg(long)]
    pub name: String,
    /// The node's address: pod ports are published and services served
    /// there. Use a loopback address (127.0.0.11, 127.0.0.12, ...) to run
    /// several nodes on one machine.
    #[arg(long)]
    pub address: IpAddr,
    /// Node labels, k=v,... (for nodeSelector and node affinity).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Capacity, cpu=N,memory=Q (detected from the host when absent).
    #[arg(long, value_delimiter = ',')]
    pub capacity: Vec<String>,
    /// The Docker network Corral's pods join (created when missing).
    #[arg(long, default_value = node::runtime::docker::DEFAULT_NETWORK)]
    pub network: String,
    /// How pods of different nodes reach each other: bridge (several nodes sharing this
    /// machine's engine), host-gw (one engine per node, nodes on one link: a route per
    /// node), vxlan (one engine per node, nodes on different subnets: a kernel VXLAN tunnel).
    #[arg(long, default_value = "bridge", value_parser = parse_backend)]
    pub network_backend: Backend,
    /// The masters' --cluster-cidr (pod CIDRs come from it; pod traffic leaving it is masqueraded).
    #[arg(long, default_value = control_plane::controllers::node_ipam::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: ipnet::Ipv4Net,
    /// The Docker engine to run pods on: unix:///path/to/docker.sock (else DOCKER_HOST, else
    /// /var/run/docker.sock).
    #[arg(long)]
    pub docker_host: Option<String>,
    /// How often the node renews its heartbeat, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub heartbeat_ms: u64,
    /// How often the pods' CPU and memory are sampled (reported with the heartbeat), in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub usage_interval_ms: u64,
    /// First restart back-off of a crashing container, in milliseconds (doubles up to the maximum).
    #[arg(long, default_value_t = 10_000)]
    pub backoff_ms: u64,
    /// Longest restart back-off, in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    pub max_backoff_ms: u64,
    /// Extra labels on every container and volume this agent creates, k=v,...
    #[arg(long, value_delimiter = ',')]
    pub container_labels: Vec<String>,
    /// The most processes each container (and pod sandbox) may hold (Docker's PidsLimit).
    #[arg(long, default_value_t = node::runtime::docker::DEFAULT_PIDS_LIMIT as u32,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub pod_pids_limit: u32,
}

fn parse_backend(s: &str) -> std::result::Result<Backend, String> {
    s.parse()
}

fn pairs(what: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| CliError::msg(format!("--{what}: {s:?} is not k=v")))
        })
        .collect()
}

pub async fn run(cli: &Cli, args: &NodeArgs) -> Result<()> {
    let mut cfg = AgentConfig::new(args.name.clone(), args.address);
    cfg.labels = pairs("labels", &args.labels)?;
    for (k, v) in pairs("capacity", &args.capacity)? {
        let q = v.parse().map_err(|e| CliError::msg(format!("--capacity {k}={v}: {e}")))?;
        match k.as_str() {
            "cpu" => cfg.cpu = Some(q),
            "memory" => cfg.memory = Some(q),
            other => {
                return Err(CliError::msg(format!(
                    "--capacity: unknown resource {other:?}; use cpu or memory"
                )))
            }
        }
    }
    cfg.heartbeat = Duration::from_millis(args.heartbeat_ms);
    cfg.usage_interval = Duration::from_millis(args.usage_interval_ms);
    cfg.backoff_base = Duration::from_millis(args.backoff_ms);
    cfg.backoff_max = Duration::from_millis(args.max_backoff_ms.max(args.backoff_ms));
    cfg.extra_labels = pairs("container-labels", &args.container_labels)?;
    cfg.network = NetworkConfig { backend: args.network_backend, cluster_cidr: args.cluster_cidr };
    node::network::check_local_address(args.address)
        .map_err(|e| CliError::msg(format!("node {:?}: {e}", args.name)))?;
    if let Some(host) = args.docker_host.as_deref().filter(|h| !h.starts_with("unix://") && h.contains("://"))
    {
        return Err(CliError::msg(format!(
            "--docker-host {host:?}: only unix sockets are supported (unix:///var/run/docker.sock)"
        )));
    }
    let socket = DockerRuntime::socket_of(args.docker_host.as_deref());
    let runtime = DockerRuntime::open(&socket, &args.network).await.map_err(|e| {
        CliError::msg(format!(
            "node {:?}: the Docker engine at {} does not answer: {e}; start it, or pick another with --docker-host",
            args.name,
            socket.display()
        ))
    })?
    .with_pids_limit(i64::from(args.pod_pids_limit));
    let cancel = CancellationToken::new();
    let mut running = {
        let (client, cancel) = (cli.client(), cancel.clone());
        tokio::spawn(async move { agent::run(client, Arc::new(runtime), cfg, cancel).await })
    };
    tokio::select! {
        _ = super::master::wait_for_signal() => {
            tracing::info!(node = %args.name, "shutting down (pods keep running)");
            cancel.cancel();
            let _ = running.await;
            Ok(())
        }
        ended = &mut running => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CliError::msg(e.to_string())),
            Err(e) => Err(CliError::msg(format!("node agent failed: {e}"))),
        },
    }
}
