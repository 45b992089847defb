//! Key-query benchmark (issue 5, "Query performance"): a real sled store in
//! a temp dir with 100,000 keys (40 tags with Zipf-like popularity, some keys
//! bound to accounts or groups) and this month's usage for a Zipf-drawn
//! subset written through the usage writer's `apply_usage`; then the admin
//! API's `apiKeys` queries through the real GraphQL router (in process, with
//! a real session), each timed over many runs. Prints p50/p99 per query,
//! generation time, disk size and the process's peak RSS (VmHWM).
//!
//! `cargo run --release --example key_query_bench [-- <keys>]`

use chrono::{Duration, Utc};
use claude_relay::config::Config;
use claude_relay::domain::{
    sha256_hex, AccountId, ApiKey, GroupId, KeyBinding, KeyId, KeyStatus, NanoUsd, UsageSubject,
    UsageTotals,
};
use claude_relay::graphql::{self, AdminState};
use claude_relay::store::{month_start, Store, StoreOptions, UsageBatch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

const TAGS: usize = 40;
const RUNS: usize = 100;
const ADMIN: &str = "bench";
const PASSWORD: &str = "bench-password-123";

/// Draws ranks 0..n with probability ∝ 1/(rank+1)^s.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                acc += 1.0 / ((r + 1) as f64).powf(s);
                acc
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut StdRng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.gen::<f64>() * total;
        self.cumulative.partition_point(|c| *c < x)
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn generate(store: &Store, n: usize, rng: &mut StdRng) -> anyhow::Result<()> {
    let tag_zipf = Zipf::new(TAGS, 1.0);
    let accounts: Vec<AccountId> = (0..20).map(|_| AccountId::generate()).collect();
    let groups: Vec<GroupId> = (0..5).map(|_| GroupId::generate()).collect();
    let now = Utc::now();
    let mut ids = Vec::with_capacity(n);
    let mut pending = Vec::with_capacity(1000);
    for i in 0..n {
        let mut tags: Vec<String> = (0..rng.gen_range(1..=3))
            .map(|_| format!("tag-{:02}", tag_zipf.sample(rng)))
            .collect();
        tags.sort();
        tags.dedup();
        let binding = match rng.gen_range(0..20) {
            0 | 1 => KeyBinding::Account(accounts[rng.gen_range(0..accounts.len())]),
            2 => KeyBinding::Group(groups[rng.gen_range(0..groups.len())]),
            _ => KeyBinding::None,
        };
        let created = now - Duration::seconds((n - i) as i64 * 30);
        let key = ApiKey {
            id: KeyId::generate(),
            name: format!("key-{i:06}"),
            description: if i % 10 == 0 {
                format!("service account {}", i % 97)
            } else {
                String::new()
            },
            key_hash: sha256_hex(&format!("secret-{i}")),
            display_prefix: format!("cr_{:04x}…{:04x}", i % 65536, (i * 7919) % 65536),
            status: if i % 50 == 0 {
                KeyStatus::Disabled
            } else {
                KeyStatus::Active
            },
            tags,
            created_at: created,
            updated_at: created,
            last_used_at: None,
            expires_at: None,
            cost_multiplier: 1.0,
            binding,
            policy: Default::default(),
        };
        ids.push(key.id);
        pending.push(key);
        // The bulk path: one transaction (and one write per counter) per 1000 keys.
        if pending.len() == 1000 {
            store.create_keys(&std::mem::take(&mut pending))?;
        }
    }
    store.create_keys(&pending)?;
    eprintln!("keys written: {:.1} s", now_elapsed(now));
    // This month's usage for a Zipf-drawn subset (rank → key by a shuffle).
    let start = month_start(now, store.time_zone());
    let hours = (now - start).num_hours().max(0);
    let usage_zipf = Zipf::new(n, 1.1);
    let mut batch = UsageBatch::default();
    for _ in 0..(n / 2) {
        let rank = usage_zipf.sample(rng);
        let id = ids[(rank * 7919) % n];
        let hour = start + Duration::hours(rng.gen_range(0..=hours));
        let requests = rng.gen_range(1..20u64);
        batch.hourly.push((
            UsageSubject::Key(id),
            hour,
            UsageTotals {
                requests,
                input_tokens: requests * 1200,
                output_tokens: requests * 300,
                list_cost: NanoUsd(requests * 9_000_000),
                billed_cost: NanoUsd(requests * 9_000_000),
                ..Default::default()
            },
        ));
        batch
            .key_last_used
            .push((id, now - Duration::seconds(rng.gen_range(0..86_400 * 20))));
        if batch.hourly.len() >= 2000 {
            store.apply_usage(&std::mem::take(&mut batch))?;
        }
    }
    store.apply_usage(&batch)?;
    eprintln!("usage written: {:.1} s", now_elapsed(now));
    Ok(())
}

fn now_elapsed(since: chrono::DateTime<Utc>) -> f64 {
    (Utc::now() - since).num_milliseconds() as f64 / 1000.0
}

async fn post(router: &axum::Router, token: &str, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let req = http::Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(body))
        .expect("request");
    let resp = router.clone().oneshot(req).await.expect("response");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("json")
}

const PAGE: &str = "query($filter: ApiKeyFilter, $orderBy: ApiKeyOrder, $after: String, $first: Int) { apiKeys(first: $first, after: $after, filter: $filter, orderBy: $orderBy) { totalCount edges { cursor node { id name tags lastUsedAt } } pageInfo { hasNextPage endCursor } } }";

fn bench_config(data_dir: std::path::PathBuf) -> Config {
    Config {
        data_dir,
        admin_user: Some(ADMIN.into()),
        admin_password: Some(PASSWORD.into()),
        ..Config::default()
    }
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::open(&StoreOptions {
        data_dir: config.data_dir.clone(),
        master_key: Some("42".repeat(32)),
        master_key_file: config.master_key_path(),
        cache_capacity_bytes: config.sled_cache_bytes,
    })?)
}

/// Generates the store, then runs the queries in a fresh child process on
/// it, so the RSS figure is that of a process serving the generated store
/// (not of the bulk load, which sled buffers heavily).
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--query") {
        let dir = args
            .get(2)
            .ok_or_else(|| anyhow::anyhow!("--query needs the data dir"))?;
        return query(bench_config(dir.into())).await;
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let config = bench_config(dir.path().join("data"));
    let store = open_store(&config)?;
    graphql::bootstrap_admin(&store, &config).await?;
    let mut rng = StdRng::seed_from_u64(42);
    let t0 = Instant::now();
    generate(&store, n, &mut rng)?;
    store.flush().await?;
    let generation = t0.elapsed();
    drop(store);
    let disk = dir_size(dir.path());
    println!(
        "key_query_bench: {n} keys, generated in {:.1} s, {:.1} MB on disk, generator peak RSS {:.1} MB",
        generation.as_secs_f64(),
        disk as f64 / 1e6,
        peak_rss_mb()
    );
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--query")
        .arg(&config.data_dir)
        .status()?;
    anyhow::ensure!(status.success(), "query phase failed");
    Ok(())
}

async fn query(config: Config) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    graphql::bootstrap_admin(&store, &config).await?;
    let router = graphql::router(AdminState::new(store.clone(), Arc::new(config)));
    let login = post(
        &router,
        "",
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
        json!({ "u": ADMIN, "p": PASSWORD }),
    )
    .await;
    let token = login["data"]["login"]["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("login failed: {login}"))?
        .to_string();

    let first_page = post(
        &router,
        &token,
        PAGE,
        json!({ "first": 50, "filter": { "tag": "tag-00" }, "orderBy": { "field": "BILLED_COST_THIS_MONTH", "direction": "DESC" } }),
    )
    .await;
    let cursor = first_page["data"]["apiKeys"]["pageInfo"]["endCursor"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no first page: {first_page}"))?
        .to_string();

    let queries: Vec<(&str, Value)> = vec![
        (
            "tag-00 by cost this month desc",
            json!({ "first": 50, "filter": { "tag": "tag-00" }, "orderBy": { "field": "BILLED_COST_THIS_MONTH", "direction": "DESC" } }),
        ),
        (
            "  same, page 2 via cursor",
            json!({ "first": 50, "after": cursor, "filter": { "tag": "tag-00" }, "orderBy": { "field": "BILLED_COST_THIS_MONTH", "direction": "DESC" } }),
        ),
        (
            "rare tag-39 by cost this month desc",
            json!({ "first": 50, "filter": { "tag": "tag-39" }, "orderBy": { "field": "BILLED_COST_THIS_MONTH", "direction": "DESC" } }),
        ),
        (
            "all keys by last used desc",
            json!({ "first": 50, "orderBy": { "field": "LAST_USED_AT", "direction": "DESC" } }),
        ),
        (
            "search \"key-0042\" + tag-02, by name",
            json!({ "first": 50, "filter": { "search": "key-0042", "tag": "tag-02" }, "orderBy": { "field": "NAME" } }),
        ),
        (
            "search \"service account 7\"",
            json!({ "first": 50, "filter": { "search": "service account 7" } }),
        ),
        (
            "top-10 by cost this month",
            json!({ "first": 10, "orderBy": { "field": "BILLED_COST_THIS_MONTH", "direction": "DESC" } }),
        ),
        (
            "cost ≥ $1 this month, by created",
            json!({ "first": 50, "filter": { "minCostUsd": "1" } }),
        ),
    ];
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>10}",
        "query (first page unless noted)", "p50 ms", "p99 ms", "max ms", "totalCount"
    );
    for (name, vars) in queries {
        let mut times = Vec::with_capacity(RUNS);
        let mut total = Value::Null;
        for _ in 0..RUNS {
            let t = Instant::now();
            let resp = post(&router, &token, PAGE, vars.clone()).await;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if resp.get("errors").is_some() {
                anyhow::bail!("{name}: {resp}");
            }
            total = resp["data"]["apiKeys"]["totalCount"].clone();
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "{name:<40} {:>9.2} {:>9.2} {:>9.2} {:>10}",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            total
        );
    }
    println!("query process peak RSS (VmHWM): {:.1} MB", peak_rss_mb());
    Ok(())
}
