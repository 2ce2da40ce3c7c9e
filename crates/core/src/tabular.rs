//! Tables as people send them: CSV in UTF-8 (BOM or not), GBK as Excel saves it on a Chinese
//! Windows, UTF-16 "Unicode text", or an XLSX/XLS workbook (first sheet). Gives the non-empty rows
//! with their line numbers, cells trimmed; what the columns mean is the reader's business
//! (settlement statements, the poverty-registry roster). Pure: bytes in, rows out.

/// Why a file could not be read as a table, and on which line (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: usize,
    pub message: String,
}

fn unreadable(line: usize, message: impl Into<String>) -> Unreadable {
    Unreadable {
        line,
        message: message.into(),
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
            unreadable(line, format!("not a readable CSV line: {e}"))
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

fn read_spreadsheet(bytes: &[u8]) -> Result<(Vec<Row>, &'static str), Unreadable> {
    use calamine::Reader as _;
    let mut book = calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes))
        .map_err(|e| unreadable(0, format!("not a readable spreadsheet: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| unreadable(0, "the workbook has no sheet"))?
        .map_err(|e| unreadable(0, format!("cannot read the first sheet: {e}")))?;
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
