//! A grid company's monthly settlement statement (结算单) read and checked against the deployment:
//! CSV (UTF-8 with or without BOM, GBK, UTF-16) or XLSX/XLS, the header row found by its column
//! names (title rows above it skipped, other columns ignored), every line's problem named with its
//! line number, a 合计/总计 row checked against the lines above it, and a settled amount compared
//! with energy × tariff as the allocator computes it (a difference is a warning). Pure: bytes in, a
//! statement or its problems out; storing it is `sunshare::energy::settlement`.

use crate::config::Deployment;
use crate::domain::{Fen, Price, StationId, WattHours, YearMonth};
use crate::tabular::{fold, read_rows, Row};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;

/// One thing wrong with a settlement file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line (CSV) or row (spreadsheet); 0 for the file as a whole.
    pub line: usize,
    pub message: String,
    /// The same in the pages' catalogue, when it has it: a key under `settle.err.` and its
    /// arguments (the message above is what the command line and the JSON API say).
    pub said: Option<(&'static str, Vec<(&'static str, String)>)>,
}

/// One validated line of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub line: usize,
    pub station: StationId,
    pub month: YearMonth,
    /// On-grid energy (上网电量).
    pub energy: WattHours,
    /// The amount settled (结算金额), when the statement gives it.
    pub amount: Option<Fen>,
    /// The station's tariff and what Sunshare computes for `energy` at it
    /// ([`crate::allocate::money::revenue_line`]: energy × price, half-up to the fen).
    pub tariff: Price,
    pub computed: Fen,
}

/// The most a settled amount may differ from Sunshare's energy × tariff before it is flagged:
/// the revenue lines the allocator adds up are each rounded to the fen.
pub const AMOUNT_TOLERANCE: Fen = Fen(1);

/// How far a settled amount is from the computed one, when that is more than [`AMOUNT_TOLERANCE`].
pub fn amount_difference(settled: Option<Fen>, computed: Option<Fen>) -> Option<Fen> {
    let difference = settled?.0.checked_sub(computed?.0)?;
    (difference.unsigned_abs() > AMOUNT_TOLERANCE.0.unsigned_abs()).then_some(Fen(difference))
}

/// A statement line whose settled amount is not what Sunshare computes for its energy. Imported all
/// the same (the grid company's figure is what was paid), but shown so someone can ask why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountWarning {
    pub line: usize,
    pub station: StationId,
    pub month: YearMonth,
    pub energy: WattHours,
    pub tariff: Price,
    pub settled: Fen,
    pub computed: Fen,
    /// settled − computed.
    pub difference: Fen,
}

impl fmt::Display for AmountWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "station '{}' {}: settled amount {} yuan, but {} kWh × {} yuan/kWh = {} yuan \
             (difference {} yuan)",
            self.station,
            self.month,
            self.settled,
            kwh_text(self.energy),
            self.tariff,
            self.computed,
            self.difference
        )
    }
}

/// A statement read and checked against the deployment, before anything is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// How the bytes were read: `xlsx`, `utf-8`, `gbk`, ...
    pub encoding: &'static str,
    /// The line (CSV) or row (spreadsheet) of the header; title rows above it are skipped.
    pub header_line: usize,
    pub lines: Vec<Statement>,
    /// Lines whose settled amount differs from energy × tariff by more than one fen.
    pub warnings: Vec<AmountWarning>,
}

/// Wh as kWh with three decimals, exactly: 1234500 -> "1234.500".
pub fn kwh_text(e: WattHours) -> String {
    let sign = if e.0 < 0 { "-" } else { "" };
    let abs = e.0.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

/// A problem with its words in the pages' catalogue too.
pub fn said(
    line: usize,
    message: impl Into<String>,
    key: &'static str,
    args: &[(&'static str, &str)],
) -> Problem {
    Problem {
        said: Some((
            key,
            args.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        )),
        ..problem(line, message)
    }
}

/// A problem on `line` (0: the file as a whole) in English only.
pub fn problem(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        said: None,
        line,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Station,
    Month,
    Energy,
    Amount,
}

/// Every column Sunshare reads, with the header texts (folded, before any unit) that name it.
const COLUMNS: [(Column, &[&str]); 4] = [
    (
        Column::Station,
        &[
            "电站编号",
            "电站代码",
            "电站id",
            "电站",
            "station",
            "station_id",
            "stationid",
        ],
    ),
    (
        Column::Month,
        &[
            "结算月份",
            "月份",
            "结算月",
            "电费年月",
            "结算年月",
            "month",
            "settlement_month",
        ],
    ),
    (
        Column::Energy,
        &[
            "上网电量",
            "结算电量",
            "上网电量合计",
            "on_grid_kwh",
            "ongrid_kwh",
            "on_grid_energy",
            "energy_kwh",
            "kwh",
        ],
    ),
    (
        Column::Amount,
        &[
            "结算金额",
            "结算电费",
            "金额",
            "amount",
            "amount_yuan",
            "settled_amount",
        ],
    ),
];

/// The columns a statement must have.
const REQUIRED: [Column; 3] = [Column::Station, Column::Month, Column::Energy];

impl Column {
    fn describe(self) -> &'static str {
        match self {
            Column::Station => "电站编号 (station)",
            Column::Month => "结算月份 (month)",
            Column::Energy => "上网电量(kWh) (on_grid_kwh)",
            Column::Amount => "结算金额(元) (amount_yuan)",
        }
    }

    fn names(self) -> &'static [&'static str] {
        COLUMNS
            .iter()
            .find(|(c, _)| *c == self)
            .map_or(&[][..], |(_, names)| names)
    }
}

/// Which column a header names; an error when it names a known column in a unit we do not take.
/// A header naming a known column in a unit it cannot be read in.
struct WrongUnit {
    message: String,
    unit: String,
    energy: bool,
}

fn classify(header: &str) -> Result<Option<Column>, WrongUnit> {
    let h = fold(header);
    let unit_of = |h: &str| -> Option<String> {
        let open = h.find('(')?;
        Some(h[open + 1..].trim_end_matches(')').to_owned())
    };
    let base = h.split('(').next().unwrap_or("");
    let Some(column) = COLUMNS
        .iter()
        .find(|(_, names)| names.contains(&base))
        .map(|(c, _)| *c)
    else {
        return Ok(None);
    };
    if let Some(unit) = unit_of(&h) {
        let ok = match column {
            Column::Energy => matches!(unit.as_str(), "kwh" | "千瓦时" | "kw·h" | "kw.h" | "度"),
            Column::Amount => matches!(unit.as_str(), "元" | "yuan" | "cny" | "rmb"),
            _ => true,
        };
        if !ok {
            let energy = column == Column::Energy;
            return Err(WrongUnit {
                message: format!(
                    "column '{header}' is in '{unit}'; give {} instead",
                    if energy {
                        "energy in kWh (千瓦时)"
                    } else {
                        "amounts in yuan (元)"
                    }
                ),
                unit,
                energy,
            });
        }
    }
    Ok(Some(column))
}

/// The columns a row names (a known column in a refused unit counts: its header is still the header).
fn named_columns(row: &Row) -> Vec<Column> {
    let mut out: Vec<Column> = Vec::new();
    for cell in &row.cells {
        let column = match classify(cell) {
            Ok(Some(c)) => Some(c),
            Ok(None) => None,
            Err(_) => COLUMNS
                .iter()
                .find(|(_, names)| names.contains(&fold(cell).split('(').next().unwrap_or("")))
                .map(|(c, _)| *c),
        };
        if let Some(c) = column.filter(|c| !out.contains(c)) {
            out.push(c);
        }
    }
    out
}

/// The index of the header row. Title rows may stand above it (the grid company's name and the month,
/// often in merged cells), so it is the first row naming every required column; failing that, the
/// first row naming at least two known columns, so that what it lacks can be named.
fn find_header(rows: &[Row]) -> Result<usize, Problem> {
    let named: Vec<Vec<Column>> = rows.iter().map(named_columns).collect();
    if let Some(i) = named
        .iter()
        .position(|n| REQUIRED.iter().all(|c| n.contains(c)))
    {
        return Ok(i);
    }
    if let Some(i) = named.iter().position(|n| n.len() >= 2) {
        return Ok(i);
    }
    let looked_for: Vec<String> = REQUIRED
        .iter()
        .map(|c| format!("{} [accepted: {}]", c.describe(), c.names().join("/")))
        .collect();
    let (line, cells) = rows.first().map_or_else(
        || (String::new(), String::new()),
        |r| (r.line.to_string(), r.cells.join(", ")),
    );
    let names: Vec<String> = REQUIRED.iter().map(|c| c.names().join("/")).collect();
    Err(said(
        0,
        format!(
            "no header row found in {} non-empty row{}: looked for a row naming the columns {}; line {line} reads: {cells}",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            looked_for.join("; ")
        ),
        "settle.err.no_header",
        &[
            ("rows", &rows.len().to_string()),
            ("columns", &names.join("; ")),
            ("line", &line),
            ("cells", &cells),
        ],
    ))
}

/// Whether a row is a total: a cell anywhere reading 合计 or 总计 (spaces, full-width ones too, and a
/// trailing colon allowed) is the grand total, checked against the lines above it; 小计 is a
/// subtotal, skipped unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TotalRow {
    Grand,
    Sub,
}

fn total_row(row: &Row) -> Option<(TotalRow, &str)> {
    row.cells.iter().find_map(|cell| {
        let folded: String = cell
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .trim_end_matches([':', '：'])
            .to_lowercase();
        let kind = match folded.as_str() {
            "合计" | "总计" | "total" | "grandtotal" => TotalRow::Grand,
            "小计" | "subtotal" => TotalRow::Sub,
            _ => return None,
        };
        Some((kind, cell.as_str()))
    })
}

/// Parses a settled amount in yuan: thousands separators and a ¥ sign allowed.
fn parse_amount(text: &str) -> Result<Fen, String> {
    let t: String = text
        .chars()
        .filter(|c| *c != ',' && *c != '¥' && *c != '￥' && !c.is_whitespace())
        .collect();
    match Fen::parse_yuan(&t) {
        Ok(f) if f.is_negative() => Err(format!("settled amount {t} yuan is negative")),
        Ok(f) => Ok(f),
        Err(e) => Err(format!("settled amount: {e}")),
    }
}

/// Parses "2026-03", "2026/3", "202603", "2026年3月" or a date such as "2026-03-01".
fn parse_month(text: &str) -> Option<YearMonth> {
    let groups: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    match groups.as_slice() {
        [ym] if ym.len() == 6 => YearMonth::new(ym[..4].parse().ok()?, ym[4..].parse().ok()?),
        [y, m, ..] if y.len() == 4 && m.len() <= 2 => {
            YearMonth::new(y.parse().ok()?, m.parse().ok()?)
        }
        _ => None,
    }
}

/// Parses a kWh amount exactly into Wh ("12,345.678" -> 12,345,678).
fn parse_kwh(text: &str) -> Result<i64, String> {
    let t: String = text
        .chars()
        .filter(|c| *c != ',' && !c.is_whitespace())
        .collect();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.as_str()),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = frac.trim_end_matches('0');
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(format!("'{text}' is not a number of kWh"));
    }
    if frac.len() > 3 {
        return Err(format!("'{text}' kWh is more precise than 1 Wh"));
    }
    let int_wh = if int.is_empty() {
        0
    } else {
        int.parse::<i64>()
            .ok()
            .and_then(|v| v.checked_mul(1000))
            .ok_or_else(|| format!("'{text}' kWh is too large"))?
    };
    let frac_wh = format!("{frac:0<3}").parse::<i64>().unwrap_or(0);
    let wh = int_wh
        .checked_add(frac_wh)
        .ok_or_else(|| format!("'{text}' kWh is too large"))?;
    Ok(if neg { -wh } else { wh })
}

/// A 合计/总计 row: its line, its label, and the energy and amount it gives (when it gives them).
struct Total {
    line: usize,
    label: String,
    energy: Option<WattHours>,
    amount: Option<Fen>,
}

/// Parses and validates a whole statement against the deployment (pure: no store).
pub fn parse(bytes: &[u8], deployment: &Deployment) -> Result<Parsed, Vec<Problem>> {
    let (rows, encoding) = read_rows(bytes).map_err(|e| {
        vec![Problem {
            said: Some(e.said),
            ..problem(e.line, e.message)
        }]
    })?;
    if rows.is_empty() {
        return Err(vec![said(0, "the file is empty", "settle.err.empty", &[])]);
    }
    let at = find_header(&rows).map_err(|p| vec![p])?;
    let header = &rows[at];
    let body = &rows[at + 1..];
    let mut columns: HashMap<usize, Column> = HashMap::new();
    let mut problems = Vec::new();
    for (i, h) in header.cells.iter().enumerate() {
        match classify(h) {
            Ok(Some(c)) if columns.values().any(|k| *k == c) => problems.push(said(
                header.line,
                format!("column '{h}' repeats {}", c.describe()),
                "settle.err.column_repeats",
                &[("column", h)],
            )),
            Ok(Some(c)) => {
                columns.insert(i, c);
            }
            Ok(None) => {}
            Err(w) => problems.push(said(
                header.line,
                w.message,
                if w.energy {
                    "settle.err.unit_energy"
                } else {
                    "settle.err.unit_amount"
                },
                &[("column", h), ("unit", &w.unit)],
            )),
        }
    }
    let index = |c: Column| columns.iter().find(|(_, k)| **k == c).map(|(i, _)| *i);
    for c in REQUIRED {
        if index(c).is_none() {
            let found = header.cells.join(", ");
            problems.push(said(
                header.line,
                format!(
                    "missing column {}; the header row has: {found}",
                    c.describe()
                ),
                "settle.err.missing_column",
                &[("column", c.describe()), ("found", &found)],
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let (Some(ci_station), Some(ci_month), Some(ci_energy)) = (
        index(Column::Station),
        index(Column::Month),
        index(Column::Energy),
    ) else {
        return Err(problems);
    };
    let ci_amount = index(Column::Amount);
    let mut seen: HashMap<(StationId, YearMonth), usize> = HashMap::new();
    let mut out = Vec::new();
    let mut totals: Vec<Total> = Vec::new();
    for row in body {
        let cell = |i: usize| row.cells.get(i).map_or("", String::as_str);
        if let Some((kind, label)) = total_row(row) {
            if kind == TotalRow::Grand {
                let energy = match cell(ci_energy) {
                    "" => None,
                    t => match parse_kwh(t) {
                        Ok(wh) => Some(WattHours(wh)),
                        Err(m) => {
                            problems.push(said(
                                row.line,
                                format!("the {label} row: {m}"),
                                "settle.err.total_bad",
                                &[("label", label), ("value", t)],
                            ));
                            None
                        }
                    },
                };
                let amount = match ci_amount.map(cell).unwrap_or("") {
                    "" => None,
                    t => match parse_amount(t) {
                        Ok(a) => Some(a),
                        Err(m) => {
                            problems.push(said(
                                row.line,
                                format!("the {label} row: {m}"),
                                "settle.err.total_bad",
                                &[("label", label), ("value", t)],
                            ));
                            None
                        }
                    },
                };
                totals.push(Total {
                    line: row.line,
                    label: label.to_owned(),
                    energy,
                    amount,
                });
            }
            continue;
        }
        let mut bad = |p: Problem| problems.push(p);
        let line = row.line;
        let station_text = cell(ci_station);
        let station = deployment
            .stations
            .iter()
            .find(|s| s.id.as_str() == station_text || s.name == station_text);
        if station.is_none() {
            bad(if station_text.is_empty() {
                said(
                    line,
                    "the station is empty",
                    "settle.err.station_empty",
                    &[],
                )
            } else {
                said(
                    line,
                    format!("unknown station '{station_text}' (not in the deployment file)"),
                    "settle.err.station_unknown",
                    &[("station", station_text)],
                )
            });
        }
        let tariff = station.and_then(|s| {
            let t = deployment.tariffs.iter().find(|t| t.id == s.tariff);
            if t.is_none() {
                bad(said(
                    line,
                    format!("station '{}' names unknown tariff '{}'", s.id, s.tariff),
                    "settle.err.tariff_unknown",
                    &[("station", s.id.as_str()), ("tariff", s.tariff.as_str())],
                ));
            }
            t.map(|t| t.price)
        });
        let month = parse_month(cell(ci_month));
        if month.is_none() {
            bad(said(
                line,
                format!(
                    "'{}' is not a month (write it like 2026-03 or 2026年3月)",
                    cell(ci_month)
                ),
                "settle.err.month_bad",
                &[("value", cell(ci_month))],
            ));
        }
        let energy = match parse_kwh(cell(ci_energy)) {
            Ok(wh) if wh < 0 => {
                bad(said(
                    line,
                    format!("on-grid energy {} kWh is negative", cell(ci_energy)),
                    "settle.err.energy_negative",
                    &[("value", cell(ci_energy))],
                ));
                None
            }
            Ok(wh) => Some(WattHours(wh)),
            Err(m) => {
                bad(said(
                    line,
                    m,
                    "settle.err.energy_bad",
                    &[("value", cell(ci_energy))],
                ));
                None
            }
        };
        let computed = match (energy, tariff) {
            (Some(e), Some(price)) => match crate::allocate::money::revenue_line(e, price) {
                Ok(fen) => Some(fen),
                Err(_) => {
                    bad(said(
                        line,
                        format!(
                            "{} kWh at {price} yuan/kWh is too large an amount",
                            kwh_text(e)
                        ),
                        "settle.err.amount_large",
                        &[("kwh", &kwh_text(e)), ("price", &price.to_string())],
                    ));
                    None
                }
            },
            _ => None,
        };
        let amount = match ci_amount.map(cell).filter(|t| !t.is_empty()) {
            None => Some(None),
            Some(t) => match parse_amount(t) {
                Ok(f) => Some(Some(f)),
                Err(m) => {
                    bad(said(line, m, "settle.err.amount_bad", &[("value", t)]));
                    None
                }
            },
        };
        if let (
            Some(station),
            Some(month),
            Some(energy),
            Some(tariff),
            Some(computed),
            Some(amount),
        ) = (station, month, energy, tariff, computed, amount)
        {
            let station = station.id.clone();
            if let Some(first) = seen.insert((station.clone(), month), row.line) {
                bad(said(
                    line,
                    format!(
                        "station '{station}' month {month} appears twice (first on line {first})"
                    ),
                    "settle.err.twice",
                    &[
                        ("station", station.as_str()),
                        ("month", &month.to_string()),
                        ("first", &first.to_string()),
                    ],
                ));
                continue;
            }
            out.push(Statement {
                line: row.line,
                station,
                month,
                energy,
                amount,
                tariff,
                computed,
            });
        }
    }
    if problems.is_empty() {
        for t in &totals {
            problems.extend(check_total(t, &out));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if out.is_empty() {
        return Err(vec![said(
            header.line,
            "the file has a header but no statement lines",
            "settle.err.no_lines",
            &[],
        )]);
    }
    let warnings = out
        .iter()
        .filter_map(|s| {
            let difference = amount_difference(s.amount, Some(s.computed))?;
            Some(AmountWarning {
                line: s.line,
                station: s.station.clone(),
                month: s.month,
                energy: s.energy,
                tariff: s.tariff,
                settled: s.amount?,
                computed: s.computed,
                difference,
            })
        })
        .collect();
    Ok(Parsed {
        encoding,
        header_line: header.line,
        lines: out,
        warnings,
    })
}

/// A total row against the statement lines above it: energy to the Wh, amount to the fen.
fn check_total(t: &Total, lines: &[Statement]) -> Vec<Problem> {
    let above: Vec<&Statement> = lines.iter().filter(|s| s.line < t.line).collect();
    let n = above.len();
    let what = format!(
        "the {n} station line{} above it",
        if n == 1 { "" } else { "s" }
    );
    let mut out = Vec::new();
    if let Some(given) = t.energy {
        let sum = WattHours(
            above
                .iter()
                .map(|s| s.energy.0)
                .fold(0i64, i64::saturating_add),
        );
        if sum != given {
            out.push(said(
                t.line,
                format!(
                    "the {} row gives {} kWh of on-grid energy, but {what} sum to {} kWh",
                    t.label,
                    kwh_text(given),
                    kwh_text(sum)
                ),
                "settle.err.total_energy",
                &[
                    ("label", &t.label),
                    ("given", &kwh_text(given)),
                    ("count", &n.to_string()),
                    ("sum", &kwh_text(sum)),
                ],
            ));
        }
    }
    if let Some(given) = t.amount {
        let sum = Fen(above
            .iter()
            .filter_map(|s| s.amount)
            .map(|a| a.0)
            .fold(0i64, i64::saturating_add));
        if sum != given {
            out.push(said(
                t.line,
                format!(
                    "the {} row gives a settled amount of {given} yuan, but {what} sum to {sum} yuan",
                    t.label
                ),
                "settle.err.total_amount",
                &[
                    ("label", &t.label),
                    ("given", &given.to_string()),
                    ("count", &n.to_string()),
                    ("sum", &sum.to_string()),
                ],
            ));
        }
    }
    out
}

/// SHA-256 of a file's bytes as 64 lowercase hex digits: what tells apart files of the same name.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
