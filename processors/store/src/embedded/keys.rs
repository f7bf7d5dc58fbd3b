//! How the embedded engine builds its keys: composite byte strings whose byte order is
//! the order of their parts, so that every query is a range scan.

use funnelfold_core::{BotKey, RetentionKey, TrafficKey};

use super::tables::VisitorRow;
use crate::{FlowDay, Result, StoreError};

/// Builds order-preserving composite keys.
///
/// Strings are written with `0x00` escaped as `0x00 0xFF` and terminated by
/// `0x00 0x01`. Unlike a length prefix, this keeps byte order equal to string order
/// ("b" after "aa"), which the cursors rely on: ScyllaDB orders text clustering columns
/// by their UTF-8 bytes, and both engines must page in the same order. The terminator
/// sorts below every escaped or plain byte, so a string sorts before its extensions and
/// no key is a prefix of another key with a different first part.
///
/// Integers are big-endian with the sign bit flipped, so that negative numbers sort
/// before positive ones.
#[derive(Debug, Default, Clone)]
pub(super) struct Key(pub(super) Vec<u8>);

impl Key {
    pub(super) fn new() -> Self {
        Key(Vec::with_capacity(64))
    }

    pub(super) fn str(mut self, s: &str) -> Self {
        for &b in s.as_bytes() {
            if b == 0 {
                self.0.extend_from_slice(&[0x00, 0xFF]);
            } else {
                self.0.push(b);
            }
        }
        self.0.extend_from_slice(&[0x00, 0x01]);
        self
    }

    pub(super) fn i64(mut self, v: i64) -> Self {
        self.0
            .extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
        self
    }

    pub(super) fn i32(mut self, v: i32) -> Self {
        self.0
            .extend_from_slice(&((v as u32) ^ (1 << 31)).to_be_bytes());
        self
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The smallest byte string greater than every string starting with `prefix`, or
/// `None` when there is none (the prefix is all `0xFF`): the exclusive end of a prefix scan.
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

pub(super) fn checkpoint_key(group: &str, topic: &str, partition: i32) -> Key {
    Key::new().str(group).str(topic).i32(partition)
}

pub(super) fn visitor_key(funnel_id: &str, anonymous_id: &str) -> Key {
    Key::new().str(funnel_id).str(anonymous_id)
}

/// The key of a visitor's row of one kind in [`VISITOR_ROWS`](super::tables::VISITOR_ROWS)
/// (for a session's start, its id follows: [`session_start_key`]).
pub(super) fn visitor_row_key(funnel_id: &str, anonymous_id: &str, row: VisitorRow) -> Key {
    let mut key = visitor_key(funnel_id, anonymous_id);
    key.0.push(row as u8);
    key
}

pub(super) fn session_start_key(funnel_id: &str, anonymous_id: &str, session_id: &str) -> Key {
    visitor_row_key(funnel_id, anonymous_id, VisitorRow::SessionStart).str(session_id)
}

pub(super) fn traffic_key(topic: &str, partition: i32, key: &TrafficKey) -> Key {
    Key::new()
        .str(&key.funnel_id)
        .i32(key.day)
        .str(&key.source)
        .str(&key.medium)
        .str(&key.campaign)
        .str(topic)
        .i32(partition)
}

pub(super) fn flow_key(topic: &str, partition: i32, day: &FlowDay) -> Key {
    Key::new()
        .str(&day.funnel_id)
        .i32(day.day)
        .str(topic)
        .i32(partition)
}

pub(super) fn retention_key(topic: &str, partition: i32, key: &RetentionKey) -> Key {
    Key::new()
        .str(&key.funnel_id)
        .i32(key.cohort)
        .i32(i32::from(key.offset))
        .str(topic)
        .i32(partition)
}

pub(super) fn bot_key(topic: &str, partition: i32, key: &BotKey) -> Key {
    Key::new()
        .str(&key.funnel_id)
        .i32(key.day)
        .str(&key.bot)
        .str(topic)
        .i32(partition)
}

pub(super) fn funnel_share_key(funnel_id: &str, topic: &str, partition: i32) -> Key {
    Key::new().str(funnel_id).str(topic).i32(partition)
}

/// The integer a [`Key`] holds at byte `at`.
pub(super) fn i64_at(key: &[u8], at: usize) -> Result<i64> {
    key.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
        .ok_or_else(|| StoreError::Fatal("corrupt event index key in the embedded store".into()))
}

/// The exclusive upper key of a newest-first page: below `to`, and strictly below the
/// cursor when there is one.
pub(super) fn page_upper(to_key: Vec<u8>, cursor_key: Option<Vec<u8>>) -> Vec<u8> {
    match cursor_key {
        Some(c) if c < to_key => c,
        _ => to_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_keys_sort_like_strings() {
        let words = ["", "a", "a\0", "a\0b", "aa", "ab", "b", "\u{e9}"];
        let mut sorted = words.to_vec();
        sorted.sort_by_key(|w| Key::new().str(w).i32(0).0);
        let mut expected = words.to_vec();
        expected.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn integer_keys_sort_like_integers() {
        let nums = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        let keys: Vec<_> = nums.iter().map(|&n| Key::new().i64(n).0).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let nums = [i32::MIN, -1, 0, 1, i32::MAX];
        let keys: Vec<_> = nums.iter().map(|&n| Key::new().i32(n).0).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn prefix_end_bounds_every_extension() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
