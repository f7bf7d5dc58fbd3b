//! User agent → device type, browser and OS, via woothee.
//!
//! woothee is a dataset-driven parser (a few regexes and substring tests); at a few
//! microseconds per call it is far too slow for every event, so the [`UaMemo`] in front
//! of it caches results: a site sees a few thousand distinct user agents, not millions.
//! The memo also keeps whether the agent is a bot ([`super::bots`]), which costs more.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use woothee::parser::Parser;
use woothee::woothee::VALUE_UNKNOWN;

use crate::event::Device;

/// What an unknown or missing user agent reports.
pub const OTHER: &str = "Other";

/// Longest user agent we look at. Real ones stay well under 512 bytes; a longer one is
/// junk or an attack, and cutting it bounds both parse time and memo memory (the memo
/// keys are the cut strings).
pub const MAX_UA_LEN: usize = 1024;

/// The device of a visitor with no (or an unrecognizable) user agent.
pub fn unknown_device() -> Device {
    Device {
        device_type: "other".into(),
        browser: OTHER.into(),
        os: OTHER.into(),
    }
}

/// Parses a user agent into a [`Device`].
///
/// `device_type` is one of `desktop`, `mobile`, `tablet`, `bot`, `other`; `browser` and
/// `os` are woothee's names (`Chrome`, `Safari`, `Googlebot`; `Windows 10`, `Mac OSX`,
/// `iPhone`, `Android`), or `Other` when woothee does not know them.
pub fn parse_user_agent(ua: &str) -> Device {
    let ua = truncate(ua.trim_ascii(), MAX_UA_LEN);
    if ua.is_empty() {
        return unknown_device();
    }
    // woothee unwraps regex captures internally. Those unwraps look sound, but it is
    // third-party code fed attacker-controlled strings, and a panic here would take the
    // partition down with it (docs/design.md: bad input never panics a processor). The
    // closure only reads `ua`, so unwinding cannot leave state half-updated.
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        Parser::new().parse(ua).map(|r| (r.category, r.name, r.os))
    }));
    let Ok(Some((category, name, os))) = parsed else {
        return unknown_device();
    };
    let device_type = match category {
        "pc" => "desktop",
        "smartphone" | "mobilephone" if is_tablet(ua) => "tablet",
        "smartphone" | "mobilephone" => "mobile",
        "crawler" => "bot",
        // "appliance" (consoles, TVs), "misc" (HTTP libraries, feed readers), unknown.
        _ => "other",
    };
    let known = |s: &str| {
        if s.is_empty() || s == VALUE_UNKNOWN {
            OTHER.to_owned()
        } else {
            s.to_owned()
        }
    };
    Device {
        device_type: device_type.into(),
        browser: known(name),
        os: known(os),
    }
}

/// woothee reports tablets as smartphones. iPads say `iPad`; Android tablets follow
/// Google's convention of leaving `Mobile` out of the UA (phones include it); a few
/// browsers (Firefox, Kindle) say `Tablet` outright. iPadOS 13+ Safari by default
/// sends a desktop Mac UA and is indistinguishable from a Mac here: it counts as desktop.
fn is_tablet(ua: &str) -> bool {
    ua.contains("iPad")
        || ua.contains("Tablet")
        || (ua.contains("Android") && !ua.contains("Mobile"))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What a user agent says: the device, and the bot's name when it is a bot.
#[derive(Debug, Clone)]
pub struct Agent {
    pub device: Arc<Device>,
    pub bot: Option<Arc<str>>,
}

/// A bounded memo of parsed user agents.
///
/// Parsing is a pure function, so the memo never changes a result; it is only cleared
/// when full (rather than evicting least-recently-used entries) because that is simple,
/// allocation-free per hit and, at the sizes involved, just as effective: a working set
/// of user agents refills in a few thousand events.
#[derive(Debug)]
pub struct UaMemo {
    // foldhash: seeded per process, several times faster than SipHash on a 100-byte
    // user agent; and the memo is bounded, so a flood of colliding keys costs little.
    map: HashMap<String, Agent, foldhash::fast::RandomState>,
    unknown: Arc<Device>,
    capacity: usize,
}

impl Default for UaMemo {
    fn default() -> Self {
        UaMemo::with_capacity(UaMemo::DEFAULT_CAPACITY)
    }
}

impl UaMemo {
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A memo holding at most `capacity` user agents (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        UaMemo {
            map: HashMap::default(),
            unknown: Arc::new(unknown_device()),
            capacity: capacity.max(1),
        }
    }

    /// The device of `ua`, parsed once per distinct (truncated) user agent.
    pub fn device(&mut self, ua: &str) -> Arc<Device> {
        self.agent(ua).device
    }

    /// The device and bot name of `ua`, worked out once per distinct (truncated) user
    /// agent.
    pub fn agent(&mut self, ua: &str) -> Agent {
        let ua = truncate(ua.trim_ascii(), MAX_UA_LEN);
        if ua.is_empty() {
            return self.unknown_agent();
        }
        if let Some(a) = self.map.get(ua) {
            return a.clone();
        }
        let device = parse_user_agent(ua);
        let bot = super::bots::bot_name(ua, &device).map(Arc::from);
        let a = Agent {
            device: Arc::new(device),
            bot,
        };
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(ua.to_owned(), a.clone());
        a
    }

    /// What an event without a user agent is: an unknown device, not a bot.
    pub fn unknown_agent(&self) -> Agent {
        Agent {
            device: Arc::clone(&self.unknown),
            bot: None,
        }
    }

    /// The device of an event without a user agent.
    pub fn unknown(&self) -> Arc<Device> {
        Arc::clone(&self.unknown)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(ua: &str) -> (String, String, String) {
        let d = parse_user_agent(ua);
        (d.device_type, d.browser, d.os)
    }

    const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const SAFARI_IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const CHROME_ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const CHROME_ANDROID_PHONE: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const GOOGLEBOT_SMARTPHONE: &str = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const FIREFOX_MAC: &str =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0";

    #[test]
    fn chrome_on_windows_is_desktop() {
        assert_eq!(
            dev(CHROME_WINDOWS),
            ("desktop".into(), "Chrome".into(), "Windows 10".into())
        );
        assert_eq!(
            dev(FIREFOX_MAC),
            ("desktop".into(), "Firefox".into(), "Mac OSX".into())
        );
    }

    #[test]
    fn safari_on_iphone_is_mobile() {
        assert_eq!(
            dev(SAFARI_IPHONE),
            ("mobile".into(), "Safari".into(), "iPhone".into())
        );
        assert_eq!(
            dev(CHROME_ANDROID_PHONE),
            ("mobile".into(), "Chrome".into(), "Android".into())
        );
    }

    #[test]
    fn ipad_and_android_tablet_are_tablets() {
        assert_eq!(
            dev(SAFARI_IPAD),
            ("tablet".into(), "Safari".into(), "iPad".into())
        );
        assert_eq!(
            dev(CHROME_ANDROID_TABLET),
            ("tablet".into(), "Chrome".into(), "Android".into())
        );
    }

    #[test]
    fn googlebot_is_a_bot() {
        assert_eq!(dev(GOOGLEBOT).0, "bot");
        assert_eq!(dev(GOOGLEBOT).1, "Googlebot");
        assert_eq!(
            dev(GOOGLEBOT_SMARTPHONE).0,
            "bot",
            "a bot with a phone UA is still a bot"
        );
    }

    #[test]
    fn garbage_and_empty_are_other() {
        let other = ("other".to_owned(), OTHER.to_owned(), OTHER.to_owned());
        assert_eq!(dev(""), other);
        assert_eq!(dev("   "), other);
        assert_eq!(dev("-"), other);
        assert_eq!(dev("asdf qwerty 123"), other);
        assert_eq!(dev("\u{0}\u{fffd}é漢字"), other);
        // Long junk is cut (on a char boundary) rather than parsed whole.
        let long = "é".repeat(5000);
        assert_eq!(dev(&long).0, "other");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("ééé", 4), "éé");
    }

    #[test]
    fn memo_returns_the_parse_and_stays_bounded() {
        let mut memo = UaMemo::with_capacity(2);
        assert_eq!(
            *memo.device(CHROME_WINDOWS),
            parse_user_agent(CHROME_WINDOWS)
        );
        assert_eq!(
            *memo.device(CHROME_WINDOWS),
            parse_user_agent(CHROME_WINDOWS)
        );
        assert_eq!(memo.len(), 1);
        memo.device(SAFARI_IPHONE);
        assert_eq!(memo.len(), 2);
        // Full: cleared, then the new entry goes in.
        assert_eq!(memo.device(SAFARI_IPAD).device_type, "tablet");
        assert_eq!(memo.len(), 1);
        // Empty user agents are not memoized.
        assert_eq!(memo.device("").device_type, "other");
        assert_eq!(memo.len(), 1);
    }
}
