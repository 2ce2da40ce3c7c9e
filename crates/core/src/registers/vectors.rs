//! The test vectors every map file carries, run when the map is loaded: a wrong scale or word order
//! never reaches a poller.

use super::codec::Decoded;
use super::model::{Numbering, RawTest, RegisterMap};
use super::RegisterImage;
use crate::domain::{DeviceState, Metric};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// Decodes the vector's registers and compares with its expectations; then checks that encoding the
/// decoded values and decoding again gives the same result.
pub(super) fn run(map: &RegisterMap, numbering: &Numbering, t: &RawTest) -> Result<(), String> {
    let relaid;
    let map = match (&t.chain, map.chain()) {
        (Some(ids), Some(own)) => {
            let chain = super::sunspec::default_chain(own.base, ids, 2)?;
            relaid = map.with_chain(chain).map_err(|e| e.to_string())?;
            &relaid
        }
        (Some(_), None) => return Err("`chain` is only for SunSpec maps".into()),
        (None, _) => map,
    };
    let mut img = RegisterImage::new();
    if let Some(chain) = map.chain() {
        super::sunspec::write_chain(chain, &mut img);
    }
    for (key, words) in &t.registers {
        let a: u32 = key
            .parse()
            .map_err(|_| format!("registers key '{key}' is not a decimal address"))?;
        let pdu = match numbering {
            Numbering::Pdu => a,
            Numbering::Doc => a
                .checked_sub(1)
                .ok_or_else(|| format!("registers key '{key}': doc numbering starts at 1"))?,
        };
        for (i, w) in words.iter().enumerate() {
            let addr = u16::try_from(pdu as usize + i)
                .map_err(|_| format!("registers key '{key}' runs past 65535"))?;
            img.insert(addr, *w);
        }
    }
    let decoded = map
        .decode_full(&map.blocks_from(&img))
        .map_err(|e| format!("decode failed: {e}"))?;
    check(&decoded, t)?;
    let again = map
        .decode_full(&map.blocks_from(&map.encode(&decoded)))
        .map_err(|e| format!("decode of the encoded image failed: {e}"))?;
    if again != decoded {
        return Err(format!(
            "encode is not the inverse of decode: {decoded:?} became {again:?}"
        ));
    }
    Ok(())
}

fn check(d: &Decoded, t: &RawTest) -> Result<(), String> {
    for (key, want) in &t.expect {
        let key = key.as_str();
        match key {
            "state" => {
                let want = want.as_str().ok_or("expect.state must be a string")?;
                let got = d.readings.state.unwrap_or(DeviceState::Unknown);
                if got.as_str() != want {
                    return Err(format!(
                        "expect.state: want {want}, decoded {}",
                        got.as_str()
                    ));
                }
            }
            "alarms" => {
                let want: Vec<&str> = want
                    .as_array()
                    .ok_or("expect.alarms must be a list of codes")?
                    .iter()
                    .filter_map(toml::Value::as_str)
                    .collect();
                let mut got: Vec<&str> =
                    d.readings.alarms.iter().map(|a| a.code.as_str()).collect();
                let mut want_sorted = want.clone();
                got.sort_unstable();
                want_sorted.sort_unstable();
                if got != want_sorted {
                    return Err(format!(
                        "expect.alarms: want {want_sorted:?}, decoded {got:?}"
                    ));
                }
            }
            "grid_loss" => {
                let want = want
                    .as_bool()
                    .ok_or("expect.grid_loss must be true or false")?;
                let got = d.readings.alarms.iter().any(|a| a.grid_loss);
                if got != want {
                    return Err(format!("expect.grid_loss: want {want}, decoded {got}"));
                }
            }
            "absent" => {
                for name in want
                    .as_array()
                    .ok_or("expect.absent must be a list of metric names")?
                    .iter()
                    .filter_map(toml::Value::as_str)
                {
                    let m: Metric = name.parse().map_err(|e| format!("absent: {e}"))?;
                    if let Some(v) = d.readings.get(m) {
                        return Err(format!("absent: {name} should be left out, decoded {v}"));
                    }
                }
            }
            "serial" | "model" => {
                let want = want
                    .as_str()
                    .ok_or("expect.serial/model must be a string")?;
                let got = if key == "serial" { &d.serial } else { &d.model };
                if got.as_deref() != Some(want) {
                    return Err(format!("expect.{key}: want {want:?}, decoded {got:?}"));
                }
            }
            metric => {
                let m: Metric = metric
                    .parse()
                    .map_err(|e| format!("expect.{metric}: {e}"))?;
                let want = match want {
                    toml::Value::Float(f) => *f,
                    toml::Value::Integer(i) => *i as f64,
                    _ => return Err(format!("expect.{metric} must be a number")),
                };
                match d.readings.get(m) {
                    Some(got) if close(got, want) => {}
                    Some(got) => {
                        return Err(format!("expect.{metric}: want {want}, decoded {got}"))
                    }
                    None => return Err(format!("expect.{metric}: want {want}, decoded nothing")),
                }
            }
        }
    }
    for name in &t.absent {
        let m: Metric = name.parse().map_err(|e| format!("absent: {e}"))?;
        if let Some(v) = d.readings.get(m) {
            return Err(format!("absent: {name} should be left out, decoded {v}"));
        }
    }
    Ok(())
}
