//! Enrichment: pure functions from a raw event to what the folds need (device, path,
//! host, referrer class, attribution touch, channel).
//!
//! - [`url`]: a small allocation-light URL splitter (host, path, attribution params);
//! - [`referrer`]: the table of known search / social / video / shopping / email sites;
//! - [`channel`]: GA4's default channel group;
//! - [`ua`]: user agent parsing (woothee) behind a bounded memo;
//! - [`bots`]: which user agents are bots (woothee's crawlers and a shipped list).
//!
//! Everything is deterministic: the only state, the user-agent memo, caches a pure
//! function and never changes a result.

pub mod bots;
pub mod channel;
pub mod referrer;
pub mod ua;
pub mod url;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{Event, Money, RawEvent, ReferrerClass, Touch, PAGE_VIEW};

pub use channel::default_channel;
pub use referrer::{classify as classify_referrer, SiteKind};
pub use ua::parse_user_agent;

#[derive(Debug, Clone, Default)]
pub struct EnrichConfig {
    /// Hosts (and their subdomains) whose referrals count as internal.
    pub internal_domains: Vec<String>,
}

/// Turns validated raw events into [`Event`]s. Holds a memo of parsed user agents
/// (a pure function's cache: it never changes a result).
#[derive(Debug, Default)]
pub struct Enricher {
    cfg: EnrichConfig,
    /// `cfg.internal_domains`, normalized once (lower case, no `www.`, no dots around).
    internal: Vec<String>,
    ua: ua::UaMemo,
    touches: TouchMemo,
}

/// Memo of touches by exactly the inputs [`touch`] reads (the selected UTM values, the
/// click ids, the external referrer's source and medium), encoded into a reused buffer
/// so that a hit allocates nothing. Like the UA memo, it never changes a result.
#[derive(Debug)]
struct TouchMemo {
    direct: Arc<Touch>,
    map: HashMap<String, Arc<Touch>>,
    key: String,
}

impl Default for TouchMemo {
    fn default() -> Self {
        TouchMemo {
            direct: Arc::new(Touch::direct()),
            map: HashMap::new(),
            key: String::new(),
        }
    }
}

impl TouchMemo {
    const CAPACITY: usize = 4096;

    fn get(
        &mut self,
        raw: &RawEvent,
        params: &url::QueryParams<'_>,
        external: Option<&referrer::Classified<'_>>,
    ) -> Arc<Touch> {
        let source = utm(raw.utm_source.as_deref(), params.utm_source.as_ref());
        let medium = utm(raw.utm_medium.as_deref(), params.utm_medium.as_ref());
        let campaign = utm(raw.utm_campaign.as_deref(), params.utm_campaign.as_ref());
        let key = &mut self.key;
        key.clear();
        // Each part is followed by NUL and an absent one is a lone U+0001, so two
        // different inputs never share a key; the last byte names the rule.
        if source.is_some() || medium.is_some() || campaign.is_some() {
            for part in [source, medium, campaign] {
                key.push_str(part.unwrap_or("\u{1}"));
                key.push('\0');
            }
            key.push('u');
        } else if params.gclid.is_some() || params.dclid.is_some() {
            key.push('g');
        } else if params.msclkid.is_some() {
            key.push('b');
        } else if let Some(c) = external {
            key.push_str(&c.source);
            key.push('\0');
            key.push_str(c.medium);
            key.push('\0');
            key.push('r');
        } else {
            return Arc::clone(&self.direct);
        }
        if let Some(t) = self.map.get(key.as_str()) {
            return Arc::clone(t);
        }
        let t = Arc::new(touch(raw, params, external));
        if self.map.len() >= Self::CAPACITY {
            self.map.clear();
        }
        self.map.insert(key.clone(), Arc::clone(&t));
        t
    }
}

impl Enricher {
    pub fn new(cfg: EnrichConfig) -> Self {
        let internal = cfg
            .internal_domains
            .iter()
            .filter_map(|d| normalize_domain(d))
            .collect();
        Enricher {
            cfg,
            internal,
            ua: ua::UaMemo::default(),
            touches: TouchMemo::default(),
        }
    }

    /// The configuration this enricher was built with.
    pub fn config(&self) -> &EnrichConfig {
        &self.cfg
    }

    pub fn enrich(&mut self, raw: RawEvent) -> Event {
        let page = raw.url.as_deref().and_then(url::split);
        let page_host = page
            .as_ref()
            .map(|p| p.host.as_ref())
            .filter(|h| !h.is_empty());
        let params = page
            .as_ref()
            .map(|p| url::query_params(p.query))
            .unwrap_or_default();

        // The referrer: none, internal (same site), or external and classified.
        let ref_host = raw.referrer.as_deref().and_then(url::host_of);
        let external = match ref_host.as_deref() {
            Some(h) if !self.is_internal(h, page_host) => Some(referrer::classify(h)),
            _ => None,
        };
        let referrer_class = match (&ref_host, &external) {
            (None, _) => None,
            (Some(_), None) => Some(ReferrerClass::Internal),
            (Some(_), Some(c)) => Some(c.class),
        };

        let touch = self.touches.get(&raw, &params, external.as_ref());
        let path = page.as_ref().map(|p| p.path.to_owned());
        let agent = match raw.user_agent.as_deref() {
            Some(agent) => self.ua.agent(agent),
            None => self.ua.unknown_agent(),
        };
        let country = country(raw.country.as_deref());
        let revenue = revenue(&raw);

        Event {
            is_pageview: raw.event_name == PAGE_VIEW,
            path,
            referrer_class,
            touch,
            device: agent.device,
            bot: agent.bot,
            country,
            is_conversion: raw.is_conversion,
            revenue,
            event_id: raw.event_id,
            funnel_id: raw.funnel_id,
            anonymous_id: raw.anonymous_id,
            // An empty session id would glue all of a visitor's sessions into one named
            // ""; treat it like a missing one so the server sessionizes.
            session_id: raw.session_id.filter(|s| !s.trim().is_empty()),
            user_id: raw.user_id.filter(|s| !s.trim().is_empty()),
            name: raw.event_name,
            timestamp: raw.timestamp,
        }
    }

    /// A referrer is internal when its host is the page's own host, or one of the
    /// configured internal domains or a subdomain of one. (A subdomain of the page's
    /// host is not internal by itself: `blog.example.com` linking to `example.com` is a
    /// referral unless `example.com` is configured, as in GA4.)
    fn is_internal(&self, ref_host: &str, page_host: Option<&str>) -> bool {
        page_host == Some(ref_host)
            || self
                .internal
                .iter()
                .any(|d| is_same_or_subdomain(ref_host, d))
    }
}

/// The attribution an event gives a session it starts (docs/design.md,
/// "Attribution"): UTM parameters, else a click id, else an external referrer, else direct.
fn touch(
    raw: &RawEvent,
    params: &url::QueryParams<'_>,
    external: Option<&referrer::Classified<'_>>,
) -> Touch {
    // Each UTM field comes from the event's own field when that is non-empty, else from
    // the url's query string, independently of the others.
    let source = utm(raw.utm_source.as_deref(), params.utm_source.as_ref());
    let medium = utm(raw.utm_medium.as_deref(), params.utm_medium.as_ref());
    let campaign = utm(raw.utm_campaign.as_deref(), params.utm_campaign.as_ref());

    let (source, medium, campaign) = if source.is_some() || medium.is_some() || campaign.is_some() {
        // 1. UTM. A tagged link that forgot utm_source still carries its medium and
        //    campaign (GA4 shows such traffic as "(not set)" source); utm_term and
        //    utm_content alone do not make a campaign.
        (
            source.map_or_else(|| "(not set)".to_owned(), str::to_lowercase),
            medium.map_or_else(|| "(none)".to_owned(), str::to_lowercase),
            campaign.map_or_else(|| "(not set)".to_owned(), str::to_owned),
        )
    } else if params.gclid.is_some() || params.dclid.is_some() {
        // 2. Click ids: Google Ads / Display & Video 360 auto-tagging ...
        (
            "google".to_owned(),
            "cpc".to_owned(),
            "(not set)".to_owned(),
        )
    } else if params.msclkid.is_some() {
        // ... and Microsoft Advertising's.
        ("bing".to_owned(), "cpc".to_owned(), "(not set)".to_owned())
    } else if let Some(c) = external {
        // 3. An external referrer (internal and same-host referrers were filtered out).
        (
            c.source.to_lowercase(),
            c.medium.to_owned(),
            "(not set)".to_owned(),
        )
    } else {
        // 4. Direct.
        return Touch::direct();
    };
    let channel = default_channel(&source, &medium, &campaign);
    Touch {
        source,
        medium,
        campaign,
        channel,
    }
}

/// A UTM value: the event's field if non-blank, else the query parameter if non-blank;
/// trimmed.
fn utm<'a>(field: Option<&'a str>, query: Option<&'a Cow<'_, str>>) -> Option<&'a str> {
    field
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or_else(|| query.map(|q| q.trim()).filter(|s| !s.is_empty()))
}

/// An ISO 3166 alpha-2 code, upper-cased; anything that is not two ASCII letters
/// (blank, "USA", "T1") is dropped rather than stored as a bogus country.
fn country(c: Option<&str>) -> Option<String> {
    let c = c?.trim();
    (c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic())).then(|| c.to_ascii_uppercase())
}

/// Revenue counts only on conversion events, and only with both an amount and a
/// currency: an amount without a currency cannot be added to anything.
fn revenue(raw: &RawEvent) -> Option<Money> {
    if !raw.is_conversion {
        return None;
    }
    let minor = raw.revenue_minor?;
    let currency = raw
        .currency
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())?;
    Some(Money {
        minor,
        currency: currency.to_ascii_uppercase(),
    })
}

/// Normalizes a configured internal domain: lower case, no scheme or path if a URL was
/// given, no `www.`, no leading `*.`/`.` or trailing `.`. Blank entries are dropped.
fn normalize_domain(d: &str) -> Option<String> {
    let d = d.trim();
    let host = if d.contains("://") {
        url::host_of(d)?
    } else {
        url::normalize_host(d)
    };
    let host = host.trim_start_matches("*.").trim_matches('.');
    let host = host.strip_prefix("www.").unwrap_or(host);
    (!host.is_empty()).then(|| host.to_owned())
}

/// `host == domain` or `host` ends with `.domain`, without allocating.
fn is_same_or_subdomain(host: &str, domain: &str) -> bool {
    match host.strip_suffix(domain) {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Channel, Device};

    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

    fn raw(url: &str, referrer: Option<&str>) -> RawEvent {
        RawEvent {
            event_id: "e1".into(),
            funnel_id: "f1".into(),
            anonymous_id: "a1".into(),
            event_name: PAGE_VIEW.into(),
            timestamp: 1_700_000_000_000,
            url: Some(url.into()),
            referrer: referrer.map(Into::into),
            ..RawEvent::default()
        }
    }

    fn enricher() -> Enricher {
        Enricher::new(EnrichConfig {
            internal_domains: vec![
                "Checkout.Example.NET".into(),
                " https://www.shop-partner.io/ ".into(),
                "".into(),
            ],
        })
    }

    fn touch_of(r: RawEvent) -> (String, String, String, Channel) {
        let t = enricher().enrich(r).touch;
        (
            t.source.clone(),
            t.medium.clone(),
            t.campaign.clone(),
            t.channel,
        )
    }

    fn t(s: &str, m: &str, c: &str, ch: Channel) -> (String, String, String, Channel) {
        (s.into(), m.into(), c.into(), ch)
    }

    #[test]
    fn utm_beats_click_id_beats_referrer() {
        let url = "https://example.com/p?utm_source=Newsletter&utm_medium=EMAIL&utm_campaign=Spring_Sale&gclid=abc";
        assert_eq!(
            touch_of(raw(url, Some("https://www.google.com/"))),
            t("newsletter", "email", "Spring_Sale", Channel::Email)
        );
        let url = "https://example.com/p?gclid=abc&msclkid=def";
        assert_eq!(
            touch_of(raw(url, Some("https://www.bing.com/"))),
            t("google", "cpc", "(not set)", Channel::PaidSearch)
        );
        let url = "https://example.com/p?msclkid=def";
        assert_eq!(
            touch_of(raw(url, Some("https://www.google.com/"))),
            t("bing", "cpc", "(not set)", Channel::PaidSearch)
        );
        let url = "https://example.com/p?dclid=x";
        assert_eq!(touch_of(raw(url, None)).0, "google");
        let url = "https://example.com/p";
        assert_eq!(
            touch_of(raw(url, Some("https://www.google.co.uk/search?q=x"))),
            t("google", "organic", "(not set)", Channel::OrganicSearch)
        );
    }

    #[test]
    fn utm_fields_beat_url_query_one_by_one() {
        let mut r = raw(
            "https://example.com/?utm_source=q_src&utm_medium=q_med&utm_campaign=q_camp",
            None,
        );
        r.utm_source = Some("  Field_Src ".into());
        r.utm_medium = Some("".into());
        assert_eq!(
            touch_of(r),
            t("field_src", "q_med", "q_camp", Channel::Unassigned)
        );
    }

    #[test]
    fn utm_defaults() {
        let r = raw("https://example.com/?utm_source=Facebook", None);
        assert_eq!(
            touch_of(r),
            t("facebook", "(none)", "(not set)", Channel::OrganicSocial)
        );
        let r = raw(
            "https://example.com/?utm_medium=email&utm_campaign=Launch",
            None,
        );
        assert_eq!(
            touch_of(r),
            t("(not set)", "email", "Launch", Channel::Email)
        );
        // utm_term / utm_content alone are not a campaign: the referrer decides.
        let r = raw(
            "https://example.com/?utm_term=shoes&utm_content=a",
            Some("https://duckduckgo.com/"),
        );
        assert_eq!(touch_of(r).0, "duckduckgo");
        // Blank UTM values count as absent.
        let mut r = raw("https://example.com/?utm_source=%20", None);
        r.utm_source = Some(" ".into());
        assert!(enricher().enrich(r).touch.is_direct());
    }

    #[test]
    fn referrer_kinds() {
        let cases = [
            (
                "https://l.facebook.com/l.php?u=x",
                t("facebook", "social", "(not set)", Channel::OrganicSocial),
            ),
            (
                "https://t.co/abc",
                t("twitter", "social", "(not set)", Channel::OrganicSocial),
            ),
            (
                "https://mail.google.com/mail/u/0/",
                t("gmail", "email", "(not set)", Channel::Email),
            ),
            (
                "https://blog.Other-Site.org/post",
                t(
                    "blog.other-site.org",
                    "referral",
                    "(not set)",
                    Channel::Referral,
                ),
            ),
            (
                "https://www.amazon.com/dp/1",
                t(
                    "amazon.com",
                    "referral",
                    "(not set)",
                    Channel::OrganicShopping,
                ),
            ),
        ];
        for (referrer, expected) in cases {
            assert_eq!(
                touch_of(raw("https://example.com/", Some(referrer))),
                expected,
                "{referrer}"
            );
        }
    }

    #[test]
    fn self_referral_is_direct_and_internal() {
        let mut e = enricher();
        let ev = e.enrich(raw(
            "https://www.example.com/b",
            Some("https://EXAMPLE.com/a"),
        ));
        assert!(ev.touch.is_direct());
        assert_eq!(ev.touch.channel, Channel::Direct);
        assert_eq!(ev.referrer_class, Some(ReferrerClass::Internal));
    }

    #[test]
    fn configured_internal_domains_are_direct() {
        let mut e = enricher();
        for referrer in [
            "https://checkout.example.net/pay",
            "https://eu.checkout.example.net/pay",
            "https://www.shop-partner.io/",
            "https://a.shop-partner.io/",
        ] {
            let ev = e.enrich(raw("https://example.com/thanks", Some(referrer)));
            assert!(ev.touch.is_direct(), "{referrer}");
            assert_eq!(
                ev.referrer_class,
                Some(ReferrerClass::Internal),
                "{referrer}"
            );
        }
        // Not a subdomain: a different domain that merely ends the same way.
        let ev = e.enrich(raw(
            "https://example.com/",
            Some("https://notshop-partner.io/"),
        ));
        assert_eq!(ev.touch.source, "notshop-partner.io");
        assert_eq!(ev.referrer_class, Some(ReferrerClass::Referral));
        // A subdomain of the page's host is a referral unless configured.
        let ev = e.enrich(raw(
            "https://example.com/",
            Some("https://blog.example.com/"),
        ));
        assert_eq!(ev.touch.source, "blog.example.com");
    }

    #[test]
    fn www_is_stripped_everywhere() {
        let mut e = enricher();
        let ev = e.enrich(raw(
            "https://WWW.Example.com/Path?x=1#f",
            Some("https://www.some-blog.com/x"),
        ));
        assert_eq!(ev.path.as_deref(), Some("/Path"));
        assert_eq!(ev.touch.source, "some-blog.com");
    }

    #[test]
    fn referrer_class_is_set_even_when_utm_decides() {
        let ev = enricher().enrich(raw(
            "https://example.com/?utm_source=x",
            Some("https://bing.com/"),
        ));
        assert_eq!(ev.referrer_class, Some(ReferrerClass::Search));
        assert_eq!(ev.touch.source, "x");
        let ev = enricher().enrich(raw("https://example.com/", Some("not a url")));
        assert_eq!(
            ev.referrer_class, None,
            "unparseable referrer counts as none"
        );
        assert!(ev.touch.is_direct());
        let ev = enricher().enrich(raw("https://example.com/", Some("")));
        assert_eq!(ev.referrer_class, None);
    }

    #[test]
    fn without_a_page_url_only_configured_domains_are_internal() {
        let mut r = raw("", Some("https://example.com/"));
        r.url = None;
        let ev = enricher().enrich(r);
        assert_eq!(ev.path, None);
        assert_eq!(ev.touch.source, "example.com");
        let ev = enricher().enrich(raw("/pricing?utm_source=a", None));
        assert_eq!(ev.path.as_deref(), Some("/pricing"));
        assert_eq!(ev.touch.source, "a");
    }

    #[test]
    fn device_country_revenue_and_ids() {
        let mut e = enricher();
        let mut r = raw("https://example.com/", None);
        r.event_name = "purchase".into();
        r.user_agent = Some(CHROME_WINDOWS.into());
        r.country = Some(" de ".into());
        r.is_conversion = true;
        r.revenue_minor = Some(4999);
        r.currency = Some("eur".into());
        r.session_id = Some("".into());
        r.user_id = Some("u1".into());
        let ev = e.enrich(r.clone());
        assert!(!ev.is_pageview);
        assert_eq!(ev.name, "purchase");
        assert_eq!(
            *ev.device,
            Device {
                device_type: "desktop".into(),
                browser: "Chrome".into(),
                os: "Windows 10".into()
            }
        );
        assert_eq!(ev.country.as_deref(), Some("DE"));
        assert_eq!(
            ev.revenue,
            Some(Money {
                minor: 4999,
                currency: "EUR".into()
            })
        );
        assert_eq!(ev.session_id, None);
        assert_eq!(ev.user_id.as_deref(), Some("u1"));

        // Not a conversion, or no currency: no revenue.
        let mut r2 = r.clone();
        r2.is_conversion = false;
        assert_eq!(e.enrich(r2).revenue, None);
        let mut r3 = r.clone();
        r3.currency = Some(" ".into());
        assert_eq!(e.enrich(r3).revenue, None);

        // Bad countries are dropped; a missing user agent is an unknown device.
        let mut r4 = r;
        r4.country = Some("USA".into());
        r4.user_agent = None;
        let ev = e.enrich(r4);
        assert_eq!(ev.country, None);
        assert_eq!(ev.device.device_type, "other");
        assert_eq!(ev.device.browser, "Other");
    }

    #[test]
    fn memo_does_not_change_results() {
        let mut e = enricher();
        let mut r = raw("https://example.com/", None);
        r.user_agent = Some(CHROME_WINDOWS.into());
        let first = e.enrich(r.clone());
        let second = e.enrich(r);
        assert_eq!(first, second);
        assert_eq!(e.ua.len(), 1);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let mut e = Enricher::default();
        let odd = [
            "",
            " ",
            "http://",
            "//",
            "?",
            "#",
            "http://[",
            "https://a.com/?utm_source=%",
            "é://x",
            "\u{0}",
        ];
        for u in odd {
            for rf in odd {
                let mut r = raw(u, Some(rf));
                r.user_agent = Some(u.into());
                r.country = Some("é".into());
                r.currency = Some("é".into());
                let _ = e.enrich(r);
            }
        }
    }

    proptest::proptest! {
        /// Any strings at all, in every field enrichment reads: no panic, and the
        /// invariants the folds rely on hold.
        #[test]
        fn arbitrary_input_never_panics(
            url in proptest::option::of(".{0,80}"),
            referrer in proptest::option::of(".{0,80}"),
            ua in proptest::option::of(".{0,80}"),
            utm in proptest::option::of("[a-zA-Z%+ ]{0,12}"),
            country in proptest::option::of(".{0,4}"),
            suffix in "[a-zA-Z0-9%+&=?#/:@.\\[\\]_-]{0,60}",
        ) {
            let mut e = enricher();
            let url = url.map(|u| format!("https://Example.com/{u}?{suffix}"));
            let r = RawEvent {
                url,
                referrer,
                user_agent: ua,
                utm_source: utm.clone(),
                utm_medium: utm.clone(),
                utm_campaign: utm,
                country,
                ..raw("", None)
            };
            let ev = e.enrich(r);
            proptest::prop_assert_eq!(ev.touch.source.to_lowercase(), ev.touch.source.clone());
            proptest::prop_assert_eq!(ev.touch.medium.to_lowercase(), ev.touch.medium.clone());
            proptest::prop_assert!(!ev.touch.source.is_empty() && !ev.touch.medium.is_empty());
            proptest::prop_assert_eq!(
                ev.touch.channel,
                default_channel(&ev.touch.source, &ev.touch.medium, &ev.touch.campaign)
            );
            if let Some(p) = &ev.path {
                proptest::prop_assert!(!p.contains('?') && !p.contains('#') && !p.is_empty());
            }
        }
    }

    #[test]
    fn domain_helpers() {
        assert!(is_same_or_subdomain("a.example.com", "example.com"));
        assert!(is_same_or_subdomain("example.com", "example.com"));
        assert!(!is_same_or_subdomain("badexample.com", "example.com"));
        assert!(!is_same_or_subdomain("example.com", "a.example.com"));
        assert_eq!(
            normalize_domain("*.Example.com."),
            Some("example.com".into())
        );
        assert_eq!(
            normalize_domain(".www.example.com"),
            Some("example.com".into())
        );
        assert_eq!(normalize_domain("  "), None);
    }
}
