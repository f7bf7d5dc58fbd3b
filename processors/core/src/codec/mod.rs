//! Decoding and encoding of the raw event: Avro single-object encoding, the Confluent
//! wire format (schema ids resolved against locally known schemas), and JSON; plus the
//! Avro single-object encoding of the projection rows published to changelog topics.
//!
//! Two decoding paths exist for Avro, on purpose:
//!
//! - the **fast path**, a hand-written decoder for exactly the built-in `RawEvent` schema,
//!   used whenever the writer schema has the same Parsing Canonical Form (same Rabin
//!   fingerprint) as the current schema. That is every record in steady state, and it
//!   is the hot path of the fold processor, so it decodes straight from the byte slice
//!   into a [`RawEvent`] without building a generic `Value` tree;
//! - the **generic path**, for any other registered writer schema (an older SDK, say):
//!   the datum is first checked structurally against the writer schema by
//!   [`check_datum`] (bounded lengths, valid UTF-8, union and enum indices in range, no
//!   trailing bytes, bounded nesting), then decoded by `apache-avro` and resolved to the
//!   current reader schema with Avro schema resolution (fields added since get their
//!   defaults). The structural check exists because `apache-avro` turns some truncated
//!   data into `null` instead of an error, allocates whatever a length prefix asks for
//!   before reading it, and recurses without a depth limit; none of that may be reachable
//!   from bytes a producer controls.
//!
//! Nothing here panics on any input: every failure is a [`DecodeError`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apache_avro::rabin::Rabin;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{
    InnerDecimalSchema, Name, Names, NamespaceRef, RecordSchema, ResolvedSchema, UuidSchema,
};
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::event::{Channel, RawEvent, Touch};
use crate::projection::{
    EventRow, FoldedEvent, ProfileRow, Revenue, SessionRow, TrafficCounts, TrafficKey, TrafficRow,
};

/// The current `RawEvent` schema (topic `events.raw`).
pub const RAW_EVENT_SCHEMA: &str = include_str!("../../../../schemas/raw_event.avsc");
/// The `Profile` schema (topic `profiles.changelog`).
pub const PROFILE_SCHEMA: &str = include_str!("../../../../schemas/profile.avsc");
/// The `Session` schema (topic `sessions.changelog`).
pub const SESSION_SCHEMA: &str = include_str!("../../../../schemas/session.avsc");
/// The `TrafficSource` schema (traffic-source aggregates).
pub const TRAFFIC_SOURCE_SCHEMA: &str = include_str!("../../../../schemas/traffic_source.avsc");
/// The `EventRow` schema (folded events).
pub const EVENT_ROW_SCHEMA: &str = include_str!("../../../../schemas/event_row.avsc");
/// A just-folded event with its live-view fields (topic `events.changelog`).
pub const FOLDED_EVENT_SCHEMA: &str = include_str!("../../../../schemas/folded_event.avsc");

/// Default upper bound on the size of one record: larger records are rejected before
/// any parsing, so a hostile producer cannot make a decoder allocate or loop much.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The Confluent schema id under which [`Codec::new`] registers the built-in schema.
pub const BUILTIN_CONFLUENT_ID: u32 = 1;
/// First two bytes of Avro single-object encoding (followed by the 8-byte
/// little-endian CRC-64-AVRO fingerprint of the writer schema).
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// First byte of the Confluent wire format (followed by a 4-byte big-endian schema id).
pub const CONFLUENT_MAGIC: u8 = 0x00;

const SINGLE_OBJECT_HEADER_LEN: usize = 10;
const CONFLUENT_HEADER_LEN: usize = 5;
/// Nesting limit of the structural check. The built-in schemas nest two levels; this only
/// stops crafted data for recursive writer schemas from exhausting the stack.
const MAX_DEPTH: usize = 64;

/// Why bytes could not be decoded into a [`RawEvent`] (or a projection row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("unrecognized format (first byte 0x{first_byte:02x}): expected Avro single-object (C3 01), Confluent (00) or JSON ({{)")]
    UnknownFormat { first_byte: u8 },
    #[error("truncated {format} header")]
    TruncatedHeader { format: &'static str },
    #[error("unknown Avro schema fingerprint {fingerprint:016x}")]
    UnknownFingerprint { fingerprint: u64 },
    #[error("unknown Confluent schema id {id}")]
    UnknownSchemaId { id: u32 },
    /// The schema registry knows the id, but its schema cannot be read as the current
    /// RawEvent schema (or is not an Avro schema).
    #[error("Confluent schema id {id} cannot be read as the current RawEvent schema: {detail}")]
    UnresolvableSchema { id: u32, detail: String },
    #[error("invalid Avro body: {0}")]
    Avro(String),
    #[error("invalid UTF-8 in a string")]
    InvalidUtf8,
    #[error("invalid JSON: {0}")]
    Json(String),
}

impl DecodeError {
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::UnknownFormat { .. } => "unknown_format",
            DecodeError::TruncatedHeader { .. } => "truncated_header",
            DecodeError::UnknownFingerprint { .. } => "unknown_schema",
            DecodeError::UnknownSchemaId { .. } => "unknown_schema",
            DecodeError::UnresolvableSchema { .. } => "unresolvable_schema",
            DecodeError::Avro(_) => "invalid_avro",
            DecodeError::InvalidUtf8 => "invalid_utf8",
            DecodeError::Json(_) => "invalid_json",
        }
    }
}

/// Why a writer schema could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("invalid Avro schema: {0}")]
    Parse(String),
    #[error("records written with this schema cannot be read as the current RawEvent schema: {0}")]
    Incompatible(String),
    #[error("Confluent schema id {id} is already registered for a different schema")]
    IdConflict { id: u32 },
}

/// A released `raw_event` version that cannot be registered: the processor refuses to
/// start rather than dead-letter every record an SDK on that version writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {source}")]
pub struct HistoryError {
    pub file: &'static str,
    #[source]
    pub source: SchemaError,
}

/// The schema id of a record in the Confluent wire format (`00` + 4-byte big-endian
/// id), or `None` for any other format or a truncated header.
pub fn confluent_schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [CONFLUENT_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// The encodings [`Codec::decode`] recognizes, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// `C3 01` + 8-byte little-endian CRC-64-AVRO fingerprint + Avro datum.
    SingleObject,
    /// `00` + 4-byte big-endian schema id + Avro datum.
    Confluent,
    /// A JSON object (optionally preceded by whitespace).
    Json,
}

impl WireFormat {
    /// The format of `bytes` as [`Codec::decode`] would see it, or `None` when it is none
    /// of them (or `bytes` is empty or blank).
    pub fn detect(bytes: &[u8]) -> Option<WireFormat> {
        match bytes.first()? {
            0xC3 => Some(WireFormat::SingleObject),
            &CONFLUENT_MAGIC => Some(WireFormat::Confluent),
            _ => match first_non_ws(bytes)? {
                b'{' => Some(WireFormat::Json),
                _ => None,
            },
        }
    }
}

/// The CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form, as the
/// `u64` whose little-endian bytes single-object encoding writes after `C3 01`.
pub fn rabin_fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    let mut le = [0u8; 8];
    // Rabin always yields 8 bytes; copying through a fixed array keeps this total.
    for (dst, src) in le.iter_mut().zip(bytes.iter()) {
        *dst = *src;
    }
    u64::from_le_bytes(le)
}

/// A parsed schema plus what decoding against it needs, computed once.
#[derive(Debug)]
struct KnownSchema {
    schema: Schema,
    /// Named types of `schema`, owned, for resolving `Ref`s in [`check_datum`].
    names: Names,
    fingerprint: u64,
    /// Same Parsing Canonical Form as the built-in RawEvent schema: the datum layout is
    /// the one the hand-written decoder reads.
    fast: bool,
}

impl KnownSchema {
    fn parse(json: &str, current_fingerprint: Option<u64>) -> Result<KnownSchema, SchemaError> {
        let schema = Schema::parse_str(json).map_err(|e| SchemaError::Parse(e.to_string()))?;
        let names = ResolvedSchema::try_from(&schema)
            .map_err(|e| SchemaError::Parse(e.to_string()))?
            .get_names()
            .iter()
            .map(|(name, s)| (name.clone(), (*s).clone()))
            .collect();
        let fingerprint = rabin_fingerprint(&schema);
        Ok(KnownSchema {
            schema,
            names,
            fingerprint,
            fast: current_fingerprint == Some(fingerprint),
        })
    }

    /// A built-in schema: its text is compiled in and covered by tests, so failing to
    /// parse it is a build defect, not an input error.
    fn builtin(json: &str) -> KnownSchema {
        match KnownSchema::parse(json, None) {
            Ok(k) => k,
            Err(e) => panic!("built-in Avro schema does not parse: {e}"),
        }
    }
}

/// Decoder and encoder of raw events. Cheap to clone (the schemas are shared).
#[derive(Debug, Clone)]
pub struct Codec {
    /// The current RawEvent schema: the reader schema of every decode.
    current: Arc<KnownSchema>,
    by_fingerprint: HashMap<u64, Arc<KnownSchema>>,
    by_confluent_id: HashMap<u32, Arc<KnownSchema>>,
    /// Ids a schema registry answered with a schema that does not resolve, and why:
    /// their records are dead-lettered without asking again.
    refused_ids: HashMap<u32, Arc<str>>,
    max_record_bytes: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new()
    }
}

impl Codec {
    /// A codec knowing the built-in RawEvent schema, under its fingerprint and under
    /// Confluent id [`BUILTIN_CONFLUENT_ID`], with the default record size limit.
    pub fn new() -> Codec {
        let mut current = KnownSchema::builtin(RAW_EVENT_SCHEMA);
        current.fast = true;
        let current = Arc::new(current);
        Codec {
            by_fingerprint: HashMap::from([(current.fingerprint, current.clone())]),
            by_confluent_id: HashMap::from([(BUILTIN_CONFLUENT_ID, current.clone())]),
            refused_ids: HashMap::new(),
            current,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        }
    }

    /// [`Codec::new`] plus every released version of the RawEvent schema
    /// (`schemas/history/raw_event/`), registered by fingerprint: what a processor
    /// starts with, so that records from SDKs still on an older version fold.
    pub fn with_history() -> Result<Codec, HistoryError> {
        let mut codec = Codec::new();
        codec.register_history(crate::schema_history::versions_of("raw_event"))?;
        Ok(codec)
    }

    fn register_history<'a>(
        &mut self,
        versions: impl Iterator<Item = &'a crate::schema_history::HistoricalSchema>,
    ) -> Result<(), HistoryError> {
        for version in versions {
            self.register_writer_schema(None, version.json)
                .map_err(|source| HistoryError {
                    file: version.file,
                    source,
                })?;
        }
        Ok(())
    }

    /// Whether records with this Confluent schema id have an answer already: a
    /// registered schema, or a refusal ([`Codec::refuse_schema_id`]).
    pub fn knows_schema_id(&self, id: u32) -> bool {
        self.by_confluent_id.contains_key(&id) || self.refused_ids.contains_key(&id)
    }

    /// Remembers that a schema registry's schema for `id` cannot be read as the current
    /// schema: records with that id then fail with [`DecodeError::UnresolvableSchema`].
    pub fn refuse_schema_id(&mut self, id: u32, detail: &str) {
        self.refused_ids.insert(id, Arc::from(detail));
    }

    /// Sets the largest record [`Codec::decode`] accepts.
    pub fn with_max_record_bytes(mut self, max: usize) -> Codec {
        self.max_record_bytes = max;
        self
    }

    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// The current RawEvent schema (the reader schema).
    pub fn reader_schema(&self) -> &Schema {
        &self.current.schema
    }

    /// Fingerprint of the current RawEvent schema.
    pub fn current_fingerprint(&self) -> u64 {
        self.current.fingerprint
    }

    /// Makes records written with `schema_json` decodable: always by its fingerprint
    /// (single-object encoding) and, when given, by its Confluent schema id.
    ///
    /// The schema must be resolvable to the current schema (checked here, once, rather
    /// than failing on every record). Registering the same schema again is a no-op; an
    /// id already bound to a schema with another canonical form is refused.
    pub fn register_writer_schema(
        &mut self,
        confluent_id: Option<u32>,
        schema_json: &str,
    ) -> Result<(), SchemaError> {
        let writer = KnownSchema::parse(schema_json, Some(self.current.fingerprint))?;
        SchemaCompatibility::can_read(&writer.schema, &self.current.schema)
            .map_err(|e| SchemaError::Incompatible(e.to_string()))?;
        if let Some(id) = confluent_id {
            if let Some(existing) = self.by_confluent_id.get(&id) {
                if existing.fingerprint != writer.fingerprint {
                    return Err(SchemaError::IdConflict { id });
                }
            }
        }
        // Schemas with one canonical form encode identically, so the first registered
        // copy serves for every later one.
        let entry = self
            .by_fingerprint
            .entry(writer.fingerprint)
            .or_insert_with(|| Arc::new(writer))
            .clone();
        if let Some(id) = confluent_id {
            self.by_confluent_id.insert(id, entry);
        }
        Ok(())
    }

    /// Decodes one record, detecting its encoding from its first bytes.
    pub fn decode(&self, bytes: &[u8]) -> Result<RawEvent, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        if bytes.len() > self.max_record_bytes {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: self.max_record_bytes,
            });
        }
        match bytes[0] {
            0xC3 => {
                let format = "Avro single-object";
                match bytes.get(1) {
                    None => return Err(DecodeError::TruncatedHeader { format }),
                    Some(0x01) => {}
                    Some(_) => return Err(DecodeError::UnknownFormat { first_byte: 0xC3 }),
                }
                let (fingerprint, body) = split_single_object(bytes)?;
                let writer = self
                    .by_fingerprint
                    .get(&fingerprint)
                    .ok_or(DecodeError::UnknownFingerprint { fingerprint })?;
                self.decode_body(writer, body)
            }
            CONFLUENT_MAGIC => {
                let Some((id, body)) = bytes.get(1..CONFLUENT_HEADER_LEN).and_then(|id| {
                    let id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
                    Some((id, bytes.get(CONFLUENT_HEADER_LEN..)?))
                }) else {
                    return Err(DecodeError::TruncatedHeader {
                        format: "Confluent",
                    });
                };
                if let Some(detail) = self.refused_ids.get(&id) {
                    return Err(DecodeError::UnresolvableSchema {
                        id,
                        detail: detail.to_string(),
                    });
                }
                let writer = self
                    .by_confluent_id
                    .get(&id)
                    .ok_or(DecodeError::UnknownSchemaId { id })?;
                self.decode_body(writer, body)
            }
            _ => match first_non_ws(bytes) {
                None => Err(DecodeError::Empty),
                Some(b'{') => decode_json(bytes),
                Some(first_byte) => Err(DecodeError::UnknownFormat { first_byte }),
            },
        }
    }

    fn decode_body(&self, writer: &KnownSchema, body: &[u8]) -> Result<RawEvent, DecodeError> {
        if writer.fast {
            decode_raw_event_datum(body)
        } else {
            let value = decode_generic(writer, Some(&self.current.schema), body)?;
            apache_avro::from_value::<RawEvent>(&value)
                .map_err(|e| DecodeError::Avro(e.to_string()))
        }
    }

    /// Decodes an Avro datum written with the current schema through the generic
    /// `apache-avro` path (structural check, `Value`, `from_value`), bypassing the
    /// hand-written decoder. For tests and measurements: [`Codec::decode`] is faster.
    pub fn decode_datum_generic(&self, datum: &[u8]) -> Result<RawEvent, DecodeError> {
        let value = decode_generic(&self.current, None, datum)?;
        apache_avro::from_value::<RawEvent>(&value).map_err(|e| DecodeError::Avro(e.to_string()))
    }

    /// Avro single-object encoding with the current schema.
    pub fn encode_single_object(&self, event: &RawEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(SINGLE_OBJECT_HEADER_LEN + encoded_size_hint(event));
        out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
        out.extend_from_slice(&self.current.fingerprint.to_le_bytes());
        encode_raw_event_datum(event, &mut out);
        out
    }

    /// Confluent wire format, `id` being the registry's id of the current schema.
    pub fn encode_confluent(&self, id: u32, event: &RawEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(CONFLUENT_HEADER_LEN + encoded_size_hint(event));
        out.push(CONFLUENT_MAGIC);
        out.extend_from_slice(&id.to_be_bytes());
        encode_raw_event_datum(event, &mut out);
        out
    }

    /// JSON with the contract's camelCase names.
    pub fn encode_json(event: &RawEvent) -> Vec<u8> {
        encode_json(event)
    }
}

/// JSON with the contract's camelCase names.
pub fn encode_json(event: &RawEvent) -> Vec<u8> {
    // Serializing a struct of strings, integers and a string map into a Vec cannot fail.
    serde_json::to_vec(event).unwrap_or_default()
}

/// Decodes a JSON raw event (no size limit: [`Codec::decode`] applies one).
///
/// Unknown fields are ignored, so producers may send fields newer than this reader.
pub fn decode_json(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    // JSON text is UTF-8 by definition. Checking up front gives a precise InvalidUtf8
    // instead of serde_json's message for it, and costs one fast pass.
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
    serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))
}

fn first_non_ws(bytes: &[u8]) -> Option<u8> {
    bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Splits single-object bytes (starting `C3 01`) into fingerprint and datum.
fn split_single_object(bytes: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    let header = bytes
        .get(2..SINGLE_OBJECT_HEADER_LEN)
        .ok_or(DecodeError::TruncatedHeader {
            format: "Avro single-object",
        })?;
    let mut fp = [0u8; 8];
    fp.copy_from_slice(header);
    Ok((u64::from_le_bytes(fp), &bytes[SINGLE_OBJECT_HEADER_LEN..]))
}

/// The generic path: structural check against the writer schema, `apache-avro` decode,
/// and resolution to `reader` when the writer differs from it.
fn decode_generic(
    writer: &KnownSchema,
    reader: Option<&Schema>,
    datum: &[u8],
) -> Result<Value, DecodeError> {
    check_datum(&writer.schema, &writer.names, datum)?;
    let avro_err = |e: apache_avro::Error| DecodeError::Avro(e.to_string());
    let decoder = GenericDatumReader::builder(&writer.schema)
        .maybe_reader_schema(reader.filter(|_| !writer.fast))
        .build()
        .map_err(avro_err)?;
    let mut input = datum;
    decoder.read_value(&mut input).map_err(avro_err)
}

mod avro;
mod check;
mod fast;
mod projection;

use avro::*;
pub(crate) use check::check_datum;
use fast::*;
pub use projection::ProjectionCodec;

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(full: bool) -> FoldedEvent {
        FoldedEvent {
            funnel_id: "shop".into(),
            event_id: "e-1".into(),
            anonymous_id: "anon-1".into(),
            display_name: crate::names::display_name("anon-1"),
            session_id: full.then(|| "s-1".into()),
            event_name: "purchase".into(),
            timestamp: 1_700_000_000_123,
            path: full.then(|| "/checkout/done".into()),
            source: full.then(|| "google".into()),
            medium: full.then(|| "cpc".into()),
            is_conversion: full,
            revenue_minor: full.then_some(12_345),
            currency: full.then(|| "EUR".into()),
            is_bot: full,
        }
    }

    #[test]
    fn folded_events_round_trip_through_their_schema() {
        let codec = ProjectionCodec::new();
        for full in [true, false] {
            let e = folded(full);
            let bytes = codec.encode_folded_event(&e);
            assert_eq!(
                codec.decode_folded_event(&bytes).ok(),
                Some(e),
                "full={full}"
            );
            // A record of another schema is refused by its fingerprint, not misread.
            assert!(matches!(
                codec.decode_event_row(&bytes),
                Err(DecodeError::UnknownFingerprint { .. })
            ));
            // Truncated bytes are an error, never a panic or a partial record.
            for cut in 0..bytes.len() {
                assert!(
                    codec.decode_folded_event(&bytes[..cut]).is_err(),
                    "cut={cut}"
                );
            }
        }
    }

    #[test]
    fn a_released_version_that_does_not_resolve_stops_start_up_naming_its_file() {
        // `eventId` as an int cannot be read as the current schema's string.
        let bad = RAW_EVENT_SCHEMA.replacen(
            r#""name": "eventId", "type": "string","#,
            r#""name": "eventId", "type": "int","#,
            1,
        );
        assert_ne!(bad, RAW_EVENT_SCHEMA, "the test must change the schema");
        let bad: &'static str = Box::leak(bad.into_boxed_str());
        let version = crate::schema_history::HistoricalSchema {
            schema: "raw_event",
            version: 9,
            file: "schemas/history/raw_event/v9.avsc",
            json: bad,
        };
        let err = Codec::new()
            .register_history([version].iter())
            .expect_err("an unreadable version is refused");
        assert_eq!(err.file, "schemas/history/raw_event/v9.avsc");
        assert!(matches!(err.source, SchemaError::Incompatible(_)), "{err}");
        assert!(err
            .to_string()
            .starts_with("schemas/history/raw_event/v9.avsc: "));
    }

    #[test]
    fn every_released_raw_event_version_registers() {
        let codec = Codec::with_history().expect("the released history resolves");
        for version in crate::schema_history::versions_of("raw_event") {
            let schema = Schema::parse_str(version.json).expect("parses");
            assert!(
                codec
                    .by_fingerprint
                    .contains_key(&rabin_fingerprint(&schema)),
                "{}",
                version.file
            );
        }
    }

    #[test]
    fn a_refused_schema_id_is_dead_lettered_with_the_reason() {
        let mut codec = Codec::new();
        assert!(!codec.knows_schema_id(42));
        codec.refuse_schema_id(42, "field eventId: int is not string");
        assert!(codec.knows_schema_id(42));
        let record = [0x00, 0, 0, 0, 42, 0x02];
        assert_eq!(confluent_schema_id(&record), Some(42));
        let err = codec.decode(&record).expect_err("refused");
        assert_eq!(err.code(), "unresolvable_schema");
        assert!(
            err.to_string().contains("field eventId: int is not string"),
            "{err}"
        );
        assert_eq!(confluent_schema_id(&[0x00, 0, 0]), None);
        assert_eq!(confluent_schema_id(b"{}"), None);
    }
}
