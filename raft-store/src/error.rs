//! The store's one error type.

use crate::codec::CodecError;
use crate::limits::LimitError;
use crate::types::{Conflict, Revision};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb at {path}: {source}")]
    Db { path: String, source: rocksdb::Error },
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored data is unreadable: {0}")]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("{0}")]
    Conflict(Conflict),
    #[error(
        "revision {requested} has been compacted (oldest retained revision is {oldest}): relist, then watch from the list's revision + 1"
    )]
    Compacted { requested: Revision, oldest: Revision },
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error("storage task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub fn db(path: &std::path::Path, source: rocksdb::Error) -> Self {
        StoreError::Db { path: path.display().to_string(), source }
    }
}

/// Wraps a store error into openraft's storage error for the given subject.
pub(crate) fn sto_read(e: impl Into<StoreError>) -> crate::StorageError {
    let e: StoreError = e.into();
    openraft::StorageIOError::read(&e).into()
}

pub(crate) fn sto_write(e: impl Into<StoreError>) -> crate::StorageError {
    let e: StoreError = e.into();
    openraft::StorageIOError::write(&e).into()
}
