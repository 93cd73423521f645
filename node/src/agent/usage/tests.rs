use std::sync::Arc;

use super::*;
use crate::runtime::sim::tests::running_pod;
use crate::runtime::sim::SimRuntime;
use crate::runtime::PodRef;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn reading(
    id: &str,
    pod: &str,
    container: &str,
    started: u64,
    cpu_secs: f64,
    memory: u64,
    now: u64,
) -> Reading {
    Reading {
        container: ContainerInfo {
            id: id.into(),
            pod: PodRef { uid: format!("uid-{pod}"), namespace: "default".into(), name: pod.into() },
            node: "n1".into(),
            container: Some(container.into()),
            attempt: 0,
            spec_hash: String::new(),
            image: "corral/busybox:1".into(),
            state: ContainerState::Running { started_at: at(started) },
            ip: None,
        },
        usage: Usage { cpu_nanos: (cpu_secs * 1e9) as u64, memory_bytes: memory },
        at: at(now),
    }
}

fn cpu_millis(m: &NodeMetrics, pod: &str) -> u64 {
    m.pods.iter().find(|p| p.name == pod).unwrap().total_millis("cpu")
}

#[test]
fn first_reading_is_averaged_since_the_container_started() {
    let mut previous = Previous::new();
    // 5 s of CPU over 10 s of life: half a core.
    let m = summarize(
        &[reading("a", "web", "app", 0, 5.0, 1 << 20, 10)],
        &mut previous,
        at(10),
        Duration::from_secs(10),
    );
    assert_eq!(cpu_millis(&m, "web"), 500);
    let pod = &m.pods[0];
    assert_eq!((pod.namespace.as_str(), pod.uid.as_deref()), ("default", Some("uid-web")));
    assert_eq!(pod.containers[0].usage["memory"].as_str(), "1024Ki");
    assert_eq!(m.usage["cpu"].millis(), 500);
    assert_eq!(m.window, "10s");
}

#[test]
fn later_readings_rate_over_the_window_since_the_previous() {
    let mut previous = Previous::new();
    summarize(&[reading("a", "web", "app", 0, 1.0, 0, 10)], &mut previous, at(10), Duration::from_secs(10));
    // +8 s of CPU in the next 10 s: 0.8 cores, whatever the average since start.
    let m = summarize(
        &[reading("a", "web", "app", 0, 9.0, 0, 20)],
        &mut previous,
        at(20),
        Duration::from_secs(10),
    );
    assert_eq!(cpu_millis(&m, "web"), 800);
}

#[test]
fn pods_sum_their_containers_and_the_node_sums_its_pods() {
    let mut previous = Previous::new();
    let readings = [
        reading("a", "web", "app", 0, 2.0, 3 << 20, 10),
        reading("b", "web", "sidecar", 0, 1.0, 1 << 20, 10),
        reading("c", "db", "main", 0, 4.0, 4 << 20, 10),
    ];
    let m = summarize(&readings, &mut previous, at(10), Duration::from_secs(10));
    assert_eq!(m.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["db", "web"]);
    assert_eq!(cpu_millis(&m, "web"), 300);
    assert_eq!(m.pods[1].containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["app", "sidecar"]);
    assert_eq!(m.usage["cpu"].millis(), 700);
    assert_eq!(m.usage["memory"].value(), 8 << 20);
}

#[test]
fn a_restarted_container_is_a_new_id_and_a_counter_that_went_back_starts_over() {
    let mut previous = Previous::new();
    summarize(&[reading("a", "web", "app", 0, 9.0, 0, 10)], &mut previous, at(10), Duration::from_secs(10));
    // Same id, counter reset (the engine restarted it): averaged since its new start.
    let m = summarize(
        &[reading("a", "web", "app", 16, 1.0, 0, 20)],
        &mut previous,
        at(20),
        Duration::from_secs(10),
    );
    assert_eq!(cpu_millis(&m, "web"), 250);
    // Containers gone are forgotten.
    summarize(&[], &mut previous, at(30), Duration::from_secs(10));
    assert!(previous.is_empty());
}

#[test]
fn sandboxes_are_not_pods_usage() {
    let mut previous = Previous::new();
    let mut sandbox = reading("s", "web", "x", 0, 1.0, 1 << 20, 10);
    sandbox.container.container = None;
    let m = summarize(&[sandbox], &mut previous, at(10), Duration::from_secs(10));
    assert!(m.pods.is_empty());
    assert_eq!(m.usage["cpu"].millis(), 0);
}

#[tokio::test]
async fn the_sampler_reads_running_app_containers_from_the_runtime() {
    let sim = Arc::new(SimRuntime::new());
    let (_sandbox, app_id) = running_pod(&sim, "u1").await;
    assert!(sim.set_usage("u1", "web", Usage { cpu_nanos: 7, memory_bytes: 2 << 20 }));
    let readings = read(sim.as_ref(), "n1").await.unwrap();
    assert_eq!(readings.len(), 1, "the sandbox is not read");
    assert_eq!(readings[0].container.id, app_id);
    assert_eq!(readings[0].usage, Usage { cpu_nanos: 7, memory_bytes: 2 << 20 });
}
