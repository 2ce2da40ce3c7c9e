//! Reading the poverty-registry roster (建档立卡 export) of a village: CSV in UTF-8 or GBK, or XLSX,
//! with the header found by its column names below any title rows. Each line becomes a
//! [`HouseholdInput`] with the registry's words mapped to Sunshare's codes (已脱贫 → `exited`,
//! 弱劳动力 → `weak`, ...); a word the mapping does not know is passed on as written, so the check
//! names it. An identity-card number is read only for the birth year and never kept.

use super::households::{HouseholdInput, RosterLine};
use crate::tabular::{fold, read_rows, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Head,
    Village,
    Status,
    StatusFrom,
    DeepPoverty,
    Labour,
    BirthYear,
    IdentityCard,
    Bank,
}

/// Header names per column, folded (see [`fold`]).
const NAMES: &[(Column, &[&str])] = &[
    (
        Column::Id,
        &["户编号", "户码", "家庭编号", "户号", "household_id", "id"],
    ),
    (Column::Head, &["户主姓名", "户主", "姓名", "head"]),
    (
        Column::Village,
        &["所在村", "行政村", "村", "村名", "村代码", "village"],
    ),
    (
        Column::Status,
        &["贫困户状态", "脱贫状态", "户类型", "状态", "status"],
    ),
    (
        Column::StatusFrom,
        &["状态起始日期", "状态日期", "认定日期", "status_from"],
    ),
    (
        Column::DeepPoverty,
        &["是否深度贫困", "深度贫困", "是否深度贫困户", "deep_poverty"],
    ),
    (Column::Labour, &["劳动能力", "劳动力", "labour"]),
    (Column::BirthYear, &["出生年份", "出生年", "birth_year"]),
    (
        Column::IdentityCard,
        &["证件号码", "身份证号", "身份证号码", "户主身份证号"],
    ),
    (
        Column::Bank,
        &[
            "银行卡号",
            "银行账号",
            "代发账号",
            "开户账号",
            "bank_account",
        ],
    ),
];

const REQUIRED: [Column; 5] = [
    Column::Id,
    Column::Head,
    Column::Status,
    Column::StatusFrom,
    Column::Labour,
];

/// Why a roster cannot be read at all (its lines are judged one by one later): the table's own
/// reasons, or no header row.
pub use crate::tabular::Unreadable;

/// The file's encoding and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    pub encoding: &'static str,
    pub lines: Vec<RosterLine>,
}

fn column_of(header: &str) -> Option<Column> {
    let h = fold(header);
    let h = h.split('(').next().unwrap_or("");
    NAMES
        .iter()
        .find(|(_, names)| names.contains(&h))
        .map(|(c, _)| *c)
}

fn columns(row: &Row) -> Vec<Option<Column>> {
    row.cells.iter().map(|c| column_of(c)).collect()
}

/// The registry's words for a poverty status, mapped to Sunshare's codes.
fn status_code(text: &str) -> String {
    let t = fold(text);
    let code = match t.as_str() {
        "未脱贫" | "未脱贫户" | "贫困户" | "建档立卡贫困户" => "not_exited",
        "已脱贫" | "脱贫户" | "已脱贫户" | "脱贫享受政策" | "脱贫不享受政策" => {
            "exited"
        }
        "监测户" | "监测对象" | "脱贫不稳定户" | "突发严重困难户" | "防返贫监测户" => {
            "monitored"
        }
        "边缘户" | "边缘易致贫户" => "edge",
        _ => return text.trim().to_owned(),
    };
    code.to_owned()
}

fn labour_code(text: &str) -> String {
    let t = fold(text);
    let code = match t.as_str() {
        "普通劳动力" | "技能劳动力" | "有劳动能力" | "有劳动力" | "有" | "全" => {
            "full"
        }
        "弱劳动力" | "半劳动力" | "弱劳动能力" | "弱" => "weak",
        "无劳动力" | "丧失劳动力" | "无劳动能力" | "无" => "none",
        _ => return text.trim().to_owned(),
    };
    code.to_owned()
}

fn yes(text: &str) -> bool {
    matches!(fold(text).as_str(), "是" | "y" | "yes" | "1" | "true" | "√")
}

/// A date as rosters write it: 2019-12-31, 2019/12/31, 2019.12.31 or 20191231.
fn date_text(text: &str) -> String {
    let t = text.trim();
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    let separated: Vec<&str> = t
        .split(['-', '/', '.', '年', '月', '日'])
        .filter(|p| !p.is_empty())
        .collect();
    if separated.len() == 3
        && separated
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_digit()))
    {
        if let (Ok(y), Ok(m), Ok(d)) = (
            separated[0].parse::<u32>(),
            separated[1].parse::<u32>(),
            separated[2].parse::<u32>(),
        ) {
            return format!("{y:04}-{m:02}-{d:02}");
        }
    }
    if digits.len() == 8 && digits.len() == t.len() {
        return format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..]);
    }
    t.to_owned()
}

/// The birth year inside an 18-digit identity-card number (digits 7 to 10).
fn birth_year_of_card(card: &str) -> Option<String> {
    let card = card.trim();
    let ok = card.len() == 18
        && card[..17].chars().all(|c| c.is_ascii_digit())
        && card[17..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == 'X' || c == 'x');
    ok.then(|| card[6..10].to_owned())
}

/// Reads a roster file.
pub fn read(bytes: &[u8]) -> Result<Roster, Unreadable> {
    let (rows, encoding) = read_rows(bytes)?;
    let Some(at) = rows.iter().take(20).position(|r| {
        let found = columns(r);
        REQUIRED.iter().all(|c| found.contains(&Some(*c)))
    }) else {
        let wanted: Vec<&str> = REQUIRED
            .iter()
            .filter_map(|c| {
                NAMES
                    .iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, names)| names[0])
            })
            .collect();
        return Err(Unreadable {
            line: rows.first().map_or(0, |r| r.line),
            message: format!(
                "no header row with the columns {} in the first 20 rows",
                wanted.join(", ")
            ),
            said: (
                "household.err.roster_no_header",
                vec![("columns", wanted.join("、"))],
            ),
        });
    };
    let header = columns(&rows[at]);
    let index = |c: Column| header.iter().position(|h| *h == Some(c));
    let lines = rows[at + 1..]
        .iter()
        .map(|row| {
            let cell = |c: Column| {
                index(c)
                    .and_then(|i| row.cells.get(i))
                    .map_or("", String::as_str)
            };
            let birth_year = match cell(Column::BirthYear) {
                "" => birth_year_of_card(cell(Column::IdentityCard)).unwrap_or_default(),
                y => y.trim().chars().take_while(char::is_ascii_digit).collect(),
            };
            RosterLine {
                line: row.line,
                village: index(Column::Village).map(|_| cell(Column::Village).to_owned()),
                input: HouseholdInput {
                    id: cell(Column::Id).to_owned(),
                    head: cell(Column::Head).to_owned(),
                    status: status_code(cell(Column::Status)),
                    status_from: date_text(cell(Column::StatusFrom)),
                    deep_poverty: yes(cell(Column::DeepPoverty)),
                    labour: labour_code(cell(Column::Labour)),
                    birth_year,
                    bank_account: cell(Column::Bank).to_owned(),
                },
            }
        })
        .collect();
    Ok(Roster { encoding, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbk(text: &str) -> Vec<u8> {
        encoding_rs::GBK.encode(text).0.into_owned()
    }

    #[test]
    fn a_gbk_export_with_a_title_row_is_read_with_the_registry_words_mapped() {
        let file = gbk("东岭村建档立卡户花名册,,,,,,\n\
             户编号,户主姓名,证件号码,贫困户状态,状态起始日期,劳动能力,是否深度贫困,银行卡号\n\
             H-101,张三,140101196505061234,已脱贫,2019/12/31,弱劳动力,是,6228 0000 1111 2222\n\
             H-102,李四,,监测户,20210301,无劳动力,,\n");
        let r = read(&file).expect("readable");
        assert_eq!(r.encoding, "gbk");
        assert_eq!(r.lines.len(), 2);
        let a = &r.lines[0];
        assert_eq!(a.line, 3);
        assert_eq!(a.input.id, "H-101");
        assert_eq!(a.input.status, "exited");
        assert_eq!(a.input.status_from, "2019-12-31");
        assert_eq!(a.input.labour, "weak");
        assert!(a.input.deep_poverty);
        assert_eq!(a.input.birth_year, "1965", "from the identity card");
        assert_eq!(a.village, None);
        let b = &r.lines[1];
        assert_eq!(
            (b.input.status.as_str(), b.input.labour.as_str()),
            ("monitored", "none")
        );
        assert_eq!(b.input.status_from, "2021-03-01");
        assert!(!b.input.deep_poverty);
        assert_eq!(b.input.birth_year, "");
        // The identity-card number is nowhere in what is kept.
        let kept = serde_json::to_string(&r.lines).expect("json");
        assert!(!kept.contains("140101196505061234"), "{kept}");
    }

    #[test]
    fn unknown_words_are_passed_on_as_written_for_the_check_to_name() {
        let file =
            "户编号,户主姓名,贫困户状态,状态起始日期,劳动能力\nH1,王五,返贫户,2020-01-01,半劳力\n";
        let r = read(file.as_bytes()).expect("readable");
        assert_eq!(r.encoding, "utf-8");
        assert_eq!(r.lines[0].input.status, "返贫户");
        assert_eq!(r.lines[0].input.labour, "半劳力");
    }

    #[test]
    fn without_the_required_columns_the_error_names_them() {
        let e = read("户编号,姓名\nH1,王五\n".as_bytes()).expect_err("no header");
        assert!(e.message.contains("状态起始日期"), "{}", e.message);
        assert!(e.message.contains("劳动能力"), "{}", e.message);
    }
}
