//! Corral's replicated store: openraft over RocksDB.
//!
//! A versioned key-value map replicated by Raft. Every key carries the
//! revision (Raft log index) that last changed it; writes are transactions
//! with optional compare-and-swap conditions; watchers follow a key prefix
//! from any retained revision with no gap and no repeat. The Raft transport
//! is tonic gRPC over an injected [`transport::Dialer`], so the same code runs
//! on real sockets and on turmoil's simulated network.
//!
//! This crate knows nothing of pods or nodes: it stores bytes.

pub mod backup;
pub mod codec;
pub mod db;
pub mod error;
pub mod grpc;
pub mod identity;
pub mod limits;
pub mod log_store;
pub mod network;
pub mod node;
pub mod proposer;
pub mod state_machine;
pub mod transport;
pub mod types;
pub mod watch;

pub mod pb {
    //! Generated from `proto/raft.proto`.
    tonic::include_proto!("corral.raft.v1");
}

use std::io::Cursor;

pub use error::StoreError;
pub use node::{RaftNode, RaftNodeConfig};
pub use types::*;

/// A master's id in the Raft group.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Corral's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
