//! Group commit: concurrent client transactions are batched into one Raft
//! entry, so that many writes share one log append and one fsync.
//!
//! openraft 0.9 appends (and syncs) each client request on its own; without
//! this batching a master's write rate would be one fsync per write.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::limits::{self, LimitError};
use crate::types::{Command, Outcome, Revision, Txn};
use crate::{NodeId, Raft};

/// The most transactions in one entry.
const MAX_BATCH: usize = 256;
/// The most bytes (keys + values) in one entry.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Entries proposed but not yet committed, at most.
const IN_FLIGHT: usize = 4;

/// Why a proposal did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error("this master is not the leader{}", leader_hint(.leader))]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("raft is stopped on this master: {0}")]
    Fatal(String),
}

fn leader_hint(leader: &Option<(NodeId, String)>) -> String {
    match leader {
        Some((id, addr)) => format!(" (master {id} at {addr} leads)"),
        None => " and no leader is known yet (an election is under way)".to_string(),
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>> for ProposeError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                ProposeError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                ProposeError::Fatal(e.to_string())
            }
            RaftError::Fatal(f) => ProposeError::Fatal(f.to_string()),
        }
    }
}

type Reply = oneshot::Sender<Result<(Revision, Outcome), ProposeError>>;

/// The entry point for writes: cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<(Txn, Reply)>,
}

impl Proposer {
    /// Starts the batching task for `raft`. It ends when every `Proposer` clone is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    /// Proposes one transaction and waits until it is committed and applied.
    /// Returns the revision of its entry and its outcome.
    pub async fn propose(&self, txn: Txn) -> Result<(Revision, Outcome), ProposeError> {
        limits::check_txn(&txn)?;
        let (reply, rx) = oneshot::channel();
        self.tx.send((txn, reply)).await.map_err(|_| ProposeError::Fatal("proposer stopped".into()))?;
        rx.await.map_err(|_| ProposeError::Fatal("proposer stopped".into()))?
    }
}

fn txn_bytes(txn: &Txn) -> usize {
    txn.ops
        .iter()
        .map(|op| {
            op.key().len()
                + match op {
                    crate::types::Op::Put { value, .. } => value.len(),
                    _ => 0,
                }
        })
        .sum()
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<(Txn, Reply)>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        // Whatever queued up while we waited for a slot joins this entry.
        let mut bytes = txn_bytes(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += txn_bytes(&item.0);
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (txns, replies): (Vec<Txn>, Vec<Reply>) = batch.into_iter().unzip();
            match raft.client_write(Command::Txns(txns)).await {
                Ok(resp) => {
                    let revision = resp.data.revision;
                    for (reply, outcome) in replies.into_iter().zip(resp.data.outcomes) {
                        let _ = reply.send(Ok((revision, outcome)));
                    }
                }
                Err(e) => {
                    let e = ProposeError::from(e);
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}
