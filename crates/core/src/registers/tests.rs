use super::*;
use crate::domain::{DeviceState, Metric, Readings};

fn catalog() -> Catalog {
    match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => panic!("built-in maps must load and pass their vectors: {e}"),
    }
}

#[test]
fn every_builtin_map_loads_and_passes_its_vectors() {
    let c = catalog();
    let mut names: Vec<_> = c.names().into_iter().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "growatt",
            "huawei_sun2000",
            "solis",
            "sungrow_sg",
            "sunspec"
        ]
    );
}

#[test]
fn plans_respect_block_limits_and_cover_every_field() {
    let c = catalog();
    for name in c.names() {
        let map = c.get(&name).expect("map");
        assert!(!map.plan().is_empty(), "{name}");
        for b in map.plan() {
            assert!(b.count >= 1 && b.count <= map.max_block, "{name}: {b:?}");
        }
        // Every metric decodes from an image holding only the plan's registers.
        let mut r = Readings::default();
        let value = |m: Metric| {
            if m.name().starts_with("energy") {
                100_000.0
            } else {
                1.0
            }
        };
        for m in map.metrics() {
            r.set(m, value(m));
        }
        r.state = Some(DeviceState::Producing);
        let decoded = Decoded {
            readings: r.clone(),
            serial: None,
            model: None,
        };
        let back = map
            .decode(&map.blocks_from(&map.encode(&decoded)))
            .expect("decode");
        for m in map.metrics() {
            assert_eq!(back.get(m), Some(value(m)), "{name}: {m}");
        }
        assert_eq!(back.state, Some(DeviceState::Producing), "{name}");
        // A routine poll reads no more than the full plan, and its blocks alone give the same
        // readings.
        let img = map.encode(&decoded);
        let polled: Vec<(u16, Vec<u16>)> = map
            .poll_plan()
            .iter()
            .map(|b| {
                let words = (0..b.count)
                    .map(|i| img.get(&(b.start + i)).copied().unwrap_or(0))
                    .collect();
                (b.start, words)
            })
            .collect();
        let words = |plan: &[ReadBlock]| plan.iter().map(|b| u32::from(b.count)).sum::<u32>();
        assert!(words(map.poll_plan()) <= words(map.plan()), "{name}");
        assert_eq!(map.decode(&polled).expect("decode"), back, "{name}");
    }
}

#[test]
fn huawei_plan_splits_at_gaps() {
    let map = catalog().get("huawei_sun2000").expect("map");
    let starts: Vec<(u16, u16)> = map.plan().iter().map(|b| (b.start, b.count)).collect();
    assert_eq!(starts, vec![(30000, 25), (32008, 16), (32064, 52)]);
    // The model and serial (30000..30025) are read by `probe`, not by every poll.
    let polled: Vec<(u16, u16)> = map.poll_plan().iter().map(|b| (b.start, b.count)).collect();
    assert_eq!(polled, vec![(32008, 16), (32064, 52)]);
    assert!(map
        .plan()
        .iter()
        .all(|b| b.function == FunctionCode::ReadHolding));
}

#[test]
fn sungrow_uses_doc_numbering_and_input_registers() {
    let map = catalog().get("sungrow_sg").expect("map");
    assert_eq!(map.plan()[0].start, 4989);
    assert_eq!(map.function(), FunctionCode::ReadInput);
}

#[test]
fn missing_block_is_an_error_not_a_zero() {
    let map = catalog().get("huawei_sun2000").expect("map");
    let err = map.decode(&[]).expect_err("nothing read");
    assert!(matches!(err, DecodeError::Missing { .. }), "{err}");
}

#[test]
fn sunspec_relayout_moves_fields() {
    let map = catalog().get("sunspec").expect("map");
    let chain = sunspec::default_chain(0, &[1, 120, 101], 0).expect("chain");
    let relaid = map.with_chain(chain).expect("relaid");
    assert!(relaid.plan()[0].start < 200);
    assert!(relaid.metrics().contains(&Metric::AcPowerW));
    assert!(!relaid.metrics().contains(&Metric::PvVoltageV(1)));
    let only_common = sunspec::default_chain(0, &[1], 0).expect("chain");
    assert_eq!(
        map.with_chain(only_common).err(),
        Some(DecodeError::NoKnownModel)
    );
}

const GOOD: &str = r#"
family = "x"
description = "x"
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

fn bad(text: &str) -> MapError {
    match RegisterMap::parse("x", "bad.toml", text) {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn bad_maps_name_file_and_key() {
    assert!(RegisterMap::parse("x", "good.toml", GOOD).is_ok());
    let e = bad(&GOOD.replace("unit = \"W\"", "unit = \"kWh\""));
    assert_eq!(e.key(), Some("field[0].unit"), "{e}");
    assert!(e.to_string().contains("bad.toml"), "{e}");
    let e = bad(&GOOD.replace("ac_power_w = 5 }", "ac_power_w = 50 }"));
    assert_eq!(e.key(), Some("test[0] (t)"), "{e}");
    assert!(e.to_string().contains("want 50"), "{e}");
    let e = bad(&GOOD.replace("function = 3", "function = 6"));
    assert_eq!(e.key(), Some("function"));
    let e = bad(&GOOD.replace("type = \"u16\"", "type = \"u16\"\nscael = 2"));
    assert!(e.to_string().contains("scael"), "{e}");
    let e = bad(&GOOD.replace("metric = \"ac_power_w\"", "metric = \"power\""));
    assert_eq!(e.key(), Some("field[0].metric"));
    let e = bad(&GOOD.replace(
        "word_order = \"high_first\"",
        "word_order = \"high_first\"\nmax_block = 200",
    ));
    assert_eq!(e.key(), Some("max_block"));
}

#[test]
fn with_dir_overrides_builtin_and_rejects_bad_files() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("huawei_sun2000.toml"), GOOD).expect("write");
    std::fs::write(dir.path().join("extra.toml"), GOOD).expect("write");
    let c = Catalog::with_dir(dir.path()).expect("catalog");
    assert_eq!(c.get("huawei_sun2000").expect("map").family(), "x");
    assert!(c.names().contains("extra"));
    assert!(c.names().contains("sunspec"));
    std::fs::write(
        dir.path().join("broken.toml"),
        GOOD.replace("address = 10", "address = 70000"),
    )
    .expect("write");
    let e = Catalog::with_dir(dir.path()).expect_err("broken");
    assert!(e.file().ends_with("broken.toml"), "{e}");
    assert_eq!(e.key(), Some("field[0]"));
}
