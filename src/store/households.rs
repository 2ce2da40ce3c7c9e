//! The household registry: households with their status history, the public-welfare jobs they
//! hold, every change with who made it and what it changed, and roster files waiting to be
//! applied. The deployment file only seeds the tables (a household or job it names is inserted
//! once); from then on the rows here are the truth.

use super::{Error, Result, Store};
use crate::domain::{
    Fen, Household, HouseholdId, JobId, JobPost, LabourCapacity, StatusPeriod, VillageId,
};
use chrono::NaiveDate;
use sqlx::Row;

/// A household as the registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdRow {
    pub household: Household,
    pub origin: Origin,
    /// When it was retired (epoch ms) and why; a retired household is not paid or counted.
    pub retired_ms: Option<i64>,
    pub retired_reason: Option<String>,
    pub updated_ms: i64,
    pub updated_by: String,
}

impl HouseholdRow {
    pub fn retired(&self) -> bool {
        self.retired_ms.is_some()
    }
}

/// Where a household entered the registry.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[strum(serialize_all = "snake_case")]
pub enum Origin {
    /// The deployment file seeded it.
    File,
    /// Added with the form.
    Web,
    /// Added by a roster import.
    Roster,
}

/// What one change does.
#[derive(Debug, Clone, PartialEq)]
pub enum HouseholdChange {
    /// A new household.
    Add(Household, Origin),
    /// New values for a household (same id and village); `fields` names what changed.
    Edit {
        household: Household,
        fields: Vec<String>,
    },
    /// No longer paid or counted, with the reason.
    Retire { id: HouseholdId, reason: String },
}

/// One line of a household's change history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdChangeRow {
    pub at_ms: i64,
    pub who: String,
    /// `added`, `edited`, `retired` or `imported`.
    pub what: String,
    /// The fields changed (edits), the reason (retirement) or the file (imports).
    pub detail: String,
}

/// A roster file read and previewed, not necessarily applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterImportRow {
    pub id: i64,
    pub village: VillageId,
    pub source: String,
    pub sha256: String,
    pub encoding: String,
    /// The file's households as read, JSON (the ledger's own shape).
    pub rows_json: String,
    pub uploaded_ms: i64,
    pub uploaded_by: String,
    pub applied_ms: Option<i64>,
}

/// Who `updated_by` names for a household the deployment file seeded.
pub const SEEDED_BY: &str = "deployment file";

const COLUMNS: &str = "id, village, head, deep_poverty, labour, birth_year, bank_account, \
                       status_history, origin, retired_ms, retired_reason, updated_ms, updated_by";

fn corrupt(id: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("household {id}: {what}: {e}"))
}

fn household_from(r: &sqlx::any::AnyRow) -> Result<HouseholdRow> {
    let id: String = r.try_get("id")?;
    let labour: String = r.try_get("labour")?;
    let status: String = r.try_get("status_history")?;
    let origin: String = r.try_get("origin")?;
    let birth_year: Option<i64> = r.try_get("birth_year")?;
    let household = Household {
        id: HouseholdId::new(&id),
        village: VillageId::new(&r.try_get::<String, _>("village")?),
        head: r.try_get("head")?,
        status: serde_json::from_str::<Vec<StatusPeriod>>(&status)
            .map_err(|e| corrupt(&id, "status history", e))?,
        deep_poverty: r.try_get::<i64, _>("deep_poverty")? != 0,
        labour: labour
            .parse::<LabourCapacity>()
            .map_err(|e| corrupt(&id, "labour", e))?,
        birth_year: birth_year
            .map(i32::try_from)
            .transpose()
            .map_err(|e| corrupt(&id, "birth year", e))?,
        bank_account: r.try_get("bank_account")?,
    };
    Ok(HouseholdRow {
        household,
        origin: origin
            .parse::<Origin>()
            .map_err(|e| corrupt(&id, "origin", e))?,
        retired_ms: r.try_get("retired_ms")?,
        retired_reason: r.try_get("retired_reason")?,
        updated_ms: r.try_get("updated_ms")?,
        updated_by: r.try_get("updated_by")?,
    })
}

fn status_json(h: &Household) -> Result<String> {
    serde_json::to_string(&h.status).map_err(|e| corrupt(h.id.as_str(), "status history", e))
}

/// How long a roster preview that was never applied is kept: a day.
pub const PREVIEW_KEPT_MS: i64 = 24 * 3_600_000;

impl Store {
    /// Inserts the households of the deployment file that the registry does not hold yet; the
    /// registry's own rows (edited, retired, imported) are left as they are.
    pub async fn seed_households(&self, households: &[Household], at_ms: i64) -> Result<usize> {
        let mut tx = self.begin_write(self.pool()).await?;
        let mut added = 0;
        for h in households {
            if insert_household(&mut tx, h, Origin::File, at_ms, SEEDED_BY).await? {
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Every household of the registry, retired ones included, by id.
    pub async fn households(&self) -> Result<Vec<HouseholdRow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM households ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(household_from).collect()
    }

    /// The households of one village, retired ones included, by id.
    pub async fn households_of(&self, village: &VillageId) -> Result<Vec<HouseholdRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM households WHERE village = $1 ORDER BY id"
        ))
        .bind(village.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(household_from).collect()
    }

    pub async fn household(&self, id: &HouseholdId) -> Result<Option<HouseholdRow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM households WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(household_from).transpose()
    }

    /// Applies `changes` in one transaction (all or nothing), each with a line of history. With
    /// `roster`, the import is marked applied in the same transaction, and only if it was not yet.
    pub async fn change_households(
        &self,
        changes: &[HouseholdChange],
        who: &str,
        at_ms: i64,
        roster: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.begin_write(self.pool()).await?;
        if let Some(import) = roster {
            let marked = sqlx::query(
                "UPDATE roster_imports SET applied_ms = $1 WHERE id = $2 AND applied_ms IS NULL",
            )
            .bind(at_ms)
            .bind(import)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() != 1 {
                tx.rollback().await?;
                return Err(Error::Exists(format!(
                    "roster import {import} is already applied or does not exist"
                )));
            }
        }
        let what_of_import = if roster.is_some() {
            "imported"
        } else {
            "added"
        };
        for change in changes {
            let (id, village, what, detail) = match change {
                HouseholdChange::Add(h, origin) => {
                    let added = insert_household(&mut tx, h, *origin, at_ms, who).await?;
                    if !added {
                        tx.rollback().await?;
                        return Err(Error::Exists(format!(
                            "household {} is already registered",
                            h.id
                        )));
                    }
                    (
                        h.id.as_str().to_owned(),
                        h.village.as_str().to_owned(),
                        what_of_import,
                        String::new(),
                    )
                }
                HouseholdChange::Edit {
                    household: h,
                    fields,
                } => {
                    let edited = sqlx::query(
                        "UPDATE households SET head = $1, deep_poverty = $2, labour = $3, \
                         birth_year = $4, bank_account = $5, status_history = $6, updated_ms = $7, \
                         updated_by = $8 WHERE id = $9 AND village = $10 AND retired_ms IS NULL",
                    )
                    .bind(&h.head)
                    .bind(i64::from(h.deep_poverty))
                    .bind(<&str>::from(h.labour))
                    .bind(h.birth_year.map(i64::from))
                    .bind(h.bank_account.as_deref())
                    .bind(status_json(h)?)
                    .bind(at_ms)
                    .bind(who)
                    .bind(h.id.as_str())
                    .bind(h.village.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if edited.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Err(Error::Exists(format!(
                            "household {} of village {} is retired or not registered",
                            h.id, h.village
                        )));
                    }
                    (
                        h.id.as_str().to_owned(),
                        h.village.as_str().to_owned(),
                        "edited",
                        fields.join(", "),
                    )
                }
                HouseholdChange::Retire { id, reason } => {
                    let village: Option<String> = sqlx::query(
                        "UPDATE households SET retired_ms = $1, retired_reason = $2, updated_ms = $1, \
                         updated_by = $3 WHERE id = $4 AND retired_ms IS NULL RETURNING village",
                    )
                    .bind(at_ms)
                    .bind(reason)
                    .bind(who)
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                    let Some(village) = village else {
                        tx.rollback().await?;
                        return Err(Error::Exists(format!(
                            "household {id} is retired already or not registered"
                        )));
                    };
                    (id.as_str().to_owned(), village, "retired", reason.clone())
                }
            };
            sqlx::query(
                "INSERT INTO household_changes (household, village, at_ms, who, what, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(village)
            .bind(at_ms)
            .bind(who)
            .bind(what)
            .bind(detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A household's change history, the latest first.
    pub async fn household_changes(&self, id: &HouseholdId) -> Result<Vec<HouseholdChangeRow>> {
        let rows = sqlx::query(
            "SELECT at_ms, who, what, detail FROM household_changes WHERE household = $1 \
             ORDER BY id DESC",
        )
        .bind(id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HouseholdChangeRow {
                    at_ms: r.try_get(0)?,
                    who: r.try_get(1)?,
                    what: r.try_get(2)?,
                    detail: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Records a roster file as read, for its preview; returns its id. Previews never applied
    /// and older than [`PREVIEW_KEPT_MS`] (of any village) are dropped in the same transaction:
    /// the rows they hold (names, ID-card years, bank accounts) do not linger.
    pub async fn save_roster_import(&self, r: &RosterImportRow) -> Result<i64> {
        let mut tx = self.begin_write(self.pool()).await?;
        sqlx::query("DELETE FROM roster_imports WHERE applied_ms IS NULL AND uploaded_ms < $1")
            .bind(r.uploaded_ms - PREVIEW_KEPT_MS)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "INSERT INTO roster_imports (village, source, sha256, encoding, rows_json, uploaded_ms, \
             uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(r.village.as_str())
        .bind(&r.source)
        .bind(&r.sha256)
        .bind(&r.encoding)
        .bind(&r.rows_json)
        .bind(r.uploaded_ms)
        .bind(&r.uploaded_by)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.try_get(0)?)
    }

    pub async fn roster_import(&self, id: i64) -> Result<Option<RosterImportRow>> {
        let row = sqlx::query(
            "SELECT id, village, source, sha256, encoding, rows_json, uploaded_ms, uploaded_by, \
             applied_ms FROM roster_imports WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(RosterImportRow {
                id: r.try_get(0)?,
                village: VillageId::new(&r.try_get::<String, _>(1)?),
                source: r.try_get(2)?,
                sha256: r.try_get(3)?,
                encoding: r.try_get(4)?,
                rows_json: r.try_get(5)?,
                uploaded_ms: r.try_get(6)?,
                uploaded_by: r.try_get(7)?,
                applied_ms: r.try_get(8)?,
            })
        })
        .transpose()
    }
}

/// A public-welfare job as the registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub job: JobPost,
    pub origin: Origin,
    pub updated_ms: i64,
    pub updated_by: String,
}

/// What one change to the jobs does.
#[derive(Debug, Clone, PartialEq)]
pub enum JobChange {
    Add(JobPost, Origin),
    /// The job ends on `until` (its last day paid for); a later end is moved earlier only.
    End {
        id: JobId,
        until: NaiveDate,
    },
}

const JOB_COLUMNS: &str =
    "id, village, title, holder, monthly_wage_fen, valid_from, valid_until, origin, updated_ms, \
     updated_by";

fn day_of(id: &str, what: &str, text: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| Error::Corrupt(format!("job {id}: {what} '{text}': {e}")))
}

fn job_from(r: &sqlx::any::AnyRow) -> Result<JobRow> {
    let id: String = r.try_get("id")?;
    let until: Option<String> = r.try_get("valid_until")?;
    let origin: String = r.try_get("origin")?;
    Ok(JobRow {
        job: JobPost {
            id: JobId::new(&id),
            village: VillageId::new(&r.try_get::<String, _>("village")?),
            title: r.try_get("title")?,
            holder: HouseholdId::new(&r.try_get::<String, _>("holder")?),
            monthly_wage: Fen(r.try_get("monthly_wage_fen")?),
            from: day_of(&id, "start", &r.try_get::<String, _>("valid_from")?)?,
            until: until.map(|u| day_of(&id, "end", &u)).transpose()?,
        },
        origin: origin
            .parse::<Origin>()
            .map_err(|e| Error::Corrupt(format!("job {id}: origin: {e}")))?,
        updated_ms: r.try_get("updated_ms")?,
        updated_by: r.try_get("updated_by")?,
    })
}

impl Store {
    /// Inserts the jobs of the deployment file the registry does not hold yet.
    pub async fn seed_jobs(&self, jobs: &[JobPost], at_ms: i64) -> Result<usize> {
        let mut tx = self.begin_write(self.pool()).await?;
        let mut added = 0;
        for j in jobs {
            if insert_job(&mut tx, j, Origin::File, at_ms, SEEDED_BY).await? {
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Every job of the registry, by id.
    pub async fn jobs(&self) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(job_from).collect()
    }

    /// The jobs of one village, by id.
    pub async fn jobs_of(&self, village: &VillageId) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE village = $1 ORDER BY id"
        ))
        .bind(village.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from).collect()
    }

    pub async fn job(&self, id: &JobId) -> Result<Option<JobRow>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from).transpose()
    }

    /// Applies `changes` in one transaction, each with a line of history.
    pub async fn change_jobs(&self, changes: &[JobChange], who: &str, at_ms: i64) -> Result<()> {
        let mut tx = self.begin_write(self.pool()).await?;
        for change in changes {
            let (id, village, what, detail) = match change {
                JobChange::Add(j, origin) => {
                    let added = insert_job(&mut tx, j, *origin, at_ms, who).await?;
                    if !added {
                        tx.rollback().await?;
                        return Err(Error::Exists(format!("job {} is already registered", j.id)));
                    }
                    let detail = format!(
                        "{} {} {} {}..{}",
                        j.title,
                        j.holder,
                        j.monthly_wage,
                        j.from,
                        j.until.map_or_else(String::new, |u| u.to_string())
                    );
                    (
                        j.id.as_str().to_owned(),
                        j.village.as_str().to_owned(),
                        "added",
                        detail,
                    )
                }
                JobChange::End { id, until } => {
                    let village: Option<String> = sqlx::query(
                        "UPDATE jobs SET valid_until = $1, updated_ms = $2, updated_by = $3 \
                         WHERE id = $4 AND valid_from <= $1 AND (valid_until IS NULL OR valid_until > $1) \
                         RETURNING village",
                    )
                    .bind(until.to_string())
                    .bind(at_ms)
                    .bind(who)
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
                    let Some(village) = village else {
                        tx.rollback().await?;
                        return Err(Error::Exists(format!(
                            "job {id} cannot end on {until}: not registered, not started by then, or ended already"
                        )));
                    };
                    (id.as_str().to_owned(), village, "ended", until.to_string())
                }
            };
            sqlx::query(
                "INSERT INTO job_changes (job, village, at_ms, who, what, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(village)
            .bind(at_ms)
            .bind(who)
            .bind(what)
            .bind(detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A job's change history, the latest first.
    pub async fn job_changes(&self, id: &JobId) -> Result<Vec<HouseholdChangeRow>> {
        let rows = sqlx::query(
            "SELECT at_ms, who, what, detail FROM job_changes WHERE job = $1 ORDER BY id DESC",
        )
        .bind(id.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HouseholdChangeRow {
                    at_ms: r.try_get(0)?,
                    who: r.try_get(1)?,
                    what: r.try_get(2)?,
                    detail: r.try_get(3)?,
                })
            })
            .collect()
    }
}

/// Inserts a household unless its id is registered; whether it was inserted.
async fn insert_household(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    h: &Household,
    origin: Origin,
    at_ms: i64,
    by: &str,
) -> Result<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO households ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, $11) \
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(h.id.as_str())
    .bind(h.village.as_str())
    .bind(&h.head)
    .bind(i64::from(h.deep_poverty))
    .bind(<&str>::from(h.labour))
    .bind(h.birth_year.map(i64::from))
    .bind(h.bank_account.as_deref())
    .bind(status_json(h)?)
    .bind(<&str>::from(origin))
    .bind(at_ms)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a job unless its id is registered; whether it was inserted.
async fn insert_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    j: &JobPost,
    origin: Origin,
    at_ms: i64,
    by: &str,
) -> Result<bool> {
    let done = sqlx::query(&format!(
        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (id) DO NOTHING"
    ))
    .bind(j.id.as_str())
    .bind(j.village.as_str())
    .bind(&j.title)
    .bind(j.holder.as_str())
    .bind(j.monthly_wage.0)
    .bind(j.from.to_string())
    .bind(j.until.map(|u| u.to_string()))
    .bind(<&str>::from(origin))
    .bind(at_ms)
    .bind(by)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PovertyStatus;
    use chrono::NaiveDate;

    fn household(id: &str, village: &str) -> Household {
        Household {
            id: HouseholdId::new(id),
            village: VillageId::new(village),
            head: "王秀兰".into(),
            status: vec![StatusPeriod {
                status: PovertyStatus::NotExited,
                from: NaiveDate::from_ymd_opt(2016, 3, 1).expect("date"),
            }],
            deep_poverty: true,
            labour: LabourCapacity::Weak,
            birth_year: Some(1959),
            bank_account: Some("6228000011112222".into()),
        }
    }

    #[tokio::test]
    async fn the_registry_seeds_once_changes_all_or_nothing_and_applies_a_roster_once_on_every_backend(
    ) {
        for t in crate::store::testing::all("store::households")
            .await
            .expect("stores")
        {
            let s = &t.store;
            let name = t.name;
            // Seeding inserts what is missing and never overwrites the registry's own rows.
            assert_eq!(
                s.seed_households(&[household("H1", "V1")], 1)
                    .await
                    .expect("seed"),
                1,
                "{name}"
            );
            let mut edited = household("H1", "V1");
            edited.head = "王秀兰（改）".into();
            s.change_households(
                &[HouseholdChange::Edit {
                    household: edited.clone(),
                    fields: vec!["head".into()],
                }],
                "li",
                2,
                None,
            )
            .await
            .expect("edit");
            assert_eq!(
                s.seed_households(&[household("H1", "V1")], 3)
                    .await
                    .expect("seed"),
                0,
                "{name}"
            );
            let h1 = s
                .household(&HouseholdId::new("H1"))
                .await
                .expect("read")
                .expect("H1");
            assert_eq!(h1.household, edited, "{name}: every field round-trips");
            assert_eq!(
                (h1.origin, h1.updated_by.as_str(), h1.updated_ms),
                (Origin::File, "li", 2)
            );

            // A batch with one bad change stores none of it.
            let batch = [
                HouseholdChange::Add(household("H2", "V1"), Origin::Web),
                HouseholdChange::Add(household("H1", "V1"), Origin::Web),
            ];
            assert!(
                matches!(
                    s.change_households(&batch, "li", 4, None).await,
                    Err(Error::Exists(_))
                ),
                "{name}"
            );
            assert!(
                s.household(&HouseholdId::new("H2"))
                    .await
                    .expect("read")
                    .is_none(),
                "{name}"
            );

            // Retired: kept, marked, not edited any more, not retired twice.
            let retire = HouseholdChange::Retire {
                id: HouseholdId::new("H1"),
                reason: "迁出".into(),
            };
            s.change_households(std::slice::from_ref(&retire), "li", 5, None)
                .await
                .expect("retire");
            assert!(
                matches!(
                    s.change_households(&[retire], "li", 6, None).await,
                    Err(Error::Exists(_))
                ),
                "{name}"
            );
            let edit = HouseholdChange::Edit {
                household: edited,
                fields: vec![],
            };
            assert!(
                matches!(
                    s.change_households(&[edit], "li", 6, None).await,
                    Err(Error::Exists(_))
                ),
                "{name}"
            );
            let h1 = s
                .household(&HouseholdId::new("H1"))
                .await
                .expect("read")
                .expect("H1");
            assert_eq!(
                (h1.retired_ms, h1.retired_reason.as_deref()),
                (Some(5), Some("迁出")),
                "{name}"
            );
            let whats: Vec<String> = s
                .household_changes(&HouseholdId::new("H1"))
                .await
                .expect("changes")
                .into_iter()
                .map(|c| c.what)
                .collect();
            assert_eq!(
                whats,
                ["retired", "edited"],
                "{name}: latest first, failed ones absent"
            );

            // A roster import is applied once.
            let import = RosterImportRow {
                id: 0,
                village: VillageId::new("V1"),
                source: "花名册.xlsx".into(),
                sha256: "ab".into(),
                encoding: "xlsx".into(),
                rows_json: "[]".into(),
                uploaded_ms: 7,
                uploaded_by: "li".into(),
                applied_ms: None,
            };
            let id = s.save_roster_import(&import).await.expect("save");
            let add = [HouseholdChange::Add(household("H3", "V1"), Origin::Roster)];
            s.change_households(&add, "li", 8, Some(id))
                .await
                .expect("apply");
            let add4 = [HouseholdChange::Add(household("H4", "V1"), Origin::Roster)];
            assert!(
                matches!(
                    s.change_households(&add4, "li", 9, Some(id)).await,
                    Err(Error::Exists(_))
                ),
                "{name}"
            );
            assert!(
                s.household(&HouseholdId::new("H4"))
                    .await
                    .expect("read")
                    .is_none(),
                "{name}"
            );
            assert_eq!(
                s.roster_import(id)
                    .await
                    .expect("read")
                    .expect("import")
                    .applied_ms,
                Some(8)
            );
            let ids: Vec<String> = s
                .households_of(&VillageId::new("V1"))
                .await
                .expect("list")
                .iter()
                .map(|r| r.household.id.as_str().to_owned())
                .collect();
            assert_eq!(ids, ["H1", "H3"], "{name}");
            let h3 = &s
                .household_changes(&HouseholdId::new("H3"))
                .await
                .expect("changes")[0];
            assert_eq!(h3.what, "imported", "{name}");

            // A preview left a day unapplied is dropped when the next file is read; an applied
            // import (the record of what it brought in) stays.
            let pending = s
                .save_roster_import(&RosterImportRow {
                    uploaded_ms: 10,
                    ..import.clone()
                })
                .await
                .expect("save");
            let next = s
                .save_roster_import(&RosterImportRow {
                    uploaded_ms: 10 + PREVIEW_KEPT_MS + 1,
                    ..import.clone()
                })
                .await
                .expect("save");
            assert!(
                s.roster_import(pending).await.expect("read").is_none(),
                "{name}"
            );
            assert!(
                s.roster_import(next).await.expect("read").is_some(),
                "{name}"
            );
            assert!(s.roster_import(id).await.expect("read").is_some(), "{name}");
        }
    }

    #[tokio::test]
    async fn jobs_seed_once_and_end_only_within_their_days_on_every_backend() {
        for t in crate::store::testing::all("store::jobs")
            .await
            .expect("stores")
        {
            let s = &t.store;
            let name = t.name;
            let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).expect("day");
            let job = JobPost {
                id: JobId::new("J1"),
                village: VillageId::new("V1"),
                title: "保洁员".into(),
                holder: HouseholdId::new("H1"),
                monthly_wage: Fen(60_000),
                from: day(1, 1),
                until: None,
            };
            assert_eq!(
                s.seed_jobs(std::slice::from_ref(&job), 1)
                    .await
                    .expect("seed"),
                1,
                "{name}"
            );
            assert_eq!(
                s.seed_jobs(std::slice::from_ref(&job), 2)
                    .await
                    .expect("seed"),
                0,
                "{name}"
            );
            let again = [JobChange::Add(job.clone(), Origin::Web)];
            assert!(
                matches!(s.change_jobs(&again, "li", 3).await, Err(Error::Exists(_))),
                "{name}"
            );
            let before = JobChange::End {
                id: job.id.clone(),
                until: NaiveDate::from_ymd_opt(2025, 12, 31).expect("day"),
            };
            assert!(
                matches!(
                    s.change_jobs(&[before], "li", 4).await,
                    Err(Error::Exists(_))
                ),
                "{name}"
            );
            s.change_jobs(
                &[JobChange::End {
                    id: job.id.clone(),
                    until: day(6, 30),
                }],
                "li",
                5,
            )
            .await
            .expect("end");
            let later = JobChange::End {
                id: job.id.clone(),
                until: day(9, 30),
            };
            assert!(
                matches!(
                    s.change_jobs(&[later], "li", 6).await,
                    Err(Error::Exists(_))
                ),
                "{name}: an end is only moved earlier"
            );
            let stored = s.job(&job.id).await.expect("read").expect("J1");
            assert_eq!(stored.job.until, Some(day(6, 30)), "{name}");
            assert_eq!(stored.job.monthly_wage, Fen(60_000), "{name}");
            assert_eq!(
                s.jobs_of(&VillageId::new("V1")).await.expect("list").len(),
                1,
                "{name}"
            );
            let whats: Vec<String> = s
                .job_changes(&job.id)
                .await
                .expect("changes")
                .into_iter()
                .map(|c| c.what)
                .collect();
            assert_eq!(
                whats,
                ["ended"],
                "{name}: seeding is not a change, refusals leave none"
            );
        }
    }
}
