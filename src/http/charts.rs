//! Server-side SVG charts for the pages.

mod data;
pub mod ticks;

pub use data::station_power_series;

use crate::domain::Station;
use crate::energy::counters::local_midnight;
use chrono::{DateTime, Duration, NaiveDate, Utc};

/// The UTC span of a station's local day (23 or 25 hours across a daylight-saving change).
fn day_span(station: &Station, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = local_midnight(station.timezone, day);
    let end = day
        .succ_opt()
        .map(|next| local_midnight(station.timezone, next))
        .filter(|end| *end > start)
        .unwrap_or(start + Duration::days(1));
    (start, end)
}
