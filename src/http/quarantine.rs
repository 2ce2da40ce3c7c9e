//! The quarantine view: samples ingest refused, with their reasons, newest first.
//! Read-only; what is shown here was never stored as truth.

use super::extract::Query;
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::Action;
use crate::domain::DeviceId;
use crate::store::QuarantineRow;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub fn routes() -> Routes {
    Routes::new().get(
        "/api/quarantine",
        Access::fleet(Action::ViewOperations),
        list,
    )
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct Params {
    /// Only this device's samples.
    device: Option<String>,
    /// How many, 1 to 1000; 100 when absent.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A sample ingest refused, with the reason; it was never stored as truth.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = QuarantinedSample)]
struct Item {
    id: i64,
    device: String,
    /// When the sample says it was taken.
    at: DateTime<Utc>,
    /// When Sunshare received it.
    received: DateTime<Utc>,
    /// A stable code for the reason, e.g. `not_finite`.
    code: String,
    reason: String,
    /// The sample's readings by metric name; a value that is not a number (why a sample is
    /// quarantined as `not_finite`) is named: `"NaN"`, `"inf"` or `"-inf"`.
    readings: BTreeMap<String, Value>,
    /// The device state the sample reported, if any.
    state: Option<&'static str>,
}

/// A reading as the quarantine shows it: JSON has no NaN or infinity, so those are named.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = QuarantinedValue)]
enum Value {
    Number(f64),
    NotANumber(NotANumber),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
enum NotANumber {
    #[serde(rename = "NaN")]
    NaN,
    #[serde(rename = "inf")]
    Infinity,
    #[serde(rename = "-inf")]
    MinusInfinity,
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        match v {
            v if v.is_finite() => Value::Number(v),
            v if v.is_nan() => Value::NotANumber(NotANumber::NaN),
            v if v > 0.0 => Value::NotANumber(NotANumber::Infinity),
            _ => Value::NotANumber(NotANumber::MinusInfinity),
        }
    }
}

impl From<QuarantineRow> for Item {
    fn from(r: QuarantineRow) -> Self {
        Item {
            id: r.id,
            device: r.device.to_string(),
            at: r.at,
            received: r.received,
            code: r.code,
            reason: r.reason,
            readings: r
                .readings
                .values
                .iter()
                .map(|(m, v)| (m.name(), Value::from(*v)))
                .collect(),
            state: r.readings.state.map(|s| s.as_str()),
        }
    }
}

/// Quarantined samples, newest first.
#[utoipa::path(
    get,
    path = "/api/quarantine",
    tag = "ingest",
    params(Params),
    responses(
        (status = 200, description = "The quarantined samples asked for", body = Vec<Item>),
        (status = 400, description = "`limit` is out of range, or an unknown query parameter was given", body = super::openapi::ErrorBody),
        (status = 500, description = "The store could not be read", body = super::openapi::ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Json<Vec<Item>>, ApiError> {
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("'{raw}' is not a number between 1 and {MAX_LIMIT}"),
                ))
            }
        },
    };
    let device = params.device.filter(|d| !d.is_empty()).map(DeviceId::new);
    let rows = state.store.quarantined(device.as_ref(), limit).await?;
    Ok(Json(rows.into_iter().map(Item::from).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Deployment;
    use crate::domain::{Metric, Readings, Sample};
    use crate::metrics::Metrics;
    use crate::store::QuarantineEntry;
    use std::sync::Arc;

    #[tokio::test]
    async fn lists_quarantined_samples_by_device_with_a_limit() -> anyhow::Result<()> {
        let ts = crate::store::testing::sqlite().await?;
        let mut readings = Readings::default();
        readings.set(Metric::AcPowerW, f64::NAN);
        let samples: Vec<Sample> = ["a", "b", "b"]
            .iter()
            .enumerate()
            .map(|(i, d)| Sample {
                device: DeviceId::new(*d),
                at: DateTime::from_timestamp(1_780_000_000 + i as i64, 0).unwrap_or_default(),
                readings: readings.clone(),
            })
            .collect();
        let entries: Vec<_> = samples
            .iter()
            .map(|s| QuarantineEntry {
                sample: s,
                code: "not_finite",
                reason: "ac_power_w is NaN or infinite".into(),
            })
            .collect();
        ts.store.quarantine_many(&entries, Utc::now()).await?;
        let deployment = Deployment::from_str_with_env("t.toml", "", &[], &Default::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let state = AppState::new(
            Arc::new(deployment),
            ts.store.clone(),
            Arc::new(Metrics::new()),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(crate::http::serve(listener, state, cancel.clone()));
        let client = crate::http::testing::client_with_token(
            &crate::store::testing::admin_token(&ts.store).await?,
        );
        let get = |q: &str| {
            client
                .get(format!("http://{addr}/api/quarantine{q}"))
                .send()
        };
        let all: Vec<serde_json::Value> = get("").await?.json().await?;
        assert_eq!(all.len(), 3);
        let b: Vec<serde_json::Value> = get("?device=b&limit=1").await?.json().await?;
        assert_eq!(b.len(), 1);
        assert_eq!(b[0]["device"], "b");
        assert_eq!(b[0]["code"], "not_finite");
        assert_eq!(b[0]["reason"], "ac_power_w is NaN or infinite");
        // The value it was refused for is shown, named, not lost.
        assert_eq!(b[0]["readings"]["ac_power_w"], "NaN", "{b:?}");
        let bad = get("?limit=0").await?;
        assert_eq!(bad.status(), 400);
        let body: serde_json::Value = bad.json().await?;
        assert_eq!(body["field"], "limit");
        assert!(body["message"].as_str().unwrap_or("").contains("'0'"));
        cancel.cancel();
        server.await??;
        Ok(())
    }
}
