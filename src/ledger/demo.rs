//! Demo allocation data: costs, jobs, annual plans and a county advance for every village of a
//! deployment, sized to what its stations can earn, so that a simulated year allocates cleanly.
//!
//! Everything is derived deterministically from the registry; nothing is random.

use crate::allocate::money::revenue_line;
use crate::allocate::{
    Advance, CostItem, CostKind, PlanBudget, PlanState, RewardPayment, SmallProject, TempLabour,
    VillagePlan,
};
use crate::config::Deployment;
use crate::domain::{
    Fen, HouseholdId, JobId, JobPost, LabourCapacity, StationKind, VillageId, WattHours, YearMonth,
};
use crate::store::Store;
use std::collections::{BTreeMap, HashSet};

/// Yield assumed when sizing plans (kWh per kWp a year): below the 1,350 of docs/policy.md section 8 so that
/// a cloudy year or an outage still covers the plan.
const PLAN_YIELD_KWH_PER_KW: i64 = 1_100;
const JOB_WAGE_YUAN: i64 = 600;

fn yuan(y: i64) -> Fen {
    Fen(y.saturating_mul(100))
}

/// Adds to `d`, for `year`: station costs (O&M 0.03 yuan/W, rent, insurance), public-welfare jobs for
/// households with labour capacity, one annual plan per village with all five lines, and a January
/// county advance of a fifth of the expected net income. Lump payments (temporary labour, projects,
/// rewards) fall in October to December, when the year's income has accumulated.
/// Villages that already have a plan for `year` are left alone.
pub fn add_demo_allocation(d: &mut Deployment, year: i32) {
    let Some(jan) = YearMonth::new(year, 1) else {
        return;
    };
    // Expected yearly net income per village, in fen.
    let mut expected: BTreeMap<VillageId, i64> = BTreeMap::new();
    let mut costs = Vec::new();
    for s in &d.stations {
        if s.kind == StationKind::Centralized {
            continue;
        }
        let kw = if s.capacity_kwp.is_finite() && s.capacity_kwp > 0.0 {
            s.capacity_kwp.round() as i64
        } else {
            continue;
        };
        let province = d
            .tariffs
            .iter()
            .find(|t| t.id == s.tariff)
            .map(|t| t.province.clone());
        let coal = province.and_then(|p| d.coal_price(&p, jan.first_day()));
        let Some(coal) = coal else { continue };
        let energy = WattHours(kw * PLAN_YIELD_KWH_PER_KW * 1_000);
        let base = revenue_line(energy, coal).unwrap_or(Fen::ZERO);
        let station_costs = [
            (CostKind::OAndM, yuan(kw * 30)),
            (CostKind::Rent, yuan(kw * 50 / 3)),
            (CostKind::Insurance, yuan(kw * 4)),
        ];
        let total_costs: i64 = station_costs.iter().map(|(_, f)| f.0).sum();
        if !d.costs.iter().any(|c| c.station == s.id && c.year == year) {
            for (kind, amount) in station_costs {
                costs.push(CostItem {
                    station: s.id.clone(),
                    kind,
                    year,
                    amount,
                    billed_in: None,
                });
            }
        }
        let net = (base.0 - total_costs).max(0);
        match s.kind {
            StationKind::Village => {
                if let Some(v) = &s.village {
                    *expected.entry(v.clone()).or_default() += net;
                }
            }
            _ => {
                let total: u64 = s.owners.iter().map(|o| o.weight).sum();
                for o in &s.owners {
                    if total > 0 {
                        let share = i128::from(net) * i128::from(o.weight) / i128::from(total);
                        *expected.entry(o.village.clone()).or_default() +=
                            i64::try_from(share).unwrap_or(0);
                    }
                }
            }
        }
    }
    d.costs.extend(costs);
    let pool: HashSet<HouseholdId> = d
        .stations
        .iter()
        .flat_map(|s| s.beneficiaries.iter().cloned())
        .collect();
    let holders: HashSet<HouseholdId> = d.jobs.iter().map(|j| j.holder.clone()).collect();
    let planned: HashSet<VillageId> = d
        .plans
        .iter()
        .filter(|p| p.year == year)
        .map(|p| p.village.clone())
        .collect();
    let month = |m: u32| YearMonth::new(year, m).unwrap_or(jan);
    for (village, net_fen) in expected {
        if planned.contains(&village) || net_fen <= 0 {
            continue;
        }
        // Round the plan's income down to whole yuan.
        let net = Fen(net_fen - net_fen % 100);
        let households: Vec<_> = d
            .households
            .iter()
            .filter(|h| h.village == village && !pool.contains(&h.id))
            .cloned()
            .collect();
        let wage_year = yuan(JOB_WAGE_YUAN * 12);
        let affordable = usize::try_from(net.0 * 60 / 100 / wage_year.0).unwrap_or(0);
        let mut jobs = 0_i64;
        for h in households
            .iter()
            .filter(|h| h.labour != LabourCapacity::None && !holders.contains(&h.id))
            .take(affordable)
        {
            jobs += 1;
            d.jobs.push(JobPost {
                id: JobId::new(format!("{village}-J{jobs:02}")),
                village: village.clone(),
                title: ["保洁员", "护路员", "电站管护员", "水管员"][(jobs % 4) as usize].into(),
                holder: h.id.clone(),
                monthly_wage: yuan(JOB_WAGE_YUAN),
                from: jan.first_day(),
                until: None,
            });
        }
        let job_wages = Fen(wage_year.0 * jobs);
        // Labour (jobs + temporary labour) at 80 % of net, as 3号 asked for 2020.
        let labour_target = net.0 * 80 / 100;
        let temp_total = (labour_target - job_wages.0).max(0);
        let temp_total = temp_total - temp_total % 100;
        let workers: Vec<&HouseholdId> = households
            .iter()
            .filter(|h| h.labour != LabourCapacity::None)
            .map(|h| &h.id)
            .take(2)
            .collect();
        let mut temp_labour = Vec::new();
        if temp_total > 0 && !workers.is_empty() {
            // Unequal parts, so that a village of two households never sees an equal handout.
            let first = temp_total * 3 / 5;
            let first = first - first % 100;
            let parts = if workers.len() == 2 {
                vec![
                    (workers[0], month(10), first),
                    (workers[1], month(11), temp_total - first),
                ]
            } else {
                vec![(workers[0], month(10), temp_total)]
            };
            for (h, m, amount) in parts {
                temp_labour.push(TempLabour {
                    household: h.clone(),
                    month: m,
                    amount: Fen(amount),
                    work: "以工代赈 village works: ditches and paths".into(),
                });
            }
        }
        let temp_sum: i64 = temp_labour.iter().map(|t| t.amount.0).sum();
        let rest = net.0 - job_wages.0 - temp_sum;
        let project = (rest / 2) - (rest / 2) % 100;
        let no_labour: Vec<&HouseholdId> = households
            .iter()
            .filter(|h| h.labour == LabourCapacity::None)
            .map(|h| &h.id)
            .collect();
        let per_reward = if no_labour.is_empty() {
            0
        } else {
            let each = (rest - project) / 2 / i64::try_from(no_labour.len()).unwrap_or(1);
            (each - each % 100).min(yuan(2_000).0)
        };
        let rewards: Vec<RewardPayment> = no_labour
            .iter()
            .enumerate()
            .filter(|_| per_reward > 0)
            .map(|(i, h)| RewardPayment {
                household: (*h).clone(),
                month: month(12),
                amount: Fen(per_reward),
                approval: format!("县乡村振兴局〔{year}〕{village}-{}号", i + 1),
                reason: "no labour capacity 无劳动能力".into(),
            })
            .collect();
        let reward_total: i64 = rewards.iter().map(|r| r.amount.0).sum();
        let projects = if project > 0 {
            vec![SmallProject {
                month: month(11),
                amount: Fen(project),
                project: "村道维修 village road repair".into(),
                payee: "乡村道养护队".into(),
            }]
        } else {
            Vec::new()
        };
        let reserve = net.0 - job_wages.0 - temp_sum - project.max(0) - reward_total;
        d.plans.push(VillagePlan {
            village: village.clone(),
            year,
            expected_net: net,
            expected_gross: None,
            lines: PlanBudget {
                job_wages,
                temp_labour: Fen(temp_sum),
                small_project: Fen(project.max(0)),
                reward_subsidy: Fen(reward_total),
                reserve: Fen(reserve.max(0)),
            },
            temp_labour,
            projects,
            rewards,
            status_change_immediate: false,
        });
        let advance = net.0 / 5 - (net.0 / 5) % 100;
        if advance > 0 {
            d.advances.push(Advance {
                village,
                month: jan,
                amount: Fen(advance),
                reference: format!(
                    "县财政垫付〔{year}〕: first-year wages until the subsidy arrives"
                ),
            });
        }
    }
}

/// Moves every plan of `year` in the deployment from DRAFT to ACTIVE, one recorded step at a time.
pub async fn activate_plans(
    store: &Store,
    d: &Deployment,
    year: i32,
    who: &str,
) -> Result<(), super::Error> {
    for p in d.plans.iter().filter(|p| p.year == year) {
        let mut state = store.plan_state(p.village.as_str(), year).await?;
        for (to, note) in [
            (
                PlanState::Deliberated,
                "四议: proposed, discussed, reviewed, decided",
            ),
            (PlanState::PlanPublished, "plan posted for 7 days"),
            (PlanState::TownshipReviewed, "township review passed"),
            (PlanState::CountyFiled, "filed with the county"),
            (PlanState::Active, "payouts may start"),
        ] {
            if state.can_go_to(to) {
                super::transition(store, d, &p.village, year, to, who, note).await?;
                state = to;
            }
        }
    }
    Ok(())
}
