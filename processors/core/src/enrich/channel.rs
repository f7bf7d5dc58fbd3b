//! GA4's default channel group, computed from (source, medium, campaign).
//!
//! The rules and their order follow Google's "[GA4] Default channel group" definition;
//! the first rule that matches wins. GA4 writes several of them as regular expressions;
//! here each is hand-written (no regex engine, no allocation) with the original
//! expression quoted beside it. Comparisons ignore ASCII case: enrichment lower-cases
//! source and medium already, but campaign names keep their case and this function is
//! public.
//!
//! "Search / social / video / shopping site" means the source is a known name or host of
//! that kind in the table of [`super::referrer`] (GA4 ships its own lists; ours is the
//! same table the referrer classification uses, so the two can never disagree).

use crate::event::Channel;

use super::referrer::{source_kind, SiteKind};

/// The GA4 default channel of a traffic source.
pub fn default_channel(source: &str, medium: &str, campaign: &str) -> Channel {
    // Direct: source exactly "(direct)" and medium "(none)" or "(not set)".
    if source.eq_ignore_ascii_case("(direct)") && (is_one_of(medium, &["(none)", "(not set)"])) {
        return Channel::Direct;
    }
    // Cross-network: campaign name contains "cross-network" (Performance Max and other
    // campaigns that serve on several networks at once).
    if contains_ci(campaign, "cross-network") {
        return Channel::CrossNetwork;
    }

    // Only now look the source up: direct traffic, the bulk of events, never pays for it.
    let kind = source_kind(source);
    let paid = is_paid_medium(medium);
    let shop_campaign = is_shopping_campaign(campaign);

    // Paid Shopping: (shopping site or shopping campaign) and a paid medium.
    if paid && (kind == Some(SiteKind::Shopping) || shop_campaign) {
        return Channel::PaidShopping;
    }
    // Paid Search: search site and a paid medium (`google / cpc` from a gclid lands here).
    if paid && kind == Some(SiteKind::Search) {
        return Channel::PaidSearch;
    }
    // Paid Social: social site and a paid medium.
    if paid && kind == Some(SiteKind::Social) {
        return Channel::PaidSocial;
    }
    // Paid Video: video site and a paid medium.
    if paid && kind == Some(SiteKind::Video) {
        return Channel::PaidVideo;
    }
    // Display: medium is one of display, banner, expandable, interstitial, cpm.
    if is_one_of(
        medium,
        &["display", "banner", "expandable", "interstitial", "cpm"],
    ) {
        return Channel::Display;
    }
    // Paid Other: a paid medium from a source of no known kind.
    if paid {
        return Channel::PaidOther;
    }
    // Organic Shopping: shopping site or shopping campaign.
    if kind == Some(SiteKind::Shopping) || shop_campaign {
        return Channel::OrganicShopping;
    }
    // Organic Social: social site or medium is one of social, social-network,
    // social-media, sm, "social network", "social media".
    if kind == Some(SiteKind::Social)
        || is_one_of(
            medium,
            &[
                "social",
                "social-network",
                "social-media",
                "sm",
                "social network",
                "social media",
            ],
        )
    {
        return Channel::OrganicSocial;
    }
    // Organic Video: video site or medium matches ^(.*video.*)$.
    if kind == Some(SiteKind::Video) || contains_ci(medium, "video") {
        return Channel::OrganicVideo;
    }
    // Organic Search: search site or medium exactly "organic".
    if kind == Some(SiteKind::Search) || medium.eq_ignore_ascii_case("organic") {
        return Channel::OrganicSearch;
    }
    // Email: source or medium is one of email, e-mail, e_mail, "e mail". (Webmail
    // referrals get medium "email", so they land here by medium.)
    const EMAIL: &[&str] = &["email", "e-mail", "e_mail", "e mail"];
    if is_one_of(source, EMAIL) || is_one_of(medium, EMAIL) {
        return Channel::Email;
    }
    // Affiliates: medium exactly "affiliate".
    if medium.eq_ignore_ascii_case("affiliate") {
        return Channel::Affiliates;
    }
    // Referral: medium is one of referral, app, link.
    if is_one_of(medium, &["referral", "app", "link"]) {
        return Channel::Referral;
    }
    // Audio: medium exactly "audio".
    if medium.eq_ignore_ascii_case("audio") {
        return Channel::Audio;
    }
    // SMS: source or medium exactly "sms".
    if source.eq_ignore_ascii_case("sms") || medium.eq_ignore_ascii_case("sms") {
        return Channel::Sms;
    }
    // Mobile Push Notifications: medium ends with "push", or contains "mobile" or
    // "notification", or source exactly "firebase".
    if ends_with_ci(medium, "push")
        || contains_ci(medium, "mobile")
        || contains_ci(medium, "notification")
        || source.eq_ignore_ascii_case("firebase")
    {
        return Channel::MobilePush;
    }
    // Unassigned: nothing matched (e.g. a UTM source with medium "(none)").
    Channel::Unassigned
}

/// GA4's paid medium: `^(.*cp.*|ppc|retargeting|paid.*)$` (cpc, cpm, cpv, cpa, ppc,
/// retargeting, paid_social, ...).
pub fn is_paid_medium(medium: &str) -> bool {
    contains_ci(medium, "cp")
        || medium.eq_ignore_ascii_case("ppc")
        || medium.eq_ignore_ascii_case("retargeting")
        || starts_with_ci(medium, "paid")
}

/// GA4's shopping campaign: `^(.*(([^a-df-z]|^)shop|shopping).*)$`, i.e. the campaign
/// contains "shopping", or contains "shop" at the start or after a character that is
/// not a letter other than `e` ("shop_sale", "e-shop", "eshop" match; "workshop" does
/// not).
pub fn is_shopping_campaign(campaign: &str) -> bool {
    if contains_ci(campaign, "shopping") {
        return true;
    }
    let bytes = campaign.as_bytes();
    let mut from = 0;
    while let Some(i) = find_ci(bytes, b"shop", from) {
        let before_ok = match i.checked_sub(1).and_then(|j| bytes.get(j)) {
            None => true,
            Some(&b) => {
                let b = b.to_ascii_lowercase();
                // Bytes of a non-ASCII character are never ASCII letters, so they pass,
                // exactly as the non-ASCII character passes `[^a-df-z]`.
                !(b.is_ascii_lowercase() && b != b'e')
            }
        };
        if before_ok {
            return true;
        }
        from = i + 1;
    }
    false
}

fn is_one_of(s: &str, options: &[&str]) -> bool {
    options.iter().any(|o| s.eq_ignore_ascii_case(o))
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len()
        .checked_sub(suffix.len())
        .and_then(|i| s.as_bytes().get(i..))
        .is_some_and(|p| p.eq_ignore_ascii_case(suffix.as_bytes()))
}

fn contains_ci(s: &str, needle: &str) -> bool {
    find_ci(s.as_bytes(), needle.as_bytes(), 0).is_some()
}

/// Index of the first ASCII-case-insensitive occurrence of `needle` at or after `from`.
/// Works on bytes: the needles are ASCII, so a match can never split a character.
fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(hay.len()));
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::referrer::SITES;

    const NS: &str = "(not set)";

    #[test]
    fn direct() {
        assert_eq!(default_channel("(direct)", "(none)", NS), Channel::Direct);
        assert_eq!(
            default_channel("(direct)", "(not set)", NS),
            Channel::Direct
        );
        assert_ne!(default_channel("(direct)", "email", NS), Channel::Direct);
    }

    #[test]
    fn cross_network() {
        assert_eq!(
            default_channel("google", "cpc", "PMax Cross-Network Q3"),
            Channel::CrossNetwork
        );
        assert_eq!(
            default_channel("(direct)", "(none)", "cross-network"),
            Channel::Direct,
            "Direct comes first"
        );
    }

    #[test]
    fn paid_shopping() {
        assert_eq!(default_channel("amazon", "cpc", NS), Channel::PaidShopping);
        assert_eq!(
            default_channel("google", "cpc", "Summer_Shopping"),
            Channel::PaidShopping
        );
        assert_eq!(
            default_channel("newsletter", "paid", "eshop-promo"),
            Channel::PaidShopping
        );
    }

    #[test]
    fn paid_search() {
        assert_eq!(default_channel("google", "cpc", NS), Channel::PaidSearch);
        assert_eq!(default_channel("bing", "ppc", NS), Channel::PaidSearch);
        assert_eq!(
            default_channel("google.co.uk", "retargeting", NS),
            Channel::PaidSearch
        );
    }

    #[test]
    fn paid_social() {
        assert_eq!(
            default_channel("facebook", "paid_social", NS),
            Channel::PaidSocial
        );
        assert_eq!(default_channel("fb", "cpc", NS), Channel::PaidSocial);
        assert_eq!(
            default_channel("linkedin", "cpm", NS),
            Channel::PaidSocial,
            "paid social beats display"
        );
    }

    #[test]
    fn paid_video() {
        assert_eq!(default_channel("youtube", "cpv", NS), Channel::PaidVideo);
        assert_eq!(default_channel("vimeo", "paid", NS), Channel::PaidVideo);
    }

    #[test]
    fn display() {
        assert_eq!(default_channel("dv360", "display", NS), Channel::Display);
        assert_eq!(
            default_channel("adnet", "cpm", NS),
            Channel::Display,
            "cpm is display before paid other"
        );
        assert_eq!(default_channel("adnet", "Banner", NS), Channel::Display);
    }

    #[test]
    fn paid_other() {
        assert_eq!(default_channel("partner", "cpc", NS), Channel::PaidOther);
        assert_eq!(
            default_channel("partner", "paidsearch", NS),
            Channel::PaidOther
        );
    }

    #[test]
    fn organic_shopping() {
        assert_eq!(
            default_channel("amazon.de", "referral", NS),
            Channel::OrganicShopping
        );
        assert_eq!(
            default_channel("newsletter", "email", "shop_launch"),
            Channel::OrganicShopping
        );
        assert_eq!(
            default_channel("partner", "referral", "workshop"),
            Channel::Referral,
            "workshop is no shop"
        );
    }

    #[test]
    fn organic_social() {
        assert_eq!(
            default_channel("facebook", "social", NS),
            Channel::OrganicSocial
        );
        assert_eq!(
            default_channel("l.instagram.com", "referral", NS),
            Channel::OrganicSocial
        );
        assert_eq!(
            default_channel("forum", "social media", NS),
            Channel::OrganicSocial
        );
        assert_eq!(
            default_channel("youtube", "social", NS),
            Channel::OrganicSocial,
            "medium social wins over video"
        );
    }

    #[test]
    fn organic_video() {
        assert_eq!(
            default_channel("youtube", "referral", NS),
            Channel::OrganicVideo
        );
        assert_eq!(
            default_channel("partner", "Video-Embed", NS),
            Channel::OrganicVideo
        );
    }

    #[test]
    fn organic_search() {
        assert_eq!(
            default_channel("google", "organic", NS),
            Channel::OrganicSearch
        );
        assert_eq!(
            default_channel("duckduckgo", "referral", NS),
            Channel::OrganicSearch
        );
        assert_eq!(
            default_channel("anything", "organic", NS),
            Channel::OrganicSearch
        );
    }

    #[test]
    fn email() {
        assert_eq!(default_channel("gmail", "email", NS), Channel::Email);
        assert_eq!(default_channel("newsletter", "e-mail", NS), Channel::Email);
        assert_eq!(default_channel("email", "(none)", NS), Channel::Email);
    }

    #[test]
    fn affiliates() {
        assert_eq!(
            default_channel("partner", "affiliate", NS),
            Channel::Affiliates
        );
    }

    #[test]
    fn referral() {
        assert_eq!(
            default_channel("example.com", "referral", NS),
            Channel::Referral
        );
        assert_eq!(default_channel("partner", "link", NS), Channel::Referral);
        assert_eq!(default_channel("partner", "app", NS), Channel::Referral);
    }

    #[test]
    fn audio() {
        assert_eq!(default_channel("spotify", "audio", NS), Channel::Audio);
    }

    #[test]
    fn sms() {
        assert_eq!(default_channel("sms", "(none)", NS), Channel::Sms);
        assert_eq!(default_channel("twilio", "SMS", NS), Channel::Sms);
    }

    #[test]
    fn mobile_push() {
        assert_eq!(default_channel("app", "web-push", NS), Channel::MobilePush);
        assert_eq!(default_channel("app", "mobile", NS), Channel::MobilePush);
        assert_eq!(
            default_channel("app", "in-app-notification", NS),
            Channel::MobilePush
        );
        assert_eq!(
            default_channel("firebase", "(none)", NS),
            Channel::MobilePush
        );
    }

    #[test]
    fn unassigned() {
        assert_eq!(
            default_channel("newsletter", "(none)", NS),
            Channel::Unassigned
        );
        assert_eq!(default_channel("", "", ""), Channel::Unassigned);
        assert_eq!(
            default_channel("(not set)", "(not set)", NS),
            Channel::Unassigned
        );
    }

    /// Attribution's (source, medium) for every known referrer lands in the channel its
    /// kind implies; in particular no webmail provider is mistaken for a search engine.
    #[test]
    fn referrer_table_and_channels_agree() {
        for s in SITES {
            let c = crate::enrich::referrer::classify(s.host);
            let expected = match s.kind {
                SiteKind::Search => Channel::OrganicSearch,
                SiteKind::Social | SiteKind::Video => Channel::OrganicSocial,
                SiteKind::Email => Channel::Email,
                SiteKind::Shopping => Channel::OrganicShopping,
            };
            assert_eq!(
                default_channel(&c.source, c.medium, NS),
                expected,
                "{}",
                s.host
            );
        }
    }

    #[test]
    fn helpers() {
        assert!(is_paid_medium("cpc") && is_paid_medium("CPM") && is_paid_medium("paid_social"));
        assert!(is_paid_medium("ppc") && is_paid_medium("retargeting") && is_paid_medium("xcpx"));
        assert!(!is_paid_medium("pc") && !is_paid_medium("unpaid") && !is_paid_medium(""));
        assert!(
            is_shopping_campaign("Shop")
                && is_shopping_campaign("e-shop")
                && is_shopping_campaign("eshop")
        );
        assert!(
            is_shopping_campaign("1shop")
                && is_shopping_campaign("éshop")
                && is_shopping_campaign("workshopping")
        );
        assert!(
            !is_shopping_campaign("workshop")
                && !is_shopping_campaign("bishop")
                && !is_shopping_campaign("")
        );
        assert!(ends_with_ci("WebPush", "push") && !ends_with_ci("pu", "push"));
    }
}
