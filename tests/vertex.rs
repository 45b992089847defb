//! `vertex` accounts end to end: real HTTP from a client through the relay
//! to the simulated Vertex AI, which issues access tokens only for RS256
//! assertions signed with the registered service-account key. Plain and
//! streaming answers, token reuse, usage, quota failover, a refused service
//! account, and the count_tokens capability.

mod common;

use claude_relay::sim::vertex::{service_account_json, SIM_GCP_CLIENT_EMAIL, SIM_GCP_PROJECT_ID};
use claude_relay::sim::Fault;
use common::{simple_body, TestRelay};
use serde_json::{json, Value};

const SECOND_EMAIL: &str = "second@sim-project.iam.gserviceaccount.com";

async fn add_vertex(relay: &TestRelay, name: &str, email: &str, priority: i64) -> Value {
    let v = relay
        .gql(
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id kind gcpProjectId gcpRegion gcpClientEmail } } }",
            json!({"i": {"name": name, "kind": "VERTEX", "priority": priority,
                   "gcpServiceAccountJson": service_account_json(&relay.sim.base_url(), email),
                   "gcpRegion": "us-east5", "baseUrl": relay.sim.base_url()}}),
        )
        .await;
    v["createAccount"]["account"].clone()
}

fn calls(relay: &TestRelay, prefix: &str) -> Vec<claude_relay::sim::RecordedRequest> {
    relay
        .sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn messages_and_streams_through_vertex() {
    let relay = TestRelay::start().await;
    let account = add_vertex(&relay, "vertex", SIM_GCP_CLIENT_EMAIL, 1).await;
    assert_eq!(account["kind"], "VERTEX");
    assert_eq!(account["gcpProjectId"], SIM_GCP_PROJECT_ID);
    assert_eq!(account["gcpRegion"], "us-east5");
    assert_eq!(account["gcpClientEmail"], SIM_GCP_CLIENT_EMAIL);
    assert!(!account.to_string().contains("PRIVATE KEY"));
    let (key_id, key) = relay.add_key("k").await;

    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let message: Value = resp.json().await.unwrap();
    assert_eq!(message["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(message["type"], "message");
    let predict = calls(&relay, "/v1/projects/").pop().unwrap();
    assert_eq!(
        predict.path,
        "/v1/projects/sim-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    );
    assert!(predict
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ya29.sim-"));
    assert!(predict.header("x-api-key").is_none());

    let resp = relay
        .messages(&key, &simple_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    assert!(calls(&relay, "/v1/projects/")
        .pop()
        .unwrap()
        .path
        .ends_with(":streamRawPredict"));
    // One token exchange served both calls.
    assert_eq!(calls(&relay, "/vertex/token").len(), 1);
    let usage = relay.wait_key_requests(&key_id, 2).await;
    assert!(usage["outputTokens"].as_u64().unwrap() > 0, "{usage}");
    assert_ne!(usage["costUsd"], "0", "{usage}");

    // count_tokens is not offered by this kind.
    let resp = relay
        .http
        .post(format!("{}/v1/messages/count_tokens", relay.base_url))
        .header("x-api-key", &key)
        .json(
            &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("VERTEX"));
}

#[tokio::test]
async fn quota_fails_over_and_a_refused_service_account_is_not_the_clients_problem() {
    let relay = TestRelay::start().await;
    relay.sim.sim.add_gcp_service_account(SECOND_EMAIL);
    add_vertex(&relay, "first", SIM_GCP_CLIENT_EMAIL, 1).await;
    add_vertex(&relay, "second", SECOND_EMAIL, 2).await;
    let (_, key) = relay.add_key("k").await;
    relay.sim.sim.set_fault_times(
        SIM_GCP_CLIENT_EMAIL,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(calls(&relay, "/v1/projects/").len(), 2);
    assert_eq!(calls(&relay, "/vertex/token").len(), 2);

    // A service account the token endpoint does not know: refused there,
    // the client sees 529, no predict call is made.
    let relay = TestRelay::start().await;
    add_vertex(
        &relay,
        "unknown",
        "nobody@elsewhere.iam.gserviceaccount.com",
        1,
    )
    .await;
    let (_, key) = relay.add_key("k").await;
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 529);
    assert_eq!(calls(&relay, "/vertex/token").len(), 1);
    assert!(calls(&relay, "/v1/projects/").is_empty());
}

/// The simulated token endpoint really checks the RS256 signature.
#[tokio::test]
async fn simulator_refuses_a_forged_assertion() {
    let relay = TestRelay::start().await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = b64.encode(
        json!({"iss": SIM_GCP_CLIENT_EMAIL, "scope": "x", "aud": "x", "iat": 1, "exp": 4_000_000_000u64})
            .to_string(),
    );
    let forged = format!("{header}.{claims}.{}", b64.encode([7u8; 256]));
    let resp = relay
        .http
        .post(format!("{}/vertex/token", relay.sim.base_url()))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", forged.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}
