//! Statements as the grid company and Excel produce them, good and bad.

use super::*;
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
    let (lines, encoding) = parse(&bytes, &deployment()).expect("valid statement");
    assert_eq!(encoding, "gbk");
    expect_lines(&lines);
}

#[test]
fn utf8_with_and_without_bom_imports() {
    for bytes in [
        CHINESE.as_bytes().to_vec(),
        [b"\xEF\xBB\xBF".as_slice(), CHINESE.as_bytes()].concat(),
    ] {
        let (lines, encoding) = parse(&bytes, &deployment()).expect("valid statement");
        assert_eq!(encoding, "utf-8");
        expect_lines(&lines);
    }
}

#[test]
fn english_headers_full_width_brackets_and_station_names_are_accepted() {
    let text = "station_id,month,on_grid_kwh,amount_yuan\nS1,2026-03,10.001,\n";
    let (lines, _) = parse(text.as_bytes(), &deployment()).expect("valid");
    assert_eq!(lines[0].energy, WattHours(10_001));
    let text = "电站编号,结算月份,上网电量（千瓦时）\n西村光伏电站,2026/3,7\n";
    let (lines, _) = parse(text.as_bytes(), &deployment()).expect("valid");
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
    let (lines, encoding) = parse(&bytes, &deployment()).expect("valid statement");
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
    let (lines, encoding) = parse(&bytes, &deployment()).expect("valid statement");
    assert_eq!(encoding, "utf-16le");
    assert_eq!((lines[0].line, lines[0].energy), (2, WattHours(12_500)));
}
