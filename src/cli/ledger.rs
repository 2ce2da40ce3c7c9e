//! The `allocate`, `plan` and `ledger` subcommands. Each returns the text to print; `main` prints it.

use crate::allocate::{MonthRun, Payee, PlanState};
use crate::config::Deployment;
use crate::domain::{VillageId, YearMonth};
use crate::ledger::export::{self, Audience};
use crate::ledger::{energy_source, pay_month, run_month, transition, Error};
use crate::store::Store;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Csv,
}

/// A refused ledger command: with `--format json` a JSON object on stderr (`error`: the kind,
/// `message`: the sentence), otherwise the sentence.
pub fn refusal(e: Error, json: bool) -> super::Failure {
    if json {
        let body = serde_json::json!({ "error": e.code(), "message": e.to_string() });
        super::Failure::Failed(format!("{body}\n"))
    } else {
        super::Failure::Error(e.into())
    }
}

/// `sunshare allocate`: run a month for every village, record it in the ledger, print statements.
#[derive(Debug, Clone, clap::Args)]
pub struct AllocateArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// The month, YYYY-MM.
    #[arg(long)]
    pub month: YearMonth,
    /// Print only this village (every village is still computed and recorded).
    #[arg(long)]
    pub village: Option<VillageId>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Compute and print without recording anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Recorded in the audit trail.
    #[arg(long, default_value = "cli")]
    pub who: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    #[command(subcommand)]
    pub command: PlanCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PlanCommand {
    /// Move a village's annual plan one step (DRAFT → DELIBERATED → PLAN_PUBLISHED → TOWNSHIP_REVIEWED
    /// → COUNTY_FILED → ACTIVE → RESULT_PUBLISHED → CLOSED; amendments to DELIBERATED, rejections to DRAFT).
    Transition {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        village: VillageId,
        #[arg(long)]
        year: i32,
        /// The new state, e.g. DELIBERATED.
        #[arg(long)]
        to: String,
        #[arg(long)]
        who: String,
        #[arg(long)]
        note: String,
    },
    /// Show a plan's state and its transitions.
    Show {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        village: VillageId,
        #[arg(long)]
        year: i32,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportKind {
    Statement,
    Roster,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum LedgerCommand {
    /// Lock a recorded month as paid: it is never re-run or edited afterwards.
    Pay {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        month: YearMonth,
        #[arg(long)]
        who: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Write a village's monthly statement or payout roster (.csv or .xlsx by the file name).
    Export {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        month: YearMonth,
        #[arg(long)]
        village: VillageId,
        #[arg(long, value_enum)]
        kind: ExportKind,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the newest audit-trail lines.
    Audit {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value = "50")]
        limit: i64,
    },
}

async fn open(config: &std::path::Path) -> Result<(Arc<Deployment>, Store), Error> {
    let d = crate::app::load_config(config).map_err(|e| Error::Config(e.to_string()))?;
    let data_dir = d
        .storage
        .data_dir
        .clone()
        .unwrap_or_else(crate::app::default_data_dir);
    let store = Store::open(&d.storage, &data_dir).await?;
    Ok((Arc::new(d), store))
}

pub async fn allocate(args: AllocateArgs) -> Result<String, Error> {
    let (d, store) = open(&args.config).await?;
    let energy = energy_source(store.clone(), Arc::clone(&d));
    let result = run_month(
        &store,
        &d,
        energy.as_ref(),
        args.month,
        &args.who,
        !args.dry_run,
    )
    .await;
    store.close().await;
    let mut run = result?;
    if let Some(v) = &args.village {
        if !run.villages.iter().any(|s| &s.village == v) {
            return Err(Error::NotFound(format!("village {v} is not declared")));
        }
        run.villages.retain(|s| &s.village == v);
        run.stations
            .retain(|s| s.shares.iter().any(|(sv, _, _)| sv == v));
        run.pools.clear();
    }
    match args.format {
        Format::Json => serde_json::to_string_pretty(&run)
            .map(|s| s + "\n")
            .map_err(|e| Error::Export(e.to_string())),
        Format::Csv => run_csv(&run),
        Format::Text => Ok(render_text(&run, args.dry_run)),
    }
}

fn run_csv(run: &MonthRun) -> Result<String, Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let x = |e: csv::Error| Error::Export(e.to_string());
    w.write_record([
        "month",
        "village",
        "provisional",
        "kind",
        "line",
        "payee",
        "reference",
        "amount",
        "basis",
    ])
    .map_err(x)?;
    for v in &run.villages {
        let m = v.month.to_string();
        let prov = if v.provisional {
            "provisional"
        } else {
            "settled"
        };
        for i in &v.income {
            w.write_record([
                &m,
                v.village.as_str(),
                prov,
                "INCOME",
                "INCOME",
                i.station.as_str(),
                &format!("weight {}/{}", i.weight, i.total_weight),
                &i.amount.to_string(),
                "",
            ])
            .map_err(x)?;
        }
        for p in &v.payouts {
            let payee = match &p.payee {
                Payee::Household(h) => h.to_string(),
                Payee::Other(o) => o.clone(),
            };
            w.write_record([
                &m,
                v.village.as_str(),
                prov,
                "PAYOUT",
                p.line.code(),
                &payee,
                &p.reference,
                &p.amount.to_string(),
                &p.basis,
            ])
            .map_err(x)?;
        }
        for (label, amount) in [
            ("RESERVE", v.reserve),
            ("CARRY_OVER", v.carry_over),
            ("CLOSING_BALANCE", v.closing_balance),
        ] {
            w.write_record([
                &m,
                v.village.as_str(),
                prov,
                "BALANCE",
                label,
                "",
                "",
                &amount.to_string(),
                "",
            ])
            .map_err(x)?;
        }
    }
    let bytes = w.into_inner().map_err(|e| Error::Export(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| Error::Export(e.to_string()))
}

/// The statement as an accountant reads it on a terminal.
pub fn render_text(run: &MonthRun, dry_run: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Sunshare allocation for {}{}",
        run.month,
        if dry_run {
            " (dry run: nothing recorded)"
        } else {
            ""
        }
    );
    for st in &run.stations {
        let _ = writeln!(
            s,
            "\nstation {} ({}): {} Wh {}  base {}  subsidy accrued {} received {}  adder {}  costs {}  net {}  distributable {}{}",
            st.station,
            st.kind.label(),
            st.energy.0,
            if st.basis.is_provisional() { "METERED/PROVISIONAL" } else { "settled" },
            st.base,
            st.subsidy_accrued,
            st.subsidy_received,
            st.adder,
            st.costs_total,
            st.net,
            st.distributable,
            if st.deficit_out.is_negative() { format!("  deficit carried {}", st.deficit_out) } else { String::new() }
        );
        for n in &st.notes {
            let _ = writeln!(s, "    · {n}");
        }
    }
    for p in &run.pools {
        let _ = writeln!(
            s,
            "\ncentralized station {} → county {} pool: {} beneficiaries, {}",
            p.station,
            p.county,
            p.lines.len(),
            p.total
        );
        for n in &p.notes {
            let _ = writeln!(s, "    · {n}");
        }
    }
    for v in &run.villages {
        let _ = writeln!(
            s,
            "\nvillage {} {}  plan {}",
            v.village,
            if v.provisional {
                "PROVISIONAL (metered energy)"
            } else {
                "settled"
            },
            v.plan_state.map_or("none".to_owned(), |p| p.to_string())
        );
        let _ = writeln!(s, "  opening balance {:>14}", v.opening_balance.to_string());
        for i in &v.income {
            let _ = writeln!(
                s,
                "  income {:<20} {:>14}  (weight {}/{})",
                i.station.as_str(),
                i.amount.to_string(),
                i.weight,
                i.total_weight
            );
        }
        if v.advance != crate::domain::Fen::ZERO || v.advance_repaid != crate::domain::Fen::ZERO {
            let _ = writeln!(
                s,
                "  county advance {:>14}  settled {}  outstanding {}",
                v.advance.to_string(),
                v.advance_repaid,
                v.advance_outstanding
            );
        }
        let _ = writeln!(s, "  cash on hand    {:>14}", v.cash.to_string());
        for p in &v.payouts {
            let payee = match &p.payee {
                Payee::Household(h) => h.to_string(),
                Payee::Other(o) => o.clone(),
            };
            let _ = writeln!(
                s,
                "  {:<14} {:<12} {:>12}  {} — {}",
                p.line.code(),
                payee,
                p.amount.to_string(),
                p.reference,
                p.basis
            );
        }
        let _ = writeln!(s, "  payouts         {:>14}", v.payouts_total.to_string());
        let _ = writeln!(s, "  reserve         {:>14}", v.reserve.to_string());
        let _ = writeln!(s, "  carry-over      {:>14}", v.carry_over.to_string());
        let _ = writeln!(s, "  closing balance {:>14}", v.closing_balance.to_string());
        for n in &v.notes {
            let _ = writeln!(s, "    · {n}");
        }
    }
    s
}

pub async fn plan(args: PlanArgs) -> Result<String, Error> {
    match args.command {
        PlanCommand::Transition {
            config,
            village,
            year,
            to,
            who,
            note,
        } => {
            let to = PlanState::parse(&to).ok_or_else(|| {
                Error::Workflow(format!(
                    "'{to}' is not a plan state; use one of {}",
                    PlanState::ALL
                        .iter()
                        .map(|s| s.code())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let (d, store) = open(&config).await?;
            let result = transition(&store, &d, &village, year, to, &who, &note).await;
            store.close().await;
            let from = result?;
            Ok(format!(
                "plan {year} of village {village}: {from} -> {to} (by {who})\n"
            ))
        }
        PlanCommand::Show {
            config,
            village,
            year,
        } => {
            let (_d, store) = open(&config).await?;
            let state = store.plan_state(village.as_str(), year).await;
            let history = store.plan_history(village.as_str(), year).await;
            store.close().await;
            let mut s = format!("plan {year} of village {village}: {}\n", state?);
            for t in history? {
                let _ = writeln!(
                    s,
                    "  {}  {} -> {}  by {}: {}",
                    t.at.to_rfc3339(),
                    t.from,
                    t.to,
                    t.who,
                    t.note
                );
            }
            Ok(s)
        }
    }
}

pub async fn ledger(args: LedgerArgs) -> Result<String, Error> {
    match args.command {
        LedgerCommand::Pay {
            config,
            month,
            who,
            note,
        } => {
            let (_d, store) = open(&config).await?;
            let r = pay_month(&store, month, &who, &note).await;
            store.close().await;
            r?;
            Ok(format!("{month} is paid and locked (by {who})\n"))
        }
        LedgerCommand::Export {
            config,
            month,
            village,
            kind,
            out,
        } => {
            let (d, store) = open(&config).await?;
            let row = store
                .village_month(village.as_str(), &month.to_string())
                .await;
            // Statements and rosters name households from the registry, retired ones too.
            let registry = crate::ledger::households::with_retired(&store, &d)
                .await
                .map(std::borrow::Cow::into_owned);
            store.close().await;
            let d = registry?;
            let row = row?.ok_or_else(|| {
                Error::NotFound(format!("{month} of village {village} is not in the ledger; run `sunshare allocate` first"))
            })?;
            let (sheet, table) = match kind {
                ExportKind::Statement => (
                    "statement",
                    export::statement_table(&row, &d, Audience::Authorised),
                ),
                ExportKind::Roster => ("roster", export::roster_table(&row, &d)),
            };
            let xlsx = out
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
            let bytes = if xlsx {
                export::to_xlsx(sheet, &table)?
            } else {
                export::to_csv(&table)?
            };
            std::fs::write(&out, bytes)
                .map_err(|e| Error::Export(format!("writing {}: {e}", out.display())))?;
            Ok(format!("wrote {}\n", out.display()))
        }
        LedgerCommand::Audit { config, limit } => {
            let (_d, store) = open(&config).await?;
            let rows = store.audit_trail(limit).await;
            store.close().await;
            let mut s = String::new();
            for r in rows? {
                let _ = writeln!(
                    s,
                    "{}  {:<10} {:<16} {} {}  {}",
                    r.at.to_rfc3339(),
                    r.who,
                    r.action,
                    r.village.unwrap_or_default(),
                    r.month.unwrap_or_default(),
                    r.detail
                );
            }
            Ok(s)
        }
    }
}
