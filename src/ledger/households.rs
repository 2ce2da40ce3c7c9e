//! The household registry's rules: what a household entered by hand or read from the
//! poverty-registry roster (建档立卡) must satisfy, what a change does, and the households a month
//! is allocated over (the registry's, over the deployment file's seed).
//!
//! A form or a roster line arrives as text ([`HouseholdInput`]) and is checked by one function,
//! [`check`], so the form and the import refuse the same things in the same words. Problems carry a
//! message key and its arguments; the pages translate them.

use super::Error;
use crate::config::Deployment;
use crate::domain::{
    Household, HouseholdId, LabourCapacity, PovertyStatus, StatusPeriod, VillageId,
};
use crate::store::{HouseholdChange, HouseholdRow, Origin, Store};
use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// A household as typed into the form or read from a roster line: text, checked by [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdInput {
    pub id: String,
    pub head: String,
    /// `not_exited`, `exited`, `monitored` or `edge`.
    pub status: String,
    /// The day the status applies from, `YYYY-MM-DD`.
    pub status_from: String,
    /// Registered as a deep-poverty household (深度贫困户).
    pub deep_poverty: bool,
    /// `full`, `weak` or `none`.
    pub labour: String,
    pub birth_year: String,
    pub bank_account: String,
}

/// One thing wrong with an input: the field, a message key (under `household.err.`) and its
/// arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub key: String,
    pub args: Vec<(String, String)>,
}

fn problem(field: &str, key: &str, args: &[(&str, &str)]) -> Problem {
    Problem {
        field: field.to_owned(),
        key: format!("household.err.{key}"),
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Every message key a problem may carry, for the test that each has a text in both languages.
pub const PROBLEM_KEYS: &[&str] = &[
    "household.err.id_empty",
    "household.err.id_chars",
    "household.err.id_taken_here",
    "household.err.id_taken_elsewhere",
    "household.err.id_retired",
    "household.err.head_empty",
    "household.err.head_long",
    "household.err.status_unknown",
    "household.err.status_from_bad",
    "household.err.status_from_needed",
    "household.err.status_not_after",
    "household.err.labour_unknown",
    "household.err.birth_year_bad",
    "household.err.bank_bad",
    "household.err.village_other",
    "household.err.duplicate_line",
    "household.err.reason_empty",
    "household.err.holds_job",
    "household.err.beneficiary",
];

/// What the registry already knows that a check needs.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The household being edited (None: a new one).
    pub current: Option<&'a Household>,
    /// Whether the id is taken: in this village (live or retired) or in another.
    pub taken: Taken,
    pub today: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Free,
    Here,
    HereRetired,
    Elsewhere,
}

/// Checks `input` for `village`: a new household (`known.current` None) or new values for one.
/// Returns the household to store, or every problem found.
pub fn check(
    input: &HouseholdInput,
    village: &VillageId,
    known: Known<'_>,
) -> Result<Household, Vec<Problem>> {
    let mut problems = Vec::new();
    let id = input.id.trim();
    if known.current.is_none() {
        if id.is_empty() {
            problems.push(problem("id", "id_empty", &[]));
        } else if id.chars().count() > 40
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problems.push(problem("id", "id_chars", &[("id", id)]));
        } else {
            match known.taken {
                Taken::Free => {}
                Taken::Here => problems.push(problem("id", "id_taken_here", &[("id", id)])),
                Taken::HereRetired => problems.push(problem("id", "id_retired", &[("id", id)])),
                Taken::Elsewhere => {
                    problems.push(problem("id", "id_taken_elsewhere", &[("id", id)]))
                }
            }
        }
    }
    let head = input.head.trim();
    if head.is_empty() {
        problems.push(problem("head", "head_empty", &[]));
    } else if head.chars().count() > 40 || head.chars().any(char::is_control) {
        problems.push(problem("head", "head_long", &[]));
    }
    let labour = input.labour.trim().parse::<LabourCapacity>();
    if labour.is_err() {
        problems.push(problem(
            "labour",
            "labour_unknown",
            &[("value", input.labour.trim())],
        ));
    }
    let status = check_status(input, known, &mut problems);
    let birth_year = match input.birth_year.trim() {
        "" => None,
        text => match text.parse::<i32>() {
            Ok(y) if (1900..=known.today.year()).contains(&y) => Some(y),
            _ => {
                problems.push(problem("birth_year", "birth_year_bad", &[("value", text)]));
                None
            }
        },
    };
    let bank: String = input
        .bank_account
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let bank_account = if bank.is_empty() {
        None
    } else if (12..=19).contains(&bank.len()) && bank.chars().all(|c| c.is_ascii_digit()) {
        Some(bank)
    } else {
        problems.push(problem("bank_account", "bank_bad", &[]));
        None
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Ok(labour), Some(status)) = (labour, status) else {
        return Err(problems);
    };
    Ok(Household {
        id: known
            .current
            .map_or_else(|| HouseholdId::new(id), |c| c.id.clone()),
        village: village.clone(),
        head: head.to_owned(),
        status,
        deep_poverty: input.deep_poverty,
        labour,
        birth_year,
        bank_account,
    })
}

/// The status history after this input: a new household starts one; an edit appends a period
/// when the status changes, from a day after the last change.
fn check_status(
    input: &HouseholdInput,
    known: Known<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<StatusPeriod>> {
    let text = input.status.trim();
    let Ok(status) = text.parse::<PovertyStatus>() else {
        problems.push(problem("status", "status_unknown", &[("value", text)]));
        return None;
    };
    let from_text = input.status_from.trim();
    let from = if from_text.is_empty() {
        None
    } else {
        match NaiveDate::parse_from_str(from_text, "%Y-%m-%d") {
            Ok(d) if d <= known.today && d.year() >= 1990 => Some(d),
            _ => {
                problems.push(problem(
                    "status_from",
                    "status_from_bad",
                    &[("value", from_text)],
                ));
                return None;
            }
        }
    };
    let Some(current) = known.current else {
        let Some(from) = from else {
            problems.push(problem("status_from", "status_from_needed", &[]));
            return None;
        };
        return Some(vec![StatusPeriod { status, from }]);
    };
    let mut history = current.status.clone();
    let last = history.iter().max_by_key(|p| p.from).cloned();
    if last.as_ref().map(|p| p.status) == Some(status) {
        return Some(history);
    }
    let Some(from) = from else {
        problems.push(problem("status_from", "status_from_needed", &[]));
        return None;
    };
    if let Some(last) = last.filter(|l| l.from >= from) {
        let last_from = last.from.to_string();
        problems.push(problem(
            "status_from",
            "status_not_after",
            &[("from", from_text), ("last", &last_from)],
        ));
        return None;
    }
    history.push(StatusPeriod { status, from });
    Some(history)
}

/// The fields an edit changes, by their form names.
pub fn changed_fields(before: &Household, after: &Household) -> Vec<String> {
    let mut fields = Vec::new();
    let mut note = |changed: bool, name: &str| {
        if changed {
            fields.push(name.to_owned());
        }
    };
    note(before.head != after.head, "head");
    note(before.status != after.status, "status");
    note(before.deep_poverty != after.deep_poverty, "deep_poverty");
    note(before.labour != after.labour, "labour");
    note(before.birth_year != after.birth_year, "birth_year");
    note(before.bank_account != after.bank_account, "bank_account");
    fields
}

/// The households, jobs, plans, subsidy receipts, county advances and payout adjustments a month
/// is allocated over: the registry's (live households only), and those of the file the registry
/// does not hold (a store never seeded, as in tests); a plan saved in the browser replaces the
/// file's of its village and year; receipts, advances and adjustments recorded in the browser come
/// beside the file's.
pub async fn effective<'a>(
    store: &Store,
    deployment: &'a Deployment,
) -> Result<Cow<'a, Deployment>, Error> {
    let d = overlay(store, deployment, false).await?;
    super::plans::with_stored(store, d).await
}

/// As [`effective`], with retired households kept: statements and rosters of months already
/// allocated still name them.
pub async fn with_retired<'a>(
    store: &Store,
    deployment: &'a Deployment,
) -> Result<Cow<'a, Deployment>, Error> {
    let d = overlay(store, deployment, true).await?;
    super::plans::with_stored(store, d).await
}

async fn overlay<'a>(
    store: &Store,
    deployment: &'a Deployment,
    retired: bool,
) -> Result<Cow<'a, Deployment>, Error> {
    let rows = store.households().await?;
    let jobs = store.jobs().await?;
    let receipts = store.receipts().await?;
    let advances = store.advances().await?;
    let adjustments = store.adjustments().await?;
    let attendance = store.attendance().await?;
    let pool = store.pool_members().await?;
    if rows.is_empty()
        && jobs.is_empty()
        && receipts.is_empty()
        && advances.is_empty()
        && adjustments.is_empty()
        && attendance.is_empty()
        && pool.is_empty()
    {
        return Ok(Cow::Borrowed(deployment));
    }
    let registered: HashSet<&str> = rows.iter().map(|r| r.household.id.as_str()).collect();
    let mut households: Vec<Household> = deployment
        .households
        .iter()
        .filter(|h| !registered.contains(h.id.as_str()))
        .cloned()
        .collect();
    households.extend(
        rows.iter()
            .filter(|r| retired || !r.retired())
            .map(|r| r.household.clone()),
    );
    let registered_jobs: HashSet<&str> = jobs.iter().map(|j| j.job.id.as_str()).collect();
    let mut all_jobs: Vec<crate::domain::JobPost> = deployment
        .jobs
        .iter()
        .filter(|j| !registered_jobs.contains(j.id.as_str()))
        .cloned()
        .collect();
    all_jobs.extend(jobs.into_iter().map(|j| j.job));
    let mut d = deployment.clone();
    d.households = households;
    d.jobs = all_jobs;
    d.subsidy_receipts.extend(
        receipts
            .into_iter()
            .map(|r| crate::allocate::SubsidyReceipt {
                station: crate::domain::StationId::new(&r.station),
                month: r.month,
                amount: r.amount,
                covers: r.covers,
            }),
    );
    d.advances
        .extend(advances.into_iter().map(|a| crate::allocate::Advance {
            village: VillageId::new(&a.village),
            month: a.month,
            amount: a.amount,
            reference: a.reference,
        }));
    d.adjustments.extend(
        adjustments
            .into_iter()
            .map(|a| crate::allocate::Adjustment {
                village: VillageId::new(&a.village),
                month: a.month,
                household: crate::domain::HouseholdId::new(&a.household),
                corrects: a.corrects,
                amount: a.amount,
                reason: a.reason,
            }),
    );
    // A record made in the browser replaces the file's of the same job and month.
    let recorded: HashSet<(&str, crate::domain::YearMonth)> = attendance
        .iter()
        .map(|a| (a.job.as_str(), a.month))
        .collect();
    d.attendance
        .retain(|a| !recorded.contains(&(a.job.as_str(), a.month)));
    d.attendance
        .extend(attendance.iter().map(|a| crate::allocate::Attendance {
            job: crate::domain::JobId::new(&a.job),
            month: a.month,
            worked: a.worked,
            required: a.required,
        }));
    super::pools::overlay(&mut d, &pool);
    Ok(Cow::Owned(d))
}

/// A village's jobs: the registry's, and those of the file the registry does not hold, by id.
/// Reads only the village (a page or a check does not load the whole registry).
pub async fn village_jobs(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
) -> Result<Vec<crate::domain::JobPost>, Error> {
    let mut jobs: Vec<crate::domain::JobPost> = store
        .jobs_of(village)
        .await?
        .into_iter()
        .map(|r| r.job)
        .collect();
    let registered: HashSet<String> = jobs.iter().map(|j| j.id.as_str().to_owned()).collect();
    jobs.extend(
        deployment
            .jobs
            .iter()
            .filter(|j| &j.village == village && !registered.contains(j.id.as_str()))
            .cloned(),
    );
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(jobs)
}

/// A live household of `village`: the registry's, or the file's when the registry does not hold it.
pub async fn live_household(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    id: &HouseholdId,
) -> Result<Option<Household>, Error> {
    Ok(match store.household(id).await? {
        Some(r) => (!r.retired() && &r.household.village == village).then_some(r.household),
        None => deployment
            .households
            .iter()
            .find(|h| &h.id == id && &h.village == village)
            .cloned(),
    })
}

/// How the id of a new household stands in the registry.
pub async fn taken(store: &Store, village: &VillageId, id: &str) -> Result<Taken, Error> {
    let id = id.trim();
    if id.is_empty() {
        return Ok(Taken::Free);
    }
    Ok(match store.household(&HouseholdId::new(id)).await? {
        None => Taken::Free,
        Some(r) if &r.household.village != village => Taken::Elsewhere,
        Some(r) if r.retired() => Taken::HereRetired,
        Some(_) => Taken::Here,
    })
}

/// Adds a household entered with the form.
pub async fn add(
    store: &Store,
    village: &VillageId,
    input: &HouseholdInput,
    who: &str,
) -> Result<Result<Household, Vec<Problem>>, Error> {
    let known = Known {
        current: None,
        taken: taken(store, village, &input.id).await?,
        today: Utc::now().date_naive(),
    };
    let household = match check(input, village, known) {
        Ok(h) => h,
        Err(p) => return Ok(Err(p)),
    };
    let added = store
        .change_households(
            &[HouseholdChange::Add(household.clone(), Origin::Web)],
            who,
            Utc::now().timestamp_millis(),
            None,
        )
        .await;
    match added {
        Ok(()) => Ok(Ok(household)),
        // Registered by someone else since the check above.
        Err(crate::store::Error::Exists(_)) => Ok(Err(vec![problem(
            "id",
            "id_taken_here",
            &[("id", household.id.as_str())],
        )])),
        Err(e) => Err(e.into()),
    }
}

/// New values for a live household of `village`.
pub async fn edit(
    store: &Store,
    village: &VillageId,
    current: &HouseholdRow,
    input: &HouseholdInput,
    who: &str,
) -> Result<Result<Household, Vec<Problem>>, Error> {
    let known = Known {
        current: Some(&current.household),
        taken: Taken::Here,
        today: Utc::now().date_naive(),
    };
    let household = match check(input, village, known) {
        Ok(h) => h,
        Err(p) => return Ok(Err(p)),
    };
    let fields = changed_fields(&current.household, &household);
    if fields.is_empty() {
        return Ok(Ok(household));
    }
    let edited = store
        .change_households(
            &[HouseholdChange::Edit {
                household: household.clone(),
                fields,
            }],
            who,
            Utc::now().timestamp_millis(),
            None,
        )
        .await;
    match edited {
        Ok(()) => Ok(Ok(household)),
        // Retired by someone else since the page was read.
        Err(crate::store::Error::Exists(_)) => Ok(Err(vec![problem(
            "id",
            "id_retired",
            &[("id", household.id.as_str())],
        )])),
        Err(e) => Err(e.into()),
    }
}

/// Retires a live household: refused while it holds a job in force (end the job first) or is a
/// beneficiary of a centralized station this month or later (end the membership first).
pub async fn retire(
    store: &Store,
    deployment: &Deployment,
    village: &VillageId,
    id: &HouseholdId,
    reason: &str,
    who: &str,
) -> Result<Result<(), Vec<Problem>>, Error> {
    let reason = reason.trim();
    let today = Utc::now().date_naive();
    let mut problems = Vec::new();
    if reason.is_empty() {
        problems.push(problem("reason", "reason_empty", &[]));
    }
    for job in &village_jobs(store, deployment, village).await? {
        if &job.holder == id && job.until.is_none_or(|u| u >= today) {
            let until = job.until.map_or_else(String::new, |u| u.to_string());
            problems.push(problem(
                "reason",
                "holds_job",
                &[
                    ("job", job.id.as_str()),
                    ("title", &job.title),
                    ("until", &until),
                ],
            ));
        }
    }
    let this_month = crate::domain::YearMonth::of(today);
    for m in super::pools::members(store, deployment).await? {
        if &m.household == id && m.until.is_none_or(|u| u >= this_month) {
            problems.push(problem(
                "reason",
                "beneficiary",
                &[("station", m.station.as_str())],
            ));
        }
    }
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let retired = store
        .change_households(
            &[HouseholdChange::Retire {
                id: id.clone(),
                reason: reason.to_owned(),
            }],
            who,
            Utc::now().timestamp_millis(),
            None,
        )
        .await;
    match retired {
        Ok(()) => Ok(Ok(())),
        // Retired already (another tab, another user).
        Err(crate::store::Error::Exists(_)) => Ok(Err(vec![problem(
            "id",
            "id_retired",
            &[("id", id.as_str())],
        )])),
        Err(e) => Err(e.into()),
    }
}

/// One roster line as read, kept with its preview until it is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterLine {
    pub line: usize,
    pub input: HouseholdInput,
    /// The village the line names, if the file has such a column.
    pub village: Option<String>,
}

/// What applying a roster line would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Add(Household),
    Edit {
        household: Household,
        fields: Vec<String>,
    },
    Unchanged,
    Refused(Vec<Problem>),
}

/// Every line of a roster with what it would do, against the registry as it is now.
pub fn plan(
    lines: &[RosterLine],
    village: &VillageId,
    village_name: &str,
    registry: &HashMap<String, HouseholdRow>,
    today: NaiveDate,
) -> Vec<(usize, String, Verdict)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    lines
        .iter()
        .map(|l| {
            let id = l.input.id.trim().to_owned();
            let mut early = Vec::new();
            if let Some(v) = l.village.as_deref().map(str::trim) {
                if !v.is_empty() && v != village.as_str() && v != village_name {
                    early.push(problem(
                        "village",
                        "village_other",
                        &[("value", v), ("village", village_name)],
                    ));
                }
            }
            if !id.is_empty() {
                if let Some(first) = seen.get(&id) {
                    let first = first.to_string();
                    early.push(problem(
                        "id",
                        "duplicate_line",
                        &[("id", &id), ("line", &first)],
                    ));
                } else {
                    seen.insert(id.clone(), l.line);
                }
            }
            let existing = registry.get(&id);
            let live_here = existing.filter(|r| &r.household.village == village && !r.retired());
            let known = Known {
                current: live_here.map(|r| &r.household),
                taken: match existing {
                    None => Taken::Free,
                    Some(r) if &r.household.village != village => Taken::Elsewhere,
                    Some(r) if r.retired() => Taken::HereRetired,
                    Some(_) => Taken::Here,
                },
                today,
            };
            let verdict = match (check(&l.input, village, known), early.is_empty()) {
                (Err(mut p), _) => {
                    early.append(&mut p);
                    Verdict::Refused(early)
                }
                (Ok(_), false) => Verdict::Refused(early),
                (Ok(h), true) => match live_here {
                    None => Verdict::Add(h),
                    Some(r) => {
                        let fields = changed_fields(&r.household, &h);
                        if fields.is_empty() {
                            Verdict::Unchanged
                        } else {
                            Verdict::Edit {
                                household: h,
                                fields,
                            }
                        }
                    }
                },
            };
            (l.line, id, verdict)
        })
        .collect()
}

/// The changes a roster makes, or None when any line is refused (then nothing is applied).
pub fn changes_of(plan: &[(usize, String, Verdict)]) -> Option<Vec<HouseholdChange>> {
    let mut changes = Vec::new();
    for (_, _, verdict) in plan {
        match verdict {
            Verdict::Refused(_) => return None,
            Verdict::Add(h) => changes.push(HouseholdChange::Add(h.clone(), Origin::Roster)),
            Verdict::Edit { household, fields } => changes.push(HouseholdChange::Edit {
                household: household.clone(),
                fields: fields.clone(),
            }),
            Verdict::Unchanged => {}
        }
    }
    Some(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn input(id: &str) -> HouseholdInput {
        HouseholdInput {
            id: id.into(),
            head: "王秀兰".into(),
            status: "not_exited".into(),
            status_from: "2016-03-01".into(),
            deep_poverty: false,
            labour: "weak".into(),
            birth_year: String::new(),
            bank_account: String::new(),
        }
    }

    fn new(taken: Taken) -> Known<'static> {
        Known {
            current: None,
            taken,
            today: day("2026-12-03"),
        }
    }

    fn fields(r: Result<Household, Vec<Problem>>) -> Vec<(String, String)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.field, p.key))
            .collect()
    }

    #[test]
    fn a_new_household_is_checked_field_by_field() {
        let v = VillageId::new("V1");
        let h = check(&input("H-1"), &v, new(Taken::Free)).expect("valid");
        assert_eq!(
            h.status,
            vec![StatusPeriod {
                status: PovertyStatus::NotExited,
                from: day("2016-03-01")
            }]
        );
        let bad = HouseholdInput {
            id: "H 1".into(),
            head: String::new(),
            status: "gone".into(),
            labour: "some".into(),
            birth_year: "1850".into(),
            bank_account: "6228-0000".into(),
            ..input("")
        };
        let got = fields(check(&bad, &v, new(Taken::Free)));
        let want = [
            ("id", "household.err.id_chars"),
            ("head", "household.err.head_empty"),
            ("labour", "household.err.labour_unknown"),
            ("status", "household.err.status_unknown"),
            ("birth_year", "household.err.birth_year_bad"),
            ("bank_account", "household.err.bank_bad"),
        ];
        assert_eq!(got, want.map(|(f, k)| (f.to_owned(), k.to_owned())));
        for (taken, key) in [
            (Taken::Here, "household.err.id_taken_here"),
            (Taken::HereRetired, "household.err.id_retired"),
            (Taken::Elsewhere, "household.err.id_taken_elsewhere"),
        ] {
            assert_eq!(
                fields(check(&input("H1"), &v, new(taken))),
                [("id".to_owned(), key.to_owned())]
            );
        }
        let future = HouseholdInput {
            status_from: "2027-01-01".into(),
            ..input("H1")
        };
        assert_eq!(
            fields(check(&future, &v, new(Taken::Free)))[0].1,
            "household.err.status_from_bad"
        );
        let spaced = HouseholdInput {
            bank_account: "6228 0000 1111 2222".into(),
            ..input("H1")
        };
        assert_eq!(
            check(&spaced, &v, new(Taken::Free))
                .expect("valid")
                .bank_account
                .as_deref(),
            Some("6228000011112222")
        );
    }

    #[test]
    fn an_edit_appends_a_status_only_after_the_last_change() {
        let v = VillageId::new("V1");
        let current = check(&input("H1"), &v, new(Taken::Free)).expect("valid");
        let edit = |status: &str, from: &str| {
            let i = HouseholdInput {
                status: status.into(),
                status_from: from.into(),
                ..input("H1")
            };
            check(
                &i,
                &v,
                Known {
                    current: Some(&current),
                    taken: Taken::Here,
                    today: day("2026-12-03"),
                },
            )
        };
        // The same status: nothing appended, no date needed.
        assert_eq!(edit("not_exited", "").expect("same").status, current.status);
        assert_eq!(
            fields(edit("exited", "")),
            [(
                "status_from".to_owned(),
                "household.err.status_from_needed".to_owned()
            )]
        );
        assert_eq!(
            fields(edit("exited", "2016-03-01")),
            [(
                "status_from".to_owned(),
                "household.err.status_not_after".to_owned()
            )]
        );
        let exited = edit("exited", "2019-12-31").expect("later");
        assert_eq!(exited.status.len(), 2);
        assert_eq!(changed_fields(&current, &exited), ["status"]);
    }

    #[test]
    fn a_roster_line_is_added_changed_left_or_refused_and_one_refusal_applies_nothing() {
        let v = VillageId::new("V1");
        let today = day("2026-12-03");
        let existing = check(&input("H1"), &v, new(Taken::Free)).expect("valid");
        let row = |h: Household| HouseholdRow {
            household: h,
            origin: Origin::File,
            retired_ms: None,
            retired_reason: None,
            updated_ms: 0,
            updated_by: "file".into(),
        };
        let mut registry = HashMap::new();
        registry.insert("H1".to_owned(), row(existing.clone()));
        let other = Household {
            village: VillageId::new("V2"),
            ..check(&input("H9"), &v, new(Taken::Free)).expect("valid")
        };
        registry.insert("H9".to_owned(), row(other));
        let line = |n: usize, i: HouseholdInput, village: Option<&str>| RosterLine {
            line: n,
            input: i,
            village: village.map(str::to_owned),
        };
        let lines = [
            line(2, input("H1"), Some("东村")),
            line(
                3,
                HouseholdInput {
                    bank_account: "6228000011112222".into(),
                    ..input("H1")
                },
                None,
            ),
            line(4, input("H2"), Some("V1")),
            line(5, input("H9"), None),
            line(6, input("H3"), Some("西村")),
        ];
        let verdicts = plan(&lines, &v, "东村", &registry, today);
        let kinds: Vec<&str> = verdicts
            .iter()
            .map(|(_, _, v)| match v {
                Verdict::Add(_) => "add",
                Verdict::Edit { .. } => "edit",
                Verdict::Unchanged => "same",
                Verdict::Refused(_) => "refused",
            })
            .collect();
        assert_eq!(kinds, ["same", "refused", "add", "refused", "refused"]);
        let Verdict::Refused(p) = &verdicts[1].2 else {
            unreachable!()
        };
        assert_eq!(p[0].key, "household.err.duplicate_line");
        assert!(
            changes_of(&verdicts).is_none(),
            "a refused line applies nothing"
        );
        let clean = plan(&lines[..1], &v, "东村", &registry, today);
        assert_eq!(changes_of(&clean).map(|c| c.len()), Some(0));
        let both = plan(&[lines[2].clone()], &v, "东村", &registry, today);
        assert!(
            matches!(changes_of(&both).as_deref(), Some([HouseholdChange::Add(h, Origin::Roster)]) if h.id.as_str() == "H2")
        );
    }
}
