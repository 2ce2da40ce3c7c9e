//! Test support: a fresh store on every backend available.
//!
//! SQLite always runs. PostgreSQL runs when `SUNSHARE_TEST_PG_URL` names a server (CI sets it, which
//! makes it mandatory there); each call creates its own database so runs never see each other's data.

use super::{Error, Result, Store};
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable that names the PostgreSQL server for tests, e.g. `postgres://postgres@127.0.0.1:5432/test`.
pub const PG_URL_VAR: &str = "SUNSHARE_TEST_PG_URL";

/// A store for one test; keeps its temporary directory alive.
#[derive(Debug)]
pub struct TestStore {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile_dir::TempDir>,
}

mod tempfile_dir {
    /// A directory removed on drop (std-only, so the library needs no test crate).
    #[derive(Debug)]
    pub struct TempDir(pub std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}_{n}_{nanos}", std::process::id())
}

/// Says on the terminal that a test skipped for want of a service. Written straight to stderr, past
/// the test harness's output capture, so a passing run still shows what it did not check.
pub fn announce_skip(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> Result<TestStore> {
    let dir = std::env::temp_dir().join(format!("sunshare-test-{}", unique_suffix()));
    let store = Store::open_sqlite(&dir.join("sunshare.db")).await?;
    Ok(TestStore {
        name: "sqlite",
        store,
        _dir: Some(tempfile_dir::TempDir(dir)),
    })
}

/// A fresh database of its own on the PostgreSQL server of `SUNSHARE_TEST_PG_URL`: its URL, or
/// `None` (said as skipped) without the variable.
pub async fn postgres_database(test: &str) -> Result<Option<String>> {
    let Ok(admin_url) = std::env::var(PG_URL_VAR) else {
        announce_skip(&format!("SKIPPED (PostgreSQL) {test}: set {PG_URL_VAR}=postgres://postgres@127.0.0.1:5432/test to run it"));
        return Ok(None);
    };
    sqlx::any::install_default_drivers();
    let db = format!("sunshare_test_{}", unique_suffix());
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    match admin_url.rsplit_once('/') {
        Some((base, _)) => Ok(Some(format!("{base}/{db}"))),
        None => Err(Error::Config(format!("{PG_URL_VAR} has no database part"))),
    }
}

/// A store on a fresh PostgreSQL database, or `None` (with a skip line on stderr) when no server is
/// configured.
pub async fn postgres(test: &str) -> Result<Option<TestStore>> {
    let Some(url) = postgres_database(test).await? else {
        return Ok(None);
    };
    let store = Store::open_postgres(&url, 4).await?;
    Ok(Some(TestStore {
        name: "postgres",
        store,
        _dir: None,
    }))
}

/// Every backend this run can test: SQLite, and PostgreSQL when configured.
pub async fn all(test: &str) -> Result<Vec<TestStore>> {
    let mut out = vec![sqlite().await?];
    if let Some(pg) = postgres(test).await? {
        out.push(pg);
    }
    Ok(out)
}

/// A user with `role` over `scope` and a live API token acting as them: the token text, ready for
/// `Authorization: Bearer ...`. The user has no usable password (tests that sign in through the
/// login form create theirs with `accounts::add_user`).
pub async fn api_token(
    store: &Store,
    role: crate::domain::Role,
    scope: Vec<crate::domain::ScopeEntry>,
) -> Result<String> {
    let username = format!("t{}-{role}", COUNTER.fetch_add(1, Ordering::Relaxed));
    named_token(store, &username, role, scope).await
}

/// As [`api_token`], for a user named `username`.
pub async fn named_token(
    store: &Store,
    username: &str,
    role: crate::domain::Role,
    scope: Vec<crate::domain::ScopeEntry>,
) -> Result<String> {
    use secrecy::ExposeSecret as _;
    let now = chrono::Utc::now();
    let username = username.to_owned();
    let id = store
        .create_user(&username, &username, role, "!", &scope, now)
        .await?;
    let made = crate::auth::credentials::new_token();
    store
        .insert_token(&super::TokenRow {
            id: made.id,
            user_id: id,
            username,
            label: "test".into(),
            secret_sha256: made.secret_sha256,
            created: now,
            expires: now + chrono::Duration::hours(1),
            revoked: None,
            last_used: None,
        })
        .await?;
    Ok(made.token.expose_secret().to_owned())
}

/// An administrator's token over everything.
pub async fn admin_token(store: &Store) -> Result<String> {
    api_token(
        store,
        crate::domain::Role::Admin,
        vec![crate::domain::ScopeEntry::All],
    )
    .await
}
