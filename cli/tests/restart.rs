//! Stopping every master at once and starting them again from their data
//! dirs: every acknowledged write is there, and the cluster elects a leader
//! and accepts writes.

mod common;

use std::time::Duration;

use common::{as_map, TestCluster, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_every_acknowledged_write() {
    // Small snapshot interval: the restart also recovers from snapshot + log tail.
    let mut tc = TestCluster::start(3, &["--snapshot-every", "100", "--keep-behind-snapshot", "10"]).await;
    let writers = Writers::start(&tc.client(), 4);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // kill -9 of every master while the writers are still running: only what
    // was fsynced by a quorum may have been acknowledged.
    for id in 1..=3 {
        tc.cluster.signal_master(id, libc::SIGKILL).unwrap();
    }
    let acked = writers.stop().await;
    assert!(acked.len() > 100, "only {} writes acknowledged", acked.len());

    for id in 1..=3 {
        tc.cluster.restart_master(id).unwrap();
    }
    tc.cluster.wait_ready(Duration::from_secs(60), |_| {}).await.expect("cluster ready after restart");
    tc.assert_all_present(&as_map(&acked)).await;

    let rev = tc.client().put(b"after-restart", b"yes", None).await.expect("write after restart");
    let (kv, _) = tc.client().get(b"after-restart", false).await.unwrap();
    assert_eq!(kv.expect("written").revision, rev);
}
