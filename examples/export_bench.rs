//! End-to-end export benchmark on a real sled store: N keys (default
//! 100,000) with lifetime and this-month usage, exported with masking on
//! (PARTIAL) and the this-month period, as CSV and as JSON, into files,
//! through the same `export::jobs::run` the server and the CLI use.
//!
//! Prints wall time and peak RSS growth per run: the peak (VmHWM) is reset
//! through `/proc/self/clear_refs` before each run and compared with the
//! RSS (VmRSS) at its start. Figures go into issue notes, never into
//! assertions.
//!
//! `cargo run --release --example export_bench -- [KEYS] [SLED_CACHE_MB] [main]`

use chrono::{Duration, TimeZone, Utc};
use claude_relay::domain::{
    ApiKey, KeyBinding, KeyId, KeyStatus, NanoUsd, UsageSubject, UsageTotals,
};
use claude_relay::export::format::Format;
use claude_relay::export::jobs::{self, ExportSpec, Masking, PeriodPreset, RunEnv};
use claude_relay::export::mask::PseudonymKey;
use claude_relay::store::{Store, StoreOptions, UsageBatch};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat.
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the parenthesised command name; utime and stime
            // are the 14th and 15th fields overall.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0)
}

fn key(i: u64, t: chrono::DateTime<Utc>) -> ApiKey {
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let cache_mb: u64 = args.next().map_or(Ok(64), |s| s.parse())?;
    // `main`: only the two runs of the issue (CSV and JSON, masked, this month).
    let only_main = args.next().is_some_and(|a| a == "main");
    let dir = tempfile::tempdir()?;
    let opts = StoreOptions {
        data_dir: dir.path().to_path_buf(),
        master_key: Some("11".repeat(32)),
        master_key_file: dir.path().join("master.key"),
        cache_capacity_bytes: cache_mb << 20,
    };
    let populate = Instant::now();
    {
        let store = Store::open(&opts)?;
        let now = Utc::now();
        let earlier = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .ok_or("time")?;
        let mut batch = UsageBatch::default();
        for i in 0..n {
            let k = key(i, earlier + Duration::seconds(i as i64));
            store.create_key(&k)?;
            let t = UsageTotals {
                requests: 1 + i % 17,
                input_tokens: 1000 + i,
                output_tokens: 200 + i % 300,
                cache_read_tokens: 5000,
                list_cost: NanoUsd(123_456 + i),
                billed_cost: NanoUsd(123_456 + i),
                ..UsageTotals::default()
            };
            // Lifetime usage from last year, and this month's.
            batch.hourly.push((UsageSubject::Key(k.id), earlier, t));
            batch.hourly.push((UsageSubject::Key(k.id), now, t));
            if batch.hourly.len() >= 2000 {
                store.apply_usage(&std::mem::take(&mut batch))?;
            }
        }
        store.apply_usage(&batch)?;
        futures::executor::block_on(store.flush())?;
    }
    println!(
        "populated {n} keys in {:.1} s",
        populate.elapsed().as_secs_f64()
    );

    // A fresh open, as a server or the CLI would have it.
    let store = Store::open(&opts)?;
    let env = RunEnv {
        relay_key_prefixes: vec!["cr_".into()],
        pseudonym_key: PseudonymKey::random(),
    };
    let period = PeriodPreset::ThisMonth.range(chrono_tz::UTC, Utc::now());
    // The two runs of the issue, then CSV without masking and without a
    // period, to show where the time goes.
    let runs = [
        (Format::Csv, Masking::Partial, period, "masked, this month"),
        (Format::Json, Masking::Partial, period, "masked, this month"),
        (Format::Csv, Masking::None, period, "unmasked, this month"),
        (Format::Csv, Masking::Partial, None, "masked, lifetime only"),
    ];
    let runs = if only_main { &runs[..2] } else { &runs[..] };
    for &(format, masking, period, label) in runs {
        let mut spec = ExportSpec::new(format);
        spec.masking = masking;
        spec.period = period;
        let path = dir.path().join(format!("out.{}", format.extension()));
        let file = std::fs::File::create(&path)?;
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = status_kib("VmRSS:");
        let start = Instant::now();
        let cpu_start = cpu_secs();
        let cancel = AtomicBool::new(false);
        let mut counted = None;
        let (file, progress) = jobs::run(&store, &spec, &env, file, &cancel, &mut |_| {
            counted.get_or_insert(start.elapsed().as_secs_f64());
        })?;
        file.sync_all()?;
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu_start;
        drop(file);
        // Disk space is shared: keep one output at a time.
        std::fs::remove_file(&path)?;
        let hwm = status_kib("VmHWM:");
        println!(
            "{:<4} {:<22} {} keys  {:>6.2} s wall ({:.2} s counting)  {:>6.2} s CPU  {:>8.1} MB  peak RSS growth {:>6.1} MB (RSS before {:.1} MB, peak {:.1} MB)",
            format.extension(),
            label,
            progress.processed,
            secs,
            counted.unwrap_or(0.0),
            cpu,
            progress.bytes as f64 / 1e6,
            hwm.saturating_sub(rss_before) as f64 / 1024.0,
            rss_before as f64 / 1024.0,
            hwm as f64 / 1024.0,
        );
    }
    Ok(())
}
