//! Dates in deployment files: `from = 2017-07-01` (a TOML date) or `"2017-07-01"` (a string).
//!
//! TOML hands its native dates to serde as a one-entry map, which chrono's own impl refuses; use
//! `#[serde(with = "crate::domain::date")]` (or `date::option`) on `NaiveDate` fields of config types.

use chrono::NaiveDate;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

struct DateVisitor;

impl<'de> Visitor<'de> for DateVisitor {
    type Value = NaiveDate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date such as 2017-07-01")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NaiveDate, E> {
        NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
            .map_err(|_| E::custom(format!("'{v}' is not a date (write it as 2017-07-01)")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NaiveDate, A::Error> {
        let Some((_, text)) = map.next_entry::<String, String>()? else {
            return Err(de::Error::custom("expected a date such as 2017-07-01"));
        };
        self.visit_str(&text)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    d.deserialize_any(DateVisitor)
}

pub fn serialize<S: Serializer>(date: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(date)
}

/// The same for `Option<NaiveDate>` fields (use with `#[serde(default)]`).
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        super::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer>(date: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(d) => s.collect_str(d),
            None => s.serialize_none(),
        }
    }
}

/// Instants in deployment files: `from = 2026-05-01T08:00:00+08:00` (a TOML date-time) or the same as
/// a string; always converted to UTC.
pub mod instant {
    use chrono::{DateTime, Utc};
    use serde::de::{self, MapAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    struct InstantVisitor;

    impl<'de> Visitor<'de> for InstantVisitor {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a date-time with an offset, such as 2026-05-01T08:00:00+08:00")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<DateTime<Utc>, E> {
            DateTime::parse_from_rfc3339(v.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    E::custom(format!(
                        "'{v}' is not a date-time with an offset (write it as 2026-05-01T08:00:00+08:00)"
                    ))
                })
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DateTime<Utc>, A::Error> {
            let Some((_, text)) = map.next_entry::<String, String>()? else {
                return Err(de::Error::custom("expected a date-time"));
            };
            self.visit_str(&text)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_any(InstantVisitor)
    }

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&at.to_rfc3339())
    }
}
