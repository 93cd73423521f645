//! Reading a pod's (anti-)affinity terms and deciding which pods a term selects. Shared by the
//! inter-pod affinity filter and score. Every term's topology is the node
//! (`kubernetes.io/hostname`, enforced by validation), so "in the same topology" is "on the
//! same node" and callers only ever look at one node's pods.

use crate::api::affinity::{PodAffinity, PodAffinityTerm, WeightedPodAffinityTerm};
use crate::api::Pod;

/// Whether `term`, written in the spec of `owner`, selects `candidate`: the candidate lives in
/// one of the term's namespaces (the owner's namespace when the term names none) and its
/// labels match the term's selector. A term without a selector selects nothing, as in
/// Kubernetes; an empty selector selects every pod.
pub fn selects(term: &PodAffinityTerm, owner: &Pod, candidate: &Pod) -> bool {
    let namespace = candidate.metadata.namespace_or_default();
    let in_namespace = if term.namespaces.is_empty() {
        namespace == owner.metadata.namespace_or_default()
    } else {
        term.namespaces.iter().any(|n| n == namespace)
    };
    in_namespace && term.label_selector.as_ref().is_some_and(|s| s.matches(&candidate.metadata.labels))
}

pub fn required_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    affinity(pod).map_or(&[], |a| &a.required_during_scheduling_ignored_during_execution)
}

pub fn required_anti_affinity(pod: &Pod) -> &[PodAffinityTerm] {
    anti_affinity(pod).map_or(&[], |a| &a.required_during_scheduling_ignored_during_execution)
}

pub fn preferred_affinity(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    affinity(pod).map_or(&[], |a| &a.preferred_during_scheduling_ignored_during_execution)
}

pub fn preferred_anti_affinity(pod: &Pod) -> &[WeightedPodAffinityTerm] {
    anti_affinity(pod).map_or(&[], |a| &a.preferred_during_scheduling_ignored_during_execution)
}

fn affinity(pod: &Pod) -> Option<&PodAffinity> {
    pod.spec.affinity.as_ref().and_then(|a| a.pod_affinity.as_ref())
}

fn anti_affinity(pod: &Pod) -> Option<&PodAffinity> {
    pod.spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::*;

    #[test]
    fn terms_select_by_labels_within_the_owners_namespace_unless_they_name_namespaces() {
        let owner = pod("owner").in_namespace("shop");
        let web_in = |ns: &str| pod("web").with_label("app", "web").in_namespace(ns);
        let no_selector = PodAffinityTerm { label_selector: None, ..term("web") };
        let cases: Vec<(&str, PodAffinityTerm, Pod, bool)> = vec![
            ("same namespace, matching labels", term("web"), web_in("shop"), true),
            ("other namespace", term("web"), web_in("default"), false),
            ("other labels", term("db"), web_in("shop"), false),
            ("named namespace", term("web").in_namespaces(&["default"]), web_in("default"), true),
            ("owner's namespace not named", term("web").in_namespaces(&["default"]), web_in("shop"), false),
            ("no selector selects nothing", no_selector, web_in("shop"), false),
            ("empty selector selects all", term_selecting_all(), web_in("shop"), true),
        ];
        for (case, term, candidate, expected) in cases {
            assert_eq!(selects(&term, &owner, &candidate), expected, "{case}");
        }
    }
}
