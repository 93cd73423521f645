//! Why a pod fits no node: the count of nodes per rejection reason, written the way
//! Kubernetes writes it (`0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't
//! match Pod's node affinity/selector.`).

use std::collections::BTreeMap;
use std::fmt;

use super::filters::Reason;

/// No node passed the filters. Each node counts once, under the first filter that rejected it,
/// so the counts add up to the number of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub nodes_per_reason: BTreeMap<Reason, usize>,
}

impl FitError {
    pub fn new(num_all_nodes: usize, rejections: impl IntoIterator<Item = Reason>) -> FitError {
        let mut nodes_per_reason = BTreeMap::new();
        for reason in rejections {
            *nodes_per_reason.entry(reason).or_insert(0) += 1;
        }
        FitError { num_all_nodes, nodes_per_reason }
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available: ", self.num_all_nodes)?;
        if self.num_all_nodes == 0 {
            return f.write_str("no nodes registered.");
        }
        let mut counts: Vec<(usize, &str)> =
            self.nodes_per_reason.iter().map(|(reason, &n)| (n, reason.message())).collect();
        // Most common reason first; the text breaks ties so the message is stable.
        counts.sort_by(|(n1, m1), (n2, m2)| n2.cmp(n1).then_with(|| m1.cmp(m2)));
        for (i, (n, message)) in counts.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{n} {message}")?;
        }
        f.write_str(".")
    }
}

impl std::error::Error for FitError {}

#[cfg(test)]
mod tests {
    use super::*;
    use Reason::*;

    #[test]
    fn messages_count_nodes_per_reason_most_common_first() {
        let cases: Vec<(usize, Vec<Reason>, &str)> = vec![
            (0, vec![], "0/0 nodes are available: no nodes registered."),
            (1, vec![NodeNotReady], "0/1 nodes are available: 1 node(s) were not ready."),
            (
                3,
                vec![InsufficientMemory, NodeAffinityMismatch, InsufficientMemory],
                "0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't match Pod's node \
                 affinity/selector.",
            ),
            (
                4,
                vec![PodAntiAffinityMismatch, TooManyPods, InsufficientCpu, NodeUnschedulable],
                "0/4 nodes are available: 1 Insufficient cpu, 1 Too many pods, 1 node(s) didn't match pod \
                 anti-affinity rules, 1 node(s) were unschedulable.",
            ),
            (
                5,
                vec![
                    PodAffinityMismatch,
                    InsufficientCpu,
                    PodAffinityMismatch,
                    InsufficientCpu,
                    NodeNotReady,
                ],
                "0/5 nodes are available: 2 Insufficient cpu, 2 node(s) didn't match pod affinity rules, \
                 1 node(s) were not ready.",
            ),
        ];
        for (nodes, reasons, expected) in cases {
            assert_eq!(FitError::new(nodes, reasons).to_string(), expected);
        }
    }
}
