#!/usr/bin/env python3
"""Writes the golden fixtures' events (tests/golden/<case>/events.jsonl).

The expected projections beside them are written by the golden test with
FUNNELFOLD_BLESS=1 and then reviewed by hand against docs/design.md: a change to an
expected file is a change to the semantics and must be explained in its commit.
"""
import datetime, json, os

UA_DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
UA_IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
SITE = "https://shop.example.com"

def ts(s):
    return int(datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)

def ev(eid, anon, at, name="page_view", path="/", query="", referrer=None, ua=UA_DESKTOP, **extra):
    e = {"eventId": eid, "funnelId": "shop", "anonymousId": anon, "eventName": name,
         "timestamp": ts(at), "url": SITE + path + query, "userAgent": ua, "country": "DE"}
    if referrer:
        e["referrer"] = referrer
    e.update(extra)
    return e

CASES = {
    # One direct visit of three pageviews.
    "direct": [
        ev("d1", "anon-direct", "2026-11-03T10:00:00Z", path="/"),
        ev("d2", "anon-direct", "2026-11-03T10:02:00Z", path="/pricing"),
        ev("d3", "anon-direct", "2026-11-03T10:05:00Z", path="/checkout"),
    ],
    # UTM parameters in the url (mixed case source/medium are lower-cased, campaign kept),
    # and a second visitor whose UTM fields are sent explicitly and win over the url.
    "utm": [
        ev("u1", "anon-utm", "2026-11-03T09:00:00Z", path="/landing", query="?utm_source=Newsletter&utm_medium=Email&utm_campaign=Black%20Friday", referrer="https://mail.google.com/"),
        ev("u2", "anon-utm", "2026-11-03T09:01:00Z", path="/pricing"),
        ev("u3", "anon-utm2", "2026-11-03T09:30:00Z", path="/", query="?utm_source=ignored", utmSource="Partner", utmCampaign="spring"),
    ],
    # gclid → google / cpc (Paid Search), msclkid → bing / cpc.
    "click_id": [
        ev("c1", "anon-gclid", "2026-11-03T11:00:00Z", path="/products/widget", query="?gclid=EAIaIQobChMI", referrer="https://www.google.com/"),
        ev("c2", "anon-msclkid", "2026-11-03T11:10:00Z", path="/", query="?msclkid=abc123"),
    ],
    # Search engine referrers → organic, including a country domain of google.
    "organic_search": [
        ev("o1", "anon-google", "2026-11-03T12:00:00Z", path="/blog/kafka-tips", referrer="https://www.google.de/"),
        ev("o2", "anon-google", "2026-11-03T12:03:00Z", path="/docs"),
        ev("o3", "anon-ddg", "2026-11-03T12:10:00Z", path="/", referrer="https://duckduckgo.com/"),
    ],
    # Social network referrers → social.
    "social": [
        ev("s1", "anon-fb", "2026-11-03T13:00:00Z", path="/", referrer="https://l.facebook.com/l.php?u=x"),
        ev("s2", "anon-hn", "2026-11-03T13:05:00Z", path="/blog/stream-processing", referrer="https://news.ycombinator.com/item?id=1"),
        ev("s3", "anon-hn", "2026-11-03T13:06:00Z", name="signup_started", path="/signup"),
    ],
    # A referrer on the site's own host (with www.) and one on a configured internal
    # domain are not external: the session is direct. A referral site is a referral.
    "internal_referrer": [
        ev("i1", "anon-self", "2026-11-03T14:00:00Z", path="/pricing", referrer="https://www.shop.example.com/"),
        ev("i2", "anon-internal", "2026-11-03T14:05:00Z", path="/", referrer="https://accounts.example.com/login"),
        ev("i3", "anon-referral", "2026-11-03T14:10:00Z", path="/", referrer="https://www.blog.partner.io/review"),
    ],
    # 31 minutes of inactivity start a new session; exactly 30 do not.
    "session_timeout": [
        ev("t1", "anon-timeout", "2026-11-03T08:00:00Z", path="/"),
        ev("t2", "anon-timeout", "2026-11-03T08:30:00Z", path="/pricing"),
        ev("t3", "anon-timeout", "2026-11-03T09:01:00Z", path="/docs", referrer="https://www.bing.com/"),
        ev("t4", "anon-timeout", "2026-11-03T09:05:00Z", path="/docs/getting-started"),
    ],
    # A session running over midnight UTC is one session, counted on the day it started.
    "midnight_crossing": [
        ev("m1", "anon-night", "2026-11-03T23:50:00Z", path="/", referrer="https://t.co/xyz"),
        ev("m2", "anon-night", "2026-11-04T00:10:00Z", path="/pricing"),
        ev("m3", "anon-night", "2026-11-04T00:35:00Z", path="/checkout"),
    ],
    # The first event arrives last (within the lateness bound): it becomes the landing
    # page and its UTM campaign the session's attribution; the direct contribution is
    # retracted. It also bridges a 50-minute gap, merging two sessions into one.
    "late_first_event": [
        ev("l2", "anon-late", "2026-11-03T15:10:00Z", path="/pricing"),
        ev("l3", "anon-late", "2026-11-03T15:12:00Z", path="/checkout"),
        ev("l4", "anon-late", "2026-11-03T15:45:00Z", path="/thanks"),
        ev("l1", "anon-late", "2026-11-03T15:05:00Z", path="/", query="?utm_source=spring&utm_medium=cpc&utm_campaign=sale"),
        ev("l3b", "anon-late", "2026-11-03T15:30:00Z", name="add_to_cart", path="/cart"),
    ],
    # SDK retries reuse eventId: the duplicates change nothing.
    "duplicates": [
        ev("x1", "anon-dup", "2026-11-03T16:00:00Z", path="/"),
        ev("x2", "anon-dup", "2026-11-03T16:01:00Z", name="purchase", path="/checkout", isConversion=True, revenueMinor=2500, currency="EUR"),
        ev("x2", "anon-dup", "2026-11-03T16:01:00Z", name="purchase", path="/checkout", isConversion=True, revenueMinor=2500, currency="EUR"),
        ev("x1", "anon-dup", "2026-11-03T16:00:00Z", path="/"),
    ],
    # Conversions in two currencies are summed per currency, never across; revenue on a
    # non-conversion event is not counted; an SDK session id groups the events.
    "revenue_two_currencies": [
        ev("r1", "anon-rich", "2026-11-03T17:00:00Z", path="/", sessionId="sdk-1", ua=UA_IPHONE, referrer="https://www.google.com/"),
        ev("r2", "anon-rich", "2026-11-03T17:05:00Z", name="purchase", path="/checkout", sessionId="sdk-1", ua=UA_IPHONE, isConversion=True, revenueMinor=1999, currency="EUR"),
        ev("r3", "anon-rich", "2026-11-03T17:06:00Z", name="purchase", path="/checkout", sessionId="sdk-1", ua=UA_IPHONE, isConversion=True, revenueMinor=4500, currency="usd"),
        ev("r4", "anon-rich", "2026-11-03T17:07:00Z", name="purchase", path="/checkout", sessionId="sdk-1", ua=UA_IPHONE, isConversion=True, revenueMinor=1, currency="EUR"),
        ev("r5", "anon-rich", "2026-11-03T17:08:00Z", name="refund_viewed", path="/account", sessionId="sdk-1", ua=UA_IPHONE, revenueMinor=999, currency="EUR"),
    ],
}

here = os.path.dirname(os.path.abspath(__file__))
for case, events in CASES.items():
    os.makedirs(os.path.join(here, case), exist_ok=True)
    with open(os.path.join(here, case, "events.jsonl"), "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
