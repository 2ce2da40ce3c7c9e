//! `sunshare bench ...`: throughput measurements of the write path and the InfluxDB sink, each
//! reported with a peer measured in the same run so the figures travel between machines.

use crate::store::bench::{Measured, StoreBench};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Setup(String),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// The store write path (raw + rollups + latest) on SQLite, against peers on the same rows.
    Store(StoreArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Full inverter samples to write.
    #[arg(long, default_value_t = 300_000)]
    pub samples: usize,
    /// Devices reporting on a 60 s schedule.
    #[arg(long, default_value_t = 2_000)]
    pub devices: usize,
    /// Samples per write (the ingest worker's batch size).
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Samples given to the row-at-a-time peer.
    #[arg(long, default_value_t = 30_000)]
    pub peer_samples: usize,
    /// A python3 interpreter for the sqlite3.executemany peer (skipped when absent).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Where the benchmark databases go (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Runs one benchmark and returns its report as text.
pub async fn run(cmd: BenchCommand) -> Result<String, Error> {
    match cmd {
        BenchCommand::Store(a) => {
            let tmp;
            let dir = match a.dir {
                Some(d) => d,
                None => {
                    tmp = TempDir::new("sunshare-bench-store")?;
                    tmp.0.clone()
                }
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Setup(format!("creating {}: {e}", dir.display())))?;
            let b = StoreBench {
                samples: a.samples,
                devices: a.devices,
                batch: a.batch,
                peer_samples: a.peer_samples,
                python: a.python,
                dir,
            };
            let results = crate::store::bench::run(&b).await?;
            Ok(report(
                &format!(
                    "store write path, SQLite: {} samples of {} devices, batches of {}",
                    b.samples, b.devices, b.batch
                ),
                &results,
                "samples/s",
            ))
        }
    }
}

/// A table of contenders with their rates and the first one's ratio against each peer.
pub fn report(title: &str, results: &[Measured], unit: &str) -> String {
    let mut out = format!("{title}\n");
    let Some(first) = results.first() else {
        return out;
    };
    for m in results {
        let _ = writeln!(
            out,
            "  {:<60} {:>9} in {:>8.3} s = {:>10.0} {unit}",
            m.name,
            m.samples,
            m.elapsed.as_secs_f64(),
            m.per_second()
        );
    }
    for m in &results[1..] {
        let _ = writeln!(
            out,
            "  ratio: {:.2} x {}",
            first.per_second() / m.per_second().max(1e-9),
            m.name
        );
    }
    out
}

/// A directory removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> Result<Self, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Setup(format!("creating {}: {e}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
