//! An optional Confluent-compatible schema registry, for records in the Confluent wire
//! format (`00` + a 4-byte schema id) whose id the processor does not know.
//!
//! SDKs that serialize through a registry write whatever id the registry assigned to
//! their schema version, so those ids cannot be compiled in. An unknown id is fetched
//! once (`GET {url}/schemas/ids/{id}`, the registry's documented REST API), checked to
//! resolve against the current reader schema, and kept in the codec for the life of
//! the process. What the answer means for the record:
//! - a schema that resolves: registered under the id; the record folds;
//! - a schema that does not resolve (or is not Avro): the id is refused, and its
//!   records are dead-lettered as `unresolvable_schema` with the reason;
//! - 404, the registry does not know the id: the record is dead-lettered as
//!   `unknown_schema`; the id is asked again after [`NOT_FOUND_TTL`], so a flood of
//!   such records costs one request a minute, not one each;
//! - the registry cannot be reached, times out, or answers an error other than 404
//!   (5xx, or 401/403 from a misconfigured credential): transient. The caller retries
//!   the record with backoff and does not commit past it, since the record is not at
//!   fault.
//!
//! The lookups block: they run on the folding thread, once per new id, which is rare
//! next to the records themselves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use funnelfold_core::codec::Codec;
use serde::Deserialize;

/// How long a registry's "not found" is believed before the id is asked again.
pub const NOT_FOUND_TTL: Duration = Duration::from_secs(60);
/// Upper bound on one lookup, so a hung registry is a retried failure, not a stall.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The registry could not answer; the record must be retried, not dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema registry {url} could not answer for schema id {id}: {reason}")]
pub struct RegistryUnavailable {
    pub url: String,
    pub id: u32,
    pub reason: String,
}

/// What the registry answered for an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An Avro schema's text.
    Avro(String),
    /// A schema of another type (PROTOBUF, JSON): never readable as an Avro record.
    NotAvro(String),
    /// The registry does not know the id.
    NotFound,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaById {
    schema: String,
    /// Absent for Avro, by the registry's convention.
    schema_type: Option<String>,
}

/// A registry client with the cache of what it was told.
pub struct SchemaRegistry {
    url: String,
    agent: ureq::Agent,
    not_found: HashMap<u32, Instant>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.url)
            .finish()
    }
}

impl SchemaRegistry {
    /// A client of the registry at `url` (`http://host:port`, optionally with a path
    /// prefix). This build has no TLS, so `https://` is refused here rather than on
    /// the first record.
    pub fn new(url: &str) -> Result<SchemaRegistry, String> {
        let url = url.trim_end_matches('/');
        if !url.starts_with("http://") {
            return Err(format!(
                "schema registry URL {url:?} must start with http:// (this build has no TLS)"
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(LOOKUP_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(SchemaRegistry {
            url: url.to_string(),
            agent,
            not_found: HashMap::new(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks the registry for the schema of `id`.
    pub fn lookup(&self, id: u32) -> Result<Lookup, RegistryUnavailable> {
        let unavailable = |reason: String| RegistryUnavailable {
            url: self.url.clone(),
            id,
            reason,
        };
        let mut response = self
            .agent
            .get(format!("{}/schemas/ids/{id}", self.url))
            .header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            )
            .call()
            .map_err(|e| unavailable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| unavailable(format!("reading the answer: {e}")))?;
        match status {
            200 => {}
            404 => return Ok(Lookup::NotFound),
            _ => return Err(unavailable(format!("HTTP {status}: {}", first_line(&body)))),
        }
        let answer: SchemaById = serde_json::from_str(&body).map_err(|e| {
            unavailable(format!(
                "an answer that is not a schema ({e}): {}",
                first_line(&body)
            ))
        })?;
        Ok(match answer.schema_type.as_deref() {
            None | Some("AVRO") => Lookup::Avro(answer.schema),
            Some(other) => Lookup::NotAvro(other.to_string()),
        })
    }

    /// Makes `codec` able to answer for records with schema id `id`: registers the
    /// registry's schema, or refuses the id, or (not found) leaves it unknown so the
    /// record is dead-lettered as `unknown_schema`. Asks the registry only when the
    /// codec has no answer yet and no recent "not found" is cached.
    pub fn resolve(&mut self, codec: &mut Codec, id: u32) -> Result<(), RegistryUnavailable> {
        if codec.knows_schema_id(id) {
            return Ok(());
        }
        if let Some(at) = self.not_found.get(&id) {
            if at.elapsed() < NOT_FOUND_TTL {
                return Ok(());
            }
        }
        match self.lookup(id)? {
            Lookup::Avro(schema) => {
                self.not_found.remove(&id);
                if let Err(e) = codec.register_writer_schema(Some(id), &schema) {
                    codec.refuse_schema_id(id, &format!("{e} (from {})", self.url));
                }
            }
            Lookup::NotAvro(kind) => {
                codec.refuse_schema_id(id, &format!("a {kind} schema in {}, not Avro", self.url));
            }
            Lookup::NotFound => {
                self.not_found.insert(id, Instant::now());
            }
        }
        Ok(())
    }
}

/// The start of an error body, for messages: registries answer JSON, proxies HTML.
fn first_line(body: &str) -> &str {
    let line = body.lines().next().unwrap_or("");
    match line.char_indices().nth(200) {
        Some((cut, _)) => &line[..cut],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A registry speaking the REST API's `GET /schemas/ids/{id}`, counting requests.
    struct FakeRegistry {
        url: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    fn registry(answers: Vec<(&'static str, u16, String)>) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Headers, up to the blank line.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                seen.lock().expect("lock").push(path.clone());
                let (status, body) = answers
                    .iter()
                    .find(|(p, _, _)| *p == path)
                    .map(|(_, s, b)| (*s, b.clone()))
                    .unwrap_or((
                        404,
                        r#"{"error_code":40403,"message":"Schema not found"}"#.into(),
                    ));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeRegistry { url, requests }
    }

    fn answer(schema: &str, schema_type: Option<&str>) -> String {
        let mut v = serde_json::json!({ "schema": schema });
        if let Some(t) = schema_type {
            v["schemaType"] = t.into();
        }
        v.to_string()
    }

    fn record(id: u32, codec: &Codec) -> Vec<u8> {
        let event = funnelfold_core::RawEvent {
            event_id: "e-1".into(),
            funnel_id: "f".into(),
            anonymous_id: "a".into(),
            event_name: "page_view".into(),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        };
        codec.encode_confluent(id, &event)
    }

    #[test]
    fn a_known_schema_is_fetched_once_and_folds() {
        let fake = registry(vec![(
            "/schemas/ids/7",
            200,
            answer(funnelfold_core::codec::RAW_EVENT_SCHEMA, None),
        )]);
        let mut reg = SchemaRegistry::new(&fake.url).expect("url");
        let mut codec = Codec::new();
        let bytes = record(7, &codec);
        assert!(codec.decode(&bytes).is_err(), "unknown before the lookup");
        reg.resolve(&mut codec, 7).expect("resolves");
        reg.resolve(&mut codec, 7).expect("cached");
        assert_eq!(codec.decode(&bytes).expect("folds").event_id, "e-1");
        assert_eq!(*fake.requests.lock().expect("lock"), vec!["/schemas/ids/7"]);
    }

    #[test]
    fn an_unknown_id_stays_unknown_and_is_not_asked_again_at_once() {
        let fake = registry(vec![]);
        let mut reg = SchemaRegistry::new(&format!("{}/", fake.url)).expect("url");
        let mut codec = Codec::new();
        reg.resolve(&mut codec, 9).expect("answered");
        reg.resolve(&mut codec, 9).expect("answered");
        let err = codec.decode(&record(9, &codec)).expect_err("unknown");
        assert_eq!(err.code(), "unknown_schema");
        assert_eq!(fake.requests.lock().expect("lock").len(), 1);
    }

    #[test]
    fn a_schema_that_does_not_resolve_or_is_not_avro_is_refused_with_the_reason() {
        let incompatible = funnelfold_core::codec::RAW_EVENT_SCHEMA.replacen(
            r#""name": "eventId", "type": "string","#,
            r#""name": "eventId", "type": "int","#,
            1,
        );
        let fake = registry(vec![
            ("/schemas/ids/3", 200, answer(&incompatible, Some("AVRO"))),
            (
                "/schemas/ids/4",
                200,
                answer("syntax = \"proto3\";", Some("PROTOBUF")),
            ),
        ]);
        let mut reg = SchemaRegistry::new(&fake.url).expect("url");
        let mut codec = Codec::new();
        for (id, needle) in [(3, "eventId"), (4, "PROTOBUF")] {
            reg.resolve(&mut codec, id).expect("answered");
            let err = codec.decode(&record(id, &codec)).expect_err("refused");
            assert_eq!(err.code(), "unresolvable_schema", "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn a_registry_that_is_down_or_failing_is_transient_and_named() {
        // Nothing listens on this port once the listener is dropped.
        let url = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let mut codec = Codec::new();
        let err = SchemaRegistry::new(&url)
            .expect("url")
            .resolve(&mut codec, 5)
            .expect_err("down");
        assert!(err.to_string().contains(&url), "{err}");
        assert!(!codec.knows_schema_id(5), "no answer is cached");

        let fake = registry(vec![(
            "/schemas/ids/5",
            500,
            r#"{"error_code":50001,"message":"Error in the backend data store"}"#.into(),
        )]);
        let err = SchemaRegistry::new(&fake.url)
            .expect("url")
            .resolve(&mut codec, 5)
            .expect_err("5xx");
        assert!(err.reason.contains("HTTP 500"), "{err}");
        assert!(!codec.knows_schema_id(5));
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        let err = SchemaRegistry::new("https://registry.example").expect_err("no TLS");
        assert!(err.contains("http://"), "{err}");
    }
}
