//! SelectorSpread: replicas of one workload spread across nodes, so that losing a node loses
//! as few of them as possible. Replicas are the pods with the same controlling owner
//! (the `ownerReferences` entry with `controller: true`, compared by uid).

use crate::api::Pod;
use crate::scheduler::{NodeInfo, Snapshot};

/// How many of the pod's siblings already run on the node; fewer is better, which the plugin's
/// `ByMaxReversed` normalization turns into a higher score. Pods without a controller have no
/// siblings and score zero everywhere.
pub fn score(pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> i64 {
    let Some(owner) = pod.metadata.controller() else { return 0 };
    node.owned_by(&owner.uid) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::*;

    #[test]
    fn counts_pods_on_the_node_with_the_same_controller() {
        let replica = |name: &str, owner: &str| pod(name).owned_by(owner).bound_to("n");
        let mut not_controller = pod("ref").bound_to("n").owned_by("rs-1");
        not_controller.metadata.owner_references[0].controller = None;
        let cases: Vec<(&str, Vec<Pod>, i64)> = vec![
            ("empty node", vec![], 0),
            ("two siblings", vec![replica("a", "rs-1"), replica("b", "rs-1")], 2),
            ("another workload's replicas", vec![replica("a", "rs-2"), pod("bare").bound_to("n")], 0),
            ("an owner that is not the controller", vec![not_controller], 0),
        ];
        let incoming = pod("new").owned_by("rs-1");
        for (case, existing, expected) in cases {
            let snap = snapshot(vec![node("n")], existing);
            assert_eq!(score(&incoming, &snap.nodes[0], &snap), expected, "{case}");
        }
    }

    #[test]
    fn pods_without_a_controller_score_zero() {
        let snap = snapshot(vec![node("n")], vec![pod("a").owned_by("rs-1").bound_to("n")]);
        assert_eq!(score(&pod("orphan"), &snap.nodes[0], &snap), 0);
    }
}
