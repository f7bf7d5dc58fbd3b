//! Round trips of the raw event through all three encodings, and interoperability of the
//! hand-written Avro encoder/decoder with `apache-avro`'s own.

use std::collections::BTreeMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::{GenericSingleObjectWriter, Schema};
use funnelfold_core::codec::{
    rabin_fingerprint, Codec, WireFormat, BUILTIN_CONFLUENT_ID, RAW_EVENT_SCHEMA,
};
use funnelfold_core::RawEvent;

fn full_event() -> RawEvent {
    RawEvent {
        event_id: "01J9Z8K2M3N4P5Q6R7S8T9V0WX".into(),
        funnel_id: "shop-eu".into(),
        anonymous_id: "anon-7f3c2a".into(),
        session_id: Some("sess-42".into()),
        user_id: Some("user-9".into()),
        event_name: "purchase".into(),
        timestamp: 1_750_000_000_123,
        received_at: Some(1_750_000_000_456),
        url: Some("https://shop.example/checkout?utm_source=newsletter&utm_medium=email&utm_campaign=june".into()),
        referrer: Some("https://mail.example.com/".into()),
        title: Some("Checkout — Zoë's shop 🐼".into()),
        utm_source: Some("newsletter".into()),
        utm_medium: Some("email".into()),
        utm_campaign: Some("june".into()),
        utm_term: Some("shoes".into()),
        utm_content: Some("hero".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36".into()),
        country: Some("DE".into()),
        ip: Some("2001:db8::1".into()),
        is_conversion: true,
        revenue_minor: Some(-0x7fff_ffff_ffff), // encoders must not care about validation
        currency: Some("EUR".into()),
        properties: [("plan", "pro"), ("", "empty key"), ("emoji", "🎉")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn minimal_event() -> RawEvent {
    RawEvent {
        event_id: "e".into(),
        funnel_id: "f".into(),
        anonymous_id: "a".into(),
        event_name: "page_view".into(),
        timestamp: i64::MIN,
        ..Default::default()
    }
}

#[test]
fn single_object_round_trip() {
    let codec = Codec::new();
    for e in [full_event(), minimal_event(), RawEvent::default()] {
        let bytes = codec.encode_single_object(&e);
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(WireFormat::detect(&bytes), Some(WireFormat::SingleObject));
        assert_eq!(codec.decode(&bytes), Ok(e));
    }
}

#[test]
fn confluent_round_trip() {
    let codec = Codec::new();
    for e in [full_event(), minimal_event()] {
        let bytes = codec.encode_confluent(BUILTIN_CONFLUENT_ID, &e);
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 1]);
        assert_eq!(WireFormat::detect(&bytes), Some(WireFormat::Confluent));
        assert_eq!(codec.decode(&bytes), Ok(e));
    }
}

#[test]
fn json_round_trip() {
    let codec = Codec::new();
    for e in [full_event(), minimal_event()] {
        let bytes = Codec::encode_json(&e);
        assert_eq!(WireFormat::detect(&bytes), Some(WireFormat::Json));
        assert_eq!(codec.decode(&bytes), Ok(e));
    }
}

#[test]
fn json_uses_the_contract_names_and_ignores_unknown_fields() {
    let codec = Codec::new();
    let json = br#"
        {"eventId":"e1","funnelId":"f","anonymousId":"a","eventName":"page_view",
         "timestamp":1750000000000,"utmSource":"x","isConversion":true,"revenueMinor":5,
         "currency":"USD","properties":{"k":"v"},
         "someFutureField":{"nested":[1,2,3]},"anotherOne":null}"#;
    let e = codec.decode(json).expect("decodes");
    assert_eq!(e.event_id, "e1");
    assert_eq!(e.utm_source.as_deref(), Some("x"));
    assert!(e.is_conversion);
    assert_eq!(e.revenue_minor, Some(5));
    assert_eq!(
        e.properties,
        BTreeMap::from([("k".to_string(), "v".to_string())])
    );

    let out = String::from_utf8(Codec::encode_json(&e)).expect("utf-8");
    for name in [
        "eventId",
        "funnelId",
        "anonymousId",
        "eventName",
        "utmSource",
        "isConversion",
        "revenueMinor",
    ] {
        assert!(out.contains(&format!("\"{name}\"")), "{out} lacks {name}");
    }
}

#[test]
fn json_missing_ids_decode_empty_for_validation_to_report() {
    let e = Codec::new()
        .decode(br#"{"timestamp": 5}"#)
        .expect("decodes");
    assert_eq!(e.event_id, "");
    assert_eq!(e.timestamp, 5);
}

/// Our single-object bytes are exactly what `apache-avro`'s own writer produces for the
/// same schema (header, fingerprint byte order and datum).
#[test]
fn single_object_bytes_match_apache_avro() {
    let codec = Codec::new();
    let schema = Schema::parse_str(RAW_EVENT_SCHEMA).expect("schema");
    assert_eq!(rabin_fingerprint(&schema), codec.current_fingerprint());
    // One property at most: apache-avro writes maps from a HashMap, in arbitrary order.
    let mut e = full_event();
    e.properties.retain(|k, _| k == "plan");
    for e in [e, minimal_event()] {
        let value = apache_avro::to_value(&e).expect("to_value");
        let mut theirs = Vec::new();
        GenericSingleObjectWriter::new_with_capacity(&schema, 1024)
            .expect("writer")
            .write_value(value, &mut theirs)
            .expect("write");
        assert_eq!(codec.encode_single_object(&e), theirs);
    }
}

/// `apache-avro` reads what the hand-written encoder writes, and the hand-written decoder
/// reads what `apache-avro` writes (properties in whatever order it picks).
#[test]
fn hand_written_codec_interoperates_with_apache_avro() {
    let codec = Codec::new();
    let schema = Schema::parse_str(RAW_EVENT_SCHEMA).expect("schema");
    let e = full_event();

    let ours = codec.encode_single_object(&e);
    let mut datum = &ours[10..];
    let value = GenericDatumReader::builder(&schema)
        .build()
        .expect("reader")
        .read_value(&mut datum)
        .expect("apache-avro decodes ours");
    assert_eq!(
        apache_avro::from_value::<RawEvent>(&value).expect("from_value"),
        e
    );

    let value = apache_avro::to_value(&e).expect("to_value");
    let mut theirs = Vec::new();
    GenericSingleObjectWriter::new_with_capacity(&schema, 1024)
        .expect("writer")
        .write_value(value, &mut theirs)
        .expect("write");
    assert_eq!(codec.decode(&theirs), Ok(e.clone()));
    assert_eq!(codec.decode_datum_generic(&theirs[10..]), Ok(e));
}

/// Maps written as several blocks, and with the negative-count form (count + byte size),
/// are legal Avro and must decode.
#[test]
fn map_blocks_in_every_legal_form() {
    let codec = Codec::new();
    let mut e = minimal_event();
    e.properties = BTreeMap::from([("a".into(), "1".into()), ("b".into(), "22".into())]);
    let mut bytes = codec.encode_single_object(&e);
    // The encoder writes: count 2, a, 1, b, 22, end. Rewrite the map part by hand.
    let map_start = bytes.len() - (1 + 2 + 2 + 2 + 3 + 1);
    bytes.truncate(map_start);
    // Block 1: count -1 (zig-zag 0x01), byte size 4 (0x08), "a" "1".
    bytes.extend_from_slice(&[0x01, 0x08, 0x02, b'a', 0x02, b'1']);
    // Block 2: count 1, "b" "22"; then end.
    bytes.extend_from_slice(&[0x02, 0x02, b'b', 0x04, b'2', b'2', 0x00]);
    assert_eq!(codec.decode(&bytes), Ok(e.clone()));
    assert_eq!(codec.decode_datum_generic(&bytes[10..]), Ok(e));
}

#[test]
fn codec_is_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Codec>();
}

/// The schema's field names are exactly the serde names of `RawEvent`, in order.
#[test]
fn schema_fields_match_the_struct() {
    let schema = Schema::parse_str(RAW_EVENT_SCHEMA).expect("schema");
    let Schema::Record(record) = &schema else {
        panic!("record")
    };
    let schema_names: Vec<_> = record.fields.iter().map(|f| f.name.clone()).collect();
    let apache_avro::types::Value::Record(fields) =
        apache_avro::to_value(RawEvent::default()).expect("to_value")
    else {
        panic!("record")
    };
    let struct_names: Vec<_> = fields.into_iter().map(|(n, _)| n).collect();
    assert_eq!(schema_names, struct_names);
}
