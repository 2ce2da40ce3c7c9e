//! A table as people send it (CSV in UTF-8, GBK or UTF-16; XLSX; anything else): rows with their
//! line numbers, or `Unreadable` naming the line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((rows, _encoding)) = sunshare_core::tabular::read_rows(data) {
        for row in &rows {
            for cell in &row.cells {
                let _ = sunshare_core::tabular::fold(cell);
            }
        }
    }
});
