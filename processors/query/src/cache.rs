//! The profile cache: hot profiles in memory (moka), kept coherent with the fold
//! processor's flushes through `profiles.changelog`.
//!
//! # How stale can a cached profile be?
//!
//! A profile's version is its `totalEvents`: every change to a profile comes from
//! folding one more event, so the count only grows. The cache never replaces a version
//! with an older one. Three rules keep it coherent:
//!
//! 1. **Changelog first.** Each changelog record bumps a per-stripe counter and then
//!    upserts the profile (or, for a tombstone, evicts it), whether or not the cache
//!    held it. The fold processor publishes a flush's changelog *before* writing the
//!    store, so for a moment the changelog is ahead of the store: inserting the new
//!    version is what stops a store read in that moment from serving the old one.
//!    Eviction is LRU, which admits every new entry: a fresh version stays until
//!    `capacity` other profiles were touched after it, or until its TTL.
//! 2. **No stale fills.** A lookup that misses notes its stripe's counter, reads the
//!    store, and caches what it read only if no changelog record for that stripe
//!    arrived meanwhile and nothing newer is cached; it answers with the newer of the
//!    two.
//! 3. **Not before positioned.** When following the changelog, the cache is bypassed
//!    until the consumer has its start offsets (the topics' ends at start-up), so no
//!    entry is cached from before the point where the consumer starts reading.
//!
//! Ids the store has no profile for (bots, ids never seen) are remembered as absent
//! under rules 1 and 2 alike: a changelog record of the id forgets it, and a store
//! read that found nothing is remembered only if no changelog record of its stripe
//! came meanwhile. Lookups check the profiles first.
//!
//! So once the consumer has applied a flush's record, lookups see that version or a
//! newer one. A lookup can lag the fold processor by the flush interval (the fold
//! processor publishes only when it flushes) plus the consumer's lag. Without the
//! changelog (or while its consumer is down), entries expire after the TTL, which is
//! then the bound.

use std::fmt::Write as _;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;

use funnelfold_core::ProfileRow;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;

use crate::views::ProfileJson;

/// Enough stripes that a changelog record rarely disturbs an unrelated fill.
const STRIPES: usize = 4096;

/// A cache key: the funnel's length, the funnel and the anonymous id, in one string
/// that no two (funnel, id) pairs share. One string, not a pair of them: a lookup
/// builds one key, hashes and compares it once (a lookup of 100 ids spent half its
/// time in the cache, by profile).
type Key = String;

fn key(funnel: &str, anon: &str) -> Key {
    let mut key = String::with_capacity(funnel.len() + anon.len() + 4);
    let _ = write!(key, "{}:{funnel}{anon}", funnel.len());
    key
}

/// The caches' hasher: seeded at random per cache, as std's SipHash is, at a fraction
/// of its cost (SipHash was a tenth of a lookup's time in the cache).
type Hasher = foldhash::fast::RandomState;

/// A cached profile with its JSON, serialized once when cached rather than on every
/// lookup that returns it.
#[derive(Debug)]
pub struct CachedProfile {
    pub row: ProfileRow,
    pub json: Box<[u8]>,
}

impl CachedProfile {
    pub fn new(row: ProfileRow) -> CachedProfile {
        // A struct of strings, integers and string maps always serializes.
        let json = serde_json::to_vec(&ProfileJson::from(&row))
            .unwrap_or_default()
            .into_boxed_slice();
        CachedProfile { row, json }
    }
}

/// Cached profiles by (funnel, anonymous id).
pub struct ProfileCache {
    entries: moka::sync::Cache<Key, Arc<CachedProfile>, Hasher>,
    /// Ids the store had no profile for (bots, ids never seen), under the same rules:
    /// filled only with a ticket no changelog record overtook, dropped by any
    /// changelog record of the id, expiring after the TTL. Without them, every lookup
    /// naming such an id went to the store, however often it was asked.
    absent: moka::sync::Cache<Key, (), Hasher>,
    stripes: Box<[AtomicU64]>,
    enabled: AtomicBool,
}

/// A fill permit: the stripe counter seen before a store read.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stripe: usize,
    seen: u64,
}

fn stripe_of(funnel: &str, anon: &str) -> usize {
    // A fixed seed: the same stripe in every call.
    let h = foldhash::fast::FixedState::with_seed(0).hash_one((funnel, anon));
    (h % STRIPES as u64) as usize
}

/// Whether `candidate` may replace `held`: never with an older version.
fn not_older(candidate: &ProfileRow, held: &ProfileRow) -> bool {
    candidate.total_events >= held.total_events
}

impl ProfileCache {
    /// A cache of `capacity` profiles expiring after `ttl`, enabled at once or only
    /// after [`ProfileCache::enable`].
    pub fn new(capacity: u64, ttl: Duration, enabled: bool) -> ProfileCache {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            // TinyLFU may refuse to admit a fresh changelog version; LRU always admits.
            .eviction_policy(EvictionPolicy::lru())
            .build_with_hasher(Hasher::default());
        let absent = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build_with_hasher(Hasher::default());
        let stripes = (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        ProfileCache {
            entries,
            absent,
            stripes,
            enabled: AtomicBool::new(enabled),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// A cached profile. Take the [`Ticket`] for a fill *before* calling this.
    pub fn get(&self, funnel: &str, anon: &str) -> Option<Arc<CachedProfile>> {
        if !self.is_enabled() {
            return None;
        }
        self.entries.get(&key(funnel, anon))
    }

    /// Whether the store was found to have no profile for the id (and no changelog
    /// record of it came since). Take the [`Ticket`] for a fill *before* calling this.
    pub fn is_absent(&self, funnel: &str, anon: &str) -> bool {
        self.is_enabled() && self.absent.contains_key(&key(funnel, anon))
    }

    /// Records that the store had no profile for the id, unless a changelog record of
    /// its stripe arrived since `ticket` was taken (the read may predate it).
    pub fn fill_absent(&self, funnel: &str, anon: &str, ticket: Ticket) {
        if !self.is_enabled() {
            return;
        }
        let stripe = &self.stripes[ticket.stripe];
        self.absent.entry(key(funnel, anon)).and_compute_with(|_| {
            if stripe.load(Ordering::SeqCst) == ticket.seen {
                Op::Put(())
            } else {
                Op::Nop
            }
        });
    }

    pub fn ticket(&self, funnel: &str, anon: &str) -> Ticket {
        let stripe = stripe_of(funnel, anon);
        Ticket {
            stripe,
            seen: self.stripes[stripe].load(Ordering::SeqCst),
        }
    }

    /// Offers a profile read from the store; returns the freshest known version.
    pub fn fill(&self, row: ProfileRow, ticket: Ticket) -> Arc<CachedProfile> {
        let row = Arc::new(CachedProfile::new(row));
        if !self.is_enabled() {
            return row;
        }
        let key = key(&row.row.funnel_id, &row.row.anonymous_id);
        let mut freshest = Arc::clone(&row);
        let stripe = &self.stripes[ticket.stripe];
        self.entries.entry(key).and_compute_with(|held| {
            let held = held.map(|e| e.into_value());
            match held {
                Some(held) if !not_older(&row.row, &held.row) => {
                    freshest = held;
                    Op::Nop
                }
                // A changelog record of this stripe arrived during the store read:
                // what was read may predate it, so do not keep it.
                _ if stripe.load(Ordering::SeqCst) != ticket.seen => Op::Nop,
                _ => Op::Put(Arc::clone(&row)),
            }
        });
        freshest
    }

    /// Applies one `profiles.changelog` record: a new version (upserted unless an
    /// equal or newer one is held) or a tombstone (evicted).
    pub fn apply_changelog(&self, funnel: &str, anon: &str, row: Option<ProfileRow>) {
        self.stripes[stripe_of(funnel, anon)].fetch_add(1, Ordering::SeqCst);
        let key = key(funnel, anon);
        // After the bump, and under the key's lock as fill_absent is: a fill that
        // decided before the bump is removed here, one after it puts nothing.
        self.absent
            .entry(key.clone())
            .and_compute_with(|_| Op::Remove);
        match row {
            None => self.entries.invalidate(&key),
            Some(row) => {
                let row = Arc::new(CachedProfile::new(row));
                self.entries.entry(key).and_compute_with(|held| match held {
                    Some(held) if !not_older(&row.row, &held.value().row) => Op::Nop,
                    _ => Op::Put(row),
                });
            }
        }
    }

    /// Profiles held (approximate: moka counts lazily).
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serialized answers of a report by its parameters (for the traffic-sources report,
/// (funnel, first day, last day, limit)), kept for a short TTL.
///
/// The report changes only when the fold processor flushes (every second by default)
/// and is the most expensive read (a 90-day range sums thousands of stored shares), so
/// dashboards polling it share one computation per TTL: concurrent requests for a key
/// that is being computed wait for that one computation instead of starting their own.
/// The answer may trail the store by the TTL.
pub struct AnswerCache<K = AnswerKey> {
    entries: Option<moka::future::Cache<K, Bytes>>,
}

/// The key of the traffic and overview answers: (funnel, first day, last day, limit).
pub type AnswerKey = (String, i32, i32, usize);

impl<K> AnswerCache<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A cache keeping answers for `ttl`; a zero TTL turns it off.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build()
        });
        AnswerCache { entries }
    }

    /// The cached answer for `key`, or `compute`'s (cached when it succeeds).
    pub async fn get_or_compute<F, E>(&self, key: K, compute: F) -> Result<Bytes, E>
    where
        F: Future<Output = Result<Bytes, E>>,
        E: Clone + Send + Sync + 'static,
    {
        match &self.entries {
            None => compute.await,
            Some(entries) => entries
                .try_get_with(key, compute)
                .await
                .map_err(|e| (*e).clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use funnelfold_core::Touch;

    fn profile(anon: &str, total_events: i64) -> ProfileRow {
        ProfileRow {
            funnel_id: "f".into(),
            anonymous_id: anon.into(),
            display_name: "Fluffy Panda".into(),
            user_id: None,
            first_seen: 1,
            last_seen: 2,
            total_sessions: 1,
            total_events,
            first_touch: Touch::direct(),
            last_non_direct: None,
            conversions: 0,
            revenue: Default::default(),
            device_type: "desktop".into(),
            browser: "Chrome".into(),
            os: "Linux".into(),
            country: None,
        }
    }

    #[test]
    fn no_two_funnel_and_id_pairs_share_a_key() {
        let pairs = [
            ("ab", "c"),
            ("a", "bc"),
            ("", "abc"),
            ("abc", ""),
            ("1:a", "b"),
        ];
        let keys: std::collections::HashSet<Key> = pairs.iter().map(|(f, a)| key(f, a)).collect();
        assert_eq!(keys.len(), pairs.len(), "{keys:?}");
    }

    #[test]
    fn never_goes_back_to_an_older_version() {
        let cache = ProfileCache::new(100, Duration::from_secs(60), true);
        cache.apply_changelog("f", "a", Some(profile("a", 5)));
        let ticket = cache.ticket("f", "a");
        // A store read that returns an older version (the store lags the changelog).
        let answered = cache.fill(profile("a", 4), ticket);
        assert_eq!(answered.row.total_events, 5);
        assert_eq!(cache.get("f", "a").map(|p| p.row.total_events), Some(5));
        cache.apply_changelog("f", "a", Some(profile("a", 3)));
        assert_eq!(cache.get("f", "a").map(|p| p.row.total_events), Some(5));
    }

    #[test]
    fn a_fill_racing_a_changelog_record_is_not_kept() {
        let cache = ProfileCache::new(100, Duration::from_secs(60), true);
        let ticket = cache.ticket("f", "a");
        // The changelog's tombstone arrives while the store read is in flight.
        cache.apply_changelog("f", "a", None);
        cache.fill(profile("a", 4), ticket);
        assert!(cache.get("f", "a").is_none());
        // The next fill, with a fresh ticket, is kept.
        let ticket = cache.ticket("f", "a");
        cache.fill(profile("a", 4), ticket);
        assert_eq!(cache.get("f", "a").map(|p| p.row.total_events), Some(4));
    }

    /// An id the store had no profile for is remembered, until a changelog record of
    /// it (an upsert or a tombstone) says otherwise.
    #[test]
    fn an_absent_id_is_remembered_until_its_changelog_record() {
        let cache = ProfileCache::new(100, Duration::from_secs(60), true);
        assert!(!cache.is_absent("f", "a"));
        cache.fill_absent("f", "a", cache.ticket("f", "a"));
        assert!(cache.is_absent("f", "a"));
        assert!(!cache.is_absent("f", "b"), "only the id read");
        cache.apply_changelog("f", "a", Some(profile("a", 1)));
        assert!(!cache.is_absent("f", "a"));
        assert_eq!(cache.get("f", "a").map(|p| p.row.total_events), Some(1));
        cache.fill_absent("f", "b", cache.ticket("f", "b"));
        cache.apply_changelog("f", "b", None);
        assert!(!cache.is_absent("f", "b"), "a tombstone forgets it too");
    }

    /// A store read that found nothing is not remembered when a changelog record of
    /// its stripe arrived during the read: the profile may have been made meanwhile.
    #[test]
    fn an_absence_read_before_a_changelog_record_is_not_kept() {
        let cache = ProfileCache::new(100, Duration::from_secs(60), true);
        let ticket = cache.ticket("f", "a");
        cache.apply_changelog("f", "a", Some(profile("a", 1)));
        cache.fill_absent("f", "a", ticket);
        assert!(!cache.is_absent("f", "a"));
        // A disabled cache (not yet positioned on the changelog) keeps nothing.
        let off = ProfileCache::new(100, Duration::from_secs(60), false);
        off.fill_absent("f", "a", off.ticket("f", "a"));
        off.enable();
        assert!(!off.is_absent("f", "a"));
    }

    #[test]
    fn a_disabled_cache_passes_through() {
        let cache = ProfileCache::new(100, Duration::from_secs(60), false);
        let ticket = cache.ticket("f", "a");
        cache.fill(profile("a", 1), ticket);
        assert!(cache.get("f", "a").is_none());
        cache.enable();
        let ticket = cache.ticket("f", "a");
        cache.fill(profile("a", 1), ticket);
        assert!(cache.get("f", "a").is_some());
    }
}
