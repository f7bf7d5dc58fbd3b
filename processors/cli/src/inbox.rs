//! `funnelfold up`'s inbox: where its collector keeps accepted events on local disk
//! (see `funnelfold_store::inbox`). At start, what is still there is produced to the
//! new embedded broker before anything is accepted; while running, entries whose
//! records the store's checkpoints show folded are removed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use funnelfold_config::KafkaSettings;
use funnelfold_kafka::ClientConfigExt;
use funnelfold_store::inbox::Inbox;
use funnelfold_store::Store;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The inbox beside an embedded store's file (`DIR/funnelfold.inbox.redb`).
pub fn open(store_file: &Path) -> Result<Arc<Inbox>> {
    let path = store_file.with_file_name("funnelfold.inbox.redb");
    let inbox = Inbox::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Arc::new(inbox))
}

/// Produces every entry still in the inbox to `topic`, in order, and notes where each
/// landed; how many there were.
pub async fn replay(kafka: &KafkaSettings, topic: &str, inbox: &Inbox) -> Result<usize> {
    let pending = inbox.pending().context("reading the inbox")?;
    if pending.is_empty() {
        return Ok(0);
    }
    let producer: FutureProducer = kafka.producer_config().create()?;
    let mut deliveries = Vec::with_capacity(pending.len());
    for entry in &pending {
        let record = FutureRecord::to(topic)
            .key(&entry.key)
            .payload(&entry.payload);
        deliveries.push((
            entry.seq,
            funnelfold_runtime::producer::enqueue(&producer, record).await?,
        ));
    }
    for (seq, delivery) in deliveries {
        let delivered = delivery
            .await
            .context("the producer was dropped")?
            .map_err(|(e, _)| e)
            .context("producing the inbox to the embedded broker")?;
        inbox.produced(seq, delivered.partition, delivered.offset);
    }
    Ok(pending.len())
}

/// Removes the entries the store shows folded in the current log, and clears the
/// inbox's failure once it can write again: checked every half second, and once more
/// by [`Trimmer::finish`].
pub struct Trimmer {
    task: tokio::task::JoinHandle<()>,
    check: Check,
}

#[derive(Clone)]
struct Check {
    inbox: Arc<Inbox>,
    store: Arc<dyn Store>,
    group: String,
    topic: String,
    /// The current log's identity: a checkpoint of another log says nothing of it.
    log: String,
}

impl Check {
    async fn run(&self) -> Result<usize> {
        let inbox = Arc::clone(&self.inbox);
        tokio::task::spawn_blocking(move || inbox.probe()).await??;
        let mut folded = std::collections::HashMap::new();
        for partition in self.inbox.partitions() {
            if let Some(c) = self
                .store
                .checkpoint(&self.group, &self.topic, partition)
                .await?
            {
                if c.log == self.log {
                    folded.insert(partition, c.next_offset);
                }
            }
        }
        let inbox = Arc::clone(&self.inbox);
        Ok(
            tokio::task::spawn_blocking(move || inbox.remove_folded(|p| folded.get(&p).copied()))
                .await??,
        )
    }
}

impl Trimmer {
    pub fn spawn(
        rt: &tokio::runtime::Runtime,
        inbox: Arc<Inbox>,
        store: Arc<dyn Store>,
        group: &str,
        topic: &str,
        log: String,
    ) -> Trimmer {
        let check = Check {
            inbox,
            store,
            group: group.to_owned(),
            topic: topic.to_owned(),
            log,
        };
        let looping = check.clone();
        let task = rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                // A failure (a full disk) is retried at the next check: entries only
                // wait longer.
                if let Err(e) = looping.run().await {
                    tracing::warn!(error = %e, "trimming the inbox failed; trying again");
                }
            }
        });
        Trimmer { task, check }
    }

    /// Stops checking, after a last check (the processor's final flush is durable by
    /// then, so a clean stop leaves the inbox empty).
    pub fn finish(self, rt: &tokio::runtime::Runtime) {
        self.task.abort();
        if let Err(e) = rt.block_on(self.check.run()) {
            tracing::warn!(error = %e, "trimming the inbox failed; its entries are produced again at the next start");
        }
    }
}
