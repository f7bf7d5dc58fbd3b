//! What identifies the log a partition's offsets count in.
//!
//! An offset means something only within one log. A topic deleted and created again
//! under the same name, or the embedded broker of `funnelfold up` started again,
//! counts from 0 anew; a store checkpoint of the old log would then skip records that
//! were never folded. Kafka names each topic instance with a topic id (KIP-516): a
//! random UUID given when the topic is created, which librdkafka's mock cluster gives
//! too (a new one at every start). Where a broker gives none (an all-zero id), the
//! cluster id and the topic name are what is left to tell logs apart; the other checks
//! at assignment (a checkpoint beyond the partition's end, a group ahead of the store)
//! then catch a log that started again.
//!
//! rust-rdkafka exposes topic ids nowhere (its metadata and admin types have no id), so
//! they are read with librdkafka's `DescribeTopics` admin call, through its C API.
//! librdkafka's mock cluster, the embedded broker, does not answer that call (it times
//! out), so the embedded broker names itself instead: it creates a marker topic whose
//! name carries an id drawn when it starts.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The name of the topic by which the embedded broker says which instance it is
/// (`<prefix><instance id>`): librdkafka's mock cluster answers no `DescribeTopics`
/// and has no settable cluster id, and a topic is what every Kafka client can see.
pub const EMBEDDED_MARKER: &str = "__funnelfold.embedded.";

/// The log identity of a topic of the embedded broker instance `instance`.
pub fn embedded_log(instance: &str, topic: &str) -> String {
    format!("embedded:{instance}/{topic}")
}

/// The log identity of each topic asked for: `embedded:<instance>/<topic>` on the
/// embedded broker (see [`EMBEDDED_MARKER`]), `topic-id:<base64 UUID>` where the broker
/// gives a topic id, else `cluster:<cluster id>/<topic>`. A topic the broker does not
/// know is an error.
pub fn topic_logs<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, String>, KafkaError> {
    let metadata = client.fetch_metadata(None, timeout)?;
    if let Some(instance) = metadata
        .topics()
        .iter()
        .find_map(|t| t.name().strip_prefix(EMBEDDED_MARKER))
    {
        return Ok(topics
            .iter()
            .map(|t| ((*t).to_owned(), embedded_log(instance, t)))
            .collect());
    }
    let ids = match describe_topic_ids(client, topics, timeout) {
        Ok(ids) => ids,
        // A broker that cannot describe topics by id (an older Kafka, or a
        // Kafka-compatible broker without KIP-516) is named by its cluster id below.
        Err(e) => {
            tracing::warn!(error = %e, "the brokers did not give topic ids; naming logs by cluster id and topic");
            HashMap::new()
        }
    };
    let mut cluster: Option<String> = None;
    let mut out = HashMap::with_capacity(topics.len());
    for topic in topics {
        let log = match ids.get(*topic) {
            Some(Some(id)) => format!("topic-id:{id}"),
            _ => {
                let cluster = match &cluster {
                    Some(c) => c.clone(),
                    None => {
                        let c = client
                            .fetch_cluster_id(timeout)
                            .unwrap_or_else(|| "unknown".into());
                        cluster = Some(c.clone());
                        c
                    }
                };
                format!("cluster:{cluster}/{topic}")
            }
        };
        out.insert((*topic).to_owned(), log);
    }
    Ok(out)
}

/// Frees a librdkafka object when dropped.
struct Owned<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Drop for Owned<T> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` came from the librdkafka constructor that `free` belongs
            // to, is owned by this guard alone, and is freed once, here.
            unsafe { (self.free)(self.ptr) }
        }
    }
}

/// Each topic's id (`None` where the broker gave an all-zero one), by librdkafka's
/// `DescribeTopics`. A broker too old for it answers with an error, which is returned.
#[allow(unsafe_code)]
fn describe_topic_ids<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, Option<String>>, KafkaError> {
    let fail = |code: RDKafkaErrorCode| KafkaError::AdminOp(code);
    let names: Vec<CString> = topics
        .iter()
        .map(|t| CString::new(*t).map_err(|_| fail(RDKafkaErrorCode::InvalidArgument)))
        .collect::<Result<_, _>>()?;
    let mut name_ptrs: Vec<*const std::os::raw::c_char> =
        names.iter().map(|n| n.as_ptr()).collect();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = client.native_ptr();
    // SAFETY: every call below follows librdkafka's documented admin API contract:
    // `rk` is the live handle of `client`, borrowed for the whole function; each
    // object created here is freed by its guard (after every pointer into it is last
    // used: guards drop in reverse order, and the topic descriptions read from the
    // event live as long as the event); strings read from librdkafka are copied before
    // their owner is freed; and `names` outlives the collection built from it, which
    // copies them anyway.
    unsafe {
        let queue = Owned {
            ptr: rd::rd_kafka_queue_new(rk),
            free: rd::rd_kafka_queue_destroy,
        };
        let options = Owned {
            ptr: rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            ),
            free: rd::rd_kafka_AdminOptions_destroy,
        };
        let collection = Owned {
            ptr: rd::rd_kafka_TopicCollection_of_topic_names(
                name_ptrs.as_mut_ptr(),
                name_ptrs.len(),
            ),
            free: rd::rd_kafka_TopicCollection_destroy,
        };
        if queue.ptr.is_null() || options.ptr.is_null() || collection.ptr.is_null() {
            return Err(fail(RDKafkaErrorCode::Fail));
        }
        let mut errstr = [0 as std::os::raw::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.ptr,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rd::rd_kafka_DescribeTopics(rk, collection.ptr, options.ptr, queue.ptr);
        // The call times out by itself (the request timeout above); a little more here
        // lets its answer arrive.
        let event = Owned {
            ptr: rd::rd_kafka_queue_poll(queue.ptr, timeout_ms.saturating_add(1_000)),
            free: rd::rd_kafka_event_destroy,
        };
        if event.ptr.is_null() {
            return Err(KafkaError::AdminOp(RDKafkaErrorCode::OperationTimedOut));
        }
        let err = rd::rd_kafka_event_error(event.ptr);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(fail(err.into()));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(event.ptr);
        if result.is_null() {
            return Err(fail(RDKafkaErrorCode::Fail));
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        let mut ids = HashMap::with_capacity(count);
        for i in 0..count {
            let description = *descriptions.add(i);
            let error = rd::rd_kafka_TopicDescription_error(description);
            if !error.is_null() {
                let code = rd::rd_kafka_error_code(error);
                if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    return Err(fail(code.into()));
                }
            }
            let name = CStr::from_ptr(rd::rd_kafka_TopicDescription_name(description))
                .to_string_lossy()
                .into_owned();
            let uuid = rd::rd_kafka_TopicDescription_topic_id(description);
            let id = (!uuid.is_null()
                && (rd::rd_kafka_Uuid_most_significant_bits(uuid) != 0
                    || rd::rd_kafka_Uuid_least_significant_bits(uuid) != 0))
                .then(|| {
                    CStr::from_ptr(rd::rd_kafka_Uuid_base64str(uuid))
                        .to_string_lossy()
                        .into_owned()
                });
            ids.insert(name, id);
        }
        drop(event);
        drop(collection);
        drop(options);
        drop(queue);
        Ok(ids)
    }
}
