//! Event rows of a flush, kept encoded.
//!
//! A flush carries every event folded since the previous one: hundreds of thousands of
//! rows while a processor catches up. As [`EventRow`] structs they cost an allocation
//! per string field and about four times their encoded size; here each row is its
//! postcard encoding, back to back in one buffer, built without copying the event's
//! strings. Reading yields borrowed views ([`EventRowRef`]), and the encoding of a row
//! is the one an [`EventRow`] has, so a store can write rows (or blocks of rows) as
//! they are.

use std::fmt;

use funnelfold_core::EventRow;
use serde::{Deserialize, Serialize};

/// An [`EventRow`] borrowing its strings. Its fields are those of [`EventRow`] in the
/// same order, so both have the same postcard encoding (a test holds them together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRowRef<'a> {
    pub funnel_id: &'a str,
    pub event_id: &'a str,
    pub anonymous_id: &'a str,
    #[serde(borrow)]
    pub session_id: Option<&'a str>,
    pub event_name: &'a str,
    pub timestamp: i64,
    #[serde(borrow)]
    pub path: Option<&'a str>,
    pub is_conversion: bool,
    pub revenue_minor: Option<i64>,
    #[serde(borrow)]
    pub currency: Option<&'a str>,
    pub is_bot: bool,
}

impl<'a> From<&'a EventRow> for EventRowRef<'a> {
    fn from(e: &'a EventRow) -> Self {
        EventRowRef {
            funnel_id: &e.funnel_id,
            event_id: &e.event_id,
            anonymous_id: &e.anonymous_id,
            session_id: e.session_id.as_deref(),
            event_name: &e.event_name,
            timestamp: e.timestamp,
            path: e.path.as_deref(),
            is_conversion: e.is_conversion,
            revenue_minor: e.revenue_minor,
            currency: e.currency.as_deref(),
            is_bot: e.is_bot,
        }
    }
}

impl EventRowRef<'_> {
    pub fn to_owned_row(&self) -> EventRow {
        EventRow {
            funnel_id: self.funnel_id.to_owned(),
            event_id: self.event_id.to_owned(),
            anonymous_id: self.anonymous_id.to_owned(),
            session_id: self.session_id.map(str::to_owned),
            event_name: self.event_name.to_owned(),
            timestamp: self.timestamp,
            path: self.path.map(str::to_owned),
            is_conversion: self.is_conversion,
            revenue_minor: self.revenue_minor,
            currency: self.currency.map(str::to_owned),
            is_bot: self.is_bot,
        }
    }
}

/// Event rows, each postcard-encoded, in the order they were pushed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EventRows {
    bytes: Vec<u8>,
    /// Where each row's encoding ends in `bytes`.
    ends: Vec<usize>,
}

impl fmt::Debug for EventRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(row, _)| row))
            .finish()
    }
}

impl EventRows {
    pub fn new() -> Self {
        EventRows::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held (the encodings, not the index).
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn push_ref(&mut self, row: &EventRowRef<'_>) {
        // Serializing into a Vec fails only on an allocation failure, which aborts.
        self.bytes = postcard::to_extend(row, std::mem::take(&mut self.bytes))
            .expect("postcard encoding into a Vec cannot fail");
        self.ends.push(self.bytes.len());
    }

    pub fn push(&mut self, row: &EventRow) {
        self.push_ref(&EventRowRef::from(row));
    }

    /// Moves every row of `other` to the end of `self`.
    pub fn append(&mut self, other: &mut EventRows) {
        let base = self.bytes.len();
        self.bytes.append(&mut other.bytes);
        self.ends.extend(other.ends.drain(..).map(|end| base + end));
    }

    /// The encoding of row `i`.
    fn encoded(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Each row, as a borrowed view and as its encoding (that of an [`EventRow`]).
    pub fn iter(&self) -> impl Iterator<Item = (EventRowRef<'_>, &[u8])> + '_ {
        (0..self.len()).map(move |i| {
            let encoded = self.encoded(i);
            // Only `push_ref` writes `bytes`, one whole encoding at a time.
            let row = postcard::from_bytes(encoded).expect("rows decode as they were encoded");
            (row, encoded)
        })
    }

    pub fn to_vec(&self) -> Vec<EventRow> {
        self.iter().map(|(row, _)| row.to_owned_row()).collect()
    }
}

impl Extend<EventRow> for EventRows {
    fn extend<T: IntoIterator<Item = EventRow>>(&mut self, iter: T) {
        for row in iter {
            self.push(&row);
        }
    }
}

impl FromIterator<EventRow> for EventRows {
    fn from_iter<T: IntoIterator<Item = EventRow>>(iter: T) -> Self {
        let mut rows = EventRows::new();
        rows.extend(iter);
        rows
    }
}

/// The postcard encoding of a `Vec<EventRow>` made of already encoded rows: the
/// length, then the rows.
pub fn encode_block<'a>(rows: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = postcard::to_stdvec(&(rows.len() as u64)).expect("a varint always encodes");
    for row in rows {
        out.extend_from_slice(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64) -> EventRow {
        EventRow {
            funnel_id: "demo".into(),
            event_id: format!("e{i}"),
            anonymous_id: "a".into(),
            session_id: (i % 2 == 0).then(|| "s".to_owned()),
            event_name: "page_view".into(),
            timestamp: 1_700_000_000_000 + i,
            path: Some("/pricing".into()),
            is_conversion: i % 3 == 0,
            revenue_minor: (i % 3 == 0).then_some(1999),
            currency: (i % 3 == 0).then(|| "EUR".to_owned()),
            is_bot: i % 2 == 1,
        }
    }

    #[test]
    fn a_borrowed_row_encodes_as_the_owned_one() {
        for i in 0..6 {
            let owned = row(i);
            assert_eq!(
                postcard::to_stdvec(&EventRowRef::from(&owned)).expect("encode a view"),
                postcard::to_stdvec(&owned).expect("encode a row")
            );
        }
    }

    #[test]
    fn rows_round_trip_and_append_in_order() {
        let mut a: EventRows = (0..3).map(row).collect();
        let mut b: EventRows = (3..7).map(row).collect();
        a.append(&mut b);
        assert!(b.is_empty());
        assert_eq!(a.to_vec(), (0..7).map(row).collect::<Vec<_>>());
    }

    #[test]
    fn a_block_of_encoded_rows_decodes_as_a_vec_of_rows() {
        let rows: EventRows = (0..5).map(row).collect();
        let block = encode_block(
            rows.iter()
                .map(|(_, bytes)| bytes)
                .collect::<Vec<_>>()
                .into_iter(),
        );
        let decoded: Vec<EventRow> = postcard::from_bytes(&block).expect("decode a block");
        assert_eq!(decoded, rows.to_vec());
        let empty = encode_block(std::iter::empty());
        assert_eq!(
            postcard::from_bytes::<Vec<EventRow>>(&empty).expect("decode an empty block"),
            vec![]
        );
    }
}
