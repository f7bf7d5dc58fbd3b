//! A small, allocation-light URL splitter.
//!
//! Enrichment runs on every event in the fold's hot loop, so this deliberately does not
//! use the `url` crate: we need only three things (host, path, a handful of query
//! parameters) and a full WHATWG parse with its owned serialisation costs far more than
//! the ~100 ns budget. Everything here borrows from the input; an allocation happens
//! only when a host must be lower-cased or a value percent-decoded.
//!
//! The splitter is lenient (it never rejects a URL because of a stray character) and
//! total: any input, however malformed, yields `None` or empty parts, never a panic.
//! All slicing is at positions of ASCII delimiters found by byte search, which are
//! always char boundaries in UTF-8.

use std::borrow::Cow;

/// The parts of a URL the enrichment needs, borrowed from the input where possible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// Lower-cased host without a leading `www.`, without port, userinfo or a trailing
    /// dot. IPv6 literals keep their brackets (`[::1]`). Empty when the URL has no
    /// authority (a path-only URL, `file:///x`, `mailto:x`).
    pub host: Cow<'a, str>,
    /// The path, without query string or fragment; `/` when empty. Not decoded: it is
    /// used as an identifier (landing and exit page), exactly as the site wrote it.
    pub path: &'a str,
    /// The raw query string without the `?` (empty when there is none). A `?` that
    /// appears after a `#` belongs to the fragment, not to the query.
    pub query: &'a str,
}

/// The query parameters attribution reads, percent-decoded (`+` as space). A parameter
/// that is absent or has an empty value is `None`; the first non-empty occurrence wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams<'a> {
    pub utm_source: Option<Cow<'a, str>>,
    pub utm_medium: Option<Cow<'a, str>>,
    pub utm_campaign: Option<Cow<'a, str>>,
    pub utm_term: Option<Cow<'a, str>>,
    pub utm_content: Option<Cow<'a, str>>,
    pub gclid: Option<Cow<'a, str>>,
    pub dclid: Option<Cow<'a, str>>,
    pub msclkid: Option<Cow<'a, str>>,
}

/// Splits a URL into host, path and query.
///
/// Accepted shapes:
/// - absolute: `scheme://[userinfo@]host[:port][/path][?query][#fragment]`;
/// - scheme-relative: `//host/path?query`;
/// - path-only: `/path?query` (host empty), which some SDKs send as the page url.
///
/// Anything else yields `None`: relative references (`example.com/x`, `pricing`) are
/// relative to a base we do not know, and guessing that the first segment is a host
/// would invent hosts; opaque URLs (`about:blank`, `mailto:x`, `javascript:...`) have
/// neither a host nor a path that means anything as a page or a referrer.
pub fn split(url: &str) -> Option<UrlParts<'_>> {
    let url = url.trim_ascii();
    if url.is_empty() {
        return None;
    }
    let (has_authority, rest) = if let Some(rest) = url.strip_prefix("//") {
        (true, rest)
    } else if url.starts_with('/') {
        (false, url)
    } else {
        let colon = scheme_end(url)?;
        let after = &url[colon + 1..];
        (true, after.strip_prefix("//")?)
    };

    // One pass over the bytes with a plain loop: the pieces are a few dozen bytes, where
    // `memchr`'s setup costs more than it saves. Every cut is at an ASCII delimiter (or
    // the end), hence on a char boundary.
    let bytes = rest.as_bytes();
    let mut i = 0;
    let host = if has_authority {
        // The authority ends at the first `/`, `?` or `#` (a `\` is treated like `/`, as
        // browsers do for http(s)).
        while i < bytes.len() && !matches!(bytes[i], b'/' | b'?' | b'#' | b'\\') {
            i += 1;
        }
        normalize_host(host_of_authority(&rest[..i]))
    } else {
        Cow::Borrowed("")
    };
    let path_start = i;
    while i < bytes.len() && !matches!(bytes[i], b'?' | b'#') {
        i += 1;
    }
    let path = &rest[path_start..i];
    // A `#` seen first starts the fragment: `/p#a?b=c` has no query.
    let query = if bytes.get(i) == Some(&b'?') {
        let start = i + 1;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'#' {
            end += 1;
        }
        &rest[start..end]
    } else {
        ""
    };
    let path = if path.is_empty() { "/" } else { path };
    Some(UrlParts { host, path, query })
}

/// The normalized host of a referrer (see [`UrlParts::host`]), or `None` when the
/// referrer is not a URL with a host (empty, relative, `about:blank`, garbage).
pub fn host_of(referrer: &str) -> Option<Cow<'_, str>> {
    split(referrer).map(|p| p.host).filter(|h| !h.is_empty())
}

/// Reads the attribution parameters from a raw query string (without `?`).
pub fn query_params(query: &str) -> QueryParams<'_> {
    let mut out = QueryParams::default();
    if query.is_empty() {
        return out;
    }
    let mut rest = query;
    while !rest.is_empty() {
        // Split on `&` by hand (see `split` on why not `str::split`).
        let end = rest.bytes().position(|b| b == b'&').unwrap_or(rest.len());
        let pair = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        let (key, value) = match pair.bytes().position(|b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, ""),
        };
        if value.is_empty() {
            continue;
        }
        // Keys are matched case-insensitively (`UTM_SOURCE=` appears in hand-built
        // links) but not decoded: an encoded `utm%5Fsource` is vanishingly rare and
        // decoding every key would cost an allocation check per parameter.
        let slot = if key.eq_ignore_ascii_case("utm_source") {
            &mut out.utm_source
        } else if key.eq_ignore_ascii_case("utm_medium") {
            &mut out.utm_medium
        } else if key.eq_ignore_ascii_case("utm_campaign") {
            &mut out.utm_campaign
        } else if key.eq_ignore_ascii_case("utm_term") {
            &mut out.utm_term
        } else if key.eq_ignore_ascii_case("utm_content") {
            &mut out.utm_content
        } else if key.eq_ignore_ascii_case("gclid") {
            &mut out.gclid
        } else if key.eq_ignore_ascii_case("dclid") {
            &mut out.dclid
        } else if key.eq_ignore_ascii_case("msclkid") {
            &mut out.msclkid
        } else {
            continue;
        };
        if slot.is_none() {
            let decoded = percent_decode(value);
            if !decoded.trim().is_empty() {
                *slot = Some(decoded);
            }
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (form encoding's space). A `%` not followed by two hex
/// digits is kept literally, as browsers do; bytes that do not form UTF-8 after decoding
/// become U+FFFD. Borrows when there is nothing to decode.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The index of the `:` ending a valid scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" /
/// "." )`, RFC 3986), or `None` when `url` does not start with one (`a/b:c`, `1x:`).
fn scheme_end(url: &str) -> Option<usize> {
    let bytes = url.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b':' => return Some(i),
            b if b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.' => {}
            _ => return None,
        }
    }
    None
}

/// The host part of an authority: drops `userinfo@` (up to the last `@`, since a
/// password may contain one) and `:port`, keeping IPv6 literals whole.
fn host_of_authority(authority: &str) -> &str {
    let hostport = match authority.bytes().rposition(|b| b == b'@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    if hostport.starts_with('[') {
        // `[v6]:port`; an unclosed bracket is garbage, kept as is (it matches nothing).
        return match hostport.bytes().position(|b| b == b']') {
            Some(i) => &hostport[..=i],
            None => hostport,
        };
    }
    match hostport.bytes().position(|b| b == b':') {
        Some(i) => &hostport[..i],
        None => hostport,
    }
}

/// Lower-cases the host (ASCII only: browsers send internationalized hosts as
/// punycode) and strips one trailing dot (the fully qualified form `example.com.`) and a
/// leading `www.`. Borrows unless there is an upper-case letter.
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        let lower = host.to_ascii_lowercase();
        match strip_www(&lower) {
            stripped if stripped.len() < lower.len() => Cow::Owned(stripped.to_owned()),
            _ => Cow::Owned(lower),
        }
    } else {
        Cow::Borrowed(strip_www(host))
    }
}

/// Strips a leading `www.` (of a lower-cased host) unless nothing would remain.
fn strip_www(host: &str) -> &str {
    match host.strip_prefix("www.") {
        Some(rest) if !rest.is_empty() => rest,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, String, String) {
        let p = split(url).expect("parses");
        (p.host.into_owned(), p.path.to_owned(), p.query.to_owned())
    }

    #[test]
    fn plain_absolute_url() {
        assert_eq!(
            parts("https://www.example.com/pricing?utm_source=x&a=b#top"),
            (
                "example.com".into(),
                "/pricing".into(),
                "utm_source=x&a=b".into()
            )
        );
    }

    #[test]
    fn empty_path_is_slash() {
        assert_eq!(
            parts("https://example.com"),
            ("example.com".into(), "/".into(), "".into())
        );
        assert_eq!(
            parts("https://example.com?x=1"),
            ("example.com".into(), "/".into(), "x=1".into())
        );
        assert_eq!(
            parts("https://example.com#f"),
            ("example.com".into(), "/".into(), "".into())
        );
    }

    #[test]
    fn port_and_userinfo_are_dropped() {
        assert_eq!(parts("http://example.com:8080/a").0, "example.com");
        assert_eq!(
            parts("http://user:p@ss@example.com:8080/a").0,
            "example.com"
        );
        assert_eq!(parts("http://user@www.example.com/").0, "example.com");
    }

    #[test]
    fn fragment_before_query_hides_the_query() {
        let p = split("https://example.com/p#frag?utm_source=x").expect("parses");
        assert_eq!(p.path, "/p");
        assert_eq!(p.query, "");
        assert_eq!(query_params(p.query), QueryParams::default());
    }

    #[test]
    fn uppercase_host_and_www_are_normalized() {
        assert_eq!(parts("HTTPS://WWW.Example.COM/Path").0, "example.com");
        assert_eq!(
            parts("https://Example.com./Path").1,
            "/Path",
            "path keeps its case"
        );
        assert_eq!(parts("https://example.com./").0, "example.com");
        assert_eq!(parts("https://www/").0, "www");
        assert_eq!(
            parts("https://www./").0,
            "www",
            "the trailing dot goes, the name stays"
        );
        assert_eq!(parts("https://wwwexample.com/").0, "wwwexample.com");
    }

    #[test]
    fn ipv6_literal_keeps_brackets_and_loses_port() {
        assert_eq!(parts("http://[::1]:8080/x").0, "[::1]");
        assert_eq!(parts("http://[2001:DB8::1]/x").0, "[2001:db8::1]");
        assert_eq!(
            parts("http://[::1/x").0,
            "[::1",
            "unclosed bracket does not panic"
        );
    }

    #[test]
    fn relative_and_schemeless() {
        assert_eq!(split(""), None);
        assert_eq!(split("   "), None);
        assert_eq!(split("example.com/path"), None);
        assert_eq!(split("pricing"), None);
        assert_eq!(split("1http://x"), None);
        assert_eq!(
            parts("/pricing?utm_source=a"),
            ("".into(), "/pricing".into(), "utm_source=a".into())
        );
        assert_eq!(parts("//cdn.example.com/x").0, "cdn.example.com");
        assert_eq!(split("mailto:someone@example.com"), None);
        assert_eq!(split("localhost:8080/x"), None);
        assert_eq!(split("javascript:alert(1)"), None);
        assert_eq!(host_of("about:blank"), None);
        assert_eq!(host_of("file:///etc/passwd"), None);
        assert_eq!(host_of("https://"), None);
        assert_eq!(host_of("  https://t.co/abc  ").as_deref(), Some("t.co"));
        assert_eq!(
            host_of("android-app://com.google.android.gm/").as_deref(),
            Some("com.google.android.gm")
        );
    }

    #[test]
    fn backslash_ends_the_authority() {
        assert_eq!(parts("https://example.com\\evil.com/x").0, "example.com");
    }

    #[test]
    fn query_params_are_decoded() {
        let q = query_params(
            "utm_source=News%20Letter&utm_medium=e+mail&utm_campaign=%E2%82%AC50%zz&gclid=abc&x=1",
        );
        assert_eq!(q.utm_source.as_deref(), Some("News Letter"));
        assert_eq!(q.utm_medium.as_deref(), Some("e mail"));
        assert_eq!(q.utm_campaign.as_deref(), Some("€50%zz"));
        assert_eq!(q.gclid.as_deref(), Some("abc"));
        assert_eq!(q.msclkid, None);
        assert!(
            matches!(q.gclid, Some(Cow::Borrowed(_))),
            "nothing to decode: no allocation"
        );
    }

    #[test]
    fn query_params_first_non_empty_wins_and_keys_ignore_case() {
        let q =
            query_params("utm_source=&UTM_SOURCE=a&utm_source=b&msclkid&dclid=%20&&=x&utm_term=t");
        assert_eq!(q.utm_source.as_deref(), Some("a"));
        assert_eq!(q.msclkid, None);
        assert_eq!(q.dclid, None, "blank after decoding counts as absent");
        assert_eq!(q.utm_term.as_deref(), Some("t"));
    }

    #[test]
    fn percent_decode_edge_cases() {
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41%42"), "AB");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(percent_decode("é%C3%A9"), "éé");
    }

    #[test]
    fn never_panics_on_odd_inputs() {
        let samples = [
            "http://",
            "http:",
            ":",
            "//",
            "/",
            "?",
            "#",
            "http://@",
            "http://:80",
            "http://[",
            "http://]",
            "h://é.com/ü?ü=%",
            "https://exämple.com",
            "https://%%%/",
            "\u{0}",
            "http://a?%",
            "http://a#?%",
            "https://@@@/??##",
            "https://a:b:c@d:e:f/g",
        ];
        for s in samples {
            if let Some(p) = split(s) {
                let _ = query_params(p.query);
            }
            let _ = host_of(s);
        }
        assert_eq!(
            host_of("https://exämple.com/").as_deref(),
            Some("exämple.com")
        );
    }
}
