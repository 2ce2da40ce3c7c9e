//! The station page (`/stations/{id}`), the energy JSON API and settlement upload.
//!
//! Every energy figure travels with its completeness and notes, and every month says whether it
//! is settled or provisional.

use super::extract::{Path, Query};
use super::guard::Caller;
use super::page::{esc, layout};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::domain::{EnergyBasis, Station, WattHours, YearMonth};
use crate::energy::counters::{Completeness, Note};
use crate::energy::report::{self, DayRow, MonthRow};
use crate::energy::settlement::{self, ImportError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Datelike as _, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::ops::Add as _;

pub fn routes() -> Routes {
    let station = Access::station(Action::ViewStation, "id");
    Routes::new()
        .get("/stations/{id}", station, station_page)
        .heavy()
        .get("/api/stations/{id}/energy", station, energy_json)
        .heavy()
        .get("/api/stations/{id}/months", station, months_json)
        .heavy()
        .post(
            "/api/settlements",
            Access::fleet(Action::ImportSettlement),
            upload_settlement,
        )
        .upload(super::MAX_UPLOAD)
}

/// The longest range one request may ask for.
const MAX_DAYS: i64 = 400;
const MAX_MONTHS: i64 = 36;

fn station<'a>(state: &'a AppState, id: &str) -> Result<&'a Station, ApiError> {
    state
        .deployment
        .station(id)
        .ok_or_else(|| ApiError::NotFound(format!("station '{id}'")))
}

fn today(station: &Station, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&station.timezone).date_naive()
}

fn internal(e: crate::energy::Error) -> ApiError {
    match e {
        crate::energy::Error::UnknownStation(s) => ApiError::NotFound(format!("station '{s}'")),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Daylight readings received against those expected from sunrise, sunset and the poll interval.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Completeness)]
struct CompletenessJson {
    expected_readings: i64,
    received_readings: i64,
    /// received / expected; `null` when nothing was expected (no daylight).
    ratio: Option<f64>,
}

impl From<Completeness> for CompletenessJson {
    fn from(c: Completeness) -> Self {
        CompletenessJson {
            expected_readings: c.expected,
            received_readings: c.received,
            ratio: c.ratio(),
        }
    }
}

/// One device's share of a station day.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DeviceDay)]
struct DeviceDayJson {
    device: String,
    energy_wh: i64,
    #[schema(schema_with = notes_schema)]
    notes: Vec<&'static str>,
}

/// One local calendar day of a station, from the inverters' lifetime counters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StationDay)]
struct DayJson {
    day: NaiveDate,
    energy_wh: i64,
    energy_kwh: f64,
    completeness: CompletenessJson,
    specific_yield_kwh_per_kwp: Option<f64>,
    full_load_hours: Option<f64>,
    availability: Option<f64>,
    /// The station's specific yield against the median of its county's stations that day.
    performance_index: Option<f64>,
    #[schema(schema_with = notes_schema)]
    notes: Vec<&'static str>,
    devices: Vec<DeviceDayJson>,
}

/// What happened to a counter on the way to a figure.
fn notes_schema() -> utoipa::openapi::Array {
    utoipa::openapi::Array::new(super::openapi::string_enum(
        &[
            "bridged",
            "counter_reset",
            "rollover",
            "spike_excluded",
            "step_back",
            "daily_register",
            "no_data",
        ],
        "what a figure rests on beyond plain counter differences",
    ))
}

fn notes(n: &std::collections::BTreeSet<Note>) -> Vec<&'static str> {
    n.iter().map(|n| n.as_str()).collect()
}

impl From<&DayRow> for DayJson {
    fn from(d: &DayRow) -> Self {
        DayJson {
            day: d.day,
            energy_wh: d.figures.energy.0,
            energy_kwh: d.figures.energy.kwh(),
            completeness: d.figures.completeness.into(),
            specific_yield_kwh_per_kwp: d.specific_yield,
            full_load_hours: d.full_load_hours,
            availability: d.availability,
            performance_index: d.performance_index,
            notes: notes(&d.figures.notes),
            devices: d
                .figures
                .devices
                .iter()
                .map(|x| DeviceDayJson {
                    device: x.device.to_string(),
                    energy_wh: x.energy.0,
                    notes: notes(&x.notes),
                })
                .collect(),
        }
    }
}

/// A likely reason metered and settled energy differ.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ReconciliationCause)]
struct CauseJson {
    code: &'static str,
    explanation: String,
}

/// Metered against settled energy for a month with a settlement.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Reconciliation)]
struct ReconciliationJson {
    metered_wh: i64,
    settled_wh: i64,
    difference_pct: Option<f64>,
    /// The difference is above the deployment's threshold.
    flagged: bool,
    causes: Vec<CauseJson>,
}

/// One calendar month of a station: settled when the grid company's statement is imported,
/// provisional (metered) until then.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StationMonth)]
struct MonthJson {
    #[schema(value_type = String, pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-03")]
    month: YearMonth,
    /// The figure income is computed on.
    energy_wh: i64,
    energy_kwh: f64,
    #[schema(schema_with = basis_schema)]
    basis: EnergyBasis,
    provisional: bool,
    metered_wh: i64,
    settled_wh: Option<i64>,
    /// Yuan with two decimals, as a string.
    settled_amount_yuan: Option<String>,
    /// `file:line` of the imported statement line.
    settlement_source: Option<String>,
    completeness: CompletenessJson,
    specific_yield_kwh_per_kwp: Option<f64>,
    full_load_hours: Option<f64>,
    availability: Option<f64>,
    #[schema(schema_with = notes_schema)]
    notes: Vec<&'static str>,
    reconciliation: Option<ReconciliationJson>,
}

fn basis_schema() -> utoipa::openapi::Object {
    super::openapi::string_enum(
        &["settled", "metered"],
        "settled: the grid company's figure; metered: Sunshare's own, provisional",
    )
}

impl From<&MonthRow> for MonthJson {
    fn from(m: &MonthRow) -> Self {
        MonthJson {
            month: m.month,
            energy_wh: m.energy.0,
            energy_kwh: m.energy.kwh(),
            basis: m.basis,
            provisional: m.basis.is_provisional(),
            metered_wh: m.metered.energy.0,
            settled_wh: m.settlement.as_ref().map(|s| s.energy.0),
            settled_amount_yuan: m
                .settlement
                .as_ref()
                .and_then(|s| s.amount)
                .map(|a| a.to_string()),
            settlement_source: m
                .settlement
                .as_ref()
                .map(|s| format!("{}:{}", s.source, s.source_line)),
            completeness: m.metered.completeness.into(),
            specific_yield_kwh_per_kwp: m.specific_yield,
            full_load_hours: m.full_load_hours,
            availability: m.availability,
            notes: notes(&m.metered.notes),
            reconciliation: m.reconciliation.as_ref().map(|r| ReconciliationJson {
                metered_wh: r.metered.0,
                settled_wh: r.settled.0,
                difference_pct: r.difference_pct,
                flagged: r.flagged,
                causes: r
                    .causes
                    .iter()
                    .map(|c| CauseJson {
                        code: c.code(),
                        explanation: c.explain(),
                    })
                    .collect(),
            }),
        }
    }
}

/// A range of days, both ends included, at most 400 days.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DayRange {
    /// First day, `YYYY-MM-DD` (1900 to 9999); 29 days before `to` when absent.
    #[param(format = Date, example = "2026-03-01")]
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (1900 to 9999); today in the station's time zone when absent.
    #[param(format = Date, example = "2026-03-31")]
    to: Option<String>,
}

/// A day between 1900 and 9999, like months: far enough from chrono's limits that range arithmetic
/// cannot overflow.
fn parse_day(text: &str, what: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|d| (1900..=9999).contains(&d.year()))
        .ok_or_else(|| {
            ApiError::invalid(
                what,
                format!("'{text}' is not a date between 1900 and 9999 (write it as YYYY-MM-DD)"),
            )
        })
}

/// Daily energy of a station with completeness, KPIs and notes.
#[utoipa::path(
    get,
    path = "/api/stations/{id}/energy",
    tag = "energy",
    params(("id" = String, Path, description = "Station id"), DayRange),
    responses(
        (status = 200, description = "One entry per day, oldest first", body = Vec<DayJson>),
        (status = 400, description = "A date is malformed, or the range is reversed or too long", body = super::openapi::ErrorBody),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn energy_json(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DayRange>,
) -> Result<Json<Vec<DayJson>>, ApiError> {
    let s = station(&state, &id)?;
    let now = Utc::now();
    let to = match &q.to {
        Some(t) => parse_day(t, "to")?,
        None => today(s, now),
    };
    let from = match &q.from {
        Some(f) => parse_day(f, "from")?,
        None => to - Duration::days(29),
    };
    if from > to || (to - from).num_days() >= MAX_DAYS {
        return Err(ApiError::invalid(
            "from",
            format!("must not be after to, and a range is at most {MAX_DAYS} days"),
        ));
    }
    let days = report::days(&state.store, &state.deployment, s, from, to, now)
        .await
        .map_err(internal)?;
    Ok(Json(days.iter().map(DayJson::from).collect()))
}

/// A range of months, both ends included, at most 36 months.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MonthRange {
    /// First month, `YYYY-MM` (1900 to 9999); 11 months before `to` when absent.
    #[param(
        pattern = r"^(19|[2-9][0-9])[0-9]{2}-(0?[1-9]|1[0-2])$",
        example = "2026-01"
    )]
    from: Option<String>,
    /// Last month, `YYYY-MM` (1900 to 9999); this month in the station's time zone when absent.
    #[param(
        pattern = r"^(19|[2-9][0-9])[0-9]{2}-(0?[1-9]|1[0-2])$",
        example = "2026-03"
    )]
    to: Option<String>,
}

/// Monthly energy of a station: settled or provisional, with reconciliation.
#[utoipa::path(
    get,
    path = "/api/stations/{id}/months",
    tag = "energy",
    params(("id" = String, Path, description = "Station id"), MonthRange),
    responses(
        (status = 200, description = "One entry per month, oldest first", body = Vec<MonthJson>),
        (status = 400, description = "A month is malformed, or the range is reversed or too long", body = super::openapi::ErrorBody),
        (status = 404, description = "No such station", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn months_json(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<MonthRange>,
) -> Result<Json<Vec<MonthJson>>, ApiError> {
    let s = station(&state, &id)?;
    let now = Utc::now();
    let parse = |t: &str, field: &str| -> Result<YearMonth, ApiError> {
        t.parse()
            .map_err(|e: crate::domain::BadMonth| ApiError::invalid(field, e.to_string()))
    };
    let to = match &q.to {
        Some(t) => parse(t, "to")?,
        None => YearMonth::of(today(s, now)),
    };
    let from = match &q.from {
        Some(f) => parse(f, "from")?,
        None => back(to, 11),
    };
    let span =
        i64::from(to.year() - from.year()) * 12 + i64::from(to.month()) - i64::from(from.month());
    if !(0..MAX_MONTHS).contains(&span) {
        return Err(ApiError::invalid(
            "from",
            format!("must not be after to, and a range is at most {MAX_MONTHS} months"),
        ));
    }
    let months = report::months(&state.store, &state.deployment, s, from, to, now)
        .await
        .map_err(internal)?;
    Ok(Json(months.iter().map(MonthJson::from).collect()))
}

fn back(mut m: YearMonth, n: u32) -> YearMonth {
    for _ in 0..n {
        m = m.prev();
    }
    m
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadName {
    /// The file name, for error messages and the record of where a figure came from.
    #[param(example = "statement-2026-03.csv")]
    name: Option<String>,
}

/// One statement line that was stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ImportedSettlementLine)]
struct ImportedLineJson {
    line: usize,
    station: String,
    #[schema(value_type = String, pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-03")]
    month: YearMonth,
    energy_wh: i64,
    /// Yuan with two decimals, as a string; `null` when the statement has no amount.
    amount_yuan: Option<String>,
    /// What Sunshare computes for `energy_wh` at the station's tariff (yuan, two decimals).
    computed_amount_yuan: String,
}

/// A line whose settled amount differs from energy × tariff by more than one fen. It was
/// imported all the same: the statement is what the grid company paid.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementAmountWarning)]
struct AmountWarningJson {
    line: usize,
    station: String,
    #[schema(value_type = String, pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-03")]
    month: YearMonth,
    energy_wh: i64,
    /// The station's tariff in yuan/kWh, four decimals.
    tariff_yuan_per_kwh: String,
    settled_yuan: String,
    computed_yuan: String,
    /// settled − computed, in yuan.
    difference_yuan: String,
    message: String,
}

/// A grid settlement statement that was imported whole.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementImported)]
struct ImportedJson {
    /// The import's id: files of the same name are told apart by it and by `sha256`.
    import_id: i64,
    source: String,
    /// SHA-256 of the uploaded bytes, lowercase hex.
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    sha256: String,
    size_bytes: usize,
    uploaded: DateTime<Utc>,
    /// How the file was read (for example `utf-8`, `gbk`, `xlsx`).
    encoding: &'static str,
    imported: usize,
    lines: Vec<ImportedLineJson>,
    /// Settled amounts more than one fen away from energy × tariff; empty when all agree.
    warnings: Vec<AmountWarningJson>,
}

/// An earlier import of a settlement file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementImport)]
struct ImportRecordJson {
    id: i64,
    /// The file name it was uploaded under.
    source: String,
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    sha256: String,
    size_bytes: i64,
    encoding: String,
    /// Statement lines stored from it.
    lines: i64,
    uploaded: DateTime<Utc>,
}

/// The same bytes were imported before: nothing was stored again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementDuplicate)]
struct DuplicateJson {
    /// Always `duplicate`.
    error: &'static str,
    message: String,
    /// The import that stored these bytes.
    import: ImportRecordJson,
}

/// What is wrong with one line of a refused statement.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementProblem)]
struct ProblemJson {
    line: usize,
    message: String,
}

/// A statement refused whole: nothing of it was stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementRejected)]
struct RejectedJson {
    /// Always `unprocessable`.
    error: &'static str,
    message: String,
    problems: Vec<ProblemJson>,
}

/// Imports a grid company's settlement statement: every line or none.
///
/// `POST /api/settlements?name=statement.csv` with the file as the body (CSV or XLSX). Each import is
/// recorded with the SHA-256 of the bytes and the upload time, so files that share a name (every
/// month's 结算单.csv) are told apart, and the same bytes uploaded again are answered `409`.
#[utoipa::path(
    post,
    path = "/api/settlements",
    tag = "energy",
    params(UploadName),
    request_body(
        description = "The statement file as it came: CSV (UTF-8 or GBK) or XLSX",
        content(
            (String = "text/csv"),
            // Any bytes: in OpenAPI 3.1 a binary body has no schema.
            ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            ("application/octet-stream"),
        )
    ),
    responses(
        (status = 201, description = "Every line was stored; `warnings` lists settled amounts more than one fen away from energy × tariff", body = ImportedJson),
        (status = 400, description = "The query is malformed", body = super::openapi::ErrorBody),
        (status = 409, description = "The same bytes were imported before (by SHA-256): nothing stored again", body = DuplicateJson),
        (status = 422, description = "The statement was refused whole, with line numbers", body = RejectedJson),
        (status = 500, description = "The store could not be written", body = super::openapi::ErrorBody),
    )
)]
async fn upload_settlement(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UploadName>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let name = q.name.unwrap_or_else(|| "upload".to_owned());
    let allowed = |s: &crate::domain::StationId| {
        state
            .geography
            .may_on_station(caller.who(), Action::ImportSettlement, s.as_str())
    };
    let imported = settlement::import_within(
        &state.store,
        &state.deployment,
        &body,
        &name,
        Utc::now(),
        allowed,
    )
    .await;
    match imported {
        Ok(report) => {
            let json = ImportedJson {
                import_id: report.import_id,
                source: report.source.clone(),
                sha256: report.sha256.clone(),
                size_bytes: report.size_bytes,
                uploaded: report.uploaded,
                encoding: report.encoding,
                imported: report.lines.len(),
                lines: report
                    .lines
                    .iter()
                    .map(|l| ImportedLineJson {
                        line: l.line,
                        station: l.station.to_string(),
                        month: l.month,
                        energy_wh: l.energy.0,
                        amount_yuan: l.amount.map(|a| a.to_string()),
                        computed_amount_yuan: l.computed.to_string(),
                    })
                    .collect(),
                warnings: report
                    .warnings
                    .iter()
                    .map(|w| AmountWarningJson {
                        line: w.line,
                        station: w.station.to_string(),
                        month: w.month,
                        energy_wh: w.energy.0,
                        tariff_yuan_per_kwh: w.tariff.to_string(),
                        settled_yuan: w.settled.to_string(),
                        computed_yuan: w.computed.to_string(),
                        difference_yuan: w.difference.to_string(),
                        message: w.to_string(),
                    })
                    .collect(),
            };
            Ok((StatusCode::CREATED, Json(json)).into_response())
        }
        Err(ImportError::Rejected(r)) => {
            let json = RejectedJson {
                error: "unprocessable",
                message: r.to_string(),
                problems: r
                    .problems
                    .iter()
                    .map(|p| ProblemJson {
                        line: p.line,
                        message: p.message.clone(),
                    })
                    .collect(),
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json)).into_response())
        }
        Err(ImportError::Duplicate(d)) => {
            let e = &d.earlier;
            let json = DuplicateJson {
                error: "duplicate",
                message: d.to_string(),
                import: ImportRecordJson {
                    id: e.id,
                    source: e.source.clone(),
                    sha256: e.sha256.clone(),
                    size_bytes: e.size_bytes,
                    encoding: e.encoding.clone(),
                    lines: e.lines,
                    uploaded: e.uploaded,
                },
            };
            Ok((StatusCode::CONFLICT, Json(json)).into_response())
        }
        Err(ImportError::Store(e)) => Err(e.into()),
    }
}

fn kwh(e: WattHours) -> String {
    format!("{:.1}", e.kwh())
}

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// A completeness cell, coloured when data is missing.
fn completeness_cell(c: Completeness) -> String {
    let css = match c.ratio() {
        Some(r) if r < 0.8 => "status offline",
        Some(r) if r < 0.95 => "status partial",
        _ => "",
    };
    format!(
        "<td class=\"num\"><span class=\"{css}\" title=\"{} of {} expected daylight readings\">{}</span></td>",
        c.received,
        c.expected,
        pct(c.ratio())
    )
}

fn notes_cell(n: &std::collections::BTreeSet<Note>) -> String {
    let parts: Vec<String> = n
        .iter()
        .map(|n| {
            format!(
                "<span class=\"status partial\" title=\"{}\">{}</span>",
                esc(n.explain()),
                n.as_str()
            )
        })
        .collect();
    format!("<td>{}</td>", parts.join(" "))
}

async fn station_page(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let s = station(&state, &id)?;
    let now = Utc::now();
    let last_day = today(s, now);
    let first_day = last_day - Duration::days(29);
    let this_month = YearMonth::of(last_day);
    let days = report::days(&state.store, &state.deployment, s, first_day, last_day, now)
        .await
        .map_err(internal)?;
    let months = report::months(
        &state.store,
        &state.deployment,
        s,
        back(this_month, 11),
        this_month,
        now,
    )
    .await
    .map_err(internal)?;
    let latest = state.store.latest().await?;

    let mut body = format!(
        "<h1>{name} <span class=\"muted\">{id}</span></h1>\
         <p class=\"muted\">{kind} station · county {county} · {cap:.1} kWp · commissioned {comm} · {tz}</p>",
        name = esc(&s.name),
        id = esc(s.id.as_str()),
        kind = s.kind.label(),
        county = esc(s.county.as_str()),
        cap = s.capacity_kwp,
        comm = s.commissioned,
        tz = s.timezone.name(),
    );
    let total_30: WattHours = days.iter().map(|d| d.figures.energy).sum();
    let c30 = days.iter().fold(Completeness::default(), |a, d| {
        a.add(d.figures.completeness)
    });
    let today_row = days.last();
    let settled = months.iter().filter(|m| m.settlement.is_some()).count();
    let flagged = months
        .iter()
        .filter(|m| m.reconciliation.as_ref().is_some_and(|r| r.flagged))
        .count();
    body.push_str(&format!(
        "<div class=\"cards\">\
         <div class=\"card\"><div class=\"k\">Today (metered)</div><div class=\"v\" id=\"today\">{today} kWh</div></div>\
         <div class=\"card\"><div class=\"k\">Last 30 days</div><div class=\"v\">{total} kWh</div></div>\
         <div class=\"card\"><div class=\"k\">Data completeness, 30 days</div><div class=\"v\">{c}</div></div>\
         <div class=\"card\"><div class=\"k\">Months settled (of 12)</div><div class=\"v\">{settled}</div></div>\
         <div class=\"card\"><div class=\"k\">Reconciliation flags</div><div class=\"v\" id=\"flags\">{flagged}</div></div></div>",
        today = today_row.map_or_else(|| "–".to_owned(), |d| kwh(d.figures.energy)),
        total = kwh(total_30),
        c = pct(c30.ratio()),
    ));

    // Devices now.
    body.push_str(
        "<h2>Devices 设备</h2><table id=\"devices\"><thead><tr><th>Device</th><th>Kind</th><th>Model</th>\
         <th class=\"num\">Rated kW</th><th class=\"num\">Power kW</th><th class=\"num\">Lifetime kWh</th>\
         <th>State</th><th>Last reading (UTC)</th></tr></thead><tbody>",
    );
    for dev in state
        .deployment
        .devices
        .iter()
        .filter(|d| d.station == s.id)
    {
        let l = latest.iter().find(|l| l.device == dev.id);
        body.push_str(&format!(
            "<tr><td>{id}</td><td>{kind}</td><td>{model}</td><td class=\"num\">{rated:.1}</td>\
             <td class=\"num\">{p}</td><td class=\"num\">{e}</td><td>{st}</td><td>{at}</td></tr>",
            id = esc(dev.id.as_str()),
            kind = format!("{:?}", dev.kind).to_lowercase(),
            model = esc(&dev.model),
            rated = dev.rated_power_w / 1000.0,
            p = num(l.and_then(|l| l.ac_power_w).map(|w| w / 1000.0), 2),
            e = num(l.and_then(|l| l.energy_lifetime_wh).map(|w| w / 1000.0), 1),
            st = esc(l.and_then(|l| l.state.as_deref()).unwrap_or("–")),
            at = l.map_or_else(
                || "never".to_owned(),
                |l| l.at.format("%Y-%m-%d %H:%M:%S").to_string()
            ),
        ));
    }
    body.push_str("</tbody></table>");

    // Months.
    body.push_str(
        "<h2>Monthly energy 月度上网电量</h2>\
         <p class=\"muted\">A month is <b>provisional</b> (metered by Sunshare) until the grid company's settlement \
         is imported; after that the <b>settled</b> figure is the one income is computed on.</p>\
         <table id=\"months\"><thead><tr><th>Month</th><th class=\"num\">Energy kWh</th><th>Basis</th>\
         <th class=\"num\">Metered kWh</th><th class=\"num\">Settled kWh</th><th class=\"num\">Difference</th>\
         <th class=\"num\">Completeness</th><th class=\"num\">kWh/kWp</th><th class=\"num\">Full-load h</th>\
         <th class=\"num\">Availability</th><th>Reconciliation</th></tr></thead><tbody>",
    );
    for m in months.iter().rev() {
        let basis = match m.basis {
            EnergyBasis::Settled => "<span class=\"status producing\">settled 已结算</span>",
            EnergyBasis::Metered => "<span class=\"status partial\">provisional 暂估</span>",
        };
        let (diff, flag) = match &m.reconciliation {
            Some(r) => (
                r.difference_pct
                    .map_or_else(|| "–".to_owned(), |p| format!("{p:+.1}%")),
                if r.flagged {
                    "<span class=\"status offline\">flagged</span>".to_owned()
                } else {
                    "<span class=\"status producing\">ok</span>".to_owned()
                },
            ),
            None => ("–".to_owned(), String::new()),
        };
        body.push_str(&format!(
            "<tr data-month=\"{month}\"><td>{month}</td><td class=\"num\">{e}</td><td>{basis}</td>\
             <td class=\"num\">{metered}</td><td class=\"num\">{settled}</td><td class=\"num\">{diff}</td>{c}\
             <td class=\"num\">{y}</td><td class=\"num\">{h}</td><td class=\"num\">{a}</td><td>{flag}</td></tr>",
            month = m.month,
            e = kwh(m.energy),
            metered = kwh(m.metered.energy),
            settled = m.settlement.as_ref().map_or_else(|| "–".to_owned(), |s| kwh(s.energy)),
            c = completeness_cell(m.metered.completeness),
            y = num(m.specific_yield, 1),
            h = num(m.full_load_hours, 1),
            a = pct(m.availability),
        ));
    }
    body.push_str("</tbody></table>");
    let flagged_rows: Vec<&MonthRow> = months
        .iter()
        .filter(|m| m.reconciliation.as_ref().is_some_and(|r| r.flagged))
        .collect();
    if !flagged_rows.is_empty() {
        body.push_str(&format!(
            "<h2>Reconciliation flags 对账差异</h2><p class=\"muted\">Metered and settled energy differ by more than {:.1}%.</p>",
            state.deployment.energy.reconcile_threshold_pct
        ));
        for m in flagged_rows {
            if let Some(r) = &m.reconciliation {
                body.push_str(&format!(
                    "<div class=\"note reconciliation\" data-month=\"{}\"><b>{}</b>: metered {} kWh, settled {} kWh ({}).<ul>",
                    m.month,
                    m.month,
                    kwh(r.metered),
                    kwh(r.settled),
                    r.difference_pct.map_or_else(|| "–".to_owned(), |p| format!("{p:+.1}%")),
                ));
                for c in &r.causes {
                    body.push_str(&format!("<li>{}</li>", esc(&c.explain())));
                }
                body.push_str("</ul></div>");
            }
        }
    }

    // Days.
    body.push_str(
        "<h2>Daily energy 日发电量 (last 30 days)</h2>\
         <table id=\"days\"><thead><tr><th>Day</th><th class=\"num\">kWh</th><th class=\"num\">kWh/kWp</th>\
         <th class=\"num\">Full-load h</th><th class=\"num\">Completeness</th><th class=\"num\">Availability</th>\
         <th class=\"num\">Performance index</th><th>Notes</th></tr></thead><tbody>",
    );
    for d in days.iter().rev() {
        body.push_str(&format!(
            "<tr data-day=\"{day}\"><td>{day}</td><td class=\"num\">{e}</td><td class=\"num\">{y}</td>\
             <td class=\"num\">{h}</td>{c}<td class=\"num\">{a}</td><td class=\"num\">{pi}</td>{n}</tr>",
            day = d.day,
            e = kwh(d.figures.energy),
            y = num(d.specific_yield, 2),
            h = num(d.full_load_hours, 2),
            c = completeness_cell(d.figures.completeness),
            a = pct(d.availability),
            pi = num(d.performance_index, 2),
            n = notes_cell(&d.figures.notes),
        ));
    }
    body.push_str(
        "</tbody></table><p class=\"muted\">Energy comes from the inverters' lifetime counters, interpolated at local \
         midnight. Completeness is daylight readings received against those expected from sunrise, sunset and the \
         poll interval. The performance index compares the station's specific yield with the median of its \
         county's stations that day (1.00 = as good as its neighbours). Hover a note for its meaning.</p>",
    );
    Ok(Html(layout(&format!("{} energy", s.name), &body, &caller)))
}

#[cfg(test)]
mod tests;
