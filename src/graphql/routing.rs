//! Routing in the admin API: an account's routing settings (mode, groups,
//! weight, concurrency cap, model allow-list and mapping, cost multiplier),
//! account groups (CRUD), and the run-time settings (balancing strategy,
//! sticky TTL, cooldown, failover attempts) that take effect without restart.

use super::auth::{require_admin, require_writer, services};
use super::connection::{paginate, PageInfo, SortKey, DEFAULT_PAGE};
use super::error::GqlError;
use super::scalars::DateTime;
use super::types::{AccountMode, Strategy};
use super::validate;
use super::viewer;
use crate::config::RuntimeSettings;
use crate::domain::{self, AccountRouting, Group, GroupId, ModelMapping};
use crate::store::Store;
use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID};
use chrono::Utc;

/// Most characters in a model pattern or mapping name.
const MAX_MODEL_NAME: usize = 200;

/// A requested model name and the name sent upstream instead.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "ModelMappingInput")]
pub struct ModelMappingEntry {
    pub from: String,
    pub to: String,
}

/// How the balancer may use an account.
pub struct AccountRoutingNode(pub AccountRouting);

#[Object(name = "AccountRouting")]
impl AccountRoutingNode {
    async fn mode(&self) -> AccountMode {
        self.0.mode.into()
    }
    async fn group_ids(&self) -> Vec<ID> {
        self.0.group_ids.iter().map(|g| ID(g.to_string())).collect()
    }
    /// Weight for the BALANCED strategy (default 100).
    async fn weight(&self) -> u32 {
        self.0.weight
    }
    async fn max_concurrency(&self) -> Option<u32> {
        self.0.max_concurrency
    }
    /// Model patterns served (`*` wildcards); empty = every model.
    async fn allowed_models(&self) -> &[String] {
        &self.0.allowed_models
    }
    async fn model_mapping(&self) -> Vec<ModelMappingEntry> {
        self.0
            .model_mapping
            .iter()
            .map(|m| ModelMappingEntry {
                from: m.from.clone(),
                to: m.to.clone(),
            })
            .collect()
    }
    /// Pay-per-token accounts cost list price × this (COST_FIRST).
    async fn cost_multiplier(&self) -> f64 {
        self.0.cost_multiplier
    }
    /// Subscription accounts: tokens per 5-hour window, when known.
    async fn window_token_limit(&self) -> Option<u64> {
        self.0.window_token_limit
    }
}

/// Routing changes; fields left out stay as they are.
#[derive(InputObject, Default)]
pub struct AccountRoutingInput {
    pub mode: Option<AccountMode>,
    pub group_ids: Option<Vec<ID>>,
    /// 1 to 1000.
    pub weight: Option<i32>,
    /// null removes the cap.
    pub max_concurrency: MaybeUndefined<i32>,
    pub allowed_models: Option<Vec<String>>,
    pub model_mapping: Option<Vec<ModelMappingEntry>>,
    /// 0 to 100.
    pub cost_multiplier: Option<f64>,
    /// null removes the limit.
    pub window_token_limit: MaybeUndefined<i64>,
}

impl AccountRoutingInput {
    /// Lays the input over `routing`, checking every value and that named groups exist.
    pub fn apply(self, store: &Store, routing: &mut AccountRouting) -> Result<(), GqlError> {
        if let Some(mode) = self.mode {
            routing.mode = mode.into();
        }
        if let Some(ids) = self.group_ids {
            let mut groups = Vec::with_capacity(ids.len());
            for id in &ids {
                let id = GroupId(validate::id("groupIds", id)?);
                if store.get_group(id)?.is_none() {
                    return Err(GqlError::NotFound(format!("no group with id {id}")));
                }
                if !groups.contains(&id) {
                    groups.push(id);
                }
            }
            routing.group_ids = groups;
        }
        if let Some(w) = self.weight {
            if !(1..=1000).contains(&w) {
                return Err(GqlError::bad_input("`weight` must be between 1 and 1000"));
            }
            routing.weight = w as u32;
        }
        match self.max_concurrency {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => routing.max_concurrency = None,
            MaybeUndefined::Value(n) if (1..=100_000).contains(&n) => {
                routing.max_concurrency = Some(n as u32)
            }
            MaybeUndefined::Value(_) => {
                return Err(GqlError::bad_input(
                    "`maxConcurrency` must be between 1 and 100000",
                ))
            }
        }
        if let Some(models) = self.allowed_models {
            routing.allowed_models = models
                .iter()
                .map(|m| model_name("allowedModels", m))
                .collect::<Result<_, _>>()?;
        }
        if let Some(mapping) = self.model_mapping {
            routing.model_mapping = mapping
                .iter()
                .map(|m| {
                    Ok(ModelMapping {
                        from: model_name("modelMapping.from", &m.from)?,
                        to: model_name("modelMapping.to", &m.to)?,
                    })
                })
                .collect::<Result<_, GqlError>>()?;
        }
        if let Some(m) = self.cost_multiplier {
            if !m.is_finite() || !(0.0..=100.0).contains(&m) {
                return Err(GqlError::bad_input(
                    "`costMultiplier` must be between 0 and 100",
                ));
            }
            routing.cost_multiplier = m;
        }
        match self.window_token_limit {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => routing.window_token_limit = None,
            MaybeUndefined::Value(n) if n > 0 => routing.window_token_limit = Some(n as u64),
            MaybeUndefined::Value(_) => {
                return Err(GqlError::bad_input("`windowTokenLimit` must be positive"))
            }
        }
        Ok(())
    }
}

fn model_name(field: &str, value: &str) -> Result<String, GqlError> {
    let v = value.trim();
    if v.is_empty() || v.len() > MAX_MODEL_NAME || v.chars().any(char::is_whitespace) {
        return Err(GqlError::bad_input(format!(
            "`{field}` entries must be non-empty model names without spaces (at most {MAX_MODEL_NAME} characters)"
        )));
    }
    Ok(v.to_string())
}

/// A named group of accounts, optionally with its own strategy.
pub struct GroupNode(pub Group);

#[Object(name = "Group")]
impl GroupNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Masked for VIEWER callers.
    async fn name(&self, ctx: &Context<'_>) -> String {
        viewer::text(ctx, &self.0.name).into_owned()
    }
    /// Masked for VIEWER callers.
    async fn description(&self, ctx: &Context<'_>) -> String {
        viewer::text(ctx, &self.0.description).into_owned()
    }
    /// The group's strategy; null = the global one.
    async fn strategy(&self) -> Option<Strategy> {
        self.0.strategy.map(Into::into)
    }
    /// Ids of the (not deleted) accounts in this group.
    async fn account_ids(&self, ctx: &Context<'_>) -> Result<Vec<ID>> {
        let accounts = services(ctx)?
            .store
            .list_accounts()
            .map_err(GqlError::from)?;
        Ok(accounts
            .iter()
            .filter(|a| {
                a.status != domain::AccountStatus::Deleted
                    && a.routing.group_ids.contains(&self.0.id)
            })
            .map(|a| ID(a.id.to_string()))
            .collect())
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
}

/// The run-time settings.
#[derive(SimpleObject)]
#[graphql(name = "Settings")]
pub struct SettingsNode {
    pub strategy: Strategy,
    pub sticky_ttl_seconds: u64,
    pub default_cooldown_seconds: u64,
    pub max_failover_attempts: u32,
    /// Prices set at run time, laid over the built-in table and the pricing file.
    pub pricing_overrides: Vec<super::analytics::PricingOverride>,
}

impl From<&RuntimeSettings> for SettingsNode {
    fn from(s: &RuntimeSettings) -> Self {
        SettingsNode {
            strategy: s.strategy.into(),
            sticky_ttl_seconds: s.sticky_ttl_secs,
            default_cooldown_seconds: s.default_cooldown_secs,
            max_failover_attempts: s.max_failover_attempts,
            pricing_overrides: super::analytics::pricing_override_nodes(&s.pricing_overrides),
        }
    }
}

/// The stored settings, or the start-up values from the configuration.
pub fn current_settings(
    store: &Store,
    config: &crate::config::Config,
) -> Result<RuntimeSettings, GqlError> {
    Ok(store
        .get_state::<RuntimeSettings>(RuntimeSettings::STATE_NAME)?
        .unwrap_or_else(|| RuntimeSettings::from_config(config)))
}

/// One group in a page of groups.
#[derive(SimpleObject)]
pub struct GroupEdge {
    /// Opaque position of this group in the list.
    pub cursor: String,
    /// The group.
    pub node: GroupNode,
}

/// A page of account groups, oldest first.
#[derive(SimpleObject)]
pub struct GroupConnection {
    /// Groups matching the search across all pages.
    pub total_count: usize,
    /// This page's groups with their cursors.
    pub edges: Vec<GroupEdge>,
    /// Whether more pages follow, and where this one ends.
    pub page_info: PageInfo,
}

#[derive(Default)]
pub struct RoutingQuery;

#[Object]
impl RoutingQuery {
    /// Account groups, oldest first; `search` matches name or description
    /// (case-insensitive; a VIEWER's search sees only the masked text).
    async fn groups(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE)")] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> Result<GroupConnection> {
        require_admin(ctx)?;
        let groups = services(ctx)?.store.list_groups().map_err(GqlError::from)?;
        // Masked before matching, so masked text cannot be found by searching.
        let mut groups = viewer::masked_groups(ctx, groups);
        if let Some(needle) = search.map(|s| s.to_lowercase()).filter(|s| !s.is_empty()) {
            groups.retain(|g| {
                g.name.to_lowercase().contains(&needle)
                    || g.description.to_lowercase().contains(&needle)
            });
        }
        let page = paginate(
            groups,
            |g: &Group| SortKey::time(Some(g.created_at), g.id.0),
            "groups",
            false,
            first.unwrap_or(DEFAULT_PAGE),
            after.as_deref(),
        )?;
        Ok(GroupConnection {
            total_count: page.total_count,
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, g)| GroupEdge {
                    cursor,
                    node: GroupNode(g),
                })
                .collect(),
            page_info: page.page_info,
        })
    }

    async fn group(&self, ctx: &Context<'_>, id: ID) -> Result<Option<GroupNode>> {
        require_admin(ctx)?;
        let id = GroupId(validate::id("id", &id)?);
        Ok(services(ctx)?
            .store
            .get_group(id)
            .map_err(GqlError::from)?
            .map(GroupNode))
    }

    /// The run-time settings in effect.
    async fn settings(&self, ctx: &Context<'_>) -> Result<SettingsNode> {
        require_admin(ctx)?;
        let svc = services(ctx)?;
        Ok(SettingsNode::from(&current_settings(
            &svc.store,
            &svc.config,
        )?))
    }
}

#[derive(InputObject)]
pub struct CreateGroupInput {
    pub name: String,
    pub description: Option<String>,
    /// null: the global strategy.
    pub strategy: Option<Strategy>,
}

#[derive(SimpleObject)]
pub struct CreateGroupPayload {
    pub group: GroupNode,
}

#[derive(InputObject)]
pub struct UpdateGroupInput {
    pub id: ID,
    pub name: Option<String>,
    pub description: Option<String>,
    /// null: back to the global strategy.
    pub strategy: MaybeUndefined<Strategy>,
}

#[derive(SimpleObject)]
pub struct UpdateGroupPayload {
    pub group: GroupNode,
}

#[derive(InputObject)]
pub struct DeleteGroupInput {
    pub id: ID,
    /// Also remove the group from its accounts and unbind the keys bound to it
    /// (without it, a group in use answers CONFLICT).
    #[graphql(default)]
    pub force: bool,
}

#[derive(SimpleObject)]
pub struct DeleteGroupPayload {
    pub deleted_id: ID,
}

#[derive(InputObject)]
pub struct UpdateSettingsInput {
    pub strategy: Option<Strategy>,
    /// 60 to 86400.
    pub sticky_ttl_seconds: Option<i32>,
    /// 1 to 3600.
    pub default_cooldown_seconds: Option<i32>,
    /// 1 to 10.
    pub max_failover_attempts: Option<i32>,
    /// Replaces every run-time price override (an empty list removes them);
    /// requests that finish after the change are priced with them.
    pub pricing_overrides: Option<Vec<super::analytics::PricingOverrideInput>>,
}

#[derive(SimpleObject)]
pub struct UpdateSettingsPayload {
    pub settings: SettingsNode,
}

fn group_name_free(store: &Store, name: &str, except: Option<GroupId>) -> Result<(), GqlError> {
    let lower = name.to_lowercase();
    if store
        .list_groups()?
        .iter()
        .any(|g| Some(g.id) != except && g.name.to_lowercase() == lower)
    {
        return Err(GqlError::Conflict(format!(
            "a group named {name:?} already exists"
        )));
    }
    Ok(())
}

fn in_range(field: &str, v: i32, lo: i32, hi: i32) -> Result<u64, GqlError> {
    if (lo..=hi).contains(&v) {
        Ok(v as u64)
    } else {
        Err(GqlError::bad_input(format!(
            "`{field}` must be between {lo} and {hi}"
        )))
    }
}

#[derive(Default)]
pub struct RoutingMutation;

#[Object]
impl RoutingMutation {
    async fn create_group(
        &self,
        ctx: &Context<'_>,
        input: CreateGroupInput,
    ) -> Result<CreateGroupPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let name = validate::name("name", &input.name)?;
        let now = Utc::now();
        let group = Group {
            id: GroupId::generate(),
            name,
            description: input.description.unwrap_or_default().trim().to_string(),
            strategy: input.strategy.map(Into::into),
            created_at: now,
            updated_at: now,
        };
        let _guard = svc.writes.lock().await;
        group_name_free(&svc.store, &group.name, None)?;
        svc.store.put_group(&group).map_err(GqlError::from)?;
        Ok(CreateGroupPayload {
            group: GroupNode(group),
        })
    }

    async fn update_group(
        &self,
        ctx: &Context<'_>,
        input: UpdateGroupInput,
    ) -> Result<UpdateGroupPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let id = GroupId(validate::id("id", &input.id)?);
        let mut group = svc
            .store
            .get_group(id)
            .map_err(GqlError::from)?
            .ok_or_else(|| GqlError::NotFound("no group with this id".into()))?;
        if let Some(name) = &input.name {
            group.name = validate::name("name", name)?;
            group_name_free(&svc.store, &group.name, Some(id))?;
        }
        if let Some(d) = input.description {
            group.description = d.trim().to_string();
        }
        match input.strategy {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => group.strategy = None,
            MaybeUndefined::Value(s) => group.strategy = Some(s.into()),
        }
        group.updated_at = Utc::now();
        svc.store.put_group(&group).map_err(GqlError::from)?;
        Ok(UpdateGroupPayload {
            group: GroupNode(group),
        })
    }

    async fn delete_group(
        &self,
        ctx: &Context<'_>,
        input: DeleteGroupInput,
    ) -> Result<DeleteGroupPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let id = GroupId(validate::id("id", &input.id)?);
        if svc.store.get_group(id).map_err(GqlError::from)?.is_none() {
            return Err(GqlError::NotFound("no group with this id".into()).into());
        }
        let accounts: Vec<_> = svc
            .store
            .list_accounts()
            .map_err(GqlError::from)?
            .into_iter()
            .filter(|a| a.routing.group_ids.contains(&id))
            .collect();
        let keys: Vec<_> = svc
            .store
            .list_keys()
            .map_err(GqlError::from)?
            .into_iter()
            .filter(|k| k.binding == domain::KeyBinding::Group(id))
            .collect();
        if !input.force && (!accounts.is_empty() || !keys.is_empty()) {
            return Err(GqlError::Conflict(format!(
                "the group has {} account(s) and {} bound key(s); pass force: true to remove them from it",
                accounts.len(),
                keys.len()
            ))
            .into());
        }
        for mut account in accounts {
            account.routing.group_ids.retain(|g| *g != id);
            account.updated_at = Utc::now();
            svc.store.put_account(&account).map_err(GqlError::from)?;
        }
        for mut key in keys {
            key.binding = domain::KeyBinding::None;
            key.updated_at = Utc::now();
            svc.store.put_key(&key).map_err(GqlError::from)?;
        }
        svc.store.delete_group(id).map_err(GqlError::from)?;
        Ok(DeleteGroupPayload {
            deleted_id: ID(id.to_string()),
        })
    }

    /// Changes run-time settings; they apply to the next request, no restart.
    async fn update_settings(
        &self,
        ctx: &Context<'_>,
        input: UpdateSettingsInput,
    ) -> Result<UpdateSettingsPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let mut settings = current_settings(&svc.store, &svc.config)?;
        if let Some(s) = input.strategy {
            settings.strategy = s.into();
        }
        if let Some(v) = input.sticky_ttl_seconds {
            settings.sticky_ttl_secs = in_range("stickyTtlSeconds", v, 60, 86_400)?;
        }
        if let Some(v) = input.default_cooldown_seconds {
            settings.default_cooldown_secs = in_range("defaultCooldownSeconds", v, 1, 3_600)?;
        }
        if let Some(v) = input.max_failover_attempts {
            settings.max_failover_attempts = in_range("maxFailoverAttempts", v, 1, 10)? as u32;
        }
        if let Some(list) = input.pricing_overrides {
            settings.pricing_overrides = super::analytics::pricing_overrides(list)?;
        }
        svc.store
            .put_state(RuntimeSettings::STATE_NAME, &settings)
            .map_err(GqlError::from)?;
        tracing::info!(strategy = ?settings.strategy, "settings updated");
        Ok(UpdateSettingsPayload {
            settings: SettingsNode::from(&settings),
        })
    }
}
