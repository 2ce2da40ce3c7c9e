//! Physical and money units.
//!
//! Money is integer fen and prices are integer 1/10,000 yuan per kWh, so that revenue can be computed
//! exactly and rounded once per line (docs/policy.md section 2). Kilowatts and yuan exist only at the edges.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

/// Instantaneous power. Measurements are inexact by nature, so this is the one unit that is a float.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Watts(pub f64);

/// Energy in whole watt-hours: counters and daily energy are exact integers.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct WattHours(pub i64);

impl WattHours {
    pub const ZERO: WattHours = WattHours(0);

    pub fn kwh(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl Add for WattHours {
    type Output = WattHours;
    fn add(self, rhs: Self) -> Self {
        WattHours(self.0.saturating_add(rhs.0))
    }
}

impl Sub for WattHours {
    type Output = WattHours;
    fn sub(self, rhs: Self) -> Self {
        WattHours(self.0.saturating_sub(rhs.0))
    }
}

impl std::iter::Sum for WattHours {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(WattHours::ZERO, |a, b| a + b)
    }
}

/// Money in fen (0.01 yuan). Arithmetic is checked: an overflow is a bug we want to hear about, never a
/// silently wrapped payout.
///
/// In files it is written in yuan ("600", "416.67" or 600.0), the way accountants write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fen(pub i64);

impl Fen {
    pub const ZERO: Fen = Fen(0);

    pub fn from_yuan(yuan: i64) -> Option<Fen> {
        yuan.checked_mul(100).map(Fen)
    }

    pub fn checked_add(self, rhs: Fen) -> Option<Fen> {
        self.0.checked_add(rhs.0).map(Fen)
    }

    pub fn checked_sub(self, rhs: Fen) -> Option<Fen> {
        self.0.checked_sub(rhs.0).map(Fen)
    }

    pub fn checked_mul(self, n: i64) -> Option<Fen> {
        self.0.checked_mul(n).map(Fen)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Parses "1234", "1234.5" or "-0.07" yuan exactly (at most two decimals).
    pub fn parse_yuan(text: &str) -> Result<Fen, ParseAmountError> {
        parse_decimal(text, 2).map(Fen)
    }
}

impl fmt::Display for Fen {
    /// Yuan with two decimals, the way a statement prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// A price in 1/10,000 yuan per kWh (0.3844 yuan/kWh is `Price(3844)`), exact for every published
/// tariff and coal benchmark price.
/// In files it is written in yuan per kWh ("0.3844" or 0.3844).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Price(pub i64);

impl Price {
    /// Parses "0.85" or "0.3844" yuan/kWh exactly (at most four decimals).
    pub fn parse_yuan_per_kwh(text: &str) -> Result<Price, ParseAmountError> {
        parse_decimal(text, 4).map(Price)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:04}", abs / 10_000, abs % 10_000)
    }
}

/// Reads a decimal written as a string or a number. A float is read back through its shortest
/// round-trip text (0.3844 prints as "0.3844"), so no binary rounding reaches the amount.
struct DecimalText;

impl<'de> serde::de::Visitor<'de> for DecimalText {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal amount such as 0.85 or \"416.67\"")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
        if v.is_finite() {
            Ok(v.to_string())
        } else {
            Err(E::custom("an amount must be a finite number"))
        }
    }
}

impl<'de> Deserialize<'de> for Fen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(DecimalText)?;
        Fen::parse_yuan(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Fen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(DecimalText)?;
        Price::parse_yuan_per_kwh(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Price {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseAmountError {
    #[error("'{0}' is not a decimal number (write it like 0.85 or 1200.50)")]
    NotANumber(String),
    #[error("'{text}' has more than {max} decimal places")]
    TooPrecise { text: String, max: u32 },
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// Exact decimal parsing: `text` scaled by 10^`decimals`, refusing anything that would need rounding.
fn parse_decimal(text: &str, decimals: u32) -> Result<i64, ParseAmountError> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let valid = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty()) || !valid(int_part) || !valid(frac_part) {
        return Err(ParseAmountError::NotANumber(text.to_owned()));
    }
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > decimals as usize {
        return Err(ParseAmountError::TooPrecise {
            text: text.to_owned(),
            max: decimals,
        });
    }
    let too_large = || ParseAmountError::TooLarge(text.to_owned());
    let int_value: i64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| too_large())?
    };
    let mut frac_value: i64 = 0;
    for i in 0..decimals as usize {
        let d = frac_trimmed
            .as_bytes()
            .get(i)
            .map(|b| i64::from(b - b'0'))
            .unwrap_or(0);
        frac_value = frac_value * 10 + d;
    }
    let scaled = int_value
        .checked_mul(10_i64.pow(decimals))
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(too_large)?;
    Ok(if negative { -scaled } else { scaled })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(Price::parse_yuan_per_kwh("0.85"), Ok(Price(8500)));
        assert_eq!(Price::parse_yuan_per_kwh("0.3844"), Ok(Price(3844)));
        assert_eq!(Price::parse_yuan_per_kwh("1"), Ok(Price(10_000)));
        assert!(matches!(
            Price::parse_yuan_per_kwh("0.38445"),
            Err(ParseAmountError::TooPrecise { .. })
        ));
        assert!(Price::parse_yuan_per_kwh("abc").is_err());
        assert!(Price::parse_yuan_per_kwh(".").is_err());
    }

    #[test]
    fn yuan_parse_and_print_round_trip() {
        for text in ["0.00", "416.67", "-12.05", "252000.00"] {
            let fen = Fen::parse_yuan(text).expect("valid amount");
            assert_eq!(fen.to_string(), text);
        }
        assert_eq!(Fen::parse_yuan("600"), Ok(Fen(60_000)));
        assert_eq!(Fen::parse_yuan("0.5"), Ok(Fen(50)));
        assert!(Fen::parse_yuan("0.001").is_err());
        assert!(Fen::parse_yuan("99999999999999999999").is_err());
    }

    #[test]
    fn money_overflow_is_detected() {
        assert_eq!(Fen(i64::MAX).checked_add(Fen(1)), None);
        assert_eq!(Fen(5).checked_sub(Fen(7)), Some(Fen(-2)));
    }
}
