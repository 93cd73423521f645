//! NodeResourcesLeastAllocated: nodes left with more free cpu and memory after taking the pod
//! score higher, which balances load across nodes. Whether the pod fits at all is the
//! filter's job (`filters::node_resources_fit`).

use crate::api::Pod;
use crate::scheduler::scores::MAX_NODE_SCORE;
use crate::scheduler::{Allocatable, NodeInfo, Requests, Snapshot};

/// The free share of cpu and of memory once the pod is added, averaged, in
/// `0..=MAX_NODE_SCORE`. Requests use the scoring defaults, so pods that request nothing
/// still count. A resource the node does not state is left out of the average; a node that
/// states neither scores zero.
pub fn score(pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> i64 {
    let requested = Requests::on_node_for_scoring(node) + Requests::of_pod_for_scoring(pod);
    let offered = Allocatable::of(&node.node);
    let free_shares: Vec<i64> =
        [(requested.milli_cpu, offered.milli_cpu), (requested.memory, offered.memory)]
            .into_iter()
            .filter_map(|(requested, offered)| free_share(requested, offered?))
            .collect();
    match free_shares.len() {
        0 => 0,
        n => free_shares.iter().sum::<i64>() / n as i64,
    }
}

/// `(offered − requested) / offered`, scaled to `0..=MAX_NODE_SCORE`; `None` for a resource the
/// node offers none of.
fn free_share(requested: u64, offered: u64) -> Option<i64> {
    if offered == 0 {
        return None;
    }
    let free = u128::from(offered.saturating_sub(requested));
    let share = free * MAX_NODE_SCORE as u128 / u128::from(offered);
    // `share` is at most MAX_NODE_SCORE, so it always fits.
    Some(share as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::*;

    #[test]
    fn nodes_left_with_more_free_resources_score_higher() {
        let four_cpu_8gi = || node("n").with_allocatable(&[("cpu", "4"), ("memory", "8Gi")]);
        let on_node = |res: &[(&str, &str)]| pod("existing").requesting(res).bound_to("n");
        let incoming = pod("web").requesting(&[("cpu", "1"), ("memory", "2Gi")]);
        // (case, node, pods already on it, expected score)
        let cases: Vec<(&str, crate::api::Node, Vec<Pod>, i64)> = vec![
            ("empty node: 3/4 of each free", four_cpu_8gi(), vec![], 75),
            ("half the cpu used", four_cpu_8gi(), vec![on_node(&[("cpu", "2"), ("memory", "0")])], 50),
            ("full after the pod", four_cpu_8gi(), vec![on_node(&[("cpu", "3"), ("memory", "6Gi")])], 0),
            (
                "overcommitted counts as full",
                four_cpu_8gi(),
                vec![on_node(&[("cpu", "8"), ("memory", "16Gi")])],
                0,
            ),
            ("only cpu stated", node("n").with_allocatable(&[("cpu", "2")]), vec![], 50),
            ("nothing stated", node("n"), vec![], 0),
        ];
        for (case, node, existing, expected) in cases {
            let snap = snapshot(vec![node], existing);
            assert_eq!(score(&incoming, &snap.nodes[0], &snap), expected, "{case}");
        }
    }

    #[test]
    fn pods_without_requests_still_use_up_a_default_share() {
        let snap = snapshot(
            vec![node("n").with_allocatable(&[("cpu", "1"), ("memory", "1000Mi")])],
            vec![pod("a").bound_to("n")],
        );
        // Two pods at 100m and 200Mi each: 80% of cpu and 60% of memory free.
        assert_eq!(score(&pod("b"), &snap.nodes[0], &snap), 70);
    }
}
