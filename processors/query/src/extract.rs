//! Reading requests without ever letting axum's plain-text rejections through: query
//! strings (unknown and repeated parameters are refused), JSON bodies (bounded, unknown
//! fields refused), path segments, limits and times.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use chrono::DateTime;
use funnelfold_store::Bots;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The parameters of a query string, checked against the names a route accepts.
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
}

impl Params {
    /// Parses `query`, refusing any name outside `allowed` and any name given twice: a
    /// typo (`limt=10`) or an ambiguous repeat would otherwise be silently ignored and
    /// the client would get an answer to a question it did not ask.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let mut values = HashMap::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&name.as_ref()) {
                let expected = if allowed.is_empty() {
                    "this route takes no query parameters".to_string()
                } else {
                    format!("this route accepts: {}", allowed.join(", "))
                };
                return Err(ApiError::bad_request(
                    "unknown_parameter",
                    format!("unknown query parameter {:?}; {expected}", quote(&name)),
                ));
            }
            if values
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                return Err(ApiError::bad_request(
                    "duplicate_parameter",
                    format!("query parameter {name:?} is given more than once"),
                ));
            }
        }
        Ok(Params { values })
    }

    /// Removes and returns a parameter.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    /// A parameter that, when present, must not be empty.
    pub fn take_non_empty(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            Some(v) if v.is_empty() => Err(ApiError::bad_request(
                "bad_parameter",
                format!("query parameter {name:?} is empty; leave it out or give a value"),
            )),
            other => Ok(other),
        }
    }

    /// `limit`: an integer in 1..=max, `default` when absent.
    pub fn limit(&mut self, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.take("limit") {
            None => Ok(default),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(
                    "bad_limit",
                    format!("limit {:?} is not an integer from 1 to {max}", quote(&raw)),
                )),
            },
        }
    }

    /// `bots`: which events to keep by their bot flag, `Exclude` when absent (every
    /// other number of the API leaves bots out, so a route showing events does too
    /// unless asked), and the value as given (a cursor is bound to it). Every route
    /// that shows events reads it here, so they accept and refuse the same values.
    pub fn bots(&mut self) -> Result<(Bots, Option<String>), ApiError> {
        let raw = self.take("bots");
        let bots = match raw.as_deref() {
            None => Bots::Exclude,
            Some(given) => Bots::from_name(given).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_bots",
                    format!(
                        "bots may be \"exclude\" (the default: visitors' events only), \"include\" or \"only\" (bots' events only), not {:?}",
                        quote(given)
                    ),
                )
            })?,
        };
        Ok((bots, raw))
    }

    /// A time parameter: RFC 3339 (`2026-11-01T00:00:00Z`) or epoch milliseconds.
    pub fn time(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        self.take(name)
            .map(|raw| parse_time(name, &raw))
            .transpose()
    }
}

/// Parses an RFC 3339 date-time or an integer of epoch milliseconds.
pub fn parse_time(name: &str, raw: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_time",
            format!(
                "{name} {:?} is not a time: give RFC 3339 (2026-11-01T00:00:00Z) or epoch milliseconds",
                quote(raw)
            ),
        )
    };
    let ms = if !raw.is_empty()
        && raw
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'))
    {
        raw.parse::<i64>().map_err(|_| bad())?
    } else {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.timestamp_millis())
            .map_err(|_| bad())?
    };
    // Years 0 to 9999: day arithmetic on anything beyond would overflow, and no event
    // is accepted outside 2000..2100 anyway.
    if !(MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) {
        return Err(ApiError::bad_request(
            "bad_time",
            format!("{name} {ms} is outside the years 0 to 9999"),
        ));
    }
    Ok(ms)
}

/// 0000-01-01T00:00:00Z in epoch ms.
const MIN_TIME_MS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z in epoch ms.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Quotes at most 64 characters of a client-supplied value in a message.
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(64) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// Reads a whole body, refusing more than `limit` bytes with a 413.
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::body_too_large(limit);
            }
            source = err.source();
        }
        ApiError::bad_request("bad_body", format!("cannot read the request body: {e}"))
    })
}

/// Parses a JSON body into `T` (whose type should deny unknown fields), classifying
/// what went wrong: not JSON at all, a field the API does not know, or a wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| json_error(&e))
}

pub fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
        }
        Category::Data if e.to_string().starts_with("unknown field") => {
            ApiError::bad_request("unknown_field", format!("{e}"))
        }
        Category::Data => ApiError::bad_request("invalid_body", format!("{e}")),
    }
}

/// The `{funnelId}` segment.
#[derive(Debug, Clone)]
pub struct FunnelPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for FunnelPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(funnel) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
        non_empty("funnelId", &funnel)?;
        Ok(FunnelPath(funnel))
    }
}

/// The `{funnelId}` and `{anonymousId}` segments.
#[derive(Debug, Clone)]
pub struct VisitorPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for VisitorPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((funnel, anon)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("bad_path", e.body_text()))?;
        non_empty("funnelId", &funnel)?;
        non_empty("anonymousId", &anon)?;
        Ok(VisitorPath(funnel, anon))
    }
}

fn non_empty(name: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(
            "bad_path",
            format!("{name} in the path is empty"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_refused() {
        let e = Params::parse(Some("limit=5&limt=3"), &["limit"])
            .err()
            .map(|e| (e.code, e.message));
        assert!(
            matches!(e, Some(("unknown_parameter", ref m)) if m.contains("limt")),
            "{e:?}"
        );
        let e = Params::parse(Some("limit=5&limit=3"), &["limit"])
            .err()
            .map(|e| e.code);
        assert_eq!(e, Some("duplicate_parameter"));
        assert!(Params::parse(None, &[]).is_ok());
        assert!(Params::parse(Some(""), &[]).is_ok());
    }

    #[test]
    fn limits_are_bounded() {
        for bad in ["0", "-1", "1001", "x", "", "1.5"] {
            let mut p = Params::parse(Some(&format!("limit={bad}")), &["limit"]).expect("parses");
            assert_eq!(
                p.limit(100, 1000).err().map(|e| e.code),
                Some("bad_limit"),
                "{bad}"
            );
        }
        let mut p = Params::parse(Some("limit=1000"), &["limit"]).expect("parses");
        assert_eq!(p.limit(100, 1000).ok(), Some(1000));
        assert_eq!(Params::default().limit(100, 1000).ok(), Some(100));
    }

    #[test]
    fn times_are_rfc3339_or_epoch_ms() {
        assert_eq!(parse_time("from", "1970-01-01T00:00:01Z").ok(), Some(1000));
        assert_eq!(
            parse_time("from", "1970-01-01T01:00:00+01:00").ok(),
            Some(0)
        );
        assert_eq!(parse_time("from", "1234").ok(), Some(1234));
        assert_eq!(parse_time("from", "-5").ok(), Some(-5));
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "99999999999999999999",
            "1-2",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(
                parse_time("from", bad).err().map(|e| e.code),
                Some("bad_time"),
                "{bad}"
            );
        }
    }
}
