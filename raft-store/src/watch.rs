//! Watch streams: the events under a key prefix from a revision on, in
//! revision order, with no gap and no repeat.
//!
//! A watcher is a cursor over the event history in RocksDB (like etcd's
//! unsynced watchers, always): it reads what was applied after its cursor,
//! then sleeps until the applied index moves. A cursor that falls behind the
//! retained history gets [`StoreError::Compacted`] and must relist.

use futures::Stream;
use rocksdb::{Direction, IteratorMode, ReadOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::codec;
use crate::db::{from_be, CF_EVENTS, CF_SM};
use crate::error::StoreError;
use crate::state_machine::{event_key, StateMachine, KEY_APPLIED, KEY_FIRST_RETAINED};
use crate::types::{Event, Revision};

/// Events read per round trip to the database.
const CHUNK: usize = 1024;

/// A batch of events in revision order, or the error that ended the stream.
pub type WatchItem = Result<Vec<Event>, StoreError>;

impl StateMachine {
    /// Streams every event under `prefix` with revision >= `from`. `None`
    /// starts after the current applied revision ("from now").
    ///
    /// The stream ends with `Compacted` when `from` (or the cursor, for a
    /// watcher that falls too far behind) is older than the retained history.
    pub fn watch(
        &self,
        prefix: Vec<u8>,
        from: Option<Revision>,
    ) -> impl Stream<Item = WatchItem> + Send + 'static {
        let (tx, rx) = mpsc::channel(16);
        let sm = self.clone();
        let start = from.unwrap_or(Revision(sm.applied_index().0 + 1));
        tokio::spawn(async move {
            if let Err(e) = run_watch(sm, prefix, start, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        ReceiverStream::new(rx)
    }
}

impl StateMachine {
    /// Every event under `prefix` from `from` through what is applied now,
    /// and the revision read through (the applied index): a consumer that
    /// applies them is current as of that revision, even when the last
    /// entries changed nothing under `prefix`. `Compacted` when `from` is
    /// older than the retained history.
    pub async fn events_since(
        &self,
        prefix: Vec<u8>,
        from: Revision,
    ) -> Result<(Vec<Event>, Revision), StoreError> {
        let mut cursor = event_key(from.0, 0);
        let mut all = Vec::new();
        loop {
            let prefix2 = prefix.clone();
            let (events, next, caught_up) = self.db().run(move |db| read_chunk(db, &prefix2, cursor)).await?;
            all.extend(events);
            cursor = next;
            if caught_up {
                let through = from_be(&cursor).unwrap_or(1).saturating_sub(1);
                return Ok((all, Revision(through.max(from.0.saturating_sub(1)))));
            }
        }
    }
}

async fn run_watch(
    sm: StateMachine,
    prefix: Vec<u8>,
    start: Revision,
    tx: &mpsc::Sender<WatchItem>,
) -> Result<(), StoreError> {
    let mut applied_rx = sm.subscribe_applied();
    let mut cursor = event_key(start.0, 0);
    loop {
        let prefix2 = prefix.clone();
        let (events, next, caught_up) = sm.db().run(move |db| read_chunk(db, &prefix2, cursor)).await?;
        cursor = next;
        if !events.is_empty() && tx.send(Ok(events)).await.is_err() {
            return Ok(()); // the watcher went away
        }
        if caught_up {
            let wanted = from_be(&cursor).unwrap_or(0);
            tokio::select! {
                changed = applied_rx.wait_for(|applied| *applied >= wanted) => {
                    if changed.is_err() {
                        return Err(StoreError::ShuttingDown);
                    }
                }
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

/// Reads up to [`CHUNK`] events from `cursor` that the state machine has
/// applied. Returns the matching events, the next cursor, and whether the
/// reader has caught up with the applied index.
fn read_chunk(
    db: &crate::db::Db,
    prefix: &[u8],
    cursor: [u8; 12],
) -> Result<(Vec<Event>, [u8; 12], bool), StoreError> {
    let snap = db.raw().snapshot();
    let first_retained: u64 =
        snap.get_cf(db.cf(CF_SM), KEY_FIRST_RETAINED)?.map(|b| codec::decode(&b)).transpose()?.unwrap_or(0);
    let requested = from_be(&cursor).unwrap_or(0);
    if requested < first_retained {
        return Err(StoreError::Compacted {
            requested: Revision(requested),
            oldest: Revision(first_retained),
        });
    }
    let applied: Option<crate::LogId> =
        snap.get_cf(db.cf(CF_SM), KEY_APPLIED)?.map(|b| codec::decode(&b)).transpose()?.flatten();
    let applied = applied.map(|l| l.index).unwrap_or(0);
    let mut opts = ReadOptions::default();
    opts.set_snapshot(&snap);
    let iter =
        db.raw().iterator_cf_opt(db.cf(CF_EVENTS), opts, IteratorMode::From(&cursor, Direction::Forward));
    let mut events = Vec::new();
    let mut next = event_key(applied + 1, 0).max(cursor);
    for (scanned, item) in iter.enumerate() {
        let (key, value) = item?;
        if from_be(&key).unwrap_or(u64::MAX) > applied {
            break;
        }
        if scanned == CHUNK {
            next = key.as_ref().try_into().expect("event keys are 12 bytes");
            return Ok((events, next, false));
        }
        let event: Event = codec::decode(&value)?;
        if event.key.starts_with(prefix) {
            events.push(event);
        }
    }
    if let Some(last) = events.last() {
        next = next.max(event_key(last.revision.0 + 1, 0));
    }
    Ok((events, next, true))
}
