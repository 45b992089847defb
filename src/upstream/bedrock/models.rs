//! Bedrock model ids: the built-in table from Anthropic model names to the
//! ids Bedrock's `InvokeModel` takes, and the reverse naming the simulator
//! and usage records need. Per-account overrides come from the account's
//! routing `model_mapping` (applied by the balancer before the adapter).

/// Anthropic name (alias or dated) → Bedrock model id. Dated names and
/// their aliases both map, so clients may send either.
const BUILTIN: &[(&str, &str)] = &[
    ("claude-opus-4-6", "anthropic.claude-opus-4-6-v1"),
    ("claude-sonnet-4-6", "anthropic.claude-sonnet-4-6"),
    ("claude-opus-4-5", "anthropic.claude-opus-4-5-20251101-v1:0"),
    (
        "claude-opus-4-5-20251101",
        "anthropic.claude-opus-4-5-20251101-v1:0",
    ),
    (
        "claude-haiku-4-5",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    (
        "claude-haiku-4-5-20251001",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    (
        "claude-sonnet-4-5",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
    (
        "claude-sonnet-4-5-20250929",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
    ),
    ("claude-opus-4-1", "anthropic.claude-opus-4-1-20250805-v1:0"),
    (
        "claude-opus-4-1-20250805",
        "anthropic.claude-opus-4-1-20250805-v1:0",
    ),
    ("claude-opus-4-0", "anthropic.claude-opus-4-20250514-v1:0"),
    (
        "claude-opus-4-20250514",
        "anthropic.claude-opus-4-20250514-v1:0",
    ),
    (
        "claude-sonnet-4-0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
    ),
    (
        "claude-sonnet-4-20250514",
        "anthropic.claude-sonnet-4-20250514-v1:0",
    ),
    (
        "claude-3-7-sonnet-latest",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
    ),
    (
        "claude-3-7-sonnet-20250219",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
    ),
    (
        "claude-3-5-haiku-latest",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
    ),
    (
        "claude-3-5-haiku-20241022",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
    ),
    (
        "claude-3-5-sonnet-20241022",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
    ),
    (
        "claude-3-5-sonnet-20240620",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
    ),
    (
        "claude-3-opus-20240229",
        "anthropic.claude-3-opus-20240229-v1:0",
    ),
    (
        "claude-3-haiku-20240307",
        "anthropic.claude-3-haiku-20240307-v1:0",
    ),
];

/// The Bedrock model id for a requested (possibly already mapped) model.
/// Names that already are Bedrock ids (`anthropic.…`, a cross-region
/// profile such as `us.anthropic.…`, or an ARN) pass unchanged; unknown
/// names too, so Bedrock itself answers with its validation error.
pub fn model_id(model: &str) -> &str {
    if model.starts_with("arn:") || model.contains("anthropic.") {
        return model;
    }
    BUILTIN
        .iter()
        .find(|(name, _)| *name == model)
        .map_or(model, |(_, id)| id)
}

/// Anthropic model names the built-in table serves (for `GET /v1/models`).
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_dated_names_and_bedrock_ids() {
        assert_eq!(
            model_id("claude-sonnet-4-5"),
            "anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(
            model_id("claude-sonnet-4-5-20250929"),
            "anthropic.claude-sonnet-4-5-20250929-v1:0"
        );
        assert_eq!(
            model_id("us.anthropic.claude-haiku-4-5-20251001-v1:0"),
            "us.anthropic.claude-haiku-4-5-20251001-v1:0"
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x";
        assert_eq!(model_id(arn), arn);
        assert_eq!(model_id("gpt-4o"), "gpt-4o");
        assert!(builtin_names().any(|n| n == "claude-haiku-4-5"));
    }
}
