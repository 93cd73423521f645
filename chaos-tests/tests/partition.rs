//! Isolate the leader from the majority: the majority elects a new leader
//! and commits; the isolated old leader commits nothing; after the partition
//! heals every member converges to the same state.

use std::collections::BTreeMap;
use std::time::Duration;

use chaos_tests::{master_host, run_master, run_seeded, sim_client};
use raft_store::NodeId;

const MASTERS: u64 = 3;

/// Polls until a leader is known (and, if `not` is set, it is not `not`).
async fn leader(not: NodeId, via: &[NodeId]) -> NodeId {
    let client = sim_client(via, Duration::from_secs(2));
    loop {
        if let Ok(s) = client.status().await {
            if s.leader_id != 0 && s.leader_id != not {
                return s.leader_id;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// This master's own view: (committed, applied) indexes.
async fn indexes(id: NodeId) -> (u64, u64) {
    let client = sim_client(&[id], Duration::from_secs(2));
    let m = client.member_status(&chaos_tests::master_addr(id)).await.expect("member status").member.unwrap();
    (m.committed_index, m.applied_index)
}

/// Every key of one master's state, read without a read index, but the
/// cluster's own bookkeeping (`/corral/`: its id and member registry, which
/// the leader writes when it hears from a member, so also after a heal).
async fn state_of(id: NodeId) -> BTreeMap<Vec<u8>, (Vec<u8>, u64)> {
    let (kvs, _) = sim_client(&[id], Duration::from_secs(5)).list(b"", true).await.expect("stale list");
    user_keys(kvs)
}

fn user_keys(kvs: Vec<raft_store::KeyValue>) -> BTreeMap<Vec<u8>, (Vec<u8>, u64)> {
    kvs.into_iter()
        .filter(|kv| !kv.key.starts_with(b"/corral/"))
        .map(|kv| (kv.key, (kv.value, kv.revision.0)))
        .collect()
}

fn scenario(seed: u64) -> turmoil::Result {
    let dirs = tempfile::tempdir()?;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5))
        .build();
    for id in 1..=MASTERS {
        let dir = dirs.path().join(master_host(id));
        sim.host(master_host(id), move || run_master(id, MASTERS, dir.clone()));
    }
    sim.client("client", async move {
        let all: Vec<NodeId> = (1..=MASTERS).collect();
        let old = leader(0, &all).await;
        let client = sim_client(&all, Duration::from_secs(20));
        for i in 0..20 {
            client.put(format!("before/{i}").as_bytes(), b"v", None).await?;
        }

        // Cut the leader off from both followers (the client still reaches everyone).
        tracing::info!(old, "wrote 20 keys; partitioning the leader");
        let majority: Vec<NodeId> = all.iter().copied().filter(|id| *id != old).collect();
        for id in &majority {
            turmoil::partition(master_host(old), master_host(*id));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (old_committed, old_applied) = indexes(old).await;

        // A write sent to the isolated leader alone must not be acknowledged.
        let lone = sim_client(&[old], Duration::from_secs(3));
        let stranded = tokio::spawn(async move { lone.put(b"stranded", b"lost", None).await });

        // The majority elects a new leader and commits.
        tracing::info!(old_committed, old_applied, "isolated");
        let new = leader(old, &majority).await;
        tracing::info!(new, "new leader");
        assert_ne!(new, old);
        let majority_client = sim_client(&majority, Duration::from_secs(20));
        for i in 0..20 {
            majority_client.put(format!("during/{i}").as_bytes(), b"v", None).await?;
        }
        tracing::info!("majority committed 20 keys");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(stranded.await?.is_err(), "the isolated old leader acknowledged a write");
        let (committed, applied) = indexes(old).await;
        assert_eq!(
            (committed, applied),
            (old_committed, old_applied),
            "the isolated old leader committed something"
        );

        // Heal; every member converges to the same state, without the stranded write.
        for id in &majority {
            turmoil::repair(master_host(old), master_host(*id));
        }
        tracing::info!("healed");
        let (reference, _) = client.list(b"", false).await?;
        let reference = user_keys(reference);
        assert_eq!(reference.len(), 40);
        assert!(!reference.contains_key(b"stranded".as_slice()));
        for id in &all {
            let mut tries = 0;
            while state_of(*id).await != reference {
                tries += 1;
                assert!(tries < 100, "master {id} did not converge after the partition healed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    });
    sim.run()
}

#[test]
fn isolated_leader_commits_nothing_and_the_cluster_converges_after_healing() {
    run_seeded("partition", &(1..=10).collect::<Vec<_>>(), scenario);
}
