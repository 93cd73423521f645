//! Silent nodes and drains.

use super::*;
use crate::controllers::testing::*;

fn on_n2(name: &str) -> Pod {
    pod(name).on("n2").ready_since(T0)
}

fn names(pods: &[Pod]) -> Vec<&str> {
    pods.iter().map(|p| p.metadata.name.as_str()).collect()
}

fn ready_condition(node: &Node) -> &Condition {
    let conditions = node.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    conditions.iter().find(|c| c.type_ == "Ready").expect("a Ready condition")
}

#[test]
fn the_config_defaults_to_ten_seconds_grace_and_twenty_eviction() {
    assert_eq!(
        NodeLifecycleConfig::default(),
        NodeLifecycleConfig { grace_seconds: 10, eviction_seconds: 20 }
    );
}

/// (seconds silent, node marked, pods marked not ready, failed, removed)
type SilenceCase = (i64, bool, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

#[test]
fn a_silent_node_is_marked_not_ready_then_its_pods_failed() {
    let pods = [
        on_n2("web-1"),
        on_n2("web-2").not_ready(T0),
        on_n2("web-going").terminating(T0),
        on_n2("web-done").phase(PodPhase::Failed),
        pod("elsewhere").on("n1").ready_since(T0),
    ];
    let cases: [SilenceCase; 5] = [
        (5, false, &[], &[], &[]),
        (10, false, &[], &[], &[]),
        (11, true, &["web-1"], &[], &[]),
        (30, true, &["web-1"], &[], &[]),
        (31, true, &[], &["web-1", "web-2"], &["web-going"]),
    ];
    for (silent, marked, not_ready, failed, removed) in cases {
        let p = plan(&node("n2", "True", T0), &pods, at(silent), &NodeLifecycleConfig::default());
        assert_eq!(p.mark_not_ready.is_some(), marked, "{silent} s");
        assert_eq!(names(&p.not_ready), not_ready, "{silent} s");
        assert_eq!(names(&p.fail), failed, "{silent} s");
        assert_eq!(p.remove, removed, "{silent} s");
    }
}

#[test]
fn pods_on_a_lost_node_are_failed_after_grace_and_eviction() {
    let cfg = NodeLifecycleConfig { grace_seconds: 40, eviction_seconds: 300 };
    let pods = [on_n2("web-1").ip("10.0.0.1")];
    assert!(plan(&node("n2", "True", T0), &pods, at(340), &cfg).fail.is_empty());
    let p = plan(&node("n2", "True", T0), &pods, at(341), &cfg);
    let [failed] = p.fail.as_slice() else { panic!("one failed pod: {p:?}") };
    let status = failed.status.as_ref().expect("status");
    assert_eq!(status.phase, Some(PodPhase::Failed));
    assert_eq!(status.reason.as_deref(), Some("NodeLost"));
    assert_eq!(status.message.as_deref(), Some("Node n2 which was running pod web-1 is unresponsive"));
    assert!(!failed.is_ready());
    let ready = pods::ready_condition(failed).expect("Ready");
    assert_eq!((ready.status.as_str(), ready.last_transition_time), ("False", Some(at(341))));
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"), "the rest of the status is kept");
}

#[test]
fn the_not_ready_condition_says_how_long_the_node_has_been_silent() {
    let mut n2 = node("n2", "True", T0);
    if let Some(s) = n2.status.as_mut() {
        s.conditions.insert(
            0,
            Condition { type_: "MemoryPressure".into(), status: "False".into(), ..Default::default() },
        );
    }
    let marked =
        plan::<Pod>(&n2, &[], at(14), &NodeLifecycleConfig::default()).mark_not_ready.expect("marked");
    let c = ready_condition(&marked);
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
        ("Unknown", Some("NodeStatusUnknown"), Some("node \"n2\" is not ready: last heartbeat 14 s ago"))
    );
    assert_eq!((c.last_heartbeat_time, c.last_transition_time), (Some(T0), Some(at(14))));
    let types: Vec<&str> =
        marked.status.iter().flat_map(|s| &s.conditions).map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["MemoryPressure", "Ready"], "other conditions are kept");
}

#[test]
fn a_node_already_marked_unknown_is_not_marked_again() {
    let p = plan(&node("n2", "Unknown", T0), &[on_n2("web-1")], at(14), &NodeLifecycleConfig::default());
    assert_eq!(p.mark_not_ready, None);
    assert_eq!(names(&p.not_ready), ["web-1"]);
    let marked_pod = p.not_ready[0].clone();
    let again = plan(&node("n2", "Unknown", T0), &[marked_pod], at(15), &NodeLifecycleConfig::default());
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn a_node_without_heartbeats_is_measured_from_its_registration() {
    let mut n2 = node("n2", "True", T0);
    n2.status = None;
    let marked =
        plan::<Pod>(&n2, &[], at(12), &NodeLifecycleConfig::default()).mark_not_ready.expect("marked");
    let message = ready_condition(&marked).message.clone();
    assert_eq!(
        message.as_deref(),
        Some("node \"n2\" is not ready: no heartbeat since it registered 12 s ago")
    );
    n2.metadata.creation_timestamp = None;
    assert!(plan(&n2, &[on_n2("web-1")], at(1000), &NodeLifecycleConfig::default()).is_empty());
}

#[test]
fn a_node_that_still_sends_heartbeats_is_left_alone() {
    let p = plan(&node("n2", "False", at(100)), &[on_n2("web-1")], at(105), &NodeLifecycleConfig::default());
    assert!(p.is_empty());
}

/// Deployment `web` (maxSurge, maxUnavailable) with `on_node` ready pods on
/// the drained node `n1` and `elsewhere` on `n2`.
fn drain_world(
    replicas: i32,
    surge: &str,
    unavailable: &str,
    on_node: usize,
    elsewhere: usize,
) -> (Deployment, Vec<Pod>) {
    let d = rolling(deployment("web", replicas), surge, unavailable);
    let mut pods: Vec<Pod> = (0..on_node).map(|i| pod(&format!("n1-{i}")).on("n1").ready_since(T0)).collect();
    pods.extend((0..elsewhere).map(|i| pod(&format!("n2-{i}")).on("n2").ready_since(T0)));
    let pods = pods.into_iter().map(|p| p.owned_by(&d)).collect();
    (d, pods)
}

#[test]
fn a_drain_keeps_each_deployment_at_its_minimum_available() {
    // (replicas, maxSurge, maxUnavailable, ready on node, ready elsewhere, evicted now)
    let cases = [
        (4, "25%", "25%", 2, 2, 1),
        (4, "1", "2", 2, 2, 2),
        // maxUnavailable 0: still one at a time, or the drain never ends.
        (4, "1", "0", 4, 0, 1),
        (4, "1", "0", 3, 1, 1),
        (3, "25%", "25%", 3, 0, 1),
        (1, "25%", "25%", 1, 0, 1),
        (1, "25%", "25%", 1, 1, 1),
        (3, "0", "0", 3, 0, 1),
    ];
    for (replicas, surge, unavailable, on_node, elsewhere, evicted) in cases {
        let (d, all) = drain_world(replicas, surge, unavailable, on_node, elsewhere);
        let node_pods: Vec<Pod> =
            all.iter().filter(|p| p.spec.node_name.as_deref() == Some("n1")).cloned().collect();
        let case = format!("{replicas} {surge} {unavailable} {on_node}+{elsewhere}");
        assert_eq!(drain_plan(&node_pods, &all, &[d]).len(), evicted, "{case}");
    }
}

#[test]
fn a_drain_evicts_unready_finished_and_unowned_pods_freely() {
    // One of two replicas ready: its budget is spent, the others go anyway.
    let (d, mut all) = drain_world(2, "1", "0", 1, 0);
    let gone = deployment("gone", 1);
    all.extend([
        pod("n1-starting").on("n1").not_ready(T0).owned_by(&d),
        pod("n1-failed").on("n1").phase(PodPhase::Failed).owned_by(&d),
        pod("n1-bare").on("n1").ready_since(T0),
        pod("n1-orphan").on("n1").ready_since(T0).owned_by(&gone),
        pod("n1-going").on("n1").ready_since(T0).terminating(T0).owned_by(&d),
    ]);
    let node_pods: Vec<Pod> =
        all.iter().filter(|p| p.spec.node_name.as_deref() == Some("n1")).cloned().collect();
    let mut evicted = drain_plan(&node_pods, &all, &[d]);
    evicted.sort();
    assert_eq!(evicted, ["n1-bare", "n1-failed", "n1-orphan", "n1-starting"]);
}

#[test]
fn a_drain_counts_no_more_available_pods_than_the_status_when_min_ready_seconds_applies() {
    let (mut d, all) = drain_world(4, "25%", "25%", 2, 2);
    d.spec.min_ready_seconds = Some(30);
    d.status = Some(crate::api::deployment::DeploymentStatus { available_replicas: 3, ..Default::default() });
    assert!(drain_plan(&all[..2], &all, std::slice::from_ref(&d)).is_empty());
    d.status = Some(crate::api::deployment::DeploymentStatus { available_replicas: 4, ..Default::default() });
    assert_eq!(drain_plan(&all[..2], &all, &[d]).len(), 1);
}
