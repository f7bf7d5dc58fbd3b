//! Checks a decoded event must pass before it is folded.
//!
//! Validation is pure and deterministic: the only notion of "now" is the time the edge
//! received the event (`receivedAt`) or, when the event does not say, the Kafka record
//! timestamp the runtime passes in. A replay therefore accepts and rejects exactly the
//! same events as the first run.
//!
//! Lengths are measured in bytes of UTF-8, which is what storage and topics pay for.

use std::fmt;

use crate::event::RawEvent;

/// The field a rejection is about, named as in the event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    EventId,
    FunnelId,
    AnonymousId,
    SessionId,
    UserId,
    EventName,
    Timestamp,
    ReceivedAt,
    Url,
    Referrer,
    Title,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmTerm,
    UtmContent,
    UserAgent,
    Country,
    Ip,
    RevenueMinor,
    Currency,
    Properties,
}

impl Field {
    /// The contract's (camelCase) name of the field.
    pub fn name(self) -> &'static str {
        match self {
            Field::EventId => "eventId",
            Field::FunnelId => "funnelId",
            Field::AnonymousId => "anonymousId",
            Field::SessionId => "sessionId",
            Field::UserId => "userId",
            Field::EventName => "eventName",
            Field::Timestamp => "timestamp",
            Field::ReceivedAt => "receivedAt",
            Field::Url => "url",
            Field::Referrer => "referrer",
            Field::Title => "title",
            Field::UtmSource => "utmSource",
            Field::UtmMedium => "utmMedium",
            Field::UtmCampaign => "utmCampaign",
            Field::UtmTerm => "utmTerm",
            Field::UtmContent => "utmContent",
            Field::UserAgent => "userAgent",
            Field::Country => "country",
            Field::Ip => "ip",
            Field::RevenueMinor => "revenueMinor",
            Field::Currency => "currency",
            Field::Properties => "properties",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many characters of an offending value a rejection quotes: enough to recognize it
/// in a dead-letter record, never enough to copy a huge payload into every log line.
const QUOTE_CHARS: usize = 64;

fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// Why a decoded event is not accepted. Every variant carries what is wrong and the
/// limit it broke; [`Rejection::code`] is the stable machine-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing {0}: it is required and must not be empty or blank")]
    MissingField(Field),
    #[error("{field} is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        field: Field,
        len: usize,
        max: usize,
    },
    #[error("{field} contains a control character (U+{code_point:04X}); ids and names must be printable")]
    ControlCharacter { field: Field, code_point: u32 },
    #[error("{field} {value} is outside the accepted range {min}..={max} (epoch ms)")]
    TimeOutOfRange {
        field: Field,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("timestamp {timestamp} is {age_ms} ms before the receive time {received_at}; events older than {max_age_ms} ms are not accepted")]
    TooOld {
        timestamp: i64,
        received_at: i64,
        age_ms: i64,
        max_age_ms: i64,
    },
    #[error("timestamp {timestamp} is {ahead_ms} ms after the receive time {received_at}; clock skew of more than {max_future_skew_ms} ms is not accepted")]
    InFuture {
        timestamp: i64,
        received_at: i64,
        ahead_ms: i64,
        max_future_skew_ms: i64,
    },
    #[error("revenueMinor {0} is negative; revenue must be zero or more minor units")]
    NegativeRevenue(i64),
    #[error("currency {0:?} is not an ISO 4217 code (exactly 3 ASCII letters)")]
    InvalidCurrency(String),
    #[error("a conversion with revenueMinor needs a currency (ISO 4217, 3 letters)")]
    MissingCurrency,
    #[error("country {0:?} is not an ISO 3166-1 alpha-2 code (exactly 2 ASCII letters)")]
    InvalidCountry(String),
    #[error("{count} properties; the limit is {max}")]
    TooManyProperties { count: usize, max: usize },
    #[error("property key {key:?} is {len} bytes long; the limit is {max} bytes")]
    PropertyKeyTooLong { key: String, len: usize, max: usize },
    #[error("an empty property key is not allowed")]
    EmptyPropertyKey,
    #[error("property {key:?} has a value of {len} bytes; the limit is {max} bytes")]
    PropertyValueTooLong { key: String, len: usize, max: usize },
}

impl Rejection {
    /// A short, stable snake_case code (the dead-letter reason and a metrics label).
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::MissingField(_) => "missing_field",
            Rejection::TooLong { .. } => "field_too_long",
            Rejection::ControlCharacter { .. } => "control_character",
            Rejection::TimeOutOfRange { .. } => "time_out_of_range",
            Rejection::TooOld { .. } => "too_old",
            Rejection::InFuture { .. } => "in_future",
            Rejection::NegativeRevenue(_) => "negative_revenue",
            Rejection::InvalidCurrency(_) => "invalid_currency",
            Rejection::MissingCurrency => "missing_currency",
            Rejection::InvalidCountry(_) => "invalid_country",
            Rejection::TooManyProperties { .. } => "too_many_properties",
            Rejection::PropertyKeyTooLong { .. } => "property_key_too_long",
            Rejection::EmptyPropertyKey => "empty_property_key",
            Rejection::PropertyValueTooLong { .. } => "property_value_too_long",
        }
    }

    /// The field the rejection is about.
    pub fn field(&self) -> Field {
        match self {
            Rejection::MissingField(f) | Rejection::TooLong { field: f, .. } => *f,
            Rejection::ControlCharacter { field, .. } | Rejection::TimeOutOfRange { field, .. } => {
                *field
            }
            Rejection::TooOld { .. } | Rejection::InFuture { .. } => Field::Timestamp,
            Rejection::NegativeRevenue(_) => Field::RevenueMinor,
            Rejection::InvalidCurrency(_) | Rejection::MissingCurrency => Field::Currency,
            Rejection::InvalidCountry(_) => Field::Country,
            Rejection::TooManyProperties { .. }
            | Rejection::PropertyKeyTooLong { .. }
            | Rejection::EmptyPropertyKey
            | Rejection::PropertyValueTooLong { .. } => Field::Properties,
        }
    }
}

/// 2000-01-01T00:00:00Z in epoch ms.
pub const YEAR_2000_MS: i64 = 946_684_800_000;
/// 2100-01-01T00:00:00Z in epoch ms.
pub const YEAR_2100_MS: i64 = 4_102_444_800_000;

/// The limits [`validate`] enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationConfig {
    /// Longest `eventId`, `funnelId`, `anonymousId`, `sessionId`, `userId`, `ip` (bytes).
    pub max_id_len: usize,
    /// Longest `eventName` (bytes).
    pub max_name_len: usize,
    /// Longest `url`, `referrer`, `title`, `userAgent` (bytes).
    pub max_text_len: usize,
    /// Longest `utm*` value (bytes): they become keys of the traffic-source aggregates.
    pub max_utm_len: usize,
    /// How far the event time may be ahead of the receive time (client clock skew).
    pub max_future_skew_ms: i64,
    /// How far the event time may be behind the receive time (offline SDK queues).
    pub max_age_ms: i64,
    /// Earliest event or receive time accepted at all (epoch ms).
    pub min_time_ms: i64,
    /// Latest event or receive time accepted at all (epoch ms).
    pub max_time_ms: i64,
    pub max_properties: usize,
    pub max_property_key_len: usize,
    pub max_property_value_len: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            max_id_len: 128,
            max_name_len: 128,
            max_text_len: 8 * 1024,
            max_utm_len: 256,
            max_future_skew_ms: 24 * 60 * 60 * 1000,
            max_age_ms: 30 * 24 * 60 * 60 * 1000,
            min_time_ms: YEAR_2000_MS,
            max_time_ms: YEAR_2100_MS,
            max_properties: 64,
            max_property_key_len: 128,
            max_property_value_len: 1024,
        }
    }
}

/// Checks `raw` against `cfg`. `received_at_fallback` is the receive time to use when
/// the event has no `receivedAt` (the runtime passes the Kafka record timestamp); a
/// fallback outside the absolute window (Kafka's -1 for "none", say) is ignored rather
/// than held against the event.
///
/// Returns the first problem found, checking ids first: an event without identity is
/// reported as such even if other fields are also wrong.
pub fn validate(
    raw: &RawEvent,
    received_at_fallback: Option<i64>,
    cfg: &ValidationConfig,
) -> Result<(), Rejection> {
    required_id(Field::EventId, &raw.event_id, cfg.max_id_len)?;
    required_id(Field::FunnelId, &raw.funnel_id, cfg.max_id_len)?;
    required_id(Field::AnonymousId, &raw.anonymous_id, cfg.max_id_len)?;
    required_id(Field::EventName, &raw.event_name, cfg.max_name_len)?;
    if let Some(s) = &raw.session_id {
        // Present but blank is as useless as absent for sessionizing, and silently
        // sessionizing it server-side would hide an SDK bug: reject it.
        required_id(Field::SessionId, s, cfg.max_id_len)?;
    }
    if let Some(u) = &raw.user_id {
        required_id(Field::UserId, u, cfg.max_id_len)?;
    }

    check_times(raw, received_at_fallback, cfg)?;

    let texts = [
        (Field::Url, &raw.url, cfg.max_text_len),
        (Field::Referrer, &raw.referrer, cfg.max_text_len),
        (Field::Title, &raw.title, cfg.max_text_len),
        (Field::UserAgent, &raw.user_agent, cfg.max_text_len),
        (Field::UtmSource, &raw.utm_source, cfg.max_utm_len),
        (Field::UtmMedium, &raw.utm_medium, cfg.max_utm_len),
        (Field::UtmCampaign, &raw.utm_campaign, cfg.max_utm_len),
        (Field::UtmTerm, &raw.utm_term, cfg.max_utm_len),
        (Field::UtmContent, &raw.utm_content, cfg.max_utm_len),
        (Field::Ip, &raw.ip, cfg.max_id_len),
    ];
    for (field, value, max) in texts {
        if let Some(v) = value {
            bounded(field, v, max)?;
        }
    }

    if let Some(minor) = raw.revenue_minor {
        if minor < 0 {
            return Err(Rejection::NegativeRevenue(minor));
        }
    }
    match &raw.currency {
        Some(c) if !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic())) => {
            return Err(Rejection::InvalidCurrency(quote(c)));
        }
        None if raw.is_conversion && raw.revenue_minor.is_some() => {
            return Err(Rejection::MissingCurrency)
        }
        _ => {}
    }
    if let Some(c) = &raw.country {
        if !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())) {
            return Err(Rejection::InvalidCountry(quote(c)));
        }
    }

    if raw.properties.len() > cfg.max_properties {
        return Err(Rejection::TooManyProperties {
            count: raw.properties.len(),
            max: cfg.max_properties,
        });
    }
    for (k, v) in &raw.properties {
        if k.is_empty() {
            return Err(Rejection::EmptyPropertyKey);
        }
        if k.len() > cfg.max_property_key_len {
            return Err(Rejection::PropertyKeyTooLong {
                key: quote(k),
                len: k.len(),
                max: cfg.max_property_key_len,
            });
        }
        if v.len() > cfg.max_property_value_len {
            return Err(Rejection::PropertyValueTooLong {
                key: quote(k),
                len: v.len(),
                max: cfg.max_property_value_len,
            });
        }
    }
    Ok(())
}

/// A required id or name: non-blank, bounded, free of control characters (which would
/// corrupt keys, logs and CSV exports downstream).
fn required_id(field: Field, value: &str, max: usize) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::MissingField(field));
    }
    bounded(field, value, max)?;
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(Rejection::ControlCharacter {
            field,
            code_point: u32::from(c),
        });
    }
    Ok(())
}

fn bounded(field: Field, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        return Err(Rejection::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn check_times(
    raw: &RawEvent,
    fallback: Option<i64>,
    cfg: &ValidationConfig,
) -> Result<(), Rejection> {
    let window = cfg.min_time_ms..=cfg.max_time_ms;
    let out_of_range = |field, value| Rejection::TimeOutOfRange {
        field,
        value,
        min: cfg.min_time_ms,
        max: cfg.max_time_ms,
    };
    if !window.contains(&raw.timestamp) {
        return Err(out_of_range(Field::Timestamp, raw.timestamp));
    }
    let received_at = match raw.received_at {
        // The edge's own clock said something absurd: the event cannot be placed.
        Some(r) if !window.contains(&r) => return Err(out_of_range(Field::ReceivedAt, r)),
        Some(r) => Some(r),
        None => fallback.filter(|r| window.contains(r)),
    };
    if let Some(received_at) = received_at {
        // Both times are inside the absolute window, so these differences cannot overflow.
        let age_ms = received_at - raw.timestamp;
        if age_ms > cfg.max_age_ms {
            return Err(Rejection::TooOld {
                timestamp: raw.timestamp,
                received_at,
                age_ms,
                max_age_ms: cfg.max_age_ms,
            });
        }
        let ahead_ms = raw.timestamp - received_at;
        if ahead_ms > cfg.max_future_skew_ms {
            return Err(Rejection::InFuture {
                timestamp: raw.timestamp,
                received_at,
                ahead_ms,
                max_future_skew_ms: cfg.max_future_skew_ms,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000_000; // 2025-06-15
    const HOUR: i64 = 3_600_000;

    fn ok_event() -> RawEvent {
        RawEvent {
            event_id: "e-1".into(),
            funnel_id: "f-1".into(),
            anonymous_id: "a-1".into(),
            event_name: "page_view".into(),
            timestamp: NOW,
            url: Some("https://shop.example/?utm_source=x".into()),
            country: Some("de".into()),
            is_conversion: true,
            revenue_minor: Some(1999),
            currency: Some("eur".into()),
            properties: [("plan".to_string(), "pro".to_string())].into(),
            ..Default::default()
        }
    }

    fn check(e: &RawEvent) -> Result<(), Rejection> {
        validate(e, None, &ValidationConfig::default())
    }

    /// Asserts the rejection, its code, and that its message names the problem.
    fn rejects(e: &RawEvent, fallback: Option<i64>, want: Rejection, code: &str, msg_has: &str) {
        let got = validate(e, fallback, &ValidationConfig::default());
        assert_eq!(got, Err(want.clone()));
        assert_eq!(want.code(), code);
        let msg = want.to_string();
        assert!(msg.contains(msg_has), "{msg:?} should mention {msg_has:?}");
    }

    #[test]
    fn a_good_event_passes() {
        assert_eq!(check(&ok_event()), Ok(()));
        assert_eq!(
            validate(&ok_event(), Some(NOW + HOUR), &ValidationConfig::default()),
            Ok(())
        );
    }

    #[test]
    fn missing_and_blank_ids() {
        for (field, mutate) in [
            (
                Field::EventId,
                (|e: &mut RawEvent| e.event_id.clear()) as fn(&mut RawEvent),
            ),
            (Field::FunnelId, |e| e.funnel_id = "   ".into()),
            (Field::AnonymousId, |e| e.anonymous_id.clear()),
            (Field::EventName, |e| e.event_name = "\t".into()),
            (Field::SessionId, |e| e.session_id = Some(" ".into())),
            (Field::UserId, |e| e.user_id = Some(String::new())),
        ] {
            let mut e = ok_event();
            mutate(&mut e);
            rejects(
                &e,
                None,
                Rejection::MissingField(field),
                "missing_field",
                field.name(),
            );
        }
    }

    #[test]
    fn ids_are_bounded() {
        let mut e = ok_event();
        e.anonymous_id = "a".repeat(129);
        rejects(
            &e,
            None,
            Rejection::TooLong {
                field: Field::AnonymousId,
                len: 129,
                max: 128,
            },
            "field_too_long",
            "128",
        );
        let mut e = ok_event();
        e.event_name = "n".repeat(200);
        rejects(
            &e,
            None,
            Rejection::TooLong {
                field: Field::EventName,
                len: 200,
                max: 128,
            },
            "field_too_long",
            "eventName",
        );
        let mut e = ok_event();
        e.session_id = Some("s".repeat(128));
        assert_eq!(check(&e), Ok(()), "the limit itself is allowed");
    }

    #[test]
    fn texts_are_bounded() {
        let mut e = ok_event();
        e.url = Some(format!("https://x.example/{}", "p".repeat(9000)));
        let len = e.url.as_ref().map_or(0, String::len);
        rejects(
            &e,
            None,
            Rejection::TooLong {
                field: Field::Url,
                len,
                max: 8192,
            },
            "field_too_long",
            "url",
        );
        let mut e = ok_event();
        e.utm_campaign = Some("c".repeat(257));
        rejects(
            &e,
            None,
            Rejection::TooLong {
                field: Field::UtmCampaign,
                len: 257,
                max: 256,
            },
            "field_too_long",
            "utmCampaign",
        );
    }

    #[test]
    fn control_characters_in_ids() {
        let mut e = ok_event();
        e.event_id = "e\n1".into();
        rejects(
            &e,
            None,
            Rejection::ControlCharacter {
                field: Field::EventId,
                code_point: 0x0A,
            },
            "control_character",
            "U+000A",
        );
        let mut e = ok_event();
        e.user_id = Some("u\u{7f}".into());
        rejects(
            &e,
            None,
            Rejection::ControlCharacter {
                field: Field::UserId,
                code_point: 0x7F,
            },
            "control_character",
            "userId",
        );
        let mut e = ok_event();
        e.anonymous_id = "Zoë-🐼".into();
        assert_eq!(check(&e), Ok(()), "non-ASCII printable ids are fine");
    }

    #[test]
    fn absolute_time_window() {
        let mut e = ok_event();
        e.timestamp = 0;
        rejects(
            &e,
            None,
            Rejection::TimeOutOfRange {
                field: Field::Timestamp,
                value: 0,
                min: YEAR_2000_MS,
                max: YEAR_2100_MS,
            },
            "time_out_of_range",
            "timestamp 0",
        );
        let mut e = ok_event();
        e.timestamp = YEAR_2100_MS + 1;
        assert_eq!(check(&e).map_err(|r| r.code()), Err("time_out_of_range"));
        let mut e = ok_event();
        e.received_at = Some(i64::MAX);
        rejects(
            &e,
            None,
            Rejection::TimeOutOfRange {
                field: Field::ReceivedAt,
                value: i64::MAX,
                min: YEAR_2000_MS,
                max: YEAR_2100_MS,
            },
            "time_out_of_range",
            "receivedAt",
        );
    }

    #[test]
    fn too_old_relative_to_receive_time() {
        let max_age_ms = 30 * 24 * HOUR;
        let mut e = ok_event();
        e.received_at = Some(NOW + max_age_ms + 1);
        rejects(
            &e,
            None,
            Rejection::TooOld {
                timestamp: NOW,
                received_at: NOW + max_age_ms + 1,
                age_ms: max_age_ms + 1,
                max_age_ms,
            },
            "too_old",
            "2592000000 ms",
        );
        // Exactly at the limit is accepted.
        e.received_at = Some(NOW + max_age_ms);
        assert_eq!(check(&e), Ok(()));
    }

    #[test]
    fn in_future_relative_to_fallback() {
        let skew = 24 * HOUR;
        let e = ok_event();
        rejects(
            &e,
            Some(NOW - skew - 1),
            Rejection::InFuture {
                timestamp: NOW,
                received_at: NOW - skew - 1,
                ahead_ms: skew + 1,
                max_future_skew_ms: skew,
            },
            "in_future",
            "86400000",
        );
        // The event's own receivedAt wins over the fallback.
        let mut e = ok_event();
        e.received_at = Some(NOW);
        assert_eq!(
            validate(&e, Some(NOW - skew - 1), &ValidationConfig::default()),
            Ok(())
        );
        // A meaningless fallback (Kafka's -1) is ignored, not held against the event.
        assert_eq!(
            validate(&ok_event(), Some(-1), &ValidationConfig::default()),
            Ok(())
        );
    }

    #[test]
    fn revenue_and_currency() {
        let mut e = ok_event();
        e.revenue_minor = Some(-1);
        rejects(
            &e,
            None,
            Rejection::NegativeRevenue(-1),
            "negative_revenue",
            "negative",
        );

        let mut e = ok_event();
        e.currency = Some("EURO".into());
        rejects(
            &e,
            None,
            Rejection::InvalidCurrency("EURO".into()),
            "invalid_currency",
            "3 ASCII letters",
        );
        let mut e = ok_event();
        e.currency = Some("E1R".into());
        assert_eq!(check(&e).map_err(|r| r.code()), Err("invalid_currency"));

        let mut e = ok_event();
        e.currency = None;
        rejects(
            &e,
            None,
            Rejection::MissingCurrency,
            "missing_currency",
            "currency",
        );
        // Revenue on a non-conversion is ignored by the folds, so it needs no currency.
        e.is_conversion = false;
        assert_eq!(check(&e), Ok(()));
        // A zero amount is fine.
        let mut e = ok_event();
        e.revenue_minor = Some(0);
        assert_eq!(check(&e), Ok(()));
    }

    #[test]
    fn country() {
        let mut e = ok_event();
        e.country = Some("DEU".into());
        rejects(
            &e,
            None,
            Rejection::InvalidCountry("DEU".into()),
            "invalid_country",
            "2 ASCII letters",
        );
        e.country = Some("Ü1".into());
        assert_eq!(check(&e).map_err(|r| r.code()), Err("invalid_country"));
        e.country = Some("US".into());
        assert_eq!(check(&e), Ok(()));
    }

    #[test]
    fn properties_are_bounded() {
        let mut e = ok_event();
        e.properties = (0..65)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        rejects(
            &e,
            None,
            Rejection::TooManyProperties { count: 65, max: 64 },
            "too_many_properties",
            "64",
        );

        let mut e = ok_event();
        e.properties = [(String::new(), "v".to_string())].into();
        rejects(
            &e,
            None,
            Rejection::EmptyPropertyKey,
            "empty_property_key",
            "empty",
        );

        let mut e = ok_event();
        let key = "k".repeat(129);
        e.properties = [(key.clone(), "v".to_string())].into();
        let quoted = quote(&key);
        assert!(
            quoted.chars().count() <= QUOTE_CHARS + 1,
            "long keys are quoted shortened"
        );
        rejects(
            &e,
            None,
            Rejection::PropertyKeyTooLong {
                key: quoted,
                len: 129,
                max: 128,
            },
            "property_key_too_long",
            "128 bytes",
        );

        let mut e = ok_event();
        e.properties = [("plan".to_string(), "v".repeat(1025))].into();
        rejects(
            &e,
            None,
            Rejection::PropertyValueTooLong {
                key: "plan".into(),
                len: 1025,
                max: 1024,
            },
            "property_value_too_long",
            "1024",
        );
    }

    #[test]
    fn ids_are_checked_first() {
        let mut e = ok_event();
        e.event_id.clear();
        e.timestamp = 0;
        e.country = Some("nope".into());
        assert_eq!(check(&e), Err(Rejection::MissingField(Field::EventId)));
    }

    #[test]
    fn codes_are_distinct_and_snake_case() {
        let all = [
            Rejection::MissingField(Field::EventId),
            Rejection::TooLong {
                field: Field::Url,
                len: 2,
                max: 1,
            },
            Rejection::ControlCharacter {
                field: Field::EventId,
                code_point: 0,
            },
            Rejection::TimeOutOfRange {
                field: Field::Timestamp,
                value: 0,
                min: 1,
                max: 2,
            },
            Rejection::TooOld {
                timestamp: 0,
                received_at: 2,
                age_ms: 2,
                max_age_ms: 1,
            },
            Rejection::InFuture {
                timestamp: 2,
                received_at: 0,
                ahead_ms: 2,
                max_future_skew_ms: 1,
            },
            Rejection::NegativeRevenue(-1),
            Rejection::InvalidCurrency("x".into()),
            Rejection::MissingCurrency,
            Rejection::InvalidCountry("x".into()),
            Rejection::TooManyProperties { count: 2, max: 1 },
            Rejection::PropertyKeyTooLong {
                key: "k".into(),
                len: 2,
                max: 1,
            },
            Rejection::EmptyPropertyKey,
            Rejection::PropertyValueTooLong {
                key: "k".into(),
                len: 2,
                max: 1,
            },
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(Rejection::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes
            .iter()
            .all(|c| c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        assert_eq!(all[0].field(), Field::EventId);
        assert_eq!(all[8].field(), Field::Currency);
    }
}
