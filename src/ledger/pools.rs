//! The beneficiaries of centralized stations (集中式电站受益户): the households each station pays a
//! fixed instalment for into the county pool (docs/policy.md, section 1). The deployment file
//! seeds them (`beneficiaries`, `pool_membership`); the county's finance desk adds and ends them
//! in the browser, and a stored membership replaces the file's for the same station and household.
//! A membership only ever changes months that are not paid.

use super::households::Problem;
use super::Error;
use crate::allocate::PoolMembership;
use crate::config::Deployment;
use crate::domain::{Household, HouseholdId, StationId, StationKind, YearMonth};
use crate::store::{PoolMemberRow, PoolWrite, Store};
use chrono::{DateTime, Utc};

/// A membership as typed into the form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolInput {
    pub station: String,
    pub household: String,
    /// `YYYY-MM`: the first month paid.
    pub from: String,
    /// `YYYY-MM`: the last month paid; empty for no end.
    pub until: String,
}

/// Where a membership is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The deployment file (not changed in the browser yet).
    File,
    /// The registry, last written by `by` at `at`.
    Browser { at: DateTime<Utc>, by: String },
}

/// One beneficiary of a centralized station as the months are computed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub station: StationId,
    pub household: HouseholdId,
    /// None: from the station's first month.
    pub from: Option<YearMonth>,
    /// None: no end.
    pub until: Option<YearMonth>,
    pub kept: Kept,
}

impl Member {
    /// Whether the household is paid in `month`.
    pub fn in_force(&self, month: YearMonth) -> bool {
        self.from.is_none_or(|f| f <= month) && self.until.is_none_or(|u| month <= u)
    }
}

fn problem(field: &str, key: &str, args: &[(&str, &str)]) -> Problem {
    Problem {
        field: field.to_owned(),
        key: format!("pool.err.{key}"),
        args: args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Every message key a problem may carry.
pub const PROBLEM_KEYS: &[&str] = &[
    "pool.err.station_unknown",
    "pool.err.household_unknown",
    "pool.err.household_county",
    "pool.err.not_eligible",
    "pool.err.member_already",
    "pool.err.double_benefit",
    "pool.err.month_bad",
    "pool.err.month_paid",
    "pool.err.until_before",
    "pool.err.end_bad",
];

/// The file's memberships, with the stored ones in place of theirs, by station and household.
pub fn members_of(deployment: &Deployment, stored: &[PoolMemberRow]) -> Vec<Member> {
    let kept: std::collections::HashSet<(&str, &str)> = stored
        .iter()
        .map(|r| (r.station.as_str(), r.household.as_str()))
        .collect();
    let mut out: Vec<Member> = Vec::new();
    for s in deployment
        .stations
        .iter()
        .filter(|s| s.kind == StationKind::Centralized)
    {
        for h in &s.beneficiaries {
            if kept.contains(&(s.id.as_str(), h.as_str())) {
                continue;
            }
            let window = deployment
                .pool_membership
                .iter()
                .find(|m| m.station == s.id && &m.household == h);
            out.push(Member {
                station: s.id.clone(),
                household: h.clone(),
                from: window.and_then(|w| w.from),
                until: window.and_then(|w| w.until),
                kept: Kept::File,
            });
        }
    }
    out.extend(stored.iter().map(|r| Member {
        station: StationId::new(&r.station),
        household: HouseholdId::new(&r.household),
        from: Some(r.from),
        until: r.until,
        kept: Kept::Browser {
            at: r.at,
            by: r.by.clone(),
        },
    }));
    out.sort_by(|a, b| (&a.station, &a.household).cmp(&(&b.station, &b.household)));
    out
}

/// Every membership as the months are computed with it.
pub async fn members(store: &Store, deployment: &Deployment) -> Result<Vec<Member>, Error> {
    Ok(members_of(deployment, &store.pool_members().await?))
}

/// Puts the stored memberships into `d`: each replaces the file's listing and window of the same
/// station and household.
pub fn overlay(d: &mut Deployment, stored: &[PoolMemberRow]) {
    for r in stored {
        let household = HouseholdId::new(&r.household);
        let Some(s) = d.stations.iter_mut().find(|s| s.id.as_str() == r.station) else {
            continue;
        };
        if !s.beneficiaries.contains(&household) {
            s.beneficiaries.push(household.clone());
        }
        d.pool_membership
            .retain(|m| !(m.station.as_str() == r.station && m.household == household));
        d.pool_membership.push(PoolMembership {
            station: StationId::new(&r.station),
            household,
            from: Some(r.from),
            until: r.until,
        });
    }
}

fn month(field: &str, text: &str, needed: bool, problems: &mut Vec<Problem>) -> Option<YearMonth> {
    let text = text.trim();
    if text.is_empty() && !needed {
        return None;
    }
    match text.parse::<YearMonth>() {
        Ok(m) if m.year() >= 2014 && m.year() <= 2100 => Some(m),
        _ => {
            problems.push(problem(field, "month_bad", &[("value", text)]));
            None
        }
    }
}

/// What the village pays `household` in a month of `from..=until` (None: no end), which a pool
/// membership of those months would pay twice (NO_DOUBLE_BENEFIT, docs/policy.md section 5): a
/// job it holds or a planned payment to it, named with the month it first falls in.
pub fn paid_by_village(
    d: &Deployment,
    household: &HouseholdId,
    from: YearMonth,
    until: Option<YearMonth>,
) -> Option<(String, YearMonth)> {
    let within = |m: YearMonth| from <= m && until.is_none_or(|u| m <= u);
    let jobs = d
        .jobs
        .iter()
        .filter(|j| &j.holder == household)
        .filter_map(|j| {
            let start = YearMonth::of(j.from).max(from);
            let end = j.until.map(YearMonth::of);
            (until.is_none_or(|u| start <= u) && end.is_none_or(|e| start <= e))
                .then(|| (format!("{} {}", j.id, j.title), start))
        });
    let planned = d.plans.iter().flat_map(|p| {
        let labour = p
            .temp_labour
            .iter()
            .filter(|t| &t.household == household && within(t.month))
            .map(|t| (t.work.clone(), t.month));
        let rewards = p
            .rewards
            .iter()
            .filter(|r| &r.household == household && within(r.month))
            .map(|r| (r.approval.clone(), r.month));
        labour.chain(rewards)
    });
    jobs.chain(planned).min_by_key(|(_, m)| *m)
}

/// A live household by id: the registry's, or the file's when the registry does not hold it.
async fn household(
    store: &Store,
    deployment: &Deployment,
    id: &HouseholdId,
) -> Result<Option<Household>, Error> {
    Ok(match store.household(id).await? {
        Some(r) => (!r.retired()).then_some(r.household),
        None => deployment.households.iter().find(|h| &h.id == id).cloned(),
    })
}

/// Adds a beneficiary entered with the form: a live household of the station's county with an
/// eligible status on the first day of its first month, not a member of the station already,
/// from a month not paid yet.
pub async fn add(
    store: &Store,
    deployment: &Deployment,
    input: &PoolInput,
    who: &str,
) -> Result<Result<Member, Vec<Problem>>, Error> {
    let mut problems = Vec::new();
    let station_id = input.station.trim();
    let station = deployment
        .stations
        .iter()
        .find(|s| s.id.as_str() == station_id && s.kind == StationKind::Centralized);
    if station.is_none() {
        problems.push(problem(
            "station",
            "station_unknown",
            &[("station", station_id)],
        ));
    }
    let household_id = HouseholdId::new(input.household.trim());
    let found = household(store, deployment, &household_id).await?;
    let from = month("from", &input.from, true, &mut problems);
    let until = month("until", &input.until, false, &mut problems);
    if let (Some(f), Some(u)) = (from, until) {
        if u < f {
            problems.push(problem(
                "until",
                "until_before",
                &[("from", &f.to_string())],
            ));
        }
    }
    match (&found, station) {
        (None, _) => problems.push(problem(
            "household",
            "household_unknown",
            &[("household", household_id.as_str())],
        )),
        (Some(h), Some(s)) => {
            let county = deployment.county_of_village(&h.village);
            if county != Some(&s.county) {
                problems.push(problem(
                    "household",
                    "household_county",
                    &[
                        ("household", h.id.as_str()),
                        ("village", h.village.as_str()),
                        ("county", s.county.as_str()),
                    ],
                ));
            } else if let Some(f) = from {
                let day = f.first_day();
                let status = h.status_on(day);
                if !status.is_some_and(|st| deployment.policy.eligible_statuses.contains(&st)) {
                    let shown = status.map_or_else(|| "-".to_owned(), |s| format!("{s:?}"));
                    problems.push(problem(
                        "household",
                        "not_eligible",
                        &[
                            ("household", h.id.as_str()),
                            ("status", &shown),
                            ("day", &day.to_string()),
                        ],
                    ));
                }
            }
            if let (Some(f), true) = (from, deployment.policy.no_double_benefit) {
                let d = super::households::effective(store, deployment).await?;
                if let Some((what, month)) = paid_by_village(&d, &h.id, f, until) {
                    problems.push(problem(
                        "household",
                        "double_benefit",
                        &[
                            ("household", h.id.as_str()),
                            ("what", &what),
                            ("month", &month.to_string()),
                        ],
                    ));
                }
            }
            if members(store, deployment)
                .await?
                .iter()
                .any(|m| m.station == s.id && m.household == h.id)
            {
                problems.push(problem(
                    "household",
                    "member_already",
                    &[("household", h.id.as_str()), ("station", s.id.as_str())],
                ));
            }
        }
        (Some(_), None) => {}
    }
    let (Some(s), Some(_), Some(from), true) = (station, &found, from, problems.is_empty()) else {
        return Ok(Err(problems));
    };
    let row = PoolMemberRow {
        station: s.id.as_str().to_owned(),
        household: household_id.as_str().to_owned(),
        from,
        until,
        at: Utc::now(),
        by: who.to_owned(),
    };
    Ok(match store.add_pool_member(&row).await? {
        PoolWrite::Done => {
            tracing::info!(station = %row.station, household = %row.household, %from, who, "pool beneficiary added");
            Ok(Member {
                station: s.id.clone(),
                household: household_id,
                from: Some(from),
                until,
                kept: Kept::Browser {
                    at: row.at,
                    by: row.by,
                },
            })
        }
        PoolWrite::Paid(m) => Err(vec![problem(
            "from",
            "month_paid",
            &[("month", &m.to_string())],
        )]),
        PoolWrite::Exists => Err(vec![problem(
            "household",
            "member_already",
            &[("household", &row.household), ("station", &row.station)],
        )]),
    })
}

/// Ends a membership after `until` (its last month paid): not before its first month, not one
/// that has an end already, and only where the months after are not paid.
pub async fn end(
    store: &Store,
    deployment: &Deployment,
    station: &StationId,
    household: &HouseholdId,
    until: &str,
    who: &str,
) -> Result<Result<(), Vec<Problem>>, Error> {
    let Some(member) = members(store, deployment)
        .await?
        .into_iter()
        .find(|m| &m.station == station && &m.household == household)
    else {
        return Err(Error::NotFound(format!(
            "household {household} is not a beneficiary of station {station}"
        )));
    };
    let mut problems = Vec::new();
    let Some(last) = month("until", until, true, &mut problems) else {
        return Ok(Err(problems));
    };
    let shown = |m: Option<YearMonth>| m.map_or_else(|| "-".to_owned(), |m| m.to_string());
    if member.until.is_some() || member.from.is_some_and(|f| last < f) {
        return Ok(Err(vec![problem(
            "until",
            "end_bad",
            &[
                ("from", &shown(member.from)),
                ("until", &shown(member.until)),
            ],
        )]));
    }
    // A file membership without a first month counts from the station's commissioning.
    let from = member.from.unwrap_or_else(|| {
        deployment
            .stations
            .iter()
            .find(|s| &s.id == station)
            .map_or(last, |s| YearMonth::of(s.commissioned).min(last))
    });
    let row = PoolMemberRow {
        station: station.as_str().to_owned(),
        household: household.as_str().to_owned(),
        from,
        until: Some(last),
        at: Utc::now(),
        by: who.to_owned(),
    };
    Ok(match store.end_pool_member(&row).await? {
        PoolWrite::Done => {
            tracing::info!(%station, %household, until = %last, who, "pool beneficiary ended");
            Ok(())
        }
        PoolWrite::Paid(m) => Err(vec![problem(
            "until",
            "month_paid",
            &[("month", &m.to_string())],
        )]),
        PoolWrite::Exists => Err(vec![problem(
            "until",
            "end_bad",
            &[
                ("from", &shown(member.from)),
                ("until", &shown(member.until)),
            ],
        )]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(from: Option<&str>, until: Option<&str>) -> Member {
        Member {
            station: StationId::new("S9"),
            household: HouseholdId::new("H1"),
            from: from.map(|m| m.parse().expect("month")),
            until: until.map(|m| m.parse().expect("month")),
            kept: Kept::File,
        }
    }

    #[test]
    fn a_membership_is_in_force_from_its_first_to_its_last_month() {
        let m = |s: &str| s.parse::<YearMonth>().expect("month");
        let open = member(None, None);
        assert!(open.in_force(m("2016-01")) && open.in_force(m("2040-12")));
        let window = member(Some("2026-03"), Some("2026-08"));
        assert!(!window.in_force(m("2026-02")));
        assert!(window.in_force(m("2026-03")) && window.in_force(m("2026-08")));
        assert!(!window.in_force(m("2026-09")));
    }
}
