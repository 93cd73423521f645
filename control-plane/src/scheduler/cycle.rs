//! One scheduling cycle for one pod: filter every node, score the nodes that pass, pick the
//! best. Binding the result into the snapshot is the caller's job ([`super::schedule`]).

use super::fit_error::FitError;
use super::{filters, scores, NodeInfo, Snapshot};
use crate::api::Pod;

/// The node `pod` should run on, or why no node fits.
///
/// The highest weighted score wins; among equal scores the node whose name sorts first, so
/// the answer never depends on the order of the snapshot.
pub fn find_node<'a>(pod: &Pod, snapshot: &'a Snapshot) -> Result<&'a str, FitError> {
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut rejections = Vec::new();
    for node in &snapshot.nodes {
        match filters::run(pod, node, snapshot) {
            Ok(()) => feasible.push(node),
            Err(reason) => rejections.push(reason),
        }
    }
    let totals = scores::total(pod, &feasible, snapshot);
    feasible
        .iter()
        .zip(totals)
        .max_by(|(a, a_score), (b, b_score)| a_score.cmp(b_score).then_with(|| b.name().cmp(a.name())))
        .map(|(node, _)| node.name())
        .ok_or_else(|| FitError::new(snapshot.nodes.len(), rejections))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testing::*;
    use crate::scheduler::Reason;

    #[test]
    fn equal_nodes_tie_break_by_name_whatever_the_snapshot_order() {
        let mut snap = snapshot(vec![node("c"), node("a"), node("b")], vec![]);
        snap.nodes.reverse();
        assert_eq!(find_node(&pod("web"), &snap), Ok("a"));
    }

    #[test]
    fn highest_total_score_beats_a_name_that_sorts_first() {
        let snap = snapshot(vec![node("a"), node("b").with_label("disk", "ssd")], vec![]);
        let wants_ssd = pod("db").preferring_node(10, &[requirement("disk", "In", &["ssd"])]);
        assert_eq!(find_node(&wants_ssd, &snap), Ok("b"));
    }

    #[test]
    fn no_feasible_node_reports_each_rejection() {
        let snap = snapshot(vec![node("a").cordoned(), node("b").not_ready()], vec![]);
        let err = find_node(&pod("web"), &snap).expect_err("nothing fits");
        assert_eq!(err, FitError::new(2, vec![Reason::NodeUnschedulable, Reason::NodeNotReady]));
    }
}
