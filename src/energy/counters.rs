//! Energy from lifetime counters: pure arithmetic, no I/O, no clock.
//!
//! A device's counter readings are first *cleaned* into a list of segments (the energy between two
//! accepted readings), with every irregularity noted where it happened: a reset, a 16/32-bit
//! rollover, an excluded spike, a step backwards, a gap bridged. The counter is then interpolated at
//! period boundaries (local midnights, first days of months) and rounded to whole Wh there, so that
//! days always sum exactly to their month.
//!
//! Interpolation is weighted by a [`Weight`]: plain elapsed time, or daylight time for a station, so
//! that the energy of a gap from evening to the next morning lands on the daylight hours it was
//! produced in rather than on the night. Energy is never invented: what a gap bridges is the counter
//! difference across it, nothing more.

use crate::domain::WattHours;
use crate::solar::{self, SunTimes};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// One reading of a device's energy registers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterPoint {
    pub at: DateTime<Utc>,
    /// The lifetime counter (`energy_lifetime_wh`), when the device has one.
    pub lifetime_wh: Option<f64>,
    /// The device's own daily-yield register (`energy_today_wh`), reset at the device's midnight.
    pub today_wh: Option<f64>,
}

/// What a figure rests on beyond plain counter differences. Shown next to the figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Note {
    /// A gap in the data was bridged: the energy across it is the counter difference, spread over
    /// the daylight of the gap.
    Bridged,
    /// The counter fell to near zero or jumped to a new base (device replaced or firmware reset).
    CounterReset,
    /// A 16- or 32-bit counter wrapped around.
    Rollover,
    /// A reading far above what the device can produce was excluded.
    SpikeExcluded,
    /// A reading below an earlier one was ignored (nothing counted twice).
    StepBack,
    /// The device has no lifetime counter: the figure comes from its daily-yield register.
    DailyRegister,
    /// No reading covers this period at all.
    NoData,
}

impl Note {
    pub fn as_str(self) -> &'static str {
        match self {
            Note::Bridged => "bridged",
            Note::CounterReset => "counter_reset",
            Note::Rollover => "rollover",
            Note::SpikeExcluded => "spike_excluded",
            Note::StepBack => "step_back",
            Note::DailyRegister => "daily_register",
            Note::NoData => "no_data",
        }
    }

    /// One sentence for pages and reports.
    pub fn explain(self) -> &'static str {
        match self {
            Note::Bridged => "a data gap was bridged with the counter difference across it",
            Note::CounterReset => {
                "the counter reset or was replaced (device swap or firmware reset)"
            }
            Note::Rollover => "a 16/32-bit counter wrapped around and was unwrapped",
            Note::SpikeExcluded => "an implausible counter spike was excluded",
            Note::StepBack => "a reading lower than an earlier one was ignored",
            Note::DailyRegister => "no lifetime counter: computed from the daily-yield register",
            Note::NoData => "no readings in this period",
        }
    }
}

/// The device facts the plausibility checks need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CounterRules {
    /// Nameplate AC power: no counter can grow faster than this (with `headroom`).
    pub rated_power_w: f64,
    /// A stretch of daylight without readings longer than this is a gap (its energy is bridged).
    pub max_gap: Duration,
    /// Tolerance above rated power before an increase counts as a spike.
    pub headroom: f64,
}

impl CounterRules {
    pub fn new(rated_power_w: f64) -> CounterRules {
        CounterRules {
            rated_power_w,
            max_gap: Duration::minutes(30),
            headroom: 1.25,
        }
    }

    /// The most a counter can plausibly grow in `dt` (plus a quarter hour of slack for clock jitter).
    fn max_increase(&self, dt: Duration) -> f64 {
        let hours = dt.num_milliseconds().max(0) as f64 / 3_600_000.0 + 0.25;
        self.rated_power_w.max(1.0) * self.headroom * hours
    }

    /// A drop this small is a step backwards (a stale or re-sent reading), not a reset.
    fn step_tolerance(&self, reference: f64) -> f64 {
        (reference * 0.01).max(self.rated_power_w.max(1.0))
    }
}

/// Register widths whose wrap-around is recognised, in Wh: 16 and 32 bits at the usual scales
/// (1 Wh, 10 Wh, 0.1 kWh, 1 kWh per count).
const ROLLOVER_MODULI: [f64; 8] = [
    65_536.0,
    655_360.0,
    6_553_600.0,
    65_536_000.0,
    4_294_967_296.0,
    42_949_672_960.0,
    429_496_729_600.0,
    4_294_967_296_000.0,
];

/// How many readings after a jump are searched for one back in line with the counter before it.
const SPIKE_LOOKAHEAD: usize = 5;

/// How time between readings is weighed when a counter difference is spread over it.
pub trait Weight {
    /// Productive seconds in `[from, to)`.
    fn weight(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64;
}

/// Plain elapsed time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Elapsed;

impl Weight for Elapsed {
    fn weight(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        (to - from).num_milliseconds().max(0) as f64 / 1000.0
    }
}

/// Daylight time at a station: seconds between sunrise and sunset of each local day.
#[derive(Debug, Clone, Copy)]
pub struct Daylight {
    pub latitude: f64,
    pub longitude: f64,
    pub tz: Tz,
}

impl Weight for Daylight {
    fn weight(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
        if to <= from {
            return 0.0;
        }
        let mut total = 0.0;
        let mut day = from.with_timezone(&self.tz).date_naive();
        let last = to.with_timezone(&self.tz).date_naive();
        while day <= last {
            let (rise, set) = match solar::sun_times(self.latitude, self.longitude, day, self.tz) {
                SunTimes::Normal { sunrise, sunset } => (sunrise, sunset),
                SunTimes::PolarDay => (local_midnight(self.tz, day), next_midnight(self.tz, day)),
                SunTimes::PolarNight => (from, from),
            };
            let a = rise.max(from);
            let b = set.min(to);
            if b > a {
                total += (b - a).num_milliseconds() as f64 / 1000.0;
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        total
    }
}

/// The start of local `day` in `tz` as UTC (the earliest instant if midnight is ambiguous, the first
/// valid instant after a spring-forward gap).
pub fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    for h in 0..4 {
        let t = naive + Duration::hours(h);
        if let Some(d) = tz.from_local_datetime(&t).earliest() {
            return d.with_timezone(&Utc);
        }
    }
    Utc.from_utc_datetime(&naive)
}

fn next_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    local_midnight(tz, day.succ_opt().unwrap_or(day))
}

/// Half-open UTC ranges of the local days `first..=last` (boundaries: n days give n + 1 instants).
pub fn day_boundaries(tz: Tz, first: NaiveDate, last: NaiveDate) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        out.push(local_midnight(tz, day));
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    out.push(local_midnight(tz, day));
    out
}

/// The energy between two accepted readings.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Segment {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    wh: f64,
    bridged: bool,
}

/// A device's readings cleaned into segments, with the irregularities found.
#[derive(Debug, Clone, Default)]
pub struct CleanSeries {
    segments: Vec<Segment>,
    events: Vec<(DateTime<Utc>, Note)>,
    daily_register: bool,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl CleanSeries {
    /// Total energy of all segments (before rounding).
    pub fn total_wh(&self) -> f64 {
        self.segments.iter().map(|s| s.wh).sum()
    }

    /// Irregularities and where they were found, oldest first.
    pub fn events(&self) -> &[(DateTime<Utc>, Note)] {
        &self.events
    }

    pub fn from_daily_register(&self) -> bool {
        self.daily_register
    }

    /// The counter, cleaned and starting at zero at the first reading, interpolated at `t`.
    fn cumulative(&self, t: DateTime<Utc>, w: &dyn Weight) -> f64 {
        let mut acc = 0.0;
        for s in &self.segments {
            if t >= s.to {
                acc += s.wh;
                continue;
            }
            if t > s.from {
                acc += s.wh * fraction(s, t, w);
            }
            break;
        }
        acc
    }
}

/// The share of a segment's energy produced before `t`.
fn fraction(s: &Segment, t: DateTime<Utc>, w: &dyn Weight) -> f64 {
    let whole = w.weight(s.from, s.to);
    if whole > 0.0 {
        return (w.weight(s.from, t) / whole).clamp(0.0, 1.0);
    }
    // No productive time in the segment (a clock off at night): fall back to elapsed time.
    let e = Elapsed;
    let whole = e.weight(s.from, s.to);
    if whole > 0.0 {
        (e.weight(s.from, t) / whole).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

/// Cleans a device's readings. The lifetime counter is used when any reading has one; otherwise
/// the daily-yield register, whose daily reset is expected and not noted.
pub fn clean(points: &[CounterPoint], rules: &CounterRules, w: &dyn Weight) -> CleanSeries {
    let mut pts: Vec<(DateTime<Utc>, f64)> = points
        .iter()
        .filter_map(|p| p.lifetime_wh.map(|v| (p.at, v)))
        .filter(|(_, v)| v.is_finite() && *v >= 0.0)
        .collect();
    let daily_register = pts.is_empty();
    if daily_register {
        pts = points
            .iter()
            .filter_map(|p| p.today_wh.map(|v| (p.at, v)))
            .filter(|(_, v)| v.is_finite() && *v >= 0.0)
            .collect();
    }
    pts.sort_by_key(|(t, _)| *t);
    pts.dedup_by_key(|(t, _)| *t);
    let mut out = CleanSeries {
        daily_register,
        first: pts.first().map(|p| p.0),
        last: pts.last().map(|p| p.0),
        ..CleanSeries::default()
    };
    let Some(&(t0, v0)) = pts.first() else {
        return out;
    };
    // The reference is the highest trusted counter value; `ref_t` where the last segment ended.
    let (mut ref_v, mut ref_t) = (v0, t0);
    let mut i = 1;
    while i < pts.len() {
        let (t, v) = pts[i];
        let dt = t - ref_t;
        let rise = v - ref_v;
        let push = |out: &mut CleanSeries, wh: f64| {
            let limit = rules.max_gap.num_seconds() as f64;
            // Productive time never exceeds elapsed time: only long segments need the weight.
            let gap = wh > 0.0 && Elapsed.weight(ref_t, t) > limit && w.weight(ref_t, t) > limit;
            out.segments.push(Segment {
                from: ref_t,
                to: t,
                wh,
                bridged: gap,
            });
        };
        if rise >= 0.0 {
            if rise <= rules.max_increase(dt) {
                push(&mut out, rise);
                ref_v = v;
                ref_t = t;
            } else {
                // Too fast: a spike if a reading soon after is back in line with the reference
                // (a glitch may last a few readings), a new base if the next reading continues
                // from this one and none comes back.
                let ahead = &pts[i + 1..(i + 1 + SPIKE_LOOKAHEAD).min(pts.len())];
                let agrees_with_ref = ahead.iter().any(|(tn, vn)| {
                    vn - ref_v >= -rules.step_tolerance(ref_v)
                        && vn - ref_v <= rules.max_increase(*tn - ref_t)
                });
                let continues = ahead.first().is_some_and(|(tn, vn)| {
                    *vn >= v - rules.step_tolerance(v) && vn - v <= rules.max_increase(*tn - t)
                });
                if !agrees_with_ref && continues {
                    out.events.push((t, Note::CounterReset));
                    push(&mut out, 0.0);
                    ref_v = v;
                    ref_t = t;
                } else {
                    out.events.push((t, Note::SpikeExcluded));
                }
            }
        } else {
            let drop = -rise;
            let wrapped = ROLLOVER_MODULI
                .iter()
                .find(|m| ref_v < **m && ref_v >= **m * 0.5)
                .map(|m| *m - ref_v + v)
                .filter(|inc| *inc <= rules.max_increase(dt));
            if let Some(inc) = wrapped {
                out.events.push((t, Note::Rollover));
                push(&mut out, inc);
                ref_v = v;
            } else if v < ref_v * 0.5 && v <= rules.max_increase(dt) {
                // Restarted from zero: what it shows now was produced since the restart.
                if !daily_register {
                    out.events.push((t, Note::CounterReset));
                }
                push(&mut out, v);
                ref_v = v;
            } else if drop <= rules.step_tolerance(ref_v) {
                out.events.push((t, Note::StepBack));
                push(&mut out, 0.0);
            } else {
                // A replaced device that did not start at zero: a new base, nothing counted.
                out.events.push((t, Note::CounterReset));
                push(&mut out, 0.0);
                ref_v = v;
            }
            ref_t = t;
        }
        i += 1;
    }
    out
}

/// Energy of one period, rounded to whole Wh at its boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodEnergy {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub energy: WattHours,
    pub notes: BTreeSet<Note>,
}

/// Energy in each period between consecutive `boundaries` (ascending). The counter is interpolated
/// at each boundary and rounded there, so consecutive periods sum exactly to the period spanning them.
pub fn energy_between(
    series: &CleanSeries,
    boundaries: &[DateTime<Utc>],
    w: &dyn Weight,
) -> Vec<PeriodEnergy> {
    let at: Vec<i64> = boundaries
        .iter()
        .map(|b| series.cumulative(*b, w).round() as i64)
        .collect();
    boundaries
        .windows(2)
        .zip(at.windows(2))
        .map(|(b, c)| {
            let (from, to) = (b[0], b[1]);
            let mut notes: BTreeSet<Note> = series
                .events
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, n)| *n)
                .collect();
            if series
                .segments
                .iter()
                .any(|s| s.bridged && s.from < to && s.to > from)
            {
                notes.insert(Note::Bridged);
            }
            let covered =
                matches!((series.first, series.last), (Some(f), Some(l)) if f < to && l >= from);
            if !covered {
                notes.insert(Note::NoData);
            } else if series.daily_register {
                notes.insert(Note::DailyRegister);
            }
            PeriodEnergy {
                from,
                to,
                energy: WattHours(c[1] - c[0]),
                notes,
            }
        })
        .collect()
}

/// Data completeness: daylight readings received versus expected from the poll interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completeness {
    pub expected: i64,
    pub received: i64,
}

impl Completeness {
    /// Received over expected, at most 1; `None` when nothing was expected (polar night, future).
    pub fn ratio(self) -> Option<f64> {
        (self.expected > 0)
            .then(|| (self.received.min(self.expected)) as f64 / self.expected as f64)
    }
}

impl std::ops::Add for Completeness {
    type Output = Completeness;
    fn add(self, other: Completeness) -> Completeness {
        Completeness {
            expected: self.expected + other.expected,
            received: self.received + other.received,
        }
    }
}

/// Sunrise to sunset of one local day, `None` when the sun does not rise (or has not yet).
pub type DaylightWindow = Option<(DateTime<Utc>, DateTime<Utc>)>;

/// The daylight window `[sunrise, sunset)` of a local day, clipped to `until` (now, for today).
pub fn daylight_window(
    latitude: f64,
    longitude: f64,
    tz: Tz,
    day: NaiveDate,
    until: DateTime<Utc>,
) -> DaylightWindow {
    let (rise, set) = match solar::sun_times(latitude, longitude, day, tz) {
        SunTimes::Normal { sunrise, sunset } => (sunrise, sunset),
        SunTimes::PolarDay => (local_midnight(tz, day), next_midnight(tz, day)),
        SunTimes::PolarNight => return None,
    };
    let set = set.min(until);
    (set > rise).then_some((rise, set))
}

/// Completeness of one device-day from sample counts per bucket (`(bucket start, bucket length,
/// samples)`): each bucket's expectation is its overlap with daylight divided by the poll interval,
/// and a bucket never counts more readings than it could hold (night readings do not make up for a
/// daytime gap).
pub fn completeness(
    daylight: DaylightWindow,
    buckets: &[(DateTime<Utc>, Duration, i64)],
    poll: Duration,
) -> Completeness {
    let poll_s = poll.num_seconds().max(1) as f64;
    let Some((rise, set)) = daylight else {
        return Completeness::default();
    };
    let expected = ((set - rise).num_seconds() as f64 / poll_s).floor() as i64;
    let received = buckets
        .iter()
        .map(|(start, len, n)| {
            let a = (*start).max(rise);
            let b = (*start + *len).min(set);
            if b <= a {
                return 0;
            }
            let room = ((b - a).num_seconds() as f64 / poll_s).ceil() as i64;
            (*n).min(room)
        })
        .sum::<i64>();
    Completeness {
        expected,
        received: received.min(expected),
    }
}

#[cfg(test)]
mod tests;
