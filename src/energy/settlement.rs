//! Grid settlement import: the grid company's monthly statement (结算单) per station, read from CSV
//! (UTF-8 with or without BOM, GBK as Excel on a Chinese Windows saves it, or UTF-16) or XLSX/XLS.
//!
//! The whole file is validated before anything is written, and then written in one transaction:
//! a file with any bad line imports nothing, and every problem is reported with its line number.
//! The header row is found by its column names (title rows above it are skipped); other columns are
//! ignored (see docs/energy.md). A 合计/总计 row is checked against the statement lines above it, and
//! a settled amount against energy × tariff as the allocator computes it (a difference is a warning).
//! Each import is recorded with the SHA-256 of its bytes and its upload time: the grid company names
//! every month's file 结算单.csv, so the same bytes uploaded again are recognised as a duplicate while
//! another file of the same name is a new import.

use crate::config::Deployment;
use crate::domain::StationId;
use crate::store::{SettlementImportRow, SettlementInsert, SettlementRow, Store};
use chrono::{DateTime, Utc};
use std::fmt;

// Reading and checking a statement is the core's (pure); storing it is this module's.
pub use sunshare_core::settlement::*;

/// A settlement file that was not imported, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Rejected {
    /// The file name (or upload label) the problems refer to.
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{} found, nothing imported",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            if p.line == 0 {
                writeln!(f, "  {}: {}", self.file, p.message)?;
            } else {
                writeln!(f, "  {}:{}: {}", self.file, p.line, p.message)?;
            }
        }
        Ok(())
    }
}

/// A file whose bytes were imported before: nothing is imported again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Duplicate {
    /// The file name (or upload label) of this upload.
    pub file: String,
    /// The import that stored the same bytes.
    pub earlier: SettlementImportRow,
}

impl fmt::Display for Duplicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: this file was already imported, as '{}' uploaded {} (import {}, SHA-256 {}); \
             nothing imported again",
            self.file,
            self.earlier.source,
            self.earlier.uploaded.format("%Y-%m-%d %H:%M:%S UTC"),
            self.earlier.id,
            self.earlier.sha256
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error(transparent)]
    Duplicate(#[from] Duplicate),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The recorded import (`settlement_imports.id`).
    pub import_id: i64,
    pub source: String,
    /// SHA-256 of the file's bytes (lowercase hex): what tells files of the same name apart.
    pub sha256: String,
    pub size_bytes: usize,
    pub uploaded: DateTime<Utc>,
    /// How the bytes were read: `xlsx`, `utf-8`, `gbk`, ...
    pub encoding: &'static str,
    pub lines: Vec<Statement>,
    pub warnings: Vec<AmountWarning>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: imported {} settled station-month{} ({}; import {}, uploaded {}, SHA-256 {})",
            self.source,
            self.lines.len(),
            if self.lines.len() == 1 { "" } else { "s" },
            self.encoding,
            self.import_id,
            self.uploaded.format("%Y-%m-%d %H:%M:%S UTC"),
            self.sha256
        )?;
        for s in &self.lines {
            let amount = s.amount.map_or_else(String::new, |a| format!(", {a} yuan"));
            writeln!(
                f,
                "  {} {}: {} kWh{amount}",
                s.station,
                s.month,
                kwh_text(s.energy)
            )?;
        }
        if !self.warnings.is_empty() {
            writeln!(
                f,
                "{} settled {} from energy × tariff by more than {} yuan:",
                self.warnings.len(),
                if self.warnings.len() == 1 {
                    "amount differs"
                } else {
                    "amounts differ"
                },
                AMOUNT_TOLERANCE
            )?;
            for w in &self.warnings {
                writeln!(f, "  {}:{}: {w}", self.source, w.line)?;
            }
        }
        Ok(())
    }
}

/// Validates a statement and stores all of it, or nothing.
pub async fn import(
    store: &Store,
    deployment: &Deployment,
    bytes: &[u8],
    source: &str,
    now: DateTime<Utc>,
) -> Result<ImportReport, ImportError> {
    import_within(store, deployment, bytes, source, now, |_| true).await
}

/// As [`import`], for someone who may import only some stations: a file naming any other
/// station is refused whole, each such line named. The same bytes imported before are refused
/// as a [`Duplicate`] before anything else is looked at.
pub async fn import_within(
    store: &Store,
    deployment: &Deployment,
    bytes: &[u8],
    source: &str,
    now: DateTime<Utc>,
    allowed: impl Fn(&StationId) -> bool,
) -> Result<ImportReport, ImportError> {
    let rejected = |problems| Rejected {
        file: source.to_owned(),
        problems,
    };
    let duplicate = |earlier| Duplicate {
        file: source.to_owned(),
        earlier,
    };
    let sha256 = digest(bytes);
    if let Some(earlier) = store.settlement_import_by_digest(&sha256).await? {
        return Err(duplicate(earlier).into());
    }
    let parsed = parse(bytes, deployment).map_err(rejected)?;
    let outside: Vec<Problem> = parsed
        .lines
        .iter()
        .filter(|l| !allowed(&l.station))
        .map(|l| {
            said(
                l.line,
                format!(
                    "station {} is outside your scope: ask an account that covers it to import this file",
                    l.station
                ),
                "settle.err.outside_scope",
                &[("station", l.station.as_str())],
            )
        })
        .collect();
    if !outside.is_empty() {
        return Err(rejected(outside).into());
    }
    let record = SettlementImportRow {
        id: 0,
        source: source.to_owned(),
        sha256: sha256.clone(),
        size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
        encoding: parsed.encoding.to_owned(),
        lines: i64::try_from(parsed.lines.len()).unwrap_or(i64::MAX),
        uploaded: now,
    };
    let rows: Vec<SettlementRow> = parsed
        .lines
        .iter()
        .map(|s| SettlementRow {
            station: s.station.clone(),
            month: s.month,
            energy: s.energy,
            amount: s.amount,
            source: source.to_owned(),
            source_line: s.line as i64,
            imported: now,
            import_id: None,
            computed: Some(s.computed),
        })
        .collect();
    match store.insert_settlements(&record, &rows).await? {
        SettlementInsert::Inserted { import_id, rows: n } => {
            tracing::info!(
                source,
                months = n,
                encoding = parsed.encoding,
                import_id,
                sha256 = %sha256,
                warnings = parsed.warnings.len(),
                "settlement imported"
            );
            Ok(ImportReport {
                import_id,
                source: source.to_owned(),
                sha256,
                size_bytes: bytes.len(),
                uploaded: now,
                encoding: parsed.encoding,
                lines: parsed.lines,
                warnings: parsed.warnings,
            })
        }
        SettlementInsert::Duplicate(earlier) => Err(duplicate(earlier).into()),
        SettlementInsert::AlreadyImported(taken) => Err(rejected(
            taken
                .iter()
                .filter_map(|i| parsed.lines.get(*i))
                .map(|s| {
                    said(
                        s.line,
                        format!(
                            "station '{}' month {} is already settled; a correction needs the grid company's corrected statement for a later month",
                            s.station, s.month
                        ),
                        "settle.err.already_settled",
                        &[("station", s.station.as_str()), ("month", &s.month.to_string())],
                    )
                })
                .collect(),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests;
