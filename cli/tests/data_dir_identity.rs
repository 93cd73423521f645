//! A master that lost its data dir does not vote its way back in (etcd's
//! `--initial-cluster-state`): 3 real masters, one stopped and wiped, then
//! started again with the same `--peers` line: it exits saying what to do,
//! `--join` without removing it first is refused too, and the 2 others keep
//! serving writes. Removed and joined again, it is a voter once more.

mod common;

use std::time::{Duration, Instant};

use cli::local::master_addr;
use common::TestCluster;
use control_plane::CorralClient;
use raft_store::identity::{member_key, DataDirIdentity};
use raft_store::NodeId;

/// Waits until every master's data dir is registered and knows the cluster id.
async fn wait_registered(tc: &TestCluster, client: &CorralClient, ids: &[NodeId]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut registered = 0;
        for id in ids {
            if let Ok((Some(_), _)) = client.get(&member_key(*id), false).await {
                registered += 1;
            }
        }
        let clusters: Vec<Option<String>> = ids
            .iter()
            .map(|id| {
                let dir = &tc.cluster.master(*id).expect("master").data_dir;
                DataDirIdentity::read(dir).ok().flatten().and_then(|i| i.cluster)
            })
            .collect();
        if registered == ids.len() && clusters.iter().all(|c| c.is_some() && *c == clusters[0]) {
            return clusters[0].clone().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "data dirs not registered within 30 s: {clusters:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until master `id`'s log says `text`.
async fn wait_log(tc: &TestCluster, id: NodeId, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&tc.cluster.master(id).expect("master").log).unwrap_or_default();
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "master {id} never logged {text:?}:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restarts master `id` on an empty data dir with `flags`, recorded for cleanup.
fn respawn_wiped(tc: &mut TestCluster, id: NodeId, flags: &[String]) {
    let dir = tc.cluster.master(id).expect("master").data_dir.clone();
    std::fs::remove_dir_all(&dir).expect("wipe the data dir");
    let log = &tc.cluster.master(id).expect("master").log;
    std::fs::write(log, "").expect("truncate the log");
    let info = tc.cluster.spawn_master(id, flags).expect("master starts");
    if let Some(m) = tc.cluster.file.masters.iter_mut().find(|m| m.id == id) {
        *m = info;
    }
}

async fn voters(client: &CorralClient) -> Vec<NodeId> {
    let s = client.status().await.expect("status");
    s.members.iter().filter(|m| m.voter).map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_on_a_wiped_data_dir_does_not_become_a_voter() {
    let mut tc = TestCluster::start(3, &[]).await;
    let client = tc.client();
    let cluster_id = wait_registered(&tc, &client, &[1, 2, 3]).await;
    client.put(b"before", b"1", None).await.expect("write");

    let leader = tc.leader(0).await;
    let victim = (1..=3).find(|id| *id != leader).expect("a follower");
    tc.cluster.stop_master(victim).expect("stop");
    let base = tc.cluster.opts.base_port;
    let peers: Vec<String> = (1..=3).map(|id| format!("{id}={}", master_addr(base, id))).collect();

    // Same --peers line, empty data dir: it refuses to start.
    respawn_wiped(&mut tc, victim, &["--peers".into(), peers.join(",")]);
    let log = wait_log(&tc, victim, "cannot start").await;
    assert!(
        log.contains(&format!("master {victim} starts on an empty data dir"))
            && log.contains(&format!("but cluster {cluster_id}"))
            && log.contains(&format!("already knows master {victim} with the data dir it had"))
            && log.contains(&format!("corral cluster remove-master {victim}"))
            && log.contains("instead of --peers"),
        "{log}"
    );

    // --join while it is still a member with its old data dir: refused as well.
    let others: Vec<String> = (1..=3).filter(|id| *id != victim).map(|id| master_addr(base, id)).collect();
    let join = others.join(",");
    respawn_wiped(&mut tc, victim, &["--join".into(), join.clone()]);
    let log = wait_log(&tc, victim, "refused master").await;
    assert!(log.contains("runs on another data dir than the one the cluster knows"), "{log}");

    // The two others serve writes, with the victim counted as a voter it cannot help.
    for i in 0..20 {
        client.put(format!("after/{i}").as_bytes(), b"v", None).await.expect("write with 2 of 3");
    }
    assert_eq!(voters(&client).await, vec![1, 2, 3]);
    let status = client.status().await.expect("status");
    let ghost = status.members.iter().find(|m| m.id == victim).expect("still a member");
    assert_eq!(ghost.role, "unreachable", "{ghost:?}");

    // What the message says to do: remove it, then join on the empty data dir.
    client.remove_master(victim).await.expect("remove");
    respawn_wiped(&mut tc, victim, &["--join".into(), join]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while voters(&client).await.len() != 3 {
        assert!(Instant::now() < deadline, "master {victim} did not join again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rejoined = wait_registered(&tc, &client, &[1, 2, 3]).await;
    assert_eq!(rejoined, cluster_id, "the same cluster");
    let (kv, _) = client.get(b"after/19", false).await.expect("read");
    assert_eq!(kv.expect("kept").value, b"v");
}
