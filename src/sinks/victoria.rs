//! Test and benchmark support: a VictoriaMetrics process (it speaks InfluxDB line protocol on
//! `/api/v2/write`) started on a free loopback port with its own data directory, stopped
//! gracefully, restarted on the same port and data, and read back through `/api/v1/export`.
//!
//! Not used by the service itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Names the victoria-metrics binary; tests skip without it and fail if it is set but unusable.
pub const VAR: &str = "SUNSHARE_TEST_VICTORIA";

#[derive(Debug, thiserror::Error)]
#[error("victoria-metrics: {0}")]
pub struct Error(pub String);

/// The binary from `SUNSHARE_TEST_VICTORIA`, or `None` after printing the skip line.
pub fn binary_for_test(test: &str) -> Option<PathBuf> {
    match std::env::var_os(VAR) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            crate::store::testing::announce_skip(&format!(
                "SKIPPED (VictoriaMetrics) {test}: set {VAR}=/usr/bin/victoria-metrics to run it"
            ));
            None
        }
    }
}

/// A free loopback port: bind port 0, read it, release it.
pub fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error(e.to_string()))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error(e.to_string()))
}

/// One series as `/api/v1/export` returns it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    pub values: Vec<f64>,
    pub timestamps: Vec<i64>,
}

#[derive(Debug)]
pub struct Victoria {
    binary: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Victoria {
    /// Starts a server on a free port with `data` as its storage and waits until it is healthy.
    pub async fn start(binary: &Path, data: &Path) -> Result<Victoria, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error(e.to_string()))?;
        let mut v = Victoria {
            binary: binary.to_path_buf(),
            data: data.to_path_buf(),
            port: free_port()?,
            child: None,
            http,
        };
        v.launch().await?;
        Ok(v)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.data).map_err(|e| Error(e.to_string()))?;
        let child = Command::new(&self.binary)
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!("-storageDataPath={}", self.data.display()))
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error(format!("cannot start {}: {e}", self.binary.display())))?;
        self.child = Some(child);
        // Bounded readiness poll: up to 30 s.
        for _ in 0..300 {
            if let Ok(r) = self.http.get(format!("{}/health", self.url())).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(Error(format!("exited at start-up with {status}")));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error("not healthy within 30 s".into()))
    }

    /// Stops the server gracefully (SIGTERM: in-flight requests finish, data is flushed).
    pub async fn stop(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let _ = child.kill().await;
                Err(Error("did not stop within 30 s; killed".into()))
            }
        }
    }

    /// Starts again on the same port and data directory.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.stop().await?;
        self.launch().await
    }

    /// Makes recently written samples visible to export.
    pub async fn force_flush(&self) -> Result<(), Error> {
        self.http
            .get(format!("{}/internal/force_flush", self.url()))
            .send()
            .await
            .map_err(|e| Error(e.to_string()))?;
        Ok(())
    }

    /// Every sample of the series matching `selector`, e.g. `{__name__="pv_device_ac_power_w"}`.
    pub async fn export(&self, selector: &str) -> Result<Vec<Series>, Error> {
        self.force_flush().await?;
        let text = self
            .http
            .post(format!("{}/api/v1/export", self.url()))
            .form(&[("match[]", selector), ("start", "0")])
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| Error(e.to_string()))?
            .text()
            .await
            .map_err(|e| Error(e.to_string()))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| Error(format!("bad export line: {e}"))))
            .collect()
    }
}
