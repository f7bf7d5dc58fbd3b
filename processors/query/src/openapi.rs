//! The OpenAPI 3.1 document of the whole API, served at `/openapi.json`.
//!
//! Written by hand (a derive would need annotations on every type and a heavy
//! dependency); a test checks it against the route table and sends every documented
//! operation with its documented parameters to the real server.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::collector::{MAX_BODY_BYTES, MAX_EVENTS};
use crate::journeys::{
    DEFAULT_PATH_LINKS, DEFAULT_STEPS, DEFAULT_WEEKS, MAX_PATH_LINKS, MAX_STEPS, MAX_WEEKS,
};
use crate::overview::MAX_OVERVIEW_SESSIONS;
use crate::routes::{
    DEFAULT_PAGE, DEFAULT_TRAFFIC_ROWS, MAX_LOOKUP_IDS, MAX_PAGE, MAX_RANGE_DAYS, MAX_TRAFFIC_ROWS,
};

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": json_content(schema_ref("Error")) })
}

fn ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": json_content(schema) })
}

fn path_param(name: &str, description: &str, example: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string", "minLength": 1 }, "example": example })
}

fn query_param(name: &str, description: &str, schema: Value, example: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description,
            "schema": schema, "example": example })
}

fn funnel_param() -> Value {
    path_param("funnelId", "The funnel.", "demo")
}

fn time_param(name: &str, description: &str, example: &str) -> Value {
    query_param(
        name,
        &format!("{description} RFC 3339 date-time or epoch milliseconds."),
        json!({ "type": "string" }),
        json!(example),
    )
}

fn limit_param(default: usize, max: usize) -> Value {
    query_param(
        "limit",
        "How many rows to return.",
        json!({ "type": "integer", "minimum": 1, "maximum": max, "default": default }),
        json!(10),
    )
}

fn cursor_param() -> Value {
    json!({ "name": "cursor", "in": "query", "required": false,
            "description": "nextCursor of the previous page. It is bound to the route, the funnel and the filters: send the same filters with it (the time window is carried by the cursor).",
            "schema": { "type": "string" } })
}

/// The common error answers of a funnel read route.
fn read_errors(extra: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let mut responses = serde_json::Map::new();
    responses.insert(
        "400".into(),
        error_response("Bad request: unknown_parameter, duplicate_parameter, bad_limit, bad_time, bad_range, bad_cursor, bad_parameter, bad_path."),
    );
    responses.insert("401".into(), error_response("missing_key or invalid_key."));
    responses.insert(
        "403".into(),
        error_response("forbidden: the key does not grant reading this funnel."),
    );
    responses.insert(
        "503".into(),
        error_response("store_unavailable: retry later."),
    );
    for (status, description) in extra {
        responses.insert((*status).into(), error_response(description));
    }
    responses
}

fn with_ok(mut responses: serde_json::Map<String, Value>, ok_response: Value) -> Value {
    responses.insert("200".into(), ok_response);
    Value::Object(responses)
}

fn security() -> Value {
    json!([{ "bearer": [] }])
}

fn revenue_schema() -> Value {
    json!({
        "type": "object",
        "description": "Revenue per ISO 4217 currency, as an exact decimal string in major units (ISO 4217 minor-unit exponents: JPY 0, EUR 2, KWD 3...). Currencies are never added together.",
        "additionalProperties": { "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$" },
        "example": { "EUR": "129.90", "JPY": "1500" }
    })
}

fn schemas() -> Value {
    let mut schemas = serde_json::Map::new();
    schemas.insert("Error".into(), json!({
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "object", "required": ["code", "message"], "properties": {
                        "code": { "type": "string", "example": "bad_range" },
                        "message": { "type": "string" } } } }
                }));
    schemas.insert("Revenue".into(), revenue_schema());
    schemas.insert("Funnel".into(), json!({
                    "type": "object", "required": ["funnelId", "firstEventAt", "lastEventAt", "events", "visitors"],
                    "properties": {
                        "funnelId": { "type": "string" },
                        "firstEventAt": { "type": "integer", "description": "epoch ms of its oldest event" },
                        "lastEventAt": { "type": "integer", "description": "epoch ms of its newest event" },
                        "events": { "type": "integer", "description": "events folded" },
                        "visitors": { "type": "integer", "description": "distinct anonymous ids" }
                    }
                }));
    schemas.insert("Touch".into(), json!({
                    "type": "object", "required": ["source", "medium", "campaign", "channel"],
                    "properties": { "source": { "type": "string" }, "medium": { "type": "string" },
                        "campaign": { "type": "string" }, "channel": { "type": "string", "description": "GA4 default channel group" } }
                }));
    schemas.insert("Profile".into(), json!({
                    "type": "object",
                    "required": ["funnelId", "anonymousId", "displayName", "firstSeen", "lastSeen", "totalSessions", "totalEvents", "firstTouch", "conversions", "revenue", "deviceType", "browser", "os"],
                    "properties": {
                        "funnelId": { "type": "string" }, "anonymousId": { "type": "string" },
                        "displayName": { "type": "string", "example": "Fluffy Panda" },
                        "userId": { "type": ["string", "null"] },
                        "firstSeen": { "type": "integer", "description": "epoch ms" },
                        "lastSeen": { "type": "integer", "description": "epoch ms" },
                        "totalSessions": { "type": "integer" }, "totalEvents": { "type": "integer" },
                        "firstTouch": schema_ref("Touch"),
                        "lastNonDirect": { "oneOf": [schema_ref("Touch"), { "type": "null" }] },
                        "conversions": { "type": "integer" }, "revenue": schema_ref("Revenue"),
                        "deviceType": { "type": "string" }, "browser": { "type": "string" }, "os": { "type": "string" },
                        "country": { "type": ["string", "null"] }
                    }
                }));
    schemas.insert("Session".into(), json!({
                    "type": "object",
                    "properties": {
                        "funnelId": { "type": "string" }, "anonymousId": { "type": "string" }, "sessionId": { "type": "string" },
                        "displayName": { "type": "string", "description": "the visitor's name, as on its profile", "example": "Fluffy Panda" },
                        "startedAt": { "type": "integer" }, "lastEventAt": { "type": "integer" }, "durationMs": { "type": "integer" },
                        "landingPage": { "type": ["string", "null"] }, "exitPage": { "type": ["string", "null"] },
                        "events": { "type": "integer" }, "pageviews": { "type": "integer" },
                        "bounce": { "type": "boolean" }, "converted": { "type": "boolean" },
                        "conversions": { "type": "integer" }, "revenue": schema_ref("Revenue"),
                        "source": { "type": "string" }, "medium": { "type": "string" }, "campaign": { "type": "string" },
                        "channel": { "type": "string" }, "deviceType": { "type": "string" }, "browser": { "type": "string" },
                        "os": { "type": "string" }, "country": { "type": ["string", "null"] }
                    }
                }));
    schemas.insert("Event".into(), json!({
                    "type": "object",
                    "properties": {
                        "funnelId": { "type": "string" }, "eventId": { "type": "string" }, "anonymousId": { "type": "string" },
                        "displayName": { "type": "string", "description": "the visitor's name, as on its profile", "example": "Fluffy Panda" },
                        "sessionId": { "type": ["string", "null"] }, "eventName": { "type": "string" },
                        "timestamp": { "type": "integer" }, "path": { "type": ["string", "null"] },
                        "isConversion": { "type": "boolean" }, "revenue": schema_ref("Revenue"),
                        "isBot": { "type": "boolean", "description": "whether the user agent is a known crawler, bot, monitor or headless browser: such events are stored and listed (see bots=) but count in no session, traffic, path, retention or overview number" },
                        "source": { "type": "string", "description": "with include=session: the session's source" },
                        "medium": { "type": "string", "description": "with include=session: the session's medium" },
                        "deviceType": { "type": "string", "description": "with include=session: the session's device" }
                    }
                }));
    schemas.insert("TrafficSource".into(), json!({
                    "type": "object", "required": ["source", "medium", "campaign", "channel", "sessions", "engagedSessions", "engagementRate", "conversions", "revenue"],
                    "properties": {
                        "source": { "type": "string" }, "medium": { "type": "string" }, "campaign": { "type": "string" },
                        "channel": { "type": "string" }, "sessions": { "type": "integer" },
                        "engagedSessions": { "type": "integer", "description": "sessions that lasted more than 10 s (fold.engaged_after_ms), converted, or had at least 2 pageviews (GA4's engaged session)" },
                        "engagementRate": { "type": "number", "minimum": 0, "maximum": 1, "description": "engagedSessions / sessions; 0 without sessions" },
                        "conversions": { "type": "integer", "description": "converted sessions" },
                        "revenue": schema_ref("Revenue")
                    }
                }));
    schemas.insert("Overview".into(), overview_schema());
    schemas.insert("Paths".into(), paths_schema());
    schemas.insert("Retention".into(), retention_schema());
    schemas.insert("Bots".into(), bots_schema());
    schemas.insert("RawEvent".into(), json!({
                    "type": "object",
                    "description": "An event of the contract (schemas/raw_event.avsc), camelCase. Unknown fields are refused.",
                    "required": ["eventId", "funnelId", "anonymousId", "eventName", "timestamp"],
                    "properties": {
                        "eventId": { "type": "string" }, "funnelId": { "type": "string" }, "anonymousId": { "type": "string" },
                        "sessionId": { "type": "string" }, "userId": { "type": "string" }, "eventName": { "type": "string" },
                        "timestamp": { "type": "integer" }, "receivedAt": { "type": "integer", "description": "replaced by the collector's own receive time" },
                        "url": { "type": "string" }, "referrer": { "type": "string" }, "title": { "type": "string" },
                        "utmSource": { "type": "string" }, "utmMedium": { "type": "string" }, "utmCampaign": { "type": "string" },
                        "utmTerm": { "type": "string" }, "utmContent": { "type": "string" }, "userAgent": { "type": "string" },
                        "country": { "type": "string" }, "ip": { "type": "string" }, "isConversion": { "type": "boolean" },
                        "revenueMinor": { "type": "integer" }, "currency": { "type": "string" },
                        "properties": { "type": "object", "additionalProperties": { "type": "string" } }
                    }
                }));
    schemas.insert("TrackResponse".into(), json!({
                    "type": "object", "required": ["accepted", "rejected", "results"],
                    "properties": {
                        "accepted": { "type": "integer" }, "rejected": { "type": "integer" },
                        "results": { "type": "array", "items": { "type": "object", "required": ["index", "status"], "properties": {
                            "index": { "type": "integer" }, "eventId": { "type": "string" },
                            "status": { "type": "string", "enum": ["accepted", "rejected"] },
                            "error": { "type": "object", "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } } }
                    }
                }));
    Value::Object(schemas)
}

fn paths() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert("/healthz".into(), healthz_op());
    paths.insert("/openapi.json".into(), openapi_op());
    paths.insert("/v1/funnels".into(), funnels_op());
    paths.insert("/v1/funnels/{funnelId}/profiles/lookup".into(), lookup_op());
    paths.insert(
        "/v1/funnels/{funnelId}/profiles/{anonymousId}/timeline".into(),
        timeline_op(),
    );
    paths.insert(
        "/v1/funnels/{funnelId}/traffic-sources".into(),
        traffic_sources_op(),
    );
    paths.insert("/v1/funnels/{funnelId}/overview".into(), overview_op());
    paths.insert("/v1/funnels/{funnelId}/paths".into(), paths_op());
    paths.insert("/v1/funnels/{funnelId}/retention".into(), retention_op());
    paths.insert("/v1/funnels/{funnelId}/bots".into(), bots_op());
    paths.insert("/v1/funnels/{funnelId}/sessions".into(), sessions_op());
    paths.insert("/v1/funnels/{funnelId}/events".into(), events_op());
    paths.insert("/v1/funnels/{funnelId}/live".into(), live_op());
    paths.insert("/v1/track".into(), track_op());
    Value::Object(paths)
}

fn healthz_op() -> Value {
    json!({ "get": {
                "summary": "Liveness. Open (no key).",
                "operationId": "healthz",
                "responses": {
                    "200": ok("The server is up.", health_schema()),
                    "503": ok("Unhealthy: the fold processor of this process cannot write its store (status \"unhealthy\", with the reason); /v1/track refuses events meanwhile.", health_schema()) }
            } })
}

fn health_schema() -> Value {
    json!({ "type": "object", "properties": {
        "status": { "type": "string", "enum": ["ok", "unhealthy"] }, "reason": { "type": "string" },
        "store": { "type": "string" }, "profileCache": { "type": "string" },
        "accessChecks": { "type": "boolean" }, "collector": { "type": "boolean" } } })
}

fn openapi_op() -> Value {
    json!({ "get": {
                "summary": "This document. Open (no key).",
                "operationId": "openapi",
                "responses": { "200": ok("The OpenAPI document.", json!({ "type": "object" })) }
            } })
}

fn funnels_op() -> Value {
    json!({ "get": {
                "summary": "The funnels the key may read, with their totals: for a funnel picker.",
                "description": "Every funnel with folded events when access checks are off; with a key, the funnels it may read (none for a track-only key). Sorted by funnelId. Totals come from projections the fold keeps, so they follow folding (duplicates and rejected events are not counted); times are event times.",
                "operationId": "funnels",
                "security": security(),
                "responses": {
                    "200": ok("The funnels.", json!({ "type": "object", "required": ["funnels"], "properties": {
                        "funnels": { "type": "array", "items": schema_ref("Funnel") } } })),
                    "400": error_response("unknown_parameter or duplicate_parameter: this route takes none."),
                    "401": error_response("missing_key or invalid_key."),
                    "503": error_response("store_unavailable: retry later.")
                }
            } })
}

fn lookup_op() -> Value {
    json!({ "post": {
                "summary": "Profiles of up to 100 visitors.",
                "description": "Answers an object keyed by anonymous id; ids never seen are absent; duplicates are allowed. Hot profiles come from a cache kept fresh by profiles.changelog.",
                "operationId": "lookupProfiles",
                "security": security(),
                "parameters": [funnel_param()],
                "requestBody": { "required": true, "content": json_content(json!({
                    "type": "object", "additionalProperties": false, "required": ["anonymousIds"],
                    "properties": { "anonymousIds": { "type": "array", "maxItems": MAX_LOOKUP_IDS, "items": { "type": "string" } } },
                    "example": { "anonymousIds": ["v-1", "v-2"] } })) },
                "responses": with_ok(
                    read_errors(&[
                        ("400", "Bad request: too_many_ids, invalid_json, unknown_field, invalid_body, unknown_parameter, bad_path."),
                        ("413", "body_too_large."),
                    ]),
                    ok("Profiles by anonymous id.", json!({ "type": "object", "additionalProperties": schema_ref("Profile") })))
            } })
}

fn timeline_op() -> Value {
    json!({ "get": {
                "summary": "A visitor's sessions, newest first.",
                "operationId": "timeline",
                "security": security(),
                "parameters": [funnel_param(), path_param("anonymousId", "The visitor.", "v-1"), limit_param(DEFAULT_PAGE, MAX_PAGE)],
                "responses": with_ok(read_errors(&[("404", "visitor_not_found: no sessions of this visitor.")]),
                    ok("The sessions.", json!({ "type": "object", "properties": {
                        "funnelId": { "type": "string" }, "anonymousId": { "type": "string" },
                        "sessions": { "type": "array", "items": schema_ref("Session") } } })))
            } })
}

fn traffic_sources_op() -> Value {
    json!({ "get": {
                "summary": "Sessions, converted sessions and revenue per (source, medium, campaign).",
                "description": format!("Sums the UTC days of the range (by the day each session started), sorted by sessions (descending), then revenue (descending; with several currencies, the first currency in code order whose amounts differ decides, a missing currency counting as 0), then source, medium and campaign (ascending); limit applies after sorting. range=Nd is the N UTC days ending today by the server clock (default 7d); from/to cover the UTC days the instants [from, to) touch. At most {MAX_RANGE_DAYS} days."),
                "operationId": "trafficSources",
                "security": security(),
                "parameters": [
                    funnel_param(),
                    query_param("range", "7d, 30d or 90d (any Nd up to 366d). Not with from/to.", json!({ "type": "string", "pattern": "^[0-9]+d$" }), json!("90d")),
                    time_param("from", "Start (inclusive). Not with range.", "2026-11-01T00:00:00Z"),
                    time_param("to", "End (exclusive); default now. Needs from.", "2026-11-08T00:00:00Z"),
                    limit_param(DEFAULT_TRAFFIC_ROWS, MAX_TRAFFIC_ROWS)
                ],
                "responses": with_ok(read_errors(&[]), ok("Rows, sorted.", json!({ "type": "array", "items": schema_ref("TrafficSource") })))
            } })
}

fn overview_schema() -> Value {
    json!({
        "type": "object",
        "required": ["from", "to", "visitors", "newVisitors", "returningVisitors", "sessions", "engagedSessions", "engagementRate", "bounces", "bounceRate", "conversions", "revenue", "botEvents", "bots", "days"],
        "properties": {
            "from": { "type": "integer", "description": "epoch ms, the start of the first UTC day" },
            "to": { "type": "integer", "description": "epoch ms, the end of the last UTC day (exclusive)" },
            "visitors": { "type": "integer", "description": "distinct visitors with a session started in the range" },
            "newVisitors": { "type": "integer", "description": "visitors first seen (profile firstSeen) in the range" },
            "returningVisitors": { "type": "integer", "description": "visitors - newVisitors: first seen before the range" },
            "sessions": { "type": "integer" },
            "engagedSessions": { "type": "integer", "description": "sessions that lasted more than 10 s, converted, or had at least 2 pageviews" },
            "engagementRate": { "type": "number", "minimum": 0, "maximum": 1, "description": "engagedSessions / sessions; 0 without sessions" },
            "bounces": { "type": "integer", "description": "sessions that bounced" },
            "bounceRate": { "type": "number", "minimum": 0, "maximum": 1, "description": "bounces / sessions scanned; 0 without sessions" },
            "conversions": { "type": "integer", "description": "converted sessions" },
            "revenue": schema_ref("Revenue"),
            "botEvents": { "type": "integer", "description": "bot events of the range; bots count in no other number" },
            "bots": { "type": "object", "description": "bot events per bot name; bots without events are absent",
                "additionalProperties": { "type": "integer" }, "example": { "Googlebot": 12 } },
            "days": { "type": "array", "description": "every UTC day of the range, oldest first, days without sessions included", "items": {
                "type": "object", "required": ["day", "sessions", "channels"], "properties": {
                    "day": { "type": "string", "format": "date", "example": "2026-11-23" },
                    "sessions": { "type": "integer" },
                    "channels": { "type": "object", "description": "sessions per GA4 default channel group; channels without sessions are absent",
                        "additionalProperties": { "type": "integer" }, "example": { "Organic Search": 12, "Direct": 30 } } } } }
        }
    })
}

fn overview_op() -> Value {
    json!({ "get": {
                "summary": "Visitors (new, returning), sessions (engaged), bounces, conversions, revenue and bot events of a range, with sessions per day by channel group.",
                "description": format!("Ranges as traffic-sources: range=Nd is the N UTC days ending today (default 7d); from/to cover the UTC days the instants [from, to) touch; at most {MAX_RANGE_DAYS} days. Sessions count by the day they started. Visitors are counted over the sessions of the range: a range holding more than {MAX_OVERVIEW_SESSIONS} sessions answers 422 range_too_large (narrow the range)."),
                "operationId": "overview",
                "security": security(),
                "parameters": [
                    funnel_param(),
                    query_param("range", "7d, 30d or 90d (any Nd up to 366d). Not with from/to.", json!({ "type": "string", "pattern": "^[0-9]+d$" }), json!("30d")),
                    time_param("from", "Start (inclusive). Not with range.", "2026-11-01T00:00:00Z"),
                    time_param("to", "End (exclusive); default now. Needs from.", "2026-11-08T00:00:00Z")
                ],
                "responses": with_ok(read_errors(&[("422", "range_too_large: more sessions than an overview scans; narrow the range.")]),
                    ok("The overview.", schema_ref("Overview")))
            } })
}

fn range_params(example: &str) -> [Value; 3] {
    [
        query_param(
            "range",
            "7d, 30d or 90d (any Nd up to 366d). Not with from/to.",
            json!({ "type": "string", "pattern": "^[0-9]+d$" }),
            json!(example),
        ),
        time_param(
            "from",
            "Start (inclusive). Not with range.",
            "2026-11-01T00:00:00Z",
        ),
        time_param(
            "to",
            "End (exclusive); default now. Needs from.",
            "2026-11-08T00:00:00Z",
        ),
    ]
}

fn paths_schema() -> Value {
    json!({
        "type": "object", "required": ["nodes", "links"],
        "properties": {
            "nodes": { "type": "array", "description": "the nodes the links touch, by step, then sessions (descending), then path", "items": {
                "type": "object", "required": ["step", "path", "sessions"], "properties": {
                    "step": { "type": "integer", "minimum": 1, "maximum": 11 },
                    "path": { "type": "string", "description": "a page path, (exit) or (more)", "example": "/pricing" },
                    "sessions": { "type": "integer", "description": "sessions at that step on that page: the sum of all its outgoing links at its step (kept or not), which equals the sum of the links into it; for nodes at step steps+1 and for (exit)/(more), the sum of all the links into it" } } } },
            "links": { "type": "array", "description": "per step the limit busiest links, by step, then sessions (descending), then from and to", "items": {
                "type": "object", "required": ["step", "from", "to", "sessions"], "properties": {
                    "step": { "type": "integer", "minimum": 1, "maximum": 10, "description": "the step of from; to is at step + 1" },
                    "from": { "type": "string" },
                    "to": { "type": "string", "description": "a page path, (exit) when the session ended at step, (more) when it went on past step 10" },
                    "sessions": { "type": "integer" } } } }
        }
    })
}

fn paths_op() -> Value {
    let mut params = vec![funnel_param()];
    params.extend(range_params("7d"));
    params.push(query_param(
        "steps",
        "Steps to answer.",
        json!({ "type": "integer", "minimum": 1, "maximum": MAX_STEPS, "default": DEFAULT_STEPS }),
        json!(5),
    ));
    params.push(query_param("limit", "Links kept per step, the busiest.", json!({ "type": "integer", "minimum": 1, "maximum": MAX_PATH_LINKS, "default": DEFAULT_PATH_LINKS }), json!(10)));
    params.push(query_param(
        "startsWith",
        "Only the sessions that landed on this exact path.",
        json!({ "type": "string", "minLength": 1 }),
        json!("/pricing"),
    ));
    json!({ "get": {
                "summary": "Page flows: how sessions move through the funnel's pages, step by step, for a Sankey diagram.",
                "description": format!("A session's steps are the paths of its page views, consecutive repeats collapsed; step 1 is the landing page. A link (step, from, to) counts the sessions at from on that step that went to to next; (exit) when they ended there, (more) when they went on past step 10. Sessions count on the UTC day they started; ranges as traffic-sources (default 7d, at most {MAX_RANGE_DAYS} days). Bot events count in no flow."),
                "operationId": "paths",
                "security": security(),
                "parameters": params,
                "responses": with_ok(read_errors(&[("400", "Bad request: bad_steps, bad_limit, bad_range, bad_time, bad_parameter (an empty startsWith), unknown_parameter, duplicate_parameter, bad_path.")]),
                    ok("The flow graph.", schema_ref("Paths")))
            } })
}

fn retention_schema() -> Value {
    json!({
        "type": "object", "required": ["cohorts"],
        "properties": { "cohorts": { "type": "array", "description": "every cohort week of the range up to the current one, newest first, weeks without visitors included (all zeros)", "items": {
            "type": "object", "required": ["week", "visitors", "active"], "properties": {
                "week": { "type": "string", "format": "date", "description": "the Monday (UTC) of the ISO week of the visitors' first non-bot event", "example": "2026-11-02" },
                "visitors": { "type": "integer", "description": "the cohort's size, active[0]" },
                "active": { "type": "array", "items": { "type": "integer" }, "maxItems": 26,
                    "description": "active[k]: visitors of the cohort with a non-bot event in week week+k, for k from 0 up to the current week (UTC now), at most 25" } } } } }
    })
}

fn retention_op() -> Value {
    json!({ "get": {
                "summary": "Cohort retention: visitors by the week of their first event, and how many came back each week after.",
                "description": format!("weeks=N is the N cohort weeks ending with the current week (default {DEFAULT_WEEKS}, at most {MAX_WEEKS}); from/to cover the cohort weeks the instants [from, to) touch (at most {MAX_WEEKS}). Weeks are ISO weeks, Monday to Sunday, UTC."),
                "operationId": "retention",
                "security": security(),
                "parameters": [
                    funnel_param(),
                    query_param("weeks", "Cohort weeks ending with the current one. Not with from/to.", json!({ "type": "integer", "minimum": 1, "maximum": MAX_WEEKS, "default": DEFAULT_WEEKS }), json!(12)),
                    time_param("from", "Start (inclusive). Not with weeks.", "2026-11-01T00:00:00Z"),
                    time_param("to", "End (exclusive); default now. Needs from.", "2026-11-08T00:00:00Z")
                ],
                "responses": with_ok(read_errors(&[("400", "Bad request: bad_weeks, bad_range, bad_time, unknown_parameter, duplicate_parameter, bad_path.")]),
                    ok("The cohorts.", schema_ref("Retention")))
            } })
}

fn bots_schema() -> Value {
    json!({
        "type": "object", "required": ["from", "to", "events", "bots", "days"],
        "properties": {
            "from": { "type": "integer", "description": "epoch ms, the start of the first UTC day" },
            "to": { "type": "integer", "description": "epoch ms, the end of the last UTC day (exclusive)" },
            "events": { "type": "integer", "description": "bot events of the range" },
            "bots": { "type": "array", "description": "per bot name over the range, by events (descending), then name", "items": {
                "type": "object", "required": ["bot", "events"], "properties": {
                    "bot": { "type": "string", "example": "Googlebot" }, "events": { "type": "integer" } } } },
            "days": { "type": "array", "description": "every UTC day of the range, oldest first, days without bot events included", "items": {
                "type": "object", "required": ["day", "events", "bots"], "properties": {
                    "day": { "type": "string", "format": "date", "example": "2026-11-23" },
                    "events": { "type": "integer" },
                    "bots": { "type": "object", "description": "events per bot name; bots without events that day are absent",
                        "additionalProperties": { "type": "integer" }, "example": { "Googlebot": 3 } } } } }
        }
    })
}

fn bots_op() -> Value {
    let mut params = vec![funnel_param()];
    params.extend(range_params("7d"));
    json!({ "get": {
                "summary": "Bot events per day by bot name.",
                "description": format!("Events whose user agent is a known crawler, bot, monitor or headless browser: stored and listed, but counted in no session, traffic, path, retention or overview number. By event time (UTC day); ranges as traffic-sources (default 7d, at most {MAX_RANGE_DAYS} days)."),
                "operationId": "bots",
                "security": security(),
                "parameters": params,
                "responses": with_ok(read_errors(&[]), ok("The bot counts.", schema_ref("Bots")))
            } })
}

fn sessions_op() -> Value {
    json!({ "get": {
                "summary": "Sessions by start time, newest first, with cursor paging.",
                "description": "Without from/to: sessions started in the last 90 days (up to a day ahead of the server clock, the client clock skew validation accepts).",
                "operationId": "sessions",
                "security": security(),
                "parameters": [
                    funnel_param(),
                    time_param("from", "Sessions started at or after.", "2026-01-01T00:00:00Z"),
                    time_param("to", "Sessions started before.", "2027-01-01T00:00:00Z"),
                    limit_param(DEFAULT_PAGE, MAX_PAGE),
                    cursor_param()
                ],
                "responses": with_ok(read_errors(&[]), ok("A page.", json!({ "type": "object", "required": ["sessions", "nextCursor"], "properties": {
                    "sessions": { "type": "array", "items": schema_ref("Session") },
                    "nextCursor": { "type": ["string", "null"], "description": "null on the last page" } } })))
            } })
}

fn events_op() -> Value {
    json!({ "get": {
                "summary": "Events by time, newest first, with cursor paging and filters.",
                "description": "Without from/to: the last 90 days (up to a day ahead of the server clock).",
                "operationId": "events",
                "security": security(),
                "parameters": [
                    funnel_param(),
                    time_param("from", "Events at or after.", "2026-01-01T00:00:00Z"),
                    time_param("to", "Events before.", "2027-01-01T00:00:00Z"),
                    limit_param(DEFAULT_PAGE, MAX_PAGE),
                    cursor_param(),
                    query_param("anonymousId", "Only this visitor's events.", json!({ "type": "string", "minLength": 1 }), json!("v-1")),
                    query_param("eventName", "Only events of this name.", json!({ "type": "string", "minLength": 1 }), json!("page_view")),
                    query_param("include", "session: add each event's source, medium and deviceType, from its session.", json!({ "type": "string", "enum": ["session"] }), json!("session")),
                    query_param("bots", "Bot events (isBot: a known crawler, bot, monitor or headless browser): exclude (the default: visitors' events only, as every other number counts them), include (both), only (bots' events only). limit counts the events kept.", json!({ "type": "string", "enum": ["exclude", "include", "only"], "default": "exclude" }), json!("only"))
                ],
                "responses": with_ok(read_errors(&[("400", "Bad request: unknown_parameter, duplicate_parameter, bad_limit, bad_time, bad_range, bad_cursor, bad_parameter, bad_path, bad_include, bad_bots (bots other than exclude, include or only).")]), ok("A page.", json!({ "type": "object", "required": ["events", "nextCursor"], "properties": {
                    "events": { "type": "array", "items": schema_ref("Event") },
                    "nextCursor": { "type": ["string", "null"], "description": "null on the last page" } } })))
            } })
}

fn live_op() -> Value {
    let mut responses = read_errors(&[
        ("400", "Bad request: unknown_parameter, duplicate_parameter, bad_path, bad_bots (bots other than exclude, include or only)."),
        (
            "429",
            "too_many_streams: the key holds as many live streams as it may (query.live_streams_per_key); close one first.",
        ),
    ]);
    responses.insert(
        "503".into(),
        error_response("live_unavailable: no Kafka configured, so there is no feed to stream."),
    );
    let stream = json!({ "description": "A Server-Sent Events stream, open until the client closes it or the server stops. Each message is `event: <type>` and one `data:` line of JSON: `event` (a folded event: funnelId, eventId, anonymousId, displayName, sessionId, eventName, timestamp, path, source, medium, isConversion, revenue, isBot: whether the user agent is a known crawler, bot, monitor or headless browser, sent only with bots=include or bots=only), `session` (a session written, the Session schema, or deleted: {funnelId, anonymousId, sessionId, deleted: true}), `notice` ({dropped, message}: the client read too slowly and this many items were dropped). Comment lines (`: keep-alive`) are heartbeats, sent when nothing else was (every query.live_heartbeat_ms).",
        "content": { "text/event-stream": { "schema": { "type": "string" } } } });
    json!({ "get": {
                "summary": "What the fold processors just did for the funnel, as Server-Sent Events.",
                "description": "Streams the funnel's folded events and session changes from now on (read from events.changelog and sessions.changelog; nothing from before the request). A client that reads too slowly loses the oldest items, announced by a notice event. Each key holds at most query.live_streams_per_key streams at once.",
                "operationId": "live",
                "security": security(),
                "parameters": [
                    funnel_param(),
                    query_param("bots", "Bot events (isBot: a known crawler, bot, monitor or headless browser): exclude (the default: visitors' events only, as every other number counts them), include (both), only (bots' events only). Session changes are sent whatever it says (bots have no sessions).", json!({ "type": "string", "enum": ["exclude", "include", "only"], "default": "exclude" }), json!("only"))
                ],
                "responses": with_ok(responses, stream)
            } })
}

fn track_op() -> Value {
    json!({
        "post": {
            "summary": "Collector: a batch of raw events, produced to events.raw.",
            "description": format!("Body: {{\"events\": [...]}} or a bare array; at most {MAX_EVENTS} events and {MAX_BODY_BYTES} bytes (else 413). Each event is validated as the fold processor validates it; valid events are produced Avro-encoded to events.raw keyed by anonymousId and acknowledged by Kafka before the 200. The key must cover the funnel of every event (else 403, nothing produced). On 503, send the whole batch again: events are deduplicated by eventId."),
            "operationId": "track",
            "security": security(),
            "requestBody": { "required": true, "content": json_content(json!({ "oneOf": [
                { "type": "object", "additionalProperties": false, "required": ["events"], "properties": {
                    "events": { "type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": schema_ref("RawEvent") } } },
                { "type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": schema_ref("RawEvent") } ] })) },
            "responses": {
                "200": ok("Per-event results.", schema_ref("TrackResponse")),
                "400": error_response("invalid_json, invalid_body, unknown_field, empty_batch, unknown_parameter."),
                "401": error_response("missing_key or invalid_key."),
                "403": error_response("forbidden: an event's funnel is not covered by the key."),
                "413": error_response("body_too_large or too_many_events."),
                "503": error_response("collector_disabled (no Kafka configured), broker_unavailable (not acknowledged in time) or store_unavailable (the store cannot write, for example a full disk: nothing was produced; Retry-After says when to send the batch again).")
            }
        },
        "options": {
            "summary": "CORS preflight for browsers.",
            "operationId": "trackPreflight",
            "responses": { "204": { "description": "Allowed: POST with Authorization and Content-Type from any origin." } }
        }
    })
}

fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "funnelfold query API and collector",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Reads of funnelfold's projections (profiles, sessions, events, traffic sources) and the /v1/track collector. Every 4xx and 5xx answer is {\"error\": {\"code\", \"message\"}}. Unknown query parameters and unknown body fields are refused. Times are epoch milliseconds."
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                    "description": "A key of the funnel (Authorization: Bearer <key>). Track-only keys may only call /v1/track. Without a key file on the server, access checks are off." }
            },
            "schemas": schemas()
        },
        "paths": paths()
    })
}

/// The document.
pub fn openapi() -> Value {
    document()
}

/// The document, serialized once.
pub(crate) fn document_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default())
}
