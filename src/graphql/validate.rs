//! Input checks for admin mutations. Each returns the cleaned value or a
//! `BAD_USER_INPUT` error naming the field, so resolvers read as a list of
//! checks. Also the proxy URL masker (the password never leaves the store).

use super::error::GqlError;
use crate::domain::Secret;
use async_graphql::ID;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_CHARS: usize = 64;
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = 1..=1000;
pub const DEFAULT_PRIORITY: u32 = 50;
pub const MAX_COST_MULTIPLIER: f64 = 1000.0;
pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 1024;
const MAX_SECRET_CHARS: usize = 16 * 1024;
const MAX_URL_CHARS: usize = 2048;

fn bad(msg: String) -> GqlError {
    GqlError::BadUserInput(msg)
}

/// The password policy: 12 to 1024 characters, not the username, and not
/// one character repeated. Length beats composition rules (NIST SP 800-63B).
pub fn password(field: &str, value: &str, username: &str) -> Result<(), GqlError> {
    let n = value.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(bad(format!(
            "`{field}` must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    if value.trim().eq_ignore_ascii_case(username.trim()) {
        return Err(bad(format!("`{field}` must not be the username")));
    }
    let mut chars = value.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err(bad(format!("`{field}` must not be one character repeated")));
    }
    Ok(())
}

/// Usernames: 1 to 64 characters of letters, digits and `._@-`.
pub fn username(value: &str) -> Result<String, GqlError> {
    let v = value.trim();
    let ok_char = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '@' | '-');
    if v.is_empty() || v.chars().count() > 64 || !v.chars().all(ok_char) {
        return Err(bad(
            "`username` must be 1 to 64 letters, digits or `._@-`".to_string()
        ));
    }
    Ok(v.to_string())
}

pub fn id(field: &str, id: &ID) -> Result<Uuid, GqlError> {
    Uuid::parse_str(id.as_str()).map_err(|_| bad(format!("`{field}` is not a valid id")))
}

/// Trimmed, non-empty, at most [`MAX_NAME_CHARS`], no control characters.
pub fn name(field: &str, value: &str) -> Result<String, GqlError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(bad(format!("`{field}` must not be empty")));
    }
    if v.chars().count() > MAX_NAME_CHARS {
        return Err(bad(format!(
            "`{field}` is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(format!(
            "`{field}` must not contain control characters"
        )));
    }
    Ok(v.to_string())
}

pub fn description(value: &str) -> Result<String, GqlError> {
    let v = value.trim();
    if v.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(bad(format!(
            "`description` is longer than {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad(
            "`description` must not contain control characters".into()
        ));
    }
    Ok(v.to_string())
}

/// Trimmed, non-empty, de-duplicated (first spelling wins), bounded.
pub fn tags(values: &[String]) -> Result<Vec<String>, GqlError> {
    let mut out: Vec<String> = Vec::new();
    for raw in values {
        let tag = raw.trim();
        if tag.is_empty()
            || tag.chars().count() > MAX_TAG_CHARS
            || tag.chars().any(char::is_control)
        {
            return Err(bad(format!(
                "each tag must be 1 to {MAX_TAG_CHARS} characters without control characters"
            )));
        }
        if !out.iter().any(|t| t == tag) {
            out.push(tag.to_string());
        }
    }
    if out.len() > MAX_TAGS {
        return Err(bad(format!("at most {MAX_TAGS} tags")));
    }
    Ok(out)
}

pub fn cost_multiplier(value: f64) -> Result<f64, GqlError> {
    if !value.is_finite() || !(0.0..=MAX_COST_MULTIPLIER).contains(&value) {
        return Err(bad(format!(
            "`costMultiplier` must be between 0 and {MAX_COST_MULTIPLIER}"
        )));
    }
    Ok(value)
}

pub fn priority(value: i32) -> Result<u32, GqlError> {
    if !PRIORITY_RANGE.contains(&value) {
        return Err(bad(format!(
            "`priority` must be between {} and {} (1 is most preferred)",
            PRIORITY_RANGE.start(),
            PRIORITY_RANGE.end()
        )));
    }
    u32::try_from(value).map_err(|_| bad("`priority` is out of range".into()))
}

pub fn future(
    field: &str,
    t: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, GqlError> {
    if t <= now {
        return Err(bad(format!("`{field}` must be in the future")));
    }
    Ok(t)
}

/// A credential: trimmed, non-empty, no whitespace or control characters.
pub fn secret(field: &str, value: &str) -> Result<Secret, GqlError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(bad(format!("`{field}` must not be empty")));
    }
    if v.chars().count() > MAX_SECRET_CHARS
        || v.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad(format!("`{field}` is not a valid credential")));
    }
    Ok(Secret::new(v))
}

fn url(field: &str, value: &str, schemes: &[&str]) -> Result<http::Uri, GqlError> {
    let v = value.trim();
    let invalid = || {
        bad(format!(
            "`{field}` must be a URL with scheme {}",
            schemes.join(", ")
        ))
    };
    if v.len() > MAX_URL_CHARS {
        return Err(invalid());
    }
    let uri: http::Uri = v.parse().map_err(|_| invalid())?;
    let scheme_ok = uri
        .scheme_str()
        .is_some_and(|s| schemes.iter().any(|ok| s.eq_ignore_ascii_case(ok)));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok {
        return Err(invalid());
    }
    Ok(uri)
}

/// An upstream base URL: http or https, no query or credentials.
pub fn base_url(value: &str) -> Result<String, GqlError> {
    let uri = url("baseUrl", value, &["http", "https"])?;
    if uri.query().is_some() || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("`baseUrl` must not carry a query or credentials".into()));
    }
    Ok(value.trim().trim_end_matches('/').to_string())
}

/// A proxy URL: http, https, socks5 or socks5h, with optional credentials.
pub fn proxy(value: &str) -> Result<Secret, GqlError> {
    url("proxy", value, &["http", "https", "socks5", "socks5h"])?;
    Ok(Secret::new(value.trim()))
}

/// `scheme://host:port`, with `****@` where credentials were.
pub fn mask_proxy(value: &str) -> String {
    let Ok(uri) = value.parse::<http::Uri>() else {
        return "****".into();
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return "****".into();
    };
    let creds = if authority.as_str().contains('@') {
        "****@"
    } else {
        ""
    };
    let port = authority
        .port_u16()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!("{scheme}://{creds}{}{port}", authority.host())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tags() {
        assert_eq!(name("name", "  team a ").unwrap(), "team a");
        assert!(name("name", "   ").is_err());
        assert!(name("name", "a\nb").is_err());
        assert!(name("name", &"x".repeat(101)).is_err());
        assert_eq!(
            tags(&[" a ".into(), "b".into(), "a".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert!(tags(&["".into()]).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            base_url("https://api.example.com/").unwrap(),
            "https://api.example.com"
        );
        assert!(base_url("ftp://x").is_err());
        assert!(base_url("not a url").is_err());
        assert!(base_url("https://user:pw@x").is_err());
        for ok in [
            "http://p:8080",
            "https://p",
            "socks5://u:pw@p:1080",
            "socks5h://p:1080",
        ] {
            assert!(proxy(ok).is_ok(), "{ok}");
        }
        for bad in ["socks4://p:1080", "p:1080", "", "http://"] {
            assert!(proxy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_masks_hide_credentials() {
        assert_eq!(
            mask_proxy("socks5h://user:secret@proxy.example:1080"),
            "socks5h://****@proxy.example:1080"
        );
        assert_eq!(
            mask_proxy("http://proxy.example:3128"),
            "http://proxy.example:3128"
        );
        assert_eq!(mask_proxy("garbage value"), "****");
    }

    #[test]
    fn numbers() {
        assert!(priority(0).is_err());
        assert_eq!(priority(1).unwrap(), 1);
        assert!(priority(1001).is_err());
        assert!(cost_multiplier(f64::NAN).is_err());
        assert!(cost_multiplier(-0.5).is_err());
        assert_eq!(cost_multiplier(1.5).unwrap(), 1.5);
    }
}
