//! Signing in and out: the login form, login rate limiting, logout, and the session store that
//! keeps browser sessions in the database (SQLite or PostgreSQL, so several instances share them).

use super::extract::{parse_form, Query};
use super::guard::{csrf_token, sign_in, Caller, SessionUser, CSRF_FIELD};
use super::i18n::{tr, Lang};
use super::page::{bare_frame, href};
use super::routes::{Access, Routes};
use super::{ApiError, AppState};
use crate::auth::credentials::{verify_nothing, verify_password};
use crate::auth::Action;
use crate::store::{AuditEntry, Store};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::Session;

/// Failed logins counted over this window.
pub const FAILURE_WINDOW: chrono::Duration = chrono::Duration::minutes(15);
/// Failed logins of one user name within the window before further attempts are refused.
pub const MAX_FAILURES_PER_USER: i64 = 5;
/// Failed logins from one address within the window (many names tried from one place).
pub const MAX_FAILURES_PER_ORIGIN: i64 = 20;

pub fn routes() -> Routes {
    Routes::new()
        .get("/login", Access::PUBLIC, login_page)
        .post("/login", Access::PUBLIC, login)
        .post("/logout", Access::fleet(Action::OwnSession), logout)
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Only a path on this site: never another host (`//evil`, `https://...`), and only printable
/// ASCII (a URL's path is percent-encoded), so it is always a valid `Location` header.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Percent-encodes a URL query component.
pub fn encode_component(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form_html(lang: Lang, csrf: &str, next: &str, username: &str, error: Option<&str>) -> Markup {
    html! {
        div.login {
            h1 { (tr(lang, "login.title")) }
            p.muted { (tr(lang, "login.intro")) }
            @if let Some(e) = error { p.note role="alert" #login-error { (e) } }
            form method="post" action="/login" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                input type="hidden" name="next" value=(next);
                label { (tr(lang, "login.username")) br;
                    input name="username" autocomplete="username" required value=(username); }
                label { (tr(lang, "login.password")) br;
                    input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { (tr(lang, "common.sign_in")) }
            }
            p.muted { (tr(lang, "login.public_note")) " " code { "/villages/村代码/notice/年-月" } }
            p.muted { a #lang-switch href=(href("/lang", &[("to", lang.other().code()), ("back", &href("/login", &[("next", next)]))])) { (tr(lang, "common.switch_to")) } }
        }
    }
}

fn login_document(lang: Lang, body: Markup) -> Html<String> {
    Html(bare_frame(lang, &tr(lang, "login.title"), body).into_string())
}

async fn login_page(
    session: Session,
    caller: Caller,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let next = safe_next(q.next.as_deref());
    if caller.who().is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    let csrf = csrf_token(&session).await?;
    Ok(login_document(caller.lang, form_html(caller.lang, &csrf, &next, "", None)).into_response())
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: SecretString,
    #[serde(default)]
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

async fn login(
    State(state): State<AppState>,
    session: Session,
    caller: Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form: LoginForm = parse_form(&body)?;
    let username = form.username.trim().to_owned();
    let next = safe_next(form.next.as_deref());
    let now = Utc::now();
    let user_key = format!("user:{}", username.to_lowercase());
    let origin_key = format!("origin:{}", caller.origin);
    if let Some(wait) = rate_limited(&state.store, &user_key, &origin_key, now).await? {
        audit(
            &state.store,
            &username,
            "",
            &caller.origin,
            "login",
            "refused: rate limited",
        )
        .await;
        return Err(ApiError::TooManyRequests {
            retry_after_s: wait,
        });
    }
    let found = state.store.credentials(&username).await?;
    let password = form.password.clone();
    let verified = match found {
        Some(c) => {
            let hash = c.password_hash.clone();
            let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
                .await
                .unwrap_or(false);
            (ok && !c.account.disabled).then_some(c.account)
        }
        None => {
            let _ = tokio::task::spawn_blocking(move || verify_nothing(&password)).await;
            None
        }
    };
    let Some(account) = verified else {
        state.store.record_login_failure(&user_key, now).await?;
        state.store.record_login_failure(&origin_key, now).await?;
        audit(
            &state.store,
            &username,
            "",
            &caller.origin,
            "login",
            "refused: wrong user name or password",
        )
        .await;
        let csrf = csrf_token(&session).await?;
        let page = form_html(
            caller.lang,
            &csrf,
            &next,
            &username,
            Some(&tr(caller.lang, "login.wrong")),
        );
        return Ok((StatusCode::UNAUTHORIZED, login_document(caller.lang, page)).into_response());
    };
    state.store.clear_login_failures(&user_key).await?;
    sign_in(
        &session,
        SessionUser {
            id: account.id,
            since_ms: now.timestamp_millis(),
        },
    )
    .await?;
    audit(
        &state.store,
        &account.username,
        &account.role.to_string(),
        &caller.origin,
        "login",
        "signed in",
    )
    .await;
    Ok(Redirect::to(&next).into_response())
}

/// Seconds to wait, if this user name or address has failed too often lately.
async fn rate_limited(
    store: &Store,
    user_key: &str,
    origin_key: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>, ApiError> {
    let since = now - FAILURE_WINDOW;
    for (key, max) in [
        (user_key, MAX_FAILURES_PER_USER),
        (origin_key, MAX_FAILURES_PER_ORIGIN),
    ] {
        let (count, oldest) = store.login_failures(key, since).await?;
        if count >= max {
            let free_at = oldest.unwrap_or(now) + FAILURE_WINDOW;
            let wait = (free_at - now).num_seconds().max(1);
            return Ok(Some(u64::try_from(wait).unwrap_or(1)));
        }
    }
    Ok(None)
}

async fn logout(
    State(state): State<AppState>,
    session: Session,
    caller: Caller,
) -> Result<Response, ApiError> {
    let who = caller.signed_in()?;
    audit(
        &state.store,
        &who.username,
        &who.role.to_string(),
        &caller.origin,
        "logout",
        "signed out",
    )
    .await;
    session
        .flush()
        .await
        .map_err(|e| ApiError::Internal(format!("session: {e}")))?;
    Ok(Redirect::to("/login").into_response())
}

async fn audit(store: &Store, actor: &str, role: &str, origin: &str, action: &str, outcome: &str) {
    let entry = AuditEntry {
        at: Utc::now(),
        actor: actor.to_owned(),
        role: role.to_owned(),
        origin: origin.to_owned(),
        action: action.to_owned(),
        target: "/login".to_owned(),
        outcome: outcome.to_owned(),
    };
    super::guard::write_audit(store, &entry).await;
}

/// Browser sessions in the database. The row key is a SHA-256 of the session id, so the
/// database never holds a usable cookie value.
#[derive(Debug, Clone)]
pub struct SessionBackend {
    pub store: Store,
}

fn row_key(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn expiry_of(record: &Record) -> DateTime<Utc> {
    DateTime::from_timestamp(record.expiry_date.unix_timestamp(), 0).unwrap_or_else(Utc::now)
}

#[async_trait::async_trait]
impl SessionStore for SessionBackend {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        // A new id on the rare collision, as many times as it takes.
        loop {
            if self
                .store
                .insert_session(&row_key(&record.id), &data, expiry_of(record))
                .await
                .map_err(backend)?
            {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        self.store
            .save_session(&row_key(&record.id), &data, expiry_of(record))
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some((data, expires)) = self
            .store
            .session(&row_key(id), Utc::now())
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(expires.timestamp())
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.store
            .delete_session(&row_key(id))
            .await
            .map_err(backend)
    }
}

/// Deletes expired sessions and login failures older than the rate-limit window, every
/// `every`, until `cancel` fires. Several instances may run it: deleting twice is harmless.
pub async fn purge_logins(
    store: Store,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        match store.purge_expired_logins(now, now - FAILURE_WINDOW).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "expired sessions and old login failures deleted"),
            Err(error) => {
                tracing::warn!(%error, "could not delete expired sessions; the next run retries")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/villages/1")), "/villages/1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
        assert_eq!(safe_next(Some("/x\r\nSet-Cookie: a=b")), "/");
        assert_eq!(safe_next(Some("/村")), "/");
        assert_eq!(
            safe_next(Some("/villages?month=2026-01")),
            "/villages?month=2026-01"
        );
    }
}
