//! What the dashboard's browser tests share: reading the API the page reads, the
//! numbers formatted as the page formats them (`Intl.NumberFormat('en-US')`), reading
//! the page, and screenshots for the README.

use std::path::PathBuf;

use serde_json::Value;

use crate::webdriver::Browser;

/// `GET path` on the API at `api`, which must answer 200 with JSON.
pub fn get(api: &str, path: &str) -> Value {
    let (status, body) = crate::common::http(api, "GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// `1,234`: an integer as the page shows it.
pub fn integer(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// `85.7%`, `50%`: a share as the page shows it (at most one decimal). Halves round
/// away from zero as `Intl` does; shares that land exactly on a half of a tenth
/// (1/16) differ in binary anyway, so tests use counts that avoid them.
pub fn percent(share: f64) -> String {
    let tenths = (share * 1000.0).round() as i64;
    if tenths % 10 == 0 {
        format!("{}%", tenths / 10)
    } else {
        format!("{}.{}%", tenths / 10, tenths % 10)
    }
}

/// The text of the first element matching `css`, or "" when there is none.
pub fn text_of(browser: &Browser, css: &str) -> String {
    browser
        .eval(&format!(
            "const e = document.querySelector({css:?}); return e ? e.textContent : null;"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// With `FUNNELFOLD_SCREENSHOTS=1`, writes the window to `docs/screenshots/NAME.png`.
pub fn screenshot(browser: &Browser, name: &str) {
    if std::env::var("FUNNELFOLD_SCREENSHOTS").is_err() {
        return;
    }
    let dir: PathBuf = crate::repo_file("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshots dir");
    std::fs::write(dir.join(format!("{name}.png")), browser.screenshot()).expect("write png");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_as_the_page_formats_them() {
        assert_eq!(integer(0), "0");
        assert_eq!(integer(1_234_567), "1,234,567");
        assert_eq!(integer(-1_000), "-1,000");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(6.0 / 7.0), "85.7%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(1.0 / 3.0), "33.3%");
        assert_eq!(percent(0.0), "0%");
    }
}
