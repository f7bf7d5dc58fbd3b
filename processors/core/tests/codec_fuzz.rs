//! Property tests: the decoder never panics on arbitrary, truncated or mutated bytes, and
//! the hand-written fast path agrees with `apache-avro`'s generic path on random events.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use apache_avro::{GenericSingleObjectWriter, Schema};
use funnelfold_core::codec::{Codec, ProjectionCodec, RAW_EVENT_SCHEMA};
use funnelfold_core::RawEvent;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_-]{0,12}",
        any::<String>(),
        "https://[a-z]{1,8}\\.example/[a-z/]{0,20}\\?utm_source=[a-z]{1,8}&gclid=[A-Za-z0-9]{0,10}",
    ]
}

fn raw_event() -> impl Strategy<Value = RawEvent> {
    let ids = (
        text(),
        text(),
        text(),
        option::of(text()),
        option::of(text()),
        text(),
    );
    let times = (any::<i64>(), option::of(any::<i64>()));
    let page = (option::of(text()), option::of(text()), option::of(text()));
    let utm = (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(text()),
    );
    let client = (
        option::of(text()),
        option::of("[A-Z]{2}"),
        option::of(text()),
    );
    let money = (
        any::<bool>(),
        option::of(any::<i64>()),
        option::of("[A-Z]{3}"),
    );
    let props = btree_map(text(), text(), 0..6);
    (ids, times, page, utm, client, money, props).prop_map(
        |(
            (event_id, funnel_id, anonymous_id, session_id, user_id, event_name),
            (timestamp, received_at),
            (url, referrer, title),
            (utm_source, utm_medium, utm_campaign, utm_term, utm_content),
            (user_agent, country, ip),
            (is_conversion, revenue_minor, currency),
            properties,
        )| RawEvent {
            event_id,
            funnel_id,
            anonymous_id,
            session_id,
            user_id,
            event_name,
            timestamp,
            received_at,
            url,
            referrer,
            title,
            utm_source,
            utm_medium,
            utm_campaign,
            utm_term,
            utm_content,
            user_agent,
            country,
            ip,
            is_conversion,
            revenue_minor,
            currency,
            properties,
        },
    )
}

/// A mutation of a valid encoding: flip, overwrite, insert or remove bytes, or truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Xor(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len().max(1);
    match *m {
        Mutation::Set(i, b) if !bytes.is_empty() => bytes[i % n] = b,
        Mutation::Xor(i, b) if !bytes.is_empty() => bytes[i % n] ^= b,
        Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
        Mutation::Remove(i) if !bytes.is_empty() => {
            bytes.remove(i % n);
        }
        Mutation::Truncate(i) => bytes.truncate(i % n),
        _ => {}
    }
}

/// Built once: parsing and checking schemas per case would dominate the run time.
static CODEC: LazyLock<Codec> = LazyLock::new(|| {
    let mut c = Codec::new();
    // Exercise the generic path too: id 7 is a different (older) writer schema.
    c.register_writer_schema(Some(7), include_str!("fixtures/raw_event_v0.avsc"))
        .expect("v0");
    c
});
static PROJECTIONS: LazyLock<ProjectionCodec> = LazyLock::new(ProjectionCodec::new);

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300), prefix in 0..4usize) {
        let c = &*CODEC;
        let mut input = match prefix {
            0 => vec![0xC3, 0x01],
            1 => vec![0, 0, 0, 0, 7],
            2 => vec![0, 0, 0, 0, 1],
            _ => vec![],
        };
        if prefix == 0 {
            input.extend(c.current_fingerprint().to_le_bytes());
        }
        input.extend(bytes);
        let _ = c.decode(&input);
        let _ = c.decode_datum_generic(&input);
        let p = &*PROJECTIONS;
        let _ = p.decode_profile(&input);
        let _ = p.decode_session(&input);
        let _ = p.decode_traffic(&input);
        let _ = p.decode_event_row(&input);
    }

    #[test]
    fn mutated_encodings_never_panic(e in raw_event(), format in 0..4u8, muts in vec(mutation(), 1..4)) {
        let c = &*CODEC;
        let mut bytes = match format {
            0 => c.encode_single_object(&e),
            1 => c.encode_confluent(1, &e),
            2 => c.encode_confluent(7, &e), // current layout read as v0: garbage by design
            _ => Codec::encode_json(&e),
        };
        for m in &muts {
            apply(&mut bytes, m);
        }
        let fast = c.decode(&bytes);
        // Whatever the outcome, the generic path on the same datum must not panic either,
        // and where both accept a single-object datum they must agree.
        if format == 0 && bytes.len() >= 10 {
            let generic = c.decode_datum_generic(&bytes[10..]);
            if let (Ok(a), Ok(b)) = (&fast, &generic) {
                prop_assert_eq!(a, b);
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn truncations_are_errors(e in raw_event(), cut in any::<usize>()) {
        let c = &*CODEC;
        let bytes = c.encode_single_object(&e);
        let cut = cut % bytes.len();
        prop_assert!(c.decode(&bytes[..cut]).is_err());
        if cut >= 10 {
            prop_assert!(c.decode_datum_generic(&bytes[10..cut]).is_err());
        }
    }

    #[test]
    fn round_trips_in_every_encoding(e in raw_event()) {
        let c = &*CODEC;
        prop_assert_eq!(c.decode(&c.encode_single_object(&e)), Ok(e.clone()));
        prop_assert_eq!(c.decode(&c.encode_confluent(1, &e)), Ok(e.clone()));
        prop_assert_eq!(c.decode(&Codec::encode_json(&e)), Ok(e));
    }

    /// The fast path against the generic path (structural check + apache-avro +
    /// from_value), both on our encoding and on apache-avro's.
    #[test]
    fn fast_and_generic_paths_agree(e in raw_event()) {
        let c = &*CODEC;
        let ours = c.encode_single_object(&e);
        prop_assert_eq!(c.decode_datum_generic(&ours[10..]), Ok(e.clone()));

        let schema = Schema::parse_str(RAW_EVENT_SCHEMA).expect("schema");
        let mut theirs = Vec::new();
        GenericSingleObjectWriter::new_with_capacity(&schema, 1024)
            .expect("writer")
            .write_value(apache_avro::to_value(&e).expect("to_value"), &mut theirs)
            .expect("write");
        prop_assert_eq!(c.decode(&theirs), Ok(e.clone()));
        prop_assert_eq!(c.decode_datum_generic(&theirs[10..]), Ok(e.clone()));
        if e.properties.len() <= 1 {
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn json_with_arbitrary_text_never_panics(s in any::<String>()) {
        let c = &*CODEC;
        let _ = c.decode(format!("{{{s}").as_bytes());
        let _ = c.decode(format!("{{\"eventId\": {s:?}, \"properties\": {{{s:?}: {s:?}}}}}").as_bytes());
    }
}

#[test]
fn properties_map_with_many_entries() {
    let c = Codec::new();
    let e = RawEvent {
        properties: (0..1000)
            .map(|i| (format!("k{i}"), "v".repeat(i % 7)))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    };
    assert_eq!(c.decode(&c.encode_single_object(&e)), Ok(e));
}
