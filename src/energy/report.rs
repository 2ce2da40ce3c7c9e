//! A station's days and months with everything shown next to a figure: completeness, KPIs, the
//! settlement status and the reconciliation. Used by the station page, the JSON API and the CLI.

use super::metered::{self, Figures};
use super::reconcile::{reconcile, Reconciliation};
use super::Error;
use super::{counters, kpi};
use crate::config::Deployment;
use crate::domain::{EnergyBasis, Station, WattHours, YearMonth};
use crate::store::{SettlementRow, Store};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

/// A local day of a station.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub day: NaiveDate,
    pub figures: Figures,
    pub specific_yield: Option<f64>,
    pub full_load_hours: Option<f64>,
    pub availability: Option<f64>,
    /// Against the median of the county's stations that day.
    pub performance_index: Option<f64>,
}

/// A local month of a station.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthRow {
    pub month: YearMonth,
    pub metered: Figures,
    pub settlement: Option<SettlementRow>,
    /// The figure money is paid on and what it rests on.
    pub energy: WattHours,
    pub basis: EnergyBasis,
    pub reconciliation: Option<Reconciliation>,
    pub specific_yield: Option<f64>,
    pub full_load_hours: Option<f64>,
    pub availability: Option<f64>,
}

/// Completeness at or above this lets a station's day count towards the county median.
const PEER_COMPLETENESS: f64 = 0.8;

/// Days `first..=last` of a station, with the performance index against its county.
pub async fn days(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<DayRow>, Error> {
    let own = metered::station_days(store, d, station, first, last, now).await?;
    days_of(store, d, station, own, first, last).await
}

/// [`days`] from the station's own daily figures already at hand (`first..=last`).
pub async fn days_of(
    store: &Store,
    d: &Deployment,
    station: &Station,
    own: Vec<Figures>,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<Vec<DayRow>, Error> {
    let county = county_yields(store, d, station, first, last).await?;
    Ok(days_against(station, own, &county))
}

/// The daily specific yields (kWh/kWp) of a county's stations over `first..=last` (local days of
/// `near`, a station of that county), from the daily rollups' counter span: one query, however
/// large the county; precise enough for a median, and a reset or an empty day is left out. Shared
/// by every station page of the county (the HTTP layer keeps it a little while).
#[derive(Debug, Clone, Default)]
pub struct CountyYields {
    by_day: HashMap<NaiveDate, Vec<(crate::domain::StationId, f64)>>,
}

impl CountyYields {
    /// The yields of `day` but `station`'s own.
    fn others(&self, day: NaiveDate, station: &Station) -> impl Iterator<Item = f64> + '_ {
        let id = station.id.clone();
        self.by_day
            .get(&day)
            .into_iter()
            .flatten()
            .filter(move |(s, _)| *s != id)
            .map(|(_, y)| *y)
    }
}

/// [`CountyYields`] of `near`'s county.
pub async fn county_yields(
    store: &Store,
    d: &Deployment,
    near: &Station,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<CountyYields, Error> {
    let stations: HashMap<&str, &Station> = d
        .stations
        .iter()
        .filter(|s| s.county == near.county)
        .map(|s| (s.id.as_str(), s))
        .collect();
    let mut out = CountyYields::default();
    let since = counters::local_midnight(near.timezone, first);
    let ids: Vec<&str> = stations.keys().copied().collect();
    for (id, bucket_ms, wh) in store.station_day_energy_of(&ids, since).await? {
        let Some(peer) = stations.get(id.as_str()) else {
            continue;
        };
        let Some(bucket) = DateTime::from_timestamp_millis(bucket_ms) else {
            continue;
        };
        let day = bucket.with_timezone(&peer.timezone).date_naive();
        let most = peer.capacity_kwp * 1000.0 * 24.0;
        if day > last || wh <= 0.0 || wh > most {
            continue;
        }
        if let Some(y) = kpi::specific_yield(WattHours(wh.round() as i64), peer.capacity_kwp) {
            out.by_day.entry(day).or_default().push((id, y));
        }
    }
    Ok(out)
}

/// A station's days with their KPIs and performance index: the median is of the station's own
/// accountable figure and the other county stations' yields.
pub fn days_against(station: &Station, own: Vec<Figures>, county: &CountyYields) -> Vec<DayRow> {
    let usable = |f: &Figures| {
        f.completeness
            .ratio()
            .is_some_and(|r| r >= PEER_COMPLETENESS)
    };
    own.into_iter()
        .map(|f| {
            let specific_yield = kpi::specific_yield(f.energy, station.capacity_kwp);
            let performance_index = specific_yield.filter(|_| usable(&f)).and_then(|y| {
                let mut all: Vec<f64> = county.others(f.first_day, station).collect();
                all.push(y);
                kpi::performance_index(y, &all)
            });
            DayRow {
                day: f.first_day,
                specific_yield,
                full_load_hours: kpi::full_load_hours(f.energy, station.capacity_kwp),
                availability: kpi::availability(f.observed_hours, f.producing_hours),
                performance_index,
                figures: f,
            }
        })
        .collect()
}

/// Months `first..=last` of a station: settled where a settlement was imported (and reconciled
/// against the meter), metered and provisional otherwise.
pub async fn months(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: YearMonth,
    last: YearMonth,
    now: DateTime<Utc>,
) -> Result<Vec<MonthRow>, Error> {
    let metered = metered::station_months(store, d, station, first, last, now).await?;
    months_of(store, d, station, metered).await
}

/// [`months`] from the station's own monthly figures already at hand.
pub async fn months_of(
    store: &Store,
    d: &Deployment,
    station: &Station,
    metered: Vec<Figures>,
) -> Result<Vec<MonthRow>, Error> {
    let settlements: HashMap<YearMonth, SettlementRow> = store
        .settlements_of(&station.id)
        .await?
        .into_iter()
        .map(|s| (s.month, s))
        .collect();
    Ok(metered
        .into_iter()
        .map(|f| {
            let month = YearMonth::of(f.first_day);
            let settlement = settlements.get(&month).cloned();
            let reconciliation = settlement.as_ref().map(|s| {
                reconcile(
                    &station.id,
                    month,
                    &f,
                    s.energy,
                    d.energy.reconcile_threshold_pct,
                )
            });
            let (energy, basis) = match &settlement {
                Some(s) => (s.energy, EnergyBasis::Settled),
                None => (f.energy, EnergyBasis::Metered),
            };
            MonthRow {
                month,
                specific_yield: kpi::specific_yield(energy, station.capacity_kwp),
                full_load_hours: kpi::full_load_hours(energy, station.capacity_kwp),
                availability: kpi::availability(f.observed_hours, f.producing_hours),
                metered: f,
                settlement,
                energy,
                basis,
                reconciliation,
            }
        })
        .collect())
}
