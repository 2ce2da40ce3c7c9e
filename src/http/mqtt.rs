//! What the MQTT collector could not place: loggers and devices the deployment does not know (a new
//! logger in the field) and refused messages with their reason, as JSON and as a page for operators.

use super::guard::Caller;
use super::page::{esc, layout};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::store::{MqttRejectedRow, MqttUnknownRow};
use axum::extract::State;
use axum::response::Html;
use axum::Json;
use chrono::{DateTime, Utc};
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
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

async fn page(State(state): State<AppState>, caller: Caller) -> Result<Html<String>, ApiError> {
    let unknown = state.store.mqtt_unknown(LIMIT).await?;
    let rejected = state.store.mqtt_rejected(LIMIT).await?;
    let mut body = String::from(
        "<h1>Data loggers (MQTT) 数据采集器</h1>\
         <p class=\"muted\">Messages Sunshare received but could not store. A logger or device listed \
         as unknown is usually new in the field: add it to <code>[[mqtt.loggers]]</code> or \
         <code>[[devices]]</code> in the deployment file.</p>\
         <h2>Unknown loggers and devices 未登记设备</h2>",
    );
    if unknown.is_empty() {
        body.push_str("<p class=\"muted\">None.</p>");
    } else {
        body.push_str(
            "<table><tr><th>Logger</th><th>Device</th><th>Topic</th><th class=\"num\">Messages</th>\
             <th>First seen</th><th>Last seen</th><th>Last payload</th></tr>",
        );
        for r in &unknown {
            let device = if r.device_key.is_empty() {
                "(logger not registered)".to_owned()
            } else {
                r.device_key.clone()
            };
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td>\
                 <td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&r.logger),
                esc(&device),
                esc(&r.topic),
                r.messages,
                when(r.first_seen),
                when(r.last_seen),
                esc(&r.last_payload)
            ));
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Refused messages 拒收消息</h2>");
    if rejected.is_empty() {
        body.push_str("<p class=\"muted\">None.</p>");
    } else {
        body.push_str(
            "<table><tr><th>Topic</th><th>Reason</th><th class=\"num\">Messages</th>\
             <th>Last seen</th><th>Detail</th></tr>",
        );
        for r in &rejected {
            body.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
                 <td>{}</td></tr>",
                esc(&r.topic),
                esc(&r.reason),
                r.messages,
                when(r.last_seen),
                esc(&r.last_detail)
            ));
        }
        body.push_str("</table>");
    }
    Ok(Html(layout("Data loggers", &body, &caller)))
}
