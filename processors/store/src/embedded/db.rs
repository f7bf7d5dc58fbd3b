//! The embedded engine's database handle: redb's errors classified as the runtime needs
//! them, and the database closed and opened again after an I/O failure.

use std::cell::Cell;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;

use crate::{Result, StoreError};

thread_local! {
    /// Set by [`storage_error`] when redb reported an I/O failure on this thread. redb
    /// refuses everything after one (`PreviousIo`) until the database is closed and
    /// opened again, and its errors are turned into strings where they happen, deep in
    /// the table code: this is how [`Db::with`], which runs that code on the same
    /// thread, learns that it must reopen.
    static IO_FAILED: Cell<bool> = const { Cell::new(false) };
}

pub(super) fn storage_error(context: &str, e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    match e {
        // A failed read or write of the file (a full disk, a failing device), or the
        // database refusing work after one: worth another try once it is reopened, which
        // `Db::with` does.
        redb::Error::Io(_) | redb::Error::PreviousIo => {
            IO_FAILED.with(|f| f.set(true));
            StoreError::Transient(format!("{context}: {e}"))
        }
        // Another transaction in the way: worth another try.
        redb::Error::WouldBlock | redb::Error::TransactionInProgress => {
            StoreError::Transient(format!("{context}: {e}"))
        }
        // Everything else (corruption, type mismatches, a file held by another process)
        // needs a person.
        _ => StoreError::Fatal(format!("{context}: {e}")),
    }
}

/// Opens the database file: what a reopen repeats.
pub(super) type Opener =
    Box<dyn Fn() -> std::result::Result<Database, redb::DatabaseError> + Send + Sync>;

/// The database, behind a lock so that it can be closed and opened again after an I/O
/// failure while readers and the writer share the store.
///
/// Every transaction runs under the read lock; a reopen takes the write lock, so it
/// waits for every transaction of the old database to end (redb keeps the file locked,
/// and opening it again fails, until they have) and nothing starts on it meanwhile.
pub(super) struct Db {
    open: Opener,
    current: RwLock<Current>,
}

struct Current {
    /// `None` after a reopen failed (the disk may still be full): the next use tries again.
    db: Option<Database>,
    /// Bumped at every reopen, so that callers that failed on the same database reopen
    /// it once, not once each.
    generation: u64,
    /// When a reopen was last tried.
    reopened_at: Option<Instant>,
}

/// A failed reopen is not tried again sooner than this: the query API's readers would
/// otherwise each try one (redb repairs the file on open, which reads all of it).
pub(super) const REOPEN_INTERVAL: Duration = Duration::from_millis(500);

impl Db {
    pub(super) fn new(db: Database, open: Opener) -> Db {
        Db {
            open,
            current: RwLock::new(Current {
                db: Some(db),
                generation: 0,
                reopened_at: None,
            }),
        }
    }

    /// Runs `f` on the current database, on this thread. When `f` fails on an I/O
    /// error, the database is reopened for the next call and the (transient) error
    /// returned: the caller decides whether and when to try again.
    pub(super) fn with<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let mut f = Some(f);
        // Twice at most: once more after reopening a database a failed reopen left closed.
        for _ in 0..2 {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            let generation = current.generation;
            if let Some(db) = &current.db {
                let Some(f) = f.take() else { break };
                IO_FAILED.with(|flag| flag.set(false));
                let result = f(db);
                drop(current);
                return match result {
                    Err(StoreError::Transient(e)) if IO_FAILED.with(Cell::take) => {
                        Err(StoreError::Transient(match self.reopen(generation) {
                            Ok(()) => format!("{e} (the store file was reopened)"),
                            Err(StoreError::Transient(again) | StoreError::Fatal(again)) => {
                                format!("{e}; {again}")
                            }
                        }))
                    }
                    other => other,
                };
            }
            drop(current);
            self.reopen(generation)?;
        }
        Err(StoreError::Transient("the embedded store is closed".into()))
    }

    /// Closes the database if it is still the one of `generation`, and opens the file
    /// again (redb repairs a file that was not closed cleanly on open).
    fn reopen(&self, generation: u64) -> Result<()> {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.generation != generation {
            // Another caller reopened it since: use theirs.
            return Ok(());
        }
        if current.db.is_none()
            && current
                .reopened_at
                .is_some_and(|at| at.elapsed() < REOPEN_INTERVAL)
        {
            return Err(StoreError::Transient(
                "the embedded store could not be reopened after an I/O error; trying again shortly"
                    .into(),
            ));
        }
        if let Some(db) = current.db.take() {
            // It is closed whatever this says: an error here is the I/O error again.
            let _ = db.close();
        }
        current.generation += 1;
        current.reopened_at = Some(Instant::now());
        match (self.open)() {
            Ok(db) => {
                current.db = Some(db);
                Ok(())
            }
            // Classified like any other error: a full disk during the repair is worth
            // another try, a file found corrupt is not.
            Err(e) => Err(storage_error("reopening the embedded store", e)),
        }
    }
}
