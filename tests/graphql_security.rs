//! Admin API security over real HTTP, against a real sled store: roles for
//! every mutation (enumerated by introspection, so mutations added later are
//! covered), admin management and the last-owner rule, the audit log (one
//! entry per mutation and login, secrets absent, pagination), VIEWER
//! masking (including search), the body-size limit, introspection off,
//! `trusted_proxies`, slow-operation metrics and the embedded playground.

mod common;
mod graphql_support;

use claude_relay::domain::Role;
use graphql_support::{code, data, Harness, OWNER, OWNER_PASSWORD};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Mutations any logged-in admin may run on their own session.
const SELF_SERVICE: &[&str] = &["login", "logout", "changePassword"];
/// Mutations only an OWNER may run.
const OWNER_ONLY: &[&str] = &[
    "createAdmin",
    "updateAdmin",
    "deleteAdmin",
    "resetAdminPassword",
    "importRedis",
    "importApiKeys",
];

const TYPE_REF: &str =
    "fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }";

/// A secret-looking upstream key (Anthropic shape) used as account credentials.
const UPSTREAM_SECRET: &str = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH-0123456789_AA";
const VIEWER_PASSWORD: &str = "viewer-password-123";
const ADMIN_PASSWORD: &str = "admin-password-1234";

async fn viewer_token(h: &Harness) -> String {
    h.add_admin("viewer", VIEWER_PASSWORD, Role::Viewer);
    h.login("viewer", VIEWER_PASSWORD).await
}

async fn admin_token(h: &Harness) -> String {
    h.add_admin("plainadmin", ADMIN_PASSWORD, Role::Admin);
    h.login("plainadmin", ADMIN_PASSWORD).await
}

/// Strips NON_NULL / LIST wrappers: (is non-null, named type, kind).
fn named(t: &Value) -> (bool, String, String) {
    let non_null = t["kind"] == "NON_NULL";
    let mut cur = t;
    while cur["name"].is_null() {
        cur = &cur["ofType"];
    }
    (
        non_null,
        cur["name"].as_str().unwrap().to_string(),
        cur["kind"].as_str().unwrap().to_string(),
    )
}

fn is_list(t: &Value) -> bool {
    let mut cur = t;
    while !cur.is_null() {
        if cur["kind"] == "LIST" {
            return true;
        }
        cur = &cur["ofType"];
    }
    false
}

/// A value of the given type that passes GraphQL validation (only required
/// input fields are filled), so the call reaches the resolver and its role check.
fn sample_value<'a>(
    h: &'a Harness,
    token: &'a str,
    t: &'a Value,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value> + 'a>> {
    Box::pin(async move {
        let (_, name, kind) = named(t);
        let v = match kind.as_str() {
            "SCALAR" => match name.as_str() {
                "ID" => json!(uuid::Uuid::now_v7().to_string()),
                "String" => json!("probe-value"),
                "Int" => json!(1),
                "Float" => json!(1.0),
                "Boolean" => json!(false),
                "DateTime" => json!((chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339()),
                "JSON" => json!({}),
                _ => json!("1"),
            },
            "ENUM" => {
                let resp = h
                    .post(
                        Some(token),
                        "query($n: String!) { __type(name: $n) { enumValues { name } } }",
                        json!({ "n": name }),
                    )
                    .await;
                data(&resp)["__type"]["enumValues"][0]["name"].clone()
            }
            "INPUT_OBJECT" => {
                let q = format!(
                    "query($n: String!) {{ __type(name: $n) {{ inputFields {{ name type {{ ...T }} }} }} }} {TYPE_REF}"
                );
                let resp = h.post(Some(token), &q, json!({ "n": name })).await;
                let mut obj = serde_json::Map::new();
                for f in data(&resp)["__type"]["inputFields"].as_array().unwrap() {
                    if named(&f["type"]).0 {
                        let v = sample_value(h, token, &f["type"]).await;
                        obj.insert(f["name"].as_str().unwrap().to_string(), v);
                    }
                }
                Value::Object(obj)
            }
            other => panic!("unexpected input kind {other}"),
        };
        if is_list(t) {
            json!([v])
        } else {
            v
        }
    })
}

/// The type of a variable declaration for `t` (e.g. `CreateApiKeyInput!`).
fn type_decl(t: &Value) -> String {
    match t["kind"].as_str().unwrap() {
        "NON_NULL" => format!("{}!", type_decl(&t["ofType"])),
        "LIST" => format!("[{}]", type_decl(&t["ofType"])),
        _ => t["name"].as_str().unwrap().to_string(),
    }
}

/// Every mutation field with a call that passes validation: (name, query, variables).
async fn every_mutation(h: &Harness, token: &str) -> Vec<(String, String, Value)> {
    let q = format!(
        "{{ __schema {{ mutationType {{ fields {{ name args {{ name type {{ ...T }} }} type {{ ...T }} }} }} }} }} {TYPE_REF}"
    );
    let resp = h.post(Some(token), &q, json!({})).await;
    let mut out = Vec::new();
    for f in data(&resp)["__schema"]["mutationType"]["fields"]
        .as_array()
        .unwrap()
    {
        let name = f["name"].as_str().unwrap().to_string();
        let mut decls = Vec::new();
        let mut args = Vec::new();
        let mut vars = serde_json::Map::new();
        for a in f["args"].as_array().unwrap() {
            if !named(&a["type"]).0 {
                continue;
            }
            let arg = a["name"].as_str().unwrap();
            decls.push(format!("${arg}: {}", type_decl(&a["type"])));
            args.push(format!("{arg}: ${arg}"));
            vars.insert(arg.to_string(), sample_value(h, token, &a["type"]).await);
        }
        let (_, _, ret_kind) = named(&f["type"]);
        let selection = if ret_kind == "OBJECT" {
            " { __typename }"
        } else {
            ""
        };
        let decl = if decls.is_empty() {
            String::new()
        } else {
            format!("({})", decls.join(", "))
        };
        let call = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        out.push((
            name.clone(),
            format!("mutation{decl} {{ {name}{call}{selection} }}"),
            Value::Object(vars),
        ));
    }
    out
}

fn error_code(resp: &Value) -> Option<&str> {
    resp["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test]
async fn every_mutation_checks_its_role() {
    let h = Harness::start().await;
    let owner = h.owner_token().await;
    let viewer = viewer_token(&h).await;
    let admin = admin_token(&h).await;
    let mutations = every_mutation(&h, &owner).await;
    let names: BTreeSet<&str> = mutations.iter().map(|m| m.0.as_str()).collect();
    for expected in [
        "createApiKey",
        "createAccount",
        "createAdmin",
        "updateSettings",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
    for (name, query, vars) in &mutations {
        if SELF_SERVICE.contains(&name.as_str()) {
            continue;
        }
        let as_viewer = h.post(Some(&viewer), query, vars.clone()).await;
        assert_eq!(
            error_code(&as_viewer),
            Some("FORBIDDEN"),
            "{name} as VIEWER: {as_viewer}"
        );
        assert!(as_viewer["data"].is_null() || as_viewer["data"][name].is_null());
        let as_admin = h.post(Some(&admin), query, vars.clone()).await;
        if OWNER_ONLY.contains(&name.as_str()) {
            assert_eq!(error_code(&as_admin), Some("FORBIDDEN"), "{name} as ADMIN");
        } else {
            assert_ne!(
                error_code(&as_admin),
                Some("FORBIDDEN"),
                "{name} as ADMIN: {as_admin}"
            );
        }
        let anonymous = h.post(None, query, vars.clone()).await;
        assert_eq!(
            error_code(&anonymous),
            Some("UNAUTHENTICATED"),
            "{name} anonymous"
        );
    }
    // OWNER is refused nothing (run after the others: some calls may succeed).
    let mut owner_outcomes = Vec::new();
    for (name, query, vars) in &mutations {
        if SELF_SERVICE.contains(&name.as_str()) {
            continue;
        }
        let as_owner = h.post(Some(&owner), query, vars.clone()).await;
        assert_ne!(
            error_code(&as_owner),
            Some("FORBIDDEN"),
            "{name} as OWNER: {as_owner}"
        );
        owner_outcomes.push((
            name.clone(),
            error_code(&as_owner).unwrap_or("OK").to_string(),
        ));
    }
    // Each of the owner's mutations is in the audit log with the outcome it had.
    let log = h
        .post(
            Some(&owner),
            "{ auditLog(first: 500) { totalCount edges { node { action outcome adminUsername } } } }",
            json!({}),
        )
        .await;
    assert!(data(&log)["auditLog"]["totalCount"].as_u64().unwrap() <= 500);
    let audited: BTreeSet<(String, String)> = data(&log)["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["adminUsername"] == OWNER)
        .map(|e| {
            (
                e["node"]["action"].as_str().unwrap().to_string(),
                e["node"]["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(owner_outcomes.len() >= 20, "{owner_outcomes:?}");
    for entry in &owner_outcomes {
        assert!(audited.contains(entry), "no audit entry {entry:?}");
    }
    // Every refused viewer attempt is in the audit log.
    let log = h
        .post(
            Some(&owner),
            "{ auditLog(first: 500, filter: {outcome: \"FORBIDDEN\"}) { edges { node { action adminUsername } } } }",
            json!({}),
        )
        .await;
    let forbidden: BTreeSet<String> = data(&log)["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["adminUsername"] == "viewer")
        .map(|e| e["node"]["action"].as_str().unwrap().to_string())
        .collect();
    for (name, _, _) in &mutations {
        if !SELF_SERVICE.contains(&name.as_str()) {
            assert!(
                forbidden.contains(name),
                "no FORBIDDEN audit entry for {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_viewer_sees_no_secret_and_no_free_text_in_clear() {
    let h = Harness::start().await;
    let owner = h.owner_token().await;
    let created = h
        .post(
            Some(&owner),
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({ "i": { "name": "ops alice@example.com", "kind": "ANTHROPIC_API_KEY", "apiKey": UPSTREAM_SECRET } }),
        )
        .await;
    data(&created);
    let key = h
        .post(
            Some(&owner),
            "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id } secret } }",
            json!({ "i": { "name": "bob@example.com laptop", "description": "owner phone +44 20 7946 0958", "tags": ["carol@example.com"] } }),
        )
        .await;
    let relay_secret = data(&key)["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let group = h
        .post(
            Some(&owner),
            "mutation($i: CreateGroupInput!) { createGroup(input: $i) { group { id } } }",
            json!({ "i": { "name": "team dave@example.com", "description": "key sk-ant-api03-QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ-AA" } }),
        )
        .await;
    data(&group);
    let viewer = viewer_token(&h).await;
    let everything = "{ apiKeys { edges { node { name description tags displayPrefix } } } \
        accounts { edges { node { name apiKey accessToken refreshToken proxy baseUrl } } } \
        groups { edges { node { name description } } } me { username role } balancerStats { accounts { name } } }";
    let seen = h.post(Some(&viewer), everything, json!({})).await;
    let text = data(&seen).to_string();
    for clear in [
        UPSTREAM_SECRET,
        &relay_secret,
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
        "7946 0958",
        "QQQQQQQQQQQQQQQQ",
    ] {
        assert!(!text.contains(clear), "{clear} reached a viewer: {text}");
    }
    assert!(text.contains("[REDACTED:email] laptop"), "{text}");
    // The owner sees the text as stored (but never the upstream secret).
    let owner_view = h.post(Some(&owner), everything, json!({})).await;
    let owner_text = data(&owner_view).to_string();
    assert!(owner_text.contains("bob@example.com laptop"));
    assert!(!owner_text.contains(UPSTREAM_SECRET));

    // Searching cannot recover masked text: the viewer searches what it sees.
    let search = |s: &str| {
        format!(
            "{{ apiKeys(filter: {{search: {s:?}}}) {{ totalCount }} accounts(filter: {{search: {s:?}}}) {{ totalCount }} groups(search: {s:?}) {{ totalCount }} }}"
        )
    };
    for probe in ["bob@", "example.com", "alice", "7946", "dave@"] {
        let r = h.post(Some(&viewer), &search(probe), json!({})).await;
        assert_eq!(data(&r)["apiKeys"]["totalCount"], 0, "viewer probe {probe}");
        assert_eq!(data(&r)["groups"]["totalCount"], 0, "viewer probe {probe}");
        assert_eq!(
            data(&r)["accounts"]["totalCount"],
            0,
            "viewer probe {probe}"
        );
    }
    let r = h
        .post(Some(&viewer), &search("REDACTED:email"), json!({}))
        .await;
    assert_eq!(data(&r)["apiKeys"]["totalCount"], 1);
    assert_eq!(data(&r)["accounts"]["totalCount"], 1);
    let r = h.post(Some(&owner), &search("bob@"), json!({})).await;
    assert_eq!(
        data(&r)["apiKeys"]["totalCount"],
        1,
        "owners search stored text"
    );
    let r = h.post(Some(&owner), &search("DAVE@"), json!({})).await;
    assert_eq!(data(&r)["groups"]["totalCount"], 1, "case-insensitive");
    // Tag filter: a viewer only matches the masked tag.
    let tag = |t: &str| format!("{{ apiKeys(filter: {{tag: {t:?}}}) {{ totalCount }} }}");
    let r = h
        .post(Some(&viewer), &tag("carol@example.com"), json!({}))
        .await;
    assert_eq!(data(&r)["apiKeys"]["totalCount"], 0);
    // Viewers cannot read the audit log or the admin list.
    for q in ["{ auditLog { totalCount } }", "{ admins { totalCount } }"] {
        assert_eq!(
            code(&h.post(Some(&viewer), q, json!({})).await),
            "FORBIDDEN"
        );
    }
}

#[tokio::test]
async fn admins_are_managed_by_owners_and_the_last_owner_stays() {
    let h = Harness::start().await;
    let owner = h.owner_token().await;
    let me = h.post(Some(&owner), "{ me { id } }", json!({})).await;
    let owner_id = data(&me)["me"]["id"].as_str().unwrap().to_string();
    let create = "mutation($i: CreateAdminInput!) { createAdmin(input: $i) { admin { id username role disabled } } }";

    // Password policy and names.
    for (user, pass) in [
        ("short", "tooshort"),
        ("samename-12345", "samename-12345"),
        ("repeats", "aaaaaaaaaaaaaaaa"),
        ("bad name!", "a-fine-password-1"),
    ] {
        let r = h
            .post(
                Some(&owner),
                create,
                json!({ "i": { "username": user, "password": pass, "role": "ADMIN" } }),
            )
            .await;
        assert_eq!(code(&r), "BAD_USER_INPUT", "{user}");
    }
    let r = h
        .post(
            Some(&owner),
            create,
            json!({ "i": { "username": "ann", "password": "ann-password-123", "role": "ADMIN" } }),
        )
        .await;
    let ann_id = data(&r)["createAdmin"]["admin"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(data(&r)["createAdmin"]["admin"]["role"], "ADMIN");
    let dup = h
        .post(
            Some(&owner),
            create,
            json!({ "i": { "username": "ANN", "password": "ann-password-123", "role": "VIEWER" } }),
        )
        .await;
    assert_eq!(code(&dup), "CONFLICT");
    let ann = h.login("ann", "ann-password-123").await;
    let listed = h.post(Some(&ann), "{ admins(first: 1) { totalCount edges { node { username } } pageInfo { hasNextPage endCursor } } }", json!({})).await;
    assert_eq!(data(&listed)["admins"]["totalCount"], 2);
    assert_eq!(data(&listed)["admins"]["pageInfo"]["hasNextPage"], true);

    // The last enabled OWNER can be neither demoted, disabled nor deleted.
    let update = "mutation($i: UpdateAdminInput!) { updateAdmin(input: $i) { admin { role disabled } revokedSessions } }";
    let delete =
        "mutation($i: DeleteAdminInput!) { deleteAdmin(input: $i) { deletedId revokedSessions } }";
    for input in [
        json!({ "id": owner_id, "role": "ADMIN" }),
        json!({ "id": owner_id, "disabled": true }),
    ] {
        assert_eq!(
            code(&h.post(Some(&owner), update, json!({ "i": input })).await),
            "CONFLICT"
        );
    }
    assert_eq!(
        code(
            &h.post(Some(&owner), delete, json!({ "i": { "id": owner_id } }))
                .await
        ),
        "CONFLICT"
    );

    // With a second OWNER the first may step down.
    let r = h
        .post(
            Some(&owner),
            update,
            json!({ "i": { "id": ann_id, "role": "OWNER" } }),
        )
        .await;
    assert_eq!(data(&r)["updateAdmin"]["admin"]["role"], "OWNER");
    let r = h
        .post(
            Some(&owner),
            update,
            json!({ "i": { "id": owner_id, "role": "VIEWER" } }),
        )
        .await;
    assert_eq!(data(&r)["updateAdmin"]["admin"]["role"], "VIEWER");
    // The demotion applies at once to the existing session.
    let r = h
        .post(
            Some(&owner),
            create,
            json!({ "i": { "username": "zed", "password": "zed-password-123", "role": "ADMIN" } }),
        )
        .await;
    assert_eq!(code(&r), "FORBIDDEN");

    // Disabling ends sessions and logins; a reset password ends sessions too.
    let r = h
        .post(
            Some(&ann),
            update,
            json!({ "i": { "id": owner_id, "disabled": true } }),
        )
        .await;
    assert_eq!(data(&r)["updateAdmin"]["revokedSessions"], 1);
    assert_eq!(
        code(&h.post(Some(&owner), "{ me { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    let refused = h.try_login(OWNER, OWNER_PASSWORD).await;
    assert_eq!(code(&refused), "UNAUTHENTICATED");
    h.post(
        Some(&ann),
        update,
        json!({ "i": { "id": owner_id, "disabled": false } }),
    )
    .await;
    let owner = h.login(OWNER, OWNER_PASSWORD).await;
    let reset = "mutation($i: ResetAdminPasswordInput!) { resetAdminPassword(input: $i) { revokedSessions } }";
    let r = h
        .post(
            Some(&ann),
            reset,
            json!({ "i": { "id": owner_id, "newPassword": "a-brand-new-password" } }),
        )
        .await;
    assert_eq!(data(&r)["resetAdminPassword"]["revokedSessions"], 1);
    assert_eq!(
        code(&h.post(Some(&owner), "{ me { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    let owner = h.login(OWNER, "a-brand-new-password").await;

    // Deleting an admin ends their sessions; the name is free again.
    let r = h
        .post(Some(&ann), delete, json!({ "i": { "id": owner_id } }))
        .await;
    assert_eq!(data(&r)["deleteAdmin"]["revokedSessions"], 1);
    assert_eq!(
        code(&h.post(Some(&owner), "{ me { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        code(
            &h.post(Some(&ann), delete, json!({ "i": { "id": owner_id } }))
                .await
        ),
        "NOT_FOUND"
    );
    // ann is now the only OWNER.
    assert_eq!(
        code(
            &h.post(Some(&ann), delete, json!({ "i": { "id": ann_id } }))
                .await
        ),
        "CONFLICT"
    );
}

#[tokio::test]
async fn change_password_ends_the_other_sessions() {
    let h = Harness::start().await;
    let a = h.owner_token().await;
    let b = h.owner_token().await;
    let r = h
        .post(
            Some(&a),
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { revokedSessions } }",
            json!({ "i": { "currentPassword": OWNER_PASSWORD, "newPassword": "another-password-42" } }),
        )
        .await;
    assert_eq!(data(&r)["changePassword"]["revokedSessions"], 1);
    assert_eq!(
        code(&h.post(Some(&b), "{ me { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
    data(&h.post(Some(&a), "{ me { id } }", json!({})).await);
}

/// Everything the store holds for the audit log, as one string.
fn stored_audit(h: &Harness) -> String {
    h.store
        .audit_newest_first(None)
        .map(|e| serde_json::to_string(&e.unwrap()).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn audit_diffs_show_changed_fields_and_hide_changed_secrets() {
    let h = Harness::start().await;
    let owner = h.owner_token().await;
    let r = h
        .post(
            Some(&owner),
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({ "i": { "name": "acct", "kind": "ANTHROPIC_API_KEY", "apiKey": UPSTREAM_SECRET, "priority": 50 } }),
        )
        .await;
    let id = data(&r)["createAccount"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = "sk-ant-api03-ROTATEDSECRET-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    data(
        &h.post(
            Some(&owner),
            "mutation($i: UpdateAccountInput!) { updateAccount(input: $i) { account { id } } }",
            json!({ "i": { "id": id, "apiKey": rotated, "priority": 5, "name": "acct for ivy@example.com" } }),
        )
        .await,
    );
    let log = h
        .post(
            Some(&owner),
            "{ auditLog(first: 1, filter: {action: \"updateAccount\"}) { edges { node { target diff } } } }",
            json!({}),
        )
        .await;
    let entry = &data(&log)["auditLog"]["edges"][0]["node"];
    assert_eq!(entry["target"], id.as_str());
    let diff = entry["diff"].as_object().expect("a diff");
    assert_eq!(diff["priority"], json!({ "from": 50, "to": 5 }));
    assert_eq!(
        diff["name"],
        json!({ "from": "acct", "to": "acct for [REDACTED:email]" })
    );
    let secret_paths: Vec<&String> = diff.keys().filter(|k| k.contains("credentials")).collect();
    assert!(
        !secret_paths.is_empty(),
        "the rotation is recorded: {diff:?}"
    );
    for path in secret_paths {
        assert_eq!(
            diff[path],
            json!({ "from": "[REDACTED]", "to": "[REDACTED]" })
        );
    }
    assert!(!diff.contains_key("updated_at"));
    let stored = stored_audit(&h);
    for secret in [UPSTREAM_SECRET, rotated, "ivy@example.com"] {
        assert!(!stored.contains(secret), "{secret} stored in the audit log");
    }
}

#[tokio::test]
async fn mutations_and_logins_are_audited_without_secrets() {
    let h = Harness::start().await;
    let typo = h.try_login("Pa55word-in-the-name-field", "x").await;
    assert_eq!(code(&typo), "UNAUTHENTICATED");
    let bad = h.try_login(OWNER, "not-the-password-9").await;
    assert_eq!(code(&bad), "UNAUTHENTICATED");
    let owner = h.owner_token().await;
    let r = h
        .post(
            Some(&owner),
            "mutation($i: CreateAccountInput!) { createAccount(input: $i) { account { id } } }",
            json!({ "i": { "name": "acct erin@example.com", "kind": "ANTHROPIC_API_KEY", "apiKey": UPSTREAM_SECRET, "proxy": "http://user:proxypass99@proxy.local:8080" } }),
        )
        .await;
    let account_id = data(&r)["createAccount"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h
        .post(
            Some(&owner),
            "mutation { createApiKey(input: {name: \"k1\", description: \"for frank@example.com\"}) { apiKey { id } secret } }",
            json!({}),
        )
        .await;
    let key_id = data(&r)["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let relay_secret = data(&r)["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    data(
        &h.post(
            Some(&owner),
            "mutation($i: UpdateApiKeyInput!) { updateApiKey(input: $i) { apiKey { id } } }",
            json!({ "i": { "id": key_id, "name": "k1-renamed" } }),
        )
        .await,
    );
    data(
        &h.post(
            Some(&owner),
            "mutation($i: DeleteApiKeyInput!) { deleteApiKey(input: $i) { deletedId } }",
            json!({ "i": { "id": key_id } }),
        )
        .await,
    );
    data(&h.post(Some(&owner), "mutation { createAdmin(input: {username: \"gina\", password: \"gina-secret-pass-1\", role: VIEWER}) { admin { id } } }", json!({})).await);
    let nf = h
        .post(
            Some(&owner),
            "mutation($i: DeleteAccountInput!) { deleteAccount(input: $i) { deletedId } }",
            json!({ "i": { "id": uuid::Uuid::now_v7().to_string() } }),
        )
        .await;
    assert_eq!(code(&nf), "NOT_FOUND");
    let r = h
        .post(
            Some(&owner),
            "mutation($i: ChangePasswordInput!) { changePassword(input: $i) { revokedSessions } }",
            json!({ "i": { "currentPassword": OWNER_PASSWORD, "newPassword": "owner-new-password-7" } }),
        )
        .await;
    data(&r);
    // An anonymous mutation changed nothing and is not recorded.
    h.post(
        None,
        "mutation { createApiKey(input: {name: \"anon\"}) { secret } }",
        json!({}),
    )
    .await;

    let log = h
        .post(
            Some(&owner),
            "{ auditLog(first: 100) { totalCount edges { node { id at adminId adminUsername clientAddress action target outcome changes diff } } } }",
            json!({}),
        )
        .await;
    let entries: Vec<Value> = data(&log)["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "changePassword",
            "deleteAccount",
            "createAdmin",
            "deleteApiKey",
            "updateApiKey",
            "createApiKey",
            "createAccount",
            "login",
            "login",
            "login"
        ],
        "newest first"
    );
    let by = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap();
    let typo = entries.last().unwrap();
    assert_eq!(typo["changes"]["username"], "[unknown user]");
    let failed = &entries[entries.len() - 2];
    assert_eq!(failed["outcome"], "UNAUTHENTICATED");
    assert!(failed["adminId"].is_null());
    assert_eq!(failed["changes"]["username"], OWNER);
    assert_eq!(failed["changes"]["password"], "[REDACTED]");
    assert_eq!(failed["clientAddress"], "127.0.0.1");
    let ok_login = &entries[entries.len() - 3];
    assert_eq!(ok_login["outcome"], "OK");
    assert_eq!(ok_login["adminUsername"], OWNER);
    assert_eq!(by("createAccount")["target"], account_id.as_str());
    assert_eq!(
        by("createAccount")["changes"]["input"]["apiKey"],
        "[REDACTED]"
    );
    assert_eq!(
        by("createAccount")["changes"]["input"]["proxy"],
        "[REDACTED]"
    );
    assert_eq!(
        by("createAccount")["changes"]["input"]["name"],
        "acct [REDACTED:email]"
    );
    assert_eq!(by("createApiKey")["target"], key_id.as_str());
    assert_eq!(by("updateApiKey")["target"], key_id.as_str());
    assert_eq!(by("updateApiKey")["changes"]["input"]["name"], "k1-renamed");
    // What changed, field by field, read from the record itself.
    assert_eq!(
        by("updateApiKey")["diff"],
        json!({ "name": { "from": "k1", "to": "k1-renamed" } })
    );
    assert!(by("createApiKey")["diff"].is_null(), "no record before");
    assert_eq!(by("deleteApiKey")["target"], key_id.as_str());
    assert_eq!(by("deleteAccount")["outcome"], "NOT_FOUND");
    assert_eq!(
        by("createAdmin")["changes"]["input"]["password"],
        "[REDACTED]"
    );
    assert_eq!(by("createAdmin")["changes"]["input"]["role"], "VIEWER");
    assert_eq!(by("changePassword")["outcome"], "OK");
    assert_eq!(data(&log)["auditLog"]["totalCount"], 10);

    // Nothing secret reached the store, whatever field it could hide in.
    let stored = stored_audit(&h);
    for secret in [
        UPSTREAM_SECRET,
        relay_secret.as_str(),
        "proxypass99",
        "gina-secret-pass-1",
        OWNER_PASSWORD,
        "owner-new-password-7",
        "not-the-password-9",
        "erin@example.com",
        "frank@example.com",
        "Pa55word-in-the-name-field",
    ] {
        assert!(!stored.contains(secret), "{secret} stored in the audit log");
    }
    // Session tokens never appear either.
    assert!(!stored.contains(&owner));

    // Filters.
    let q = |f: &str| format!("{{ auditLog(filter: {f}) {{ totalCount }} }}");
    let count = |r: &Value| data(r)["auditLog"]["totalCount"].as_u64().unwrap();
    assert_eq!(
        count(
            &h.post(Some(&owner), &q("{action: \"login\"}"), json!({}))
                .await
        ),
        3
    );
    assert_eq!(
        count(
            &h.post(Some(&owner), &q("{outcome: \"OK\"}"), json!({}))
                .await
        ),
        7
    );
    let admin_id = ok_login["adminId"].as_str().unwrap();
    let r = h
        .post(
            Some(&owner),
            &q(&format!("{{adminId: \"{admin_id}\"}}")),
            json!({}),
        )
        .await;
    assert_eq!(count(&r), 8);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = h
        .post(
            Some(&owner),
            &q(&format!("{{since: \"{future}\"}}")),
            json!({}),
        )
        .await;
    assert_eq!(count(&r), 0);
    let r = h
        .post(
            Some(&owner),
            &q(&format!("{{until: \"{future}\"}}")),
            json!({}),
        )
        .await;
    assert_eq!(count(&r), 10);
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_without_gaps() {
    let h = Harness::start().await;
    let owner = h.owner_token().await;
    for i in 0..23 {
        let r = h
            .post(
                Some(&owner),
                "mutation($i: CreateGroupInput!) { createGroup(input: $i) { group { id } } }",
                json!({ "i": { "name": format!("g{i}") } }),
            )
            .await;
        data(&r);
    }
    let page = "query($a: String) { auditLog(first: 5, after: $a, filter: {action: \"createGroup\"}) { totalCount edges { cursor node { id changes } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
    let mut after: Option<String> = None;
    let mut seen: Vec<u64> = Vec::new();
    let mut names = Vec::new();
    loop {
        let r = h.post(Some(&owner), page, json!({ "a": after })).await;
        let c = &data(&r)["auditLog"];
        assert_eq!(c["totalCount"], 23);
        assert_eq!(c["pageInfo"]["hasPreviousPage"], after.is_some());
        for e in c["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().parse().unwrap());
            names.push(
                e["node"]["changes"]["input"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        if c["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = c["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 23);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first: {seen:?}"
    );
    let expected: Vec<String> = (0..23).rev().map(|i| format!("g{i}")).collect();
    assert_eq!(names, expected);
    let too_many = h
        .post(
            Some(&owner),
            "{ auditLog(first: 501) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&too_many), "BAD_USER_INPUT");
    let bad_cursor = h
        .post(
            Some(&owner),
            "{ auditLog(after: \"nope\") { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad_cursor), "BAD_USER_INPUT");
}

#[tokio::test]
async fn oversized_bodies_get_413_with_a_coded_error() {
    let h = Harness::start_with(|c| c.graphql.max_body_bytes = 4096).await;
    let client = reqwest::Client::new();
    let big = json!({ "query": format!("{{ me {{ id }} }} # {}", "x".repeat(10_000)) }).to_string();
    let r = client
        .post(h.url())
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .into_bytes()
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let r = client
        .post(h.url())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
    // A normal request still works.
    let ok = h.try_login(OWNER, OWNER_PASSWORD).await;
    data(&ok);
}

#[tokio::test]
async fn introspection_can_be_switched_off() {
    let h = Harness::start_with(|c| c.graphql.introspection = false).await;
    let owner = h.owner_token().await;
    // async-graphql answers disabled introspection with nulls, not errors.
    let r = h
        .post(
            Some(&owner),
            "{ __schema { queryType { name } } __type(name: \"Query\") { name } }",
            json!({}),
        )
        .await;
    assert!(r["data"]["__schema"].is_null(), "{r}");
    assert!(r["data"]["__type"].is_null(), "{r}");
    data(&h.post(Some(&owner), "{ me { id } }", json!({})).await);
    // On by default.
    let on = Harness::start().await;
    let t = on.owner_token().await;
    data(
        &on.post(Some(&t), "{ __schema { queryType { name } } }", json!({}))
            .await,
    );
}

#[tokio::test]
async fn depth_limits_come_from_the_config() {
    let h = Harness::start_with(|c| c.graphql.max_depth = 3).await;
    let owner = h.owner_token().await;
    let r = h
        .post(
            Some(&owner),
            "{ apiKeys { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&r), "BAD_USER_INPUT");
    data(&h.post(Some(&owner), "{ me { id } }", json!({})).await);
}

async fn login_from(h: &Harness, forwarded: &str, user: &str, password: &str) -> Value {
    reqwest::Client::new()
        .post(h.url())
        .header("x-forwarded-for", forwarded)
        .json(&json!({
            "query": "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
            "variables": { "u": user, "p": password },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    // Untrusted: the header is ignored, the peer address counts.
    let plain = Harness::start().await;
    login_from(&plain, "203.0.113.5", "nobody", "wrong-password-1").await;
    let e = plain
        .store
        .audit_newest_first(None)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(e.client_ip.as_deref(), Some("127.0.0.1"));

    let h =
        Harness::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    // Ten failures from one client address (different usernames) throttle that address only.
    for i in 0..10 {
        let r = login_from(
            &h,
            "198.51.100.1, 203.0.113.5",
            &format!("user{i}"),
            "wrong-password-1",
        )
        .await;
        assert_eq!(code(&r), "UNAUTHENTICATED");
    }
    let throttled = login_from(&h, "203.0.113.5", OWNER, OWNER_PASSWORD).await;
    assert!(
        throttled["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("too many"),
        "{throttled}"
    );
    let other = login_from(&h, "203.0.113.6", OWNER, OWNER_PASSWORD).await;
    data(&other);
    let entries: Vec<_> = h
        .store
        .audit_newest_first(None)
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(entries[0].client_ip.as_deref(), Some("203.0.113.6"));
    assert_eq!(entries[1].client_ip.as_deref(), Some("203.0.113.5"));
    assert!(entries
        .iter()
        .skip(2)
        .all(|e| e.client_ip.as_deref() == Some("203.0.113.5")));
}

#[tokio::test]
async fn slow_operations_are_counted_and_timed() {
    let handle = claude_relay::metrics::install().expect("metrics recorder");
    let slow_count = |text: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("relay_graphql_slow_operations_total") && l.contains("type=\"query\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Threshold zero: every operation is slow.
    let h =
        Harness::start_with(|c| c.graphql.slow_query_threshold = std::time::Duration::ZERO).await;
    let owner = h.owner_token().await;
    let before = slow_count(&handle.render());
    let r = reqwest::Client::new()
        .post(h.url())
        .bearer_auth(&owner)
        .json(&json!({ "query": "query SlowProbe { me { id } }", "operationName": "SlowProbe" }))
        .send()
        .await
        .unwrap();
    data(&r.json::<Value>().await.unwrap());
    let text = handle.render();
    assert!(slow_count(&text) >= before + 1.0, "{text}");
    assert!(
        text.contains("relay_graphql_operation_seconds"),
        "histogram missing"
    );
    // With the default threshold a trivial query is not slow.
    let fast = Harness::start().await;
    let t = fast.owner_token().await;
    let before = slow_count(&handle.render());
    for _ in 0..3 {
        data(&fast.post(Some(&t), "{ me { id } }", json!({})).await);
    }
    // Other tests in this binary may run slow queries concurrently; only
    // this harness is known fast, so allow no more than their share.
    assert!(slow_count(&handle.render()) - before < 3.0);
}

#[tokio::test]
async fn the_playground_is_served_from_the_binary() {
    let h = Harness::start().await;
    let client = reqwest::Client::new();
    let page = client
        .get(h.url())
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("GraphiQL"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external URL in the page"
    );
    // Every script and stylesheet is served by the relay itself.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            assets.push(part.split('"').next().unwrap().to_string());
        }
    }
    assert!(assets.len() >= 6, "{assets:?}");
    let mut own_js = String::new();
    for path in &assets {
        assert!(path.starts_with("/graphql/assets/"), "{path}");
        let r = client
            .get(format!("http://{}{path}", h.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"));
        let body = r.text().await.unwrap();
        assert!(body.len() > 100, "{path}");
        if path.ends_with("playground.js") {
            own_js = body;
        }
    }
    // The page's own script: bearer token over HTTP and in connection_init, no external URL.
    assert!(own_js.contains("'Bearer '") && own_js.contains("/graphql/ws"));
    assert!(own_js.contains("connectionParams"));
    assert!(!own_js.contains("http://") && !own_js.contains("https://"));
    let missing = client
        .get(format!(
            "http://{}/graphql/assets/0.0.0/playground.js",
            h.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // API clients doing GET without HTML still get GraphQL.
    let token = h.owner_token().await;
    let r = client
        .get(format!("{}?query=%7Bme%7Busername%7D%7D", h.url()))
        .header("accept", "text/html, application/json")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(data(&v)["me"]["username"], OWNER);
}

#[tokio::test]
async fn resetting_the_generated_admins_password_deletes_its_file() {
    let h = Harness::start_with(|c| {
        c.admin_user = None;
        c.admin_password = None;
    })
    .await;
    let file = claude_relay::graphql::password_file(&h.config);
    let generated = std::fs::read_to_string(&file).unwrap();
    let token = h
        .login(claude_relay::graphql::DEFAULT_ADMIN, generated.trim())
        .await;
    let me = h.post(Some(&token), "{ me { id } }", json!({})).await;
    let id = data(&me)["me"]["id"].as_str().unwrap().to_string();
    let r = h
        .post(
            Some(&token),
            "mutation($i: ResetAdminPasswordInput!) { resetAdminPassword(input: $i) { revokedSessions } }",
            json!({ "i": { "id": id, "newPassword": "chosen-by-the-owner-1" } }),
        )
        .await;
    assert_eq!(
        data(&r)["resetAdminPassword"]["revokedSessions"],
        0,
        "own session kept"
    );
    assert!(!file.exists(), "the dead generated password file is gone");
    h.login(
        claude_relay::graphql::DEFAULT_ADMIN,
        "chosen-by-the-owner-1",
    )
    .await;
}

#[tokio::test]
async fn balancer_stats_mask_account_names_for_viewers() {
    // The full relay: its balancer follows the accounts in the store.
    let relay = common::TestRelay::start().await;
    relay
        .add_account("pool helen@example.com", "sk-ant-api03-upstream", 1)
        .await;
    relay
        .gql(
            "mutation { createAdmin(input: {username: \"v\", password: \"viewer-pass-1234\", role: VIEWER}) { admin { id } } }",
            json!({}),
        )
        .await;
    let viewer = relay.login("v", "viewer-pass-1234").await;
    let q = "{ balancerStats { accounts { name } } }";
    let mut owner_view = Value::Null;
    for _ in 0..100 {
        owner_view = relay.gql(q, json!({})).await;
        if owner_view.to_string().contains("helen@example.com") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        owner_view.to_string().contains("helen@example.com"),
        "{owner_view}"
    );
    let seen = relay.gql_as(Some(&viewer), q, json!({})).await;
    let text = data(&seen).to_string();
    assert!(!text.contains("helen@example.com"), "{text}");
    assert!(text.contains("pool [REDACTED:email]"), "{text}");
}
