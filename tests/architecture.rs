//! Data flows one way (ARCHITECTURE.md): a module never reaches back up the picture. This test reads
//! every file under `src/` and `crates/core/src/`, finds each `crate::<module>` reference outside
//! test code and fails on an arrow that points against the flow, naming the file and the line; and it
//! keeps the core crate free of the runtime, the database and the web.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every top-level module with its layer. A module may name a module of a lower layer only; modules
/// of the same layer are peers and do not name each other. Derived from ARCHITECTURE.md's picture:
/// the vocabulary first, then the pure cores, the deployment file, storage, what reads and writes
/// storage, the collectors that push into ingest, the HTTP face, and at the top the simulator, the
/// benchmarks and the wiring.
const LAYERS: &[(&str, u8)] = &[
    // The vocabulary: ids, units, registry types, samples, months, plan states.
    ("domain", 0),
    // The retry policy every loop shares; it names no module of the crate.
    ("retry", 0),
    // Pure cores and leaves that know only the vocabulary.
    ("solar", 1),
    ("registers", 1),
    ("metrics", 1),
    ("auth", 1),
    ("allocate", 1),
    ("tabular", 1),
    // The deployment file: it embeds the sections the cores define.
    ("config", 2),
    // What data loggers publish, read against the deployment's loggers and devices.
    ("logger", 3),
    // A grid settlement statement read and checked against the deployment.
    ("settlement", 3),
    // All SQL.
    ("store", 3),
    // What stands on the store: the ingest door, the sinks it forwards to, energy from counters.
    ("ingest", 4),
    ("sinks", 4),
    ("energy", 4),
    // From energy to money, from samples to alerts (with their notifiers), users and tokens.
    ("ledger", 5),
    ("alerts", 5),
    ("accounts", 5),
    // Collectors push samples through ingest.
    ("collect", 6),
    // The JSON API, the pages and /metrics read everything below.
    ("http", 7),
    // The demo simulator and the benchmarks drive the real components.
    ("sim", 8),
    ("bench", 8),
    // Several instances on one database: the gateways and the singleton jobs by leases.
    ("cluster", 8),
    // Wiring and the command line.
    ("app", 9),
    ("cli", 10),
];

/// Known arrows against the flow, each with its reason. Remove an entry when its arrow is gone; a
/// new arrow against the flow fails the test.
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[
    // (from file, to module, reason); none today.
];

/// Where the modules live: the service crate and the core crate it re-exports.
const SOURCES: [&str; 2] = ["src", "crates/core/src"];

/// Crates the core may not depend on: the runtime, the database, the web, the brokers, the clients.
const NOT_IN_CORE: &[&str] = &[
    "tokio",
    "tokio-util",
    "tokio-modbus",
    "sqlx",
    "axum",
    "hyper",
    "tower",
    "tower-http",
    "tower-sessions",
    "reqwest",
    "rumqttc",
    "rumqttd",
    "influxdb2",
    "maud",
    "utoipa",
];

#[test]
fn the_core_crate_needs_no_runtime_database_or_web() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/Cargo.toml");
    let manifest: toml::Value = std::fs::read_to_string(&path)
        .expect("read the core's manifest")
        .parse()
        .expect("the core's manifest is TOML");
    let deps = manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .expect("the core has dependencies");
    let banned: Vec<&String> = deps
        .keys()
        .filter(|name| NOT_IN_CORE.contains(&name.as_str()))
        .collect();
    assert!(banned.is_empty(), "crates/core depends on {banned:?}");
    // And every module of the core is one the service re-exports under the same name.
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read src/lib.rs");
    for module in [
        "allocate",
        "config",
        "domain",
        "registers",
        "solar",
        "tabular",
    ] {
        assert!(
            lib.contains(&format!("pub use sunshare_core::{module};")),
            "src/lib.rs re-exports {module}"
        );
    }
}

#[derive(Debug)]
struct Arrow {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read src directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Test code may reach anywhere: `tests.rs`, `testing.rs`, files under a `tests/` folder.
fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name == "testing.rs" || rel.contains("/tests/")
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules one line of code names through `crate::`, including `crate::{a, b::c}`.
fn referenced_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| is_ident_char(c) || c == ':' || c == '$') {
            continue; // `$crate::`, `sunshare_crate::` and the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0_i32;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && is_ident_char(c) => {
                        let ident: String = group[i..]
                            .chars()
                            .take_while(|c| is_ident_char(*c))
                            .collect();
                        out.push(ident);
                        start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => start = false,
                }
            }
        } else {
            let ident: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
            if !ident.is_empty() {
                out.push(ident);
            }
        }
    }
    out
}

/// `crate::` references of one file, skipping comments and items marked `#[cfg(test)]`.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut skip_until: Option<String> = None;
    let mut cfg_test = false;
    for (n, raw) in text.lines().enumerate() {
        if let Some(end) = &skip_until {
            if raw.trim_end() == end {
                skip_until = None;
            }
            continue;
        }
        let code = raw.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            cfg_test = true;
            continue;
        }
        if cfg_test {
            if trimmed.starts_with("#[") || trimmed.is_empty() {
                continue;
            }
            cfg_test = false;
            if !trimmed.ends_with(';') && !trimmed.ends_with('}') {
                let indent = &raw[..raw.len() - raw.trim_start().len()];
                skip_until = Some(format!("{indent}}}"));
            }
            continue;
        }
        for module in referenced_modules(code) {
            out.push((n + 1, module));
        }
    }
    out
}

fn arrows() -> Vec<Arrow> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in SOURCES {
        rust_files(&root.join(dir), &mut files);
    }
    let mut out = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root)
            .expect("file under the crate")
            .to_string_lossy()
            .replace('\\', "/");
        let inner = SOURCES
            .iter()
            .find_map(|dir| rel.strip_prefix(&format!("{dir}/")))
            .unwrap_or(&rel);
        let from = inner
            .split('/')
            .next()
            .unwrap_or(inner)
            .trim_end_matches(".rs")
            .to_owned();
        if from == "lib" || from == "main" || is_test_file(&rel) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source file");
        for (line, to) in references(&text) {
            if to != from {
                out.push(Arrow {
                    file: rel.clone(),
                    line,
                    from: from.clone(),
                    to,
                });
            }
        }
    }
    out
}

#[test]
fn every_module_is_in_the_layer_table() {
    let mut missing = Vec::new();
    for dir in SOURCES {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&root).expect("read src") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if name == "lib"
                || name == "main"
                || (path.is_file() && !path.to_string_lossy().ends_with(".rs"))
            {
                continue;
            }
            if layer(&name).is_none() {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a layer in tests/architecture.rs: {missing:?}"
    );
}

#[test]
fn no_module_reaches_back_up_the_flow() {
    let mut against = Vec::new();
    let mut used: BTreeMap<(String, String), bool> = KNOWN_EXCEPTIONS
        .iter()
        .map(|(file, to, _)| (((*file).to_owned(), (*to).to_owned()), false))
        .collect();
    for a in arrows() {
        let (Some(from), Some(to)) = (layer(&a.from), layer(&a.to)) else {
            against.push(format!(
                "{}:{}: `{}` names `crate::{}`, a module missing from the layer table",
                a.file, a.line, a.from, a.to
            ));
            continue;
        };
        if to < from {
            continue;
        }
        if let Some(seen) = used.get_mut(&(a.file.clone(), a.to.clone())) {
            *seen = true;
            continue;
        }
        let how = if to == from {
            "its peer"
        } else {
            "a higher layer"
        };
        against.push(format!(
            "{}:{}: `{}` (layer {from}) names `crate::{}` ({how}, layer {to})",
            a.file, a.line, a.from, a.to
        ));
    }
    assert!(
        against.is_empty(),
        "arrows against the one-way flow of ARCHITECTURE.md:\n{}",
        against.join("\n")
    );
    let stale: Vec<String> = used
        .iter()
        .filter(|(_, seen)| !**seen)
        .map(|((file, to), _)| format!("{file} -> {to}"))
        .collect();
    assert!(
        stale.is_empty(),
        "known exceptions that no longer occur (remove them from KNOWN_EXCEPTIONS): {stale:?}"
    );
}

#[test]
fn the_reference_finder_sees_plain_and_grouped_paths_and_skips_test_code() {
    let text =
        "use crate::store::Store;\nuse crate::{domain::Fen, solar};\n// crate::http in a comment\n\
                let x = $crate::nothing;\n#[cfg(test)]\nmod tests {\n    use crate::app;\n}\n\
                fn f() { crate::energy::month(); }\n";
    let found: Vec<(usize, String)> = references(text);
    assert_eq!(
        found,
        vec![
            (1, "store".to_owned()),
            (2, "domain".to_owned()),
            (2, "solar".to_owned()),
            (9, "energy".to_owned()),
        ]
    );
}
