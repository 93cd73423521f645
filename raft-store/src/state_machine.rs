//! The replicated state machine: a versioned key-value map in RocksDB, its
//! watch history, and its snapshots.
//!
//! Applying an entry writes the key changes, their watch events, the applied
//! log id and the membership in one atomic RocksDB batch, so a reader (or a
//! restart) never sees one without the others.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftLogId};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec;
use crate::db::{be, from_be, Db, CF_EVENTS, CF_KV, CF_SM};
use crate::error::{sto_read, sto_write, StoreError};
use crate::types::*;
use crate::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

pub(crate) const KEY_APPLIED: &[u8] = b"applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
pub(crate) const KEY_FIRST_RETAINED: &[u8] = b"first_retained";
const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// The key one past every key the store accepts (keys are at most
/// `MAX_KEY_BYTES` long), for range deletes of the whole map.
fn end_of_keys() -> Vec<u8> {
    vec![0xff; crate::limits::MAX_KEY_BYTES + 1]
}

/// How much watch history the state machine keeps.
#[derive(Debug, Clone, Copy)]
pub struct History {
    /// Revisions of events retained behind the applied index.
    pub retain_revisions: u64,
}

impl Default for History {
    fn default() -> Self {
        History { retain_revisions: 100_000 }
    }
}

/// One key change decided by [`plan_txn`], before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put { key: Vec<u8>, value: Vec<u8>, prev: Option<Revision> },
    Delete { key: Vec<u8>, prev: Revision },
}

/// Looks up a key's current revision (none if absent).
pub type RevisionLookup<'a> = dyn FnMut(&[u8]) -> Result<Option<Revision>, StoreError> + 'a;

/// Decides what a transaction at `revision` does, given each key's current
/// revision. Pure: all conditions are checked against the state before the
/// transaction; if one fails, nothing changes. Later operations of the
/// transaction see the earlier ones.
pub fn plan_txn(
    txn: &Txn,
    revision: Revision,
    current: &mut RevisionLookup<'_>,
) -> Result<(Outcome, Vec<Mutation>), StoreError> {
    let mut state: HashMap<&[u8], Option<Revision>> = HashMap::new();
    for (i, op) in txn.ops.iter().enumerate() {
        let key = op.key();
        let rev = match state.get(key) {
            Some(r) => *r,
            None => *state.entry(key).or_insert(current(key)?),
        };
        if !op.expect().holds(rev) {
            let conflict = Conflict { op_index: i, key: key.to_vec(), expected: op.expect(), actual: rev };
            return Ok((Outcome::Conflict(conflict), Vec::new()));
        }
    }
    let mut results = Vec::with_capacity(txn.ops.len());
    let mut mutations = Vec::new();
    for op in &txn.ops {
        let key = op.key();
        let prev = state[key];
        match op {
            Op::Put { value, .. } => {
                mutations.push(Mutation::Put { key: key.to_vec(), value: value.clone(), prev });
                state.insert(key, Some(revision));
            }
            Op::Delete { .. } => {
                if let Some(prev) = prev {
                    mutations.push(Mutation::Delete { key: key.to_vec(), prev });
                }
                state.insert(key, None);
            }
            Op::Check { .. } => {}
        }
        results.push(OpResult { prev_revision: prev });
    }
    Ok((Outcome::Applied(results), mutations))
}

/// What a snapshot holds: every key with its value and revision.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SnapshotBody {
    pub(crate) kvs: Vec<KeyValue>,
}

/// The whole state machine at one applied log id.
#[derive(Debug, Clone)]
pub struct Image {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub kvs: Vec<KeyValue>,
}

/// The state machine of one master. Cheap to clone: clones share the
/// database and the applied-index notifier.
#[derive(Clone)]
pub struct StateMachine {
    db: Db,
    history: History,
    applied: Arc<watch::Sender<u64>>,
    leaders: AppliedLeaders,
}

/// The leaders, by term, whose entries a master applied since it opened its
/// store (each entry's log id names the leader that appended it). Raft's
/// election safety means at most one per term; openraft may elect two
/// masters in one term (see the README's "Chaos tests"), but only one of
/// them can ever commit. In memory: for checks and diagnostics.
pub type AppliedLeaders =
    Arc<std::sync::Mutex<std::collections::BTreeMap<u64, std::collections::BTreeSet<u64>>>>;

impl StateMachine {
    /// Opens the state machine over `db`, resuming from what is on disk.
    pub fn open(db: Db, history: History) -> Result<Self, StoreError> {
        let applied: Option<LogId> = get_sm(&db, KEY_APPLIED)?.flatten();
        let (tx, _) = watch::channel(applied.map(|l| l.index).unwrap_or(0));
        Ok(StateMachine { db, history, applied: Arc::new(tx), leaders: AppliedLeaders::default() })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The leaders whose entries this master applied, by term (shared: it
    /// grows as the master applies more).
    pub fn applied_leaders(&self) -> AppliedLeaders {
        self.leaders.clone()
    }

    /// The index of the last applied entry: the store's current revision.
    pub fn applied_index(&self) -> Revision {
        Revision(*self.applied.borrow())
    }

    /// A receiver that sees every advance of the applied index.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Reads one key at the current applied state.
    pub async fn get(&self, key: Vec<u8>) -> Result<(Option<KeyValue>, Revision), StoreError> {
        self.db
            .run(move |db| {
                let snap = db.raw().snapshot();
                let applied = applied_in(db, &snap)?;
                let value = snap.get_cf(db.cf(CF_KV), &key)?.map(|raw| decode_kv(key, &raw));
                Ok((value, applied))
            })
            .await
    }

    /// Lists keys with `prefix`, starting after `start_after` (for paging),
    /// at most `limit` of them (0 = no limit). Returns the keys, the revision
    /// the list is consistent at, and whether more keys follow.
    pub async fn list(
        &self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, Revision, bool), StoreError> {
        self.db
            .run(move |db| {
                let snap = db.raw().snapshot();
                let applied = applied_in(db, &snap)?;
                let mut opts = ReadOptions::default();
                opts.set_snapshot(&snap);
                let from = start_after.clone().unwrap_or_else(|| prefix.clone());
                let iter = db.raw().iterator_cf_opt(
                    db.cf(CF_KV),
                    opts,
                    IteratorMode::From(&from, Direction::Forward),
                );
                let mut out = Vec::new();
                let mut more = false;
                for item in iter {
                    let (key, raw) = item?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    if start_after.as_deref() == Some(&key[..]) {
                        continue;
                    }
                    if limit > 0 && out.len() == limit {
                        more = true;
                        break;
                    }
                    out.push(decode_kv(key.to_vec(), &raw));
                }
                Ok((out, applied, more))
            })
            .await
    }

    /// The oldest revision whose events are still retained for watchers.
    pub fn first_retained(&self) -> Result<Revision, StoreError> {
        Ok(Revision(get_sm::<u64>(&self.db, KEY_FIRST_RETAINED)?.unwrap_or(0)))
    }

    /// Applies a batch of committed entries in one atomic write.
    fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<Response>, StoreError> {
        let db = &self.db;
        let mut batch = WriteBatch::default();
        let mut overlay: HashMap<Vec<u8>, Option<Revision>> = HashMap::new();
        // Values put earlier in this batch, for the events of later deletes.
        let mut put_values: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut responses = Vec::with_capacity(entries.len());
        let mut last_applied = None;
        for entry in entries {
            let log_id = *entry.get_log_id();
            let revision = Revision(log_id.index);
            last_applied = Some(log_id);
            let mut outcomes = Vec::new();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(log_id), m);
                    batch.put_cf(db.cf(CF_SM), KEY_MEMBERSHIP, codec::encode(&stored)?);
                }
                EntryPayload::Normal(Command::Txns(txns)) => {
                    let mut seq = 0u32;
                    for txn in &txns {
                        let mut lookup = |key: &[u8]| -> Result<Option<Revision>, StoreError> {
                            if let Some(r) = overlay.get(key) {
                                return Ok(*r);
                            }
                            Ok(db.raw().get_cf(db.cf(CF_KV), key)?.map(|raw| kv_revision(&raw)))
                        };
                        let (outcome, mutations) = plan_txn(txn, revision, &mut lookup)?;
                        for m in mutations {
                            let event = match m {
                                Mutation::Put { key, value, prev } => {
                                    let mut raw = be(revision.0).to_vec();
                                    raw.extend_from_slice(&value);
                                    batch.put_cf(db.cf(CF_KV), &key, raw);
                                    overlay.insert(key.clone(), Some(revision));
                                    put_values.insert(key.clone(), value.clone());
                                    Event { revision, kind: EventKind::Put, key, value, prev_revision: prev }
                                }
                                Mutation::Delete { key, prev } => {
                                    let value = match put_values.remove(&key) {
                                        Some(v) => v,
                                        None => db
                                            .raw()
                                            .get_cf(db.cf(CF_KV), &key)?
                                            .map(|raw| raw.get(8..).unwrap_or_default().to_vec())
                                            .unwrap_or_default(),
                                    };
                                    batch.delete_cf(db.cf(CF_KV), &key);
                                    overlay.insert(key.clone(), None);
                                    let prev_revision = Some(prev);
                                    Event { revision, kind: EventKind::Delete, key, value, prev_revision }
                                }
                            };
                            batch.put_cf(
                                db.cf(CF_EVENTS),
                                event_key(revision.0, seq),
                                codec::encode(&event)?,
                            );
                            seq += 1;
                        }
                        outcomes.push(outcome);
                    }
                }
            }
            responses.push(Response { revision, outcomes });
        }
        if let Some(applied) = last_applied {
            batch.put_cf(db.cf(CF_SM), KEY_APPLIED, codec::encode(&Some(applied))?);
            self.compact_history(&mut batch, applied.index)?;
        }
        db.raw().write(batch)?;
        if let Some(applied) = last_applied {
            self.applied.send_replace(applied.index);
        }
        Ok(responses)
    }

    /// Drops watch history older than the retention window (with slack, so
    /// that it happens in chunks rather than on every entry).
    fn compact_history(&self, batch: &mut WriteBatch, applied: u64) -> Result<(), StoreError> {
        let first = get_sm::<u64>(&self.db, KEY_FIRST_RETAINED)?.unwrap_or(0);
        let retain = self.history.retain_revisions.max(1);
        let slack = (retain / 8).max(1);
        if applied.saturating_sub(first) <= retain + slack {
            return Ok(());
        }
        let new_first = applied + 1 - retain;
        batch.delete_range_cf(self.db.cf(CF_EVENTS), event_key(first, 0), event_key(new_first, 0));
        batch.put_cf(self.db.cf(CF_SM), KEY_FIRST_RETAINED, codec::encode(&new_first)?);
        tracing::debug!(first_retained = new_first, "compacted watch history");
        Ok(())
    }

    /// Every key, the applied log id and the membership, all read at one
    /// RocksDB snapshot: a consistent image of the state machine.
    fn read_image(&self) -> Result<Image, StoreError> {
        let db = &self.db;
        let snap = db.raw().snapshot();
        let applied: Option<LogId> =
            snap.get_cf(db.cf(CF_SM), KEY_APPLIED)?.map(|b| codec::decode(&b)).transpose()?.flatten();
        let membership: StoredMembership = snap
            .get_cf(db.cf(CF_SM), KEY_MEMBERSHIP)?
            .map(|b| codec::decode(&b))
            .transpose()?
            .unwrap_or_default();
        let mut opts = ReadOptions::default();
        opts.set_snapshot(&snap);
        let mut kvs = Vec::new();
        for item in db.raw().iterator_cf_opt(db.cf(CF_KV), opts, IteratorMode::Start) {
            let (key, raw) = item?;
            kvs.push(decode_kv(key.to_vec(), &raw));
        }
        Ok(Image { applied, membership, kvs })
    }

    /// A consistent image of the whole state machine, read off the async
    /// runtime (for backups: see [`crate::backup`]).
    pub async fn image(&self) -> Result<Image, StoreError> {
        let this = self.clone();
        self.db.run(move |_| this.read_image()).await
    }

    fn build_snapshot_now(&self) -> Result<(SnapshotMeta, Vec<u8>), StoreError> {
        let db = &self.db;
        let Image { applied, membership, kvs } = self.read_image()?;
        let data = codec::encode(&SnapshotBody { kvs })?;
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
        db.raw().put_cf(db.cf(CF_SM), KEY_SNAPSHOT, codec::encode(&(&meta, &data))?)?;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built snapshot");
        Ok((meta, data))
    }

    pub(crate) fn install(&self, meta: SnapshotMeta, data: Vec<u8>) -> Result<(), StoreError> {
        let body: SnapshotBody = codec::decode(&data)?;
        let db = &self.db;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(db.cf(CF_KV), Vec::<u8>::new(), end_of_keys());
        for kv in &body.kvs {
            let mut raw = be(kv.revision.0).to_vec();
            raw.extend_from_slice(&kv.value);
            batch.put_cf(db.cf(CF_KV), &kv.key, raw);
        }
        // History before the snapshot is not ours to replay: watchers from an
        // older revision must relist.
        let next = meta.last_log_id.map(|l| l.index + 1).unwrap_or(0);
        batch.delete_range_cf(db.cf(CF_EVENTS), event_key(0, 0), event_key(u64::MAX, u32::MAX));
        batch.put_cf(db.cf(CF_SM), KEY_FIRST_RETAINED, codec::encode(&next)?);
        batch.put_cf(db.cf(CF_SM), KEY_APPLIED, codec::encode(&meta.last_log_id)?);
        batch.put_cf(db.cf(CF_SM), KEY_MEMBERSHIP, codec::encode(&meta.last_membership)?);
        batch.put_cf(db.cf(CF_SM), KEY_SNAPSHOT, codec::encode(&(&meta, &data))?);
        db.raw().write(batch)?;
        self.applied.send_replace(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        tracing::info!(snapshot = %meta.snapshot_id, keys = body.kvs.len(), "installed snapshot");
        Ok(())
    }
}

fn get_sm<T: serde::de::DeserializeOwned>(db: &Db, key: &[u8]) -> Result<Option<T>, StoreError> {
    match db.raw().get_cf(db.cf(CF_SM), key)? {
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
        None => Ok(None),
    }
}

fn applied_in(db: &Db, snap: &rocksdb::Snapshot<'_>) -> Result<Revision, StoreError> {
    let applied: Option<LogId> =
        snap.get_cf(db.cf(CF_SM), KEY_APPLIED)?.map(|b| codec::decode(&b)).transpose()?.flatten();
    Ok(Revision(applied.map(|l| l.index).unwrap_or(0)))
}

pub(crate) fn event_key(revision: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&be(revision));
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn kv_revision(raw: &[u8]) -> Revision {
    Revision(from_be(raw).unwrap_or(0))
}

fn decode_kv(key: Vec<u8>, raw: &[u8]) -> KeyValue {
    KeyValue { key, revision: kv_revision(raw), value: raw.get(8..).unwrap_or_default().to_vec() }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let this = self.clone();
        let (meta, data) = self.db.run(move |_| this.build_snapshot_now()).await.map_err(sto_write)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.db
            .run(|db| {
                let applied: Option<LogId> = get_sm(db, KEY_APPLIED)?.flatten();
                let membership: StoredMembership = get_sm(db, KEY_MEMBERSHIP)?.unwrap_or_default();
                Ok((applied, membership))
            })
            .await
            .map_err(sto_read)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut leaders = self.leaders.lock().expect("applied leaders");
            for e in &entries {
                let leader = e.get_log_id().leader_id;
                leaders.entry(leader.term).or_default().insert(leader.node_id);
            }
        }
        let this = self.clone();
        self.db.run(move |_| this.apply_entries(entries)).await.map_err(sto_write)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let this = self.clone();
        let meta = meta.clone();
        let data = snapshot.into_inner();
        self.db.run(move |_| this.install(meta, data)).await.map_err(sto_write)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored: Option<(SnapshotMeta, Vec<u8>)> =
            self.db.run(|db| get_sm(db, KEY_SNAPSHOT)).await.map_err(sto_read)?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests;
