//! Admin API benchmark on a generated store: 100,000 keys and 90 days of
//! hourly usage buckets (keys drawn from a Zipf distribution over 10 models,
//! about 10,000,000 requests' worth), written through the store's own
//! `apply_usage` (one transaction per day). Then, in a fresh child process
//! (so its RSS is the API's, not the generator's), the real admin router is
//! served on loopback and queried over HTTP:
//!
//! - a 30-day daily cost series for one key, and for all keys;
//! - top-10 keys by cost this month;
//! - the first page of keys filtered by a tag (sorted by cost when the API
//!   offers that order, else by creation time).
//!
//! It prints p50/p99 per query, the child's RSS (VmHWM/VmRSS), generation
//! times, the dataset's size on disk, and what the request log costs per
//! record.
//!
//! `cargo run --release --example admin_bench -- [keys=100000] [days=90] [draws_per_hour=150]`
//!
//! With `ADMIN_BENCH_DIR=<dir>` the store is generated there and kept, and a
//! later run with the same directory skips the generation (for repeated
//! query-phase measurements).

use claude_relay::config::Config;
use claude_relay::domain::{
    AccountId, ApiKey, KeyId, KeyStatus, NanoUsd, TokenUsage, UsageRecord, UsageSubject,
    UsageTotals,
};
use claude_relay::graphql::{self, AdminState};
use claude_relay::store::{Store, StoreOptions, UsageBatch};
use claude_relay::usage::pricing::PricingTable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const ADMIN: &str = "bench";
const PASSWORD: &str = "bench-password-123";
const ACCOUNTS: usize = 20;
const TAGS: usize = 50;
const WARM_RUNS: usize = 40;

fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        data_dir: dir.to_path_buf(),
        master_key: Some(MASTER_KEY.into()),
        master_key_file: dir.join("master.key"),
        // ADMIN_BENCH_SLED_CACHE overrides the relay's default, to compare settings.
        cache_capacity_bytes: std::env::var("ADMIN_BENCH_SLED_CACHE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(Config::default().sled_cache_bytes),
    }
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Inverse-CDF sampler of a Zipf distribution over `n` ranks.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf = Vec::with_capacity(n);
        for k in 1..=n {
            acc += 1.0 / (k as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--query") {
        let dir = PathBuf::from(args.next().unwrap_or_default());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        rt.block_on(query_phase(&dir));
        return;
    }
    let keys = arg(1, 100_000) as usize;
    let days = arg(2, 90) as i64;
    let draws = arg(3, 150) as usize;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let dir = match std::env::var_os("ADMIN_BENCH_DIR") {
        Some(kept) => PathBuf::from(kept),
        None => tmp.path().join("data"),
    };
    if dir.exists() {
        println!("== reusing the store in {} ==", dir.display());
    } else {
        generate(&dir, keys, days, draws);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    let status = std::process::Command::new(exe)
        .arg("--query")
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("query phase: {e}"));
    assert!(status.success(), "query phase failed");
}

fn generate(dir: &Path, n_keys: usize, days: i64, draws: usize) {
    let store = Store::open(&options(dir)).unwrap_or_else(|e| panic!("store: {e}"));
    let pricing = PricingTable::embedded();
    let models: Vec<String> = pricing
        .models()
        .iter()
        .take(10)
        .map(|m| m.id.clone())
        .collect();
    let mut rng = StdRng::seed_from_u64(5);

    let t = Instant::now();
    let now = chrono::Utc::now();
    let mut key_ids = Vec::with_capacity(n_keys);
    for i in 0..n_keys {
        let id = KeyId::generate();
        let key = ApiKey {
            id,
            name: format!("key-{i:06}"),
            description: String::new(),
            key_hash: claude_relay::domain::sha256_hex(&format!("bench-key-{i}")),
            display_prefix: "cr_bench…".into(),
            status: KeyStatus::Active,
            tags: vec![format!("team-{}", i % TAGS)],
            created_at: now,
            updated_at: now,
            last_used_at: None,
            expires_at: None,
            cost_multiplier: 1.0,
            binding: Default::default(),
            policy: Default::default(),
        };
        store
            .create_key(&key)
            .unwrap_or_else(|e| panic!("create key: {e}"));
        key_ids.push(id);
    }
    let keys_time = t.elapsed();
    let accounts: Vec<AccountId> = (0..ACCOUNTS).map(|_| AccountId::generate()).collect();

    // Keys by popularity rank: a random permutation, so rank 1 is not the oldest key.
    let mut by_rank = key_ids.clone();
    for i in (1..by_rank.len()).rev() {
        let j = rng.gen_range(0..=i);
        by_rank.swap(i, j);
    }
    let key_zipf = Zipf::new(n_keys, 1.1);
    let model_zipf = Zipf::new(models.len(), 1.0);

    let t = Instant::now();
    let start_day = (now - chrono::Duration::days(days))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    // Requests per drawn (key, model, hour): about 10,000,000 in all,
    // whatever the number of draws (the bucket count is what costs disk).
    let r_max = (2 * 10_000_000 / (days.max(1) as u64 * 24 * draws.max(1) as u64)).max(1);
    let mut requests_total = 0u64;
    let mut hour_subjects = 0usize;
    for d in 0..days {
        let mut hourly: HashMap<(UsageSubject, chrono::DateTime<chrono::Utc>), UsageTotals> =
            HashMap::new();
        for h in 0..24 {
            let hour = start_day + chrono::Duration::hours(d * 24 + h);
            if hour > now {
                break;
            }
            for _ in 0..draws {
                let key = by_rank[key_zipf.sample(&mut rng)];
                let model = &models[model_zipf.sample(&mut rng)];
                let account = accounts[rng.gen_range(0..ACCOUNTS)];
                let r: u64 = rng.gen_range(1..=r_max);
                let tokens = TokenUsage {
                    input: r * rng.gen_range(200..4000),
                    output: r * rng.gen_range(50..1500),
                    cache_creation_5m: r * rng.gen_range(0..800),
                    cache_creation_1h: 0,
                    cache_read: r * rng.gen_range(0..10_000),
                };
                let cost = pricing.cost(model, &tokens).unwrap_or(NanoUsd::ZERO);
                let delta = UsageTotals {
                    requests: r,
                    input_tokens: tokens.input,
                    output_tokens: tokens.output,
                    cache_creation_5m_tokens: tokens.cache_creation_5m,
                    cache_creation_1h_tokens: 0,
                    cache_read_tokens: tokens.cache_read,
                    list_cost: cost,
                    billed_cost: cost,
                    ..UsageTotals::default()
                };
                requests_total += r;
                for s in [
                    UsageSubject::Key(key),
                    UsageSubject::KeyModel(key, model.clone()),
                    UsageSubject::Account(account),
                    UsageSubject::AccountModel(account, model.clone()),
                    UsageSubject::Model(model.clone()),
                    UsageSubject::Global,
                ] {
                    hourly.entry((s, hour)).or_default().merge(&delta);
                }
            }
        }
        hour_subjects += hourly.len();
        let batch = UsageBatch {
            hourly: hourly.into_iter().map(|((s, h), t)| (s, h, t)).collect(),
            ..UsageBatch::default()
        };
        store
            .apply_usage(&batch)
            .unwrap_or_else(|e| panic!("apply usage: {e}"));
    }
    let usage_time = t.elapsed();

    // The request log: 100,000 records (its count bound), to measure its cost.
    let log_before = dir_size(dir);
    let t = Instant::now();
    for chunk in 0..10 {
        let records = (0..10_000)
            .map(|i| UsageRecord {
                at: now - chrono::Duration::seconds(i64::from(chunk * 10_000 + i)),
                key_id: Some(key_ids[(i as usize) % key_ids.len()]),
                account_id: Some(accounts[(i as usize) % ACCOUNTS]),
                requested_model: models[0].clone(),
                model: models[0].clone(),
                tokens: TokenUsage {
                    input: 1234,
                    output: 567,
                    cache_creation_5m: 89,
                    cache_creation_1h: 0,
                    cache_read: 10_000,
                },
                list_cost: NanoUsd(12_345_678),
                billed_cost: NanoUsd(12_345_678),
                unpriced: false,
                estimated: false,
                status: 200,
                stream: true,
                latency_ms: 2345,
                ttfb_ms: 456,
            })
            .collect();
        store
            .apply_usage(&UsageBatch {
                records,
                ..UsageBatch::default()
            })
            .unwrap_or_else(|e| panic!("apply log: {e}"));
    }
    let log_time = t.elapsed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(async { store.flush().await.unwrap_or_else(|e| panic!("flush: {e}")) });
    let (log_entries, log_bytes) = store
        .request_log_footprint()
        .unwrap_or_else(|e| panic!("footprint: {e}"));
    drop(store);
    let total = dir_size(dir);

    println!("== generation ==");
    println!(
        "keys                 {n_keys} in {:.1} s",
        keys_time.as_secs_f64()
    );
    println!(
        "usage                {days} days, {requests_total} requests' worth, {hour_subjects} hourly subject buckets, {:.1} s",
        usage_time.as_secs_f64()
    );
    println!(
        "request log          {log_entries} records in {:.1} s: {:.0} B/record encoded, {:.0} B/record on disk (dir growth)",
        log_time.as_secs_f64(),
        log_bytes as f64 / log_entries.max(1) as f64,
        total.saturating_sub(log_before) as f64 / log_entries.max(1) as f64
    );
    println!("store on disk        {:.0} MB", mb(total));
    println!("generator VmHWM      {}", proc_status("VmHWM:"));
}

struct Timing {
    name: &'static str,
    cold_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    note: String,
}

async fn query_phase(dir: &Path) {
    let t = Instant::now();
    let store = Store::open(&options(dir)).unwrap_or_else(|e| panic!("store: {e}"));
    let rss_store = (proc_status("VmHWM:"), proc_status("VmRSS:"));
    let config = Arc::new(Config {
        data_dir: dir.to_path_buf(),
        admin_user: Some(ADMIN.into()),
        admin_password: Some(PASSWORD.into()),
        ..Config::default()
    });
    graphql::bootstrap_admin(&store, &config)
        .await
        .unwrap_or_else(|e| panic!("bootstrap: {e}"));
    let open_time = t.elapsed();
    let router = graphql::router(AdminState::new(store, config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("addr: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let url = format!("http://{addr}/graphql");
    let post = |token: Option<String>, query: String, variables: Value| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let mut req = http
                .post(url)
                .json(&json!({"query": query, "variables": variables}));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let v: Value = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("post: {e}"))
                .json()
                .await
                .unwrap_or_else(|e| panic!("json: {e}"));
            if v.get("errors").is_some() {
                panic!("GraphQL errors: {v}");
            }
            v
        }
    };
    let login = post(
        None,
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }".into(),
        json!({"u": ADMIN, "p": PASSWORD}),
    )
    .await;
    let token = login["data"]["login"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::days(30)).to_rfc3339();
    let to = now.to_rfc3339();
    // The key for the one-key series: the most expensive one this month.
    let top = post(
        Some(token.clone()),
        "{ topUsage(by: KEY, first: 1) { id } }".into(),
        json!({}),
    )
    .await;
    let top_key = top["data"]["topUsage"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Whether the key list can sort by cost on this build.
    let order = post(
        Some(token.clone()),
        "{ __type(name: \"ApiKeyOrderField\") { enumValues { name } } }".into(),
        json!({}),
    )
    .await;
    let cost_sort = order["data"]["__type"]["enumValues"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.contains("COST"))
        .map(str::to_string);

    let series = "query($f: DateTime!, $t: DateTime!, $k: [ID!]) { usageSeries(from: $f, to: $t, granularity: DAY, filter: {keyIds: $k}) { points { label requests billedCostUsd } } }";
    let mut cases: Vec<(&'static str, String, Value, String)> = vec![
        (
            "30-day daily series, one key",
            series.into(),
            json!({"f": from, "t": to, "k": [top_key]}),
            String::new(),
        ),
        (
            "30-day daily series, all keys",
            series.into(),
            json!({"f": from, "t": to, "k": null}),
            String::new(),
        ),
        (
            "top-10 keys by cost, this month",
            "{ topUsage(by: KEY, first: 10) { rank id name costUsd usage { requests } } }".into(),
            json!({}),
            String::new(),
        ),
    ];
    let (field, note) = match &cost_sort {
        Some(f) => (f.clone(), format!("sorted by {f}")),
        None => (
            "CREATED_AT".to_string(),
            "no cost order in apiKeys on this build: sorted by CREATED_AT".to_string(),
        ),
    };
    cases.push((
        "apiKeys: tag filter, first page",
        format!("{{ apiKeys(first: 50, filter: {{tag: \"team-7\"}}, orderBy: {{field: {field}, direction: DESC}}) {{ totalCount edges {{ node {{ id name }} }} }} }}"),
        json!({}),
        note,
    ));

    let rss_open = (proc_status("VmHWM:"), proc_status("VmRSS:"));
    let mut rss_after_usage = None;
    let mut timings = Vec::new();
    for (name, query, vars, note) in cases {
        if name.starts_with("apiKeys") {
            // The usage queries' footprint, before the key list (another
            // part of the API) loads its keys.
            rss_after_usage = Some((proc_status("VmHWM:"), proc_status("VmRSS:")));
        }
        let t = Instant::now();
        post(Some(token.clone()), query.clone(), vars.clone()).await;
        let cold_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut samples = Vec::with_capacity(WARM_RUNS);
        for _ in 0..WARM_RUNS {
            let t = Instant::now();
            post(Some(token.clone()), query.clone(), vars.clone()).await;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let pick = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        timings.push(Timing {
            name,
            cold_ms,
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            note,
        });
    }
    let rss_after_targets = (proc_status("VmHWM:"), proc_status("VmRSS:"));
    // Reads outside the targets that touch much more of the store: a filtered
    // request-log count (the whole log), a name search and a listing sorted
    // by last use. They show what sled's page cache grows to.
    let mut wide = Vec::new();
    for (name, query) in [
        (
            "request log filtered by model, totalCount",
            "{ recentRequests(first: 20, filter: {models: [\"no-such-model\"]}) { totalCount } }",
        ),
        (
            "apiKeys: name search",
            "{ apiKeys(first: 50, filter: {search: \"key-0001\"}) { totalCount edges { node { id } } } }",
        ),
        (
            "apiKeys: all, by last use",
            "{ apiKeys(first: 500, orderBy: {field: LAST_USED_AT, direction: DESC}) { edges { node { id } } } }",
        ),
    ] {
        let t = Instant::now();
        post(Some(token.clone()), query.into(), json!({})).await;
        wide.push((name, t.elapsed().as_secs_f64() * 1000.0));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;

    println!(
        "\n== admin API over HTTP (store opened in {:.2} s) ==",
        open_time.as_secs_f64()
    );
    println!(
        "{:<36} {:>9} {:>9} {:>9}  target < 50 ms",
        "query", "cold ms", "p50 ms", "p99 ms"
    );
    for t in &timings {
        println!(
            "{:<36} {:>9.2} {:>9.2} {:>9.2}  {}{}",
            t.name,
            t.cold_ms,
            t.p50_ms,
            t.p99_ms,
            if t.p99_ms < 50.0 { "ok" } else { "MISSED" },
            if t.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.note)
            }
        );
    }
    println!("RSS of the API process (target < 256 MB):");
    println!(
        "  after Store::open            VmHWM {}  VmRSS {}",
        rss_store.0, rss_store.1
    );
    println!(
        "  after admin bootstrap, login VmHWM {}  VmRSS {}",
        rss_open.0, rss_open.1
    );
    if let Some((hwm, rss)) = rss_after_usage {
        println!("  after the usage queries      VmHWM {hwm}  VmRSS {rss}");
    }
    println!(
        "  after the target queries     VmHWM {}  VmRSS {}",
        rss_after_targets.0, rss_after_targets.1
    );
    println!(
        "  after the wide reads below   VmHWM {}  VmRSS {}",
        proc_status("VmHWM:"),
        proc_status("VmRSS:")
    );
    for (name, ms) in wide {
        println!("    {name:<44} {ms:>8.1} ms (once, no target)");
    }
}
