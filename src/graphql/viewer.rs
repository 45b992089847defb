//! What a VIEWER sees: every free-text field (names, descriptions, tags of
//! keys, accounts and groups) goes through the export `Masker` (full
//! redaction, every detector, this relay's key prefix). Lists that search or
//! sort on free text do so on the masked values for a viewer (see
//! [`masked_key`] and friends), so a viewer cannot recover a masked value by
//! probing with searches. Resolvers call [`text`] / [`texts`] for output.
//!
//! OWNER and ADMIN see text as stored: they may edit it anyway.

use super::auth::{require_admin, services};
use crate::config::Config;
use crate::domain::{Account, ApiKey, Group, Role};
use crate::export::{MaskConfig, MaskMode, Masker};
use async_graphql::Context;
use std::borrow::Cow;

/// The viewer masker: full redaction (no partial reveal, no pseudonyms,
/// whose low-entropy values could be enumerated), all detectors.
pub(crate) fn masker(config: &Config) -> Masker {
    let mut prefixes = vec![config.key_prefix.clone()];
    if config.key_prefix != "cr_" {
        prefixes.push("cr_".into());
    }
    Masker::new(MaskConfig {
        relay_key_prefixes: prefixes,
        ..MaskConfig::default().with_mode(MaskMode::Full)
    })
}

/// Whether the caller is a VIEWER. Unauthenticated callers never reach
/// field resolvers (the root resolvers refuse them), so "not a viewer" is
/// only answered for a resolved OWNER or ADMIN.
pub(crate) fn is_viewer(ctx: &Context<'_>) -> bool {
    // Fail closed: if the caller cannot be resolved, mask.
    require_admin(ctx).map_or(true, |p| p.admin.role == Role::Viewer)
}

/// `s` as the caller may see it.
pub(crate) fn text<'a>(ctx: &Context<'_>, s: &'a str) -> Cow<'a, str> {
    if !is_viewer(ctx) {
        return Cow::Borrowed(s);
    }
    match services(ctx) {
        Ok(svc) => svc.viewer_masker.mask(s),
        Err(_) => Cow::Owned("[REDACTED:unavailable]".into()),
    }
}

/// A list of strings (tags) as the caller may see it.
pub(crate) fn texts(ctx: &Context<'_>, list: &[String]) -> Vec<String> {
    list.iter().map(|s| text(ctx, s).into_owned()).collect()
}

/// The caller's masker, or `None` when the caller sees text as stored.
/// For streams, which outlive the context: take it once at subscribe time.
pub(crate) fn masker_for(ctx: &Context<'_>) -> Option<Masker> {
    if !is_viewer(ctx) {
        return None;
    }
    services(ctx).ok().map(|s| s.viewer_masker.clone())
}

fn mask_all(m: &Masker, list: &mut [String]) {
    for s in list {
        *s = m.mask(s).into_owned();
    }
}

/// For list queries: the records a viewer searches and sorts, with free
/// text already masked, so filters compare against what the viewer is shown.
pub(crate) fn masked_keys(ctx: &Context<'_>, keys: Vec<ApiKey>) -> Vec<ApiKey> {
    let Some(m) = masker_for(ctx) else {
        return keys;
    };
    keys.into_iter()
        .map(|mut k| {
            k.name = m.mask(&k.name).into_owned();
            k.description = m.mask(&k.description).into_owned();
            mask_all(&m, &mut k.tags);
            k
        })
        .collect()
}

/// See [`masked_keys`].
pub(crate) fn masked_accounts(ctx: &Context<'_>, accounts: Vec<Account>) -> Vec<Account> {
    let Some(m) = masker_for(ctx) else {
        return accounts;
    };
    accounts
        .into_iter()
        .map(|mut a| {
            a.name = m.mask(&a.name).into_owned();
            a
        })
        .collect()
}

/// See [`masked_keys`].
pub(crate) fn masked_groups(ctx: &Context<'_>, groups: Vec<Group>) -> Vec<Group> {
    let Some(m) = masker_for(ctx) else {
        return groups;
    };
    groups
        .into_iter()
        .map(|mut g| {
            g.name = m.mask(&g.name).into_owned();
            g.description = m.mask(&g.description).into_owned();
            g
        })
        .collect()
}
