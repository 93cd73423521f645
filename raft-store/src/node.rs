//! One master's Raft participant: the database, log store, state machine,
//! openraft instance and proposer, wired together and started.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::backup::{Backup, CLUSTER_ID_KEY};
use crate::db::{Db, IoMode};
use crate::error::StoreError;
use crate::grpc::{RaftGrpc, RaftServiceServer};
use crate::identity::{self, DataDirIdentity, Identity};
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
    /// The data dir's identity and the member registry ([`identity`]).
    pub identity: Identity,
    committed: Arc<AtomicU64>,
    proposer: Proposer,
}

impl RaftNode {
    /// Opens the data dir (creating it when new) and starts Raft. The node
    /// is uninitialized until [`Raft::initialize`] or a leader adds it.
    /// Refuses a data dir that belongs to another master id.
    pub async fn start(config: RaftNodeConfig, dialer: Arc<dyn Dialer>) -> Result<Self, StoreError> {
        let db = Db::open(&config.data_dir, config.io, config.small_db)?;
        let me = DataDirIdentity::load_or_create(&config.data_dir, config.id)?;
        let identity = Identity::new(me, config.data_dir.clone());
        let log = LogStore::new(db.clone());
        let committed = log.committed_index();
        let state_machine = StateMachine::open(db, config.history)?;
        let raft = Raft::new(
            config.id,
            config.openraft_config()?,
            NetworkFactory::new(dialer, identity.clone()),
            log,
            state_machine.clone(),
        )
        .await
        .map_err(|e| StoreError::Task(format!("cannot start raft: {e}")))?;
        let proposer = Proposer::start(raft.clone());
        let node = RaftNode { id: config.id, raft, state_machine, identity, committed, proposer };
        // The registry as this data dir last applied it, before any peer is heard.
        node.refresh_identity().await?;
        Ok(node)
    }

    /// The gRPC service other masters replicate through.
    pub fn raft_service(&self) -> RaftServiceServer<RaftGrpc> {
        RaftGrpc::new(self.raft.clone(), self.identity.clone()).into_server()
    }

    /// Reads the member registry and the cluster id from the applied state
    /// into [`RaftNode::identity`] (persisting a newly learned cluster id).
    pub async fn refresh_identity(&self) -> Result<(), StoreError> {
        let (mut kvs, _, _) = self.state_machine.list(identity::MEMBERS_PREFIX.to_vec(), None, 0).await?;
        let (id, _) = self.state_machine.get(CLUSTER_ID_KEY.to_vec()).await?;
        kvs.extend(id);
        let (registry, cluster) = identity::read_registry(&kvs);
        self.identity.refresh(registry, cluster)
    }

    /// One pass of identity upkeep: refresh, and on the leader, mint the
    /// cluster id if it has none, register the incarnation of every member
    /// heard from for the first time, and forget members that left. Run it
    /// every second or so on every master.
    pub async fn maintain_identity(&self) -> Result<(), StoreError> {
        self.refresh_identity().await?;
        let metrics = self.raft.metrics().borrow().clone();
        self.identity.observe_membership(metrics.membership_config.log_id().as_ref().copied());
        if metrics.current_leader != Some(self.id) || metrics.state != openraft::ServerState::Leader {
            return Ok(());
        }
        let membership = metrics.membership_config.membership().clone();
        let task = |e: ProposeError| StoreError::Task(format!("identity upkeep: {e}"));
        if self.identity.me().cluster.is_none() {
            self.ensure_cluster_id().await.map_err(task)?;
        }
        let mut ops = Vec::new();
        for (member, incarnation) in self.identity.unregistered() {
            if membership.get_node(&member).is_some() {
                tracing::info!(master = member, %incarnation, "registering a member's data dir");
                let key = identity::member_key(member);
                ops.push(Op::Put { key, value: incarnation.into_bytes(), expect: Expect::Absent });
            }
        }
        let (registered, _, _) = self.state_machine.list(identity::MEMBERS_PREFIX.to_vec(), None, 0).await?;
        for kv in registered {
            if identity::member_of_key(&kv.key).is_some_and(|m| membership.get_node(&m).is_none()) {
                ops.push(Op::Delete { key: kv.key, expect: Expect::Revision(kv.revision) });
            }
        }
        // One at a time: a conflict (another leader's write) must not hold up the rest.
        for op in ops {
            self.propose(Txn { ops: vec![op] }).await.map_err(task)?;
        }
        Ok(())
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
