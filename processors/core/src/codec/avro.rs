//! Avro binary primitives: a bounds-checked cursor over a datum (running out of bytes
//! is a "truncated datum" error, never a panic) and the writers of longs, strings,
//! booleans, optionals and maps the hand-written encoders use.

#[allow(clippy::wildcard_imports)]
use super::*;

/// A cursor over an Avro datum. Every read is bounds-checked: running out of bytes is a
/// "truncated datum" error, never a panic.
pub(super) struct Input<'a> {
    buf: &'a [u8],
    pub(super) pos: usize,
}

pub(super) fn truncated(pos: usize) -> DecodeError {
    DecodeError::Avro(format!("truncated datum at byte {pos}"))
}

impl<'a> Input<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Input<'a> {
        Input { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(truncated(self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A zig-zag varint `long`. Like `apache-avro`, at most 10 bytes; bits beyond 64 in
    /// the tenth byte are ignored.
    #[inline]
    pub(super) fn long(&mut self) -> Result<i64, DecodeError> {
        // One-byte values (-64..=63: union indices, small lengths, empty maps) dominate.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(((b >> 1) as i64) ^ -((b & 1) as i64));
            }
        }
        let mut z: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(truncated(self.pos));
            };
            self.pos += 1;
            z |= u64::from(b & 0x7F) << (7 * i);
            if b < 0x80 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(DecodeError::Avro(format!(
            "varint longer than 10 bytes at byte {}",
            self.pos
        )))
    }

    pub(super) fn int(&mut self) -> Result<i32, DecodeError> {
        let pos = self.pos;
        let v = self.long()?;
        i32::try_from(v)
            .map_err(|_| DecodeError::Avro(format!("int out of range at byte {pos}: {v}")))
    }

    /// A length prefix: non-negative and no longer than what is left, so nothing is ever
    /// allocated for bytes that are not there.
    pub(super) fn len(&mut self) -> Result<usize, DecodeError> {
        let pos = self.pos;
        let n = self.long()?;
        let n = usize::try_from(n)
            .map_err(|_| DecodeError::Avro(format!("negative length {n} at byte {pos}")))?;
        if n > self.remaining() {
            return Err(truncated(pos));
        }
        Ok(n)
    }

    pub(super) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }

    #[inline]
    pub(super) fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::InvalidUtf8)
    }

    pub(super) fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    pub(super) fn boolean(&mut self) -> Result<bool, DecodeError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::Avro(format!(
                "invalid boolean byte 0x{b:02x} at byte {}",
                self.pos - 1
            ))),
        }
    }

    /// A union branch index in `0..n`.
    pub(super) fn branch(&mut self, n: usize) -> Result<usize, DecodeError> {
        let pos = self.pos;
        let i = self.long()?;
        usize::try_from(i).ok().filter(|&i| i < n).ok_or_else(|| {
            DecodeError::Avro(format!(
                "union branch {i} out of range 0..{n} at byte {pos}"
            ))
        })
    }

    /// `["null", "string"]`.
    pub(super) fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.branch(2)? {
            0 => Ok(None),
            _ => self.string().map(Some),
        }
    }

    /// `["null", "long"]`.
    pub(super) fn opt_long(&mut self) -> Result<Option<i64>, DecodeError> {
        match self.branch(2)? {
            0 => Ok(None),
            _ => self.long().map(Some),
        }
    }

    /// Item count of the next array/map block (0 ends the collection). A negative count
    /// is followed by the block's byte size, which is skipped. Each item takes at least
    /// `min_item_bytes`, so a count the remaining bytes cannot hold is refused before any
    /// loop or allocation.
    pub(super) fn block_count(&mut self, min_item_bytes: usize) -> Result<usize, DecodeError> {
        let pos = self.pos;
        let count = self.long()?;
        let count = if count < 0 {
            let _byte_size = self.long()?;
            count
                .checked_neg()
                .ok_or_else(|| DecodeError::Avro(format!("invalid block count at byte {pos}")))?
        } else {
            count
        };
        let count = usize::try_from(count).map_err(|_| truncated(pos))?;
        if count.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return Err(truncated(pos));
        }
        Ok(count)
    }

    pub(super) fn end(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Avro(format!(
                "{n} trailing bytes after the datum"
            ))),
        }
    }
}

pub(super) fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn put_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// `["null", "string"]`: branch 0 (zig-zag 0x00) or branch 1 (zig-zag 0x02) + string.
pub(super) fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(2);
            put_str(out, s);
        }
    }
}

pub(super) fn put_opt_long(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(2);
            put_long(out, v);
        }
    }
}

/// A map as one block (count, entries) followed by the terminating empty block.
pub(super) fn put_map<V>(
    out: &mut Vec<u8>,
    map: &BTreeMap<String, V>,
    mut put_value: impl FnMut(&mut Vec<u8>, &V),
) {
    if !map.is_empty() {
        put_long(out, map.len() as i64);
        for (k, v) in map {
            put_str(out, k);
            put_value(out, v);
        }
    }
    out.push(0);
}
