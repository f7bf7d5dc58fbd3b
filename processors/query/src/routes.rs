//! The routes: one table ([`table`]) from which both the router and the list checked
//! against the OpenAPI document are made, so the two cannot drift apart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use funnelfold_core::projection::utc_day;
use funnelfold_core::validate::ValidationConfig;
use funnelfold_core::{EventRow, SessionRow};
use funnelfold_store::{EventCursor, EventFilter, Health, PageRequest, SessionCursor, Store};
use serde::{Deserialize, Serialize};

use crate::auth::{Access, Need};
use crate::cache::{AnswerCache, CachedProfile, ProfileCache};
use crate::collector::Collector;
use crate::cursor::{CursorKey, Page, Scope};
use crate::error::{json_response, ApiError};
use crate::extract::{parse_json, quote, read_body, FunnelPath, Params, VisitorPath};
use crate::journeys::{self, PathsKey};
use crate::live::Live;
use crate::money::compare_revenue;
use crate::overview::overview;
use crate::views::{EventJson, FunnelJson, SessionJson, TrafficSourceJson};
use crate::{openapi, telemetry, track};

/// Most ids in one profile lookup.
pub const MAX_LOOKUP_IDS: usize = 100;
/// Lookup bodies: 100 ids of any sane length fit many times over.
pub const MAX_LOOKUP_BODY_BYTES: usize = 256 * 1024;
/// Page size of the listings: default and maximum.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;
/// Rows of the traffic-sources report: default and maximum.
pub const DEFAULT_TRAFFIC_ROWS: usize = 50;
pub const MAX_TRAFFIC_ROWS: usize = 1000;
/// A visitor's sessions read to find the session of each of its events on a page of
/// the events listing (`include=session`): its newest ones.
const MAX_VISITOR_SESSIONS: usize = 1000;
/// Longest traffic-sources range, in days.
pub const MAX_RANGE_DAYS: i64 = 366;

pub(crate) const DAY_MS: i64 = 86_400_000;
/// Default window of the listings: the last 90 days...
const DEFAULT_WINDOW_MS: i64 = 90 * DAY_MS;
/// ...up to a day ahead of the server clock, since validation accepts events up to
/// 24 h ahead of their receive time (client clock skew).
const FUTURE_SLACK_MS: i64 = DAY_MS;

/// Everything a handler needs.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub cache: Arc<ProfileCache>,
    pub traffic_answers: AnswerCache,
    pub overview_answers: AnswerCache,
    /// Page flows by (funnel, first day, last day, steps, limit, startsWith).
    pub paths_answers: AnswerCache<PathsKey>,
    /// Retention by (funnel, first cohort, last cohort, current week): the current
    /// week bounds the offsets answered.
    pub retention_answers: AnswerCache<(String, i32, i32, i32)>,
    /// Bot counts by (funnel, first day, last day, 0).
    pub bots_answers: AnswerCache,
    pub access: Access,
    pub cursors: CursorKey,
    pub collector: Option<Collector>,
    pub validation: ValidationConfig,
    /// The fold processor's health, when it runs in this process.
    pub health: Option<Arc<Health>>,
    /// The live streams' feed; `None` without Kafka.
    pub live: Option<Live>,
}

pub(crate) type Shared = Arc<AppState>;

/// One row of the route table.
pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    router: MethodRouter<Shared>,
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> RouteDef
where
    H: Handler<T, Shared>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
    RouteDef {
        method,
        path,
        router: on(filter, handler),
    }
}

/// Every route the server answers.
pub fn table() -> Vec<RouteDef> {
    vec![
        route(Method::GET, "/healthz", healthz),
        route(Method::GET, "/openapi.json", openapi_json),
        route(Method::GET, "/v1/funnels", funnels),
        route(
            Method::POST,
            "/v1/funnels/{funnelId}/profiles/lookup",
            lookup,
        ),
        route(
            Method::GET,
            "/v1/funnels/{funnelId}/profiles/{anonymousId}/timeline",
            timeline,
        ),
        route(
            Method::GET,
            "/v1/funnels/{funnelId}/traffic-sources",
            traffic_sources,
        ),
        route(Method::GET, "/v1/funnels/{funnelId}/overview", overview),
        route(Method::GET, "/v1/funnels/{funnelId}/paths", journeys::paths),
        route(
            Method::GET,
            "/v1/funnels/{funnelId}/retention",
            journeys::retention,
        ),
        route(Method::GET, "/v1/funnels/{funnelId}/bots", journeys::bots),
        route(Method::GET, "/v1/funnels/{funnelId}/sessions", sessions),
        route(Method::GET, "/v1/funnels/{funnelId}/events", events),
        route(Method::GET, "/v1/funnels/{funnelId}/live", live),
        route(Method::POST, "/v1/track", track::track),
        route(Method::OPTIONS, "/v1/track", track::preflight),
    ]
}

/// The router over `state`.
pub fn router(state: Shared) -> Router {
    let mut router = Router::new();
    for def in table() {
        router = router.route(def.path, def.router);
    }
    router
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(telemetry::observe))
        .with_state(state)
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(
        "route_not_found",
        format!(
            "no route for {method} {}; the API is described at /openapi.json",
            quote(uri.path())
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; see /openapi.json",
            quote(uri.path())
        ),
    )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthJson {
    status: &'static str,
    /// Why not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    store: &'static str,
    profile_cache: &'static str,
    access_checks: bool,
    collector: bool,
}

async fn healthz(State(s): State<Shared>, uri: Uri) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let reason = s.health.as_ref().and_then(|h| h.status()).or_else(|| {
        s.collector
            .as_ref()
            .and_then(|c| c.inbox_failure())
            .map(|e| {
                format!("the inbox cannot be written ({e}); /v1/track answers 503 until it can")
            })
    });
    let health = HealthJson {
        status: if reason.is_some() { "unhealthy" } else { "ok" },
        reason,
        store: s.store.engine(),
        profile_cache: if s.cache.is_enabled() {
            "on"
        } else {
            "warming up"
        },
        access_checks: !s.access.is_open(),
        collector: s.collector.is_some(),
    };
    // 503 while the fold processor's store or the collector's inbox cannot write: a
    // load balancer or an orchestrator
    // then sends the collector's traffic elsewhere.
    let status = if health.reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &health))
}

async fn openapi_json(uri: Uri) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let mut response = (StatusCode::OK, openapi::document_bytes()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[derive(Serialize)]
struct FunnelsJson<'a> {
    funnels: Vec<FunnelJson<'a>>,
}

/// `GET /v1/funnels`: the funnels the key may read, sorted by id, with their totals
/// (summed from the fold's per-partition shares: no events are read).
async fn funnels(
    State(s): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A key that reads no funnel (a track-only key) gets an empty list, not a 403:
    // the list is what it may read.
    let grant = s.access.authenticate(&headers)?;
    Params::parse(uri.query(), &[])?;
    let all = s.store.funnels().await?;
    let funnels = all
        .iter()
        .filter(|f| {
            grant
                .as_ref()
                .is_none_or(|g| g.check(&f.funnel_id, Need::Read).is_ok())
        })
        .map(FunnelJson::from)
        .collect();
    Ok(json_response(StatusCode::OK, &FunnelsJson { funnels }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LookupRequest {
    anonymous_ids: Vec<String>,
}

/// `POST /v1/funnels/{funnelId}/profiles/lookup`: cached profiles first, then one store
/// round trip for all the misses.
async fn lookup(
    State(s): State<Shared>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    Params::parse(uri.query(), &[])?;
    let bytes = read_body(body, MAX_LOOKUP_BODY_BYTES).await?;
    let request: LookupRequest = parse_json(&bytes)?;
    if request.anonymous_ids.len() > MAX_LOOKUP_IDS {
        return Err(ApiError::bad_request(
            "too_many_ids",
            format!(
                "{} anonymousIds; the limit is {MAX_LOOKUP_IDS} per lookup",
                request.anonymous_ids.len()
            ),
        ));
    }

    // foldhash, not SipHash: a few maps per request, of at most MAX_LOOKUP_IDS ids each.
    let mut seen = foldhash::HashSet::default();
    let unique: Vec<&str> = request
        .anonymous_ids
        .iter()
        .map(String::as_str)
        .filter(|id| seen.insert(*id))
        .collect();
    let mut found: foldhash::HashMap<&str, Arc<CachedProfile>> =
        foldhash::HashMap::with_capacity_and_hasher(unique.len(), Default::default());
    let mut absent = 0;
    let mut misses = Vec::new();
    let mut tickets = foldhash::HashMap::default();
    for &id in &unique {
        // The ticket is taken before looking: see the cache's coherence rules.
        let ticket = s.cache.ticket(&funnel, id);
        match s.cache.get(&funnel, id) {
            Some(profile) => {
                found.insert(id, profile);
            }
            None if s.cache.is_absent(&funnel, id) => absent += 1,
            None => {
                misses.push(id.to_owned());
                tickets.insert(id, ticket);
            }
        }
    }
    telemetry::profile_cache(found.len() + absent, misses.len());
    if !misses.is_empty() {
        for row in s.store.profiles(&funnel, &misses).await? {
            // The store answers only for the ids asked; anything else is ignored.
            let Some((&id, &ticket)) = tickets.get_key_value(row.anonymous_id.as_str()) else {
                continue;
            };
            found.insert(id, s.cache.fill(row, ticket));
        }
        for (id, ticket) in tickets {
            if !found.contains_key(id) {
                s.cache.fill_absent(&funnel, id, ticket);
            }
        }
    }
    // The object is assembled from the profiles' JSON, serialized when cached.
    let mut out = Vec::with_capacity(2 + found.len() * 600);
    out.push(b'{');
    for (id, profile) in unique
        .iter()
        .filter_map(|id| found.get(id).map(|p| (id, p)))
    {
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, id)
            .map_err(|e| ApiError::internal(format!("cannot encode an id: {e}")))?;
        out.push(b':');
        out.extend_from_slice(&profile.json);
    }
    out.push(b'}');
    Ok(json_bytes(Bytes::from(out)))
}

/// Parses `range` (`<N>d`, N in 1..=366: the N UTC days ending today).
fn range_days(raw: &str) -> Result<i64, ApiError> {
    raw.strip_suffix('d')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| (1..=MAX_RANGE_DAYS).contains(n) && !raw.starts_with('+'))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_range",
                format!(
                    "range {:?} is not one of 7d, 30d, 90d (any Nd up to {MAX_RANGE_DAYS}d works)",
                    quote(raw)
                ),
            )
        })
}

/// The UTC days, first and last inclusive, a report covers: `range` (`Nd`, the N days
/// ending today), or the days the instants [`from`, `to`) touch (`to` defaults to
/// `now`), or the last 7 days. One function for every report route, so they all
/// accept the same ranges and refuse the others with the same `bad_range` answers.
pub(crate) fn day_range(
    range: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    now: i64,
) -> Result<(i32, i32), ApiError> {
    let (from_day, to_day) = match (range, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::bad_request(
                "bad_range",
                "give either range or from/to, not both",
            ))
        }
        (None, None, Some(_)) => return Err(ApiError::bad_request("bad_range", "to needs a from")),
        (Some(range), None, None) => {
            let today = i64::from(utc_day(now));
            (today - range_days(&range)? + 1, today)
        }
        (None, None, None) => {
            let today = i64::from(utc_day(now));
            (today - 6, today)
        }
        (None, Some(from), to) => {
            let to = to.unwrap_or(now);
            if from >= to {
                return Err(ApiError::bad_request("bad_range", "from must be before to"));
            }
            // `to` is exclusive: its own day counts only if the range reaches into it.
            (i64::from(utc_day(from)), i64::from(utc_day(to - 1)))
        }
    };
    if to_day - from_day + 1 > MAX_RANGE_DAYS {
        return Err(ApiError::bad_request(
            "bad_range",
            format!(
                "the range covers {} days; the limit is {MAX_RANGE_DAYS}",
                to_day - from_day + 1
            ),
        ));
    }
    let day = |d: i64| {
        i32::try_from(d)
            .map_err(|_| ApiError::bad_request("bad_range", "the range is out of bounds"))
    };
    Ok((day(from_day)?, day(to_day)?))
}

/// `GET /v1/funnels/{funnelId}/traffic-sources`.
async fn traffic_sources(
    State(s): State<Shared>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    let mut p = Params::parse(uri.query(), &["range", "from", "to", "limit"])?;
    let range = p.take("range");
    let (from, to) = (p.time("from")?, p.time("to")?);
    let limit = p.limit(DEFAULT_TRAFFIC_ROWS, MAX_TRAFFIC_ROWS)?;
    let (from_day, to_day) = day_range(range, from, to, now_ms())?;
    let store = &s.store;
    let compute = async {
        let mut rows = store.traffic_sums(&funnel, from_day, to_day).await?;
        rows.sort_by(|a, b| {
            let (a, b) = (&a.row, &b.row);
            b.counts
                .sessions
                .cmp(&a.counts.sessions)
                .then_with(|| compare_revenue(&b.counts.revenue, &a.counts.revenue))
                .then_with(|| a.key.source.cmp(&b.key.source))
                .then_with(|| a.key.medium.cmp(&b.key.medium))
                .then_with(|| a.key.campaign.cmp(&b.key.campaign))
        });
        rows.truncate(limit);
        let out: Vec<TrafficSourceJson<'_>> = rows.iter().map(TrafficSourceJson::from).collect();
        serde_json::to_vec(&out)
            .map(Bytes::from)
            .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))
    };
    let answer = s
        .traffic_answers
        .get_or_compute((funnel.clone(), from_day, to_day, limit), compute)
        .await?;
    Ok(json_bytes(answer))
}

/// A response of JSON bytes already serialized.
pub(crate) fn json_bytes(bytes: Bytes) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The listings' time window when no cursor fixes it.
fn window(from: Option<i64>, to: Option<i64>, now: i64) -> Result<(i64, i64), ApiError> {
    let to_or_now = to.unwrap_or(now);
    let from = from.unwrap_or(to_or_now.saturating_sub(DEFAULT_WINDOW_MS));
    let to = to.unwrap_or(now.saturating_add(FUTURE_SLACK_MS));
    if from >= to {
        return Err(ApiError::bad_request("bad_range", "from must be before to"));
    }
    Ok((from, to))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionsPage<'a> {
    sessions: Vec<SessionJson<'a>>,
    next_cursor: Option<String>,
}

/// `GET /v1/funnels/{funnelId}/sessions`: newest first, cursor paging.
async fn sessions(
    State(s): State<Shared>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    let mut p = Params::parse(uri.query(), &["from", "to", "limit", "cursor"])?;
    let (from, to) = (p.time("from")?, p.time("to")?);
    let limit = p.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = p.take_non_empty("cursor")?;
    let (from_s, to_s) = (from.map(|v| v.to_string()), to.map(|v| v.to_string()));
    let filters = [from_s.as_deref(), to_s.as_deref()];
    let scope = Scope {
        route: "sessions",
        funnel: &funnel,
        filters: &filters,
    };
    let (from, to, after) = match cursor {
        Some(c) => {
            let page = s.cursors.open_sessions(&scope, &c)?;
            (page.from, page.to, Some(page.after))
        }
        None => {
            let (from, to) = window(from, to, now_ms())?;
            (from, to, None)
        }
    };
    // One row more than asked tells whether there is a next page.
    let mut rows: Vec<SessionRow> = s
        .store
        .sessions(
            &funnel,
            &PageRequest {
                from,
                to,
                after,
                limit: limit + 1,
            },
        )
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = rows.last().filter(|_| more).map(|last| {
        let after = SessionCursor {
            started_at: last.started_at,
            anonymous_id: last.anonymous_id.clone(),
            session_id: last.session_id.clone(),
        };
        s.cursors.seal_sessions(&scope, &Page { from, to, after })
    });
    let page = SessionsPage {
        sessions: rows.iter().map(SessionJson::from).collect(),
        next_cursor,
    };
    Ok(json_response(StatusCode::OK, &page))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage<'a> {
    events: Vec<EventJson<'a>>,
    next_cursor: Option<String>,
}

/// `GET /v1/funnels/{funnelId}/events`: newest first, cursor paging, filters.
async fn events(
    State(s): State<Shared>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    let mut p = Params::parse(
        uri.query(),
        &[
            "from",
            "to",
            "limit",
            "cursor",
            "anonymousId",
            "eventName",
            "include",
            "bots",
        ],
    )?;
    let with_sessions = match p.take("include").as_deref() {
        None => false,
        Some("session") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_include",
                format!(
                    "include may only be \"session\" (each event's source, medium and device, from its session), not {:?}",
                    quote(other)
                ),
            ))
        }
    };
    // Bot events are stored and listed, but only on request (see Params::bots).
    let (bots, bots_raw) = p.bots()?;
    let (from, to) = (p.time("from")?, p.time("to")?);
    let limit = p.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = p.take_non_empty("cursor")?;
    let filter = EventFilter {
        anonymous_id: p.take_non_empty("anonymousId")?,
        event_name: p.take_non_empty("eventName")?,
        bots,
    };
    let (from_s, to_s) = (from.map(|v| v.to_string()), to.map(|v| v.to_string()));
    let filters = [
        from_s.as_deref(),
        to_s.as_deref(),
        filter.anonymous_id.as_deref(),
        filter.event_name.as_deref(),
        bots_raw.as_deref(),
    ];
    let scope = Scope {
        route: "events",
        funnel: &funnel,
        filters: &filters,
    };
    let (from, to, after) = match cursor {
        Some(c) => {
            let page = s.cursors.open_events(&scope, &c)?;
            (page.from, page.to, Some(page.after))
        }
        None => {
            let (from, to) = window(from, to, now_ms())?;
            (from, to, None)
        }
    };
    let mut rows: Vec<EventRow> = s
        .store
        .events(
            &funnel,
            &filter,
            &PageRequest {
                from,
                to,
                after,
                limit: limit + 1,
            },
        )
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = rows.last().filter(|_| more).map(|last| {
        let after = EventCursor {
            timestamp: last.timestamp,
            event_id: last.event_id.clone(),
        };
        s.cursors.seal_events(&scope, &Page { from, to, after })
    });
    // Event rows do not carry their attribution or device: their session does. One
    // read of each visitor's sessions on the page (a page holds few visitors).
    let mut sessions: HashMap<&str, Vec<SessionRow>> = HashMap::new();
    if with_sessions {
        let visitors: HashSet<&str> = rows.iter().map(|r| r.anonymous_id.as_str()).collect();
        let reads = visitors.into_iter().map(|anon| {
            let store = &s.store;
            let funnel = &funnel;
            async move {
                let rows = store
                    .visitor_sessions(funnel, anon, MAX_VISITOR_SESSIONS)
                    .await?;
                Ok::<_, funnelfold_store::StoreError>((anon, rows))
            }
        });
        for (anon, rows) in futures::future::try_join_all(reads).await? {
            sessions.insert(anon, rows);
        }
    }
    let events = rows
        .iter()
        .map(|row| {
            let json = EventJson::from(row);
            let session = sessions.get(row.anonymous_id.as_str()).and_then(|of| {
                funnelfold_core::projection::session_of(
                    row.session_id.as_deref(),
                    row.timestamp,
                    of.iter(),
                )
            });
            match session {
                Some(session) => json.with_session(session),
                None => json,
            }
        })
        .collect();
    let page = EventsPage {
        events,
        next_cursor,
    };
    Ok(json_response(StatusCode::OK, &page))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timeline<'a> {
    funnel_id: &'a str,
    anonymous_id: &'a str,
    sessions: Vec<SessionJson<'a>>,
}

/// `GET /v1/funnels/{funnelId}/profiles/{anonymousId}/timeline`: a visitor's sessions,
/// newest first.
async fn timeline(
    State(s): State<Shared>,
    VisitorPath(funnel, anon): VisitorPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.access.authorize(&headers, &funnel, Need::Read)?;
    let mut p = Params::parse(uri.query(), &["limit"])?;
    let limit = p.limit(DEFAULT_PAGE, MAX_PAGE)?;
    let rows = s.store.visitor_sessions(&funnel, &anon, limit).await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(
            "visitor_not_found",
            format!(
                "funnel {:?} has no sessions of visitor {:?}",
                quote(&funnel),
                quote(&anon)
            ),
        ));
    }
    let body = Timeline {
        funnel_id: &funnel,
        anonymous_id: &anon,
        sessions: rows.iter().map(SessionJson::from).collect(),
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Who counts as one key for the live streams' cap when access checks are off: every
/// caller together (there is no key to tell them apart).
const OPEN_ACCESS_KEY: [u8; 32] = [0; 32];

/// `GET /v1/funnels/{funnelId}/live`: Server-Sent Events of the funnel's folded events
/// and session changes (see [`crate::live`]).
async fn live(
    State(s): State<Shared>,
    FunnelPath(funnel): FunnelPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let grant = s.access.authenticate(&headers)?;
    if let Some(grant) = &grant {
        grant.check(&funnel, Need::Read)?;
    }
    // Checked before the feed's availability: a bad request is one with or without it.
    let (bots, _) = Params::parse(uri.query(), &["bots"])?.bots()?;
    let Some(live) = &s.live else {
        return Err(ApiError::unavailable(
            "live_unavailable",
            "live streams need Kafka, and this server has none configured",
        ));
    };
    let key = grant.map_or(OPEN_ACCESS_KEY, |g| g.key_digest());
    let slot = live.slots.acquire(key)?;
    let stream = live.stream(&funnel, bots, slot);
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(live.heartbeat).text("keep-alive"))
        .into_response();
    // Proxies that buffer responses (nginx does by default) would hold events back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_whole_days() {
        assert_eq!(range_days("7d").ok(), Some(7));
        assert_eq!(range_days("90d").ok(), Some(90));
        for bad in ["0d", "367d", "7", "d", "-7d", "+7d", "7w", ""] {
            assert_eq!(
                range_days(bad).err().map(|e| e.code),
                Some("bad_range"),
                "{bad}"
            );
        }
    }

    #[test]
    fn listing_windows_default_to_90_days() {
        let now = 1_000 * DAY_MS;
        assert_eq!(
            window(None, None, now).ok(),
            Some((now - 90 * DAY_MS, now + DAY_MS))
        );
        assert_eq!(window(Some(5), None, now).ok(), Some((5, now + DAY_MS)));
        assert_eq!(
            window(None, Some(10 * DAY_MS), now).ok(),
            Some((-80 * DAY_MS, 10 * DAY_MS))
        );
        assert_eq!(
            window(Some(5), Some(5), now).err().map(|e| e.code),
            Some("bad_range")
        );
    }
}
