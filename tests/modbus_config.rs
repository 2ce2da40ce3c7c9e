//! `sunshare check-config` and the register maps: extra maps from `collect.firmware_dir`, bad maps
//! refused with file and key, devices naming a map that does not exist.

use std::path::Path;
use std::process::Command;

const DEPLOYMENT: &str = r#"
[collect]
firmware_dir = "maps"

[[counties]]
id = "C1"
name = "Test County"
province = "shanxi"

[[townships]]
id = "T1"
name = "Test Township"
county = "C1"

[[villages]]
code = "V1"
name = "Test Village"
township = "T1"

[[tariffs]]
id = "TAR"
price = "0.85"
province = "shanxi"

[[stations]]
id = "S1"
name = "Station 1"
kind = "village"
county = "C1"
village = "V1"
capacity_kwp = 60.0
latitude = 37.87
longitude = 112.55
commissioned = "2019-06-30"
tariff = "TAR"

[[devices]]
id = "S1-INV1"
station = "S1"
kind = "inverter"
model = "MODEL"
rated_power_w = 50000.0
transport = { type = "modbus_tcp", address = "127.0.0.1:502", unit = 1 }
"#;

const GOOD_MAP: &str = r#"
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

fn check(dir: &Path, model: &str, map: Option<&str>) -> (i32, String, String) {
    std::fs::create_dir_all(dir.join("maps")).expect("maps dir");
    if let Some(map) = map {
        std::fs::write(dir.join("maps/custom.toml"), map).expect("map");
    }
    let config = dir.join("site.toml");
    std::fs::write(&config, DEPLOYMENT.replace("MODEL", model)).expect("config");
    // Run from elsewhere: the built-in maps are inside the binary, the extra ones found via the file.
    let out = Command::new(env!("CARGO_BIN_EXE_sunshare"))
        .current_dir(std::env::temp_dir())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run sunshare");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn builtin_and_extra_maps_are_known() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, out, err) = check(dir.path(), "huawei_sun2000", Some(GOOD_MAP));
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = check(dir.path(), "custom", Some(GOOD_MAP));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn unknown_model_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, _, err) = check(dir.path(), "huawei_sun3000", None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("devices[0].model"), "{err}");
    assert!(err.contains("huawei_sun3000"), "{err}");
    assert!(
        err.contains("sungrow_sg"),
        "lists the maps that exist: {err}"
    );
}

#[test]
fn bad_map_is_refused_with_file_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let wrong_unit = GOOD_MAP.replace("unit = \"W\"", "unit = \"kWh\"");
    let (code, _, err) = check(dir.path(), "huawei_sun2000", Some(&wrong_unit));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("custom.toml"), "{err}");
    assert!(err.contains("field[0].unit"), "{err}");

    let wrong_vector = GOOD_MAP.replace("ac_power_w = 5 }", "ac_power_w = 7 }");
    let (code, _, err) = check(dir.path(), "huawei_sun2000", Some(&wrong_vector));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("test[0]") && err.contains("want 7"), "{err}");

    let typo = GOOD_MAP.replace("type = \"u16\"", "tpye = \"u16\"");
    let (code, _, err) = check(dir.path(), "huawei_sun2000", Some(&typo));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("custom.toml") && err.contains("tpye"), "{err}");
}

#[test]
fn the_environment_overrides_the_files_firmware_dir() {
    let dir = tempfile::tempdir().expect("dir");
    // The file's `maps` holds no custom map; the variable's directory does.
    std::fs::create_dir_all(dir.path().join("maps")).expect("maps dir");
    let env_maps = dir.path().join("site-maps");
    std::fs::create_dir_all(&env_maps).expect("env maps dir");
    std::fs::write(env_maps.join("custom.toml"), GOOD_MAP).expect("map");
    let config = dir.path().join("site.toml");
    std::fs::write(&config, DEPLOYMENT.replace("MODEL", "custom")).expect("config");
    let run = |env: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sunshare"));
        cmd.current_dir(std::env::temp_dir())
            .env_remove("SUNSHARE_COLLECT__FIRMWARE_DIR")
            .arg("check-config")
            .arg("--config")
            .arg(&config);
        if let Some(env) = env {
            cmd.env("SUNSHARE_COLLECT__FIRMWARE_DIR", env);
        }
        let out = cmd.output().expect("run sunshare");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(None);
    assert_eq!(code, 2, "the file's maps have no 'custom': {err}");
    assert!(err.contains("devices[0].model"), "{err}");
    let (code, err) = run(Some(&env_maps));
    assert_eq!(code, 0, "the environment's maps are used: {err}");
    // A bad value in the environment names the variable.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sunshare"));
    let out = cmd
        .current_dir(std::env::temp_dir())
        .env("SUNSHARE_STORAGE__MAX_CONNECTIONS", "many")
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run sunshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("SUNSHARE_STORAGE__MAX_CONNECTIONS"), "{err}");
}
