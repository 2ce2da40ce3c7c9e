use super::*;

const GOOD: &str = r#"
[storage]
backend = "sqlite"

[[counties]]
id = "C1"
name = "Test County"
province = "shanxi"

[[townships]]
id = "T1"
name = "East Township"
county = "C1"

[[villages]]
code = "V1"
name = "First Village"
township = "T1"

[[villages]]
code = "V2"
name = "Second Village"
township = "T1"

[[tariffs]]
id = "zone3-2017"
price = 0.85
province = "shanxi"

[[coal_prices]]
province = "shanxi"
from = 2017-07-01
price = "0.332"

[[stations]]
id = "S1"
name = "First Village Station"
kind = "village"
county = "C1"
capacity_kwp = 300
latitude = 37.87
longitude = 112.55
commissioned = 2017-06-30
tariff = "zone3-2017"
village = "V1"

[[stations]]
id = "J1"
name = "Joint Station"
kind = "joint_village"
county = "C1"
capacity_kwp = 600
latitude = 37.9
longitude = 112.6
commissioned = 2018-01-01
tariff = "zone3-2017"
owners = [{ village = "V1", weight = 200 }, { village = "V2", weight = 400 }]
total_weight = 600

[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "huawei_sun2000"
transport = { type = "modbus_tcp", address = "10.0.0.5:502", unit = 1 }
rated_power_w = 100000

[[households]]
id = "H1"
village = "V1"
head = "张三"
status = [{ status = "not_exited", from = 2016-01-01 }]
labour = "full"

[[jobs]]
id = "J-1"
village = "V1"
title = "保洁员"
holder = "H1"
monthly_wage = "600"
from = 2026-01-01
"#;

fn models() -> HashSet<String> {
    ["huawei_sun2000".to_owned()].into_iter().collect()
}

fn load(text: &str) -> Result<Deployment, ConfigError> {
    Deployment::from_str_with_env("test.toml", text, &[], &models())
}

fn problems(text: &str) -> Vec<Problem> {
    match load(text) {
        Ok(_) => panic!("expected the file to be rejected"),
        Err(e) => e.problems,
    }
}

#[test]
fn the_good_file_loads_with_exact_amounts() {
    let d = load(GOOD).expect("valid");
    assert_eq!(d.stations.len(), 2);
    assert_eq!(d.tariffs[0].price, Price(8500));
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
    assert_eq!(d.coal_price("shanxi", day), Some(Price(3320)));
    assert_eq!(d.jobs[0].monthly_wage, Fen(60_000));
    assert_eq!(d.stations[0].timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(d.storage.raw_retention, Duration::from_secs(30 * 86_400));
}

#[test]
fn unknown_key_names_the_line() {
    let text = GOOD.replace(
        "capacity_kwp = 300",
        "capacity_kwp = 300\ncapacity_kw = 300",
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].message.contains("unknown field `capacity_kw`"),
        "{:?}",
        p[0]
    );
    let expected_line = text
        .lines()
        .position(|l| l.starts_with("capacity_kw "))
        .map(|i| i + 1);
    assert_eq!(p[0].line, expected_line);
}

#[test]
fn duplicate_station_id_is_reported_at_its_line() {
    let text = GOOD.replace("id = \"J1\"", "id = \"S1\"");
    let p = problems(&text);
    let dup = p
        .iter()
        .find(|p| p.key == "stations[1].id")
        .expect("duplicate reported");
    assert!(dup.message.contains("duplicate id 'S1'"));
    let expected = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "id = \"S1\"")
        .nth(1)
        .map(|(i, _)| i + 1);
    assert_eq!(dup.line, expected);
}

#[test]
fn missing_register_map_lists_the_known_ones() {
    let text = GOOD.replace("model = \"huawei_sun2000\"", "model = \"huawei_sun9000\"");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "devices[0].model");
    assert!(p[0].message.contains("huawei_sun9000"));
    assert!(p[0].fix.contains("huawei_sun2000"));
}

#[test]
fn shares_that_do_not_sum_are_refused() {
    let text = GOOD.replace("total_weight = 600", "total_weight = 700");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "stations[1].owners");
    assert!(p[0].message.contains("sum to 600, but total_weight is 700"));
    assert!(p[0].line.is_some());
}

#[test]
fn household_in_two_villages_is_refused() {
    let text = format!(
        "{GOOD}\n[[households]]\nid = \"H1\"\nvillage = \"V2\"\nhead = \"李四\"\n\
         status = [{{ status = \"monitored\", from = 2020-01-01 }}]\nlabour = \"weak\"\n"
    );
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    assert!(p[0]
        .message
        .contains("registered in village 'V1' and again in village 'V2'"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace(
            "county = \"C1\"\ncapacity_kwp = 300",
            "county = \"C9\"\ncapacity_kwp = -1",
        )
        .replace("holder = \"H1\"", "holder = \"H7\"");
    let p = problems(&text);
    let keys: Vec<&str> = p.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"stations[0].county"), "{keys:?}");
    assert!(keys.contains(&"stations[0].capacity_kwp"), "{keys:?}");
    assert!(keys.contains(&"jobs[0].holder"), "{keys:?}");
}

#[test]
fn syntax_errors_name_the_line() {
    let text = GOOD.replace("price = 0.85", "price = 0.85.1");
    let p = problems(&text);
    let line = text
        .lines()
        .position(|l| l.contains("0.85.1"))
        .map(|i| i + 1);
    assert_eq!(p[0].line, line);
}

#[test]
fn environment_overrides_keys_and_keeps_types() {
    let env = vec![
        (
            "SUNSHARE_HTTP__LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        ),
        (
            "SUNSHARE_STORAGE__MAX_CONNECTIONS".to_owned(),
            "3".to_owned(),
        ),
        ("UNRELATED".to_owned(), "x".to_owned()),
    ];
    let d = Deployment::from_str_with_env("t.toml", GOOD, &env, &models()).expect("valid");
    assert_eq!(d.http.listen.port(), 9999);
    assert_eq!(d.storage.max_connections, 3);
}

#[test]
fn secrets_never_print() {
    let text = GOOD.replace(
        "backend = \"sqlite\"",
        "backend = \"postgres\"\nurl = \"postgres://u:hunter2@db/x\"",
    );
    let d = load(&text).expect("valid");
    let debug = format!("{:?}", d.storage);
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn the_error_display_names_file_line_and_fix() {
    let text = GOOD.replace("total_weight = 600", "total_weight = 700");
    let e = load(&text).expect_err("invalid");
    let shown = e.to_string();
    assert!(shown.starts_with("test.toml: 1 problem found"), "{shown}");
    assert!(shown.contains("test.toml:"), "{shown}");
    assert!(shown.contains("fix: make the weights sum"), "{shown}");
}

/// GOOD with its job J-1 given `until` (if any) and a second job J-2 for the same household.
fn two_jobs(first_until: Option<&str>, second_from: &str, policy: &str) -> String {
    let until = first_until.map_or(String::new(), |u| format!("until = {u}\n"));
    let text = GOOD.replace(
        "monthly_wage = \"600\"\nfrom = 2026-01-01\n",
        &format!("monthly_wage = \"600\"\nfrom = 2026-01-01\n{until}"),
    );
    format!(
        "{text}\n[[jobs]]\nid = \"J-2\"\nvillage = \"V1\"\ntitle = \"护路员\"\nholder = \"H1\"\n\
         monthly_wage = \"500\"\nfrom = {second_from}\n{policy}"
    )
}

#[test]
fn consecutive_jobs_of_one_household_are_accepted() {
    let d = load(&two_jobs(Some("2026-06-30"), "2026-07-01", "")).expect("no overlap");
    assert!(d.policy.one_job_per_household);
    assert_eq!(d.jobs.len(), 2);
}

#[test]
fn overlapping_jobs_of_one_household_are_refused_with_both_jobs_and_the_month() {
    let p = problems(&two_jobs(None, "2026-03-01", ""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].key, "jobs[1].holder");
    assert!(
        p[0].message.contains(
            "household 'H1' holds job 'J-1' (from 2026-01-01) and job 'J-2' (from 2026-03-01), \
             both paid in 2026-03"
        ),
        "{}",
        p[0].message
    );
    assert!(
        p[0].fix.contains("one_job_per_household = false"),
        "{}",
        p[0].fix
    );
    assert!(p[0].line.is_some());
}

#[test]
fn a_handover_inside_one_month_is_refused_because_both_jobs_are_paid_that_month() {
    let p = problems(&two_jobs(Some("2026-06-15"), "2026-06-16", ""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].message.contains(
            "(2026-01-01 to 2026-06-15) and job 'J-2' (from 2026-06-16), both paid in 2026-06"
        ),
        "{}",
        p[0].message
    );
}

#[test]
fn overlapping_jobs_are_accepted_when_the_policy_allows_several() {
    let text = two_jobs(
        None,
        "2026-03-01",
        "\n[policy]\none_job_per_household = false\n",
    );
    let d = load(&text).expect("policy off");
    assert!(!d.policy.one_job_per_household);
    assert_eq!(d.jobs.len(), 2);
}

/// A register map of its own, for a `firmware_dir`.
const CUSTOM_MAP: &str = r#"
family = "custom"
description = "a site-specific map"
function = 3
numbering = "pdu"
word_order = "high_first"
[[field]]
metric = "ac_power_w"
address = 10
type = "u16"
unit = "W"
[[test]]
name = "t"
registers = { "10" = [5] }
expect = { ac_power_w = 5 }
"#;

#[test]
fn the_environment_wins_over_the_file_for_the_firmware_dir_and_the_maps_come_from_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env_maps = dir.path().join("env-maps");
    std::fs::create_dir_all(&env_maps).expect("maps dir");
    std::fs::write(env_maps.join("custom.toml"), CUSTOM_MAP).expect("map");
    // The file names a directory that does not exist, and a device of the custom map.
    let text = GOOD
        .replace(
            "[storage]",
            "[collect]\nfirmware_dir = \"file-maps\"\n\n[storage]",
        )
        .replace("model = \"huawei_sun2000\"", "model = \"custom\"");
    let path = dir.path().join("fleet.toml");
    std::fs::write(&path, text).expect("file");
    let env = vec![(
        "SUNSHARE_COLLECT__FIRMWARE_DIR".to_owned(),
        env_maps.display().to_string(),
    )];
    let loaded = Deployment::load_with_env(&path, &env).expect("the environment's maps");
    assert_eq!(loaded.deployment.collect.firmware_dir, Some(env_maps));
    assert!(loaded.catalog.get("custom").is_some());
    assert!(
        loaded.catalog.get("huawei_sun2000").is_some(),
        "built-ins stay"
    );
    // Without the variable the file's directory is used, resolved against the file.
    let e = Deployment::load_with_env(&path, &[]).expect_err("file-maps does not exist");
    assert!(
        e.to_string()
            .contains(&dir.path().join("file-maps").display().to_string()),
        "{e}"
    );
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let env = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
    let e = Deployment::from_str_with_env(
        "t.toml",
        GOOD,
        &env("SUNSHARE_STORAGE__MAX_CONNECTIONS", "many"),
        &models(),
    )
    .expect_err("not a number");
    assert_eq!(e.problems.len(), 1, "{e}");
    assert_eq!(
        e.problems[0].key, "SUNSHARE_STORAGE__MAX_CONNECTIONS",
        "{e}"
    );
    assert!(
        e.problems[0].message.contains("storage.max_connections"),
        "{e}"
    );
    assert!(
        e.problems[0]
            .fix
            .contains("SUNSHARE_STORAGE__MAX_CONNECTIONS"),
        "{e}"
    );
    // A key the section does not have, and one in a section that does not exist.
    for name in ["SUNSHARE_HTTP__LISTN", "SUNSHARE_NOSUCH__KEY"] {
        let e = Deployment::from_str_with_env("t.toml", GOOD, &env(name, "1"), &models())
            .expect_err("unknown key");
        assert_eq!(e.problems[0].key, name, "{e}");
    }
    // A secret given in the environment never appears in the message.
    let e = Deployment::from_str_with_env(
        "t.toml",
        GOOD,
        &[
            (
                "SUNSHARE_STORAGE__URL".to_owned(),
                "postgres://u:hunter2@db/x".to_owned(),
            ),
            ("SUNSHARE_STORAGE__BACKEND".to_owned(), "oracle".to_owned()),
        ],
        &models(),
    )
    .expect_err("no such backend");
    assert_eq!(e.problems[0].key, "SUNSHARE_STORAGE__BACKEND", "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    // An error in the file itself still names its key and line.
    let text = GOOD.replace("capacity_kwp = 300", "capacity_kwp = \"big\"");
    let e = Deployment::from_str_with_env(
        "t.toml",
        &text,
        &env("SUNSHARE_HTTP__LISTEN", "127.0.0.1:9999"),
        &models(),
    )
    .expect_err("not a number");
    assert_eq!(e.problems[0].key, "stations[0].capacity_kwp", "{e}");
    let line = text
        .lines()
        .position(|l| l.contains("\"big\""))
        .map(|i| i + 1);
    assert_eq!(e.problems[0].line, line, "{e}");
}
