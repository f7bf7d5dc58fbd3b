//! The fast path: the built-in RawEvent schema, encoded and decoded field by field,
//! in schema order, straight between the byte slice and a [`RawEvent`] (see the
//! module doc of `codec` for why it exists beside the generic path).

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn encoded_size_hint(e: &RawEvent) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(1, |s| s.len() + 3);
    64 + e.event_id.len()
        + e.funnel_id.len()
        + e.anonymous_id.len()
        + e.event_name.len()
        + opt(&e.url)
        + opt(&e.referrer)
        + opt(&e.title)
        + opt(&e.user_agent)
        + e.properties
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
}

/// Writes `e` as an Avro datum of the built-in RawEvent schema.
pub(super) fn encode_raw_event_datum(e: &RawEvent, out: &mut Vec<u8>) {
    put_str(out, &e.event_id);
    put_str(out, &e.funnel_id);
    put_str(out, &e.anonymous_id);
    put_opt_str(out, e.session_id.as_deref());
    put_opt_str(out, e.user_id.as_deref());
    put_str(out, &e.event_name);
    put_long(out, e.timestamp);
    put_opt_long(out, e.received_at);
    put_opt_str(out, e.url.as_deref());
    put_opt_str(out, e.referrer.as_deref());
    put_opt_str(out, e.title.as_deref());
    put_opt_str(out, e.utm_source.as_deref());
    put_opt_str(out, e.utm_medium.as_deref());
    put_opt_str(out, e.utm_campaign.as_deref());
    put_opt_str(out, e.utm_term.as_deref());
    put_opt_str(out, e.utm_content.as_deref());
    put_opt_str(out, e.user_agent.as_deref());
    put_opt_str(out, e.country.as_deref());
    put_opt_str(out, e.ip.as_deref());
    put_bool(out, e.is_conversion);
    put_opt_long(out, e.revenue_minor);
    put_opt_str(out, e.currency.as_deref());
    put_map(out, &e.properties, |out, v| put_str(out, v));
}

/// Reads an Avro datum of the built-in RawEvent schema. Must mirror
/// [`encode_raw_event_datum`] and `schemas/raw_event.avsc` exactly; a property test checks
/// it against `apache-avro`'s generic decoding.
pub(super) fn decode_raw_event_datum(datum: &[u8]) -> Result<RawEvent, DecodeError> {
    let mut r = Input::new(datum);
    let e = RawEvent {
        event_id: r.string()?,
        funnel_id: r.string()?,
        anonymous_id: r.string()?,
        session_id: r.opt_string()?,
        user_id: r.opt_string()?,
        event_name: r.string()?,
        timestamp: r.long()?,
        received_at: r.opt_long()?,
        url: r.opt_string()?,
        referrer: r.opt_string()?,
        title: r.opt_string()?,
        utm_source: r.opt_string()?,
        utm_medium: r.opt_string()?,
        utm_campaign: r.opt_string()?,
        utm_term: r.opt_string()?,
        utm_content: r.opt_string()?,
        user_agent: r.opt_string()?,
        country: r.opt_string()?,
        ip: r.opt_string()?,
        is_conversion: r.boolean()?,
        revenue_minor: r.opt_long()?,
        currency: r.opt_string()?,
        properties: {
            let mut props = BTreeMap::new();
            loop {
                // An entry is at least a key length and a value length.
                let n = r.block_count(2)?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let k = r.string()?;
                    let v = r.string()?;
                    // A repeated key keeps its last value, as apache-avro does.
                    props.insert(k, v);
                }
            }
            props
        },
    };
    r.end()?;
    Ok(e)
}
