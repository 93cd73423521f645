use std::net::Ipv4Addr;

use control_plane::api::manifest;
use control_plane::api::Object;

use super::*;
use crate::runtime::PodRef;

const UID: &str = "uid-1";

fn cfg() -> SyncConfig {
    SyncConfig::new("n1", IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)))
}

fn pod(extra: &str) -> Pod {
    let text = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: default, uid: {UID}}}\nspec:\n  nodeName: n1\n  containers:\n  - {{name: app, image: corral/busybox:1}}\n  - {{name: side, image: corral/busybox:1}}\n{extra}"
    );
    match manifest::parse("t", &text).unwrap().remove(0) {
        Object::Pod(p) => p,
        other => panic!("not a pod: {other:?}"),
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn info(id: &str, container: Option<&str>, attempt: u32, state: ContainerState) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        pod: PodRef { uid: UID.into(), namespace: "default".into(), name: "web".into() },
        node: "n1".into(),
        container: container.map(String::from),
        attempt,
        spec_hash: String::new(),
        image: "corral/busybox:1".into(),
        state,
        ip: container.is_none().then(|| IpAddr::V4(Ipv4Addr::new(10, 88, 0, 7))),
    }
}

fn running(since: u64) -> ContainerState {
    ContainerState::Running { started_at: at(since) }
}

fn exited(code: i64, started: u64, finished: u64) -> ContainerState {
    ContainerState::Exited {
        exit_code: code,
        started_at: Some(at(started)),
        finished_at: Some(at(finished)),
        oom_killed: false,
    }
}

fn sandbox() -> ContainerInfo {
    info("sb", None, 0, running(0))
}

fn run(pod: &Pod, containers: &[ContainerInfo], now: u64) -> PodPlan {
    plan(pod, containers, &BTreeSet::new(), &ProbeVerdicts::default(), at(now), &cfg())
}

fn state_of<'a>(p: &'a PodPlan, name: &str) -> &'a ContainerStatus {
    p.status.as_ref().unwrap().container_statuses.iter().find(|c| c.name == name).unwrap()
}

fn waiting_reason(p: &PodPlan, name: &str) -> Option<String> {
    state_of(p, name).state.as_ref()?.waiting.as_ref()?.reason.clone()
}

fn condition(p: &PodPlan, type_: &str) -> String {
    p.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap().status.clone()
}

#[test]
fn a_new_pod_gets_a_sandbox_then_its_containers() {
    let p = pod("");
    let first = run(&p, &[], 0);
    assert_eq!(first.actions, vec![Action::CreateSandbox]);
    assert_eq!(first.status.as_ref().unwrap().phase, Some(PodPhase::Pending));
    assert_eq!(waiting_reason(&first, "app").as_deref(), Some("ContainerCreating"));

    let second = run(&p, &[sandbox()], 1);
    assert_eq!(
        second.actions,
        vec![
            Action::StartContainer { name: "app".into(), attempt: 0 },
            Action::StartContainer { name: "side".into(), attempt: 0 },
        ]
    );
    assert_eq!(second.status.as_ref().unwrap().pod_ip.as_deref(), Some("10.88.0.7"));

    let up = run(
        &p,
        &[sandbox(), info("a", Some("app"), 0, running(1)), info("s", Some("side"), 0, running(1))],
        2,
    );
    assert!(up.actions.is_empty(), "{:?}", up.actions);
    let status = up.status.as_ref().unwrap();
    assert_eq!(status.phase, Some(PodPhase::Running));
    assert_eq!(condition(&up, "Ready"), "True");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.11"));
}

#[test]
fn a_missing_image_is_a_waiting_reason_never_a_hang() {
    let p = pod("");
    let missing: BTreeSet<String> = ["corral/busybox:1".to_string()].into();
    let got = plan(&p, &[sandbox()], &missing, &ProbeVerdicts::default(), at(0), &cfg());
    assert!(got.actions.is_empty(), "{:?}", got.actions);
    let state = state_of(&got, "app").state.as_ref().unwrap().waiting.clone().unwrap();
    assert_eq!(state.reason.as_deref(), Some("ErrImageNeverPull"));
    assert_eq!(state.message.as_deref(), Some("image \"corral/busybox:1\" is not present on node \"n1\""));
}

#[test]
fn a_protected_host_path_is_never_started_even_if_a_master_stored_it() {
    // Written as a master would have refused it: through the API types, not a manifest.
    let mut p = pod("  volumes:\n  - {name: host, hostPath: {path: /srv}}\n");
    p.spec.containers[0].volume_mounts.push(control_plane::api::pod::VolumeMount {
        name: "host".into(),
        mount_path: "/host".into(),
        read_only: Some(true),
    });
    for path in ["/", "/var/run/docker.sock", "/etc", "/srv/../proc", "//sys", "/dev/"] {
        p.spec.volumes[0].host_path.as_mut().unwrap().path = path.into();
        let got = run(&p, &[sandbox()], 0);
        assert_eq!(
            got.actions,
            vec![Action::StartContainer { name: "side".into(), attempt: 0 }],
            "only the container without the mount starts ({path})"
        );
        let state = state_of(&got, "app").state.as_ref().unwrap().waiting.clone().unwrap();
        assert_eq!(state.reason.as_deref(), Some("CreateContainerConfigError"), "{path}");
        let message = state.message.unwrap();
        assert!(
            message.starts_with(&format!("hostPath volume \"host\": {path:?} is not allowed: ")),
            "{message}"
        );
        assert!(message.ends_with("(PodSecurity baseline); refused by node \"n1\""), "{message}");
    }
    p.spec.volumes[0].host_path.as_mut().unwrap().path = "/srv/www".into();
    assert_eq!(run(&p, &[sandbox()], 0).actions.len(), 2, "an ordinary host path starts");
}

#[test]
fn restart_policy_decides_whether_an_exited_container_starts_again() {
    // (policy, exit code, restarted?, phase when the other container exited 0 too)
    let cases = [
        ("Always", 0, true, PodPhase::Running),
        ("Always", 1, true, PodPhase::Running),
        ("OnFailure", 0, false, PodPhase::Succeeded),
        ("OnFailure", 1, true, PodPhase::Running),
        ("Never", 0, false, PodPhase::Succeeded),
        ("Never", 1, false, PodPhase::Failed),
    ];
    for (policy, code, restarted, phase) in cases {
        let p = pod(&format!("  restartPolicy: {policy}\n"));
        let containers = [
            sandbox(),
            info("a", Some("app"), 0, exited(code, 0, 5)),
            info("s", Some("side"), 0, exited(0, 0, 5)),
        ];
        let got = run(&p, &containers, 6);
        let starts: Vec<&Action> = got
            .actions
            .iter()
            .filter(|a| matches!(a, Action::StartContainer { name, .. } if name == "app"))
            .collect();
        assert_eq!(!starts.is_empty(), restarted, "{policy} exit {code}: {:?}", got.actions);
        if restarted {
            assert_eq!(starts[0], &Action::StartContainer { name: "app".into(), attempt: 1 });
        } else {
            let t = state_of(&got, "app").state.as_ref().unwrap().terminated.clone().unwrap();
            assert_eq!(t.exit_code, code as i32);
        }
        assert_eq!(got.status.as_ref().unwrap().phase, Some(phase), "{policy} exit {code}");
    }
}

#[test]
fn repeated_crashes_back_off_exponentially_up_to_the_cap() {
    let p = pod("");
    let c = cfg();
    // Start number n exited at 100: when may n+1 start?
    for (attempt, delay) in [(1u32, 10u64), (2, 20), (3, 40), (5, 160), (6, 300), (12, 300)] {
        let containers = [
            sandbox(),
            info("a", Some("app"), attempt, exited(1, 99, 100)),
            info("s", Some("side"), 0, running(0)),
        ];
        let early = run(&p, &containers, 100 + delay - 1);
        assert!(early.actions.is_empty(), "attempt {attempt}: {:?}", early.actions);
        assert_eq!(waiting_reason(&early, "app").as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(early.wake_at, Some(at(100 + delay)));
        assert_eq!(state_of(&early, "app").restart_count, attempt as i32);
        let due = run(&p, &containers, 100 + delay);
        assert_eq!(due.actions, vec![Action::StartContainer { name: "app".into(), attempt: attempt + 1 }]);
    }
    // A container that ran ten minutes before it failed restarts at once.
    let long = [
        sandbox(),
        info("a", Some("app"), 4, exited(1, 0, 2 * c.backoff_max.as_secs())),
        info("s", Some("side"), 0, running(0)),
    ];
    assert_eq!(run(&p, &long, 2 * c.backoff_max.as_secs()).actions.len(), 1);
}

#[test]
fn probes_gate_readiness_and_a_failed_liveness_probe_stops_the_container() {
    let p = pod("");
    let mut p = p;
    p.spec.containers[0].readiness_probe = Some(Default::default());
    let containers =
        [sandbox(), info("a", Some("app"), 2, running(1)), info("s", Some("side"), 0, running(1))];
    let none = run(&p, &containers, 5);
    assert!(!state_of(&none, "app").ready);
    assert_eq!(condition(&none, "Ready"), "False");
    let mut verdicts = ProbeVerdicts::default();
    verdicts.ready.insert((UID.into(), "app".into(), 2));
    let ready = plan(&p, &containers, &BTreeSet::new(), &verdicts, at(5), &cfg());
    assert_eq!(condition(&ready, "Ready"), "True");
    verdicts.unhealthy.insert((UID.into(), "app".into(), 2));
    let sick = plan(&p, &containers, &BTreeSet::new(), &verdicts, at(6), &cfg());
    assert!(
        matches!(&sick.actions[..], [Action::StopContainer { id, .. }] if id == "a"),
        "{:?}",
        sick.actions
    );
    assert_eq!(condition(&sick, "Ready"), "False");
}

#[test]
fn a_lost_sandbox_stops_the_containers_and_is_recreated() {
    let p = pod("");
    let dead = info("sb", None, 0, exited(137, 0, 3));
    let containers = [dead, info("a", Some("app"), 0, running(1)), info("s", Some("side"), 0, running(1))];
    let got = run(&p, &containers, 5);
    assert_eq!(got.actions[0], Action::RemoveContainer { id: "sb".into() });
    assert!(
        got.actions.iter().filter(|a| matches!(a, Action::StopContainer { .. })).count() == 2,
        "{:?}",
        got.actions
    );
    assert_eq!(got.actions.last(), Some(&Action::CreateSandbox));
}

#[test]
fn old_starts_and_extra_sandboxes_are_removed() {
    let p = pod("");
    let containers = [
        sandbox(),
        info("sb2", None, 0, running(0)),
        info("a0", Some("app"), 0, exited(1, 0, 1)),
        info("a1", Some("app"), 1, running(2)),
        info("s", Some("side"), 0, running(1)),
    ];
    let got = run(&p, &containers, 5);
    assert_eq!(
        got.actions,
        vec![Action::RemoveContainer { id: "sb2".into() }, Action::RemoveContainer { id: "a0".into() }]
    );
    assert_eq!(state_of(&got, "app").restart_count, 1);
}

#[test]
fn a_deleted_pod_terminates_within_its_grace_period() {
    let p = pod("  terminationGracePeriodSeconds: 7\n");
    let mut deleted = p.clone();
    deleted.metadata.deletion_timestamp = Some(Time::from_unix(1));
    let got = run(&deleted, &[sandbox()], 5);
    assert_eq!(got.actions, vec![Action::Terminate { grace: Duration::from_secs(7) }]);
    assert_eq!(got.status, None);
    assert_eq!(grace_period(&pod("")), DEFAULT_GRACE);
}

#[test]
fn a_finished_pod_is_not_restarted_and_its_containers_stop() {
    let mut p = pod("");
    p.status = Some(PodStatus {
        phase: Some(PodPhase::Failed),
        reason: Some("NodeLost".into()),
        ..Default::default()
    });
    let containers =
        [sandbox(), info("a", Some("app"), 0, running(1)), info("s", Some("side"), 0, exited(1, 0, 2))];
    let got = run(&p, &containers, 5);
    assert!(matches!(&got.actions[..], [Action::StopContainer { id, .. }] if id == "a"), "{:?}", got.actions);
    let status = got.status.unwrap();
    assert_eq!(status.phase, Some(PodPhase::Failed));
    assert_eq!(status.reason.as_deref(), Some("NodeLost"));
}

#[test]
fn transition_times_are_kept_while_a_condition_holds() {
    let p = pod("");
    let containers =
        [sandbox(), info("a", Some("app"), 0, running(1)), info("s", Some("side"), 0, running(1))];
    let first = run(&p, &containers, 5);
    let mut stored = p.clone();
    stored.status = first.status.clone();
    let later = run(&stored, &containers, 50);
    assert_eq!(later.status, first.status, "an unchanged pod reports an identical status");
}
