//! Specifications of `schedule`: whole passes over several pods and nodes, where each bind
//! must be seen by the pods scheduled after it.

use std::collections::BTreeMap;

use super::testing::*;
use super::*;
use crate::api::pod::PodPhase;
use crate::api::{Node, Pod};

/// Where each decided pod went: its node, or `-` when it is unschedulable.
fn placements(decisions: &[Decision]) -> Vec<(&str, &str)> {
    decisions
        .iter()
        .map(|d| match d {
            Decision::Bind { name, node, .. } => (name.as_str(), node.as_str()),
            Decision::Unschedulable { name, .. } => (name.as_str(), "-"),
        })
        .collect()
}

fn pods_per_node(decisions: &[Decision]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for (_, node) in placements(decisions) {
        *counts.entry(node).or_insert(0) += 1;
    }
    counts
}

fn equal_nodes(names: &[&str]) -> Vec<Node> {
    names
        .iter()
        .map(|n| node(n).with_allocatable(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]))
        .collect()
}

fn replicas(app: &str, count: usize) -> Vec<Pod> {
    let replica = |i| pod(&format!("{app}-{i}")).with_label("app", app).owned_by(&format!("{app}-uid"));
    (0..count).map(replica).collect()
}

#[test]
fn six_replicas_spread_two_to_each_of_three_equal_nodes() {
    let mut snap = snapshot(equal_nodes(&["a", "b", "c"]), vec![]);
    let pods: Vec<Pod> = replicas("web", 6).into_iter().map(|p| p.requesting(&[("cpu", "100m")])).collect();
    let decisions = schedule(&pods, &mut snap);
    assert_eq!(pods_per_node(&decisions), BTreeMap::from([("a", 2), ("b", 2), ("c", 2)]));
}

#[test]
fn replicas_without_requests_spread_too() {
    let mut snap = snapshot(equal_nodes(&["a", "b", "c"]), vec![]);
    let decisions = schedule(&replicas("web", 3), &mut snap);
    assert_eq!(pods_per_node(&decisions), BTreeMap::from([("a", 1), ("b", 1), ("c", 1)]));
}

#[test]
fn apps_that_must_run_together_share_a_node() {
    // `a` is busy, so the cache goes to `b`, and a free-standing web server would go to the
    // idle `c`; the one that must run with the cache follows it to `b`.
    let busy = pod("batch").requesting(&[("cpu", "3")]).bound_to("a");
    let mut snap = snapshot(equal_nodes(&["a", "b", "c"]), vec![busy]);
    let cache = pod("cache").with_label("app", "cache").requesting(&[("cpu", "1")]);
    let free_web = pod("free-web").requesting(&[("cpu", "1")]);
    let bound_web = pod("bound-web").requesting(&[("cpu", "1")]).with_pod_affinity(term("cache"));

    let decisions = schedule(&[cache, free_web, bound_web], &mut snap);
    assert_eq!(placements(&decisions), [("cache", "b"), ("free-web", "c"), ("bound-web", "b")]);
}

#[test]
fn a_group_that_must_run_together_starts_anywhere_and_then_stays_together() {
    let mut snap =
        snapshot(equal_nodes(&["a", "b", "c"]), vec![pod("busy").requesting(&[("cpu", "2")]).bound_to("a")]);
    let member = |name: &str| pod(name).with_label("app", "web").with_pod_affinity(term("web"));
    let decisions = schedule(&[member("w1"), member("w2"), member("w3")], &mut snap);
    assert_eq!(placements(&decisions), [("w1", "b"), ("w2", "b"), ("w3", "b")]);
}

#[test]
fn replicas_prefer_a_node_without_siblings_over_one_with_more_room() {
    // `roomy` has more free memory, so it wins unless it already runs a sibling.
    let nodes = || {
        vec![
            node("roomy").with_allocatable(&[("cpu", "8"), ("memory", "8Gi")]),
            node("small").with_allocatable(&[("cpu", "4"), ("memory", "2Gi")]),
        ]
    };
    let cases = [("stranger", "roomy"), ("web-uid", "small")];
    for (owner_of_existing, expected) in cases {
        let existing = pod("existing").owned_by(owner_of_existing).bound_to("roomy");
        let mut snap = snapshot(nodes(), vec![existing]);
        let decisions = schedule(&replicas("web", 1), &mut snap);
        assert_eq!(
            placements(&decisions),
            [("web-0", expected)],
            "existing pod owned by {owner_of_existing}"
        );
    }
}

#[test]
fn anti_affinity_keeps_replicas_apart_and_leaves_the_fourth_of_four_on_three_nodes_unschedulable() {
    let mut snap = snapshot(equal_nodes(&["a", "b", "c"]), vec![]);
    let pods: Vec<Pod> =
        replicas("web", 4).into_iter().map(|p| p.with_pod_anti_affinity(term("web"))).collect();
    let decisions = schedule(&pods, &mut snap);
    assert_eq!(placements(&decisions), [("web-0", "a"), ("web-1", "b"), ("web-2", "c"), ("web-3", "-")]);
    assert_eq!(
        decisions[3],
        Decision::Unschedulable {
            namespace: "default".into(),
            name: "web-3".into(),
            message: "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.".into(),
        }
    );
}

#[test]
fn preferred_anti_affinity_spreads_but_never_blocks() {
    let mut snap = snapshot(equal_nodes(&["a", "b"]), vec![]);
    let avoid_web = |name: &str| pod(name).with_label("app", "web").avoiding_pod(weighted(100, term("web")));
    let decisions = schedule(&[avoid_web("w1"), avoid_web("w2"), avoid_web("w3")], &mut snap);
    assert_eq!(placements(&decisions), [("w1", "a"), ("w2", "b"), ("w3", "a")]);
}

#[test]
fn unschedulable_pods_report_how_many_nodes_failed_for_each_reason() {
    let ssd = |name: &str, memory: &str| {
        node(name).with_label("disk", "ssd").with_allocatable(&[("memory", memory)])
    };
    let needs_ssd_and_4gi = pod("db").with_node_selector("disk", "ssd").requesting(&[("memory", "4Gi")]);
    let cases: Vec<(Vec<Node>, &str)> = vec![
        (
            vec![ssd("a", "2Gi"), ssd("b", "3Gi"), node("c").with_allocatable(&[("memory", "64Gi")])],
            "0/3 nodes are available: 2 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector.",
        ),
        (
            vec![ssd("a", "64Gi").cordoned(), ssd("b", "64Gi").not_ready(), node("c"), node("d"), ssd("e", "1Gi")],
            "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 1 Insufficient \
             memory, 1 node(s) were not ready, 1 node(s) were unschedulable.",
        ),
        (vec![], "0/0 nodes are available: no nodes registered."),
    ];
    for (nodes, message) in cases {
        let mut snap = snapshot(nodes, vec![]);
        let decisions = schedule(std::slice::from_ref(&needs_ssd_and_4gi), &mut snap);
        let expected = Decision::Unschedulable {
            namespace: "default".into(),
            name: "db".into(),
            message: message.into(),
        };
        assert_eq!(decisions, [expected]);
    }
}

#[test]
fn resources_taken_by_pods_bound_earlier_in_the_same_call_are_not_offered_again() {
    let mut snap = snapshot(vec![node("only").with_allocatable(&[("cpu", "2"), ("memory", "3Gi")])], vec![]);
    let one_cpu = |name: &str| pod(name).requesting(&[("cpu", "1"), ("memory", "1Gi")]);
    let decisions = schedule(&[one_cpu("p1"), one_cpu("p2"), one_cpu("p3")], &mut snap);
    assert_eq!(placements(&decisions), [("p1", "only"), ("p2", "only"), ("p3", "-")]);
    let Decision::Unschedulable { message, .. } = &decisions[2] else {
        panic!("p3 should not fit: {decisions:?}")
    };
    assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
    let bound: Vec<_> =
        snap.nodes[0].pods.iter().map(|p| (p.metadata.name.as_str(), p.spec.node_name.as_deref())).collect();
    assert_eq!(bound, [("p1", Some("only")), ("p2", Some("only"))]);
}

#[test]
fn pods_already_bound_or_being_deleted_get_no_decision() {
    let mut snap = snapshot(equal_nodes(&["a"]), vec![]);
    let pending = [pod("bound").bound_to("a"), pod("deleting").deleting(), pod("new").in_namespace("shop")];
    let decisions = schedule(&pending, &mut snap);
    assert_eq!(
        decisions,
        [Decision::Bind { namespace: "shop".into(), name: "new".into(), node: "a".into() }]
    );
}

#[test]
fn snapshots_sort_nodes_and_count_only_live_pods_bound_to_known_nodes() {
    let pods = vec![
        pod("running").bound_to("b").in_phase(PodPhase::Running),
        pod("done").bound_to("b").in_phase(PodPhase::Succeeded),
        pod("crashed").bound_to("b").in_phase(PodPhase::Failed),
        pod("starting").bound_to("a"),
        pod("lost").bound_to("gone"),
        pod("pending"),
    ];
    let snap = snapshot(vec![node("b"), node("a")], pods);
    let names = |info: &NodeInfo| info.pods.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>();
    let layout: Vec<_> = snap.nodes.iter().map(|n| (n.name().to_string(), names(n))).collect();
    assert_eq!(
        layout,
        [("a".to_string(), vec!["starting".to_string()]), ("b".into(), vec!["running".into()])]
    );
}

#[test]
fn a_finished_pod_frees_its_place() {
    let done = pod("done").bound_to("a").in_phase(PodPhase::Succeeded).requesting(&[("cpu", "1")]);
    let mut snap = snapshot(vec![node("a").with_allocatable(&[("cpu", "1"), ("pods", "1")])], vec![done]);
    let decisions = schedule(&[pod("next").requesting(&[("cpu", "1")])], &mut snap);
    assert_eq!(placements(&decisions), [("next", "a")]);
}

#[test]
fn the_same_snapshot_and_pods_always_give_the_same_decisions() {
    let nodes = equal_nodes(&["a", "b", "c", "d"]);
    let mut pods = replicas("web", 5);
    pods.extend(replicas("api", 3).into_iter().map(|p| p.with_pod_anti_affinity(term("api"))));
    pods.push(pod("cache").with_label("app", "cache").requesting(&[("memory", "6Gi")]));
    let first = schedule(&pods, &mut snapshot(nodes.clone(), vec![]));
    let second = schedule(&pods, &mut snapshot(nodes, vec![]));
    assert_eq!(first, second);
    assert_eq!(first.len(), 9);
}
