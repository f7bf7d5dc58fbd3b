//! Money as the API shows it: per currency, an exact decimal string in major units
//! (`{"EUR": "12.34", "JPY": "1500"}`), never a float and never a sum across currencies.

use std::cmp::Ordering;

use funnelfold_core::Revenue;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Digits after the decimal point of a currency's major unit (ISO 4217). Unknown codes
/// get 2, the most common exponent.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    match currency {
        // Currencies without minor units.
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        // Currencies with thousandths.
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        // Units of account with four decimals.
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// `minor` minor units of `currency` as an exact decimal string in major units.
pub fn format_minor(minor: i64, currency: &str) -> String {
    let exponent = minor_unit_exponent(currency);
    // unsigned_abs keeps i64::MIN exact.
    let digits = minor.unsigned_abs().to_string();
    let sign = if minor < 0 { "-" } else { "" };
    if exponent == 0 {
        return format!("{sign}{digits}");
    }
    let exponent = exponent as usize;
    let padded = format!("{digits:0>width$}", width = exponent + 1);
    let (int, frac) = padded.split_at(padded.len() - exponent);
    format!("{sign}{int}.{frac}")
}

/// Serializes a [`Revenue`] as `{currency: "decimal"}`.
#[derive(Debug, Clone, Copy)]
pub struct RevenueJson<'a>(pub &'a Revenue);

impl Serialize for RevenueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (currency, minor) in self.0 {
            map.serialize_entry(currency, &format_minor(*minor, currency))?;
        }
        map.end()
    }
}

/// Orders revenues without adding currencies: over the union of their currencies, in
/// code order, the first currency whose amounts differ decides (a missing currency
/// counts as 0). For one currency this is the order of the amounts; with several it is
/// arbitrary but total and deterministic, which is all a sort key needs.
pub fn compare_revenue(a: &Revenue, b: &Revenue) -> Ordering {
    let currencies: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    currencies
        .into_iter()
        .map(|c| {
            a.get(c)
                .copied()
                .unwrap_or(0)
                .cmp(&b.get(c).copied().unwrap_or(0))
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(items: &[(&str, i64)]) -> Revenue {
        items.iter().map(|(c, m)| (c.to_string(), *m)).collect()
    }

    #[test]
    fn decimals_follow_iso_4217_exponents() {
        assert_eq!(format_minor(1234, "EUR"), "12.34");
        assert_eq!(format_minor(5, "USD"), "0.05");
        assert_eq!(format_minor(0, "USD"), "0.00");
        assert_eq!(format_minor(1500, "JPY"), "1500");
        assert_eq!(format_minor(1500, "KRW"), "1500");
        assert_eq!(format_minor(1234, "KWD"), "1.234");
        assert_eq!(format_minor(7, "BHD"), "0.007");
        assert_eq!(format_minor(-250, "EUR"), "-2.50");
        assert_eq!(format_minor(i64::MIN, "EUR"), "-92233720368547758.08");
        assert_eq!(format_minor(i64::MAX, "JOD"), "9223372036854775.807");
    }

    #[test]
    fn revenue_order_is_per_currency_in_code_order() {
        assert_eq!(
            compare_revenue(&rev(&[("EUR", 5)]), &rev(&[("EUR", 3)])),
            Ordering::Greater
        );
        assert_eq!(compare_revenue(&rev(&[]), &rev(&[])), Ordering::Equal);
        // EUR is compared first: 0 < 1.
        assert_eq!(
            compare_revenue(&rev(&[("USD", 900)]), &rev(&[("EUR", 1)])),
            Ordering::Less
        );
        assert_eq!(
            compare_revenue(
                &rev(&[("EUR", 1), ("USD", 2)]),
                &rev(&[("EUR", 1), ("USD", 3)])
            ),
            Ordering::Less
        );
        assert_eq!(
            compare_revenue(
                &rev(&[("EUR", 1), ("USD", 3)]),
                &rev(&[("EUR", 1), ("USD", 3)])
            ),
            Ordering::Equal
        );
        assert_eq!(
            compare_revenue(&rev(&[("GBP", 1)]), &rev(&[])),
            Ordering::Greater
        );
    }

    #[test]
    fn revenue_json_is_a_map_of_decimal_strings() {
        let r = rev(&[("EUR", 1234), ("JPY", 99)]);
        let json = serde_json::to_string(&RevenueJson(&r)).expect("serializes");
        assert_eq!(json, r#"{"EUR":"12.34","JPY":"99"}"#);
    }
}
