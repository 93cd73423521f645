//! NodeAffinity: the node's labels must satisfy the pod's `nodeSelector` and its required node
//! affinity. Preferred node affinity is a score, not a filter (see
//! `scores::node_affinity_preferred`).

use std::collections::BTreeMap;

use crate::api::affinity::NodeSelector;
use crate::api::Pod;
use crate::scheduler::{NodeInfo, Reason, Snapshot};

/// Every `nodeSelector` label must be on the node with the same value, and at least one of
/// the required `nodeSelectorTerms` must hold (terms are ORed, a term's expressions ANDed).
pub fn filter(pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Result<(), Reason> {
    let labels = &node.node.metadata.labels;
    if matches_node_selector(&pod.spec.node_selector, labels) && matches_required_terms(pod, labels) {
        Ok(())
    } else {
        Err(Reason::NodeAffinityMismatch)
    }
}

fn matches_node_selector(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

fn matches_required_terms(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    required(pod).is_none_or(|s| s.node_selector_terms.iter().any(|term| term.matches(labels)))
}

fn required(pod: &Pod) -> Option<&NodeSelector> {
    let node_affinity = pod.spec.affinity.as_ref()?.node_affinity.as_ref()?;
    node_affinity.required_during_scheduling_ignored_during_execution.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Node;
    use crate::scheduler::testing::*;

    fn check(pod: &Pod, node: Node) -> Result<(), Reason> {
        let snap = snapshot(vec![node], vec![]);
        filter(pod, &snap.nodes[0], &snap)
    }

    fn fits(pod: &Pod, node: Node) -> bool {
        check(pod, node).is_ok()
    }

    #[test]
    fn pod_needing_a_gpu_only_fits_nodes_labelled_with_one() {
        let needs_gpu = pod("train").with_node_selector("gpu", "true");
        let cases = [
            (node("gpu").with_label("gpu", "true"), true),
            (node("gpu-and-more").with_label("gpu", "true").with_label("zone", "a"), true),
            (node("gpu-false").with_label("gpu", "false"), false),
            (node("plain"), false),
        ];
        for (node, expected) in cases {
            let name = node.metadata.name.clone();
            assert_eq!(fits(&needs_gpu, node), expected, "{name}");
        }
        assert_eq!(check(&needs_gpu, node("plain")), Err(Reason::NodeAffinityMismatch));
    }

    #[test]
    fn required_node_affinity_ors_terms_and_ands_expressions() {
        let ssd_in_zone_a = vec![requirement("disk", "In", &["ssd"]), requirement("zone", "In", &["a"])];
        let big_memory = vec![requirement("memory-gb", "Gt", &["64"])];
        let pod = pod("db").requiring_node(vec![ssd_in_zone_a, big_memory]);
        let cases = [
            (node("ssd-a").with_label("disk", "ssd").with_label("zone", "a"), true),
            (node("ssd-b").with_label("disk", "ssd").with_label("zone", "b"), false),
            (node("big").with_label("memory-gb", "128"), true),
            (node("small").with_label("memory-gb", "64"), false),
            (node("bare"), false),
        ];
        for (node, expected) in cases {
            let name = node.metadata.name.clone();
            assert_eq!(fits(&pod, node), expected, "{name}");
        }
    }

    #[test]
    fn every_node_selector_operator_is_honoured() {
        let node = || node("n").with_label("tier", "gold").with_label("cores", "16");
        let cases: Vec<(&str, &[&str], &str, bool)> = vec![
            ("tier", &["gold", "silver"], "In", true),
            ("tier", &["bronze"], "In", false),
            ("tier", &["bronze"], "NotIn", true),
            ("tier", &["gold"], "NotIn", false),
            ("tier", &[], "Exists", true),
            ("spot", &[], "Exists", false),
            ("spot", &[], "DoesNotExist", true),
            ("tier", &[], "DoesNotExist", false),
            ("cores", &["8"], "Gt", true),
            ("cores", &["16"], "Gt", false),
            ("cores", &["32"], "Lt", true),
            ("cores", &["16"], "Lt", false),
        ];
        for (key, values, op, expected) in cases {
            let pod = pod("p").requiring_node(vec![vec![requirement(key, op, values)]]);
            assert_eq!(fits(&pod, node()), expected, "{key} {op} {values:?}");
        }
    }

    #[test]
    fn node_selector_and_required_affinity_must_both_hold() {
        let pod = pod("p").with_node_selector("gpu", "true").requiring_node(vec![vec![requirement(
            "zone",
            "In",
            &["a"],
        )]]);
        assert!(fits(&pod, node("both").with_label("gpu", "true").with_label("zone", "a")));
        assert!(!fits(&pod, node("gpu-only").with_label("gpu", "true")));
        assert!(!fits(&pod, node("zone-only").with_label("zone", "a")));
    }

    #[test]
    fn a_pod_without_node_constraints_fits_any_node() {
        assert!(fits(&pod("p"), node("bare")));
        assert!(fits(&pod("p").preferring_node(5, &[requirement("x", "Exists", &[])]), node("bare")));
    }
}
