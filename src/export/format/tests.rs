//! Tests of the writers: every format parsed back by a standard parser
//! (serde_json, csv), nesting, BOM, selection, neutralisation, schema
//! errors, byte counts and constant memory.

use super::*;
use chrono::TimeZone;

fn schema() -> Schema {
    Schema::new(
        [
            "id",
            "name",
            "tags",
            "created_at",
            "usage.total.requests",
            "usage.total.cost_usd",
            "limits.windows.0.max_requests",
            "limits.windows.0.window",
            "limits.windows.1.max_requests",
            "limits.windows.1.window",
            "multiplier",
            "note",
        ]
        .into_iter()
        .map(Column::parse)
        .collect(),
    )
    .unwrap()
}

const TRICKY: &str = "a, \"quoted\"\nnew line; 中文 🙂 \\ end";

fn row(i: u64, name: &str) -> Vec<Value<'_>> {
    vec![
        Value::UInt(i),
        Value::Text(name.into()),
        Value::List(vec![
            "prod".into(),
            "a,b".into(),
            Value::Text(TRICKY.into()),
        ]),
        Value::Time(Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap()),
        Value::UInt(1_000 + i),
        Value::Decimal("12.000345".into()),
        Value::UInt(60),
        Value::Text("1m".into()),
        Value::UInt(1000),
        Value::Text("1h".into()),
        Value::Float(1.5),
        Value::Null,
    ]
}

fn write_all(opts: &WriterOptions, rows: &[Vec<Value<'_>>]) -> (Vec<u8>, u64) {
    let mut w = Writer::new(Vec::new(), &schema(), opts).unwrap();
    for r in rows {
        w.write_row(r).unwrap();
    }
    let rows_written = w.rows_written();
    let out = w.finish().unwrap();
    assert_eq!(rows_written, rows.len() as u64);
    let n = out.len() as u64;
    (out, n)
}

#[test]
fn json_is_one_nested_array_parsed_back() {
    let rows = vec![row(1, TRICKY), row(2, "=cmd|' /C calc'!A0")];
    let (out, _) = write_all(&WriterOptions::new(Format::Json), &rows);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    let first = &arr[0];
    assert_eq!(first["id"], 1);
    assert_eq!(first["name"], TRICKY);
    assert_eq!(first["tags"], serde_json::json!(["prod", "a,b", TRICKY]));
    assert_eq!(first["created_at"], "2024-05-01T12:30:00Z");
    assert_eq!(first["usage"]["total"]["requests"], 1001);
    assert_eq!(first["usage"]["total"]["cost_usd"], "12.000345");
    assert_eq!(first["limits"]["windows"][0]["max_requests"], 60);
    assert_eq!(first["limits"]["windows"][1]["window"], "1h");
    assert_eq!(first["multiplier"], 1.5);
    assert!(first["note"].is_null());
    // JSON is not neutralised: it is data, not a spreadsheet.
    assert_eq!(arr[1]["name"], "=cmd|' /C calc'!A0");
}

#[test]
fn empty_json_export_is_an_empty_array() {
    let (out, _) = write_all(&WriterOptions::new(Format::Json), &[]);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn ndjson_is_one_object_per_line() {
    let rows = vec![row(1, TRICKY), row(2, "b")];
    let (out, _) = write_all(&WriterOptions::new(Format::Ndjson), &rows);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["id"], i as u64 + 1);
        assert_eq!(v["limits"]["windows"][0]["window"], "1m");
    }
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()["name"],
        TRICKY
    );
}

fn read_csv(out: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().from_reader(out);
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

#[test]
fn csv_round_trips_with_flat_names_and_neutralised_text() {
    let rows = vec![
        row(1, TRICKY),
        row(2, "=1+1"),
        row(3, "-2"),
        row(4, "@SUM(A1)"),
    ];
    let (out, _) = write_all(&WriterOptions::new(Format::Csv), &rows);
    assert!(!out.starts_with("\u{feff}".as_bytes()));
    let (header, recs) = read_csv(&out);
    assert_eq!(
        header,
        schema()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(header[5], "usage.total.cost_usd");
    assert_eq!(header[6], "limits.windows.0.max_requests");
    assert_eq!(recs.len(), 4);
    let r = &recs[0];
    assert_eq!(r[0], "1");
    assert_eq!(r[1], TRICKY);
    let tags: Vec<String> = serde_json::from_str(&r[2]).unwrap();
    assert_eq!(tags, vec!["prod", "a,b", TRICKY]);
    assert_eq!(r[3], "2024-05-01T12:30:00Z");
    assert_eq!(r[5], "12.000345");
    assert_eq!(r[10], "1.5");
    assert_eq!(r[11], "");
    assert_eq!(recs[1][1], "'=1+1");
    assert_eq!(recs[2][1], "'-2");
    assert_eq!(recs[3][1], "'@SUM(A1)");
}

#[test]
fn csv_numbers_are_not_neutralised_and_neutralising_can_be_off() {
    let s = Schema::new(vec![Column::parse("n"), Column::parse("t")]).unwrap();
    let mut w = Writer::new(Vec::new(), &s, &WriterOptions::new(Format::Csv)).unwrap();
    w.write_row(&[Value::Int(-5), Value::Text("-5".into())])
        .unwrap();
    let (_, recs) = read_csv(&w.finish().unwrap());
    assert_eq!(recs[0], vec!["-5", "'-5"]);
    let opts = WriterOptions {
        csv_neutralize: false,
        ..WriterOptions::new(Format::Csv)
    };
    let mut w = Writer::new(Vec::new(), &s, &opts).unwrap();
    w.write_row(&[Value::Int(-5), Value::Text("-5".into())])
        .unwrap();
    let (_, recs) = read_csv(&w.finish().unwrap());
    assert_eq!(recs[0], vec!["-5", "-5"]);
}

#[test]
fn csv_bom_on_and_off() {
    let with = WriterOptions {
        csv_bom: true,
        ..WriterOptions::new(Format::Csv)
    };
    let (out, _) = write_all(&with, &[row(1, "x")]);
    assert!(out.starts_with(&[0xEF, 0xBB, 0xBF]));
    let (header, recs) = read_csv(&out[3..]);
    assert_eq!(header[0], "id");
    assert_eq!(recs[0][1], "x");
    let (out, _) = write_all(&WriterOptions::new(Format::Csv), &[row(1, "x")]);
    assert!(out.starts_with(b"id,"));
    // The BOM is CSV-only.
    let json = WriterOptions {
        csv_bom: true,
        ..WriterOptions::new(Format::Json)
    };
    assert!(write_all(&json, &[]).0.starts_with(b"["));
}

#[test]
fn field_selection_keeps_columns_and_groups_in_schema_order() {
    let opts = WriterOptions {
        fields: Some(vec!["usage".into(), "id".into(), "limits.windows.1".into()]),
        ..WriterOptions::new(Format::Csv)
    };
    let w = Writer::new(Vec::new(), &schema(), &opts).unwrap();
    assert_eq!(
        w.column_names(),
        [
            "id",
            "usage.total.requests",
            "usage.total.cost_usd",
            "limits.windows.1.max_requests",
            "limits.windows.1.window"
        ]
    );
    let (out, _) = write_all(
        &WriterOptions {
            format: Format::Json,
            ..opts.clone()
        },
        &[row(7, "x")],
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({"id": 7, "usage": {"total": {"requests": 1007, "cost_usd": "12.000345"}},
            "limits": {"windows": [{"max_requests": 1000, "window": "1h"}]}})
    );
    // `usage.tot` is not a group: names match on whole segments.
    for bad in ["nope", "usage.tot"] {
        let opts = WriterOptions {
            fields: Some(vec![bad.into()]),
            ..WriterOptions::new(Format::Csv)
        };
        assert!(matches!(
            Writer::new(Vec::new(), &schema(), &opts),
            Err(Error::UnknownField(f)) if f == bad
        ));
    }
}

#[test]
fn keys_with_dots_stay_one_segment() {
    let col = Column::from_segments(vec![
        Segment::Key("by_model".into()),
        Segment::Key("claude-3.5-sonnet".into()),
        Segment::Key("requests".into()),
    ]);
    assert_eq!(col.name(), "by_model.claude-3.5-sonnet.requests");
    let s = Schema::new(vec![col]).unwrap();
    let mut w = Writer::new(Vec::new(), &s, &WriterOptions::new(Format::Ndjson)).unwrap();
    w.write_row(&[Value::UInt(3)]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&w.finish().unwrap()).unwrap();
    assert_eq!(v["by_model"]["claude-3.5-sonnet"]["requests"], 3);
}

#[test]
fn schema_errors() {
    let parse = |names: &[&str]| Schema::new(names.iter().map(|n| Column::parse(n)).collect());
    assert!(matches!(parse(&["a", "a"]), Err(Error::DuplicateColumn(_))));
    assert!(matches!(parse(&["u.a", "x", "u.b"]), Err(Error::ScatteredGroup(g)) if g == "u"));
    assert!(matches!(parse(&["u", "u.a"]), Err(Error::LeafGroupClash(g)) if g == "u"));
    assert!(matches!(
        parse(&["l.0", "l.x"]),
        Err(Error::MixedContainer(_))
    ));
    assert!(matches!(parse(&["0"]), Err(Error::MixedContainer(_))));
    assert!(matches!(
        Schema::new(vec![Column::from_segments(vec![])]),
        Err(Error::EmptyPath)
    ));
    assert!(parse(&["a.b.c", "a.b.d", "a.e", "f"]).is_ok());
    let mut w = Writer::new(Vec::new(), &schema(), &WriterOptions::new(Format::Json)).unwrap();
    assert!(matches!(
        w.write_row(&[Value::Null]),
        Err(Error::RowWidth { got: 1, want: 12 })
    ));
}

#[test]
fn bytes_written_is_exact_for_every_format() {
    for format in [Format::Json, Format::Ndjson, Format::Csv] {
        let opts = WriterOptions {
            csv_bom: true,
            ..WriterOptions::new(format)
        };
        let mut w = Writer::new(Vec::new(), &schema(), &opts).unwrap();
        let mut last = w.bytes_written();
        for i in 0..50 {
            w.write_row(&row(i, TRICKY)).unwrap();
            assert!(w.bytes_written() > last, "{format:?} counts per row");
            last = w.bytes_written();
        }
        let before_end = w.bytes_written();
        let out = w.finish().unwrap();
        assert!(out.len() as u64 >= before_end);
        let tail = if format == Format::Json { 3 } else { 0 };
        assert_eq!(out.len() as u64, before_end + tail, "{format:?}");
    }
}

struct Small(u64);

impl ExportRow for Small {
    fn values<'a>(&'a self, out: &mut Vec<Value<'a>>) {
        out.push(Value::UInt(self.0));
        out.push(Value::Text("name, with \"quotes\"".into()));
        out.push(Value::UInt(self.0 * 3));
    }
}

#[test]
fn memory_is_constant_over_a_million_rows() {
    let s = Schema::new(["id", "name", "usage.requests"].map(Column::parse).to_vec()).unwrap();
    for format in [Format::Json, Format::Ndjson, Format::Csv] {
        let mut w = Writer::new(std::io::sink(), &s, &WriterOptions::new(format)).unwrap();
        let mut peak = 0;
        for i in 0..1_000_000 {
            w.write(&Small(i)).unwrap();
            if i % 1000 == 0 {
                peak = peak.max(w.buffer_capacity());
            }
        }
        assert!(peak <= 1024, "{format:?}: scratch grew to {peak}");
        assert_eq!(w.rows_written(), 1_000_000);
        assert!(w.bytes_written() > 20_000_000);
        w.finish().unwrap();
    }
}

#[test]
fn a_huge_value_does_not_pin_memory() {
    let s = Schema::new(vec![Column::parse("l")]).unwrap();
    let mut w = Writer::new(std::io::sink(), &s, &WriterOptions::new(Format::Csv)).unwrap();
    let big = "x".repeat(1 << 20);
    w.write_row(&[Value::List(vec![Value::Text(big.as_str().into())])])
        .unwrap();
    assert!(w.buffer_capacity() <= SCRATCH_KEEP);
    w.write_row(&[Value::List(vec![])]).unwrap();
    w.finish().unwrap();
}

#[test]
fn writer_and_masker_can_move_to_a_worker_thread() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Writer<std::fs::File>>();
    send_sync::<crate::export::mask::Masker>();
    send_sync::<crate::export::row::KeyRows>();
}
