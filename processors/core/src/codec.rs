//! Decoding and encoding of the raw event: Avro single-object encoding, the Confluent
//! wire format (schema ids resolved against locally known schemas), and JSON.
//! (Helper-owned: being filled in.)

use crate::event::RawEvent;

/// Why bytes could not be decoded into a [`RawEvent`].
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
            DecodeError::Avro(_) => "invalid_avro",
            DecodeError::InvalidUtf8 => "invalid_utf8",
            DecodeError::Json(_) => "invalid_json",
        }
    }
}

/// Placeholder until the codec lands.
pub fn decode_json(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))
}
