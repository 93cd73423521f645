//! Changing the set of masters while writes continue: a fourth master joins
//! (learner, then voter, catching up through a snapshot), another leaves.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{as_map, TestCluster, Writers};
use control_plane::CorralClient;
use raft_store::transport::TcpDialer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_a_fourth_master_then_remove_one_while_writing() {
    let flags = ["--snapshot-every", "50", "--keep-behind-snapshot", "5"];
    let mut tc = TestCluster::start(3, &flags).await;
    let client = tc.client();
    for i in 0..300 {
        client.put(format!("early/{i}").as_bytes(), b"x", None).await.unwrap();
    }
    let writers = Writers::start(&client, 3);

    let joined = tc.cluster.add_master(4).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = client.status().await.unwrap();
        let voters: Vec<u64> = s.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
        if voters == [1, 2, 3, 4] {
            break;
        }
        assert!(Instant::now() < deadline, "master 4 did not become a voter: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Master 4 joined long after the log was purged behind a snapshot: a
    // stale read from it alone proves the snapshot was sent and installed.
    let only4 = CorralClient::new(vec![joined.address.clone()], Arc::new(TcpDialer::default()));
    let (kv, _) = only4.get(b"early/0", true).await.unwrap();
    assert_eq!(kv.expect("early key on master 4").value, b"x");

    let leader = tc.leader(0).await;
    let leaving = if leader == 2 { 3 } else { 2 };
    let reply = client.remove_master(leaving).await.unwrap();
    assert!(!reply.voters.contains(&leaving), "{reply:?}");
    tc.cluster.stop_master(leaving).unwrap();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let acked = writers.stop().await;
    let s = client.status().await.unwrap();
    let mut ids: Vec<u64> = s.members.iter().map(|m| m.id).collect();
    ids.sort();
    let mut want: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|id| *id != leaving).collect();
    want.sort();
    assert_eq!(ids, want, "status shows the new membership");
    assert!(s.members.iter().all(|m| m.voter && m.role != "unreachable"), "{s:?}");
    tc.assert_all_present(&as_map(&acked)).await;
}
