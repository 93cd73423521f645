//! One master's Raft participant: the database, log store, state machine,
//! openraft instance and proposer, wired together and started.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backup::{Backup, CLUSTER_ID_KEY};
use crate::db::{Db, IoMode};
use crate::error::StoreError;
use crate::grpc::{RaftGrpc, RaftServiceServer};
use crate::log_store::LogStore;
use crate::network::NetworkFactory;
use crate::proposer::{ProposeError, Proposer};
use crate::state_machine::{History, StateMachine};
use crate::transport::Dialer;
use crate::types::{Expect, Op, Outcome, Revision, Txn};
use crate::{NodeId, Raft};

/// Everything that shapes one master's Raft participant.
#[derive(Debug, Clone)]
pub struct RaftNodeConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    pub io: IoMode,
    /// Small RocksDB buffers, for tests and simulations.
    pub small_db: bool,
    pub history: History,
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for slow followers.
    pub keep_behind_snapshot: u64,
}

impl RaftNodeConfig {
    /// Defaults for masters on one machine or a LAN: 100 ms heartbeats and a
    /// 500-1000 ms election timeout (etcd's are 100 ms and 1 s). openraft
    /// bounds every AppendEntries by the heartbeat interval, so shorter
    /// heartbeats make a busy leader (tens of thousands of pods bound on two
    /// cores) miss its acks and lose leadership for nothing. openraft adds a
    /// leader lease of one maximum timeout before a follower stands, so a
    /// dead leader is replaced 1.5-2 s after its last heartbeat.
    pub fn new(id: NodeId, data_dir: PathBuf) -> Self {
        RaftNodeConfig {
            id,
            data_dir,
            io: IoMode::BlockingPool,
            small_db: false,
            history: History::default(),
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            snapshot_every: 10_000,
            keep_behind_snapshot: 1_000,
        }
    }

    fn openraft_config(&self) -> Result<Arc<openraft::Config>, StoreError> {
        let config = openraft::Config {
            cluster_name: "corral".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            install_snapshot_timeout: 2_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot,
            snapshot_max_chunk_size: 4 << 20,
            // openraft bounds an AppendEntries by the heartbeat interval:
            // keep each one small enough to travel within it.
            // (an entry holds up to 1 MiB of batched writes).
            max_payload_entries: 8,
            ..Default::default()
        };
        Ok(Arc::new(config.validate().map_err(|e| StoreError::Task(format!("invalid raft config: {e}")))?))
    }
}

/// A running Raft participant. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    pub raft: Raft,
    pub state_machine: StateMachine,
    committed: Arc<AtomicU64>,
    proposer: Proposer,
}

impl RaftNode {
    /// Opens the data dir (creating it when new) and starts Raft. The node
    /// is uninitialized until [`Raft::initialize`] or a leader adds it.
    pub async fn start(config: RaftNodeConfig, dialer: Arc<dyn Dialer>) -> Result<Self, StoreError> {
        let db = Db::open(&config.data_dir, config.io, config.small_db)?;
        let log = LogStore::new(db.clone());
        let committed = log.committed_index();
        let state_machine = StateMachine::open(db, config.history)?;
        let raft = Raft::new(
            config.id,
            config.openraft_config()?,
            NetworkFactory::new(dialer),
            log,
            state_machine.clone(),
        )
        .await
        .map_err(|e| StoreError::Task(format!("cannot start raft: {e}")))?;
        let proposer = Proposer::start(raft.clone());
        Ok(RaftNode { id: config.id, raft, state_machine, committed, proposer })
    }

    /// The gRPC service other masters replicate through.
    pub fn raft_service(&self) -> RaftServiceServer<RaftGrpc> {
        RaftGrpc::new(self.raft.clone()).into_server()
    }

    /// Proposes a transaction; returns once it is committed and applied here.
    pub async fn propose(&self, txn: Txn) -> Result<(Revision, Outcome), ProposeError> {
        self.proposer.propose(txn).await
    }

    /// Gives the cluster its id if it has none yet: a random one, written
    /// create-only, so the first writer's id stands for good (the others
    /// are conflicts that change nothing). Only the leader can write it.
    pub async fn ensure_cluster_id(&self) -> Result<(), ProposeError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let op = Op::Put { key: CLUSTER_ID_KEY.to_vec(), value: id.into_bytes(), expect: Expect::Absent };
        self.propose(Txn { ops: vec![op] }).await.map(|_| ())
    }

    /// A backup of everything this master has applied, at one revision. The
    /// caller makes it linearizable (a read index on the leader) first.
    pub async fn backup(&self) -> Result<Backup, StoreError> {
        Ok(Backup::from_image(self.state_machine.image().await?, self.id))
    }

    /// The highest log index this master knows to be committed.
    pub fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Stops Raft; the database closes when the last handle is dropped.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }
}
