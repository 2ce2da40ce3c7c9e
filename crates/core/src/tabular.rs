//! Tables as people send them: CSV in UTF-8 (BOM or not), GBK as Excel saves it on a Chinese
//! Windows, UTF-16 "Unicode text", or an XLSX/XLS workbook (first sheet). Gives the non-empty rows
//! with their line numbers, cells trimmed; what the columns mean is the reader's business
//! (settlement statements, the poverty-registry roster). Pure: bytes in, rows out.

/// Why a file could not be read as a table, and on which line (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: usize,
    /// In English, for logs and the JSON API.
    pub message: String,
    /// The same in the pages' catalogue: its key (`table.err.*`) and arguments.
    pub said: (&'static str, Vec<(&'static str, String)>),
}

/// Every catalogue key an [`Unreadable`] may carry.
pub const PROBLEM_KEYS: &[&str] = &[
    "table.err.encoding",
    "table.err.csv_line",
    "table.err.cell_beyond",
    "table.err.spreadsheet",
    "table.err.no_sheet",
    "table.err.first_sheet",
];

fn unreadable(
    line: usize,
    message: impl Into<String>,
    key: &'static str,
    args: &[(&'static str, String)],
) -> Unreadable {
    Unreadable {
        line,
        message: message.into(),
        said: (key, args.to_vec()),
    }
}

/// Cells of one non-empty row and where it was in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based line (CSV) or row (spreadsheet) number.
    pub line: usize,
    pub cells: Vec<String>,
}

/// Reads a file's rows: spreadsheet by signature, otherwise text with the encoding detected.
pub fn read_rows(bytes: &[u8]) -> Result<(Vec<Row>, &'static str), Unreadable> {
    const ZIP: &[u8] = b"PK\x03\x04";
    const OLE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0];
    if bytes.starts_with(ZIP) || bytes.starts_with(OLE) {
        return read_spreadsheet(bytes);
    }
    let (text, encoding) = decode_text(bytes)?;
    read_csv(&text).map(|rows| (rows, encoding))
}

/// UTF-8 (BOM optional) first, since GBK would misread it; then UTF-16 by BOM; then GBK. Bytes
/// that fit none are refused with the first line that does not decode.
fn decode_text(bytes: &[u8]) -> Result<(String, &'static str), Unreadable> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(body) {
        return Ok((text.to_owned(), "utf-8"));
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        let (text, enc, bad) = encoding_rs::UTF_16LE.decode(bytes);
        if !bad {
            return Ok((
                text.into_owned(),
                if enc == encoding_rs::UTF_16BE {
                    "utf-16be"
                } else {
                    "utf-16le"
                },
            ));
        }
    }
    if let Some(text) = encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(body) {
        return Ok((text.into_owned(), "gbk"));
    }
    let line = body
        .split(|b| *b == b'\n')
        .position(|l| {
            std::str::from_utf8(l).is_err()
                && encoding_rs::GBK
                    .decode_without_bom_handling_and_without_replacement(l)
                    .is_none()
        })
        .map_or(0, |i| i + 1);
    Err(unreadable(
        line,
        "the bytes are neither UTF-8 nor GBK; save the file as CSV (UTF-8) or CSV from Excel, or upload the .xlsx",
        "table.err.encoding",
        &[],
    ))
}

fn read_csv(text: &str) -> Result<Vec<Row>, Unreadable> {
    // The first line with a separator decides: a title line above the header may have none.
    let first = text
        .lines()
        .find(|l| l.contains([',', '\t', ';']))
        .unwrap_or("");
    let delimiter = if first.contains('\t') && !first.contains(',') {
        b'\t'
    } else if first.contains(';') && !first.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    // Line numbers from byte offsets: they count every newline, whatever the line terminator.
    let line_at = |byte: u64| -> usize {
        let bytes = text.as_bytes();
        let mut end = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
        // After a CR the reader may place the next record on the LF that completes the CRLF.
        while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
            end += 1;
        }
        bytes[..end].iter().filter(|b| **b == b'\n').count() + 1
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| line_at(p.byte()));
            unreadable(
                line,
                format!("not a readable CSV line: {e}"),
                "table.err.csv_line",
                &[("detail", e.to_string())],
            )
        })?;
        let line = record.position().map_or(0, |p| line_at(p.byte()));
        let cells: Vec<String> = record.iter().map(clean_cell).collect();
        if cells.iter().any(|c| !c.is_empty()) {
            rows.push(Row { line, cells });
        }
    }
    Ok(rows)
}

fn clean_cell(s: &str) -> String {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .to_owned()
}

/// A spreadsheet's limits: 1,048,576 rows and 16,384 columns (XFD).
const MAX_SHEET_ROWS: u64 = 1_048_576;
const MAX_SHEET_COLUMNS: u64 = 16_384;
/// Most of a worksheet's XML that is looked at for references (a settlement is a few kilobytes).
const MAX_SHEET_XML: u64 = 64 << 20;

/// Refuses an XLSX whose worksheets name a cell beyond a spreadsheet's limits (`r="AAAAAAAAA1"`,
/// `ref="A1:XFE9"`), before the spreadsheet library reads it: such a reference overflows its
/// arithmetic and would size a table to it. Not a ZIP of worksheets: nothing to check here.
fn check_xlsx_references(bytes: &[u8]) -> Result<(), Unreadable> {
    use std::io::Read as _;
    let Ok(mut zip) = zip::ZipArchive::new(std::io::Cursor::new(bytes)) else {
        return Ok(());
    };
    for i in 0..zip.len() {
        let Ok(entry) = zip.by_index(i) else {
            continue;
        };
        let name = entry.name().to_owned();
        if !(name.starts_with("xl/worksheets/") && name.ends_with(".xml")) {
            continue;
        }
        // What was read before an error (a bad checksum is only found at the end) is looked at
        // all the same: the library may read that much too.
        let mut xml = Vec::new();
        let _ = entry.take(MAX_SHEET_XML).read_to_end(&mut xml);
        for value in attribute_values(&xml) {
            for reference in value.split(|c| *c == b':' || *c == b' ') {
                if !reference_fits(reference) {
                    let cell =
                        String::from_utf8_lossy(&reference[..reference.len().min(40)]).into_owned();
                    return Err(unreadable(
                        0,
                        format!(
                            "not a readable spreadsheet: {name} names cell '{cell}', beyond a \
                             sheet's {MAX_SHEET_ROWS} rows and {MAX_SHEET_COLUMNS} columns"
                        ),
                        "table.err.cell_beyond",
                        &[
                            ("part", name.to_string()),
                            ("cell", cell),
                            ("rows", MAX_SHEET_ROWS.to_string()),
                            ("columns", MAX_SHEET_COLUMNS.to_string()),
                        ],
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The values of the attributes that hold cell references (`r`, `ref`, `sqref`).
fn attribute_values(xml: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < xml.len() {
            let rest = &xml[at..];
            let Some(quote) = rest.windows(2).position(|w| w == b"=\"") else {
                at = xml.len();
                return None;
            };
            let name_end = at + quote;
            let name_start = xml[..name_end]
                .iter()
                .rposition(|c| !c.is_ascii_alphanumeric())
                .map_or(0, |p| p + 1);
            let value_start = name_end + 2;
            let value_len = xml[value_start..]
                .iter()
                .position(|c| *c == b'"')
                .unwrap_or(xml.len() - value_start);
            at = value_start + value_len + 1;
            // `r="B2"`, not `xmlns:r="..."` or `r:id="..."`: the name stands alone after a space.
            let alone = name_start > 0 && xml[name_start - 1].is_ascii_whitespace();
            if alone && matches!(&xml[name_start..name_end], b"r" | b"ref" | b"sqref") {
                return Some(&xml[value_start..value_start + value_len]);
            }
        }
        None
    })
}

/// Whether `A1`-style `reference` stays within a sheet's limits. Read from the end, as the
/// spreadsheet library reads it: the row's digits, then the column's letters (`$` anchors
/// skipped); whatever comes before them is left to the library to refuse.
fn reference_fits(reference: &[u8]) -> bool {
    let mut from_end = reference.iter().rev().filter(|c| **c != b'$').peekable();
    let (mut row, mut digits) = (0_u64, 0_u32);
    while let Some(d) = from_end.next_if(|c| c.is_ascii_digit()) {
        if digits == 7 {
            return false;
        }
        row += u64::from(d - b'0') * 10_u64.pow(digits);
        digits += 1;
    }
    let (mut column, mut letters) = (0_u64, 0_u32);
    while let Some(c) = from_end.next_if(|c| c.is_ascii_alphabetic()) {
        if letters == 3 {
            return false;
        }
        column += (u64::from(c.to_ascii_uppercase() - b'A') + 1) * 26_u64.pow(letters);
        letters += 1;
    }
    column <= MAX_SHEET_COLUMNS && row <= MAX_SHEET_ROWS
}

fn read_spreadsheet(bytes: &[u8]) -> Result<(Vec<Row>, &'static str), Unreadable> {
    use calamine::Reader as _;
    check_xlsx_references(bytes)?;
    let mut book =
        calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes)).map_err(|e| {
            unreadable(
                0,
                format!("not a readable spreadsheet: {e}"),
                "table.err.spreadsheet",
                &[("detail", e.to_string())],
            )
        })?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| unreadable(0, "the workbook has no sheet", "table.err.no_sheet", &[]))?
        .map_err(|e| {
            unreadable(
                0,
                format!("cannot read the first sheet: {e}"),
                "table.err.first_sheet",
                &[("detail", e.to_string())],
            )
        })?;
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    let rows = range
        .rows()
        .enumerate()
        .map(|(i, cells)| Row {
            line: first_row + i + 1,
            cells: cells.iter().map(cell_text).collect(),
        })
        .filter(|r| r.cells.iter().any(|c| !c.is_empty()))
        .collect();
    Ok((rows, "xlsx"))
}

fn cell_text(cell: &calamine::Data) -> String {
    use calamine::Data;
    match cell {
        Data::Int(i) => i.to_string(),
        // Shortest round-trip text: 1234.5 stays "1234.5", so the exact decimal parser sees it.
        Data::Float(f) => f.to_string(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => clean_cell(s),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => {
            let (y, m, d, ..) = dt.to_ymd_hms_milli();
            format!("{y:04}-{m:02}-{d:02}")
        }
        Data::Error(e) => format!("#{e:?}"),
        Data::Empty => String::new(),
    }
}

/// Header text folded for matching: full-width brackets to ASCII, no spaces, lowercase.
pub fn fold(header: &str) -> String {
    header
        .chars()
        .map(|c| match c {
            '（' => '(',
            '）' => ')',
            c => c,
        })
        .filter(|c| !c.is_whitespace() && *c != '\u{feff}')
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_beyond_a_sheets_limits_are_refused_and_those_within_pass() {
        for ok in [&b"A1"[..], b"$XFD$1048576", b"C", b"12", b"AB12"] {
            assert!(reference_fits(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"XFE1"[..],
            b"A1048577",
            b"AAAAAAAAAAAAAAA1",
            b"A99999999",
            b"x.vnlineStr1",
        ] {
            assert!(!reference_fits(bad), "{}", String::from_utf8_lossy(bad));
        }
        let xml = br#"<worksheet xmlns:r="http://x/r"><dimension ref="A1:C3"/><c r="B2" t="s"><v>1</v></c><hyperlink r:id="rId1" ref="C3"/><c s="1" r="AAAAAAAAAAAA7">"#;
        let values: Vec<&[u8]> = attribute_values(xml).collect();
        assert_eq!(values, [&b"A1:C3"[..], b"B2", b"C3", b"AAAAAAAAAAAA7"]);
    }

    #[test]
    fn a_workbook_the_fuzzer_found_is_refused_with_a_reason_not_a_panic() {
        // A cell reference whose column overflowed the spreadsheet library's arithmetic.
        let bytes =
            include_bytes!("../../../fuzz/corpus/table_rows/regression-column-overflow.xlsx");
        let e = read_rows(bytes).expect_err("refused");
        assert!(
            e.message.contains("not a readable spreadsheet"),
            "{}",
            e.message
        );
    }
}
