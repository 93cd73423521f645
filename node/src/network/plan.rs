//! What the pod network of a node should look like, as pure functions of
//! its configuration, its pod CIDR and the other Nodes: the bridge the
//! engine creates, the routes to the other nodes' pods and, for VXLAN, the
//! tunnel's peers. The shell (`network::reconcile`) makes the host match.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use control_plane::api::Node;
use ipnet::Ipv4Net;

use super::Backend;
use crate::runtime::PodNetworkSpec;

/// The VXLAN tunnel device every node of the `vxlan` backend creates.
pub const VXLAN_DEVICE: &str = "corral.1";
/// The VXLAN network identifier (flannel's default, 1).
pub const VXLAN_VNI: u32 = 1;
/// The UDP port of the tunnel (the Linux kernel's and flannel's default, 8472).
pub const VXLAN_PORT: u16 = 8472;
/// What VXLAN adds to every packet: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Another node whose pods this node routes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub name: String,
    /// Its pod CIDR.
    pub cidr: Ipv4Net,
    /// Its InternalIP: the next hop (host-gw) or the tunnel's far end (vxlan).
    pub address: Ipv4Addr,
}

/// The nodes other than `me` that have a pod CIDR and an IPv4 InternalIP,
/// by name. A node being deleted stays a peer until its object is gone: its
/// pods are still being stopped.
pub fn peers<'a>(me: &str, nodes: impl IntoIterator<Item = &'a Node>) -> Vec<Peer> {
    let mut out: Vec<Peer> = nodes
        .into_iter()
        .filter(|n| n.metadata.name != me)
        .filter_map(|n| {
            let cidr = n.pod_cidr()?;
            let std::net::IpAddr::V4(address) = n.internal_ip()? else { return None };
            Some(Peer { name: n.metadata.name.clone(), cidr, address })
        })
        .collect();
    out.sort();
    out
}

/// A route this node wants in its main table: `dst` through `gateway`
/// (host-gw: the peer's address on the shared link; vxlan: the peer's
/// tunnel address, on-link through the tunnel device).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Through the tunnel device (vxlan); `None`: the kernel picks the link.
    pub onlink_device: Option<String>,
}

/// A VXLAN peer: where to send frames for its tunnel address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TunnelPeer {
    /// The peer's tunnel address (its pod CIDR's network address).
    pub vtep_ip: Ipv4Addr,
    /// The peer's tunnel device MAC ([`vtep_mac`] of its pod CIDR).
    pub vtep_mac: [u8; 6],
    /// Its InternalIP: the outer destination.
    pub underlay: Ipv4Addr,
}

/// The routes to every peer's pods for `backend`.
pub fn routes(backend: Backend, peers: &[Peer]) -> Vec<Route> {
    let mut out: Vec<Route> = match backend {
        Backend::Bridge => Vec::new(),
        Backend::HostGw => {
            peers.iter().map(|p| Route { dst: p.cidr, gateway: p.address, onlink_device: None }).collect()
        }
        Backend::Vxlan => peers
            .iter()
            .map(|p| Route {
                dst: p.cidr,
                gateway: vtep_ip(p.cidr),
                onlink_device: Some(VXLAN_DEVICE.to_string()),
            })
            .collect(),
    };
    out.sort();
    out
}

/// The tunnel entries (neighbour + forwarding database) for every peer.
pub fn tunnel_peers(peers: &[Peer]) -> Vec<TunnelPeer> {
    peers
        .iter()
        .map(|p| TunnelPeer { vtep_ip: vtep_ip(p.cidr), vtep_mac: vtep_mac(p.cidr), underlay: p.address })
        .collect()
}

/// A node's tunnel address: its pod CIDR's network address (as flannel
/// gives its `flannel.1` device), never a pod's.
pub fn vtep_ip(cidr: Ipv4Net) -> Ipv4Addr {
    cidr.network()
}

/// A node's tunnel MAC, derived from its pod CIDR so that no node has to
/// publish it: locally administered, unicast (`0e:c0:` + the network address).
pub fn vtep_mac(cidr: Ipv4Net) -> [u8; 6] {
    let o = cidr.network().octets();
    [0x0e, 0xc0, o[0], o[1], o[2], o[3]]
}

/// What the node's pod bridge looks like for `backend`:
/// - `bridge` (several nodes on one engine, one machine): one bridge spans
///   the cluster CIDR; its gateway and the engine's own addresses come from
///   the cluster CIDR's first range (never a node's), and each node's pods
///   take addresses from its own pod CIDR; the engine masquerades egress.
/// - `host-gw` / `vxlan` (one engine per node): the bridge is the node's pod
///   CIDR with its first address as gateway; the agent masquerades egress
///   (so traffic between pods keeps its source address); vxlan lowers the
///   MTU by the tunnel's overhead.
pub fn bridge_spec(
    backend: Backend,
    cluster_cidr: Ipv4Net,
    reserved: Ipv4Net,
    node_cidr: Ipv4Net,
    underlay_mtu: Option<u32>,
) -> PodNetworkSpec {
    match backend {
        Backend::Bridge => PodNetworkSpec {
            subnet: cluster_cidr,
            gateway: first_host(reserved),
            engine_range: Some(reserved),
            pod_range: Some(node_cidr),
            mtu: None,
            engine_masquerade: true,
        },
        Backend::HostGw | Backend::Vxlan => PodNetworkSpec {
            subnet: node_cidr,
            gateway: first_host(node_cidr),
            engine_range: None,
            pod_range: None,
            mtu: match backend {
                Backend::Vxlan => underlay_mtu.map(|m| m.saturating_sub(VXLAN_OVERHEAD)),
                _ => None,
            },
            engine_masquerade: false,
        },
    }
}

/// The first host address of a range (its gateway).
pub fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// A free address for a pod of `range` (not the network, gateway or
/// broadcast address, not `taken`), starting from one derived from the
/// pod's uid so that retries of one pod tend to ask for the same address.
pub fn pod_address(
    range: Ipv4Net,
    uid: &str,
    taken: &std::collections::BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let base = u32::from(range.network());
    let size = 1u32 << (32 - u32::from(range.prefix_len()));
    if size < 4 {
        return None;
    }
    // .0 network, .1 gateway, last broadcast: size - 3 usable.
    let usable = size - 3;
    let seed = uid.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    (0..usable)
        .map(|i| Ipv4Addr::from(base + 2 + (seed.wrapping_add(i) % usable)))
        .find(|ip| !taken.contains(ip))
}

/// Routes to add and to remove: `have` is what this agent finds of its own
/// (marked with its route protocol), `want` what it should hold. A route
/// whose gateway or device changed is removed and added again.
pub fn diff_routes(have: &[Route], want: &[Route]) -> (Vec<Route>, Vec<Route>) {
    let add = want.iter().filter(|r| !have.contains(r)).cloned().collect();
    let remove = have.iter().filter(|r| !want.contains(r)).cloned().collect();
    (add, remove)
}

/// Pod CIDRs held by two nodes at once (set by hand: the allocator never
/// gives one twice), by CIDR: the names of the nodes that hold it.
pub fn clashes(nodes: &[&Node]) -> BTreeMap<Ipv4Net, Vec<String>> {
    let mut by_cidr: BTreeMap<Ipv4Net, Vec<String>> = BTreeMap::new();
    for n in nodes {
        if let Some(c) = n.pod_cidr() {
            by_cidr.entry(c).or_default().push(n.metadata.name.clone());
        }
    }
    by_cidr.retain(|_, names| names.len() > 1);
    by_cidr
}

/// Nodes advertising the same InternalIP, by address.
pub fn address_clashes(nodes: &[&Node]) -> BTreeMap<std::net::IpAddr, Vec<String>> {
    let mut by_ip: BTreeMap<std::net::IpAddr, Vec<String>> = BTreeMap::new();
    for n in nodes {
        if let Some(ip) = n.internal_ip() {
            by_ip.entry(ip).or_default().push(n.metadata.name.clone());
        }
    }
    by_ip.retain(|_, names| names.len() > 1);
    by_ip
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use control_plane::api::node::{NodeAddress, NodeStatus};

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let mut n = Node { api_version: "v1".into(), kind: "Node".into(), ..Default::default() };
        n.metadata.name = name.into();
        n.spec.pod_cidr = cidr.map(String::from);
        n.status = Some(NodeStatus {
            addresses: ip
                .map(|a| NodeAddress { type_: "InternalIP".into(), address: a.into() })
                .into_iter()
                .collect(),
            ..Default::default()
        });
        n
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn peers_are_the_other_nodes_with_a_cidr_and_an_ipv4_address() {
        let nodes = [
            node("me", Some("10.244.1.0/24"), Some("10.77.0.11")),
            node("b", Some("10.244.2.0/24"), Some("10.77.0.12")),
            node("no-cidr", None, Some("10.77.0.13")),
            node("no-ip", Some("10.244.4.0/24"), None),
            node("v6", Some("10.244.5.0/24"), Some("fd00::5")),
            node("a", Some("10.244.3.0/24"), Some("10.77.0.14")),
        ];
        let p = peers("me", &nodes);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            p[1],
            Peer { name: "b".into(), cidr: net("10.244.2.0/24"), address: "10.77.0.12".parse().unwrap() }
        );
    }

    #[test]
    fn routes_per_backend() {
        let peers = vec![Peer {
            name: "b".into(),
            cidr: net("10.244.2.0/24"),
            address: "10.77.0.12".parse().unwrap(),
        }];
        assert_eq!(routes(Backend::Bridge, &peers), vec![]);
        assert_eq!(
            routes(Backend::HostGw, &peers),
            vec![Route {
                dst: net("10.244.2.0/24"),
                gateway: "10.77.0.12".parse().unwrap(),
                onlink_device: None
            }]
        );
        assert_eq!(
            routes(Backend::Vxlan, &peers),
            vec![Route {
                dst: net("10.244.2.0/24"),
                gateway: "10.244.2.0".parse().unwrap(),
                onlink_device: Some(VXLAN_DEVICE.into())
            }]
        );
        assert_eq!(
            tunnel_peers(&peers),
            vec![TunnelPeer {
                vtep_ip: "10.244.2.0".parse().unwrap(),
                vtep_mac: [0x0e, 0xc0, 10, 244, 2, 0],
                underlay: "10.77.0.12".parse().unwrap()
            }]
        );
    }

    #[test]
    fn bridge_specs_per_backend() {
        let (cluster, reserved, mine) = (net("10.244.0.0/16"), net("10.244.0.0/24"), net("10.244.3.0/24"));
        let shared = bridge_spec(Backend::Bridge, cluster, reserved, mine, Some(1500));
        assert_eq!((shared.subnet, shared.gateway), (cluster, "10.244.0.1".parse().unwrap()));
        assert_eq!(
            (shared.engine_range, shared.pod_range, shared.engine_masquerade),
            (Some(reserved), Some(mine), true)
        );
        let gw = bridge_spec(Backend::HostGw, cluster, reserved, mine, Some(1500));
        assert_eq!(
            (gw.subnet, gw.gateway, gw.mtu, gw.engine_masquerade),
            (mine, "10.244.3.1".parse().unwrap(), None, false)
        );
        let vx = bridge_spec(Backend::Vxlan, cluster, reserved, mine, Some(1500));
        assert_eq!(vx.mtu, Some(1450));
    }

    #[test]
    fn pod_addresses_are_in_range_never_reserved_and_never_taken() {
        let range = net("10.244.3.0/29"); // .0 net, .1 gateway, .7 broadcast: .2-.6
        let mut taken = BTreeSet::new();
        for i in 0..5 {
            let ip = pod_address(range, &format!("uid-{i}"), &taken).unwrap();
            let last = ip.octets()[3];
            assert!((2..=6).contains(&last), "{ip}");
            assert!(taken.insert(ip), "{ip} given twice");
        }
        assert_eq!(pod_address(range, "uid-9", &taken), None, "a full range gives nothing");
        assert_eq!(
            pod_address(range, "same", &BTreeSet::new()),
            pod_address(range, "same", &BTreeSet::new())
        );
    }

    #[test]
    fn route_diff_replaces_changed_gateways_and_drops_gone_peers() {
        let r =
            |dst: &str, gw: &str| Route { dst: net(dst), gateway: gw.parse().unwrap(), onlink_device: None };
        let have = vec![r("10.244.2.0/24", "10.77.0.12"), r("10.244.9.0/24", "10.77.0.19")];
        let want = vec![r("10.244.2.0/24", "10.77.0.22"), r("10.244.3.0/24", "10.77.0.13")];
        let (add, remove) = diff_routes(&have, &want);
        assert_eq!(add, want);
        assert_eq!(remove, have);
        assert_eq!(diff_routes(&want, &want), (vec![], vec![]));
    }

    #[test]
    fn clashing_cidrs_and_addresses_are_found() {
        let nodes = [
            node("a", Some("10.244.2.0/24"), Some("10.77.0.12")),
            node("b", Some("10.244.2.0/24"), Some("10.77.0.12")),
            node("c", Some("10.244.3.0/24"), Some("10.77.0.13")),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(
            clashes(&refs),
            BTreeMap::from([(net("10.244.2.0/24"), vec!["a".to_string(), "b".to_string()])])
        );
        assert_eq!(address_clashes(&refs).len(), 1);
    }
}
