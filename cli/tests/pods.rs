//! Pods on the real Docker engine: 3 real masters and real `corral node`
//! agents (processes) on loopback addresses, images built locally from
//! busybox-static. Everything created is labelled and removed on drop.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::nodes::{apply, Nodes};
use common::{http_get, TestCluster};
use control_plane::api::pod::PodPhase;
use control_plane::api::{Object, Pod};
use control_plane::CorralClient;

/// Node lifecycle timings shortened for the tests.
const FLAGS: &[&str] = &["--node-grace-seconds", "3", "--node-eviction-seconds", "3"];

async fn pods(client: &CorralClient, selector: &str) -> Vec<Pod> {
    let (items, _) = client.list_objects("pods", "default", selector).await.expect("list pods");
    items.into_iter().filter_map(|o| if let Object::Pod(p) = o { Some(p) } else { None }).collect()
}

async fn pod(client: &CorralClient, name: &str) -> Option<Pod> {
    match client.get_object("pods", "default", name).await {
        Ok(Object::Pod(p)) => Some(p),
        _ => None,
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or fails after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, nodes: &Nodes, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}\n{}", nodes.log_tails());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pod_ip(p: &Pod) -> Option<std::net::IpAddr> {
    p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn restarts(p: &Pod, container: &str) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.iter().find(|c| c.name == container))
        .map_or(0, |c| c.restart_count)
}

fn waiting_reason(p: &Pod, container: &str) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

async fn setup(nodes: usize, base: u8) -> (TestCluster, Nodes, CorralClient) {
    common::nodes::cluster_with_nodes(FLAGS, nodes, base).await
}

const TWO_CONTAINERS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  terminationGracePeriodSeconds: 3
  volumes: [{name: shared, emptyDir: {}}]
  containers:
  - name: server
    image: corral/busybox:1
    command: [sh, -c, 'echo hello-from-server > /data/index.html; exec httpd -f -p 8080 -h /data']
    volumeMounts: [{name: shared, mountPath: /data}]
    ports: [{containerPort: 8080}]
  - name: fetcher
    image: corral/busybox:1
    command: [sh, -c, 'until wget -q -O /data/fetched.tmp http://127.0.0.1:8080/index.html; do sleep 0.2; done; mv /data/fetched.tmp /data/fetched; exec sleep 3600']
    volumeMounts: [{name: shared, mountPath: /data}]
";

const CRASHERS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: app, image: corral/busybox:1, command: [sh, -c, 'exit 3']}
---
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: corral/busybox:1, command: [sh, -c, 'echo line-1; echo goodbye; exit 4']}
---
apiVersion: v1
kind: Pod
metadata: {name: sick}
spec:
  containers:
  - name: app
    image: corral/busybox:1
    command: [sh, -c, 'touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600']
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {name: missing-image}
spec:
  containers:
  - {name: app, image: 'corral/not-built:1'}
---
apiVersion: v1
kind: Pod
metadata: {name: burner}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: corral/busybox:1
    command: [sh, -c, 'while :; do :; done']
    resources: {limits: {cpu: 500m, memory: 64Mi}}
";

/// Two containers of one pod share localhost and an emptyDir volume; the
/// pod reports Running, Ready and its IP; deleting it stops it gracefully.
/// Restart policies, CrashLoopBackOff, a failing liveness probe and a
/// missing image, on the same node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_restart_and_report_on_docker() {
    let (_tc, nodes, client) = setup(1, 41).await;
    apply(&client, TWO_CONTAINERS).await;
    apply(&client, CRASHERS).await;

    let duo = eventually("the two-container pod Ready", Duration::from_secs(60), &nodes, || async {
        pod(&client, "duo").await.filter(|p| p.is_ready())
    })
    .await;
    assert_eq!(duo.phase(), Some(PodPhase::Running));
    let ip = pod_ip(&duo).expect("a pod IP");
    // The fetcher reached the server over localhost and wrote into the shared volume.
    let fetched = eventually("the fetcher's copy", Duration::from_secs(30), &nodes, || async {
        http_get(SocketAddr::new(ip, 8080), "/fetched").await.ok()
    })
    .await;
    assert_eq!(fetched, "hello-from-server");

    // restartPolicy Always: restarted again and again, with back-off in between.
    let crasher = eventually("the crasher restarted twice", Duration::from_secs(60), &nodes, || async {
        pod(&client, "crasher").await.filter(|p| restarts(p, "app") >= 2)
    })
    .await;
    assert_eq!(crasher.phase(), Some(PodPhase::Running));
    eventually("CrashLoopBackOff reported", Duration::from_secs(30), &nodes, || async {
        pod(&client, "crasher")
            .await
            .filter(|p| waiting_reason(p, "app").as_deref() == Some("CrashLoopBackOff"))
    })
    .await;

    // restartPolicy Never: Failed with the exit code, never restarted.
    let once = eventually("the Never pod Failed", Duration::from_secs(60), &nodes, || async {
        pod(&client, "once").await.filter(|p| p.phase() == Some(PodPhase::Failed))
    })
    .await;
    let state = once.status.as_ref().unwrap().container_statuses[0].state.clone().unwrap();
    assert_eq!(state.terminated.map(|t| t.exit_code), Some(4));
    assert_eq!(restarts(&once, "app"), 0);
    // Its log, streamed from the node by `corral logs`.
    let servers = _tc.cluster.file.addresses().join(",");
    let logs = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["logs", "once", "--tail", "1", "--server", &servers])
        .output()
        .expect("corral logs runs");
    assert!(logs.status.success(), "corral logs: {}", String::from_utf8_lossy(&logs.stderr));
    assert_eq!(String::from_utf8_lossy(&logs.stdout).trim(), "goodbye");
    // The node's Prometheus metrics.
    let node_addr: SocketAddr = format!("{}:10250", nodes.agents[0].address).parse().unwrap();
    let metrics = http_get(node_addr, "/metrics").await.expect("metrics");
    assert!(metrics.contains("corral_node_pods{phase=\"Failed\"} 1"), "{metrics}");
    assert!(metrics.contains("corral_node_sync_pass_seconds_count"), "{metrics}");

    // Usage from Docker stats rides on the node's status: the burner's CPU,
    // held to its 500m limit, and some memory.
    let node_name = nodes.agents[0].name.clone();
    let burner =
        eventually("the burner's usage in the node status", Duration::from_secs(30), &nodes, || async {
            let Ok(Object::Node(node)) = client.get_object("nodes", "", &node_name).await else {
                return None;
            };
            let metrics = node.status?.metrics?;
            metrics.pods.into_iter().find(|p| p.name == "burner" && p.total_millis("cpu") > 100)
        })
        .await;
    let cpu = burner.total_millis("cpu");
    assert!((100..=650).contains(&cpu), "a loop held to 500m used {cpu}m");
    assert!(burner.total_millis("memory") > 0, "{burner:?}");
    assert!(http_get(node_addr, "/metrics")
        .await
        .unwrap()
        .contains("corral_node_pod_cpu_usage_cores{namespace=\"default\",pod=\"burner\"}"));

    // A failing liveness probe restarts the container.
    eventually("the sick container restarted", Duration::from_secs(60), &nodes, || async {
        pod(&client, "sick").await.filter(|p| restarts(p, "app") >= 1)
    })
    .await;

    // No registry: a missing image is a clear waiting reason.
    let missing = eventually("ErrImageNeverPull", Duration::from_secs(30), &nodes, || async {
        pod(&client, "missing-image")
            .await
            .filter(|p| waiting_reason(p, "app").as_deref() == Some("ErrImageNeverPull"))
    })
    .await;
    let message = missing.status.unwrap().container_statuses[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(message.contains("corral/not-built:1") && message.contains(&nodes.agents[0].name), "{message}");

    // Graceful delete: the node confirms and the pod object goes.
    client.delete_object("pods", "default", "duo").await.expect("delete");
    eventually("the deleted pod removed", Duration::from_secs(30), &nodes, || async {
        pod(&client, "duo").await.is_none().then_some(())
    })
    .await;
    assert!(http_get(SocketAddr::new(ip, 8080), "/fetched").await.is_err(), "the pod's server still answers");
}

fn web(replicas: usize, version: &str, port: u16) -> String {
    format!(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: corral/busybox:1
        command: [sh, -c, 'mkdir -p /www; echo $HOSTNAME {version} > /www/index.html; touch /www/ready; exec httpd -f -p 8080 -h /www']
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /ready, port: http}}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: {port}, targetPort: http}}]
"
    )
}

/// A free TCP port on both node addresses.
fn free_port(addrs: &[&str]) -> u16 {
    loop {
        let port = 20_000 + (rand::random::<u16>() % 10_000);
        if addrs.iter().all(|a| std::net::TcpListener::bind((*a, port)).is_ok()) {
            return port;
        }
    }
}

/// Asks the service through `addr` until `want` distinct pods answered.
async fn answers(addr: SocketAddr, tries: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..tries {
        if let Ok(body) = http_get(addr, "/index.html").await {
            seen.insert(body.split_whitespace().next().unwrap_or_default().to_string());
        }
    }
    seen
}

/// A Service over a 3-replica deployment answers from every replica through
/// each node's address; a pod whose readiness probe fails leaves the
/// endpoints; a rolling update under continuous requests fails none; losing
/// a node moves its pods to the other and the service keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_balance_survive_rollouts_and_node_loss() {
    let (_tc, mut nodes, client) = setup(2, 51).await;
    let (a1, a2) = (nodes.agents[0].address.clone(), nodes.agents[1].address.clone());
    let port = free_port(&[&a1, &a2]);
    apply(&client, &web(3, "v1", port)).await;
    eventually("3 ready replicas", Duration::from_secs(90), &nodes, || async {
        let ready = pods(&client, "app=web").await.into_iter().filter(|p| p.is_ready()).count();
        (ready == 3).then_some(())
    })
    .await;
    let names: BTreeSet<String> =
        pods(&client, "app=web").await.into_iter().map(|p| p.metadata.name).collect();
    for addr in [&a1, &a2] {
        let via: SocketAddr = format!("{addr}:{port}").parse().unwrap();
        let seen = eventually("every replica answers", Duration::from_secs(30), &nodes, || async {
            let seen = answers(via, 12).await;
            (seen == names).then_some(seen)
        })
        .await;
        assert_eq!(seen.len(), 3, "through {via}");
    }

    // From inside another pod: by DNS name and by the service variables.
    apply(
        &client,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  containers: [{name: c, image: corral/busybox:1, command: [sleep, '3600']}]\n",
    )
    .await;
    eventually("the client pod Ready", Duration::from_secs(60), &nodes, || async {
        pod(&client, "client").await.filter(|p| p.is_ready())
    })
    .await;
    let inside = docker_container_of("client", "c");
    let cluster_ip = match client.get_object("services", "default", "web").await.expect("service") {
        Object::Service(svc) => svc.spec.cluster_ip.expect("a cluster IP"),
        other => panic!("not a service: {other:?}"),
    };
    let exec = |script: String| {
        let out = std::process::Command::new("docker")
            .args(["exec", &inside, "sh", "-c", &script])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
    };
    // The names resolve to the cluster IP (busybox's own resolver: a static
    // glibc binary cannot resolve through libc, so wget gets the address).
    // (busybox's nslookup applies the search list only to names without a
    // dot, so "web.default" is left to resolvers that honour ndots:5.)
    for name in ["web", "web.default.svc.cluster.local"] {
        eventually(&format!("{name} resolves inside a pod"), Duration::from_secs(30), &nodes, || async {
            let out = exec(format!("nslookup -type=a {name} 2>&1 || true"))?;
            out.lines().any(|l| l.starts_with("Address") && l.trim_end().ends_with(&cluster_ip)).then_some(())
        })
        .await;
    }
    // HTTP by nc (busybox's wget crashes on non-loopback addresses in a
    // static-glibc image): to the address the name resolves to, and to the
    // service variables.
    for target in [
        format!("$(nslookup -type=a web | awk '/^Address/ {{a=$2}} END {{print a}}') {port}"),
        "$WEB_SERVICE_HOST $WEB_SERVICE_PORT".to_string(),
    ] {
        let seen =
            eventually(&format!("{target} from inside a pod"), Duration::from_secs(30), &nodes, || async {
                let mut seen = BTreeSet::new();
                for _ in 0..9 {
                    let script = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {target}");
                    if let Some(reply) = exec(script) {
                        if reply.starts_with("HTTP/1.") {
                            let body = reply.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
                            seen.insert(body.split_whitespace().next().unwrap_or_default().to_string());
                        }
                    }
                }
                (seen == names).then_some(seen)
            })
            .await;
        assert_eq!(seen.len(), 3, "{target}");
    }

    // Readiness: remove one pod's /ready; it leaves the endpoints and the proxy stops sending to it.
    let victim = names.iter().next().unwrap().clone();
    let container = docker_container_of(&victim, "web");
    docker(&["exec", &container, "rm", "/www/ready"]);
    let via: SocketAddr = format!("{}:{port}", a1).parse().unwrap();
    eventually("the unready pod left the service", Duration::from_secs(30), &nodes, || async {
        let p = pod(&client, &victim).await?;
        let seen = answers(via, 12).await;
        (!p.is_ready() && !seen.contains(&victim) && seen.len() == 2).then_some(())
    })
    .await;
    docker(&["exec", &container, "touch", "/www/ready"]);
    eventually("the pod is back", Duration::from_secs(30), &nodes, || async {
        (answers(via, 12).await.len() == 3).then_some(())
    })
    .await;

    // Zero downtime: a rolling update while a client asks continuously.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let (mut ok, mut failed, mut versions) = (0usize, Vec::new(), BTreeSet::new());
        let deadline = Instant::now() + Duration::from_secs(120);
        while !*stop_rx.borrow_and_update() && Instant::now() < deadline {
            match http_get(via, "/index.html").await {
                Ok(body) => {
                    ok += 1;
                    versions.insert(body.split_whitespace().nth(1).unwrap_or_default().to_string());
                }
                Err(e) => failed.push(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, failed, versions)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    apply(&client, &web(3, "v2", port)).await;
    eventually("the rollout done", Duration::from_secs(120), &nodes, || async {
        let ps = pods(&client, "app=web").await;
        let v2_ready = ps.iter().filter(|p| p.is_ready() && p.metadata.deletion_timestamp.is_none()).count();
        let done = ps.len() == 3 && v2_ready == 3 && answers(via, 6).await.len() == 3;
        let only_v2 = {
            let mut v = BTreeSet::new();
            for _ in 0..6 {
                if let Ok(b) = http_get(via, "/index.html").await {
                    v.insert(b.split_whitespace().nth(1).unwrap_or_default().to_string());
                }
            }
            v == BTreeSet::from(["v2".to_string()])
        };
        (done && only_v2).then_some(())
    })
    .await;
    stop_tx.send(true).unwrap();
    let (ok, failed, versions) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 50, "only {ok} requests went through");
    assert!(versions.contains("v1") && versions.contains("v2"), "{versions:?}");

    // Node loss: stop n1's agent and remove its containers.
    nodes.kill(0);
    nodes.remove_containers_of(0);
    let lost = nodes.agents[0].name.clone();
    let via2: SocketAddr = format!("{}:{port}", a2).parse().unwrap();
    eventually("the pods replaced on the other node", Duration::from_secs(90), &nodes, || async {
        let ps = pods(&client, "app=web").await;
        let live: Vec<&Pod> = ps
            .iter()
            .filter(|p| p.is_ready() && p.spec.node_name.as_deref() != Some(lost.as_str()))
            .collect();
        (live.len() == 3).then_some(())
    })
    .await;
    eventually("the service answers through the surviving node", Duration::from_secs(30), &nodes, || async {
        (answers(via2, 12).await.len() == 3).then_some(())
    })
    .await;
}

/// A killed agent comes back and adopts its running containers (no
/// duplicate); a pod deleted while it was down is cleaned up when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_pods_and_cleans_up() {
    let (_tc, mut nodes, client) = setup(1, 61).await;
    apply(
        &client,
        "
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleepers}
spec:
  replicas: 2
  selector: {matchLabels: {app: sleepers}}
  template:
    metadata: {labels: {app: sleepers}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: app, image: corral/busybox:1, command: [sleep, '3600']}]
",
    )
    .await;
    eventually("2 ready pods", Duration::from_secs(60), &nodes, || async {
        (pods(&client, "app=sleepers").await.iter().filter(|p| p.is_ready()).count() == 2).then_some(())
    })
    .await;
    let before = containers_by_pod(&nodes.run_id);
    assert_eq!(before.len(), 2, "{before:?}");

    nodes.kill(0);
    let ps = pods(&client, "app=sleepers").await;
    let (gone, kept) = (&ps[0], &ps[1]);
    client
        .delete_object("pods", "default", &gone.metadata.name)
        .await
        .expect("delete while the agent is down");
    nodes.restart(0);

    let gone_name = gone.metadata.name.clone();
    eventually("the deleted pod cleaned up", Duration::from_secs(60), &nodes, || async {
        let by_pod = containers_by_pod(&nodes.run_id);
        (pod(&client, &gone_name).await.is_none() && !by_pod.contains_key(&gone_name)).then_some(())
    })
    .await;
    // The kept pod's containers are the same ones: adopted, not recreated.
    let after = containers_by_pod(&nodes.run_id);
    assert_eq!(
        after.get(&kept.metadata.name),
        before.get(&kept.metadata.name),
        "containers of a running pod changed"
    );
    // The deployment replaced the deleted pod: two ready pods, each with one sandbox and one app container.
    eventually("2 ready pods again", Duration::from_secs(60), &nodes, || async {
        let ready = pods(&client, "app=sleepers").await.iter().filter(|p| p.is_ready()).count();
        let by_pod = containers_by_pod(&nodes.run_id);
        (ready == 2 && by_pod.len() == 2 && by_pod.values().all(|ids| ids.len() == 2)).then_some(())
    })
    .await;
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("docker runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The running container `container` of pod `pod`.
fn docker_container_of(pod: &str, container: &str) -> String {
    docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=io.corral.pod.name={pod}"),
        "--filter",
        &format!("label=io.corral.container={container}"),
    ])
    .lines()
    .next()
    .expect("the container runs")
    .to_string()
}

/// Running containers of this test run, by pod name.
fn containers_by_pod(run_id: &str) -> BTreeMap<String, BTreeSet<String>> {
    let out = docker(&[
        "ps",
        "--filter",
        &format!("label=io.corral.test={run_id}"),
        "--format",
        "{{.ID}} {{.Label \"io.corral.pod.name\"}}",
    ]);
    let mut by_pod: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in out.lines() {
        if let Some((id, pod)) = line.split_once(' ') {
            by_pod.entry(pod.to_string()).or_default().insert(id.to_string());
        }
    }
    by_pod
}
