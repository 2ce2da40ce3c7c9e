//! The charts read back as XML: structure, values, scales, the sun's curve, placeholders, escaping.

use super::*;
use crate::energy::testing::deployment;
use chrono_tz::Asia::Shanghai;
use roxmltree::{Document, Node};

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("day")
}

fn month(y: i32, m: u32) -> YearMonth {
    YearMonth::new(y, m).expect("month")
}

fn local(d: NaiveDate, h: u32, mi: u32) -> DateTime<Utc> {
    Shanghai
        .from_local_datetime(&d.and_hms_opt(h, mi, 0).expect("time"))
        .single()
        .expect("one instant")
        .with_timezone(&Utc)
}

/// S1 of the energy tests (Taiyuan, 10 kWp), optionally moved and renamed.
fn station(name: &str, latitude: f64, longitude: f64) -> Station {
    let d = deployment();
    let mut s = d.station("S1").expect("S1").clone();
    s.name = name.to_owned();
    s.latitude = latitude;
    s.longitude = longitude;
    s
}

fn parse(text: &str) -> Document<'_> {
    match Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => panic!("not well-formed XML: {e}\n{text}"),
    }
}

fn has_class(n: &Node<'_, '_>, class: &str) -> bool {
    n.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|w| w == class))
}

/// Elements named `tag` with every class of `classes`, in document order.
fn find<'a, 'i>(doc: &'a Document<'i>, tag: &str, classes: &[&str]) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.has_tag_name(tag) && classes.iter().all(|c| has_class(n, c)))
        .collect()
}

fn f(n: &Node<'_, '_>, attr: &str) -> f64 {
    let text = n
        .attribute(attr)
        .unwrap_or_else(|| panic!("no {attr} on {n:?}"));
    text.parse()
        .unwrap_or_else(|_| panic!("{attr}={text:?} is not a number"))
}

/// The grid lines' tick values and y coordinates, lowest value first.
fn ticks(doc: &Document<'_>) -> Vec<(f64, f64)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("line") && n.attribute("data-tick").is_some())
        .map(|n| (f(&n, "data-tick"), f(&n, "y1")))
        .collect()
}

/// The points of a path written as `M x y L x y ...`.
fn path_points(d: &str) -> Vec<(f64, f64)> {
    d.split(['M', 'L'])
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != "Z")
        .map(|p| {
            let p = p.trim_end_matches('Z').trim();
            let mut xy = p
                .split_whitespace()
                .map(|v| v.parse::<f64>().expect("number"));
            (xy.next().expect("x"), xy.next().expect("y"))
        })
        .collect()
}

/// The x coordinate of an hour label on the power chart's axis.
fn hour_x(doc: &Document<'_>, text: &str) -> f64 {
    let label = doc
        .descendants()
        .find(|n| n.has_tag_name("text") && n.text() == Some(text))
        .unwrap_or_else(|| panic!("no axis label {text}"));
    f(&label, "x")
}

fn thirty_days() -> Vec<(NaiveDate, f64, bool)> {
    (0..30)
        .map(|i| {
            let d = day(2026, 3, 1) + Duration::days(i);
            let base = [41.5, 0.0, 38.25, 12.0, 44.75][i as usize % 5];
            let kwh = if base == 0.0 {
                0.0
            } else {
                base + i as f64 / 10.0
            };
            (d, kwh, i % 7 != 3)
        })
        .collect()
}

fn year_of_months() -> Vec<(YearMonth, f64, Option<f64>)> {
    (1..=12)
        .map(|m| {
            let metered = 1000.0 + f64::from(m) * 37.5;
            let settled = (m % 3 != 0).then_some(metered - 12.5);
            (month(2025, m), metered, settled)
        })
        .collect()
}

fn village_year() -> Vec<MoneyMonth> {
    let mut balance = Fen(-1_500_000);
    (1..=12)
        .map(|m| {
            let income = Fen(1_234_500 + i64::from(m) * 10_001);
            let payouts = Fen(if m % 4 == 0 { 3_000_000 } else { 250_050 });
            balance = Fen(balance.0 + income.0 - payouts.0);
            MoneyMonth {
                month: month(2025, m),
                income,
                payouts,
                balance,
            }
        })
        .collect()
}

fn power_day() -> (NaiveDate, Vec<(DateTime<Utc>, f64)>) {
    let d = day(2026, 6, 13);
    let mut points = Vec::new();
    let mut at = local(d, 5, 30);
    while at < local(d, 19, 30) {
        let h = (at - local(d, 12, 0)).num_minutes() as f64 / 60.0;
        let kw = (8.0 * (1.0 - (h / 7.0).powi(2))).max(0.0);
        // The logger was silent from 13:00 to 13:30.
        if !(at >= local(d, 13, 0) && at < local(d, 13, 30)) {
            points.push((at, (kw * 1000.0).round() / 1000.0));
        }
        at += Duration::minutes(5);
    }
    (d, points)
}

/// Every chart in both languages, with data, with one item and with none.
fn every_chart() -> Vec<(String, Markup)> {
    let s = station("东村光伏电站", 37.87, 112.55);
    let (d, power) = power_day();
    let mut out = Vec::new();
    for lang in [Lang::Zh, Lang::En] {
        out.push(("power".into(), power_today(lang, &s, d, &power)));
        out.push(("power one".into(), power_today(lang, &s, d, &power[40..41])));
        out.push(("power none".into(), power_today(lang, &s, d, &[])));
        out.push(("daily".into(), daily_energy(lang, &s.name, &thirty_days())));
        out.push((
            "daily one".into(),
            daily_energy(lang, &s.name, &thirty_days()[..1]),
        ));
        out.push(("daily none".into(), daily_energy(lang, &s.name, &[])));
        out.push((
            "months".into(),
            settled_vs_metered(lang, &s.name, &year_of_months()),
        ));
        out.push(("months none".into(), settled_vs_metered(lang, &s.name, &[])));
        out.push((
            "money".into(),
            income_vs_payouts(lang, "东村", &village_year()),
        ));
        out.push((
            "money one".into(),
            income_vs_payouts(lang, "东村", &village_year()[..1]),
        ));
        out.push(("money none".into(), income_vs_payouts(lang, "东村", &[])));
    }
    out
}

#[test]
fn every_chart_is_well_formed_svg_with_a_title_and_a_description() {
    for (what, chart) in every_chart() {
        let text = chart.into_string();
        let doc = parse(&text);
        let root = doc.root_element();
        assert!(root.has_tag_name("svg"), "{what}");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg"),
            "{what}"
        );
        assert_eq!(root.attribute("role"), Some("img"), "{what}");
        assert_eq!(root.attribute("viewBox"), Some("0 0 720 280"), "{what}");
        assert!(has_class(&root, "chart"), "{what}");
        let mut children = root.children().filter(|n| n.is_element());
        let title = children.next().expect("a first child");
        let desc = children.next().expect("a second child");
        assert!(title.has_tag_name("title"), "{what}");
        assert!(desc.has_tag_name("desc"), "{what}");
        for n in [title, desc] {
            let t = n.text().unwrap_or_default();
            assert!(
                !t.trim().is_empty() && !t.contains("chart."),
                "{what}: {t:?}"
            );
            assert!(!t.contains('{'), "{what}: a placeholder was left: {t:?}");
        }
    }
}

#[test]
fn daily_bars_carry_their_days_and_values_and_mark_incomplete_days() {
    let days = thirty_days();
    let text = daily_energy(Lang::Zh, "东村光伏电站", &days).into_string();
    let doc = parse(&text);
    let bars = find(&doc, "rect", &["chart-bar"])
        .into_iter()
        .filter(|b| b.attribute("data-value").is_some())
        .collect::<Vec<_>>();
    assert_eq!(bars.len(), days.len());
    for (bar, (d, kwh, complete)) in bars.iter().zip(&days) {
        assert_eq!(
            bar.attribute("data-label"),
            Some(d.format("%m-%d").to_string().as_str())
        );
        assert_eq!(f(bar, "data-value"), *kwh, "{d}");
        assert_eq!(has_class(bar, "chart-incomplete"), !complete, "{d}");
        assert_eq!(has_class(bar, "chart-energy"), *complete, "{d}");
        let marked = if *complete { "true" } else { "false" };
        assert_eq!(bar.attribute("data-complete"), Some(marked), "{d}");
    }
    // Every bar stands on the zero line and taller days are taller bars.
    let zero = ticks(&doc)
        .iter()
        .find(|(v, _)| *v == 0.0)
        .expect("a zero tick")
        .1;
    for bar in &bars {
        assert!(
            (f(bar, "y") + f(bar, "height") - zero).abs() < 0.11,
            "{bar:?}"
        );
    }
    let height = |i: usize| f(&bars[i], "height");
    assert!(height(0) > height(3) && height(3) > height(1) && height(1) == 0.0);
    // The labels fit: not every day is written under the axis, but the first is.
    let labels: Vec<&str> = find(&doc, "g", &["chart-x"])[0]
        .children()
        .filter_map(|n| n.text())
        .collect();
    assert!(labels.len() < days.len() && labels.len() >= 5, "{labels:?}");
    assert_eq!(labels[0], "03-01");
    // Chinese texts are written as they are.
    assert!(text.contains("发电量") && text.contains("数据不完整"));
    assert!(text.contains("kWh"));
}

#[test]
fn the_tallest_bar_reaches_the_top_tick() {
    let mut days = thirty_days();
    days[17].1 = 100.0;
    let text = daily_energy(Lang::En, "S1", &days).into_string();
    let doc = parse(&text);
    let t = ticks(&doc);
    let (top_value, top_y) = *t.last().expect("ticks");
    assert_eq!(top_value, 100.0);
    let tallest = find(&doc, "rect", &["chart-bar"])
        .into_iter()
        .find(|b| b.attribute("data-value") == Some("100"))
        .expect("the 100 kWh bar");
    assert_eq!(
        f(&tallest, "y"),
        top_y,
        "it ends exactly on the top grid line"
    );

    // A maximum between ticks: the top tick is the first one above it.
    days[17].1 = 93.0;
    let text = daily_energy(Lang::En, "S1", &days).into_string();
    let doc = parse(&text);
    let t = ticks(&doc);
    let (top_value, top_y) = t[t.len() - 1];
    let (below_value, below_y) = t[t.len() - 2];
    assert!(below_value < 93.0 && 93.0 <= top_value, "{t:?}");
    let tallest = find(&doc, "rect", &["chart-bar"])
        .into_iter()
        .find(|b| b.attribute("data-value") == Some("93"))
        .expect("the 93 kWh bar");
    let y = f(&tallest, "y");
    assert!(
        top_y < y && y < below_y,
        "{y} between {top_y} and {below_y}"
    );
}

fn is_one_two_five(step: f64) -> bool {
    let mag = 10f64.powi(step.log10().floor() as i32);
    [1.0, 2.0, 5.0]
        .iter()
        .any(|m| (step / mag - m).abs() < 1e-9)
}

#[test]
fn the_axes_step_one_two_five_and_speak_in_wan_for_large_sums() {
    let mut big = village_year();
    big[6].income = Fen(987_654_321_000); // 9,876,543,210 yuan
    for (what, chart) in [
        ("daily", daily_energy(Lang::Zh, "S1", &thirty_days())),
        (
            "months",
            settled_vs_metered(Lang::Zh, "S1", &year_of_months()),
        ),
        (
            "money",
            income_vs_payouts(Lang::Zh, "东村", &village_year()),
        ),
        ("big money", income_vs_payouts(Lang::Zh, "东村", &big)),
        ("big money en", income_vs_payouts(Lang::En, "V1", &big)),
    ] {
        let text = chart.into_string();
        let doc = parse(&text);
        let t = ticks(&doc);
        assert!(t.len() >= 3, "{what}: {t:?}");
        let step = t[1].0 - t[0].0;
        assert!(is_one_two_five(step), "{what}: step {step}");
        for w in t.windows(2) {
            assert!(
                ((w[1].0 - w[0].0) - step).abs() <= step * 1e-9,
                "{what}: {t:?}"
            );
            assert!(w[1].1 < w[0].1, "{what}: higher values are higher up");
        }
        let values: Vec<f64> = doc
            .descendants()
            .filter_map(|n| n.attribute("data-value"))
            .map(|v| v.parse().expect("number"))
            .collect();
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            t[t.len() - 1].0 >= max && t[0].0 <= min.min(0.0),
            "{what}: {t:?}"
        );
    }
    let zh = income_vs_payouts(Lang::Zh, "东村", &village_year()).into_string();
    assert!(zh.contains("万</text>"), "yuan in 万: {zh}");
    let zh = income_vs_payouts(Lang::Zh, "东村", &big).into_string();
    assert!(zh.contains("亿</text>"), "billions in 亿");
    let en = income_vs_payouts(Lang::En, "V1", &village_year()).into_string();
    assert!(
        en.contains("k</text>") && !en.contains("万"),
        "English thousands"
    );
    assert!(en.contains(">yuan</text>"), "the unit");
}

#[test]
fn the_sun_curve_is_zero_at_night_and_peaks_near_solar_noon() {
    // 13 June: the equation of time is close to zero, so solar noon is 12:00 local mean time
    // at 120° E, four minutes earlier per degree further east.
    let d = day(2026, 6, 13);
    for (name, lon, noon_minutes) in [
        ("Beijing", 116.4, 12 * 60 + 14),
        ("Kashgar", 75.99, 14 * 60 + 56),
    ] {
        let s = station(name, 39.9, lon);
        let curve = clear_sky(&s, d);
        assert_eq!(curve.first().map(|p| p.0), Some(local(d, 0, 0)), "{name}");
        assert_eq!(
            curve.last().map(|p| p.0),
            Some(local(d + Duration::days(1), 0, 0)),
            "{name}"
        );
        let minutes = |at: DateTime<Utc>| {
            let t = at.with_timezone(&Shanghai);
            (t - local(d, 0, 0).with_timezone(&Shanghai)).num_minutes()
        };
        for (at, kw) in &curve {
            let m = minutes(*at);
            // Night: more than eight hours from solar noon in June at 40° N.
            if (m - noon_minutes).abs() > 8 * 60 {
                assert_eq!(*kw, 0.0, "{name} at {m} min");
            }
            assert!(*kw >= 0.0 && *kw <= s.capacity_kwp, "{name}");
        }
        let (peak_at, peak_kw) = curve
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("a curve");
        assert!(
            (minutes(peak_at) - noon_minutes).abs() <= 10,
            "{name}: peak at {} min, solar noon at {noon_minutes}",
            minutes(peak_at)
        );
        // At 40° N in June the sun stands about 73.5° high at noon.
        let expected = s.capacity_kwp * 73.5f64.to_radians().sin();
        assert!((peak_kw - expected).abs() < 0.1, "{name}: {peak_kw} kW");

        // Drawn: flat on the zero line at night, highest near solar noon.
        let (_, power) = power_day();
        let text = power_today(Lang::Zh, &s, d, &power).into_string();
        let doc = parse(&text);
        let sun = find(&doc, "path", &["chart-sun"]);
        assert_eq!(sun.len(), 1);
        let points = path_points(sun[0].attribute("d").expect("d"));
        assert_eq!(points.len(), curve.len(), "{name}");
        let zero_y = ticks(&doc).iter().find(|(v, _)| *v == 0.0).expect("zero").1;
        let x_of = |m: i64| {
            let (x0, x1) = (hour_x(&doc, "00:00"), hour_x(&doc, "24:00"));
            x0 + (x1 - x0) * m as f64 / 1440.0
        };
        for &(x, y) in &points {
            if x < x_of(noon_minutes - 8 * 60) || x > x_of(noon_minutes + 8 * 60) {
                assert_eq!(y, zero_y, "{name}: night at x {x}");
            }
        }
        let highest = points
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("points");
        assert!(
            (highest.0 - x_of(noon_minutes)).abs() <= x_of(10) - x_of(0),
            "{name}: drawn peak at x {} (solar noon at {})",
            highest.0,
            x_of(noon_minutes)
        );
    }
}

#[test]
fn power_points_carry_local_times_and_values_and_gaps_break_the_line() {
    let s = station("东村光伏电站", 37.87, 112.55);
    let (d, power) = power_day();
    // A point from the day before is not drawn.
    let mut input = power.clone();
    input.push((local(d, 0, 0) - Duration::minutes(5), 3.0));
    let text = power_today(Lang::Zh, &s, d, &input).into_string();
    let doc = parse(&text);
    let points = find(&doc, "circle", &["chart-point", "chart-power"]);
    assert_eq!(points.len(), power.len());
    for (p, (at, kw)) in points.iter().zip(&power) {
        let label = at.with_timezone(&Shanghai).format("%H:%M").to_string();
        assert_eq!(p.attribute("data-label"), Some(label.as_str()));
        assert_eq!(f(p, "data-value"), *kw, "{label}");
        assert!(
            has_class(p, "chart-hit"),
            "{label}: part of a line, shown on hover"
        );
    }
    assert_eq!(points[0].attribute("data-label"), Some("05:30"));
    // 13:00 to 13:30 is missing: two runs, each a line over an area.
    assert_eq!(find(&doc, "path", &["chart-line", "chart-power"]).len(), 2);
    assert_eq!(find(&doc, "path", &["chart-area", "chart-power"]).len(), 2);
    // The x axis is local time.
    for h in ["00:00", "06:00", "12:00", "18:00", "24:00"] {
        hour_x(&doc, h);
    }
    assert!(text.contains("交流功率") && text.contains("晴空理论曲线"));
    // The scale holds the clear-sky peak (about 9.7 kW here in June) as well as the readings.
    let top = ticks(&doc).last().expect("ticks").0;
    assert_eq!(top, 10.0);

    // One reading alone is a dot that shows without hovering.
    let one = power_today(Lang::En, &s, d, &power[10..11]).into_string();
    let doc = parse(&one);
    let points = find(&doc, "circle", &["chart-point", "chart-power"]);
    assert_eq!(points.len(), 1);
    assert!(!has_class(&points[0], "chart-hit"));
    assert!(find(&doc, "path", &["chart-line", "chart-power"]).is_empty());

    // All zeros: a flat line on the zero tick, under the sun's curve.
    let zeros: Vec<_> = power.iter().map(|(at, _)| (*at, 0.0)).collect();
    let text = power_today(Lang::En, &s, d, &zeros).into_string();
    let doc = parse(&text);
    let zero_y = ticks(&doc)[0].1;
    for p in find(&doc, "circle", &["chart-point"]) {
        assert_eq!(f(&p, "cy"), zero_y);
    }
    assert!(ticks(&doc).last().expect("ticks").0 >= 9.0);
}

#[test]
fn settled_bars_stand_only_beside_settled_months() {
    let months = year_of_months();
    let text = settled_vs_metered(Lang::Zh, "东村光伏电站", &months).into_string();
    let doc = parse(&text);
    let in_plot = |class: &str| -> Vec<(String, f64, f64)> {
        find(&doc, "rect", &["chart-bar", class])
            .into_iter()
            .filter(|b| b.attribute("data-value").is_some())
            .map(|b| {
                (
                    b.attribute("data-label").unwrap_or_default().to_owned(),
                    f(&b, "data-value"),
                    f(&b, "x"),
                )
            })
            .collect()
    };
    let metered = in_plot("chart-metered");
    let settled = in_plot("chart-settled");
    assert_eq!(metered.len(), 12);
    assert_eq!(
        settled.len(),
        months.iter().filter(|m| m.2.is_some()).count()
    );
    for ((m, kwh, _), (label, value, _)) in months.iter().zip(&metered) {
        assert_eq!(label, &m.to_string());
        assert_eq!(value, kwh);
    }
    let want: Vec<(String, f64)> = months
        .iter()
        .filter_map(|(m, _, s)| s.map(|s| (m.to_string(), s)))
        .collect();
    let got: Vec<(String, f64)> = settled.iter().map(|(l, v, _)| (l.clone(), *v)).collect();
    assert_eq!(got, want);
    // Each settled bar is just right of its month's metered bar.
    for (label, _, x) in &settled {
        let m = metered
            .iter()
            .find(|m| &m.0 == label)
            .expect("its metered bar");
        assert!(*x > m.2 && *x - m.2 < 720.0 / 12.0, "{label}");
    }
    assert!(text.contains("2025-01") && text.contains("计量电量") && text.contains("结算电量"));
}

#[test]
fn money_pairs_bars_and_draws_a_negative_balance_below_zero() {
    let months = village_year();
    assert!(
        months[0].balance.is_negative(),
        "the fixture starts in debt"
    );
    let text = income_vs_payouts(Lang::Zh, "东村", &months).into_string();
    let doc = parse(&text);
    let values = |class: &str, tag: &str| -> Vec<(String, String)> {
        find(&doc, tag, &[class])
            .into_iter()
            .filter_map(|n| {
                Some((
                    n.attribute("data-label")?.to_owned(),
                    n.attribute("data-value")?.to_owned(),
                ))
            })
            .collect()
    };
    let pairs = |pick: fn(&MoneyMonth) -> Fen| -> Vec<(String, String)> {
        months
            .iter()
            .map(|m| (m.month.to_string(), pick(m).to_string()))
            .collect()
    };
    assert_eq!(values("chart-income", "rect"), pairs(|m| m.income));
    assert_eq!(values("chart-payouts", "rect"), pairs(|m| m.payouts));
    assert_eq!(values("chart-balance", "circle"), pairs(|m| m.balance));
    assert_eq!(
        values("chart-income", "rect")[0].1,
        "12445.01",
        "exact yuan"
    );

    let zero = find(&doc, "line", &["chart-zero"]);
    assert_eq!(zero.len(), 1, "an axis below zero draws the zero line");
    let zero_y = f(&zero[0], "y1");
    let points = find(&doc, "circle", &["chart-balance"]);
    for (p, m) in points.iter().zip(&months) {
        let below = f(p, "cy") > zero_y;
        assert_eq!(below, m.balance.is_negative(), "{}", m.month);
    }
    let t = ticks(&doc);
    let lowest = months.iter().map(|m| m.balance.0).min().expect("months") as f64 / 100.0;
    assert!(t[0].0 <= lowest && t[0].0 < 0.0, "{t:?}");
    let line = find(&doc, "path", &["chart-line", "chart-balance"]);
    assert_eq!(line.len(), 1);
    let drawn = path_points(line[0].attribute("d").expect("d"));
    assert_eq!(drawn.len(), months.len());
    for ((x, y), p) in drawn.iter().zip(&points) {
        assert_eq!(
            (*x, *y),
            (f(p, "cx"), f(p, "cy")),
            "the line runs through the points"
        );
    }
    assert!(text.contains("收入") && text.contains("支出") && text.contains("期末余额"));
}

#[test]
fn all_zeros_is_an_axis_with_flat_bars_and_nothing_is_a_placeholder() {
    let zeros: Vec<_> = thirty_days()
        .iter()
        .map(|(d, _, c)| (*d, 0.0, *c))
        .collect();
    let text = daily_energy(Lang::Zh, "S1", &zeros).into_string();
    let doc = parse(&text);
    let values: Vec<f64> = ticks(&doc).iter().map(|t| t.0).collect();
    assert_eq!(values.first(), Some(&0.0));
    assert_eq!(values.last(), Some(&1.0));
    let bars: Vec<_> = find(&doc, "rect", &["chart-bar"])
        .into_iter()
        .filter(|b| b.attribute("data-value").is_some())
        .collect();
    assert_eq!(bars.len(), 30);
    assert!(bars.iter().all(|b| f(b, "height") == 0.0));
    assert!(find(&doc, "text", &["chart-empty"]).is_empty());

    let s = station("S1", 37.87, 112.55);
    let d = day(2026, 6, 13);
    let yesterday = [(local(d, 12, 0) - Duration::days(1), 5.0)];
    for (lang, word) in [(Lang::Zh, "暂无数据"), (Lang::En, "No data")] {
        for chart in [
            power_today(lang, &s, d, &[]),
            power_today(lang, &s, d, &yesterday),
            daily_energy(lang, "S1", &[]),
            settled_vs_metered(lang, "S1", &[]),
            income_vs_payouts(lang, "V1", &[]),
        ] {
            let text = chart.into_string();
            let doc = parse(&text);
            assert_eq!(doc.root_element().attribute("data-empty"), Some("true"));
            let empty = find(&doc, "text", &["chart-empty"]);
            assert_eq!(empty.len(), 1, "{text}");
            assert_eq!(empty[0].text(), Some(word));
            assert!(ticks(&doc).is_empty(), "no empty axis: {text}");
            assert!(!doc
                .descendants()
                .any(|n| n.attribute("data-value").is_some()));
        }
    }
    let drawn = daily_energy(Lang::Zh, "S1", &thirty_days()).into_string();
    assert!(!drawn.contains("data-empty"));
}

#[test]
fn names_are_escaped() {
    let name = r#"<b onclick="x()">东村</b> & {day}"#;
    let s = station(name, 37.87, 112.55);
    let (d, power) = power_day();
    for chart in [
        power_today(Lang::Zh, &s, d, &power),
        power_today(Lang::En, &s, d, &[]),
        daily_energy(Lang::Zh, name, &thirty_days()),
        settled_vs_metered(Lang::En, name, &year_of_months()),
        income_vs_payouts(Lang::Zh, name, &village_year()),
    ] {
        let text = chart.into_string();
        assert!(!text.contains("<b"), "{text}");
        assert!(text.contains("&lt;b onclick=&quot;x()&quot;&gt;东村&lt;/b&gt; &amp; {day}"));
        let doc = parse(&text);
        let title = doc.root_element().first_element_child().expect("title");
        assert!(
            title.text().is_some_and(|t| t.contains(name)),
            "the title reads back as the name, its braces untouched: {:?}",
            title.text()
        );
    }
}

#[test]
fn every_series_class_has_a_colour_in_the_stylesheet() {
    let mut classes = std::collections::BTreeSet::new();
    for (_, chart) in every_chart() {
        let text = chart.into_string();
        let doc = parse(&text);
        for n in doc.descendants() {
            if let Some(c) = n.attribute("class") {
                classes.extend(c.split_whitespace().map(str::to_owned));
            }
        }
    }
    let series = [
        "chart-power",
        "chart-sun",
        "chart-energy",
        "chart-incomplete",
        "chart-metered",
        "chart-settled",
        "chart-income",
        "chart-payouts",
        "chart-balance",
    ];
    for class in series {
        assert!(classes.contains(class), "{class} is drawn");
        assert!(
            CHART_STYLE.contains(&format!(".{class} {{ --c:")),
            "{class} has a colour"
        );
    }
    // And the stylesheet styles nothing that is never drawn.
    for (at, _) in CHART_STYLE.match_indices(".chart-") {
        let rest = &CHART_STYLE[at + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .unwrap_or(rest.len());
        let class = &rest[..end];
        assert!(classes.contains(class), "{class} is styled but never drawn");
    }
}

#[test]
fn placeholders_are_filled_once() {
    assert_eq!(
        fill(
            "{name} on {day}",
            &[("name", "{day}"), ("day", "2026-06-13")]
        ),
        "{day} on 2026-06-13"
    );
    assert_eq!(fill("{unknown} {", &[("name", "x")]), "{unknown} {");
}
