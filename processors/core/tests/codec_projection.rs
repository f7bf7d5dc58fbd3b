//! Projection rows through their Avro schemas: the hand-written encoders against
//! `apache-avro` (to_value / from_value), and round trips.

use std::collections::BTreeMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{types::Value, Schema};
use funnelfold_core::codec::{
    rabin_fingerprint, DecodeError, ProjectionCodec, EVENT_ROW_SCHEMA, FOLDED_EVENT_SCHEMA,
    PROFILE_SCHEMA, SESSION_SCHEMA, TRAFFIC_SOURCE_SCHEMA,
};
use funnelfold_core::{
    Channel, EventRow, FoldedEvent, ProfileRow, SessionRow, Touch, TrafficCounts, TrafficKey,
    TrafficRow,
};

fn revenue() -> BTreeMap<String, i64> {
    BTreeMap::from([("EUR".to_string(), 1999)])
}

fn profile(last_non_direct: Option<Touch>) -> ProfileRow {
    ProfileRow {
        funnel_id: "f".into(),
        anonymous_id: "a".into(),
        display_name: "Fluffy Panda".into(),
        user_id: Some("u".into()),
        first_seen: 1_700_000_000_000,
        last_seen: 1_700_000_100_000,
        total_sessions: 3,
        total_events: 17,
        first_touch: Touch::direct(),
        last_non_direct,
        conversions: 1,
        revenue: revenue(),
        device_type: "mobile".into(),
        browser: "Safari".into(),
        os: "iOS".into(),
        country: None,
    }
}

fn session(channel: Channel) -> SessionRow {
    SessionRow {
        funnel_id: "f".into(),
        anonymous_id: "a".into(),
        session_id: "auto-e1".into(),
        started_at: 1_700_000_000_000,
        last_event_at: 1_700_000_060_000,
        duration_ms: 60_000,
        landing_page: Some("/".into()),
        exit_page: None,
        events: 4,
        pageviews: 1,
        bounce: false,
        converted: true,
        conversions: 1,
        revenue: revenue(),
        source: "google".into(),
        medium: "organic".into(),
        campaign: "(not set)".into(),
        channel,
        device_type: "desktop".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        country: Some("FR".into()),
    }
}

fn traffic(channel: Channel) -> TrafficRow {
    TrafficRow {
        key: TrafficKey {
            funnel_id: "f".into(),
            day: 19_700,
            source: "google".into(),
            medium: "cpc".into(),
            campaign: "summer".into(),
        },
        channel,
        counts: TrafficCounts {
            sessions: 10,
            conversions: 2,
            revenue: revenue(),
        },
    }
}

fn event_row() -> EventRow {
    EventRow {
        funnel_id: "f".into(),
        event_id: "e1".into(),
        anonymous_id: "a".into(),
        session_id: None,
        event_name: "purchase".into(),
        timestamp: 1_700_000_000_000,
        path: Some("/checkout".into()),
        is_conversion: true,
        revenue_minor: Some(1999),
        currency: Some("EUR".into()),
        is_bot: true,
    }
}

fn folded_event(is_bot: bool) -> FoldedEvent {
    FoldedEvent {
        funnel_id: "f".into(),
        event_id: "e1".into(),
        anonymous_id: "a".into(),
        display_name: "Fluffy Panda".into(),
        session_id: Some("auto-e1".into()),
        event_name: "purchase".into(),
        timestamp: 1_700_000_000_000,
        path: Some("/checkout".into()),
        source: Some("google".into()),
        medium: Some("cpc".into()),
        is_conversion: true,
        revenue_minor: Some(1999),
        currency: Some("EUR".into()),
        is_bot,
    }
}

/// Encodes `value` with apache-avro alone (validating it against `schema`).
fn apache_encode(schema: &Schema, value: Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .expect("writer")
        .write_value_to_vec(value)
        .expect("encode")
}

/// Decodes `bytes` with apache-avro alone, against `schema_json`.
fn apache_decode(schema_json: &str, bytes: &[u8]) -> Value {
    let schema = Schema::parse_str(schema_json).expect("schema");
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    assert_eq!(bytes[2..10], rabin_fingerprint(&schema).to_le_bytes());
    let mut datum = &bytes[10..];
    let v = GenericDatumReader::builder(&schema)
        .build()
        .expect("reader")
        .read_value(&mut datum)
        .expect("apache-avro decodes");
    assert!(datum.is_empty(), "no trailing bytes");
    v
}

#[test]
fn profile_round_trip_and_interop() {
    let p = ProjectionCodec::new();
    let mut tiktok = Touch::direct();
    tiktok.source = "tiktok.com".into();
    tiktok.medium = "social".into();
    tiktok.channel = Channel::OrganicSocial;
    for row in [profile(None), profile(Some(tiktok))] {
        let bytes = p.encode_profile(&row);
        assert_eq!(p.decode_profile(&bytes), Ok(row.clone()));
        let value = apache_decode(PROFILE_SCHEMA, &bytes);
        assert_eq!(
            apache_avro::from_value::<ProfileRow>(&value).expect("from_value"),
            row
        );
        // apache-avro's serde mapping gives the channel as a plain string, which is what
        // the schema says: to_value + validate agrees with the hand-written encoding.
        let schema = Schema::parse_str(PROFILE_SCHEMA).expect("schema");
        let theirs = apache_avro::to_value(&row).expect("to_value");
        assert!(theirs.validate(&schema), "to_value output fits the schema");
        let datum = apache_encode(&schema, theirs);
        assert_eq!(&bytes[10..], &datum[..]);
    }
}

#[test]
fn session_round_trip_and_interop_for_every_channel() {
    let p = ProjectionCodec::new();
    let schema = Schema::parse_str(SESSION_SCHEMA).expect("schema");
    for channel in Channel::ALL {
        let row = session(channel);
        let bytes = p.encode_session(&row);
        assert_eq!(p.decode_session(&bytes), Ok(row.clone()));
        let value = apache_decode(SESSION_SCHEMA, &bytes);
        let Value::Record(fields) = &value else {
            panic!("record")
        };
        let ch = fields
            .iter()
            .find(|(n, _)| n == "channel")
            .map(|(_, v)| v.clone());
        assert_eq!(ch, Some(Value::String(channel.as_str().to_string())));
        let datum = apache_encode(&schema, apache_avro::to_value(&row).expect("to_value"));
        assert_eq!(&bytes[10..], &datum[..]);
    }
}

#[test]
fn traffic_round_trip_and_interop() {
    let p = ProjectionCodec::new();
    for channel in [Channel::PaidSearch, Channel::MobilePush] {
        let row = traffic(channel);
        let bytes = p.encode_traffic(&row);
        assert_eq!(p.decode_traffic(&bytes), Ok(row.clone()));
        let value = apache_decode(TRAFFIC_SOURCE_SCHEMA, &bytes);
        let Value::Record(fields) = value else {
            panic!("record")
        };
        let names: Vec<_> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "funnelId",
                "day",
                "source",
                "medium",
                "campaign",
                "channel",
                "sessions",
                "conversions",
                "revenue"
            ]
        );
        assert_eq!(fields[1].1, Value::Date(19_700));
    }
}

#[test]
fn event_row_round_trip_and_interop() {
    let p = ProjectionCodec::new();
    let row = event_row();
    let bytes = p.encode_event_row(&row);
    assert_eq!(p.decode_event_row(&bytes), Ok(row.clone()));
    let value = apache_decode(EVENT_ROW_SCHEMA, &bytes);
    assert_eq!(
        apache_avro::from_value::<EventRow>(&value).expect("from_value"),
        row
    );
}

#[test]
fn folded_event_round_trip_and_interop() {
    let p = ProjectionCodec::new();
    let schema = Schema::parse_str(FOLDED_EVENT_SCHEMA).expect("schema");
    for is_bot in [false, true] {
        let row = folded_event(is_bot);
        let bytes = p.encode_folded_event(&row);
        assert_eq!(p.decode_folded_event(&bytes), Ok(row.clone()));
        let value = apache_decode(FOLDED_EVENT_SCHEMA, &bytes);
        assert_eq!(
            apache_avro::from_value::<FoldedEvent>(&value).expect("from_value"),
            row
        );
        // The hand-written encoding is apache-avro's, isBot included.
        let theirs = apache_avro::to_value(&row).expect("to_value");
        assert!(theirs.validate(&schema), "to_value output fits the schema");
        assert_eq!(&bytes[10..], &apache_encode(&schema, theirs)[..]);
    }
}

/// `events.changelog` keeps a day of records, so after a deploy the query processor
/// still reads some an older fold processor wrote with folded_event v1, before
/// `isBot`: they decode, as visitors' events (the field's default), instead of being
/// dropped as an unknown schema.
#[test]
fn a_folded_event_written_before_is_bot_reads_as_a_visitors() {
    let p = ProjectionCodec::new();
    let v1 = Schema::parse_str(include_str!(
        "../../../schemas/history/folded_event/v1.avsc"
    ))
    .expect("v1");
    let current = Schema::parse_str(FOLDED_EVENT_SCHEMA).expect("schema");
    assert_ne!(rabin_fingerprint(&v1), rabin_fingerprint(&current));
    let row = folded_event(false);
    let Value::Record(mut fields) = apache_avro::to_value(&row).expect("to_value") else {
        panic!("a record");
    };
    fields.retain(|(name, _)| name != "isBot");
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&rabin_fingerprint(&v1).to_le_bytes());
    bytes.extend_from_slice(&apache_encode(&v1, Value::Record(fields)));
    assert_eq!(p.decode_folded_event(&bytes), Ok(row));
    // An old record cut short is an error too, never a partial or defaulted record.
    for cut in 0..bytes.len() {
        assert!(p.decode_folded_event(&bytes[..cut]).is_err(), "cut={cut}");
    }
    // Only the folded event's own versions: an event row is not a folded event.
    let other = p.encode_event_row(&event_row());
    assert!(matches!(
        p.decode_folded_event(&other),
        Err(DecodeError::UnknownFingerprint { .. })
    ));
}

#[test]
fn projection_decoding_checks_the_schema() {
    let p = ProjectionCodec::new();
    let bytes = p.encode_session(&session(Channel::Direct));
    // A session record is not a profile.
    assert!(matches!(
        p.decode_profile(&bytes),
        Err(DecodeError::UnknownFingerprint { .. })
    ));
    assert_eq!(
        p.decode_session(&bytes[..5]),
        Err(DecodeError::TruncatedHeader {
            format: "Avro single-object"
        })
    );
    assert!(matches!(
        p.decode_session(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Avro(_))
    ));
    assert_eq!(p.decode_session(b""), Err(DecodeError::Empty));
    assert_eq!(
        p.decode_session(b"{}"),
        Err(DecodeError::UnknownFormat { first_byte: b'{' })
    );
    // An unknown channel name is an error, not a default.
    let mut row = session(Channel::Email);
    row.source = "x".into();
    let mut bytes = p.encode_session(&row);
    let pos = bytes
        .windows(5)
        .position(|w| w == b"Email")
        .expect("channel");
    bytes[pos] = b'F';
    assert!(matches!(
        p.decode_session(&bytes),
        Err(DecodeError::Avro(_))
    ));
}

#[test]
fn all_schemas_document_every_field() {
    for json in [
        include_str!("../../../schemas/raw_event.avsc"),
        PROFILE_SCHEMA,
        SESSION_SCHEMA,
        TRAFFIC_SOURCE_SCHEMA,
        EVENT_ROW_SCHEMA,
    ] {
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        assert_eq!(v["namespace"], "dev.funnelfold");
        assert!(v["doc"].is_string());
        fn fields_documented(record: &serde_json::Value) {
            for f in record["fields"].as_array().expect("fields") {
                assert!(
                    f["doc"].as_str().is_some_and(|d| !d.is_empty()),
                    "{} lacks a doc",
                    f["name"]
                );
                if f["type"]["type"] == "record" {
                    assert!(f["type"]["doc"].is_string());
                    fields_documented(&f["type"]);
                }
            }
        }
        fields_documented(&v);
    }
}
