//! Key exports end to end, through the real router over real HTTP and
//! WebSocket, on real sled stores in temp dirs: the migration round trip
//! into a fresh relay (the same raw keys authenticate), every format parsed
//! back, masking wiring, filters against the key list, one-time downloads,
//! cancel, progress over graphql-transport-ws, restart recovery, roles and
//! the offline CLI.

mod common;
mod graphql_support;
mod ws_support;

use chrono::Utc;
use claude_relay::domain::{ApiKey, KeyBinding, KeyId, KeyStatus};
use claude_relay::store::{ExportRecord, ExportState, Store, StoreOptions};
use common::{simple_body, TestRelay};
use graphql_support::{code, data, Harness};
use serde_json::{json, Value};
use std::time::Duration;
use ws_support::Ws;

const START: &str =
    "mutation($i: StartExportInput!) { startExport(input: $i) { id export { state } } }";
const GET: &str =
    "query($id: ID!) { export(id: $id) { id state processed total bytes errors fileName } }";
const DOWNLOAD: &str =
    "mutation($id: ID!) { createExportDownload(input: {id: $id}) { url expiresAt } }";
const IMPORT: &str = "mutation($i: ImportApiKeysInput!) { importApiKeys(input: $i) { dryRun created updated unchanged conflicts unresolvedBindings items { id name outcome message } } }";
const KEY: &str = "query($id: ID!) { apiKey(id: $id) { name description tags status expiresAt costMultiplier policy boundAccountId boundGroupId displayPrefix } }";

/// Polls `export(id)` until a terminal state.
async fn wait_done(
    post: impl Fn(Value) -> futures::future::BoxFuture<'static, Value>,
    id: &str,
) -> Value {
    for _ in 0..600 {
        let v = post(json!({ "id": id })).await;
        let e = v["data"]["export"].clone();
        match e["state"].as_str() {
            Some("COMPLETED" | "FAILED" | "CANCELLED") => return e,
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            None => panic!("no export: {v}"),
        }
    }
    panic!("export {id} never finished");
}

async fn relay_export(relay: &TestRelay, input: Value) -> String {
    let v = relay.gql(START, json!({ "i": input })).await;
    let id = v["startExport"]["id"].as_str().unwrap().to_string();
    let (base, token, http) = (
        relay.base_url.clone(),
        relay.admin_token.clone(),
        relay.http.clone(),
    );
    let e = wait_done(
        move |vars| {
            let (base, token, http) = (base.clone(), token.clone(), http.clone());
            Box::pin(async move {
                http.post(format!("{base}/graphql"))
                    .bearer_auth(token)
                    .json(&json!({ "query": GET, "variables": vars }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap()
            })
        },
        &id,
    )
    .await;
    assert_eq!(e["state"], "COMPLETED", "{e}");
    let d = relay.gql(DOWNLOAD, json!({ "id": id })).await;
    let url = d["createExportDownload"]["url"].as_str().unwrap();
    let resp = relay
        .http
        .get(format!("{}{url}", relay.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

async fn harness_export(h: &Harness, token: &str, input: Value) -> (String, Value) {
    let v = h.post(Some(token), START, json!({ "i": input })).await;
    let id = data(&v)["startExport"]["id"].as_str().unwrap().to_string();
    let (url, token2) = (h.url(), token.to_string());
    let e = wait_done(
        move |vars| {
            let (url, token) = (url.clone(), token2.clone());
            Box::pin(async move {
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({ "query": GET, "variables": vars }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap()
            })
        },
        &id,
    )
    .await;
    (id, e)
}

async fn harness_download(h: &Harness, token: &str, id: &str) -> reqwest::Response {
    let d = h.post(Some(token), DOWNLOAD, json!({ "id": id })).await;
    let url = data(&d)["createExportDownload"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    reqwest::get(format!("http://{}{url}", h.addr))
        .await
        .unwrap()
}

fn stored_key(name: &str, i: u64) -> ApiKey {
    let now = Utc::now();
    ApiKey {
        id: KeyId::generate(),
        name: name.into(),
        description: format!("key {i}"),
        key_hash: format!("{i:064x}"),
        display_prefix: "cr_abcd…wxyz".into(),
        status: KeyStatus::Active,
        tags: if i.is_multiple_of(2) {
            vec!["even".into()]
        } else {
            vec![]
        },
        created_at: now,
        updated_at: now,
        last_used_at: None,
        expires_at: None,
        cost_multiplier: 1.0,
        binding: KeyBinding::None,
        policy: Default::default(),
    }
}

fn export_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("exports"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn migration_round_trip_keeps_keys_working_with_the_same_settings() {
    let a = TestRelay::start().await;
    let account = a.add_account("primary", "sk-ant-api03-export-a", 1).await;
    let policy = json!({"rate_windows": [{"duration_secs": 3600, "max_requests": 50}], "budgets": {"monthly": 5000000000u64}});
    let mut keys = Vec::new();
    for (i, bound) in [(0, false), (1, true), (2, false)] {
        let mut input = json!({
            "name": format!("key-{i}"),
            "description": format!("owner alice{i}@example.com"),
            "tags": ["team-x", format!("n{i}")],
            "costMultiplier": 1.5,
            "policy": policy,
            "expiresAt": "2099-01-01T00:00:00Z",
        });
        if bound {
            input["boundAccountId"] = json!(account);
        }
        let v = a
            .gql(
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
                json!({ "i": input }),
            )
            .await;
        keys.push((
            v["createApiKey"]["apiKey"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
            v["createApiKey"]["secret"].as_str().unwrap().to_string(),
        ));
    }
    let resp = a
        .messages(&keys[0].1, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let file = relay_export(&a, json!({"format": "NDJSON", "variant": "MIGRATION"})).await;
    assert_eq!(file.lines().count(), 3);
    for (_, secret) in &keys {
        assert!(
            !file.contains(secret.as_str()),
            "a raw key leaked into the export"
        );
        assert!(file.contains(&claude_relay::domain::sha256_hex(secret)));
    }
    let mut settings = Vec::new();
    for (id, _) in &keys {
        settings.push(a.gql(KEY, json!({ "id": id })).await["apiKey"].clone());
    }

    let b = TestRelay::start().await;
    let dry = b
        .gql(IMPORT, json!({"i": {"data": file, "dryRun": true}}))
        .await["importApiKeys"]
        .clone();
    assert_eq!(
        (
            dry["dryRun"].clone(),
            dry["created"].clone(),
            dry["unresolvedBindings"].clone()
        ),
        (json!(true), json!(3), json!(1)),
        "{dry}"
    );
    let resp = b
        .messages(&keys[0].1, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a dry run writes nothing");

    // An account of the same name on the target resolves the binding by name.
    let b_account = b.add_account("primary", "sk-ant-api03-export-b", 1).await;
    let done = b.gql(IMPORT, json!({"i": {"data": file}})).await["importApiKeys"].clone();
    assert_eq!(
        (done["created"].clone(), done["unresolvedBindings"].clone()),
        (json!(3), json!(0)),
        "{done}"
    );
    let again = b.gql(IMPORT, json!({"i": {"data": file}})).await["importApiKeys"].clone();
    assert_eq!(
        (
            again["unchanged"].clone(),
            again["created"].clone(),
            again["updated"].clone()
        ),
        (json!(3), json!(0), json!(0)),
        "{again}"
    );

    for ((id, secret), before) in keys.iter().zip(&settings) {
        let resp = b
            .messages(secret, &simple_body(false))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "key {id} authenticates on the target");
        let mut after = b.gql(KEY, json!({ "id": id })).await["apiKey"].clone();
        let mut before = before.clone();
        if before["boundAccountId"] == json!(account) {
            assert_eq!(after["boundAccountId"], json!(b_account));
            before["boundAccountId"] = Value::Null;
            after["boundAccountId"] = Value::Null;
        }
        assert_eq!(after, before);
    }
}

#[tokio::test]
async fn every_format_parses_back_with_masked_text_and_usage() {
    let relay = TestRelay::start().await;
    relay
        .add_account("a", "sk-ant-api03-export-formats", 1)
        .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let v = relay
            .gql(
                "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
                json!({"i": {"name": format!("=cmd {i}"), "description": format!("mail bob{i}@example.com token sk-ant-api03-abcDEF123456ghiJKL789012mnoPQR{i}")}}),
            )
            .await;
        ids.push((
            v["createApiKey"]["apiKey"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
            v["createApiKey"]["secret"].as_str().unwrap().to_string(),
        ));
    }
    let resp = relay
        .messages(&ids[0].1, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    relay.wait_key_requests(&ids[0].0, 1).await;
    let input = |format: &str| json!({"format": format, "usagePeriod": "THIS_MONTH", "byModel": true, "masking": "FULL", "csvBom": true});

    let json_file = relay_export(&relay, input("JSON")).await;
    let rows: Vec<Value> = serde_json::from_str(&json_file).unwrap();
    let ndjson = relay_export(&relay, input("NDJSON")).await;
    let nd_rows: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows, nd_rows);
    assert_eq!(rows.len(), 3);
    let used = rows.iter().find(|r| r["id"] == json!(ids[0].0)).unwrap();
    assert_eq!(used["usage"]["lifetime"]["requests"], 1);
    assert_eq!(used["usage"]["period"]["requests"], 1);
    let by_model = used["usage"]["period"]["by_model"].as_object().unwrap();
    assert_eq!(by_model.len(), 1, "{used}");
    for r in &rows {
        let d = r["description"].as_str().unwrap();
        assert!(
            d.contains("[REDACTED:email]") && d.contains("[REDACTED:anthropic_api_key]"),
            "{d}"
        );
        assert!(!d.contains("example.com"));
    }

    let csv_file = relay_export(&relay, input("CSV")).await;
    assert!(csv_file.starts_with('\u{feff}'), "BOM for Excel");
    let mut reader = csv::Reader::from_reader(csv_file.trim_start_matches('\u{feff}').as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_string)
        .collect();
    for col in [
        "id",
        "name",
        "budgets.monthly_usd",
        "binding.kind",
        "usage.period.cost_usd",
    ] {
        assert!(header.contains(&col.to_string()), "{col} in {header:?}");
    }
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 3);
    let name_col = header.iter().position(|h| h == "name").unwrap();
    for r in &records {
        assert!(
            r[name_col].starts_with("'="),
            "formula neutralised: {:?}",
            &r[name_col]
        );
    }
    assert!(!csv_file.contains("bob0@example.com"));
}

#[tokio::test]
async fn filters_select_the_same_keys_as_the_key_list() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    for i in 0..30u64 {
        let mut k = stored_key(&format!("k{i:02}"), i);
        if i.is_multiple_of(5) {
            k.status = KeyStatus::Disabled;
        }
        if i.is_multiple_of(3) {
            k.tags.push("prod".into());
        }
        h.store.create_key(&k).unwrap();
    }
    for filter in [
        json!({"tag": "prod"}),
        json!({"status": ["DISABLED"]}),
        json!({"search": "k1", "status": ["ACTIVE", "DISABLED"]}),
        json!({}),
    ] {
        let list = h
            .post(
                Some(&token),
                "query($f: ApiKeyFilter) { apiKeys(first: 500, filter: $f) { edges { node { id } } } }",
                json!({ "f": filter }),
            )
            .await;
        let mut want: Vec<String> = data(&list)["apiKeys"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_string())
            .collect();
        let (id, e) = harness_export(
            &h,
            &token,
            json!({"format": "NDJSON", "filter": filter, "fields": ["id"]}),
        )
        .await;
        assert_eq!(e["state"], "COMPLETED");
        let body = harness_download(&h, &token, &id)
            .await
            .text()
            .await
            .unwrap();
        let mut got: Vec<String> = body
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        want.sort();
        got.sort();
        assert!(!want.is_empty());
        assert_eq!(got, want, "filter {filter}");
        assert_eq!(e["total"].as_u64(), Some(want.len() as u64));
    }
}

#[tokio::test]
async fn download_links_work_once_and_carry_the_file() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    h.store.create_key(&stored_key("only", 1)).unwrap();
    let (id, e) = harness_export(&h, &token, json!({"format": "CSV"})).await;
    assert_eq!(e["state"], "COMPLETED");
    let d = h.post(Some(&token), DOWNLOAD, json!({ "id": id })).await;
    let url = data(&d)["createExportDownload"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with("/exports/download/"));
    assert!(!url.contains(&token), "never a session token in a URL");
    let resp = reqwest::get(format!("http://{}{url}", h.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cd = resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.starts_with("attachment; filename=\"keys-") && cd.ends_with(".csv\""),
        "{cd}"
    );
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = resp.text().await.unwrap();
    assert_eq!(body.lines().count(), 2, "{body}");
    let again = reqwest::get(format!("http://{}{url}", h.addr))
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "a download link works once");
    let forged = reqwest::get(format!(
        "http://{}/exports/download/{}",
        h.addr,
        "0".repeat(64)
    ))
    .await
    .unwrap();
    assert_eq!(forged.status(), 404);
}

#[tokio::test]
async fn cancelling_mid_export_leaves_no_file_presented_as_complete() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    for i in 0..6000u64 {
        h.store
            .create_key(&stored_key(&format!("bulk-{i}"), i))
            .unwrap();
    }
    let v = h
        .post(
            Some(&token),
            START,
            json!({"i": {"format": "JSON", "usagePeriod": "THIS_MONTH", "masking": "PSEUDONYM"}}),
        )
        .await;
    let id = data(&v)["startExport"]["id"].as_str().unwrap().to_string();
    // Wait until rows are being written, then cancel.
    let mut seen_mid = false;
    for _ in 0..2000 {
        let e = h.post(Some(&token), GET, json!({ "id": id })).await;
        let e = &data(&e)["export"];
        let (p, t) = (
            e["processed"].as_u64().unwrap(),
            e["total"].as_u64().unwrap(),
        );
        if e["state"] == "RUNNING" && p > 0 && p < t {
            seen_mid = true;
            break;
        }
        assert_ne!(
            e["state"], "COMPLETED",
            "the export finished before it could be cancelled"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(seen_mid, "never saw the export mid-way");
    let c = h
        .post(
            Some(&token),
            "mutation($id: ID!) { cancelExport(input: {id: $id}) { export { id } } }",
            json!({ "id": id }),
        )
        .await;
    data(&c);
    let (_, e) = harness_export_wait(&h, &token, &id).await;
    assert_eq!(e["state"], "CANCELLED", "{e}");
    assert!(e["fileName"].is_null());
    assert!(e["processed"].as_u64().unwrap() < 6000);
    assert!(
        export_files(&h.config.data_dir).is_empty(),
        "{:?}",
        export_files(&h.config.data_dir)
    );
    let d = h.post(Some(&token), DOWNLOAD, json!({ "id": id })).await;
    assert_eq!(code(&d), "CONFLICT");
}

async fn harness_export_wait(h: &Harness, token: &str, id: &str) -> (String, Value) {
    for _ in 0..1000 {
        let v = h.post(Some(token), GET, json!({ "id": id })).await;
        let e = data(&v)["export"].clone();
        if matches!(
            e["state"].as_str(),
            Some("COMPLETED" | "FAILED" | "CANCELLED")
        ) {
            return (id.to_string(), e);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("export never ended");
}

#[tokio::test]
async fn only_writers_export_and_only_owners_migrate() {
    let h = Harness::start().await;
    h.add_admin(
        "viewer",
        "viewer-password-1",
        claude_relay::domain::Role::Viewer,
    );
    h.add_admin(
        "admin2",
        "admin-password-1",
        claude_relay::domain::Role::Admin,
    );
    let viewer = h.login("viewer", "viewer-password-1").await;
    let admin = h.login("admin2", "admin-password-1").await;
    for t in [&viewer, &admin] {
        let v = h
            .post(
                Some(t),
                START,
                json!({"i": {"format": "JSON", "variant": "MIGRATION"}}),
            )
            .await;
        assert_eq!(code(&v), "FORBIDDEN");
        let v = h
            .post(
                Some(t),
                IMPORT,
                json!({"i": {"data": "[]", "dryRun": true}}),
            )
            .await;
        assert_eq!(code(&v), "FORBIDDEN");
    }
    let v = h
        .post(
            Some(&viewer),
            START,
            json!({"i": {"format": "JSON", "masking": "NONE"}}),
        )
        .await;
    assert_eq!(code(&v), "FORBIDDEN", "a viewer starts no export at all");
    let v = h
        .post(Some(&viewer), START, json!({"i": {"format": "JSON"}}))
        .await;
    assert_eq!(code(&v), "FORBIDDEN", "the VIEWER role is read-only");
    let v = h
        .post(Some(&admin), START, json!({"i": {"format": "JSON"}}))
        .await;
    data(&v);
    let owner = h.owner_token().await;
    let v = h
        .post(
            Some(&owner),
            START,
            json!({"i": {"format": "CSV", "variant": "MIGRATION"}}),
        )
        .await;
    assert_eq!(
        code(&v),
        "BAD_USER_INPUT",
        "migration exports are JSON or NDJSON"
    );
}

#[tokio::test]
async fn progress_arrives_in_order_over_a_websocket_and_ends_terminal() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    for i in 0..3000u64 {
        h.store
            .create_key(&stored_key(&format!("p-{i}"), i))
            .unwrap();
    }
    let mut ws = Ws::connect(h.addr).await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
        .await;
    assert_eq!(ws.recv_json().await["type"], "connection_ack");
    let v = h
        .post(
            Some(&token),
            START,
            json!({"i": {"format": "CSV", "usagePeriod": "LAST_30_DAYS"}}),
        )
        .await;
    let id = data(&v)["startExport"]["id"].as_str().unwrap().to_string();
    ws.send(json!({ "id": "p", "type": "subscribe", "payload": {
        "query": "subscription($id: ID!) { exportProgress(id: $id) { id state processed total bytes rate etaSeconds } }",
        "variables": { "id": id } } }))
        .await;
    let mut events = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.recv_json())
            .await
            .unwrap();
        match msg["type"].as_str() {
            Some("next") => {
                assert!(msg["payload"].get("errors").is_none(), "{msg}");
                events.push(msg["payload"]["data"]["exportProgress"].clone());
            }
            Some("complete") => break,
            other => panic!("unexpected {other:?}: {msg}"),
        }
    }
    assert!(!events.is_empty());
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["state"], "COMPLETED", "{states:?}");
    assert_eq!(last["processed"], 3000);
    assert_eq!(last["total"], 3000);
    let order = |s: &str| {
        ["QUEUED", "RUNNING", "COMPLETED"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    for pair in events.windows(2) {
        assert!(
            pair[0]["processed"].as_u64() <= pair[1]["processed"].as_u64(),
            "{events:?}"
        );
        assert!(pair[0]["bytes"].as_u64() <= pair[1]["bytes"].as_u64());
        assert!(
            order(pair[0]["state"].as_str().unwrap()) <= order(pair[1]["state"].as_str().unwrap())
        );
    }
    assert!(
        states[..states.len() - 1].iter().all(|s| *s != "COMPLETED"),
        "one terminal event, last"
    );
}

#[tokio::test]
async fn an_export_interrupted_by_a_crash_is_failed_after_restart() {
    let relay = TestRelay::start().await;
    let (sim, dir) = relay.stop().await;
    let config = common::test_config(dir.path());
    let id = uuid::Uuid::now_v7();
    let partial = dir.path().join("exports").join(format!("{id}.partial"));
    {
        let mut store = None;
        for _ in 0..100 {
            match Store::open(&StoreOptions {
                data_dir: config.data_dir.clone(),
                master_key: config.master_key.clone(),
                master_key_file: config.master_key_path(),
                cache_capacity_bytes: 8 << 20,
            }) {
                Ok(s) => {
                    store = Some(s);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let store = store.expect("store reopens");
        let now = Utc::now();
        store
            .put_export(&ExportRecord {
                id,
                state: ExportState::Running,
                spec: json!({"format": "csv"}),
                requested_by: "admin".into(),
                processed: 100,
                total: 1000,
                bytes: 4096,
                errors: vec![],
                file_name: None,
                created_at: now,
                started_at: Some(now),
                finished_at: None,
                expires_at: now + chrono::Duration::hours(1),
            })
            .unwrap();
        std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
        std::fs::write(&partial, b"id,name\n1,half").unwrap();
        store.flush().await.unwrap();
    }
    let relay = TestRelay::start_on(sim, dir, |_| {}).await;
    let e = relay.gql(GET, json!({ "id": id.to_string() })).await["export"].clone();
    assert_eq!(e["state"], "FAILED", "{e}");
    assert!(
        e["errors"].to_string().contains("interrupted by restart"),
        "{e}"
    );
    assert!(!partial.exists(), "the partial file is removed");
}

#[tokio::test]
async fn offline_cli_exports_a_stopped_store_and_refuses_a_locked_one() {
    let dir = tempfile::tempdir().unwrap();
    let master = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let opts = StoreOptions {
        data_dir: dir.path().to_path_buf(),
        master_key: Some(master.into()),
        master_key_file: dir.path().join("master.key"),
        cache_capacity_bytes: 8 << 20,
    };
    let bin = env!("CARGO_BIN_EXE_claude-relay");
    let out = dir.path().join("keys.csv");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("RELAY_MASTER_KEY", master)
            .env("RELAY_DATA_DIR", dir.path())
            .env_remove("RELAY_CONFIG")
            .output()
            .unwrap()
    };
    let export_args = [
        "export",
        "keys",
        "--format",
        "csv",
        "--filter",
        "tag=even",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    {
        let store = Store::open(&opts).unwrap();
        for i in 0..250u64 {
            let mut k = stored_key(&format!("cli-{i}"), i);
            k.description = format!("mail carol{i}@example.com");
            store.create_key(&k).unwrap();
        }
        store.flush().await.unwrap();
        let locked = run(&export_args);
        assert!(!locked.status.success());
        let err = String::from_utf8_lossy(&locked.stderr);
        assert!(err.contains("in use by a running claude-relay"), "{err}");
        assert!(!out.exists());
    }
    let done = run(&export_args);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header = reader.headers().unwrap().clone();
    let desc = header.iter().position(|h| h == "description").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 125);
    assert!(
        rows.iter().all(|r| !r[desc].contains("@example.com")),
        "masked by default"
    );

    // A migration export imports offline into a fresh data dir, idempotently.
    let mig = dir.path().join("keys.ndjson");
    let done = run(&[
        "export",
        "keys",
        "--format",
        "ndjson",
        "--migration",
        "--out",
        mig.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let target = tempfile::tempdir().unwrap();
    let import = |dry: bool| {
        let mut args = vec!["import", "keys", "--in", mig.to_str().unwrap()];
        if dry {
            args.push("--dry-run");
        }
        let o = std::process::Command::new(bin)
            .args(&args)
            .env("RELAY_MASTER_KEY", master)
            .env("RELAY_DATA_DIR", target.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    assert_eq!(import(true)["created"], 250);
    assert_eq!(import(false)["created"], 250);
    assert_eq!(import(false)["unchanged"], 250);
    let store = Store::open(&StoreOptions {
        data_dir: target.path().to_path_buf(),
        master_key_file: target.path().join("master.key"),
        ..opts
    })
    .unwrap();
    assert!(store.key_by_hash(&format!("{:064x}", 7)).unwrap().is_some());
}

#[tokio::test]
async fn the_cli_exports_through_a_running_server() {
    let relay = TestRelay::start().await;
    for i in 0..5 {
        relay.add_key(&format!("online-{i}")).await;
    }
    let out = relay.data_dir.path().join("online.json");
    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_claude-relay"))
        .args([
            "export",
            "keys",
            "--server",
            &relay.base_url,
            "--format",
            "json",
        ])
        .args([
            "--filter",
            "search=online-",
            "--usage-period",
            "this_month",
            "--quiet",
        ])
        .arg("--out")
        .arg(&out)
        .env("RELAY_ADMIN_TOKEN", &relay.admin_token)
        .output()
        .await
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["usage"]["period"]["requests"] == 0));
    assert!(!relay.data_dir.path().join("online.json.partial").exists());
}
