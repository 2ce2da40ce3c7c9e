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
        .get(
            "/api/fleet/totals",
            Access::fleet(Action::ViewFleet),
            totals_json,
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
    /// `name` (the default), `status`, `power`, `today`, `capacity` or `contact`.
    #[param(ignore)]
    sort: Option<String>,
    /// `asc` (the default) or `desc`.
    #[param(ignore)]
    dir: Option<String>,
    /// The page, from 1 (a page past the last gives the last).
    #[param(ignore)]
    page: Option<usize>,
    /// Rows per page: 10 to 500 on the page (default 50), 1 to 1,000 in the API (default 100).
    #[param(ignore)]
    per: Option<usize>,
}

/// The rows `/api/stations` takes: the filter, then the order and the page.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read through `FleetQuery`; this type only describes the parameters
struct PageParams {
    /// `name` (the default), `status`, `power`, `today`, `capacity` or `contact`.
    sort: Option<String>,
    /// `asc` (the default) or `desc`.
    dir: Option<String>,
    /// The page, from 1 (a page past the last gives the last).
    page: Option<usize>,
    /// Rows per page, 1 to 1,000 (default 100).
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

/// A snapshot that took longer than this to build is renewed at most once per
/// [`RENEW_FACTOR`] times its build, however often the store changes: under live ingest a large
/// fleet would otherwise be rebuilt without pause. A small fleet's is always renewed at once.
const SLOW_BUILD: std::time::Duration = std::time::Duration::from_millis(20);
const RENEW_FACTOR: u32 = 5;

/// Every station's summary at one moment, shared by the requests that come before the store
/// changes (or [`FRESH_FOR`] passes) instead of computing 10,000 stations for each.
#[derive(Debug)]
pub struct FleetSnapshot {
    /// `Store::changes` when the store was read for it.
    changes: u64,
    taken: std::time::Instant,
    /// How long it took to build.
    cost: std::time::Duration,
    /// Every station, in deployment order.
    rows: Vec<StationSummary>,
    /// Indexes of `rows` by name, then id: the default order.
    by_name: Vec<usize>,
    /// Per role and scope, the indexes (in `by_name` order) of the stations it may see: worked
    /// out once per snapshot instead of asking the access rules 10,000 times per request.
    visible: std::sync::Mutex<HashMap<String, Arc<[usize]>>>,
}

impl FleetSnapshot {
    /// Whether this snapshot may still be served: the store unchanged and the clock not moved
    /// on too far, or a slow build too recent to renew.
    fn serves(&self, changes: u64) -> bool {
        let age = self.taken.elapsed();
        let unchanged = self.changes == changes;
        let resting = self.cost > SLOW_BUILD && age < self.cost * RENEW_FACTOR;
        (unchanged && age < FRESH_FOR) || resting
    }

    /// The stations `caller` may see, in name order.
    fn visible_to(&self, state: &AppState, caller: &Caller) -> Arc<[usize]> {
        let key = caller
            .who()
            .map_or_else(String::new, |p| format!("{:?} {:?}", p.role, p.scope));
        let mut map = self
            .visible
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = map.get(&key) {
            return Arc::clone(v);
        }
        let v: Arc<[usize]> = self
            .by_name
            .iter()
            .copied()
            .filter(|i| {
                state
                    .geography
                    .may_on_station(caller.who(), Action::ViewStation, &self.rows[*i].id)
            })
            .collect();
        map.insert(key, Arc::clone(&v));
        v
    }
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
/// store counts its writes) and the clock has not moved on past [`FRESH_FOR`], a new one
/// otherwise, built by one request at a time. While one is built, a request is served the last
/// one if that is only older than the clock allows or was slow to build (a large fleet); a request
/// after a write to a small fleet waits for the new one, so a write is seen by the next read.
async fn snapshot(state: &AppState) -> Result<Arc<FleetSnapshot>, ApiError> {
    let cache = &state.fleet;
    let last = cache.get();
    if let Some(s) = &last {
        if s.serves(state.store.changes()) {
            return Ok(Arc::clone(s));
        }
    }
    let turn = match cache.building.try_lock() {
        Ok(turn) => turn,
        Err(_) => {
            if let Some(s) = &last {
                if s.cost > SLOW_BUILD || s.changes == state.store.changes() {
                    return Ok(Arc::clone(s));
                }
            }
            let turn = cache.building.lock().await;
            if let Some(s) = cache.get() {
                // Built by another request while this one waited.
                if s.changes == state.store.changes() {
                    return Ok(s);
                }
            }
            turn
        }
    };
    let fresh = Arc::new(build_snapshot(state).await?);
    cache.set(Arc::clone(&fresh));
    drop(turn);
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
        cost: taken.elapsed(),
        rows,
        by_name,
        visible: std::sync::Mutex::default(),
    })
}

/// The stations the caller may see that match the filter, in the order asked, and how many the
/// caller may see in all.
fn select<'a>(
    state: &AppState,
    caller: &Caller,
    snap: &'a FleetSnapshot,
    filter: &Filter<'_>,
    view: &View,
) -> (Vec<&'a StationSummary>, usize) {
    let visible = snap.visible_to(state, caller);
    let mut rows: Vec<&StationSummary> = visible
        .iter()
        .filter_map(|i| snap.rows.get(*i))
        .filter(|r| filter.keeps(r))
        .collect();
    if view.sort == Sort::Name {
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
    (rows, visible.len())
}

/// The page `view` asks for of `rows`: (its number, how many pages, its rows). A page past the
/// last gives the last.
fn page_of<'r, 'a>(
    rows: &'r [&'a StationSummary],
    view: &View,
) -> (usize, usize, &'r [&'a StationSummary]) {
    let pages = rows.len().div_ceil(view.per).max(1);
    let page = view.page.min(pages);
    let from = ((page - 1) * view.per).min(rows.len());
    let to = (page * view.per).min(rows.len());
    (page, pages, &rows[from..to])
}

/// Totals over a set of stations (the caller's, filtered).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FleetTotals {
    stations: usize,
    producing: usize,
    /// AC power now, summed.
    power_kw: f64,
    /// Energy since each station's local midnight, summed.
    today_kwh: f64,
    capacity_kwp: f64,
}

impl FleetTotals {
    fn of(rows: &[&StationSummary]) -> FleetTotals {
        FleetTotals {
            stations: rows.len(),
            producing: rows
                .iter()
                .filter(|r| r.status == FleetStatus::Producing)
                .count(),
            power_kw: rows.iter().map(|r| r.power_kw).sum(),
            today_kwh: rows.iter().map(|r| r.today_kwh).sum(),
            capacity_kwp: rows.iter().map(|r| r.capacity_kwp).sum(),
        }
    }
}

/// The stations the caller may see, with their status, power now and energy today: one page at a
/// time (a county has hundreds, a province tens of thousands).
#[utoipa::path(
    get,
    path = "/api/stations",
    tag = "fleet",
    params(FleetQuery, PageParams),
    responses(
        (status = 200, description = "One page of the stations the caller may see that match the filter, by name unless `sort` says otherwise", body = Vec<StationSummary>,
            headers(
                ("X-Total-Count" = usize, description = "How many stations match the filter, on every page"),
                ("Link" = String, description = "The `next` and `prev` pages, when there are such"),
            )),
        (status = 400, description = "A filter names no county, township, kind or state there is, or the order or page is not one there can be", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn fleet_json(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<FleetQuery>,
) -> Result<Response, ApiError> {
    let filter = query.filter(&state)?;
    let view = query.view(API_PER, 1..=1_000)?;
    let snap = snapshot(&state).await?;
    let (rows, _) = select(&state, &caller, &snap, &filter, &view);
    let (page, pages, shown) = page_of(&rows, &view);
    let body = serde_json::to_vec(shown)
        .map_err(|e| ApiError::Internal(format!("encoding the fleet: {e}")))?;
    let link = |n: usize, rel: &str| {
        let pairs = query.with(&[("page", &n.to_string()), ("per", &view.per.to_string())]);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        format!("<{}>; rel=\"{rel}\"", href("/api/stations", &pairs))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::HeaderName::from_static("x-total-count"),
                rows.len().to_string(),
            ),
        ],
        body,
    )
        .into_response();
    if !links.is_empty() {
        if let Ok(v) = header::HeaderValue::from_str(&links.join(", ")) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(response)
}

/// Totals over the stations the caller may see that match the filter: what the fleet page's
/// cards show and its refresh renews.
#[utoipa::path(
    get,
    path = "/api/fleet/totals",
    tag = "fleet",
    params(FleetQuery),
    responses(
        (status = 200, description = "How many stations match, how many produce, and their power, energy today and capacity summed", body = FleetTotals),
        (status = 400, description = "A filter names no county, township, kind or state there is", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn totals_json(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<FleetQuery>,
) -> Result<axum::Json<FleetTotals>, ApiError> {
    let filter = query.filter(&state)?;
    let snap = snapshot(&state).await?;
    let view = View {
        sort: Sort::Name,
        descending: false,
        page: 1,
        per: usize::MAX,
    };
    let (rows, _) = select(&state, &caller, &snap, &filter, &view);
    Ok(axum::Json(FleetTotals::of(&rows)))
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

/// Rows per page: the fleet page's default, and the API's.
const PER_PAGE: usize = 50;
const API_PER: usize = 100;

/// The page's own parameters, checked.
struct View {
    sort: Sort,
    descending: bool,
    page: usize,
    per: usize,
}

impl FleetQuery {
    fn view(
        &self,
        default_per: usize,
        allowed: std::ops::RangeInclusive<usize>,
    ) -> Result<View, ApiError> {
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
        let per = self.per.unwrap_or(default_per);
        if !allowed.contains(&per) {
            return Err(ApiError::invalid(
                "per",
                format!(
                    "{per} rows per page: give {} to {}",
                    allowed.start(),
                    allowed.end()
                ),
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
    let view = query.view(PER_PAGE, 10..=500)?;
    let snap = snapshot(&state).await?;
    let (rows, visible) = select(&state, &caller, &snap, &filter, &view);
    let totals = FleetTotals::of(&rows);
    let (page, pages, shown) = page_of(&rows, &view);
    // The live refresh asks for the rows of this page and the totals of the same filter.
    let page_text = page.to_string();
    let per_text = view.per.to_string();
    let api = query.with(&[("page", &page_text), ("per", &per_text)]);
    let api: Vec<(&str, &str)> = api.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let api = href("/api/stations", &api);
    let totals_api = query.with(&[("sort", ""), ("dir", ""), ("page", ""), ("per", "")]);
    let totals_api: Vec<(&str, &str)> = totals_api.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let totals_api = href("/api/fleet/totals", &totals_api);

    let alerts = super::alerts::open_alerts_box(&state, &caller).await;
    let body = html! {
        h1 { (tr(lang, "fleet.title")) }
        @if let Some(note) = backfill_note(&state, lang) { (note) }
        div.cards {
            div.card { div.k { (tr(lang, "fleet.card_producing")) } div.v #producing { (totals.producing) " / " (totals.stations) } }
            div.card { div.k { (tr(lang, "fleet.card_power")) } div.v #total-power { (format!("{:.1}", totals.power_kw)) " kW" } }
            div.card { div.k { (tr(lang, "fleet.card_today")) } div.v #total-today { (format!("{:.1}", totals.today_kwh)) " kWh" } }
            div.card { div.k { (tr(lang, "fleet.card_installed")) } div.v { (format!("{:.0}", totals.capacity_kwp)) " kWp" } }
        }
        (filter_form(&state, &query, lang))
        @if rows.len() < visible {
            p.muted #filtered { (trf(lang, "fleet.filtered", &[("shown", &rows.len()), ("all", &visible)])) " "
                a href="/" { (tr(lang, "fleet.clear_filter")) } }
        }
        table #fleet data-api=(api) data-totals=(totals_api) {
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
    const [rows, totals] = await Promise.all([
      fetch(table.dataset.api).then(r => r.json()),
      fetch(table.dataset.totals).then(r => r.json()),
    ]);
    for (const r of rows) {
      const tr = document.querySelector(`tr[data-station="${CSS.escape(r.id)}"]`);
      if (!tr) continue;
      tr.querySelector('.power').textContent = r.power_kw.toFixed(1);
      tr.querySelector('.today').textContent = r.today_kwh.toFixed(1);
    }
    document.getElementById('producing').textContent = totals.producing + ' / ' + totals.stations;
    document.getElementById('total-power').textContent = totals.power_kw.toFixed(1) + ' kW';
    document.getElementById('total-today').textContent = totals.today_kwh.toFixed(1) + ' kWh';
    table.dataset.refreshed = new Date().toISOString();
  } catch (e) { /* the next tick tries again */ }
}
setInterval(refresh, 15000);
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration as StdDuration, Instant};

    fn snapshot(changes: u64, age: StdDuration, cost: StdDuration) -> FleetSnapshot {
        FleetSnapshot {
            changes,
            taken: Instant::now().checked_sub(age).expect("a past instant"),
            cost,
            rows: Vec::new(),
            by_name: Vec::new(),
            visible: std::sync::Mutex::default(),
        }
    }

    #[test]
    fn a_snapshot_serves_until_the_store_changes_or_the_clock_moves_on() {
        let quick = StdDuration::from_millis(2);
        // Unchanged and young: served; a write, or a second gone by: renewed.
        assert!(snapshot(7, StdDuration::ZERO, quick).serves(7));
        assert!(!snapshot(7, StdDuration::ZERO, quick).serves(8));
        assert!(!snapshot(7, StdDuration::from_millis(1_500), quick).serves(7));
        // A slow build is not renewed within five build-times, written to or not ...
        let slow = StdDuration::from_millis(400);
        assert!(snapshot(7, StdDuration::from_millis(1_500), slow).serves(8));
        assert!(snapshot(7, StdDuration::from_millis(1_500), slow).serves(7));
        // ... and is after.
        assert!(!snapshot(7, StdDuration::from_millis(2_100), slow).serves(8));
        assert!(!snapshot(7, StdDuration::from_millis(2_100), slow).serves(7));
    }
}
