//! The projection rows (profiles, sessions, traffic sources, folded events) as Avro
//! single-object records for the changelog topics, and back.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Encodes the projection rows (profiles, sessions, traffic-source aggregates, folded
/// events) as Avro single-object records with the schemas in `schemas/`, for the
/// changelog topics, and decodes them back (consumers, tests). Cheap to clone.
///
/// Encoding is hand-written (the runtime publishes a row for each changed projection,
/// so it is on the hot path, and a row always fits its schema, so it cannot fail).
/// Decoding goes through the checked generic path, and reads records written with any
/// released version of the schema (`schemas/history/`), resolved to the current one.
#[derive(Debug, Clone)]
pub struct ProjectionCodec {
    profile: Arc<Projection>,
    session: Arc<Projection>,
    traffic: Arc<Projection>,
    event: Arc<Projection>,
    folded: Arc<Projection>,
}

/// One projection schema: the current version, which every record is written with and
/// read as, and its older released versions. A topic still holds records written
/// before a deploy (a day of `events.changelog`, every compacted changelog's history),
/// so a consumer that knew only the current fingerprint would drop them all as
/// unknown the moment a schema gains a field.
#[derive(Debug)]
pub(super) struct Projection {
    current: KnownSchema,
    older: Vec<KnownSchema>,
}

impl Projection {
    /// `json`, the current `schemas/<stem>.avsc`, and every version in
    /// `schemas/history/<stem>/` with another canonical form.
    fn builtin(stem: &str, json: &str) -> Projection {
        let current = KnownSchema::builtin(json);
        let older = crate::schema_history::versions_of(stem)
            .map(|v| KnownSchema::builtin(v.json))
            .filter(|v| v.fingerprint != current.fingerprint)
            .collect();
        Projection { current, older }
    }
}

impl Default for ProjectionCodec {
    fn default() -> Self {
        ProjectionCodec::new()
    }
}

/// The flat shape of `TrafficRow` in Avro (the Rust struct nests key and counts).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TrafficWire {
    funnel_id: String,
    day: i32,
    source: String,
    medium: String,
    campaign: String,
    channel: Channel,
    sessions: i64,
    conversions: i64,
    revenue: Revenue,
}

impl ProjectionCodec {
    pub fn new() -> ProjectionCodec {
        ProjectionCodec {
            profile: Arc::new(Projection::builtin("profile", PROFILE_SCHEMA)),
            session: Arc::new(Projection::builtin("session", SESSION_SCHEMA)),
            traffic: Arc::new(Projection::builtin("traffic_source", TRAFFIC_SOURCE_SCHEMA)),
            event: Arc::new(Projection::builtin("event_row", EVENT_ROW_SCHEMA)),
            folded: Arc::new(Projection::builtin("folded_event", FOLDED_EVENT_SCHEMA)),
        }
    }

    pub fn profile_schema(&self) -> &Schema {
        &self.profile.current.schema
    }
    pub fn session_schema(&self) -> &Schema {
        &self.session.current.schema
    }
    pub fn traffic_schema(&self) -> &Schema {
        &self.traffic.current.schema
    }
    pub fn event_row_schema(&self) -> &Schema {
        &self.event.current.schema
    }
    pub fn folded_event_schema(&self) -> &Schema {
        &self.folded.current.schema
    }

    fn header(schema: &KnownSchema, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        out.extend_from_slice(&schema.fingerprint.to_le_bytes());
        out
    }

    pub fn encode_profile(&self, p: &ProfileRow) -> Vec<u8> {
        let mut out = Self::header(&self.profile.current, 256);
        put_str(&mut out, &p.funnel_id);
        put_str(&mut out, &p.anonymous_id);
        put_str(&mut out, &p.display_name);
        put_opt_str(&mut out, p.user_id.as_deref());
        put_long(&mut out, p.first_seen);
        put_long(&mut out, p.last_seen);
        put_long(&mut out, p.total_sessions);
        put_long(&mut out, p.total_events);
        put_touch(&mut out, &p.first_touch);
        match &p.last_non_direct {
            None => out.push(0),
            Some(t) => {
                out.push(2);
                put_touch(&mut out, t);
            }
        }
        put_long(&mut out, p.conversions);
        put_map(&mut out, &p.revenue, |out, v| put_long(out, *v));
        put_str(&mut out, &p.device_type);
        put_str(&mut out, &p.browser);
        put_str(&mut out, &p.os);
        put_opt_str(&mut out, p.country.as_deref());
        out
    }

    pub fn encode_session(&self, s: &SessionRow) -> Vec<u8> {
        let mut out = Self::header(&self.session.current, 256);
        put_str(&mut out, &s.funnel_id);
        put_str(&mut out, &s.anonymous_id);
        put_str(&mut out, &s.session_id);
        put_long(&mut out, s.started_at);
        put_long(&mut out, s.last_event_at);
        put_long(&mut out, s.duration_ms);
        put_opt_str(&mut out, s.landing_page.as_deref());
        put_opt_str(&mut out, s.exit_page.as_deref());
        put_long(&mut out, s.events);
        put_long(&mut out, s.pageviews);
        put_bool(&mut out, s.bounce);
        put_bool(&mut out, s.converted);
        put_long(&mut out, s.conversions);
        put_map(&mut out, &s.revenue, |out, v| put_long(out, *v));
        put_str(&mut out, &s.source);
        put_str(&mut out, &s.medium);
        put_str(&mut out, &s.campaign);
        put_str(&mut out, s.channel.as_str());
        put_str(&mut out, &s.device_type);
        put_str(&mut out, &s.browser);
        put_str(&mut out, &s.os);
        put_opt_str(&mut out, s.country.as_deref());
        out
    }

    pub fn encode_traffic(&self, t: &TrafficRow) -> Vec<u8> {
        let mut out = Self::header(&self.traffic.current, 128);
        put_str(&mut out, &t.key.funnel_id);
        put_long(&mut out, i64::from(t.key.day));
        put_str(&mut out, &t.key.source);
        put_str(&mut out, &t.key.medium);
        put_str(&mut out, &t.key.campaign);
        put_str(&mut out, t.channel.as_str());
        put_long(&mut out, t.counts.sessions);
        put_long(&mut out, t.counts.conversions);
        put_map(&mut out, &t.counts.revenue, |out, v| put_long(out, *v));
        out
    }

    pub fn encode_event_row(&self, e: &EventRow) -> Vec<u8> {
        let mut out = Self::header(&self.event.current, 128);
        put_str(&mut out, &e.funnel_id);
        put_str(&mut out, &e.event_id);
        put_str(&mut out, &e.anonymous_id);
        put_opt_str(&mut out, e.session_id.as_deref());
        put_str(&mut out, &e.event_name);
        put_long(&mut out, e.timestamp);
        put_opt_str(&mut out, e.path.as_deref());
        put_bool(&mut out, e.is_conversion);
        put_opt_long(&mut out, e.revenue_minor);
        put_opt_str(&mut out, e.currency.as_deref());
        put_bool(&mut out, e.is_bot);
        out
    }

    /// The record of `events.changelog`; fields in the order of
    /// `schemas/folded_event.avsc`.
    pub fn encode_folded_event(&self, e: &FoldedEvent) -> Vec<u8> {
        let mut out = Self::header(&self.folded.current, 160);
        put_str(&mut out, &e.funnel_id);
        put_str(&mut out, &e.event_id);
        put_str(&mut out, &e.anonymous_id);
        put_str(&mut out, &e.display_name);
        put_opt_str(&mut out, e.session_id.as_deref());
        put_str(&mut out, &e.event_name);
        put_long(&mut out, e.timestamp);
        put_opt_str(&mut out, e.path.as_deref());
        put_opt_str(&mut out, e.source.as_deref());
        put_opt_str(&mut out, e.medium.as_deref());
        put_bool(&mut out, e.is_conversion);
        put_opt_long(&mut out, e.revenue_minor);
        put_opt_str(&mut out, e.currency.as_deref());
        put_bool(&mut out, e.is_bot);
        out
    }

    pub fn decode_profile(&self, bytes: &[u8]) -> Result<ProfileRow, DecodeError> {
        decode_projection(&self.profile, bytes)
    }

    pub fn decode_session(&self, bytes: &[u8]) -> Result<SessionRow, DecodeError> {
        decode_projection(&self.session, bytes)
    }

    pub fn decode_traffic(&self, bytes: &[u8]) -> Result<TrafficRow, DecodeError> {
        let w: TrafficWire = decode_projection(&self.traffic, bytes)?;
        Ok(TrafficRow {
            key: TrafficKey {
                funnel_id: w.funnel_id,
                day: w.day,
                source: w.source,
                medium: w.medium,
                campaign: w.campaign,
            },
            channel: w.channel,
            counts: TrafficCounts {
                sessions: w.sessions,
                conversions: w.conversions,
                revenue: w.revenue,
            },
        })
    }

    pub fn decode_event_row(&self, bytes: &[u8]) -> Result<EventRow, DecodeError> {
        decode_projection(&self.event, bytes)
    }

    pub fn decode_folded_event(&self, bytes: &[u8]) -> Result<FoldedEvent, DecodeError> {
        decode_projection(&self.folded, bytes)
    }
}

pub(super) fn put_touch(out: &mut Vec<u8>, t: &Touch) {
    put_str(out, &t.source);
    put_str(out, &t.medium);
    put_str(out, &t.campaign);
    put_str(out, t.channel.as_str());
}

/// Single-object bytes of a version of `schema` → `T`, resolved to its current version.
pub(super) fn decode_projection<T: DeserializeOwned>(
    schema: &Projection,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    match bytes {
        [] => return Err(DecodeError::Empty),
        [0xC3] => {
            return Err(DecodeError::TruncatedHeader {
                format: "Avro single-object",
            })
        }
        [0xC3, 0x01, ..] => {}
        [first_byte, ..] => {
            return Err(DecodeError::UnknownFormat {
                first_byte: *first_byte,
            })
        }
    }
    let (fingerprint, body) = split_single_object(bytes)?;
    let value = if fingerprint == schema.current.fingerprint {
        decode_generic(&schema.current, None, body)?
    } else {
        // An older version: its fields added since get their defaults (the schema
        // history tests check that every version resolves to the current one).
        let writer = schema
            .older
            .iter()
            .find(|v| v.fingerprint == fingerprint)
            .ok_or(DecodeError::UnknownFingerprint { fingerprint })?;
        decode_generic(writer, Some(&schema.current.schema), body)?
    };
    apache_avro::from_value::<T>(&value).map_err(|e| DecodeError::Avro(e.to_string()))
}
