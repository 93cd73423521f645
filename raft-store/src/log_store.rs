//! The Raft log in RocksDB: entries, vote, committed and purged markers.
//! Vote and appended entries are synced to disk before openraft hears that
//! they are stored.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::codec;
use crate::db::{be, from_be, Db, CF_LOG, CF_RAFT};
use crate::error::{sto_read, sto_write, StoreError};
use crate::{Entry, LogId, StorageError, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// The log store of one master. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    /// The committed index as last saved by openraft, for status reports.
    committed: Arc<AtomicU64>,
}

impl LogStore {
    pub fn new(db: Db) -> Self {
        LogStore { db, committed: Arc::new(AtomicU64::new(0)) }
    }

    /// The last committed index openraft reported to this store.
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn get_meta<T: serde::de::DeserializeOwned>(db: &Db, key: &[u8]) -> Result<Option<T>, StoreError> {
        match db.raw().get_cf(db.cf(CF_RAFT), key)? {
            Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn synced() -> WriteOptions {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        opts
    }

    fn last_entry_id(db: &Db) -> Result<Option<LogId>, StoreError> {
        let mut iter = db.raw().iterator_cf(db.cf(CF_LOG), IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (_, value) = item?;
                let entry: Entry = codec::decode(&value)?;
                Ok(Some(*entry.get_log_id()))
            }
            None => Ok(None),
        }
    }
}

fn range_start(range: &impl RangeBounds<u64>) -> u64 {
    match range.start_bound() {
        Bound::Included(&n) => n,
        Bound::Excluded(&n) => n + 1,
        Bound::Unbounded => 0,
    }
}

fn in_end(end: Bound<u64>, index: u64) -> bool {
    match end {
        Bound::Included(n) => index <= n,
        Bound::Excluded(n) => index < n,
        Bound::Unbounded => true,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = range_start(&range);
        let end = range.end_bound().cloned();
        self.db
            .run(move |db| {
                let mut out = Vec::new();
                let iter =
                    db.raw().iterator_cf(db.cf(CF_LOG), IteratorMode::From(&be(start), Direction::Forward));
                for item in iter {
                    let (key, value) = item?;
                    let index = from_be(&key).unwrap_or(u64::MAX);
                    if !in_end(end, index) {
                        break;
                    }
                    out.push(codec::decode::<Entry>(&value)?);
                }
                Ok(out)
            })
            .await
            .map_err(sto_read)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.db
            .run(|db| {
                let purged: Option<LogId> = Self::get_meta(db, KEY_PURGED)?;
                let last = Self::last_entry_id(db)?.or(purged);
                Ok(LogState { last_purged_log_id: purged, last_log_id: last })
            })
            .await
            .map_err(sto_read)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = codec::encode(vote).map_err(sto_write)?;
        self.db
            .run(move |db| Ok(db.raw().put_cf_opt(db.cf(CF_RAFT), KEY_VOTE, bytes, &Self::synced())?))
            .await
            .map_err(|e| openraft::StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.db.run(|db| Self::get_meta(db, KEY_VOTE)).await.map_err(sto_read)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        let bytes = codec::encode(&committed).map_err(sto_write)?;
        // Not synced: the committed marker is an optimisation (it lets a
        // restarted master re-apply its log at once); Raft re-learns it anyway.
        self.db
            .run(move |db| Ok(db.raw().put_cf(db.cf(CF_RAFT), KEY_COMMITTED, bytes)?))
            .await
            .map_err(sto_write)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            self.db.run(|db| Self::get_meta(db, KEY_COMMITTED)).await.map_err(sto_read)?;
        let committed = committed.flatten();
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::Relaxed);
        }
        Ok(committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.db.cf(CF_LOG);
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(sto_write)?;
            batch.put_cf(cf, be(entry.get_log_id().index), bytes);
        }
        // One synced write for the whole batch: durable before openraft hears of it.
        let res = self.db.run(move |db| Ok(db.raw().write_opt(batch, &Self::synced())?)).await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(sto_write(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(since = %log_id, "truncating conflicting log entries");
        self.db
            .run(move |db| {
                let mut batch = WriteBatch::default();
                batch.delete_range_cf(db.cf(CF_LOG), be(log_id.index), be(u64::MAX));
                Ok(db.raw().write_opt(batch, &Self::synced())?)
            })
            .await
            .map_err(sto_write)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(upto = %log_id, "purging log behind snapshot");
        let bytes = codec::encode(&log_id).map_err(sto_write)?;
        self.db
            .run(move |db| {
                let mut batch = WriteBatch::default();
                batch.put_cf(db.cf(CF_RAFT), KEY_PURGED, bytes);
                batch.delete_range_cf(db.cf(CF_LOG), be(0), be(log_id.index + 1));
                Ok(db.raw().write_opt(batch, &Self::synced())?)
            })
            .await
            .map_err(sto_write)
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::CommittedLeaderId;
    use tempfile::TempDir;

    use super::*;
    use crate::db::IoMode;
    use crate::state_machine::{History, StateMachine};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = Db::open(dir.path(), IoMode::BlockingPool, true).expect("open db");
            let sm = StateMachine::open(db.clone(), History::default()).expect("open state machine");
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn store_passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn blank(index: u64) -> Entry {
        openraft::testing::blank_ent::<TypeConfig>(1, 1, index)
    }

    #[tokio::test]
    async fn vote_log_and_purge_marker_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::new(Db::open(dir.path(), IoMode::Inline, true).unwrap());
            log.save_vote(&Vote::new(3, 2)).await.unwrap();
            log.blocking_append((1..=5).map(blank)).await.unwrap();
            log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 5)).await.unwrap();
            log.purge(LogId::new(CommittedLeaderId::new(1, 1), 2)).await.unwrap();
        }
        let mut log = LogStore::new(Db::open(dir.path(), IoMode::Inline, true).unwrap());
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        let entries = log.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), vec![3, 4]);
    }
}
