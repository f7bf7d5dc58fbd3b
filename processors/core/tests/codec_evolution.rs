//! Schema evolution: records written with an older writer schema are resolved to the
//! current reader schema; fields added since take their defaults.

use apache_avro::{types::Value, Schema};
use funnelfold_core::codec::{rabin_fingerprint, Codec, DecodeError, SchemaError};
use funnelfold_core::RawEvent;

/// The current schema minus `utmContent`, `country` and `properties`, with plain-long
/// timestamps.
const V0: &str = include_str!("fixtures/raw_event_v0.avsc");

/// A v0 datum, written by `apache-avro` from a v0-shaped record.
fn v0_datum() -> Vec<u8> {
    let schema = Schema::parse_str(V0).expect("v0 parses");
    let s = |v: &str| Value::String(v.into());
    let some = |v: Value| Value::Union(1, Box::new(v));
    let none = || Value::Union(0, Box::new(Value::Null));
    let record = Value::Record(vec![
        ("eventId".into(), s("e-old")),
        ("funnelId".into(), s("f")),
        ("anonymousId".into(), s("a")),
        ("sessionId".into(), some(s("s1"))),
        ("userId".into(), none()),
        ("eventName".into(), s("page_view")),
        ("timestamp".into(), Value::Long(1_700_000_000_000)),
        ("receivedAt".into(), some(Value::Long(1_700_000_000_500))),
        (
            "url".into(),
            some(s("https://x.example/?utm_content=ignored")),
        ),
        ("referrer".into(), none()),
        ("title".into(), some(s("Home"))),
        ("utmSource".into(), some(s("google"))),
        ("utmMedium".into(), some(s("cpc"))),
        ("utmCampaign".into(), none()),
        ("utmTerm".into(), none()),
        ("userAgent".into(), some(s("Mozilla/5.0"))),
        ("ip".into(), none()),
        ("isConversion".into(), Value::Boolean(true)),
        ("revenueMinor".into(), some(Value::Long(1234))),
        ("currency".into(), some(s("EUR"))),
    ]);
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .expect("writer")
        .write_value_to_vec(record)
        .expect("v0 datum")
}

fn expected() -> RawEvent {
    RawEvent {
        event_id: "e-old".into(),
        funnel_id: "f".into(),
        anonymous_id: "a".into(),
        session_id: Some("s1".into()),
        event_name: "page_view".into(),
        timestamp: 1_700_000_000_000,
        received_at: Some(1_700_000_000_500),
        url: Some("https://x.example/?utm_content=ignored".into()),
        title: Some("Home".into()),
        utm_source: Some("google".into()),
        utm_medium: Some("cpc".into()),
        user_agent: Some("Mozilla/5.0".into()),
        is_conversion: true,
        revenue_minor: Some(1234),
        currency: Some("EUR".into()),
        // Added since v0: defaults.
        utm_content: None,
        country: None,
        properties: Default::default(),
        ..Default::default()
    }
}

#[test]
fn old_writer_by_confluent_id() {
    let mut codec = Codec::new();
    let mut bytes = vec![0, 0, 0, 0, 7];
    bytes.extend(v0_datum());
    assert_eq!(
        codec.decode(&bytes),
        Err(DecodeError::UnknownSchemaId { id: 7 })
    );
    codec
        .register_writer_schema(Some(7), V0)
        .expect("v0 registers");
    assert_eq!(codec.decode(&bytes), Ok(expected()));
}

#[test]
fn old_writer_by_fingerprint() {
    let mut codec = Codec::new();
    let fp = rabin_fingerprint(&Schema::parse_str(V0).expect("v0"));
    assert_ne!(fp, codec.current_fingerprint());
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend(fp.to_le_bytes());
    bytes.extend(v0_datum());
    assert_eq!(
        codec.decode(&bytes),
        Err(DecodeError::UnknownFingerprint { fingerprint: fp })
    );
    codec
        .register_writer_schema(None, V0)
        .expect("v0 registers");
    assert_eq!(codec.decode(&bytes), Ok(expected()));
    // Registering twice is harmless.
    codec.register_writer_schema(None, V0).expect("again");
    assert_eq!(codec.decode(&bytes), Ok(expected()));
}

#[test]
fn old_writer_errors_are_still_precise() {
    let mut codec = Codec::new();
    codec
        .register_writer_schema(Some(7), V0)
        .expect("v0 registers");
    let datum = v0_datum();
    let mut bytes = vec![0, 0, 0, 0, 7];
    bytes.extend(&datum[..datum.len() - 1]);
    assert!(
        matches!(codec.decode(&bytes), Err(DecodeError::Avro(_))),
        "truncated"
    );
    let mut bytes = vec![0, 0, 0, 0, 7];
    bytes.extend(&datum);
    bytes.push(0);
    assert!(matches!(codec.decode(&bytes), Err(DecodeError::Avro(m)) if m.contains("trailing")));
    // Invalid UTF-8 in the first string (eventId "e-old" -> "e\xffold").
    let mut bytes = vec![0, 0, 0, 0, 7];
    bytes.extend(&datum);
    bytes[5 + 2] = 0xFF;
    assert_eq!(codec.decode(&bytes), Err(DecodeError::InvalidUtf8));
}

/// A writer schema equal to the current one up to docs, defaults and logical types has
/// the same canonical form: it is recognized and takes the fast path.
#[test]
fn same_canonical_form_registers_under_a_new_id() {
    let mut codec = Codec::new();
    let plain = include_str!("../../../schemas/raw_event.avsc").replace("\"doc\"", "\"x-doc\"");
    codec
        .register_writer_schema(Some(42), &plain)
        .expect("registers");
    let e = expected();
    assert_eq!(codec.decode(&codec.encode_confluent(42, &e)), Ok(e));
}

#[test]
fn registration_refuses_bad_schemas() {
    let mut codec = Codec::new();
    assert!(matches!(
        codec.register_writer_schema(Some(3), "{not json"),
        Err(SchemaError::Parse(_))
    ));
    // eventId has no default in the reader, so a writer without it cannot be read.
    let no_event_id = r#"{"type":"record","name":"RawEvent","namespace":"dev.funnelfold",
        "fields":[{"name":"funnelId","type":"string"}]}"#;
    assert!(matches!(
        codec.register_writer_schema(Some(3), no_event_id),
        Err(SchemaError::Incompatible(_))
    ));
    // A type change that resolution cannot bridge.
    let ts_as_string = include_str!("../../../schemas/raw_event.avsc").replace(
        r#""name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}"#,
        r#""name": "timestamp", "type": "string""#,
    );
    assert!(matches!(
        codec.register_writer_schema(Some(3), &ts_as_string),
        Err(SchemaError::Incompatible(_))
    ));
    // Id 1 is the built-in schema: binding it to v0 would silently change its meaning.
    assert_eq!(
        codec.register_writer_schema(Some(1), V0),
        Err(SchemaError::IdConflict { id: 1 })
    );
}

/// Every released RawEvent version (`schemas/history/raw_event/`): a record an SDK on
/// that version writes, in single-object encoding, decodes with the codec a processor
/// starts with, fields added since taking their defaults.
#[test]
fn a_record_written_with_each_released_version_decodes() {
    use funnelfold_core::schema_history::versions_of;
    let codec = Codec::with_history().expect("the released history resolves");
    let event = expected();
    let current = apache_avro::to_value(&event).expect("to value");
    let mut seen = 0;
    for version in versions_of("raw_event") {
        let schema = Schema::parse_str(version.json).expect("parses");
        // The event as that version's writer has it: its fields only.
        let value = current
            .clone()
            .resolve(&schema)
            .unwrap_or_else(|e| panic!("{}: {e}", version.file));
        let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer")
            .write_value_to_vec(value)
            .expect("datum");
        let mut record = vec![0xC3, 0x01];
        record.extend_from_slice(&rabin_fingerprint(&schema).to_le_bytes());
        record.extend_from_slice(&datum);
        assert_eq!(codec.decode(&record), Ok(event.clone()), "{}", version.file);
        seen += 1;
    }
    assert!(seen >= 1, "no released version found");
}
