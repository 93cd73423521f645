//! The pod network of one node: its pods take addresses from its pod CIDR
//! (allocated by the leader) on a bridge the container engine creates, and
//! the node routes every other node's pod CIDR to that node, reconciled
//! from the Node list, so a pod IP is reachable from every node and pod of
//! the cluster. Three backends, as flannel has:
//!
//! - `bridge`: several nodes on one machine share one engine and one bridge
//!   spanning the cluster CIDR; nothing to route (`corral up`).
//! - `host-gw`: one engine per node; a route per peer via its node address,
//!   for nodes on one link.
//! - `vxlan`: one engine per node; a kernel VXLAN device with a neighbour and
//!   forwarding entry per peer, for nodes on different subnets (MTU lowered
//!   by the tunnel's overhead).
//!
//! For `host-gw` and `vxlan` the agent also forwards the cluster CIDR and
//! masquerades pod traffic leaving it ([`masquerade`]).
//!
//! [`plan`] decides (pure); [`netlink`] and [`masquerade`] program the host;
//! [`start`] is the loop that keeps the host as planned and says how it
//! went ([`NetworkState`], reported as the Node's `NetworkUnavailable`).

pub mod masquerade;
pub mod netlink;
pub mod plan;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use control_plane::api::{Node, Object};
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::reflector::Reflected;
use crate::runtime::{PodNetwork, Runtime};

/// How pod CIDRs of different nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Bridge,
    HostGw,
    Vxlan,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" => Ok(Backend::Bridge),
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::Vxlan),
            other => Err(format!(
                "{other:?} is not a network backend: use bridge (nodes sharing one engine), host-gw (nodes on one link) or vxlan (nodes on different subnets)"
            )),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Bridge => "bridge",
            Backend::HostGw => "host-gw",
            Backend::Vxlan => "vxlan",
        })
    }
}

/// How this node's pod network is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkConfig {
    pub backend: Backend,
    /// The masters' `--cluster-cidr`.
    pub cluster_cidr: Ipv4Net,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            backend: Backend::default(),
            cluster_cidr: control_plane::controllers::node_ipam::DEFAULT_CLUSTER_CIDR
                .parse()
                .expect("a valid CIDR"),
        }
    }
}

/// How the pod network stands, for the heartbeat's `NetworkUnavailable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkState {
    /// No pod CIDR allocated yet.
    WaitingForPodCidr,
    /// It cannot be set up: why, and what to do.
    Failed(String),
    /// Up: what it is.
    Up(String),
}

/// The state the heartbeat reads (and wakes on); `None` for a runtime
/// without a pod network.
pub type SharedState = Arc<watch::Sender<Option<NetworkState>>>;

/// A state nobody has set yet.
pub fn new_state() -> SharedState {
    Arc::new(watch::channel(None).0)
}

/// `NetworkUnavailable`'s status, reason and message for `state`.
pub fn condition_of(state: &NetworkState) -> (&'static str, &'static str, String) {
    match state {
        NetworkState::WaitingForPodCidr => (
            "True",
            "NoPodCIDR",
            "no pod CIDR is allocated to this node yet: the leader allocates one from the cluster CIDR"
                .into(),
        ),
        NetworkState::Failed(m) => ("True", "NetworkSetupFailed", m.clone()),
        NetworkState::Up(m) => ("False", "CorralNetworkUp", m.clone()),
    }
}

fn set(state: &SharedState, next: NetworkState) {
    state.send_if_modified(|s| {
        if s.as_ref() == Some(&next) {
            return false;
        }
        match &next {
            NetworkState::Failed(m) => tracing::warn!(error = %m, "pod network not available"),
            NetworkState::Up(m) => tracing::info!("{m}"),
            NetworkState::WaitingForPodCidr => tracing::info!("waiting for a pod CIDR"),
        }
        *s = Some(next);
        true
    });
}

/// This node's Node object as the reflector holds it.
pub fn own_node(nodes: &Reflected, name: &str) -> Option<Node> {
    nodes.objects.values().find_map(|o| match o {
        Object::Node(n) if n.metadata.name == name => Some(n.clone()),
        _ => None,
    })
}

fn all_nodes(nodes: &Reflected) -> Vec<Node> {
    nodes
        .objects
        .values()
        .filter_map(|o| if let Object::Node(n) = o { Some(n.clone()) } else { None })
        .collect()
}

/// How often the routes are checked without a change of the Node list.
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a failed setup is tried again.
const RETRY: Duration = Duration::from_secs(3);

/// Sets up the pod network once this node has a pod CIDR, retrying (and
/// reporting why in `state`) until it works, then keeps the routes to the
/// other nodes in step with the Node list until `cancel`. Returns the pod
/// network's host interface once it is up (`None`: cancelled first, or a
/// runtime without a pod network).
pub async fn start(
    runtime: Arc<dyn Runtime>,
    cfg: NetworkConfig,
    node: String,
    address: IpAddr,
    mut nodes: watch::Receiver<Reflected>,
    state: SharedState,
    cancel: CancellationToken,
) -> Option<PodNetwork> {
    if !runtime.has_pod_network() {
        return None;
    }
    set(&state, NetworkState::WaitingForPodCidr);
    // The routed backends program the host: one netlink connection for all of it.
    let mut nl = None;
    loop {
        let view = nodes.borrow_and_update().clone();
        let me = own_node(&view, &node);
        if let Some(cidr) = me.as_ref().and_then(Node::pod_cidr) {
            let connected = match (cfg.backend, nl.take()) {
                (Backend::Bridge, _) => Ok(None),
                (_, Some(n)) => Ok(Some(n)),
                (_, None) => netlink::Netlink::connect().map(Some),
            };
            let result = match connected {
                Ok(n) => {
                    nl = n;
                    setup(&runtime, &cfg, &node, address, cidr, &view, nl.as_ref()).await
                }
                Err(m) => Err(m),
            };
            match result {
                Ok(net) => {
                    match nl {
                        None => set(&state, NetworkState::Up(up_message(&cfg, cidr, address))),
                        Some(nl) => {
                            let ctx = Routing { cfg, node, address, cidr, state: state.clone(), nl };
                            ctx.reconcile(&view).await;
                            tokio::spawn(ctx.run(nodes, cancel));
                        }
                    }
                    return Some(net);
                }
                Err(m) => set(&state, NetworkState::Failed(m)),
            }
        } else if let Some(spec) = me.as_ref().and_then(|n| n.spec.pod_cidr.clone()) {
            set(&state, NetworkState::Failed(format!("spec.podCIDR {spec:?} is not an IPv4 CIDR")));
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            r = nodes.changed() => if r.is_err() { return None },
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Checks what the node was given and makes the bridge (and, for the
/// routed backends, the filter rules and the tunnel).
async fn setup(
    runtime: &Arc<dyn Runtime>,
    cfg: &NetworkConfig,
    node: &str,
    address: IpAddr,
    cidr: Ipv4Net,
    view: &Reflected,
    nl: Option<&netlink::Netlink>,
) -> Result<PodNetwork, String> {
    if !cfg.cluster_cidr.contains(&cidr) {
        return Err(format!(
            "pod CIDR {cidr} is outside this node's --cluster-cidr {}: start the node with the masters' --cluster-cidr",
            cfg.cluster_cidr
        ));
    }
    let nodes = all_nodes(view);
    let refs: Vec<&Node> = nodes.iter().collect();
    if let Some((ip, names)) =
        plan::address_clashes(&refs).into_iter().find(|(_, n)| n.iter().any(|n| n == node))
    {
        return Err(format!(
            "node address {ip} is also claimed by node(s) {}: give every node its own --address",
            names.iter().filter(|n| *n != node).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(names) = plan::clashes(&refs).remove(&cidr) {
        return Err(format!(
            "pod CIDR {cidr} is also held by node(s) {} (set by hand: the leader never gives one twice): delete one of the Nodes",
            names.iter().filter(|n| *n != node).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let reserved = Ipv4Net::new(cfg.cluster_cidr.network(), cidr.prefix_len()).map_err(|e| e.to_string())?;
    let underlay = match (nl, address) {
        (None, _) => None,
        (Some(nl), IpAddr::V4(v4)) => {
            let found = nl.link_of_address(v4).await?;
            Some(found.ok_or_else(|| {
                format!("node address {v4} is on no interface of this host: give --address one of this host's addresses")
            })?)
        }
        (Some(_), IpAddr::V6(v6)) => {
            return Err(format!("node address {v6}: the {} backend needs an IPv4 node address", cfg.backend))
        }
    };
    let spec = plan::bridge_spec(cfg.backend, cfg.cluster_cidr, reserved, cidr, underlay.map(|(_, mtu)| mtu));
    let net = runtime
        .pod_network(&spec)
        .await
        .map_err(|e| format!("cannot make the pod bridge for {cidr}: {e}"))?
        .ok_or_else(|| "the runtime made no pod bridge".to_string())?;
    let Some(nl) = nl else { return Ok(net) };
    {
        // The cluster CIDR must be Corral's alone on this host: a route of
        // somebody else's into it would take pod traffic elsewhere.
        let ours = [net.interface.as_str(), plan::VXLAN_DEVICE];
        let foreign: Vec<String> = nl
            .foreign_routes_into(cfg.cluster_cidr)
            .await?
            .into_iter()
            .filter(|(_, dev)| !dev.as_deref().is_some_and(|d| ours.contains(&d)))
            .map(|(dst, dev)| format!("{dst} dev {}", dev.unwrap_or_else(|| "?".into())))
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "the cluster CIDR {} overlaps this host's route(s) {}: start the masters and nodes with a --cluster-cidr this host does not use",
                cfg.cluster_cidr,
                foreign.join(", ")
            ));
        }
    }
    masquerade::ensure(cfg.cluster_cidr).await?;
    if let (Backend::Vxlan, Some((index, mtu)), IpAddr::V4(local)) = (cfg.backend, underlay, address) {
        nl.ensure_vxlan(
            plan::VXLAN_DEVICE,
            plan::VXLAN_VNI,
            plan::VXLAN_PORT,
            local,
            index,
            plan::vtep_mac(cidr),
            mtu.saturating_sub(plan::VXLAN_OVERHEAD),
            plan::vtep_ip(cidr),
        )
        .await?;
    }
    Ok(net)
}

/// The routed backends' loop: routes (and tunnel entries) to every peer.
struct Routing {
    cfg: NetworkConfig,
    node: String,
    address: IpAddr,
    cidr: Ipv4Net,
    state: SharedState,
    /// One netlink connection for the agent's life.
    nl: netlink::Netlink,
}

fn up_message(cfg: &NetworkConfig, cidr: Ipv4Net, address: IpAddr) -> String {
    format!("pod network up: backend {}, pod CIDR {cidr}, node address {address}", cfg.backend)
}

impl Routing {
    async fn run(self, mut nodes: watch::Receiver<Reflected>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = nodes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC) => {}
            }
            let view = nodes.borrow_and_update().clone();
            if view.synced {
                self.reconcile(&view).await;
            }
        }
    }

    async fn reconcile(&self, view: &Reflected) {
        match self.apply(view).await {
            Ok(peers) => set(
                &self.state,
                NetworkState::Up(format!(
                    "{}; routes to {peers} other node(s)",
                    up_message(&self.cfg, self.cidr, self.address)
                )),
            ),
            Err(m) => set(&self.state, NetworkState::Failed(m)),
        }
    }

    /// Makes the host's routes match the Node list; returns the peer count.
    async fn apply(&self, view: &Reflected) -> Result<usize, String> {
        let nodes = all_nodes(view);
        let peers: Vec<plan::Peer> = plan::peers(&self.node, &nodes)
            .into_iter()
            .filter(|p| p.cidr != self.cidr && self.cfg.cluster_cidr.contains(&p.cidr))
            .collect();
        let want = plan::routes(self.cfg.backend, &peers);
        let nl = &self.nl;
        if self.cfg.backend == Backend::Vxlan {
            nl.set_tunnel_peers(plan::VXLAN_DEVICE, &plan::tunnel_peers(&peers)).await?;
        }
        let have = nl.our_routes().await?;
        let have_routes: Vec<plan::Route> = have.iter().map(|(r, _)| r.clone()).collect();
        let (add, remove) = plan::diff_routes(&have_routes, &want);
        for (route, msg) in have {
            if remove.contains(&route) {
                tracing::info!(dst = %route.dst, via = %route.gateway, "removing a route to a node that is gone or moved");
                nl.del_route(msg).await?;
            }
        }
        for route in &add {
            tracing::info!(dst = %route.dst, via = %route.gateway, "adding a route to another node's pods");
            nl.add_route(route).await?;
        }
        Ok(peers.len())
    }
}

/// A node address this host can use: one the host holds (bindable).
pub fn check_local_address(address: IpAddr) -> Result<(), String> {
    std::net::TcpListener::bind((address, 0)).map(drop).map_err(|e| {
        format!("node address {address} is not an address of this host ({e}): give --address one of its addresses")
    })
}
