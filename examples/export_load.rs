//! Relay latency while an export runs: the load of `loadbench` (N
//! concurrent non-streaming requests through the relay to the simulated
//! upstream) once on an idle relay and once while exports of K keys (CSV,
//! masking on, this-month usage) run back to back on the relay's export
//! pool. Prints p50/p99 of both and the change; figures go into issue notes.
//!
//! `cargo run --release --example export_load -- [keys=100000] [concurrency=32] [seconds=10]`

use claude_relay::app::App;
use claude_relay::config::Config;
use claude_relay::domain::{
    ApiKey, KeyBinding, KeyId, KeyStatus, NanoUsd, UsageSubject, UsageTotals,
};
use claude_relay::export::format::Format;
use claude_relay::export::jobs::{ExportSpec, PeriodPreset};
use claude_relay::sim::SimUpstream;
use claude_relay::store::UsageBatch;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Run {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Run {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p) as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

async fn drive(
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Arc<String>,
    concurrency: usize,
    seconds: u64,
    stream: bool,
) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .no_proxy()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, headers, body, stop, errors) = (
            client.clone(),
            url.clone(),
            headers.clone(),
            body.clone(),
            stop.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut req = client
                    .post(&url)
                    .body(body.as_str().to_owned())
                    .header("content-type", "application/json");
                for (k, v) in &headers {
                    req = req.header(*k, v);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed().as_micros() as u64);
                    }
                    other => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            match other {
                                Ok(r) => eprintln!(
                                    "first error: HTTP {} {}",
                                    r.status(),
                                    r.text().await.unwrap_or_default()
                                ),
                                Err(e) => eprintln!("first error: {e}"),
                            }
                        }
                    }
                }
            }
            latencies
        }));
    }
    let _ = stream;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Run {
        requests: latencies_us.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latencies_us,
    }
}

fn report(name: &str, run: &Run) {
    println!(
        "{name:<8} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} errors)",
        run.rps(),
        run.percentile(0.5),
        run.percentile(0.99),
        run.requests,
        run.errors
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keys: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let concurrency: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);

    let sim = SimUpstream::new();
    sim.set_limit_scale(1_000);
    sim.set_recording(false);
    let sim = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        master_key: Some("11".repeat(32)),
        admin_user: Some("admin".into()),
        admin_password: Some("loadbench-password".into()),
        log_filter: "warn".into(),
        ..Config::default()
    };
    let app = App::start(config).await.unwrap();
    let key = claude_relay::demo::seed(&app.store, &sim.base_url(), "cr_").unwrap();
    let t0 = Instant::now();
    let now = chrono::Utc::now();
    let mut batch = UsageBatch::default();
    for i in 0..keys {
        let k = ApiKey {
            id: KeyId::generate(),
            name: format!("load key {i}"),
            description: format!("contact user{i}@example.com"),
            key_hash: format!("{i:064x}"),
            display_prefix: "cr_abcd…wxyz".into(),
            status: KeyStatus::Active,
            tags: vec!["prod".into()],
            created_at: now,
            updated_at: now,
            last_used_at: None,
            expires_at: None,
            cost_multiplier: 1.0,
            binding: KeyBinding::None,
            policy: Default::default(),
        };
        app.store.create_key(&k).unwrap();
        let t = UsageTotals {
            requests: 3,
            input_tokens: 100,
            billed_cost: NanoUsd(1000),
            ..Default::default()
        };
        batch.hourly.push((UsageSubject::Key(k.id), now, t));
        if batch.hourly.len() >= 2000 {
            app.store.apply_usage(&std::mem::take(&mut batch)).unwrap();
        }
    }
    app.store.apply_usage(&batch).unwrap();
    println!(
        "populated {keys} keys in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let exports = app.exports.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = Arc::new(
        serde_json::json!({
            "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": false,
            "messages": [{"role": "user", "content": "Benchmark request: say something short."}]
        })
        .to_string(),
    );
    let headers = vec![
        ("x-api-key", key),
        ("anthropic-version", "2023-06-01".into()),
    ];
    let url = format!("{relay_url}/v1/messages");
    println!("concurrency {concurrency}, {seconds} s per run");
    // Warm-up, then the idle baseline.
    let _ = drive(
        url.clone(),
        headers.clone(),
        body.clone(),
        concurrency,
        2,
        false,
    )
    .await;
    let idle = drive(
        url.clone(),
        headers.clone(),
        body.clone(),
        concurrency,
        seconds,
        false,
    )
    .await;
    report("idle", &idle);

    // Exports back to back for the whole measured run.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, done, exports) = (stop.clone(), done.clone(), exports.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut spec = ExportSpec::new(Format::Csv);
                spec.period = PeriodPreset::ThisMonth.range(chrono_tz::UTC, chrono::Utc::now());
                let r = exports.start_job(spec, "bench").unwrap();
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let rec = exports.get(r.id).unwrap().unwrap();
                    if rec.state.is_terminal() {
                        break;
                    }
                    if stop.load(Ordering::Relaxed) {
                        let _ = exports.cancel(r.id);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
                let _ = exports.delete(r.id);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = drive(url, headers, body, concurrency, seconds, false).await;
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.await;
    report("export", &busy);
    println!(
        "p99 change {:+.1}% ({} exports of {keys} keys ran during the run); throughput change {:+.1}%",
        (busy.percentile(0.99) / idle.percentile(0.99).max(0.001) - 1.0) * 100.0,
        done.load(Ordering::Relaxed),
        (busy.rps() / idle.rps().max(1.0) - 1.0) * 100.0,
    );
    let _ = tx.send(());
    let _ = server.await;
}
