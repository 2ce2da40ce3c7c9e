//! The fleet overview: every station with its status, current power and today's energy, as an HTML
//! page for operators (filtered by county, township, kind and state, sorted, in pages) and as JSON
//! for the dashboards.

use super::extract::Query;
use super::guard::Caller;
use super::i18n::{tr, trf, Lang};
use super::page::{frame, href, local_time};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::domain::{Station, StationId, StationKind};
use crate::solar;
use crate::store::{bucket_start, StationNow};
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, PreEscaped};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Routes {
    Routes::new()
        .get("/", Access::fleet(Action::ViewFleet), fleet_page)
        .heavy()
        .get(
            "/api/stations",
            Access::fleet(Action::ViewFleet),
            fleet_json,
        )
        .heavy()
}

/// A station's condition as the fleet page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FleetStatus {
    Producing,
    /// No sun: silence and zero power are expected.
    Sleeping,
    /// Some devices have not reported recently.
    Partial,
    /// No device has reported recently while the sun is up.
    Offline,
    /// Never reported.
    NoData,
}

impl FleetStatus {
    const ALL: [FleetStatus; 5] = [
        FleetStatus::Producing,
        FleetStatus::Sleeping,
        FleetStatus::Partial,
        FleetStatus::Offline,
        FleetStatus::NoData,
    ];

    /// The name in the query string and the JSON.
    fn code(self) -> &'static str {
        match self {
            FleetStatus::Producing => "producing",
            FleetStatus::Sleeping => "sleeping",
            FleetStatus::Partial => "partial",
            FleetStatus::Offline => "offline",
            FleetStatus::NoData => "no_data",
        }
    }
    fn css(self) -> &'static str {
        match self {
            FleetStatus::Producing => "producing",
            FleetStatus::Sleeping => "sleeping",
            FleetStatus::Partial => "partial",
            FleetStatus::Offline | FleetStatus::NoData => "offline",
        }
    }
    fn label(self, lang: Lang) -> String {
        tr(lang, &format!("fleet.status_{}", self.code()))
    }
}

/// A station kind in the page's language.
pub fn kind_label(lang: Lang, kind: StationKind) -> String {
    match kind {
        StationKind::Village => tr(lang, "fleet.kind_village"),
        StationKind::JointVillage => tr(lang, "fleet.kind_joint"),
        StationKind::Centralized => tr(lang, "fleet.kind_centralized"),
    }
}

/// How long without contact before a device counts as silent.
const SILENT_AFTER: i64 = 10 * 60;

fn status_of(station: &Station, now_state: Option<&StationNow>, now: DateTime<Utc>) -> FleetStatus {
    let sun_up = solar::position(station.latitude, station.longitude, now).elevation_deg > 0.0;
    let Some(n) = now_state.filter(|n| n.last_contact.is_some()) else {
        return FleetStatus::NoData;
    };
    let fresh = n
        .last_contact
        .is_some_and(|t| (now - t).num_seconds() <= SILENT_AFTER);
    if !sun_up {
        return FleetStatus::Sleeping;
    }
    if !fresh {
        FleetStatus::Offline
    } else if n.reporting < n.devices {
        FleetStatus::Partial
    } else {
        FleetStatus::Producing
    }
}

/// One station on the fleet overview.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StationSummary {
    id: String,
    name: String,
    #[schema(schema_with = station_kind_schema)]
    kind: &'static str,
    county: String,
    /// The townships of the station's owning villages (none for a centralized station).
    townships: Vec<String>,
    capacity_kwp: f64,
    status: FleetStatus,
    /// AC power now, summed over the station's devices.
    power_kw: f64,
    /// Energy since local midnight in the station's time zone.
    today_kwh: f64,
    devices: i64,
    /// Devices heard from in the last 10 minutes.
    devices_reporting: i64,
    /// `null` when no device has ever reported.
    last_contact: Option<DateTime<Utc>>,
    #[serde(skip)]
    station_kind: Option<StationKind>,
    #[serde(skip)]
    timezone: Option<Tz>,
}

fn station_kind_schema() -> utoipa::openapi::Object {
    super::openapi::string_enum(
        &["village", "joint-village", "centralized"],
        "村级 village, 联村 joint-village or 集中式 centralized station",
    )
}

/// Which stations to show: every field optional, an empty value meaning "all".
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct FleetQuery {
    /// County id.
    county: Option<String>,
    /// Township id (a station belongs to the townships of its owning villages).
    township: Option<String>,
    /// `village`, `joint-village` or `centralized`.
    kind: Option<String>,
    /// `producing`, `sleeping`, `partial`, `offline` or `no_data`.
    status: Option<String>,
    /// Part of the station's name or id.
    q: Option<String>,
    /// Page only: `name`, `status`, `power`, `today`, `capacity` or `contact`.
    #[param(ignore)]
    sort: Option<String>,
    /// Page only: `asc` or `desc`.
    #[param(ignore)]
    dir: Option<String>,
    /// Page only: from 1.
    #[param(ignore)]
    page: Option<usize>,
    /// Page only: rows per page, 10 to 500.
    #[param(ignore)]
    per: Option<usize>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A filter checked against the deployment: an unknown value is an error naming the field.
struct Filter<'a> {
    county: Option<&'a str>,
    township: Option<&'a str>,
    kind: Option<StationKind>,
    status: Option<FleetStatus>,
    q: Option<String>,
}

impl FleetQuery {
    fn filter(&self, state: &AppState) -> Result<Filter<'_>, ApiError> {
        let county = given(&self.county);
        if let Some(c) = county {
            if !state.deployment.counties.iter().any(|x| x.id.as_str() == c) {
                return Err(ApiError::invalid("county", format!("no county '{c}'")));
            }
        }
        let township = given(&self.township);
        if let Some(t) = township {
            if !state
                .deployment
                .townships
                .iter()
                .any(|x| x.id.as_str() == t)
            {
                return Err(ApiError::invalid("township", format!("no township '{t}'")));
            }
        }
        let kind = match given(&self.kind) {
            None => None,
            Some("village") => Some(StationKind::Village),
            Some("joint-village") => Some(StationKind::JointVillage),
            Some("centralized") => Some(StationKind::Centralized),
            Some(other) => {
                return Err(ApiError::invalid(
                    "kind",
                    format!("'{other}' is not village, joint-village or centralized"),
                ))
            }
        };
        let status = match given(&self.status) {
            None => None,
            Some(code) => Some(
                FleetStatus::ALL
                    .into_iter()
                    .find(|s| s.code() == code)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "status",
                            format!(
                                "'{code}' is not producing, sleeping, partial, offline or no_data"
                            ),
                        )
                    })?,
            ),
        };
        Ok(Filter {
            county,
            township,
            kind,
            status,
            q: given(&self.q).map(str::to_lowercase),
        })
    }
}

impl Filter<'_> {
    fn keeps(&self, r: &StationSummary) -> bool {
        self.county.is_none_or(|c| r.county == c)
            && self
                .township
                .is_none_or(|t| r.townships.iter().any(|x| x == t))
            && self.kind.is_none_or(|k| r.station_kind == Some(k))
            && self.status.is_none_or(|s| r.status == s)
            && self.q.as_ref().is_none_or(|q| {
                r.name.to_lowercase().contains(q.as_str())
                    || r.id.to_lowercase().contains(q.as_str())
            })
    }
}

/// How long a snapshot of the fleet serves while the store has not changed: a station's status
/// also moves with the clock (sunrise, sunset, ten minutes of silence), at most this late.
const FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Every station's summary at one moment, shared by the requests that come before the store
/// changes (or [`FRESH_FOR`] passes) instead of computing 10,000 stations for each.
#[derive(Debug)]
pub struct FleetSnapshot {
    /// `Store::changes` when the store was read for it.
    changes: u64,
    taken: std::time::Instant,
    /// Every station, in deployment order.
    rows: Vec<StationSummary>,
    /// Indexes of `rows` by name, then id: the page's default order.
    by_name: Vec<usize>,
    /// The JSON of every row, for callers who see and ask for the whole fleet.
    all_json: std::sync::OnceLock<axum::body::Bytes>,
}

/// The current [`FleetSnapshot`], replaced whole; one request at a time builds the next.
#[derive(Debug, Default)]
pub struct FleetCache {
    current: std::sync::RwLock<Option<Arc<FleetSnapshot>>>,
    building: tokio::sync::Mutex<()>,
}

impl FleetCache {
    fn get(&self) -> Option<Arc<FleetSnapshot>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
    fn set(&self, s: Arc<FleetSnapshot>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(s);
    }
}

/// The fleet as the store holds it now: a cached snapshot while nothing was written since (the
/// store counts its writes), a new one otherwise. A snapshot only older than [`FRESH_FOR`] is
/// renewed by one request while the others still use it.
async fn snapshot(state: &AppState) -> Result<Arc<FleetSnapshot>, ApiError> {
    let cache = &state.fleet;
    if let Some(s) = cache.get() {
        if s.changes == state.store.changes() {
            if s.taken.elapsed() < FRESH_FOR {
                return Ok(s);
            }
            let Ok(_turn) = cache.building.try_lock() else {
                return Ok(s);
            };
            let fresh = Arc::new(build_snapshot(state).await?);
            cache.set(Arc::clone(&fresh));
            return Ok(fresh);
        }
    }
    let _turn = cache.building.lock().await;
    if let Some(s) = cache.get() {
        // Built by another request while this one waited.
        if s.changes == state.store.changes() && s.taken.elapsed() < FRESH_FOR {
            return Ok(s);
        }
    }
    let fresh = Arc::new(build_snapshot(state).await?);
    cache.set(Arc::clone(&fresh));
    Ok(fresh)
}

/// Every station with its state now.
async fn build_snapshot(state: &AppState) -> Result<FleetSnapshot, ApiError> {
    // Counted before reading: a write while the store is read makes the snapshot out of date.
    let changes = state.store.changes();
    let taken = std::time::Instant::now();
    let now = Utc::now();
    let fleet = state.store.fleet_now().await?;
    let days = state
        .store
        .station_day_energy_since(now - Duration::hours(40))
        .await?;
    let mut energy: HashMap<(StationId, i64), f64> = HashMap::new();
    for (station, bucket, wh) in days {
        energy.insert((station, bucket), wh);
    }
    let rows: Vec<StationSummary> = state
        .deployment
        .stations
        .iter()
        .map(|s| {
            let n = fleet.get(&s.id);
            let today = bucket_start(now, 86_400, s.timezone);
            StationSummary {
                id: s.id.to_string(),
                name: s.name.clone(),
                kind: s.kind.label(),
                county: s.county.to_string(),
                townships: state
                    .geography
                    .station(s.id.as_str())
                    .map(|p| p.townships.clone())
                    .unwrap_or_default(),
                capacity_kwp: s.capacity_kwp,
                status: status_of(s, n, now),
                power_kw: n.map_or(0.0, |n| n.power_w / 1000.0),
                today_kwh: energy.get(&(s.id.clone(), today)).copied().unwrap_or(0.0) / 1000.0,
                devices: n.map_or(0, |n| n.devices),
                devices_reporting: n.map_or(0, |n| n.reporting),
                last_contact: n.and_then(|n| n.last_contact),
                station_kind: Some(s.kind),
                timezone: Some(s.timezone),
            }
        })
        .collect();
    let mut by_name: Vec<usize> = (0..rows.len()).collect();
    by_name.sort_by(|a, b| Sort::Name.compare(&rows[*a], &rows[*b]));
    Ok(FleetSnapshot {
        changes,
        taken,
        rows,
        by_name,
        all_json: std::sync::OnceLock::new(),
    })
}

/// The stations the caller may see, with their state now.
fn summaries<'a>(
    state: &AppState,
    caller: &Caller,
    snap: &'a FleetSnapshot,
    order: Option<&[usize]>,
) -> Vec<&'a StationSummary> {
    let may = |r: &StationSummary| {
        state
            .geography
            .may_on_station(caller.who(), Action::ViewStation, &r.id)
    };
    match order {
        Some(order) => order
            .iter()
            .filter_map(|i| snap.rows.get(*i))
            .filter(|r| may(r))
            .collect(),
        None => snap.rows.iter().filter(|r| may(r)).collect(),
    }
}

/// The stations the caller may see, with their status, power now and energy today.
#[utoipa::path(
    get,
    path = "/api/stations",
    tag = "fleet",
    params(FleetQuery),
    responses(
        (status = 200, description = "Every station the caller may see that matches the filter, in deployment order", body = Vec<StationSummary>),
        (status = 400, description = "A filter names no county, township, kind or state there is", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn fleet_json(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<FleetQuery>,
) -> Result<Response, ApiError> {
    let filter = query.filter(&state)?;
    let snap = snapshot(&state).await?;
    let mut rows = summaries(&state, &caller, &snap, None);
    rows.retain(|r| filter.keeps(r));
    let encode = |rows: &[&StationSummary]| {
        serde_json::to_vec(rows)
            .map(axum::body::Bytes::from)
            .map_err(|e| ApiError::Internal(format!("encoding the fleet: {e}")))
    };
    let body = if rows.len() == snap.rows.len() {
        match snap.all_json.get() {
            Some(b) => b.clone(),
            None => {
                let b = encode(&rows)?;
                snap.all_json.get_or_init(|| b).clone()
            }
        }
    } else {
        encode(&rows)?
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// How the page orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Name,
    Status,
    Power,
    Today,
    Capacity,
    Contact,
}

impl Sort {
    const ALL: [Sort; 6] = [
        Sort::Name,
        Sort::Status,
        Sort::Power,
        Sort::Today,
        Sort::Capacity,
        Sort::Contact,
    ];
    fn code(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Status => "status",
            Sort::Power => "power",
            Sort::Today => "today",
            Sort::Capacity => "capacity",
            Sort::Contact => "contact",
        }
    }
    fn compare(self, a: &StationSummary, b: &StationSummary) -> Ordering {
        let by = match self {
            Sort::Name => a.name.cmp(&b.name),
            Sort::Status => (a.status as u8).cmp(&(b.status as u8)),
            Sort::Power => a.power_kw.total_cmp(&b.power_kw),
            Sort::Today => a.today_kwh.total_cmp(&b.today_kwh),
            Sort::Capacity => a.capacity_kwp.total_cmp(&b.capacity_kwp),
            Sort::Contact => a.last_contact.cmp(&b.last_contact),
        };
        by.then_with(|| a.id.cmp(&b.id))
    }
}

const PER_PAGE: usize = 50;

/// The page's own parameters, checked.
struct View {
    sort: Sort,
    descending: bool,
    page: usize,
    per: usize,
}

impl FleetQuery {
    fn view(&self) -> Result<View, ApiError> {
        let sort = match given(&self.sort) {
            None => Sort::Name,
            Some(code) => Sort::ALL
                .into_iter()
                .find(|s| s.code() == code)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "sort",
                        format!("'{code}' is not name, status, power, today, capacity or contact"),
                    )
                })?,
        };
        let descending = match given(&self.dir) {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "dir",
                    format!("'{other}' is not asc or desc"),
                ))
            }
        };
        let per = self.per.unwrap_or(PER_PAGE);
        if !(10..=500).contains(&per) {
            return Err(ApiError::invalid(
                "per",
                format!("{per} rows per page: give 10 to 500"),
            ));
        }
        let page = self.page.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::invalid("page", "pages count from 1"));
        }
        Ok(View {
            sort,
            descending,
            page,
            per,
        })
    }

    /// The query string of this view with some parameters changed (`""` removes one).
    fn with(&self, changes: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        let page = self.page.map(|p| p.to_string());
        let per = self.per.map(|p| p.to_string());
        let current: [(&'static str, Option<&str>); 9] = [
            ("county", given(&self.county)),
            ("township", given(&self.township)),
            ("kind", given(&self.kind)),
            ("status", given(&self.status)),
            ("q", given(&self.q)),
            ("sort", given(&self.sort)),
            ("dir", given(&self.dir)),
            ("page", page.as_deref()),
            ("per", per.as_deref()),
        ];
        current
            .into_iter()
            .filter_map(|(name, value)| {
                let value = changes
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(value, |(_, v)| Some(*v))
                    .filter(|v| !v.is_empty())?;
                Some((name, value.to_owned()))
            })
            .collect()
    }

    fn link(&self, changes: &[(&str, &str)]) -> String {
        let pairs = self.with(changes);
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        href("/", &borrowed)
    }
}

async fn fleet_page(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<FleetQuery>,
) -> Result<Html<String>, ApiError> {
    let lang = caller.lang;
    let filter = query.filter(&state)?;
    let view = query.view()?;
    let snap = snapshot(&state).await?;
    // By name the snapshot's own order serves; any other order is sorted here.
    let by_name = view.sort == Sort::Name;
    let mut rows = summaries(&state, &caller, &snap, by_name.then_some(&snap.by_name[..]));
    let visible = rows.len();
    rows.retain(|r| filter.keeps(r));
    if by_name {
        if view.descending {
            rows.reverse();
        }
    } else {
        rows.sort_by(|a, b| {
            let o = view.sort.compare(a, b);
            if view.descending {
                o.reverse()
            } else {
                o
            }
        });
    }
    let total_kw: f64 = rows.iter().map(|r| r.power_kw).sum();
    let total_kwh: f64 = rows.iter().map(|r| r.today_kwh).sum();
    let capacity: f64 = rows.iter().map(|r| r.capacity_kwp).sum();
    let producing = rows
        .iter()
        .filter(|r| r.status == FleetStatus::Producing)
        .count();
    let pages = rows.len().div_ceil(view.per).max(1);
    let page = view.page.min(pages);
    let shown = &rows[((page - 1) * view.per).min(rows.len())..(page * view.per).min(rows.len())];
    // The live refresh asks for the same filter, so the totals stay those of the filtered set.
    let api = query.with(&[("sort", ""), ("dir", ""), ("page", ""), ("per", "")]);
    let api: Vec<(&str, &str)> = api.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let api = href("/api/stations", &api);

    let alerts = super::alerts::open_alerts_box(&state, &caller).await;
    let body = html! {
        h1 { (tr(lang, "fleet.title")) }
        @if let Some(note) = backfill_note(&state, lang) { (note) }
        div.cards {
            div.card { div.k { (tr(lang, "fleet.card_producing")) } div.v #producing { (producing) " / " (rows.len()) } }
            div.card { div.k { (tr(lang, "fleet.card_power")) } div.v #total-power { (format!("{total_kw:.1}")) " kW" } }
            div.card { div.k { (tr(lang, "fleet.card_today")) } div.v #total-today { (format!("{total_kwh:.1}")) " kWh" } }
            div.card { div.k { (tr(lang, "fleet.card_installed")) } div.v { (format!("{capacity:.0}")) " kWp" } }
        }
        (filter_form(&state, &query, lang))
        @if rows.len() < visible {
            p.muted #filtered { (trf(lang, "fleet.filtered", &[("shown", &rows.len()), ("all", &visible)])) " "
                a href="/" { (tr(lang, "fleet.clear_filter")) } }
        }
        table #fleet data-api=(api) {
            thead { tr {
                (sort_header(&query, &view, Sort::Name, &tr(lang, "fleet.col_station"), false))
                th { (tr(lang, "fleet.col_kind")) }
                (sort_header(&query, &view, Sort::Status, &tr(lang, "fleet.col_status"), false))
                (sort_header(&query, &view, Sort::Power, &tr(lang, "fleet.col_power"), true))
                (sort_header(&query, &view, Sort::Today, &tr(lang, "fleet.col_today"), true))
                (sort_header(&query, &view, Sort::Capacity, &tr(lang, "fleet.col_capacity"), true))
                th.num { (tr(lang, "fleet.col_devices")) }
                (sort_header(&query, &view, Sort::Contact, &tr(lang, "fleet.col_contact"), false))
            } }
            tbody {
                @for r in shown {
                    tr data-station=(r.id) {
                        td { a href=(format!("/stations/{}", r.id)) { (r.name) } div.muted { (r.id) } }
                        td { (r.station_kind.map(|k| kind_label(lang, k)).unwrap_or_default()) }
                        td { span class={ "status " (r.status.css()) } { (r.status.label(lang)) } }
                        td.num.power { (format!("{:.1}", r.power_kw)) }
                        td.num.today { (format!("{:.1}", r.today_kwh)) }
                        td.num { (format!("{:.0}", r.capacity_kwp)) }
                        td.num { (r.devices_reporting) "/" (r.devices) }
                        td { @match (r.last_contact, r.timezone) {
                            (Some(t), Some(tz)) => (local_time(t, tz)),
                            _ => (tr(lang, "fleet.never")),
                        } }
                    }
                }
                @if shown.is_empty() {
                    tr { td.muted colspan="8" { (tr(lang, "fleet.no_match")) } }
                }
            }
        }
        @if pages > 1 {
            nav.pager #pager {
                @if page > 1 { a rel="prev" href=(query.link(&[("page", &(page - 1).to_string())])) { (tr(lang, "common.previous")) } }
                span { (trf(lang, "common.page_of", &[("page", &page), ("pages", &pages)])) }
                @if page < pages { a rel="next" href=(query.link(&[("page", &(page + 1).to_string())])) { (tr(lang, "common.next")) } }
            }
        }
        p.muted { (tr(lang, "fleet.refresh_note")) }
        (alerts)
        script { (PreEscaped(REFRESH_SCRIPT)) }
    };
    Ok(Html(
        frame(&caller, &tr(lang, "fleet.title"), body).into_string(),
    ))
}

/// A column header that sorts by its column; a second click reverses the order.
fn sort_header(query: &FleetQuery, view: &View, sort: Sort, label: &str, num: bool) -> Markup {
    let active = view.sort == sort;
    let dir = if active && !view.descending {
        "desc"
    } else {
        "asc"
    };
    let link = query.link(&[("sort", sort.code()), ("dir", dir), ("page", "")]);
    let mark = match (active, view.descending) {
        (false, _) => "",
        (true, false) => " ▲",
        (true, true) => " ▼",
    };
    html! {
        th class=[num.then_some("num")] aria-sort=[active.then_some(if view.descending { "descending" } else { "ascending" })] {
            a.sort href=(link) data-sort=(sort.code()) { (label) (mark) }
        }
    }
}

/// The filter form: a plain GET form, so it works without JavaScript.
fn filter_form(state: &AppState, query: &FleetQuery, lang: Lang) -> Markup {
    let chosen = |v: &Option<String>, x: &str| given(v) == Some(x);
    let kinds = [
        ("village", StationKind::Village),
        ("joint-village", StationKind::JointVillage),
        ("centralized", StationKind::Centralized),
    ];
    html! {
        form.filters #fleet-filter method="get" action="/" {
            label { (tr(lang, "fleet.county")) " "
                select name="county" {
                    option value="" { (tr(lang, "common.all")) }
                    @for c in &state.deployment.counties {
                        option value=(c.id) selected[chosen(&query.county, c.id.as_str())] { (c.name) }
                    }
                }
            }
            label { (tr(lang, "fleet.township")) " "
                select name="township" {
                    option value="" { (tr(lang, "common.all")) }
                    @for t in &state.deployment.townships {
                        option value=(t.id) selected[chosen(&query.township, t.id.as_str())] { (t.name) }
                    }
                }
            }
            label { (tr(lang, "fleet.col_kind")) " "
                select name="kind" {
                    option value="" { (tr(lang, "common.all")) }
                    @for (code, kind) in kinds {
                        option value=(code) selected[chosen(&query.kind, code)] { (kind_label(lang, kind)) }
                    }
                }
            }
            label { (tr(lang, "fleet.col_status")) " "
                select name="status" {
                    option value="" { (tr(lang, "common.all")) }
                    @for s in FleetStatus::ALL {
                        option value=(s.code()) selected[chosen(&query.status, s.code())] { (s.label(lang)) }
                    }
                }
            }
            label { (tr(lang, "fleet.search")) " "
                input type="search" name="q" value=[given(&query.q)] size="14";
            }
            @if let Some(sort) = given(&query.sort) { input type="hidden" name="sort" value=(sort); }
            @if let Some(dir) = given(&query.dir) { input type="hidden" name="dir" value=(dir); }
            button type="submit" { (tr(lang, "common.filter")) }
        }
    }
}

/// While the demo's history is still being written, say so: figures for past days are incomplete.
fn backfill_note(state: &AppState, lang: Lang) -> Option<Markup> {
    let p = state.backfill.as_ref()?;
    if p.settled() {
        return None;
    }
    let percent = format!("{:.0}", p.fraction() * 100.0);
    Some(html! {
        p.note #backfill { (trf(lang, "fleet.backfill", &[("percent", &percent)])) }
    })
}

/// Live values without a page reload: fetches the JSON of the same filter and updates the cells
/// in place.
const REFRESH_SCRIPT: &str = r#"
async function refresh() {
  try {
    const table = document.getElementById('fleet');
    const rows = await (await fetch(table.dataset.api)).json();
    let kw = 0, kwh = 0;
    for (const r of rows) {
      kw += r.power_kw; kwh += r.today_kwh;
      const tr = document.querySelector(`tr[data-station="${CSS.escape(r.id)}"]`);
      if (!tr) continue;
      tr.querySelector('.power').textContent = r.power_kw.toFixed(1);
      tr.querySelector('.today').textContent = r.today_kwh.toFixed(1);
    }
    document.getElementById('total-power').textContent = kw.toFixed(1) + ' kW';
    document.getElementById('total-today').textContent = kwh.toFixed(1) + ' kWh';
    table.dataset.refreshed = new Date().toISOString();
  } catch (e) { /* the next tick tries again */ }
}
setInterval(refresh, 15000);
"#;
