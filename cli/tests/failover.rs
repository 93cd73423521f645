//! Losing the leader: a new one is elected without an operator, and no
//! acknowledged write is lost.

mod common;

use std::time::{Duration, Instant};

use common::{as_map, TestCluster, Writers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leader_during_writes_loses_no_acknowledged_write() {
    let mut tc = TestCluster::start(3, &[]).await;
    let writers = Writers::start(&tc.client(), 4);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let old = tc.leader(0).await;
    tc.cluster.signal_master(old, libc::SIGKILL).unwrap();
    let killed_at = Instant::now();
    let new = tc.leader(old).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = writers.stop().await;

    assert_ne!(new, old);
    let after_kill = acked.iter().filter(|(_, _, at)| *at > killed_at).count();
    assert!(after_kill > 0, "no write was acknowledged after the leader died");
    assert!(acked.len() > 50, "only {} writes acknowledged", acked.len());
    tc.assert_all_present(&as_map(&acked)).await;
}
