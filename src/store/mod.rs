//! All SQL lives here. SQLite (a WAL-mode file in the data directory) is the embedded default;
//! PostgreSQL serves deployments where several instances share state. Both run the same queries
//! through sqlx's `Any` driver, with one migration directory per backend.
//!
//! Times are stored as UTC epoch milliseconds, money as integer fen. This module never decides
//! business rules: callers hand it validated data.

mod alerts;
mod energy;
mod ledger;
mod mqtt;
mod registry;
mod samples;

pub mod bench;

pub use alerts::{AckOutcome, AlertRow, HistoryRow, NewAlert, NotifyStatusRow};
pub use energy::{EnergyReading, SettlementInsert, SettlementRow};
pub use ledger::{
    AuditRow, EntryRow, MonthRow, TransitionRow, VillageMonthRow, MONTH_COMPUTED, MONTH_PAID,
};
pub use mqtt::{MqttRejectedRow, MqttUnknownRow};
pub use samples::{
    bucket_start, LatestRow, QuarantineEntry, QuarantineRow, RollupRow, StationNow, WriteOutcome,
    PERIODS,
};

use crate::config::{Backend, StorageConfig};
use secrecy::ExposeSecret;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("storage is misconfigured: {0}")]
    Config(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Opens the configured backend and brings its schema up to date.
    pub async fn open(cfg: &StorageConfig, data_dir: &Path) -> Result<Store> {
        match cfg.backend {
            Backend::Sqlite => Self::open_sqlite(&data_dir.join("sunshare.db")).await,
            Backend::Postgres => {
                let url = cfg
                    .url
                    .as_ref()
                    .ok_or_else(|| Error::Config("storage.url is required for postgres".into()))?;
                Self::open_postgres(url.expose_secret(), cfg.max_connections).await
            }
        }
    }

    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        // One writer at a time is SQLite's nature; readers run concurrently thanks to WAL. A 32 MiB
        // page cache and checkpoints every 32 MiB of WAL raise the batched write rate by about half;
        // statement journals in memory (`temp_store`) instead of temporary files by as much again,
        // since every multi-row upsert inside the batch's transaction opens one.
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                         PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 8192; \
                         PRAGMA temp_store = MEMORY;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        MIGRATE_SQLITE.run(&pool).await?;
        Ok(Store {
            pool,
            backend: Backend::Sqlite,
        })
    }

    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        MIGRATE_POSTGRES.run(&pool).await?;
        Ok(Store {
            pool,
            backend: Backend::Postgres,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Checks the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
