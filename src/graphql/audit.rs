//! The audit log in the admin API: the [`Audit`] schema extension that
//! records every root mutation field (so mutations added later are audited
//! without touching this file) and every login attempt, and the `auditLog`
//! query (OWNER and ADMIN; a VIEWER is refused, since who changed what is
//! not "read-only data about keys and accounts").
//!
//! What an entry holds: who (admin id and username; none for a failed
//! login), when, from where (client address after `trusted_proxies`), the
//! mutation field name, its target id, the outcome (`OK` or the error code)
//! and the arguments with secrets removed: any argument or input field whose
//! name looks like a secret (password, token, secret, api key, credential,
//! proxy, headers, authorization) is replaced by `[REDACTED]`, and every
//! other string goes through the `Masker`. Results are never stored (they
//! may hold a new key's secret or a session token).
//!
//! For a mutation on one existing record (its `id` among the arguments: a
//! key, account, group or admin), the entry also holds `diff`: each field of
//! the stored record that differs after the mutation, `{"path": {"from",
//! "to"}}`, scrubbed the same way (a secret field shows only that it
//! changed; hashes and `updated_at` noise are left out or redacted).
//!
//! A failed login's username is kept only when it names an existing admin
//! (an unknown one is often a password typed into the wrong field).
//!
//! Mutations sent without a valid session are not recorded (they changed
//! nothing and would let anyone push real entries out of the bounded log);
//! login attempts always are.

use super::auth::{require_auditor, resolve_hash, services, Principal, RequestAuth, Services};
use super::error::GqlError;
use super::scalars::DateTime;
use crate::domain::AdminId;
use crate::store::{AuditEntry, AuditRetention};
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextResolve, ResolveInfo,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    Context, InputObject, Object, Result, ServerResult, SimpleObject, Value, Variables, ID,
};
use base64::Engine;
use chrono::Utc;
use parking_lot::Mutex;
use std::sync::Arc;

/// The root mutation type's name (the merged `Mutation` object).
const MUTATION_TYPE: &str = "Mutation";
/// What replaces a secret argument.
pub(crate) const REDACTED: &str = "[REDACTED]";
/// Name fragments (lowercase, without `_`) of arguments that are never stored.
const SECRET_NAMES: &[&str] = &[
    "password",
    "token",
    "secret",
    "apikey",
    "credential",
    "proxy",
    "header",
    "authorization",
];
/// What replaces a login name that matches no admin.
pub(crate) const UNKNOWN_USER: &str = "[unknown user]";
/// Longest string kept in an entry; longer ones are cut (after masking).
const MAX_STRING_CHARS: usize = 512;

/// Schema extension recording mutations and logins in the audit log.
pub(crate) struct Audit;

impl ExtensionFactory for Audit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AuditExtension {
            variables: Mutex::new(Variables::default()),
        })
    }
}

struct AuditExtension {
    /// The request's variables, to resolve `$x` in mutation arguments.
    variables: Mutex<Variables>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for AuditExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        *self.variables.lock() = variables.clone();
        next.run(ctx, query, variables).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.parent_type != MUTATION_TYPE || info.path_node.parent.is_some() {
            return next.run(ctx, info).await;
        }
        let Some(svc) = ctx.data_opt::<Arc<Services>>().cloned() else {
            return next.run(ctx, info).await;
        };
        let action = info.name.to_string();
        let arguments = self.arguments(&info);
        let auth = ctx.data_opt::<RequestAuth>();
        // Resolved before the mutation runs: it may delete its own admin.
        let caller = auth.and_then(|a| caller(&svc, a));
        let client_ip = auth.and_then(|a| a.client_ip).map(|ip| ip.to_string());
        let before = target_of(&arguments).and_then(|id| Some((snapshot(&svc, &id)?, id)));
        let result = next.run(ctx, info).await;
        let outcome = match &result {
            Ok(_) => "OK".to_string(),
            Err(e) => e
                .extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .and_then(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "INTERNAL".into()),
        };
        let (admin_id, admin_username) = match (&caller, action.as_str()) {
            (Some(p), _) => (Some(p.admin.id), Some(p.admin.username.clone())),
            (None, "login") if outcome == "OK" => login_admin(&svc, &arguments),
            (None, "login") => (None, None),
            // Unauthenticated mutations did nothing; see the module docs.
            (None, _) => return result,
        };
        let diff = before.and_then(|(before, id)| {
            let after = snapshot(&svc, &id).unwrap_or(serde_json::Value::Null);
            record_diff(&svc, &before, &after)
        });
        let mut arguments = arguments;
        if action == "login" {
            forget_unknown_username(&svc, &mut arguments);
        }
        let target = target_of(&arguments)
            .or_else(|| {
                result
                    .as_ref()
                    .ok()
                    .and_then(|v| v.as_ref())
                    .and_then(id_in)
            })
            .or_else(|| (action == "login").then(|| admin_id.map(|a| a.to_string()))?);
        let entry = AuditEntry {
            id: 0,
            at: Utc::now(),
            admin_id,
            admin_username,
            client_ip,
            action,
            target,
            outcome,
            changes: scrub(&svc, arguments),
            diff,
        };
        let retention = AuditRetention {
            max_entries: svc.config.graphql.audit_max_entries,
            max_age: svc.config.graphql.audit_max_age,
        };
        if let Err(e) = svc.store.append_audit(entry, retention) {
            // The mutation already happened; failing its response would only
            // make the client retry it. Count and log the gap instead.
            crate::metrics::audit_write_failed();
            tracing::error!(error = %e, "audit entry could not be written");
        }
        result
    }
}

impl AuditExtension {
    /// The field's arguments as JSON, variables substituted (missing ones null).
    fn arguments(&self, info: &ResolveInfo<'_>) -> serde_json::Value {
        let vars = self.variables.lock();
        let mut map = serde_json::Map::new();
        for (name, value) in &info.field.arguments {
            let v = value
                .node
                .clone()
                .into_const_with(|n| vars.get(&n).cloned().ok_or(()))
                .unwrap_or(Value::Null);
            map.insert(
                name.node.to_string(),
                v.into_json().unwrap_or(serde_json::Value::Null),
            );
        }
        serde_json::Value::Object(map)
    }
}

/// The admin behind the request's session, if any (HTTP header or socket).
fn caller(svc: &Services, auth: &RequestAuth) -> Option<Principal> {
    if let Some(p) = &auth.principal {
        return Some(p.clone());
    }
    let hash = auth.ws_token_hash.as_deref()?;
    resolve_hash(&svc.store, hash, Utc::now()).ok().flatten()
}

/// After a successful login, the admin who logged in.
fn login_admin(svc: &Services, args: &serde_json::Value) -> (Option<AdminId>, Option<String>) {
    let name = args.get("username").and_then(|v| v.as_str()).unwrap_or("");
    match svc.store.admin_by_username(name.trim()) {
        Ok(Some(a)) => (Some(a.id), Some(a.username)),
        _ => (None, None),
    }
}

/// A login name that matches no admin is often a password typed into the
/// wrong field: keep it out of the log.
fn forget_unknown_username(svc: &Services, args: &mut serde_json::Value) {
    let known = args
        .get("username")
        .and_then(|v| v.as_str())
        .is_some_and(|name| matches!(svc.store.admin_by_username(name.trim()), Ok(Some(_))));
    if !known {
        if let Some(obj) = args.as_object_mut() {
            obj.insert(
                "username".into(),
                serde_json::Value::String(UNKNOWN_USER.into()),
            );
        }
    }
}

/// `id` of the arguments or of their `input`.
fn target_of(args: &serde_json::Value) -> Option<String> {
    let direct = args.get("id");
    let nested = args.get("input").and_then(|i| i.get("id"));
    direct
        .or(nested)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The first `id` / `deletedId` in a mutation result, breadth first (the
/// payload's own record, e.g. `createApiKey { apiKey { id } }`).
fn id_in(value: &Value) -> Option<String> {
    let mut queue = std::collections::VecDeque::from([value]);
    while let Some(v) = queue.pop_front() {
        if let Value::Object(map) = v {
            for key in ["id", "deletedId"] {
                if let Some(Value::String(s)) = map.get(key) {
                    return Some(s.clone());
                }
            }
            queue.extend(map.values());
        }
    }
    None
}

fn is_secret_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_NAMES.iter().any(|s| n.contains(s))
}

/// Secrets out, free text masked (see the module docs).
fn scrub(svc: &Services, value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        J::Object(map) => J::Object(
            map.into_iter()
                .map(|(k, v)| {
                    // Numbers and flags are never secrets (and `maxTokens`-like
                    // limits must stay readable).
                    let secret_shaped = matches!(v, J::String(_) | J::Array(_) | J::Object(_));
                    let v = if is_secret_name(&k) && secret_shaped {
                        J::String(REDACTED.into())
                    } else {
                        scrub(svc, v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        J::Array(list) => J::Array(list.into_iter().map(|v| scrub(svc, v)).collect()),
        J::String(s) => {
            let masked = svc.viewer_masker.mask(&s);
            J::String(masked.chars().take(MAX_STRING_CHARS).collect())
        }
        other => other,
    }
}

/// The stored form of the record `id` names, if it is a key, account, group
/// or admin (ids are UUIDs, so at most one kind matches).
fn snapshot(svc: &Services, id: &str) -> Option<serde_json::Value> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    let store = &svc.store;
    let found = if let Ok(Some(k)) = store.get_key(crate::domain::KeyId(uuid)) {
        serde_json::to_value(k)
    } else if let Ok(Some(a)) = store.get_account(crate::domain::AccountId(uuid)) {
        serde_json::to_value(a)
    } else if let Ok(Some(g)) = store.get_group(crate::domain::GroupId(uuid)) {
        serde_json::to_value(g)
    } else if let Ok(Some(a)) = store.get_admin(AdminId(uuid)) {
        serde_json::to_value(a)
    } else {
        return None;
    };
    found.ok()
}

/// Fields that change on every write and say nothing an admin did.
const DIFF_NOISE: &[&str] = &["updated_at"];

/// Leaf fields of `before` and `after` that differ, as `{"a.b": {"from", "to"}}`
/// (a deleted record: `after` is null). None when nothing differs.
fn record_diff(
    svc: &Services,
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Option<serde_json::Value> {
    let mut old = std::collections::BTreeMap::new();
    let mut new = std::collections::BTreeMap::new();
    flatten("", before, &mut old);
    flatten("", after, &mut new);
    let mut out = serde_json::Map::new();
    let paths: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for path in paths {
        let (from, to) = (old.get(path), new.get(path));
        if from == to || DIFF_NOISE.contains(&path.as_str()) {
            continue;
        }
        // A secret (or a hash of one) shows only that it changed.
        let hidden = path
            .split('.')
            .any(|part| is_secret_name(part) || part.ends_with("hash"));
        let show = |v: Option<&serde_json::Value>| match v {
            None => serde_json::Value::Null,
            Some(_) if hidden => serde_json::Value::String(REDACTED.into()),
            Some(v) => scrub(svc, v.clone()),
        };
        out.insert(
            path.clone(),
            serde_json::json!({ "from": show(from), "to": show(to) }),
        );
    }
    (!out.is_empty()).then_some(serde_json::Value::Object(out))
}

/// Leaf values by dotted path; arrays are compared whole.
fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut std::collections::BTreeMap<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        serde_json::Value::Null if prefix.is_empty() => {}
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

/// One audited action.
#[derive(SimpleObject)]
#[graphql(name = "AuditEntry")]
pub struct AuditEntryNode {
    /// Increases with every entry (newer entries have larger ids).
    pub id: ID,
    /// When the action finished.
    pub at: DateTime,
    /// The admin who acted; null for a failed login.
    pub admin_id: Option<ID>,
    /// That admin's username at the time.
    pub admin_username: Option<String>,
    /// The client address (after `trusted_proxies`).
    pub client_address: Option<String>,
    /// The mutation field, e.g. `createApiKey`, or `login`.
    pub action: String,
    /// The id of the record acted on, when known.
    pub target: Option<String>,
    /// `OK` or the error code the client received.
    pub outcome: String,
    /// The arguments, with secrets replaced by `[REDACTED]` and free text masked.
    pub changes: async_graphql::Json<serde_json::Value>,
    /// For a mutation on one existing key, account, group or admin: each
    /// stored field it changed, `{"path": {"from": …, "to": …}}` (`to` null
    /// when the record was removed); secrets show only `[REDACTED]`. Null
    /// when there was no such record or nothing changed.
    pub diff: Option<async_graphql::Json<serde_json::Value>>,
}

impl From<AuditEntry> for AuditEntryNode {
    fn from(e: AuditEntry) -> Self {
        AuditEntryNode {
            id: ID(e.id.to_string()),
            at: e.at.into(),
            admin_id: e.admin_id.map(|a| ID(a.to_string())),
            admin_username: e.admin_username,
            client_address: e.client_ip,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            changes: async_graphql::Json(e.changes),
            diff: e.diff.map(async_graphql::Json),
        }
    }
}

/// One entry in a page of the audit log.
#[derive(SimpleObject)]
pub struct AuditEntryEdge {
    /// Opaque position of this entry in the log.
    pub cursor: String,
    /// The entry.
    pub node: AuditEntryNode,
}

/// A page of the audit log, newest first.
#[derive(SimpleObject)]
pub struct AuditEntryConnection {
    /// Entries matching the filter, across all pages.
    pub total_count: usize,
    /// This page's entries with their cursors.
    pub edges: Vec<AuditEntryEdge>,
    /// Whether more pages follow, and where this one ends.
    pub page_info: super::connection::PageInfo,
}

/// Which audit entries to list; all conditions must hold.
#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    /// Only actions of this admin.
    pub admin_id: Option<ID>,
    /// Only this action (mutation field name, e.g. `deleteApiKey`).
    pub action: Option<String>,
    /// Only entries at or after this instant.
    pub since: Option<DateTime>,
    /// Only entries before this instant.
    pub until: Option<DateTime>,
    /// Only this outcome: `OK` or an error code such as `FORBIDDEN`.
    pub outcome: Option<String>,
}

impl AuditLogFilter {
    fn matches(&self, e: &AuditEntry, admin: Option<AdminId>) -> bool {
        admin.is_none_or(|a| e.admin_id == Some(a))
            && self.action.as_ref().is_none_or(|a| &e.action == a)
            && self.since.as_ref().is_none_or(|t| e.at >= t.0)
            && self.until.as_ref().is_none_or(|t| e.at < t.0)
            && self
                .outcome
                .as_ref()
                .is_none_or(|o| e.outcome.eq_ignore_ascii_case(o))
    }
}

const CURSOR_TAG: &str = "audit\n";

fn encode_cursor(id: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}{id}"))
}

fn decode_cursor(cursor: &str) -> Result<u64, GqlError> {
    let bad = || GqlError::bad_input("`after` is not a cursor from the audit log");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(CURSOR_TAG)
        .and_then(|id| id.parse().ok())
        .ok_or_else(bad)
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The audit log, newest first: every mutation by a logged-in admin and
    /// every login attempt. OWNER and ADMIN only.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(super::connection::DEFAULT_PAGE)")] first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditLogFilter>,
    ) -> Result<AuditEntryConnection> {
        require_auditor(ctx)?;
        let first = first.unwrap_or(super::connection::DEFAULT_PAGE);
        if !(0..=super::connection::MAX_PAGE).contains(&first) {
            return Err(GqlError::bad_input(format!(
                "`first` must be between 0 and {}",
                super::connection::MAX_PAGE
            ))
            .into());
        }
        let first = usize::try_from(first).unwrap_or(0);
        let filter = filter.unwrap_or_default();
        let admin = filter
            .admin_id
            .as_ref()
            .map(|id| super::validate::id("filter.adminId", id).map(AdminId))
            .transpose()?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let store = &services(ctx)?.store;
        // totalCount needs every match; the log is bounded by retention.
        let mut total = 0usize;
        let mut before_cursor = 0usize;
        let mut page = Vec::new();
        for entry in store.audit_newest_first(None) {
            let entry = entry.map_err(GqlError::from)?;
            if !filter.matches(&entry, admin) {
                continue;
            }
            total += 1;
            if after.is_some_and(|a| entry.id >= a) {
                before_cursor += 1;
            } else if page.len() <= first {
                page.push(entry);
            }
        }
        let has_next_page = page.len() > first;
        page.truncate(first);
        let edges: Vec<AuditEntryEdge> = page
            .into_iter()
            .map(|e| AuditEntryEdge {
                cursor: encode_cursor(e.id),
                node: e.into(),
            })
            .collect();
        Ok(AuditEntryConnection {
            total_count: total,
            page_info: super::connection::PageInfo {
                has_next_page,
                has_previous_page: before_cursor > 0,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised() {
        for name in [
            "password",
            "newPassword",
            "currentPassword",
            "apiKey",
            "accessToken",
            "refresh_token",
            "secret",
            "proxy",
            "headers",
            "Authorization",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["name", "description", "tags", "id", "role", "username"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("garbage").is_err());
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("keys\n1");
        assert!(decode_cursor(&other).is_err());
    }

    #[test]
    fn ids_are_found_in_results_breadth_first() {
        let v = Value::from_json(serde_json::json!({
            "apiKey": {"id": "k1", "owner": {"id": "deep"}},
        }))
        .unwrap();
        assert_eq!(id_in(&v).as_deref(), Some("k1"));
        let d = Value::from_json(serde_json::json!({"deletedId": "x"})).unwrap();
        assert_eq!(id_in(&d).as_deref(), Some("x"));
        assert_eq!(id_in(&Value::Null), None);
    }
}
