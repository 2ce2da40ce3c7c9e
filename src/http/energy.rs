//! The station page (`/stations/{id}`), the energy JSON API and settlement upload.
//!
//! Every energy figure travels with its completeness and notes, and every month says whether it
//! is settled or provisional.

use super::extract::{Path, Query};
use super::guard::Caller;
use super::i18n::{tr, trf, Lang};
use super::page::{frame, local_time};
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
use maud::{html, Markup};
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
        None => crate::energy::daily::months_back(to, 11),
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
fn completeness_cell(lang: Lang, c: Completeness) -> Markup {
    let css = match c.ratio() {
        Some(r) if r < 0.8 => Some("status offline"),
        Some(r) if r < 0.95 => Some("status partial"),
        _ => None,
    };
    let title = trf(
        lang,
        "station.completeness_title",
        &[("received", &c.received), ("expected", &c.expected)],
    );
    html! { td.num { span class=[css] title=(title) { (pct(c.ratio())) } } }
}

fn notes_cell(lang: Lang, n: &std::collections::BTreeSet<Note>) -> Markup {
    html! {
        td { @for (i, note) in n.iter().enumerate() {
            @if i > 0 { " " }
            span.status.partial data-note=(note.as_str()) title=(tr(lang, &format!("station.note_{}_explain", note.as_str()))) {
                (tr(lang, &format!("station.note_{}", note.as_str())))
            }
        } }
    }
}

/// A reconciliation cause as a sentence in the page's language.
fn cause_text(lang: Lang, cause: &crate::energy::reconcile::Cause, tz: chrono_tz::Tz) -> String {
    use crate::energy::reconcile::Cause;
    match cause {
        Cause::NoReadings => tr(lang, "station.cause_no_readings"),
        Cause::DataGap { completeness } => trf(
            lang,
            "station.cause_data_gap",
            &[("percent", &format!("{:.1}", completeness * 100.0))],
        ),
        Cause::MeterReplaced { resets } => {
            let list: Vec<String> = resets
                .iter()
                .map(|(d, t)| format!("{d} {}", local_time(*t, tz)))
                .collect();
            trf(
                lang,
                "station.cause_meter_replaced",
                &[("resets", &list.join(", "))],
            )
        }
        Cause::Curtailment {
            derated_readings,
            clipped_hours,
        } => trf(
            lang,
            "station.cause_curtailment",
            &[("derated", derated_readings), ("clipped", clipped_hours)],
        ),
        Cause::Unexplained {
            metered_above: true,
        } => tr(lang, "station.cause_unexplained_metered_above"),
        Cause::Unexplained {
            metered_above: false,
        } => tr(lang, "station.cause_unexplained_settled_above"),
    }
}

fn card(label: &str, id: Option<&str>, value: &str) -> Markup {
    html! { div.card { div.k { (label) } div.v id=[id] { (value) } } }
}

async fn station_page(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let lang = caller.lang;
    let s = station(&state, &id)?;
    let now = Utc::now();
    let (first_day, last_day) = super::county::page_span(s, now);
    let this_month = YearMonth::of(last_day);
    // The closed months and the recent days as the store keeps them (computed again only where
    // new data came since), today live.
    let first_month = crate::energy::daily::months_back(this_month, 11);
    let (month_figures, recent) = crate::energy::daily::year(
        &state.store,
        &state.deployment,
        s,
        first_month,
        first_day,
        last_day,
        now,
    )
    .await
    .map_err(internal)?;
    let county = super::county::yields(&state, s, first_day, last_day)
        .await
        .map_err(internal)?;
    let days = report::days_against(s, recent, &county);
    let months = report::months_of(&state.store, &state.deployment, s, month_figures)
        .await
        .map_err(internal)?;
    let own: Vec<&crate::domain::DeviceId> = state
        .deployment
        .devices
        .iter()
        .filter(|d| d.station == s.id)
        .map(|d| &d.id)
        .collect();
    let latest = state.store.latest_of(&own).await?;
    let power =
        super::charts::station_power_series(&state.store, s, &state.deployment.devices, last_day)
            .await?;
    let day_bars: Vec<(NaiveDate, f64, bool)> = days
        .iter()
        .map(|d| {
            let complete = d.figures.completeness.ratio().is_some_and(|r| r >= 0.95);
            (d.day, d.figures.energy.kwh(), complete)
        })
        .collect();
    let month_bars: Vec<(YearMonth, f64, Option<f64>)> = months
        .iter()
        .map(|m| {
            (
                m.month,
                m.metered.energy.kwh(),
                m.settlement.as_ref().map(|x| x.energy.kwh()),
            )
        })
        .collect();

    let total_30: WattHours = days.iter().map(|d| d.figures.energy).sum();
    let c30 = days.iter().fold(Completeness::default(), |a, d| {
        a.add(d.figures.completeness)
    });
    let today_row = days.last();
    let settled = months.iter().filter(|m| m.settlement.is_some()).count();
    let flagged: Vec<&MonthRow> = months
        .iter()
        .filter(|m| m.reconciliation.as_ref().is_some_and(|r| r.flagged))
        .collect();
    let county = state
        .deployment
        .counties
        .iter()
        .find(|c| c.id == s.county)
        .map_or_else(|| s.county.to_string(), |c| c.name.clone());
    let devices = state
        .deployment
        .devices
        .iter()
        .filter(|d| d.station == s.id);
    let today_kwh = today_row.map_or_else(|| "–".to_owned(), |d| kwh(d.figures.energy));

    let body = html! {
        h1 { (s.name) " " span.muted { (s.id) } }
        p.muted #station-facts {
            (super::fleet::kind_label(lang, s.kind)) " · " (county) " · "
            (format!("{:.1}", s.capacity_kwp)) " kWp · "
            (trf(lang, "station.commissioned", &[("date", &s.commissioned)])) " · " (s.timezone.name())
        }
        div.cards {
            (card(&tr(lang, "station.card_today"), Some("today"), &format!("{today_kwh} kWh")))
            (card(&tr(lang, "station.card_30_days"), None, &format!("{} kWh", kwh(total_30))))
            (card(&tr(lang, "station.card_completeness"), None, &pct(c30.ratio())))
            (card(&tr(lang, "station.card_settled"), None, &settled.to_string()))
            (card(&tr(lang, "station.card_flags"), Some("flags"), &flagged.len().to_string()))
        }

        section #charts {
            (super::charts::power_today(lang, s, last_day, &power))
            (super::charts::daily_energy(lang, &s.name, &day_bars))
            (super::charts::settled_vs_metered(lang, &s.name, &month_bars))
        }

        h2 { (tr(lang, "station.devices")) }
        table #devices {
            thead { tr {
                th { (tr(lang, "station.col_device")) } th { (tr(lang, "station.col_device_kind")) }
                th { (tr(lang, "station.col_model")) } th.num { (tr(lang, "station.col_rated")) }
                th.num { (tr(lang, "fleet.col_power")) } th.num { (tr(lang, "station.col_lifetime")) }
                th { (tr(lang, "station.col_state")) } th { (tr(lang, "station.col_last_reading")) }
            } }
            tbody { @for dev in devices {
                @let l = latest.iter().find(|l| l.device == dev.id);
                tr {
                    td { (dev.id) }
                    td { (match dev.kind {
                        crate::domain::DeviceKind::Inverter => tr(lang, "station.kind_inverter"),
                        crate::domain::DeviceKind::Meter => tr(lang, "station.kind_meter"),
                    }) }
                    td { (dev.model) }
                    td.num { (format!("{:.1}", dev.rated_power_w / 1000.0)) }
                    td.num { (num(l.and_then(|l| l.ac_power_w).map(|w| w / 1000.0), 2)) }
                    td.num { (num(l.and_then(|l| l.energy_lifetime_wh).map(|w| w / 1000.0), 1)) }
                    td { @match l.and_then(|l| l.state.as_deref()) {
                        Some(code) => span data-state=(code) {
                            (tr(lang, &format!("station.state_{}", crate::domain::DeviceState::parse(code).as_str())))
                        },
                        None => "–",
                    } }
                    td { @match l { Some(l) => (local_time(l.at, s.timezone)), None => (tr(lang, "fleet.never")) } }
                }
            } }
        }

        h2 { (tr(lang, "station.months")) }
        p.muted { (tr(lang, "station.months_note")) }
        table #months {
            thead { tr {
                th { (tr(lang, "station.col_month")) } th.num { (tr(lang, "station.col_energy")) }
                th { (tr(lang, "station.col_basis")) } th.num { (tr(lang, "station.col_metered")) }
                th.num { (tr(lang, "station.col_settled")) } th.num { (tr(lang, "station.col_difference")) }
                th.num { (tr(lang, "station.col_completeness")) } th.num { "kWh/kWp" }
                th.num { (tr(lang, "station.col_full_load")) } th.num { (tr(lang, "station.col_availability")) }
                th { (tr(lang, "station.col_reconciliation")) }
            } }
            tbody { @for m in months.iter().rev() {
                tr data-month=(m.month) {
                    td { (m.month) }
                    td.num { (kwh(m.energy)) }
                    td { @match m.basis {
                        EnergyBasis::Settled => span.status.producing data-basis="settled" { (tr(lang, "station.settled")) },
                        EnergyBasis::Metered => span.status.partial data-basis="provisional" { (tr(lang, "station.provisional")) },
                    } }
                    td.num { (kwh(m.metered.energy)) }
                    td.num { (m.settlement.as_ref().map_or_else(|| "–".to_owned(), |s| kwh(s.energy))) }
                    td.num { (m.reconciliation.as_ref().and_then(|r| r.difference_pct).map_or_else(|| "–".to_owned(), |p| format!("{p:+.1}%"))) }
                    (completeness_cell(lang, m.metered.completeness))
                    td.num { (num(m.specific_yield, 1)) }
                    td.num { (num(m.full_load_hours, 1)) }
                    td.num { (pct(m.availability)) }
                    td { @if let Some(r) = &m.reconciliation {
                        @if r.flagged { span.status.offline data-flag="flagged" { (tr(lang, "station.flagged")) } }
                        @else { span.status.producing data-flag="ok" { (tr(lang, "station.reconciled")) } }
                    } }
                }
            } }
        }
        @if !flagged.is_empty() {
            h2 { (tr(lang, "station.flags")) }
            p.muted { (trf(lang, "station.flags_note", &[("threshold", &format!("{:.1}", state.deployment.energy.reconcile_threshold_pct))])) }
            @for m in &flagged { @if let Some(r) = &m.reconciliation {
                div.note.reconciliation data-month=(m.month) {
                    b { (m.month) } ": "
                    (trf(lang, "station.flag_line", &[
                        ("metered", &kwh(r.metered)),
                        ("settled", &kwh(r.settled)),
                        ("difference", &r.difference_pct.map_or_else(|| "–".to_owned(), |p| format!("{p:+.1}%"))),
                    ]))
                    ul { @for c in &r.causes { li data-cause=(c.code()) { (cause_text(lang, c, s.timezone)) } } }
                }
            } }
        }

        h2 { (tr(lang, "station.days")) }
        table #days {
            thead { tr {
                th { (tr(lang, "station.col_day")) } th.num { "kWh" } th.num { "kWh/kWp" }
                th.num { (tr(lang, "station.col_full_load")) } th.num { (tr(lang, "station.col_completeness")) }
                th.num { (tr(lang, "station.col_availability")) } th.num { (tr(lang, "station.col_performance")) }
                th { (tr(lang, "station.col_notes")) }
            } }
            tbody { @for d in days.iter().rev() {
                tr data-day=(d.day) {
                    td { (d.day) }
                    td.num { (kwh(d.figures.energy)) }
                    td.num { (num(d.specific_yield, 2)) }
                    td.num { (num(d.full_load_hours, 2)) }
                    (completeness_cell(lang, d.figures.completeness))
                    td.num { (pct(d.availability)) }
                    td.num { (num(d.performance_index, 2)) }
                    (notes_cell(lang, &d.figures.notes))
                }
            } }
        }
        p.muted { (tr(lang, "station.days_note")) }
    };
    Ok(Html(frame(&caller, &s.name, body).into_string()))
}

#[cfg(test)]
mod tests;
