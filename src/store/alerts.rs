//! Alert rows, their history and the health of each notification destination.

use super::{Result, Store};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub station: String,
    pub subject: String,
    pub county: String,
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    pub message: String,
    pub opened_at: DateTime<Utc>,
    /// When the condition was first seen (before the grace period).
    pub since: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub ack_by: Option<String>,
    pub ack_note: Option<String>,
    pub ack_at: Option<DateTime<Utc>>,
    pub flapping: bool,
}

/// What opening an alert records.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert<'a> {
    pub kind: &'a str,
    pub station: &'a str,
    pub subject: &'a str,
    pub county: &'a str,
    pub severity: &'a str,
    pub message: &'a str,
    pub opened_at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub flapping: bool,
}

/// One line of an alert's history, with the alert's identity for display.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub alert_id: i64,
    pub at: DateTime<Utc>,
    /// `opened`, `acknowledged`, `resolved`.
    pub event: String,
    pub actor: Option<String>,
    pub note: Option<String>,
    pub kind: String,
    pub station: String,
    pub subject: String,
    pub severity: String,
}

/// A notification destination's last outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyStatusRow {
    pub sink: String,
    pub last_ok: Option<DateTime<Utc>>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub failures: i64,
}

impl NotifyStatusRow {
    /// The last attempt failed.
    pub fn failing(&self) -> bool {
        match (self.last_error_at, self.last_ok) {
            (Some(e), Some(ok)) => e > ok,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// How an acknowledgement went.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    Acknowledged(Box<AlertRow>),
    NotFound,
    AlreadyResolved,
}

const COLUMNS: &str =
    "id, kind, station, subject, county, severity, state, message, opened_ms, since_ms, \
     resolved_ms, ack_by, ack_note, ack_ms, flapping";

fn ms(t: i64, column: &str) -> Result<DateTime<Utc>> {
    super::stored_time(t, column)
}

fn alert_row(r: &AnyRow) -> Result<AlertRow> {
    Ok(AlertRow {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        station: r.try_get(2)?,
        subject: r.try_get(3)?,
        county: r.try_get(4)?,
        severity: r.try_get(5)?,
        state: r.try_get(6)?,
        message: r.try_get(7)?,
        opened_at: ms(r.try_get(8)?, "alerts.opened_ms")?,
        since: ms(r.try_get(9)?, "alerts.since_ms")?,
        resolved_at: r
            .try_get::<Option<i64>, _>(10)?
            .map(|t| ms(t, "alerts.resolved_ms"))
            .transpose()?,
        ack_by: r.try_get(11)?,
        ack_note: r.try_get(12)?,
        ack_at: r
            .try_get::<Option<i64>, _>(13)?
            .map(|t| ms(t, "alerts.ack_ms"))
            .transpose()?,
        flapping: r.try_get::<i64, _>(14)? != 0,
    })
}

impl Store {
    /// Records a new alert and its `opened` history line; returns its id.
    pub async fn open_alert(&self, a: &NewAlert<'_>) -> Result<i64> {
        self.open_alert_fenced(a, None).await
    }

    /// [`Store::open_alert`] under `fence` (the alert engine of a leading instance): refused with
    /// [`super::Error::Fenced`] once another instance took the jobs lease.
    pub async fn open_alert_fenced(
        &self,
        a: &NewAlert<'_>,
        fence: Option<&super::Fence>,
    ) -> Result<i64> {
        let mut tx = self.begin_write(self.pool()).await?;
        if let Some(f) = fence {
            self.check_fence(&mut tx, f).await?;
        }
        let row = sqlx::query(
            "INSERT INTO alerts (kind, station, subject, county, severity, state, message, opened_ms, \
             since_ms, flapping) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9) RETURNING id",
        )
        .bind(a.kind)
        .bind(a.station)
        .bind(a.subject)
        .bind(a.county)
        .bind(a.severity)
        .bind(a.message)
        .bind(a.opened_at.timestamp_millis())
        .bind(a.since.timestamp_millis())
        .bind(i64::from(a.flapping))
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get(0)?;
        sqlx::query(
            "INSERT INTO alert_history (alert_id, at_ms, event, actor, note) VALUES ($1, $2, 'opened', NULL, $3)",
        )
        .bind(id)
        .bind(a.opened_at.timestamp_millis())
        .bind(a.message)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Marks an alert resolved (idempotent) with a `resolved` history line; false when it was
    /// resolved already.
    pub async fn resolve_alert(&self, id: i64, at: DateTime<Utc>, message: &str) -> Result<bool> {
        self.resolve_alert_fenced(id, at, message, None).await
    }

    /// [`Store::resolve_alert`] under `fence`, as [`Store::open_alert_fenced`].
    pub async fn resolve_alert_fenced(
        &self,
        id: i64,
        at: DateTime<Utc>,
        message: &str,
        fence: Option<&super::Fence>,
    ) -> Result<bool> {
        let mut tx = self.begin_write(self.pool()).await?;
        if let Some(f) = fence {
            self.check_fence(&mut tx, f).await?;
        }
        let done = sqlx::query(
            "UPDATE alerts SET state = 'resolved', resolved_ms = $1 WHERE id = $2 AND state <> 'resolved'",
        )
        .bind(at.timestamp_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let resolved = done.rows_affected() > 0;
        if resolved {
            sqlx::query(
                "INSERT INTO alert_history (alert_id, at_ms, event, actor, note) VALUES ($1, $2, 'resolved', NULL, $3)",
            )
            .bind(id)
            .bind(at.timestamp_millis())
            .bind(message)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(resolved)
    }

    /// Keeps an open alert's description current (e.g. the minutes of silence).
    pub async fn update_alert_message(&self, id: i64, message: &str) -> Result<()> {
        sqlx::query("UPDATE alerts SET message = $1 WHERE id = $2 AND state <> 'resolved'")
            .bind(message)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records who acknowledged an unresolved alert and why.
    pub async fn ack_alert(
        &self,
        id: i64,
        by: &str,
        note: &str,
        at: DateTime<Utc>,
    ) -> Result<AckOutcome> {
        let mut tx = self.begin_write(self.pool()).await?;
        let done = sqlx::query(
            "UPDATE alerts SET state = 'acknowledged', ack_by = $1, ack_note = $2, ack_ms = $3 \
             WHERE id = $4 AND state <> 'resolved'",
        )
        .bind(by)
        .bind(note)
        .bind(at.timestamp_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(match self.alert(id).await? {
                None => AckOutcome::NotFound,
                Some(_) => AckOutcome::AlreadyResolved,
            });
        }
        sqlx::query(
            "INSERT INTO alert_history (alert_id, at_ms, event, actor, note) VALUES ($1, $2, 'acknowledged', $3, $4)",
        )
        .bind(id)
        .bind(at.timestamp_millis())
        .bind(by)
        .bind(note)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match self.alert(id).await? {
            Some(row) => AckOutcome::Acknowledged(Box::new(row)),
            None => AckOutcome::NotFound,
        })
    }

    pub async fn alert(&self, id: i64) -> Result<Option<AlertRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(alert_row).transpose()
    }

    /// Unresolved alerts (most urgent first), or all alerts newest first, at most `limit`.
    pub async fn alerts(&self, unresolved_only: bool, limit: i64) -> Result<Vec<AlertRow>> {
        let sql = if unresolved_only {
            format!(
                "SELECT {COLUMNS} FROM alerts WHERE state <> 'resolved' ORDER BY \
                 CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 ELSE 2 END, opened_ms, id LIMIT $1"
            )
        } else {
            format!("SELECT {COLUMNS} FROM alerts ORDER BY opened_ms DESC, id DESC LIMIT $1")
        };
        let rows = sqlx::query(&sql).bind(limit).fetch_all(self.pool()).await?;
        rows.iter().map(alert_row).collect()
    }

    /// The unresolved alert with this identity, if any (another instance may have opened it).
    pub async fn find_unresolved_alert(
        &self,
        kind: &str,
        station: &str,
        subject: &str,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT id FROM alerts WHERE kind = $1 AND station = $2 AND subject = $3 AND state <> 'resolved'",
        )
        .bind(kind)
        .bind(station)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
    }

    pub async fn count_unresolved_alerts(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM alerts WHERE state <> 'resolved'")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The newest history lines across all alerts, in the order they were recorded.
    pub async fn alert_history(&self, limit: i64) -> Result<Vec<HistoryRow>> {
        let rows = sqlx::query(
            "SELECT h.alert_id, h.at_ms, h.event, h.actor, h.note, a.kind, a.station, a.subject, a.severity \
             FROM alert_history h JOIN alerts a ON a.id = h.alert_id ORDER BY h.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    alert_id: r.try_get(0)?,
                    at: ms(r.try_get(1)?, "alert_history.at_ms")?,
                    event: r.try_get(2)?,
                    actor: r.try_get(3)?,
                    note: r.try_get(4)?,
                    kind: r.try_get(5)?,
                    station: r.try_get(6)?,
                    subject: r.try_get(7)?,
                    severity: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Records the outcome of a delivery to `sink`: success when `error` is `None`.
    pub async fn record_notify(
        &self,
        sink: &str,
        at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<()> {
        let t = at.timestamp_millis();
        match error {
            None => {
                sqlx::query(
                    "INSERT INTO notify_status (sink, last_ok_ms, failures) VALUES ($1, $2, 0) \
                     ON CONFLICT (sink) DO UPDATE SET last_ok_ms = excluded.last_ok_ms",
                )
                .bind(sink)
                .bind(t)
                .execute(self.pool())
                .await?;
            }
            Some(e) => {
                sqlx::query(
                    "INSERT INTO notify_status (sink, last_error_ms, last_error, failures) VALUES ($1, $2, $3, 1) \
                     ON CONFLICT (sink) DO UPDATE SET last_error_ms = excluded.last_error_ms, \
                     last_error = excluded.last_error, failures = notify_status.failures + 1",
                )
                .bind(sink)
                .bind(t)
                .bind(e)
                .execute(self.pool())
                .await?;
            }
        }
        Ok(())
    }

    pub async fn notify_status(&self) -> Result<Vec<NotifyStatusRow>> {
        let rows = sqlx::query(
            "SELECT sink, last_ok_ms, last_error_ms, last_error, failures FROM notify_status ORDER BY sink",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NotifyStatusRow {
                    sink: r.try_get(0)?,
                    last_ok: r
                        .try_get::<Option<i64>, _>(1)?
                        .map(|t| ms(t, "notify_status.last_ok_ms"))
                        .transpose()?,
                    last_error_at: r
                        .try_get::<Option<i64>, _>(2)?
                        .map(|t| ms(t, "notify_status.last_error_ms"))
                        .transpose()?,
                    last_error: r.try_get(3)?,
                    failures: r.try_get(4)?,
                })
            })
            .collect()
    }
}
