//! NodeUnschedulableAndReady: new pods go only to nodes that are ready, not cordoned, and whose
//! pod network is up (Kubernetes keeps them off with the `node.kubernetes.io/network-unavailable`
//! taint; Corral has no taints yet and reads the `NetworkUnavailable` condition directly).
//! Pods already running on such a node are not this filter's concern.

use crate::api::Pod;
use crate::scheduler::{NodeInfo, Reason, Snapshot};

/// A cordoned node (`spec.unschedulable: true`) is reported as such even when it is also not
/// ready: the cordon is the deliberate state, readiness may come back on its own.
pub fn filter(_pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Result<(), Reason> {
    if node.node.spec.unschedulable == Some(true) {
        return Err(Reason::NodeUnschedulable);
    }
    if !node.node.is_ready() {
        return Err(Reason::NodeNotReady);
    }
    if node.node.network_unavailable() {
        return Err(Reason::NodeNetworkUnavailable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Node;
    use crate::scheduler::testing::*;

    #[test]
    fn only_ready_uncordoned_nodes_take_new_pods() {
        let mut explicitly_schedulable = node("explicit");
        explicitly_schedulable.spec.unschedulable = Some(false);
        let mut no_status = node("no-status");
        no_status.status = None;
        let cases: Vec<(Node, Result<(), Reason>)> = vec![
            (node("ready"), Ok(())),
            (explicitly_schedulable, Ok(())),
            (node("cordoned").cordoned(), Err(Reason::NodeUnschedulable)),
            (node("not-ready").not_ready(), Err(Reason::NodeNotReady)),
            (no_status, Err(Reason::NodeNotReady)),
            (node("both").cordoned().not_ready(), Err(Reason::NodeUnschedulable)),
            (node("no-network").network_unavailable(), Err(Reason::NodeNetworkUnavailable)),
            (node("network-up").network_unavailable_is("False"), Ok(())),
        ];
        for (node, expected) in cases {
            let snap = snapshot(vec![node], vec![]);
            assert_eq!(filter(&pod("web"), &snap.nodes[0], &snap), expected, "{}", snap.nodes[0].name());
        }
    }
}
