//! Statements as the grid company and Excel produce them, good and bad.

use super::*;
use crate::domain::{Fen, Price, WattHours};
use crate::energy::testing::deployment;

fn gbk(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
    assert!(!unmappable, "the fixture must be representable in GBK");
    bytes.into_owned()
}

const CHINESE: &str = "电站编号,电站名称,结算月份,上网电量(kWh),结算金额(元)\r\n\
S1,东村光伏电站,2026-01,1234.5,1049.33\r\n\
S2,西村光伏电站,2026年1月,\"1,000\",850.00\r\n\
S1,东村光伏电站,202602,1500,\r\n\
合计,,,3734.5,1899.33\r\n";

fn expect_lines(lines: &[Statement]) {
    let got: Vec<_> = lines
        .iter()
        .map(|s| {
            (
                s.line,
                s.station.to_string(),
                s.month.to_string(),
                s.energy.0,
                s.amount,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                2,
                "S1".into(),
                "2026-01".into(),
                1_234_500,
                Some(Fen(104_933))
            ),
            (
                3,
                "S2".into(),
                "2026-01".into(),
                1_000_000,
                Some(Fen(85_000))
            ),
            (4, "S1".into(), "2026-02".into(), 1_500_000, None),
        ]
    );
}

#[test]
fn excel_gbk_csv_with_chinese_headers_imports() {
    let bytes = gbk(CHINESE);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "really GBK, not UTF-8"
    );
    let Parsed {
        lines, encoding, ..
    } = parse(&bytes, &deployment()).expect("valid statement");
    assert_eq!(encoding, "gbk");
    expect_lines(&lines);
}

#[test]
fn utf8_with_and_without_bom_imports() {
    for bytes in [
        CHINESE.as_bytes().to_vec(),
        [b"\xEF\xBB\xBF".as_slice(), CHINESE.as_bytes()].concat(),
    ] {
        let Parsed {
            lines, encoding, ..
        } = parse(&bytes, &deployment()).expect("valid statement");
        assert_eq!(encoding, "utf-8");
        expect_lines(&lines);
    }
}

#[test]
fn english_headers_full_width_brackets_and_station_names_are_accepted() {
    let text = "station_id,month,on_grid_kwh,amount_yuan\nS1,2026-03,10.001,\n";
    let Parsed { lines, .. } = parse(text.as_bytes(), &deployment()).expect("valid");
    assert_eq!(lines[0].energy, WattHours(10_001));
    let text = "电站编号,结算月份,上网电量（千瓦时）\n西村光伏电站,2026/3,7\n";
    let Parsed { lines, .. } = parse(text.as_bytes(), &deployment()).expect("valid");
    assert_eq!(lines[0].station.as_str(), "S2");
    assert_eq!(lines[0].energy, WattHours(7_000));
}

fn problems(bytes: &[u8]) -> Vec<(usize, String)> {
    match parse(bytes, &deployment()) {
        Ok(lines) => panic!("accepted a bad file: {lines:?}"),
        Err(p) => p.into_iter().map(|p| (p.line, p.message)).collect(),
    }
}

#[test]
fn a_missing_column_is_named_with_the_header_line() {
    let p = problems(&gbk("电站编号,结算月份,结算金额(元)\nS1,2026-01,100\n"));
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, 1);
    assert!(p[0].1.contains("上网电量"), "{}", p[0].1);
}

#[test]
fn every_bad_line_is_reported_with_its_number() {
    let text = "电站编号,结算月份,上网电量(kWh)\n\
                S1,2026-01,100\n\
                S9,2026-01,100\n\
                S2,2026-01,-5\n\
                S1,2026-01,120\n\
                S3,2026-13,1\n\
                S3,2026-02,abc\n";
    let p = problems(&gbk(text));
    let lines: Vec<usize> = p.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7]);
    assert!(p[0].1.contains("unknown station 'S9'"));
    assert!(p[1].1.contains("negative"));
    assert!(p[2].1.contains("appears twice (first on line 2)"));
    assert!(p[3].1.contains("not a month"));
    assert!(p[4].1.contains("not a number"));
}

#[test]
fn undecodable_bytes_are_refused_with_the_line() {
    let mut bytes = b"station,month,kwh\nS1,2026-01,5\n".to_vec();
    // 0xFF never occurs in UTF-8 nor GBK.
    bytes.extend_from_slice(b"S2,2026-01,\xFF\xFF\n");
    let p = problems(&bytes);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].0, 3);
    assert!(p[0].1.contains("neither UTF-8 nor GBK"));
}

#[test]
fn units_other_than_kwh_are_refused() {
    let p = problems("电站编号,结算月份,上网电量(MWh)\nS1,2026-01,1\n".as_bytes());
    assert!(p[0].1.contains("kWh"), "{}", p[0].1);
}

#[test]
fn xlsx_written_by_a_spreadsheet_imports() {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let header = ["电站编号", "结算月份", "上网电量(kWh)", "结算金额(元)"];
    for (c, h) in header.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).expect("header");
    }
    sheet.write_string(1, 0, "S1").expect("cell");
    sheet.write_string(1, 1, "2026-01").expect("cell");
    sheet.write_number(1, 2, 1234.5).expect("cell");
    sheet.write_number(1, 3, 1049.33).expect("cell");
    sheet.write_string(2, 0, "S2").expect("cell");
    // A real date cell, as Excel stores a month typed as 2026/1/1.
    let date = rust_xlsxwriter::ExcelDateTime::from_ymd(2026, 1, 1).expect("date");
    let fmt = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm");
    sheet
        .write_datetime_with_format(2, 1, &date, &fmt)
        .expect("cell");
    sheet.write_number(2, 2, 1000).expect("cell");
    let bytes = book.save_to_buffer().expect("xlsx bytes");
    let Parsed {
        lines, encoding, ..
    } = parse(&bytes, &deployment()).expect("valid statement");
    assert_eq!(encoding, "xlsx");
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0].line, lines[0].energy, lines[0].amount),
        (2, WattHours(1_234_500), Some(Fen(104_933)))
    );
    assert_eq!(
        (lines[1].line, lines[1].month.to_string(), lines[1].energy),
        (3, "2026-01".to_owned(), WattHours(1_000_000))
    );
}

#[test]
fn import_is_all_or_nothing_and_never_twice() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for t in crate::store::testing::all("import_is_all_or_nothing_and_never_twice").await? {
            let store = &t.store;
            let d = deployment();
            let now = Utc::now();
            // A bad line anywhere: nothing stored.
            let bad = gbk("电站编号,结算月份,上网电量(kWh)\nS1,2026-01,100\nS9,2026-01,100\n");
            let err = import(store, &d, &bad, "bad.csv", now).await;
            assert!(matches!(err, Err(ImportError::Rejected(_))), "{}", t.name);
            assert!(
                store.settlements_of(&"S1".into()).await?.is_empty(),
                "{}",
                t.name
            );

            let report = import(store, &d, &gbk(CHINESE), "jan.csv", now).await?;
            assert_eq!(report.lines.len(), 3);
            let s1 = store.settlements_of(&"S1".into()).await?;
            assert_eq!(s1.len(), 2);
            assert_eq!((s1[0].energy, s1[0].source_line), (WattHours(1_234_500), 2));

            // The same month again (with a new one alongside): refused, the new one not stored.
            let again = "电站编号,结算月份,上网电量(kWh)\nS3,2026-01,5\nS1,2026-02,1600\n";
            match import(store, &d, again.as_bytes(), "again.csv", now).await {
                Err(ImportError::Rejected(r)) => {
                    assert_eq!(r.problems.len(), 1);
                    assert_eq!(r.problems[0].line, 3);
                    assert!(
                        r.to_string()
                            .contains("again.csv:3: station 'S1' month 2026-02 is already settled"),
                        "{r}"
                    );
                }
                other => panic!("{}: expected a rejection, got {other:?}", t.name),
            }
            assert!(
                store.settlements_of(&"S3".into()).await?.is_empty(),
                "{}",
                t.name
            );
        }
        Ok(())
    })
}

#[test]
fn utf16_unicode_text_with_tabs_imports() {
    let text = "电站编号\t结算月份\t上网电量(kWh)\r\nS1\t2026-01\t12.5\r\n";
    let mut bytes = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    let Parsed {
        lines, encoding, ..
    } = parse(&bytes, &deployment()).expect("valid statement");
    assert_eq!(encoding, "utf-16le");
    assert_eq!((lines[0].line, lines[0].energy), (2, WattHours(12_500)));
}

/// A statement as the county's supply company prints it: a title and a unit line above the header,
/// a blank separator row of empty cells, and a total row.
const TITLED: &str = "国网阳曲县供电公司光伏发电结算单 2026年10月\r\n\
,,,,\r\n\
单位：千瓦时、元,,,,\r\n\
电站编号,电站名称,结算月份,上网电量(kWh),结算金额(元)\r\n\
S1,东村光伏电站,2026-10,1234.5,1049.33\r\n\
S2,西村光伏电站,2026-10,\"1,000\",850.00\r\n\
合计,,,2234.5,1899.33\r\n";

#[test]
fn title_rows_above_the_header_are_skipped_in_gbk_and_utf8() {
    for bytes in [gbk(TITLED), TITLED.as_bytes().to_vec()] {
        let parsed = parse(&bytes, &deployment()).expect("valid statement");
        assert_eq!(parsed.header_line, 4);
        let got: Vec<_> = parsed
            .lines
            .iter()
            .map(|s| (s.line, s.station.to_string(), s.energy.0, s.amount))
            .collect();
        assert_eq!(
            got,
            vec![
                (5, "S1".to_owned(), 1_234_500, Some(Fen(104_933))),
                (6, "S2".to_owned(), 1_000_000, Some(Fen(85_000))),
            ]
        );
    }
}

#[test]
fn a_tab_separated_statement_with_a_title_line_finds_its_separator_and_header() {
    let text = "光伏发电上网电量结算单（2026年10月）\r\n\
                电站编号\t结算月份\t上网电量(kWh)\r\n\
                S3\t2026-10\t88\r\n";
    let parsed = parse(text.as_bytes(), &deployment()).expect("valid statement");
    assert_eq!(parsed.header_line, 2);
    assert_eq!(
        (parsed.lines[0].line, parsed.lines[0].energy),
        (3, WattHours(88_000))
    );
}

#[test]
fn an_xlsx_with_a_merged_title_row_imports_from_its_real_header() {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet
        .merge_range(
            0,
            0,
            0,
            3,
            "国网阳曲县供电公司光伏发电结算单 2026年10月",
            &rust_xlsxwriter::Format::new(),
        )
        .expect("title");
    let header = ["电站编号", "结算月份", "上网电量(kWh)", "结算金额(元)"];
    for (c, h) in header.iter().enumerate() {
        sheet.write_string(2, c as u16, *h).expect("header");
    }
    sheet.write_string(3, 0, "S1").expect("cell");
    sheet.write_string(3, 1, "2026年10月").expect("cell");
    sheet.write_number(3, 2, 1234.5).expect("cell");
    sheet.write_number(3, 3, 1049.33).expect("cell");
    sheet.write_string(4, 0, "合　计").expect("cell");
    sheet.write_number(4, 2, 1234.5).expect("cell");
    sheet.write_number(4, 3, 1049.33).expect("cell");
    let bytes = book.save_to_buffer().expect("xlsx bytes");
    let parsed = parse(&bytes, &deployment()).expect("valid statement");
    assert_eq!((parsed.encoding, parsed.header_line), ("xlsx", 3));
    assert_eq!(parsed.lines.len(), 1);
    assert_eq!(
        (parsed.lines[0].line, parsed.lines[0].month.to_string()),
        (4, "2026-10".to_owned())
    );
}

#[test]
fn without_a_header_row_the_error_names_the_columns_looked_for() {
    let text = "国网阳曲县供电公司光伏发电结算单 2026年10月\n户号,户名,电量\n0001,张三,12\n";
    let p = problems(&gbk(text));
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, 0);
    for needle in [
        "no header row found in 3 non-empty rows",
        "电站编号 (station) [accepted: 电站编号/电站代码",
        "结算月份 (month)",
        "上网电量(kWh) (on_grid_kwh)",
        "line 1 reads: 国网阳曲县供电公司光伏发电结算单 2026年10月",
    ] {
        assert!(p[0].1.contains(needle), "{needle} in {}", p[0].1);
    }
}

#[test]
fn a_header_below_a_title_missing_a_column_is_reported_at_its_own_line() {
    let text =
        "光伏发电结算单 2026年10月\n电站名称,结算月份,上网电量(kWh)\n东村光伏电站,2026-10,5\n";
    let p = problems(text.as_bytes());
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, 2);
    assert!(
        p[0].1
            .contains("missing column 电站编号 (station); the header row has: 电站名称, 结算月份"),
        "{}",
        p[0].1
    );
}

#[test]
fn total_rows_are_recognised_in_any_column_and_with_any_spacing() {
    for label in ["合计", "合 计", "合\u{3000}计", "总计", "合计：", " 总 计 "] {
        // The label in the name column, the station cell empty.
        let text = format!(
            "电站编号,电站名称,结算月份,上网电量(kWh),结算金额(元)\n\
             S1,东村光伏电站,2026-10,100,85.00\n\
             S2,西村光伏电站,2026-10,200.5,170.43\n\
             ,{label},,300.5,255.43\n"
        );
        let parsed =
            parse(&gbk(&text), &deployment()).unwrap_or_else(|p| panic!("{label:?}: {p:?}"));
        assert_eq!(parsed.lines.len(), 2, "{label:?}");
    }
    // A subtotal is skipped without being checked.
    let text = "电站编号,结算月份,上网电量(kWh)\nS1,2026-10,100\n小计,,7\nS2,2026-10,5\n";
    let parsed = parse(text.as_bytes(), &deployment()).expect("subtotal skipped");
    assert_eq!(parsed.lines.len(), 2);
}

#[test]
fn a_total_that_does_not_match_the_lines_is_refused_with_its_row_and_figures() {
    let text = "国网阳曲县供电公司光伏发电结算单 2026年10月\n\
                电站编号,电站名称,结算月份,上网电量(kWh),结算金额(元)\n\
                S1,东村光伏电站,2026-10,1234.5,1049.33\n\
                S2,西村光伏电站,2026-10,1000,850.00\n\
                合 计,,,2235.5,1899.34\n";
    let p = problems(&gbk(text));
    assert_eq!(
        p,
        vec![
            (
                5,
                "the 合 计 row gives 2235.500 kWh of on-grid energy, but the 2 station lines above it \
                 sum to 2234.500 kWh"
                    .to_owned()
            ),
            (
                5,
                "the 合 计 row gives a settled amount of 1899.34 yuan, but the 2 station lines above \
                 it sum to 1899.33 yuan"
                    .to_owned()
            ),
        ]
    );
    // A total that is not a number is named too.
    let p = problems("电站编号,结算月份,上网电量(kWh)\nS1,2026-10,1\n总计,,一千\n".as_bytes());
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, 3);
    assert!(
        p[0].1
            .contains("the 总计 row: '一千' is not a number of kWh"),
        "{}",
        p[0].1
    );
}

#[test]
fn settled_amounts_are_compared_with_energy_times_tariff_and_differences_above_a_fen_flagged() {
    // At 0.85 yuan/kWh: 1,234.5 kWh is 1,049.325 -> 1,049.33 yuan; 1,000 kWh is 850.00; 88 kWh 74.80.
    let text = "国网阳曲县供电公司光伏发电结算单 2026年10月\r\n\
                电站编号,电站名称,结算月份,上网电量(kWh),结算金额(元)\r\n\
                S1,东村光伏电站,2026-10,1234.5,1049.32\r\n\
                S2,西村光伏电站,2026-10,1000,850.02\r\n\
                S3,南村光伏电站,2026-10,88,72.80\r\n\
                合计,,,2322.5,1972.14\r\n";
    let parsed = parse(&gbk(text), &deployment()).expect("valid statement");
    let computed: Vec<Fen> = parsed.lines.iter().map(|s| s.computed).collect();
    assert_eq!(computed, vec![Fen(104_933), Fen(85_000), Fen(7_480)]);
    assert!(parsed.lines.iter().all(|s| s.tariff == Price(8500)));
    // The same rounding as the allocator's revenue lines.
    assert_eq!(
        crate::allocate::money::revenue_line(WattHours(1_234_500), Price(8500)).ok(),
        Some(Fen(104_933))
    );
    // One fen off (S1) passes; two fen (S2) and two yuan (S3) are flagged, with their figures.
    let flagged: Vec<_> = parsed
        .warnings
        .iter()
        .map(|w| {
            (
                w.line,
                w.station.to_string(),
                w.settled,
                w.computed,
                w.difference,
            )
        })
        .collect();
    assert_eq!(
        flagged,
        vec![
            (4, "S2".to_owned(), Fen(85_002), Fen(85_000), Fen(2)),
            (5, "S3".to_owned(), Fen(7_280), Fen(7_480), Fen(-200)),
        ]
    );
    assert_eq!(
        parsed.warnings[1].to_string(),
        "station 'S3' 2026-10: settled amount 72.80 yuan, but 88.000 kWh × 0.8500 yuan/kWh = \
         74.80 yuan (difference -2.00 yuan)"
    );
    // Without an amount there is nothing to compare.
    let text = "电站编号,结算月份,上网电量(kWh),结算金额(元)\nS1,2026-10,10,\n";
    let parsed = parse(text.as_bytes(), &deployment()).expect("valid statement");
    assert!(parsed.warnings.is_empty());
    assert_eq!(parsed.lines[0].computed, Fen(850));
}

#[test]
fn the_import_report_carries_and_prints_the_amount_warnings() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let t = crate::store::testing::sqlite().await?;
        let text = "电站编号,结算月份,上网电量(kWh),结算金额(元)\nS1,2026-10,1000,850.00\nS2,2026-10,1000,849.50\n";
        let report = import(&t.store, &deployment(), &gbk(text), "结算单.csv", Utc::now()).await?;
        assert_eq!(report.lines.len(), 2);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].line, 3);
        let printed = report.to_string();
        assert!(
            printed.contains(
                "1 settled amount differs from energy × tariff by more than 0.01 yuan:\n  \
                 结算单.csv:3: station 'S2' 2026-10: settled amount 849.50 yuan"
            ),
            "{printed}"
        );
        Ok(())
    })
}

#[test]
fn the_digest_is_sha256_of_the_bytes() {
    assert_eq!(
        digest(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// Every month's file from the supply company is called 结算单.csv: the bytes tell them apart.
#[test]
fn files_of_the_same_name_are_told_apart_by_their_bytes_and_the_same_bytes_are_not_imported_twice(
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let october = gbk(TITLED);
        let november = gbk(&TITLED.replace("2026-10", "2026-11").replace("10月", "11月"));
        let at = |m: u32, d: u32| {
            chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, m, d, 2, 15, 30)
                .single()
                .expect("time")
        };
        for t in crate::store::testing::all("files_of_the_same_name_are_told_apart").await? {
            let (store, d) = (&t.store, deployment());
            let first = import(store, &d, &october, "结算单.csv", at(11, 3)).await?;
            assert_eq!(first.sha256, digest(&october), "{}", t.name);
            assert_eq!(
                (first.size_bytes, first.uploaded),
                (october.len(), at(11, 3))
            );

            // The same bytes, under the same name or another: a duplicate naming the first import.
            for name in ["结算单.csv", "结算单(1).csv"] {
                match import(store, &d, &october, name, at(11, 5)).await {
                    Err(ImportError::Duplicate(dup)) => {
                        assert_eq!(dup.earlier.id, first.import_id, "{}", t.name);
                        assert_eq!(dup.earlier.uploaded, at(11, 3), "{}", t.name);
                        assert_eq!(
                            dup.to_string(),
                            format!(
                                "{name}: this file was already imported, as '结算单.csv' uploaded \
                                 2026-11-03 02:15:30 UTC (import {}, SHA-256 {}); nothing imported again",
                                first.import_id, first.sha256
                            )
                        );
                    }
                    other => panic!("{}: expected a duplicate, got {other:?}", t.name),
                }
            }
            assert_eq!(store.settlements_of(&"S1".into()).await?.len(), 1, "{}", t.name);

            // A refused file is not recorded, so it can be corrected and uploaded again.
            let bad = gbk("电站编号,结算月份,上网电量(kWh)\nS9,2026-12,1\n");
            assert!(matches!(
                import(store, &d, &bad, "结算单.csv", at(12, 1)).await,
                Err(ImportError::Rejected(_))
            ));

            // November's statement, also 结算单.csv: a new import.
            let second = import(store, &d, &november, "结算单.csv", at(12, 2)).await?;
            assert_ne!(second.import_id, first.import_id, "{}", t.name);
            assert_ne!(second.sha256, first.sha256, "{}", t.name);
            let imports = store.settlement_imports().await?;
            let listed: Vec<_> = imports
                .iter()
                .map(|i| (i.id, i.source.as_str(), i.sha256.clone(), i.lines, i.uploaded))
                .collect();
            assert_eq!(
                listed,
                vec![
                    (second.import_id, "结算单.csv", digest(&november), 2, at(12, 2)),
                    (first.import_id, "结算单.csv", digest(&october), 2, at(11, 3)),
                ],
                "{}",
                t.name
            );
            assert_eq!(
                (imports[0].encoding.as_str(), imports[0].size_bytes),
                ("gbk", i64::try_from(november.len())?)
            );
            // Each stored settlement names its import and keeps Sunshare's computed amount.
            let rows = store.settlements_of_import(second.import_id).await?;
            let got: Vec<_> = rows
                .iter()
                .map(|r| (r.station.to_string(), r.month.to_string(), r.source_line, r.import_id, r.amount, r.computed))
                .collect();
            assert_eq!(
                got,
                vec![
                    ("S1".into(), "2026-11".into(), 5, Some(second.import_id), Some(Fen(104_933)), Some(Fen(104_933))),
                    ("S2".into(), "2026-11".into(), 6, Some(second.import_id), Some(Fen(85_000)), Some(Fen(85_000))),
                ],
                "{}",
                t.name
            );

            // The store itself refuses a digest it holds, even when asked directly.
            let again = crate::store::SettlementImportRow {
                id: 0,
                source: "结算单.csv".into(),
                sha256: digest(&november),
                size_bytes: 1,
                encoding: "gbk".into(),
                lines: 0,
                uploaded: at(12, 9),
            };
            match store.insert_settlements(&again, &[]).await? {
                SettlementInsert::Duplicate(earlier) => {
                    assert_eq!(earlier.id, second.import_id, "{}", t.name)
                }
                other => panic!("{}: {other:?}", t.name),
            }
            assert_eq!(store.settlement_imports().await?.len(), 2, "{}", t.name);
        }
        Ok(())
    })
}

#[test]
fn an_xlsx_uploaded_twice_is_a_duplicate() -> anyhow::Result<()> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    let rows = [
        ["电站编号", "结算月份", "上网电量(kWh)"],
        ["S3", "2026-10", "88"],
    ];
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            sheet.write_string(r as u32, c as u16, *v)?;
        }
    }
    let bytes = book.save_to_buffer()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let t = crate::store::testing::sqlite().await?;
        let d = deployment();
        let first = import(&t.store, &d, &bytes, "结算单.xlsx", Utc::now()).await?;
        assert_eq!(first.encoding, "xlsx");
        match import(&t.store, &d, &bytes, "结算单.xlsx", Utc::now()).await {
            Err(ImportError::Duplicate(dup)) => assert_eq!(dup.earlier.id, first.import_id),
            other => panic!("expected a duplicate, got {other:?}"),
        }
        Ok(())
    })
}
