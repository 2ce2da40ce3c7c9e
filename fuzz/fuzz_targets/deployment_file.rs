//! A deployment file as an operator might write it: a deployment, or a `ConfigError` naming the
//! file, line and key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::OnceLock;

fn models() -> &'static HashSet<String> {
    static MODELS: OnceLock<HashSet<String>> = OnceLock::new();
    MODELS.get_or_init(|| {
        [
            "huawei_sun2000",
            "sungrow_sg",
            "sunspec",
            "solis",
            "growatt",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) =
        sunshare_core::config::Deployment::from_str_with_env("fuzz.toml", text, &[], models())
    {
        let _ = e.to_string();
    }
});
