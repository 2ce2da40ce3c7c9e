//! A province-sized year (Shanxi scale): 5,500 village stations, 300 joint stations, 10,000 villages,
//! 300,000 households, 100,000 public-welfare jobs, 12 months.
//!
//! Measures (1) the money core alone and (2) computing plus writing the ledger to SQLite, and the peak
//! resident memory after each. Run with `cargo bench --bench allocate` (`-- core` for the money core
//! alone, e.g. under a profiler); figures go to docs/bench-allocate.md.

use std::collections::{HashMap, HashSet};
use std::time::Instant;
use sunshare::allocate::{
    Book, Carry, PlanBudget, PlanState, RewardPayment, SmallProject, TempLabour, VillagePlan,
};
use sunshare::config::{Deployment, Village};
use sunshare::domain::{
    EnergyBasis, Fen, Household, HouseholdId, JobId, JobPost, LabourCapacity, MonthEnergy,
    OwnerShare, PovertyStatus, StationId, StationKind, StatusPeriod, VillageId, WattHours,
    YearMonth,
};
use sunshare::ledger::{self, EnergySource};

const VILLAGE_STATIONS: usize = 5_500;
const JOINT_STATIONS: usize = 300;
const VILLAGES: usize = 10_000;
const HOUSEHOLDS_PER_VILLAGE: usize = 30;
const JOBS_PER_VILLAGE: usize = 10;
const YEAR: i32 = 2026;

const SKELETON: &str = r#"
[[counties]]
id = "C1"
name = "县"
province = "shanxi"
[[townships]]
id = "T1"
name = "镇"
county = "C1"
[[tariffs]]
id = "III"
price = "0.85"
province = "shanxi"
[[coal_prices]]
province = "shanxi"
from = "2017-01-01"
price = "0.332"
"#;

fn yuan(y: i64) -> Fen {
    Fen(y * 100)
}

fn ym(m: u32) -> YearMonth {
    YearMonth::new(YEAR, m).unwrap_or_else(|| unreachable!())
}

fn province() -> Deployment {
    let mut d = Deployment::from_str_with_env("bench.toml", SKELETON, &[], &HashSet::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let day = |y, m, dd| chrono::NaiveDate::from_ymd_opt(y, m, dd).unwrap_or_default();
    let template = {
        let t = format!(
            "{SKELETON}[[villages]]\ncode = \"X\"\nname = \"X\"\ntownship = \"T1\"\n[[stations]]\nid = \"S\"\nname = \"S\"\nkind = \"village\"\ncounty = \"C1\"\ncapacity_kwp = 300\nlatitude = 37.8\nlongitude = 112.5\ncommissioned = \"2019-06-30\"\ntariff = \"III\"\nvillage = \"X\"\n"
        );
        Deployment::from_str_with_env("bench.toml", &t, &[], &HashSet::new())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let code = |i: usize| VillageId::new(format!("14{i:010}"));
    for i in 0..VILLAGES {
        d.villages.push(Village {
            code: code(i),
            name: format!("村{i}"),
            township: "T1".into(),
        });
        for h in 0..HOUSEHOLDS_PER_VILLAGE {
            d.households.push(Household {
                id: HouseholdId::new(format!("H{i:05}{h:02}")),
                village: code(i),
                head: "张小三".into(),
                status: vec![StatusPeriod {
                    status: PovertyStatus::NotExited,
                    from: day(2016, 1, 1),
                }],
                deep_poverty: h % 7 == 0,
                labour: if h < 20 {
                    LabourCapacity::Full
                } else {
                    LabourCapacity::None
                },
                birth_year: Some(1975),
                bank_account: Some(format!("6228{i:06}{h:04}")),
            });
        }
        for j in 0..JOBS_PER_VILLAGE {
            d.jobs.push(JobPost {
                id: JobId::new(format!("J{i:05}{j:02}")),
                village: code(i),
                title: "保洁员".into(),
                holder: HouseholdId::new(format!("H{i:05}{j:02}")),
                monthly_wage: yuan(600),
                from: day(YEAR, 1, 1),
                until: None,
            });
        }
        let hh = |h: usize| HouseholdId::new(format!("H{i:05}{h:02}"));
        d.plans.push(VillagePlan {
            village: code(i),
            year: YEAR,
            expected_net: yuan(120_000),
            expected_gross: None,
            lines: PlanBudget {
                job_wages: yuan(72_000),
                temp_labour: yuan(2_000),
                small_project: yuan(10_000),
                reward_subsidy: yuan(2_000),
                reserve: yuan(5_000),
            },
            temp_labour: (0..4)
                .map(|q| TempLabour {
                    household: hh(10 + q),
                    month: ym(3 * q as u32 + 2),
                    amount: yuan(500),
                    work: "ditch clearing, 5 days".into(),
                })
                .collect(),
            projects: vec![SmallProject {
                month: ym(6),
                amount: yuan(10_000),
                project: "road repair".into(),
                payee: "county road team".into(),
            }],
            rewards: (0..2)
                .map(|k| RewardPayment {
                    household: hh(20 + k),
                    month: ym(12),
                    amount: yuan(1_000),
                    approval: format!("county approval {i}-{k}"),
                    reason: "no labour capacity".into(),
                })
                .collect(),
            status_change_immediate: false,
        });
    }
    let base = &template.stations[0];
    for s in 0..VILLAGE_STATIONS {
        let mut st = base.clone();
        st.id = StationId::new(format!("VS{s:05}"));
        st.village = Some(code(s));
        d.stations.push(st);
    }
    let owners_per_joint = (VILLAGES - VILLAGE_STATIONS) / JOINT_STATIONS;
    for j in 0..JOINT_STATIONS {
        let mut st = base.clone();
        st.id = StationId::new(format!("JS{j:04}"));
        st.kind = StationKind::JointVillage;
        st.capacity_kwp = 6_000.0;
        st.village = None;
        st.owners = (0..owners_per_joint)
            .map(|k| OwnerShare {
                village: code(VILLAGE_STATIONS + j * owners_per_joint + k),
                weight: 300 + k as u64,
            })
            .collect();
        d.stations.push(st);
    }
    for s in &d.stations {
        for kind in ["o_and_m", "rent", "insurance"] {
            let text = format!(
                "station = \"{}\"\nkind = \"{kind}\"\nyear = {YEAR}\namount = \"{}\"\n",
                s.id,
                if s.kind == StationKind::JointVillage {
                    90_001
                } else {
                    5_000
                }
            );
            d.costs
                .push(toml::from_str(&text).unwrap_or_else(|e| panic!("{e}")));
        }
    }
    d
}

fn energy(d: &Deployment, month: YearMonth) -> HashMap<StationId, MonthEnergy> {
    d.stations
        .iter()
        .map(|s| {
            // 1,350 kWh/kW a year with a seasonal swing, in Wh, plus an odd few Wh per station
            let season =
                [70, 80, 95, 105, 115, 120, 120, 115, 105, 95, 80, 70][month.month() as usize - 1];
            let kw = if s.kind == StationKind::JointVillage {
                6_000
            } else {
                300
            };
            let wh = kw * 112_500 * season / 100 + (s.id.as_str().len() as i64 * 37);
            (
                s.id.clone(),
                MonthEnergy {
                    station: s.id.clone(),
                    month,
                    energy: WattHours(wh),
                    basis: EnergyBasis::Settled,
                },
            )
        })
        .collect()
}

#[derive(Debug)]
struct Precomputed(HashMap<(StationId, YearMonth), MonthEnergy>);

#[async_trait::async_trait]
impl EnergySource for Precomputed {
    async fn month_energy(
        &self,
        station: &StationId,
        month: YearMonth,
    ) -> Result<MonthEnergy, ledger::Error> {
        self.0
            .get(&(station.clone(), month))
            .cloned()
            .ok_or_else(|| ledger::Error::NotFound(format!("{station} {month}")))
    }
}

/// CPU seconds (user + system) this process has used: on a shared machine wall time includes waiting
/// for a core, CPU time does not.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn peak_rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map_or("unknown".into(), |kb| format!("{} MiB", kb / 1024))
}

fn main() {
    let t0 = Instant::now();
    let d = province();
    let months: Vec<YearMonth> = (1..=12).map(ym).collect();
    let energies: Vec<HashMap<StationId, MonthEnergy>> =
        months.iter().map(|m| energy(&d, *m)).collect();
    let states: HashMap<(VillageId, i32), PlanState> = d
        .villages
        .iter()
        .map(|v| ((v.code.clone(), YEAR), PlanState::Active))
        .collect();
    println!(
        "input: {} stations, {} villages, {} households, {} jobs, built in {:.2?}",
        d.stations.len(),
        d.villages.len(),
        d.households.len(),
        d.jobs.len(),
        t0.elapsed()
    );

    // (1) the money core: index and check the book, then twelve months.
    let t1 = Instant::now();
    let c1 = cpu_seconds();
    let book = Book::new(&d.allocation_input()).unwrap_or_else(|e| panic!("{e}"));
    let book_time = t1.elapsed();
    let mut carry = Carry::default();
    let mut payouts = 0usize;
    let mut paid = 0i64;
    for (m, e) in months.iter().zip(&energies) {
        let run = book
            .month(*m, e, &carry, &states)
            .unwrap_or_else(|e| panic!("{e}"));
        for v in &run.villages {
            payouts += v.payouts.len();
            paid += v.payouts_total.0;
        }
        carry = run.carry;
    }
    let core = t1.elapsed();
    println!(
        "money core: book {book_time:.2?}, book + 12 months {core:.2?} wall, {:.2} s CPU ({payouts} payouts, {} paid); peak RSS {}",
        cpu_seconds() - c1,
        Fen(paid),
        peak_rss_mib()
    );
    drop(book);
    if std::env::args().any(|a| a == "core") {
        return;
    }

    // (2) compute and write the ledger to SQLite, month by month, as `sunshare allocate` does.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let t = sunshare::store::testing::sqlite().await.unwrap_or_else(|e| panic!("{e}"));
        let store = t.store.clone();
        let setup = Instant::now();
        for v in &d.villages {
            store
                .set_plan_state(v.code.as_str(), YEAR, PlanState::Draft, PlanState::Active, "bench", "bench setup", None, chrono::Utc::now())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let source = Precomputed(
            months
                .iter()
                .zip(&energies)
                .flat_map(|(m, e)| e.iter().map(move |(s, me)| ((s.clone(), *m), me.clone())))
                .collect(),
        );
        println!("ledger setup (10,000 plans ACTIVE): {:.2?}", setup.elapsed());
        let t2 = Instant::now();
        let c2 = cpu_seconds();
        for m in &months {
            ledger::run_month(&store, &d, &source, *m, "bench", true)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let total = t2.elapsed();
        let rows = store.audit_trail(1).await.map(|a| a.len()).unwrap_or(0);
        println!(
            "compute + write ledger to SQLite: 12 months in {total:.2?} wall, {:.2} s CPU (all threads); peak RSS {} (audit rows seen: {rows})",
            cpu_seconds() - c2,
            peak_rss_mib()
        );
        store.close().await;
    });
}
