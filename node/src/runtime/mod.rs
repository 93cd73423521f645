//! The container runtime seen by the agent: pods as a sandbox container
//! (holding the network namespace) plus app containers joined to it.
//!
//! [`Runtime`] separates the agent from Docker. The Docker implementation
//! (`docker`) is the product; the simulated one (`sim`) serves unit tests
//! and turmoil simulations only.
//!
//! Every container and volume carries labels ([`labels`]) naming its node,
//! pod and container, so an agent rebuilds its whole view from the runtime
//! after a restart (`list`), and several agents can share one engine.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::BoxStream;

pub mod docker;
pub mod sim;

/// Label keys on everything Corral creates in the engine.
pub mod labels {
    /// Present (value "true") on every container, volume and network Corral created.
    pub const OWNED: &str = "io.corral.owned";
    pub const NODE: &str = "io.corral.node";
    pub const POD_UID: &str = "io.corral.pod.uid";
    pub const POD_NAMESPACE: &str = "io.corral.pod.namespace";
    pub const POD_NAME: &str = "io.corral.pod.name";
    /// The container's name in the pod spec; absent on the sandbox.
    pub const CONTAINER: &str = "io.corral.container";
    /// "sandbox" or "app".
    pub const ROLE: &str = "io.corral.role";
    /// Which start of this container this is (0 for the first).
    pub const ATTEMPT: &str = "io.corral.attempt";
    /// A hash of the container's spec, to notice a changed spec.
    pub const SPEC_HASH: &str = "io.corral.spec-hash";
    /// Free-form: tests label what they create to remove it afterwards.
    pub const TEST: &str = "io.corral.test";
}

/// What failed in the runtime, said so an operator knows what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {image:?} is not present on node {node:?} (no registry: build it locally)")]
    ImageNotPresent { image: String, node: String },
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("the container engine is unreachable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Engine(String),
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// Which pod a container belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    Tcp,
    Udp,
}

/// A container port published on the node's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    pub protocol: PortProtocol,
    /// The node's address (a loopback address such as 127.0.0.11 here).
    pub host_ip: IpAddr,
    /// 0: an ephemeral port chosen by the engine.
    pub host_port: u16,
}

/// The sandbox of one pod: owns its network namespace (its pod IP on the
/// Corral network), its published ports, its DNS settings and its emptyDir
/// volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    pub pod: PodRef,
    pub node: String,
    pub hostname: String,
    pub ports: Vec<PortMapping>,
    /// Name servers and search domains written into the pod's resolv.conf.
    pub dns_servers: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    /// resolv.conf options (`ndots:5`, as Kubernetes gives pods).
    pub dns_options: Vec<String>,
    /// emptyDir volume names (as in the pod spec) to create for the pod.
    pub empty_dirs: Vec<String>,
    /// Extra labels (for example [`labels::TEST`]).
    pub extra_labels: BTreeMap<String, String>,
}

/// A running sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    /// The pod IP on the Corral network.
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// An emptyDir volume of the pod, by its name in the pod spec.
    EmptyDir(String),
    HostPath(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

/// One app container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub pod: PodRef,
    pub node: String,
    /// The container's name in the pod spec.
    pub name: String,
    pub image: String,
    /// Kubernetes' `command` (replaces the image's entrypoint when not empty).
    pub command: Vec<String>,
    /// Kubernetes' `args` (replaces the image's cmd when not empty).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    /// limits.cpu in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// limits.memory in bytes.
    pub memory_limit_bytes: Option<u64>,
    pub attempt: u32,
    pub spec_hash: String,
    pub extra_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running {
        started_at: SystemTime,
    },
    Exited {
        exit_code: i64,
        started_at: Option<SystemTime>,
        finished_at: Option<SystemTime>,
        oom_killed: bool,
    },
}

/// What the runtime holds, read back from its labels and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub pod: PodRef,
    pub node: String,
    /// None for the sandbox.
    pub container: Option<String>,
    pub attempt: u32,
    pub spec_hash: String,
    pub image: String,
    pub state: ContainerState,
    /// The pod IP, on the sandbox.
    pub ip: Option<IpAddr>,
}

impl ContainerInfo {
    pub fn is_sandbox(&self) -> bool {
        self.container.is_none()
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// stdout and stderr interleaved, truncated to a few KiB.
    pub output: String,
}

/// One piece of a streamed exec ([`Runtime::exec_stream`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The command ended with this code: always the last item.
    Exit(i64),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    /// The last N lines only.
    pub tail: Option<u64>,
}

/// Resource usage of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time used, in nanoseconds (rates come from two samples).
    pub cpu_nanos: u64,
    pub memory_bytes: u64,
}

/// The host side of the network pods join: the bridge interface (where
/// the agent adds Service cluster IPs so pods reach the proxy) and its
/// gateway address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    pub interface: String,
    pub gateway: Option<IpAddr>,
}

/// How the engine's pod bridge is made (`network::plan::bridge_spec`
/// chooses it per backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkSpec {
    /// The bridge's subnet.
    pub subnet: ipnet::Ipv4Net,
    /// The bridge's own address: the pods' default gateway.
    pub gateway: std::net::Ipv4Addr,
    /// Where the engine picks addresses itself (`None`: the whole subnet).
    pub engine_range: Option<ipnet::Ipv4Net>,
    /// This node's pod CIDR when the runtime picks each sandbox's address
    /// from it (a bridge shared by several nodes); `None`: the engine picks.
    pub pod_range: Option<ipnet::Ipv4Net>,
    /// The bridge's MTU (`None`: the engine's default).
    pub mtu: Option<u32>,
    /// Whether the engine masquerades what leaves the bridge (off when the
    /// agent masquerades only traffic that leaves the cluster CIDR).
    pub engine_masquerade: bool,
}

impl Default for PodNetworkSpec {
    /// One bridge over the default cluster CIDR, shared by every node of
    /// the engine, the engine addressing containers from its first range.
    fn default() -> Self {
        let cluster: ipnet::Ipv4Net =
            control_plane::controllers::node_ipam::DEFAULT_CLUSTER_CIDR.parse().expect("a valid CIDR");
        let reserved = ipnet::Ipv4Net::new(cluster.network(), 24).expect("a valid prefix");
        PodNetworkSpec {
            subnet: cluster,
            gateway: std::net::Ipv4Addr::from(u32::from(cluster.network()) + 1),
            engine_range: Some(reserved),
            pod_range: None,
            mtu: None,
            engine_masquerade: true,
        }
    }
}

/// A container engine. Object safe: the agent holds an `Arc<dyn Runtime>`.
pub trait Runtime: Send + Sync + 'static {
    /// Whether `image` is present locally (there is no registry to pull from).
    fn image_present(&self, image: &str) -> BoxFuture<'_, RuntimeResult<bool>>;
    /// Creates and starts the pod's sandbox (and its emptyDir volumes),
    /// joined to the Corral network.
    fn create_sandbox(&self, config: &SandboxConfig) -> BoxFuture<'_, RuntimeResult<Sandbox>>;
    /// Creates and starts an app container in the sandbox's namespaces.
    /// Returns its id.
    fn start_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> BoxFuture<'_, RuntimeResult<String>>;
    /// SIGTERM, then SIGKILL after `grace`. Stopping a stopped container is fine.
    fn stop_container(&self, id: &str, grace: Duration) -> BoxFuture<'_, RuntimeResult<()>>;
    /// Removes a (stopped or running) container. Removing a missing one is fine.
    fn remove_container(&self, id: &str) -> BoxFuture<'_, RuntimeResult<()>>;
    /// Removes the pod's emptyDir volumes (after its containers are gone).
    fn remove_pod_volumes(&self, pod_uid: &str) -> BoxFuture<'_, RuntimeResult<()>>;
    /// Every container of this node, running or not.
    fn list(&self, node: &str) -> BoxFuture<'_, RuntimeResult<Vec<ContainerInfo>>>;
    /// Runs a command in a running container, killed after `timeout`.
    fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> BoxFuture<'_, RuntimeResult<ExecOutput>>;
    /// Runs a command in a running container (no terminal, no stdin) and
    /// streams its stdout and stderr as they come, then its exit code. No
    /// time limit; dropping the stream before the end kills the command.
    fn exec_stream(&self, id: &str, command: &[String]) -> BoxStream<'static, RuntimeResult<ExecEvent>>;
    /// A container's log (stdout and stderr), as chunks of bytes.
    fn logs(&self, id: &str, options: LogOptions) -> BoxStream<'static, RuntimeResult<Vec<u8>>>;
    fn stats(&self, id: &str) -> BoxFuture<'_, RuntimeResult<Usage>>;
    /// Yields whenever a container of `node` changes state (start, exit,
    /// removal), so the agent reports promptly; the agent also resyncs
    /// periodically, so a missed nudge costs latency, not correctness.
    fn changes(&self, node: &str) -> BoxStream<'static, ()>;
    /// Makes the pod network as `spec` says (or checks that it is so), and
    /// returns its host interface; `None` for a runtime without one (the
    /// simulation). Sandboxes created afterwards join it.
    fn pod_network(&self, spec: &PodNetworkSpec) -> BoxFuture<'_, RuntimeResult<Option<PodNetwork>>>;
    /// Whether this runtime has a pod network to set up at all.
    fn has_pod_network(&self) -> bool {
        true
    }
}
