//! Shared GraphQL types: the enums mirrored from `domain` (values in
//! SCREAMING_SNAKE), the `Admin` object and the ordering direction.

use super::scalars::DateTime;
use crate::domain;
use async_graphql::{Enum, Object, ID};

/// The kind of upstream account, which decides the credentials it needs.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::AccountKind")]
pub enum AccountKind {
    /// A Console API key (`apiKey`).
    AnthropicApiKey,
    /// A Claude OAuth login (`accessToken` + `refreshToken`, refreshed before `expiresAt`).
    ClaudeOauth,
    /// Any Anthropic-Messages-compatible base URL (`baseUrl` required) with a
    /// static key (`apiKey`) and optional extra `headers`.
    AnthropicCompatible,
    /// Claude on AWS Bedrock: `awsAccessKeyId`, `awsSecretAccessKey`
    /// (optional `awsSessionToken`) and `awsRegion`; `baseUrl` overrides the
    /// regional endpoint (VPC endpoints, tests).
    Bedrock,
    /// Claude on Google Vertex AI: `gcpServiceAccountJson` (the key file),
    /// `gcpRegion`, optional `gcpProjectId` (default: the key file's);
    /// `baseUrl` overrides the regional endpoint.
    Vertex,
}

/// Lifecycle of an upstream account.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::AccountStatus")]
pub enum AccountStatus {
    Active,
    Disabled,
    /// Set by the relay when upstream rejects the credentials for good.
    AuthFailed,
    /// Soft-deleted: kept with its usage history, restorable by setting ACTIVE.
    Deleted,
}

/// Lifecycle of a relay key.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::KeyStatus")]
pub enum ApiKeyStatus {
    Active,
    Disabled,
    /// Soft-deleted: refused by the relay, restorable by setting ACTIVE.
    Deleted,
}

/// What an admin may do: OWNER and ADMIN change things, VIEWER only reads.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::Role")]
pub enum Role {
    Owner,
    Admin,
    Viewer,
}

#[derive(Enum, Copy, Clone, Debug, Default, Eq, PartialEq)]
pub enum OrderDirection {
    #[default]
    Asc,
    Desc,
}

/// An admin user of this relay.
pub struct AdminNode(pub domain::Admin);

/// An admin user of this relay.
#[Object(name = "Admin")]
impl AdminNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn username(&self) -> &str {
        &self.0.username
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    async fn password_changed_at(&self) -> DateTime {
        self.0.password_changed_at.into()
    }
}

/// Which keys an account serves.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::AccountMode")]
pub enum AccountMode {
    /// Serves keys bound to nothing (the shared pool), and keys bound to it or its groups.
    Shared,
    /// Serves only keys bound to this account.
    Dedicated,
    /// Serves only keys bound to one of its groups.
    GroupOnly,
}

/// How the balancer picks an account.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "crate::domain::StrategyKind")]
pub enum Strategy {
    /// Lowest priority number first, least recently used among equals.
    Priority,
    /// The account with the most headroom in its current window.
    LeastUsed,
    /// Lowest marginal cost first (subscription headroom costs nothing).
    CostFirst,
    /// Weighted choice by configured weight × health score.
    Balanced,
    /// Power of two choices over peak-EWMA time to first byte × load.
    Latency,
}
