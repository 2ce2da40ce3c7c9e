//! The fleet overview: every station with its status, current power and today's energy, as an HTML
//! page for operators and as JSON for the dashboards.

use super::guard::Caller;
use super::page::{esc, layout};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::domain::{Station, StationId};
use crate::solar;
use crate::store::{bucket_start, StationNow};
use axum::extract::State;
use axum::response::Html;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::HashMap;

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
    fn css(self) -> &'static str {
        match self {
            FleetStatus::Producing => "producing",
            FleetStatus::Sleeping => "sleeping",
            FleetStatus::Partial => "partial",
            FleetStatus::Offline | FleetStatus::NoData => "offline",
        }
    }
    fn label(self) -> &'static str {
        match self {
            FleetStatus::Producing => "producing 发电中",
            FleetStatus::Sleeping => "sleeping 夜间待机",
            FleetStatus::Partial => "partial 部分离线",
            FleetStatus::Offline => "offline 离线",
            FleetStatus::NoData => "no data 无数据",
        }
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
}

fn station_kind_schema() -> utoipa::openapi::Object {
    super::openapi::string_enum(
        &["village", "joint-village", "centralized"],
        "村级 village, 联村 joint-village or 集中式 centralized station",
    )
}

/// The stations the caller may see, with their state now.
async fn summaries(state: &AppState, caller: &Caller) -> Result<Vec<StationSummary>, ApiError> {
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
    Ok(state
        .deployment
        .stations
        .iter()
        .filter(|s| {
            state
                .geography
                .may_on_station(caller.who(), Action::ViewStation, s.id.as_str())
        })
        .map(|s| {
            let n = fleet.get(&s.id);
            let today = bucket_start(now, 86_400, s.timezone);
            StationSummary {
                id: s.id.to_string(),
                name: s.name.clone(),
                kind: s.kind.label(),
                county: s.county.to_string(),
                capacity_kwp: s.capacity_kwp,
                status: status_of(s, n, now),
                power_kw: n.map_or(0.0, |n| n.power_w / 1000.0),
                today_kwh: energy.get(&(s.id.clone(), today)).copied().unwrap_or(0.0) / 1000.0,
                devices: n.map_or(0, |n| n.devices),
                devices_reporting: n.map_or(0, |n| n.reporting),
                last_contact: n.and_then(|n| n.last_contact),
            }
        })
        .collect())
}

/// The stations the caller may see, with their status, power now and energy today.
#[utoipa::path(
    get,
    path = "/api/stations",
    tag = "fleet",
    responses(
        (status = 200, description = "Every station the caller may see, in deployment order", body = Vec<StationSummary>),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn fleet_json(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<StationSummary>>, ApiError> {
    Ok(Json(summaries(&state, &caller).await?))
}

async fn fleet_page(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    let rows = summaries(&state, &caller).await?;
    let total_kw: f64 = rows.iter().map(|r| r.power_kw).sum();
    let total_kwh: f64 = rows.iter().map(|r| r.today_kwh).sum();
    let capacity: f64 = rows.iter().map(|r| r.capacity_kwp).sum();
    let producing = rows
        .iter()
        .filter(|r| r.status == FleetStatus::Producing)
        .count();
    let mut body = String::from("<h1>Fleet 电站总览</h1>");
    if let Some(note) = backfill_note(&state) {
        body.push_str(&note);
    }
    body.push_str(&format!(
        "<div class=\"cards\">\
         <div class=\"card\"><div class=\"k\">Stations producing</div><div class=\"v\" id=\"producing\">{producing} / {n}</div></div>\
         <div class=\"card\"><div class=\"k\">Power now</div><div class=\"v\" id=\"total-power\">{total_kw:.1} kW</div></div>\
         <div class=\"card\"><div class=\"k\">Energy today</div><div class=\"v\" id=\"total-today\">{total_kwh:.1} kWh</div></div>\
         <div class=\"card\"><div class=\"k\">Installed</div><div class=\"v\">{capacity:.0} kWp</div></div></div>\
         <table id=\"fleet\"><thead><tr><th>Station</th><th>Kind</th><th>Status</th>\
         <th class=\"num\">Power kW</th><th class=\"num\">Today kWh</th><th class=\"num\">Capacity kWp</th>\
         <th class=\"num\">Devices</th><th>Last contact (UTC)</th></tr></thead><tbody>",
        n = rows.len()
    ));
    for r in &rows {
        body.push_str(&format!(
            "<tr data-station=\"{id}\"><td><a href=\"/stations/{id}\">{name}</a><div class=\"muted\">{id}</div></td>\
             <td>{kind}</td><td><span class=\"status {css}\">{label}</span></td>\
             <td class=\"num power\">{p:.1}</td><td class=\"num today\">{e:.1}</td><td class=\"num\">{c:.0}</td>\
             <td class=\"num\">{rep}/{dev}</td><td>{last}</td></tr>",
            id = esc(&r.id),
            name = esc(&r.name),
            kind = r.kind,
            css = r.status.css(),
            label = r.status.label(),
            p = r.power_kw,
            e = r.today_kwh,
            c = r.capacity_kwp,
            rep = r.devices_reporting,
            dev = r.devices,
            last = r
                .last_contact
                .map_or_else(|| "never".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        ));
    }
    body.push_str("</tbody></table><p class=\"muted\">Refreshes every 15 s.</p>");
    body.push_str(&super::alerts::open_alerts_box(&state, &caller).await);
    body.push_str(REFRESH_SCRIPT);
    Ok(Html(layout("Fleet", &body, &caller)))
}

/// While the demo's history is still being written, say so: figures for past days are incomplete.
fn backfill_note(state: &AppState) -> Option<String> {
    let p = state.backfill.as_ref()?;
    if p.settled() {
        return None;
    }
    Some(format!(
        "<p class=\"note\" id=\"backfill\">Demo: writing a year of simulated history ({:.0}% of devices \
         queued); daily and monthly figures fill in as it lands, then the grid settlement is imported.</p>",
        p.fraction() * 100.0
    ))
}

/// Live values without a page reload: fetches the JSON and updates the cells in place.
const REFRESH_SCRIPT: &str = r#"<script>
async function refresh() {
  try {
    const rows = await (await fetch('/api/stations')).json();
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
    document.getElementById('fleet').dataset.refreshed = new Date().toISOString();
  } catch (e) { /* the next tick tries again */ }
}
setInterval(refresh, 15000);
</script>"#;
