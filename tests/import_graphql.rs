//! The CRS import through the admin API of a running relay: `importRedis`
//! is OWNER-only, its progress and report arrive over the
//! `redisImportProgress` subscription (real WebSocket), and the imported
//! keys, accounts and seeded budgets take effect in that relay at once — a
//! raw `cr_...` key refused before the import (and negatively cached) works
//! right after, without a restart. A rerun creates nothing; a wrong
//! ENCRYPTION_KEY fails the job without echoing the key.

mod common;
mod crs_support;
mod ws_support;

use argon2::password_hash::{PasswordHasher, SaltString};
use claude_relay::domain::{Admin, AdminId, Role};
use claude_relay::sim::SimUpstream;
use claude_relay::store::{Store, StoreOptions};
use crs_support::{by_label, manifest, start_redis, ENCRYPTION_KEY, MASTER_KEY};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use ws_support::Ws;

const OPERATOR: &str = "operator";
const OPERATOR_PASSWORD: &str = "operator-password-123";

const START: &str = "mutation($input: ImportRedisInput!) { importRedis(input: $input) { import { id state dryRun startedBy } } }";

const JOB_FIELDS: &str = "id state phase done total error report { dryRun source notes warnings \
     conflicts { record field } sections { name read created updated unchanged skipped { record reason } } \
     usage { requests inputTokens billedCost hourlyBuckets } text }";

/// Creates the owner (as the relay's bootstrap would) and an ADMIN-role
/// operator in a data dir before the relay opens it.
fn add_admins(data_dir: &std::path::Path) {
    let store = Store::open(&StoreOptions {
        data_dir: data_dir.to_path_buf(),
        master_key: Some(MASTER_KEY.into()),
        master_key_file: data_dir.join("master.key"),
        cache_capacity_bytes: 8 * 1024 * 1024,
    })
    .unwrap();
    for (username, password, role) in [
        (common::ADMIN_USER, common::ADMIN_PASSWORD, Role::Owner),
        (OPERATOR, OPERATOR_PASSWORD, Role::Admin),
    ] {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string();
        let now = chrono::Utc::now();
        store
            .put_admin(&Admin {
                id: AdminId::generate(),
                username: username.into(),
                password_hash: hash,
                role,
                created_at: now,
                password_changed_at: now,
                disabled: false,
            })
            .unwrap();
    }
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error code: {v}"))
}

/// Follows a job over the subscription until it completes; every pushed item.
async fn follow(relay: &common::TestRelay, id: &str) -> Vec<Value> {
    let mut ws = Ws::connect(relay.addr).await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", relay.admin_token) } }))
        .await;
    assert_eq!(ws.recv_json().await["type"], "connection_ack");
    ws.send(json!({ "id": "p", "type": "subscribe", "payload": {
        "query": format!("subscription($id: ID!) {{ redisImportProgress(id: $id) {{ {JOB_FIELDS} }} }}"),
        "variables": { "id": id } } }))
        .await;
    let mut items = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.recv_json())
            .await
            .expect("the import ended within a minute");
        match msg["type"].as_str() {
            Some("next") => {
                assert!(msg["payload"].get("errors").is_none(), "{msg}");
                items.push(msg["payload"]["data"]["redisImportProgress"].clone());
            }
            Some("complete") => return items,
            _ => panic!("unexpected message {msg}"),
        }
    }
}

fn section<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["report"]["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no section {name}: {job}"))
}

#[tokio::test]
async fn owners_import_into_the_running_relay_with_progress() {
    let redis = start_redis().await;
    let m = manifest();
    let data_dir = tempfile::tempdir().unwrap();
    add_admins(data_dir.path());
    let sim = SimUpstream::new()
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let relay = common::TestRelay::start_on(sim, data_dir, |_| {}).await;
    let input = json!({ "input": { "redisUrl": redis.url, "crsEncryptionKey": ENCRYPTION_KEY } });

    // Before the import the CRS key is unknown (and now negatively cached).
    let default_key = by_label(&m, "keys", "default")["raw_key"]
        .as_str()
        .unwrap()
        .to_string();
    let hello = json!({"model": "claude-sonnet-4-5-20250929", "max_tokens": 16,
                       "messages": [{"role": "user", "content": "hello from a migrated key"}]});
    let resp = relay.messages(&default_key, &hello).send().await.unwrap();
    assert_eq!(resp.status(), 401);

    // Only an OWNER may import, or even look at an import.
    assert_eq!(
        code(&relay.gql_as(None, START, input.clone()).await),
        "UNAUTHENTICATED"
    );
    let operator = relay.login(OPERATOR, OPERATOR_PASSWORD).await;
    let refused = relay.gql_as(Some(&operator), START, input.clone()).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    let bad = json!({ "input": { "redisUrl": "http://127.0.0.1:1", "crsEncryptionKey": ENCRYPTION_KEY } });
    assert_eq!(
        code(&relay.gql_as(Some(&relay.admin_token), START, bad).await),
        "BAD_USER_INPUT"
    );

    let started = relay.gql(START, input.clone()).await;
    let job = &started["importRedis"]["import"];
    assert_eq!(job["startedBy"], common::ADMIN_USER);
    assert_eq!(job["dryRun"], false);
    let id = job["id"].as_str().unwrap().to_string();
    let peek = relay
        .gql_as(
            Some(&operator),
            "query($id: ID!) { redisImport(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&peek), "FORBIDDEN");

    let items = follow(&relay, &id).await;
    let last = items.last().unwrap();
    assert_eq!(last["state"], "SUCCEEDED", "{last}");
    for item in &items[..items.len() - 1] {
        assert_eq!(item["state"], "RUNNING", "only the last item ends the job");
    }
    // The last phase is usage, finished: one step per CRS key and account with usage.
    assert_eq!(last["phase"], "usage");
    assert!(last["total"].as_u64().unwrap() > 0);
    assert_eq!(last["done"], last["total"]);
    for (name, created) in [("keys", 30), ("accounts", 5), ("groups", 1)] {
        assert_eq!(section(last, name)["created"], created, "{name}");
    }
    let notes = last["report"]["notes"].to_string();
    assert!(
        notes.contains(r#"\"admin\""#),
        "the CRS admin is named: {notes}"
    );
    assert!(last["report"]["usage"]["requests"].as_u64().unwrap() > 0);
    assert!(last["report"]["text"]
        .as_str()
        .unwrap()
        .contains("Import from redis://127.0.0.1"));

    // Same relay, no restart: the raw key works and reaches upstream with an
    // imported account's decrypted secret (pointed at the simulator here,
    // CRS's mock upstream being gone).
    let accounts = relay
        .gql(
            "{ accounts(first: 50) { edges { node { id kind } } } }",
            json!({}),
        )
        .await;
    for edge in accounts["accounts"]["edges"].as_array().unwrap() {
        if edge["node"]["kind"] == "CLAUDE_OAUTH" {
            continue; // dedicated to one key; not used here
        }
        relay
            .gql(
                "mutation($input: UpdateAccountInput!) { updateAccount(input: $input) { account { id } } }",
                json!({ "input": { "id": edge["node"]["id"], "baseUrl": relay.sim.base_url(), "proxy": null } }),
            )
            .await;
    }
    relay.sim.sim.set_recording(true);
    let resp = relay.messages(&default_key, &hello).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the migrated key works at once");
    let secrets: Vec<String> = ["A", "B"]
        .into_iter()
        .map(|l| {
            by_label(&m, "accounts", l)["upstream_secret"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let seen: Vec<String> = relay
        .sim
        .sim
        .requests()
        .into_iter()
        .filter_map(|r| r.credential)
        .collect();
    assert!(
        !seen.is_empty() && seen.iter().all(|c| secrets.contains(c)),
        "a shared imported account served with its decrypted secret: {seen:?}"
    );
    // The spend CRS recorded went into the live budget counters.
    let total_cost = by_label(&m, "keys", "total-cost")["raw_key"]
        .as_str()
        .unwrap();
    let resp = relay.messages(total_cost, &hello).send().await.unwrap();
    assert_eq!(
        resp.status(),
        402,
        "CRS spend was seeded into the running relay's total budget"
    );
    let disabled = m["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["final_state"] == "disabled")
        .unwrap();
    let resp = relay
        .messages(disabled["raw_key"].as_str().unwrap(), &hello)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // A rerun creates nothing and moves no usage twice.
    let again = relay.gql(START, input.clone()).await;
    let id2 = again["importRedis"]["import"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(id2, id);
    let last = follow(&relay, &id2).await.pop().unwrap();
    assert_eq!(last["state"], "SUCCEEDED", "{last}");
    for name in ["keys", "accounts", "groups"] {
        assert_eq!(section(&last, name)["created"], 0, "{name}");
    }
    assert_eq!(last["report"]["usage"]["requests"], 0, "{last}");
    assert_eq!(last["report"]["conflicts"], json!([]));

    // A wrong ENCRYPTION_KEY fails the job before writing; the key is not echoed.
    let wrong =
        json!({ "input": { "redisUrl": redis.url, "crsEncryptionKey": "not-the-key-0123456789" } });
    let started = relay.gql(START, wrong).await;
    let id3 = started["importRedis"]["import"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let last = follow(&relay, &id3).await.pop().unwrap();
    assert_eq!(last["state"], "FAILED");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("ENCRYPTION_KEY"), "{error}");
    assert!(!error.contains("not-the-key-0123456789"), "{error}");
    assert_eq!(last["report"], Value::Null);
    // The finished job stays readable.
    let read = relay
        .gql(
            &format!("query($id: ID!) {{ redisImport(id: $id) {{ {JOB_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await;
    assert_eq!(read["redisImport"]["state"], "SUCCEEDED");

    let (sim, _dir) = relay.stop().await;
    sim.shutdown().await;
}
