//! Golden cases (docs/policy.md section 8 and 9), bad inputs and properties of the money core.

use super::money::{instalment, revenue_line, split_largest_remainder, Instalment};
use super::*;
use crate::config::Deployment;
use crate::domain::{
    EnergyBasis, Fen, Household, HouseholdId, LabourCapacity, MonthEnergy, PovertyStatus, Price,
    StationId, StatusPeriod, VillageId, WattHours, YearMonth,
};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

const V: &str = "140000000001";

fn ym(s: &str) -> YearMonth {
    s.parse().expect("month")
}

fn fen(s: &str) -> Fen {
    Fen::parse_yuan(s).expect("amount")
}

fn load(text: &str) -> Deployment {
    match Deployment::from_str_with_env("test.toml", text, &[], &HashSet::new()) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

/// docs/policy.md section 8: a 300 kW Shanxi village station, zone III, 35 jobs, 12 households without
/// labour, 4 households of temporary labour.
fn worked_example(extra: &str) -> String {
    let mut t = String::from(
        r#"
[[counties]]
id = "C1"
name = "示范县"
province = "shanxi"
[[townships]]
id = "T1"
name = "示范镇"
county = "C1"
[[villages]]
code = "140000000001"
name = "东村"
township = "T1"
[[tariffs]]
id = "III-2017"
price = "0.85"
province = "shanxi"
[[coal_prices]]
province = "shanxi"
from = "2017-01-01"
price = "0.332"
[[stations]]
id = "S1"
name = "东村电站"
kind = "village"
county = "C1"
capacity_kwp = 300
latitude = 37.8
longitude = 112.5
commissioned = "2019-06-30"
tariff = "III-2017"
village = "140000000001"
[[costs]]
station = "S1"
kind = "o_and_m"
year = 2020
amount = "9000"
[[costs]]
station = "S1"
kind = "rent"
year = 2020
amount = "5000"
[[costs]]
station = "S1"
kind = "insurance"
year = 2020
amount = "1200"
"#,
    );
    for i in 1..=51 {
        let labour = match i {
            1..=35 => "full",
            36..=47 => "none",
            _ => "weak",
        };
        t.push_str(&format!(
            "[[households]]\nid = \"H{i:02}\"\nvillage = \"{V}\"\nhead = \"王小{i}\"\nlabour = \"{labour}\"\nbirth_year = 1975\nbank_account = \"6228{i:012}\"\nstatus = [{{ status = \"not_exited\", from = \"2016-01-01\" }}]\n"
        ));
    }
    for i in 1..=35 {
        t.push_str(&format!(
            "[[jobs]]\nid = \"J{i:02}\"\nvillage = \"{V}\"\ntitle = \"保洁员\"\nholder = \"H{i:02}\"\nmonthly_wage = \"600\"\nfrom = \"2020-01-01\"\n"
        ));
    }
    t.push_str(&format!(
        r#"
[[plans]]
village = "{V}"
year = 2020
expected_net = "329050"
lines = {{ job_wages = "252000", temp_labour = "11240", small_project = "35000", reward_subsidy = "24000", reserve = "6810" }}
projects = [{{ month = "2020-09", amount = "35000", project = "村道维修 road repair", payee = "县交通工程队" }}]
"#
    ));
    for i in 48..=51 {
        t.push_str(&format!(
            "[[plans.temp_labour]]\nhousehold = \"H{i:02}\"\nmonth = \"2020-03\"\namount = \"2810\"\nwork = \"irrigation ditch, 20 days\"\n"
        ));
    }
    for i in 36..=47 {
        t.push_str(&format!(
            "[[plans.rewards]]\nhousehold = \"H{i:02}\"\nmonth = \"2020-12\"\namount = \"2000\"\napproval = \"县扶贫办〔2020〕{i}号\"\nreason = \"no labour capacity\"\n"
        ));
    }
    t.push_str(extra);
    t
}

fn monthly_energy(d: &Deployment, month: YearMonth, wh: i64) -> HashMap<StationId, MonthEnergy> {
    d.stations
        .iter()
        .map(|s| {
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

fn active(villages: &[&str], year: i32) -> HashMap<(VillageId, i32), PlanState> {
    villages
        .iter()
        .map(|v| ((VillageId::new(*v), year), PlanState::Active))
        .collect()
}

fn receipts_each_month(year: i32, amount: &str) -> String {
    (1..=12)
        .map(|m| {
            format!("[[subsidy_receipts]]\nstation = \"S1\"\nmonth = \"{year}-{m:02}\"\namount = \"{amount}\"\ncovers = \"county-confirmed subsidy\"\n")
        })
        .collect()
}

/// Runs consecutive months, checking the cash identity of every village-month.
fn run_months(
    book: &Book<'_>,
    d: &Deployment,
    months: &[YearMonth],
    wh: i64,
    states: &HashMap<(VillageId, i32), PlanState>,
    mut carry: Carry,
) -> Result<(Vec<MonthRun>, Carry), Error> {
    let mut runs = Vec::new();
    for m in months {
        let run = book.month(*m, &monthly_energy(d, *m, wh), &carry, states)?;
        for v in &run.villages {
            assert_cash_identity(v);
        }
        carry = run.carry.clone();
        runs.push(run);
    }
    Ok((runs, carry))
}

fn assert_cash_identity(v: &VillageStatement) {
    let total = money::sum([v.payouts_total, v.reserve, v.carry_over]).expect("sum");
    assert_eq!(
        total, v.cash,
        "payouts + reserve + carry-over == cash for {}",
        v.village
    );
    assert_eq!(
        v.payouts_total,
        money::sum(v.payouts.iter().map(|p| p.amount)).expect("sum")
    );
    assert!(
        v.payouts.iter().all(|p| p.amount > Fen::ZERO),
        "no payout negative"
    );
}

fn year(y: i32) -> Vec<YearMonth> {
    (1..=12)
        .map(|m| YearMonth::new(y, m).expect("month"))
        .collect()
}

const MONTH_WH: i64 = 33_750_000; // 405,000 kWh a year

#[test]
fn revenue_lines_are_exact_and_rounded_once() {
    assert_eq!(
        revenue_line(WattHours(405_000_000), Price(3320)),
        Ok(fen("134460"))
    );
    assert_eq!(
        revenue_line(WattHours(405_000_000), Price(5180)),
        Ok(fen("209790"))
    );
    // 1 kWh at 0.3844 is 38.44 fen: 13 Wh is 0.49972 fen → 0, 14 Wh is 0.53816 fen → 1
    assert_eq!(revenue_line(WattHours(13), Price(3844)), Ok(Fen(0)));
    assert_eq!(revenue_line(WattHours(14), Price(3844)), Ok(Fen(1)));
    // exactly half a fen (5 Wh at 1 yuan/kWh) rounds up; 4 Wh (0.4 fen) down
    assert_eq!(revenue_line(WattHours(5), Price(10_000)), Ok(Fen(1)));
    assert_eq!(revenue_line(WattHours(4), Price(10_000)), Ok(Fen(0)));
}

#[test]
fn annual_costs_spread_as_the_worked_example_shows() {
    let rent = fen("5000");
    let parts: Vec<Fen> = (1..=12)
        .map(|m| instalment(rent, m, Instalment::HalfUp).expect("part"))
        .collect();
    assert!(parts[..11].iter().all(|p| *p == fen("416.67")));
    assert_eq!(parts[11], fen("416.63"));
    assert_eq!(money::sum(parts).expect("sum"), rent);
    let floor: Vec<Fen> = (1..=12)
        .map(|m| instalment(rent, m, Instalment::Floor).expect("part"))
        .collect();
    assert_eq!(floor[0], fen("416.66"));
    assert_eq!(floor[11], fen("416.74"));
    // tiny amounts never leave a negative December
    for x in 0..200 {
        let parts: Vec<Fen> = (1..=12)
            .map(|m| instalment(Fen(x), m, Instalment::HalfUp).expect("part"))
            .collect();
        assert!(parts.iter().all(|p| !p.is_negative()), "{x}");
        assert_eq!(money::sum(parts).expect("sum"), Fen(x));
    }
}

#[test]
fn largest_remainder_breaks_ties_by_village_code() {
    let parts =
        split_largest_remainder(Fen(10_000), &[("B", 1), ("A", 1), ("C", 1)]).expect("split");
    assert_eq!(
        parts,
        vec![("B", Fen(3333)), ("A", Fen(3334)), ("C", Fen(3333))]
    );
    let parts =
        split_largest_remainder(Fen(101), &[("A", 500), ("B", 300), ("C", 200)]).expect("split");
    // exact 50.5 / 30.3 / 20.2: floors 50+30+20 = 100, the leftover fen to A (largest remainder .5)
    assert_eq!(parts, vec![("A", Fen(51)), ("B", Fen(30)), ("C", Fen(20))]);
}

#[test]
fn worked_example_year_with_subsidy_received() {
    let d = load(&worked_example(&receipts_each_month(2020, "17482.50")));
    let book = Book::new(&d.allocation_input()).expect("book");
    let (runs, carry) = run_months(
        &book,
        &d,
        &year(2020),
        MONTH_WH,
        &active(&[V], 2020),
        Carry::default(),
    )
    .expect("year runs");
    let st = |f: fn(&StationRevenue) -> Fen| {
        money::sum(runs.iter().map(|r| f(&r.stations[0]))).expect("sum")
    };
    assert_eq!(runs[0].stations[0].base, fen("11205"));
    assert_eq!(st(|s| s.base), fen("134460"));
    assert_eq!(st(|s| s.subsidy_accrued), fen("209790"));
    assert_eq!(st(|s| s.gross_accrued), fen("344250"));
    assert_eq!(st(|s| s.costs_total), fen("15200"));
    assert_eq!(st(|s| s.net), fen("329050"));
    let rent = |r: &MonthRun| {
        r.stations[0]
            .costs
            .iter()
            .find(|c| c.label.starts_with("rent"))
            .map(|c| c.amount)
    };
    assert!(runs[..11].iter().all(|r| rent(r) == Some(fen("416.67"))));
    assert_eq!(rent(&runs[11]), Some(fen("416.63")));
    let line = |l: PlanLine| {
        money::sum(runs.iter().flat_map(|r| {
            r.villages[0]
                .payouts
                .iter()
                .filter(move |p| p.line == l)
                .map(|p| p.amount)
        }))
        .expect("sum")
    };
    assert_eq!(line(PlanLine::JobWages), fen("252000"));
    assert_eq!(line(PlanLine::TempLabour), fen("11240"));
    assert_eq!(
        money::add(line(PlanLine::JobWages), line(PlanLine::TempLabour)).expect("sum"),
        fen("263240"),
        "80% labour share"
    );
    assert_eq!(line(PlanLine::SmallProject), fen("35000"));
    assert_eq!(line(PlanLine::RewardSubsidy), fen("24000"));
    assert_eq!(
        carry.villages[&VillageId::new(V)].balance,
        fen("6810"),
        "carry-over"
    );
    assert!(!runs[0].villages[0].provisional);
    assert!(runs[0].stations[0].notes[0].contains("settlement"));
}

#[test]
fn first_year_base_only_is_refused_without_a_county_advance() {
    let d = load(&worked_example(""));
    let book = Book::new(&d.allocation_input()).expect("book");
    let err = book
        .month(
            ym("2020-01"),
            &monthly_energy(&d, ym("2020-01"), MONTH_WH),
            &Carry::default(),
            &active(&[V], 2020),
        )
        .expect_err("cash short");
    assert_eq!(err.violated(), Some(Rule::CashOnHand));
    let msg = err.to_string();
    assert!(
        msg.contains("CASH_ON_HAND") && msg.contains("21000.00") && msg.contains("9938.33"),
        "{msg}"
    );
    assert!(msg.contains("short by 11061.67"), "{msg}");
}

#[test]
fn advance_carries_the_first_year_and_arrears_settle_it_a_year_late() {
    let extra = r#"
[[advances]]
village = "140000000001"
month = "2020-01"
amount = "210000"
reference = "县财政垫付〔2020〕1号"
[[subsidy_receipts]]
station = "S1"
month = "2021-03"
amount = "209790"
covers = "2020 subsidy arrears"
"#;
    let d = load(&worked_example(extra));
    let book = Book::new(&d.allocation_input()).expect("book");
    let (runs, carry) = run_months(
        &book,
        &d,
        &year(2020),
        MONTH_WH,
        &active(&[V], 2020),
        Carry::default(),
    )
    .expect("2020 with the advance");
    let v = VillageId::new(V);
    assert_eq!(carry.villages[&v].advance_outstanding, fen("210000"));
    // 119,260 income + 210,000 advance − 322,240 payouts
    assert_eq!(carry.villages[&v].balance, fen("7020"));
    assert_eq!(runs[0].villages[0].advance, fen("210000"));
    let months: Vec<YearMonth> = year(2021)[..3].to_vec();
    let (runs21, carry21) =
        run_months(&book, &d, &months, MONTH_WH, &HashMap::new(), carry).expect("2021");
    let march = &runs21[2].villages[0];
    assert_eq!(runs21[2].stations[0].subsidy_received, fen("209790"));
    assert_eq!(march.advance_repaid, fen("209790"));
    assert_eq!(march.advance_outstanding, fen("210"));
    assert_eq!(carry21.villages[&v].advance_outstanding, fen("210"));
    assert!(march.payouts.is_empty(), "no 2021 plan: no payouts");
    assert!(march.notes.iter().any(|n| n.contains("no annual plan")));
    // no 2021 costs declared: income is the base alone, plus the arrears in March
    assert_eq!(march.income_total, fen("220995"));
}

#[test]
fn labour_share_below_80_percent_in_2020_is_refused() {
    let mut d = load(&worked_example(""));
    d.plans[0].temp_labour.clear();
    d.plans[0].lines.temp_labour = Fen::ZERO;
    d.plans[0].lines.small_project = fen("46240");
    let err = Book::new(&d.allocation_input()).expect_err("labour share");
    assert_eq!(err.violated(), Some(Rule::LabourShare));
    let msg = err.to_string();
    assert!(
        msg.contains("3号")
            && msg.contains("80%")
            && msg.contains("263240.00")
            && msg.contains("252000.00"),
        "{msg}"
    );
    // with the rule configured for another year only, the plan passes
    d.policy.labour_share[0].year = 2019;
    Book::new(&d.allocation_input()).expect("no rule for 2020 now");
}

#[test]
fn plan_lines_exceeding_income_are_refused() {
    let mut d = load(&worked_example(""));
    d.plans[0].lines.reserve = fen("6810.01");
    let err = Book::new(&d.allocation_input()).expect_err("over");
    assert_eq!(err.violated(), Some(Rule::PlanWithinIncome));
    assert!(err.to_string().contains("over by 0.01"), "{err}");
}

#[test]
fn household_in_two_villages_is_refused() {
    let mut d = load(&worked_example(""));
    let mut twin = d.households[0].clone();
    twin.village = VillageId::new("140000000002");
    d.households.push(twin);
    let err = Book::new(&d.allocation_input()).expect_err("two villages");
    assert_eq!(err.violated(), Some(Rule::OneHouseholdOneVillage));
    assert!(err.to_string().contains("H01"), "{err}");
}

#[test]
fn ineligible_job_holder_is_refused() {
    let mut d = load(&worked_example(&receipts_each_month(2020, "17482.50")));
    d.households[4].status.push(StatusPeriod {
        status: PovertyStatus::Exited,
        from: chrono::NaiveDate::from_ymd_opt(2019, 12, 1).expect("date"),
    });
    let book = Book::new(&d.allocation_input()).expect("book");
    let err = book
        .month(
            ym("2020-01"),
            &monthly_energy(&d, ym("2020-01"), MONTH_WH),
            &Carry::default(),
            &active(&[V], 2020),
        )
        .expect_err("ineligible");
    assert_eq!(err.violated(), Some(Rule::BeneficiaryEligible));
    assert!(
        err.to_string().contains("H05") && err.to_string().contains("Exited"),
        "{err}"
    );
}

#[test]
fn a_status_change_mid_year_waits_for_the_next_plan() {
    let mut d = load(&worked_example(&receipts_each_month(2020, "17482.50")));
    d.households[4].status.push(StatusPeriod {
        status: PovertyStatus::Exited,
        from: chrono::NaiveDate::from_ymd_opt(2020, 7, 1).expect("date"),
    });
    let book = Book::new(&d.allocation_input()).expect("book");
    run_months(
        &book,
        &d,
        &year(2020),
        MONTH_WH,
        &active(&[V], 2020),
        Carry::default(),
    )
    .expect("status read on 1 January");
    d.policy.status_change = StatusChange::Immediate;
    let book = Book::new(&d.allocation_input()).expect("book");
    let err = run_months(
        &book,
        &d,
        &year(2020),
        MONTH_WH,
        &active(&[V], 2020),
        Carry::default(),
    )
    .expect_err("immediate");
    assert_eq!(err.violated(), Some(Rule::BeneficiaryEligible));
}

#[test]
fn shares_not_summing_are_refused() {
    let mut d = load(&worked_example(""));
    let mut s = d.stations[0].clone();
    s.id = StationId::new("J1");
    s.kind = crate::domain::StationKind::JointVillage;
    s.village = None;
    s.owners = vec![
        crate::domain::OwnerShare {
            village: VillageId::new(V),
            weight: 300,
        },
        crate::domain::OwnerShare {
            village: VillageId::new("140000000002"),
            weight: 200,
        },
    ];
    s.total_weight = Some(600);
    d.stations.push(s);
    let err = Book::new(&d.allocation_input()).expect_err("shares");
    assert_eq!(err.violated(), Some(Rule::SharesSum));
    assert!(
        err.to_string().contains("500") && err.to_string().contains("600"),
        "{err}"
    );
}

fn joint_deployment() -> Deployment {
    let mut t = String::from(
        r#"
[[counties]]
id = "C1"
name = "县"
province = "anhui"
[[townships]]
id = "T1"
name = "镇"
county = "C1"
[[tariffs]]
id = "A"
price = "0.85"
province = "anhui"
[[coal_prices]]
province = "anhui"
from = "2017-01-01"
price = "0.3844"
[[stations]]
id = "JOINT"
name = "联村电站"
kind = "joint_village"
county = "C1"
capacity_kwp = 3000
latitude = 31.8
longitude = 117.2
commissioned = "2018-06-30"
tariff = "A"
owners = [{ village = "V3", weight = 1 }, { village = "V1", weight = 1 }, { village = "V2", weight = 1 }]
[[stations]]
id = "CENTRAL"
name = "集中式电站"
kind = "centralized"
county = "C1"
capacity_kwp = 20000
latitude = 31.8
longitude = 117.2
commissioned = "2016-06-30"
tariff = "A"
payment_per_beneficiary = "3000"
beneficiaries = ["P1", "P2", "P3"]
[[pool_membership]]
station = "CENTRAL"
household = "P2"
until = "2020-06"
[[costs]]
station = "JOINT"
kind = "insurance"
year = 2020
amount = "60000"
billed_in = 1
"#,
    );
    for v in ["V1", "V2", "V3"] {
        t.push_str(&format!(
            "[[villages]]\ncode = \"{v}\"\nname = \"{v}村\"\ntownship = \"T1\"\n"
        ));
    }
    for (h, v) in [("P1", "V1"), ("P2", "V2"), ("P3", "V3"), ("W1", "V1")] {
        t.push_str(&format!(
            "[[households]]\nid = \"{h}\"\nvillage = \"{v}\"\nhead = \"李{h}\"\nlabour = \"full\"\nstatus = [{{ status = \"not_exited\", from = \"2016-01-01\" }}]\n"
        ));
    }
    load(&t)
}

#[test]
fn joint_station_split_with_a_rounding_remainder_and_a_negative_month() {
    let d = joint_deployment();
    let book = Book::new(&d.allocation_input()).expect("book");
    // January: base R(100,000 kWh × 0.3844) = 38,440.00 minus 60,000.00 insurance billed at once.
    let jan = book
        .month(
            ym("2020-01"),
            &monthly_energy(&d, ym("2020-01"), 100_000_000),
            &Carry::default(),
            &HashMap::new(),
        )
        .expect("january");
    let s = &jan.stations[0];
    assert_eq!(s.station.as_str(), "JOINT");
    assert_eq!(s.base, fen("38440"));
    assert_eq!(s.net, fen("-21560"));
    assert_eq!(s.distributable, Fen::ZERO);
    assert_eq!(s.deficit_out, fen("-21560"));
    assert!(s.notes.iter().any(|n| n.contains("negative month")));
    assert!(jan
        .villages
        .iter()
        .all(|v| v.income_total == Fen::ZERO && v.cash == Fen::ZERO));
    // February: 60,000 kWh → base 23,064.00, minus the carried 21,560.00 = 1,504.00 split three ways.
    let feb = book
        .month(
            ym("2020-02"),
            &monthly_energy(&d, ym("2020-02"), 60_000_000),
            &jan.carry,
            &HashMap::new(),
        )
        .expect("february");
    let s = &feb.stations[0];
    assert_eq!(s.deficit_in, fen("-21560"));
    assert_eq!(s.distributable, fen("1504"));
    assert!(feb.carry.station_deficit.is_empty());
    // 150,400 fen / 3 = 50,133.33: the leftover fen goes to V1 (ties by ascending code)
    let share = |v: &str| feb.village(v).map(|s| s.income_total);
    assert_eq!(share("V1"), Some(Fen(50_134)));
    assert_eq!(share("V2"), Some(Fen(50_133)));
    assert_eq!(share("V3"), Some(Fen(50_133)));
    // March: an odd amount again, through a different month
    let mar = book
        .month(
            ym("2020-03"),
            &monthly_energy(&d, ym("2020-03"), 1_000),
            &feb.carry,
            &HashMap::new(),
        )
        .expect("march");
    let total: i64 = mar.villages.iter().map(|v| v.income_total.0).sum();
    assert_eq!(Fen(total), mar.stations[0].distributable);
}

#[test]
fn centralized_pool_pays_per_beneficiary_and_stops_for_a_household_that_left() {
    let d = joint_deployment();
    let book = Book::new(&d.allocation_input()).expect("book");
    let e = |m: &str| monthly_energy(&d, ym(m), 0);
    let june = book
        .month(
            ym("2020-06"),
            &e("2020-06"),
            &Carry::default(),
            &HashMap::new(),
        )
        .expect("june");
    assert_eq!(june.pools[0].lines.len(), 3);
    assert_eq!(june.pools[0].total, fen("750"));
    let july = book
        .month(ym("2020-07"), &e("2020-07"), &june.carry, &HashMap::new())
        .expect("july");
    let pool = &july.pools[0];
    let paid: Vec<&str> = pool.lines.iter().map(|l| l.household.as_str()).collect();
    assert_eq!(paid, vec!["P1", "P3"]);
    assert_eq!(pool.total, fen("500"));
    assert!(pool.notes.iter().any(|n| n.contains("P2")));
    // a year for a member: 3,000.00 exactly
    let mut sum = Fen::ZERO;
    for m in 1..=12 {
        let month = YearMonth::new(2020, m).expect("m");
        let run = book
            .month(
                month,
                &monthly_energy(&d, month, 0),
                &Carry::default(),
                &HashMap::new(),
            )
            .expect("run");
        sum = money::add(sum, run.pools[0].lines[0].amount).expect("sum");
    }
    assert_eq!(sum, fen("3000"));
}

#[test]
fn a_pool_beneficiary_cannot_also_hold_a_village_job() {
    let mut d = joint_deployment();
    d.jobs.push(crate::domain::JobPost {
        id: crate::domain::JobId::new("J1"),
        village: VillageId::new("V1"),
        title: "护路员".into(),
        holder: HouseholdId::new("P1"),
        monthly_wage: fen("500"),
        from: chrono::NaiveDate::from_ymd_opt(2020, 1, 1).expect("date"),
        until: None,
    });
    d.plans.push(VillagePlan {
        village: VillageId::new("V1"),
        year: 2020,
        expected_net: fen("10000"),
        expected_gross: None,
        lines: PlanBudget {
            job_wages: fen("6000"),
            temp_labour: fen("2000"),
            ..PlanBudget::default()
        },
        temp_labour: vec![],
        projects: vec![],
        rewards: vec![],
        status_change_immediate: false,
    });
    let book = Book::new(&d.allocation_input()).expect("book");
    let carry = Carry {
        station_deficit: Default::default(),
        villages: [(
            VillageId::new("V1"),
            VillageCarry {
                balance: fen("5000"),
                advance_outstanding: Fen::ZERO,
            },
        )]
        .into(),
    };
    let err = book
        .month(
            ym("2020-02"),
            &monthly_energy(&d, ym("2020-02"), 0),
            &carry,
            &active(&["V1"], 2020),
        )
        .expect_err("double benefit");
    assert_eq!(err.violated(), Some(Rule::NoDoubleBenefit));
    assert!(
        err.to_string().contains("P1") && err.to_string().contains("29号"),
        "{err}"
    );
}

#[test]
fn equal_temp_labour_to_every_household_is_a_handout() {
    let mut d = joint_deployment();
    d.plans.push(VillagePlan {
        village: VillageId::new("V1"),
        year: 2020,
        expected_net: fen("1250"),
        expected_gross: None,
        lines: PlanBudget {
            temp_labour: fen("1000"),
            ..PlanBudget::default()
        },
        temp_labour: ["P1", "W1"]
            .iter()
            .map(|h| TempLabour {
                household: HouseholdId::new(*h),
                month: ym("2020-02"),
                amount: fen("500"),
                work: "cleaning".into(),
            })
            .collect(),
        projects: vec![],
        rewards: vec![],
        status_change_immediate: false,
    });
    d.pool_membership.clear();
    d.stations.retain(|s| s.id.as_str() != "CENTRAL");
    let book = Book::new(&d.allocation_input()).expect("book");
    let carry = Carry {
        station_deficit: Default::default(),
        villages: [(
            VillageId::new("V1"),
            VillageCarry {
                balance: fen("5000"),
                advance_outstanding: Fen::ZERO,
            },
        )]
        .into(),
    };
    let err = book
        .month(
            ym("2020-02"),
            &monthly_energy(&d, ym("2020-02"), 0),
            &carry,
            &active(&["V1"], 2020),
        )
        .expect_err("handout");
    assert_eq!(err.violated(), Some(Rule::NoCashHandouts));
}

#[test]
fn an_adjustment_after_payment_is_a_new_entry_in_a_later_month() {
    let extra = format!(
        "{}[[adjustments]]\nvillage = \"{V}\"\nmonth = \"2020-03\"\nhousehold = \"H07\"\ncorrects = \"2020-01\"\namount = \"60\"\nreason = \"January attendance recounted: 22 of 22, not 20\"\n[[attendance]]\njob = \"J07\"\nmonth = \"2020-01\"\nworked = 20\nrequired = 22\n",
        receipts_each_month(2020, "17482.50")
    );
    let d = load(&worked_example(&extra));
    let book = Book::new(&d.allocation_input()).expect("book");
    let (runs, _) = run_months(
        &book,
        &d,
        &year(2020)[..3],
        MONTH_WH,
        &active(&[V], 2020),
        Carry::default(),
    )
    .expect("runs");
    let j07 = runs[0].villages[0]
        .payouts
        .iter()
        .find(|p| p.reference.starts_with("J07"))
        .expect("J07 paid");
    assert_eq!(j07.amount, fen("545.45"), "600 × 20/22 half-up");
    assert!(j07.basis.contains("20/22"));
    let adj: Vec<&Payout> = runs[2].villages[0]
        .payouts
        .iter()
        .filter(|p| p.line == PlanLine::Adjustment)
        .collect();
    assert_eq!(adj.len(), 1);
    assert_eq!(adj[0].amount, fen("60"));
    assert_eq!(&*adj[0].reference, "corrects 2020-01");
    // January itself is computed exactly as before: the paid month is untouched
    let again = book
        .month(
            ym("2020-01"),
            &monthly_energy(&d, ym("2020-01"), MONTH_WH),
            &Carry::default(),
            &active(&[V], 2020),
        )
        .expect("january again");
    assert_eq!(again, runs[0]);
    // a negative correction would claw back a paid wage
    let mut d2 = d.clone();
    d2.adjustments[0].amount = fen("-10");
    let book = Book::new(&d2.allocation_input()).expect("book");
    let err = run_months(
        &book,
        &d2,
        &year(2020)[..3],
        MONTH_WH,
        &active(&[V], 2020),
        Carry::default(),
    )
    .expect_err("claw back");
    assert_eq!(err.violated(), Some(Rule::NoClawback));
}

#[test]
fn no_payouts_unless_the_plan_is_active() {
    let d = load(&worked_example(&receipts_each_month(2020, "17482.50")));
    let book = Book::new(&d.allocation_input()).expect("book");
    let states: HashMap<_, _> = [((VillageId::new(V), 2020), PlanState::CountyFiled)].into();
    let run = book
        .month(
            ym("2020-01"),
            &monthly_energy(&d, ym("2020-01"), MONTH_WH),
            &Carry::default(),
            &states,
        )
        .expect("run");
    let v = &run.villages[0];
    assert!(v.payouts.is_empty());
    assert_eq!(v.closing_balance, v.cash);
    assert!(v.notes.iter().any(|n| n.contains("COUNTY_FILED")));
}

#[test]
fn metered_months_are_provisional_and_adders_apply_within_their_dates() {
    let extra = r#"
[[adders]]
province = "shanxi"
price = "0.20"
from = "2020-01-01"
until = "2020-01-31"
note = "provincial adder"
"#;
    let d = load(&worked_example(extra));
    let book = Book::new(&d.allocation_input()).expect("book");
    let mut e = monthly_energy(&d, ym("2020-01"), MONTH_WH);
    for m in e.values_mut() {
        m.basis = EnergyBasis::Metered;
    }
    let states = HashMap::new();
    let jan = book
        .month(ym("2020-01"), &e, &Carry::default(), &states)
        .expect("jan");
    assert!(jan.villages[0].provisional);
    assert!(jan.stations[0].notes[0].contains("PROVISIONAL"));
    assert_eq!(jan.stations[0].adder, fen("6750"));
    let feb = book
        .month(
            ym("2020-02"),
            &monthly_energy(&d, ym("2020-02"), MONTH_WH),
            &jan.carry,
            &states,
        )
        .expect("feb");
    assert_eq!(feb.stations[0].adder, Fen::ZERO);
    assert!(!feb.villages[0].provisional);
}

#[test]
fn a_station_outside_the_catalogue_accrues_no_subsidy() {
    let mut d = load(&worked_example(""));
    d.tariffs[0].in_subsidy_catalogue = false;
    let book = Book::new(&d.allocation_input()).expect("book");
    let run = book
        .month(
            ym("2020-01"),
            &monthly_energy(&d, ym("2020-01"), MONTH_WH),
            &Carry::default(),
            &HashMap::new(),
        )
        .expect("run");
    assert_eq!(run.stations[0].subsidy_accrued, Fen::ZERO);
    assert!(run.stations[0]
        .notes
        .iter()
        .any(|n| n.contains("not in the subsidy catalogue")));
}

#[test]
fn workflow_steps_amendments_and_rejections() {
    use PlanState::*;
    let path = [
        Draft,
        Deliberated,
        PlanPublished,
        TownshipReviewed,
        CountyFiled,
        Active,
        ResultPublished,
        Closed,
    ];
    for w in path.windows(2) {
        assert!(w[0].can_go_to(w[1]), "{} -> {}", w[0], w[1]);
    }
    assert!(!Draft.can_go_to(Active));
    assert!(Active.can_go_to(Deliberated), "amendment");
    assert!(TownshipReviewed.can_go_to(Draft), "rejection");
    assert!(!Closed.can_go_to(Draft));
    assert!(!Active.can_go_to(Draft));
    assert_eq!(PlanState::parse("plan-published"), Some(PlanPublished));
}

fn household(id: &str, village: &str) -> Household {
    Household {
        id: HouseholdId::new(id),
        village: VillageId::new(village),
        head: "张三".into(),
        status: vec![StatusPeriod {
            status: PovertyStatus::NotExited,
            from: chrono::NaiveDate::from_ymd_opt(2016, 1, 1).expect("date"),
        }],
        deep_poverty: false,
        labour: LabourCapacity::Full,
        birth_year: None,
        bank_account: None,
    }
}

proptest! {
    #[test]
    fn splits_sum_exactly(total in 0_i64..10_000_000_000, weights in prop::collection::vec(1_u64..100_000, 1..12)) {
        let named: Vec<(usize, u64)> = weights.iter().copied().enumerate().collect();
        let parts = split_largest_remainder(Fen(total), &named).expect("split");
        prop_assert_eq!(parts.iter().map(|p| p.1 .0).sum::<i64>(), total);
        prop_assert!(parts.iter().all(|p| !p.1.is_negative()));
        // each part is within one fen of its exact share
        let w: u64 = weights.iter().sum();
        for (i, p) in &parts {
            let exact = i128::from(total) * i128::from(weights[*i]);
            let lo = exact / i128::from(w);
            prop_assert!(i128::from(p.0) == lo || i128::from(p.0) == lo + 1);
        }
    }

    #[test]
    fn instalments_sum_to_the_year(x in 0_i64..1_000_000_000, floor in any::<bool>()) {
        let rule = if floor { Instalment::Floor } else { Instalment::HalfUp };
        let parts: Vec<Fen> = (1..=12).map(|m| instalment(Fen(x), m, rule).expect("part")).collect();
        prop_assert!(parts.iter().all(|p| !p.is_negative()));
        prop_assert_eq!(money::sum(parts).expect("sum"), Fen(x));
    }

    #[test]
    fn months_keep_the_cash_identity_and_rerun_identically(
        energies in prop::collection::vec(0_i64..60_000_000, 12),
        advance in 0_i64..30_000_000,
        joint_weights in prop::collection::vec(1_u64..1000, 3),
    ) {
        let mut d = load(&worked_example(&receipts_each_month(2020, "1000")));
        d.advances.push(Advance { village: VillageId::new(V), month: ym("2020-01"), amount: Fen(advance), reference: "advance".into() });
        let mut joint = d.stations[0].clone();
        joint.id = StationId::new("JOINT");
        joint.kind = crate::domain::StationKind::JointVillage;
        joint.village = None;
        joint.owners = ["140000000002", V, "140000000003"].iter().zip(&joint_weights)
            .map(|(v, w)| crate::domain::OwnerShare { village: VillageId::new(*v), weight: *w }).collect();
        d.stations.push(joint);
        for code in ["140000000002", "140000000003"] {
            let mut v = d.villages[0].clone();
            v.code = VillageId::new(code);
            d.villages.push(v);
            d.households.push(household(&format!("X{code}"), code));
        }
        let book = Book::new(&d.allocation_input()).expect("book").spread_over(1, usize::MAX);
        // The same book with every month's villages spread over three threads, one village each.
        let spread = Book::new(&d.allocation_input()).expect("book").spread_over(3, 0);
        let states = active(&[V], 2020);
        let mut carry = Carry::default();
        for (i, wh) in energies.iter().enumerate() {
            let m = YearMonth::new(2020, i as u32 + 1).expect("m");
            let e = monthly_energy(&d, m, *wh);
            let parallel = spread.month(m, &e, &carry, &states);
            match book.month(m, &e, &carry, &states) {
                Ok(run) => {
                    let again = book.month(m, &e, &carry, &states).expect("rerun");
                    prop_assert_eq!(&again, &run);
                    prop_assert_eq!(parallel.as_ref().ok(), Some(&run));
                    for v in &run.villages {
                        let total = money::sum([v.payouts_total, v.reserve, v.carry_over]).expect("sum");
                        prop_assert_eq!(total, v.cash);
                        prop_assert!(v.payouts.iter().all(|p| p.amount > Fen::ZERO));
                        prop_assert!(!v.cash.is_negative());
                    }
                    for s in &run.stations {
                        prop_assert_eq!(s.shares.iter().map(|x| x.2 .0).sum::<i64>(), s.distributable.0);
                    }
                    carry = run.carry;
                }
                Err(e) => {
                    prop_assert_eq!(e.violated(), Some(Rule::CashOnHand), "{}", e);
                    prop_assert_eq!(parallel.err().map(|p| p.to_string()), Some(e.to_string()));
                    break;
                }
            }
        }
    }
}
