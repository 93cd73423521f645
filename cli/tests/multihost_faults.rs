//! Real network faults on the multi-host test bed (real processes, real
//! packets dropped), beside the turmoil simulations:
//!
//! - a worker host cut off the link: its pods are replaced on the other
//!   hosts within grace + eviction, the Service keeps answering through the
//!   healthy hosts (failed requests counted), and when it comes back its
//!   stale containers are removed and its routes converge;
//! - the leader master's host isolated from the other masters (the machine
//!   still reaches it): a new leader among the others, writes go on, the old
//!   leader commits nothing, and no acknowledged write is lost.
//!
//! Needs root, iproute2, iptables and Debian's docker.io; part of the suite.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hosts::{web_app, web_pods, HostCluster};
use common::nodes::apply;
use common::{as_map, Writers};
use control_plane::api::Pod;
use control_plane::CorralClient;
use raft_store::transport::TcpDialer;

fn on(p: &Pod, node: &str) -> bool {
    p.spec.node_name.as_deref() == Some(node)
}

/// Pod containers the engine of worker `i` runs (`docker ps`, names of sandboxes).
fn sandboxes_on(hc: &HostCluster, i: usize) -> Vec<String> {
    let socket = hc.workers[i].engine.clone().expect("an engine");
    let out = std::process::Command::new("docker")
        .args([
            "-H",
            &format!("unix://{}", socket.display()),
            "ps",
            "--filter",
            "label=io.corral.role=sandbox",
        ])
        .args(["--format", "{{.Label \"io.corral.pod.name\"}}"])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_host_cut_off_has_its_pods_replaced_and_the_service_keeps_answering() {
    let (grace, eviction) = (4, 6);
    let flags = ["--node-grace-seconds", "4", "--node-eviction-seconds", "6"];
    let hc = HostCluster::start(161, 1, 3, "host-gw", &flags).await;
    let client = hc.client();
    apply(&client, &web_app(6, false)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while web_pods(&client).await.iter().filter(|p| p.is_ready()).count() < 6 {
        assert!(Instant::now() < deadline, "6 replicas not ready\n{}", hc.log_tails());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = web_pods(&client).await;
    let lost: Vec<String> = before.iter().filter(|p| on(p, "n1")).map(|p| p.metadata.name.clone()).collect();
    assert!(
        !lost.is_empty(),
        "the spread put no replica on n1: {:?}",
        before.iter().map(|p| &p.spec.node_name).collect::<Vec<_>>()
    );

    // Requests through the healthy hosts all along: bounded, one every 100 ms.
    let healthy: Vec<SocketAddr> =
        hc.workers[1..].iter().map(|h| SocketAddr::new(h.address.into(), 8080)).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed, mut errors) = (0u32, 0u32, Vec::new());
            for n in 0..2000usize {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match common::http_get(healthy[n % healthy.len()], "/").await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        errors.push(e);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed, errors)
        })
    };

    let cut_at = Instant::now();
    hc.bed.set_connected(&hc.workers[0], false).expect("cut n1 off");
    let deadline = cut_at + Duration::from_secs(grace + eviction + 60);
    let replaced_after = loop {
        let now = web_pods(&client).await;
        let ready_elsewhere = now.iter().filter(|p| p.is_ready() && !on(p, "n1")).count();
        if ready_elsewhere >= 6 {
            break cut_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "n1's pods not replaced within {:?}\n{}",
            deadline - cut_at,
            hc.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed, errors) = load.await.expect("load task");
    eprintln!(
        "worker host cut off: replacements Ready {replaced_after:?} after the cut (grace {grace} s + eviction {eviction} s); \
         {ok} requests answered through the healthy hosts, {failed} failed {:?}",
        &errors[..errors.len().min(3)]
    );
    assert!(
        replaced_after >= Duration::from_secs(grace + eviction),
        "replaced before grace + eviction: {replaced_after:?}"
    );
    assert!(
        failed * 50 <= ok + failed,
        "more than 2% of requests through the healthy hosts failed: {failed} of {}",
        ok + failed
    );

    // Back on the link: the lost pods' containers go, the routes converge.
    hc.bed.set_connected(&hc.workers[0], true).expect("bring n1 back");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stale: Vec<String> = sandboxes_on(&hc, 0).into_iter().filter(|n| lost.contains(n)).collect();
        if stale.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "n1 still runs its replaced pods {stale:?}\n{}", hc.log_tails());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    hc.wait_nodes_up().await;
    for i in 0..3 {
        assert_eq!(
            hc.routes_on(i).lines().count(),
            2,
            "routes on {}: {}",
            hc.workers[i].name,
            hc.routes_on(i)
        );
    }
    assert_eq!(web_pods(&client).await.len(), 6, "exactly the replica count after healing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_masters_host_isolated_from_the_others_loses_leadership_and_commits_nothing() {
    let hc = HostCluster::start(181, 3, 0, "host-gw", &[]).await;
    let client = hc.client();
    let status = client.status().await.expect("status");
    let old = status.leader_id;
    let masters = hc.cluster.file.masters.clone();
    let old_host = hc.cluster.opts.master_hosts[old as usize - 1].clone();
    let others: Vec<_> =
        hc.cluster.opts.master_hosts.iter().filter(|h| h.name != old_host.name).cloned().collect();
    let only = |addr: &str| CorralClient::new(vec![addr.to_string()], Arc::new(TcpDialer::default()));
    let old_addr = masters.iter().find(|m| m.id == old).expect("leader").address.clone();
    let other_addrs: Vec<String> =
        masters.iter().filter(|m| m.id != old).map(|m| m.address.clone()).collect();

    let writers = Writers::start(&client, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cut_at = Instant::now();
    hc.bed
        .isolate_from(&old_host, &others.iter().map(|h| h.address).collect::<Vec<_>>())
        .expect("isolate the leader's host");
    let majority = CorralClient::new(other_addrs.clone(), Arc::new(TcpDialer::default()))
        .with_timeout(Duration::from_secs(2));
    let new = loop {
        if let Ok(s) = majority.status().await {
            if s.leader_id != 0 && s.leader_id != old {
                break s.leader_id;
            }
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(30),
            "no new leader among the others within 30 s\n{}",
            hc.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elected_after = cut_at.elapsed();
    // The old leader, still reachable from the machine, commits nothing more.
    let own_commit = |s: &control_plane::pb::StatusResponse| {
        s.members.iter().find(|m| m.id == old).map(|m| m.committed_index).unwrap_or_default()
    };
    let isolated = only(&old_addr).with_timeout(Duration::from_secs(3));
    let committed_then = own_commit(&isolated.status().await.expect("the old leader answers the machine"));
    let refused = isolated.put(b"w/isolated", b"x", None).await;
    assert!(refused.is_err(), "a write through the isolated old leader was acknowledged");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let committed_later = own_commit(&isolated.status().await.expect("the old leader answers the machine"));
    assert_eq!(committed_then, committed_later, "the isolated old leader committed entries");

    hc.bed.heal(&old_host).expect("heal");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = writers.stop().await;
    let after_cut = acked.iter().filter(|(_, _, t)| *t > cut_at + elected_after).count();
    eprintln!(
        "leader master {old} isolated: master {new} leads {elected_after:?} later; {} writes acknowledged, {after_cut} after the new election",
        acked.len()
    );
    assert!(after_cut > 0, "no write acknowledged after the new leader was elected");
    let (kvs, _) = client.list(b"w/", false).await.expect("list");
    let stored: BTreeMap<String, String> = kvs
        .into_iter()
        .map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap()))
        .collect();
    let acked = as_map(&acked);
    let missing: Vec<&String> = acked.keys().filter(|k| stored.get(*k) != acked.get(*k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(!stored.contains_key("w/isolated"), "the refused write was applied");
}
