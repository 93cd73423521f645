//! The leader's scheduler and controllers against 3 real masters and a
//! fleet of simulated node agents.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::TestCluster;
use control_plane::api::{Object, Pod};
use control_plane::CorralClient;
use futures::StreamExt;
use node::fake::{run_fleet, FakeNodeSpec, FleetControl};
use tokio_util::sync::CancellationToken;

/// Node lifecycle timings shortened for the tests.
const FLAGS: &[&str] = &["--node-grace-seconds", "2", "--node-eviction-seconds", "2"];

struct Fleet {
    control: FleetControl,
    cancel: CancellationToken,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts the fleet and waits until all its nodes are registered and Ready.
async fn start_fleet(client: &CorralClient, names: &[&str], labels: &[(&str, &str, &str)]) -> Fleet {
    let fleet = spawn_fleet(client, names, labels);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (nodes, _) = client.list_objects("nodes", "", "").await.unwrap();
        let ready = nodes.iter().filter(|n| matches!(n, Object::Node(n) if n.is_ready())).count();
        if ready == names.len() {
            return fleet;
        }
        assert!(Instant::now() < deadline, "the fleet's nodes did not become Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_fleet(client: &CorralClient, names: &[&str], labels: &[(&str, &str, &str)]) -> Fleet {
    let nodes = names
        .iter()
        .map(|n| {
            let mut spec = FakeNodeSpec::new(*n);
            spec.cpu = "16".into();
            spec.memory = "32Gi".into();
            for (node, k, v) in labels {
                if node == n {
                    spec.labels.insert(k.to_string(), v.to_string());
                }
            }
            spec
        })
        .collect();
    let control = FleetControl::default();
    let cancel = CancellationToken::new();
    let (c, ctl, token) = (client.clone(), control.clone(), cancel.clone());
    tokio::spawn(async move {
        if let Err(e) = run_fleet(c, nodes, Duration::from_millis(500), ctl, token).await {
            eprintln!("fleet stopped: {e}");
        }
    });
    Fleet { control, cancel }
}

fn deployment(name: &str, replicas: i32, image: &str, extra_spec: &str) -> Object {
    let text = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n{extra_spec}  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: '{image}', resources: {{requests: {{cpu: 100m, memory: 64Mi}}}}}}]}}\n"
    );
    control_plane::api::manifest::parse("test", &text).unwrap().remove(0)
}

async fn pods(client: &CorralClient, selector: &str) -> Vec<Pod> {
    let (items, _) = client.list_objects("pods", "default", selector).await.unwrap();
    items
        .into_iter()
        .filter_map(|o| match o {
            Object::Pod(p) if p.metadata.deletion_timestamp.is_none() => Some(p),
            _ => None,
        })
        .collect()
}

/// Waits until `check` holds for the app's live pods.
async fn wait_pods(
    client: &CorralClient,
    selector: &str,
    timeout: Duration,
    check: impl Fn(&[Pod]) -> bool,
) -> Vec<Pod> {
    let deadline = Instant::now() + timeout;
    loop {
        let p = pods(client, selector).await;
        if check(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; pods now: {:?}",
            p.iter().map(|p| (&p.metadata.name, &p.spec.node_name, p.is_ready())).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn all_running(n: usize) -> impl Fn(&[Pod]) -> bool {
    move |p| p.len() == n && p.iter().all(|p| p.spec.node_name.is_some() && p.is_ready())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_100_while_the_leader_dies_gives_exactly_100_pods_each_bound_once() {
    let mut tc = TestCluster::start(3, FLAGS).await;
    let client = tc.client();
    let _fleet = start_fleet(&client, &["n1", "n2", "n3"], &[]).await;
    client.apply(&deployment("web", 1, "busybox:1", "")).await.unwrap();
    wait_pods(&client, "app=web", Duration::from_secs(30), all_running(1)).await;

    // Record every binding any pod ever gets, from a watch.
    let (_, rev) = client.list_objects("pods", "", "").await.unwrap();
    let mut watch =
        Box::pin(client.watch_objects("pods", "", Some(raft_store::Revision(rev.0 + 1))).await.unwrap());
    let bindings = tokio::spawn(async move {
        let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        while let Some(Ok(batch)) = watch.next().await {
            for e in batch {
                if let Object::Pod(p) = e.object {
                    if let Some(n) = p.spec.node_name {
                        seen.entry(p.metadata.uid.unwrap_or_default()).or_default().insert(n);
                    }
                }
            }
        }
        seen
    });

    client.scale("deployment", "default", "web", 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old = tc.leader(0).await;
    tc.cluster.signal_master(old, libc::SIGKILL).unwrap();
    tc.leader(old).await;

    wait_pods(&client, "app=web", Duration::from_secs(90), all_running(100)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = pods(&client, "app=web").await;
    assert_eq!(settled.len(), 100, "the count stays exact");
    bindings.abort();
    let seen = bindings.await.unwrap_or_default();
    let twice: Vec<_> = seen.iter().filter(|(_, nodes)| nodes.len() > 1).collect();
    assert!(twice.is_empty(), "pods bound to two nodes: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_silent_node_are_replaced_on_the_others() {
    let tc = TestCluster::start(3, FLAGS).await;
    let client = tc.client();
    let fleet = start_fleet(&client, &["n1", "n2", "n3"], &[]).await;
    client.apply(&deployment("web", 6, "busybox:1", "")).await.unwrap();
    let before = wait_pods(&client, "app=web", Duration::from_secs(30), all_running(6)).await;
    assert!(before.iter().any(|p| p.spec.node_name.as_deref() == Some("n1")), "spread puts some on n1");

    let silenced = Instant::now();
    fleet.control.silence("n1");
    let after = wait_pods(&client, "app=web", Duration::from_secs(30), |p| {
        all_running(6)(p) && p.iter().all(|p| p.spec.node_name.as_deref() != Some("n1"))
    })
    .await;
    eprintln!("replaced in {:?} (grace 2 s + eviction 2 s)", silenced.elapsed());
    assert_eq!(after.len(), 6);
    let Object::Node(n1) = client.get_object("node", "", "n1").await.unwrap() else { panic!() };
    assert!(!n1.is_ready(), "n1 is NotReady");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_max_surge_and_max_unavailable() {
    let tc = TestCluster::start(3, FLAGS).await;
    let client = tc.client();
    let _fleet = start_fleet(&client, &["n1", "n2", "n3"], &[]).await;
    let strategy = "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}\n";
    client.apply(&deployment("web", 4, "busybox:1", strategy)).await.unwrap();
    wait_pods(&client, "app=web", Duration::from_secs(30), all_running(4)).await;

    client.apply(&deployment("web", 4, "busybox:2", strategy)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut steps = 0;
    loop {
        let (items, _) = client.list_objects("pods", "default", "app=web").await.unwrap();
        let live: Vec<Pod> = items
            .into_iter()
            .filter_map(|o| if let Object::Pod(p) = o { Some(p) } else { None })
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let ready = live.iter().filter(|p| p.is_ready()).count();
        assert!(live.len() <= 5, "maxSurge 1: {} pods", live.len());
        assert!(ready >= 3, "maxUnavailable 1: only {ready} ready");
        steps += 1;
        let done =
            live.len() == 4 && live.iter().all(|p| p.is_ready() && p.spec.containers[0].image == "busybox:2");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "rollout did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(steps > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_say_why() {
    let tc = TestCluster::start(3, FLAGS).await;
    let client = tc.client();
    let _fleet = start_fleet(&client, &["n1", "n2", "n3"], &[("n3", "disk", "ssd")]).await;
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: needs-gpu}\nspec:\n  nodeSelector: {gpu: 'true'}\n  containers: [{name: c, image: busybox}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: huge}\nspec:\n  containers: [{name: c, image: busybox, resources: {requests: {memory: 1Ti}}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: ssd}\nspec:\n  nodeSelector: {disk: ssd}\n  containers: [{name: c, image: busybox}]\n";
    for obj in control_plane::api::manifest::parse("t", text).unwrap() {
        client.apply(&obj).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let get = |name: &'static str| {
            let client = client.clone();
            async move {
                let Object::Pod(p) = client.get_object("pod", "default", name).await.unwrap() else {
                    panic!()
                };
                p
            }
        };
        let (gpu, huge, ssd) = (get("needs-gpu").await, get("huge").await, get("ssd").await);
        let why = |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "PodScheduled"))
                .and_then(|c| c.message.clone())
        };
        if let (Some(g), Some(h), Some(_)) = (why(&gpu), why(&huge), ssd.spec.node_name.as_ref()) {
            assert_eq!(g, "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");
            assert_eq!(h, "0/3 nodes are available: 3 Insufficient memory.");
            assert_eq!(ssd.spec.node_name.as_deref(), Some("n3"));
            break;
        }
        assert!(Instant::now() < deadline, "no reason reported: {:?} {:?}", gpu.status, huge.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (events, _) = client.list_objects("events", "default", "").await.unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Object::Event(ev) if ev.reason.as_deref() == Some("FailedScheduling") && ev.involved_object.name.as_deref() == Some("huge"))),
        "a FailedScheduling event names the pod"
    );
}

fn corral(tc: &TestCluster, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .arg("--server")
        .arg(tc.cluster.file.addresses().join(","))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_respects_max_unavailable_and_rollback_restores_the_template() {
    let tc = TestCluster::start(3, FLAGS).await;
    let client = tc.client();
    let _fleet = start_fleet(&client, &["n1", "n2", "n3"], &[]).await;
    let strategy = "  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}\n";
    client.apply(&deployment("web", 3, "busybox:1", strategy)).await.unwrap();
    wait_pods(&client, "app=web", Duration::from_secs(30), all_running(3)).await;

    let (ok, out) = corral(&tc, &["drain", "n1", "--drain-timeout", "60s"]);
    assert!(ok, "{out}");
    let after = wait_pods(&client, "app=web", Duration::from_secs(30), all_running(3)).await;
    assert!(after.iter().all(|p| p.spec.node_name.as_deref() != Some("n1")), "n1 is drained");
    let (_, out) = corral(&tc, &["get", "nodes"]);
    assert!(out.contains("n1    Ready,SchedulingDisabled"), "{out}");
    let (ok, _) = corral(&tc, &["uncordon", "n1"]);
    assert!(ok);

    client.apply(&deployment("web", 3, "busybox:2", strategy)).await.unwrap();
    wait_pods(&client, "app=web", Duration::from_secs(60), |p| {
        all_running(3)(p) && p.iter().all(|p| p.spec.containers[0].image == "busybox:2")
    })
    .await;
    let (ok, out) = corral(&tc, &["rollout", "undo", "deployment/web"]);
    assert!(ok, "{out}");
    wait_pods(&client, "app=web", Duration::from_secs(60), |p| {
        all_running(3)(p) && p.iter().all(|p| p.spec.containers[0].image == "busybox:1")
    })
    .await;
    let (events, _) = client.list_objects("events", "default", "").await.unwrap();
    assert!(events
        .iter()
        .any(|e| matches!(e, Object::Event(ev) if ev.reason.as_deref() == Some("ScalingReplicaSet"))));
}
