//! Export benchmark: 100,000 generated keys (lifetime and this-month usage,
//! masking on, some free text carrying secrets and personal data) written
//! as CSV and as JSON into `std::io::sink()`. Prints the time and the peak
//! RSS growth (VmHWM) of each run; figures go into issue notes, never into
//! assertions. `cargo bench --bench export -- 1000000` runs another count.

use chrono::{TimeZone, Utc};
use claude_relay::domain::{ApiKey, KeyBinding, KeyId, KeyStatus, NanoUsd, UsageTotals};
use claude_relay::export::format::{Format, Writer, WriterOptions};
use claude_relay::export::mask::{MaskConfig, Masker};
use claude_relay::export::row::{KeyRowOptions, KeyRows, KeyUsage};
use std::time::Instant;

/// Peak resident set size so far, in KiB (Linux; 0 elsewhere).
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Key `i`: one in ten descriptions has an email, one in 25 an Anthropic
/// key, one in 40 a phone number and an IP address; the rest are clean.
fn key(i: u64) -> ApiKey {
    let t =
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i as i64);
    let mut description = format!("Key {i} for the billing integration of team {}", i % 97);
    if i.is_multiple_of(10) {
        description.push_str(&format!(", contact user{i}@example.com"));
    }
    if i.is_multiple_of(25) {
        description.push_str(&format!(
            ", old token sk-ant-api03-{i:08}abcDEF123456ghiJKL789012mnoPQR"
        ));
    }
    if i.is_multiple_of(40) {
        description.push_str(", call +1 415 555 2671 from 10.1.2.3");
    }
    ApiKey {
        id: KeyId::generate(),
        name: format!("Team {} production key #{i}", i % 50),
        description,
        key_hash: format!("{i:064x}"),
        display_prefix: format!("cr_{:04x}…{:04x}", i % 65536, (i * 7) % 65536),
        status: KeyStatus::Active,
        tags: vec![format!("team-{}", i % 50), "prod".to_string()],
        created_at: t,
        updated_at: t,
        last_used_at: Some(t),
        expires_at: None,
        cost_multiplier: 1.0,
        binding: KeyBinding::None,
        policy: Default::default(),
    }
}

fn totals(i: u64, scale: u64) -> UsageTotals {
    UsageTotals {
        requests: i * scale,
        input_tokens: i * 1000 * scale,
        output_tokens: i * 200 * scale,
        cache_creation_5m_tokens: i * 10,
        cache_creation_1h_tokens: i,
        cache_read_tokens: i * 5000 * scale,
        list_cost: NanoUsd(i * 123_456_789 * scale),
        billed_cost: NanoUsd(i * 123_456_789 * scale),
        ..UsageTotals::default()
    }
}

fn run(format: Format, keys: u64, rows: &KeyRows) {
    let hwm_before = vm_hwm_kib();
    let start = Instant::now();
    let mut w = Writer::new(std::io::sink(), rows.schema(), &WriterOptions::new(format)).unwrap();
    for i in 0..keys {
        // Generated as the store would hand them over: one at a time.
        let k = key(i);
        let usage = KeyUsage {
            lifetime: totals(i, 12),
            period: Some(totals(i, 1)),
            by_model: &[],
            binding_name: None,
        };
        w.write(&rows.row(&k, usage)).unwrap();
    }
    let bytes = w.bytes_written();
    w.finish().unwrap();
    let secs = start.elapsed().as_secs_f64();
    let growth = vm_hwm_kib().saturating_sub(hwm_before);
    println!(
        "export {format:?}: {keys} keys, {:.1} MB in {secs:.2} s ({:.0} keys/s), peak RSS growth {:.1} MB",
        bytes as f64 / 1e6,
        keys as f64 / secs,
        growth as f64 / 1024.0
    );
}

fn main() {
    let keys: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let start = Instant::now();
    let masker = Masker::new(MaskConfig::default());
    println!(
        "masker compiled in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let rows = KeyRows::new(
        KeyRowOptions {
            period: true,
            models: Vec::new(),
        },
        Some(masker),
    )
    .unwrap();
    println!("peak RSS before: {:.1} MB", vm_hwm_kib() as f64 / 1024.0);
    run(Format::Csv, keys, &rows);
    run(Format::Json, keys, &rows);
    run(Format::Ndjson, keys, &rows);
}
