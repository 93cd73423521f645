//! Real process faults on loopback masters (kill -9 of the leader under
//! load is in failover.rs):
//!
//! - SIGSTOP of the leader for longer than the election timeout, then
//!   SIGCONT: requests queued at the paused old leader while the others
//!   moved on get no stale linearizable read, and nothing it acknowledges
//!   after resuming is lost;
//! - every master killed and restarted at once while writers keep going:
//!   no acknowledged write is lost.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{as_map, TestCluster, Writers};
use control_plane::CorralClient;
use raft_store::transport::TcpDialer;
use raft_store::NodeId;

/// A client of the given masters only.
fn client_of(tc: &TestCluster, ids: &[NodeId], timeout: Duration) -> CorralClient {
    let addrs = ids.iter().map(|id| tc.cluster.master(*id).expect("master").address.clone()).collect();
    CorralClient::new(addrs, Arc::new(TcpDialer::default())).with_timeout(timeout)
}

/// Resumes a paused master (by PID) when dropped, so that a failing test
/// never leaves a stopped process behind (the harness then kills it).
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = cli::local::send_signal(self.0, libc::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_old_leader_serves_no_stale_read_and_loses_nothing_it_acknowledges() {
    let mut tc = TestCluster::start(3, &[]).await;
    let writers = Writers::start(&tc.client(), 2);
    let old = tc.leader(0).await;
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != old).collect();
    let at_old = client_of(&tc, &[old], Duration::ZERO);
    let at_others = client_of(&tc, &others, Duration::from_secs(30));
    at_old.put(b"k", b"before", None).await.expect("write through the leader");
    at_old.get(b"k", false).await.expect("a connection to the leader is up");
    let old_term =
        at_old.member_status(&tc.cluster.master(old).unwrap().address).await.unwrap().member.unwrap().term;

    tc.cluster.signal_master(old, libc::SIGSTOP).unwrap();
    let paused_at = Instant::now();
    let guard = Resume(tc.cluster.master(old).unwrap().pid);
    // The others elect a leader and move on.
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        if let Ok(s) = at_others.clone().with_timeout(Duration::from_secs(2)).status().await {
            if s.leader_id != 0 && s.leader_id != old {
                break s.leader_id;
            }
        }
        assert!(Instant::now() < deadline, "no new leader within 30 s of pausing master {old}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after_rev = at_others.put(b"k", b"after", None).await.expect("write through the new leader");

    // Queued at the paused master: linearizable reads invoked after "after"
    // was acknowledged, and writes.
    let reads: Vec<_> = (0..4)
        .map(|_| {
            let c = at_old.clone();
            tokio::spawn(async move { c.get(b"k", false).await })
        })
        .collect();
    let writes: Vec<_> = (0..4)
        .map(|i| {
            let c = at_old.clone();
            tokio::spawn(async move { c.put(format!("queued/{i}").as_bytes(), b"v", None).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused_for = paused_at.elapsed();
    drop(guard); // SIGCONT
    assert!(paused_for > Duration::from_secs(1), "paused for only {paused_for:?}");

    for r in reads {
        match r.await.unwrap() {
            Ok((Some(kv), _)) => assert_eq!(
                (kv.value.as_slice(), kv.revision),
                (b"after".as_slice(), after_rev),
                "the resumed old leader served a stale linearizable read"
            ),
            Ok((None, _)) => panic!("the resumed old leader read no value for k"),
            Err(e) => eprintln!("read at the resumed old leader refused: {e}"),
        }
    }
    let mut acked_by_old = Vec::new();
    for (i, w) in writes.into_iter().enumerate() {
        match w.await.unwrap() {
            Ok(rev) => acked_by_old.push((format!("queued/{i}"), rev)),
            Err(e) => eprintln!("write at the resumed old leader refused: {e}"),
        }
    }

    // The old leader follows the new term and leads nothing.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let me = at_old.member_status(&tc.cluster.master(old).unwrap().address).await;
        if let Ok(m) = me.map(|r| r.member.unwrap()) {
            if m.term > old_term && m.role != "leader" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "master {old} did not step down after resuming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acked = writers.stop().await;
    tc.assert_all_present(&as_map(&acked)).await;
    for (key, rev) in &acked_by_old {
        let (kv, _) = tc.client().get(key.as_bytes(), false).await.unwrap();
        assert_eq!(kv.map(|kv| kv.revision), Some(*rev), "{key} acknowledged by master {old} is lost");
    }
    let (kv, _) = tc.client().get(b"k", false).await.unwrap();
    assert_eq!(kv.unwrap().value, b"after");
    eprintln!(
        "paused master {old} for {paused_for:?}; master {new} led meanwhile; {} of 4 queued writes acknowledged \
         after resuming; {} background writes acknowledged and present",
        acked_by_old.len(),
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_master_at_once_under_load_loses_no_acknowledged_write() {
    let mut tc = TestCluster::start(3, &["--snapshot-every", "200", "--keep-behind-snapshot", "20"]).await;
    let writers = Writers::start(&tc.client(), 4);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Twice: kill -9 of every master at once, start them all again at once,
    // while the writers keep writing.
    let mut restarted_at = Instant::now();
    for round in 0..2 {
        for id in 1..=3 {
            tc.cluster.signal_master(id, libc::SIGKILL).unwrap();
        }
        for id in 1..=3 {
            tc.cluster.restart_master(id).unwrap();
        }
        restarted_at = Instant::now();
        tc.cluster
            .wait_ready(Duration::from_secs(60), |_| {})
            .await
            .unwrap_or_else(|e| panic!("cluster not ready after restart {round}: {e}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let acked = writers.stop().await;
    let after = acked.iter().filter(|(_, _, at)| *at > restarted_at).count();
    assert!(after > 0, "no write acknowledged after the last restart");
    assert!(acked.len() > 100, "only {} writes acknowledged", acked.len());
    tc.assert_all_present(&as_map(&acked)).await;
}
