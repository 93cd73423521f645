//! The planner's behaviour: scaling, self-healing, rolling and recreate
//! steps, rollout bounds, and the pods it asks for.

use super::*;
use crate::api::pod::PodPhase;
use crate::controllers::testing::*;

fn created(plan: &DeploymentPlan) -> usize {
    plan.create.iter().map(|c| c.count).sum()
}

#[test]
fn template_hash_is_stable_and_follows_the_template() {
    let a = deployment("web", 3);
    let h = template_hash(&a.spec.template);
    assert_eq!(h.len(), 10);
    assert!(h.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()), "{h}");
    let mut other = deployment("web", 7);
    other.metadata.name = "other".into();
    assert_eq!(h, template_hash(&other.spec.template), "only the template counts");
    assert_ne!(h, template_hash(&with_image(a, "img:2").spec.template));
}

#[test]
fn pods_are_built_from_the_template_and_controlled_by_the_deployment() {
    let mut d = deployment("web", 3);
    d.metadata.namespace = Some("shop".into());
    let hash = template_hash(&d.spec.template);
    let p = pod_for(&d, &hash, "web-x1");
    assert_eq!((p.api_version.as_str(), p.kind.as_str()), ("v1", "Pod"));
    assert_eq!(p.metadata.name, "web-x1");
    assert_eq!(p.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(p.metadata.labels, labels(&[("app", "web"), ("pod-template-hash", &hash)]));
    assert_eq!(p.spec, d.spec.template.spec);
    assert_eq!(p.status, None);
    let owner = &p.metadata.owner_references;
    assert_eq!(owner.len(), 1);
    assert_eq!(
        (
            owner[0].api_version.as_str(),
            owner[0].kind.as_str(),
            owner[0].name.as_str(),
            owner[0].uid.as_str()
        ),
        ("apps/v1", "Deployment", "web", "uid-web")
    );
    assert_eq!((owner[0].controller, owner[0].block_owner_deletion), (Some(true), Some(true)));
    assert!(pods::controlled_by(&p.metadata, "uid-web"));
}

#[test]
fn pods_of_an_old_revision_are_built_from_its_recorded_template() {
    let a = recorded(deployment("web", 3));
    let old_hash = template_hash(&a.spec.template);
    let b = recorded(with_image(a.clone(), "img:2"));
    assert_eq!(pod_for(&b, &old_hash, "web-old").spec, a.spec.template.spec);
}

#[test]
fn replicas_pods_of_the_template_are_kept() {
    // (case, replicas, ready pods, created, deleted)
    let cases = [
        ("a new deployment creates its pods", Some(3), 0, 3, 0),
        ("replicas defaults to 1", None, 0, 1, 0),
        ("a complete deployment does nothing", Some(3), 3, 0, 0),
        ("scaling up creates the missing pods", Some(5), 3, 2, 0),
        ("scaling down deletes the extra pods", Some(1), 3, 0, 2),
        ("scaling to zero deletes every pod", Some(0), 2, 0, 2),
    ];
    for (case, replicas, ready, create, delete) in cases {
        let mut d = recorded(deployment("web", 1));
        d.spec.replicas = replicas;
        let plan = plan(&d, &ready_members(&d, "web", ready), at(1));
        assert_eq!((created(&plan), plan.delete.len()), (create, delete), "{case}");
        if create > 0 {
            assert_eq!(plan.create[0].hash, template_hash(&d.spec.template), "{case}");
        }
    }
}

#[test]
fn scaling_down_deletes_the_least_valuable_pods_first() {
    let d = recorded(deployment("web", 1));
    let pods = vec![
        member(&d, "ready-old").ready_since(T0),
        member(&d, "ready-new").ready_since(T0).created(at(10)),
        member(&d, "not-ready").not_ready(T0),
        member(&d, "unscheduled").edit(|p| p.spec.node_name = None),
    ];
    // (replicas, deleted in order)
    let cases: [(i32, &[&str]); 4] = [
        (4, &[]),
        (3, &["unscheduled"]),
        (2, &["unscheduled", "not-ready"]),
        (1, &["unscheduled", "not-ready", "ready-new"]),
    ];
    for (replicas, expected) in cases {
        let mut d = d.clone();
        d.spec.replicas = Some(replicas);
        assert_eq!(plan(&d, &pods, at(20)).delete, expected, "replicas {replicas}");
    }
}

#[test]
fn finished_and_node_lost_pods_are_deleted_and_replaced() {
    let d = recorded(deployment("web", 3));
    let mut pods = ready_members(&d, "web", 2);
    pods.push(member(&d, "web-lost").ready_since(T0).phase(PodPhase::Failed).edit(|p| {
        p.status.get_or_insert_with(Default::default).reason = Some("NodeLost".into());
    }));
    pods.push(member(&d, "web-done").phase(PodPhase::Succeeded));
    let plan = plan(&d, &pods, at(5));
    assert_eq!(plan.delete, ["web-done", "web-lost"]);
    assert_eq!(created(&plan), 1);
    assert_eq!((plan.status.replicas, plan.status.available_replicas), (2, 2));
}

#[test]
fn terminating_pods_neither_count_nor_are_deleted_again() {
    let d = recorded(deployment("web", 2));
    let mut pods = ready_members(&d, "web", 2);
    pods.push(member(&d, "going").ready_since(T0).terminating(at(1)));
    pods.push(member(&d, "failed-going").phase(PodPhase::Failed).terminating(at(1)));
    let plan = plan(&d, &pods, at(5));
    assert_eq!((created(&plan), plan.delete.len()), (0, 0));
    assert_eq!(plan.status.replicas, 2);

    let mut one = d.clone();
    one.spec.replicas = Some(1);
    assert_eq!(super::plan(&one, &pods, at(5)).delete, ["web-0"], "by name among equals");
}

#[test]
fn rollout_bounds_resolve_like_kubernetes() {
    // (replicas, maxSurge, maxUnavailable, surge, unavailable)
    let cases = [
        (4, "25%", "25%", 1, 1),
        (10, "25%", "25%", 3, 2),
        (1, "25%", "25%", 1, 0),
        (3, "0", "0", 0, 1),
        (3, "0%", "10%", 0, 1),
        (5, "2", "50%", 2, 2),
        (2, "0", "200%", 0, 2),
        (0, "25%", "25%", 0, 0),
        (4, "lots", "25%", 1, 1),
    ];
    for (replicas, surge, unavailable, max_surge, max_unavailable) in cases {
        let d = rolling(deployment("web", replicas), surge, unavailable);
        assert_eq!(
            bounds(&d),
            RolloutBounds { max_surge, max_unavailable },
            "{replicas} {surge} {unavailable}"
        );
    }
    assert_eq!(bounds(&deployment("web", 4)), RolloutBounds { max_surge: 1, max_unavailable: 1 }, "defaults");
    let recreate = recreate(deployment("web", 4));
    assert_eq!(bounds(&recreate), RolloutBounds { max_surge: 0, max_unavailable: 0 });
}

#[test]
fn rolling_update_never_exceeds_max_surge() {
    // First step from `replicas` available old pods:
    // (replicas, maxSurge, maxUnavailable, created, deleted)
    let cases = [
        (4, "25%", "25%", 1, 1),
        (10, "25%", "25%", 3, 2),
        (3, "0", "1", 0, 1),
        (3, "1", "0", 1, 0),
        (4, "100%", "0", 4, 0),
        (4, "0", "100%", 0, 4),
        (1, "25%", "25%", 1, 0),
    ];
    for (replicas, surge, unavailable, create, delete) in cases {
        let a = recorded(rolling(deployment("web", replicas), surge, unavailable));
        let old = ready_members(&a, "old", replicas as usize);
        let b = with_image(a, "img:2");
        let plan = plan(&b, &old, at(100));
        let case = format!("{replicas} {surge} {unavailable}");
        assert_eq!((created(&plan), plan.delete.len()), (create, delete), "{case}");
        assert!(old.len() + created(&plan) <= replicas as usize + bounds(&b).max_surge, "{case}");
    }
}

#[test]
fn rolling_update_keeps_min_available() {
    // replicas 4, surge 1, unavailable 1: at least 3 available, at most 5 pods.
    let a = recorded(rolling(deployment("web", 4), "1", "1"));
    let b = with_image(a.clone(), "img:2");
    let old = ready_members(&a, "old", 3);
    // (case, new pods, created, deleted)
    let cases = [
        (
            "a new pod not yet ready protects the old ones",
            vec![member(&b, "new-0"), member(&b, "new-1")],
            0,
            0,
        ),
        (
            "a ready new pod frees one old pod",
            vec![member(&b, "new-0").ready_since(T0), member(&b, "new-1")],
            0,
            1,
        ),
        ("four ready new pods free every old pod", ready_members(&b, "new", 4), 0, 3),
    ];
    for (case, new, create, delete) in cases {
        let pods: Vec<Pod> = old.iter().cloned().chain(new).collect();
        let plan = plan(&b, &pods, at(100));
        assert_eq!((created(&plan), plan.delete.len()), (create, delete), "{case}");
        assert!(plan.delete.iter().all(|n| n.starts_with("old-")), "{case}: {:?}", plan.delete);
    }
}

#[test]
fn unavailable_old_pods_go_first_but_only_while_new_pods_can_cover() {
    let a = recorded(rolling(deployment("web", 4), "1", "1"));
    let b = with_image(a.clone(), "img:2");
    let mut pods = ready_members(&a, "old", 2);
    pods.extend([member(&a, "old-sick-1").not_ready(T0), member(&a, "old-sick-2").not_ready(T0)]);
    let plan = plan(&b, &pods, at(100));
    // 4 old + 0 new available - 3 minimum: one sick pod may go.
    assert_eq!(plan.delete, ["old-sick-1"]);
    assert_eq!(created(&plan), 1);
}

#[test]
fn availability_waits_for_min_ready_seconds() {
    let mut a = rolling(deployment("web", 2), "1", "0");
    a.spec.min_ready_seconds = Some(10);
    let a = recorded(a);
    let b = with_image(a.clone(), "img:2");
    let mut pods = ready_members(&a, "old", 2);
    pods.push(member(&b, "new-0").ready_since(at(100)));
    // (now, available, old pods deleted)
    for (now, available, delete) in [(at(105), 2, 0), (at(110), 2, 0), (at(111), 3, 1)] {
        let plan = plan(&b, &pods, now);
        assert_eq!((plan.status.available_replicas, plan.delete.len()), (available, delete), "{now}");
        assert_eq!(plan.status.ready_replicas, 3);
    }
}

#[test]
fn recreate_deletes_every_old_pod_before_creating_new_ones() {
    let a = recorded(recreate(deployment("web", 3)));
    let b = with_image(a.clone(), "img:2");
    let terminating = |pods: Vec<Pod>| pods.into_iter().map(|p| p.terminating(at(1))).collect::<Vec<_>>();
    let failed = vec![member(&a, "old-failed").phase(PodPhase::Failed).terminating(at(1))];
    // (case, pods, created, deleted)
    let cases = [
        ("old pods running: delete them all", ready_members(&a, "old", 3), 0, 3),
        ("old pods terminating: wait", terminating(ready_members(&a, "old", 3)), 0, 0),
        ("finished old pods do not block", failed, 3, 0),
        ("no old pods: create the new ones", vec![], 3, 0),
    ];
    for (case, pods, create, delete) in cases {
        let plan = plan(&b, &pods, at(5));
        assert_eq!((created(&plan), plan.delete.len()), (create, delete), "{case}");
    }
}

#[test]
fn a_paused_deployment_starts_no_rollout_but_still_scales_its_revision() {
    let mut a = recorded(deployment("web", 2));
    a.spec.paused = Some(true);
    let pods = ready_members(&a, "web", 2);
    let mut b = with_image(a.clone(), "img:2");
    b.spec.replicas = Some(3);
    let frozen = plan(&b, &pods, at(5));
    assert_eq!((created(&frozen), frozen.delete.len()), (0, 0));
    assert_eq!(frozen.annotations, a.metadata.annotations, "no new revision while paused");
    let progressing = frozen.status.conditions.iter().find(|c| c.type_ == "Progressing");
    assert_eq!(progressing.and_then(|c| c.reason.as_deref()), Some("DeploymentPaused"));

    a.spec.replicas = Some(3);
    assert_eq!(created(&plan(&a, &pods, at(5))), 1, "scaling is not a rollout");
}

#[test]
fn a_paused_rollout_holds_still_but_replaces_lost_pods_at_their_revision() {
    let a = recorded(rolling(deployment("web", 4), "1", "1"));
    let mut b = recorded(with_image(a.clone(), "img:2"));
    let mut pods = ready_members(&a, "old", 3);
    pods.push(member(&a, "old-lost").phase(PodPhase::Failed));
    pods.extend(ready_members(&b, "new", 1));

    b.spec.paused = Some(true);
    let paused = plan(&b, &pods, at(100));
    assert_eq!(paused.delete, ["old-lost"]);
    assert_eq!(paused.create, [PodCreate { hash: template_hash(&a.spec.template), count: 1 }]);

    b.spec.paused = Some(false);
    let resumed = plan(&b, &pods, at(100));
    assert_eq!(resumed.create, [PodCreate { hash: template_hash(&b.spec.template), count: 1 }]);
    assert_eq!(resumed.delete, ["old-lost", "old-0"]);
}
