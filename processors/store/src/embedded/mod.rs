//! The embedded engine: projections in a [redb] file on local disk.
//!
//! Every table maps a composite byte key to a value. Keys are built by `Key` so that
//! byte order equals the order of their parts (strings, then numbers), which turns
//! every query into a range scan: newest-first listings iterate a range backwards.
//! Values are postcard-encoded rows (compact and fast on the flush path), and events
//! are LZ4-compressed blocks of them (see "Why redb" in the README for the layout).
//!
//! A flush is one write transaction: the rows of every partition flush and their
//! checkpoints commit together, durably (redb's default `Durability::Immediate`
//! fsyncs on commit), or not at all. That is the whole effectively-once argument here.
//!
//! redb is synchronous: the async [`Store`](crate::Store) calls run on tokio's blocking
//! pool, and the fold processor's reads ([`BlockingReads`](crate::BlockingReads)) run on
//! its own thread, where a read of a local file costs less than a hop to another
//! thread. Readers use read transactions, which see a snapshot and never wait for the
//! writer.
//!
//! Where things are: `keys` (how keys are built), `tables` (what each table holds, and
//! how values are encoded), `migrations` (the tables made at open, and the layouts of
//! older builds moved on), `db` (the database handle, its errors, and reopening after an
//! I/O failure), `writes` (a flush as one transaction), `events` (event blocks, written
//! and read), `reads` (the [`Store`](crate::Store) and
//! [`BlockingReads`](crate::BlockingReads) answers). This file opens the store.

use std::path::Path;
use std::sync::Arc;

use redb::ReadTransaction;

use crate::{Result, StoreError};

mod db;
mod events;
mod keys;
mod migrations;
mod reads;
mod tables;
#[cfg(test)]
mod tests;
mod writes;

use db::{storage_error, Db, Opener};
use migrations::create_tables;
use reads::read_now;

/// The embedded, single-node store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Db>,
    /// Keeps a temporary store's directory alive as long as the store.
    _temp: Option<Arc<TempDir>>,
}

/// A directory removed on drop, for [`EmbeddedStore::temporary`].
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temporary directory is not worth a panic.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Page cache of [`EmbeddedStore::open`]: redb's own default (1 GiB) would make the
    /// cache, not the working set, decide a processor's memory. Half of it buffers a
    /// write transaction's pages; a flush that changes more writes some early and may
    /// read them back, so a smaller cache can cost throughput while catching up. On the
    /// throughput benchmark (2,000,000 events, 48 partitions), 96 MiB against 192 MiB:
    /// no slower at 20,000 visitors, at most a few percent slower at 1,000,000, and
    /// 70 to 130 MiB less peak RSS (with glibc's allocator, 128 MiB was about a tenth
    /// slower than 256 MiB; the allocator and the smaller rows since changed that).
    pub const DEFAULT_CACHE_BYTES: usize = 96 << 20;

    /// Opens the store file at `path`, creating it and its tables if needed. The parent
    /// directory must exist.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, Self::DEFAULT_CACHE_BYTES)
    }

    /// Like [`EmbeddedStore::open`], with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self> {
        let context = format!("opening the embedded store {}", path.display());
        let path = path.to_path_buf();
        let open = move || {
            redb::Builder::new()
                .set_cache_size(cache_bytes)
                .create(&path)
        };
        Self::open_with(Box::new(open), &context)
    }

    /// Opens the database `open` opens, creating and migrating its tables: once, at
    /// first open. A reopen after an I/O error reopens the same file, whose tables this
    /// already made.
    fn open_with(open: Opener, context: &str) -> Result<Self> {
        let db = open().map_err(|e| storage_error(context, e))?;
        create_tables(&db)?;
        Ok(EmbeddedStore {
            db: Arc::new(Db::new(db, open)),
            _temp: None,
        })
    }

    /// A store in a fresh temporary directory, removed when the last clone is dropped
    /// (for tests and demos).
    pub fn temporary() -> Result<Self> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "funnelfold-store-{}-{nanos}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Fatal(format!(
                "creating temporary directory {}: {e}",
                dir.display()
            ))
        })?;
        let temp = Arc::new(TempDir(dir));
        let mut store = Self::open(&temp.0.join("store.redb"))?;
        store._temp = Some(temp);
        Ok(store)
    }

    /// Runs `f` on a read transaction on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || db.with(|db| read_now(db, f)))
            .await
            .map_err(|e| StoreError::Fatal(format!("embedded store read task failed: {e}")))?
    }
}
