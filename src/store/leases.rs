//! Leases (migration 0026): how several instances on one PostgreSQL database share the Modbus
//! gateways. Every time here is the database's clock, so instances whose own clocks disagree (or
//! step) still agree on who holds what.

use super::{Result, Store};
use crate::config::Backend;
use sqlx::Row;
use std::time::Duration;

/// The database's clock in milliseconds since the epoch, as SQL.
fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS BIGINT)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Takes the lease `name` for `holder` for `ttl`, or renews it when `holder` has it: the
    /// lease's fence then, or `None` when another instance holds it and it has not run out.
    pub async fn claim_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>> {
        let now = now_ms(self.backend());
        let row = sqlx::query(&format!(
            "INSERT INTO leases (name, holder, fence, expires_ms) VALUES ($1, $2, 1, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET \
               fence = CASE WHEN leases.holder = excluded.holder THEN leases.fence \
                            ELSE leases.fence + 1 END, \
               holder = excluded.holder, expires_ms = excluded.expires_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_ms < {now} \
             RETURNING fence"
        ))
        .bind(name)
        .bind(holder)
        .bind(ms(ttl))
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
    }

    /// Renews every lease `holder` holds that has not run out, in one statement: the names still
    /// held (one missing was lost: it ran out, and another instance may have it now).
    pub async fn renew_leases(&self, holder: &str, ttl: Duration) -> Result<Vec<String>> {
        let now = now_ms(self.backend());
        let rows = sqlx::query(&format!(
            "UPDATE leases SET expires_ms = {now} + $2 \
             WHERE holder = $1 AND expires_ms >= {now} RETURNING name"
        ))
        .bind(holder)
        .bind(ms(ttl))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Ends `holder`'s lease `name` now (its fence stays), so another instance may take it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("UPDATE leases SET expires_ms = 0 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Who holds each lease whose name starts with `prefix` and has not run out.
    pub async fn lease_holders(&self, prefix: &str) -> Result<Vec<(String, String, i64)>> {
        let now = now_ms(self.backend());
        let rows = sqlx::query(&format!(
            "SELECT name, holder, fence FROM leases \
             WHERE name LIKE $1 AND expires_ms >= {now} ORDER BY name"
        ))
        .bind(format!("{prefix}%"))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Says `instance` is alive now.
    pub async fn beat(&self, instance: &str) -> Result<()> {
        let now = now_ms(self.backend());
        sqlx::query(&format!(
            "INSERT INTO instances (id, seen_ms) VALUES ($1, {now}) \
             ON CONFLICT (id) DO UPDATE SET seen_ms = excluded.seen_ms"
        ))
        .bind(instance)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// `instance` is stopping: it is no longer counted, and its leases end now.
    pub async fn leave(&self, instance: &str) -> Result<()> {
        let mut tx = self.begin_write(self.pool()).await?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE leases SET expires_ms = 0 WHERE holder = $1")
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The instances that said they were alive within `within`, by name.
    pub async fn live_instances(&self, within: Duration) -> Result<Vec<String>> {
        let now = now_ms(self.backend());
        let rows = sqlx::query(&format!(
            "SELECT id FROM instances WHERE seen_ms >= {now} - $1 ORDER BY id"
        ))
        .bind(ms(within))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}

/// A holding of a lease: writes made under it are refused once another instance holds the lease
/// (its fence is then higher) or it ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: &'static str,
    pub holder: String,
    pub fence: i64,
}

impl Store {
    /// Inside a write transaction: fails with [`super::Error::Fenced`] unless `fence` still holds
    /// its lease. On PostgreSQL the lease row is locked (`FOR SHARE`) until the transaction ends, so
    /// a takeover waits for it: nothing is written under a lost lease.
    pub(crate) async fn check_fence(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        fence: &Fence,
    ) -> Result<()> {
        let now = now_ms(self.backend());
        let lock = match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        };
        let held = sqlx::query(&format!(
            "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND fence = $3 \
             AND expires_ms >= {now}{lock}"
        ))
        .bind(fence.lease)
        .bind(&fence.holder)
        .bind(fence.fence)
        .fetch_optional(&mut **tx)
        .await?;
        if held.is_none() {
            return Err(super::Error::Fenced(format!(
                "{} no longer holds the {} lease with fence {}",
                fence.holder, fence.lease, fence.fence
            )));
        }
        Ok(())
    }
}

/// Whether this instance runs the singleton jobs now (alert evaluation and notification, the raw
/// retention purge, the energy recomputation): on PostgreSQL, while it holds the `jobs` lease by
/// its own monotonic clock (`crate::cluster::lead` keeps it); on SQLite (one instance) always.
#[derive(Debug, Clone)]
pub struct Leadership {
    held: std::sync::Arc<std::sync::Mutex<Option<(i64, tokio::time::Instant)>>>,
    /// The instance's name in the lease; `None` for the only instance (nothing to fence).
    holder: Option<String>,
}

impl Leadership {
    /// The only instance: it always leads.
    pub fn alone() -> Leadership {
        let forever = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        Leadership {
            held: std::sync::Arc::new(std::sync::Mutex::new(Some((0, forever)))),
            holder: None,
        }
    }

    /// `holder`, not leading until `crate::cluster::lead` takes the lease.
    pub fn follower(holder: String) -> Leadership {
        Leadership {
            held: std::sync::Arc::default(),
            holder: Some(holder),
        }
    }

    /// What the jobs' writes are fenced with while this instance leads (`None` when it does not,
    /// or is the only instance).
    pub fn fence_token(&self) -> Option<Fence> {
        let fence = self.fence()?;
        self.holder.as_ref().map(|holder| Fence {
            lease: JOBS_LEASE,
            holder: holder.clone(),
            fence,
        })
    }

    /// The lease's fence while this instance leads, `None` otherwise.
    pub fn fence(&self) -> Option<i64> {
        let held = *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.filter(|(_, until)| tokio::time::Instant::now() < *until)
            .map(|(fence, _)| fence)
    }

    /// Leading with `fence` until the instant (renewed), or not leading.
    pub fn set(&self, held: Option<(i64, tokio::time::Instant)>) {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = held;
    }
}

/// The lease the singleton jobs run under.
pub const JOBS_LEASE: &str = "jobs";
