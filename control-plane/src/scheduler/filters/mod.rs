//! Filter plugins: each decides, for one pod and one node, whether the pod may run there, and
//! if not, names the [`Reason`]. One plugin per file, each with one job; this module owns their
//! order and the reasons they can give.

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_resources_fit;
pub mod node_unschedulable_and_ready;

use std::fmt;

use super::{NodeInfo, Snapshot};
use crate::api::Pod;

/// Why a filter rejected a node. The messages are Kubernetes' own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    NodeUnschedulable,
    NodeNotReady,
    NodeNetworkUnavailable,
    NodeAffinityMismatch,
    TooManyPods,
    InsufficientCpu,
    InsufficientMemory,
    PodAffinityMismatch,
    PodAntiAffinityMismatch,
}

impl Reason {
    pub fn message(self) -> &'static str {
        match self {
            Reason::NodeUnschedulable => "node(s) were unschedulable",
            Reason::NodeNotReady => "node(s) were not ready",
            Reason::NodeNetworkUnavailable => {
                "node(s) had untolerated taint {node.kubernetes.io/network-unavailable: }"
            }
            Reason::NodeAffinityMismatch => "node(s) didn't match Pod's node affinity/selector",
            Reason::TooManyPods => "Too many pods",
            Reason::InsufficientCpu => "Insufficient cpu",
            Reason::InsufficientMemory => "Insufficient memory",
            Reason::PodAffinityMismatch => "node(s) didn't match pod affinity rules",
            Reason::PodAntiAffinityMismatch => "node(s) didn't match pod anti-affinity rules",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A filter plugin: `Ok` when the pod may run on the node.
pub type Filter = fn(&Pod, &NodeInfo, &Snapshot) -> Result<(), Reason>;

/// The filters in the order they run, named as in Kubernetes. The order is Kubernetes' too:
/// the node's own state, then what the pod asks of the node, then what it asks of the pods
/// around it, so a node is reported under its most basic problem.
pub const FILTERS: [(&str, Filter); 4] = [
    ("NodeUnschedulableAndReady", node_unschedulable_and_ready::filter),
    ("NodeAffinity", node_affinity::filter),
    ("NodeResourcesFit", node_resources_fit::filter),
    ("InterPodAffinity", inter_pod_affinity::filter),
];

/// Runs the filters in order and stops at the first that rejects the node.
pub fn run(pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> Result<(), Reason> {
    FILTERS.iter().try_for_each(|(_, filter)| filter(pod, node, snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Node;
    use crate::scheduler::testing::*;

    #[test]
    fn a_node_is_rejected_by_the_first_filter_that_fails() {
        let big = pod("big").requesting(&[("cpu", "8")]).with_node_selector("disk", "ssd");
        let cases: Vec<(Node, Result<(), Reason>)> = vec![
            (
                node("cordoned-small-hdd").cordoned().with_allocatable(&[("cpu", "1")]),
                Err(Reason::NodeUnschedulable),
            ),
            (node("small-hdd").with_allocatable(&[("cpu", "1")]), Err(Reason::NodeAffinityMismatch)),
            (
                node("small-ssd").with_label("disk", "ssd").with_allocatable(&[("cpu", "1")]),
                Err(Reason::InsufficientCpu),
            ),
            (node("big-ssd").with_label("disk", "ssd").with_allocatable(&[("cpu", "8")]), Ok(())),
        ];
        for (node, expected) in cases {
            let snap = snapshot(vec![node], vec![]);
            assert_eq!(run(&big, &snap.nodes[0], &snap), expected, "{}", snap.nodes[0].name());
        }
    }
}
