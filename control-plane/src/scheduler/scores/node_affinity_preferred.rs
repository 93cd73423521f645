//! NodeAffinity (score): nodes that satisfy more of the pod's preferred node affinity terms,
//! by weight, score higher. Required node affinity is a filter (`filters::node_affinity`).

use crate::api::affinity::PreferredSchedulingTerm;
use crate::api::Pod;
use crate::scheduler::{NodeInfo, Snapshot};

/// The sum of the weights of the preferred terms the node's labels satisfy.
pub fn score(pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> i64 {
    let labels = &node.node.metadata.labels;
    preferred(pod).iter().filter(|t| t.preference.matches(labels)).map(|t| i64::from(t.weight)).sum()
}

fn preferred(pod: &Pod) -> &[PreferredSchedulingTerm] {
    let node_affinity = pod.spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
    node_affinity.map_or(&[], |n| &n.preferred_during_scheduling_ignored_during_execution)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Node;
    use crate::scheduler::testing::*;

    #[test]
    fn matching_preferred_terms_add_their_weights() {
        let pod = pod("p").preferring_node(10, &[requirement("disk", "In", &["ssd"])]).preferring_node(
            3,
            &[requirement("zone", "In", &["a"]), requirement("spot", "DoesNotExist", &[])],
        );
        let cases: Vec<(Node, i64)> = vec![
            (node("bare"), 0),
            (node("ssd").with_label("disk", "ssd"), 10),
            (node("zone-a").with_label("zone", "a"), 3),
            (node("spot-in-a").with_label("zone", "a").with_label("spot", "yes"), 0),
            (node("ssd-in-a").with_label("disk", "ssd").with_label("zone", "a"), 13),
        ];
        for (node, expected) in cases {
            let snap = snapshot(vec![node], vec![]);
            assert_eq!(score(&pod, &snap.nodes[0], &snap), expected, "{}", snap.nodes[0].name());
        }
    }

    #[test]
    fn pods_without_preferences_score_every_node_zero() {
        let snap = snapshot(vec![node("ssd").with_label("disk", "ssd")], vec![]);
        assert_eq!(score(&pod("p"), &snap.nodes[0], &snap), 0);
    }
}
