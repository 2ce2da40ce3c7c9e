//! An independent Modbus TCP server (pymodbus, `pymodbus_server.py`) serving the registers a test
//! writes. Tests skip unless SUNSHARE_TEST_PYMODBUS names a python3 that has pymodbus, and fail if
//! it is set and the server cannot be used.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const VAR: &str = "SUNSHARE_TEST_PYMODBUS";

pub struct Server {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Server {
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreter from SUNSHARE_TEST_PYMODBUS, or `None` after printing that `test` skipped.
pub fn python(test: &str) -> Option<String> {
    match std::env::var(VAR) {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            sunshare::store::testing::announce_skip(&format!(
                "SKIPPED (pymodbus) {test}: set {VAR}=python3 (with pymodbus installed) to run it"
            ));
            None
        }
    }
}

/// Starts the server on `registers` (the format is in `pymodbus_server.py`, "advance" included)
/// and waits, bounded, until it listens.
pub async fn start(python: &str, registers: serde_json::Value) -> Server {
    let dir = tempfile::tempdir().expect("dir");
    let spec = dir.path().join("registers.json");
    let port_file = dir.path().join("port");
    std::fs::write(&spec, registers.to_string()).expect("write spec");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/pymodbus_server.py"
    );
    let mut child = Command::new(python)
        .arg(script)
        .arg(&spec)
        .arg(&port_file)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{VAR}={python} cannot be started: {e}"));
    // Bounded wait for the server to announce its port.
    for _ in 0..300 {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            if let Ok(port) = p.trim().parse() {
                return Server {
                    child,
                    _dir: dir,
                    port,
                };
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("pymodbus server exited early ({status}); is pymodbus installed for {python}?");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("pymodbus server did not start within 15 s");
}
