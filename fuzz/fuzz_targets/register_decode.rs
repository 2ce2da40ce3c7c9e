//! Register blocks as a gateway might answer them (any words, short or long blocks, shifted
//! starts) decoded through each built-in register map: a reading or a `DecodeError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use sunshare_core::registers::{Catalog, RegisterMap};

fn maps() -> &'static [std::sync::Arc<RegisterMap>] {
    static MAPS: OnceLock<Vec<std::sync::Arc<RegisterMap>>> = OnceLock::new();
    MAPS.get_or_init(|| {
        let catalog = Catalog::builtin().expect("the built-in maps compile");
        let mut names: Vec<String> = catalog.names().into_iter().collect();
        names.sort();
        names.iter().filter_map(|n| catalog.get(n)).collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let [pick, shape, rest @ ..] = data else {
        return;
    };
    let map = &maps()[usize::from(*pick) % maps().len()];
    let mut words = rest
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .cycle();
    let blocks: Vec<(u16, Vec<u16>)> = map
        .plan()
        .iter()
        .enumerate()
        .filter(|(i, _)| shape & (1 << (i % 8)) == 0 || shape & 0x80 == 0)
        .map(|(i, b)| {
            // Some blocks short, long or shifted, as a confused gateway answers.
            let count = match (shape >> 4) & 3 {
                0 => b.count,
                1 => b.count.saturating_sub(1 + i as u16),
                2 => b.count.saturating_add(3),
                _ => b.count / 2,
            };
            let start = if shape & 0x40 != 0 {
                b.start.wrapping_add(1)
            } else {
                b.start
            };
            let taken: Vec<u16> = if rest.is_empty() {
                vec![0; usize::from(count)]
            } else {
                words.by_ref().take(usize::from(count)).collect()
            };
            (start, taken)
        })
        .collect();
    let _ = map.decode_full(&blocks);
});
