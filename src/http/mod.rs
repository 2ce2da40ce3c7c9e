//! The HTTP surface: JSON API, HTML pages, `/healthz` and `/metrics`. The only module that defines
//! JSON wire shapes. Each area adds its routes in its own file and merges them in [`router`].

pub mod alerts;
mod energy;
mod error;
mod extract;
mod fleet;
mod ledger;
mod mqtt;
pub mod openapi;
mod page;
mod quarantine;

pub use error::ApiError;

use crate::config::Deployment;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub deployment: Arc<Deployment>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Progress of a history backfill (demo only).
    pub backfill: Option<Arc<crate::sim::history::Progress>>,
}

impl AppState {
    /// The state with no optional extras.
    pub fn new(deployment: Arc<Deployment>, store: Store, metrics: Arc<Metrics>) -> AppState {
        AppState {
            deployment,
            store,
            metrics,
            backfill: None,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(fleet::routes())
        .merge(energy::routes())
        .merge(ledger::routes())
        .merge(quarantine::routes())
        .merge(alerts::routes())
        .merge(mqtt::routes())
        .merge(openapi::routes())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

async fn healthz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, ApiError> {
    state.store.ping().await?;
    Ok("ok\n")
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
