//! The command line as an operator uses it: exit codes and messages.

use std::process::Command;

fn sunshare() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sunshare"))
}

#[test]
fn check_config_accepts_the_example() {
    let out = sunshare()
        .args(["check-config", "--config", "sunshare.example.toml"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("sunshare.example.toml: ok (2 stations, 5 devices"),
        "{stdout}"
    );
}

#[test]
fn check_config_names_file_line_key_and_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.toml");
    let text = std::fs::read_to_string("sunshare.example.toml")
        .expect("example")
        .replace("total_weight = 1200", "total_weight = 1300")
        .replace(
            "unit = 2 }   # same SmartLogger",
            "unit = 1 }   # same SmartLogger",
        );
    std::fs::write(&path, &text).expect("write");
    let out = sunshare()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 problems found"), "{stderr}");
    let owners_line = text
        .lines()
        .position(|l| l.starts_with("owners = ["))
        .map(|i| i + 1)
        .expect("line");
    assert!(
        stderr.contains(&format!("broken.toml:{owners_line}: stations[1].owners: ownership weights sum to 1200, but total_weight is 1300")),
        "{stderr}"
    );
    assert!(stderr.contains("devices[1].transport: device 'QX-DY-01-INV2' and device 'QX-DY-01-INV1' both use unit 1"), "{stderr}");
    assert!(
        stderr.contains("fix: give each device behind one gateway its own unit id"),
        "{stderr}"
    );
}

/// The example with its first job ended on `until` and a second job for the same household from
/// `second_from`, checked by `check-config`: (exit code, stdout, stderr).
fn check_second_job(until: &str, second_from: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fleet.toml");
    let example = std::fs::read_to_string("sunshare.example.toml").expect("example");
    let first = "holder = \"1401211012010001\"\nmonthly_wage = \"600\"\nfrom = 2026-01-01\n";
    assert!(example.contains(first), "the example's first job changed");
    let text = example.replacen(
        first,
        &format!(
            "{first}{until}\n[[jobs]]\nid = \"DY-HL-01\"\nvillage = \"140121101201\"\n\
             title = \"护路员\"\nholder = \"1401211012010001\"\nmonthly_wage = \"600\"\n\
             from = {second_from}\n"
        ),
        1,
    );
    std::fs::write(&path, &text).expect("write");
    let out = sunshare()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_a_household_whose_second_job_starts_after_the_first_ends() {
    let (code, stdout, stderr) = check_second_job("until = 2026-06-30", "2026-07-01");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("fleet.toml: ok"), "{stdout}");
}

#[test]
fn check_config_refuses_two_jobs_of_one_household_paid_in_the_same_month() {
    let (code, _, stderr) = check_second_job("until = 2026-07-31", "2026-07-01");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("1 problem found"), "{stderr}");
    assert!(
        stderr.contains(
            "jobs[1].holder: household '1401211012010001' holds job 'DY-BJ-01' (2026-01-01 to 2026-07-31) \
             and job 'DY-HL-01' (from 2026-07-01), both paid in 2026-07"
        ),
        "{stderr}"
    );
}

/// Two months' statements, both saved as 结算单.csv, and the first one imported a second time.
#[test]
fn settlement_import_tells_files_of_one_name_apart_and_refuses_the_same_file_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("fleet.toml");
    let example = std::fs::read_to_string("sunshare.example.toml").expect("example");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        example.replacen(
            "data_dir = \"/var/lib/sunshare\"",
            &format!("data_dir = {:?}", data.display().to_string()),
            1,
        ),
    )
    .expect("write");
    let statement = |month: &str| {
        format!(
            "国网阳曲县供电公司光伏发电结算单 {month}\r\n\
             电站编号,电站名称,结算月份,上网电量(kWh),结算金额(元)\r\n\
             QX-DY-01,东于村光伏电站,{month},5400,4590.00\r\n\
             QX-LC-01,东于镇联村电站,{month},9000,7650.30\r\n\
             合　计,,,14400,12240.30\r\n"
        )
    };
    let import = |folder: &str, text: &str| {
        let path = dir.path().join(folder).join("结算单.csv");
        std::fs::create_dir_all(path.parent().expect("folder")).expect("mkdir");
        std::fs::write(&path, text).expect("write statement");
        let out = sunshare()
            .args(["settlement", "import"])
            .arg(&path)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = import("october", &statement("2026-10"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("结算单.csv: imported 2 settled station-months (utf-8; import 1,"),
        "{stdout}"
    );
    // 9,000 kWh at 0.85 yuan is 7,650.00 yuan: the 0.30 more is a warning, the file is imported.
    assert!(
        stdout.contains(
            "结算单.csv:4: station 'QX-LC-01' 2026-10: settled amount 7650.30 yuan, but \
             9000.000 kWh × 0.8500 yuan/kWh = 7650.00 yuan (difference 0.30 yuan)"
        ),
        "{stdout}"
    );

    let (code, _, stderr) = import("downloads", &statement("2026-10"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("结算单.csv: this file was already imported, as '结算单.csv' uploaded")
            && stderr.contains("(import 1, SHA-256 ")
            && stderr.contains("nothing imported again"),
        "{stderr}"
    );

    let (code, stdout, stderr) = import("november", &statement("2026-11"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("(utf-8; import 2,"), "{stdout}");
}

#[test]
fn check_config_reports_a_missing_file() {
    let out = sunshare()
        .args(["check-config", "--config", "/nonexistent/fleet.toml"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/fleet.toml") && stderr.contains("cannot read the file"),
        "{stderr}"
    );
}

#[test]
fn help_lists_the_subcommands() {
    let out = sunshare().arg("--help").output().expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for cmd in ["demo", "serve", "check-config"] {
        assert!(stdout.contains(cmd), "{cmd} in --help: {stdout}");
    }
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = sunshare().arg("frobnicate").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}

/// `sunshare user ...` and `sunshare token ...` against a deployment in a temporary directory.
#[test]
fn accounts_are_added_changed_disabled_and_tokens_revoked_from_the_command_line() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("fleet.toml");
    let example = std::fs::read_to_string("sunshare.example.toml").expect("example");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        example.replacen(
            "data_dir = \"/var/lib/sunshare\"",
            &format!("data_dir = {:?}", data.display().to_string()),
            1,
        ),
    )
    .expect("write");
    let cfg = config.to_str().expect("utf-8 path");
    let run = |args: &[&str], stdin: &str| {
        let mut child = sunshare()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("waits");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let add = |name: &str, role: &str, scope: &[&str], pw: &str| {
        let mut args = vec!["user", "add", "--config", cfg, name, "--role", role];
        args.extend_from_slice(scope);
        run(&args, &format!("{pw}\n"))
    };

    // Refusals name what is wrong and create nothing.
    let (ok, _, err) = add("li", "accountant", &["--village", "140121101201"], "short");
    assert!(!ok && err.contains("at least 10 characters"), "{err}");
    let (ok, _, err) = add(
        "li",
        "accountant",
        &["--county", "140121"],
        "granary-west-17",
    );
    assert!(
        !ok && err.contains("the accountant role answers for villages"),
        "{err}"
    );
    let (ok, _, err) = add("li", "accountant", &["--village", "999"], "granary-west-17");
    assert!(!ok && err.contains("village:999 is not declared"), "{err}");
    let (ok, _, err) = add("li", "cashier", &["--all"], "granary-west-17");
    assert!(
        !ok && err.contains("admin, operator, reviewer, accountant, viewer"),
        "{err}"
    );
    let (ok, out, _) = run(&["user", "list", "--config", cfg], "");
    assert!(ok && out.is_empty(), "nobody yet: {out}");

    let (ok, out, err) = add("admin", "admin", &["--all"], "granary-west-17");
    assert!(ok, "{err}");
    assert!(out.contains("user admin (admin) created"), "{out}");
    let (ok, _, err) = add(
        "li",
        "accountant",
        &["--village", "140121101201"],
        "granary-west-17",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = add("li", "viewer", &["--all"], "granary-west-17");
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(
        &["user", "passwd", "--config", cfg, "li"],
        "orchard-east-29\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(
        &["user", "passwd", "--config", cfg, "nobody"],
        "orchard-east-29\n",
    );
    assert!(!ok && err.contains("there is no user nobody"), "{err}");
    let (ok, _, err) = run(&["user", "disable", "--config", cfg, "li"], "");
    assert!(ok, "{err}");
    let (_, out, _) = run(&["user", "list", "--config", cfg], "");
    let li = out
        .lines()
        .find(|l| l.starts_with("li\t"))
        .expect("li listed");
    assert!(
        li.contains("accountant")
            && li.contains("village:140121101201")
            && li.ends_with("DISABLED"),
        "{li}"
    );

    let (ok, out, err) = run(
        &[
            "token",
            "add",
            "--config",
            cfg,
            "--user",
            "admin",
            "--label",
            "grafana",
            "--expires",
            "30d",
        ],
        "",
    );
    assert!(ok, "{err}");
    let token = out.lines().next().expect("the token line");
    assert!(
        token.starts_with("sst_") && token.len() == 4 + 16 + 1 + 64,
        "{token}"
    );
    let id = &token[4..20];
    let (_, out, _) = run(&["token", "list", "--config", cfg], "");
    assert!(out.contains(id) && out.contains("grafana\tlive"), "{out}");
    assert!(!out.contains(&token[21..]), "the secret is never listed");
    let (ok, _, err) = run(&["token", "revoke", "--config", cfg, id], "");
    assert!(ok, "{err}");
    let (_, out, _) = run(&["token", "list", "--config", cfg], "");
    assert!(out.contains("grafana\trevoked"), "{out}");
    let (ok, _, err) = run(&["token", "revoke", "--config", cfg, id], "");
    assert!(!ok && err.contains("no live token"), "{err}");
}
