//! Metered energy of a station from the store: raw readings where they are still kept, hourly
//! rollups (energy first/last) for older history, cleaned and interpolated by [`counters`].

use super::counters::{
    self, clean, completeness, daylight_window, energy_between, local_midnight, CleanSeries,
    Completeness, CounterPoint, CounterRules, Daylight, DaylightWindow, Note,
};
use super::Error;
use crate::config::Deployment;
use crate::domain::{Device, DeviceId, DeviceKind, Station, WattHours, YearMonth};
use crate::store::{EnergyReading, RollupRow, Store};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Completeness is judged per 5-minute slot (the store's finest rollup): a device polled faster
/// is complete when every daylight slot has a reading, one polled slower when it has every poll.
/// Counters make energy exact between any two readings, so polling faster than this adds nothing
/// to the energy figure, and a sub-slot gap cannot hide behind many readings elsewhere in the hour.
const SLOT: Duration = Duration::minutes(5);

/// One device's share of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFigures {
    pub device: DeviceId,
    pub energy: WattHours,
    pub notes: BTreeSet<Note>,
}

/// A station's metered energy for one period (a local day or month), with what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The local day the period starts on.
    pub first_day: NaiveDate,
    pub energy: WattHours,
    /// Union of the devices' notes.
    pub notes: BTreeSet<Note>,
    pub devices: Vec<DeviceFigures>,
    /// Daylight readings received versus expected, all devices together.
    pub completeness: Completeness,
    /// Daylight hours (sun well up) with readings, and of those the hours with output.
    pub observed_hours: i64,
    pub producing_hours: i64,
    /// Observed hours at which some device ran at its nameplate limit (clipping or export limit).
    pub clipped_hours: i64,
    /// Raw readings in which a device reported itself derated.
    pub derated_readings: i64,
    /// Where a device's counter reset or was replaced.
    pub resets: Vec<(DeviceId, DateTime<Utc>)>,
}

/// The devices whose counters make a station's energy: its inverters (or its meters when it has
/// no inverter registered).
pub fn energy_devices<'a>(d: &'a Deployment, station: &Station) -> Vec<&'a Device> {
    let of_kind = |k: DeviceKind| -> Vec<&'a Device> {
        d.devices
            .iter()
            .filter(|dev| dev.station == station.id && dev.kind == k)
            .collect()
    };
    let inverters = of_kind(DeviceKind::Inverter);
    if inverters.is_empty() {
        of_kind(DeviceKind::Meter)
    } else {
        inverters
    }
}

pub fn daylight_of(station: &Station) -> Daylight {
    Daylight {
        latitude: station.latitude,
        longitude: station.longitude,
        tz: station.timezone,
    }
}

/// Local day boundaries of `first..=last` for a station.
pub fn day_bounds(station: &Station, first: NaiveDate, last: NaiveDate) -> Vec<DateTime<Utc>> {
    counters::day_boundaries(station.timezone, first, last)
}

/// Local month boundaries of `first..=last` for a station.
pub fn month_bounds(station: &Station, first: YearMonth, last: YearMonth) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut m = first;
    while m <= last {
        out.push(local_midnight(station.timezone, m.first_day()));
        m = m.next();
    }
    out.push(local_midnight(station.timezone, m.first_day()));
    out
}

struct DeviceData {
    series: CleanSeries,
    hours: Vec<crate::store::RollupRow>,
    slots: Vec<crate::store::RollupRow>,
    derated: Vec<DateTime<Utc>>,
}

/// What a device's figures for a window rest on, as read from the store: raw readings, hourly
/// and 5-minute rollups whose buckets start in the window, and the counter readings just outside.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceInput {
    pub raw: Vec<EnergyReading>,
    pub hours: Vec<RollupRow>,
    pub slots: Vec<RollupRow>,
    pub neighbours: Vec<EnergyReading>,
}

async fn fetch_device(
    store: &Store,
    dev: &Device,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<DeviceInput, Error> {
    // Two round trips: the readings with their neighbours, and the slots with the hours.
    let (raw, neighbours) = store.energy_readings_around(&dev.id, from, to).await?;
    let slot_s = SLOT.num_seconds();
    let (slots, hours): (Vec<RollupRow>, Vec<RollupRow>) = store
        .rollups_of(&dev.id, &[slot_s, 3600], from, to)
        .await?
        .into_iter()
        .partition(|r| r.period_s == slot_s);
    Ok(DeviceInput {
        raw,
        hours,
        slots,
        neighbours,
    })
}

fn prepare_device(
    d: &Deployment,
    station: &Station,
    dev: &Device,
    input: DeviceInput,
) -> DeviceData {
    let DeviceInput {
        raw,
        hours,
        slots,
        neighbours,
    } = input;
    let mut points: BTreeMap<DateTime<Utc>, CounterPoint> = BTreeMap::new();
    for h in &hours {
        for (at, v) in [h.energy_first, h.energy_last].into_iter().flatten() {
            points.insert(
                at,
                CounterPoint {
                    at,
                    lifetime_wh: Some(v),
                    today_wh: None,
                },
            );
        }
    }
    // Raw readings win where both exist: they also carry the daily-yield register.
    for r in neighbours.iter().chain(raw.iter()) {
        let p = CounterPoint {
            at: r.at,
            lifetime_wh: r.lifetime_wh,
            today_wh: r.today_wh,
        };
        match points.get_mut(&r.at) {
            Some(existing) => {
                existing.lifetime_wh = p.lifetime_wh.or(existing.lifetime_wh);
                existing.today_wh = p.today_wh.or(existing.today_wh);
            }
            None => {
                points.insert(r.at, p);
            }
        }
    }
    let points: Vec<CounterPoint> = points.into_values().collect();
    let rules = CounterRules {
        max_gap: Duration::from_std(d.energy.max_gap).unwrap_or(Duration::minutes(30)),
        ..CounterRules::new(dev.rated_power_w)
    };
    let series = clean(&points, &rules, &daylight_of(station));
    let derated = raw
        .iter()
        .filter(|r| r.state.as_deref() == Some("derated"))
        .map(|r| r.at)
        .collect();
    DeviceData {
        series,
        hours,
        slots,
        derated,
    }
}

/// A station's metered figures for the periods between consecutive `boundaries` (local midnights).
/// `now` clips today's daylight for completeness.
pub async fn station_periods(
    store: &Store,
    d: &Deployment,
    station: &Station,
    boundaries: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, Error> {
    let (Some(&from), Some(&to)) = (boundaries.first(), boundaries.last()) else {
        return Ok(Vec::new());
    };
    let mut inputs = Vec::new();
    for dev in energy_devices(d, station) {
        inputs.push((dev, fetch_device(store, dev, from, to).await?));
    }
    Ok(periods_of(d, station, boundaries, now, inputs))
}

/// [`station_periods`] from what the store held for each energy device over the whole range.
pub(crate) fn periods_of(
    d: &Deployment,
    station: &Station,
    boundaries: &[DateTime<Utc>],
    now: DateTime<Utc>,
    inputs: Vec<(&Device, DeviceInput)>,
) -> Vec<Figures> {
    let (Some(&from), Some(&to)) = (boundaries.first(), boundaries.last()) else {
        return Vec::new();
    };
    let tz = station.timezone;
    let mut out: Vec<Figures> = boundaries
        .windows(2)
        .map(|b| Figures {
            from: b[0],
            to: b[1],
            first_day: b[0].with_timezone(&tz).date_naive(),
            energy: WattHours::ZERO,
            notes: BTreeSet::new(),
            devices: Vec::new(),
            completeness: Completeness::default(),
            observed_hours: 0,
            producing_hours: 0,
            clipped_hours: 0,
            derated_readings: 0,
            resets: Vec::new(),
        })
        .collect();
    // Daylight of every local day in range, computed once.
    let mut windows: BTreeMap<NaiveDate, DaylightWindow> = BTreeMap::new();
    let mut day = from.with_timezone(&tz).date_naive();
    while local_midnight(tz, day) < to {
        windows.insert(
            day,
            daylight_window(station.latitude, station.longitude, tz, day, now),
        );
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    let light = daylight_of(station);
    for (dev, input) in inputs {
        let data = prepare_device(d, station, dev, input);
        let poll = Duration::from_std(dev.poll_interval.unwrap_or(d.collect.poll_interval))
            .unwrap_or(Duration::minutes(1))
            .max(SLOT);
        let periods = energy_between(&data.series, boundaries, &light);
        for (fig, p) in out.iter_mut().zip(periods) {
            fig.energy = fig.energy + p.energy;
            fig.notes.extend(p.notes.iter().copied());
            fig.devices.push(DeviceFigures {
                device: dev.id.clone(),
                energy: p.energy,
                notes: p.notes,
            });
            fig.resets.extend(
                data.series
                    .events()
                    .iter()
                    .filter(|(t, n)| *n == Note::CounterReset && *t >= fig.from && *t < fig.to)
                    .map(|(t, _)| (dev.id.clone(), *t)),
            );
            fig.derated_readings += data
                .derated
                .iter()
                .filter(|t| **t >= fig.from && **t < fig.to)
                .count() as i64;
        }
        // Hourly buckets (availability) and 5-minute slots (completeness) by local day.
        let group = |rows: &[crate::store::RollupRow]| {
            let mut by_day: BTreeMap<NaiveDate, Vec<crate::store::RollupRow>> = BTreeMap::new();
            for r in rows {
                by_day
                    .entry(r.bucket.with_timezone(&tz).date_naive())
                    .or_default()
                    .push(r.clone());
            }
            by_day
        };
        let by_day = group(&data.hours);
        let slots_by_day = group(&data.slots);
        for (day, window) in &windows {
            let start = local_midnight(tz, *day);
            let Some(fig) = out.iter_mut().find(|f| f.from <= start && start < f.to) else {
                continue;
            };
            let hours = by_day.get(day).map(Vec::as_slice).unwrap_or(&[]);
            let buckets: Vec<_> = slots_by_day
                .get(day)
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|h| (h.bucket, SLOT, h.samples))
                .collect();
            fig.completeness = fig.completeness + completeness(*window, &buckets, poll);
            let Some((rise, set)) = window else { continue };
            // Availability and clipping only while the sun is well up (an hour after sunrise to
            // an hour before sunset), where an inverter without output is a real loss.
            let (a, b) = (*rise + Duration::hours(1), *set - Duration::hours(1));
            for h in hours
                .iter()
                .filter(|h| h.bucket >= a && h.bucket + Duration::hours(1) <= b)
                .filter(|h| h.samples > 0)
            {
                fig.observed_hours += 1;
                let max = h.power_max_w.unwrap_or(0.0);
                if max > 0.0 {
                    fig.producing_hours += 1;
                }
                if max >= dev.rated_power_w * 0.99 {
                    fig.clipped_hours += 1;
                }
            }
        }
    }
    out
}

/// Metered figures per local day `first..=last`.
pub async fn station_days(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, Error> {
    station_periods(store, d, station, &day_bounds(station, first, last), now).await
}

/// Metered figures per local month `first..=last`.
pub async fn station_months(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: YearMonth,
    last: YearMonth,
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, Error> {
    station_periods(store, d, station, &month_bounds(station, first, last), now).await
}
