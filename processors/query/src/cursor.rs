//! Opaque, tamper-evident page cursors.
//!
//! A cursor is `base64url(payload ‖ mac)`: the payload holds the query's time window
//! (frozen at the first page, so that "the last 90 days" does not slide while a client
//! pages) and the position of the last row served; the MAC is HMAC-SHA-256, truncated
//! to 128 bits, over a domain tag, the route, the funnel, the filters and the payload.
//! Changing a byte, or replaying a cursor on another funnel, route or filter, fails the
//! MAC and is answered with a 400 `bad_cursor`.
//!
//! Cursors hide nothing secret (the payload is not encrypted): the MAC only stops a
//! client from steering a scan to a position or window it did not get from us.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use funnelfold_store::{EventCursor, SessionCursor};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;

const DOMAIN: &[u8] = b"funnelfold-cursor-v1";
const MAC_LEN: usize = 16;
const VERSION: u8 = 1;
/// Far more than any real cursor (ids are at most a few hundred bytes): refusing longer
/// strings up front bounds the work a hostile cursor can cause.
const MAX_CURSOR_CHARS: usize = 2048;

/// The HMAC key of the cursors.
#[derive(Clone)]
pub struct CursorKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(********)")
    }
}

/// What a cursor is bound to besides its payload: the route, the funnel and the
/// filters of the query, exactly as the client gave them (absent stays absent).
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub route: &'a str,
    pub funnel: &'a str,
    pub filters: &'a [Option<&'a str>],
}

/// A time window and a position in it, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<C> {
    pub from: i64,
    pub to: i64,
    pub after: C,
}

fn bad_cursor(message: &str) -> ApiError {
    ApiError::bad_request("bad_cursor", message.to_string())
}

impl CursorKey {
    /// A key from a configured secret, or a random one for this process.
    pub fn new(secret: Option<&[u8]>) -> CursorKey {
        match secret {
            Some(s) => CursorKey { key: s.to_vec() },
            None => {
                let mut key = vec![0u8; 32];
                rand::fill(&mut key[..]);
                CursorKey { key }
            }
        }
    }

    fn mac(&self, scope: &Scope<'_>, payload: &[u8]) -> [u8; MAC_LEN] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            // HMAC takes keys of any length; this branch is unreachable.
            return [0; MAC_LEN];
        };
        // Every variable-length part is length-prefixed, so no two scopes serialize
        // to the same bytes.
        mac.update(DOMAIN);
        put_bytes_into(&mut mac, scope.route.as_bytes());
        put_bytes_into(&mut mac, scope.funnel.as_bytes());
        mac.update(&(scope.filters.len() as u32).to_be_bytes());
        for filter in scope.filters {
            match filter {
                None => mac.update(&[0]),
                Some(v) => {
                    mac.update(&[1]);
                    put_bytes_into(&mut mac, v.as_bytes());
                }
            }
        }
        put_bytes_into(&mut mac, payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    fn seal(&self, scope: &Scope<'_>, payload: Vec<u8>) -> String {
        let mac = self.mac(scope, &payload);
        let mut bytes = payload;
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn open(&self, scope: &Scope<'_>, cursor: &str) -> Result<Vec<u8>, ApiError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(bad_cursor("the cursor is too long to be one of ours"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| bad_cursor("the cursor is not valid base64url"))?;
        if bytes.len() < MAC_LEN + 1 {
            return Err(bad_cursor("the cursor is too short to be one of ours"));
        }
        let (payload, mac) = bytes.split_at(bytes.len() - MAC_LEN);
        let expected = self.mac(scope, payload);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], mac)) {
            return Err(bad_cursor(
                "the cursor was altered, or belongs to another query (route, funnel or filters), or was issued \
                 before a restart of a server without a fixed cursor secret: start again without it",
            ));
        }
        Ok(payload.to_vec())
    }

    pub fn seal_sessions(&self, scope: &Scope<'_>, page: &Page<SessionCursor>) -> String {
        let mut p = header(page.from, page.to);
        p.extend_from_slice(&page.after.started_at.to_be_bytes());
        put_bytes(&mut p, page.after.anonymous_id.as_bytes());
        put_bytes(&mut p, page.after.session_id.as_bytes());
        self.seal(scope, p)
    }

    pub fn open_sessions(
        &self,
        scope: &Scope<'_>,
        cursor: &str,
    ) -> Result<Page<SessionCursor>, ApiError> {
        let payload = self.open(scope, cursor)?;
        let mut r = Reader::new(&payload)?;
        let (from, to) = (r.i64()?, r.i64()?);
        let after = SessionCursor {
            started_at: r.i64()?,
            anonymous_id: r.string()?,
            session_id: r.string()?,
        };
        r.end()?;
        Ok(Page { from, to, after })
    }

    pub fn seal_events(&self, scope: &Scope<'_>, page: &Page<EventCursor>) -> String {
        let mut p = header(page.from, page.to);
        p.extend_from_slice(&page.after.timestamp.to_be_bytes());
        put_bytes(&mut p, page.after.event_id.as_bytes());
        self.seal(scope, p)
    }

    pub fn open_events(
        &self,
        scope: &Scope<'_>,
        cursor: &str,
    ) -> Result<Page<EventCursor>, ApiError> {
        let payload = self.open(scope, cursor)?;
        let mut r = Reader::new(&payload)?;
        let (from, to) = (r.i64()?, r.i64()?);
        let after = EventCursor {
            timestamp: r.i64()?,
            event_id: r.string()?,
        };
        r.end()?;
        Ok(Page { from, to, after })
    }
}

fn header(from: i64, to: i64) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.push(VERSION);
    p.extend_from_slice(&from.to_be_bytes());
    p.extend_from_slice(&to.to_be_bytes());
    p
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_bytes_into(mac: &mut Hmac<Sha256>, bytes: &[u8]) {
    mac.update(&(bytes.len() as u32).to_be_bytes());
    mac.update(bytes);
}

/// Reads a payload that passed the MAC. It was written by us, but a payload of another
/// version under the same secret must still fail cleanly rather than panic.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(payload: &'a [u8]) -> Result<Self, ApiError> {
        match payload.split_first() {
            Some((&VERSION, rest)) => Ok(Reader { rest }),
            _ => Err(bad_cursor("the cursor is of an unknown version")),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ApiError> {
        if self.rest.len() < n {
            return Err(bad_cursor("the cursor is truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn i64(&mut self) -> Result<i64, ApiError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(b))
    }

    fn string(&mut self) -> Result<String, ApiError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        let len = u32::from_be_bytes(b) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad_cursor("the cursor holds invalid UTF-8"))
    }

    fn end(&self) -> Result<(), ApiError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(bad_cursor("the cursor has trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Page<SessionCursor> {
        Page {
            from: 10,
            to: 20,
            after: SessionCursor {
                started_at: 15,
                anonymous_id: "v-1".into(),
                session_id: "s-1".into(),
            },
        }
    }

    #[test]
    fn a_cursor_opens_only_in_its_own_scope() {
        let key = CursorKey::new(Some(b"secret"));
        let scope = Scope {
            route: "sessions",
            funnel: "shop",
            filters: &[Some("10"), None],
        };
        let cursor = key.seal_sessions(&scope, &page());
        assert_eq!(key.open_sessions(&scope, &cursor).ok(), Some(page()));

        let other_funnel = Scope {
            funnel: "blog",
            ..scope
        };
        let other_filter = Scope {
            filters: &[Some("11"), None],
            ..scope
        };
        let shifted_filter = Scope {
            filters: &[None, Some("10")],
            ..scope
        };
        let other_route = Scope {
            route: "events",
            ..scope
        };
        for s in [other_funnel, other_filter, shifted_filter, other_route] {
            assert_eq!(
                key.open_sessions(&s, &cursor).err().map(|e| e.code),
                Some("bad_cursor"),
                "{s:?}"
            );
        }
        let other_key = CursorKey::new(None);
        assert!(other_key.open_sessions(&scope, &cursor).is_err());
    }

    #[test]
    fn any_altered_byte_is_detected() {
        let key = CursorKey::new(None);
        let scope = Scope {
            route: "sessions",
            funnel: "shop",
            filters: &[],
        };
        let cursor = key.seal_sessions(&scope, &page());
        let bytes = URL_SAFE_NO_PAD.decode(&cursor).expect("base64");
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let altered = URL_SAFE_NO_PAD.encode(altered);
            assert!(key.open_sessions(&scope, &altered).is_err(), "byte {i}");
        }
        for junk in ["", "!!!", "AAAA", &"A".repeat(5000)] {
            assert_eq!(
                key.open_sessions(&scope, junk).err().map(|e| e.code),
                Some("bad_cursor")
            );
        }
    }
}
