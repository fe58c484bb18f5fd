//! JSON input: streams the elements of a top-level array from any reader, in constant memory.
//!
//! Owns: encoding detection (UTF-8 with or without BOM; UTF-16/32 refused by name), the blank
//! test, the streaming array visitor that builds `input::Value`s (serde_json's own `Value` would
//! silently keep the last of repeated names), the per-record and per-file bounds, and
//! `JsonReader`, the `RecordReader` of JSON files. File-level problems come back as `FileError`
//! with line and column.
//! Two parsers, one behaviour: a fast path reads the file in chunks and parses each element from
//! a slice; the streaming parser (serde_json over the bytes one at a time) is the reference and
//! takes over, at a boundary between elements, whenever the fast path is not certain (tests feed
//! both malformed and mutated files and compare every value and message). The fast path checks
//! UTF-8 once per read and parses an element inside the checked text as a `str`
//! (`Window::parse_at`, the reader's one `unsafe`).
//! Must not: know about record types or the store.

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use super::{Bounds, FileError, Flow, ReadError, RecordReader, Stopped, Value};

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(e) = seq.next_element()? {
            v.push(e);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // Records have tens of members: start with room for them rather than growing 4, 8, 16...
        let mut v = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
        while let Some((k, e)) = map.next_entry::<String, Value>()? {
            v.push((k, e));
        }
        Ok(Value::Object(v))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// Parses one complete JSON text (tests, small inputs).
pub fn parse_one(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text)
}

/// Shared between the reader and the visitor: bytes consumed so far and where the current
/// element started, so the reader can refuse a record that outgrows its bound.
#[derive(Default)]
struct Position {
    consumed: Cell<u64>,
    element_start: Cell<u64>,
    element: Cell<u64>,
    in_element: Cell<bool>,
    /// Set when the reader refused a record over its bound.
    too_large: Cell<bool>,
}

const RECORD_TOO_LARGE: &str = "bulkload: record too large";

/// Counts the bytes the parser takes and refuses a record that outgrows its bound. It keeps a
/// buffer of its own because serde_json's reader takes one byte per `read` call: serving those
/// from a slice (instead of through a second `BufReader`) is most of the parsing speed.
struct BoundedReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pos: Rc<Position>,
    max_record: u64,
}

impl<R: Read> BoundedReader<R> {
    fn new(inner: R, pos: Rc<Position>, max_record: u64) -> Self {
        BoundedReader {
            inner,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            start: 0,
            end: 0,
            pos,
            max_record,
        }
    }
}

impl<R: Read> Read for BoundedReader<R> {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end {
            self.end = self.inner.read(&mut self.buf)?;
            self.start = 0;
        }
        let n = buf.len().min(self.end - self.start);
        if n == 1 {
            buf[0] = self.buf[self.start];
        } else {
            buf[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        }
        self.start += n;
        let p = &self.pos;
        let c = p.consumed.get() + n as u64;
        p.consumed.set(c);
        if p.in_element.get() && c.saturating_sub(p.element_start.get()) > self.max_record {
            p.too_large.set(true);
            return Err(io::Error::other(RECORD_TOO_LARGE));
        }
        Ok(n)
    }
}

/// Looks at the first bytes: skips a UTF-8 BOM, refuses UTF-16/UTF-32 by name.
fn sniff<R: BufRead>(r: &mut R) -> Result<(), FileError> {
    let head = r.fill_buf().map_err(|e| FileError::Io(e.to_string()))?;
    let named = |s: &str| Err(FileError::Encoding(s.to_string()));
    if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
        r.consume(3);
        return Ok(());
    }
    if head.starts_with(&[0x00, 0x00, 0xFE, 0xFF]) {
        return named("UTF-32 big-endian (byte order mark 00 00 FE FF)");
    }
    if head.starts_with(&[0xFF, 0xFE, 0x00, 0x00]) {
        return named("UTF-32 little-endian (byte order mark FF FE 00 00)");
    }
    if head.starts_with(&[0xFE, 0xFF]) {
        return named("UTF-16 big-endian (byte order mark FE FF)");
    }
    if head.starts_with(&[0xFF, 0xFE]) {
        return named("UTF-16 little-endian (byte order mark FF FE)");
    }
    // Without a BOM, UTF-16 shows as a zero byte in every other position of the first
    // characters; a lone NUL after `[` is just a malformed UTF-8 file.
    if head.len() >= 4 && head[0] == 0 && head[2] == 0 && head[1] != 0 && head[3] != 0 {
        return named("UTF-16 big-endian (no byte order mark)");
    }
    if head.len() >= 4 && head[1] == 0 && head[3] == 0 && head[0] != 0 && head[2] != 0 {
        return named("UTF-16 little-endian (no byte order mark)");
    }
    Ok(())
}

/// True when the reader holds nothing but whitespace (and perhaps a UTF-8 BOM). Streams.
pub fn is_blank<R: Read>(r: R) -> io::Result<bool> {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut first = true;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(true);
        }
        let mut skip = 0;
        if first && buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            skip = 3;
        }
        first = false;
        if !buf[skip..].iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
        let n = buf.len();
        r.consume(n);
    }
}

/// What the element callback can answer: go on, or stop the file with an error of the caller's.
pub type Step<E> = Result<(), E>;

/// Why streaming stopped early.
#[derive(Debug)]
pub enum StreamError<E> {
    File(FileError),
    /// The callback's own error (a store failure, say), passed through untouched.
    Callback(E),
}

struct ArrayVisitor<'a, F, E> {
    on_element: &'a mut F,
    pos: Rc<Position>,
    bounds: Bounds,
    failure: &'a mut Option<StreamError<E>>,
    /// The index of the first element.
    index: u64,
    /// The first element is a resume prefix's placeholder: read and dropped.
    synthetic: bool,
}

impl<'de, F, E> Visitor<'de> for ArrayVisitor<'_, F, E>
where
    F: FnMut(u64, Value) -> Step<E>,
{
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut index = self.index;
        if self.synthetic {
            seq.next_element::<de::IgnoredAny>()?;
        }
        loop {
            self.pos.element_start.set(self.pos.consumed.get());
            self.pos.element.set(index);
            self.pos.in_element.set(true);
            let next = seq.next_element::<Value>()?;
            self.pos.in_element.set(false);
            let Some(element) = next else { break };
            if index >= self.bounds.max_records {
                *self.failure = Some(StreamError::File(FileError::TooManyRecords {
                    limit: self.bounds.max_records,
                }));
                return Err(de::Error::custom("stopped"));
            }
            if let Err(e) = (self.on_element)(index, element) {
                *self.failure = Some(StreamError::Callback(e));
                return Err(de::Error::custom("stopped"));
            }
            index += 1;
        }
        Ok(index)
    }
}

impl<'de, F, E> DeserializeSeed<'de> for ArrayVisitor<'_, F, E>
where
    F: FnMut(u64, Value) -> Step<E>,
{
    type Value = u64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_seq(self)
    }
}

fn describe(category: serde_json::error::Category, text: String) -> FileError {
    use serde_json::error::Category;
    match category {
        Category::Eof => FileError::Truncated(text),
        Category::Io => FileError::Io(text),
        // serde_json gives these no code of their own: its message is all there is.
        Category::Syntax if text.starts_with("invalid unicode code point") => {
            FileError::Malformed(format!("{text} (the file must be UTF-8)"))
        }
        // Elements are read by our own visitor, which refuses nothing: a type error can only
        // be the top level's (a number out of range is refused with a message of its own).
        Category::Data if text.starts_with("invalid type") => {
            FileError::Malformed(format!("the top level is not an array ({text})"))
        }
        _ => FileError::Malformed(text),
    }
}

/// Where the streaming parser (`stream_resumed`) takes over from the fast path: the file's bytes
/// from a boundary on, after a short `prefix` that puts serde_json in the state the boundary is
/// in (inside the array, before its first element or after an element of the same kind).
struct Resume {
    /// Valid JSON without a newline: nothing, `[`, or `[` and a discarded `synthetic` element.
    prefix: &'static [u8],
    synthetic: bool,
    /// The index of the first element after the boundary.
    index: u64,
    /// Line (from 1) and column (bytes since the line's start, as serde_json counts them) of the
    /// boundary in the file, after any BOM.
    line: u64,
    column: u64,
    /// Bytes of the file (after any BOM) before the boundary, for progress.
    offset: u64,
}

impl Resume {
    #[cfg(test)]
    const START: Resume = Resume {
        prefix: b"",
        synthetic: false,
        index: 0,
        line: 1,
        column: 0,
        offset: 0,
    };

    /// serde_json's message for `e` with its position moved from the prefixed stream to the file.
    fn message(&self, e: &serde_json::Error) -> String {
        let text = e.to_string();
        if e.line() == 0 {
            return text;
        }
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let Some(code) = text.strip_suffix(&suffix) else {
            return text;
        };
        let (line, column) = if e.line() == 1 {
            let after_prefix = (e.column() as u64).saturating_sub(self.prefix.len() as u64);
            (self.line, self.column + after_prefix)
        } else {
            (self.line + e.line() as u64 - 1, e.column() as u64)
        };
        format!("{code} at line {line} column {column}")
    }
}

/// The bytes the fast path buffered (after a resume prefix), then an I/O error it met reading
/// ahead (if any), then the rest of the file.
struct Replay<R> {
    head: Vec<u8>,
    at: usize,
    pending: Option<io::Error>,
    tail: R,
}

impl<R: Read> Read for Replay<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        self.tail.read(buf)
    }
}

/// The streaming parser: serde_json reading `reader` byte by byte. It is the reference for every
/// outcome (values, errors and their positions, bounds): the fast path hands over to it, at a
/// boundary described by `resume`, whenever it meets anything it does not accept with certainty.
fn stream_resumed<R, F, E>(
    reader: R,
    resume: &Resume,
    bounds: Bounds,
    progress: Option<&dyn Fn(u64)>,
    on_element: &mut F,
) -> Result<u64, StreamError<E>>
where
    R: Read,
    F: FnMut(u64, Value) -> Step<E>,
{
    let pos = Rc::new(Position::default());
    let bounded = BoundedReader::new(
        io::Read::chain(resume.prefix, reader),
        pos.clone(),
        bounds.max_record_bytes,
    );
    let mut failure: Option<StreamError<E>> = None;
    let mut last_report = 0u64;
    let mut wrapped = |i: u64, v: Value| {
        if let Some(p) = progress {
            let c = pos.consumed.get();
            if c - last_report > (1 << 20) {
                last_report = c;
                p(resume.offset + c);
            }
        }
        on_element(i, v)
    };
    let mut de = serde_json::Deserializer::from_reader(bounded);
    let visitor = ArrayVisitor {
        on_element: &mut wrapped,
        pos: pos.clone(),
        bounds,
        failure: &mut failure,
        index: resume.index,
        synthetic: resume.synthetic,
    };
    let result = visitor
        .deserialize(&mut de)
        .and_then(|n| de.end().map(|_| n));
    match result {
        Ok(n) => Ok(n),
        Err(e) => {
            if let Some(f) = failure {
                return Err(f);
            }
            if pos.too_large.get() {
                return Err(StreamError::File(FileError::RecordTooLarge {
                    index: pos.element.get(),
                    limit: bounds.max_record_bytes,
                }));
            }
            Err(StreamError::File(describe(
                e.classify(),
                resume.message(&e),
            )))
        }
    }
}

/// How much the fast path reads at a time.
const CHUNK: usize = 256 * 1024;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// Line and column (as serde_json counts them) after `bytes`, from `(line, column)`.
fn advance((line, column): (u64, u64), bytes: &[u8]) -> (u64, u64) {
    match memchr::memrchr(b'\n', bytes) {
        None => (line, column + bytes.len() as u64),
        Some(last) => {
            let lines = memchr::memchr_iter(b'\n', &bytes[..=last]).count() as u64;
            (line + lines, (bytes.len() - last - 1) as u64)
        }
    }
}

/// True when `v` nests arrays and objects more than `n` deep.
fn deeper_than(v: &Value, n: usize) -> bool {
    match v {
        Value::Array(items) => n == 0 || items.iter().any(|x| deeper_than(x, n - 1)),
        Value::Object(members) => n == 0 || members.iter().any(|(_, x)| deeper_than(x, n - 1)),
        _ => false,
    }
}

/// Where the fast path is in the file.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Before the opening `[`.
    Before,
    /// After `[`, before the first element.
    First,
    /// After an element (`number`: it was a number, whose end serde_json finds by a peek).
    After { number: bool },
    /// After the closing `]`.
    Done,
}

/// The fast path's window on the file: `buf` holds the bytes from the last boundary on.
struct Window<R> {
    input: R,
    /// Storage; `buf[..len]` holds bytes of the file.
    buf: Vec<u8>,
    len: usize,
    chunk: usize,
    /// Line and column of `buf[0]`, and the bytes of the file before it.
    at: (u64, u64),
    offset: u64,
    eof: bool,
    pending: Option<io::Error>,
    /// `buf[..valid]` is valid UTF-8 ending on a character boundary: checked once per read, so
    /// that an element inside it is parsed as a `str` (serde_json's slice reader checks each
    /// string again: 7% of a loans file's parser thread, bench/README "Issue 10, fifth round").
    valid: usize,
}

impl<R: Read> Window<R> {
    /// Drops the bytes before `b` and reads more. False when there is nothing more to read (the
    /// end of the file, or an I/O error kept for the streaming parser to meet in its turn).
    /// The caller's boundary is at 0 afterwards.
    fn fill(&mut self, b: usize) -> bool {
        self.at = advance(self.at, &self.buf[..b]);
        self.offset += b as u64;
        self.buf.copy_within(b..self.len, 0);
        self.len -= b;
        // `b` is a boundary between elements, inside what was checked; past it (never expected),
        // nothing is taken as checked and the check starts over at 0.
        self.valid = self.valid.saturating_sub(b);
        if self.eof {
            return false;
        }
        // The storage grows only while one element is larger than what it holds (up to the
        // record bound and a chunk): no zeroing on every read.
        if self.buf.len() - self.len < self.chunk {
            self.buf.resize(self.len + self.chunk, 0);
        }
        let n = loop {
            match self.input.read(&mut self.buf[self.len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.pending = Some(e);
                    break 0;
                }
            }
        };
        self.len += n;
        if n == 0 {
            self.eof = true;
        }
        self.valid += match std::str::from_utf8(&self.buf[self.valid..self.len]) {
            Ok(s) => s.len(),
            // Up to an invalid byte, or a character cut by the end of the read.
            Err(e) => e.valid_up_to(),
        };
        n > 0
    }

    /// The element at `i` (first byte, not whitespace) parsed from the checked text when it ends
    /// there, else from the bytes as before: the same value and end either way (serde_json's
    /// readers differ only in checking UTF-8), with `valid` only sparing the checks. The end is
    /// `i` plus the returned offset.
    fn parse_at(&self, i: usize) -> Option<(Result<Value, serde_json::Error>, usize)> {
        // Not a UTF-8 continuation byte: `i` starts a character (as `str::is_char_boundary`).
        if i < self.valid && (self.buf[i] as i8) >= -0x40 {
            // SAFETY: `buf[..valid]` was checked by `str::from_utf8` and `i` starts a character
            // in it, so `buf[i..valid]` is valid UTF-8 too.
            let text = unsafe { std::str::from_utf8_unchecked(&self.buf[i..self.valid]) };
            let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            if let Some(Ok(v)) = values.next() {
                let e = values.byte_offset();
                // Ending right at `valid` (a number, say) it might go on in the unchecked bytes.
                if i + e < self.valid || self.valid == self.len {
                    return Some((Ok(v), e));
                }
            }
        }
        let mut values = serde_json::Deserializer::from_slice(&self.buf[i..self.len]).into_iter();
        let v = values.next()?;
        Some((v, values.byte_offset()))
    }

    /// Hands the rest of the file, from buffer index `b` (a boundary at `stage`), to the
    /// streaming parser.
    fn resume<F, E>(
        self,
        b: usize,
        stage: Stage,
        index: u64,
        bounds: Bounds,
        progress: Option<&dyn Fn(u64)>,
        on_element: &mut F,
    ) -> Result<u64, StreamError<E>>
    where
        F: FnMut(u64, Value) -> Step<E>,
    {
        let (prefix, synthetic): (&'static [u8], bool) = match stage {
            Stage::Before => (b"", false),
            Stage::First => (b"[", false),
            // A number that takes neither a fraction nor an exponent after it: serde_json peeks
            // the next byte as it did after the real number, and stops there.
            Stage::After { number: true } => (b"[0e0", true),
            Stage::After { number: false } => (b"[[]", true),
            Stage::Done => (b"[]", false),
        };
        let (line, column) = advance(self.at, &self.buf[..b]);
        let resume = Resume {
            prefix,
            synthetic,
            index,
            line,
            column,
            offset: self.offset + b as u64,
        };
        let mut head = self.buf;
        head.truncate(self.len);
        head.drain(..b);
        let replay = Replay {
            head,
            at: 0,
            pending: self.pending,
            tail: self.input,
        };
        stream_resumed(replay, &resume, bounds, progress, on_element)
    }
}

/// Streams the elements of the top-level array in `reader`, calling `on_element(index, value)`
/// for each. Returns the number of elements. Memory is bounded by one element.
///
/// The fast path reads the file in chunks and parses each element from a slice; at the first
/// thing it does not accept with certainty (a malformed or over-large element, anything but `,`
/// or `]` between elements, a deep nesting, an I/O error) it hands the rest of the file to the
/// streaming parser, which gives the outcome it would have given reading the file from the start.
pub fn stream_array<R, F, E>(
    reader: R,
    bounds: Bounds,
    progress: Option<&dyn Fn(u64)>,
    on_element: F,
) -> Result<u64, StreamError<E>>
where
    R: Read,
    F: FnMut(u64, Value) -> Step<E>,
{
    stream_chunked(reader, bounds, progress, on_element, CHUNK)
}

fn stream_chunked<R, F, E>(
    reader: R,
    bounds: Bounds,
    progress: Option<&dyn Fn(u64)>,
    mut on_element: F,
    chunk: usize,
) -> Result<u64, StreamError<E>>
where
    R: Read,
    F: FnMut(u64, Value) -> Step<E>,
{
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    sniff(&mut buffered).map_err(StreamError::File)?;
    let mut w = Window {
        input: buffered,
        buf: Vec::new(),
        len: 0,
        chunk,
        at: (1, 0),
        offset: 0,
        eof: false,
        pending: None,
        valid: 0,
    };
    let max_record = bounds.max_record_bytes;
    let mut stage = Stage::Before;
    let mut index = 0u64;
    let mut b = 0usize;
    let mut last_report = 0u64;
    // Each turn either moves on (an element, `[`, `]`), reads more and retries from `b`, hands
    // over to the streaming parser, or ends.
    loop {
        let len = w.len;
        let mut i = b;
        while i < len && is_ws(w.buf[i]) {
            i += 1;
        }
        match stage {
            Stage::Before | Stage::Done => {
                // Whitespace outside the array is not part of any record: drop it as it comes.
                b = i;
                if i == len {
                    let got = w.fill(b);
                    b = 0;
                    if got {
                        continue;
                    }
                    if stage == Stage::Done && w.pending.is_none() {
                        return Ok(index);
                    }
                    return w.resume(b, stage, index, bounds, progress, &mut on_element);
                }
                if stage == Stage::Before && w.buf[i] == b'[' {
                    b = i + 1;
                    stage = Stage::First;
                    continue;
                }
                return w.resume(b, stage, index, bounds, progress, &mut on_element);
            }
            Stage::First | Stage::After { .. } => {}
        }
        // Inside the array: `i` is at the first byte after whitespace.
        let mut more = i == len;
        let mut close = None;
        if !more {
            let c = w.buf[i];
            if c == b']' {
                close = Some(i);
            } else if stage != Stage::First {
                if c != b',' {
                    return w.resume(b, stage, index, bounds, progress, &mut on_element);
                }
                i += 1;
                while i < len && is_ws(w.buf[i]) {
                    i += 1;
                }
                more = i == len;
                if !more && w.buf[i] == b']' {
                    // A trailing comma: the streaming parser words it.
                    return w.resume(b, stage, index, bounds, progress, &mut on_element);
                }
            }
        }
        if let Some(r) = close {
            if (r + 1 - b) as u64 > max_record {
                return w.resume(b, stage, index, bounds, progress, &mut on_element);
            }
            b = r + 1;
            stage = Stage::Done;
            continue;
        }
        if !more {
            let first = w.buf[i];
            match w.parse_at(i) {
                Some((Ok(v), offset)) => {
                    let e = i + offset;
                    if e == len && !w.eof {
                        more = true;
                    } else if (e + 1 - b) as u64 > max_record
                        // 100 levels take at least 200 bytes of brackets.
                        || (e - i >= 200 && deeper_than(&v, 100))
                    {
                        return w.resume(b, stage, index, bounds, progress, &mut on_element);
                    } else {
                        if index >= bounds.max_records {
                            return Err(StreamError::File(FileError::TooManyRecords {
                                limit: bounds.max_records,
                            }));
                        }
                        if let Some(p) = progress {
                            let c = w.offset + e as u64;
                            if c - last_report > (1 << 20) {
                                last_report = c;
                                p(c);
                            }
                        }
                        on_element(index, v).map_err(StreamError::Callback)?;
                        index += 1;
                        b = e;
                        stage = Stage::After {
                            number: !matches!(first, b'{' | b'[' | b'"' | b't' | b'f' | b'n'),
                        };
                        continue;
                    }
                }
                Some((Err(err), _)) if err.is_eof() && !w.eof => more = true,
                _ => return w.resume(b, stage, index, bounds, progress, &mut on_element),
            }
        }
        // The element (or what follows the last one) goes on past the buffer: read more,
        // unless it is already larger than a record may be.
        debug_assert!(more);
        if (len - b) as u64 > max_record {
            return w.resume(b, stage, index, bounds, progress, &mut on_element);
        }
        let got = w.fill(b);
        b = 0;
        if !got {
            return w.resume(b, stage, index, bounds, progress, &mut on_element);
        }
    }
}

/// The streaming parser alone, from the start of the file: the reference the fast path must
/// agree with (tests).
#[cfg(test)]
fn stream_reference<R, F, E>(
    reader: R,
    bounds: Bounds,
    mut on_element: F,
) -> Result<u64, StreamError<E>>
where
    R: Read,
    F: FnMut(u64, Value) -> Step<E>,
{
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    sniff(&mut buffered).map_err(StreamError::File)?;
    stream_resumed(buffered, &Resume::START, bounds, None, &mut on_element)
}

/// The `RecordReader` of a JSON file: a top-level array of objects.
pub struct JsonReader<R> {
    reader: Option<R>,
    bounds: Bounds,
    progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl<R: Read + Send> JsonReader<R> {
    pub fn new(reader: R, bounds: Bounds) -> Self {
        JsonReader {
            reader: Some(reader),
            bounds,
            progress: None,
        }
    }
    /// Reports the bytes read so far, about every MiB.
    pub fn with_progress(mut self, f: Box<dyn Fn(u64) + Send + Sync>) -> Self {
        self.progress = Some(f);
        self
    }
}

impl<R: Read + Send> RecordReader for JsonReader<R> {
    fn read(&mut self, sink: &mut dyn FnMut(u64, Value) -> Flow) -> Result<u64, ReadError> {
        let Some(reader) = self.reader.take() else {
            return Err(ReadError::File(FileError::Io(
                "the input was read already".into(),
            )));
        };
        let progress = self.progress.as_deref().map(|p| p as &dyn Fn(u64));
        stream_array::<_, _, Stopped>(reader, self.bounds, progress, sink).map_err(|e| match e {
            StreamError::File(f) => ReadError::File(f),
            StreamError::Callback(Stopped) => ReadError::Stopped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        max_record_bytes: 1 << 20,
        max_records: 1000,
    };

    fn run(input: &[u8]) -> Result<Vec<Value>, FileError> {
        let mut out = Vec::new();
        stream_array::<_, _, ()>(input, B, None, |_, v| {
            out.push(v);
            Ok(())
        })
        .map_err(|e| match e {
            StreamError::File(f) => f,
            StreamError::Callback(()) => unreachable!(),
        })?;
        Ok(out)
    }

    #[test]
    fn streams_elements_and_keeps_repeats() {
        let v = run(br#"[{"a":1,"A":2}, 3, "x"]"#).unwrap();
        assert_eq!(v[1], Value::Number(3.into()));
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            Value::Object(vec![
                ("a".into(), Value::Number(1.into())),
                ("A".into(), Value::Number(2.into()))
            ])
        );
    }

    #[test]
    fn bom_is_accepted_and_utf16_named() {
        assert_eq!(run(b"\xEF\xBB\xBF[1]").unwrap().len(), 1);
        let e = run(b"\xFF\xFE[\x00]\x00").unwrap_err();
        assert_eq!(
            e.to_string(),
            "The file is UTF-16 little-endian (byte order mark FF FE); pickup files must be UTF-8 JSON."
        );
        let e = run(b"[\x00]\x00").unwrap_err();
        assert!(matches!(e, FileError::Encoding(_)));
        // A NUL byte after `[` in a UTF-8 file is a syntax error, not UTF-16.
        let e = run(b"[\x00{}]").unwrap_err();
        assert!(matches!(e, FileError::Malformed(_)), "{e}");
    }

    #[test]
    fn errors_have_positions() {
        let e = run(b"[1,\n 2").unwrap_err();
        assert!(matches!(e, FileError::Truncated(_)), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = run(b"[1] x").unwrap_err();
        assert!(e.to_string().contains("trailing characters"), "{e}");
        let e = run(b"{\"a\":1}").unwrap_err();
        assert!(e.to_string().contains("top level is not an array"), "{e}");
        let e = run(b"[\"\xff\"]").unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
        let e = run(deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }

    #[test]
    fn record_bound() {
        let big = format!("[1, \"{}\"]", "x".repeat(3000));
        let b = Bounds {
            max_record_bytes: 1024,
            max_records: 10,
        };
        let e = stream_array::<_, _, ()>(big.as_bytes(), b, None, |_, _| Ok(())).unwrap_err();
        match e {
            StreamError::File(f) => assert_eq!(
                f,
                FileError::RecordTooLarge {
                    index: 1,
                    limit: 1024
                }
            ),
            _ => panic!(),
        }
    }

    /// Hands out `data` `step` bytes at a time, failing at byte `fail_at` if set.
    struct Trickle<'a> {
        data: &'a [u8],
        at: usize,
        step: usize,
        fail_at: Option<usize>,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut end = (self.at + self.step.min(buf.len())).min(self.data.len());
            if let Some(f) = self.fail_at {
                if self.at >= f {
                    return Err(io::Error::other("disk on fire"));
                }
                end = end.min(f);
            }
            let n = end - self.at;
            buf[..n].copy_from_slice(&self.data[self.at..end]);
            self.at = end;
            Ok(n)
        }
    }

    /// What a reader makes of `input`: the elements it passed on, then how it ended.
    type Outcome = (Vec<(u64, Value)>, String);

    /// `chunk`: the fast path's read size, or `None` for the streaming parser alone.
    fn outcome(
        input: &[u8],
        b: Bounds,
        chunk: Option<usize>,
        step: usize,
        fail_at: Option<usize>,
        stop_at: Option<u64>,
    ) -> Outcome {
        let mut seen = Vec::new();
        let reader = Trickle {
            data: input,
            at: 0,
            step,
            fail_at,
        };
        let sink = |i: u64, v: Value| {
            if Some(i) == stop_at {
                return Err(());
            }
            seen.push((i, v));
            Ok(())
        };
        let end = match chunk {
            Some(c) => stream_chunked(reader, b, None, sink, c),
            None => stream_reference(reader, b, sink),
        };
        let end = match end {
            Ok(n) => format!("ok {n}"),
            Err(StreamError::File(f)) => format!("{f:?}: {f}"),
            Err(StreamError::Callback(())) => "stopped".into(),
        };
        (seen, end)
    }

    /// Every way of reading `input` agrees with the streaming parser alone.
    fn agree(input: &[u8], b: Bounds, chunks: &[usize], steps: &[usize]) {
        let fails = [None, Some(input.len() / 2), Some(input.len())];
        for fail_at in fails {
            for stop_at in [None, Some(1)] {
                for &step in steps {
                    // The same step for both: the encoding sniff looks at the first read only.
                    let want = outcome(input, b, None, step, fail_at, stop_at);
                    for &chunk in chunks {
                        let got = outcome(input, b, Some(chunk), step, fail_at, stop_at);
                        assert_eq!(
                            got,
                            want,
                            "input {:?}, bounds {b:?}, chunk {chunk}, step {step}, fail at {fail_at:?}, stop at {stop_at:?}",
                            String::from_utf8_lossy(input)
                        );
                    }
                }
            }
        }
    }

    const TIGHT: Bounds = Bounds {
        max_record_bytes: 12,
        max_records: 3,
    };

    #[test]
    fn fast_path_agrees_on_a_table() {
        let deep = |n: usize| format!("[{}{}]", "[".repeat(n), "]".repeat(n)).into_bytes();
        let mut table: Vec<Vec<u8>> = [
            &b""[..],
            b"   ",
            b"\n\n",
            b"[",
            b"[ ",
            b"[]",
            b" [ ] ",
            b"[1",
            b"[1,",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"[1}",
            b"{}",
            b"{\"a\":1}",
            b"1",
            b"\"x\"",
            b"null",
            b"[1] x",
            b"[1]]",
            b"[] []",
            b"[]  \n  ,",
            b"[1.5.3]",
            b"[1e5e3]",
            b"[1e5.3]",
            b"[1.]",
            b"[-]",
            b"[01]",
            b"[1-2]",
            b"[1x]",
            b"[1\"a\"]",
            b"[tru]",
            b"[truex]",
            b"[true false]",
            b"[nul",
            b"[\"abc",
            b"[\"a\\\"]",
            b"[\"\\u12\"]",
            b"[\"\\ud800\"]",
            b"[\"\\ud800\\u0041\"]",
            b"[\"\xff\"]",
            b"[\"\xc3\"]",
            b"[\"\xc3\xa9\"]",
            b"[\"\x01\"]",
            b"[{\"a\" 1}]",
            b"[{\"a\":1,}]",
            b"[{\"a\":1 \"b\":2}]",
            b"[{1:2}]",
            b"[[1,2],[3,]]",
            b"[\n1,\n2\n,\n]",
            b"[\n {\"a\":\n  \"b\"\n },\n {\"a\": x}]",
            b"[1e400]",
            b"[-1e400]",
            b"[18446744073709551616]",
            b"[-9223372036854775809]",
            b"[1.7976931348623157e308]",
            b"[0.1, 1E2, -0, 1e-7]",
            b"\xEF\xBB\xBF[1,\n2 x]",
            b"\xEF\xBB\xBF[1,2]",
            b"[\x00{}]",
            b"\xFF\xFE[\x00]\x00",
            b"[\x00]\x00",
            b"\t[\t1\t,\r\n2\t]\t",
            b"[1,\x0c2]",
            b"[{\"a\":1,\"A\":2,\"a\":3}]",
            b"[\"\\\\\", 1]",
            b"[\"]\", 1]",
            b"[[\"]\"],{\"}\":\"{\"}]",
            b"[1,2,3,4]",
            b"[1,2,3,4 x",
            b"[1,2,3]",
            b"[1,2,3] ",
            b"[{},{},{},{}]",
            b"[true,false,null,true]",
            b"[\"12345678901\", \"123456789012\"]",
            b"[1,           2]",
            b"[           ]",
            b"[1]                   x",
            b"[1,2]\n\n   \n  y",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect();
        for n in [1, 99, 100, 101, 125, 126, 127, 128, 200] {
            table.push(deep(n));
        }
        // Elements around the record bound, of each kind.
        for k in 0..16 {
            let x = "7".repeat(k);
            table.push(format!("[\"{x}\",1{x},[{x}1]]").into_bytes());
            table.push(format!("[1{x} , {{\"{x}\":true}}, 2]").into_bytes());
            table.push(format!("[{}1,{}true\n]", " ".repeat(k), "\n".repeat(k)).into_bytes());
        }
        let chunks = [1, 3, 13, 4096];
        for input in &table {
            for b in [B, TIGHT] {
                agree(input, b, &chunks, &[1, usize::MAX]);
            }
        }
    }

    #[test]
    fn fast_path_agrees_on_mutated_files() {
        let base: &[u8] = b"[ {\"Mode\":\"create\",\"ExternalId\":\"e1\",\"Amount\":12.5,\n  \"When\":\"2023-12-30\",\"List\":[\"a\",\"b\"],\"Nested\":{\"x\":[1,2,{\"y\":null}]},\n  \"Esc\":\"q\\\"\\\\\\u00e9\\n\xc3\xa9\"},\n  42, -0.5e3 ,true,false,null,\"s\",\r\n  {\"a\":1,\"a\":2}, [[]], {} ]\n";
        const ALPHABET: &[u8] = b"[]{},:\"\\ \n\t019etrufalsn.-+E\xff\xc3\x00x";
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let bounds = [
            B,
            TIGHT,
            Bounds {
                max_record_bytes: 60,
                max_records: 1000,
            },
        ];
        for round in 0..2000 {
            let mut doc = base.to_vec();
            for _ in 0..1 + next(3) {
                let at = next(doc.len() + 1);
                match next(4) {
                    0 if at < doc.len() => {
                        doc.remove(at);
                    }
                    1 if at < doc.len() => doc[at] = ALPHABET[next(ALPHABET.len())],
                    2 => {
                        let end = (at + next(12)).min(doc.len());
                        let piece = doc[at..end].to_vec();
                        doc.splice(at..at, piece);
                    }
                    _ => doc.insert(at, ALPHABET[next(ALPHABET.len())]),
                }
            }
            let b = bounds[round % bounds.len()];
            let chunk = [1, 2, 7, 31, 4096][next(5)];
            let step = [1, 5, usize::MAX][next(3)];
            agree(&doc, b, &[chunk], &[step]);
        }
    }

    #[test]
    fn blank() {
        assert!(is_blank(&b""[..]).unwrap());
        assert!(is_blank(&b" \n\t\r "[..]).unwrap());
        assert!(is_blank(&b"\xEF\xBB\xBF \n"[..]).unwrap());
        assert!(!is_blank(&b" []"[..]).unwrap());
    }
}
