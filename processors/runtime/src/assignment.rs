//! Whether a partition just assigned may be folded on this store, and from where.
//!
//! The store's checkpoint of a partition (the next offset to apply) is the truth about
//! what this store has folded, and it is only true of the log it was taken in. When
//! the store and the log part (a new store under an old consumer group, a store
//! restored from an older backup, a topic deleted and created again, the embedded
//! broker of `funnelfold up` started again), folding from Kafka's committed offset
//! or from the checkpoint would silently skip records or fold them on the wrong state.
//! So every assignment is checked, before the partition is read:
//!
//! 1. the checkpoint counts in this log (its log identity is the partition's topic's);
//! 2. the checkpoint is not beyond the partition's end offset;
//! 3. the group's committed offset is not beyond the checkpoint (offsets are committed
//!    only after the state they produced is durable, so a group ahead of the store
//!    means the records in between were folded into another store).
//!
//! A partition that passes is folded as always. One that does not is refused, or
//! handled as the operator chose ([`OnMismatch`]); nothing here reads the clock or the
//! broker, so each case is unit-tested.

use funnelfold_store::Checkpoint;

/// What to do with a partition whose store and log do not agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMismatch {
    /// Stop with an error that says what was found and the ways out (the default of
    /// a processor against a real cluster).
    #[default]
    Refuse,
    /// Fold what this store has not folded: from its checkpoint when it counts in this
    /// log, else from the log's earliest retained offset. For a new or lost store, or
    /// one restored from a backup.
    Rebuild,
    /// Keep the store's state and go on with the log as it is: from the group's
    /// committed offset when the group has one in this log, else from the log's
    /// earliest retained offset. For a topic created again, and for the embedded
    /// broker of `funnelfold up`, whose log is new at every start.
    Rebase,
}

/// What was found of a partition at assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The store's checkpoint.
    pub stored: Option<Checkpoint>,
    /// The log the broker serves now.
    pub log: String,
    /// The partition's end offset (high watermark).
    pub end: i64,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
}

/// Why a partition's store and log disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The checkpoint counts in another log.
    OtherLog,
    /// The checkpoint is beyond the partition's end: the log started again.
    BeyondEnd,
    /// The group committed offsets this store never folded.
    GroupAhead,
}

impl Mismatch {
    /// A stable label, for metrics and logs.
    pub fn code(self) -> &'static str {
        match self {
            Mismatch::OtherLog => "other_log",
            Mismatch::BeyondEnd => "beyond_end",
            Mismatch::GroupAhead => "group_ahead",
        }
    }
}

/// Where a partition is read from, and what its checkpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The checkpoint the engine folds from.
    pub checkpoint: Checkpoint,
    /// Where the consumer starts reading: `None` where the group's committed offset
    /// (or, without one, the earliest offset) serves, since records below the
    /// checkpoint are skipped anyway.
    pub start: Option<i64>,
    /// The checkpoint to record in the store before folding: a rebase or rebuild onto
    /// another log, made durable so that a later start does not decide again.
    pub record: bool,
    /// The mismatch handled, if any.
    pub handled: Option<(Mismatch, OnMismatch)>,
}

/// Which of the three checks a partition fails, if any (the first, in this order).
pub fn mismatch(seen: &Observed) -> Option<Mismatch> {
    match &seen.stored {
        Some(c) if !c.log.is_empty() && c.log != seen.log => Some(Mismatch::OtherLog),
        Some(c) if c.next_offset > seen.end => Some(Mismatch::BeyondEnd),
        stored => match seen.committed {
            Some(committed) if committed > stored.as_ref().map_or(0, |c| c.next_offset) => {
                Some(Mismatch::GroupAhead)
            }
            _ => None,
        },
    }
}

/// Checks one partition and decides; `Err` is the refusal's message. `generation` is
/// the processor's write generation; `by_timestamp` says the store orders writes by
/// their timestamps, where folding a log whose offsets start lower needs a higher
/// generation than the checkpoint's.
pub fn place(
    seen: &Observed,
    on_mismatch: OnMismatch,
    generation: i64,
    by_timestamp: bool,
) -> Result<Placement, String> {
    let stored_next = seen.stored.as_ref().map(|c| c.next_offset);
    if let Some(stored) = &seen.stored {
        if by_timestamp && generation < stored.generation {
            return Err(format!(
                "{}: the store's checkpoint was written at write generation {}, above this \
                 processor's {generation}: its writes would lose to older ones. Set \
                 --write-generation (fold.write_generation) to {} or more.",
                seen.describe(),
                stored.generation,
                stored.generation
            ));
        }
    }
    let checkpoint = |next_offset| Checkpoint {
        next_offset,
        log: seen.log.clone(),
        generation,
    };
    let Some(mismatch) = mismatch(seen) else {
        return Ok(Placement {
            checkpoint: checkpoint(stored_next.unwrap_or(0)),
            start: None,
            record: false,
            handled: None,
        });
    };
    let same_log = mismatch == Mismatch::GroupAhead;
    let from = match on_mismatch {
        OnMismatch::Refuse => return Err(seen.refusal(mismatch)),
        OnMismatch::Rebuild if same_log => stored_next.unwrap_or(0),
        OnMismatch::Rebuild => 0,
        OnMismatch::Rebase => match seen.committed {
            Some(committed) if same_log || committed <= seen.end => committed,
            _ => 0,
        },
    };
    let backwards = seen
        .stored
        .as_ref()
        .is_some_and(|c| !same_log || from < c.next_offset);
    if let (true, Some(stored)) = (by_timestamp && backwards, &seen.stored) {
        if generation <= stored.generation {
            return Err(format!(
                "{}: folding it from offset {from} rewrites rows that were written at higher \
                 offsets, which this store orders by write timestamp: raise --write-generation \
                 (fold.write_generation) above {}, as for a partition resize.",
                seen.describe(),
                stored.generation
            ));
        }
    }
    Ok(Placement {
        checkpoint: checkpoint(from),
        start: Some(from),
        // A rebuild on the same log folds from the store's own checkpoint, which needs
        // no record; every other decision moves the checkpoint.
        record: !(on_mismatch == OnMismatch::Rebuild && same_log),
        handled: Some((mismatch, on_mismatch)),
    })
}

impl Observed {
    fn describe(&self) -> String {
        format!(
            "group `{}`, {} partition {}",
            self.group, self.topic, self.partition
        )
    }

    fn refusal(&self, mismatch: Mismatch) -> String {
        let stored = match &self.stored {
            Some(c) if c.log.is_empty() => {
                format!("next offset {} (log not recorded)", c.next_offset)
            }
            Some(c) => format!("next offset {} in log {}", c.next_offset, c.log),
            None => "no checkpoint".to_owned(),
        };
        let committed = self
            .committed
            .map_or_else(|| "none".to_owned(), |c| c.to_string());
        let what = match mismatch {
            Mismatch::OtherLog => "the store's checkpoint counts in another log (the topic was deleted and created again, or this is another cluster)",
            Mismatch::BeyondEnd => "the store's checkpoint is beyond the partition's end (the log started again)",
            Mismatch::GroupAhead => "the group's committed offset is beyond the store's checkpoint (this store did not fold those records: a new or lost store, a wrong --store, or a store restored from an older backup)",
        };
        format!(
            "refusing to fold {}: {what}. Found: store {stored}; broker log {}, end offset {}; \
             group committed offset {committed}. Ways out: point --store at the store that \
             folded this group; or run with --rebuild to fold what this store has not folded \
             (from its checkpoint in this log, else from the earliest retained offset); or \
             with --rebase to keep this store's state and go on from the group's committed \
             offset (the records in between are then never folded into it). The README's \
             \"Store and log\" section says when each is right.",
            self.describe(),
            self.log,
            self.end,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "topic-id:AAA";

    fn seen(stored: Option<(i64, &str)>, end: i64, committed: Option<i64>) -> Observed {
        Observed {
            group: "g".into(),
            topic: "events.raw".into(),
            partition: 3,
            stored: stored.map(|(next_offset, log)| Checkpoint {
                next_offset,
                log: log.into(),
                generation: 0,
            }),
            log: LOG.into(),
            end,
            committed,
        }
    }

    fn start(p: &Result<Placement, String>) -> Option<i64> {
        p.as_ref().expect("placed").start
    }

    #[test]
    fn a_store_and_log_that_agree_fold_as_always() {
        for s in [
            seen(None, 0, None),
            seen(None, 500, None),
            seen(Some((400, LOG)), 500, Some(300)),
            seen(Some((400, LOG)), 400, Some(400)),
            // Written before logs were named: adopts this one.
            seen(Some((400, "")), 500, None),
        ] {
            let p = place(&s, OnMismatch::Refuse, 0, false).expect("agrees");
            assert_eq!(p.start, None, "{s:?}");
            assert!(!p.record && p.handled.is_none());
            assert_eq!(p.checkpoint.log, LOG);
            assert_eq!(
                p.checkpoint.next_offset,
                s.stored.map_or(0, |c| c.next_offset)
            );
        }
    }

    #[test]
    fn each_mismatch_is_refused_by_default_with_what_was_found() {
        for (s, words) in [
            (seen(Some((400, "topic-id:OLD")), 500, None), "another log"),
            (
                seen(Some((400, LOG)), 100, None),
                "beyond the partition's end",
            ),
            (
                seen(None, 50_000, Some(50_000)),
                "committed offset is beyond",
            ),
            (
                seen(Some((100, LOG)), 500, Some(400)),
                "committed offset is beyond",
            ),
        ] {
            let e = place(&s, OnMismatch::Refuse, 0, false).expect_err("refused");
            for needle in [
                words,
                "group `g`",
                "partition 3",
                "--rebuild",
                "--rebase",
                LOG,
            ] {
                assert!(e.contains(needle), "{needle:?} missing from: {e}");
            }
        }
    }

    #[test]
    fn rebuild_folds_what_the_store_has_not() {
        // A new store under a group that folded elsewhere: everything.
        let p = place(
            &seen(None, 50_000, Some(50_000)),
            OnMismatch::Rebuild,
            0,
            false,
        );
        assert_eq!(start(&p), Some(0));
        // A store restored from an older backup: from its own checkpoint.
        let p = place(
            &seen(Some((100, LOG)), 500, Some(400)),
            OnMismatch::Rebuild,
            0,
            false,
        )
        .expect("placed");
        assert_eq!((p.start, p.record), (Some(100), false));
        // A topic created again: the new log from its start.
        let p = place(
            &seen(Some((400, "topic-id:OLD")), 30, None),
            OnMismatch::Rebuild,
            0,
            false,
        )
        .expect("placed");
        assert_eq!((p.start, p.record), (Some(0), true));
        assert_eq!(p.handled, Some((Mismatch::OtherLog, OnMismatch::Rebuild)));
    }

    #[test]
    fn rebase_goes_on_from_the_group_or_the_start_of_a_new_log() {
        // The embedded broker started again: a new log, no group offsets.
        let p = place(
            &seen(Some((400, "topic-id:OLD")), 0, None),
            OnMismatch::Rebase,
            0,
            false,
        )
        .expect("placed");
        assert_eq!((p.start, p.record), (Some(0), true));
        assert_eq!(p.checkpoint.log, LOG);
        // A group ahead of the store: from the group, by choice.
        let p = place(
            &seen(Some((100, LOG)), 500, Some(400)),
            OnMismatch::Rebase,
            0,
            false,
        );
        assert_eq!(start(&p), Some(400));
        // A committed offset past a new log's end belongs to the old log.
        let p = place(
            &seen(Some((400, LOG)), 10, Some(300)),
            OnMismatch::Rebase,
            0,
            false,
        );
        assert_eq!(start(&p), Some(0));
    }

    #[test]
    fn stores_ordered_by_timestamp_need_a_higher_generation_to_go_back() {
        let mut s = seen(Some((400, "topic-id:OLD")), 0, None);
        let e = place(&s, OnMismatch::Rebase, 0, true).expect_err("needs a generation");
        assert!(e.contains("--write-generation"), "{e}");
        let p = place(&s, OnMismatch::Rebase, 1, true).expect("placed");
        assert_eq!(p.checkpoint.generation, 1);
        // Going forward in the same log needs nothing.
        s = seen(Some((100, LOG)), 500, Some(400));
        assert!(place(&s, OnMismatch::Rebase, 0, true).is_ok());
        // A generation below the stored one would lose every write.
        if let Some(c) = s.stored.as_mut() {
            c.generation = 2;
        }
        let e = place(&s, OnMismatch::Refuse, 1, true).expect_err("lower generation");
        assert!(e.contains("write generation 2"), "{e}");
    }
}
