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
