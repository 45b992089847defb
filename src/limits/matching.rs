//! Pure string matching for policies: `*` wildcards, Claude-family model
//! names, and how Claude Code identifies itself (user-agent and request
//! shape). No allocation on the common paths.

use super::policy::ClientHints;
use serde::Deserialize;

/// `*` matches any run of characters (also none); everything else matches
/// itself, ASCII case-insensitively. Iterative with one backtrack point, so
/// no pattern can make it slow or allocate.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// claude-relay-service's notion of a Claude-family model.
pub fn is_claude_family(model: &str) -> bool {
    ["claude", "opus", "sonnet", "haiku"]
        .iter()
        .any(|needle| contains_ignore_case(model, needle))
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

pub(super) fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// `claude-cli/<major>.<minor>.<patch>` at the start of the user-agent.
pub fn is_claude_code_user_agent(ua: &str) -> bool {
    let Some(rest) = ua.strip_prefix("claude-cli/") else {
        return false;
    };
    let version = rest.split([' ', '(']).next().unwrap_or("");
    let mut parts = version.split('.');
    let numeric =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    numeric(parts.next()) && numeric(parts.next()) && numeric(parts.next())
}

/// Claude Code's request shape: a non-empty `x-app` header and a
/// `metadata.user_id` in one of its two forms — the JSON string
/// `{"device_id":…,"account_uuid":…,"session_id":…}` (current) or
/// `user_<64 hex>_account_<…>_session_<uuid>` (older versions).
pub fn is_claude_code_shape(hints: ClientHints<'_>) -> bool {
    let x_app_ok = hints.x_app.is_some_and(|v| !v.trim().is_empty());
    x_app_ok && hints.metadata_user_id.is_some_and(is_claude_code_user_id)
}

fn is_claude_code_user_id(user_id: &str) -> bool {
    if user_id.starts_with('{') {
        #[derive(Deserialize)]
        struct Shape<'a> {
            device_id: &'a str,
            #[allow(dead_code)]
            account_uuid: &'a str,
            session_id: &'a str,
        }
        return serde_json::from_str::<Shape<'_>>(user_id)
            .is_ok_and(|s| !s.device_id.is_empty() && !s.session_id.is_empty());
    }
    let Some(rest) = user_id.strip_prefix("user_") else {
        return false;
    };
    let Some((device, rest)) = rest.split_once("_account_") else {
        return false;
    };
    let Some((_account, session)) = rest.rsplit_once("_session_") else {
        return false;
    };
    device.len() == 64
        && device.bytes().all(|b| b.is_ascii_hexdigit())
        && session.len() == 36
        && session.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::super::policy::ModelScope;
    use super::*;

    #[test]
    fn wildcards_match_like_globs() {
        assert!(glob_match("claude-opus-*", "claude-opus-4-8"));
        assert!(glob_match("claude-opus-*", "CLAUDE-OPUS-4"));
        assert!(!glob_match("claude-opus-*", "claude-sonnet-4-6"));
        assert!(glob_match("*sonnet*", "claude-sonnet-4-6"));
        assert!(glob_match("claude-*-4-*", "claude-haiku-4-5"));
        assert!(!glob_match("claude-*-4-*", "claude-haiku-3-5"));
        assert!(glob_match("*", ""));
        assert!(glob_match("claude-haiku-4-5", "claude-haiku-4-5"));
        assert!(!glob_match("claude-haiku-4-5", "claude-haiku-4-5-20251001"));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYYb"));
    }

    #[test]
    fn claude_family_follows_crs() {
        for m in [
            "claude-opus-4-8",
            "us.anthropic.claude-3",
            "my-opus",
            "Sonnet",
        ] {
            assert!(is_claude_family(m), "{m}");
        }
        assert!(!is_claude_family("gpt-4o"));
        assert!(ModelScope::AllClaude.matches("claude-haiku-4-5"));
        assert!(!ModelScope::Matching("claude-opus-*".into()).matches("claude-haiku-4-5"));
    }
}
