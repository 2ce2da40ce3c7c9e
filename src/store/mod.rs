//! All SQL lives here. SQLite (a WAL-mode file in the data directory) is the embedded default;
//! PostgreSQL serves deployments where several instances share state. Both run the same queries
//! through sqlx's `Any` driver, with one migration directory per backend.
//!
//! Times are stored as UTC epoch milliseconds, money as integer fen. This module never decides
//! business rules: callers hand it validated data.

mod accounts;
mod alerts;
mod behind;
mod days;
mod energy;
mod households;
mod leases;
mod ledger;
mod mqtt;
mod plans;
mod pools;
mod registry;
mod samples;

#[cfg(feature = "bench")]
pub mod bench;

pub use accounts::{AuditEntry, Credentials, TokenRow};
pub use alerts::{AckOutcome, AlertRow, HistoryRow, NewAlert, NotifyStatusRow};
pub use days::{DayFiguresRow, DaysSignature, StoredDay, StoredMonth};
pub use energy::{EnergyReading, SettlementImportRow, SettlementInsert, SettlementRow};
pub use households::{
    HouseholdChange, HouseholdChangeRow, HouseholdRow, JobChange, JobRow, Origin, RosterImportRow,
    SEEDED_BY,
};
pub use leases::{Fence, Leadership, JOBS_LEASE};
pub use ledger::{
    AdjustmentRow, AdvanceRow, AttendanceRow, AuditRow, EntryRow, MonthRecord, MonthRow,
    OpeningRow, PoolLineRecord, ReceiptRow, ReviewRow, StationMonthRecord, TransitionRow,
    VillageMonthRecord, VillageMonthRow, MONTH_COMPUTED, MONTH_PAID,
};
pub use mqtt::{MqttRejectedRow, MqttUnknownRow};
pub use plans::{PlanEntryRow, PlanRow, PlanWrite, StoredPlan};
pub use pools::{PoolMemberRow, PoolWrite};
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};

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
    #[error("cannot encode {0}")]
    Encode(String),
    #[error("{0}")]
    Exists(String),
    /// A singleton job's write after its instance lost the lease it runs under.
    #[error("fenced off: {0}")]
    Fenced(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A time stored as epoch milliseconds. One out of range is corrupt data, reported with the column
/// it came from, never read as 1970.
pub(crate) fn stored_time(ms: i64, column: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        Error::Corrupt(format!(
            "{column} holds {ms}, which is not a time in milliseconds"
        ))
    })
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// SQLite: the one connection that writes samples, rollups and quarantine.
    writer: Option<AnyPool>,
    backend: Backend,
    /// Rollups and latest values not yet written (SQLite only; see `behind`).
    behind: Option<behind::Behind>,
    /// Counts the writes that change what `latest`, the rollups or the registry hold, so a cache
    /// of figures derived from them (the fleet page's) knows when it is out of date.
    changes: Arc<AtomicU64>,
    /// Stops the SQLite checkpoint task when the last handle goes.
    _checkpoints: Option<Arc<DropGuard>>,
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies committed WAL frames into the database file on a connection of its own, so the writer
/// never waits for it. PASSIVE: it never blocks readers or the writer, and whatever it cannot copy
/// yet is copied the next time.
async fn checkpoints(pool: AnyPool, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if pool.is_closed() {
            return;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(%error, "WAL checkpoint failed; the next one will retry");
        }
    }
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
        let mut store = Self::open_sqlite_write_through(path).await?;
        let pending = store.recover_pending().await?;
        store.behind = Some(Arc::new(tokio::sync::Mutex::new(pending)));
        Ok(store)
    }

    /// SQLite with rollups and latest values written in each batch's transaction, as PostgreSQL
    /// does: the benchmark's measure of what writing behind gains. The watermark is kept, so the
    /// file can later be opened normally.
    #[doc(hidden)]
    pub async fn open_sqlite_write_through(path: &Path) -> Result<Store> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = Self::sqlite_pool(&url, 4).await?;
        MIGRATE_SQLITE.run(&pool).await?;
        // Samples are written on a connection of their own, so its page cache stays warm: with
        // writes taking turns on the pool's connections, each would first re-read the pages the
        // others changed.
        let writer = Self::sqlite_pool(&url, 1).await?;
        let stop = CancellationToken::new();
        tokio::spawn(checkpoints(pool.clone(), stop.clone()));
        Ok(Store {
            pool,
            writer: Some(writer),
            backend: Backend::Sqlite,
            behind: None,
            changes: Arc::default(),
            _checkpoints: Some(Arc::new(stop.drop_guard())),
        })
    }

    async fn sqlite_pool(url: &str, connections: u32) -> Result<AnyPool> {
        // One writer at a time is SQLite's nature; readers run concurrently thanks to WAL. A 32 MiB
        // page cache raises the batched write rate by about half; statement journals in memory
        // (`temp_store`) instead of temporary files by as much again, since every multi-row upsert
        // inside the batch's transaction opens one. Checkpoints run on their own connection
        // (`checkpoints`), beside the writer rather than inside its commits; the automatic one
        // at 64 MiB of WAL is only a backstop.
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            // The connections are threads of this process on a local file: a ping before each
            // query (a round trip to the connection's thread) would only double the hops.
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                         PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 16384; \
                         PRAGMA temp_store = MEMORY;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(pool)
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
            writer: None,
            backend: Backend::Postgres,
            behind: None,
            changes: Arc::default(),
            _checkpoints: None,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Where samples are written: SQLite's dedicated connection, or the shared pool.
    pub(crate) fn writer(&self) -> &AnyPool {
        self.writer.as_ref().unwrap_or(&self.pool)
    }

    pub(crate) fn behind(&self) -> Option<&behind::Behind> {
        self.behind.as_ref()
    }

    /// How many changing writes this handle (and its clones) has made: equal numbers mean the
    /// samples, rollups and registry read before are still what the store holds. Writes by other
    /// instances sharing a PostgreSQL database are not counted.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    pub(crate) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Begins a transaction that writes, on `pool` (the shared pool or SQLite's writer). On SQLite
    /// its first statement is a write that changes nothing, so it takes the write lock before any
    /// read, waiting up to the busy timeout for another writer: a transaction that reads before it
    /// writes never fails with "database is locked" because another connection committed after its
    /// read (a plain deferred one would). `BEGIN IMMEDIATE` would do the same, but after SQLite
    /// rolls a transaction back by itself (a full disk) sqlx refuses every later `BEGIN IMMEDIATE`
    /// on that connection, while a plain `BEGIN` goes on working. On PostgreSQL, a plain `BEGIN`.
    pub(crate) async fn begin_write(
        &self,
        pool: &AnyPool,
    ) -> std::result::Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let mut tx = pool.begin().await?;
        if self.backend() == Backend::Sqlite {
            sqlx::query("UPDATE leases SET fence = fence WHERE 0 = 1")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Checks the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Writes what is pending, then closes the connections.
    pub async fn close(&self) {
        if let Err(error) = self.settle().await {
            // Not lost: the next start rebuilds it from the raw rows.
            tracing::warn!(%error, "could not write pending rollups before closing");
        }
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        self.pool.close().await;
    }
}

#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
