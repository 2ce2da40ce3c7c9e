//! A grid company's settlement statement as it comes (title rows, 合计 rows, amounts with
//! separators, any encoding, CSV or XLSX): statement lines with their warnings, or each problem
//! with its line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use sunshare_core::config::Deployment;
use sunshare_core::logger::payload::tests_support;

fn deployment() -> &'static Deployment {
    static D: OnceLock<Deployment> = OnceLock::new();
    D.get_or_init(tests_support::deployment)
}

fuzz_target!(|data: &[u8]| {
    match sunshare_core::settlement::parse(data, deployment()) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                let _ = w.to_string();
            }
        }
        Err(problems) => assert!(!problems.is_empty(), "a refusal names at least one problem"),
    }
});
