//! Rough decode/encode throughput, printed. Not a pass/fail test:
//! `cargo test --release -p funnelfold-core --test codec_throughput -- --ignored --nocapture`

use std::hint::black_box;
use std::time::Instant;

use funnelfold_core::codec::{Codec, ProjectionCodec};
use funnelfold_core::{Channel, RawEvent, SessionRow};

const N: usize = 100_000;

/// Events shaped like real browser traffic: ids, a url with a utm query, referrer, title,
/// user agent, a couple of properties.
fn realistic(i: usize) -> RawEvent {
    RawEvent {
        event_id: format!("01J9Z8K2M3N4P5Q6R7S8{i:06}"),
        funnel_id: "shop-eu-west".into(),
        anonymous_id: format!("anon-{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 50_000),
        session_id: (i % 3 == 0).then(|| format!("sess-{}", i / 10)),
        user_id: None,
        event_name: if i % 5 == 0 { "add_to_cart".into() } else { "page_view".into() },
        timestamp: 1_750_000_000_000 + i as i64 * 37,
        received_at: Some(1_750_000_000_250 + i as i64 * 37),
        url: Some(format!(
            "https://shop.example.com/products/item-{}?utm_source=newsletter&utm_medium=email&utm_campaign=summer_sale_2025&utm_content=hero_banner",
            i % 997
        )),
        referrer: Some("https://www.google.com/search?q=running+shoes".into()),
        title: Some("Trail Running Shoes — Example Shop".into()),
        utm_source: None,
        utm_medium: None,
        utm_campaign: None,
        utm_term: None,
        utm_content: None,
        user_agent: Some(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
                .into(),
        ),
        country: Some("DE".into()),
        ip: Some("203.0.113.7".into()),
        is_conversion: i % 50 == 0,
        revenue_minor: (i % 50 == 0).then_some(4999),
        currency: (i % 50 == 0).then(|| "EUR".into()),
        properties: [("plan".to_string(), "free".to_string()), ("ab_variant".to_string(), "B".to_string())].into(),
    }
}

fn rate(label: &str, n: usize, f: impl FnOnce()) {
    let t = Instant::now();
    f();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{label:<44} {:>10.0} records/s ({:.0} ns each)",
        n as f64 / secs,
        secs * 1e9 / n as f64
    );
}

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn decode_throughput() {
    let codec = Codec::new();
    let events: Vec<RawEvent> = (0..N).map(realistic).collect();
    let single: Vec<Vec<u8>> = events
        .iter()
        .map(|e| codec.encode_single_object(e))
        .collect();
    let json: Vec<Vec<u8>> = events.iter().map(Codec::encode_json).collect();
    let avg = single.iter().map(Vec::len).sum::<usize>() / N;
    println!(
        "average single-object record: {avg} bytes; JSON: {} bytes",
        json.iter().map(Vec::len).sum::<usize>() / N
    );

    for _ in 0..2 {
        rate("decode single-object (fast path)", N, || {
            for b in &single {
                black_box(codec.decode(black_box(b)).expect("decodes"));
            }
        });
        rate("decode datum via apache-avro Value+from_value", N, || {
            for b in &single {
                black_box(
                    codec
                        .decode_datum_generic(black_box(&b[10..]))
                        .expect("decodes"),
                );
            }
        });
        rate("decode JSON", N, || {
            for b in &json {
                black_box(codec.decode(black_box(b)).expect("decodes"));
            }
        });
        rate("encode single-object", N, || {
            for e in &events {
                black_box(codec.encode_single_object(black_box(e)));
            }
        });
    }

    let p = ProjectionCodec::new();
    let row = SessionRow {
        funnel_id: "shop-eu-west".into(),
        anonymous_id: "anon-0123456789abcdef".into(),
        session_id: "auto-01J9Z8K2M3N4P5Q6R7S8000001".into(),
        started_at: 1_750_000_000_000,
        last_event_at: 1_750_000_060_000,
        duration_ms: 60_000,
        landing_page: Some("/products/item-1".into()),
        exit_page: Some("/checkout".into()),
        events: 7,
        pageviews: 5,
        bounce: false,
        converted: true,
        conversions: 1,
        revenue: [("EUR".to_string(), 4999)].into(),
        source: "newsletter".into(),
        medium: "email".into(),
        campaign: "summer_sale_2025".into(),
        channel: Channel::Email,
        device_type: "mobile".into(),
        browser: "Safari".into(),
        os: "iOS".into(),
        country: Some("DE".into()),
    };
    rate("encode session row", N, || {
        for _ in 0..N {
            black_box(p.encode_session(black_box(&row)));
        }
    });
}
