//! InterPodAffinity: the pod's required pod affinity and anti-affinity, and the required
//! anti-affinity of the pods already on the node towards it. The topology is always the node,
//! so "near" means "on the same node". Preferred terms are a score
//! (`scores::inter_pod_affinity_preferred`).

use crate::api::Pod;
use crate::scheduler::affinity_term::{required_affinity, required_anti_affinity, selects};
use crate::scheduler::{NodeInfo, Reason, Snapshot};

pub fn filter(pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> Result<(), Reason> {
    if !satisfies_affinity(pod, node, snapshot) {
        return Err(Reason::PodAffinityMismatch);
    }
    if violates_own_anti_affinity(pod, node) || violates_anti_affinity_of_existing_pods(pod, node) {
        return Err(Reason::PodAntiAffinityMismatch);
    }
    Ok(())
}

/// Some pod on the node must be selected by every required affinity term (Kubernetes counts a
/// pod towards the terms only when it matches all of them).
///
/// Kubernetes' special case for the first of a group that wants to run together: when no pod
/// anywhere in the cluster matches the terms and the incoming pod matches them itself, it may
/// go to any node; otherwise such a group could never start.
fn satisfies_affinity(pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> bool {
    let terms = required_affinity(pod);
    if terms.is_empty() {
        return true;
    }
    let matches_all = |other: &Pod| terms.iter().all(|term| selects(term, pod, other));
    node.pods.iter().any(|p| matches_all(p)) || (matches_all(pod) && !snapshot.pods().any(matches_all))
}

/// No pod on the node may be selected by any of the pod's required anti-affinity terms.
fn violates_own_anti_affinity(pod: &Pod, node: &NodeInfo) -> bool {
    required_anti_affinity(pod).iter().any(|term| node.pods.iter().any(|other| selects(term, pod, other)))
}

/// The symmetric check: no pod on the node may have a required anti-affinity term that selects
/// the incoming pod, or placing it would break that pod's rule.
fn violates_anti_affinity_of_existing_pods(pod: &Pod, node: &NodeInfo) -> bool {
    node.any_required_anti_affinity()
        && node
            .pods
            .iter()
            .any(|other| required_anti_affinity(other).iter().any(|term| selects(term, other, pod)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::*;

    /// Two nodes: `a` runs `existing`, `b` runs `elsewhere`.
    fn check(incoming: &Pod, existing: Vec<Pod>, elsewhere: Vec<Pod>) -> Result<(), Reason> {
        let on = |pods: Vec<Pod>, node: &str| pods.into_iter().map(|p| p.bound_to(node)).collect::<Vec<_>>();
        let pods = [on(existing, "a"), on(elsewhere, "b")].concat();
        let snap = snapshot(vec![node("a"), node("b")], pods);
        filter(incoming, &snap.nodes[0], &snap)
    }

    fn app(name: &str) -> Pod {
        pod(name).with_label("app", name)
    }

    #[test]
    fn required_pod_affinity_needs_a_matching_pod_on_the_same_node() {
        let with_cache = app("web").with_pod_affinity(term("cache"));
        // (case, pods on the node, pods on another node, expected)
        type Case = (&'static str, Vec<Pod>, Vec<Pod>, Result<(), Reason>);
        let cases: Vec<Case> = vec![
            ("cache here", vec![app("cache")], vec![], Ok(())),
            ("cache only on another node", vec![], vec![app("cache")], Err(Reason::PodAffinityMismatch)),
            (
                "other apps here, cache elsewhere",
                vec![app("db")],
                vec![app("cache")],
                Err(Reason::PodAffinityMismatch),
            ),
            ("no cache anywhere", vec![app("db")], vec![], Err(Reason::PodAffinityMismatch)),
            (
                "cache here but in another namespace",
                vec![app("cache").in_namespace("other")],
                vec![],
                Err(Reason::PodAffinityMismatch),
            ),
        ];
        for (case, existing, elsewhere, expected) in cases {
            assert_eq!(check(&with_cache, existing, elsewhere), expected, "{case}");
        }
    }

    #[test]
    fn one_pod_on_the_node_must_match_all_required_affinity_terms() {
        let incoming = pod("p").with_pod_affinity(term("cache")).with_pod_affinity(term_with("tier", "hot"));
        let hot_cache = app("cache").with_label("tier", "hot");
        assert_eq!(check(&incoming, vec![hot_cache], vec![]), Ok(()));
        let split = vec![app("cache"), pod("x").with_label("tier", "hot")];
        assert_eq!(check(&incoming, split, vec![]), Err(Reason::PodAffinityMismatch));
    }

    #[test]
    fn first_pod_of_a_self_affine_group_may_go_anywhere() {
        let self_affine = app("web").with_pod_affinity(term("web"));
        assert_eq!(check(&self_affine, vec![], vec![]), Ok(()), "no web pod anywhere yet");
        assert_eq!(
            check(&self_affine, vec![], vec![app("web")]),
            Err(Reason::PodAffinityMismatch),
            "a web pod runs elsewhere, so join it there"
        );
        let not_self_affine = app("web").with_pod_affinity(term("cache"));
        assert_eq!(check(&not_self_affine, vec![], vec![]), Err(Reason::PodAffinityMismatch));
    }

    #[test]
    fn required_anti_affinity_keeps_matching_pods_off_the_node() {
        let lonely = app("web").with_pod_anti_affinity(term("web"));
        let cases: Vec<(&str, Vec<Pod>, Result<(), Reason>)> = vec![
            ("empty node", vec![], Ok(())),
            ("other apps only", vec![app("db")], Ok(())),
            ("a replica here", vec![app("db"), app("web")], Err(Reason::PodAntiAffinityMismatch)),
            ("a replica in another namespace", vec![app("web").in_namespace("other")], Ok(())),
        ];
        for (case, existing, expected) in cases {
            assert_eq!(check(&lonely, existing, vec![]), expected, "{case}");
        }
    }

    #[test]
    fn existing_pods_anti_affinity_keeps_the_incoming_pod_away() {
        let hates_batch = app("db").with_pod_anti_affinity(term("batch"));
        assert_eq!(
            check(&app("batch"), vec![hates_batch.clone()], vec![]),
            Err(Reason::PodAntiAffinityMismatch)
        );
        assert_eq!(check(&app("web"), vec![hates_batch.clone()], vec![]), Ok(()));
        assert_eq!(check(&app("batch"), vec![], vec![hates_batch]), Ok(()), "the db is on another node");
    }

    #[test]
    fn affinity_is_checked_before_anti_affinity() {
        let picky = app("web").with_pod_affinity(term("cache")).with_pod_anti_affinity(term("web"));
        assert_eq!(check(&picky, vec![app("web")], vec![app("cache")]), Err(Reason::PodAffinityMismatch));
        assert_eq!(
            check(&picky, vec![app("web"), app("cache")], vec![]),
            Err(Reason::PodAntiAffinityMismatch)
        );
    }
}
