//! Alerts over HTTP: the `/alerts` page (open alerts with an acknowledge form, notifier health,
//! history), `GET /api/alerts`, `POST /api/alerts/{id}/ack`, and the open-alerts box the fleet page
//! embeds.

use super::extract::{parse_form, parse_json, Path, Query};
use super::guard::{Caller, CSRF_FIELD};
use super::i18n::{tr, trf, Lang};
use super::page::{frame, local_time};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::{decide, Action};
use crate::store::{AckOutcome, AlertRow, HistoryRow, NotifyStatusRow};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

pub fn routes() -> Routes {
    Routes::new()
        .get("/alerts", Access::fleet(Action::ViewFleet), alerts_page)
        .get("/api/alerts", Access::fleet(Action::ViewFleet), alerts_json)
        .post(
            "/api/alerts/{id}/ack",
            Access::alert(Action::AckAlert, "id"),
            ack,
        )
}

/// Whether the caller may see alerts of `station`.
fn visible(state: &AppState, caller: &Caller, station: &str) -> bool {
    state
        .geography
        .may_on_station(caller.who(), Action::ViewStation, station)
}

/// Notifier health is operations data.
fn sees_operations(caller: &Caller) -> bool {
    decide(caller.who(), Action::ViewOperations, None).allowed()
}

/// How many alerts and history lines the page and API show.
const LIST_LIMIT: i64 = 500;

/// An alert and where it stands.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Alert)]
struct AlertJson {
    id: i64,
    /// `offline`, `comm_lost`, `grid_outage`, `fault`, `underperforming` or `stale`.
    kind: String,
    /// `minor`, `major` or `critical`.
    severity: String,
    /// `open`, `acknowledged` or `resolved`.
    state: String,
    station: String,
    station_name: String,
    county: String,
    /// The device or other part of the station the alert is about; empty for the whole station.
    subject: String,
    message: String,
    /// When the condition began.
    since: DateTime<Utc>,
    opened_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    /// `null` until someone acknowledges it.
    acknowledged: Option<AckJson>,
    /// The alert opened and resolved repeatedly of late.
    flapping: bool,
}

/// Who acknowledged an alert, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Acknowledgement)]
struct AckJson {
    by: String,
    note: String,
    at: Option<DateTime<Utc>>,
}

fn station_name(state: &AppState, id: &str) -> String {
    state
        .deployment
        .station(id)
        .map_or_else(|| id.to_owned(), |s| s.name.clone())
}

fn to_json(state: &AppState, a: AlertRow) -> AlertJson {
    AlertJson {
        id: a.id,
        station_name: station_name(state, &a.station),
        acknowledged: a.ack_by.map(|by| AckJson {
            by,
            note: a.ack_note.unwrap_or_default(),
            at: a.ack_at,
        }),
        kind: a.kind,
        severity: a.severity,
        state: a.state,
        station: a.station,
        county: a.county,
        subject: a.subject,
        message: a.message,
        since: a.since,
        opened_at: a.opened_at,
        resolved_at: a.resolved_at,
        flapping: a.flapping,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `open` (the default: not yet resolved) or `all`.
    #[param(pattern = "^(open|all)$")]
    state: Option<String>,
}

/// Alerts, newest first, at most 500.
#[utoipa::path(
    get,
    path = "/api/alerts",
    tag = "alerts",
    params(ListQuery),
    responses(
        (status = 200, description = "The alerts asked for", body = Vec<AlertJson>),
        (status = 400, description = "`state` is neither `open` nor `all`", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn alerts_json(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<AlertJson>>, ApiError> {
    let unresolved_only = match q.state.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "state",
                format!("'{other}' is not known: use state=open or state=all"),
            ))
        }
    };
    let rows = state.store.alerts(unresolved_only, LIST_LIMIT).await?;
    Ok(Json(
        rows.into_iter()
            .filter(|a| visible(&state, &caller, &a.station))
            .map(|a| to_json(&state, a))
            .collect(),
    ))
}

/// An acknowledgement, from JSON or from the page's form. The signed-in user is who
/// acknowledged; `who` names the person at a shared desk, recorded beside the account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = AckRequest)]
struct AckBody {
    /// The person at a shared desk who acknowledges, if not the account's holder; at most 100
    /// characters.
    #[serde(default)]
    #[schema(max_length = 100, example = "王工")]
    who: Option<String>,
    /// At most 1000 characters.
    #[serde(default)]
    #[schema(max_length = 1000, example = "crew on the way")]
    note: String,
    /// The page form's CSRF token (checked by the guard).
    #[serde(default, rename = "csrf")]
    _csrf: Option<String>,
}

/// Acknowledges an open alert: it stays until its condition clears, but nobody is paged again.
///
/// The alerts page posts the same fields as a form and is sent back to `/alerts`.
#[utoipa::path(
    post,
    path = "/api/alerts/{id}/ack",
    tag = "alerts",
    params(("id" = i64, Path, description = "Alert id")),
    request_body(content(
        (AckBody = "application/json"),
        (AckBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Acknowledged (JSON request): the alert as it is now", body = AlertJson),
        (status = 303, description = "Acknowledged (form request): back to the alerts page",
            headers(("location" = String, description = "/alerts"))),
        (status = 400, description = "The body is not an acknowledgement, `who` or `note` is too long, or the id is not a 64-bit integer", body = super::openapi::ErrorBody),
        (status = 404, description = "No such alert", body = super::openapi::ErrorBody),
        (status = 409, description = "The alert is already resolved", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be written", body = super::openapi::ErrorBody),
    )
)]
async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let account = caller.signed_in()?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body: AckBody = if is_form {
        parse_form(&body)?
    } else {
        parse_json(&body)?
    };
    let who = match body.who.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        Some(w) if w.chars().count() > 100 => {
            return Err(ApiError::invalid("who", "at most 100 characters"))
        }
        Some(w) if w != account.username && w != account.display_name => {
            format!("{w} (via {})", account.username)
        }
        _ => account.username.clone(),
    };
    let note = body.note.trim();
    if note.chars().count() > 1000 {
        return Err(ApiError::invalid("note", "at most 1000 characters"));
    }
    match state.store.ack_alert(id, &who, note, Utc::now()).await? {
        AckOutcome::NotFound => Err(ApiError::NotFound(format!("alert {id}"))),
        AckOutcome::AlreadyResolved => Err(ApiError::Conflict(format!(
            "alert {id} is already resolved"
        ))),
        AckOutcome::Acknowledged(row) => {
            tracing::info!(id, who = %who, "alert acknowledged");
            if is_form {
                Ok(Redirect::to("/alerts").into_response())
            } else {
                Ok(Json(to_json(&state, *row)).into_response())
            }
        }
    }
}

fn badge(lang: Lang, severity: &str) -> Markup {
    let css = match severity {
        "critical" => "offline",
        "major" => "partial",
        _ => "sleeping",
    };
    let label = match severity {
        "critical" | "major" | "minor" => tr(lang, &format!("alert.severity_{severity}")),
        other => other.to_owned(),
    };
    html! { span class={ "status " (css) } data-severity=(severity) { (label) } }
}

/// A moment in Beijing time (the county office's clock).
fn when(t: DateTime<Utc>) -> String {
    local_time(t, chrono_tz::Asia::Shanghai)
}

fn kind_label(lang: Lang, kind: &str) -> String {
    match crate::alerts::AlertKind::parse(kind) {
        Some(k) => tr(lang, &format!("alert.kind_{}", k.as_str())),
        None => kind.to_owned(),
    }
}

fn event_label(lang: Lang, event: &str) -> String {
    match event {
        "opened" | "acknowledged" | "resolved" => tr(lang, &format!("alert.event_{event}")),
        other => other.to_owned(),
    }
}

fn notifier_banner(lang: Lang, status: &[NotifyStatusRow]) -> Markup {
    html! {
        @for s in status.iter().filter(|s| s.failing()) {
            p.note.notify-failing style="background:#ffebe9;border-color:#f5a3a3" {
                (trf(lang, "alert.notify_failing", &[
                    ("sink", &s.sink),
                    ("since", &s.last_error_at.map(when).unwrap_or_default()),
                    ("failures", &s.failures),
                ]))
                " " (s.last_error.as_deref().unwrap_or(""))
            }
        }
    }
}

/// The open alerts; `forms` adds an acknowledge form where the caller may acknowledge.
fn open_table(state: &AppState, lang: Lang, rows: &[AlertRow], forms: Option<&Caller>) -> Markup {
    html! {
        table.alerts-open {
            thead { tr {
                th { (tr(lang, "alert.col_severity")) } th { (tr(lang, "alert.col_alert")) }
                th { (tr(lang, "fleet.col_station")) } th { (tr(lang, "alert.col_since")) }
                th { (tr(lang, "alert.col_details")) } th { (tr(lang, "alert.col_state")) }
            } }
            tbody { @for a in rows {
                tr data-alert=(a.id) {
                    td { (badge(lang, &a.severity)) }
                    td { (kind_label(lang, &a.kind)) @if a.flapping { " " span.muted { (tr(lang, "alert.flapping")) } } }
                    td { a href=(format!("/stations/{}", a.station)) { (station_name(state, &a.station)) } div.muted { (a.station) } }
                    td { (when(a.since)) }
                    td { @if !a.subject.is_empty() { div.muted { (a.subject) } } (alert_message(lang, &a.message)) }
                    td { (ack_cell(state, lang, a, forms)) }
                }
            } }
        }
    }
}

fn ack_cell(state: &AppState, lang: Lang, a: &AlertRow, forms: Option<&Caller>) -> Markup {
    if let Some(by) = &a.ack_by {
        return html! {
            span.acked { (trf(lang, "alert.acknowledged_by", &[("who", by)])) }
            @if let Some(n) = a.ack_note.as_deref().filter(|n| !n.is_empty()) { ": " i { (n) } }
        };
    }
    match forms.and_then(|c| Some((c, c.csrf.as_deref()?))) {
        Some((caller, csrf))
            if state
                .geography
                .may_on_station(caller.who(), Action::AckAlert, &a.station) =>
        {
            html! {
                form.ack method="post" action=(format!("/api/alerts/{}/ack", a.id)) {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    input name="note" placeholder=(tr(lang, "alert.note")) maxlength="1000" size="14";
                    " "
                    button type="submit" { (tr(lang, "alert.acknowledge")) }
                }
            }
        }
        _ => html! { (tr(lang, "alert.state_open")) },
    }
}

fn history_table(lang: Lang, rows: &[HistoryRow]) -> Markup {
    html! {
        table.alerts-history {
            thead { tr {
                th { (tr(lang, "alert.col_when")) } th { (tr(lang, "alert.col_event")) }
                th { (tr(lang, "alert.col_alert")) } th { (tr(lang, "fleet.col_station")) }
                th { (tr(lang, "alert.col_by")) } th { (tr(lang, "plan.note")) }
            } }
            tbody { @for h in rows {
                tr data-event=(h.event) {
                    td { (when(h.at)) }
                    td { (event_label(lang, &h.event)) }
                    td { "#" (h.alert_id) " " (badge(lang, &h.severity)) " " (kind_label(lang, &h.kind)) }
                    td { (h.station) @if !h.subject.is_empty() { " " span.muted { (h.subject) } } }
                    td { (h.actor.as_deref().unwrap_or("")) }
                    td { (h.note.as_deref().unwrap_or("")) }
                }
            } }
        }
    }
}

async fn alerts_page(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    let lang = caller.lang;
    let mut open = state.store.alerts(true, LIST_LIMIT).await?;
    open.retain(|a| visible(&state, &caller, &a.station));
    let mut history = state.store.alert_history(200).await?;
    history.retain(|h| visible(&state, &caller, &h.station));
    let status = if sees_operations(&caller) {
        state.store.notify_status().await?
    } else {
        Vec::new()
    };
    let body = html! {
        h1 { (tr(lang, "alert.title")) }
        (notifier_banner(lang, &status))
        h2 { (trf(lang, "alert.open", &[("count", &open.len())])) }
        @if open.is_empty() { p.muted { (tr(lang, "alert.none_open")) } }
        @else { (open_table(&state, lang, &open, Some(&caller))) }
        h2 { (tr(lang, "alert.history")) }
        @if history.is_empty() { p.muted { (tr(lang, "alert.no_history")) } }
        @else { (history_table(lang, &history)) }
        @if !status.is_empty() {
            h2 { (tr(lang, "alert.notifications")) }
            table #notifiers {
                thead { tr {
                    th { (tr(lang, "alert.col_destination")) } th { (tr(lang, "alert.col_last_sent")) }
                    th { (tr(lang, "alert.col_last_failure")) } th.num { (tr(lang, "alert.col_failures")) }
                } }
                tbody { @for s in &status {
                    tr {
                        td { (s.sink) }
                        td { (s.last_ok.map_or_else(|| tr(lang, "fleet.never"), when)) }
                        td { (s.last_error_at.map_or_else(|| "–".to_owned(), when)) }
                        td.num { (s.failures) }
                    }
                } }
            }
        }
    };
    Ok(Html(
        frame(&caller, &tr(lang, "alert.title"), body).into_string(),
    ))
}

/// The open alerts for the fleet page: a heading with the count, the table (no forms), failing
/// notifiers, and a link to `/alerts`. A store error becomes a short notice rather than breaking
/// the page that embeds it.
pub async fn open_alerts_box(state: &AppState, caller: &Caller) -> Markup {
    let lang = caller.lang;
    let (mut open, mut status) = match (
        state.store.alerts(true, LIST_LIMIT).await,
        state.store.notify_status().await,
    ) {
        (Ok(o), Ok(s)) => (o, s),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "cannot read alerts for the fleet page");
            return html! { section #open-alerts { p.note { (tr(lang, "alert.unavailable")) } } };
        }
    };
    open.retain(|a| visible(state, caller, &a.station));
    if !sees_operations(caller) {
        status.clear();
    }
    let total = open.len();
    open.truncate(20);
    html! {
        section #open-alerts {
            h2 { (trf(lang, "alert.open_box", &[("count", &total)])) }
            (notifier_banner(lang, &status))
            @if open.is_empty() { p.muted { (tr(lang, "common.none")) } }
            @else { (open_table(state, lang, &open, None)) }
            p { a href="/alerts" { (tr(lang, "alert.all_link")) } }
        }
    }
}

/// An alert's message in the caller's language, for the messages the alert rules write (offline
/// gateway, lost device, grid outage, fault, frozen values, low yield); any other is shown as
/// written. Notifications keep the rules' words.
fn alert_message(lang: Lang, m: &str) -> String {
    let t = |key: &str, args: &[(&str, &dyn std::fmt::Display)]| trf(lang, key, args);
    if let Some(rest) = m.strip_prefix("gateway ") {
        let parsed = (|| {
            let (gw, rest) = rest.split_once(" (")?;
            let (n, rest) = rest.split_once(" device")?;
            let (_, rest) = rest.split_once(") silent for ")?;
            let (min, last) = rest.split_once(" min; ")?;
            Some((gw, n, min, last))
        })();
        if let Some((gw, n, min, last)) = parsed {
            let last = match last.strip_prefix("last contact ") {
                Some(at) => t("alert.msg_last_contact", &[("at", &at)]),
                None => tr(lang, "alert.msg_never_heard"),
            };
            return t(
                "alert.msg_offline",
                &[
                    ("gateway", &gw),
                    ("devices", &n),
                    ("minutes", &min),
                    ("last", &last),
                ],
            );
        }
    }
    if let Some(rest) = m.strip_prefix("device ") {
        if let Some((id, rest)) = rest.split_once(" silent for ") {
            if let Some((min, gw)) = rest.split_once(" min behind live gateway ") {
                return t(
                    "alert.msg_comm_lost",
                    &[("device", &id), ("minutes", &min), ("gateway", &gw)],
                );
            }
        }
        if let Some((id, rest)) = rest.split_once(" reports identical values since ") {
            if let Some((since, min)) = rest.strip_suffix(" min)").and_then(|r| r.split_once(" ("))
            {
                return t(
                    "alert.msg_stale",
                    &[("device", &id), ("since", &since), ("minutes", &min)],
                );
            }
        }
        if let Some((id, text)) = rest.split_once(": ") {
            let text = if text == "fault state without an alarm code" {
                tr(lang, "alert.msg_fault_no_code")
            } else {
                text.to_owned()
            };
            return t("alert.msg_fault", &[("device", &id), ("alarms", &text)]);
        }
    }
    if let Some(rest) = m.strip_prefix("all ") {
        if let Some((n, rest)) = rest.split_once(" reporting device") {
            if let Some((_, alarms)) = rest.split_once(" report grid loss: ") {
                return t("alert.msg_grid", &[("devices", &n), ("alarms", &alarms)]);
            }
        }
    }
    if let Some(rest) = m.strip_prefix("specific yield today ") {
        let parsed = (|| {
            let (y, rest) = rest.split_once(" kWh/kWp is ")?;
            let (pct, rest) = rest.split_once("% of the county median ")?;
            let (median, rest) = rest.split_once(" (")?;
            let n = rest.strip_suffix(" peers)")?;
            Some((y, pct, median, n))
        })();
        if let Some((y, pct, median, n)) = parsed {
            return t(
                "alert.msg_underperforming",
                &[
                    ("yield", &y),
                    ("percent", &pct),
                    ("median", &median),
                    ("peers", &n),
                ],
            );
        }
    }
    m.to_owned()
}

#[cfg(test)]
mod message_tests {
    use super::*;

    /// The messages as the rules format them (src/alerts/rules.rs), read in Chinese.
    #[test]
    fn the_rules_messages_are_said_in_the_callers_language() {
        let cases = [
            (
                "gateway 10.0.0.5:502 (2 devices) silent for 45 min; last contact 12-03 11:02",
                "网关 10.0.0.5:502（2 台设备）已 45 分钟无数据；最后通信 12-03 11:02",
            ),
            (
                "gateway dtu-1 (1 device) silent for 31 min; never heard from",
                "网关 dtu-1（1 台设备）已 31 分钟无数据；从未收到数据",
            ),
            (
                "device S1-INV2 silent for 20 min behind live gateway 10.0.0.5:502",
                "设备 S1-INV2 已 20 分钟无数据，而其网关 10.0.0.5:502 在线",
            ),
            (
                "all 3 reporting devices report grid loss: 2001 Grid loss / 电网掉电",
                "3 台在报设备均报告电网失压：2001 Grid loss / 电网掉电",
            ),
            (
                "device S1-INV1: fault state without an alarm code",
                "设备 S1-INV1 故障：处于故障状态，无告警码",
            ),
            (
                "device S1-INV1: 2032 Grid overvoltage / 电网过压",
                "设备 S1-INV1 故障：2032 Grid overvoltage / 电网过压",
            ),
            (
                "device S1-INV1 reports identical values since 12-03 10:15 (95 min)",
                "设备 S1-INV1 自 12-03 10:15 起数值不变（95 分钟）",
            ),
            (
                "specific yield today 1.20 kWh/kWp is 38% of the county median 3.15 (7 peers)",
                "今日等效利用小时 1.20 kWh/kWp，仅为全县中位数 3.15 的 38%（7 座电站）",
            ),
        ];
        for (en, zh) in cases {
            assert_eq!(alert_message(Lang::Zh, en), zh, "{en}");
            assert!(!alert_message(Lang::En, en).contains("alert.msg_"), "{en}");
        }
        assert_eq!(alert_message(Lang::Zh, "something new"), "something new");
    }
}
