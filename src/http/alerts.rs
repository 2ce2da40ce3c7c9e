//! Alerts over HTTP: the `/alerts` page (open alerts with an acknowledge form, notifier health,
//! history), `GET /api/alerts`, `POST /api/alerts/{id}/ack`, and the open-alerts box the fleet page
//! embeds.

use super::extract::{parse_form, parse_json, Path, Query};
use super::guard::{Caller, CSRF_FIELD};
use super::page::{esc, layout};
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

fn badge(severity: &str) -> String {
    let css = match severity {
        "critical" => "offline",
        "major" => "partial",
        _ => "sleeping",
    };
    format!("<span class=\"status {css}\">{}</span>", esc(severity))
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn kind_label(kind: &str) -> &'static str {
    crate::alerts::AlertKind::parse(kind).map_or("?", crate::alerts::AlertKind::label)
}

fn notifier_banner(status: &[NotifyStatusRow]) -> String {
    let mut out = String::new();
    for s in status.iter().filter(|s| s.failing()) {
        out.push_str(&format!(
            "<p class=\"note notify-failing\" style=\"background:#ffebe9;border-color:#f5a3a3\">\
             Notifications to <b>{}</b> are failing (since {} UTC, {} failure(s)): {}</p>",
            esc(&s.sink),
            s.last_error_at.map(when).unwrap_or_default(),
            s.failures,
            esc(s.last_error.as_deref().unwrap_or(""))
        ));
    }
    out
}

/// The open alerts; `forms` adds an acknowledge form where the caller may acknowledge.
fn open_table(state: &AppState, rows: &[AlertRow], forms: Option<&Caller>) -> String {
    let mut out = String::from(
        "<table class=\"alerts-open\"><thead><tr><th>Severity</th><th>Alert</th><th>Station</th>\
         <th>Since (UTC)</th><th>Details</th><th>State</th></tr></thead><tbody>",
    );
    for a in rows {
        let ack = match &a.ack_by {
            Some(by) => format!(
                "acknowledged by {}{}",
                esc(by),
                a.ack_note
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .map(|n| format!(": <i>{}</i>", esc(n)))
                    .unwrap_or_default()
            ),
            None => match forms.and_then(|c| Some((c, c.csrf.as_deref()?))) {
                Some((caller, csrf))
                    if state.geography.may_on_station(
                        caller.who(),
                        Action::AckAlert,
                        &a.station,
                    ) =>
                {
                    format!(
                        "<form method=\"post\" action=\"/api/alerts/{id}/ack\">\
                         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{csrf}\">\
                         <input name=\"note\" placeholder=\"note 备注\" maxlength=\"1000\" size=\"14\"> \
                         <button type=\"submit\">Acknowledge 确认</button></form>",
                        id = a.id,
                        csrf = esc(csrf),
                    )
                }
                _ => "open".to_owned(),
            },
        };
        out.push_str(&format!(
            "<tr data-alert=\"{id}\"><td>{sev}</td><td>{kind}{flap}</td>\
             <td><a href=\"/stations/{sid}\">{name}</a><div class=\"muted\">{sid}</div></td>\
             <td>{since}</td><td>{subject}{msg}</td><td>{ack}</td></tr>",
            id = a.id,
            sev = badge(&a.severity),
            kind = kind_label(&a.kind),
            flap = if a.flapping {
                " <span class=\"muted\">(flapping)</span>"
            } else {
                ""
            },
            sid = esc(&a.station),
            name = esc(&station_name(state, &a.station)),
            since = when(a.since),
            subject = if a.subject.is_empty() {
                String::new()
            } else {
                format!("<div class=\"muted\">{}</div>", esc(&a.subject))
            },
            msg = esc(&a.message),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

fn history_table(rows: &[HistoryRow]) -> String {
    let mut out = String::from(
        "<table class=\"alerts-history\"><thead><tr><th>When (UTC)</th><th>Event</th><th>Alert</th>\
         <th>Station</th><th>By</th><th>Note</th></tr></thead><tbody>",
    );
    for h in rows {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>#{} {} {}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            when(h.at),
            esc(&h.event),
            h.alert_id,
            badge(&h.severity),
            kind_label(&h.kind),
            esc(&h.station),
            if h.subject.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"muted\">{}</span>", esc(&h.subject))
            },
            esc(h.actor.as_deref().unwrap_or("")),
            esc(h.note.as_deref().unwrap_or("")),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

async fn alerts_page(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Html<String>, ApiError> {
    let mut open = state.store.alerts(true, LIST_LIMIT).await?;
    open.retain(|a| visible(&state, &caller, &a.station));
    let mut history = state.store.alert_history(200).await?;
    history.retain(|h| visible(&state, &caller, &h.station));
    let status = if sees_operations(&caller) {
        state.store.notify_status().await?
    } else {
        Vec::new()
    };
    let mut body = String::from("<h1>Alerts 告警</h1>");
    body.push_str(&notifier_banner(&status));
    body.push_str(&format!("<h2>Open 未解决 ({})</h2>", open.len()));
    if open.is_empty() {
        body.push_str(
            "<p class=\"muted\">No open alerts. Stations asleep at night are not alerts.</p>",
        );
    } else {
        body.push_str(&open_table(&state, &open, Some(&caller)));
    }
    body.push_str("<h2>History 历史</h2>");
    if history.is_empty() {
        body.push_str("<p class=\"muted\">Nothing yet.</p>");
    } else {
        body.push_str(&history_table(&history));
    }
    if !status.is_empty() {
        body.push_str("<h2>Notifications 通知</h2><table><thead><tr><th>Destination</th><th>Last sent (UTC)</th>\
                       <th>Last failure (UTC)</th><th class=\"num\">Failures</th></tr></thead><tbody>");
        for s in &status {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&s.sink),
                s.last_ok.map(when).unwrap_or_else(|| "never".into()),
                s.last_error_at.map(when).unwrap_or_else(|| "-".into()),
                s.failures
            ));
        }
        body.push_str("</tbody></table>");
    }
    Ok(Html(layout("Alerts", &body, &caller)))
}

/// The open alerts as an HTML snippet for the fleet page: a heading with the count, the table (no
/// forms), failing notifiers, and a link to `/alerts`. A store error becomes a short notice rather
/// than breaking the page that embeds it.
pub async fn open_alerts_box(state: &AppState, caller: &Caller) -> String {
    let (mut open, mut status) = match (
        state.store.alerts(true, LIST_LIMIT).await,
        state.store.notify_status().await,
    ) {
        (Ok(o), Ok(s)) => (o, s),
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "cannot read alerts for the fleet page");
            return "<section id=\"open-alerts\"><p class=\"note\">Alerts are unavailable right now.</p></section>"
                .to_owned();
        }
    };
    open.retain(|a| visible(state, caller, &a.station));
    if !sees_operations(caller) {
        status.clear();
    }
    let total = open.len();
    open.truncate(20);
    let mut out = format!(
        "<section id=\"open-alerts\"><h2>Open alerts 未解决告警 ({total})</h2>{}",
        notifier_banner(&status)
    );
    if open.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>");
    } else {
        out.push_str(&open_table(state, &open, None));
    }
    out.push_str("<p><a href=\"/alerts\">All alerts and history →</a></p></section>");
    out
}
