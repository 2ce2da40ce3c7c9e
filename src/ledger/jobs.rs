//! The public-welfare jobs (公益岗位) of the registry: what a new job must satisfy and how a job
//! ends. A job is a post held by one household from a day to a day, at a monthly wage; a handover
//! ends one job and adds another, so a paid month always reads the job as it was.

use super::households::Problem;
use super::Error;
use crate::config::Deployment;
use crate::domain::{Fen, Household, HouseholdId, JobId, JobPost, VillageId};
use crate::store::{JobChange, Origin, Store};
use chrono::{Datelike as _, NaiveDate, Utc};

/// A job as typed into the form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobInput {
    pub id: String,
    pub title: String,
    pub holder: String,
    /// Yuan, e.g. `600` or `650.50`.
    pub monthly_wage: String,
    pub from: String,
    pub until: String,
}

fn problem(field: &str, key: &str, args: &[(&str, &str)]) -> Problem {
    Problem {
        field: field.to_owned(),
        key: format!("job.err.{key}"),
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Every message key a problem may carry.
pub const PROBLEM_KEYS: &[&str] = &[
    "job.err.id_bad",
    "job.err.id_taken",
    "job.err.title_bad",
    "job.err.holder_unknown",
    "job.err.wage_bad",
    "job.err.date_bad",
    "job.err.until_before",
    "job.err.one_job",
    "job.err.end_bad",
    "job.err.pool_member",
];

fn date(field: &str, text: &str, needed: bool, problems: &mut Vec<Problem>) -> Option<NaiveDate> {
    let text = text.trim();
    if text.is_empty() && !needed {
        return None;
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) if d.year() >= 2000 => Some(d),
        _ => {
            problems.push(problem(field, "date_bad", &[("value", text)]));
            None
        }
    }
}

/// Checks a new job of `village`. `holder` is the named household if it is live in this village;
/// `holder_jobs` the jobs it holds already; `taken` whether the id is registered anywhere.
pub fn check(
    input: &JobInput,
    village: &VillageId,
    taken: bool,
    holder: Option<&Household>,
    holder_jobs: &[&JobPost],
    one_job_per_household: bool,
) -> Result<JobPost, Vec<Problem>> {
    let mut problems = Vec::new();
    let id = input.id.trim();
    if id.is_empty()
        || id.chars().count() > 40
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push(problem("job_id", "id_bad", &[("id", id)]));
    } else if taken {
        problems.push(problem("job_id", "id_taken", &[("id", id)]));
    }
    let title = input.title.trim();
    if title.is_empty() || title.chars().count() > 40 {
        problems.push(problem("title", "title_bad", &[]));
    }
    let holder_id = input.holder.trim();
    if holder.is_none() {
        problems.push(problem(
            "holder",
            "holder_unknown",
            &[("holder", holder_id)],
        ));
    }
    let wage = match Fen::parse_yuan(input.monthly_wage.trim()) {
        Ok(w) if w > Fen::ZERO => Some(w),
        _ => {
            problems.push(problem(
                "monthly_wage",
                "wage_bad",
                &[("value", input.monthly_wage.trim())],
            ));
            None
        }
    };
    let from = date("from", &input.from, true, &mut problems);
    let until = date("until", &input.until, false, &mut problems);
    if let (Some(f), Some(u)) = (from, until) {
        if u < f {
            problems.push(problem("until", "until_before", &[]));
        }
    }
    let (Some(wage), Some(from), Some(h)) = (wage, from, holder) else {
        return Err(problems);
    };
    let job = JobPost {
        id: JobId::new(id),
        village: village.clone(),
        title: title.to_owned(),
        holder: h.id.clone(),
        monthly_wage: wage,
        from,
        until,
    };
    if one_job_per_household {
        if let Some((other, month)) = holder_jobs.iter().find_map(|other| {
            crate::allocate::first_month_paid_together(other, &job).map(|m| (other, m))
        }) {
            problems.push(problem(
                "holder",
                "one_job",
                &[
                    ("holder", holder_id),
                    ("job", other.id.as_str()),
                    ("month", &month.to_string()),
                ],
            ));
        }
    }
    if problems.is_empty() {
        Ok(job)
    } else {
        Err(problems)
    }
}

/// Adds a job entered with the form, checked against the registry as it is now.
pub async fn add(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    input: &JobInput,
    who: &str,
) -> Result<Result<JobPost, Vec<Problem>>, Error> {
    let holder_id = HouseholdId::new(input.holder.trim());
    let holder = super::households::live_household(store, deployment, village, &holder_id).await?;
    // A household holds jobs of its own village only, so the village's jobs are all of its jobs.
    let jobs = super::households::village_jobs(store, deployment, village).await?;
    let holder_jobs: Vec<&JobPost> = jobs.iter().filter(|j| j.holder == holder_id).collect();
    let id = JobId::new(input.id.trim());
    let taken = deployment.jobs.iter().any(|j| j.id == id) || store.job(&id).await?.is_some();
    let job = match check(
        input,
        village,
        taken,
        holder.as_ref(),
        &holder_jobs,
        deployment.policy.one_job_per_household,
    ) {
        Ok(j) => j,
        Err(p) => return Ok(Err(p)),
    };
    // NO_DOUBLE_BENEFIT: a household its county's pool pays in a month of the job is not given it.
    if deployment.policy.no_double_benefit {
        let (start, end) = (
            crate::domain::YearMonth::of(job.from),
            job.until.map(crate::domain::YearMonth::of),
        );
        let pooled = super::pools::members(store, deployment)
            .await?
            .into_iter()
            .find(|m| {
                m.household == holder_id
                    && m.from.is_none_or(|f| end.is_none_or(|e| f <= e))
                    && m.until.is_none_or(|u| start <= u)
            });
        if let Some(m) = pooled {
            return Ok(Err(vec![problem(
                "holder",
                "pool_member",
                &[
                    ("holder", holder_id.as_str()),
                    ("station", m.station.as_str()),
                ],
            )]));
        }
    }
    let added = store
        .change_jobs(
            &[JobChange::Add(job.clone(), Origin::Web)],
            who,
            Utc::now().timestamp_millis(),
        )
        .await;
    match added {
        Ok(()) => Ok(Ok(job)),
        Err(crate::store::Error::Exists(_)) => Ok(Err(vec![problem(
            "job_id",
            "id_taken",
            &[("id", job.id.as_str())],
        )])),
        Err(e) => Err(e.into()),
    }
}

/// Ends a job on `until` (its last day paid for): not before it started, not after it ends.
pub async fn end(
    store: &Store,
    job: &JobPost,
    until: &str,
    who: &str,
) -> Result<Result<(), Vec<Problem>>, Error> {
    let mut problems = Vec::new();
    let Some(day) = date("until", until, true, &mut problems) else {
        return Ok(Err(problems));
    };
    if day < job.from || job.until.is_some_and(|u| u <= day) {
        let (from, until_now) = (
            job.from.to_string(),
            job.until.map_or_else(String::new, |u| u.to_string()),
        );
        return Ok(Err(vec![problem(
            "until",
            "end_bad",
            &[("from", &from), ("until", &until_now)],
        )]));
    }
    let ended = store
        .change_jobs(
            &[JobChange::End {
                id: job.id.clone(),
                until: day,
            }],
            who,
            Utc::now().timestamp_millis(),
        )
        .await;
    match ended {
        Ok(()) => Ok(Ok(())),
        // Ended meanwhile by someone else, or not registered.
        Err(crate::store::Error::Exists(_)) => {
            let (from, until_now) = (job.from.to_string(), String::new());
            Ok(Err(vec![problem(
                "until",
                "end_bad",
                &[("from", &from), ("until", &until_now)],
            )]))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LabourCapacity, PovertyStatus, StatusPeriod};

    fn household() -> Household {
        Household {
            id: HouseholdId::new("H1"),
            village: VillageId::new("V1"),
            head: "张志强".into(),
            status: vec![StatusPeriod {
                status: PovertyStatus::NotExited,
                from: NaiveDate::from_ymd_opt(2016, 3, 1).expect("day"),
            }],
            deep_poverty: false,
            labour: LabourCapacity::Full,
            birth_year: None,
            bank_account: None,
        }
    }

    fn input(from: &str, until: &str) -> JobInput {
        JobInput {
            id: "J2".into(),
            title: "护林员".into(),
            holder: "H1".into(),
            monthly_wage: "650.50".into(),
            from: from.into(),
            until: until.into(),
        }
    }

    fn keys(r: Result<JobPost, Vec<Problem>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn a_job_needs_a_live_holder_of_the_village_a_wage_and_its_days() {
        let v = VillageId::new("V1");
        let h = household();
        let job = check(&input("2026-07-01", ""), &v, false, Some(&h), &[], true).expect("valid");
        assert_eq!(job.monthly_wage, Fen(65_050));
        let bad = JobInput {
            id: "J 2".into(),
            title: String::new(),
            monthly_wage: "-5".into(),
            ..input("2026-07-01", "2026-06-30")
        };
        assert_eq!(
            keys(check(&bad, &v, false, None, &[], true)),
            [
                "job.err.id_bad",
                "job.err.title_bad",
                "job.err.holder_unknown",
                "job.err.wage_bad",
                "job.err.until_before"
            ]
        );
        assert_eq!(
            keys(check(
                &input("2026-07-01", ""),
                &v,
                true,
                Some(&h),
                &[],
                true
            )),
            ["job.err.id_taken"]
        );
    }

    #[test]
    fn one_job_per_household_follows_the_months_paid() {
        let v = VillageId::new("V1");
        let h = household();
        let june = JobPost {
            id: JobId::new("J1"),
            village: v.clone(),
            title: "保洁员".into(),
            holder: h.id.clone(),
            monthly_wage: Fen(60_000),
            from: NaiveDate::from_ymd_opt(2026, 1, 1).expect("day"),
            until: NaiveDate::from_ymd_opt(2026, 6, 30),
        };
        assert!(check(
            &input("2026-07-01", ""),
            &v,
            false,
            Some(&h),
            &[&june],
            true
        )
        .is_ok());
        assert_eq!(
            keys(check(
                &input("2026-06-15", ""),
                &v,
                false,
                Some(&h),
                &[&june],
                true
            )),
            ["job.err.one_job"]
        );
        assert!(check(
            &input("2026-06-15", ""),
            &v,
            false,
            Some(&h),
            &[&june],
            false
        )
        .is_ok());
    }
}
