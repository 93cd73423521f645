//! Node IPAM: every Node gets a range of pod IPs (`spec.podCIDR`, a /24 of
//! the cluster CIDR by default), as Kubernetes' node IPAM controller gives
//! them. The range is the node's from then on: an agent restart keeps it
//! (the agent writes only status), it is released when the Node object is
//! deleted (it is free because no Node holds it), and it is never given
//! twice: the decision is made from the leader's cache, which holds every
//! committed Node, and written with compare-and-swap on the Node's
//! revision, so a write made from a stale view is refused and decided again.
//!
//! The first range of the cluster CIDR is never a node's: on a machine
//! whose nodes share one container engine (`corral up`), the one bridge
//! they share spans the cluster CIDR and takes its gateway and the
//! addresses the engine gives by itself from that range.
//!
//! When no range is free the node gets none: the decision says so, and the
//! shell reports it as a `NetworkUnavailable` condition and a
//! `CIDRNotAvailable` Event naming the cluster CIDR.

use ipnet::Ipv4Net;

use crate::api::Node;

/// Where pod CIDRs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamConfig {
    /// The cluster CIDR (`corral master --cluster-cidr`).
    pub cluster_cidr: Ipv4Net,
    /// The prefix length of each node's range (24: 254 pods).
    pub node_prefix: u8,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig { cluster_cidr: DEFAULT_CLUSTER_CIDR.parse().expect("a valid CIDR"), node_prefix: 24 }
    }
}

/// Kubernetes' (and flannel's) default cluster CIDR.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";

impl IpamConfig {
    /// Checks the configuration against the service range; the error names
    /// the values and what to do.
    pub fn new(cluster_cidr: Ipv4Net, node_prefix: u8) -> Result<Self, String> {
        if cluster_cidr.network() != cluster_cidr.addr() {
            return Err(format!(
                "--cluster-cidr {cluster_cidr}: host bits are set; did you mean {}?",
                cluster_cidr.trunc()
            ));
        }
        if node_prefix <= cluster_cidr.prefix_len() || node_prefix > 30 {
            return Err(format!(
                "node pod CIDRs of /{node_prefix} do not fit in --cluster-cidr {cluster_cidr}: use a prefix between /{} and /30",
                cluster_cidr.prefix_len() + 1
            ));
        }
        let services = crate::cluster_ip::range();
        if cluster_cidr.contains(&services)
            || services.contains(&cluster_cidr)
            || overlaps(cluster_cidr, services)
        {
            return Err(format!(
                "--cluster-cidr {cluster_cidr} overlaps the service range {services}: choose a range outside it (the default is {DEFAULT_CLUSTER_CIDR})"
            ));
        }
        Ok(IpamConfig { cluster_cidr, node_prefix })
    }

    /// How many node ranges the cluster CIDR holds (the first is kept).
    pub fn capacity(&self) -> u64 {
        (1u64 << (self.node_prefix - self.cluster_cidr.prefix_len())) - 1
    }

    /// The range kept for the shared bridge: the first of the cluster CIDR.
    pub fn reserved(&self) -> Ipv4Net {
        Ipv4Net::new(self.cluster_cidr.network(), self.node_prefix).expect("node_prefix checked")
    }
}

/// Whether two networks share an address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// What the allocator decided for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Give `node` the range `cidr`.
    Assign { node: String, cidr: Ipv4Net },
    /// No range is free for `node`.
    Exhausted { node: String },
}

/// The ranges to give to the nodes that have none, lowest free range first,
/// oldest node first. Pure.
///
/// Every range a Node holds is taken, whether or not it lies in the cluster
/// CIDR (a Node created with its own `spec.podCIDR` keeps it, as in
/// Kubernetes). Nodes being deleted get nothing.
pub fn plan(cfg: &IpamConfig, nodes: &[&Node]) -> Vec<Decision> {
    let taken: Vec<Ipv4Net> = nodes.iter().filter_map(|n| n.pod_cidr()).collect();
    let mut waiting: Vec<&Node> = nodes
        .iter()
        .copied()
        .filter(|n| n.spec.pod_cidr.is_none() && n.metadata.deletion_timestamp.is_none())
        .collect();
    if waiting.is_empty() {
        return Vec::new();
    }
    waiting.sort_by(|a, b| {
        (a.metadata.creation_timestamp, &a.metadata.name)
            .cmp(&(b.metadata.creation_timestamp, &b.metadata.name))
    });
    let mut free = cfg
        .cluster_cidr
        .subnets(cfg.node_prefix)
        .expect("node_prefix checked against the cluster CIDR")
        .skip(1)
        .filter(|candidate| !taken.iter().any(|t| overlaps(*t, *candidate)));
    waiting
        .into_iter()
        .map(|n| {
            let node = n.metadata.name.clone();
            match free.next() {
                Some(cidr) => Decision::Assign { node, cidr },
                None => Decision::Exhausted { node },
            }
        })
        .collect()
}

/// The message of an exhausted cluster CIDR, for the Event and the condition.
pub fn exhausted_message(cfg: &IpamConfig, node: &str) -> String {
    format!(
        "no pod CIDR is free for node {node:?}: all {} /{} ranges of cluster CIDR {} are allocated; delete unused nodes or start the masters with a wider --cluster-cidr",
        cfg.capacity(),
        cfg.node_prefix,
        cfg.cluster_cidr
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::meta::Time;

    fn node(name: &str, created: i64, cidr: Option<&str>) -> Node {
        let mut n = Node { api_version: "v1".into(), kind: "Node".into(), ..Default::default() };
        n.metadata.name = name.into();
        n.metadata.creation_timestamp = Some(Time::from_unix(created));
        n.spec.pod_cidr = cidr.map(String::from);
        n.spec.pod_cidrs = cidr.map(String::from).into_iter().collect();
        n
    }

    fn cfg(cidr: &str, prefix: u8) -> IpamConfig {
        IpamConfig::new(cidr.parse().unwrap(), prefix).unwrap()
    }

    fn assign(node: &str, cidr: &str) -> Decision {
        Decision::Assign { node: node.into(), cidr: cidr.parse().unwrap() }
    }

    #[test]
    fn new_nodes_get_the_lowest_free_ranges_oldest_first_never_the_first() {
        let nodes = [node("b", 20, None), node("a", 10, None), node("c", 5, Some("10.244.1.0/24"))];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(
            plan(&IpamConfig::default(), &refs),
            vec![assign("a", "10.244.2.0/24"), assign("b", "10.244.3.0/24")]
        );
    }

    #[test]
    fn a_released_range_is_given_again_and_held_ones_never() {
        // n2 (10.244.2.0/24) was deleted: its range is free again.
        let nodes =
            [node("n1", 1, Some("10.244.1.0/24")), node("n3", 3, Some("10.244.3.0/24")), node("n4", 4, None)];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(plan(&IpamConfig::default(), &refs), vec![assign("n4", "10.244.2.0/24")]);
    }

    #[test]
    fn nodes_with_a_range_and_nodes_being_deleted_get_nothing() {
        let mut going = node("going", 1, None);
        going.metadata.deletion_timestamp = Some(Time::from_unix(9));
        let nodes = [node("has", 1, Some("10.244.7.0/24")), going];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(plan(&IpamConfig::default(), &refs), vec![]);
    }

    #[test]
    fn a_range_set_by_hand_outside_or_across_blocks_is_respected() {
        // A /23 given by hand covers two /24 blocks.
        let nodes = [node("big", 1, Some("10.244.2.0/23")), node("new", 2, None), node("new2", 3, None)];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(
            plan(&IpamConfig::default(), &refs),
            vec![assign("new", "10.244.1.0/24"), assign("new2", "10.244.4.0/24")]
        );
    }

    #[test]
    fn exhaustion_is_reported_per_node_not_a_panic() {
        let c = cfg("10.200.0.0/22", 24);
        let nodes = [node("a", 1, None), node("b", 2, None), node("c", 3, None), node("d", 4, None)];
        let refs: Vec<&Node> = nodes.iter().collect();
        assert_eq!(
            plan(&c, &refs),
            vec![
                assign("a", "10.200.1.0/24"),
                assign("b", "10.200.2.0/24"),
                assign("c", "10.200.3.0/24"),
                Decision::Exhausted { node: "d".into() }
            ]
        );
        let m = exhausted_message(&c, "d");
        assert!(m.contains("10.200.0.0/22") && m.contains("all 3 /24 ranges"), "{m}");
    }

    #[test]
    fn bad_cluster_cidrs_are_refused_with_the_value() {
        let e = IpamConfig::new("10.96.0.0/12".parse().unwrap(), 24).unwrap_err();
        assert!(e.contains("overlaps the service range 10.96.0.0/16"), "{e}");
        let e = IpamConfig::new("10.244.0.1/16".parse().unwrap(), 24).unwrap_err();
        assert!(e.contains("did you mean 10.244.0.0/16"), "{e}");
        let e = IpamConfig::new("10.244.0.0/16".parse().unwrap(), 8).unwrap_err();
        assert!(e.contains("/8 do not fit"), "{e}");
        let e = IpamConfig::new("10.244.0.0/24".parse().unwrap(), 24).unwrap_err();
        assert!(e.contains("between /25 and /30"), "{e}");
        let c = IpamConfig::new("10.244.0.0/16".parse().unwrap(), 24).unwrap();
        assert_eq!((c.capacity(), c.reserved().to_string().as_str()), (255, "10.244.0.0/24"));
    }
}
