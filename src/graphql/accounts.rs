//! Upstream accounts in the admin API: the `Account` object (credentials
//! and proxy only ever masked), the `accounts` connection and `account(id)`,
//! and create/update/delete with kind-specific credential checks. Names are
//! unique (ignoring case) among accounts not deleted.

use super::auth::{require_admin, require_writer, services};
use super::connection::{paginate, PageInfo, SortKey, DEFAULT_PAGE};
use super::error::GqlError;
use super::routing::{AccountRoutingInput, AccountRoutingNode};
use super::scalars::DateTime;
use super::types::{AccountKind, AccountStatus, OrderDirection};
use super::usage::{totals, Usage};
use super::validate;
use super::viewer;
use crate::domain::{self, Account, AccountId, Credentials, Secret, UsageSubject};
use crate::store::Store;
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID};
use chrono::Utc;

/// An upstream account. Credentials are write-only: reads show masks.
pub struct AccountNode(pub Account);

/// An upstream account. Credentials are write-only: reads show masks.
#[Object(name = "Account")]
impl AccountNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Masked for VIEWER callers.
    async fn name(&self, ctx: &Context<'_>) -> String {
        viewer::text(ctx, &self.0.name).into_owned()
    }
    async fn kind(&self) -> AccountKind {
        self.0.kind.into()
    }
    /// 1 is most preferred.
    async fn priority(&self) -> u32 {
        self.0.priority
    }
    async fn status(&self) -> AccountStatus {
        self.0.status.into()
    }
    /// Overrides the kind's default API base URL.
    async fn base_url(&self, ctx: &Context<'_>) -> Option<String> {
        self.0
            .base_url
            .as_deref()
            .map(|u| viewer::text(ctx, u).into_owned())
    }
    /// The proxy, masked: scheme, host and port only.
    async fn proxy(&self) -> Option<String> {
        self.0
            .proxy
            .as_ref()
            .map(|p| validate::mask_proxy(p.expose()))
    }
    /// ANTHROPIC_API_KEY accounts: the key, masked.
    async fn api_key(&self) -> Option<String> {
        self.0.credentials.api_key.as_ref().map(Secret::masked)
    }
    /// ANTHROPIC_COMPATIBLE accounts: names of the extra headers (values are secret).
    async fn header_names(&self) -> Vec<String> {
        self.0
            .credentials
            .headers
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
    /// CLAUDE_OAUTH accounts: the access token, masked.
    async fn access_token(&self) -> Option<String> {
        self.0.credentials.access_token.as_ref().map(Secret::masked)
    }
    /// CLAUDE_OAUTH accounts: the refresh token, masked.
    async fn refresh_token(&self) -> Option<String> {
        self.0
            .credentials
            .refresh_token
            .as_ref()
            .map(Secret::masked)
    }
    /// CLAUDE_OAUTH accounts: when the access token expires.
    async fn expires_at(&self) -> Option<DateTime> {
        self.0.credentials.expires_at.map(DateTime)
    }
    /// BEDROCK accounts: the AWS access key id, masked.
    async fn aws_access_key_id(&self) -> Option<String> {
        self.0
            .credentials
            .aws
            .as_ref()
            .map(|a| a.access_key_id.masked())
    }
    /// BEDROCK accounts: the AWS region the calls are signed for.
    async fn aws_region(&self) -> Option<&str> {
        self.0.credentials.aws.as_ref().map(|a| a.region.as_str())
    }
    /// BEDROCK accounts: whether temporary credentials (a session token) are set.
    async fn aws_session_token_set(&self) -> Option<bool> {
        self.0
            .credentials
            .aws
            .as_ref()
            .map(|a| a.session_token.is_some())
    }
    /// VERTEX accounts: the Google Cloud project.
    async fn gcp_project_id(&self) -> Option<&str> {
        self.0
            .credentials
            .gcp
            .as_ref()
            .map(|g| g.project_id.as_str())
    }
    /// VERTEX accounts: the Vertex AI region (or `global`).
    async fn gcp_region(&self) -> Option<&str> {
        self.0.credentials.gcp.as_ref().map(|g| g.region.as_str())
    }
    /// VERTEX accounts: the service account's e-mail (its key stays secret).
    async fn gcp_client_email(&self) -> Option<String> {
        let gcp = self.0.credentials.gcp.as_ref()?;
        let v: serde_json::Value = serde_json::from_str(gcp.service_account_json.expose()).ok()?;
        v.get("client_email")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    }
    /// How the balancer may use this account.
    async fn routing(&self) -> AccountRoutingNode {
        AccountRoutingNode(self.0.routing.clone())
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
    /// Usage served by this account in `[from, to)` (UTC hours), or the
    /// lifetime total; `costUsd` is the list (upstream) cost.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime>,
        to: Option<DateTime>,
    ) -> Result<Usage> {
        let t = totals(
            &services(ctx)?.store,
            &UsageSubject::Account(self.0.id),
            from,
            to,
        )?;
        Ok(Usage::list(t))
    }
}

#[derive(SimpleObject)]
pub struct AccountEdge {
    pub cursor: String,
    pub node: AccountNode,
}

#[derive(SimpleObject)]
pub struct AccountConnection {
    /// Accounts matching the filter, across all pages.
    pub total_count: usize,
    pub edges: Vec<AccountEdge>,
    pub page_info: PageInfo,
}

/// What `accounts` can be sorted by; ties are broken by id.
#[derive(Enum, Copy, Clone, Debug, Default, Eq, PartialEq)]
pub enum AccountOrderField {
    #[default]
    CreatedAt,
    Name,
    Priority,
    /// Last change of the account's settings or state.
    UpdatedAt,
}

#[derive(InputObject, Default)]
pub struct AccountOrder {
    #[graphql(default)]
    pub field: AccountOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(InputObject, Default)]
pub struct AccountFilter {
    /// Only these statuses; without it, every account except DELETED ones.
    pub status: Option<Vec<AccountStatus>>,
    pub kind: Option<AccountKind>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    /// Only accounts that are members of this group.
    pub group_id: Option<ID>,
    /// Only accounts with this routing mode.
    pub mode: Option<super::types::AccountMode>,
}

impl AccountFilter {
    fn matches(&self, a: &Account) -> bool {
        let status_ok = match &self.status {
            Some(list) => list
                .iter()
                .any(|s| domain::AccountStatus::from(*s) == a.status),
            None => a.status != domain::AccountStatus::Deleted,
        };
        let kind_ok = self
            .kind
            .is_none_or(|k| domain::AccountKind::from(k) == a.kind);
        let search_ok = self
            .search
            .as_ref()
            .is_none_or(|s| a.name.to_lowercase().contains(&s.trim().to_lowercase()));
        // The id was validated by the resolver; an unparsable one matches nothing.
        let group_ok = self.group_id.as_ref().is_none_or(|g| {
            uuid::Uuid::parse_str(g.as_str())
                .is_ok_and(|u| a.routing.group_ids.iter().any(|id| id.0 == u))
        });
        let mode_ok = self
            .mode
            .is_none_or(|m| domain::AccountMode::from(m) == a.routing.mode);
        status_ok && kind_ok && search_ok && group_ok && mode_ok
    }
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// Upstream accounts, oldest first unless `orderBy` says otherwise.
    async fn accounts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE)")] first: Option<i32>,
        after: Option<String>,
        filter: Option<AccountFilter>,
        order_by: Option<AccountOrder>,
    ) -> Result<AccountConnection> {
        require_admin(ctx)?;
        let filter = filter.unwrap_or_default();
        if let Some(g) = &filter.group_id {
            validate::id("groupId", g)?;
        }
        let order = order_by.unwrap_or_default();
        let accounts = services(ctx)?
            .store
            .list_accounts()
            .map_err(GqlError::from)?;
        // A viewer searches and sorts the masked text it is shown.
        let accounts: Vec<Account> = viewer::masked_accounts(ctx, accounts)
            .into_iter()
            .filter(|a| filter.matches(a))
            .collect();
        let field = order.field;
        let sort = move |a: &Account| match field {
            AccountOrderField::CreatedAt => SortKey::time(Some(a.created_at), a.id.0),
            AccountOrderField::Name => SortKey::text(&a.name, a.id.0),
            AccountOrderField::Priority => SortKey::number(u64::from(a.priority), a.id.0),
            AccountOrderField::UpdatedAt => SortKey::time(Some(a.updated_at), a.id.0),
        };
        let tag = format!("accounts:{:?}", order.field);
        let desc = order.direction == OrderDirection::Desc;
        let page = paginate(
            accounts,
            sort,
            &tag,
            desc,
            first.unwrap_or(DEFAULT_PAGE),
            after.as_deref(),
        )?;
        Ok(AccountConnection {
            total_count: page.total_count,
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, a)| AccountEdge {
                    cursor,
                    node: AccountNode(a),
                })
                .collect(),
            page_info: page.page_info,
        })
    }

    /// One account by id (deleted accounts included), or null.
    async fn account(&self, ctx: &Context<'_>, id: ID) -> Result<Option<AccountNode>> {
        require_admin(ctx)?;
        let id = validate::id("id", &id)?;
        let account = services(ctx)?
            .store
            .get_account(AccountId(id))
            .map_err(GqlError::from)?;
        Ok(account.map(AccountNode))
    }
}

#[derive(InputObject)]
pub struct CreateAccountInput {
    pub name: String,
    pub kind: AccountKind,
    /// Required for ANTHROPIC_API_KEY.
    pub api_key: Option<String>,
    /// Required for CLAUDE_OAUTH.
    pub access_token: Option<String>,
    /// Required for CLAUDE_OAUTH.
    pub refresh_token: Option<String>,
    /// CLAUDE_OAUTH: when the access token expires.
    pub expires_at: Option<DateTime>,
    /// http(s) URL replacing the kind's default API base URL.
    pub base_url: Option<String>,
    /// http, https, socks5 or socks5h URL used for every call of this account.
    pub proxy: Option<String>,
    /// 1 (most preferred) to 1000; default 50.
    pub priority: Option<i32>,
    /// Mode, groups, weight, concurrency cap, models, cost multiplier.
    pub routing: Option<AccountRoutingInput>,
    /// ANTHROPIC_COMPATIBLE: extra headers sent with every call (values are secret).
    pub headers: Option<Vec<HeaderInput>>,
    /// Required for BEDROCK.
    pub aws_access_key_id: Option<String>,
    /// Required for BEDROCK.
    pub aws_secret_access_key: Option<String>,
    /// BEDROCK with temporary (STS) credentials.
    pub aws_session_token: Option<String>,
    /// Required for BEDROCK, e.g. `us-east-1`.
    pub aws_region: Option<String>,
    /// Required for VERTEX: the service account's JSON key file.
    pub gcp_service_account_json: Option<String>,
    /// VERTEX: the project (default: the key file's `project_id`).
    pub gcp_project_id: Option<String>,
    /// Required for VERTEX, e.g. `us-east5` or `global`.
    pub gcp_region: Option<String>,
}

/// Checks a VERTEX account's fields; `current` is the stored value on update.
fn gcp_credentials(
    json: Option<&str>,
    project: Option<&str>,
    region: Option<&str>,
    current: Option<domain::GcpCredentials>,
) -> Result<domain::GcpCredentials, GqlError> {
    let missing =
        |field: &str| GqlError::bad_input(format!("`{field}` is required for VERTEX accounts"));
    let parsed = json
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(j).map_err(|_| {
                GqlError::bad_input(
                    "`gcpServiceAccountJson` must be a service account JSON key file",
                )
            })?;
            let text = |k: &str| {
                v.get(k)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
            };
            if text("client_email").is_none() || text("private_key").is_none() {
                return Err(GqlError::bad_input(
                    "`gcpServiceAccountJson` needs `client_email` and `private_key`",
                ));
            }
            Ok((Secret::new(j.trim()), text("project_id")))
        })
        .transpose()?;
    let mut gcp = match (current, &parsed) {
        (Some(gcp), _) => gcp,
        (None, Some((secret, file_project))) => domain::GcpCredentials {
            service_account_json: secret.clone(),
            project_id: project
                .map(str::to_owned)
                .or_else(|| file_project.clone())
                .ok_or_else(|| missing("gcpProjectId"))?,
            region: region.ok_or_else(|| missing("gcpRegion"))?.to_owned(),
        },
        (None, None) => return Err(missing("gcpServiceAccountJson")),
    };
    if let Some((secret, _)) = parsed {
        gcp.service_account_json = secret;
    }
    if let Some(p) = project {
        gcp.project_id = p.trim().to_owned();
    }
    if let Some(r) = region {
        gcp.region = r.trim().to_owned();
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !name_ok(&gcp.project_id) || !name_ok(&gcp.region) {
        return Err(GqlError::bad_input(
            "`gcpProjectId` and `gcpRegion` must be Google Cloud names (lowercase letters, digits, -)",
        ));
    }
    Ok(gcp)
}

/// The AWS fields of an account input, checked.
struct AwsInput<'a> {
    access_key_id: Option<&'a str>,
    secret_access_key: Option<&'a str>,
    session_token: MaybeUndefined<&'a str>,
    region: Option<&'a str>,
}

impl AwsInput<'_> {
    fn given(&self) -> bool {
        self.access_key_id.is_some()
            || self.secret_access_key.is_some()
            || !self.session_token.is_undefined()
            || self.region.is_some()
    }

    /// Applies the given fields to `current` (None: a new account).
    fn apply(
        &self,
        current: Option<domain::AwsCredentials>,
    ) -> Result<domain::AwsCredentials, GqlError> {
        let required = |field: &str, v: Option<&str>| -> Result<Option<Secret>, GqlError> {
            v.map(|v| validate::secret(field, v)).transpose()
        };
        let access_key_id = required("awsAccessKeyId", self.access_key_id)?;
        let secret_access_key = required("awsSecretAccessKey", self.secret_access_key)?;
        let region = self.region.map(aws_region).transpose()?;
        let missing = |field: &str| {
            GqlError::bad_input(format!("`{field}` is required for BEDROCK accounts"))
        };
        let mut aws = match current {
            Some(aws) => aws,
            None => domain::AwsCredentials {
                access_key_id: access_key_id
                    .clone()
                    .ok_or_else(|| missing("awsAccessKeyId"))?,
                secret_access_key: secret_access_key
                    .clone()
                    .ok_or_else(|| missing("awsSecretAccessKey"))?,
                session_token: None,
                region: region.clone().ok_or_else(|| missing("awsRegion"))?,
            },
        };
        if let Some(v) = access_key_id {
            aws.access_key_id = v;
        }
        if let Some(v) = secret_access_key {
            aws.secret_access_key = v;
        }
        if let Some(v) = region {
            aws.region = v;
        }
        match self.session_token {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => aws.session_token = None,
            MaybeUndefined::Value(t) => {
                aws.session_token = Some(validate::secret("awsSessionToken", t)?)
            }
        }
        Ok(aws)
    }
}

/// An AWS region name such as `us-east-1` or `us-gov-west-1`.
fn aws_region(value: &str) -> Result<String, GqlError> {
    let v = value.trim();
    let ok = (4..=32).contains(&v.len())
        && v.split('-').count() >= 3
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(GqlError::bad_input(
            "`awsRegion` must be an AWS region name such as us-east-1",
        ));
    }
    Ok(v.to_owned())
}

/// One extra upstream header.
#[derive(InputObject)]
pub struct HeaderInput {
    pub name: String,
    pub value: String,
}

/// Headers the relay owns or that would break the request; never accepted as extras.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "x-api-key",
    "authorization",
    "anthropic-version",
];

fn extra_headers(input: &[HeaderInput]) -> Result<Vec<(String, Secret)>, GqlError> {
    if input.len() > 20 {
        return Err(GqlError::bad_input("at most 20 extra headers"));
    }
    input
        .iter()
        .map(|h| {
            let name = h.name.trim().to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || RESERVED_HEADERS.contains(&name.as_str())
            {
                return Err(GqlError::bad_input(format!(
                    "`headers`: {name:?} is not an allowed header name"
                )));
            }
            if http::HeaderValue::from_str(&h.value).is_err() {
                return Err(GqlError::bad_input(format!(
                    "`headers`: the value of {name:?} is not a valid header value"
                )));
            }
            Ok((name, Secret::new(h.value.clone())))
        })
        .collect()
}

#[derive(SimpleObject)]
pub struct CreateAccountPayload {
    pub account: AccountNode,
}

/// Fields left out stay as they are; `null` clears `baseUrl`, `proxy` and `expiresAt`.
#[derive(InputObject)]
pub struct UpdateAccountInput {
    pub id: ID,
    pub name: Option<String>,
    pub priority: Option<i32>,
    /// ACTIVE or DISABLED (ACTIVE also restores a deleted or AUTH_FAILED account).
    pub status: Option<AccountStatus>,
    pub base_url: MaybeUndefined<String>,
    pub proxy: MaybeUndefined<String>,
    pub api_key: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_at: MaybeUndefined<DateTime>,
    /// Routing changes; fields left out stay as they are.
    pub routing: Option<AccountRoutingInput>,
    /// ANTHROPIC_COMPATIBLE: replaces the extra headers.
    pub headers: Option<Vec<HeaderInput>>,
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
    /// `null` removes the session token.
    pub aws_session_token: MaybeUndefined<String>,
    pub aws_region: Option<String>,
    pub gcp_service_account_json: Option<String>,
    pub gcp_project_id: Option<String>,
    pub gcp_region: Option<String>,
}

#[derive(SimpleObject)]
pub struct UpdateAccountPayload {
    pub account: AccountNode,
}

#[derive(InputObject)]
pub struct DeleteAccountInput {
    pub id: ID,
    /// Unbind the keys bound to this account (without it, a bound account answers CONFLICT).
    #[graphql(default)]
    pub force: bool,
}

#[derive(SimpleObject)]
pub struct DeleteAccountPayload {
    pub deleted_id: ID,
}

/// The credentials an account kind takes; others are refused, not ignored.
fn check_credential_fields(
    kind: domain::AccountKind,
    api_key: bool,
    oauth: bool,
    expires_at: bool,
    aws: bool,
    gcp: bool,
) -> Result<(), GqlError> {
    match kind {
        domain::AccountKind::Vertex if api_key || oauth || expires_at || aws => Err(GqlError::bad_input(
            "VERTEX accounts take `gcpServiceAccountJson`, `gcpProjectId` and `gcpRegion`",
        )),
        domain::AccountKind::Vertex => Ok(()),
        _ if gcp => Err(GqlError::bad_input(
            "the `gcp…` fields are only for VERTEX accounts",
        )),
        domain::AccountKind::Bedrock if api_key || oauth || expires_at => Err(GqlError::bad_input(
            "BEDROCK accounts take `awsAccessKeyId`, `awsSecretAccessKey`, `awsSessionToken` and `awsRegion`",
        )),
        domain::AccountKind::Bedrock => Ok(()),
        _ if aws => Err(GqlError::bad_input(
            "the `aws…` fields are only for BEDROCK accounts",
        )),
        domain::AccountKind::AnthropicApiKey | domain::AccountKind::AnthropicCompatible if oauth || expires_at => {
            Err(GqlError::bad_input(
                "ANTHROPIC_API_KEY and ANTHROPIC_COMPATIBLE accounts take `apiKey`, not `accessToken`, `refreshToken` or `expiresAt`",
            ))
        }
        domain::AccountKind::ClaudeOauth if api_key => {
            Err(GqlError::bad_input("CLAUDE_OAUTH accounts take `accessToken` and `refreshToken`, not `apiKey`"))
        }
        _ => Ok(()),
    }
}

fn ensure_name_free(store: &Store, name: &str, except: Option<AccountId>) -> Result<(), GqlError> {
    let lower = name.to_lowercase();
    let taken = store.list_accounts()?.iter().any(|a| {
        Some(a.id) != except
            && a.status != domain::AccountStatus::Deleted
            && a.name.to_lowercase() == lower
    });
    if taken {
        return Err(GqlError::Conflict(format!(
            "an account named {name:?} already exists"
        )));
    }
    Ok(())
}

fn load(store: &Store, id: &ID) -> Result<Account, GqlError> {
    let id = validate::id("id", id)?;
    store
        .get_account(AccountId(id))?
        .ok_or_else(|| GqlError::NotFound("no account with this id".into()))
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Adds an upstream account; its credentials are encrypted at rest.
    async fn create_account(
        &self,
        ctx: &Context<'_>,
        input: CreateAccountInput,
    ) -> Result<CreateAccountPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let kind = domain::AccountKind::from(input.kind);
        let name = validate::name("name", &input.name)?;
        let oauth_given = input.access_token.is_some() || input.refresh_token.is_some();
        if input.headers.is_some() && kind != domain::AccountKind::AnthropicCompatible {
            return Err(
                GqlError::bad_input("`headers` is only for ANTHROPIC_COMPATIBLE accounts").into(),
            );
        }
        let gcp_given = input.gcp_service_account_json.is_some()
            || input.gcp_project_id.is_some()
            || input.gcp_region.is_some();
        let aws_input = AwsInput {
            access_key_id: input.aws_access_key_id.as_deref(),
            secret_access_key: input.aws_secret_access_key.as_deref(),
            session_token: match input.aws_session_token.as_deref() {
                Some(t) => MaybeUndefined::Value(t),
                None => MaybeUndefined::Undefined,
            },
            region: input.aws_region.as_deref(),
        };
        check_credential_fields(
            kind,
            input.api_key.is_some(),
            oauth_given,
            input.expires_at.is_some(),
            aws_input.given(),
            gcp_given,
        )?;
        let required = |field: &str, v: &Option<String>| match v {
            Some(v) => validate::secret(field, v),
            None => Err(GqlError::bad_input(format!(
                "`{field}` is required for this kind of account"
            ))),
        };
        let credentials = match kind {
            domain::AccountKind::AnthropicApiKey => Credentials {
                api_key: Some(required("apiKey", &input.api_key)?),
                ..Credentials::default()
            },
            domain::AccountKind::AnthropicCompatible => {
                if input.base_url.is_none() {
                    return Err(GqlError::bad_input(
                        "`baseUrl` is required for ANTHROPIC_COMPATIBLE accounts",
                    )
                    .into());
                }
                Credentials {
                    api_key: Some(required("apiKey", &input.api_key)?),
                    headers: extra_headers(input.headers.as_deref().unwrap_or(&[]))?,
                    ..Credentials::default()
                }
            }
            domain::AccountKind::ClaudeOauth => Credentials {
                api_key: None,
                headers: Vec::new(),
                access_token: Some(required("accessToken", &input.access_token)?),
                refresh_token: Some(required("refreshToken", &input.refresh_token)?),
                expires_at: input.expires_at.map(|t| t.0),
                aws: None,
                gcp: None,
            },
            domain::AccountKind::Bedrock => Credentials {
                aws: Some(aws_input.apply(None)?),
                ..Credentials::default()
            },
            domain::AccountKind::Vertex => Credentials {
                gcp: Some(gcp_credentials(
                    input.gcp_service_account_json.as_deref(),
                    input.gcp_project_id.as_deref(),
                    input.gcp_region.as_deref(),
                    None,
                )?),
                ..Credentials::default()
            },
        };
        let base_url = input
            .base_url
            .as_deref()
            .map(validate::base_url)
            .transpose()?;
        let proxy = input.proxy.as_deref().map(validate::proxy).transpose()?;
        let priority = input
            .priority
            .map(validate::priority)
            .transpose()?
            .unwrap_or(validate::DEFAULT_PRIORITY);
        let mut routing = domain::AccountRouting::default();
        if let Some(r) = input.routing {
            r.apply(&svc.store, &mut routing)?;
        }
        let now = Utc::now();
        let account = Account {
            id: AccountId::generate(),
            name,
            kind,
            priority,
            status: domain::AccountStatus::Active,
            base_url,
            credentials,
            proxy,
            routing,
            created_at: now,
            updated_at: now,
        };
        let _guard = svc.writes.lock().await;
        ensure_name_free(&svc.store, &account.name, None)?;
        svc.store.put_account(&account).map_err(GqlError::from)?;
        tracing::info!(account.id = %account.id, "account created");
        Ok(CreateAccountPayload {
            account: AccountNode(account),
        })
    }

    /// Changes an account. New credentials for an AUTH_FAILED account make it
    /// ACTIVE again unless `status` says otherwise.
    async fn update_account(
        &self,
        ctx: &Context<'_>,
        input: UpdateAccountInput,
    ) -> Result<UpdateAccountPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let mut account = load(&svc.store, &input.id)?;
        let oauth_given = input.access_token.is_some() || input.refresh_token.is_some();
        let gcp_given = input.gcp_service_account_json.is_some()
            || input.gcp_project_id.is_some()
            || input.gcp_region.is_some();
        let aws_input = AwsInput {
            access_key_id: input.aws_access_key_id.as_deref(),
            secret_access_key: input.aws_secret_access_key.as_deref(),
            session_token: match &input.aws_session_token {
                MaybeUndefined::Undefined => MaybeUndefined::Undefined,
                MaybeUndefined::Null => MaybeUndefined::Null,
                MaybeUndefined::Value(t) => MaybeUndefined::Value(t.as_str()),
            },
            region: input.aws_region.as_deref(),
        };
        check_credential_fields(
            account.kind,
            input.api_key.is_some(),
            oauth_given,
            !input.expires_at.is_undefined(),
            aws_input.given(),
            gcp_given,
        )?;
        if gcp_given {
            let current = account.credentials.gcp.take();
            account.credentials.gcp = Some(gcp_credentials(
                input.gcp_service_account_json.as_deref(),
                input.gcp_project_id.as_deref(),
                input.gcp_region.as_deref(),
                current,
            )?);
        }
        if aws_input.given() {
            let current = account.credentials.aws.take();
            account.credentials.aws = Some(aws_input.apply(current)?);
        }
        if let Some(name) = &input.name {
            account.name = validate::name("name", name)?;
        }
        if let Some(p) = input.priority {
            account.priority = validate::priority(p)?;
        }
        match input.base_url {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => account.base_url = None,
            MaybeUndefined::Value(u) => account.base_url = Some(validate::base_url(&u)?),
        }
        match input.proxy {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => account.proxy = None,
            MaybeUndefined::Value(p) => account.proxy = Some(validate::proxy(&p)?),
        }
        let creds = &mut account.credentials;
        if let Some(k) = &input.api_key {
            creds.api_key = Some(validate::secret("apiKey", k)?);
        }
        if let Some(t) = &input.access_token {
            creds.access_token = Some(validate::secret("accessToken", t)?);
        }
        if let Some(t) = &input.refresh_token {
            creds.refresh_token = Some(validate::secret("refreshToken", t)?);
        }
        match input.expires_at {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => creds.expires_at = None,
            MaybeUndefined::Value(t) => creds.expires_at = Some(t.0),
        }
        if let Some(r) = input.routing {
            r.apply(&svc.store, &mut account.routing)?;
        }
        if let Some(h) = &input.headers {
            if account.kind != domain::AccountKind::AnthropicCompatible {
                return Err(GqlError::bad_input(
                    "`headers` is only for ANTHROPIC_COMPATIBLE accounts",
                )
                .into());
            }
            account.credentials.headers = extra_headers(h)?;
        }
        let new_credentials =
            input.api_key.is_some() || oauth_given || aws_input.given() || gcp_given;
        match input.status {
            Some(AccountStatus::Active) => account.status = domain::AccountStatus::Active,
            Some(AccountStatus::Disabled) => account.status = domain::AccountStatus::Disabled,
            Some(AccountStatus::AuthFailed | AccountStatus::Deleted) => {
                return Err(GqlError::bad_input(
                    "`status` may be ACTIVE or DISABLED (use deleteAccount to delete)",
                )
                .into());
            }
            None if new_credentials && account.status == domain::AccountStatus::AuthFailed => {
                account.status = domain::AccountStatus::Active;
            }
            None => {}
        }
        if account.status != domain::AccountStatus::Deleted {
            ensure_name_free(&svc.store, &account.name, Some(account.id))?;
        }
        account.updated_at = Utc::now();
        svc.store.put_account(&account).map_err(GqlError::from)?;
        tracing::info!(account.id = %account.id, "account updated");
        Ok(UpdateAccountPayload {
            account: AccountNode(account),
        })
    }

    /// Soft delete: the account stops serving new requests (in-flight ones
    /// finish), its history stays, and `updateAccount(status: ACTIVE)`
    /// restores it. Deleting twice is fine.
    async fn delete_account(
        &self,
        ctx: &Context<'_>,
        input: DeleteAccountInput,
    ) -> Result<DeleteAccountPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let mut account = load(&svc.store, &input.id)?;
        let bound: Vec<_> = svc
            .store
            .list_keys()
            .map_err(GqlError::from)?
            .into_iter()
            .filter(|k| {
                k.binding == domain::KeyBinding::Account(account.id)
                    && k.status != domain::KeyStatus::Deleted
            })
            .collect();
        if !bound.is_empty() && !input.force {
            return Err(GqlError::Conflict(format!(
                "{} key(s) are bound to this account; pass force: true to unbind them",
                bound.len()
            ))
            .into());
        }
        for mut key in bound {
            key.binding = domain::KeyBinding::None;
            key.updated_at = Utc::now();
            svc.store.put_key(&key).map_err(GqlError::from)?;
        }
        if account.status != domain::AccountStatus::Deleted {
            account.status = domain::AccountStatus::Deleted;
            account.updated_at = Utc::now();
            svc.store.put_account(&account).map_err(GqlError::from)?;
            tracing::info!(account.id = %account.id, "account deleted");
        }
        Ok(DeleteAccountPayload {
            deleted_id: ID(account.id.to_string()),
        })
    }
}
