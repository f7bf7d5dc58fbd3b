//! Known sites: classify a referrer host as search / social / email / referral, and tell
//! the channel rules which sources are search, social, video or shopping sites.
//!
//! One table serves both uses so that a referral and a hand-written UTM source for the
//! same site land in the same channel (`facebook` from `l.facebook.com` and
//! `utm_source=facebook` are both a social source).
//!
//! Matching is on the host after lower-casing and `www.` stripping: the host itself, then
//! each parent domain (`uk.search.yahoo.com` → `search.yahoo.com` → `yahoo.com`), so the
//! most specific entry wins (`mail.google.com` is Gmail, not Google search). A few brands
//! with many country domains are matched by pattern instead of by listing every one
//! (`google.de`, `google.co.uk`, `google.com.br`, `amazon.fr`, ...).
//!
//! Source names are stable, lower-case, and chosen so that an email provider's name is
//! never also a search/social name (`yahoomail`, not `yahoo`): GA4's channel rules test
//! "source is a search site" before "medium is email", so `yahoo / email` would land in
//! Organic Search.
//!
//! Naming decision: `t.co`, `twitter.com` and `x.com` are all `twitter` (the name has
//! many years of history in reports and UTM conventions; `x` is accepted as an alias by
//! the channel rules).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use crate::event::ReferrerClass;

use super::url::normalize_host;

/// What kind of site a host or a source name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    Search,
    Social,
    /// Video platforms. As referrers they count as social networks (YouTube is where
    /// people share links, and the design lists it with the networks), but GA4's channel
    /// rules keep them apart: `youtube / cpc` is Paid Video, not Paid Social.
    Video,
    /// Shopping sites. As referrers they are plain referrals (source = host), which
    /// GA4's rules then put in Organic Shopping.
    Shopping,
    Email,
}

/// One known site: a host (matched with its subdomains) and the source name it yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    pub host: &'static str,
    pub source: &'static str,
    pub kind: SiteKind,
}

const fn site(host: &'static str, source: &'static str, kind: SiteKind) -> Site {
    Site { host, source, kind }
}

use SiteKind::{Email, Search, Shopping, Social, Video};

/// The known hosts. Hosts are lower-case without `www.`; subdomains match too.
/// `android-app://<package>` referrers (what Android apps send) are listed by package.
pub static SITES: &[Site] = &[
    // Search engines. Google's and Yandex's country domains match by pattern.
    site("google.com", "google", Search),
    site("com.google.android.googlequicksearchbox", "google", Search),
    site("bing.com", "bing", Search),
    site("msn.com", "msn", Search),
    site("duckduckgo.com", "duckduckgo", Search),
    site("yahoo.com", "yahoo", Search),
    site("search.yahoo.com", "yahoo", Search),
    site("yahoo.co.jp", "yahoo", Search),
    site("baidu.com", "baidu", Search),
    site("m.baidu.com", "baidu", Search),
    site("yandex.ru", "yandex", Search),
    site("yandex.com", "yandex", Search),
    site("ya.ru", "yandex", Search),
    site("ecosia.org", "ecosia", Search),
    site("ask.com", "ask", Search),
    site("naver.com", "naver", Search),
    site("search.naver.com", "naver", Search),
    site("qwant.com", "qwant", Search),
    site("startpage.com", "startpage", Search),
    site("search.brave.com", "brave", Search),
    site("aol.com", "aol", Search),
    site("search.aol.com", "aol", Search),
    site("seznam.cz", "seznam", Search),
    site("sogou.com", "sogou", Search),
    site("daum.net", "daum", Search),
    site("kagi.com", "kagi", Search),
    site("mojeek.com", "mojeek", Search),
    // Social networks and messengers.
    site("facebook.com", "facebook", Social),
    site("m.facebook.com", "facebook", Social),
    site("l.facebook.com", "facebook", Social),
    site("lm.facebook.com", "facebook", Social),
    site("fb.com", "facebook", Social),
    site("fb.me", "facebook", Social),
    site("com.facebook.katana", "facebook", Social),
    site("messenger.com", "messenger", Social),
    site("instagram.com", "instagram", Social),
    site("l.instagram.com", "instagram", Social),
    site("t.co", "twitter", Social),
    site("twitter.com", "twitter", Social),
    site("mobile.twitter.com", "twitter", Social),
    site("x.com", "twitter", Social),
    site("com.twitter.android", "twitter", Social),
    site("linkedin.com", "linkedin", Social),
    site("lnkd.in", "linkedin", Social),
    site("com.linkedin.android", "linkedin", Social),
    site("reddit.com", "reddit", Social),
    site("old.reddit.com", "reddit", Social),
    site("out.reddit.com", "reddit", Social),
    site("com.reddit.frontpage", "reddit", Social),
    site("pinterest.com", "pinterest", Social),
    site("pin.it", "pinterest", Social),
    site("tiktok.com", "tiktok", Social),
    site("snapchat.com", "snapchat", Social),
    site("news.ycombinator.com", "hackernews", Social),
    site("quora.com", "quora", Social),
    site("tumblr.com", "tumblr", Social),
    site("vk.com", "vk", Social),
    site("threads.net", "threads", Social),
    site("threads.com", "threads", Social),
    site("mastodon.social", "mastodon", Social),
    site("mastodon.online", "mastodon", Social),
    site("bsky.app", "bluesky", Social),
    site("whatsapp.com", "whatsapp", Social),
    site("web.whatsapp.com", "whatsapp", Social),
    site("wa.me", "whatsapp", Social),
    site("telegram.org", "telegram", Social),
    site("web.telegram.org", "telegram", Social),
    site("t.me", "telegram", Social),
    site("org.telegram.messenger", "telegram", Social),
    site("discord.com", "discord", Social),
    site("discordapp.com", "discord", Social),
    site("discord.gg", "discord", Social),
    site("slack.com", "slack", Social),
    site("com.slack", "slack", Social),
    site("weibo.com", "weibo", Social),
    site("line.me", "line", Social),
    site("medium.com", "medium", Social),
    site("nextdoor.com", "nextdoor", Social),
    // Video platforms (social as referrers, video for the channel rules).
    site("youtube.com", "youtube", Video),
    site("m.youtube.com", "youtube", Video),
    site("music.youtube.com", "youtube", Video),
    site("youtu.be", "youtube", Video),
    site("com.google.android.youtube", "youtube", Video),
    site("vimeo.com", "vimeo", Video),
    site("twitch.tv", "twitch", Video),
    site("dailymotion.com", "dailymotion", Video),
    // Shopping sites (referrals for attribution, Organic Shopping for the channel).
    // Amazon's and eBay's country domains match by pattern.
    site("amazon.com", "amazon", Shopping),
    site("ebay.com", "ebay", Shopping),
    site("etsy.com", "etsy", Shopping),
    site("walmart.com", "walmart", Shopping),
    site("target.com", "target", Shopping),
    site("aliexpress.com", "aliexpress", Shopping),
    site("alibaba.com", "alibaba", Shopping),
    site("shopify.com", "shopify", Shopping),
    site("mercadolibre.com", "mercadolibre", Shopping),
    site("shopping.google.com", "google shopping", Shopping),
    // Webmail. Besides these, any host whose first label is `webmail` or `outlook`
    // (self-hosted Roundcube, Outlook Web Access) is webmail too.
    site("mail.google.com", "gmail", Email),
    site("inbox.google.com", "gmail", Email),
    site("com.google.android.gm", "gmail", Email),
    site("outlook.live.com", "outlook", Email),
    site("outlook.office.com", "outlook", Email),
    site("outlook.office365.com", "outlook", Email),
    site("outlook.com", "outlook", Email),
    site("mail.live.com", "outlook", Email),
    site("mail.yahoo.com", "yahoomail", Email),
    site("mail.aol.com", "aolmail", Email),
    site("mail.proton.me", "protonmail", Email),
    site("mail.protonmail.com", "protonmail", Email),
    site("mail.zoho.com", "zohomail", Email),
    site("mail.zoho.eu", "zohomail", Email),
    site("mail.yandex.ru", "yandexmail", Email),
    site("mail.yandex.com", "yandexmail", Email),
    site("e.mail.ru", "mailru", Email),
    site("mail.naver.com", "navermail", Email),
    site("mail.qq.com", "qqmail", Email),
    site("gmx.net", "gmx", Email),
    site("gmx.de", "gmx", Email),
    site("gmx.com", "gmx", Email),
    site("app.fastmail.com", "fastmail", Email),
    site("app.tuta.com", "tuta", Email),
];

/// Brands with a domain in many countries: `<brand>.<tld>`, `<brand>.co.<cc>` and
/// `<brand>.com.<cc>` all match (`google.de`, `google.co.uk`, `google.com.br`).
static BRANDS: &[Site] = &[
    site("google", "google", Search),
    site("yandex", "yandex", Search),
    site("amazon", "amazon", Shopping),
    site("ebay", "ebay", Shopping),
    site("pinterest", "pinterest", Social),
];

/// Source names that people write in `utm_source` for known sites besides the names in
/// [`SITES`] (GA4's own lists contain these too).
static ALIASES: &[(&str, SiteKind)] = &[
    ("fb", Social),
    ("ig", Social),
    ("x", Social),
    ("tw", Social),
    ("yt", Video),
    ("igshopping", Shopping),
];

/// A fast, unkeyed hash (FxHash's mixing step) for the two static indexes below.
///
/// std's default SipHash is keyed to resist collision flooding, which matters for maps
/// whose *contents* an attacker chooses. These maps hold only the fixed table; an
/// attacker chooses just the probe, and a probe cannot lengthen the fixed table's
/// probe sequences. SipHash cost ~5x more per lookup, and a referral does several.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

fn host_index() -> &'static FxMap<&'static str, &'static Site> {
    static INDEX: OnceLock<FxMap<&'static str, &'static Site>> = OnceLock::new();
    INDEX.get_or_init(|| SITES.iter().map(|s| (s.host, s)).collect())
}

fn name_index() -> &'static FxMap<&'static str, SiteKind> {
    static INDEX: OnceLock<FxMap<&'static str, SiteKind>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = FxMap::default();
        for s in SITES.iter().chain(BRANDS) {
            // First entry wins; the tests check that no name has two kinds.
            m.entry(s.source).or_insert(s.kind);
        }
        for &(name, kind) in ALIASES {
            m.entry(name).or_insert(kind);
        }
        m
    })
}

/// Is `domain` exactly `<brand>.<tld>`, `<brand>.co.<cc>` or `<brand>.com.<cc>`?
fn brand_of(domain: &str) -> Option<&'static Site> {
    // Byte searches rather than `split_once('.')`: this runs for every parent domain
    // of every referral, and `str`'s char searcher costs more than the whole test.
    let (label, rest) = split_label(domain)?;
    let brand = BRANDS.iter().find(|b| b.host == label)?;
    let is_tld = |s: &str| (2..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase());
    let ok = match split_label(rest) {
        None => is_tld(rest),
        Some((second, cc)) => (second == "co" || second == "com") && cc.len() == 2 && is_tld(cc),
    };
    ok.then_some(brand)
}

/// `("a", "b.c")` from `"a.b.c"`; `None` without a dot.
fn split_label(domain: &str) -> Option<(&str, &str)> {
    let dot = domain.bytes().position(|b| b == b'.')?;
    Some((&domain[..dot], &domain[dot + 1..]))
}

/// Hosts whose first label says they are webmail, whatever the domain.
fn webmail_prefix(host: &str) -> Option<&'static str> {
    match split_label(host) {
        Some(("webmail", rest)) if !rest.is_empty() => Some(""),
        Some(("outlook", rest)) if !rest.is_empty() => Some("outlook"),
        _ => None,
    }
}

/// A host matched against the table: `(source name, kind)`. The source name is empty
/// for a generic webmail host (the caller uses the host itself).
///
/// `host` must be normalized (lower case, no `www.`); see [`normalize_host`].
pub fn lookup_host(host: &str) -> Option<(&'static str, SiteKind)> {
    if host.is_empty() {
        return None;
    }
    let index = host_index();
    let mut candidate = host;
    loop {
        if let Some(s) = index
            .get(candidate)
            .copied()
            .or_else(|| brand_of(candidate))
        {
            return Some((s.source, s.kind));
        }
        // After the exact host and before its parents: `webmail.example.com` is webmail
        // even though `example.com` is unknown, and `outlook.example.com` (a company's
        // Outlook Web Access) is Outlook, not whatever `example.com` is.
        if candidate.len() == host.len() {
            if let Some(name) = webmail_prefix(host) {
                return Some((name, Email));
            }
        }
        match split_label(candidate) {
            Some((_, parent)) => candidate = parent,
            None => return None,
        }
    }
}

/// What kind of site a traffic source names, if any: a known name (`google`, `fb`) or a
/// known host (`l.facebook.com`, `google.co.uk`), case-insensitively. Allocation-free
/// for sources up to 128 bytes (longer ones cannot be a name, and hosts that long are
/// lower-cased on the heap: they are rare).
pub fn source_kind(source: &str) -> Option<SiteKind> {
    let source = source.trim();
    if source.is_empty() {
        return None;
    }
    let mut buf = [0u8; 128];
    let owned;
    let lower: &str = if !source.bytes().any(|b| b.is_ascii_uppercase()) {
        source
    } else if let Some(dst) = buf.get_mut(..source.len()) {
        dst.copy_from_slice(source.as_bytes());
        dst.make_ascii_lowercase();
        // ASCII lower-casing keeps UTF-8 valid, so this never fails.
        std::str::from_utf8(dst).ok()?
    } else {
        owned = source.to_ascii_lowercase();
        &owned
    };
    if let Some(&kind) = name_index().get(lower) {
        return Some(kind);
    }
    let host = lower.strip_prefix("www.").unwrap_or(lower);
    lookup_host(host).map(|(_, kind)| kind)
}

/// An external referrer, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    /// Search, Social, Email or Referral (never Internal: the caller decides that).
    pub class: ReferrerClass,
    /// The normalized source name (`google`, `facebook`, `gmail`) or, for a referral or
    /// an unnamed webmail host, the host without `www.`.
    pub source: Cow<'a, str>,
    /// The medium attribution gives it: `organic`, `social`, `email` or `referral`.
    pub medium: &'static str,
}

/// Classifies an external referrer host (normalized here if it is not already).
pub fn classify(host: &str) -> Classified<'_> {
    let host = normalize_host(host);
    // The table's name for the site, or the host itself for an unnamed webmail host.
    fn named<'a>(name: &'static str, host: Cow<'a, str>) -> Cow<'a, str> {
        if name.is_empty() {
            host
        } else {
            Cow::Borrowed(name)
        }
    }
    match lookup_host(&host) {
        Some((name, Search)) => Classified {
            class: ReferrerClass::Search,
            source: named(name, host),
            medium: "organic",
        },
        Some((name, Social | Video)) => Classified {
            class: ReferrerClass::Social,
            source: named(name, host),
            medium: "social",
        },
        Some((name, Email)) => Classified {
            class: ReferrerClass::Email,
            source: named(name, host),
            medium: "email",
        },
        Some((_, Shopping)) | None => Classified {
            class: ReferrerClass::Referral,
            source: host,
            medium: "referral",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(host: &str) -> (ReferrerClass, String, &'static str) {
        let c = classify(host);
        (c.class, c.source.into_owned(), c.medium)
    }

    #[test]
    fn table_has_at_least_40_entries() {
        assert!(SITES.len() >= 40, "only {} known sites", SITES.len());
    }

    #[test]
    fn table_is_normalized_and_unambiguous() {
        let mut hosts = std::collections::HashSet::new();
        for s in SITES {
            assert!(hosts.insert(s.host), "duplicate host {}", s.host);
            assert_eq!(s.host, s.host.to_ascii_lowercase());
            assert!(!s.host.starts_with("www."), "{}", s.host);
            assert_eq!(s.source, s.source.to_ascii_lowercase());
            // Every host finds its own entry.
            assert_eq!(lookup_host(s.host), Some((s.source, s.kind)), "{}", s.host);
        }
        // A name means one kind of site, else the channel rules would be ambiguous.
        let mut kinds: HashMap<&str, SiteKind> = HashMap::new();
        for (name, kind) in SITES
            .iter()
            .chain(BRANDS)
            .map(|s| (s.source, s.kind))
            .chain(ALIASES.iter().copied())
        {
            let prev = *kinds.entry(name).or_insert(kind);
            assert_eq!(prev, kind, "source name {name} has two kinds");
        }
    }

    #[test]
    fn every_entry_classifies_as_its_kind() {
        for s in SITES {
            let c = classify(s.host);
            let expected = match s.kind {
                Search => (ReferrerClass::Search, s.source, "organic"),
                Social | Video => (ReferrerClass::Social, s.source, "social"),
                Email => (ReferrerClass::Email, s.source, "email"),
                Shopping => (ReferrerClass::Referral, s.host, "referral"),
            };
            assert_eq!(
                (c.class, c.source.as_ref(), c.medium),
                expected,
                "{}",
                s.host
            );
        }
    }

    #[test]
    fn google_country_domains_and_subdomains() {
        for host in [
            "google.com",
            "google.de",
            "google.co.uk",
            "google.com.br",
            "google.fr",
            "news.google.co.jp",
        ] {
            assert_eq!(
                class(host),
                (ReferrerClass::Search, "google".into(), "organic"),
                "{host}"
            );
        }
        // Not Google: look-alikes and other brands' pages.
        assert_eq!(class("google.evil.com").0, ReferrerClass::Referral);
        assert_eq!(class("google.com.evil.io").0, ReferrerClass::Referral);
        assert_eq!(class("notgoogle.com").0, ReferrerClass::Referral);
        assert_eq!(class("google.co.ukx").0, ReferrerClass::Referral);
        // The most specific entry wins.
        assert_eq!(
            class("mail.google.com"),
            (ReferrerClass::Email, "gmail".into(), "email")
        );
        assert_eq!(class("shopping.google.com").0, ReferrerClass::Referral);
    }

    #[test]
    fn search_engines() {
        for (host, name) in [
            ("bing.com", "bing"),
            ("cn.bing.com", "bing"),
            ("duckduckgo.com", "duckduckgo"),
            ("yahoo.com", "yahoo"),
            ("uk.search.yahoo.com", "yahoo"),
            ("baidu.com", "baidu"),
            ("yandex.ru", "yandex"),
            ("yandex.com.tr", "yandex"),
            ("ecosia.org", "ecosia"),
            ("ask.com", "ask"),
            ("naver.com", "naver"),
            ("qwant.com", "qwant"),
            ("startpage.com", "startpage"),
            ("search.brave.com", "brave"),
        ] {
            assert_eq!(
                class(host),
                (ReferrerClass::Search, name.into(), "organic"),
                "{host}"
            );
        }
    }

    #[test]
    fn social_networks() {
        for (host, name) in [
            ("facebook.com", "facebook"),
            ("m.facebook.com", "facebook"),
            ("l.facebook.com", "facebook"),
            ("lm.facebook.com", "facebook"),
            ("instagram.com", "instagram"),
            ("l.instagram.com", "instagram"),
            ("t.co", "twitter"),
            ("twitter.com", "twitter"),
            ("x.com", "twitter"),
            ("linkedin.com", "linkedin"),
            ("lnkd.in", "linkedin"),
            ("reddit.com", "reddit"),
            ("old.reddit.com", "reddit"),
            ("pinterest.com", "pinterest"),
            ("pinterest.co.uk", "pinterest"),
            ("youtube.com", "youtube"),
            ("m.youtube.com", "youtube"),
            ("tiktok.com", "tiktok"),
            ("snapchat.com", "snapchat"),
            ("news.ycombinator.com", "hackernews"),
            ("quora.com", "quora"),
            ("tumblr.com", "tumblr"),
            ("vk.com", "vk"),
            ("threads.net", "threads"),
            ("mastodon.social", "mastodon"),
            ("whatsapp.com", "whatsapp"),
            ("web.whatsapp.com", "whatsapp"),
            ("telegram.org", "telegram"),
            ("t.me", "telegram"),
            ("discord.com", "discord"),
        ] {
            assert_eq!(
                class(host),
                (ReferrerClass::Social, name.into(), "social"),
                "{host}"
            );
        }
    }

    #[test]
    fn webmail() {
        for (host, name) in [
            ("mail.google.com", "gmail"),
            ("outlook.live.com", "outlook"),
            ("outlook.office.com", "outlook"),
            ("outlook.office365.com", "outlook"),
            ("outlook.example.org", "outlook"),
            ("mail.yahoo.com", "yahoomail"),
            ("uk.mail.yahoo.com", "yahoomail"),
            ("mail.aol.com", "aolmail"),
            ("mail.proton.me", "protonmail"),
            ("mail.zoho.com", "zohomail"),
            ("webmail.ionos.de", "webmail.ionos.de"),
            ("com.google.android.gm", "gmail"),
        ] {
            assert_eq!(
                class(host),
                (ReferrerClass::Email, name.into(), "email"),
                "{host}"
            );
        }
        assert_eq!(
            class("webmail").0,
            ReferrerClass::Referral,
            "a bare label is not a webmail host"
        );
    }

    #[test]
    fn unknown_hosts_are_referrals_named_by_host() {
        assert_eq!(
            class("blog.example.com"),
            (
                ReferrerClass::Referral,
                "blog.example.com".into(),
                "referral"
            )
        );
        assert_eq!(
            class("WWW.Example.COM"),
            (ReferrerClass::Referral, "example.com".into(), "referral")
        );
        assert_eq!(
            class("amazon.de"),
            (ReferrerClass::Referral, "amazon.de".into(), "referral")
        );
        assert_eq!(class("[::1]").0, ReferrerClass::Referral);
        assert_eq!(class("").0, ReferrerClass::Referral);
        assert_eq!(class("com").0, ReferrerClass::Referral);
    }

    #[test]
    fn source_kinds_by_name_and_host() {
        assert_eq!(source_kind("google"), Some(Search));
        assert_eq!(source_kind("Google"), Some(Search));
        assert_eq!(source_kind("www.google.co.uk"), Some(Search));
        assert_eq!(source_kind("fb"), Some(Social));
        assert_eq!(source_kind("l.facebook.com"), Some(Social));
        assert_eq!(source_kind("youtube"), Some(Video));
        assert_eq!(source_kind("amazon.fr"), Some(Shopping));
        assert_eq!(source_kind("gmail"), Some(Email));
        assert_eq!(source_kind("newsletter"), None);
        assert_eq!(source_kind(""), None);
        assert_eq!(source_kind(&"A".repeat(300)), None);
        assert_eq!(
            source_kind(&format!("{}.GOOGLE.com", "a".repeat(200))),
            Some(Search)
        );
    }
}
