//! CSV input: streams the rows of an RFC 4180 file (header row of field names) as
//! `Value::Row`s, in constant memory.
//!
//! Owns: encoding (UTF-8 with or without BOM; UTF-16/32 refused by name; invalid UTF-8 refused
//! naming its line), the header (checked by a caller-supplied function, since this module knows
//! no record type), quotes (a quoted cell never closed is refused naming the line it opened
//! on), ragged rows (more cells than the header is refused; fewer means the rest are empty),
//! blank rows (skipped, no index), and the same bounds as JSON (record size, record count).
//! Must not: know about record types or the store.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{Bounds, FileError, Flow, ReadError, RecordReader, Value};

/// Checks the header's names; the error completes "The CSV header ...".
pub type HeaderCheck = Box<dyn Fn(&[String]) -> Result<(), String> + Send>;

/// What the byte counter beneath the parser sees: bytes consumed, the open quote (if any) and
/// the line it opened on. The csv crate reads an unterminated quoted cell to the end of the file
/// without complaint; this tracks RFC 4180's quote state itself so it can say so.
#[derive(Default)]
struct Watch {
    consumed: AtomicU64,
    /// Offset where the current record started (updated by the reader).
    record_start: AtomicU64,
    max_record: AtomicU64,
    too_large: AtomicBool,
    in_quotes: AtomicBool,
    quote_line: AtomicU64,
}

/// Counts bytes, tracks the quote state, and turns CRLF into LF (the csv crate counts a CRLF
/// file's lines one short otherwise; inside a quoted cell a line break is a line break).
struct Counting<R> {
    inner: R,
    watch: Arc<Watch>,
    line: u64,
    at_field_start: bool,
    quote_pending: bool,
    /// A `\r` that ended the previous buffer: kept back until the next byte is seen.
    cr_pending: bool,
}

impl<R: BufRead> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let avail = self.inner.fill_buf()?;
        let mut n = 0;
        let mut i = 0;
        if self.cr_pending {
            self.cr_pending = false;
            if avail.first() != Some(&b'\n') {
                buf[0] = b'\r';
                n = 1;
            }
        }
        while i < avail.len() && n < buf.len() {
            let b = avail[i];
            if b == b'\r' {
                if i + 1 < avail.len() {
                    i += 1;
                    if avail[i] != b'\n' {
                        buf[n] = b'\r';
                        n += 1;
                    }
                    continue;
                }
                // The last byte of the buffer: decide with the next one.
                i += 1;
                self.cr_pending = true;
                break;
            }
            buf[n] = b;
            n += 1;
            i += 1;
        }
        self.inner.consume(i);
        if n == 0 && self.cr_pending {
            // Only a `\r` was left in the buffer: look at what follows it.
            return self.read(buf);
        }
        let w = &self.watch;
        let mut in_q = w.in_quotes.load(Ordering::Relaxed);
        for &b in &buf[..n] {
            if in_q {
                if self.quote_pending {
                    self.quote_pending = false;
                    if b != b'"' {
                        in_q = false; // the quote closed the cell
                        self.at_field_start = matches!(b, b',' | b'\n' | b'\r');
                    }
                } else if b == b'"' {
                    self.quote_pending = true;
                }
            } else if b == b'"' && self.at_field_start {
                in_q = true;
                w.quote_line.store(self.line, Ordering::Relaxed);
                self.at_field_start = false;
            } else {
                self.at_field_start = matches!(b, b',' | b'\n' | b'\r');
            }
            if b == b'\n' {
                self.line += 1;
            }
        }
        if n == 0 && in_q && self.quote_pending {
            // `"…"` closed by the last byte of the file.
            in_q = false;
            self.quote_pending = false;
        }
        w.in_quotes.store(in_q, Ordering::Relaxed);
        let c = w.consumed.load(Ordering::Relaxed) + n as u64;
        w.consumed.store(c, Ordering::Relaxed);
        // The parser buffers 64 KiB ahead, so the bound is checked with that slack.
        let max = w.max_record.load(Ordering::Relaxed);
        if c.saturating_sub(w.record_start.load(Ordering::Relaxed)) > max.saturating_add(1 << 17) {
            w.too_large.store(true, Ordering::Relaxed);
            return Err(io::Error::other("bulkload: record too large"));
        }
        Ok(n)
    }
}

/// The `RecordReader` of CSV files.
pub struct CsvReader<R> {
    inner: Option<R>,
    bounds: Bounds,
    header_check: Option<HeaderCheck>,
    header: Vec<String>,
}

impl<R: Read + Send> CsvReader<R> {
    pub fn new(inner: R, bounds: Bounds) -> Self {
        CsvReader {
            inner: Some(inner),
            bounds,
            header_check: None,
            header: Vec::new(),
        }
    }
    /// Refuses the file when `check` refuses its header.
    pub fn with_header_check(mut self, check: HeaderCheck) -> Self {
        self.header_check = Some(check);
        self
    }
    /// The header's names, once read.
    pub fn header(&self) -> &[String] {
        &self.header
    }
}

/// Looks at the first bytes: skips a UTF-8 BOM, refuses UTF-16/UTF-32 by name.
fn sniff<R: BufRead>(r: &mut R) -> Result<(), FileError> {
    let head = r.fill_buf().map_err(|e| FileError::Io(e.to_string()))?;
    let named = |s: &str| Err(FileError::CsvEncoding(s.to_string()));
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        r.consume(3);
        return Ok(());
    }
    if head.starts_with(&[0x00, 0x00, 0xFE, 0xFF]) || head.starts_with(&[0xFF, 0xFE, 0x00, 0x00]) {
        return named("UTF-32 (it starts with a UTF-32 byte order mark)");
    }
    if head.starts_with(&[0xFE, 0xFF]) || head.starts_with(&[0xFF, 0xFE]) {
        return named("UTF-16 (it starts with a UTF-16 byte order mark)");
    }
    if head.len() >= 4
        && ((head[0] == 0 && head[2] == 0 && head[1] != 0)
            || (head[1] == 0 && head[3] == 0 && head[0] != 0))
    {
        return named("UTF-16 (every other byte of its first characters is zero)");
    }
    Ok(())
}

fn utf8(cell: &[u8], line: u64, column: usize) -> Result<String, FileError> {
    match std::str::from_utf8(cell) {
        Ok(s) if s.contains('\0') => Err(FileError::CsvEncoding(format!(
            "not text: line {line}, column {column} holds a NUL byte"
        ))),
        Ok(s) => Ok(s.to_string()),
        Err(e) => Err(FileError::CsvEncoding(format!(
            "not UTF-8: line {line}, column {column} holds an invalid byte sequence (at byte {} of the cell; saved as Latin-1 or Windows-1252?)",
            e.valid_up_to() + 1
        ))),
    }
}

impl<R: Read + Send> RecordReader for CsvReader<R> {
    fn read(&mut self, sink: &mut dyn FnMut(u64, Value) -> Flow) -> Result<u64, ReadError> {
        let Some(inner) = self.inner.take() else {
            return Ok(0);
        };
        let file = |e: FileError| ReadError::File(e);
        let mut buffered = BufReader::with_capacity(64 * 1024, inner);
        sniff(&mut buffered).map_err(file)?;
        let watch = Arc::new(Watch::default());
        watch
            .max_record
            .store(self.bounds.max_record_bytes, Ordering::Relaxed);
        let counting = Counting {
            inner: buffered,
            watch: watch.clone(),
            line: 1,
            at_field_start: true,
            quote_pending: false,
            cr_pending: false,
        };
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(counting);
        let mut row = csv::ByteRecord::new();
        let mut index = 0u64;
        let mut have_header = false;
        loop {
            let start = csv.position().byte();
            watch.record_start.store(start, Ordering::Relaxed);
            let more = match csv.read_byte_record(&mut row) {
                Ok(more) => more,
                Err(e) => {
                    if watch.too_large.load(Ordering::Relaxed) {
                        return Err(file(FileError::RecordTooLarge {
                            index,
                            limit: self.bounds.max_record_bytes,
                        }));
                    }
                    return Err(file(match e.into_kind() {
                        csv::ErrorKind::Io(io) => FileError::Io(io.to_string()),
                        other => FileError::CsvMalformed(format!("{other:?}")),
                    }));
                }
            };
            if !more {
                break;
            }
            let line = row.position().map_or(0, |p| p.line());
            if row.as_slice().len() as u64 > self.bounds.max_record_bytes {
                return Err(file(FileError::RecordTooLarge {
                    index,
                    limit: self.bounds.max_record_bytes,
                }));
            }
            if watch.in_quotes.load(Ordering::Relaxed) && csv.is_done() {
                break;
            }
            let mut cells = Vec::with_capacity(row.len());
            for (c, cell) in row.iter().enumerate() {
                cells.push(utf8(cell, line, c + 1).map_err(file)?);
            }
            if !have_header {
                have_header = true;
                if let Some(check) = &self.header_check {
                    check(&cells).map_err(|why| file(FileError::CsvHeader(why)))?;
                }
                self.header = cells;
                continue;
            }
            if cells.iter().all(|c| c.trim().is_empty()) {
                continue; // a blank row (spreadsheets add them): no record
            }
            if cells.len() > self.header.len() {
                return Err(file(FileError::CsvMalformed(format!(
                    "line {line} has {} cells, more than the {} columns of the header (a comma in a cell that is not quoted?)",
                    cells.len(),
                    self.header.len()
                ))));
            }
            if index >= self.bounds.max_records {
                return Err(file(FileError::TooManyRecords {
                    limit: self.bounds.max_records,
                }));
            }
            let mut cells = cells.into_iter();
            let named = self
                .header
                .iter()
                .map(|h| (h.clone(), cells.next().unwrap_or_default()))
                .collect();
            if sink(index, Value::Row { line, cells: named }).is_err() {
                return Err(ReadError::Stopped);
            }
            index += 1;
        }
        if watch.in_quotes.load(Ordering::Relaxed) {
            return Err(file(FileError::CsvMalformed(format!(
                "the quoted cell opened on line {} is never closed (a missing closing quote?)",
                watch.quote_line.load(Ordering::Relaxed)
            ))));
        }
        if !have_header {
            return Err(file(FileError::CsvHeader(
                "is missing: the file holds no row".into(),
            )));
        }
        Ok(index)
    }
}

/// Writes one CSV row (RFC 4180 quoting, CRLF line ends as spreadsheets expect).
pub fn write_row<W: io::Write>(out: &mut csv::Writer<W>, cells: &[&str]) -> io::Result<()> {
    out.write_record(cells).map_err(io::Error::other)
}

/// A CSV writer as the failed-records file and templates use it.
pub fn writer<W: io::Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8]) -> Result<Vec<Value>, FileError> {
        let mut out = Vec::new();
        let b = Bounds {
            max_record_bytes: 1 << 20,
            max_records: 1000,
        };
        let r = CsvReader::new(text, b).read(&mut |_, v| {
            out.push(v);
            Ok(())
        });
        match r {
            Ok(_) => Ok(out),
            Err(ReadError::File(e)) => Err(e),
            Err(ReadError::Stopped) => unreachable!(),
        }
    }

    fn row(line: u64, cells: &[(&str, &str)]) -> Value {
        Value::Row {
            line,
            cells: cells
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn rows_lines_quotes_bom() {
        let v =
            read(b"\xEF\xBB\xBFMode,Name\r\ncreate,\"a, \"\"b\"\"\nc\"\n\n,\nupdate\n").unwrap();
        assert_eq!(
            v,
            vec![
                row(2, &[("Mode", "create"), ("Name", "a, \"b\"\nc")]),
                row(6, &[("Mode", "update"), ("Name", "")]),
            ]
        );
    }

    #[test]
    fn refusals_name_the_line() {
        assert_eq!(
            read(b"Mode,Name\ncreate,\"abc\nupdate,x\n").unwrap_err().to_string(),
            "The file is not well-formed CSV: the quoted cell opened on line 2 is never closed (a missing closing quote?). Nothing was applied."
        );
        assert_eq!(
            read(b"Mode,Name\ncreate,a\ncreate,a,b\n").unwrap_err().to_string(),
            "The file is not well-formed CSV: line 3 has 3 cells, more than the 2 columns of the header (a comma in a cell that is not quoted?). Nothing was applied."
        );
        assert!(read(b"Mode,Name\ncreate,Jos\xe9\n")
            .unwrap_err()
            .to_string()
            .starts_with("The file is not UTF-8: line 2, column 2 holds"));
        assert!(read(b"\xFF\xFEM\x00o\x00")
            .unwrap_err()
            .to_string()
            .starts_with("The file is UTF-16"));
        // An unclosed quote does not grow memory past the record bound.
        let mut big = b"Mode,Name\ncreate,\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 4 << 20));
        let b = Bounds {
            max_record_bytes: 1024,
            max_records: 10,
        };
        let r = CsvReader::new(&big[..], b).read(&mut |_, _| Ok(()));
        assert_eq!(
            r,
            Err(ReadError::File(FileError::RecordTooLarge {
                index: 0,
                limit: 1024
            }))
        );
        // A closed quote at the very end is fine.
        assert_eq!(read(b"Mode\n\"create\"").unwrap().len(), 1);
    }
}
