//! API keys (`apikey:{id}` HASHes; the index keys sharing the prefix are
//! left out by `source.rs`): name, description, tags, state, expiry, limits
//! mapped onto [`KeyPolicy`], per-key rate → cost multiplier, bindings, and
//! the CRS hash kept as a legacy hash so the raw key keeps working.

use super::accounts::{from_value, non_empty, note_conflicts, put_link, stage_link, to_value};
use super::fields::{flag, int, json, list, millis, text, time, usd};
use super::merge::{id_at, three_way, KIND_ACCOUNT, KIND_GROUP, KIND_KEY};
use super::source::Fields;
use super::{Background, Ctx, Error};
use crate::domain::{key_display_prefix, AccountId, ApiKey, GroupId, KeyBinding, KeyId, KeyStatus};
use crate::limits::{
    ActivationUnit, Budgets, ClientKind, ConcurrencyLimit, EndpointFamily, Expiry, FamilyBudget,
    KeyPolicy, ModelRule, ModelScope, RateWindow, WaitQueue, WeeklyReset, MAX_QUEUE_WAIT_MS,
};
use crate::store::{SealedBlob, Store};
use chrono::{DateTime, Utc, Weekday};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

const SECTION: &str = "keys";
/// CRS key records read per pipelined round and written per transaction.
/// sled copies a B-tree node per write and frees the old copies only after
/// the transaction, so a larger chunk holds more memory (1,000 records:
/// about 100 MB more at the peak of a 100,000-key import) without being
/// faster.
const RECORDS_PER_CHUNK: usize = 250;

/// The key fields the importer owns (the merge view). `legacy_hash` is
/// CRS's hash; a change means CRS regenerated the key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct KeyFields {
    name: String,
    description: String,
    tags: Vec<String>,
    status: KeyStatus,
    expires_at: Option<DateTime<Utc>>,
    cost_multiplier: f64,
    binding: KeyBinding,
    expiry: Expiry,
    rate_windows: Vec<RateWindow>,
    budgets: Budgets,
    concurrency: Option<ConcurrencyLimit>,
    models: ModelRule,
    clients: Vec<ClientKind>,
    permissions: Vec<EndpointFamily>,
    legacy_hash: String,
}

impl KeyFields {
    fn of(k: &ApiKey, legacy_hash: &str) -> KeyFields {
        let p = &k.policy;
        KeyFields {
            name: k.name.clone(),
            description: k.description.clone(),
            tags: k.tags.clone(),
            status: k.status,
            expires_at: k.expires_at,
            cost_multiplier: k.cost_multiplier,
            binding: k.binding,
            expiry: p.expiry,
            rate_windows: p.rate_windows.clone(),
            budgets: p.budgets.clone(),
            concurrency: p.concurrency,
            models: p.models.clone(),
            clients: p.clients.clone(),
            permissions: p.permissions.clone(),
            legacy_hash: legacy_hash.to_string(),
        }
    }

    fn apply(self, k: &mut ApiKey) {
        k.name = self.name;
        k.description = self.description;
        k.tags = self.tags;
        k.status = self.status;
        k.expires_at = self.expires_at;
        k.cost_multiplier = self.cost_multiplier;
        k.binding = self.binding;
        k.policy = KeyPolicy {
            expiry: self.expiry,
            rate_windows: self.rate_windows,
            budgets: self.budgets,
            concurrency: self.concurrency,
            models: self.models,
            clients: self.clients,
            permissions: self.permissions,
        };
    }
}

/// Deployment-wide CRS settings that shape every key.
struct Globals {
    /// `system:service_rates` rates.claude (rated = real × this × key rate).
    claude_rate: f64,
    /// `claude_relay_config` concurrency queue, when enabled.
    queue: Option<(u32, u32, u64)>,
}

async fn globals(ctx: &mut Ctx<'_>) -> Result<Globals, Error> {
    let rates: serde_json::Value = ctx
        .src
        .get("system:service_rates")
        .await
        .unwrap_or(None)
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let claude_rate = rates
        .pointer("/rates/claude")
        .and_then(serde_json::Value::as_f64)
        .filter(|r| r.is_finite() && *r > 0.0)
        .unwrap_or(1.0);
    let config: serde_json::Value = ctx
        .src
        .get("claude_relay_config")
        .await
        .unwrap_or(None)
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    let num = |k: &str, d: f64| config.get(k).and_then(|v| v.as_f64()).unwrap_or(d);
    let queue = (config.get("concurrentRequestQueueEnabled")
        == Some(&serde_json::Value::Bool(true)))
    .then(|| {
        (
            num("concurrentRequestQueueMaxSizeMultiplier", 0.0).max(0.0) as u32,
            num("concurrentRequestQueueMaxSize", 3.0).max(0.0) as u32,
            (num("concurrentRequestQueueTimeoutMs", 10_000.0).max(0.0) as u64)
                .min(MAX_QUEUE_WAIT_MS),
        )
    });
    Ok(Globals { claude_rate, queue })
}

pub(super) async fn import_keys(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let g = globals(ctx).await?;
    // Ids first, records chunk by chunk: memory stays bounded by the chunk.
    let ids = ctx
        .src
        .record_ids("apikey:", Some("apikey:idx:all"), "hash", &["hash_map"])
        .await?;
    // Names are unique among live keys (as the admin API enforces).
    let mut names: HashMap<String, KeyId> = HashMap::new();
    if let Some(store) = ctx.store {
        store.for_each_key(|k| {
            if k.status != KeyStatus::Deleted {
                names.insert(k.name.to_lowercase(), k.id);
            }
        })?;
    }
    ctx.progress.phase("keys", ids.len() as u64);
    let mut icons = 0usize;
    let mut bg = Background::default();
    let result: Result<(), Error> = async {
        for chunk in ids.chunks(RECORDS_PER_CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|id| format!("apikey:{id}")).collect();
            let maps = ctx.src.hgetall_many(&keys).await?;
            let mut created = Vec::new();
            for (id, f) in chunk.iter().zip(maps) {
                ctx.progress.advance(1);
                icons += usize::from(!text(&f, "icon").is_empty());
                import_one(ctx, &g, &mut names, &mut created, id, &f)?;
            }
            create_keys(ctx, &mut bg, created).await?;
        }
        Ok(())
    }
    .await;
    // Also after an error: what was started commits before the import returns.
    bg.wait().await?;
    result?;
    if icons > 0 {
        ctx.report.warn(format!(
            "{icons} key icon(s) not imported (UI decoration only)"
        ));
    }
    Ok(())
}

/// A key created in this run, written with its chunk.
struct NewKey {
    key: ApiKey,
    /// CRS's hash of the raw key.
    legacy_hash: String,
    /// The import link (None when dry-running).
    link: Option<SealedBlob>,
}

/// Writes a chunk's new keys with their legacy hashes and import links in
/// one transaction, in the background (encoded and indexed here first, so
/// the writer thread only writes; the next chunk is read meanwhile). A
/// crash leaves each chunk wholly in or wholly out: a rerun creates what is
/// missing under the same CRS ids.
async fn create_keys(
    ctx: &mut Ctx<'_>,
    bg: &mut Background,
    created: Vec<NewKey>,
) -> Result<(), Error> {
    let Some(store) = ctx.writer().cloned() else {
        return Ok(());
    };
    if created.is_empty() {
        return Ok(());
    }
    let source = &ctx.links.source;
    let mut keys = Vec::with_capacity(created.len());
    let mut legacy = Vec::with_capacity(created.len());
    let mut links = Vec::with_capacity(created.len());
    for new in created {
        legacy.push((new.legacy_hash, new.key.id, source.clone()));
        links.extend(new.link);
        keys.push(new.key);
    }
    let prepared = Store::prepare_keys(keys, legacy, links)?;
    bg.run(move || store.write_keys(prepared)).await
}

fn import_one(
    ctx: &mut Ctx<'_>,
    g: &Globals,
    names: &mut HashMap<String, KeyId>,
    created_keys: &mut Vec<NewKey>,
    id: &str,
    f: &Fields,
) -> Result<(), Error> {
    ctx.report.section(SECTION).read += 1;
    let record = format!("apikey:{id}");
    let legacy_hash = text(f, "apiKey").trim().to_lowercase();
    if legacy_hash.len() != 64 || !legacy_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        ctx.report
            .skip(SECTION, record, "no SHA-256 key hash in the `apiKey` field");
        return Ok(());
    }
    let mut incoming = map_key(ctx, g, id, f, &record, legacy_hash);
    let local_id = ctx.links.local_id(KIND_KEY, id).map(KeyId);
    let lower = incoming.name.to_lowercase();
    if incoming.status != KeyStatus::Deleted {
        if let Some(owner) = names.get(&lower).filter(|o| Some(**o) != local_id) {
            let renamed = format!("{} (crs {})", incoming.name, &id[..id.len().min(8)]);
            ctx.report.warn(format!(
                "{record}: the name {:?} is taken by key {owner}; imported as {renamed:?}",
                incoming.name
            ));
            incoming.name = renamed;
        }
    }
    let name_key = incoming.name.to_lowercase();
    let created = time(f, "createdAt");
    let last_used = time(f, "lastUsedAt");
    let our_id = upsert_key(ctx, created_keys, id, &record, incoming, created, last_used)?;
    names.insert(name_key, our_id);
    Ok(())
}

fn map_key(
    ctx: &mut Ctx<'_>,
    g: &Globals,
    id: &str,
    f: &Fields,
    record: &str,
    legacy_hash: String,
) -> KeyFields {
    let status = if flag(f, "isDeleted") {
        KeyStatus::Deleted
    } else if !flag(f, "isActive") {
        KeyStatus::Disabled
    } else {
        KeyStatus::Active
    };
    let mut expires_at = None;
    let expiry = if text(f, "expirationMode") == "activation" {
        // parseInt(activationDays || 30): 30 only for a missing/empty value.
        let raw = text(f, "activationDays");
        let amount = if raw.is_empty() {
            30
        } else {
            int(f, "activationDays")
        };
        if amount <= 0 {
            ctx.report.warn(format!(
                "{record}: activation period of {raw:?}: the key expires as soon as it is activated (as in CRS)"
            ));
        }
        let activated_at = flag(f, "isActivated")
            .then(|| time(f, "activatedAt"))
            .flatten();
        Expiry::Activation {
            amount: u32::try_from(amount.max(0)).unwrap_or(u32::MAX),
            unit: if text(f, "activationUnit") == "hours" {
                ActivationUnit::Hours
            } else {
                ActivationUnit::Days
            },
            activated_at,
        }
    } else {
        expires_at = time(f, "expiresAt");
        Expiry::Never
    };
    let policy = map_policy(ctx, g, f, record);
    let key_rate = json(f, "serviceRates")
        .get("claude")
        .and_then(serde_json::Value::as_f64)
        .filter(|r| r.is_finite() && *r >= 0.0)
        .unwrap_or(1.0);
    let binding = map_binding(ctx, f, record);
    if !text(f, "userId").is_empty() {
        ctx.report.warn(format!(
            "{record}: owned by CRS user {:?}; user accounts are not imported",
            text(f, "userUsername")
        ));
    }
    KeyFields {
        name: non_empty(text(f, "name"), id).chars().take(100).collect(),
        description: text(f, "description").trim().to_string(),
        tags: {
            let mut tags = list(f, "tags");
            tags.dedup();
            tags
        },
        status,
        expires_at,
        cost_multiplier: key_rate * g.claude_rate,
        binding,
        expiry,
        rate_windows: policy.rate_windows,
        budgets: policy.budgets,
        concurrency: policy.concurrency,
        models: policy.models,
        clients: policy.clients,
        permissions: policy.permissions,
        legacy_hash,
    }
}

fn map_policy(ctx: &mut Ctx<'_>, g: &Globals, f: &Fields, record: &str) -> KeyPolicy {
    let mut p = KeyPolicy::default();
    let window_min = int(f, "rateLimitWindow");
    let (requests, tokens, cost) = (
        int(f, "rateLimitRequests"),
        int(f, "tokenLimit"),
        usd(f, "rateLimitCost"),
    );
    if window_min > 0 && (requests > 0 || tokens > 0 || cost.is_some()) {
        if tokens > 0 && cost.is_some() {
            ctx.report.warn(format!(
                "{record}: tokenLimit and rateLimitCost both set; CRS enforces only tokenLimit, so does the import"
            ));
        }
        p.rate_windows.push(RateWindow {
            duration_secs: u64::try_from(window_min).unwrap_or(0) * 60,
            max_requests: u64::try_from(requests).ok().filter(|r| *r > 0),
            max_tokens: u64::try_from(tokens).ok().filter(|t| *t > 0),
            max_cost: if tokens > 0 { None } else { cost },
        });
    } else if requests > 0 || tokens > 0 || cost.is_some() {
        ctx.report.warn(format!(
            "{record}: rate limits without a window (rateLimitWindow=0) are not enforced by CRS and not imported"
        ));
    }
    let concurrency = int(f, "concurrencyLimit");
    if concurrency > 0 {
        let max_in_flight = u32::try_from(concurrency).unwrap_or(u32::MAX);
        p.concurrency = Some(ConcurrencyLimit {
            max_in_flight,
            queue: g.queue.map(|(mult, size, wait)| WaitQueue {
                max_queued: max_in_flight.saturating_mul(mult).max(size),
                max_wait_ms: wait,
            }),
        });
    }
    p.budgets.daily = usd(f, "dailyCostLimit");
    p.budgets.total = usd(f, "totalCostLimit");
    p.budgets.family_weekly = usd(f, "weeklyOpusCostLimit").map(|limit| FamilyBudget {
        models: ModelScope::AllClaude,
        limit,
    });
    if p.budgets.daily.is_some() || p.budgets.family_weekly.is_some() {
        // Days and weeks as CRS counted them: in its fixed UTC offset.
        p.budgets.time_zone = ctx.zone;
        let day = match int(f, "weeklyResetDay") {
            2 => Weekday::Tue,
            3 => Weekday::Wed,
            4 => Weekday::Thu,
            5 => Weekday::Fri,
            6 => Weekday::Sat,
            7 => Weekday::Sun,
            _ => Weekday::Mon,
        };
        p.budgets.weekly_reset = WeeklyReset {
            weekday: day,
            hour: u8::try_from(int(f, "weeklyResetHour").clamp(0, 23)).unwrap_or(0),
        };
    }
    let restricted = list(f, "restrictedModels");
    if flag(f, "enableModelRestriction") && !restricted.is_empty() {
        p.models = ModelRule::Deny(restricted);
    }
    let clients = list(f, "allowedClients");
    if flag(f, "enableClientRestriction") && !clients.is_empty() {
        for c in clients {
            match c.as_str() {
                "claude_code" => p.clients.push(ClientKind::ClaudeCode),
                other => {
                    let prefix = match other {
                        "gemini_cli" => "GeminiCLI/",
                        "codex_cli" => "codex_cli_rs/",
                        "droid_cli" => "factory-cli/",
                        _ => other,
                    };
                    ctx.report.warn(format!(
                        "{record}: allowed client {other:?} imported as user-agent prefix {prefix:?}"
                    ));
                    p.clients
                        .push(ClientKind::UserAgentPrefix(prefix.to_string()));
                }
            }
        }
    }
    let perms = permissions(text(f, "permissions"));
    if !perms.is_empty() && !perms.iter().any(|s| s == "claude") {
        ctx.report.warn(format!(
            "{record}: permissions {perms:?} exclude Claude: imported with an empty model allow-list, so every request is refused with 403"
        ));
        p.models = ModelRule::Allow(Vec::new());
    }
    p
}

/// CRS permissions: a JSON array, or the legacy `all` / `claude,openai`
/// strings. Empty = every service.
fn permissions(raw: &str) -> Vec<String> {
    let raw = raw.trim();
    if raw.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(raw).unwrap_or_default();
    }
    if raw.is_empty() || raw == "all" {
        return Vec::new();
    }
    raw.split(',').map(|s| s.trim().to_string()).collect()
}

fn map_binding(ctx: &mut Ctx<'_>, f: &Fields, record: &str) -> KeyBinding {
    let claude = text(f, "claudeAccountId").trim();
    if let Some(group) = claude.strip_prefix("group:") {
        return match ctx.links.local_id(KIND_GROUP, group) {
            Some(id) => KeyBinding::Group(GroupId(id)),
            None => {
                ctx.report.warn(format!(
                    "{record}: bound to group {group}, which is not imported; the key uses the shared pool"
                ));
                KeyBinding::None
            }
        };
    }
    for (field, value) in [
        ("claudeAccountId", claude),
        (
            "claudeConsoleAccountId",
            text(f, "claudeConsoleAccountId").trim(),
        ),
    ] {
        if value.is_empty() {
            continue;
        }
        return match ctx.links.local_id(KIND_ACCOUNT, value) {
            Some(id) => KeyBinding::Account(AccountId(id)),
            None => {
                ctx.report.warn(format!(
                    "{record}: {field} {value} is not an imported account; the key uses the shared pool"
                ));
                KeyBinding::None
            }
        };
    }
    for field in [
        "bedrockAccountId",
        "geminiAccountId",
        "openaiAccountId",
        "azureOpenaiAccountId",
        "droidAccountId",
    ] {
        if !text(f, field).is_empty() {
            ctx.report.warn(format!(
                "{record}: binding {field}={} ignored (platform not imported)",
                text(f, field)
            ));
        }
    }
    KeyBinding::None
}

/// The key hash a freshly imported key carries until its first use: unique,
/// and never the SHA-256 hex of anything a client can present.
fn placeholder_hash(source: &str, crs_id: &str) -> String {
    format!("crs:{source}:{crs_id}")
}

/// Merges one CRS key into ours; a new key is queued in `created` (written
/// with its chunk by `create_keys`).
fn upsert_key(
    ctx: &mut Ctx<'_>,
    created_keys: &mut Vec<NewKey>,
    crs_id: &str,
    record: &str,
    mut incoming: KeyFields,
    created: Option<DateTime<Utc>>,
    last_used: Option<DateTime<Utc>>,
) -> Result<KeyId, Error> {
    let link = ctx.links.get(KIND_KEY, crs_id)?;
    let local = match (&link, ctx.store) {
        (Some(l), Some(store)) => store.get_key(KeyId(l.local_id))?,
        _ => None,
    };
    let source = ctx.links.source.clone();
    let placeholder = placeholder_hash(&source, crs_id);
    let now = ctx.now;
    let (Some(link), Some(mut key)) = (link.clone(), local) else {
        let id = KeyId(link.map_or_else(|| id_at(millis(created)), |l| l.local_id));
        let legacy = incoming.legacy_hash.clone();
        let mut key = ApiKey {
            id,
            name: String::new(),
            description: String::new(),
            key_hash: placeholder,
            display_prefix: key_display_prefix("", &ctx.opts.key_prefix),
            status: KeyStatus::Active,
            tags: Vec::new(),
            created_at: created.unwrap_or(now),
            updated_at: now,
            last_used_at: last_used,
            expires_at: None,
            cost_multiplier: 1.0,
            binding: KeyBinding::None,
            policy: KeyPolicy::default(),
        };
        incoming.clone().apply(&mut key);
        let link = stage_link(ctx, KIND_KEY, crs_id, id.0, to_value(&incoming)?)?;
        created_keys.push(NewKey {
            key,
            legacy_hash: legacy,
            link,
        });
        ctx.report.section(SECTION).created += 1;
        return Ok(id);
    };
    let base_hash = link
        .base
        .get("legacy_hash")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    // Activation is run-time state: a key activated here stays activated.
    if let (
        Expiry::Activation {
            activated_at: incoming_at @ None,
            ..
        },
        Expiry::Activation {
            activated_at: Some(local_at),
            ..
        },
    ) = (&mut incoming.expiry, key.policy.expiry)
    {
        *incoming_at = Some(local_at);
    }
    let incoming_v = to_value(&incoming)?;
    let local_v = to_value(&KeyFields::of(&key, &base_hash))?;
    let merged = three_way(&link.base, &local_v, &incoming_v);
    note_conflicts(ctx, record, &merged.conflicts);
    let rehashed = merged.updated.iter().any(|f| f == "legacy_hash");
    let never_used = key.key_hash == placeholder;
    if merged.updated.is_empty() {
        ctx.report.section(SECTION).unchanged += 1;
    } else {
        let fields: KeyFields = from_value(merged.value)?;
        fields.apply(&mut key);
        key.updated_at = now;
        if let Some(store) = ctx.writer() {
            store.put_key(&key)?;
        }
        ctx.report.section(SECTION).updated += 1;
    }
    if let Some(store) = ctx.writer() {
        if rehashed {
            // CRS regenerated the key: its new raw key works here too (and
            // replaces the old one at first use, as in CRS).
            store.remove_legacy_key_hash(&base_hash)?;
            store.put_legacy_key_hash(&incoming.legacy_hash, key.id, &source)?;
        } else if never_used && store.legacy_key_hash(&incoming.legacy_hash)?.is_none() {
            // An interrupted earlier import: the key exists, its hash does not.
            store.put_legacy_key_hash(&incoming.legacy_hash, key.id, &source)?;
        }
    }
    put_link(ctx, KIND_KEY, crs_id, key.id.0, incoming_v)?;
    Ok(key.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_formats() {
        assert!(permissions("[]").is_empty());
        assert!(permissions("all").is_empty());
        assert_eq!(permissions("[\"claude\"]"), vec!["claude"]);
        assert_eq!(permissions("claude,openai"), vec!["claude", "openai"]);
    }
}
