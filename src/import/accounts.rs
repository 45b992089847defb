//! Groups (`account_group:*`, Claude platform only) and Claude accounts:
//! OAuth (`claude:account:*`, salt `salt`) and Console
//! (`claude_console_account:*`, salt `claude-console-salt`). Credentials are
//! decrypted here and handed to the store, which seals them again. Other
//! platforms are counted and reported as skipped.

use super::crypto::{Encoding, SALT_CLAUDE_CONSOLE, SALT_CLAUDE_OAUTH};
use super::fields::{flag, int, json, millis, text, time};
use super::merge::{id_at, three_way, KIND_ACCOUNT, KIND_GROUP};
use super::source::Fields;
use super::{Ctx, Error};
use crate::domain::{
    Account, AccountId, AccountKind, AccountMode, AccountRouting, AccountStatus, Credentials,
    Group, GroupId, ModelMapping, Secret,
};
use crate::store::ImportLink;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const SECTION_GROUPS: &str = "groups";
const SECTION_ACCOUNTS: &str = "accounts";

/// The two CRS account records the importer maps.
#[derive(Clone, Copy)]
enum CrsKind {
    /// `claude:account:*` (salt `salt`).
    Oauth,
    /// `claude_console_account:*` (salt `claude-console-salt`).
    Console,
}

/// Platforms we count and skip: (key prefix, index SET, Redis type, name).
pub(super) const OTHER_PLATFORMS: &[(&str, &str, &str, &str)] = &[
    ("ccr_account:", "ccr_account:index", "hash", "CCR"),
    (
        "bedrock_account:",
        "bedrock_account:index",
        "string",
        "Bedrock",
    ),
    ("gemini_account:", "gemini_account:index", "hash", "Gemini"),
    (
        "gemini_api_account:",
        "gemini_api_account:index",
        "hash",
        "Gemini API",
    ),
    ("openai:account:", "openai:account:index", "hash", "OpenAI"),
    (
        "openai_responses_account:",
        "openai_responses_account:index",
        "hash",
        "OpenAI Responses",
    ),
    (
        "azure_openai:account:",
        "azure_openai:account:index",
        "hash",
        "Azure OpenAI",
    ),
    ("droid:account:", "droid:account:index", "hash", "Droid"),
];

/// The group fields the importer owns (the merge view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct GroupFields {
    name: String,
    description: String,
}

pub(super) async fn import_groups(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let ids = ctx.src.smembers("account_groups").await?;
    let mut all: Vec<String> = ctx
        .src
        .record_ids("account_group:", None, "hash", &[])
        .await?;
    all.extend(ids);
    all.sort();
    all.dedup();
    let keys: Vec<String> = all.iter().map(|id| format!("account_group:{id}")).collect();
    let records = ctx.src.hgetall_many(&keys).await?;
    ctx.progress.phase("groups", all.len() as u64);
    for (id, f) in all.into_iter().zip(records) {
        ctx.progress.advance(1);
        ctx.report.section(SECTION_GROUPS).read += 1;
        let record = format!("account_group:{id}");
        if f.is_empty() {
            ctx.report.skip(
                SECTION_GROUPS,
                record,
                "listed in account_groups but has no record",
            );
            continue;
        }
        let platform = text(&f, "platform");
        if !platform.is_empty() && platform != "claude" {
            ctx.report.skip(
                SECTION_GROUPS,
                record,
                format!("{platform} group (only Claude groups are imported)"),
            );
            continue;
        }
        let incoming = GroupFields {
            name: non_empty(text(&f, "name"), &id),
            description: text(&f, "description").to_string(),
        };
        let created = time(&f, "createdAt");
        upsert_group(ctx, &id, incoming, created)?;
    }
    Ok(())
}

fn upsert_group(
    ctx: &mut Ctx<'_>,
    crs_id: &str,
    incoming: GroupFields,
    created: Option<chrono::DateTime<Utc>>,
) -> Result<(), Error> {
    let record = format!("account_group:{crs_id}");
    let incoming_v = to_value(&incoming)?;
    let link = ctx.links.get(KIND_GROUP, crs_id)?;
    let local = match (&link, ctx.store) {
        (Some(l), Some(store)) => store.get_group(GroupId(l.local_id))?,
        _ => None,
    };
    let now = ctx.now;
    let (Some(link), Some(mut group)) = (link.clone(), local) else {
        let local_id = link.map_or_else(|| id_at(millis(created)), |l| l.local_id);
        let group = Group {
            id: GroupId(local_id),
            name: incoming.name,
            description: incoming.description,
            strategy: None,
            created_at: created.unwrap_or(now),
            updated_at: now,
        };
        put_link(ctx, KIND_GROUP, crs_id, local_id, incoming_v)?;
        if let Some(store) = ctx.writer() {
            store.put_group(&group)?;
        }
        ctx.report.section(SECTION_GROUPS).created += 1;
        return Ok(());
    };
    let local_v = to_value(&GroupFields {
        name: group.name.clone(),
        description: group.description.clone(),
    })?;
    let merged = three_way(&link.base, &local_v, &incoming_v);
    note_conflicts(ctx, &record, &merged.conflicts);
    if merged.updated.is_empty() {
        ctx.report.section(SECTION_GROUPS).unchanged += 1;
    } else {
        let fields: GroupFields = from_value(merged.value)?;
        group.name = fields.name;
        group.description = fields.description;
        group.updated_at = now;
        if let Some(store) = ctx.writer() {
            store.put_group(&group)?;
        }
        ctx.report.section(SECTION_GROUPS).updated += 1;
    }
    put_link(ctx, KIND_GROUP, crs_id, link.local_id, incoming_v)?;
    Ok(())
}

/// The account fields the importer owns (the merge view). Credentials and
/// proxy are compared whole: a local OAuth refresh is a local change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct AccountFields {
    name: String,
    kind: AccountKind,
    priority: u32,
    status: AccountStatus,
    base_url: Option<String>,
    credentials: Credentials,
    proxy: Option<Secret>,
    mode: AccountMode,
    group_ids: Vec<GroupId>,
    max_concurrency: Option<u32>,
    allowed_models: Vec<String>,
    model_mapping: Vec<ModelMapping>,
}

impl AccountFields {
    fn of(a: &Account) -> AccountFields {
        AccountFields {
            name: a.name.clone(),
            kind: a.kind,
            priority: a.priority,
            status: a.status,
            base_url: a.base_url.clone(),
            credentials: a.credentials.clone(),
            proxy: a.proxy.clone(),
            mode: a.routing.mode,
            group_ids: a.routing.group_ids.clone(),
            max_concurrency: a.routing.max_concurrency,
            allowed_models: a.routing.allowed_models.clone(),
            model_mapping: a.routing.model_mapping.clone(),
        }
    }

    fn apply(self, a: &mut Account) {
        a.name = self.name;
        a.kind = self.kind;
        a.priority = self.priority;
        a.status = self.status;
        a.base_url = self.base_url;
        a.credentials = self.credentials;
        a.proxy = self.proxy;
        a.routing.mode = self.mode;
        a.routing.group_ids = self.group_ids;
        a.routing.max_concurrency = self.max_concurrency;
        a.routing.allowed_models = self.allowed_models;
        a.routing.model_mapping = self.model_mapping;
    }
}

pub(super) async fn import_accounts(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let memberships = group_memberships(ctx).await?;
    let oauth = ctx
        .src
        .hash_records("claude:account:", Some("claude:account:index"), &[])
        .await?;
    let console = ctx
        .src
        .hash_records(
            "claude_console_account:",
            Some("claude_console_account:index"),
            &[],
        )
        .await?;
    ctx.progress
        .phase("accounts", (oauth.len() + console.len()) as u64);
    let mut undecryptable = 0usize;
    let mut encrypted = 0usize;
    for (crs, records) in [(CrsKind::Oauth, oauth), (CrsKind::Console, console)] {
        for (id, f) in records {
            ctx.progress.advance(1);
            ctx.report.section(SECTION_ACCOUNTS).read += 1;
            let record = match crs {
                CrsKind::Oauth => format!("claude:account:{id}"),
                CrsKind::Console => format!("claude_console_account:{id}"),
            };
            let groups = memberships.get(&id).cloned().unwrap_or_default();
            match map_account(ctx, crs, &id, &f, &groups, &record) {
                Ok((fields, created)) => {
                    encrypted += 1;
                    upsert_account(ctx, &id, &record, fields, created)?;
                }
                Err(reason) => {
                    encrypted += 1;
                    undecryptable += usize::from(reason.contains("ENCRYPTION_KEY"));
                    ctx.report.skip(SECTION_ACCOUNTS, record, reason);
                }
            }
        }
    }
    if undecryptable > 0 && undecryptable == encrypted {
        ctx.report.warn(
            "no account credential decrypted: the --crs-encryption-key is almost certainly not this deployment's ENCRYPTION_KEY",
        );
    }
    for (prefix, index, want, name) in OTHER_PLATFORMS {
        let ids = ctx.src.record_ids(prefix, Some(index), want, &[]).await?;
        for id in ids {
            ctx.report.section(SECTION_ACCOUNTS).read += 1;
            ctx.report.skip(
                SECTION_ACCOUNTS,
                format!("{prefix}{id}"),
                if *name == "Bedrock" {
                    // The adapter exists; mapping CRS's Bedrock records onto it is not done yet.
                    "Bedrock account: not imported (the importer does not map CRS Bedrock accounts yet); create it with createAccount".to_string()
                } else {
                    format!("{name} account: claude-relay has no adapter for this platform")
                },
            );
        }
    }
    Ok(())
}

/// Refuses a wrong ENCRYPTION_KEY before anything is written: the first
/// encrypted account credential must decrypt. (Key hashes cannot be checked:
/// CRS keeps no raw keys.) Deployments without accounts pass.
pub(super) async fn verify_encryption_key(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    for (prefix, index, field, salt) in [
        (
            "claude_console_account:",
            "claude_console_account:index",
            "apiKey",
            SALT_CLAUDE_CONSOLE,
        ),
        (
            "claude:account:",
            "claude:account:index",
            "accessToken",
            SALT_CLAUDE_OAUTH,
        ),
    ] {
        for (id, f) in ctx.src.hash_records(prefix, Some(index), &[]).await? {
            let value = text(&f, field);
            if !value.contains(':') {
                continue;
            }
            return match ctx.cipher.decrypt(salt, value) {
                Ok(_) => Ok(()),
                Err(_) => Err(Error::Options(format!(
                    "the ENCRYPTION_KEY given does not decrypt {prefix}{id} `{field}`: it is not this deployment's key (nothing was imported)"
                ))),
            };
        }
    }
    Ok(())
}

/// CRS account id → the CRS ids of its (imported) Claude groups.
async fn group_memberships(ctx: &mut Ctx<'_>) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for group in ctx.src.smembers("account_groups").await? {
        for member in ctx
            .src
            .smembers(&format!("account_group_members:{group}"))
            .await?
        {
            out.entry(member).or_default().push(group.clone());
        }
    }
    Ok(out)
}

type Mapped = (AccountFields, Option<chrono::DateTime<Utc>>);

fn map_account(
    ctx: &mut Ctx<'_>,
    crs: CrsKind,
    id: &str,
    f: &Fields,
    crs_groups: &[String],
    record: &str,
) -> Result<Mapped, String> {
    let mut credentials = Credentials::default();
    match crs {
        CrsKind::Oauth => {
            let access = decrypt(ctx, SALT_CLAUDE_OAUTH, f, "accessToken", record)?;
            let refresh = decrypt(ctx, SALT_CLAUDE_OAUTH, f, "refreshToken", record)?;
            let oauth_json = decrypt(ctx, SALT_CLAUDE_OAUTH, f, "claudeAiOauth", record)?;
            let oauth: serde_json::Value = serde_json::from_str(&oauth_json).unwrap_or_default();
            let from_json = |k: &str| oauth.get(k).and_then(|v| v.as_str()).unwrap_or("");
            let access = non_empty(&access, from_json("accessToken"));
            let refresh = non_empty(&refresh, from_json("refreshToken"));
            if access.is_empty() && refresh.is_empty() {
                return Err("OAuth account without an access or refresh token".into());
            }
            credentials.access_token = (!access.is_empty()).then(|| Secret::new(access));
            credentials.refresh_token = (!refresh.is_empty()).then(|| Secret::new(refresh));
            let expires_ms = super::fields::parse_int(text(f, "expiresAt"))
                .or_else(|| oauth.get("expiresAt").and_then(serde_json::Value::as_i64));
            credentials.expires_at =
                expires_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single());
            if !text(f, "email").is_empty() || !text(f, "password").is_empty() {
                ctx.report.warn(format!(
                    "{record}: the Claude login email/password are not imported (claude-relay uses the OAuth tokens only)"
                ));
            }
        }
        CrsKind::Console => {
            let key = decrypt(ctx, SALT_CLAUDE_CONSOLE, f, "apiKey", record)?;
            if key.is_empty() {
                return Err("Console account without an API key".into());
            }
            credentials.api_key = Some(Secret::new(key));
        }
    }
    let base_url = match crs {
        CrsKind::Console => {
            let url = text(f, "apiUrl").trim().trim_end_matches('/');
            (!url.is_empty()).then(|| url.to_string())
        }
        CrsKind::Oauth => None,
    };
    let kind = match crs {
        CrsKind::Oauth => AccountKind::ClaudeOauth,
        CrsKind::Console => console_kind(ctx, &credentials, base_url.as_deref(), record),
    };
    let proxy = proxy_url(&json(f, "proxy"));
    let priority = match int(f, "priority") {
        p if p > 0 => u32::try_from(p).unwrap_or(50),
        _ => 50, // parseInt(x) || 50, as CRS does
    };
    let status = account_status(ctx, f, record);
    let mode = match text(f, "accountType") {
        "dedicated" => AccountMode::Dedicated,
        "group" => AccountMode::GroupOnly,
        _ => AccountMode::Shared,
    };
    let mut group_ids = Vec::new();
    for g in crs_groups {
        match ctx.links.local_id(KIND_GROUP, g) {
            Some(local) => group_ids.push(GroupId(local)),
            None => ctx.report.warn(format!(
                "{record}: member of group {g}, which was not imported (run with groups)"
            )),
        }
    }
    let concurrency = match crs {
        CrsKind::Console => int(f, "maxConcurrentTasks"),
        CrsKind::Oauth => int(f, "maxConcurrency"),
    };
    let (allowed_models, model_mapping) = supported_models(&json(f, "supportedModels"));
    if super::fields::float(f, "dailyQuota") > 0.0 {
        ctx.report.warn(format!(
            "{record}: dailyQuota ${} is not imported (claude-relay has no per-account daily quota)",
            text(f, "dailyQuota")
        ));
    }
    let fields = AccountFields {
        name: non_empty(text(f, "name"), id),
        kind,
        priority,
        status,
        base_url,
        credentials,
        proxy,
        mode,
        group_ids,
        max_concurrency: u32::try_from(concurrency).ok().filter(|c| *c > 0),
        allowed_models,
        model_mapping,
    };
    Ok((fields, time(f, "createdAt")))
}

/// CRS sends a Console key that is not an Anthropic key (`sk-ant-`) as
/// `Authorization: Bearer`, as third-party Anthropic-compatible endpoints
/// expect; our `anthropic_compatible` kind sends the key both ways, so such
/// accounts keep working. Without a base URL that kind cannot exist: the
/// account stays an API-key account and the report says why.
fn console_kind(
    ctx: &mut Ctx<'_>,
    credentials: &Credentials,
    base_url: Option<&str>,
    record: &str,
) -> AccountKind {
    let foreign = credentials
        .api_key
        .as_ref()
        .is_some_and(|k| !k.expose().starts_with("sk-ant-"));
    if !foreign {
        return AccountKind::AnthropicApiKey;
    }
    if base_url.is_some() {
        return AccountKind::AnthropicCompatible;
    }
    ctx.report.warn(format!(
        "{record}: the upstream key is not an Anthropic key and the account has no apiUrl; imported as an Anthropic API-key account (x-api-key only)"
    ));
    AccountKind::AnthropicApiKey
}

fn decrypt(
    ctx: &mut Ctx<'_>,
    salt: &str,
    f: &Fields,
    field: &str,
    record: &str,
) -> Result<String, String> {
    match ctx.cipher.decrypt(salt, text(f, field)) {
        Ok((plain, Encoding::LegacyCipher)) => {
            ctx.report.warn(format!(
                "{record}: `{field}` used CRS's deprecated createDecipher format"
            ));
            Ok(plain)
        }
        Ok((plain, _)) => Ok(plain),
        Err(e) => Err(format!("`{field}` {e}")),
    }
}

fn account_status(ctx: &mut Ctx<'_>, f: &Fields, record: &str) -> AccountStatus {
    if !flag(f, "isActive") {
        return AccountStatus::Disabled;
    }
    match text(f, "status") {
        "unauthorized" => return AccountStatus::AuthFailed,
        s @ ("blocked" | "account_blocked" | "error") => {
            ctx.report.warn(format!(
                "{record}: CRS status {s:?}; imported disabled, enable it after checking the account"
            ));
            return AccountStatus::Disabled;
        }
        _ => {}
    }
    if text(f, "schedulable") == "false" {
        ctx.report.warn(format!(
            "{record}: not schedulable in CRS (often a temporary rate-limit stop); imported disabled"
        ));
        return AccountStatus::Disabled;
    }
    AccountStatus::Active
}

/// CRS proxy JSON → URL (`type://user:pass@host:port`); the password is kept.
fn proxy_url(v: &serde_json::Value) -> Option<Secret> {
    let host = v.get("host")?.as_str().filter(|h| !h.is_empty())?;
    let port = match v.get("port")? {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    let scheme = match v.get("type").and_then(|t| t.as_str()).unwrap_or("http") {
        "socks" | "socks5" => "socks5",
        other => other,
    };
    let user = v.get("username").and_then(|u| u.as_str()).unwrap_or("");
    let pass = v.get("password").and_then(|p| p.as_str()).unwrap_or("");
    let auth = match (user.is_empty(), pass.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{}@", percent(user)),
        _ => format!("{}:{}@", percent(user), percent(pass)),
    };
    Some(Secret::new(format!("{scheme}://{auth}{host}:{port}")))
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `supportedModels`: `{}` = every model; an object maps requested →
/// upstream and allows only its keys; a legacy array is an allow-list.
fn supported_models(v: &serde_json::Value) -> (Vec<String>, Vec<ModelMapping>) {
    match v {
        serde_json::Value::Object(map) => {
            let allowed = map.keys().cloned().collect();
            let mapping = map
                .iter()
                .filter_map(|(from, to)| {
                    let to = to.as_str()?;
                    (to != from && !to.is_empty()).then(|| ModelMapping {
                        from: from.clone(),
                        to: to.to_string(),
                    })
                })
                .collect();
            (allowed, mapping)
        }
        serde_json::Value::Array(list) => (
            list.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect(),
            Vec::new(),
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

fn upsert_account(
    ctx: &mut Ctx<'_>,
    crs_id: &str,
    record: &str,
    incoming: AccountFields,
    created: Option<chrono::DateTime<Utc>>,
) -> Result<(), Error> {
    let incoming_v = to_value(&incoming)?;
    let link = ctx.links.get(KIND_ACCOUNT, crs_id)?;
    let local = match (&link, ctx.store) {
        (Some(l), Some(store)) => store.get_account(AccountId(l.local_id))?,
        _ => None,
    };
    let now = ctx.now;
    let (Some(link), Some(mut account)) = (link.clone(), local) else {
        let local_id = link.map_or_else(|| id_at(millis(created)), |l| l.local_id);
        let mut account = Account {
            id: AccountId(local_id),
            name: String::new(),
            kind: incoming.kind,
            priority: 50,
            status: AccountStatus::Active,
            base_url: None,
            credentials: Credentials::default(),
            proxy: None,
            routing: AccountRouting::default(),
            created_at: created.unwrap_or(now),
            updated_at: now,
        };
        incoming.apply(&mut account);
        put_link(ctx, KIND_ACCOUNT, crs_id, local_id, incoming_v)?;
        if let Some(store) = ctx.writer() {
            store.put_account(&account)?;
        }
        ctx.report.section(SECTION_ACCOUNTS).created += 1;
        return Ok(());
    };
    let local_v = to_value(&AccountFields::of(&account))?;
    let merged = three_way(&link.base, &local_v, &incoming_v);
    note_conflicts(ctx, record, &merged.conflicts);
    if merged.updated.is_empty() {
        ctx.report.section(SECTION_ACCOUNTS).unchanged += 1;
    } else {
        let fields: AccountFields = from_value(merged.value)?;
        fields.apply(&mut account);
        account.updated_at = now;
        if let Some(store) = ctx.writer() {
            store.put_account(&account)?;
        }
        ctx.report.section(SECTION_ACCOUNTS).updated += 1;
    }
    put_link(ctx, KIND_ACCOUNT, crs_id, link.local_id, incoming_v)
}

pub(super) fn put_link(
    ctx: &mut Ctx<'_>,
    kind: &'static str,
    crs_id: &str,
    local_id: uuid::Uuid,
    base: serde_json::Value,
) -> Result<(), Error> {
    // Unchanged links are not rewritten, so a no-op rerun writes nothing.
    if ctx
        .links
        .get(kind, crs_id)?
        .is_some_and(|l| l.local_id == local_id && l.base == base)
    {
        return Ok(());
    }
    let link = ImportLink {
        local_id,
        base,
        imported_at: ctx.now,
    };
    let dry = ctx.opts.dry_run;
    ctx.links.put(dry, kind, crs_id, link)?;
    Ok(())
}

/// Like [`put_link`] for a record created in this run: the sealed link is
/// returned for the record's own transaction (None when dry-running).
pub(super) fn stage_link(
    ctx: &mut Ctx<'_>,
    kind: &'static str,
    crs_id: &str,
    local_id: uuid::Uuid,
    base: serde_json::Value,
) -> Result<Option<crate::store::SealedBlob>, Error> {
    let link = ImportLink {
        local_id,
        base,
        imported_at: ctx.now,
    };
    let dry = ctx.opts.dry_run;
    Ok(ctx.links.stage(dry, kind, crs_id, link)?)
}

pub(super) fn note_conflicts(ctx: &mut Ctx<'_>, record: &str, fields: &[String]) {
    for field in fields {
        ctx.report.conflicts.push(super::report::Conflict {
            record: record.to_string(),
            field: field.clone(),
        });
    }
}

pub(super) fn to_value<T: Serialize>(v: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v)
        .map_err(|e| Error::Store(crate::store::Error::Corrupt(format!("import view: {e}"))))
}

pub(super) fn from_value<T: for<'de> Deserialize<'de>>(v: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(v)
        .map_err(|e| Error::Store(crate::store::Error::Corrupt(format!("import view: {e}"))))
}

pub(super) fn non_empty(value: &str, fallback: &str) -> String {
    let v = value.trim();
    if v.is_empty() {
        fallback.to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn proxies_become_urls_with_their_password() {
        let p = proxy_url(
            &json!({"type":"http","host":"127.0.0.1","port":18899,"username":"fxproxy1","password":"bc3e@54"}),
        );
        assert_eq!(
            p.unwrap().expose(),
            "http://fxproxy1:bc3e%4054@127.0.0.1:18899"
        );
        let s = proxy_url(&json!({"type":"socks5","host":"h","port":"1080"}));
        assert_eq!(s.unwrap().expose(), "socks5://h:1080");
        assert!(proxy_url(&serde_json::Value::Null).is_none());
    }

    #[test]
    fn supported_models_map_and_allow() {
        let (allowed, mapping) = supported_models(&json!({
            "claude-3-5-haiku-20241022": "claude-haiku-4-5-20251001",
            "claude-sonnet-4-5-20250929": "claude-sonnet-4-5-20250929"
        }));
        assert_eq!(allowed.len(), 2);
        assert_eq!(
            mapping,
            vec![ModelMapping {
                from: "claude-3-5-haiku-20241022".into(),
                to: "claude-haiku-4-5-20251001".into()
            }]
        );
        assert_eq!(supported_models(&json!({})), (vec![], vec![]));
        assert_eq!(supported_models(&json!(["a"])).0, vec!["a".to_string()]);
    }
}
