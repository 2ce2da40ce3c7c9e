//! Exports for village accountants: the monthly statement and the 银行代发 payout roster, as CSV and
//! XLSX. Amounts are written as exact yuan text ("416.67") and integer fen, never as binary fractions.

use super::{mask_name, Error};
use crate::config::Deployment;
use crate::domain::{Fen, Household};
use crate::store::VillageMonthRow;
use std::collections::{BTreeMap, HashMap};

/// Who reads the document: villagers (masked names, no ids or accounts) or an authorised role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    Authorised,
}

/// A table cell: text, or money in fen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Money(i64),
}

fn t(s: impl Into<String>) -> Cell {
    Cell::Text(s.into())
}

fn households(d: &Deployment) -> HashMap<&str, &Household> {
    d.households.iter().map(|h| (h.id.as_str(), h)).collect()
}

/// How a payee is shown to `audience`.
pub fn payee_label(
    entry_household: Option<&str>,
    payee: &str,
    hh: &HashMap<&str, &Household>,
    audience: Audience,
) -> String {
    match entry_household {
        Some(id) => match (hh.get(id), audience) {
            (Some(h), Audience::Authorised) => format!("{id} {}", h.head),
            (Some(h), Audience::Public) => mask_name(&h.head),
            (None, Audience::Authorised) => id.to_owned(),
            (None, Audience::Public) => "*".to_owned(),
        },
        None => payee.to_owned(),
    }
}

/// The statement as rows: a header block, income by station, each payout, and the closing lines.
pub fn statement_table(
    row: &VillageMonthRow,
    d: &Deployment,
    audience: Audience,
) -> Vec<Vec<Cell>> {
    let hh = households(d);
    let mut out = vec![
        vec![
            t("section 栏目"),
            t("line 科目"),
            t("payee / station 对象"),
            t("reference 依据"),
            t("amount 金额"),
            t("basis 说明"),
        ],
        vec![
            t("month"),
            t(row.month.clone()),
            t(row.village.clone()),
            t(if row.provisional {
                "PROVISIONAL (metered energy) 暂估"
            } else {
                "settled 结算"
            }),
            Cell::Money(row.opening_fen),
            t("opening balance 期初余额"),
        ],
    ];
    for e in &row.entries {
        let who = payee_label(e.household.as_deref(), &e.payee, &hh, audience);
        let section = if e.kind == "INCOME" {
            "income 收入"
        } else {
            "payout 支出"
        };
        out.push(vec![
            t(section),
            t(e.line.clone()),
            t(who),
            t(e.reference.clone()),
            Cell::Money(e.amount_fen),
            t(e.basis.clone()),
        ]);
    }
    let total = |label: &str, v: i64| {
        vec![
            t("total 合计"),
            t(label),
            t(""),
            t(""),
            Cell::Money(v),
            t(""),
        ]
    };
    out.push(total("income 收入合计", row.income_fen));
    out.push(total("county advance 县级垫付", row.advance_fen));
    out.push(total("advance settled 垫付归还", row.advance_repaid_fen));
    out.push(total("cash on hand 可支配资金", row.cash_fen));
    out.push(total("payouts 支出合计", row.payouts_fen));
    out.push(total("RESERVE 预留", row.reserve_fen));
    out.push(total("carry-over 结转", row.carry_over_fen));
    out.push(total("closing balance 期末余额", row.closing_fen));
    out
}

/// The bank payroll (银行代发): one line per household, the month's payouts summed.
pub fn roster_table(row: &VillageMonthRow, d: &Deployment) -> Vec<Vec<Cell>> {
    let hh = households(d);
    let mut per: BTreeMap<&str, (i64, Vec<&str>)> = BTreeMap::new();
    for e in row.entries.iter().filter(|e| e.kind == "PAYOUT") {
        if let Some(h) = e.household.as_deref() {
            let entry = per.entry(h).or_default();
            entry.0 += e.amount_fen;
            entry.1.push(e.line.as_str());
        }
    }
    let mut out = vec![vec![
        t("household 户编号"),
        t("account holder 户主"),
        t("bank account 账号"),
        t("amount 金额"),
        t("lines 科目"),
    ]];
    for (id, (fen, lines)) in per {
        let h = hh.get(id);
        out.push(vec![
            t(id),
            t(h.map(|h| h.head.clone()).unwrap_or_default()),
            t(h.and_then(|h| h.bank_account.clone()).unwrap_or_default()),
            Cell::Money(fen),
            t(lines.join(" ")),
        ]);
    }
    out
}

/// CSV: money cells become exact yuan text.
pub fn to_csv(rows: &[Vec<Cell>]) -> Result<Vec<u8>, Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        let fields: Vec<String> = r
            .iter()
            .map(|c| match c {
                Cell::Text(s) => s.clone(),
                Cell::Money(f) => Fen(*f).to_string(),
            })
            .collect();
        w.write_record(&fields)
            .map_err(|e| Error::Export(e.to_string()))?;
    }
    w.into_inner().map_err(|e| Error::Export(e.to_string()))
}

/// XLSX: money cells are written as exact yuan text plus, in the next sheet column group, integer
/// fen (exact in a spreadsheet number) so that the accountant can sum them.
pub fn to_xlsx(sheet: &str, rows: &[Vec<Cell>]) -> Result<Vec<u8>, Error> {
    use rust_xlsxwriter::Workbook;
    let x = |e: rust_xlsxwriter::XlsxError| Error::Export(e.to_string());
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet).map_err(x)?;
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let fen_col = u16::try_from(width).map_err(|e| Error::Export(e.to_string()))?;
    ws.write_string(0, fen_col, "amount in fen 金额(分)")
        .map_err(x)?;
    for (r, row) in rows.iter().enumerate() {
        let r = u32::try_from(r).map_err(|e| Error::Export(e.to_string()))?;
        for (c, cell) in row.iter().enumerate() {
            let c = u16::try_from(c).map_err(|e| Error::Export(e.to_string()))?;
            match cell {
                Cell::Text(s) => {
                    ws.write_string(r, c, s).map_err(x)?;
                }
                Cell::Money(f) => {
                    ws.write_string(r, c, Fen(*f).to_string()).map_err(x)?;
                    // Whole fen are integers far below 2^53: exact as a spreadsheet number.
                    ws.write_number(r, fen_col, *f as f64).map_err(x)?;
                }
            }
        }
    }
    wb.save_to_buffer().map_err(x)
}
