//! Every `DecodeError` variant, each produced by a crafted input.

use funnelfold_core::codec::{Codec, DecodeError, DEFAULT_MAX_RECORD_BYTES};
use funnelfold_core::{RawEvent, RejectReason};

fn event() -> RawEvent {
    RawEvent {
        event_id: "e1".into(),
        funnel_id: "f".into(),
        anonymous_id: "a".into(),
        event_name: "page_view".into(),
        timestamp: 1_750_000_000_000,
        url: Some("https://x.example/".into()),
        ..Default::default()
    }
}

fn avro(m: Result<RawEvent, DecodeError>) -> String {
    match m {
        Err(DecodeError::Avro(msg)) => msg,
        other => panic!("expected an Avro error, got {other:?}"),
    }
}

#[test]
fn empty() {
    let c = Codec::new();
    assert_eq!(c.decode(b""), Err(DecodeError::Empty));
    assert_eq!(c.decode(b"  \n\t"), Err(DecodeError::Empty));
    assert_eq!(DecodeError::Empty.code(), "empty");
}

#[test]
fn too_large() {
    let c = Codec::new();
    let mut e = event();
    e.title = Some("x".repeat(DEFAULT_MAX_RECORD_BYTES));
    let bytes = c.encode_single_object(&e);
    assert_eq!(
        c.decode(&bytes),
        Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: DEFAULT_MAX_RECORD_BYTES
        })
    );
    let json = Codec::encode_json(&e);
    assert!(matches!(c.decode(&json), Err(DecodeError::TooLarge { .. })));
    // The limit is configurable.
    let small = Codec::new().with_max_record_bytes(16);
    assert_eq!(
        small.decode(&[b' '; 17]),
        Err(DecodeError::TooLarge { len: 17, max: 16 })
    );
    assert_eq!(DecodeError::TooLarge { len: 2, max: 1 }.code(), "too_large");
}

#[test]
fn unknown_format() {
    let c = Codec::new();
    assert_eq!(
        c.decode(b"\x01abc"),
        Err(DecodeError::UnknownFormat { first_byte: 0x01 })
    );
    assert_eq!(
        c.decode(b"[1,2]"),
        Err(DecodeError::UnknownFormat { first_byte: b'[' })
    );
    assert_eq!(
        c.decode(b"  x"),
        Err(DecodeError::UnknownFormat { first_byte: b'x' })
    );
    // C3 followed by anything but 01 is not single-object encoding.
    let mut bytes = c.encode_single_object(&event());
    bytes[1] = 0x02;
    assert_eq!(
        c.decode(&bytes),
        Err(DecodeError::UnknownFormat { first_byte: 0xC3 })
    );
    assert_eq!(
        DecodeError::UnknownFormat { first_byte: 1 }.code(),
        "unknown_format"
    );
}

#[test]
fn truncated_header() {
    let c = Codec::new();
    let single = c.encode_single_object(&event());
    for n in 1..10 {
        assert_eq!(
            c.decode(&single[..n]),
            Err(DecodeError::TruncatedHeader {
                format: "Avro single-object"
            }),
            "{n} bytes"
        );
    }
    let confluent = c.encode_confluent(1, &event());
    for n in 1..5 {
        assert_eq!(
            c.decode(&confluent[..n]),
            Err(DecodeError::TruncatedHeader {
                format: "Confluent"
            }),
            "{n} bytes"
        );
    }
    assert_eq!(
        DecodeError::TruncatedHeader {
            format: "Confluent"
        }
        .code(),
        "truncated_header"
    );
}

#[test]
fn unknown_fingerprint_and_schema_id() {
    let c = Codec::new();
    let mut bytes = c.encode_single_object(&event());
    bytes[2..10].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
    assert_eq!(
        c.decode(&bytes),
        Err(DecodeError::UnknownFingerprint {
            fingerprint: 0x0123_4567_89ab_cdef
        })
    );
    let bytes = c.encode_confluent(99, &event());
    assert_eq!(
        c.decode(&bytes),
        Err(DecodeError::UnknownSchemaId { id: 99 })
    );
    assert_eq!(
        DecodeError::UnknownSchemaId { id: 99 }.code(),
        "unknown_schema"
    );
    assert_eq!(
        DecodeError::UnknownFingerprint { fingerprint: 1 }.code(),
        "unknown_schema"
    );
}

#[test]
fn truncated_avro_body() {
    let c = Codec::new();
    let single = c.encode_single_object(&event());
    // Header only (empty datum), then every other truncation.
    for n in 10..single.len() {
        let msg = avro(c.decode(&single[..n]));
        assert!(msg.contains("truncated"), "{n} bytes: {msg}");
        assert!(
            matches!(
                c.decode_datum_generic(&single[10..n]),
                Err(DecodeError::Avro(_))
            ),
            "generic, {n} bytes"
        );
    }
    let confluent = c.encode_confluent(1, &event());
    assert!(avro(c.decode(&confluent[..confluent.len() - 1])).contains("truncated"));
    assert_eq!(DecodeError::Avro(String::new()).code(), "invalid_avro");
}

#[test]
fn malformed_avro_body() {
    let c = Codec::new();
    let good = c.encode_single_object(&event());

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(avro(c.decode(&trailing)).contains("trailing"));

    // sessionId's union branch (after the three ids) set to 2: out of range.
    let session_branch = 10 + 3 + 2 + 2;
    assert_eq!(good[session_branch], 0);
    let mut bad_union = good.clone();
    bad_union[session_branch] = 4;
    assert!(avro(c.decode(&bad_union)).contains("union branch 2"));

    // A negative string length.
    let mut negative = good.clone();
    negative[10] = 0x03;
    assert!(avro(c.decode(&negative)).contains("negative length"));

    // isConversion is the byte before revenueMinor/currency branches and the map end.
    let mut bad_bool = good.clone();
    let n = bad_bool.len();
    assert_eq!(&bad_bool[n - 4..], &[0, 0, 0, 0]);
    bad_bool[n - 4] = 7;
    assert!(avro(c.decode(&bad_bool)).contains("boolean"));

    // A map block claiming more entries than there are bytes.
    let mut huge_map = good.clone();
    huge_map.pop();
    huge_map.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0x0F]);
    assert!(avro(c.decode(&huge_map)).contains("truncated"));

    // A varint that never ends.
    let mut endless = good[..10].to_vec();
    endless.extend_from_slice(&[0xFF; 11]);
    assert!(avro(c.decode(&endless)).contains("varint"));
}

#[test]
fn invalid_utf8() {
    let c = Codec::new();
    // Avro: eventId "e1" -> "e\xff".
    let mut single = c.encode_single_object(&event());
    assert_eq!(&single[10..13], &[0x04, b'e', b'1']);
    single[12] = 0xFF;
    assert_eq!(c.decode(&single), Err(DecodeError::InvalidUtf8));
    assert_eq!(
        c.decode_datum_generic(&single[10..]),
        Err(DecodeError::InvalidUtf8)
    );
    // Also inside a property value.
    let mut e = event();
    e.properties.insert("k".into(), "vv".into());
    let mut bytes = c.encode_confluent(1, &e);
    let n = bytes.len();
    bytes[n - 2] = 0xC0;
    assert_eq!(c.decode(&bytes), Err(DecodeError::InvalidUtf8));
    // JSON: a raw invalid byte inside a string.
    assert_eq!(
        c.decode(b"{\"eventId\":\"e\xff\"}"),
        Err(DecodeError::InvalidUtf8)
    );
    assert_eq!(DecodeError::InvalidUtf8.code(), "invalid_utf8");
}

#[test]
fn bad_json() {
    let c = Codec::new();
    for bad in [
        &b"{"[..],
        b"{\"eventId\":}",
        b"{\"timestamp\":\"yesterday\"}",
        b"{\"eventId\":\"e\"} trailing",
        b"{\"properties\":{\"k\":1}}",
    ] {
        assert!(
            matches!(c.decode(bad), Err(DecodeError::Json(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(DecodeError::Json(String::new()).code(), "invalid_json");
}

#[test]
fn errors_become_dead_letter_reasons() {
    let reason = RejectReason::from(DecodeError::InvalidUtf8);
    assert_eq!(reason.code(), "invalid_utf8");
    assert_eq!(
        reason.to_string(),
        "cannot decode: invalid UTF-8 in a string"
    );
}
