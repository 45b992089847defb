//! `import-redis` against a real redis-server loaded with the CRS fixture
//! (tests/fixtures/crs-redis/dump-no-ttl.rdb): counts, mapped limits,
//! decrypted credentials, usage totals against the fixture's client-seen
//! usage, dry runs that write nothing, idempotent reruns, the CLI, and the
//! fixture's raw `cr_...` keys authenticating through the real relay (their
//! legacy hashes upgraded on first use).

mod common;
mod crs_support;

use claude_relay::domain::{
    sha256_hex, AccountKind, AccountMode, ApiKey, KeyBinding, KeyStatus, NanoUsd, UsageSubject,
};
use claude_relay::import::{self, ImportOptions, NoProgress, Report, Sections};
use claude_relay::limits::{ClientKind, Expiry, ModelRule};
use claude_relay::sim::SimUpstream;
use claude_relay::store::{Store, StoreOptions};
use crs_support::{by_label, manifest, start_redis, ENCRYPTION_KEY, MASTER_KEY};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

fn open_store(dir: &Path) -> Store {
    Store::open(&StoreOptions {
        data_dir: dir.to_path_buf(),
        master_key: Some(MASTER_KEY.into()),
        master_key_file: dir.join("master.key"),
        cache_capacity_bytes: 8 * 1024 * 1024,
    })
    .unwrap()
}

fn options(url: &str, dry_run: bool) -> ImportOptions {
    ImportOptions {
        redis_url: url.to_string(),
        encryption_key: ENCRYPTION_KEY.into(),
        dry_run,
        only: Sections::default(),
        tz_offset_hours: 8,
        key_prefix: "cr_".into(),
    }
}

async fn import_into(store: Option<&Store>, url: &str, dry_run: bool) -> Report {
    import::run(store, &options(url, dry_run), &NoProgress)
        .await
        .unwrap()
}

fn section(r: &Report, name: &str) -> (u64, u64, u64, u64, usize) {
    let s = &r.sections[name];
    (s.read, s.created, s.updated, s.unchanged, s.skipped.len())
}

/// Our key for a CRS key id (through the import link).
fn our_key(store: &Store, report: &Report, crs_id: &str) -> ApiKey {
    let link = store
        .import_link(&report.source_id, "key", crs_id)
        .unwrap()
        .unwrap_or_else(|| panic!("no link for {crs_id}"));
    store
        .get_key(claude_relay::domain::KeyId(link.local_id))
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn import_maps_everything_and_raw_keys_keep_working() {
    let redis = start_redis().await;
    let m = manifest();

    // A dry run without a store (the CLI on a fresh data dir) reports everything as new.
    let dry = import_into(None, &redis.url, true).await;
    assert_eq!(section(&dry, "keys"), (30, 30, 0, 0, 0));

    let data_dir = tempfile::tempdir().unwrap();
    let store = open_store(data_dir.path());
    // A dry run against a store reports the same and writes nothing.
    let dry = import_into(Some(&store), &redis.url, true).await;
    assert_eq!(section(&dry, "keys"), (30, 30, 0, 0, 0));
    assert!(store.list_keys().unwrap().is_empty());
    assert!(store.list_accounts().unwrap().is_empty());
    assert!(store.list_groups().unwrap().is_empty());
    assert_eq!(store.legacy_key_hash_count(), 0);
    assert!(store.legacy_sources().unwrap().is_empty());
    assert_eq!(
        store
            .usage_total(&UsageSubject::Global, None)
            .unwrap()
            .requests,
        0
    );

    let report = import_into(Some(&store), &redis.url, false).await;
    assert_eq!(
        report.usage, dry.usage,
        "the dry run reported the same usage"
    );
    assert_eq!(section(&report, "keys"), (30, 30, 0, 0, 0));
    assert_eq!(section(&report, "accounts"), (5, 5, 0, 0, 0));
    assert_eq!(section(&report, "groups"), (1, 1, 0, 0, 0));
    assert!(report.conflicts.is_empty(), "{report}");
    assert!(
        report.notes.iter().any(|n| n.contains("\"admin\"")),
        "{report}"
    );
    assert_eq!(store.list_keys().unwrap().len(), 30);
    assert_eq!(store.legacy_key_hash_count(), 30);

    check_keys(&store, &report, &m);
    check_accounts(&store, &report, &m);
    check_usage(&store, &report, &m);

    // Point the imported accounts at the simulator (CRS's mock is gone).
    let sim = SimUpstream::new()
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    for mut a in store.list_accounts().unwrap() {
        a.base_url = Some(sim.base_url());
        a.proxy = None;
        store.put_account(&a).unwrap();
    }
    store.flush().await.unwrap();
    drop(store);

    let relay = common::TestRelay::start_on(sim, data_dir, |_| {}).await;
    relay.sim.sim.set_recording(true);
    let now = chrono::Utc::now();
    let mut used = Vec::new();
    for k in m["keys"].as_array().unwrap() {
        let label = k["label"].as_str().unwrap();
        let raw = k["raw_key"].as_str().unwrap();
        let resp = relay
            .messages(
                raw,
                &json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 16,
                        "messages": [{"role": "user", "content": "hello from a migrated key"}]}),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let state = k["final_state"].as_str().unwrap();
        let fixed_expiry = k["settings"]["expiresAt"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
        let expected_401 = state == "disabled"
            || state == "soft-deleted"
            || state.starts_with("expired")
            || fixed_expiry.is_some_and(|t| t <= now);
        if expected_401 {
            assert_eq!(status, 401, "{label} ({state}) must be refused");
        } else {
            assert_ne!(status, 401, "{label} ({state}) must authenticate");
            used.push(k["id"].as_str().unwrap().to_string());
        }
        match label {
            "total-cost" => assert_eq!(status, 402, "CRS spend was seeded into the total budget"),
            "perm-gemini" | "claude-code-only" => assert_eq!(status, 403, "{label}"),
            "default" | "bound-group" | "combo" => assert_eq!(status, 200, "{label}"),
            _ => {}
        }
    }
    // Requests reached upstream with the decrypted secrets of the right accounts.
    let seen: Vec<String> = relay
        .sim
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.credential)
        .collect();
    let secret = |label: &str| {
        by_label(&m, "accounts", label)["upstream_secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(seen.contains(&secret("A")), "the shared account served");
    let known: Vec<String> = ["A", "B", "C", "D"].into_iter().map(secret).collect();
    assert!(
        seen.iter()
            .all(|c| known.contains(c) || c.starts_with("sk-ant-oat")),
        "only the imported accounts' decrypted secrets reach upstream: {seen:?}"
    );
    let (sim, data_dir) = relay.stop().await;
    sim.shutdown().await;

    // Used keys moved to their native hash; the legacy entries are gone.
    let store = open_store(data_dir.path());
    for k in m["keys"].as_array().unwrap() {
        let id = k["id"].as_str().unwrap();
        let key = our_key(&store, &report, id);
        let raw = k["raw_key"].as_str().unwrap();
        if used.iter().any(|u| u == id) {
            assert_eq!(key.key_hash, sha256_hex(raw), "{} upgraded", k["label"]);
            assert_eq!(
                store
                    .legacy_key_hash(k["sha256_hash"].as_str().unwrap())
                    .unwrap(),
                None
            );
        }
    }
    let legacy_left = store.legacy_key_hash_count();
    assert!(legacy_left < 30);

    // A second import changes nothing: no new records, no usage, no conflicts,
    // and upgraded keys do not get their legacy hash back.
    let usage_before = store.usage_total(&UsageSubject::Global, None).unwrap();
    let again = import_into(Some(&store), &redis.url, false).await;
    for name in ["keys", "accounts", "groups"] {
        let (read, created, updated, _, _) = section(&again, name);
        assert_eq!((created, updated), (0, 0), "{name}: {again}");
        assert_eq!(read, section(&report, name).0);
    }
    assert_eq!(again.usage.buckets, 0, "{again}");
    assert!(again.conflicts.is_empty(), "{again}");
    assert_eq!(store.list_keys().unwrap().len(), 30);
    assert_eq!(store.list_accounts().unwrap().len(), 5);
    assert_eq!(store.list_groups().unwrap().len(), 1);
    assert_eq!(store.legacy_key_hash_count(), legacy_left);
    assert_eq!(
        store.usage_total(&UsageSubject::Global, None).unwrap(),
        usage_before
    );
    store.flush().await.unwrap();
    drop(store);

    // The CLI on the same (stopped) data dir: a third run, also a no-op.
    let out = Command::new(env!("CARGO_BIN_EXE_claude-relay"))
        .args([
            "import-redis",
            "--redis-url",
            &redis.url,
            "--crs-encryption-key",
            ENCRYPTION_KEY,
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("RELAY_MASTER_KEY", MASTER_KEY)
        .env_remove("RELAY_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys_line = stdout.lines().find(|l| l.starts_with("keys ")).unwrap();
    let cols: Vec<&str> = keys_line.split_whitespace().collect();
    assert_eq!(cols[1..6], ["30", "0", "0", "0", "30"], "{stdout}");
}

fn check_keys(store: &Store, report: &Report, m: &Value) {
    let key = |label: &str| {
        our_key(
            store,
            report,
            by_label(m, "keys", label)["id"].as_str().unwrap(),
        )
    };
    assert_eq!(key("soft-deleted").status, KeyStatus::Deleted);
    assert_eq!(key("disabled").status, KeyStatus::Disabled);
    assert!(key("expiry-fixed-past").expires_at.is_some());
    let default = key("default");
    assert_eq!(default.name, "s1-default");
    assert_eq!(default.description, "no limits");
    assert_eq!(default.tags, vec!["team-alpha"]);
    assert_eq!(default.policy, Default::default());
    assert!(
        default.key_hash.starts_with("crs:"),
        "not upgraded before first use"
    );

    let combo = key("combo").policy;
    assert_eq!(combo.concurrency.unwrap().max_in_flight, 5);
    let w = combo.rate_windows[0];
    assert_eq!(
        (w.duration_secs, w.max_requests, w.max_cost),
        (600, Some(100), Some(NanoUsd(1_000_000_000)))
    );
    assert_eq!(combo.budgets.daily, Some(NanoUsd(5_000_000_000)));
    assert_eq!(combo.budgets.total, Some(NanoUsd(50_000_000_000)));
    assert_eq!(
        combo.budgets.family_weekly.unwrap().limit,
        NanoUsd(20_000_000_000)
    );
    assert_eq!(combo.budgets.time_zone, Some(chrono_tz::Etc::GMTMinus8));
    assert_eq!(
        combo.models,
        ModelRule::Deny(vec!["claude-3-opus-20240229".into()])
    );
    assert_eq!(key("combo").tags, vec!["combo", "team-alpha"]);

    let legacy = key("rate-tokens-legacy").policy.rate_windows[0];
    assert_eq!(
        (legacy.duration_secs, legacy.max_tokens),
        (3600, Some(2500))
    );
    let weekly = key("weekly-opus").policy.budgets;
    assert_eq!(weekly.weekly_reset.weekday, chrono::Weekday::Wed);
    assert_eq!(weekly.weekly_reset.hour, 9);
    assert_eq!(
        key("claude-code-only").policy.clients,
        vec![ClientKind::ClaudeCode]
    );
    assert_eq!(key("service-rate").cost_multiplier, 0.5);
    assert_eq!(key("perm-gemini").policy.models, ModelRule::Allow(vec![]));
    assert!(key("perm-claude").policy.permissions.is_empty());
    assert!(matches!(
        key("activation-unused").policy.expiry,
        Expiry::Activation {
            amount: 12,
            activated_at: None,
            ..
        }
    ));
    assert!(matches!(
        key("activation-used").policy.expiry,
        Expiry::Activation {
            amount: 30,
            activated_at: Some(_),
            ..
        }
    ));
    let account_of = |label: &str| {
        let crs = by_label(m, "accounts", label)["id"].as_str().unwrap();
        store
            .import_link(&report.source_id, "account", crs)
            .unwrap()
            .unwrap()
            .local_id
    };
    let group = store
        .import_link(
            &report.source_id,
            "group",
            m["groups"][0]["id"].as_str().unwrap(),
        )
        .unwrap()
        .unwrap()
        .local_id;
    assert_eq!(
        key("bound-group").binding,
        KeyBinding::Group(claude_relay::domain::GroupId(group))
    );
    assert_eq!(
        key("bound-console").binding,
        KeyBinding::Account(claude_relay::domain::AccountId(account_of("B")))
    );
    assert_eq!(
        key("bound-oauth").binding,
        KeyBinding::Account(claude_relay::domain::AccountId(account_of("O")))
    );
}

fn check_accounts(store: &Store, report: &Report, m: &Value) {
    for a in m["accounts"].as_array().unwrap() {
        let link = store
            .import_link(&report.source_id, "account", a["id"].as_str().unwrap())
            .unwrap()
            .unwrap();
        let acc = store
            .get_account(claude_relay::domain::AccountId(link.local_id))
            .unwrap()
            .unwrap();
        let secret = a["upstream_secret"].as_str().unwrap();
        assert_eq!(acc.name, a["name"].as_str().unwrap());
        match a["label"].as_str().unwrap() {
            "O" => {
                assert_eq!(acc.kind, AccountKind::ClaudeOauth);
                assert_eq!(
                    acc.credentials.access_token.as_ref().unwrap().expose(),
                    secret
                );
                assert_eq!(
                    acc.credentials.refresh_token.as_ref().unwrap().expose(),
                    a["refresh_token"].as_str().unwrap()
                );
                assert_eq!(acc.routing.mode, AccountMode::Dedicated);
                assert_eq!(acc.priority, 5);
                assert_eq!(
                    acc.proxy.as_ref().unwrap().expose(),
                    "socks5://sock1:76b40d1fa701@127.0.0.1:19051"
                );
            }
            label => {
                // B's key is not an Anthropic key: CRS sent it as a Bearer
                // token, which the compatible kind does too.
                let kind = if label == "B" {
                    AccountKind::AnthropicCompatible
                } else {
                    AccountKind::AnthropicApiKey
                };
                assert_eq!(acc.kind, kind, "{label}");
                assert_eq!(acc.credentials.api_key.as_ref().unwrap().expose(), secret);
                assert_eq!(acc.base_url.as_deref(), Some("http://127.0.0.1:8787"));
                match label {
                    "B" => {
                        assert_eq!(
                            acc.proxy.as_ref().unwrap().expose(),
                            "http://fxproxy1:bc3ee54a577ec60f@127.0.0.1:18899"
                        );
                        assert_eq!(acc.routing.max_concurrency, Some(8));
                    }
                    "C" | "D" => {
                        assert_eq!(acc.routing.mode, AccountMode::GroupOnly);
                        assert_eq!(acc.routing.group_ids.len(), 1);
                        assert_eq!(acc.priority, 30);
                    }
                    _ => assert_eq!(acc.routing.mode, AccountMode::Shared),
                }
                if label == "D" {
                    assert!(acc
                        .routing
                        .model_mapping
                        .iter()
                        .any(|mm| mm.from == "claude-3-5-haiku-20241022"
                            && mm.to == "claude-haiku-4-5-20251001"));
                }
            }
        }
    }
}

fn check_usage(store: &Store, report: &Report, m: &Value) {
    let mut all = 0;
    for k in m["keys"].as_array().unwrap() {
        let key = our_key(store, report, k["id"].as_str().unwrap());
        let got = store.usage_total(&UsageSubject::Key(key.id), None).unwrap();
        let want = &k["client"]["ok_usage"];
        let label = k["label"].as_str().unwrap();
        assert_eq!(
            got.requests,
            want["requests"].as_u64().unwrap(),
            "{label} requests"
        );
        assert_eq!(
            got.input_tokens,
            want["input"].as_u64().unwrap(),
            "{label} input"
        );
        assert_eq!(
            got.output_tokens,
            want["output"].as_u64().unwrap(),
            "{label} output"
        );
        assert_eq!(
            got.cache_creation_tokens(),
            want["cache_create"].as_u64().unwrap(),
            "{label} cache creation"
        );
        assert_eq!(
            got.cache_read_tokens,
            want["cache_read"].as_u64().unwrap(),
            "{label}"
        );
        all += got.requests;
    }
    let global = store.usage_total(&UsageSubject::Global, None).unwrap();
    assert_eq!((all, global.requests), (154, 154));
    // Rated cost: CRS's micro-USD per key × model, summed ($0.853091 in floats).
    let billed = global.billed_cost.0 as f64 / 1e9;
    assert!((billed - 0.853091).abs() < 0.00001, "{billed}");
    // The hour CRS named 2026-11-26:23 (UTC+8) is 15:00 UTC.
    let hour = chrono::DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let in_hour = store
        .usage_total(
            &UsageSubject::Global,
            Some((hour, hour + chrono::Duration::hours(1))),
        )
        .unwrap();
    assert!(
        in_hour.requests > 0,
        "phase-2 requests land in their exact hour"
    );
}

#[tokio::test]
async fn wrong_encryption_key_fails_without_writing() {
    let redis = start_redis().await;
    let data_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_claude-relay"))
        .args([
            "import-redis",
            "--redis-url",
            &redis.url,
            "--crs-encryption-key",
            "not-the-key",
        ])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("RELAY_MASTER_KEY", MASTER_KEY)
        .env_remove("RELAY_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ENCRYPTION_KEY"));
    let store = open_store(data_dir.path());
    assert!(store.list_keys().unwrap().is_empty());
    assert!(store.legacy_sources().unwrap().is_empty());

    // --dry-run on a fresh directory creates nothing.
    let fresh = data_dir.path().join("fresh");
    let out = Command::new(env!("CARGO_BIN_EXE_claude-relay"))
        .args([
            "import-redis",
            "--dry-run",
            "--redis-url",
            &redis.url,
            "--crs-encryption-key",
            ENCRYPTION_KEY,
        ])
        .arg("--data-dir")
        .arg(&fresh)
        .env("RELAY_MASTER_KEY", MASTER_KEY)
        .env_remove("RELAY_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("dry run"));
    assert!(!fresh.exists());
}

/// A rerun after changes on both sides: CRS edits come over, local edits are
/// kept (a field changed on both sides is a conflict), a regenerated CRS key
/// gets its new legacy hash, a new CRS key is created, and only usage after
/// the first run's cutoff is added.
#[tokio::test]
async fn rerun_merges_changes_and_imports_only_new_usage() {
    let redis = start_redis().await;
    let m = manifest();
    let data_dir = tempfile::tempdir().unwrap();
    let store = open_store(data_dir.path());
    let first = import_into(Some(&store), &redis.url, false).await;
    let id_of = |label: &str| {
        by_label(&m, "keys", label)["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Local edits.
    let mut default = our_key(&store, &first, &id_of("default"));
    default.name = "renamed-here".into();
    store.put_key(&default).unwrap();
    let mut tagged = our_key(&store, &first, &id_of("tagged"));
    tagged.description = "edited here".into();
    store.put_key(&tagged).unwrap();

    // CRS edits (the test's own copy of the fixture; the importer only reads).
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let hset = |key: String, field: &'static str, value: String| {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key).arg(field).arg(value);
        cmd
    };
    let new_raw = format!("cr_{}", "ab".repeat(32));
    let new_hash = sha256_hex(&format!("{new_raw}{ENCRYPTION_KEY}"));
    for cmd in [
        hset(
            format!("apikey:{}", id_of("default")),
            "name",
            "renamed-in-crs".into(),
        ),
        hset(
            format!("apikey:{}", id_of("tagged")),
            "dailyCostLimit",
            "7".into(),
        ),
        hset(
            format!("apikey:{}", id_of("combo")),
            "apiKey",
            new_hash.clone(),
        ),
    ] {
        let _: () = cmd.query_async(&mut con).await.unwrap();
    }
    let extra_raw = format!("cr_{}", "cd".repeat(32));
    let extra_id = "0f0f0f0f-0000-4000-8000-000000000001";
    let _: () = redis::cmd("HSET")
        .arg(format!("apikey:{extra_id}"))
        .arg(&[
            ("id", extra_id),
            ("name", "created-after-first-run"),
            ("isActive", "true"),
            (
                "apiKey",
                &sha256_hex(&format!("{extra_raw}{ENCRYPTION_KEY}")),
            ),
            ("createdAt", "2026-11-26T16:00:00.000Z"),
        ])
        .query_async(&mut con)
        .await
        .unwrap();
    // Two more requests of key haiku-heavy, now (bucket names in UTC+8).
    let heavy = id_of("haiku-heavy");
    let model = "claude-haiku-4-5-20251001";
    let local = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let buckets = [
        format!("usage:{heavy}:model:alltime:{model}"),
        format!(
            "usage:{heavy}:model:monthly:{model}:{}",
            local.format("%Y-%m")
        ),
        format!(
            "usage:{heavy}:model:daily:{model}:{}",
            local.format("%Y-%m-%d")
        ),
        format!(
            "usage:{heavy}:model:hourly:{model}:{}",
            local.format("%Y-%m-%d:%H")
        ),
    ];
    for b in &buckets {
        for (field, n) in [
            ("requests", 2),
            ("inputTokens", 100),
            ("outputTokens", 10),
            ("ratedCostMicro", 500),
            ("realCostMicro", 500),
        ] {
            let _: () = redis::cmd("HINCRBY")
                .arg(b)
                .arg(field)
                .arg(n)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    }
    let heavy_key = our_key(&store, &first, &heavy);
    let before = store
        .usage_total(&UsageSubject::Key(heavy_key.id), None)
        .unwrap();

    let again = import_into(Some(&store), &redis.url, false).await;
    let (read, created, updated, _, _) = section(&again, "keys");
    assert_eq!((read, created, updated), (31, 1, 2), "{again}");
    assert_eq!(
        again
            .conflicts
            .iter()
            .map(|c| (c.record.as_str(), c.field.as_str()))
            .collect::<Vec<_>>(),
        vec![(format!("apikey:{}", id_of("default")).as_str(), "name")],
        "{again}"
    );
    assert_eq!(
        our_key(&store, &first, &id_of("default")).name,
        "renamed-here"
    );
    let tagged = our_key(&store, &first, &id_of("tagged"));
    assert_eq!(
        tagged.description, "edited here",
        "a local edit CRS did not touch stays"
    );
    assert_eq!(tagged.policy.budgets.daily, Some(NanoUsd(7_000_000_000)));

    // The regenerated key works with its new raw key, the old one no longer.
    let combo_raw = by_label(&m, "keys", "combo")["raw_key"].as_str().unwrap();
    assert_eq!(store.key_by_legacy(combo_raw).unwrap(), None);
    let combo = store.key_by_legacy(&new_raw).unwrap().unwrap();
    assert_eq!(combo.id, our_key(&store, &first, &id_of("combo")).id);
    let extra = store.key_by_legacy(&extra_raw).unwrap().unwrap();
    assert_eq!(extra.name, "created-after-first-run");

    // Usage: exactly the two new requests.
    let after = store
        .usage_total(&UsageSubject::Key(heavy_key.id), None)
        .unwrap();
    assert_eq!(after.requests - before.requests, 2);
    assert_eq!(after.input_tokens - before.input_tokens, 100);
    assert_eq!(after.billed_cost.0 - before.billed_cost.0, 500_000);
    assert_eq!(again.usage.requests, 2, "{again}");
}

/// `--only` imports just the sections named (the report lists only those),
/// accounts of platforms claude-relay has no adapter for are counted and
/// listed as skipped with the reason, and the CRS admin is named from a web
/// session when the cached credentials have expired (they live 24 h).
#[tokio::test]
async fn only_named_sections_and_other_platforms_reported_as_skipped() {
    let redis = start_redis().await;
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // The test's own copy of the fixture: accounts of two other platforms
    // (Gemini as a HASH, Bedrock as a JSON STRING, as CRS stores them), and
    // the admin's cached credentials gone (their TTL is 24 h in CRS).
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg("gemini_account:g-1")
        .arg(&["id", "g-1", "name", "gemini one"])
        .cmd("SADD")
        .arg("gemini_account:index")
        .arg("g-1")
        .cmd("SET")
        .arg("bedrock_account:b-1")
        .arg(r#"{"id":"b-1","name":"bedrock one"}"#)
        .cmd("DEL")
        .arg("session:admin_credentials")
        .query_async(&mut con)
        .await
        .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let store = open_store(data_dir.path());
    let run = |only: &str| {
        let mut opts = options(&redis.url, false);
        opts.only = Sections::parse(only).unwrap();
        opts
    };

    let report = import::run(Some(&store), &run("accounts"), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        report.sections.keys().collect::<Vec<_>>(),
        vec!["accounts"],
        "{report}"
    );
    let accounts = &report.sections["accounts"];
    assert_eq!((accounts.read, accounts.created), (7, 5), "{report}");
    let mut skipped: Vec<(&str, &str)> = accounts
        .skipped
        .iter()
        .map(|s| (s.record.as_str(), s.reason.as_str()))
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            (
                "bedrock_account:b-1",
                "Bedrock account: not imported (the importer does not map CRS Bedrock accounts yet); create it with createAccount"
            ),
            (
                "gemini_account:g-1",
                "Gemini account: claude-relay has no adapter for this platform"
            ),
        ]
    );
    // The fixture's admin web sessions (`session:{token}`) name the admin.
    assert!(
        report
            .notes
            .iter()
            .any(|n| n == "the CRS admin user is \"admin\""),
        "{report}"
    );
    assert!(store.list_keys().unwrap().is_empty());
    assert!(store.list_groups().unwrap().is_empty());
    assert_eq!(store.list_accounts().unwrap().len(), 5);

    let report = import::run(Some(&store), &run("groups,keys"), &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        report.sections.keys().collect::<Vec<_>>(),
        vec!["groups", "keys"]
    );
    assert_eq!(section(&report, "keys"), (30, 30, 0, 0, 0));
    assert_eq!(store.list_groups().unwrap().len(), 1);
    assert_eq!(
        store
            .usage_total(&UsageSubject::Global, None)
            .unwrap()
            .requests,
        0,
        "usage was not asked for"
    );

    let report = import::run(Some(&store), &run("usage"), &NoProgress)
        .await
        .unwrap();
    assert!(report.usage.requests > 0);
    assert_eq!(
        store
            .usage_total(&UsageSubject::Global, None)
            .unwrap()
            .requests,
        report.usage.requests
    );
}

/// An import interrupted in the middle of its usage (here by a usage
/// bucket of the wrong type, which fails the second batch's Redis read
/// after the first batch committed) and then rerun counts every request
/// exactly once: the same totals as one clean import, and the same budget
/// counters (a batch's spend is seeded with its usage, so the counters
/// match the usage after the interruption too).
#[tokio::test]
async fn interrupted_usage_import_rerun_counts_nothing_twice() {
    let redis = start_redis().await;
    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d")
        .to_string();
    let model = "claude-sonnet-4-5-20250929";
    // More keys than one usage batch holds, all created (so ordered) before the poisoned one.
    let extra = 300;
    let mut poisoned = String::new();
    for i in 0..=extra {
        let id = format!("00000000-0000-4000-8000-{i:012}");
        let created = if i == extra {
            poisoned = id.clone();
            "2026-06-01T00:00:00.000Z".to_string()
        } else {
            format!("2026-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60)
        };
        let hash = sha256_hex(&format!("cr_{i:064x}{ENCRYPTION_KEY}"));
        let _: () = redis::cmd("HSET")
            .arg(format!("apikey:{id}"))
            .arg(&[
                ("id", id.as_str()),
                ("name", &format!("extra-{i}")),
                ("isActive", "true"),
                ("apiKey", &hash),
                ("createdAt", &created),
                ("dailyCostLimit", "100"),
            ])
            .query_async(&mut con)
            .await
            .unwrap();
        for bucket in [
            format!("usage:{id}:model:alltime:{model}"),
            format!("usage:{id}:model:daily:{model}:{today}"),
        ] {
            let _: () = redis::cmd("HSET")
                .arg(bucket)
                .arg(&[
                    ("requests", "2"),
                    ("inputTokens", "100"),
                    ("ratedCostMicro", "700"),
                ])
                .query_async(&mut con)
                .await
                .unwrap();
        }
    }
    let bad = format!("usage:{poisoned}:model:daily:{model}:2026-11-20");
    let _: () = redis::cmd("SET")
        .arg(&bad)
        .arg("not a hash")
        .query_async(&mut con)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let failed = import::run(Some(&store), &options(&redis.url, false), &NoProgress).await;
    assert!(failed.is_err(), "the poisoned bucket stops the import");
    let partial = store.usage_total(&UsageSubject::Global, None).unwrap();
    assert!(partial.requests > 0, "the first batch committed");
    let (partial_total, _) = seeded(&store);
    assert_eq!(
        partial_total, partial.billed_cost.0,
        "the committed batch's spend is in the budgets with its usage"
    );

    let _: () = redis::cmd("DEL")
        .arg(&bad)
        .query_async(&mut con)
        .await
        .unwrap();
    import_into(Some(&store), &redis.url, false).await;
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = open_store(clean_dir.path());
    import_into(Some(&clean), &redis.url, false).await;
    let rerun = store.usage_total(&UsageSubject::Global, None).unwrap();
    let once = clean.usage_total(&UsageSubject::Global, None).unwrap();
    assert!(rerun.requests > partial.requests);
    assert_eq!(rerun, once, "interrupted + rerun = one clean import");
    assert_eq!(once.requests, 154 + 2 * (extra as u64 + 1));
    // Every imported cent is in the total budgets, today's in the daily ones.
    let (total, daily) = seeded(&clean);
    assert_eq!(total, once.billed_cost.0);
    assert!(daily >= 700_000 * (extra as u64 + 1), "{daily}");
    assert_eq!(
        seeded(&store),
        (total, daily),
        "interrupted + rerun seeds as one import"
    );
    // And a further rerun adds nothing.
    let again = import_into(Some(&store), &redis.url, false).await;
    assert_eq!(again.usage.requests, 0, "{again}");
    assert_eq!(
        store.usage_total(&UsageSubject::Global, None).unwrap(),
        once
    );
    assert_eq!(
        seeded(&store),
        (total, daily),
        "a rerun seeds nothing again"
    );
}

/// Sums of the seeded budget counters: (lifetime totals, daily counters).
fn seeded(store: &Store) -> (u64, u64) {
    let keys: Vec<claude_relay::limits::KeySnapshot> = store.limit_counters().unwrap();
    keys.iter()
        .fold((0, 0), |(t, d), k| (t + k.total.0, d + k.daily.used.0))
}
