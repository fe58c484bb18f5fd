//! JSON input: streams the elements of a top-level array from any reader, in constant memory.
//!
//! Owns: encoding detection (UTF-8 with or without BOM; UTF-16/32 refused by name), the blank
//! test, the streaming array visitor that builds `input::Value`s (serde_json's own `Value` would
//! silently keep the last of repeated names), the per-record and per-file bounds, and
//! `JsonReader`, the `RecordReader` of JSON files. File-level problems come back as `FileError`
//! with line and column.
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
        let mut v = Vec::new();
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
        let mut index: u64 = 0;
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

fn describe(e: serde_json::Error) -> FileError {
    use serde_json::error::Category;
    let text = e.to_string();
    match e.classify() {
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

/// Streams the elements of the top-level array in `reader`, calling `on_element(index, value)`
/// for each. Returns the number of elements. Memory is bounded by one element.
pub fn stream_array<R, F, E>(
    reader: R,
    bounds: Bounds,
    progress: Option<&dyn Fn(u64)>,
    mut on_element: F,
) -> Result<u64, StreamError<E>>
where
    R: Read,
    F: FnMut(u64, Value) -> Step<E>,
{
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    sniff(&mut buffered).map_err(StreamError::File)?;
    let pos = Rc::new(Position::default());
    let bounded = BoundedReader::new(buffered, pos.clone(), bounds.max_record_bytes);
    let mut failure: Option<StreamError<E>> = None;
    let mut last_report = 0u64;
    let mut wrapped = |i: u64, v: Value| {
        if let Some(p) = progress {
            let c = pos.consumed.get();
            if c - last_report > (1 << 20) {
                last_report = c;
                p(c);
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
            Err(StreamError::File(describe(e)))
        }
    }
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

    #[test]
    fn blank() {
        assert!(is_blank(&b""[..]).unwrap());
        assert!(is_blank(&b" \n\t\r "[..]).unwrap());
        assert!(is_blank(&b"\xEF\xBB\xBF \n"[..]).unwrap());
        assert!(!is_blank(&b" []"[..]).unwrap());
    }
}
