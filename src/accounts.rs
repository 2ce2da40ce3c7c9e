//! Account administration: the one place users and API tokens are made, changed and retired,
//! each change checked (name, password rules, a scope the deployment knows) and audited. The
//! command line and the demo call it; the store only keeps what it is handed.

use crate::auth::credentials::{self, check_new_password, hash_password, CredentialError};
use crate::config::Deployment;
use crate::domain::{Account, Role, ScopeEntry};
use crate::store::{self, AuditEntry, Store, TokenRow};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("user name '{0}': use 2 to 32 characters a-z, 0-9, '.', '_' or '-', starting with a letter or digit")]
    BadUsername(String),
    #[error("password: {0}")]
    Password(#[from] CredentialError),
    #[error("scope: {0}")]
    Scope(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// A user to create.
#[derive(Debug)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub scope: Vec<ScopeEntry>,
    pub password: SecretString,
}

fn check_username(name: &str) -> Result<(), Error> {
    let ok = (2..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::BadUsername(name.to_owned()))
    }
}

/// Every code in the scope names a place of the deployment, and the scope fits the role: an
/// accountant answers for villages, a reviewer for townships (or villages).
pub fn check_scope(d: &Deployment, role: Role, scope: &[ScopeEntry]) -> Result<(), Error> {
    if scope.is_empty() {
        return Err(Error::Scope(
            "give the places this user answers for (--village, --township, --county or --all)"
                .into(),
        ));
    }
    for entry in scope {
        let known = match entry {
            ScopeEntry::All => true,
            ScopeEntry::County(c) => d.counties.iter().any(|x| x.id.as_str() == c),
            ScopeEntry::Township(t) => d.townships.iter().any(|x| x.id.as_str() == t),
            ScopeEntry::Village(v) => d.villages.iter().any(|x| x.code.as_str() == v),
        };
        if !known {
            return Err(Error::Scope(format!(
                "{entry} is not declared in the deployment file"
            )));
        }
        let fits = match role {
            Role::Accountant => matches!(entry, ScopeEntry::Village(_)),
            Role::Reviewer => matches!(entry, ScopeEntry::Township(_) | ScopeEntry::Village(_)),
            Role::Admin | Role::Operator | Role::Viewer => true,
        };
        if !fits {
            return Err(Error::Scope(format!(
                "the {role} role answers for {}, not {entry}",
                if role == Role::Accountant {
                    "villages"
                } else {
                    "townships or villages"
                }
            )));
        }
    }
    Ok(())
}

async fn audit(
    store: &Store,
    actor: &str,
    origin: &str,
    action: &str,
    target: &str,
    outcome: &str,
) -> Result<(), Error> {
    store
        .record_audit(&AuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            role: String::new(),
            origin: origin.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
        })
        .await?;
    Ok(())
}

/// Hashing is slow on purpose: off the async runtime.
async fn hash(password: SecretString) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::Password(CredentialError::Hash(e.to_string())))?
        .map_err(Error::from)
}

/// Creates a user. `actor` and `origin` go to the audit log (`cli`, `demo`, an address).
pub async fn add_user(
    store: &Store,
    d: &Deployment,
    user: NewUser,
    actor: &str,
    origin: &str,
) -> Result<i64, Error> {
    check_username(&user.username)?;
    check_new_password(&user.username, &user.password)?;
    check_scope(d, user.role, &user.scope)?;
    let hashed = hash(user.password).await?;
    let display = if user.display_name.trim().is_empty() {
        user.username.clone()
    } else {
        user.display_name.trim().to_owned()
    };
    let id = store
        .create_user(
            &user.username,
            &display,
            user.role,
            &hashed,
            &user.scope,
            Utc::now(),
        )
        .await?;
    let scope: Vec<String> = user.scope.iter().map(ToString::to_string).collect();
    audit(
        store,
        actor,
        origin,
        "user add",
        &user.username,
        &format!("{} {}", user.role, scope.join(",")),
    )
    .await?;
    Ok(id)
}

pub async fn change_password(
    store: &Store,
    username: &str,
    password: SecretString,
    actor: &str,
    origin: &str,
) -> Result<(), Error> {
    check_new_password(username, &password)?;
    let hashed = hash(password).await?;
    if !store.set_password(username, &hashed, Utc::now()).await? {
        return Err(Error::NotFound(format!("there is no user {username}")));
    }
    audit(
        store,
        actor,
        origin,
        "user passwd",
        username,
        "password changed",
    )
    .await
}

pub async fn set_disabled(
    store: &Store,
    username: &str,
    disabled: bool,
    actor: &str,
    origin: &str,
) -> Result<(), Error> {
    if !store.set_disabled(username, disabled, Utc::now()).await? {
        return Err(Error::NotFound(format!("there is no user {username}")));
    }
    let what = if disabled { "disabled" } else { "enabled" };
    audit(store, actor, origin, "user disable", username, what).await
}

/// Makes an API token for `username`, valid until `expires`. The token text is returned once and
/// never stored.
pub async fn add_token(
    store: &Store,
    username: &str,
    label: &str,
    expires: DateTime<Utc>,
    actor: &str,
    origin: &str,
) -> Result<(TokenRow, SecretString), Error> {
    let account: Account = store
        .credentials(username)
        .await?
        .ok_or_else(|| Error::NotFound(format!("there is no user {username}")))?
        .account;
    let made = credentials::new_token();
    let row = TokenRow {
        id: made.id,
        user_id: account.id,
        username: account.username,
        label: label.to_owned(),
        secret_sha256: made.secret_sha256,
        created: Utc::now(),
        expires,
        revoked: None,
        last_used: None,
    };
    store.insert_token(&row).await?;
    audit(
        store,
        actor,
        origin,
        "token add",
        &row.id,
        &format!("for {username} ({label}) until {}", expires.to_rfc3339()),
    )
    .await?;
    Ok((row, made.token))
}

pub async fn revoke_token(store: &Store, id: &str, actor: &str, origin: &str) -> Result<(), Error> {
    if !store.revoke_token(id, Utc::now()).await? {
        return Err(Error::NotFound(format!("there is no live token {id}")));
    }
    audit(store, actor, origin, "token revoke", id, "revoked").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_plain() {
        assert!(check_username("acct-149901101201").is_ok());
        assert!(check_username("li.hua").is_ok());
        assert!(check_username("Li").is_err());
        assert!(check_username("-x").is_err());
        assert!(check_username("a").is_err());
        assert!(check_username("张三").is_err());
    }

    #[test]
    fn scopes_must_exist_and_fit_the_role() {
        let d = Deployment::from_str_with_env(
            "t.toml",
            "[[counties]]\nid = \"C\"\nname = \"c\"\nprovince = \"shanxi\"\n\
             [[townships]]\nid = \"T\"\nname = \"t\"\ncounty = \"C\"\n\
             [[villages]]\ncode = \"V\"\nname = \"v\"\ntownship = \"T\"\n",
            &[],
            &Default::default(),
        )
        .expect("valid");
        let v = ScopeEntry::Village("V".into());
        assert!(check_scope(&d, Role::Accountant, std::slice::from_ref(&v)).is_ok());
        assert!(check_scope(&d, Role::Accountant, &[ScopeEntry::County("C".into())]).is_err());
        assert!(check_scope(&d, Role::Accountant, &[ScopeEntry::Village("X".into())]).is_err());
        assert!(check_scope(&d, Role::Reviewer, &[ScopeEntry::Township("T".into())]).is_ok());
        assert!(check_scope(&d, Role::Operator, &[ScopeEntry::All]).is_ok());
        assert!(check_scope(&d, Role::Viewer, &[]).is_err());
    }
}
