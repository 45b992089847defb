//! Admin API authentication over real HTTP: login, sessions, roles,
//! password changes, throttling, and the GET/POST rules.

mod graphql_support;

use chrono::Utc;
use claude_relay::domain::{sha256_hex, AdminSession, Role};
use graphql_support::{code, data, Harness, OWNER, OWNER_PASSWORD};
use serde_json::{json, Value};

const ME: &str = "{ me { id username role } }";
const CREATE_KEY: &str = "mutation { createApiKey(input: {name: \"k\"}) { apiKey { id } secret } }";

#[tokio::test]
async fn login_succeeds_and_me_answers() {
    let h = Harness::start().await;
    let resp = h.try_login(OWNER, OWNER_PASSWORD).await;
    let login = &data(&resp)["login"];
    let token = login["token"].as_str().unwrap();
    assert!(token.len() >= 64);
    assert_eq!(login["admin"]["role"], "OWNER");
    let expires =
        chrono::DateTime::parse_from_rfc3339(login["expiresAt"].as_str().unwrap()).unwrap();
    assert!(
        expires > Utc::now() + chrono::Duration::hours(11),
        "session ttl from config (12 h)"
    );
    assert!(login["expiresAt"].as_str().unwrap().ends_with('Z'), "UTC");
    // The token is stored only as its hash.
    assert!(h
        .store
        .session_by_hash(&sha256_hex(token))
        .unwrap()
        .is_some());
    assert!(h.store.session_by_hash(token).unwrap().is_none());

    let me = h.post(Some(token), ME, json!({})).await;
    assert_eq!(data(&me)["me"]["username"], OWNER);
    // Usernames match ignoring case.
    h.login("OWNER", OWNER_PASSWORD).await;
}

#[tokio::test]
async fn bad_password_and_unknown_user_look_the_same() {
    let h = Harness::start().await;
    let bad = h.try_login(OWNER, "wrong-password").await;
    let unknown = h.try_login("nobody", OWNER_PASSWORD).await;
    assert_eq!(code(&bad), "UNAUTHENTICATED");
    assert_eq!(code(&unknown), "UNAUTHENTICATED");
    assert_eq!(bad["errors"][0]["message"], unknown["errors"][0]["message"]);
    assert!(bad["data"].is_null());
}

#[tokio::test]
async fn requests_without_a_valid_session_are_unauthenticated() {
    let h = Harness::start().await;
    for query in [
        ME,
        "{ apiKeys { totalCount } }",
        "{ accounts { totalCount } }",
        "{ usage { requests } }",
        CREATE_KEY,
    ] {
        let resp = h.post(None, query, json!({})).await;
        assert_eq!(code(&resp), "UNAUTHENTICATED", "{query}");
        let resp = h.post(Some("cra_not-a-session"), query, json!({})).await;
        assert_eq!(code(&resp), "UNAUTHENTICATED", "{query}");
    }
    // Only Bearer counts: no cookies, no Basic.
    let resp: Value = reqwest::Client::new()
        .post(h.url())
        .basic_auth(OWNER, Some(OWNER_PASSWORD))
        .json(&json!({ "query": ME }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(code(&resp), "UNAUTHENTICATED");
}

#[tokio::test]
async fn expired_sessions_are_refused_and_removed() {
    let h = Harness::start().await;
    let admin = h.store.admin_by_username(OWNER).unwrap().unwrap();
    let token = "cra_expired-token-for-test";
    h.store
        .put_session(&AdminSession {
            token_hash: sha256_hex(token),
            admin_id: admin.id,
            created_at: Utc::now() - chrono::Duration::hours(2),
            expires_at: Utc::now() - chrono::Duration::hours(1),
        })
        .unwrap();
    assert_eq!(
        code(&h.post(Some(token), ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    assert!(h
        .store
        .session_by_hash(&sha256_hex(token))
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn viewers_read_but_every_mutation_is_forbidden() {
    let h = Harness::start().await;
    let owner = h.owner_token().await;
    let created = h
        .post(
            Some(&owner),
            "mutation { createAccount(input: {name: \"a\", kind: ANTHROPIC_API_KEY, apiKey: \"sk-ant-api03-xxxxxxxxxxxxxxxx\"}) { account { id } } }",
            json!({}),
        )
        .await;
    let account_id = data(&created)["createAccount"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = h.post(Some(&owner), CREATE_KEY, json!({})).await;
    let key_id = data(&key)["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    h.add_admin("viewer", "viewer-password-1", Role::Viewer);
    let viewer = h.login("viewer", "viewer-password-1").await;
    let reads = h
        .post(
            Some(&viewer),
            "{ me { role } apiKeys { totalCount } accounts { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&reads)["me"]["role"], "VIEWER");
    assert_eq!(data(&reads)["apiKeys"]["totalCount"], 1);

    let mutations = [
        CREATE_KEY.to_string(),
        format!("mutation {{ updateApiKey(input: {{id: \"{key_id}\", name: \"x\"}}) {{ apiKey {{ id }} }} }}"),
        format!("mutation {{ deleteApiKey(input: {{id: \"{key_id}\"}}) {{ deletedId }} }}"),
        "mutation { createAccount(input: {name: \"b\", kind: ANTHROPIC_API_KEY, apiKey: \"k\"}) { account { id } } }".into(),
        format!("mutation {{ updateAccount(input: {{id: \"{account_id}\", priority: 3}}) {{ account {{ id }} }} }}"),
        format!("mutation {{ deleteAccount(input: {{id: \"{account_id}\"}}) {{ deletedId }} }}"),
    ];
    for m in &mutations {
        assert_eq!(
            code(&h.post(Some(&viewer), m, json!({})).await),
            "FORBIDDEN",
            "{m}"
        );
    }
    // A viewer still manages their own session.
    let changed = h
        .post(
            Some(&viewer),
            "mutation { changePassword(input: {currentPassword: \"viewer-password-1\", newPassword: \"viewer-password-2\"}) { admin { username } } }",
            json!({}),
        )
        .await;
    data(&changed);
    let keys = h.store.list_keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "k", "nothing changed");
}

#[tokio::test]
async fn change_password_ends_the_other_sessions_and_keeps_this_one() {
    let h = Harness::start().await;
    let first = h.owner_token().await;
    let second = h.owner_token().await;
    let resp = h
        .post(
            Some(&first),
            "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { admin { username } revokedSessions } }",
            json!({ "c": OWNER_PASSWORD, "n": "a-brand-new-password" }),
        )
        .await;
    assert_eq!(data(&resp)["changePassword"]["revokedSessions"], 1);
    assert_eq!(
        data(&h.post(Some(&first), ME, json!({})).await)["me"]["username"],
        OWNER
    );
    assert_eq!(
        code(&h.post(Some(&second), ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        code(&h.try_login(OWNER, OWNER_PASSWORD).await),
        "UNAUTHENTICATED"
    );
    h.login(OWNER, "a-brand-new-password").await;

    let change = "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { revokedSessions } }";
    let wrong = h
        .post(
            Some(&first),
            change,
            json!({ "c": "not-it", "n": "another-new-password" }),
        )
        .await;
    assert_eq!(code(&wrong), "BAD_USER_INPUT");
    let short = h
        .post(
            Some(&first),
            change,
            json!({ "c": "a-brand-new-password", "n": "short" }),
        )
        .await;
    assert_eq!(code(&short), "BAD_USER_INPUT");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let h = Harness::start().await;
    let a = h.owner_token().await;
    let b = h.owner_token().await;
    let c = h.owner_token().await;
    let resp = h
        .post(
            Some(&a),
            "mutation { logout { revokedSessions } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&resp)["logout"]["revokedSessions"], 1);
    assert_eq!(
        code(&h.post(Some(&a), ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    data(&h.post(Some(&b), ME, json!({})).await);
    let all = h
        .post(
            Some(&b),
            "mutation { logout(input: {allSessions: true}) { revokedSessions } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&all)["logout"]["revokedSessions"], 2);
    assert_eq!(
        code(&h.post(Some(&c), ME, json!({})).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    let h = Harness::start().await;
    for _ in 0..10 {
        assert_eq!(
            code(&h.try_login(OWNER, "wrong-password").await),
            "UNAUTHENTICATED"
        );
    }
    let refused = h.try_login(OWNER, OWNER_PASSWORD).await;
    assert_eq!(code(&refused), "UNAUTHENTICATED");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too many"),
        "{refused}"
    );
    // The same address is throttled for other usernames too.
    h.add_admin("second", "second-password-1", Role::Admin);
    let other = h.try_login("second", "second-password-1").await;
    assert!(
        other["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too many"),
        "{other}"
    );
}

#[tokio::test]
async fn get_runs_queries_but_never_mutations() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let client = reqwest::Client::new();
    let get = |query: &str| {
        client
            .get(h.url())
            .query(&[("query", query)])
            .bearer_auth(&token)
            .send()
    };
    let ok = get(ME).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(data(&body)["me"]["username"], OWNER);

    let refused = get("mutation { logout { revokedSessions } }")
        .await
        .unwrap();
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "POST");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
    // The session was not logged out.
    data(&h.post(Some(&token), ME, json!({})).await);
}

#[tokio::test]
async fn malformed_and_invalid_requests_carry_codes() {
    let h = Harness::start().await;
    let token = h.owner_token().await;
    let unknown_field = h.post(Some(&token), "{ me { password } }", json!({})).await;
    assert_eq!(code(&unknown_field), "BAD_USER_INPUT");
    let syntax = h.post(Some(&token), "{ me {", json!({})).await;
    assert_eq!(code(&syntax), "BAD_USER_INPUT");
    let resp = reqwest::Client::new()
        .post(h.url())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
    // The depth limit refuses absurdly nested documents before running them.
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {} name {} }} }} }} }}",
        "{ ofType ".repeat(15),
        "}".repeat(15)
    );
    let refused = h.post(Some(&token), &deep, json!({})).await;
    assert_eq!(code(&refused), "BAD_USER_INPUT");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{refused}"
    );
}

/// What GraphiQL and graphql-js `getIntrospectionQuery()` send: it must fit
/// the depth and complexity limits.
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;

#[tokio::test]
async fn standard_introspection_fits_the_limits() {
    let h = Harness::start().await;
    let resp = h.post(None, INTROSPECTION, json!({})).await;
    let types = data(&resp)["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "ApiKey"));
}

#[tokio::test]
async fn requests_over_the_timeout_are_cut_off() {
    let h = Harness::start_with(|c| c.graphql_timeout = std::time::Duration::from_millis(1)).await;
    // Password verification alone takes longer than a millisecond.
    let resp = h.try_login(OWNER, OWNER_PASSWORD).await;
    assert_eq!(code(&resp), "INTERNAL");
    assert!(
        resp["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{resp}"
    );
}
