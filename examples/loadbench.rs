//! Load benchmark: requests/s and latency at N concurrent non-streaming
//! requests, directly against the simulated upstream and through the relay,
//! and the ratio of the two. Everything runs in this process on loopback, so
//! the relay's overhead shows as the drop from the direct figure.
//!
//! `cargo run --release --example loadbench -- [concurrency=64] [seconds=10] [stream=false]`

use claude_relay::app::App;
use claude_relay::config::Config;
use claude_relay::sim::SimUpstream;
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
    let concurrency: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let stream = args.get(2).is_some_and(|a| a == "true");

    let sim = SimUpstream::new();
    // Far past a real tier's 4,000 requests a minute; the relay would
    // otherwise (rightly) rest accounts the headers call exhausted.
    sim.set_limit_scale(1_000);
    sim.set_recording(false);
    let sim = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        master_key: Some("11".repeat(32)),
        admin_user: Some("admin".into()),
        admin_password: Some("loadbench-password".into()),
        ..Config::default()
    };
    let app = App::start(config).await.unwrap();
    let key = claude_relay::demo::seed(&app.store, &sim.base_url(), "cr_").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let body = Arc::new(
        serde_json::json!({
            "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": stream,
            "messages": [{"role": "user", "content": "Benchmark request: say something short."}]
        })
        .to_string(),
    );
    println!("concurrency {concurrency}, {seconds} s per run, stream={stream}");
    let direct = drive(
        format!("{}/v1/messages", sim.base_url()),
        vec![
            ("x-api-key", "sk-ant-api03-loadbench-direct".into()),
            ("anthropic-version", "2023-06-01".into()),
        ],
        body.clone(),
        concurrency,
        seconds,
        stream,
    )
    .await;
    report("direct", &direct);
    let relayed = drive(
        format!("{relay_url}/v1/messages"),
        vec![
            ("x-api-key", key),
            ("anthropic-version", "2023-06-01".into()),
        ],
        body,
        concurrency,
        seconds,
        stream,
    )
    .await;
    report("relay", &relayed);
    println!(
        "ratio    {:.2} (relay / direct throughput); added p50 latency {:.2} ms",
        relayed.rps() / direct.rps().max(1.0),
        relayed.percentile(0.5) - direct.percentile(0.5)
    );
    let _ = tx.send(());
    let _ = server.await;
}
