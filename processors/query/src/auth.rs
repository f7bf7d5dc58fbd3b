//! Who may do what: `Authorization: Bearer <key>`, checked against the keys of the
//! funnel a request is about.
//!
//! Keys are kept only as SHA-256 digests, and a presented key is compared with every
//! configured digest with a constant-time equality and no early exit, so neither the
//! answer's timing nor its length says how much of a guess was right. Keys are never
//! logged and never quoted in an error.

use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiKeys;
use crate::error::ApiError;

/// What a request wants to do with a funnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read projections.
    Read,
    /// Send events through `/v1/track`.
    Track,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Full,
    TrackOnly,
}

struct Entry {
    digest: [u8; 32],
    funnel: String,
    scope: Scope,
}

/// The access policy: off (`None`: no key file, everything is allowed and the operator
/// was warned at start-up), or a set of keys per funnel.
pub struct Access {
    entries: Option<Vec<Entry>>,
}

/// What a presented key grants: (funnel, scope) pairs, and the key's digest (what
/// per-key limits count by, so that the key itself is never kept).
pub struct Grant(Vec<(String, Scope)>, [u8; 32]);

impl Grant {
    /// The SHA-256 digest of the presented key: an identity for per-key limits.
    pub fn key_digest(&self) -> [u8; 32] {
        self.1
    }

    /// Whether the key may do `need` on `funnel`; a 403 that says why when not.
    pub fn check(&self, funnel: &str, need: Need) -> Result<(), ApiError> {
        let mut track_only = false;
        for (f, scope) in &self.0 {
            if f == funnel {
                if need == Need::Track || *scope == Scope::Full {
                    return Ok(());
                }
                track_only = true;
            }
        }
        let message = if track_only {
            format!("this key may only send events to funnel {funnel:?} (/v1/track); reading needs a full key")
        } else {
            format!("this key does not grant access to funnel {funnel:?}")
        };
        Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", message))
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

impl Access {
    pub fn new(keys: Option<&ApiKeys>) -> Access {
        let Some(keys) = keys else {
            return Access { entries: None };
        };
        let mut entries = Vec::new();
        for (funnel, k) in &keys.funnels {
            for (list, scope) in [(&k.keys, Scope::Full), (&k.track_keys, Scope::TrackOnly)] {
                for key in list {
                    entries.push(Entry {
                        digest: digest(key.as_bytes()),
                        funnel: funnel.clone(),
                        scope,
                    });
                }
            }
        }
        Access {
            entries: Some(entries),
        }
    }

    pub fn is_open(&self) -> bool {
        self.entries.is_none()
    }

    /// Authenticates a request: `None` when access checks are off, the key's grant
    /// otherwise, or a 401 when the key is missing, malformed or unknown.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Grant>, ApiError> {
        let Some(entries) = &self.entries else {
            return Ok(None);
        };
        let unauthorized =
            |code, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing_key",
                "this API needs a key: send the header Authorization: Bearer <key>",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(unauthorized(
                "invalid_key",
                "the Authorization header must be: Bearer <key>",
            ));
        };
        let presented = digest(token.as_bytes());
        let mut grants = Vec::new();
        // Every entry is compared, matching or not: the time taken does not depend on
        // which entry (if any) matches.
        for entry in entries {
            if bool::from(entry.digest.ct_eq(&presented)) {
                grants.push((entry.funnel.clone(), entry.scope));
            }
        }
        if grants.is_empty() {
            return Err(unauthorized("invalid_key", "the API key is not valid"));
        }
        Ok(Some(Grant(grants, presented)))
    }

    /// Authenticates and checks one funnel in one go.
    pub fn authorize(&self, headers: &HeaderMap, funnel: &str, need: Need) -> Result<(), ApiError> {
        match self.authenticate(headers)? {
            None => Ok(()),
            Some(grant) => grant.check(funnel, need),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn keys_are_scoped_to_funnels() {
        let mut keys = ApiKeys::default();
        keys.insert("a", "key-for-funnel-a-0001");
        keys.insert_track("a", "track-key-funnel-a-01");
        keys.insert("b", "key-for-funnel-b-0001");
        let access = Access::new(Some(&keys));
        let code =
            |h: &HeaderMap, f: &str, n: Need| access.authorize(h, f, n).err().map(|e| e.code);
        assert_eq!(
            code(&headers("Bearer key-for-funnel-a-0001"), "a", Need::Read),
            None
        );
        assert_eq!(
            code(&headers("bearer key-for-funnel-a-0001"), "a", Need::Track),
            None
        );
        assert_eq!(
            code(&headers("Bearer key-for-funnel-a-0001"), "b", Need::Read),
            Some("forbidden")
        );
        assert_eq!(
            code(&headers("Bearer track-key-funnel-a-01"), "a", Need::Track),
            None
        );
        assert_eq!(
            code(&headers("Bearer track-key-funnel-a-01"), "a", Need::Read),
            Some("forbidden")
        );
        assert_eq!(
            code(&headers("Bearer nope-nope-nope-nope"), "a", Need::Read),
            Some("invalid_key")
        );
        assert_eq!(
            code(&headers("Basic a2V5"), "a", Need::Read),
            Some("invalid_key")
        );
        assert_eq!(
            code(&headers("Bearer "), "a", Need::Read),
            Some("invalid_key")
        );
        assert_eq!(
            code(&HeaderMap::new(), "a", Need::Read),
            Some("missing_key")
        );
        assert!(Access::new(None)
            .authorize(&HeaderMap::new(), "a", Need::Read)
            .is_ok());
    }
}
