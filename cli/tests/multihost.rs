//! Pods on several hosts: every master and worker node on a host of its own
//! (network namespaces on one virtual link, a Docker engine per worker), the
//! pod network routed between them by the node agents, once per backend.
//!
//! - a pod on one host reaches the pods on the others by pod IP, by cluster
//!   IP and by DNS name; the Service's replicas on 3 hosts all answer
//!   through every node's address;
//! - pod IPs lie in their node's pod CIDR;
//! - a node deleted: its routes are gone from every host and its pod CIDR is
//!   given to the next node.
//!
//! Needs root, iproute2, iptables and Debian's docker.io (dockerd); part of
//! the suite.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::hosts::{answered_by, web_app, web_pods, HostCluster};
use common::nodes::apply;
use control_plane::api::{Object, Pod};

async fn ready_pods(hc: &HostCluster, want: usize) -> Vec<Pod> {
    let client = hc.client();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pods: Vec<Pod> = web_pods(&client)
            .await
            .into_iter()
            .filter(|p| p.is_ready() && p.metadata.deletion_timestamp.is_none())
            .collect();
        if pods.len() == want {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "{}/{want} pods ready after 120 s\n{}",
            pods.len(),
            hc.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn pod_ip(p: &Pod) -> String {
    p.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a pod IP")
}

/// One HTTP request from inside pod `from` to `target` (host:port), with busybox's nc.
fn get_from_pod(hc: &HostCluster, from: &str, target: &str) -> (bool, String) {
    let (ip, port) = target.split_once(':').expect("host:port");
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}");
    let (ok, out, err) = hc.corral(&["exec", from, "--", "sh", "-c", &script]);
    (ok, format!("{out}{err}"))
}

async fn pod_network_across_hosts(backend: &str, first_bed: u8) {
    let hc = HostCluster::start(first_bed, 1, 3, backend, &[]).await;
    let client = hc.client();
    apply(&client, &web_app(3, true)).await;
    let pods = ready_pods(&hc, 3).await;

    // One replica per host, each addressed from its node's pod CIDR.
    let mut hosts = BTreeSet::new();
    for p in &pods {
        let node_name = p.spec.node_name.clone().expect("bound");
        let node = hc.node(&node_name).await.expect("its node");
        let cidr = node.pod_cidr().expect("a pod CIDR");
        let ip: std::net::Ipv4Addr = pod_ip(p).parse().expect("IPv4");
        assert!(cidr.contains(&ip), "pod {} has {ip}, outside its node's {cidr}", p.metadata.name);
        hosts.insert(node_name);
    }
    assert_eq!(hosts.len(), 3, "one replica per host");
    // Each host routes the two others' pod CIDRs, through the tunnel for vxlan.
    for i in 0..3 {
        let routes = hc.routes_on(i);
        assert_eq!(routes.lines().count(), 2, "{backend}: routes on {}: {routes}", hc.workers[i].name);
        let tunneled = routes.lines().all(|l| l.contains("dev corral.1"));
        assert_eq!(tunneled, backend == "vxlan", "{backend}: routes on {}: {routes}", hc.workers[i].name);
    }

    // Pod to pod across hosts, by pod IP.
    let started = Instant::now();
    for a in &pods {
        for b in pods.iter().filter(|b| b.metadata.name != a.metadata.name) {
            let target = format!("{}:8080", pod_ip(b));
            let (ok, body) = get_from_pod(&hc, &a.metadata.name, &target);
            assert!(
                ok && answered_by(&body).as_deref() == Some(b.metadata.name.as_str()),
                "{backend}: pod {} ({}) could not reach pod {} at {target}: {body}\n{}",
                a.metadata.name,
                a.spec.node_name.as_deref().unwrap_or("?"),
                b.metadata.name,
                hc.log_tails()
            );
        }
    }
    eprintln!("{backend}: 6 pod-to-pod requests across hosts in {:?}", started.elapsed());

    // By DNS name and cluster IP, from a pod on each host: every replica answers.
    let Ok(Object::Service(svc)) = client.get_object("services", "default", "web").await else {
        panic!("service")
    };
    let cluster_ip = svc.spec.cluster_ip.clone().expect("a cluster IP");
    for a in &pods {
        let (ok, out, err) =
            hc.corral(&["exec", &a.metadata.name, "--", "nslookup", "web.default.svc.cluster.local"]);
        assert!(ok && out.contains(&cluster_ip), "{backend}: DNS from {}: {out}{err}", a.metadata.name);
        let mut seen = BTreeSet::new();
        for _ in 0..9 {
            let (ok, body) = get_from_pod(&hc, &a.metadata.name, &format!("{cluster_ip}:8080"));
            assert!(ok, "{backend}: cluster IP from {}: {body}", a.metadata.name);
            seen.extend(answered_by(&body));
        }
        assert_eq!(
            seen.len(),
            3,
            "{backend}: through the cluster IP from {} only {seen:?} answered",
            a.metadata.name
        );
    }

    // Through every node's address from the machine: every replica answers.
    for h in &hc.workers {
        let mut seen = BTreeSet::new();
        for _ in 0..9 {
            let addr = SocketAddr::new(h.address.into(), 8080);
            match common::http_get(addr, "/").await {
                Ok(body) => seen.extend(answered_by(&body)),
                Err(e) => panic!("{backend}: GET http://{addr}/: {e}\n{}", hc.log_tails()),
            }
        }
        assert_eq!(seen.len(), 3, "{backend}: through node address {} only {seen:?} answered", h.address);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_pods_on_three_hosts_reach_each_other() {
    pod_network_across_hosts("host-gw", 101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_pods_on_three_hosts_reach_each_other() {
    pod_network_across_hosts("vxlan", 121).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_leaves_no_route_and_frees_its_pod_cidr() {
    let mut hc = HostCluster::start(141, 1, 3, "host-gw", &[]).await;
    let client = hc.client();
    let n3 = hc.node("n3").await.expect("n3");
    let cidr = n3.spec.pod_cidr.clone().expect("n3 has a pod CIDR");
    for i in 0..2 {
        let routes = hc.routes_on(i);
        assert!(routes.contains(&cidr), "host {} has no route to n3's {cidr}: {routes}", hc.workers[i].name);
    }
    // The machine dies (its agent stops) and the operator deletes its Node.
    let pid = hc.nodes[2].pid;
    cli::local::stop_pid(pid, Duration::from_secs(10)).expect("agent stops");
    let (ok, out, err) = hc.corral(&["delete", "node", "n3"]);
    assert!(ok, "delete node: {out}{err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stale: Vec<usize> = (0..2).filter(|i| hc.routes_on(*i).contains(&cidr)).collect();
        if stale.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "hosts {stale:?} still route n3's {cidr}\n{}", hc.log_tails());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Its range is free again: the next node gets it.
    apply(&client, "apiVersion: v1\nkind: Node\nmetadata: {name: n4}\n").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(given) = hc.node("n4").await.and_then(|n| n.spec.pod_cidr) {
            assert_eq!(given, cidr, "the released range goes to the next node");
            break;
        }
        assert!(Instant::now() < deadline, "n4 got no pod CIDR");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hc.nodes.truncate(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_up_hosts_serves_the_demo_and_down_leaves_nothing_behind() {
    let dir = tempfile::Builder::new().prefix("corral-up-hosts-").tempdir_in("/tmp").expect("temp dir");
    let state = dir.path().join("state");
    let state_arg = state.to_str().expect("utf-8 path");
    let up = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["up", "--hosts", "--masters", "1", "--nodes", "2", "--state-dir", state_arg])
        .output()
        .expect("corral up runs");
    let file = cli::local::ClusterFile::load(&state);
    let down = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["down", "--state-dir", state_arg])
            .output()
            .expect("corral down runs")
    };
    let bed = file.as_ref().ok().and_then(|f| f.bed.clone());
    let result = std::panic::AssertUnwindSafe(async {
        assert!(up.status.success(), "corral up --hosts: {}", String::from_utf8_lossy(&up.stderr));
        let file = file.as_ref().expect("cluster.json");
        assert!(
            file.masters.iter().chain(&file.nodes).all(|p| p.netns.is_some()),
            "every process on a host of its own"
        );
        assert!(file.nodes.iter().all(|n| n.engine.is_some()), "every node on its own engine");
        // `up` returns once 3 pods are Ready; the nodes' proxies hear of the
        // last endpoint a moment later: ask (bounded) until all 3 answered.
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.len() < 3 && Instant::now() < deadline {
            for n in &file.nodes {
                let addr: SocketAddr = format!("{}:8080", n.address).parse().expect("address");
                seen.extend(common::http_get(addr, "/").await.ok().and_then(|b| answered_by(&b)));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(seen.len(), 3, "the demo's 3 replicas answer through the nodes: {seen:?}");
    });
    let outcome = futures::FutureExt::catch_unwind(result).await;
    let down = down();
    assert!(down.status.success(), "corral down: {}", String::from_utf8_lossy(&down.stderr));
    if let Some(bed) = bed {
        let left: Vec<String> = cli::hosts::netns_list()
            .into_iter()
            .filter(|n| n.starts_with(&format!("{}-", bed.prefix())))
            .collect();
        assert!(left.is_empty(), "corral down left namespaces {left:?}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
