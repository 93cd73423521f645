//! InterPodAffinity (score): the pod's preferred pod affinity draws it towards nodes running
//! the pods it names, its preferred anti-affinity pushes it away. Required terms are a filter
//! (`filters::inter_pod_affinity`). Unlike Kubernetes, the preferences of the pods already on
//! the node towards the incoming pod are not counted.

use crate::api::affinity::WeightedPodAffinityTerm;
use crate::api::Pod;
use crate::scheduler::affinity_term::{preferred_affinity, preferred_anti_affinity};
use crate::scheduler::{NodeInfo, Snapshot};

/// For every pod on the node: plus the weight of each preferred affinity term that selects it,
/// minus the weight of each preferred anti-affinity term that selects it.
pub fn score(pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> i64 {
    weight_of_matches(pod, preferred_affinity(pod), node)
        - weight_of_matches(pod, preferred_anti_affinity(pod), node)
}

fn weight_of_matches(pod: &Pod, terms: &[WeightedPodAffinityTerm], node: &NodeInfo) -> i64 {
    let matches = |t: &WeightedPodAffinityTerm| node.count_selected(&t.pod_affinity_term, pod);
    terms.iter().map(|t| i64::from(t.weight) * matches(t) as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::*;

    fn app(name: &str) -> Pod {
        pod(name).with_label("app", name).bound_to("n")
    }

    #[test]
    fn preferred_affinity_adds_and_anti_affinity_subtracts_per_matching_pod() {
        let incoming =
            pod("web").preferring_pod(weighted(10, term("cache"))).avoiding_pod(weighted(4, term("batch")));
        let cases: Vec<(&str, Vec<Pod>, i64)> = vec![
            ("empty node", vec![], 0),
            ("unrelated pods", vec![app("db")], 0),
            ("a cache", vec![app("cache")], 10),
            ("two caches", vec![app("cache"), app("cache")], 20),
            ("a batch job", vec![app("batch")], -4),
            ("a cache and a batch job", vec![app("cache"), app("batch")], 6),
            ("a cache in another namespace", vec![app("cache").in_namespace("other")], 0),
        ];
        for (case, existing, expected) in cases {
            let snap = snapshot(vec![node("n")], existing);
            assert_eq!(score(&incoming, &snap.nodes[0], &snap), expected, "{case}");
        }
    }

    #[test]
    fn pods_without_preferences_score_every_node_zero() {
        let snap = snapshot(vec![node("n")], vec![app("cache")]);
        assert_eq!(score(&pod("web"), &snap.nodes[0], &snap), 0);
    }
}
