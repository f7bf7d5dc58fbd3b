//! The stored form of a [`VisitorState`] (postcard in the embedded store, JSON in
//! tests): its fields in the order of the states written before the journeys, then a
//! trailing journey part. A state written before the journeys has no such part and
//! loads as untracked (it counts in no flow, retention cell or engaged session until
//! a rebuild), since postcard cannot mark a missing trailing field.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The serialized form of a [`VisitorState`]: its fields by reference, in the order of
/// the states written before the journeys, then the journey state.
#[derive(Serialize)]
#[serde(rename = "VisitorState")]
struct StateRef<'a> {
    watermark: i64,
    first_seen: i64,
    last_seen: i64,
    total_events: i64,
    conversions: i64,
    revenue: &'a Revenue,
    first_touch: &'a Option<Stamped<Arc<Touch>>>,
    user_id: &'a Option<Stamped<String>>,
    device: &'a Option<Stamped<Arc<Device>>>,
    country: &'a Option<Stamped<String>>,
    closed_sessions: i64,
    closed_last_non_direct: &'a Option<Stamped<Arc<Touch>>>,
    closed_sdk_ids: &'a Vec<(String, i64)>,
    open: &'a Vec<Session>,
    seen: &'a HashMap<u64, i64, BuildHasherDefault<PreHashed>>,
    seen_pruned_len: usize,
    journey: JourneyRef<'a>,
}

#[derive(Serialize)]
#[serde(rename = "Journey")]
pub(super) struct JourneyRef<'a> {
    pub(super) activity: &'a Activity,
    pub(super) pages: OpenPages<'a>,
}

/// The open sessions' page sequences, in the order of `open`.
pub(super) struct OpenPages<'a>(pub(super) &'a [Session]);

impl Serialize for OpenPages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|s| &s.pages))
    }
}

#[derive(Deserialize)]
#[serde(rename = "VisitorState")]
struct StateOwned {
    watermark: i64,
    first_seen: i64,
    last_seen: i64,
    total_events: i64,
    conversions: i64,
    revenue: Revenue,
    first_touch: Option<Stamped<Arc<Touch>>>,
    user_id: Option<Stamped<String>>,
    device: Option<Stamped<Arc<Device>>>,
    country: Option<Stamped<String>>,
    closed_sessions: i64,
    closed_last_non_direct: Option<Stamped<Arc<Touch>>>,
    closed_sdk_ids: Vec<(String, i64)>,
    open: Vec<Session>,
    seen: HashMap<u64, i64, BuildHasherDefault<PreHashed>>,
    seen_pruned_len: usize,
    #[serde(default = "Journey::legacy", deserialize_with = "journey_or_legacy")]
    journey: Journey,
}

#[derive(Deserialize)]
#[serde(rename = "Journey")]
struct Journey {
    activity: Activity,
    pages: Vec<Pages>,
}

impl Journey {
    fn legacy() -> Journey {
        Journey {
            activity: Activity::untracked(),
            pages: Vec::new(),
        }
    }
}

/// The journey state, or the legacy marker when the state ends before it. A
/// non-self-describing format (postcard) cannot say "no more fields", only fail at the
/// end of its input, so a failure here is read as an old state's end.
fn journey_or_legacy<'de, D: Deserializer<'de>>(d: D) -> Result<Journey, D::Error> {
    Ok(Journey::deserialize(d).unwrap_or_else(|_| Journey::legacy()))
}

impl Serialize for VisitorState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StateRef {
            watermark: self.watermark,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            total_events: self.total_events,
            conversions: self.conversions,
            revenue: &self.revenue,
            first_touch: &self.first_touch,
            user_id: &self.user_id,
            device: &self.device,
            country: &self.country,
            closed_sessions: self.closed_sessions,
            closed_last_non_direct: &self.closed_last_non_direct,
            closed_sdk_ids: &self.closed_sdk_ids,
            open: &self.open,
            seen: &self.seen,
            seen_pruned_len: self.seen_pruned_len,
            journey: JourneyRef {
                activity: &self.activity,
                pages: OpenPages(&self.open),
            },
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for VisitorState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = StateOwned::deserialize(deserializer)?;
        let mut open = s.open;
        if s.journey.pages.len() == open.len() {
            for (session, pages) in open.iter_mut().zip(s.journey.pages) {
                session.pages = pages;
            }
        } else {
            for session in &mut open {
                session.pages = Pages::untracked();
            }
        }
        Ok(VisitorState {
            watermark: s.watermark,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            total_events: s.total_events,
            conversions: s.conversions,
            revenue: s.revenue,
            first_touch: s.first_touch,
            user_id: s.user_id,
            device: s.device,
            country: s.country,
            closed_sessions: s.closed_sessions,
            closed_last_non_direct: s.closed_last_non_direct,
            closed_sdk_ids: s.closed_sdk_ids,
            open,
            seen: s.seen,
            seen_pruned_len: s.seen_pruned_len,
            activity: s.journey.activity,
        })
    }
}
