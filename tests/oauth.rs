//! `claude_oauth` accounts: tokens refreshed before expiry (one refresh at a
//! time), persisted before use, the OAuth beta appended to the client's list,
//! and a rejected refresh token marks the account AUTH_FAILED.

mod common;

use common::{simple_body, TestRelay};
use serde_json::json;

async fn add_oauth_account(relay: &TestRelay, refresh_token: &str, expires_in_secs: i64) -> String {
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(expires_in_secs)).to_rfc3339();
    let v = relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id kind } } }",
            json!({"i": {"name": "max", "kind": "CLAUDE_OAUTH", "accessToken": "sk-ant-oat01-original", "refreshToken": refresh_token,
                         "expiresAt": expires_at, "baseUrl": relay.sim.base_url(), "priority": 1}}),
        )
        .await;
    assert_eq!(v["createAccount"]["account"]["kind"], "CLAUDE_OAUTH");
    v["createAccount"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn oauth_config(sim_url: String) -> impl FnOnce(&mut claude_relay::config::Config) {
    move |c| c.oauth_token_url = format!("{sim_url}/v1/oauth/token")
}

#[tokio::test]
async fn token_is_refreshed_once_before_expiry_and_persisted() {
    let sim = claude_relay::sim::SimUpstream::new()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = sim.base_url();
    let relay =
        TestRelay::start_on(sim, tempfile::tempdir().unwrap(), oauth_config(url.clone())).await;
    // Expires in 60 s: inside the 5-minute refresh window.
    add_oauth_account(&relay, "sk-ant-ort01-good", 60).await;
    let (_, key) = relay.add_key("k").await;

    let sends = (0..8).map(|_| {
        relay
            .messages(&key, &simple_body(false))
            .header("anthropic-beta", "claude-code-20250219")
            .send()
    });
    for resp in futures::future::join_all(sends).await {
        assert_eq!(resp.unwrap().status(), 200);
    }
    assert_eq!(
        relay.sim.sim.refresh_count(),
        1,
        "one refresh for concurrent requests"
    );
    let messages: Vec<_> = relay
        .sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/messages")
        .collect();
    assert_eq!(messages.len(), 8);
    for r in &messages {
        let cred = r.credential.clone().unwrap();
        assert!(
            cred.starts_with("sk-ant-oat01-sim-"),
            "old token used: {cred}"
        );
        let beta = r
            .headers
            .iter()
            .find(|(k, _)| k == "anthropic-beta")
            .map(|(_, v)| v.clone())
            .unwrap();
        assert_eq!(beta, "claude-code-20250219,oauth-2025-04-20");
    }

    // After a restart the persisted token is used without another refresh.
    let (sim, dir) = relay.stop().await;
    let relay = TestRelay::start_on(sim, dir, oauth_config(url)).await;
    relay.sim.sim.clear_requests();
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(relay.sim.sim.refresh_count(), 1);
    let cred = relay.sim.sim.requests().pop().unwrap().credential.unwrap();
    assert!(cred.starts_with("sk-ant-oat01-sim-"));
}

#[tokio::test]
async fn rejected_refresh_token_marks_the_account_auth_failed() {
    let sim = claude_relay::sim::SimUpstream::new()
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = sim.base_url();
    let relay = TestRelay::start_on(sim, tempfile::tempdir().unwrap(), oauth_config(url)).await;
    // Already expired, and the refresh token is refused.
    let id = add_oauth_account(&relay, "sk-ant-ort01-invalid", -10).await;
    let (_, key) = relay.add_key("k").await;
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    for _ in 0..100 {
        let v = relay
            .gql(
                "query($id: ID!) { account(id: $id) { status } }",
                json!({"id": id}),
            )
            .await;
        if v["account"]["status"] == "AUTH_FAILED" {
            // No longer selectable: the pool now has no account for the model.
            let resp = relay
                .messages(&key, &simple_body(false))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 503);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("account was not marked AUTH_FAILED");
}
