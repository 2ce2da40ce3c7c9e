//! A station's figures per local day, computed once and kept in the store (`station_days`) rather
//! than recomputed from raw readings on every view. A past day's figures are those of the day on
//! its own: [`metered::station_days`] of that one day, resting on its readings and the nearest
//! counter reading on either side. The rollup write that merges a sample marks every stored day
//! the sample can change; a marked or missing day is computed again before it is shown, and
//! [`refresh`] does so in the background. Today is always computed live. Months are composed
//! from their days (the month energy is the sum of its days', exactly as a month computed whole
//! telescopes between the same midnights).

use super::counters::{local_midnight, Completeness, Note};
use super::metered::{self, energy_devices, DeviceFigures, DeviceInput, Figures};
use super::Error;
use crate::config::Deployment;
use crate::domain::{DeviceId, Station, StationId, WattHours, YearMonth};
use crate::store::{DayFiguresRow, EnergyReading, RollupRow, Store, StoredDay, StoredMonth};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const NOTES: [Note; 7] = [
    Note::Bridged,
    Note::CounterReset,
    Note::Rollover,
    Note::SpikeExcluded,
    Note::StepBack,
    Note::DailyRegister,
    Note::NoData,
];

fn note_codes(notes: &BTreeSet<Note>) -> String {
    notes
        .iter()
        .map(|n| n.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_notes(text: &str) -> BTreeSet<Note> {
    text.split(',')
        .filter_map(|c| NOTES.into_iter().find(|n| n.as_str() == c))
        .collect()
}

/// A day's local date in the station's time zone.
pub fn today(station: &Station, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&station.timezone).date_naive()
}

/// How far a day's figures reach: a sample stored strictly inside can change them. An hour of
/// margin covers hourly buckets that straddle a midnight not on the hour.
fn reach(
    fig: &Figures,
    before: &[Option<DateTime<Utc>>],
    after: &[Option<DateTime<Utc>>],
) -> (i64, i64) {
    let hour = 3_600_000;
    let from = fig.from.timestamp_millis() - hour;
    let to = fig.to.timestamp_millis() + hour;
    let lo = before
        .iter()
        .map(|b| b.map_or(i64::MIN, |t| t.timestamp_millis()))
        .min()
        .unwrap_or(i64::MIN)
        .min(from);
    let hi = after
        .iter()
        .map(|a| a.map_or(i64::MAX, |t| t.timestamp_millis()))
        .max()
        .unwrap_or(i64::MAX)
        .max(to);
    (lo, hi)
}

fn to_row(
    station: &StationId,
    f: &Figures,
    (reach_from_ms, reach_to_ms): (i64, i64),
) -> DayFiguresRow {
    let devices = f
        .devices
        .iter()
        .map(|d| format!("{}\t{}\t{}", d.device, d.energy.0, note_codes(&d.notes)))
        .collect::<Vec<_>>()
        .join("\n");
    let resets = f
        .resets
        .iter()
        .map(|(d, t)| format!("{d}\t{}", t.timestamp_millis()))
        .collect::<Vec<_>>()
        .join("\n");
    DayFiguresRow {
        station: station.clone(),
        day_ms: f.from.timestamp_millis(),
        to_ms: f.to.timestamp_millis(),
        energy_wh: f.energy.0,
        notes: note_codes(&f.notes),
        expected: f.completeness.expected,
        received: f.completeness.received,
        observed_hours: f.observed_hours,
        producing_hours: f.producing_hours,
        clipped_hours: f.clipped_hours,
        derated_readings: f.derated_readings,
        devices,
        resets,
        reach_from_ms,
        reach_to_ms,
    }
}

fn from_row(station: &Station, r: &DayFiguresRow) -> Figures {
    let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let from = at(r.day_ms);
    let devices = r
        .devices
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let device = DeviceId::new(parts.next()?);
            let energy = WattHours(parts.next()?.parse().ok()?);
            Some(DeviceFigures {
                device,
                energy,
                notes: parse_notes(parts.next().unwrap_or("")),
            })
        })
        .collect();
    let resets = r
        .resets
        .lines()
        .filter_map(|l| {
            let (d, t) = l.split_once('\t')?;
            Some((DeviceId::new(d), at(t.parse().ok()?)))
        })
        .collect();
    Figures {
        from,
        to: at(r.to_ms),
        first_day: from.with_timezone(&station.timezone).date_naive(),
        energy: WattHours(r.energy_wh),
        notes: parse_notes(&r.notes),
        devices,
        completeness: Completeness {
            expected: r.expected,
            received: r.received,
        },
        observed_hours: r.observed_hours,
        producing_hours: r.producing_hours,
        clipped_hours: r.clipped_hours,
        derated_readings: r.derated_readings,
        resets,
    }
}

/// The times of the counter readings a day rests on outside itself (raw, hourly).
type Outside = [Option<DateTime<Utc>>; 2];

/// What one device's store holds over a run of days, read once and cut into days.
struct Bulk {
    raw: Vec<EnergyReading>,
    hours: Vec<RollupRow>,
    slots: Vec<RollupRow>,
    /// Raw before the run, raw at or after it, rollup before, rollup after.
    outside: [Option<EnergyReading>; 4],
}

fn reading(at: DateTime<Utc>, wh: f64) -> EnergyReading {
    EnergyReading {
        at,
        lifetime_wh: Some(wh),
        today_wh: None,
        state: None,
    }
}

impl Bulk {
    /// Exactly what [`metered::station_periods`] reads for the one day `[from, to)`, and the
    /// times of the neighbours it rests on.
    fn day(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> (DeviceInput, Outside, Outside) {
        let raw_lo = self.raw.partition_point(|r| r.at < from);
        let raw_hi = self.raw.partition_point(|r| r.at < to);
        let raw = self.raw[raw_lo..raw_hi].to_vec();
        let in_day = |rows: &[RollupRow]| -> Vec<RollupRow> {
            let lo = rows.partition_point(|r| r.bucket < from);
            let hi = rows.partition_point(|r| r.bucket < to);
            rows[lo..hi].to_vec()
        };
        let raw_before = raw_lo
            .checked_sub(1)
            .and_then(|i| self.raw.get(i))
            .or(self.outside[0].as_ref())
            .cloned();
        let raw_after = self.raw.get(raw_hi).or(self.outside[1].as_ref()).cloned();
        // The latest hourly counter before the day: scanning back from the day's first bucket,
        // a bucket that ends by `from` bounds every earlier one.
        let hour = Duration::hours(1);
        let mut roll_before = self.outside[2].clone();
        for h in self.hours[..self.hours.partition_point(|r| r.bucket < from)]
            .iter()
            .rev()
        {
            if let Some((t, v)) = h.energy_last.filter(|(t, _)| *t < from) {
                if roll_before.as_ref().is_none_or(|r| r.at < t) {
                    roll_before = Some(reading(t, v));
                }
                if h.bucket + hour <= from {
                    break;
                }
            }
        }
        // The earliest hourly counter at or after the day's end, scanning forward likewise.
        let mut roll_after = self.outside[3].clone();
        for h in &self.hours[self.hours.partition_point(|r| r.bucket + hour <= to)..] {
            if let Some((t, v)) = h.energy_first.filter(|(t, _)| *t >= to) {
                if roll_after.as_ref().is_none_or(|r| r.at > t) {
                    roll_after = Some(reading(t, v));
                }
                if h.bucket >= to {
                    break;
                }
            }
        }
        let before = [
            raw_before.as_ref().map(|r| r.at),
            roll_before.as_ref().map(|r| r.at),
        ];
        let after = [
            raw_after.as_ref().map(|r| r.at),
            roll_after.as_ref().map(|r| r.at),
        ];
        // In the order `Store::energy_neighbours` returns them.
        let neighbours = [raw_before, raw_after, roll_before, roll_after]
            .into_iter()
            .flatten()
            .collect();
        (
            DeviceInput {
                raw,
                hours: in_day(&self.hours),
                slots: in_day(&self.slots),
                neighbours,
            },
            before,
            after,
        )
    }
}

/// The figures of each past day in `days` (ascending), each computed as the day on its own, with
/// its reach; the store is read once per device for the whole run.
pub async fn compute_days(
    store: &Store,
    d: &Deployment,
    station: &Station,
    days: &[NaiveDate],
    now: DateTime<Utc>,
) -> Result<Vec<(Figures, (i64, i64))>, Error> {
    let (Some(&first), Some(&last)) = (days.first(), days.last()) else {
        return Ok(Vec::new());
    };
    let tz = station.timezone;
    let from = local_midnight(tz, first);
    let to = local_midnight(tz, last.succ_opt().unwrap_or(last));
    let devices = energy_devices(d, station);
    let mut bulks = Vec::with_capacity(devices.len());
    for dev in &devices {
        bulks.push(Bulk {
            raw: store.energy_readings(&dev.id, from, to).await?,
            // From an hour early: a bucket that starts before the run can hold a neighbour.
            hours: store
                .rollups(&dev.id, 3600, from - Duration::hours(1), to)
                .await?,
            slots: store.rollups(&dev.id, 300, from, to).await?,
            outside: store.energy_neighbours_each(&dev.id, from, to).await?,
        });
    }
    let mut out = Vec::with_capacity(days.len());
    for day in days {
        let bounds = metered::day_bounds(station, *day, *day);
        let (Some(&a), Some(&b)) = (bounds.first(), bounds.last()) else {
            continue;
        };
        let mut inputs = Vec::with_capacity(devices.len());
        let mut before = Vec::new();
        let mut after = Vec::new();
        for (dev, bulk) in devices.iter().zip(&bulks) {
            let (input, bf, af) = bulk.day(a, b);
            before.extend(bf);
            after.extend(af);
            inputs.push((*dev, input));
        }
        let Some(fig) = metered::periods_of(d, station, &bounds, now, inputs)
            .into_iter()
            .next()
        else {
            continue;
        };
        let r = reach(&fig, &before, &after);
        out.push((fig, r));
    }
    Ok(out)
}

/// Daily figures `first..=last` of a station: past days from the store (computing and storing
/// those missing or marked), today and later live.
pub async fn days(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, Error> {
    let today = today(station, now);
    let mut out = Vec::new();
    if first < today {
        let upto = last.min(today - Duration::days(1));
        out = past_days(store, d, station, first, upto, now).await?;
    }
    if last >= today {
        out.extend(metered::station_days(store, d, station, first.max(today), last, now).await?);
    }
    Ok(out)
}

async fn past_days(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, Error> {
    Ok(past_days_versioned(store, d, station, first, last, now)
        .await?
        .into_iter()
        .map(|(f, _)| f)
        .collect())
}

/// [`past_days`] with the version each figure is stored as (`None`: computed, but a mark came
/// meanwhile and the store kept the day stale).
async fn past_days_versioned(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<(Figures, Option<i64>)>, Error> {
    let tz = station.timezone;
    let from_ms = local_midnight(tz, first).timestamp_millis();
    let to_ms = local_midnight(tz, last.succ_opt().unwrap_or(last)).timestamp_millis();
    let mut stored = store.station_days(&station.id, from_ms, to_ms).await?;
    let wanted = metered::day_bounds(station, first, last);
    if stored.len() + 1 < wanted.len() {
        let have: BTreeSet<i64> = stored.iter().map(|s| s.row.day_ms).collect();
        let missing: Vec<(i64, i64)> = wanted
            .windows(2)
            .map(|w| (w[0].timestamp_millis(), w[1].timestamp_millis()))
            .filter(|(a, _)| !have.contains(a))
            .collect();
        store.add_station_days(&station.id, &missing).await?;
        stored = store.station_days(&station.id, from_ms, to_ms).await?;
    }
    let stale: Vec<&StoredDay> = stored.iter().filter(|s| s.stale > 0).collect();
    let mut fresh: HashMap<i64, (Figures, Option<i64>)> = HashMap::new();
    if !stale.is_empty() {
        for (fig, row, version) in recompute(store, d, station, &stale, now).await? {
            fresh.insert(row.day_ms, (fig, version));
        }
    }
    Ok(stored
        .iter()
        .map(|s| {
            fresh.remove(&s.row.day_ms).unwrap_or_else(|| {
                let version = (s.stale == 0).then_some(s.version);
                (from_row(station, &s.row), version)
            })
        })
        .collect())
}

/// Computes the stored days given (all of one station) and stores them if no mark came meanwhile.
async fn recompute(
    store: &Store,
    d: &Deployment,
    station: &Station,
    stale: &[&StoredDay],
    now: DateTime<Utc>,
) -> Result<Vec<(Figures, DayFiguresRow, Option<i64>)>, Error> {
    let tz = station.timezone;
    let days: Vec<NaiveDate> = stale
        .iter()
        .filter_map(|s| DateTime::from_timestamp_millis(s.row.day_ms))
        .map(|t| t.with_timezone(&tz).date_naive())
        .collect();
    let seen: HashMap<i64, i64> = stale.iter().map(|s| (s.row.day_ms, s.stale)).collect();
    let computed = compute_days(store, d, station, &days, now).await?;
    let mut out = Vec::with_capacity(computed.len());
    let mut put = Vec::with_capacity(computed.len());
    for (fig, r) in computed {
        let row = to_row(&station.id, &fig, r);
        if let Some(s) = seen.get(&row.day_ms) {
            put.push((row.clone(), *s));
        }
        out.push((fig, row));
    }
    let versions: HashMap<i64, i64> = put
        .iter()
        .zip(store.put_station_days(&put).await?)
        .filter_map(|((row, _), v)| Some((row.day_ms, v?)))
        .collect();
    Ok(out
        .into_iter()
        .map(|(fig, row)| {
            let v = versions.get(&row.day_ms).copied();
            (fig, row, v)
        })
        .collect())
}

/// The closed months `first..=last` of a station, composed from their days: read from the store
/// where a stored month is still what its days make (same count, same versions, none stale),
/// composed from the days and stored again otherwise.
pub async fn closed_months(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: YearMonth,
    last: YearMonth,
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, Error> {
    if last < first {
        return Ok(Vec::new());
    }
    let bounds = metered::month_bounds(station, first, last);
    let (Some(from), Some(to)) = (bounds.first(), bounds.last()) else {
        return Ok(Vec::new());
    };
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let (stored, now_is) = store
        .station_months_checked(&station.id, from_ms, to_ms)
        .await?;
    if stored.len() + 1 == bounds.len() {
        let was = stored
            .iter()
            .fold((0, 0), |(n, v), m| (n + m.days, v + m.days_version));
        if !now_is.stale && (now_is.days, now_is.versions) == was {
            return Ok(stored.iter().map(|m| from_row(station, &m.row)).collect());
        }
    }
    // Some month is out of date: compose every month of the span from its days, and store the
    // ones whose every day is stored as computed.
    let today = today(station, now);
    let last_day = (last.next().first_day() - Duration::days(1)).min(today - Duration::days(1));
    let days = past_days_versioned(store, d, station, first.first_day(), last_day, now).await?;
    let mut months = Vec::with_capacity(bounds.len());
    let mut put = Vec::new();
    for b in bounds.windows(2) {
        let in_month: Vec<&(Figures, Option<i64>)> = days
            .iter()
            .filter(|(f, _)| f.from >= b[0] && f.from < b[1])
            .collect();
        let figures: Vec<&Figures> = in_month.iter().map(|(f, _)| f).collect();
        let month = compose(station, b[0], b[1], &figures);
        let versions: Option<i64> = in_month.iter().map(|(_, v)| *v).sum();
        if let Some(days_version) = versions {
            put.push(StoredMonth {
                row: to_row(&station.id, &month, (i64::MIN, i64::MAX)),
                days: i64::try_from(in_month.len()).unwrap_or(i64::MAX),
                days_version,
            });
        }
        months.push(month);
    }
    store.put_station_months(&put).await?;
    Ok(months)
}

/// A station's year as its page shows it: the months `first..=this` (the closed ones through
/// [`closed_months`], the current one composed from its days) and the days `recent..=last`.
pub async fn year(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: YearMonth,
    recent: NaiveDate,
    last: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(Vec<Figures>, Vec<Figures>), Error> {
    let this = YearMonth::of(last);
    let mut months = closed_months(store, d, station, first, this.prev(), now).await?;
    let from = recent.min(this.first_day());
    let days = days(store, d, station, from, last, now).await?;
    months.extend(months_of(station, this, this, &days));
    Ok((
        months,
        days.into_iter().filter(|f| f.first_day >= recent).collect(),
    ))
}

/// Months `first..=last` of a station composed from its days: energies, completeness, hours and
/// counts add up; notes are the days' own, and "no data" only when no day had any.
pub async fn months(
    store: &Store,
    d: &Deployment,
    station: &Station,
    first: YearMonth,
    last: YearMonth,
    now: DateTime<Utc>,
) -> Result<Vec<Figures>, Error> {
    let today = today(station, now);
    let end = last.next().first_day() - Duration::days(1);
    let days = days(store, d, station, first.first_day(), end.min(today), now).await?;
    Ok(months_of(station, first, last, &days))
}

/// [`months`] from daily figures already at hand.
pub fn months_of(
    station: &Station,
    first: YearMonth,
    last: YearMonth,
    days: &[Figures],
) -> Vec<Figures> {
    let bounds = metered::month_bounds(station, first, last);
    bounds
        .windows(2)
        .map(|b| {
            let in_month: Vec<&Figures> = days
                .iter()
                .filter(|f| f.from >= b[0] && f.from < b[1])
                .collect();
            compose(station, b[0], b[1], &in_month)
        })
        .collect()
}

fn compose(
    station: &Station,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    days: &[&Figures],
) -> Figures {
    let merge_notes = |sets: &mut dyn Iterator<Item = &BTreeSet<Note>>| {
        let mut all = BTreeSet::new();
        let mut covered = false;
        for n in sets {
            covered |= !n.contains(&Note::NoData);
            all.extend(n.iter().copied().filter(|n| *n != Note::NoData));
        }
        if !covered {
            all.insert(Note::NoData);
        }
        all
    };
    let mut devices: BTreeMap<usize, (DeviceId, WattHours, Vec<&BTreeSet<Note>>)> = BTreeMap::new();
    let mut order: Vec<DeviceId> = Vec::new();
    for f in days {
        for dev in &f.devices {
            let i = match order.iter().position(|x| *x == dev.device) {
                Some(i) => i,
                None => {
                    order.push(dev.device.clone());
                    order.len() - 1
                }
            };
            let e = devices
                .entry(i)
                .or_insert_with(|| (dev.device.clone(), WattHours::ZERO, Vec::new()));
            e.1 = e.1 + dev.energy;
            e.2.push(&dev.notes);
        }
    }
    Figures {
        from,
        to,
        first_day: from.with_timezone(&station.timezone).date_naive(),
        energy: days.iter().map(|f| f.energy).sum(),
        notes: merge_notes(&mut days.iter().map(|f| &f.notes)),
        devices: devices
            .into_values()
            .map(|(device, energy, notes)| DeviceFigures {
                device,
                energy,
                notes: merge_notes(&mut notes.into_iter()),
            })
            .collect(),
        completeness: days
            .iter()
            .fold(Completeness::default(), |a, f| a + f.completeness),
        observed_hours: days.iter().map(|f| f.observed_hours).sum(),
        producing_hours: days.iter().map(|f| f.producing_hours).sum(),
        clipped_hours: days.iter().map(|f| f.clipped_hours).sum(),
        derated_readings: days.iter().map(|f| f.derated_readings).sum(),
        resets: days.iter().flat_map(|f| f.resets.iter().cloned()).collect(),
    }
}

/// Brings the stored days up to date: adds every station's days from its first day with data to
/// yesterday that are not stored yet, then computes what is stale, at most `limit` days. Returns
/// how many days it computed (0: nothing left to do).
pub async fn refresh(
    store: &Store,
    d: &Deployment,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<usize, Error> {
    add_missing_days(store, d, now).await?;
    recompute_stale(store, d, now, limit).await
}

/// Adds a stale row for every past day of every station, from its first day with data, that is
/// not stored yet (a fleet-wide read of the stored days and the daily rollups: run it hourly, not
/// on every tick).
pub async fn add_missing_days(
    store: &Store,
    d: &Deployment,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let extent: HashMap<StationId, (i64, i64, i64)> = store
        .station_days_extent()
        .await?
        .into_iter()
        .map(|(s, a, b, n)| (s, (a, b, n)))
        .collect();
    let firsts: HashMap<StationId, i64> = store.station_first_days().await?.into_iter().collect();
    for s in &d.stations {
        let Some(first_ms) = firsts.get(&s.id) else {
            continue;
        };
        let Some(first) = DateTime::from_timestamp_millis(*first_ms) else {
            continue;
        };
        let first = first.with_timezone(&s.timezone).date_naive();
        let Some(last) = today(s, now).pred_opt() else {
            continue;
        };
        if first > last {
            continue;
        }
        let bounds = metered::day_bounds(s, first, last);
        let wanted = bounds.len() - 1;
        let (lo, hi) = (
            bounds[0].timestamp_millis(),
            bounds[wanted - 1].timestamp_millis(),
        );
        if let Some((a, b, n)) = extent.get(&s.id) {
            if *a <= lo && *b >= hi && usize::try_from(*n).unwrap_or(0) >= wanted {
                continue;
            }
        }
        let have: BTreeSet<i64> = store
            .station_days(&s.id, lo, hi + 1)
            .await?
            .into_iter()
            .map(|x| x.row.day_ms)
            .collect();
        let missing: Vec<(i64, i64)> = bounds
            .windows(2)
            .map(|w| (w[0].timestamp_millis(), w[1].timestamp_millis()))
            .filter(|(a, _)| !have.contains(a))
            .collect();
        store.add_station_days(&s.id, &missing).await?;
    }
    Ok(())
}

/// Computes stale stored days (at most `limit`, of past days only) and returns how many.
pub async fn recompute_stale(
    store: &Store,
    d: &Deployment,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<usize, Error> {
    let stations: HashMap<&str, &Station> = d.stations.iter().map(|s| (s.id.as_str(), s)).collect();
    // One pass: a day whose computation lost a race to a new mark is left for the next.
    let stale = store
        .stale_station_days(i64::try_from(limit).unwrap_or(i64::MAX))
        .await?;
    let mut done = 0;
    let mut i = 0;
    while i < stale.len() {
        let j = stale[i..]
            .iter()
            .position(|x| x.row.station != stale[i].row.station)
            .map_or(stale.len(), |k| i + k);
        let group = &stale[i..j];
        i = j;
        let Some(station) = stations.get(group[0].row.station.as_str()) else {
            continue;
        };
        // Today's and later rows are never shown from the store; leave them.
        let today_ms = local_midnight(station.timezone, today(station, now)).timestamp_millis();
        let group: Vec<&StoredDay> = group.iter().filter(|x| x.row.day_ms < today_ms).collect();
        if group.is_empty() {
            continue;
        }
        done += recompute(store, d, station, &group, now).await?.len();
        // The months the page shows, composed again where a day of theirs changed.
        let this = YearMonth::of(today(station, now));
        closed_months(store, d, station, months_back(this, 11), this.prev(), now).await?;
    }
    Ok(done)
}

/// Composes and stores every station's shown months (the eleven closed months before this one)
/// that are missing or out of date: two small reads per station when they are current. Run it
/// hourly, after the days are brought up to date. Returns how many stations it looked at.
pub async fn compose_months(
    store: &Store,
    d: &Deployment,
    now: DateTime<Utc>,
) -> Result<usize, Error> {
    for s in &d.stations {
        let this = YearMonth::of(today(s, now));
        closed_months(store, d, s, months_back(this, 11), this.prev(), now).await?;
    }
    Ok(d.stations.len())
}

/// The month `n` months before `m`.
pub fn months_back(mut m: YearMonth, n: u32) -> YearMonth {
    for _ in 0..n {
        m = m.prev();
    }
    m
}

/// Days computed per background pass: a year of 10,000 stations takes many passes, none holding
/// the store long.
const REFRESH_BATCH: usize = 5_000;

/// The background half of [`days`]: every `every`, brings the stored days up to date, so a view
/// rarely finds one to compute. Failures are logged and tried again on the next tick.
pub async fn keep_fresh(
    store: Store,
    d: std::sync::Arc<Deployment>,
    every: std::time::Duration,
    leadership: crate::store::Leadership,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut added_at: Option<i64> = None;
    let mut composed_at: Option<i64> = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if leadership.fence().is_none() {
            // Another instance keeps the stored figures; pages compute what they miss.
            continue;
        }
        let now = Utc::now();
        // The days are added at start-up and then hourly, so a day is stored soon after it ends
        // in any time zone.
        let hour = now.timestamp().div_euclid(3600);
        if added_at != Some(hour) {
            match add_missing_days(&store, &d, now).await {
                Ok(()) => added_at = Some(hour),
                Err(error) => {
                    tracing::warn!(%error, "adding stations' daily figures failed; will retry");
                }
            }
        }
        loop {
            match recompute_stale(&store, &d, Utc::now(), REFRESH_BATCH).await {
                Ok(n) if n >= REFRESH_BATCH && !cancel.is_cancelled() => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "refreshing stations' daily figures failed; will retry");
                    break;
                }
            }
        }
        if composed_at != Some(hour) && !cancel.is_cancelled() {
            match compose_months(&store, &d, Utc::now()).await {
                Ok(_) => composed_at = Some(hour),
                Err(error) => {
                    tracing::warn!(%error, "composing stations' monthly figures failed; will retry");
                }
            }
        }
    }
}
