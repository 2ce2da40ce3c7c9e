//! Server-side SVG charts for the pages: pure functions from plain figures to an inline `<svg>`,
//! no JavaScript and nothing fetched from elsewhere. maud escapes every text and attribute.
//!
//! Every chart is `<svg class="chart chart-KIND" viewBox="0 0 720 280" role="img">` whose first
//! children are `<title>` (its accessible name) and `<desc>` (one sentence summing it up), both in
//! the page's language, followed by:
//!
//! - a legend, and a CSS class per series (`chart-power`, `chart-sun`, `chart-energy`,
//!   `chart-incomplete`, `chart-metered`, `chart-settled`, `chart-income`, `chart-payouts`,
//!   `chart-balance`) on each of its bars, lines, points and legend swatches; [`CHART_STYLE`]
//!   colours them;
//! - on each bar and point, `data-label` (what the axis says there: `MM-DD`, `YYYY-MM` or the
//!   station's local `HH:MM`) and `data-value` (the figure as given: kW or kWh as the float passed
//!   in, money as exact yuan from `Fen`'s `Display`, e.g. `1234.50`), and a `<title>` the browser
//!   shows as a tooltip;
//! - on each horizontal grid line, `data-tick` (its value); the y axis runs from the lowest to the
//!   highest tick of [`ticks::nice_ticks`] (1-2-5 steps, always including zero), labelled by
//!   [`ticks::label`]: plain numbers below 10,000, then 万 and 亿 in Chinese (12,000 yuan is
//!   "1.2万") and k, M, B in English ("12k").
//!
//! With nothing to plot a chart says "暂无数据" / "No data" (`text.chart-empty`, and
//! `data-empty="true"` on the `<svg>`) instead of drawing an empty axis. Floats only place pixels:
//! money stays integer fen until it is printed.

mod data;
pub mod ticks;

pub use data::station_power_series;

use crate::domain::{Fen, Station, YearMonth};
use crate::energy::counters::local_midnight;
use crate::http::i18n::{tr, Lang};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use maud::{html, Markup};
use ticks::{label, nice_ticks, Ticks};

/// The stylesheet of the charts' classes, for the page frame to include once.
pub const CHART_STYLE: &str = r#"
.chart { display:block; width:100%; max-width:720px; height:auto; margin:8px 0 16px; background:#fff; border:1px solid var(--line, #d8dee6); border-radius:6px; font-family: system-ui, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; }
.chart text { font-size:11px; fill:var(--muted, #5b6b7c); }
.chart .chart-legend text { font-size:12px; fill:var(--fg, #1d2733); }
.chart .chart-empty { font-size:16px; }
.chart .chart-grid line, .chart .chart-vgrid line { stroke:var(--line, #d8dee6); stroke-width:1; }
.chart .chart-zero { stroke:var(--fg, #1d2733); stroke-width:1; }
.chart .chart-bar { fill:var(--c); }
.chart .chart-line { fill:none; stroke:var(--c); stroke-width:2; stroke-linejoin:round; stroke-linecap:round; }
.chart .chart-area { fill:var(--c); fill-opacity:.15; stroke:none; }
.chart .chart-point { fill:var(--c); }
.chart .chart-hit { fill-opacity:0; }
.chart .chart-hit:hover { fill-opacity:1; }
.chart .chart-sun { stroke-width:1.5; stroke-dasharray:6 4; }
.chart .chart-bar.chart-incomplete { fill-opacity:.55; stroke:#9a6700; stroke-width:1; stroke-dasharray:3 2; }
.chart-power { --c:#0b5cad; }
.chart-sun { --c:var(--sun, #e3a008); }
.chart-energy { --c:#2f81f7; }
.chart-incomplete { --c:#d4a72c; }
.chart-metered { --c:#2f81f7; }
.chart-settled { --c:#1a7f37; }
.chart-income { --c:#1a7f37; }
.chart-payouts { --c:#cf222e; }
.chart-balance { --c:#12324a; }
@media print { .chart { border:0; } }
"#;

/// The drawing's size in user units.
const W: f64 = 720.0;
const H: f64 = 280.0;
/// The plot area: left of it the y labels, above it the legend, below it the x labels.
const PX0: f64 = 56.0;
const PX1: f64 = W - 24.0;
const PY0: f64 = 44.0;
const PY1: f64 = H - 30.0;
/// About this many intervals on a y axis.
const Y_TICKS: usize = 5;

/// A coordinate with one decimal (never "-0.0").
fn num(v: f64) -> String {
    let text = format!("{v:.1}");
    if text == "-0.0" {
        "0.0".to_owned()
    } else {
        text
    }
}

/// `v` if it is a number, else zero (for geometry only).
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// A catalogue text with its `{name}` placeholders filled in one pass (a value that itself
/// contains braces is left alone).
fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}').and_then(|close| {
            args.iter()
                .find(|(k, _)| *k == &after[..close])
                .map(|a| (close, a))
        }) {
            Some((close, (_, value))) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Roughly how wide `text` is at `size` px: CJK characters are square, Latin ones about half.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars()
        .map(|c| if c.is_ascii() { 0.55 * size } else { size })
        .sum()
}

/// The vertical scale of a plot: value to y coordinate.
struct YScale {
    ticks: Ticks,
}

impl YScale {
    /// Covers `min..max` and zero.
    fn new(min: f64, max: f64) -> YScale {
        YScale {
            ticks: nice_ticks(finite(min).min(0.0), finite(max).max(0.0), Y_TICKS),
        }
    }

    fn y(&self, v: f64) -> f64 {
        let (lo, hi) = (self.ticks.lo(), self.ticks.hi());
        PY1 - (finite(v) - lo) / (hi - lo) * (PY1 - PY0)
    }
}

/// The `<svg>` around a chart's body.
fn frame(kind: &str, title: &str, desc: &str, empty: bool, body: Markup) -> Markup {
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class=(format!("chart {kind}"))
            viewBox=(format!("0 0 {W} {H}")) role="img" data-empty=[empty.then_some("true")] {
            title { (title) }
            desc { (desc) }
            (body)
        }
    }
}

/// The chart with nothing to plot.
fn no_data(lang: Lang, kind: &str, title: &str) -> Markup {
    let text = tr(lang, "chart.no_data");
    frame(
        kind,
        title,
        &text,
        true,
        html! {
            text class="chart-empty" x=(num(W / 2.0)) y=(num(H / 2.0)) text-anchor="middle"
                dominant-baseline="middle" { (text) }
        },
    )
}

/// How a legend entry shows its series.
#[derive(Clone, Copy)]
enum Mark {
    Bar,
    Line,
}

/// The legend above the plot, left to right.
fn legend(items: &[(&str, Mark, String)]) -> Markup {
    let mut x = PX0;
    let mut placed = Vec::with_capacity(items.len());
    for (class, mark, text) in items {
        placed.push((x, *class, *mark, text.as_str()));
        x += 18.0 + text_width(text, 12.0) + 18.0;
    }
    html! {
        g class="chart-legend" {
            @for (x, class, mark, text) in placed {
                @match mark {
                    Mark::Bar => rect class=(format!("chart-bar {class}")) x=(num(x)) y="9"
                        width="12" height="10" {},
                    Mark::Line => line class=(format!("chart-line {class}")) x1=(num(x))
                        x2=(num(x + 14.0)) y1="14" y2="14" {},
                }
                text x=(num(x + 18.0)) y="18" { (text) }
            }
        }
    }
}

/// Grid lines at the ticks, their labels, the unit above them and a zero line when the axis goes
/// below zero.
fn y_axis(lang: Lang, s: &YScale, unit: &str) -> Markup {
    let values = s.ticks.values();
    html! {
        g class="chart-grid" {
            @for v in &values {
                line x1=(num(PX0)) x2=(num(PX1)) y1=(num(s.y(*v))) y2=(num(s.y(*v))) data-tick=(v) {}
            }
        }
        g class="chart-axis chart-y" {
            @for v in &values {
                text x=(num(PX0 - 6.0)) y=(num(s.y(*v) + 4.0)) text-anchor="end" {
                    (label(lang, *v, &s.ticks))
                }
            }
            text class="chart-unit" x=(num(PX0 - 6.0)) y=(num(PY0 - 12.0)) text-anchor="end" { (unit) }
        }
        @if s.ticks.lo() < 0.0 {
            line class="chart-zero" x1=(num(PX0)) x2=(num(PX1)) y1=(num(s.y(0.0))) y2=(num(s.y(0.0))) {}
        }
    }
}

/// Equal slots across the plot, one per month or day, labelled below (every k-th label when
/// they would not fit side by side).
struct Bands {
    n: usize,
}

impl Bands {
    fn width(&self) -> f64 {
        (PX1 - PX0) / self.n.max(1) as f64
    }

    fn left(&self, i: usize) -> f64 {
        PX0 + i as f64 * self.width()
    }

    fn centre(&self, i: usize) -> f64 {
        self.left(i) + self.width() / 2.0
    }

    fn labels(&self, labels: &[String]) -> Markup {
        let widest = labels
            .iter()
            .map(|l| text_width(l, 11.0))
            .fold(0.0, f64::max)
            + 8.0;
        let every = ((widest / self.width()).ceil() as usize).max(1);
        html! {
            g class="chart-axis chart-x" {
                @for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
                    text x=(num(self.centre(i))) y=(num(PY1 + 18.0)) text-anchor="middle" { (l) }
                }
            }
        }
    }
}

/// One bar from zero to `v` (down for a negative value).
struct Bar<'a> {
    class: &'a str,
    x: f64,
    width: f64,
    v: f64,
    label: &'a str,
    value: String,
    tip: String,
    /// Whether the figure rests on complete data, where the chart says.
    complete: Option<bool>,
}

fn bar(s: &YScale, b: Bar<'_>) -> Markup {
    let top = s.y(finite(b.v).max(0.0));
    let bottom = s.y(finite(b.v).min(0.0));
    html! {
        rect class=(format!("chart-bar {}", b.class)) x=(num(b.x)) y=(num(top)) width=(num(b.width))
            height=(num(bottom - top)) data-label=(b.label) data-value=(b.value)
            data-complete=[b.complete.map(|c| if c { "true" } else { "false" })] {
            title { (b.tip) }
        }
    }
}

/// The clear-sky shape of a station's local `day` every 5 minutes, midnight to midnight: the
/// capacity in kWp times the sine of the sun's elevation, zero while the sun is down. A shape to
/// compare against, not a forecast: no weather, orientation or losses.
pub fn clear_sky(station: &Station, day: NaiveDate) -> Vec<(DateTime<Utc>, f64)> {
    let (start, end) = day_span(station, day);
    let mut out = Vec::with_capacity(290);
    let mut at = start;
    while at <= end {
        let sun = crate::solar::position(station.latitude, station.longitude, at);
        let kw = station.capacity_kwp * sun.elevation_deg.to_radians().sin().max(0.0);
        out.push((at, kw));
        at += Duration::minutes(5);
    }
    out
}

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

/// A station's AC power through its local `day` (`power_kw`: instants and kW, e.g. from
/// [`station_power_series`]; points outside the day are ignored) as a line over a shaded area,
/// against the clear-sky curve of [`clear_sky`] as a dashed line. The x axis is the station's
/// local time, 00:00 to 24:00; the y axis kW. The line breaks where readings are missing for
/// longer than two and a half times their usual spacing; a reading alone is a dot. Each reading
/// is a `circle.chart-point.chart-power` with `data-label` `HH:MM` (local) and `data-value` kW.
pub fn power_today(
    lang: Lang,
    station: &Station,
    day: NaiveDate,
    power_kw: &[(DateTime<Utc>, f64)],
) -> Markup {
    const KIND: &str = "chart-power-day";
    let title = fill(
        &tr(lang, "chart.power_title"),
        &[("name", &station.name), ("day", &day.to_string())],
    );
    let (start, end) = day_span(station, day);
    let mut points: Vec<(DateTime<Utc>, f64)> = power_kw
        .iter()
        .copied()
        .filter(|(at, _)| *at >= start && *at < end)
        .collect();
    points.sort_by_key(|(at, _)| *at);
    let Some(peak) = points
        .iter()
        .copied()
        .max_by(|a, b| finite(a.1).total_cmp(&finite(b.1)))
    else {
        return no_data(lang, KIND, &title);
    };
    let sun = clear_sky(station, day);
    let expected = sun.iter().map(|(_, kw)| *kw).fold(0.0, f64::max);
    let lowest = points.iter().map(|(_, kw)| finite(*kw)).fold(0.0, f64::min);
    let s = YScale::new(lowest, finite(peak.1).max(expected));
    let tz = station.timezone;
    let span = (end - start).num_seconds().max(1) as f64;
    let x = |at: DateTime<Utc>| PX0 + (at - start).num_seconds() as f64 / span * (PX1 - PX0);
    let local = |at: DateTime<Utc>| at.with_timezone(&tz).format("%H:%M").to_string();

    // Runs of readings without a long gap.
    let spacing = points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).num_seconds())
        .filter(|s| *s > 0)
        .min()
        .unwrap_or(300);
    let gap = spacing * 5 / 2;
    let mut runs: Vec<&[(DateTime<Utc>, f64)]> = Vec::new();
    let mut from = 0;
    for i in 1..=points.len() {
        if i == points.len() || (points[i].0 - points[i - 1].0).num_seconds() > gap {
            runs.push(&points[from..i]);
            from = i;
        }
    }
    let base = s.y(0.0);
    let path = |run: &[(DateTime<Utc>, f64)]| -> String {
        run.iter()
            .enumerate()
            .map(|(i, (at, kw))| {
                let op = if i == 0 { "M" } else { " L" };
                format!("{op}{} {}", num(x(*at)), num(s.y(*kw)))
            })
            .collect()
    };
    let sun_path = path(&sun);
    let hours: Vec<(f64, String)> = (0..=24u32)
        .step_by(3)
        .filter_map(|h| {
            let at = if h == 24 {
                Some(end)
            } else {
                day.and_hms_opt(h, 0, 0)
                    .and_then(|t| tz.from_local_datetime(&t).earliest())
                    .map(|t| t.with_timezone(&Utc))
            }?;
            Some((x(at), format!("{h:02}:00")))
        })
        .collect();
    let desc = fill(
        &tr(lang, "chart.power_desc"),
        &[
            ("peak", &format!("{:.2}", finite(peak.1))),
            ("at", &local(peak.0)),
            ("expected", &format!("{expected:.2}")),
        ],
    );
    let body = html! {
        (legend(&[
            ("chart-power", Mark::Line, tr(lang, "chart.power_series")),
            ("chart-sun", Mark::Line, tr(lang, "chart.sun_series")),
        ]))
        (y_axis(lang, &s, "kW"))
        g class="chart-vgrid" {
            @for (hx, _) in &hours { line x1=(num(*hx)) x2=(num(*hx)) y1=(num(PY0)) y2=(num(PY1)) {} }
        }
        g class="chart-axis chart-x" {
            @for (hx, text) in &hours {
                text x=(num(*hx)) y=(num(PY1 + 18.0)) text-anchor="middle" { (text) }
            }
        }
        @for run in runs.iter().filter(|r| r.len() > 1) {
            @if let (Some(first), Some(last)) = (run.first(), run.last()) {
                path class="chart-area chart-power"
                    d=(format!("M{} {} {} L{} {} Z", num(x(first.0)), num(base),
                        path(run).replacen('M', "L", 1), num(x(last.0)), num(base))) {}
            }
            path class="chart-line chart-power" d=(path(run)) {}
        }
        path class="chart-line chart-sun" d=(sun_path) {}
        g class="chart-points" {
            @for run in &runs {
                @for (at, kw) in run.iter() {
                    circle class=(if run.len() > 1 { "chart-point chart-power chart-hit" } else { "chart-point chart-power" })
                        cx=(num(x(*at))) cy=(num(s.y(*kw))) r="3"
                        data-label=(local(*at)) data-value=(kw) {
                        title { (local(*at)) " · " (format!("{kw:.2}")) " kW" }
                    }
                }
            }
        }
    };
    frame(KIND, &title, &desc, false, body)
}

/// A station's daily energy (`days`: local day, kWh, whether the day's data is complete), one
/// bar per day labelled `MM-DD`; incomplete days carry `chart-incomplete` instead of
/// `chart-energy` (a paler, dashed-outline bar) and `data-complete="false"`.
pub fn daily_energy(lang: Lang, name: &str, days: &[(NaiveDate, f64, bool)]) -> Markup {
    const KIND: &str = "chart-daily-energy";
    let title = fill(&tr(lang, "chart.daily_title"), &[("name", name)]);
    if days.is_empty() {
        return no_data(lang, KIND, &title);
    }
    let min = days.iter().map(|d| finite(d.1)).fold(0.0, f64::min);
    let max = days.iter().map(|d| finite(d.1)).fold(0.0, f64::max);
    let s = YScale::new(min, max);
    let bands = Bands { n: days.len() };
    let labels: Vec<String> = days
        .iter()
        .map(|d| d.0.format("%m-%d").to_string())
        .collect();
    let total: f64 = days.iter().map(|d| finite(d.1)).sum();
    let incomplete = days.iter().filter(|d| !d.2).count();
    let desc = fill(
        &tr(lang, "chart.daily_desc"),
        &[
            ("days", &days.len().to_string()),
            ("total", &format!("{total:.1}")),
            ("incomplete", &incomplete.to_string()),
        ],
    );
    let width = bands.width() * 0.7;
    let body = html! {
        (legend(&[
            ("chart-energy", Mark::Bar, tr(lang, "chart.energy_series")),
            ("chart-incomplete", Mark::Bar, tr(lang, "chart.incomplete_series")),
        ]))
        (y_axis(lang, &s, "kWh"))
        (bands.labels(&labels))
        g class="chart-bars" {
            @for (i, (day, kwh, complete)) in days.iter().enumerate() {
                @let class = if *complete { "chart-energy" } else { "chart-incomplete" };
                @let tip = if *complete {
                    format!("{day} · {kwh:.1} kWh")
                } else {
                    format!("{day} · {kwh:.1} kWh · {}", tr(lang, "chart.incomplete_series"))
                };
                (bar(&s, Bar {
                    class,
                    x: bands.centre(i) - width / 2.0,
                    width,
                    v: *kwh,
                    label: &labels[i],
                    value: kwh.to_string(),
                    tip,
                    complete: Some(*complete),
                }))
            }
        }
    };
    frame(KIND, &title, &desc, false, body)
}

/// A station's months (`months`: month, metered kWh, settled kWh if the grid's statement is in),
/// a pair of bars per month labelled `YYYY-MM`: metered on the left, settled on the right (absent
/// when the month is not settled).
pub fn settled_vs_metered(
    lang: Lang,
    name: &str,
    months: &[(YearMonth, f64, Option<f64>)],
) -> Markup {
    const KIND: &str = "chart-settled-metered";
    let title = fill(&tr(lang, "chart.settled_title"), &[("name", name)]);
    if months.is_empty() {
        return no_data(lang, KIND, &title);
    }
    let all = months
        .iter()
        .flat_map(|(_, m, s)| std::iter::once(finite(*m)).chain(s.map(finite)));
    let (min, max) = all.fold((0.0, 0.0), |(lo, hi): (f64, f64), v| (lo.min(v), hi.max(v)));
    let s = YScale::new(min, max);
    let bands = Bands { n: months.len() };
    let labels: Vec<String> = months.iter().map(|m| m.0.to_string()).collect();
    let settled = months.iter().filter(|m| m.2.is_some()).count();
    let desc = fill(
        &tr(lang, "chart.settled_desc"),
        &[
            ("months", &months.len().to_string()),
            ("settled", &settled.to_string()),
        ],
    );
    let metered_label = tr(lang, "chart.metered_series");
    let settled_label = tr(lang, "chart.settled_series");
    let width = bands.width() * 0.4;
    let body = html! {
        (legend(&[
            ("chart-metered", Mark::Bar, metered_label.clone()),
            ("chart-settled", Mark::Bar, settled_label.clone()),
        ]))
        (y_axis(lang, &s, "kWh"))
        (bands.labels(&labels))
        g class="chart-bars" {
            @for (i, (month, metered, settled)) in months.iter().enumerate() {
                (bar(&s, Bar {
                    class: "chart-metered",
                    x: bands.centre(i) - width,
                    width,
                    v: *metered,
                    label: &labels[i],
                    value: metered.to_string(),
                    tip: format!("{month} · {metered_label} {metered:.1} kWh"),
                    complete: None,
                }))
                @if let Some(settled) = settled {
                    (bar(&s, Bar {
                        class: "chart-settled",
                        x: bands.centre(i),
                        width,
                        v: *settled,
                        label: &labels[i],
                        value: settled.to_string(),
                        tip: format!("{month} · {settled_label} {settled:.1} kWh"),
                    complete: None,
                    }))
                }
            }
        }
    };
    frame(KIND, &title, &desc, false, body)
}

/// One month of a village's money for [`income_vs_payouts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoneyMonth {
    pub month: YearMonth,
    /// Income allocated to the village that month.
    pub income: Fen,
    /// Paid out that month.
    pub payouts: Fen,
    /// The statement's closing balance: the running balance as the ledger keeps it (advances and
    /// reserves included), not recomputed here.
    pub balance: Fen,
}

/// Fen as yuan, for placing pixels only.
fn yuan_f64(fen: Fen) -> f64 {
    fen.0 as f64 / 100.0
}

/// A village's months: income and payouts as paired bars (income left, payouts right), the
/// closing balance as a line with a point per month, labelled `YYYY-MM`. The y axis is yuan
/// (labels as in [`ticks::label`]: "1.2万" / "12k"), going below zero when a balance or an
/// amount does; `data-value` is exact yuan (`Fen`'s `Display`).
pub fn income_vs_payouts(lang: Lang, name: &str, months: &[MoneyMonth]) -> Markup {
    const KIND: &str = "chart-village-money";
    let title = fill(&tr(lang, "chart.money_title"), &[("name", name)]);
    if months.is_empty() {
        return no_data(lang, KIND, &title);
    }
    let all = months
        .iter()
        .flat_map(|m| [m.income, m.payouts, m.balance].map(yuan_f64));
    let (min, max) = all.fold((0.0, 0.0), |(lo, hi): (f64, f64), v| (lo.min(v), hi.max(v)));
    let s = YScale::new(min, max);
    let bands = Bands { n: months.len() };
    let labels: Vec<String> = months.iter().map(|m| m.month.to_string()).collect();
    let sum = |f: fn(&MoneyMonth) -> Fen| {
        months
            .iter()
            .try_fold(Fen::ZERO, |acc, m| acc.checked_add(f(m)))
            .map_or_else(|| "–".to_owned(), |t| t.to_string())
    };
    let closing = months
        .last()
        .map_or_else(String::new, |m| m.balance.to_string());
    let desc = fill(
        &tr(lang, "chart.money_desc"),
        &[
            ("months", &months.len().to_string()),
            ("income", &sum(|m| m.income)),
            ("payouts", &sum(|m| m.payouts)),
            ("balance", &closing),
        ],
    );
    let yuan = tr(lang, "common.yuan");
    let income_label = tr(lang, "chart.income_series");
    let payouts_label = tr(lang, "chart.payouts_series");
    let balance_label = tr(lang, "chart.balance_series");
    let width = bands.width() * 0.35;
    let line: String = months
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let op = if i == 0 { "M" } else { " L" };
            format!(
                "{op}{} {}",
                num(bands.centre(i)),
                num(s.y(yuan_f64(m.balance)))
            )
        })
        .collect();
    let body = html! {
        (legend(&[
            ("chart-income", Mark::Bar, income_label.clone()),
            ("chart-payouts", Mark::Bar, payouts_label.clone()),
            ("chart-balance", Mark::Line, balance_label.clone()),
        ]))
        (y_axis(lang, &s, &yuan))
        (bands.labels(&labels))
        g class="chart-bars" {
            @for (i, m) in months.iter().enumerate() {
                (bar(&s, Bar {
                    class: "chart-income",
                    x: bands.centre(i) - width,
                    width,
                    v: yuan_f64(m.income),
                    label: &labels[i],
                    value: m.income.to_string(),
                    tip: format!("{} · {income_label} {} {yuan}", m.month, m.income),
                    complete: None,
                }))
                (bar(&s, Bar {
                    class: "chart-payouts",
                    x: bands.centre(i),
                    width,
                    v: yuan_f64(m.payouts),
                    label: &labels[i],
                    value: m.payouts.to_string(),
                    tip: format!("{} · {payouts_label} {} {yuan}", m.month, m.payouts),
                    complete: None,
                }))
            }
        }
        @if months.len() > 1 {
            path class="chart-line chart-balance" d=(line) {}
        }
        g class="chart-points" {
            @for (i, m) in months.iter().enumerate() {
                circle class="chart-point chart-balance" cx=(num(bands.centre(i)))
                    cy=(num(s.y(yuan_f64(m.balance)))) r="3.5"
                    data-label=(labels[i]) data-value=(m.balance.to_string()) {
                    title { (m.month) " · " (balance_label) " " (m.balance) " " (yuan) }
                }
            }
        }
    };
    frame(KIND, &title, &desc, false, body)
}

#[cfg(test)]
mod tests;
