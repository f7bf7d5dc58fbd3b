//! The structural check of the generic path: a datum is walked against its writer
//! schema before `apache-avro` sees it, so that nothing a producer controls can make
//! that decoder mis-read, over-allocate or recurse without bound.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Walks `datum` as an instance of `schema` without building anything, and fails on
/// anything that `apache-avro` would either mis-decode or handle unsafely: truncation,
/// lengths beyond the data, invalid UTF-8, out-of-range union/enum indices, invalid
/// booleans, ints out of range, nesting deeper than [`MAX_DEPTH`], trailing bytes.
/// After it passes, `apache-avro` decodes the datum exactly.
pub(crate) fn check_datum(schema: &Schema, names: &Names, datum: &[u8]) -> Result<(), DecodeError> {
    let mut r = Input::new(datum);
    check(schema, names, None, &mut r, 0)?;
    r.end()
}

/// Bytes an instance of `schema` takes at least, used to bound block counts. Zero only
/// for `null` (and nothing else here is zero-sized that matters: a block count larger
/// than the remaining bytes is refused for every item type, see `block_count`).
pub(super) fn min_size(schema: &Schema) -> usize {
    match schema {
        Schema::Null => 0,
        Schema::Float => 4,
        Schema::Double => 8,
        Schema::Fixed(f) | Schema::Duration(f) => f.size,
        Schema::Uuid(UuidSchema::Fixed(f)) => f.size,
        _ => 1,
    }
}

pub(super) fn check(
    schema: &Schema,
    names: &Names,
    ns: NamespaceRef,
    r: &mut Input,
    depth: usize,
) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Avro(format!(
            "nesting deeper than {MAX_DEPTH} levels"
        )));
    }
    match schema {
        Schema::Null => Ok(()),
        Schema::Boolean => r.boolean().map(drop),
        Schema::Int | Schema::Date | Schema::TimeMillis => r.int().map(drop),
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => r.long().map(drop),
        Schema::Float => r.take(4).map(drop),
        Schema::Double => r.take(8).map(drop),
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => r.bytes().map(drop),
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Bytes => r.bytes().map(drop),
            InnerDecimalSchema::Fixed(f) => r.take(f.size).map(drop),
        },
        Schema::String | Schema::Uuid(UuidSchema::String) => r.str().map(drop),
        Schema::Fixed(f) | Schema::Uuid(UuidSchema::Fixed(f)) => r.take(f.size).map(drop),
        Schema::Duration(_) => r.take(12).map(drop),
        Schema::Enum(e) => {
            let pos = r.pos;
            let i = r.int()?;
            if usize::try_from(i).is_ok_and(|i| i < e.symbols.len()) {
                Ok(())
            } else {
                Err(DecodeError::Avro(format!(
                    "enum index {i} out of range at byte {pos}"
                )))
            }
        }
        Schema::Union(u) => {
            let variants = u.variants();
            let i = r.branch(variants.len())?;
            check(&variants[i], names, ns, r, depth + 1)
        }
        Schema::Array(a) => {
            let min = min_size(&a.items);
            loop {
                let n = r.block_count(min)?;
                if n == 0 {
                    return Ok(());
                }
                for _ in 0..n {
                    check(&a.items, names, ns, r, depth + 1)?;
                }
            }
        }
        Schema::Map(m) => {
            let min = 1 + min_size(&m.types);
            loop {
                let n = r.block_count(min)?;
                if n == 0 {
                    return Ok(());
                }
                for _ in 0..n {
                    r.str()?;
                    check(&m.types, names, ns, r, depth + 1)?;
                }
            }
        }
        Schema::Record(RecordSchema { name, fields, .. }) => {
            let fq = name.fully_qualified_name(ns);
            for field in fields {
                check(&field.schema, names, fq.namespace(), r, depth + 1)?;
            }
            Ok(())
        }
        Schema::Ref { name } => {
            let fq = name.fully_qualified_name(ns);
            let target: &Schema = names.get(fq.as_ref() as &Name).ok_or_else(|| {
                DecodeError::Avro(format!(
                    "schema refers to unknown type {}",
                    fq.fullname(None)
                ))
            })?;
            check(target, names, fq.namespace(), r, depth + 1)
        }
    }
}
