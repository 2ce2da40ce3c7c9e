//! What a data logger might publish, on its own topics and others: samples, or problems each with
//! its reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use sunshare_core::logger::payload::{decode_message, tests_support};
use sunshare_core::logger::template::{load_templates, Directory};

fn directory() -> &'static Directory {
    static DIR: OnceLock<Directory> = OnceLock::new();
    DIR.get_or_init(|| {
        let templates = load_templates(None).expect("the built-in templates load");
        Directory::build(&tests_support::deployment(), &templates).expect("a directory")
    })
}

const TOPICS: [&str; 4] = [
    "t1/sunshare/S1/L1/telemetry",
    "t1/sunshare/S1/L2/telemetry",
    "t1/sunshare/S9/L1/telemetry",
    "t1/other",
];

fuzz_target!(|data: &[u8]| {
    let [pick, payload @ ..] = data else {
        return;
    };
    let topic = TOPICS[usize::from(*pick) % TOPICS.len()];
    let _ = decode_message(directory(), None, topic, payload, 64 * 1024);
});
