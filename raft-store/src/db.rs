//! The RocksDB database of one master: one DB, one write-ahead log, and a
//! column family per concern. Log and state machine share the WAL, so a
//! synced log append also makes every earlier state-machine write durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, DB};

use crate::error::StoreError;

/// Raft log entries, keyed by big-endian index.
pub const CF_LOG: &str = "log";
/// Raft's own durable state: vote, committed, purged.
pub const CF_RAFT: &str = "raft";
/// The key-value map: key -> big-endian revision ++ value.
pub const CF_KV: &str = "kv";
/// Watch history: big-endian revision ++ big-endian sequence -> event.
pub const CF_EVENTS: &str = "events";
/// State-machine metadata: applied log id, membership, history bounds, snapshot.
pub const CF_SM: &str = "sm";

const ALL_CFS: [&str; 5] = [CF_LOG, CF_RAFT, CF_KV, CF_EVENTS, CF_SM];

/// How blocking RocksDB calls leave the async runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// On tokio's blocking pool: the production mode, never stalls the runtime.
    BlockingPool,
    /// On the calling task: for simulations (turmoil) whose clock must not
    /// run while a real thread does I/O, and for unit tests.
    Inline,
}

/// A shared handle to the master's database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
    path: PathBuf,
    io: IoMode,
}

impl Db {
    /// Opens (or creates) the database in `dir`. `small` picks write buffers
    /// sized for tests and simulations.
    pub fn open(dir: &Path, io: IoMode, small: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Task(format!("cannot create data dir {}: {e}", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        if small {
            opts.set_write_buffer_size(4 << 20);
            opts.set_max_write_buffer_number(2);
        } else {
            opts.set_write_buffer_size(32 << 20);
        }
        opts.set_keep_log_file_num(4);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut cf_opts = Options::default();
            if small {
                cf_opts.set_write_buffer_size(2 << 20);
            }
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| StoreError::db(dir, e))?;
        Ok(Db { inner: Arc::new(db), path: dir.to_path_buf(), io })
    }

    pub fn raw(&self) -> &DB {
        &self.inner
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.inner.cf_handle(name).expect("column families are created at open")
    }

    /// Runs blocking database work according to the I/O mode.
    pub async fn run<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Db) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        match self.io {
            IoMode::Inline => f(self),
            IoMode::BlockingPool => {
                let db = self.clone();
                tokio::task::spawn_blocking(move || f(&db))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))?
            }
        }
    }

    pub fn io_mode(&self) -> IoMode {
        self.io
    }
}

/// Big-endian u64, so that RocksDB's byte order is numeric order.
pub fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub fn from_be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}
