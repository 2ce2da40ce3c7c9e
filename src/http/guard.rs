//! The guard in front of every route: finds who is asking (API token or browser session), finds
//! the place the route touches, asks `auth::decide`, checks the CSRF token of a browser's state
//! change, bounds heavy pages and writes the audit line of every state change.

use super::i18n::{tr, trf};
use super::routes::{PlaceFrom, RouteSpec};
use super::{ApiError, AppState};
use crate::auth::credentials::{same_secret, secret_matches, split_token};
use crate::auth::{decide, Decision, Place, Principal, Via};
use crate::store::AuditEntry;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use tower_sessions::Session;

/// Session keys.
const USER_KEY: &str = "user";
const CSRF_KEY: &str = "csrf";
/// The form field and header that carry the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who is signed in to a session, and since when (for the absolute session lifetime).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUser {
    pub id: i64,
    pub since_ms: i64,
}

/// The guard's state: the app and the route it guards.
#[derive(Debug, Clone)]
pub struct Guarded {
    pub state: AppState,
    pub spec: RouteSpec,
}

/// Who is asking, as the guard found it; handlers take it to filter lists, mask data, record who
/// acted and draw the sign-out form.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub principal: Option<Principal>,
    /// The session's CSRF token, for forms on the page.
    pub csrf: Option<String>,
    /// The client address, for the audit log.
    pub origin: String,
    /// The language of the pages (the `sunshare_lang` cookie; Chinese by default).
    pub lang: super::i18n::Lang,
    /// The path and query of the request, for the language switch to come back to.
    pub path: String,
}

impl Caller {
    pub fn who(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// The signed-in user; only reached on routes whose access already required one.
    pub fn signed_in(&self) -> Result<&Principal, ApiError> {
        self.principal
            .as_ref()
            .ok_or_else(|| ApiError::Unauthorized("no credential was presented".into()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default())
    }
}

pub async fn guard(State(g): State<Guarded>, req: Request, next: Next) -> Response {
    let spec = g.spec;
    let (response, caller, target) = match admit(&g, req).await {
        Ok((req, caller)) => {
            let _turn = if spec.heavy {
                let wait = g.state.deployment.http.heavy_wait;
                match tokio::time::timeout(wait, g.state.heavy.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    _ => {
                        return ApiError::Busy(
                            "too many heavy pages are being served: try again in a few seconds"
                                .into(),
                        )
                        .into_response()
                    }
                }
            } else {
                None
            };
            let target = req.uri().path().to_owned();
            (next.run(req).await, caller, target)
        }
        // A refused attempt to change something is worth as much to the auditor.
        Err(Refused {
            response,
            caller,
            target,
        }) => (response, caller, target),
    };
    // Public routes that change state (signing in) write their own, more telling, audit lines.
    if spec.changes_state() && spec.access.action != crate::auth::Action::Public {
        audit(&g.state, &spec, &caller, &target, response.status()).await;
    }
    response
}

/// A request the guard answered itself, with who it was (if known) for the audit line.
struct Refused {
    response: Response,
    caller: Caller,
    target: String,
}

/// Resolves the caller and the place, decides, checks CSRF; hands the request on with the
/// [`Caller`] attached, or answers for it.
async fn admit(g: &Guarded, mut req: Request) -> Result<(Request, Caller), Refused> {
    let spec = &g.spec;
    let state = &g.state;
    let mut caller = Caller {
        principal: None,
        csrf: None,
        origin: origin_of(&req),
        lang: super::i18n::Lang::from_headers(req.headers()),
        path: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    };
    let session = req.extensions().get::<Session>().cloned();
    let refused = |req: &Request, caller: &Caller, e: ApiError| Refused {
        response: refuse(spec, req, e, None),
        caller: caller.clone(),
        target: req.uri().path().to_owned(),
    };
    // As `refused`, with what a page says in the caller's language.
    let refused_saying = |req: &Request, caller: &Caller, e: ApiError, says: String| Refused {
        response: refuse(spec, req, e, Some(says)),
        caller: caller.clone(),
        target: req.uri().path().to_owned(),
    };
    caller.principal = match principal(state, req.headers(), session.as_ref()).await {
        Ok(p) => p,
        Err(e) => return Err(refused(&req, &caller, e)),
    };
    let place = match place(state, spec.access.place, &mut req).await {
        Ok(p) => p,
        Err(e @ ApiError::NotFound(_)) => {
            let says = tr(caller.lang, "refusal.no_place");
            return Err(refused_saying(&req, &caller, e, says));
        }
        Err(e) => return Err(refused(&req, &caller, e)),
    };
    match decide(
        caller.principal.as_ref(),
        spec.access.action,
        place.as_ref(),
    ) {
        Decision::Allow => {}
        Decision::Unauthenticated => {
            let e = ApiError::Unauthorized(
                "present an API token (Authorization: Bearer ...) or sign in at /login".into(),
            );
            return Err(refused(&req, &caller, e));
        }
        Decision::Forbidden(reason) => {
            let says = trf(
                caller.lang,
                "refusal.not_allowed",
                &[("action", &action_text(caller.lang, spec.access.action))],
            );
            return Err(refused_saying(
                &req,
                &caller,
                ApiError::Forbidden(reason),
                says,
            ));
        }
    }
    let from_browser = caller
        .principal
        .as_ref()
        .is_none_or(|p| p.via == Via::Session);
    if let (Some(s), true) = (&session, from_browser) {
        caller.csrf = match existing_csrf(s).await {
            Ok(t) => t,
            Err(e) => return Err(refused(&req, &caller, e)),
        };
    }
    if spec.changes_state() && from_browser {
        let (checked, ok) = check_csrf(req, spec.body_limit, caller.csrf.as_deref()).await;
        req = checked;
        if !ok {
            let e = ApiError::Forbidden(
                "the form's CSRF token is missing or out of date: reload the page and try again"
                    .into(),
            );
            let says = tr(caller.lang, "refusal.csrf");
            return Err(refused_saying(&req, &caller, e, says));
        }
    }
    req.extensions_mut().insert(caller.clone());
    Ok((req, caller))
}

/// A refusal: JSON for the API; for pages, a browser that is not signed in goes to the login
/// form and comes back afterwards.
fn refuse(spec: &RouteSpec, req: &Request, e: ApiError, says: Option<String>) -> Response {
    if spec.is_api() {
        return e.into_response();
    }
    if matches!(e, ApiError::Unauthorized(_)) && req.method() == Method::GET {
        let next = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let target = format!("/login?next={}", super::account::encode_component(&next));
        return Redirect::to(&target).into_response();
    }
    let status = e.status();
    let lang = super::i18n::Lang::from_headers(req.headers());
    let key = match status {
        StatusCode::FORBIDDEN => "refusal.forbidden",
        StatusCode::NOT_FOUND => "refusal.not_found",
        StatusCode::TOO_MANY_REQUESTS => "refusal.too_many",
        _ => "refusal.error",
    };
    let what = tr(lang, key);
    let body = maud::html! {
        div.refusal {
            h1 { (status.as_u16()) " · " (what) }
            p #refusal-reason { (says.unwrap_or_else(|| e.to_string())) }
            @if status == StatusCode::FORBIDDEN { p.muted { (tr(lang, "refusal.forbidden_hint")) } }
            p { a href="/" { (tr(lang, "refusal.home")) } }
        }
    };
    let page = super::page::bare_frame(lang, &what, body).into_string();
    (status, Html(page)).into_response()
}

/// What an action is, in the caller's language, for a page that refuses it.
pub fn action_text(lang: super::i18n::Lang, action: crate::auth::Action) -> String {
    use crate::auth::Action::*;
    let key = match action {
        Public => "action.public",
        ViewFleet => "action.view_fleet",
        ViewStation => "action.view_station",
        ViewOperations => "action.view_operations",
        AckAlert => "action.ack_alert",
        ImportSettlement => "action.import_settlement",
        ViewLedger => "action.view_ledger",
        ViewPersonalData => "action.view_personal_data",
        ExportRoster => "action.export_roster",
        WorkOnPlans => "action.work_on_plans",
        MovePlan(from, to) => {
            let state = |s: crate::allocate::PlanState| {
                tr(
                    lang,
                    &format!("plan.state_{}", s.code().to_ascii_lowercase()),
                )
            };
            return trf(
                lang,
                "action.move_plan",
                &[("from", &state(from)), ("to", &state(to))],
            );
        }
        OwnSession => "action.own_session",
        ViewAudit => "action.view_audit",
        AllocateMonth => "action.allocate_month",
        PayMonth => "action.pay_month",
        EditRegistry => "action.edit_registry",
        ReviewMonth => "action.review_month",
        SetOpeningBalance => "action.set_opening_balance",
        PostAdjustment => "action.post_adjustment",
        RecordAttendance => "action.record_attendance",
        DraftPlan => "action.draft_plan",
        EditPool => "action.edit_pool",
    };
    tr(lang, key)
}

fn origin_of(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// The caller: a bearer token if one is presented (then it must be valid), else the session's
/// user. A disabled user is nobody, whatever credential they hold.
pub async fn principal(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<&Session>,
) -> Result<Option<Principal>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return token_principal(state, value).await.map(Some);
    }
    let Some(session) = session else {
        return Ok(None);
    };
    let user: Option<SessionUser> = session
        .get(USER_KEY)
        .await
        .map_err(|e| ApiError::Internal(format!("session: {e}")))?;
    let Some(user) = user else { return Ok(None) };
    let max_ms = i64::try_from(state.deployment.http.session_max.as_millis()).unwrap_or(i64::MAX);
    if Utc::now().timestamp_millis().saturating_sub(user.since_ms) > max_ms {
        let _ = session.flush().await;
        return Ok(None);
    }
    let account = state.store.account(user.id).await?;
    Ok(account.filter(|a| !a.disabled).map(|a| Principal {
        user_id: a.id,
        username: a.username,
        display_name: a.display_name,
        role: a.role,
        scope: a.scope,
        via: Via::Session,
    }))
}

async fn token_principal(
    state: &AppState,
    value: &header::HeaderValue,
) -> Result<Principal, ApiError> {
    let unknown = || ApiError::Unauthorized("the API token is unknown, expired or revoked".into());
    let text = value.to_str().map_err(|_| unknown())?;
    let presented = text
        .strip_prefix("Bearer ")
        .ok_or_else(|| {
            ApiError::Unauthorized("use the Authorization header as: Bearer <API token>".into())
        })?
        .trim();
    let (id, secret) = split_token(presented).ok_or_else(unknown)?;
    let (row, account) = state
        .store
        .token_with_account(id)
        .await?
        .ok_or_else(unknown)?;
    let now = Utc::now();
    if !secret_matches(&row.secret_sha256, secret)
        || row.revoked.is_some()
        || row.expires <= now
        || account.disabled
    {
        return Err(unknown());
    }
    // Noted at most once a minute, so a busy script does not write on every request.
    let stale = row
        .last_used
        .is_none_or(|t| now - t > chrono::Duration::minutes(1));
    if stale {
        if let Err(error) = state.store.touch_token(id, now).await {
            tracing::warn!(%error, token = id, "could not note the token's last use");
        }
    }
    Ok(Principal {
        user_id: account.id,
        username: account.username,
        display_name: account.display_name,
        role: account.role,
        scope: account.scope,
        via: Via::Token(row.id),
    })
}

/// The place a route touches, from its path parameter. An id the deployment does not know is a
/// 404 (the guard cannot decide on a place that does not exist).
async fn place(
    state: &AppState,
    from: PlaceFrom,
    req: &mut Request,
) -> Result<Option<Place>, ApiError> {
    let param = match from {
        PlaceFrom::Fleet => return Ok(None),
        PlaceFrom::Station(p) | PlaceFrom::Village(p) | PlaceFrom::Alert(p) => p,
    };
    let (mut parts, body) = std::mem::take(req).into_parts();
    let params = RawPathParams::from_request_parts(&mut parts, &()).await;
    *req = Request::from_parts(parts, body);
    let params = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let value = params
        .iter()
        .find(|(k, _)| *k == param)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| ApiError::BadRequest(format!("missing path parameter {param}")))?;
    let geo = &state.geography;
    let found = match from {
        PlaceFrom::Station(_) => geo.station(&value).cloned(),
        PlaceFrom::Village(_) => geo.village(&value).cloned(),
        PlaceFrom::Alert(_) => {
            let id: i64 = value
                .parse()
                .map_err(|_| ApiError::invalid(param, format!("'{value}' is not an alert id")))?;
            let alert = state.store.alert(id).await?;
            alert.and_then(|a| geo.station(&a.station).cloned())
        }
        PlaceFrom::Fleet => None,
    };
    let what = match from {
        PlaceFrom::Station(_) => "station",
        PlaceFrom::Village(_) => "village",
        _ => "alert",
    };
    found
        .map(Some)
        .ok_or_else(|| ApiError::NotFound(format!("{what} {value} is not known")))
}

/// The session's CSRF token, if it has one (a signed-in session always has).
async fn existing_csrf(session: &Session) -> Result<Option<String>, ApiError> {
    session
        .get(CSRF_KEY)
        .await
        .map_err(|e| ApiError::Internal(format!("session: {e}")))
}

/// The session's CSRF token, made on first use (the login form: before anyone signs in).
pub async fn csrf_token(session: &Session) -> Result<String, ApiError> {
    if let Some(token) = existing_csrf(session).await? {
        return Ok(token);
    }
    let token = crate::auth::credentials::random_hex(32);
    session
        .insert(CSRF_KEY, &token)
        .await
        .map_err(|e| ApiError::Internal(format!("session: {e}")))?;
    Ok(token)
}

/// Signs `user` in: a new session id (no fixation), a new CSRF token.
pub async fn sign_in(session: &Session, user: SessionUser) -> Result<(), ApiError> {
    let internal = |e: tower_sessions::session::Error| ApiError::Internal(format!("session: {e}"));
    session.cycle_id().await.map_err(internal)?;
    session
        .insert(CSRF_KEY, crate::auth::credentials::random_hex(32))
        .await
        .map_err(internal)?;
    session.insert(USER_KEY, user).await.map_err(internal)
}

/// Compares the request's CSRF token (header, or the form field of a form body) with the
/// session's. A form body is read here and handed on unchanged.
async fn check_csrf(req: Request, limit: usize, expected: Option<&str>) -> (Request, bool) {
    let Some(expected) = expected else {
        return (req, false);
    };
    if let Some(v) = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        let ok = same_secret(v, expected);
        return (req, ok);
    }
    let content_type = content_type(req.headers());
    let multipart = content_type.starts_with("multipart/form-data");
    if !content_type.starts_with("application/x-www-form-urlencoded") && !multipart {
        return (req, false);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.unwrap_or_default();
    let ok = if multipart {
        // A file upload form: the token is one of its fields, before or after the file.
        multipart_field(&bytes, &content_type, CSRF_FIELD)
            .await
            .is_some_and(|v| same_secret(&v, expected))
    } else {
        form_urlencoded::parse(&bytes).any(|(k, v)| k == CSRF_FIELD && same_secret(&v, expected))
    };
    (
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        ok,
    )
}

/// The request's `Content-Type`, or empty.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A buffered `multipart/form-data` body, to read its fields.
pub async fn multipart(
    bytes: &axum::body::Bytes,
    content_type: &str,
) -> Result<axum::extract::Multipart, String> {
    let req = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(bytes.clone()))
        .map_err(|e| e.to_string())?;
    axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|e| e.to_string())
}

/// The text of the field `name` of a `multipart/form-data` body.
async fn multipart_field(
    bytes: &axum::body::Bytes,
    content_type: &str,
    name: &str,
) -> Option<String> {
    let mut form = multipart(bytes, content_type).await.ok()?;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some(name) {
            return field.text().await.ok();
        }
    }
    None
}

async fn audit(
    state: &AppState,
    spec: &RouteSpec,
    caller: &Caller,
    target: &str,
    status: StatusCode,
) {
    let (actor, role) = caller.principal.as_ref().map_or_else(
        || ("anonymous".to_owned(), String::new()),
        |p| (p.username.clone(), p.role.to_string()),
    );
    let entry = AuditEntry {
        at: Utc::now(),
        actor,
        role,
        origin: caller.origin.clone(),
        action: format!("{} {}", spec.method, spec.path),
        target: target.to_owned(),
        outcome: status.as_u16().to_string(),
    };
    write_audit(&state.store, &entry).await;
}

/// Writes an audit line; a failure is logged, never the request's failure (it already happened).
pub(super) async fn write_audit(store: &crate::store::Store, entry: &AuditEntry) {
    if let Err(error) = store.record_audit(entry).await {
        tracing::error!(%error, action = %entry.action, "could not write the audit line");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocate::PlanState;
    use crate::auth::Action;

    /// Every action has its words in both languages (the keys are built here, so the catalogue
    /// test does not see them).
    #[test]
    fn every_action_is_said_in_both_languages() {
        use Action::*;
        let all = [
            Public,
            ViewFleet,
            ViewStation,
            ViewOperations,
            AckAlert,
            ImportSettlement,
            ViewLedger,
            ViewPersonalData,
            ExportRoster,
            WorkOnPlans,
            MovePlan(PlanState::Draft, PlanState::Deliberated),
            OwnSession,
            ViewAudit,
            AllocateMonth,
            PayMonth,
            EditRegistry,
            ReviewMonth,
            SetOpeningBalance,
            PostAdjustment,
            RecordAttendance,
            DraftPlan,
            EditPool,
        ];
        for lang in [super::super::i18n::Lang::Zh, super::super::i18n::Lang::En] {
            for a in all {
                let text = action_text(lang, a);
                assert!(
                    !text.starts_with("action.") && !text.contains("plan.state_"),
                    "{a:?}: {text}"
                );
            }
        }
        assert_eq!(
            action_text(
                super::super::i18n::Lang::Zh,
                MovePlan(PlanState::PlanPublished, PlanState::TownshipReviewed)
            ),
            "将方案从“方案公开”推进到“乡镇审核”"
        );
    }
}
