//! Folding a record and the store reads it needs, from the folding thread: transient
//! store errors pause and retry (never skipping the record) and mark the processor
//! unhealthy until the store works again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use funnelfold_core::codec::confluent_schema_id;
use funnelfold_store::StoreError;

use super::retry::Backoff;
use super::Core;
use crate::engine::{Outcome, Record};
use crate::reads::StoreReads;
use crate::telemetry;

impl Core {
    /// The store failed to `stage` (`be read`, `be written`): tell the API and the
    /// metrics, until [`Core::store_works`].
    pub(super) fn store_fails(&self, stage: &str, error: &str) {
        self.health.set_unhealthy(format!(
            "the store cannot {stage} ({error}); folding and committing are paused and retried until it can"
        ));
        telemetry::store_writable(false);
    }

    /// Runs a store call of the assignment's checks, retrying transient errors with
    /// backoff like every other store call (a full disk at start must pause, not stop
    /// the processor), until it works or the processor is asked to stop.
    pub(super) fn with_retries<T>(
        &self,
        stage: &'static str,
        mut call: impl FnMut(&Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut backoff = Backoff::new();
        loop {
            match call(self) {
                Err(StoreError::Transient(e)) if !self.shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!(error = %e, "store call failed; retrying");
                    telemetry::store_error(stage, "transient");
                    telemetry::store_retry(stage);
                    let what = if stage == "read" {
                        "be read"
                    } else {
                        "be written"
                    };
                    self.store_fails(what, &e);
                    backoff.pause(&self.shutdown);
                }
                other => {
                    if other.is_ok() {
                        self.store_works();
                    }
                    return other;
                }
            }
        }
    }

    /// Reads the traffic shares that folded events still wait for (a store read failed
    /// after their fold), retrying like every store read: a flush needs them all.
    pub(super) fn settle_traffic(&mut self) -> Result<(), StoreError> {
        let mut backoff = Backoff::new();
        loop {
            let reads = StoreReads::new(&*self.store, &self.rt);
            match self.engine.settle_all_traffic(reads.get()) {
                Err(StoreError::Transient(e)) if !self.shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!(error = %e, "store read failed; retrying");
                    telemetry::store_error("read", "transient");
                    telemetry::store_retry("read");
                    self.store_fails("be read", &e);
                    backoff.pause(&self.shutdown);
                }
                other => return other,
            }
        }
    }

    /// The store took a read or a write after failing.
    pub(super) fn store_works(&self) {
        if !self.health.is_healthy() {
            tracing::info!("the store works again: folding resumes");
            self.health.set_healthy();
            telemetry::store_writable(true);
        }
    }

    /// Before a record in the Confluent wire format with a schema id the codec does
    /// not know is folded, asks the schema registry (when there is one) for it. A
    /// registry that cannot answer is retried with backoff, like the store: the record
    /// is not at fault, so it is neither dead-lettered nor skipped, and nothing past it
    /// is committed meanwhile.
    fn learn_schema(
        &mut self,
        payload: Option<&[u8]>,
        shutdown: &AtomicBool,
    ) -> Result<(), StoreError> {
        let Some(registry) = self.registry.as_mut() else {
            return Ok(());
        };
        let Some(id) = payload.and_then(confluent_schema_id) else {
            return Ok(());
        };
        let mut backoff = Backoff::new();
        while let Err(e) = registry.resolve(self.engine.codec_mut(), id) {
            if shutdown.load(Ordering::Relaxed) {
                // Not folded and not dead-lettered: the next owner asks again.
                return Err(StoreError::Transient(format!(
                    "stopping while the schema registry cannot answer: {e}"
                )));
            }
            // Logged, not reported as the processor's health: the store still
            // works, and the collector may go on accepting events meanwhile.
            tracing::warn!(error = %e, "schema registry unavailable; folding waits and retries the record");
            backoff.pause(shutdown);
        }
        Ok(())
    }

    /// Retries transient store errors with backoff; never skips the record.
    pub(super) fn apply(
        &mut self,
        rec: Record<'_>,
        shutdown: &AtomicBool,
    ) -> Result<Outcome, StoreError> {
        self.learn_schema(rec.payload, shutdown)?;
        let mut backoff = Backoff::new();
        let mut failed = false;
        loop {
            let reads = StoreReads::new(&*self.store, &self.rt);
            // One record in 64 is timed: enough for the histogram, and the clock is
            // not read a million times a second.
            self.applied += 1;
            let timed = (self.applied % 64 == 0).then(Instant::now);
            match self.engine.apply(reads.get(), rec) {
                Err(StoreError::Transient(e)) if !shutdown.load(Ordering::Relaxed) => {
                    tracing::warn!(error = %e, "store read failed; retrying");
                    telemetry::store_error("read", "transient");
                    telemetry::store_retry("read");
                    self.store_fails("be read", &e);
                    failed = true;
                    backoff.pause(shutdown);
                }
                other => {
                    match &other {
                        Ok(_) => {
                            if failed {
                                self.store_works();
                            }
                            if let Some(started) = timed {
                                telemetry::record_folded(started.elapsed());
                            }
                        }
                        Err(StoreError::Fatal(_)) => telemetry::store_error("read", "fatal"),
                        Err(StoreError::Transient(_)) => {
                            telemetry::store_error("read", "transient");
                        }
                    }
                    return other;
                }
            }
        }
    }
}
