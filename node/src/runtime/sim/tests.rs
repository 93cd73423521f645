use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;

use super::*;
use crate::runtime::{Mount, PodRef};

fn pod(uid: &str) -> PodRef {
    PodRef { uid: uid.into(), namespace: "default".into(), name: format!("web-{uid}") }
}

fn sandbox_config(uid: &str) -> SandboxConfig {
    SandboxConfig {
        pod: pod(uid),
        node: "n1".into(),
        hostname: format!("web-{uid}"),
        ports: vec![],
        dns_servers: vec![],
        dns_search: vec![],
        dns_options: vec![],
        empty_dirs: vec!["www".into()],
        extra_labels: BTreeMap::new(),
    }
}

fn app(uid: &str, name: &str, attempt: u32) -> ContainerConfig {
    ContainerConfig {
        pod: pod(uid),
        node: "n1".into(),
        name: name.into(),
        image: BUSYBOX_IMAGE.into(),
        command: vec![],
        args: vec![],
        env: vec![],
        mounts: vec![Mount {
            source: MountSource::EmptyDir("www".into()),
            target: "/www".into(),
            read_only: false,
        }],
        cpu_limit_millis: None,
        memory_limit_bytes: None,
        attempt,
        spec_hash: "h1".into(),
        extra_labels: BTreeMap::new(),
    }
}

fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A pod with a sandbox and one app container "web"; (sandbox id, app id).
pub(crate) async fn running_pod(sim: &SimRuntime, uid: &str) -> (Sandbox, String) {
    let sandbox = sim.create_sandbox(&sandbox_config(uid)).await.unwrap();
    let app_id = sim.start_container(&sandbox.id, &app(uid, "web", 0)).await.unwrap();
    (sandbox, app_id)
}

#[tokio::test(start_paused = true)]
async fn sandboxes_get_pod_ips_from_10_88_in_order_without_quick_reuse() {
    let sim = SimRuntime::new();
    let a = sim.create_sandbox(&sandbox_config("a")).await.unwrap();
    let b = sim.create_sandbox(&sandbox_config("b")).await.unwrap();
    assert_eq!(a.ip, Some("10.88.0.2".parse().unwrap()));
    assert_eq!(b.ip, Some("10.88.0.3".parse().unwrap()));
    sim.remove_container(&a.id).await.unwrap();
    let c = sim.create_sandbox(&sandbox_config("c")).await.unwrap();
    assert_eq!(c.ip, Some("10.88.0.4".parse().unwrap()), "a freed address is not handed out at once");
}

#[tokio::test(start_paused = true)]
async fn list_shows_a_pods_containers_with_their_identity() {
    let sim = SimRuntime::new();
    let (sandbox, app_id) = running_pod(&sim, "u1").await;
    let listed = sim.list("n1").await.unwrap();
    assert_eq!(listed.len(), 2);
    let sb = listed.iter().find(|c| c.is_sandbox()).unwrap();
    assert_eq!((sb.id.as_str(), sb.ip), (sandbox.id.as_str(), sandbox.ip));
    let web = listed.iter().find(|c| c.id == app_id).unwrap();
    assert_eq!(web.container.as_deref(), Some("web"));
    assert_eq!((web.attempt, web.spec_hash.as_str(), web.pod.uid.as_str()), (0, "h1", "u1"));
    assert!(web.is_running());
    assert!(sim.list("other-node").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_reported_with_the_node() {
    let sim = SimRuntime::new();
    let sandbox = sim.create_sandbox(&sandbox_config("u1")).await.unwrap();
    let mut config = app("u1", "web", 0);
    config.image = "corral/nope:1".into();
    let err = sim.start_container(&sandbox.id, &config).await.unwrap_err();
    assert_eq!(err, RuntimeError::ImageNotPresent { image: "corral/nope:1".into(), node: "n1".into() });
    assert!(!sim.image_present("corral/nope:1").await.unwrap());
    sim.add_image("corral/nope:1");
    assert!(sim.start_container(&sandbox.id, &config).await.is_ok());

    sim.remove_image(PAUSE_IMAGE);
    let err = sim.create_sandbox(&sandbox_config("u2")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::ImageNotPresent { .. }));
}

#[tokio::test(start_paused = true)]
async fn an_exit_hook_is_seen_in_list_and_nudges_changes() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    let mut changes = sim.changes("n1");
    let mut elsewhere = sim.changes("n2");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(sim.exit("u1", "web", 3));
    tokio::time::timeout(Duration::from_secs(1), changes.next()).await.expect("a nudge").unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(10), elsewhere.next()).await.is_err());

    let web = sim.list("n1").await.unwrap().into_iter().find(|c| c.id == app_id).unwrap();
    let ContainerState::Exited { exit_code, started_at, finished_at, oom_killed } = web.state else {
        panic!("{:?}", web.state)
    };
    assert_eq!((exit_code, oom_killed), (3, false));
    assert_eq!(finished_at.unwrap().duration_since(started_at.unwrap()).unwrap(), Duration::from_secs(5));
    assert!(!sim.exit("u1", "web", 1), "nothing runs any more");
}

#[tokio::test(start_paused = true)]
async fn oom_kill_reports_137_and_the_flag() {
    let sim = SimRuntime::new();
    running_pod(&sim, "u1").await;
    assert!(sim.oom_kill("u1", "web"));
    let web = sim.list("n1").await.unwrap().into_iter().find(|c| !c.is_sandbox()).unwrap();
    assert!(matches!(web.state, ContainerState::Exited { exit_code: 137, oom_killed: true, .. }));
}

#[tokio::test(start_paused = true)]
async fn exec_results_come_from_the_hook_map() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    sim.set_exec_result(&["cat", "/ready"], 1, "no such file");
    let second = Duration::from_secs(1);
    let out = sim.exec(&app_id, &cmd(&["cat", "/ready"]), second).await.unwrap();
    assert_eq!(out, ExecOutput { exit_code: 1, output: "no such file".into() });
    let out = sim.exec(&app_id, &cmd(&["true"]), second).await.unwrap();
    assert_eq!(out.exit_code, 0, "commands without a hook succeed");
    assert_eq!(sim.exec("nope", &cmd(&["true"]), second).await, Err(RuntimeError::NotFound("nope".into())));
}

#[tokio::test(start_paused = true)]
async fn streamed_exec_gives_the_output_then_the_exit_code() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    sim.set_exec_result(&["cat", "/ready"], 1, "no such file");
    let events: Vec<_> = sim.exec_stream(&app_id, &cmd(&["cat", "/ready"])).collect().await;
    assert_eq!(events, vec![Ok(ExecEvent::Stdout(b"no such file".to_vec())), Ok(ExecEvent::Exit(1))]);
    let events: Vec<_> = sim.exec_stream("nope", &cmd(&["true"])).collect().await;
    assert_eq!(events, vec![Err(RuntimeError::NotFound("nope".into()))]);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_exec_runs_into_its_timeout() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    sim.set_exec_behaviour(&["sleep", "60"], ExecBehaviour::Hang);
    let started = tokio::time::Instant::now();
    let err = sim.exec(&app_id, &cmd(&["sleep", "60"]), Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(err.to_string().contains("timed out after 2s"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn exec_in_a_stopped_container_fails() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    sim.stop_container(&app_id, Duration::from_secs(30)).await.unwrap();
    let err = sim.exec(&app_id, &cmd(&["true"]), Duration::from_secs(1)).await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn stop_is_immediate_unless_sigterm_is_ignored() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    let started = tokio::time::Instant::now();
    sim.stop_container(&app_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    let web = sim.list("n1").await.unwrap().into_iter().find(|c| c.id == app_id).unwrap();
    assert!(matches!(web.state, ContainerState::Exited { exit_code: 0, .. }));
    // Stopping a stopped container is fine.
    sim.stop_container(&app_id, Duration::from_secs(30)).await.unwrap();

    let stubborn =
        sim.start_container(&sim.list("n1").await.unwrap()[0].id, &app("u1", "web", 1)).await.unwrap();
    assert!(sim.set_ignores_sigterm("u1", "web"));
    sim.stop_container(&stubborn, Duration::from_secs(7)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    let web = sim.list("n1").await.unwrap().into_iter().find(|c| c.id == stubborn).unwrap();
    assert!(matches!(web.state, ContainerState::Exited { exit_code: KILLED_EXIT_CODE, .. }));
}

#[tokio::test(start_paused = true)]
async fn a_taken_name_is_reused_for_the_same_start_and_freed_when_stopped() {
    let sim = SimRuntime::new();
    let (sandbox, first) = running_pod(&sim, "u1").await;
    // A retried start of the same attempt finds the running container.
    assert_eq!(sim.start_container(&sandbox.id, &app("u1", "web", 0)).await.unwrap(), first);
    // The same name for another pod (same namespace and name, new uid) waits for a stop.
    let mut other = app("u1", "web", 0);
    other.pod.uid = "u2".into();
    let err = sim.start_container(&sandbox.id, &other).await.unwrap_err();
    assert!(err.to_string().contains("stop it first"), "{err}");
    sim.stop_container(&first, Duration::ZERO).await.unwrap();
    let second = sim.start_container(&sandbox.id, &other).await.unwrap();
    assert_ne!(second, first);
    assert!(sim.containers().iter().all(|c| c.id != first), "the stopped holder was removed");
}

#[tokio::test(start_paused = true)]
async fn app_containers_need_a_running_sandbox() {
    let sim = SimRuntime::new();
    let sandbox = sim.create_sandbox(&sandbox_config("u1")).await.unwrap();
    let missing = sim.start_container("gone", &app("u1", "web", 0)).await.unwrap_err();
    assert_eq!(missing, RuntimeError::NotFound("gone".into()));
    assert!(sim.exit("u1", SANDBOX_CONTAINER, 0));
    let err = sim.start_container(&sandbox.id, &app("u1", "web", 0)).await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn pod_volumes_outlive_containers_until_removed() {
    let sim = SimRuntime::new();
    let (sandbox, app_id) = running_pod(&sim, "u1").await;
    assert_eq!(sim.volumes("u1"), vec!["www".to_string()]);
    let err = sim.remove_pod_volumes("u1").await.unwrap_err();
    assert!(err.to_string().contains("still in use"), "{err}");
    sim.remove_container(&app_id).await.unwrap();
    sim.remove_container(&sandbox.id).await.unwrap();
    sim.remove_container(&sandbox.id).await.unwrap();
    sim.remove_pod_volumes("u1").await.unwrap();
    assert!(sim.volumes("u1").is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_engine_outage_fails_every_call_until_it_ends() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    sim.set_unavailable(true);
    assert!(matches!(sim.list("n1").await, Err(RuntimeError::Unavailable(_))));
    assert!(matches!(sim.create_sandbox(&sandbox_config("u2")).await, Err(RuntimeError::Unavailable(_))));
    assert!(matches!(sim.stats(&app_id).await, Err(RuntimeError::Unavailable(_))));
    sim.set_unavailable(false);
    assert_eq!(sim.list("n1").await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn logs_honour_tail_and_follow_until_exit() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    sim.append_log("u1", "web", b"one\ntwo\nthree\n");
    let tail: Vec<_> = sim.logs(&app_id, LogOptions { follow: false, tail: Some(2) }).collect().await;
    assert_eq!(tail, vec![Ok(b"two\nthree\n".to_vec())]);

    let mut follow = sim.logs(&app_id, LogOptions { follow: true, tail: Some(0) });
    sim.append_log("u1", "web", b"four\n");
    assert_eq!(follow.next().await, Some(Ok(b"four\n".to_vec())));
    sim.append_log("u1", "web", b"five\n");
    sim.exit("u1", "web", 0);
    assert_eq!(follow.next().await, Some(Ok(b"five\n".to_vec())));
    assert_eq!(follow.next().await, None, "the stream ends with the container");
}

#[tokio::test(start_paused = true)]
async fn stats_report_what_the_test_set() {
    let sim = SimRuntime::new();
    let (_, app_id) = running_pod(&sim, "u1").await;
    assert_eq!(sim.stats(&app_id).await.unwrap(), Usage::default());
    let usage = Usage { cpu_nanos: 5_000_000, memory_bytes: 1 << 20 };
    sim.set_usage("u1", "web", usage);
    assert_eq!(sim.stats(&app_id).await.unwrap(), usage);
    assert_eq!(sim.stats("nope").await, Err(RuntimeError::NotFound("nope".into())));
}

#[test]
fn tail_lines_keeps_the_last_n_lines() {
    for (log, n, want) in [
        (&b"a\nb\nc\n"[..], 2, &b"b\nc\n"[..]),
        (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc\n", 0, b""),
        (b"", 3, b""),
    ] {
        assert_eq!(tail_lines(log, n), want, "tail {n} of {:?}", String::from_utf8_lossy(log));
    }
}
