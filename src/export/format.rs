//! Streaming writers of one record type to JSON (one array), NDJSON and CSV.
//! It owns the column schema (leaf paths such as `usage.lifetime.cost_usd`
//! or `limits.windows.0.max_requests`), field selection, the JSON nesting
//! plan, CSV quoting and the byte count. It knows nothing of keys or
//! masking: rows arrive as values in schema order.
//!
//! Memory is constant in the number of rows: a row is written as it comes,
//! JSON nesting is planned once per export (a fixed prefix before each
//! value), and the only buffers are a fixed `BufWriter`, the CSV encoder's
//! fixed buffer, and scratch space for one value, dropped after a huge one.
//!
//! Text cells of CSV output are neutralised against formula injection
//! (`csv_safe.rs`); numbers, decimals and times are not (they cannot start
//! a formula, and `-5` must stay a number).

use super::csv_safe;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON array, one object per row (nested).
    Json,
    /// One JSON object per line (nested).
    Ndjson,
    /// A header row and one flat row per record, RFC 4180 quoting.
    Csv,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// One step of a column path: an object key or an array index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A leaf column: its path, and its flat name (segments joined by `.`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    path: Vec<Segment>,
    name: String,
}

impl Column {
    /// A column from explicit segments (keys that contain dots, such as
    /// model names, stay one segment).
    pub fn from_segments(path: Vec<Segment>) -> Column {
        let mut name = String::new();
        for (i, s) in path.iter().enumerate() {
            if i > 0 {
                name.push('.');
            }
            match s {
                Segment::Key(k) => name.push_str(k),
                Segment::Index(n) => {
                    let _ = write!(name, "{n}");
                }
            }
        }
        Column { path, name }
    }

    /// A column from a dotted name; all-digit segments are array indexes.
    pub fn parse(dotted: &str) -> Column {
        let path = dotted
            .split('.')
            .map(|s| match s.parse::<usize>() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Segment::Index(n),
                _ => Segment::Key(s.to_string()),
            })
            .collect();
        Column::from_segments(path)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &[Segment] {
        &self.path
    }
}

/// Schema and row errors, and I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("duplicate column {0:?}")]
    DuplicateColumn(String),
    #[error("empty column path")]
    EmptyPath,
    #[error("columns under {0:?} are not next to each other")]
    ScatteredGroup(String),
    #[error("{0:?} is both a value and a group of values")]
    LeafGroupClash(String),
    #[error("{0:?} mixes array indexes and object keys")]
    MixedContainer(String),
    #[error("row has {got} values, the schema has {want} columns")]
    RowWidth { got: usize, want: usize },
}

/// The ordered leaf columns of a record type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    columns: Vec<Column>,
}

impl Schema {
    /// Checks the columns can be written as nested JSON: unique, non-empty,
    /// no path both a leaf and a group, groups contiguous, each group all
    /// keys or all indexes.
    pub fn new(columns: Vec<Column>) -> Result<Schema, Error> {
        let schema = Schema { columns };
        let all: Vec<usize> = (0..schema.columns.len()).collect();
        JsonPlan::build(&schema, &all)?;
        Ok(schema)
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Indexes of the columns a field selection keeps, in schema order. A
    /// field names a column (`usage.lifetime.requests`) or a group of them
    /// (`usage`, `usage.lifetime`); a field that names nothing is an error.
    pub fn select<S: AsRef<str>>(&self, fields: &[S]) -> Result<Vec<usize>, Error> {
        let mut keep = vec![false; self.columns.len()];
        for field in fields {
            let field = field.as_ref().trim();
            let mut any = false;
            for (i, c) in self.columns.iter().enumerate() {
                let under = c
                    .name
                    .strip_prefix(field)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
                if under {
                    keep[i] = true;
                    any = true;
                }
            }
            if !any {
                return Err(Error::UnknownField(field.to_string()));
            }
        }
        Ok(keep
            .iter()
            .enumerate()
            .filter_map(|(i, k)| k.then_some(i))
            .collect())
    }
}

/// One cell of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    UInt(u64),
    Int(i64),
    /// Non-finite values are written as null (JSON) or empty (CSV).
    Float(f64),
    /// An exact decimal such as a USD amount: a JSON string (conventions:
    /// money is a decimal string), a bare CSV cell.
    Decimal(Cow<'a, str>),
    /// Free or identifying text: a JSON string, a neutralised CSV cell.
    Text(Cow<'a, str>),
    /// RFC 3339 in UTC.
    Time(DateTime<Utc>),
    /// A JSON array; in CSV the array's JSON text (`["a","b"]`), which keeps
    /// items with separators in them unambiguous.
    List(Vec<Value<'a>>),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Text(Cow::Borrowed(s))
    }
}

impl<'a> From<Cow<'a, str>> for Value<'a> {
    fn from(s: Cow<'a, str>) -> Self {
        Value::Text(s)
    }
}

impl From<u64> for Value<'_> {
    fn from(n: u64) -> Self {
        Value::UInt(n)
    }
}

impl From<DateTime<Utc>> for Value<'_> {
    fn from(t: DateTime<Utc>) -> Self {
        Value::Time(t)
    }
}

/// A record that can be written: one value per schema column, in order.
pub trait ExportRow {
    fn values<'a>(&'a self, out: &mut Vec<Value<'a>>);
}

/// How to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    pub format: Format,
    /// Start CSV output with a UTF-8 byte order mark (Excel needs it to
    /// read UTF-8). Ignored for JSON formats.
    pub csv_bom: bool,
    /// Neutralise CSV text cells against formula injection (default on).
    pub csv_neutralize: bool,
    /// Keep only these fields (column or group names); `None`: all.
    pub fields: Option<Vec<String>>,
}

impl WriterOptions {
    pub fn new(format: Format) -> Self {
        WriterOptions {
            format,
            csv_bom: false,
            csv_neutralize: true,
            fields: None,
        }
    }
}

/// Counts what passes through.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Passes writes through but not `flush`: the CSV writer is flushed after
/// every row so its bytes reach the counter, and that must not become a
/// system call per row on the `BufWriter` below.
struct Quiet<W>(W);

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

type Out<W> = Counting<BufWriter<W>>;

/// Where rows go: straight to the output (JSON), or through the CSV
/// encoder, whose buffer is fixed (8 KiB; longer fields pass through it).
enum Sink<W: Write> {
    Json(Out<W>),
    Csv(Box<csv::Writer<Quiet<Out<W>>>>),
}

/// Scratch strings larger than this after a row are dropped, so one huge
/// value does not pin its memory for the rest of the export.
const SCRATCH_KEEP: usize = 64 * 1024;

/// The output buffer size.
const OUT_BUFFER: usize = 64 * 1024;

/// Writes rows of one schema to `W`, streaming.
pub struct Writer<W: Write> {
    sink: Sink<W>,
    format: Format,
    want: usize,
    selected: Vec<usize>,
    names: Vec<String>,
    json: JsonPlan,
    neutralize: bool,
    rows: u64,
    scratch: String,
    list_scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Starts an export: the CSV header (and BOM), or the JSON `[`.
    pub fn new(out: W, schema: &Schema, options: &WriterOptions) -> Result<Writer<W>, Error> {
        let selected = match &options.fields {
            Some(fields) => schema.select(fields)?,
            None => (0..schema.len()).collect(),
        };
        let json = JsonPlan::build(schema, &selected)?;
        let names: Vec<String> = selected
            .iter()
            .filter_map(|&i| schema.columns.get(i).map(|c| c.name.clone()))
            .collect();
        let mut out = Counting {
            inner: BufWriter::with_capacity(OUT_BUFFER, out),
            bytes: 0,
        };
        let sink = match options.format {
            Format::Json => {
                out.write_all(b"[")?;
                Sink::Json(out)
            }
            Format::Ndjson => Sink::Json(out),
            Format::Csv => {
                if options.csv_bom {
                    out.write_all("\u{feff}".as_bytes())?;
                }
                let mut csv = csv::WriterBuilder::new()
                    .has_headers(false)
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(Quiet(out));
                csv.write_record(&names)?;
                csv.flush()?;
                Sink::Csv(Box::new(csv))
            }
        };
        Ok(Writer {
            sink,
            format: options.format,
            want: schema.len(),
            selected,
            names,
            json,
            neutralize: options.csv_neutralize,
            rows: 0,
            scratch: String::new(),
            list_scratch: Vec::new(),
        })
    }

    /// Names of the written columns, in order (the CSV header).
    pub fn column_names(&self) -> &[String] {
        &self.names
    }

    /// Writes one row: `values` has one value per schema column (selection
    /// is applied here).
    pub fn write_row(&mut self, values: &[Value<'_>]) -> Result<(), Error> {
        if values.len() != self.want {
            return Err(Error::RowWidth {
                got: values.len(),
                want: self.want,
            });
        }
        let first = self.rows == 0;
        match &mut self.sink {
            Sink::Json(out) => {
                if self.format == Format::Json {
                    out.write_all(if first { b"\n" } else { b",\n" })?;
                }
                write_json_object(out, &self.json, &self.selected, values)?;
                if self.format == Format::Ndjson {
                    out.write_all(b"\n")?;
                }
            }
            Sink::Csv(csv) => {
                write_csv_row(
                    csv,
                    &self.selected,
                    values,
                    self.neutralize,
                    &mut self.scratch,
                    &mut self.list_scratch,
                )?;
                // Into the counter (a no-op flush below it, see `Quiet`).
                csv.flush()?;
            }
        }
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = String::new();
        }
        if self.list_scratch.capacity() > SCRATCH_KEEP {
            self.list_scratch = Vec::new();
        }
        self.rows += 1;
        Ok(())
    }

    /// Writes a record through [`ExportRow`].
    pub fn write<R: ExportRow + ?Sized>(&mut self, row: &R) -> Result<(), Error> {
        let mut values = Vec::with_capacity(self.want);
        row.values(&mut values);
        self.write_row(&values)
    }

    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Bytes handed to the output so far (exact: buffering included).
    pub fn bytes_written(&self) -> u64 {
        match &self.sink {
            Sink::Json(out) => out.bytes,
            Sink::Csv(csv) => csv.get_ref().0.bytes,
        }
    }

    /// Capacity of the writer's own growable buffers (scratch space for one
    /// value), for tests of constant memory. The output buffer and the CSV
    /// encoder's buffer are fixed-size and not counted.
    pub fn buffer_capacity(&self) -> usize {
        self.scratch.capacity() + self.list_scratch.capacity()
    }

    /// Ends the document (JSON `]`), flushes, and gives the output back.
    pub fn finish(self) -> Result<W, Error> {
        let mut out = match self.sink {
            Sink::Json(mut out) => {
                if self.format == Format::Json {
                    out.write_all(if self.rows == 0 { b"]\n" } else { b"\n]\n" })?;
                }
                out
            }
            Sink::Csv(csv) => csv.into_inner().map_err(|e| Error::Io(e.into_error()))?.0,
        };
        out.flush()?;
        out.inner
            .into_inner()
            .map_err(|e| Error::Io(e.into_error()))
    }
}

fn write_json_object<W: Write>(
    out: &mut W,
    plan: &JsonPlan,
    selected: &[usize],
    values: &[Value<'_>],
) -> Result<(), Error> {
    for (prefix, &i) in plan.prefixes.iter().zip(selected) {
        out.write_all(prefix.as_bytes())?;
        write_json_value(out, values.get(i).unwrap_or(&Value::Null))?;
    }
    out.write_all(plan.suffix.as_bytes())?;
    Ok(())
}

fn write_csv_row<W: Write>(
    csv: &mut csv::Writer<W>,
    selected: &[usize],
    values: &[Value<'_>],
    neutralize: bool,
    scratch: &mut String,
    list_scratch: &mut Vec<u8>,
) -> Result<(), Error> {
    for &i in selected {
        let v = values.get(i).unwrap_or(&Value::Null);
        scratch.clear();
        match v {
            Value::Null => csv.write_field(b"")?,
            Value::Bool(b) => csv.write_field(if *b { "true" } else { "false" })?,
            Value::UInt(n) => {
                let _ = write!(scratch, "{n}");
                csv.write_field(&*scratch)?;
            }
            Value::Int(n) => {
                let _ = write!(scratch, "{n}");
                csv.write_field(&*scratch)?;
            }
            Value::Float(f) => {
                if f.is_finite() {
                    let _ = write!(scratch, "{f}");
                }
                csv.write_field(&*scratch)?;
            }
            Value::Decimal(d) => csv.write_field(d.as_bytes())?,
            Value::Text(t) => {
                if neutralize {
                    csv.write_field(csv_safe::neutralize(t).as_bytes())?;
                } else {
                    csv.write_field(t.as_bytes())?;
                }
            }
            Value::Time(t) => {
                scratch.push_str(&rfc3339(t));
                csv.write_field(&*scratch)?;
            }
            Value::List(_) => {
                list_scratch.clear();
                write_json_value(list_scratch, v)?;
                csv.write_field(&*list_scratch)?;
            }
        }
    }
    csv.write_record(std::iter::empty::<&[u8]>())?;
    Ok(())
}

/// RFC 3339 in UTC with a `Z`, fractional seconds only when there are some.
fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn write_json_value<W: Write>(out: &mut W, v: &Value<'_>) -> Result<(), Error> {
    match v {
        Value::Null => out.write_all(b"null")?,
        Value::Bool(b) => out.write_all(if *b { b"true" } else { b"false" })?,
        Value::UInt(n) => serde_json::to_writer(&mut *out, n).map_err(io_error)?,
        Value::Int(n) => serde_json::to_writer(&mut *out, n).map_err(io_error)?,
        // serde_json writes non-finite floats as null.
        Value::Float(f) => serde_json::to_writer(&mut *out, f).map_err(io_error)?,
        Value::Decimal(s) | Value::Text(s) => {
            serde_json::to_writer(&mut *out, &**s).map_err(io_error)?;
        }
        Value::Time(t) => serde_json::to_writer(&mut *out, &rfc3339(t)).map_err(io_error)?,
        Value::List(items) => {
            out.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json_value(out, item)?;
            }
            out.write_all(b"]")?;
        }
    }
    Ok(())
}

fn io_error(e: serde_json::Error) -> Error {
    Error::Io(std::io::Error::other(e))
}

/// The JSON text written before each selected value, and after the last,
/// so a row is `prefix₀ value₀ prefix₁ value₁ … suffix`: nesting is planned
/// once, not per row.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JsonPlan {
    prefixes: Vec<String>,
    suffix: String,
}

impl JsonPlan {
    fn build(schema: &Schema, selected: &[usize]) -> Result<JsonPlan, Error> {
        let columns: Vec<&Column> = selected
            .iter()
            .filter_map(|&i| schema.columns.get(i))
            .collect();
        validate(&columns)?;
        let mut prefixes = Vec::with_capacity(columns.len());
        let mut prev: &[Segment] = &[];
        for (n, col) in columns.iter().enumerate() {
            let path = col.path.as_slice();
            let (containers, leaf) = path.split_at(path.len().saturating_sub(1));
            let prev_containers = prev.get(..prev.len().saturating_sub(1)).unwrap_or(&[]);
            let common = containers
                .iter()
                .zip(prev_containers)
                .take_while(|(a, b)| a == b)
                .count();
            let mut text = String::new();
            if n == 0 {
                text.push('{');
            }
            close(prev, common, &mut text);
            if n > 0 {
                text.push(',');
            }
            for (depth, seg) in containers.iter().enumerate().skip(common) {
                push_entry(seg, &mut text);
                text.push(match path.get(depth + 1) {
                    Some(Segment::Index(_)) => '[',
                    _ => '{',
                });
            }
            if let Some(seg) = leaf.first() {
                push_entry(seg, &mut text);
            }
            prefixes.push(text);
            prev = path;
        }
        let mut suffix = String::new();
        if columns.is_empty() {
            suffix.push('{');
        }
        close(prev, 0, &mut suffix);
        suffix.push('}');
        Ok(JsonPlan { prefixes, suffix })
    }
}

/// Closes the containers of `path` deeper than `keep`, innermost first.
fn close(path: &[Segment], keep: usize, out: &mut String) {
    let containers = path.len().saturating_sub(1);
    for depth in (keep..containers).rev() {
        out.push(match path.get(depth + 1) {
            Some(Segment::Index(_)) => ']',
            _ => '}',
        });
    }
}

/// `"key":` inside an object; nothing inside an array.
fn push_entry(seg: &Segment, out: &mut String) {
    if let Segment::Key(k) = seg {
        // Serialising a str cannot fail; the fallback is never taken.
        out.push_str(&serde_json::to_string(k).unwrap_or_else(|_| "\"\"".to_string()));
        out.push(':');
    }
}

fn validate(columns: &[&Column]) -> Result<(), Error> {
    let mut names = HashSet::new();
    let mut leaves: HashSet<&[Segment]> = HashSet::new();
    // Container path → whether its children are indexes.
    let mut kinds: std::collections::HashMap<&[Segment], bool> = Default::default();
    let mut closed: HashSet<&[Segment]> = HashSet::new();
    let mut open: Vec<&[Segment]> = Vec::new();
    for col in columns {
        let path = col.path.as_slice();
        match path.first() {
            None => return Err(Error::EmptyPath),
            // A row is a JSON object: its top level has keys.
            Some(Segment::Index(_)) => return Err(Error::MixedContainer(col.name.clone())),
            Some(Segment::Key(_)) => {}
        }
        if !names.insert(col.name.as_str()) {
            return Err(Error::DuplicateColumn(col.name.clone()));
        }
        leaves.insert(path);
        for depth in 0..path.len() {
            let parent = &path[..depth];
            let is_index = matches!(path[depth], Segment::Index(_));
            if *kinds.entry(parent).or_insert(is_index) != is_index {
                return Err(Error::MixedContainer(
                    Column::from_segments(parent.to_vec()).name,
                ));
            }
        }
        // Containers of this column: those still open that are not its
        // prefix close now, and a closed one must not reopen.
        while let Some(top) = open.last() {
            if path.starts_with(top) && top.len() < path.len() {
                break;
            }
            closed.insert(top);
            open.pop();
        }
        for depth in open.last().map_or(1, |t| t.len() + 1)..path.len() {
            let container = &path[..depth];
            if closed.contains(container) {
                return Err(Error::ScatteredGroup(
                    Column::from_segments(container.to_vec()).name,
                ));
            }
            open.push(container);
        }
    }
    for path in kinds.keys() {
        if leaves.contains(path) {
            return Err(Error::LeafGroupClash(
                Column::from_segments(path.to_vec()).name,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
