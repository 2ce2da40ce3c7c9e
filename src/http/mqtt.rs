//! What the MQTT collector could not place: loggers and devices the deployment does not know (a new
//! logger in the field) and refused messages with their reason, as JSON and as a page for operators.

use super::guard::Caller;
use super::i18n::tr;
use super::page::frame;
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::store::{MqttRejectedRow, MqttUnknownRow};
use axum::extract::State;
use axum::response::Html;
use axum::Json;
use chrono::{DateTime, Utc};
use maud::html;
use serde::Serialize;

const LIMIT: i64 = 500;

pub fn routes() -> Routes {
    let ops = Access::fleet(Action::ViewOperations);
    Routes::new()
        .get("/mqtt", ops, page)
        .get("/api/mqtt/unknown", ops, unknown_json)
        .get("/api/mqtt/rejected", ops, rejected_json)
}

/// A logger, or a device behind a known logger, that the deployment does not declare.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MqttUnknown)]
struct UnknownDevice {
    logger: String,
    /// `null` when the logger itself is unknown; else e.g. `unit 7`.
    device: Option<String>,
    topic: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    messages: i64,
    last_payload: String,
}

impl From<MqttUnknownRow> for UnknownDevice {
    fn from(r: MqttUnknownRow) -> Self {
        UnknownDevice {
            logger: r.logger,
            device: Some(r.device_key).filter(|k| !k.is_empty()),
            topic: r.topic,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            messages: r.messages,
            last_payload: r.last_payload,
        }
    }
}

/// Messages on one topic refused for one reason.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = MqttRejected)]
struct Rejected {
    topic: String,
    reason: String,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    messages: i64,
    last_detail: String,
}

impl From<MqttRejectedRow> for Rejected {
    fn from(r: MqttRejectedRow) -> Self {
        Rejected {
            topic: r.topic,
            reason: r.reason,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            messages: r.messages,
            last_detail: r.last_detail,
        }
    }
}

/// Loggers and devices Sunshare hears but does not know, at most 500.
#[utoipa::path(
    get,
    path = "/api/mqtt/unknown",
    tag = "ingest",
    responses(
        (status = 200, description = "Unknown loggers and devices", body = Vec<UnknownDevice>),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn unknown_json(State(state): State<AppState>) -> Result<Json<Vec<UnknownDevice>>, ApiError> {
    let rows = state.store.mqtt_unknown(LIMIT).await?;
    Ok(Json(rows.into_iter().map(UnknownDevice::from).collect()))
}

/// Refused MQTT messages with their reason, at most 500.
#[utoipa::path(
    get,
    path = "/api/mqtt/rejected",
    tag = "ingest",
    responses(
        (status = 200, description = "Refused messages by topic and reason", body = Vec<Rejected>),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn rejected_json(State(state): State<AppState>) -> Result<Json<Vec<Rejected>>, ApiError> {
    let rows = state.store.mqtt_rejected(LIMIT).await?;
    Ok(Json(rows.into_iter().map(Rejected::from).collect()))
}

fn when(t: DateTime<Utc>) -> String {
    super::page::local_time(t, chrono_tz::Asia::Shanghai)
}

async fn page(State(state): State<AppState>, caller: Caller) -> Result<Html<String>, ApiError> {
    let lang = caller.lang;
    let unknown = state.store.mqtt_unknown(LIMIT).await?;
    let rejected = state.store.mqtt_rejected(LIMIT).await?;
    let body = html! {
        h1 { (tr(lang, "loggers.title")) }
        p.muted { (tr(lang, "loggers.intro")) }
        h2 { (tr(lang, "loggers.unknown")) }
        @if unknown.is_empty() { p.muted { (tr(lang, "common.none")) } }
        @else {
            table #unknown {
                thead { tr {
                    th { (tr(lang, "loggers.col_logger")) } th { (tr(lang, "loggers.col_device")) }
                    th { (tr(lang, "loggers.col_topic")) } th.num { (tr(lang, "loggers.col_messages")) }
                    th { (tr(lang, "loggers.col_first_seen")) } th { (tr(lang, "loggers.col_last_seen")) }
                    th { (tr(lang, "loggers.col_last_payload")) }
                } }
                tbody { @for r in &unknown {
                    tr {
                        td { (r.logger) }
                        td { @if r.device_key.is_empty() { (tr(lang, "loggers.logger_unregistered")) } @else { (r.device_key) } }
                        td { code { (r.topic) } }
                        td.num { (r.messages) }
                        td { (when(r.first_seen)) }
                        td { (when(r.last_seen)) }
                        td { code { (r.last_payload) } }
                    }
                } }
            }
        }
        h2 { (tr(lang, "loggers.refused")) }
        @if rejected.is_empty() { p.muted { (tr(lang, "common.none")) } }
        @else {
            table #refused {
                thead { tr {
                    th { (tr(lang, "loggers.col_topic")) } th { (tr(lang, "loggers.col_reason")) }
                    th.num { (tr(lang, "loggers.col_messages")) } th { (tr(lang, "loggers.col_last_seen")) }
                    th { (tr(lang, "loggers.col_detail")) }
                } }
                tbody { @for r in &rejected {
                    tr {
                        td { code { (r.topic) } }
                        td { (r.reason) }
                        td.num { (r.messages) }
                        td { (when(r.last_seen)) }
                        td { (r.last_detail) }
                    }
                } }
            }
        }
    };
    Ok(Html(
        frame(&caller, &tr(lang, "loggers.title"), body).into_string(),
    ))
}
