//! NodeResourcesFit: the pod's requests, added to those of the pods already on the node, must
//! fit in what the node offers (cpu, memory, and the number of pods). Limits play no part:
//! scheduling reserves requests only.

use crate::api::Pod;
use crate::scheduler::{Allocatable, NodeInfo, Reason, Requests, Snapshot};

/// Checks pods, then cpu, then memory, and reports the first shortfall. A resource the node
/// does not state is unlimited, and a pod that requests none of a resource fits even on a node
/// already overcommitted in it, as in Kubernetes.
pub fn filter(pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Result<(), Reason> {
    let wanted = Requests::of_pod(pod);
    let used = Requests::on_node(node);
    let offered = Allocatable::of(&node.node);
    let checks = [
        (wanted.pods, used.pods, offered.pods, Reason::TooManyPods),
        (wanted.milli_cpu, used.milli_cpu, offered.milli_cpu, Reason::InsufficientCpu),
        (wanted.memory, used.memory, offered.memory, Reason::InsufficientMemory),
    ];
    for (wanted, used, offered, reason) in checks {
        if !fits(wanted, used, offered) {
            return Err(reason);
        }
    }
    Ok(())
}

fn fits(wanted: u64, used: u64, offered: Option<u64>) -> bool {
    wanted == 0 || offered.is_none_or(|offered| used.saturating_add(wanted) <= offered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Node;
    use crate::scheduler::testing::*;

    #[test]
    fn requests_plus_what_the_node_already_runs_must_fit_its_allocatable() {
        let two_cpu_4gi = || node("n").with_allocatable(&[("cpu", "2"), ("memory", "4Gi"), ("pods", "3")]);
        let on_node = |name: &str, res: &[(&str, &str)]| pod(name).requesting(res).bound_to("n");
        // (case, node, pods already on it, incoming pod's requests, expected)
        type Case<'a> = (&'a str, Node, Vec<Pod>, &'a [(&'a str, &'a str)], Result<(), Reason>);
        let cases: Vec<Case> = vec![
            ("empty node", two_cpu_4gi(), vec![], &[("cpu", "2"), ("memory", "4Gi")], Ok(())),
            (
                "cpu exactly used up",
                two_cpu_4gi(),
                vec![on_node("a", &[("cpu", "1500m")])],
                &[("cpu", "500m")],
                Ok(()),
            ),
            (
                "one millicore too many",
                two_cpu_4gi(),
                vec![on_node("a", &[("cpu", "1500m")])],
                &[("cpu", "501m")],
                Err(Reason::InsufficientCpu),
            ),
            (
                "memory short",
                two_cpu_4gi(),
                vec![on_node("a", &[("memory", "3Gi")])],
                &[("memory", "1025Mi")],
                Err(Reason::InsufficientMemory),
            ),
            (
                "cpu is reported before memory",
                two_cpu_4gi(),
                vec![],
                &[("cpu", "3"), ("memory", "5Gi")],
                Err(Reason::InsufficientCpu),
            ),
            (
                "pod count full",
                two_cpu_4gi(),
                vec![on_node("a", &[]), on_node("b", &[]), on_node("c", &[])],
                &[],
                Err(Reason::TooManyPods),
            ),
            (
                "no request fits an overcommitted node",
                two_cpu_4gi(),
                vec![on_node("a", &[("cpu", "3")])],
                &[("memory", "1Gi")],
                Ok(()),
            ),
            (
                "unstated resources are unlimited",
                node("n"),
                vec![on_node("a", &[("cpu", "64")])],
                &[("cpu", "64")],
                Ok(()),
            ),
            (
                "capacity stands in for missing allocatable",
                node("n").with_capacity(&[("memory", "1Gi")]),
                vec![],
                &[("memory", "2Gi")],
                Err(Reason::InsufficientMemory),
            ),
        ];
        for (case, node, existing, requests, expected) in cases {
            let snap = snapshot(vec![node], existing);
            let incoming = pod("incoming").requesting(requests);
            assert_eq!(filter(&incoming, &snap.nodes[0], &snap), expected, "{case}");
        }
    }
}
