//! The inbox: accepted raw records kept on local disk until they are folded.
//!
//! `funnelfold up` runs an embedded broker that keeps its log in memory, so an event
//! its collector answered `accepted` would die with the process until a flush made it
//! durable. The collector appends each batch here first (one redb transaction, fsynced
//! before it returns), then produces it; every start produces the entries still here
//! to the new broker before accepting anything; an entry goes once the store's
//! checkpoint says its record is folded. An entry folded before a crash but not yet
//! removed is produced again and dropped by the fold as a duplicate (same `eventId`).
//!
//! A file of its own, not a table of the store: the store's write transactions are
//! whole flushes, and the collector would wait behind them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{Result, StoreError};

/// Sequence number → the record (key length as 4 bytes, the key, the payload).
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");

/// An accepted record waiting to be folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// See the module documentation. Blocking: call it from a thread that may block.
pub struct Inbox {
    path: PathBuf,
    /// `None` between a failed reopen and the next try.
    db: RwLock<Option<Database>>,
    /// Where this process produced each entry: (partition, offset) in the current log.
    positions: Mutex<BTreeMap<u64, (i32, i64)>>,
    /// Why the last append failed, until one succeeds.
    failure: Mutex<Option<String>>,
}

fn error(context: &str, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        // A full disk or a failing one: worth another try once it has space again.
        e @ (redb::Error::Io(_) | redb::Error::PreviousIo) => {
            StoreError::Transient(format!("{context}: {e}"))
        }
        e => StoreError::Fatal(format!("{context}: {e}")),
    }
}

fn closed() -> StoreError {
    StoreError::Transient("the inbox could not be opened again after an I/O error".into())
}

impl Inbox {
    pub fn open(path: &Path) -> Result<Inbox> {
        let db = Self::open_db(path)?;
        Ok(Inbox {
            path: path.to_owned(),
            db: RwLock::new(Some(db)),
            positions: Mutex::new(BTreeMap::new()),
            failure: Mutex::new(None),
        })
    }

    fn open_db(path: &Path) -> Result<Database> {
        let db = Database::create(path)
            .map_err(|e| error(&format!("opening the inbox {}", path.display()), e))?;
        let txn = db.begin_write().map_err(|e| error("begin write", e))?;
        txn.open_table(ENTRIES)
            .map_err(|e| error("creating the inbox table", e))?;
        txn.commit()
            .map_err(|e| error("creating the inbox table", e))?;
        Ok(db)
    }

    /// After an I/O error redb refuses every write until the file is opened again
    /// (it checks and repairs it then): reopen it, so that writes resume once the disk
    /// has space again.
    fn recover(&self, failed: StoreError) -> StoreError {
        if let StoreError::Transient(_) = failed {
            let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
            // The old handle holds the file's lock: it goes first.
            drop(db.take());
            match Self::open_db(&self.path) {
                Ok(fresh) => *db = Some(fresh),
                Err(e) => {
                    return StoreError::Transient(format!(
                        "{failed}; reopening the inbox failed too: {e}"
                    ))
                }
            }
        }
        failed
    }

    /// Appends records, durably (fsynced) before it returns; their sequence numbers.
    pub fn append(&self, records: &[(&[u8], &[u8])]) -> Result<Vec<u64>> {
        let result: Result<Vec<u64>> = (|| {
            let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            let db = guard.as_ref().ok_or_else(closed)?;
            let txn = db.begin_write().map_err(|e| error("begin write", e))?;
            let mut seqs = Vec::with_capacity(records.len());
            {
                let mut table = txn
                    .open_table(ENTRIES)
                    .map_err(|e| error("open inbox", e))?;
                let first = table
                    .last()
                    .map_err(|e| error("reading the inbox", e))?
                    .map_or(0, |(k, _)| k.value() + 1);
                let mut value = Vec::new();
                for (next, (key, payload)) in (first..).zip(records) {
                    value.clear();
                    let len = u32::try_from(key.len())
                        .map_err(|_| StoreError::Fatal("a record key over 4 GiB".into()))?;
                    value.extend_from_slice(&len.to_be_bytes());
                    value.extend_from_slice(key);
                    value.extend_from_slice(payload);
                    table
                        .insert(next, value.as_slice())
                        .map_err(|e| error("appending to the inbox", e))?;
                    seqs.push(next);
                }
            }
            txn.commit()
                .map_err(|e| error("committing to the inbox", e))?;
            Ok(seqs)
        })();
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(seqs) => {
                *failure = None;
                Ok(seqs)
            }
            Err(e) => {
                *failure = Some(e.to_string());
                drop(failure);
                Err(self.recover(e))
            }
        }
    }

    /// After a failed append, tries a write (an empty transaction, committed durably)
    /// so that the failure is cleared once the disk takes writes again, even if no
    /// client sends anything meanwhile. Nothing to do while appends work.
    pub fn probe(&self) -> Result<()> {
        if self.failure().is_none() {
            return Ok(());
        }
        let result = (|| {
            let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            let db = guard.as_ref().ok_or_else(closed)?;
            let txn = db.begin_write().map_err(|e| error("begin write", e))?;
            txn.commit()
                .map_err(|e| error("committing to the inbox", e))
        })();
        match result {
            Ok(()) => {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(e) => Err(self.recover(e)),
        }
    }

    /// Why the last append failed, while none has succeeded since.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every entry, oldest first.
    pub fn pending(&self) -> Result<Vec<Entry>> {
        self.read(|table| {
            let mut out = Vec::new();
            for item in table.iter().map_err(|e| error("reading the inbox", e))? {
                let (seq, value) = item.map_err(|e| error("reading the inbox", e))?;
                let value = value.value();
                let corrupt = || StoreError::Fatal(format!("corrupt inbox entry {}", seq.value()));
                let len_bytes: [u8; 4] = value
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(corrupt)?;
                let len = u32::from_be_bytes(len_bytes) as usize;
                let key = value.get(4..4 + len).ok_or_else(corrupt)?;
                out.push(Entry {
                    seq: seq.value(),
                    key: key.to_vec(),
                    payload: value[4 + len..].to_vec(),
                });
            }
            Ok(out)
        })
    }

    /// Runs `f` on the entries table in a read transaction.
    fn read<T>(&self, f: impl FnOnce(&redb::ReadOnlyTable<u64, &[u8]>) -> Result<T>) -> Result<T> {
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = guard.as_ref().ok_or_else(closed)?;
        let txn = db.begin_read().map_err(|e| error("begin read", e))?;
        let table = txn
            .open_table(ENTRIES)
            .map_err(|e| error("open inbox", e))?;
        f(&table)
    }

    /// Entries still waiting.
    pub fn len(&self) -> Result<u64> {
        self.read(|table| table.len().map_err(|e| error("reading the inbox", e)))
    }

    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Where an entry's record landed in the current log (from its delivery report).
    pub fn produced(&self, seq: u64, partition: i32, offset: i64) {
        self.positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq, (partition, offset));
    }

    /// The partitions entries were produced to in this process, for checking them.
    pub fn partitions(&self) -> Vec<i32> {
        let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<i32> = positions.values().map(|(p, _)| *p).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Removes the entries whose record is folded: produced in this process to a
    /// partition whose next offset to fold (`folded_before`) is beyond it. Returns how
    /// many went.
    pub fn remove_folded(&self, folded_before: impl Fn(i32) -> Option<i64>) -> Result<usize> {
        let done: Vec<u64> = {
            let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            positions
                .iter()
                .filter(|(_, (p, offset))| folded_before(*p).is_some_and(|next| next > *offset))
                .map(|(seq, _)| *seq)
                .collect()
        };
        if done.is_empty() {
            return Ok(0);
        }
        let result = (|| {
            let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            let db = guard.as_ref().ok_or_else(closed)?;
            let mut txn = db.begin_write().map_err(|e| error("begin write", e))?;
            // Losing this removal to a crash only means the entries are produced again
            // and dropped as duplicates: it need not wait for an fsync.
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Fatal(format!("inbox durability: {e}")))?;
            {
                let mut table = txn
                    .open_table(ENTRIES)
                    .map_err(|e| error("open inbox", e))?;
                for seq in &done {
                    table
                        .remove(*seq)
                        .map_err(|e| error("removing from the inbox", e))?;
                }
            }
            txn.commit()
                .map_err(|e| error("committing to the inbox", e))
        })();
        result.map_err(|e| self.recover(e))?;
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        for seq in &done {
            positions.remove(seq);
        }
        Ok(done.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_in_order_until_folded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("inbox.redb");
        {
            let inbox = Inbox::open(&path).expect("open");
            let seqs = inbox.append(&[(b"a", b"1"), (b"b", b"2")]).expect("append");
            assert_eq!(seqs, [0, 1]);
            assert_eq!(inbox.append(&[(b"", b"3")]).expect("append"), [2]);
        }
        let inbox = Inbox::open(&path).expect("reopen");
        let pending = inbox.pending().expect("pending");
        let got: Vec<(u64, &[u8], &[u8])> = pending
            .iter()
            .map(|e| (e.seq, e.key.as_slice(), e.payload.as_slice()))
            .collect();
        assert_eq!(
            got,
            [(0, &b"a"[..], &b"1"[..]), (1, b"b", b"2"), (2, b"", b"3")]
        );
        // Produced to partitions 0 and 1; partition 0 is folded up to offset 5.
        inbox.produced(0, 0, 4);
        inbox.produced(1, 1, 9);
        inbox.produced(2, 0, 5);
        let removed = inbox
            .remove_folded(|p| (p == 0).then_some(5))
            .expect("remove");
        assert_eq!(removed, 1);
        let left: Vec<u64> = inbox
            .pending()
            .expect("pending")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(left, [1, 2]);
        // Numbers go on after the last entry, never reused while it waits.
        assert_eq!(inbox.append(&[(b"c", b"4")]).expect("append"), [3]);
        assert_eq!(inbox.len().expect("len"), 3);
    }

    #[test]
    fn concurrent_appends_are_all_kept_each_batch_in_one_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = Inbox::open(&dir.path().join("inbox.redb")).expect("open");
        std::thread::scope(|s| {
            for writer in 0..8u8 {
                let inbox = &inbox;
                s.spawn(move || {
                    let key = [writer];
                    for _ in 0..10 {
                        let records: Vec<(&[u8], &[u8])> =
                            (0..5).map(|_| (&key[..], &b"event"[..])).collect();
                        let seqs = inbox.append(&records).expect("append");
                        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
                    }
                });
            }
        });
        let pending = inbox.pending().expect("pending");
        assert_eq!(pending.len(), 400);
        // A batch's records are consecutive: each run of 5 has one writer.
        for batch in pending.chunks(5) {
            assert!(batch.iter().all(|e| e.key == batch[0].key));
        }
    }
}
