use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;

use super::*;
use crate::transport::TcpDialer;
use crate::types::{Expect, Op, Outcome, Txn};
use crate::{RaftNode, RaftNodeConfig};

fn kv(key: &str, value: &str, revision: u64) -> KeyValue {
    KeyValue { key: key.into(), value: value.into(), revision: Revision(revision) }
}

fn sample() -> Backup {
    Backup {
        cluster_id: Some("c0ffee".into()),
        revision: Revision(42),
        term: 3,
        members: BTreeMap::from([(1, "127.0.0.1:7001".into()), (2, "127.0.0.1:7002".into())]),
        taken_by: 2,
        kvs: vec![kv("/corral/cluster-id", "c0ffee", 5), kv("a", "1", 7), kv("b", "2", 42)],
    }
}

#[test]
fn backup_round_trips_through_its_file_format() {
    let bytes = sample().encode().unwrap();
    assert_eq!(&bytes[..8], MAGIC);
    assert_eq!(u16::from_be_bytes([bytes[8], bytes[9]]), VERSION);
    assert_eq!(Backup::decode(&bytes).unwrap(), sample());
}

#[test]
fn a_foreign_file_is_refused_as_not_a_snapshot() {
    for junk in [&b"apiVersion: v1\nkind: Pod\n"[..], b"", b"CORR"] {
        let err = Backup::decode(junk).unwrap_err();
        assert!(matches!(err, BackupError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("not a Corral snapshot"), "{err}");
    }
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = sample().encode().unwrap();
    for i in HEADER_LEN..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        let err = Backup::decode(&bad).unwrap_err();
        assert!(matches!(err, BackupError::Checksum { .. }), "byte {i}: {err}");
    }
}

#[test]
fn a_truncated_or_extended_file_is_refused_with_both_lengths() {
    let bytes = sample().encode().unwrap();
    let err = Backup::decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(matches!(err, BackupError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{} bytes expected", bytes.len())), "{err}");
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(Backup::decode(&longer).unwrap_err(), BackupError::Truncated { .. }));
    assert!(matches!(Backup::decode(&bytes[..12]).unwrap_err(), BackupError::Truncated { .. }));
}

#[test]
fn a_newer_format_version_asks_for_a_newer_corral() {
    let mut bytes = sample().encode().unwrap();
    bytes[8..10].copy_from_slice(&(VERSION + 1).to_be_bytes());
    let err = Backup::decode(&bytes).unwrap_err();
    assert!(err.to_string().contains("use a newer corral"), "{err}");
}

#[tokio::test]
async fn restore_refuses_a_data_dir_in_use() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("CURRENT"), "x").unwrap();
    let err = restore(&sample(), dir.path(), 1, "127.0.0.1:7001").await.unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
}

fn put(key: &str, value: &str) -> Txn {
    Txn { ops: vec![Op::Put { key: key.into(), value: value.into(), expect: Expect::Any }] }
}

async fn start(dir: &Path, id: NodeId) -> RaftNode {
    let mut config = RaftNodeConfig::new(id, dir.to_path_buf());
    config.small_db = true;
    (config.heartbeat_ms, config.election_min_ms, config.election_max_ms) = (50, 150, 300);
    RaftNode::start(config, Arc::new(TcpDialer::default())).await.unwrap()
}

async fn wait_leader(node: &RaftNode) {
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "the restored master elects itself")
        .await
        .unwrap();
}

/// A backup taken from a live single-master store, restored into a new dir
/// under another id: the master started there leads alone, holds every key
/// with its revision, and gives new writes revisions after the backup's.
#[tokio::test]
async fn restored_master_leads_alone_with_every_key_and_continues_the_revisions() {
    let old_dir = tempfile::tempdir().unwrap();
    let old = start(old_dir.path(), 1).await;
    old.raft.initialize(BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))])).await.unwrap();
    wait_leader(&old).await;
    old.ensure_cluster_id().await.unwrap();
    for i in 0..20 {
        old.propose(put(&format!("k{i:02}"), &format!("v{i}"))).await.unwrap();
    }
    let backup = old.backup().await.unwrap();
    old.shutdown().await;
    let backup = Backup::decode(&backup.encode().unwrap()).unwrap();
    assert_eq!(backup.kvs.len(), 21, "20 keys and the cluster id");
    assert!(backup.cluster_id.as_ref().is_some_and(|id| id.len() >= 16));
    assert_eq!(backup.members, BTreeMap::from([(1, "127.0.0.1:1".to_string())]));

    let new_dir = tempfile::tempdir().unwrap();
    let restored = restore(&backup, &new_dir.path().join("m7"), 7, "127.0.0.1:2").await.unwrap();
    assert_eq!(restored, Restored { keys: 21, revision: backup.revision });

    let node = start(&new_dir.path().join("m7"), 7).await;
    wait_leader(&node).await;
    for kv in &backup.kvs {
        let (got, _) = node.state_machine.get(kv.key.clone()).await.unwrap();
        assert_eq!(got.as_ref(), Some(kv), "key {:?}", String::from_utf8_lossy(&kv.key));
    }
    let (revision, outcome) = node.propose(put("after", "restore")).await.unwrap();
    assert!(matches!(outcome, Outcome::Applied(_)));
    assert!(revision > backup.revision, "new write at {revision}, backup at {}", backup.revision);
    // The identity is kept: the id is not minted again.
    node.ensure_cluster_id().await.unwrap();
    let again = node.backup().await.unwrap();
    assert_eq!(again.cluster_id, backup.cluster_id);
    assert_eq!(again.members, BTreeMap::from([(7, "127.0.0.1:2".to_string())]));
    node.shutdown().await;
}
