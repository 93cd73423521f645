//! Backups of the store, and the restore that starts a new cluster from one.
//!
//! A backup is every key with its value and revision, all read at one
//! applied revision, plus that revision, its term, and the identity of the
//! cluster it came from (its cluster id and its masters). It is taken on the
//! leader after a read index (see the control plane's cluster service), so it
//! holds every write acknowledged before it was asked for.
//!
//! The file format, version 1 (all integers big-endian):
//!
//! ```text
//! magic     8 bytes  "CORRALBK"
//! version   u16      1
//! length    u64      bytes of the body
//! body      length   codec::encode(Backup): bincode behind a format byte
//! checksum  u32      CRC-32 (IEEE) of everything before it
//! ```
//!
//! [`restore`] writes a fresh data dir holding the backup as an installed
//! Raft snapshot whose only voter is the restoring master, so `corral master`
//! started on it elects itself and continues the revisions after the
//! backup's (others then join with `corral cluster add-master`), like etcd's
//! `snapshot restore`. It does not touch the Raft log of the old cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, CommittedLeaderId, Membership};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::db::{Db, IoMode};
use crate::error::StoreError;
use crate::identity::MEMBERS_PREFIX;
use crate::log_store::LogStore;
use crate::state_machine::{History, Image, SnapshotBody, StateMachine};
use crate::types::{KeyValue, Revision};
use crate::{LogId, NodeId, SnapshotMeta, StoredMembership, Vote};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"CORRALBK";
/// The file format this build writes (and the newest it reads).
pub const VERSION: u16 = 1;
/// The key holding the cluster's id: minted once (the first time a backup
/// is taken), kept in the replicated map, so it survives restarts and is
/// carried over by a restore.
pub const CLUSTER_ID_KEY: &[u8] = b"/corral/cluster-id";

const HEADER_LEN: usize = 8 + 2 + 8;
const CHECKSUM_LEN: usize = 4;

/// Why a file is not a backup this build can use.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "not a Corral snapshot: it starts with {found:?}, not {:?}; check the file name",
        String::from_utf8_lossy(MAGIC)
    )]
    Foreign { found: String },
    #[error("snapshot format version {0} is newer than this corral reads ({VERSION}): use a newer corral")]
    NewerVersion(u16),
    #[error("the snapshot is truncated: {expected} bytes expected, {actual} present; take it again")]
    Truncated { expected: u64, actual: u64 },
    #[error("the snapshot is corrupt: checksum {stored:08x} stored, {computed:08x} computed; take it again or use another copy")]
    Checksum { stored: u32, computed: u32 },
    #[error("the snapshot's body is unreadable ({0}); take it again or use another copy")]
    Body(#[from] codec::CodecError),
    #[error("data dir {0} is not empty: restore writes a new data dir; pick an empty or missing one")]
    DataDirInUse(String),
    #[error("the snapshot holds no revision (an empty, uninitialised store): nothing to restore")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One backup: every key at one revision, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// The cluster's id ([`CLUSTER_ID_KEY`]), if it has one.
    pub cluster_id: Option<String>,
    /// The applied revision every key was read at.
    pub revision: Revision,
    /// The term of the log entry at `revision`.
    pub term: u64,
    /// The cluster's masters (id and address) at `revision`.
    pub members: BTreeMap<NodeId, String>,
    /// The master that read it (the leader).
    pub taken_by: NodeId,
    /// Every key, in key order.
    pub kvs: Vec<KeyValue>,
}

impl Backup {
    /// The backup of a state machine image read on master `taken_by`.
    pub fn from_image(image: Image, taken_by: NodeId) -> Self {
        let members =
            image.membership.membership().nodes().map(|(id, node)| (*id, node.addr.clone())).collect();
        let cluster_id = image
            .kvs
            .iter()
            .find(|kv| kv.key == CLUSTER_ID_KEY)
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
        Backup {
            cluster_id,
            revision: Revision(image.applied.map(|l| l.index).unwrap_or(0)),
            term: image.applied.map(|l| l.leader_id.term).unwrap_or(0),
            members,
            taken_by,
            kvs: image.kvs,
        }
    }

    /// The file's bytes: header, body, checksum.
    pub fn encode(&self) -> Result<Vec<u8>, BackupError> {
        let body = codec::encode(self)?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Ok(out)
    }

    /// Reads a file's bytes, refusing anything that is not a whole, intact
    /// backup of a version this build knows.
    pub fn decode(bytes: &[u8]) -> Result<Self, BackupError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            let found = String::from_utf8_lossy(&bytes[..bytes.len().min(MAGIC.len())]).into_owned();
            return Err(BackupError::Foreign { found });
        }
        if bytes.len() < HEADER_LEN {
            return Err(BackupError::Truncated { expected: HEADER_LEN as u64, actual: bytes.len() as u64 });
        }
        let version = u16::from_be_bytes([bytes[8], bytes[9]]);
        if version > VERSION {
            return Err(BackupError::NewerVersion(version));
        }
        let body_len = u64::from_be_bytes(bytes[10..18].try_into().expect("8 bytes"));
        let expected = (HEADER_LEN as u64).saturating_add(body_len).saturating_add(CHECKSUM_LEN as u64);
        if bytes.len() as u64 != expected {
            return Err(BackupError::Truncated { expected, actual: bytes.len() as u64 });
        }
        let (covered, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let stored = u32::from_be_bytes(stored.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(covered);
        if stored != computed {
            return Err(BackupError::Checksum { stored, computed });
        }
        Ok(codec::decode(&covered[HEADER_LEN..])?)
    }
}

/// What [`restore`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub keys: usize,
    pub revision: Revision,
}

/// Writes a new data dir at `dir` from `backup`, for a single-master cluster
/// whose only voter is master `id` at `addr`. `dir` must be missing or empty.
pub async fn restore(backup: &Backup, dir: &Path, id: NodeId, addr: &str) -> Result<Restored, BackupError> {
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(BackupError::DataDirInUse(dir.display().to_string()));
    }
    if backup.revision.0 == 0 {
        return Err(BackupError::Empty);
    }
    let db = Db::open(dir, IoMode::Inline, false)?;
    // The backup's revision becomes the last applied (and purged) log id: the
    // new leader's first entry gets the next index, so revisions go on.
    let log_id = LogId::new(CommittedLeaderId::new(backup.term, id), backup.revision.0);
    let membership =
        Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, BasicNode::new(addr))]));
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("restored-{}-{}", backup.term, backup.revision),
    };
    // The member registry describes the old cluster's data dirs: the new
    // cluster registers its own members as they are heard from.
    let kvs: Vec<KeyValue> =
        backup.kvs.iter().filter(|kv| !kv.key.starts_with(MEMBERS_PREFIX)).cloned().collect();
    let keys = kvs.len();
    let data = codec::encode(&SnapshotBody { kvs }).map_err(StoreError::from)?;
    StateMachine::open(db.clone(), History::default())?.install(meta, data)?;
    // A vote in the backup's term, so that the first election here is for a
    // later term than every entry already applied.
    LogStore::new(db.clone())
        .save_vote(&Vote::new(backup.term, id))
        .await
        .map_err(|e| StoreError::Task(format!("cannot write the vote into {}: {e}", dir.display())))?;
    db.raw().flush_wal(true).map_err(|e| StoreError::db(dir, e))?;
    Ok(Restored { keys, revision: backup.revision })
}

#[cfg(test)]
mod tests;
