//! `sunshare user ...` and `sunshare token ...`: the first administrator, password changes,
//! disabling a user who left, API tokens for dashboards and scripts.

use crate::accounts::{self, NewUser};
use crate::app;
use crate::config::Deployment;
use crate::domain::{Role, ScopeEntry};
use crate::store::Store;
use anyhow::Context as _;
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

/// Recorded as who acted in the audit log.
const ORIGIN: &str = "cli";

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is asked for twice on a terminal, else read from the first
    /// line of standard input.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        /// Login name: a-z, 0-9, '.', '_', '-'.
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The name shown on pages (e.g. 李会计).
        #[arg(long, default_value = "")]
        name: String,
        /// Villages (by code) this user answers for; repeat for several.
        #[arg(long = "village")]
        villages: Vec<String>,
        /// Townships (by id) this user answers for.
        #[arg(long = "township")]
        townships: Vec<String>,
        /// Counties (by id) this user answers for.
        #[arg(long = "county")]
        counties: Vec<String>,
        /// Everything the deployment holds (administrators, province staff).
        #[arg(long)]
        all: bool,
    },
    /// Set a new password (asked as for `add`).
    Passwd {
        #[arg(long, short)]
        config: PathBuf,
        username: String,
    },
    /// Stop a user from signing in; their sessions and API tokens stop working at once.
    Disable {
        #[arg(long, short)]
        config: PathBuf,
        username: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        #[arg(long, short)]
        config: PathBuf,
        username: String,
    },
    /// Every user with role, scope and state.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make an API token that acts as USER (same role and scope). Printed once; only its hash
    /// is kept.
    Add {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        /// What the token is for (e.g. "grafana", "county finance script").
        #[arg(long)]
        label: String,
        /// How long the token is valid.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Every token (never the secret).
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Revoke a token for good.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        /// The token's id (the part after `sst_`, as `token list` shows it).
        id: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|_| "use one of admin, operator, reviewer, accountant, viewer".to_owned())
}

async fn open(config: &std::path::Path) -> anyhow::Result<(Deployment, Store)> {
    let d = app::load_config(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let data_dir = d
        .storage
        .data_dir
        .clone()
        .unwrap_or_else(app::default_data_dir);
    let store = Store::open(&d.storage, &data_dir)
        .await
        .context("opening the store")?;
    Ok((d, store))
}

/// A new password: twice at a terminal (without echo), else the first line of standard input.
fn read_password() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        anyhow::ensure!(first == again, "the two passwords differ");
        return Ok(SecretString::from(first));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(SecretString::from(
        line.trim_end_matches(['\r', '\n']).to_owned(),
    ))
}

pub async fn user(cmd: UserCommand) -> anyhow::Result<String> {
    match cmd {
        UserCommand::Add {
            config,
            username,
            role,
            name,
            villages,
            townships,
            counties,
            all,
        } => {
            let mut scope: Vec<ScopeEntry> = Vec::new();
            if all {
                scope.push(ScopeEntry::All);
            }
            scope.extend(counties.into_iter().map(ScopeEntry::County));
            scope.extend(townships.into_iter().map(ScopeEntry::Township));
            scope.extend(villages.into_iter().map(ScopeEntry::Village));
            let (d, store) = open(&config).await?;
            let password = read_password()?;
            let user = NewUser {
                username: username.clone(),
                display_name: name,
                role,
                scope,
                password,
            };
            accounts::add_user(&store, &d, user, ORIGIN, ORIGIN).await?;
            Ok(format!("user {username} ({role}) created\n"))
        }
        UserCommand::Passwd { config, username } => {
            let (_, store) = open(&config).await?;
            let password = read_password()?;
            accounts::change_password(&store, &username, password, ORIGIN, ORIGIN).await?;
            Ok(format!("password of {username} changed\n"))
        }
        UserCommand::Disable { config, username } => {
            let (_, store) = open(&config).await?;
            accounts::set_disabled(&store, &username, true, ORIGIN, ORIGIN).await?;
            Ok(format!("user {username} disabled\n"))
        }
        UserCommand::Enable { config, username } => {
            let (_, store) = open(&config).await?;
            accounts::set_disabled(&store, &username, false, ORIGIN, ORIGIN).await?;
            Ok(format!("user {username} enabled\n"))
        }
        UserCommand::List { config } => {
            let (_, store) = open(&config).await?;
            let mut out = String::new();
            for a in store.accounts().await? {
                let scope: Vec<String> = a.scope.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}{}",
                    a.username,
                    a.role,
                    a.display_name,
                    scope.join(","),
                    if a.disabled { "\tDISABLED" } else { "" }
                );
            }
            Ok(out)
        }
    }
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<String> {
    match cmd {
        TokenCommand::Add {
            config,
            user,
            label,
            expires,
        } => {
            let (_, store) = open(&config).await?;
            let until = Utc::now()
                + chrono::Duration::from_std(expires).context("the expiry is too far away")?;
            let (row, token) =
                accounts::add_token(&store, &user, &label, until, ORIGIN, ORIGIN).await?;
            Ok(format!(
                "{}\n# token {} for {} ({}), valid until {}: shown once, keep it secret\n",
                token.expose_secret(),
                row.id,
                row.username,
                row.label,
                row.expires.format("%Y-%m-%d %H:%M UTC")
            ))
        }
        TokenCommand::List { config } => {
            let (_, store) = open(&config).await?;
            let now = Utc::now();
            let mut out = String::new();
            for t in store.tokens().await? {
                let state = match (t.revoked, t.expires <= now) {
                    (Some(_), _) => "revoked",
                    (None, true) => "expired",
                    (None, false) => "live",
                };
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{state}\tuntil {}\tlast used {}",
                    t.id,
                    t.username,
                    t.label,
                    t.expires.format("%Y-%m-%d"),
                    t.last_used.map_or_else(
                        || "never".to_owned(),
                        |u| u.format("%Y-%m-%d %H:%M").to_string()
                    )
                );
            }
            Ok(out)
        }
        TokenCommand::Revoke { config, id } => {
            let (_, store) = open(&config).await?;
            accounts::revoke_token(&store, &id, ORIGIN, ORIGIN).await?;
            Ok(format!("token {id} revoked\n"))
        }
    }
}
