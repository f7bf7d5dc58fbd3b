//! Which user agents are bots: woothee's `crawler` category, else the maintained list
//! in `bots.txt` (crawlers, SEO tools, uptime monitors, HTTP libraries and headless
//! browsers), taken from <https://github.com/monperrus/crawler-user-agents> (MIT) by
//! `bots_update.py`, which records the upstream commit in the file's header.
//!
//! A bot's name is what reports group bot events by: woothee's name for the crawlers
//! it knows (`Googlebot`, `Bingbot`; not its catch-all `misc crawler`), else the text the first matching pattern matched
//! in the user agent (`HeadlessChrome`, `UptimeRobot`, `curl`).

use std::sync::OnceLock;

use regex::{Regex, RegexSet};

use crate::event::Device;

/// The list as shipped: one regular expression a line, `#` comments.
const BOTS_TXT: &str = include_str!("bots.txt");

/// The longest bot name kept: a pattern with a wildcard may match a long span.
const MAX_NAME_LEN: usize = 40;

struct BotList {
    patterns: Vec<&'static str>,
    set: RegexSet,
}

fn list() -> &'static BotList {
    static LIST: OnceLock<BotList> = OnceLock::new();
    LIST.get_or_init(|| {
        let patterns: Vec<&'static str> = BOTS_TXT
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        // A pattern the regex engine refuses is a defect of the shipped file, caught by
        // the unit test below; it must never take a processor down.
        let set = RegexSet::new(&patterns).unwrap_or_else(|_| RegexSet::empty());
        BotList { patterns, set }
    })
}

/// The bot name of a user agent already parsed into `device`, or `None` for a human
/// (or for no user agent at all: server-side events are not bots).
pub fn bot_name(ua: &str, device: &Device) -> Option<String> {
    let ua = ua.trim_ascii();
    if ua.is_empty() {
        return None;
    }
    // woothee names the crawlers it knows; its catch-all is less telling than the list.
    let woothee = (device.device_type == "bot").then_some(device.browser.as_str());
    if let Some(name) = woothee.filter(|n| *n != crate::enrich::ua::OTHER && *n != "misc crawler") {
        return Some(name.to_owned());
    }
    let list = list();
    let Some(first) = list.set.matches(ua).into_iter().next() else {
        return woothee.map(str::to_owned);
    };
    let matched = Regex::new(list.patterns[first])
        .ok()
        .and_then(|re| re.find(ua).map(|m| m.as_str().to_owned()))
        .unwrap_or_default();
    Some(clean_name(&matched))
}

/// The matched text without the punctuation around it, cut to a first word when long;
/// `bot` when nothing readable is left.
fn clean_name(matched: &str) -> String {
    let trimmed = matched.trim_matches(|c: char| !c.is_alphanumeric());
    let name = if trimmed.len() > MAX_NAME_LEN {
        trimmed
            .split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == '/')
            .next()
            .unwrap_or(trimmed)
    } else {
        trimmed
    };
    let mut end = name.len().min(MAX_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    match &name[..end] {
        "" => "bot".to_owned(),
        n => n.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::ua::parse_user_agent;

    fn bot(ua: &str) -> Option<String> {
        bot_name(ua, &parse_user_agent(ua))
    }

    #[test]
    fn every_shipped_pattern_compiles() {
        let list = list();
        assert!(list.patterns.len() > 1_000, "{}", list.patterns.len());
        assert_eq!(list.set.len(), list.patterns.len());
        for p in &list.patterns {
            assert!(Regex::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn the_upstream_samples_are_bots() {
        let samples = include_str!("../../tests/fixtures/bot_user_agents.txt");
        let missed: Vec<&str> = samples
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| bot(l).is_none())
            .collect();
        assert!(missed.is_empty(), "not bots: {missed:#?}");
    }

    #[test]
    fn crawlers_monitors_tools_and_headless_browsers_have_names() {
        let cases = [
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "Googlebot",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
                "HeadlessChrome",
            ),
            (
                "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
                "UptimeRobot",
            ),
            ("curl/8.5.0", "curl"),
            ("python-requests/2.31.0", "python-requests"),
        ];
        for (ua, name) in cases {
            assert_eq!(bot(ua).as_deref(), Some(name), "{ua}");
        }
    }

    #[test]
    fn browsers_and_server_side_events_are_not_bots() {
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
            "",
            "   ",
        ] {
            assert_eq!(bot(ua), None, "{ua}");
        }
    }

    #[test]
    fn names_are_short_and_readable() {
        assert_eq!(clean_name("Googlebot/"), "Googlebot");
        assert_eq!(clean_name(" sentry/"), "sentry");
        assert_eq!(clean_name("///"), "bot");
        let long = format!("{} tail", "x".repeat(60));
        assert_eq!(clean_name(&long).len(), MAX_NAME_LEN);
    }
}
