//! Autoscaling on CPU and the downward API, on the real Docker engine: 3
//! real masters, one real `corral node` agent, pods that burn CPU while a
//! file exists in a hostPath directory the test owns.

mod common;

use std::time::{Duration, Instant};

use common::nodes::{apply, cluster_with_nodes, Nodes};
use control_plane::api::{manifest, Object};
use control_plane::CorralClient;

/// Node timings shortened, and the autoscaler run every 2 s instead of 15.
const FLAGS: &[&str] =
    &["--node-grace-seconds", "3", "--node-eviction-seconds", "3", "--hpa-sync-seconds", "2"];

async fn replicas(client: &CorralClient, name: &str) -> i32 {
    match client.get_object("deployments", "default", name).await {
        Ok(Object::Deployment(d)) => d.spec.replicas.unwrap_or(1),
        other => panic!("deployment {name}: {other:?}"),
    }
}

fn burner(load_dir: &str) -> String {
    format!(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {{name: burner}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burner}}}}
  template:
    metadata: {{labels: {{app: burner}}}}
    spec:
      terminationGracePeriodSeconds: 0
      volumes: [{{name: load, hostPath: {{path: {load_dir}}}}}]
      containers:
      - name: app
        image: corral/busybox:1
        command: [sh, -c, 'while :; do if [ -f /load/on ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 1; fi; done']
        volumeMounts: [{{name: load, mountPath: /load, readOnly: true}}]
        resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 300m}}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: burner}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burner}}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 10}}
"
    )
}

/// Load on: the deployment grows within a minute; load off: it shrinks
/// back after the (shortened) stabilization window; never outside 1..=3.
/// The HPA reports its metrics, conditions and Events on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_load_scales_a_deployment_up_and_back_down() {
    // The load switch lives in the test's temp dir: the masters allow it (read-only).
    let allowed = format!("--allowed-host-paths={}", std::env::temp_dir().display());
    let flags: Vec<&str> = FLAGS.iter().copied().chain([allowed.as_str()]).collect();
    let (tc, nodes, client) = cluster_with_nodes(&flags, 1, 71).await;
    let load_dir = tc.dir.path().join("load");
    std::fs::create_dir_all(&load_dir).unwrap();
    apply(&client, &burner(&load_dir.display().to_string())).await;

    let mut seen = Vec::new();
    // Idle at first: the autoscaler measures and keeps 1.
    let hpa = loop_until(&client, Duration::from_secs(60), |h| {
        h.status.as_ref().is_some_and(|s| !s.current_metrics.is_empty())
    })
    .await;
    assert_eq!(hpa.status.as_ref().unwrap().desired_replicas, 1, "{hpa:?}");

    std::fs::write(load_dir.join("on"), b"1").unwrap();
    let started = Instant::now();
    watch(&client, &nodes, &mut seen, "scaled up under load", Duration::from_secs(60), |r| r >= 2).await;
    let up_after = started.elapsed();
    let hpa = loop_until(&client, Duration::from_secs(10), |h| {
        h.status.as_ref().is_some_and(|s| s.last_scale_time.is_some())
    })
    .await;
    let utilization = hpa.status.as_ref().unwrap().current_metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .current
        .average_utilization;
    assert!(utilization.is_some_and(|u| u > 50), "utilization under load: {utilization:?}");
    let events = scale_events(&client).await;
    assert!(events.iter().any(|m| m.starts_with("New size: ") && m.contains("above target")), "{events:?}");

    std::fs::remove_file(load_dir.join("on")).unwrap();
    let idle_at = Instant::now();
    watch(&client, &nodes, &mut seen, "scaled back down when idle", Duration::from_secs(90), |r| r == 1)
        .await;
    let down_after = idle_at.elapsed();
    assert!(
        down_after >= Duration::from_secs(10),
        "scaled down after {down_after:?}, inside the 10 s window"
    );
    eprintln!("scaled up {up_after:?} after load on; back to 1 {down_after:?} after load off; replicas seen {seen:?}");
}

/// Polls the deployment's replicas until `want`, asserting every value seen stays within 1..=3.
async fn watch(
    client: &CorralClient,
    nodes: &Nodes,
    seen: &mut Vec<i32>,
    what: &str,
    within: Duration,
    want: impl Fn(i32) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let r = replicas(client, "burner").await;
        seen.push(r);
        assert!((1..=3).contains(&r), "replicas {r} outside 1..=3 ({seen:?})");
        if want(r) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?} ({seen:?})\n{}", nodes.log_tails());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn loop_until(
    client: &CorralClient,
    within: Duration,
    ok: impl Fn(&control_plane::api::HorizontalPodAutoscaler) -> bool,
) -> control_plane::api::HorizontalPodAutoscaler {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Object::HorizontalPodAutoscaler(h)) =
            client.get_object("horizontalpodautoscalers", "default", "burner").await
        {
            if ok(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "the HPA did not get there within {within:?}: {h:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn scale_events(client: &CorralClient) -> Vec<String> {
    let (events, _) = client.list_objects("events", "default", "").await.expect("events");
    events
        .into_iter()
        .filter_map(|o| match o {
            Object::Event(e) if e.reason.as_deref() == Some("SuccessfulRescale") => e.message,
            _ => None,
        })
        .collect()
}

const DOWNWARD: &str = "
apiVersion: v1
kind: Pod
metadata: {name: whoami, labels: {app: whoami}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: corral/busybox:1
    command: [sh, -c, 'mkdir -p /tmp; env | sort > /tmp/env; exec sleep 3600']
    resources: {requests: {cpu: 250m}, limits: {memory: 32Mi}}
    env:
    - {name: MY_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: MY_NAMESPACE, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: MY_UID, valueFrom: {fieldRef: {fieldPath: metadata.uid}}}
    - {name: MY_APP, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}
    - {name: MY_NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: MY_CPU_M, valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}}
    - {name: MY_MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
";

/// Downward API values, read back from inside the running container, and
/// bad HPAs refused with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downward_api_values_are_visible_inside_the_container() {
    let (_tc, nodes, client) = cluster_with_nodes(FLAGS, 1, 81).await;
    apply(&client, DOWNWARD).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let pod = loop {
        if let Ok(Object::Pod(p)) = client.get_object("pods", "default", "whoami").await {
            if p.is_ready() {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "whoami not Ready\n{}", nodes.log_tails());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let node = nodes.agents[0].name.clone();
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("pod IP");
    let uid = pod.metadata.uid.clone().unwrap();
    let env = read_env(&node, &uid).await;
    for (k, v) in [
        ("MY_NAME", "whoami"),
        ("MY_NAMESPACE", "default"),
        ("MY_UID", uid.as_str()),
        ("MY_APP", "whoami"),
        ("MY_NODE", node.as_str()),
        ("MY_IP", ip.as_str()),
        ("MY_CPU_M", "250"),
        ("MY_MEM_MI", "32"),
    ] {
        assert!(env.lines().any(|l| l == format!("{k}={v}")), "{k}={v} missing from\n{env}");
    }

    // Bad HPAs are refused, naming the field.
    for (spec, field) in [
        ("minReplicas: 5\n  maxReplicas: 2", "spec.maxReplicas"),
        (
            "maxReplicas: 2\n  metrics: [{type: Pods, pods: {}}]",
            "spec.metrics[0].pods",
        ),
        (
            "maxReplicas: 2\n  metrics: [{type: Resource, resource: {name: gpu, target: {type: Utilization, averageUtilization: 50}}}]",
            "spec.metrics[0].resource.name",
        ),
    ] {
        let yaml = format!(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: bad}}\nspec:\n  scaleTargetRef: {{kind: Deployment, name: web}}\n  {spec}\n"
        );
        let err = match manifest::parse("bad.yaml", &yaml) {
            Err(errors) => errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
            Ok(objs) => client.apply(&objs[0]).await.expect_err("a bad HPA is refused").to_string(),
        };
        assert!(err.contains(field), "{field} not named in: {err}");
    }
    // An HPA whose target does not exist says so in its conditions.
    apply(
        &client,
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: lost}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: nowhere}\n  maxReplicas: 3\n  targetCPUUtilizationPercentage: 50\n",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Object::HorizontalPodAutoscaler(h)) = client.get_object("hpa", "default", "lost").await {
            let c = h
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "AbleToScale").cloned());
            if let Some(c) = c {
                assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("FailedGetScale")));
                assert!(c.message.unwrap_or_default().contains("\"nowhere\" not found"));
                break;
            }
        }
        assert!(Instant::now() < deadline, "no FailedGetScale condition on the HPA");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The container's environment, as it wrote it to /tmp/env (read with docker exec).
async fn read_env(node: &str, pod_uid: &str) -> String {
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker").args(args).output().expect("docker runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let uid_label = format!("label=io.corral.pod.uid={pod_uid}");
    let node_label = format!("label=io.corral.node={node}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, ids, _) = docker(&[
            "ps",
            "-q",
            "--filter",
            &uid_label,
            "--filter",
            &node_label,
            "--filter",
            "label=io.corral.container=app",
        ]);
        let last = match ids.split_whitespace().next() {
            Some(id) => {
                let (ok, out, err) = docker(&["exec", id, "cat", "/tmp/env"]);
                if ok {
                    return out;
                }
                format!("docker exec {id}: {err}")
            }
            None => {
                let (_, all, _) = docker(&[
                    "ps",
                    "-a",
                    "--filter",
                    &uid_label,
                    "--format",
                    "{{.ID}} {{.Status}} {{.Labels}}",
                ]);
                format!("no running app container; the pod's containers:\n{all}")
            }
        };
        assert!(Instant::now() < deadline, "no environment written by the container: {last}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
