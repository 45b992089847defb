//! Model names as the balancer sees them: the family a name belongs to (rate
//! limits upstream are per family), `*` wildcard matching for allow-lists, and
//! the per-account rules that decide whether an account serves a requested
//! model and under which upstream name. Only snapshot building calls these;
//! the select path reads their precomputed results.

use crate::domain::ModelMapping;
use std::sync::Arc;

/// Model families that upstream rate-limits separately (CRS keeps one
/// rate-limit bucket per family; the weekly Opus limit is the usual one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelFamily {
    Opus,
    Sonnet,
    Haiku,
    Fable,
    Other,
}

impl ModelFamily {
    pub const COUNT: usize = 5;
    pub const ALL: [ModelFamily; Self::COUNT] = [
        ModelFamily::Opus,
        ModelFamily::Sonnet,
        ModelFamily::Haiku,
        ModelFamily::Fable,
        ModelFamily::Other,
    ];

    /// The family a model name belongs to, by the family word it contains
    /// (`claude-opus-4-5`, `claude-3-5-sonnet-latest`, `anthropic.claude-haiku…`).
    pub fn of(model: &str) -> ModelFamily {
        let lower = model.as_bytes();
        let has = |word: &[u8]| {
            lower
                .windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word))
        };
        if has(b"opus") {
            ModelFamily::Opus
        } else if has(b"sonnet") {
            ModelFamily::Sonnet
        } else if has(b"haiku") {
            ModelFamily::Haiku
        } else if has(b"fable") {
            ModelFamily::Fable
        } else {
            ModelFamily::Other
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelFamily::Opus => "opus",
            ModelFamily::Sonnet => "sonnet",
            ModelFamily::Haiku => "haiku",
            ModelFamily::Fable => "fable",
            ModelFamily::Other => "other",
        }
    }
}

/// `*` matches any run of characters (also none); everything else matches
/// itself, ASCII case-insensitively. Iterative with one backtrack point, so a
/// hostile pattern cannot blow up.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// An account's model rules: allow-list patterns and requested → upstream mappings.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModelRules {
    allowed: Vec<String>,
    mapping: Vec<ModelMapping>,
}

/// What an account does with a requested model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ModelRoute {
    /// The account does not serve it.
    Refused,
    /// Served under the requested name.
    AsIs,
    /// Served under this upstream name.
    Mapped(Arc<str>),
}

impl ModelRules {
    pub(crate) fn new(allowed: &[String], mapping: &[ModelMapping]) -> ModelRules {
        ModelRules {
            allowed: allowed
                .iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect(),
            mapping: mapping
                .iter()
                .filter(|m| !m.from.trim().is_empty() && !m.to.trim().is_empty())
                .cloned()
                .collect(),
        }
    }

    /// An empty allow-list serves every model; a mapping also counts as
    /// serving its source name (CRS treats a mapping object as an allow-list).
    /// An exact mapping wins over a wildcard one, else the first that matches.
    pub(crate) fn route(&self, model: &str) -> ModelRoute {
        let mapped = self
            .mapping
            .iter()
            .find(|m| m.from.eq_ignore_ascii_case(model))
            .or_else(|| self.mapping.iter().find(|m| glob_match(&m.from, model)));
        if let Some(m) = mapped {
            return ModelRoute::Mapped(Arc::from(m.to.trim()));
        }
        if self.allowed.is_empty() || self.allowed.iter().any(|p| glob_match(p, model)) {
            ModelRoute::AsIs
        } else {
            ModelRoute::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_names() {
        assert_eq!(
            ModelFamily::of("claude-opus-4-5-20251101"),
            ModelFamily::Opus
        );
        assert_eq!(
            ModelFamily::of("claude-3-5-sonnet-latest"),
            ModelFamily::Sonnet
        );
        assert_eq!(ModelFamily::of("Claude-Haiku-4-5"), ModelFamily::Haiku);
        assert_eq!(ModelFamily::of("claude-fable-5-1"), ModelFamily::Fable);
        assert_eq!(ModelFamily::of("gpt-4o"), ModelFamily::Other);
    }

    #[test]
    fn wildcards() {
        assert!(glob_match("claude-sonnet-*", "claude-sonnet-4-5"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*opus*", "claude-opus-4-1"));
        assert!(glob_match("claude-*-4-5", "CLAUDE-haiku-4-5"));
        assert!(!glob_match("claude-*-4-5", "claude-haiku-4-5-20251001"));
        assert!(glob_match("claude-*-4-5*", "claude-haiku-4-5-20251001"));
        assert!(!glob_match("claude-opus", "claude-opus-4"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn allow_list_and_mapping() {
        let open = ModelRules::new(&[], &[]);
        assert_eq!(open.route("anything"), ModelRoute::AsIs);
        let rules = ModelRules::new(
            &["claude-sonnet-*".into()],
            &[
                ModelMapping {
                    from: "claude-opus-*".into(),
                    to: "claude-sonnet-4-5".into(),
                },
                ModelMapping {
                    from: "claude-opus-4-1".into(),
                    to: "claude-opus-4-5".into(),
                },
            ],
        );
        assert_eq!(rules.route("claude-sonnet-4"), ModelRoute::AsIs);
        assert_eq!(rules.route("claude-haiku-4-5"), ModelRoute::Refused);
        assert_eq!(
            rules.route("claude-opus-4-1"),
            ModelRoute::Mapped(Arc::from("claude-opus-4-5"))
        );
        assert_eq!(
            rules.route("claude-opus-4"),
            ModelRoute::Mapped(Arc::from("claude-sonnet-4-5"))
        );
    }
}
