//! Batch key operations of the admin API: `createApiKeys` (N keys from a
//! template, each secret returned once), `updateApiKeys`, `disableApiKeys`
//! and `deleteApiKeys` over ids or a filter (bounded: a filter matching more
//! than `maxCount` keys changes nothing), and `regenerateApiKeySecret`. All
//! need a writer role. `createApiKeys` is one store transaction (all keys or
//! none); the other batch operations write each key on its own, so one key
//! failing (e.g. it vanished) is reported and the rest still happen.

use super::auth::{require_writer, services, Services};
use super::error::GqlError;
use super::keys::{
    binding_of, checked_policy, ensure_name_free, key_query, load, relay_time_zone, ApiKeyFilter,
    ApiKeyNode,
};
use super::scalars::DateTime;
use super::types::ApiKeyStatus;
use super::validate;
use crate::domain::{self, ApiKey, KeyId, KeyStatus};
use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID};
use chrono::Utc;

/// Most keys one `createApiKeys` makes.
const MAX_CREATE: i32 = 1000;
/// Default and largest `maxCount` of the by-filter operations.
const DEFAULT_MAX_COUNT: i32 = 1000;
const MAX_MAX_COUNT: i32 = 10_000;

/// What every key of a `createApiKeys` batch gets.
#[derive(InputObject, Default)]
pub struct ApiKeyTemplateInput {
    /// Description of every key.
    pub description: Option<String>,
    /// Tags of every key.
    pub tags: Option<Vec<String>>,
    /// After this instant the relay refuses the keys.
    pub expires_at: Option<DateTime>,
    /// Defaults to 1 (list price).
    pub cost_multiplier: Option<f64>,
    /// Serve the keys from this account only.
    pub bound_account_id: Option<ID>,
    /// Serve the keys from this group's accounts only.
    pub bound_group_id: Option<ID>,
    /// Limits, budgets and restrictions (default: none).
    pub policy: Option<async_graphql::Json<crate::limits::KeyPolicy>>,
}

/// `count` keys named `<namePrefix>-0001`, `<namePrefix>-0002`, ….
#[derive(InputObject)]
pub struct CreateApiKeysInput {
    /// How many keys (1 to 1000).
    pub count: i32,
    /// Names are this prefix, a dash and a four-digit (or longer) number.
    pub name_prefix: String,
    /// What every key gets (default: nothing special).
    pub template: Option<ApiKeyTemplateInput>,
}

/// One created key and its secret.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The key as stored.
    pub api_key: ApiKeyNode,
    /// The raw key. Shown only here, once: the relay keeps only its hash.
    pub secret: String,
}

/// A key a batch operation could not change, and why.
#[derive(SimpleObject)]
pub struct BatchFailure {
    /// The key (absent when the failure is not about one existing key).
    pub id: Option<ID>,
    /// An `extensions.code` value (NOT_FOUND, CONFLICT, INTERNAL, …).
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl BatchFailure {
    fn of(id: Option<KeyId>, e: &GqlError) -> BatchFailure {
        BatchFailure {
            id: id.map(|i| ID(i.to_string())),
            code: e.code().to_string(),
            message: e.public_text().to_string(),
        }
    }
}

/// The created keys; each secret appears only here. The batch is one
/// store transaction: every key is created or none is.
#[derive(SimpleObject)]
pub struct CreateApiKeysPayload {
    /// The keys made, in name order, each with its secret.
    pub created: Vec<CreatedApiKey>,
}

/// Which keys a batch operation changes: `ids` or `filter`, not both.
#[derive(InputObject, Default)]
pub struct KeySelectionInput {
    /// These keys (at most 1000).
    pub ids: Option<Vec<ID>>,
    /// The keys matching this filter.
    pub filter: Option<ApiKeyFilter>,
    /// Refuse (changing nothing) when more keys than this are selected
    /// (default 1000, at most 10000).
    pub max_count: Option<i32>,
}

/// Changes applied to every selected key; fields left out stay as they are.
#[derive(InputObject, Default)]
pub struct ApiKeyChangesInput {
    /// New description.
    pub description: Option<String>,
    /// Replaces the tags.
    pub tags: Option<Vec<String>>,
    /// Tags added (after `tags`).
    pub add_tags: Option<Vec<String>>,
    /// Tags removed, ignoring case (after `addTags`).
    pub remove_tags: Option<Vec<String>>,
    /// ACTIVE or DISABLED (ACTIVE also restores deleted keys).
    pub status: Option<ApiKeyStatus>,
    /// null removes the expiry.
    pub expires_at: MaybeUndefined<DateTime>,
    /// New cost multiplier.
    pub cost_multiplier: Option<f64>,
    /// null unbinds.
    pub bound_account_id: MaybeUndefined<ID>,
    /// null unbinds.
    pub bound_group_id: MaybeUndefined<ID>,
    /// Replaces the whole policy; null removes every limit.
    pub policy: MaybeUndefined<async_graphql::Json<crate::limits::KeyPolicy>>,
}

/// `changes` applied to the selected keys.
#[derive(InputObject)]
pub struct UpdateApiKeysInput {
    /// Which keys.
    pub selection: KeySelectionInput,
    /// What changes.
    pub changes: ApiKeyChangesInput,
}

/// The selected keys are set DISABLED.
#[derive(InputObject)]
pub struct DisableApiKeysInput {
    /// Which keys.
    pub selection: KeySelectionInput,
}

/// The selected keys are soft-deleted (restorable by setting ACTIVE).
#[derive(InputObject)]
pub struct DeleteApiKeysInput {
    /// Which keys.
    pub selection: KeySelectionInput,
}

/// What a batch change did.
#[derive(SimpleObject)]
pub struct BatchKeysPayload {
    /// Keys selected.
    pub matched_count: i32,
    /// Keys changed (already in the wanted state counts as changed).
    pub affected_count: i32,
    /// The ids of the keys changed.
    pub affected_ids: Vec<ID>,
    /// Keys that could not be changed, and why.
    pub failures: Vec<BatchFailure>,
}

/// A new secret for one key.
#[derive(InputObject)]
pub struct RegenerateApiKeySecretInput {
    /// The key.
    pub id: ID,
}

/// The key with its new secret; the old secret stopped working.
#[derive(SimpleObject)]
pub struct RegenerateApiKeySecretPayload {
    /// The key, with its new display prefix.
    pub api_key: ApiKeyNode,
    /// The new raw key. Shown only here, once.
    pub secret: String,
}

/// The selected ids, bounded by `maxCount` (over it: `BAD_USER_INPUT`, nothing changes).
fn select(svc: &Services, sel: &KeySelectionInput) -> Result<Vec<KeyId>, GqlError> {
    let max = sel.max_count.unwrap_or(DEFAULT_MAX_COUNT);
    if !(1..=MAX_MAX_COUNT).contains(&max) {
        return Err(GqlError::bad_input(format!(
            "`maxCount` must be between 1 and {MAX_MAX_COUNT}"
        )));
    }
    let max = usize::try_from(max).unwrap_or(0);
    match (&sel.ids, &sel.filter) {
        (Some(ids), None) => {
            if ids.len() > max {
                return Err(GqlError::bad_input(format!(
                    "{} ids given, more than `maxCount` ({max})",
                    ids.len()
                )));
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let id = KeyId(validate::id("ids", id)?);
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            Ok(out)
        }
        (None, Some(filter)) => {
            let tz = relay_time_zone(&svc.config)?;
            let (filter, _) = key_query(filter, &Default::default(), tz)?;
            let mut out = Vec::new();
            svc.store.for_each_key_batch(&filter, 500, |batch| {
                out.extend(batch.iter().map(|k| k.id));
                Ok(out.len() <= max)
            })?;
            if out.len() > max {
                return Err(GqlError::bad_input(format!(
                    "the filter selects more than `maxCount` ({max}) keys; nothing was changed"
                )));
            }
            Ok(out)
        }
        _ => Err(GqlError::bad_input(
            "give either `ids` or `filter` in `selection`",
        )),
    }
}

/// Applies `change` to each selected key under the write lock.
async fn apply_each(
    svc: &Services,
    selection: &KeySelectionInput,
    change: impl Fn(&mut ApiKey) -> Result<(), GqlError>,
) -> Result<BatchKeysPayload, GqlError> {
    let ids = select(svc, selection)?;
    let _guard = svc.writes.lock().await;
    let now = Utc::now();
    let mut affected = Vec::new();
    let mut failures = Vec::new();
    for id in &ids {
        let result = change_one(svc, *id, now, &change);
        match result {
            Ok(()) => affected.push(ID(id.to_string())),
            Err(e) => failures.push(BatchFailure::of(Some(*id), &e)),
        }
    }
    tracing::info!(
        matched = ids.len(),
        affected = affected.len(),
        failed = failures.len(),
        "api keys changed in a batch"
    );
    Ok(BatchKeysPayload {
        matched_count: i32::try_from(ids.len()).unwrap_or(i32::MAX),
        affected_count: i32::try_from(affected.len()).unwrap_or(i32::MAX),
        affected_ids: affected,
        failures,
    })
}

/// Loads one key, applies `change`, and writes it if anything changed.
fn change_one(
    svc: &Services,
    id: KeyId,
    now: chrono::DateTime<Utc>,
    change: &impl Fn(&mut ApiKey) -> Result<(), GqlError>,
) -> Result<(), GqlError> {
    let mut key = load(&svc.store, &ID(id.to_string()))?;
    let before = key.clone();
    change(&mut key)?;
    if key == before {
        return Ok(());
    }
    // Restoring a deleted key must not create a second live key of one name.
    if key.status != KeyStatus::Deleted && before.status == KeyStatus::Deleted {
        ensure_name_free(&svc.store, &key.name, Some(key.id))?;
    }
    key.updated_at = now;
    svc.store.put_key(&key).map_err(GqlError::from)
}

#[derive(Default)]
pub struct KeyBatchMutation;

#[Object]
impl KeyBatchMutation {
    /// Issues `count` keys from one template, named `<namePrefix>-0001` and
    /// on. Each key's `secret` is shown only in this payload.
    async fn create_api_keys(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeysInput,
    ) -> Result<CreateApiKeysPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        if !(1..=MAX_CREATE).contains(&input.count) {
            return Err(
                GqlError::bad_input(format!("`count` must be between 1 and {MAX_CREATE}")).into(),
            );
        }
        let count = usize::try_from(input.count).unwrap_or(0);
        let prefix = validate::name("namePrefix", &input.name_prefix)?;
        let names: Vec<String> = (1..=count).map(|i| format!("{prefix}-{i:04}")).collect();
        for n in &names {
            validate::name("namePrefix", n)?;
        }
        let t = input.template.unwrap_or_default();
        let now = Utc::now();
        let description = validate::description(t.description.as_deref().unwrap_or(""))?;
        let tags = validate::tags(t.tags.as_deref().unwrap_or(&[]))?;
        let expires_at = t
            .expires_at
            .map(|e| validate::future("expiresAt", e.0, now))
            .transpose()?;
        let cost_multiplier = validate::cost_multiplier(t.cost_multiplier.unwrap_or(1.0))?;
        let binding = binding_of(
            &svc.store,
            t.bound_account_id.as_ref(),
            t.bound_group_id.as_ref(),
        )?;
        let policy = match t.policy {
            Some(p) => checked_policy(p.0)?,
            None => Default::default(),
        };
        let _guard = svc.writes.lock().await;
        // Every name is checked before the first key is written.
        for n in &names {
            ensure_name_free(&svc.store, n, None)?;
        }
        let key_prefix = &svc.config.key_prefix;
        let mut created = Vec::with_capacity(count);
        let mut keys = Vec::with_capacity(count);
        for name in names {
            let secret = domain::generate_raw_key(key_prefix);
            keys.push(ApiKey {
                id: KeyId::generate(),
                name,
                description: description.clone(),
                key_hash: domain::sha256_hex(&secret),
                display_prefix: domain::key_display_prefix(&secret, key_prefix),
                status: KeyStatus::Active,
                tags: tags.clone(),
                created_at: now,
                updated_at: now,
                last_used_at: None,
                expires_at,
                cost_multiplier,
                binding,
                policy: policy.clone(),
            });
            created.push(secret);
        }
        // One transaction: every key is created, or none (and no secret is shown).
        svc.store.create_keys(&keys).map_err(GqlError::from)?;
        let created: Vec<CreatedApiKey> = keys
            .into_iter()
            .zip(created)
            .map(|(key, secret)| CreatedApiKey {
                api_key: ApiKeyNode(key),
                secret,
            })
            .collect();
        tracing::info!(created = created.len(), "api keys created in a batch");
        Ok(CreateApiKeysPayload { created })
    }

    /// Applies `changes` to every selected key.
    async fn update_api_keys(
        &self,
        ctx: &Context<'_>,
        input: UpdateApiKeysInput,
    ) -> Result<BatchKeysPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let c = &input.changes;
        let now = Utc::now();
        // Input is checked once, before any key changes.
        let description = c
            .description
            .as_deref()
            .map(validate::description)
            .transpose()?;
        let tags = c.tags.as_deref().map(validate::tags).transpose()?;
        let add_tags = c.add_tags.as_deref().map(validate::tags).transpose()?;
        let remove_tags = c.remove_tags.clone().unwrap_or_default();
        let status = match c.status {
            Some(ApiKeyStatus::Deleted) => {
                return Err(GqlError::bad_input("use deleteApiKeys to delete keys").into())
            }
            s => s.map(KeyStatus::from),
        };
        let expires_at = match &c.expires_at {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(t) => Some(Some(validate::future("expiresAt", t.0, now)?)),
        };
        let cost_multiplier = c
            .cost_multiplier
            .map(validate::cost_multiplier)
            .transpose()?;
        let binding = match (&c.bound_account_id, &c.bound_group_id) {
            (MaybeUndefined::Undefined, MaybeUndefined::Undefined) => None,
            (a, g) => Some(binding_of(&svc.store, a.value(), g.value())?),
        };
        let policy = match &c.policy {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(Default::default()),
            MaybeUndefined::Value(p) => Some(checked_policy(p.0.clone())?),
        };
        let payload = apply_each(svc, &input.selection, |k| {
            if let Some(d) = &description {
                k.description = d.clone();
            }
            if let Some(t) = &tags {
                k.tags = t.clone();
            }
            if let Some(add) = &add_tags {
                for t in add {
                    if !k.tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                        k.tags.push(t.clone());
                    }
                }
            }
            k.tags
                .retain(|x| !remove_tags.iter().any(|r| r.trim().eq_ignore_ascii_case(x)));
            if k.tags.len() > validate::MAX_TAGS {
                return Err(GqlError::bad_input(format!(
                    "at most {} tags",
                    validate::MAX_TAGS
                )));
            }
            if let Some(s) = status {
                k.status = s;
            }
            if let Some(e) = expires_at {
                k.expires_at = e;
            }
            if let Some(m) = cost_multiplier {
                k.cost_multiplier = m;
            }
            if let Some(b) = binding {
                k.binding = b;
            }
            if let Some(p) = &policy {
                k.policy = p.clone();
            }
            Ok(())
        })
        .await?;
        Ok(payload)
    }

    /// Sets every selected key DISABLED (deleted keys stay deleted).
    async fn disable_api_keys(
        &self,
        ctx: &Context<'_>,
        input: DisableApiKeysInput,
    ) -> Result<BatchKeysPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        Ok(apply_each(svc, &input.selection, |k| {
            if k.status == KeyStatus::Active {
                k.status = KeyStatus::Disabled;
            }
            Ok(())
        })
        .await?)
    }

    /// Soft-deletes every selected key: they stop working at once and
    /// `updateApiKeys` with status ACTIVE restores them.
    async fn delete_api_keys(
        &self,
        ctx: &Context<'_>,
        input: DeleteApiKeysInput,
    ) -> Result<BatchKeysPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        Ok(apply_each(svc, &input.selection, |k| {
            k.status = KeyStatus::Deleted;
            Ok(())
        })
        .await?)
    }

    /// Replaces a key's secret. The new secret is shown only in this
    /// payload; the old one stops working at once (the relay's key cache
    /// drops it on the store's change event).
    async fn regenerate_api_key_secret(
        &self,
        ctx: &Context<'_>,
        input: RegenerateApiKeySecretInput,
    ) -> Result<RegenerateApiKeySecretPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let mut key = load(&svc.store, &input.id)?;
        let key_prefix = &svc.config.key_prefix;
        let secret = domain::generate_raw_key(key_prefix);
        key.key_hash = domain::sha256_hex(&secret);
        key.display_prefix = domain::key_display_prefix(&secret, key_prefix);
        key.updated_at = Utc::now();
        svc.store.put_key(&key).map_err(GqlError::from)?;
        tracing::info!(key.id = %key.id, "api key secret regenerated");
        Ok(RegenerateApiKeySecretPayload {
            api_key: ApiKeyNode(key),
            secret,
        })
    }
}
