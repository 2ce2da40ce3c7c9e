//! Users, their scopes, API tokens (as digests), browser sessions, failed logins and the audit
//! log. Never holds a password or a token in the clear: callers hand it hashes.

use super::{Error, Result, Store};
use crate::domain::{Account, Role, ScopeEntry};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v)
        .ok_or_else(|| Error::Corrupt(format!("timestamp {v} ms is out of range")))
}

/// An account with its password hash, for checking a login.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub account: Account,
    pub password_hash: String,
}

/// An API token as stored: never the secret, only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub user_id: i64,
    pub username: String,
    pub label: String,
    pub secret_sha256: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub revoked: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

/// One line of the audit log: who did what to which target, when, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    /// The client address, or `cli` for the account commands.
    pub origin: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Store {
    /// Adds a user with its scope. Fails with [`Error::Exists`] when the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        password_hash: &str,
        scope: &[ScopeEntry],
        at: DateTime<Utc>,
    ) -> Result<i64> {
        let mut tx = self.begin_write(self.pool()).await?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, display_name, role, password_hash, disabled, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, 0, $5, $5) RETURNING id",
        )
        .bind(username)
        .bind(display_name)
        .bind(<&str>::from(role))
        .bind(password_hash)
        .bind(ms(at))
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Exists(format!("user {username} already exists")))
            }
            Err(e) => return Err(e.into()),
        };
        for entry in scope {
            let (kind, code) = entry.parts();
            sqlx::query(
                "INSERT INTO user_scopes (user_id, kind, code) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(kind)
            .bind(code)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Replaces a user's password hash. False if there is no such user.
    pub async fn set_password(
        &self,
        username: &str,
        hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = $1, updated_ms = $2 WHERE username = $3")
                .bind(hash)
                .bind(ms(at))
                .bind(username)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Disables (or re-enables) a user. A disabled user's sessions and tokens stop working at
    /// once, since every request resolves the account afresh. False if there is no such user.
    pub async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE users SET disabled = $1, updated_ms = $2 WHERE username = $3")
                .bind(i64::from(disabled))
                .bind(ms(at))
                .bind(username)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>> {
        let row = sqlx::query(
            "SELECT id, username, display_name, role, disabled, password_hash FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut account = account_from(&row)?;
        account.scope = self.scope_of(account.id).await?;
        Ok(Some(Credentials {
            account,
            password_hash: row.try_get(5)?,
        }))
    }

    pub async fn account(&self, id: i64) -> Result<Option<Account>> {
        // One round trip (every request asks): the user with a row per scope entry.
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, u.disabled, s.kind, s.code \
             FROM users u LEFT JOIN user_scopes s ON s.user_id = u.id WHERE u.id = $1 \
             ORDER BY s.kind, s.code",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut account = account_from(first)?;
        for r in &rows {
            if r.try_get::<Option<String>, _>(5)?.is_some() {
                account.scope.push(scope_from(r, 5)?);
            }
        }
        Ok(Some(account))
    }

    /// Every user, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(
            "SELECT id, username, display_name, role, disabled FROM users ORDER BY username",
        )
        .fetch_all(self.pool())
        .await?;
        let scopes = sqlx::query("SELECT user_id, kind, code FROM user_scopes ORDER BY kind, code")
            .fetch_all(self.pool())
            .await?;
        let mut by_user: BTreeMap<i64, Vec<ScopeEntry>> = BTreeMap::new();
        for r in &scopes {
            by_user
                .entry(r.try_get(0)?)
                .or_default()
                .push(scope_from(r, 1)?);
        }
        rows.iter()
            .map(|r| {
                let mut a = account_from(r)?;
                a.scope = by_user.remove(&a.id).unwrap_or_default();
                Ok(a)
            })
            .collect()
    }

    async fn scope_of(&self, user: i64) -> Result<Vec<ScopeEntry>> {
        let rows = sqlx::query(
            "SELECT kind, code FROM user_scopes WHERE user_id = $1 ORDER BY kind, code",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| scope_from(r, 0)).collect()
    }

    pub async fn insert_token(&self, token: &TokenRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, label, secret_sha256, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(token.user_id)
        .bind(&token.label)
        .bind(&token.secret_sha256)
        .bind(ms(token.created))
        .bind(ms(token.expires))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(&format!("{TOKEN_SELECT} WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(token_from).transpose()
    }

    /// A token with its user's account, in one round trip (every API request asks).
    pub async fn token_with_account(&self, id: &str) -> Result<Option<(TokenRow, Account)>> {
        let rows = sqlx::query(
            "SELECT t.id, t.user_id, u.username, t.label, t.secret_sha256, t.created_ms, \
             t.expires_ms, t.revoked_ms, t.last_used_ms, \
             u.id, u.username, u.display_name, u.role, u.disabled, s.kind, s.code \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             LEFT JOIN user_scopes s ON s.user_id = u.id WHERE t.id = $1 ORDER BY s.kind, s.code",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let token = token_from(first)?;
        let mut account = account_at(first, 9)?;
        for r in &rows {
            if r.try_get::<Option<String>, _>(14)?.is_some() {
                account.scope.push(scope_from(r, 14)?);
            }
        }
        Ok(Some((token, account)))
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(&format!("{TOKEN_SELECT} ORDER BY t.created_ms"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(token_from).collect()
    }

    /// Notes when a token was last used (at most one write a minute per token).
    pub async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_ms = $1 WHERE id = $2 AND (last_used_ms IS NULL OR last_used_ms < $3)",
        )
        .bind(ms(at))
        .bind(id)
        .bind(ms(at) - 60_000)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Revokes a token for good. False if there is no such live token.
    pub async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(ms(at))
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A browser session's data, if it exists and has not expired. `key` is a digest of the
    /// session id: the cookie's value is never stored.
    pub async fn session(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, DateTime<Utc>)>> {
        let row = sqlx::query(
            "SELECT data, expires_ms FROM http_sessions WHERE id = $1 AND expires_ms > $2",
        )
        .bind(key)
        .bind(ms(now))
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get(0)?, from_ms(r.try_get(1)?)?)))
            .transpose()
    }

    /// Writes a new session; false if the key is already taken (the caller picks another id).
    pub async fn insert_session(
        &self,
        key: &str,
        data: &str,
        expires: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO http_sessions (id, data, expires_ms) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(key)
        .bind(data)
        .bind(ms(expires))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn save_session(&self, key: &str, data: &str, expires: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO http_sessions (id, data, expires_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_ms = excluded.expires_ms",
        )
        .bind(key)
        .bind(data)
        .bind(ms(expires))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_session(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM http_sessions WHERE id = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Drops expired sessions and login failures older than `failures_before`.
    pub async fn purge_expired_logins(
        &self,
        now: DateTime<Utc>,
        failures_before: DateTime<Utc>,
    ) -> Result<u64> {
        let sessions = sqlx::query("DELETE FROM http_sessions WHERE expires_ms <= $1")
            .bind(ms(now))
            .execute(self.pool())
            .await?;
        let failures = sqlx::query("DELETE FROM login_failures WHERE at_ms < $1")
            .bind(ms(failures_before))
            .execute(self.pool())
            .await?;
        Ok(sessions.rows_affected() + failures.rows_affected())
    }

    pub async fn record_login_failure(&self, subject: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO login_failures (subject, at_ms) VALUES ($1, $2)")
            .bind(subject)
            .bind(ms(at))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Failed logins for `subject` since `since`, and the oldest of them.
    pub async fn login_failures(
        &self,
        subject: &str,
        since: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>)> {
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(at_ms) FROM login_failures WHERE subject = $1 AND at_ms >= $2",
        )
        .bind(subject)
        .bind(ms(since))
        .fetch_one(self.pool())
        .await?;
        let oldest: Option<i64> = row.try_get(1)?;
        Ok((row.try_get(0)?, oldest.map(from_ms).transpose()?))
    }

    pub async fn clear_login_failures(&self, subject: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE subject = $1")
            .bind(subject)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn record_audit(&self, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at_ms, actor, role, origin, action, target, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(ms(e.at))
        .bind(&e.actor)
        .bind(&e.role)
        .bind(&e.origin)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.outcome)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest `limit` audit lines, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at_ms, actor, role, origin, action, target, outcome FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: from_ms(r.try_get(0)?)?,
                    actor: r.try_get(1)?,
                    role: r.try_get(2)?,
                    origin: r.try_get(3)?,
                    action: r.try_get(4)?,
                    target: r.try_get(5)?,
                    outcome: r.try_get(6)?,
                })
            })
            .collect()
    }
}

const TOKEN_SELECT: &str =
    "SELECT t.id, t.user_id, u.username, t.label, t.secret_sha256, t.created_ms, \
     t.expires_ms, t.revoked_ms, t.last_used_ms FROM api_tokens t JOIN users u ON u.id = t.user_id";

fn token_from(r: &AnyRow) -> Result<TokenRow> {
    let opt = |i: usize| -> Result<Option<DateTime<Utc>>> {
        r.try_get::<Option<i64>, _>(i)?.map(from_ms).transpose()
    };
    Ok(TokenRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        username: r.try_get(2)?,
        label: r.try_get(3)?,
        secret_sha256: r.try_get(4)?,
        created: from_ms(r.try_get(5)?)?,
        expires: from_ms(r.try_get(6)?)?,
        revoked: opt(7)?,
        last_used: opt(8)?,
    })
}

fn account_from(r: &AnyRow) -> Result<Account> {
    account_at(r, 0)
}

/// The account whose id, username, display name, role and disabled flag are the five columns
/// from `first`.
fn account_at(r: &AnyRow, first: usize) -> Result<Account> {
    let role: String = r.try_get(first + 3)?;
    Ok(Account {
        id: r.try_get(first)?,
        username: r.try_get(first + 1)?,
        display_name: r.try_get(first + 2)?,
        role: role
            .parse()
            .map_err(|_| Error::Corrupt(format!("user role '{role}' is not a role")))?,
        disabled: r.try_get::<i64, _>(first + 4)? != 0,
        scope: Vec::new(),
    })
}

fn scope_from(r: &AnyRow, first: usize) -> Result<ScopeEntry> {
    let kind: String = r.try_get(first)?;
    let code: String = r.try_get(first + 1)?;
    ScopeEntry::from_parts(&kind, &code)
        .ok_or_else(|| Error::Corrupt(format!("user scope kind '{kind}' is not a scope")))
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;
    use chrono::Duration;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap_or_default()
    }

    #[tokio::test]
    async fn users_scopes_tokens_sessions_failures_and_audit_on_every_backend() {
        for t in testing::all("accounts_round_trip").await.expect("stores") {
            let s = &t.store;
            let scope = vec![
                ScopeEntry::Township("T1".into()),
                ScopeEntry::Village("V1".into()),
            ];
            let id = s
                .create_user(
                    "li",
                    "李会计",
                    Role::Accountant,
                    "$argon2id$x",
                    &scope,
                    at(0),
                )
                .await
                .expect("create");
            let again = s
                .create_user("li", "x", Role::Viewer, "h", &[], at(1))
                .await;
            assert!(
                matches!(again, Err(Error::Exists(_))),
                "{}: {again:?}",
                t.name
            );
            let c = s.credentials("li").await.expect("read").expect("found");
            assert_eq!(c.password_hash, "$argon2id$x");
            assert_eq!(c.account.role, Role::Accountant);
            assert_eq!(c.account.display_name, "李会计");
            let mut got = c.account.scope.clone();
            got.sort();
            let mut want = scope.clone();
            want.sort();
            assert_eq!(got, want, "{}", t.name);
            assert!(s
                .set_password("li", "$argon2id$y", at(2))
                .await
                .expect("pw"));
            assert!(!s.set_password("nobody", "h", at(2)).await.expect("pw"));
            assert!(s.set_disabled("li", true, at(3)).await.expect("disable"));
            let a = s.account(id).await.expect("read").expect("found");
            assert!(a.disabled);
            assert_eq!(s.accounts().await.expect("list").len(), 1);

            let token = TokenRow {
                id: "0123456789abcdef".into(),
                user_id: id,
                username: "li".into(),
                label: "grafana".into(),
                secret_sha256: "d".repeat(64),
                created: at(0),
                expires: at(3600),
                revoked: None,
                last_used: None,
            };
            s.insert_token(&token).await.expect("token");
            assert_eq!(s.token(&token.id).await.expect("read"), Some(token.clone()));
            s.touch_token(&token.id, at(100)).await.expect("touch");
            s.touch_token(&token.id, at(130)).await.expect("touch");
            let used = s.token(&token.id).await.expect("read").expect("found");
            assert_eq!(used.last_used, Some(at(100)), "at most one write a minute");
            assert!(s.revoke_token(&token.id, at(200)).await.expect("revoke"));
            assert!(!s.revoke_token(&token.id, at(201)).await.expect("revoke"));
            assert_eq!(s.tokens().await.expect("list")[0].revoked, Some(at(200)));

            assert!(s.insert_session("k1", "{}", at(60)).await.expect("insert"));
            assert!(
                !s.insert_session("k1", "{}", at(60)).await.expect("insert"),
                "taken"
            );
            s.save_session("k1", "{\"a\":1}", at(120))
                .await
                .expect("save");
            assert_eq!(
                s.session("k1", at(0)).await.expect("load"),
                Some(("{\"a\":1}".to_owned(), at(120)))
            );
            assert_eq!(
                s.session("k1", at(120)).await.expect("load"),
                None,
                "expired"
            );
            s.record_login_failure("user:li", at(10))
                .await
                .expect("fail");
            s.record_login_failure("user:li", at(20))
                .await
                .expect("fail");
            assert_eq!(
                s.login_failures("user:li", at(15)).await.expect("count"),
                (1, Some(at(20)))
            );
            assert_eq!(
                s.purge_expired_logins(at(130), at(15))
                    .await
                    .expect("purge"),
                2,
                "the expired session and the old failure"
            );
            s.clear_login_failures("user:li").await.expect("clear");
            assert_eq!(
                s.login_failures("user:li", at(0)).await.expect("count").0,
                0
            );
            s.delete_session("k1").await.expect("delete");

            let entry = AuditEntry {
                at: at(5),
                actor: "li".into(),
                role: "accountant".into(),
                origin: "127.0.0.1".into(),
                action: "POST /x".into(),
                target: "/x".into(),
                outcome: "403".into(),
            };
            s.record_audit(&entry).await.expect("audit");
            let later = AuditEntry {
                at: at(5) + Duration::seconds(1),
                ..entry.clone()
            };
            s.record_audit(&later).await.expect("audit");
            assert_eq!(s.audit_log(10).await.expect("log"), vec![later, entry]);
        }
    }
}
