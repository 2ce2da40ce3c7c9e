//! A register map file as someone might write it: parsed and compiled, or refused with a
//! `MapError` naming the key, never a panic; a map that compiles decodes its own plan's zeros.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sunshare_core::registers::RegisterMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(map) = RegisterMap::parse("fuzz", "fuzz.toml", text) {
        let blocks: Vec<(u16, Vec<u16>)> = map
            .plan()
            .iter()
            .map(|b| (b.start, vec![0; usize::from(b.count)]))
            .collect();
        let _ = map.decode_full(&blocks);
    }
});
