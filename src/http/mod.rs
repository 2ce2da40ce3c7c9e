//! The HTTP surface: JSON API, HTML pages, `/healthz` and `/metrics`. The only module that defines
//! JSON wire shapes. Each area adds its routes in its own file and merges them in [`router`].

mod account;
pub mod alerts;
mod audit;
pub mod charts;
mod county;
mod energy;
mod error;
pub mod extract;
mod fleet;
pub mod guard;
mod households;
pub mod i18n;
mod ledger;
mod mqtt;
pub mod openapi;
mod page;
mod plans;
mod pools;
mod quarantine;
pub mod routes;
mod settlements;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

pub use account::{
    purge_logins, SessionBackend, FAILURE_WINDOW, MAX_FAILURES_PER_ORIGIN, MAX_FAILURES_PER_USER,
};
pub use error::ApiError;
pub use guard::{Caller, CSRF_FIELD, CSRF_HEADER};
pub use routes::{Access, PlaceFrom, RouteSpec, Routes};

use crate::auth::{Action, Geography};
use crate::config::Deployment;
use crate::metrics::Metrics;
use crate::store::Store;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::{Expiry, SessionManagerLayer};

/// Largest request body accepted by default (JSON and forms).
pub const MAX_BODY: usize = 1 << 20;
/// Largest settlement statement accepted (CSV or XLSX).
pub const MAX_UPLOAD: usize = 16 << 20;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sunshare_session";

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub deployment: Arc<Deployment>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Where each village and station sits, for access decisions.
    pub geography: Arc<Geography>,
    /// Turns for heavy pages (`[http] heavy_pages`).
    pub heavy: Arc<tokio::sync::Semaphore>,
    /// Progress of a history backfill (demo only).
    pub backfill: Option<Arc<dyn BackfillStatus>>,
    /// The fleet page's and `/api/stations`' snapshot of every station.
    pub fleet: Arc<fleet::FleetCache>,
    /// The county yields behind the station pages' performance index.
    pub county: Arc<county::CountyCache>,
}

/// How far a background history backfill has got, for the note on the fleet page. Whoever writes
/// the history (the demo) fills it in; the pages only read it.
pub trait BackfillStatus: Send + Sync + std::fmt::Debug {
    /// The share of devices queued so far, from 0 to 1.
    fn fraction(&self) -> f64;
    /// The history is written and its grid settlement imported.
    fn settled(&self) -> bool;
}

impl AppState {
    /// The state with no optional extras.
    pub fn new(deployment: Arc<Deployment>, store: Store, metrics: Arc<Metrics>) -> AppState {
        let geography = Arc::new(Geography::new(
            deployment.townships.iter().map(|t| (&t.id, &t.county)),
            deployment.villages.iter().map(|v| (&v.code, &v.township)),
            &deployment.stations,
        ));
        let heavy = Arc::new(tokio::sync::Semaphore::new(
            deployment.http.heavy_pages.max(1),
        ));
        AppState {
            deployment,
            store,
            metrics,
            geography,
            heavy,
            backfill: None,
            fleet: Arc::default(),
            county: Arc::default(),
        }
    }
}

/// Every route with its access: the router is built from this, and tests walk it.
pub fn routes() -> Routes {
    Routes::new()
        .get("/healthz", Access::PUBLIC, healthz)
        .get("/metrics", Access::fleet(Action::ViewOperations), metrics)
        .merge(account::routes())
        .merge(fleet::routes())
        .merge(energy::routes())
        .merge(ledger::routes())
        .merge(plans::routes())
        .merge(pools::routes())
        .merge(households::routes())
        .merge(quarantine::routes())
        .merge(alerts::routes())
        .merge(mqtt::routes())
        .merge(openapi::routes())
        .merge(audit::routes())
        .merge(settlements::routes())
        .merge(i18n::routes())
}

pub fn router(state: AppState) -> Router {
    router_of(routes(), state)
}

/// `routes` behind the layers every request passes: sessions, body limit, timeout, headers, trace.
fn router_of(routes: Routes, state: AppState) -> Router {
    let http = &state.deployment.http;
    let idle = i64::try_from(http.session_idle.as_secs()).unwrap_or(i64::MAX);
    let sessions = SessionManagerLayer::new(SessionBackend {
        store: state.store.clone(),
    })
    .with_name(SESSION_COOKIE)
    .with_secure(http.secure_cookies)
    .with_http_only(true)
    .with_same_site(tower_sessions::cookie::SameSite::Lax)
    .with_expiry(Expiry::OnInactivity(time::Duration::seconds(idle)));
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::SERVICE_UNAVAILABLE,
        http.request_timeout,
    );
    routes
        .into_router(&state)
        .method_not_allowed_fallback(wrong_method)
        .fallback(fallback)
        .layer(sessions)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_UPLOAD))
        .layer(timeout)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Whether a state change to a path that does not take it comes from someone signed in: if not,
/// it is a 401 like any other anonymous state change.
async fn anonymous_change(
    state: &AppState,
    method: &Method,
    headers: &axum::http::HeaderMap,
    session: Option<&tower_sessions::Session>,
) -> bool {
    let reading = method == Method::GET || method == Method::HEAD;
    !reading && !matches!(guard::principal(state, headers, session).await, Ok(Some(_)))
}

/// No route here.
async fn fallback(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: Method,
    headers: axum::http::HeaderMap,
    session: tower_sessions::Session,
) -> Response {
    if anonymous_change(&state, &method, &headers, Some(&session)).await {
        return ApiError::Unauthorized("present an API token or sign in".into()).into_response();
    }
    ApiError::NotFound("no such page or endpoint".into()).into_response()
}

/// A path that exists, with a method it does not take.
async fn wrong_method(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: Method,
    headers: axum::http::HeaderMap,
    session: tower_sessions::Session,
) -> Response {
    if anonymous_change(&state, &method, &headers, Some(&session)).await {
        return ApiError::Unauthorized("present an API token or sign in".into()).into_response();
    }
    ApiError::MethodNotAllowed(format!("{method} is not accepted here")).into_response()
}

/// Serves until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let warm = tokio::spawn(county::keep_warm(state.clone(), cancel.child_token()));
    let _stop_warming = AbortOnDrop(warm);
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { cancel.cancelled().await })
    .await
}

/// Reads ahead what the station pages would otherwise wait for on their first view (each
/// county's yields), as the server's background task does while it runs.
pub async fn warm_caches(state: &AppState) -> Result<(), crate::energy::Error> {
    county::warm(state).await
}

/// Aborts a background task when the server it serves stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
