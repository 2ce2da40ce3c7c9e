//! Scripted counter histories with exact expected Wh.

use super::*;
use chrono_tz::Asia::Shanghai;

/// A Shanghai local time as UTC.
fn sh(m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(2026, m, d, h, mi, 0)
        .single()
        .expect("valid local time")
        .with_timezone(&Utc)
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).expect("valid day")
}

fn life(points: &[(DateTime<Utc>, f64)]) -> Vec<CounterPoint> {
    points
        .iter()
        .map(|(at, v)| CounterPoint {
            at: *at,
            lifetime_wh: Some(*v),
            today_wh: None,
        })
        .collect()
}

/// Readings an hour apart are normal in these scripts; a gap is anything over two hours.
fn rules() -> CounterRules {
    CounterRules {
        max_gap: Duration::hours(2),
        ..CounterRules::new(5_000.0)
    }
}

/// Daily Wh for the given local days, and the notes of each day.
fn days(
    points: &[CounterPoint],
    first: NaiveDate,
    last: NaiveDate,
) -> (Vec<i64>, Vec<BTreeSet<Note>>) {
    let series = clean(points, &rules(), &Elapsed);
    let periods = energy_between(&series, &day_boundaries(Shanghai, first, last), &Elapsed);
    (
        periods.iter().map(|p| p.energy.0).collect(),
        periods.into_iter().map(|p| p.notes).collect(),
    )
}

fn set(notes: &[Note]) -> BTreeSet<Note> {
    notes.iter().copied().collect()
}

#[test]
fn counter_is_interpolated_at_local_midnight() {
    let pts = life(&[
        (sh(3, 1, 21, 0), 19_700.0),
        (sh(3, 1, 23, 0), 20_000.0),
        // Local midnight falls half-way between these two readings: the counter there is 20,100.
        (sh(3, 2, 1, 0), 20_200.0),
        (sh(3, 2, 3, 0), 20_500.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 2));
    assert_eq!(wh, vec![400, 400]);
    assert_eq!(notes, vec![set(&[]), set(&[])]);
    // The UTC day would have cut elsewhere: local days start at 16:00 UTC the day before.
    assert_eq!(local_midnight(Shanghai, day(3, 2)), sh(3, 2, 0, 0));
}

#[test]
fn days_sum_exactly_to_their_month() {
    // A reading every 7 hours with a non-integer share at each midnight.
    let mut pts = Vec::new();
    let mut at = sh(2, 27, 5, 0);
    let mut v = 1_000.0;
    while at < sh(4, 2, 0, 0) {
        pts.push((at, v));
        at += Duration::hours(7);
        v += 3_333.0;
    }
    let pts = life(&pts);
    let (wh, _) = days(&pts, day(3, 1), day(3, 31));
    let series = clean(&pts, &rules(), &Elapsed);
    let month = energy_between(
        &series,
        &[
            local_midnight(Shanghai, day(3, 1)),
            local_midnight(Shanghai, day(4, 1)),
        ],
        &Elapsed,
    );
    assert_eq!(wh.iter().sum::<i64>(), month[0].energy.0);
    // The counter interpolated at local midnight: 43 h after the first reading it stands at
    // 43/7 x 3,333 = 20,474.14 -> 20,474; 787 h after, at 374,724.43 -> 374,724.
    assert_eq!(month[0].energy.0, 374_724 - 20_474);
}

#[test]
fn counter_reset_to_zero_counts_what_the_new_counter_shows() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 5_000_000.0),
        (sh(3, 1, 9, 0), 5_003_000.0),
        // Inverter replaced: the new one has produced 1,500 Wh since it started.
        (sh(3, 1, 10, 0), 1_500.0),
        (sh(3, 1, 11, 0), 4_500.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![7_500]);
    assert_eq!(notes[0], set(&[Note::CounterReset]));
}

#[test]
fn counter_replaced_with_a_nonzero_base_counts_nothing_across_the_swap() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 5_000_000.0),
        (sh(3, 1, 9, 0), 5_003_000.0),
        (sh(3, 1, 10, 0), 800_000.0),
        (sh(3, 1, 11, 0), 803_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![6_000]);
    assert_eq!(notes[0], set(&[Note::CounterReset]));
}

#[test]
fn sixteen_bit_rollover_at_a_tenth_of_a_kwh_per_count() {
    // 65,536 counts x 100 Wh = 6,553,600 Wh.
    let pts = life(&[
        (sh(3, 1, 8, 0), 6_550_000.0),
        (sh(3, 1, 9, 0), 6_553_500.0),
        (sh(3, 1, 10, 0), 2_900.0),
        (sh(3, 1, 11, 0), 6_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![3_500 + 3_000 + 3_100]);
    assert_eq!(notes[0], set(&[Note::Rollover]));
}

#[test]
fn thirty_two_bit_rollover_in_wh() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 4_294_965_000.0),
        (sh(3, 1, 9, 0), 4_294_967_000.0),
        (sh(3, 1, 10, 0), 1_704.0),
        (sh(3, 1, 11, 0), 4_704.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![2_000 + 2_000 + 3_000]);
    assert_eq!(notes[0], set(&[Note::Rollover]));
}

#[test]
fn a_spike_is_excluded() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 1_000.0),
        (sh(3, 1, 9, 0), 4_000.0),
        (sh(3, 1, 10, 0), 9_999_999.0),
        (sh(3, 1, 11, 0), 7_000.0),
        (sh(3, 1, 12, 0), 10_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![9_000]);
    assert_eq!(notes[0], set(&[Note::SpikeExcluded]));
}

#[test]
fn a_glitch_of_several_readings_is_excluded() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 1_000.0),
        (sh(3, 1, 9, 0), 4_000.0),
        (sh(3, 1, 9, 5), 65_535_000.0),
        (sh(3, 1, 9, 10), 65_535_100.0),
        (sh(3, 1, 10, 0), 7_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![6_000]);
    assert_eq!(notes[0], set(&[Note::SpikeExcluded]));
}

#[test]
fn a_jump_that_stays_is_a_new_base_not_energy() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 1_000.0),
        (sh(3, 1, 9, 0), 4_000.0),
        (sh(3, 1, 10, 0), 2_000_000.0),
        (sh(3, 1, 11, 0), 2_003_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![6_000]);
    assert_eq!(notes[0], set(&[Note::CounterReset]));
}

#[test]
fn a_step_backwards_is_not_counted_twice() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 1_000.0),
        (sh(3, 1, 9, 0), 4_000.0),
        (sh(3, 1, 10, 0), 3_990.0),
        (sh(3, 1, 11, 0), 7_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![6_000]);
    assert_eq!(notes[0], set(&[Note::StepBack]));
}

#[test]
fn a_gap_of_hours_is_bridged_not_invented() {
    let pts = life(&[
        (sh(3, 1, 8, 0), 1_000.0),
        (sh(3, 1, 9, 0), 4_000.0),
        (sh(3, 1, 14, 0), 20_000.0),
        (sh(3, 1, 15, 0), 22_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![21_000]);
    assert_eq!(notes[0], set(&[Note::Bridged]));
}

#[test]
fn a_gap_of_days_is_spread_over_the_days_it_spans() {
    let pts = life(&[
        (sh(3, 1, 6, 0), 0.0),
        (sh(3, 1, 12, 0), 10_000.0),
        // Two days without data: 50,000 Wh across 48 hours.
        (sh(3, 3, 12, 0), 60_000.0),
        (sh(3, 3, 18, 0), 70_000.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 4));
    assert_eq!(wh, vec![10_000 + 12_500, 25_000, 12_500 + 10_000, 0]);
    assert_eq!(
        notes,
        vec![
            set(&[Note::Bridged]),
            set(&[Note::Bridged]),
            set(&[Note::Bridged]),
            set(&[Note::NoData])
        ]
    );
}

#[test]
fn daylight_weighting_puts_gap_energy_on_the_days_not_the_night() {
    let light = Daylight {
        latitude: 37.87,
        longitude: 112.55,
        tz: Shanghai,
    };
    // Logger offline from 16:00 to 10:00 the next morning.
    let pts = life(&[
        (sh(3, 1, 15, 0), 10_000.0),
        (sh(3, 1, 16, 0), 14_000.0),
        (sh(3, 2, 10, 0), 24_000.0),
    ]);
    let series = clean(&pts, &rules(), &light);
    let per_day = energy_between(
        &series,
        &day_boundaries(Shanghai, day(3, 1), day(3, 2)),
        &light,
    );
    // Sunset in Taiyuan on 1 March is about 18:20 and sunrise about 07:00: 2.3 h of daylight before
    // midnight against 3 h after, so about 43% of the 10,000 Wh belongs to 1 March.
    let first = per_day[0].energy.0 - 4_000;
    assert!((4_000..4_800).contains(&first), "{first}");
    assert_eq!(per_day[0].energy.0 + per_day[1].energy.0, 14_000);
    assert!(per_day[1].notes.contains(&Note::Bridged));
}

#[test]
fn a_night_without_readings_is_not_a_gap() {
    let light = Daylight {
        latitude: 37.87,
        longitude: 112.55,
        tz: Shanghai,
    };
    let pts = life(&[
        (sh(3, 1, 17, 0), 10_000.0),
        (sh(3, 1, 18, 30), 10_500.0),
        (sh(3, 2, 7, 30), 10_520.0),
        (sh(3, 2, 8, 0), 11_000.0),
    ]);
    let series = clean(&pts, &rules(), &light);
    let per_day = energy_between(
        &series,
        &day_boundaries(Shanghai, day(3, 1), day(3, 2)),
        &light,
    );
    assert!(per_day.iter().all(|p| !p.notes.contains(&Note::Bridged)));
    assert_eq!(per_day[0].energy.0 + per_day[1].energy.0, 1_000);
}

#[test]
fn no_lifetime_counter_falls_back_to_the_daily_register() {
    let today = |at, v: f64| CounterPoint {
        at,
        lifetime_wh: None,
        today_wh: Some(v),
    };
    let pts = vec![
        today(sh(3, 1, 6, 0), 0.0),
        today(sh(3, 1, 12, 0), 10_000.0),
        today(sh(3, 1, 18, 0), 20_000.0),
        // The device's clock runs 10 minutes late: yesterday's total is still shown after midnight.
        today(sh(3, 2, 0, 5), 20_000.0),
        today(sh(3, 2, 0, 15), 0.0),
        today(sh(3, 2, 7, 0), 500.0),
        today(sh(3, 2, 12, 0), 8_000.0),
        today(sh(3, 2, 18, 0), 15_000.0),
    ];
    let (wh, notes) = days(&pts, day(3, 1), day(3, 2));
    assert_eq!(wh, vec![20_000, 15_000]);
    assert!(notes.iter().all(|n| n.contains(&Note::DailyRegister)));
    assert!(notes.iter().all(|n| !n.contains(&Note::CounterReset)));
}

#[test]
fn a_logger_clock_off_by_minutes_changes_nothing() {
    // A sunny day: the counter rises from 06:00 to 18:00 and is flat at night.
    let mut pts = Vec::new();
    for d in 1..=3 {
        for h in 0..24 {
            let produced = (h.clamp(6, 18) - 6) as f64 * 1_000.0;
            pts.push((sh(3, d, h, 0), f64::from(d - 1) * 12_000.0 + produced));
        }
    }
    let exact = life(&pts);
    let skewed: Vec<_> = exact
        .iter()
        .map(|p| CounterPoint {
            at: p.at + Duration::minutes(7),
            ..*p
        })
        .collect();
    let (a, _) = days(&exact, day(3, 1), day(3, 3));
    let (b, _) = days(&skewed, day(3, 1), day(3, 3));
    assert_eq!(a, vec![12_000, 12_000, 12_000]);
    assert_eq!(a, b);
}

#[test]
fn a_clock_corrected_backwards_interleaves_readings_without_double_counting() {
    // Stamped 7 minutes fast until the logger is corrected at 10:25 real time.
    let pts = life(&[
        (sh(3, 1, 10, 7), 1_000.0),
        (sh(3, 1, 10, 17), 1_500.0),
        (sh(3, 1, 10, 27), 2_000.0),
        (sh(3, 1, 10, 25), 2_200.0),
        (sh(3, 1, 10, 35), 2_600.0),
    ]);
    let (wh, notes) = days(&pts, day(3, 1), day(3, 1));
    assert_eq!(wh, vec![1_600]);
    assert_eq!(notes[0], set(&[Note::StepBack]));
}

#[test]
fn completeness_counts_daylight_readings_only() {
    let rise = sh(3, 1, 6, 0);
    let set_ = sh(3, 1, 18, 0);
    let mut buckets = Vec::new();
    for h in 0..24 {
        let n = match h {
            10 => 3,
            _ => 12,
        };
        buckets.push((sh(3, 1, h, 0), Duration::hours(1), n));
    }
    let c = completeness(Some((rise, set_)), &buckets, Duration::minutes(5));
    assert_eq!(
        c,
        Completeness {
            expected: 144,
            received: 135
        }
    );
    assert_eq!(c.ratio(), Some(135.0 / 144.0));
    assert_eq!(
        completeness(None, &buckets, Duration::minutes(5)).ratio(),
        None
    );
}

#[test]
fn daylight_window_of_today_stops_now() {
    let now = sh(3, 1, 12, 0);
    let (rise, set_) =
        daylight_window(37.87, 112.55, Shanghai, day(3, 1), now).expect("the sun rises");
    assert!(rise > sh(3, 1, 6, 30) && rise < sh(3, 1, 7, 30), "{rise}");
    assert_eq!(set_, now);
}

/// Runs every golden case under `tests/fixtures/energy` (see its README).
#[test]
fn golden_counter_histories() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/energy");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "fixtures missing under {}",
        root.display()
    );
    for case in cases {
        let input = std::fs::read_to_string(case.join("input")).expect("input");
        let expected = std::fs::read_to_string(case.join("expected")).expect("expected");
        let field =
            |s: &str| -> Option<f64> { (!s.is_empty()).then(|| s.parse().expect("number")) };
        let points: Vec<CounterPoint> = input
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let cols: Vec<&str> = l.split(',').map(str::trim).collect();
                let local = chrono::NaiveDateTime::parse_from_str(cols[0], "%Y-%m-%d %H:%M")
                    .expect("local time");
                CounterPoint {
                    at: Shanghai
                        .from_local_datetime(&local)
                        .single()
                        .expect("unambiguous")
                        .with_timezone(&Utc),
                    lifetime_wh: field(cols[1]),
                    today_wh: field(cols[2]),
                }
            })
            .collect();
        let local_day = |t: DateTime<Utc>| t.with_timezone(&Shanghai).date_naive();
        let first = local_day(points.first().expect("readings").at);
        let last = local_day(points.last().expect("readings").at);
        let series = clean(&points, &rules(), &Elapsed);
        let got: Vec<String> =
            energy_between(&series, &day_boundaries(Shanghai, first, last), &Elapsed)
                .iter()
                .map(|p| {
                    let notes: Vec<&str> = p.notes.iter().map(|n| n.as_str()).collect();
                    format!("{},{},{}", local_day(p.from), p.energy.0, notes.join(" "))
                })
                .collect();
        let want: Vec<String> = expected
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        assert_eq!(got, want, "case {}", case.display());
    }
}
