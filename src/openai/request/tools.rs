//! OpenAI `tools`, `tool_choice`, `parallel_tool_calls` and
//! `response_format` → Anthropic `tools` and `tool_choice`, plus the JSON-mode
//! system instruction or forced tool (the choice is documented in the parent
//! module).

use super::messages::required_at;
use super::wire::{AnthropicTool, TextBlock, Tool};
use crate::openai::error::OpenAiError;
use serde_json::{json, Value};
use std::borrow::Cow;

/// The forced tool's name when the schema's own name is unusable.
const JSON_TOOL_FALLBACK_NAME: &str = "json_response";

const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing else: no Markdown code fences, no text before or after it.";

pub(super) fn translate_tools(tools: Vec<Tool<'_>>) -> Result<Vec<AnthropicTool<'_>>, OpenAiError> {
    tools
        .into_iter()
        .enumerate()
        .map(|(k, tool)| {
            if tool.kind != "function" {
                return Err(OpenAiError::unsupported_value(
                    format!("tools[{k}].type"),
                    format!(
                        "Tools of type {:?} are not supported; use function tools",
                        tool.kind
                    ),
                ));
            }
            let f = tool
                .function
                .ok_or_else(|| required_at(format!("tools[{k}].function")))?;
            let input_schema = match f.parameters {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(v @ Value::Object(_)) => v,
                Some(_) => {
                    return Err(OpenAiError::invalid_request(
                        Some(format!("tools[{k}].function.parameters")),
                        "parameters must be a JSON Schema object",
                    ))
                }
            };
            Ok(AnthropicTool {
                name: f.name,
                description: f.description.filter(|d| !d.is_empty()),
                input_schema,
            })
        })
        .collect()
}

/// Tools and tool choice as they will be sent.
pub(super) struct ToolPlan<'a> {
    pub(super) tools: Vec<AnthropicTool<'a>>,
    pub(super) choice: Option<Value>,
    /// The client named a choice other than `auto`.
    explicit_choice: bool,
}

impl<'a> ToolPlan<'a> {
    pub(super) fn new(
        mut tools: Vec<AnthropicTool<'a>>,
        choice: Option<&Value>,
        parallel: Option<bool>,
    ) -> Result<Self, OpenAiError> {
        let bad = |m: &str| OpenAiError::invalid_request(Some("tool_choice".into()), m.to_owned());
        let (mut choice, explicit) = match choice {
            None | Some(Value::Null) => (None, false),
            Some(Value::String(s)) => match s.as_str() {
                "auto" => (Some(json!({"type": "auto"})), false),
                "none" => (Some(json!({"type": "none"})), true),
                "required" => (Some(json!({"type": "any"})), true),
                _ => {
                    return Err(bad(
                        "tool_choice must be auto, none, required or a function",
                    ))
                }
            },
            Some(obj) => match obj.get("type").and_then(Value::as_str) {
                Some("function") => {
                    let name = obj
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("tool_choice.function.name is required"))?;
                    if !tools.iter().any(|t| t.name == name) {
                        return Err(bad("tool_choice names a function that is not in tools"));
                    }
                    (Some(json!({"type": "tool", "name": name})), true)
                }
                Some("allowed_tools") => {
                    let allowed = obj.get("allowed_tools");
                    let names: Vec<&str> = allowed
                        .and_then(|a| a.get("tools"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                        .collect();
                    tools.retain(|t| names.contains(&&*t.name));
                    match allowed.and_then(|a| a.get("mode")).and_then(Value::as_str) {
                        Some("required") => (Some(json!({"type": "any"})), true),
                        Some("auto") | None => (Some(json!({"type": "auto"})), false),
                        Some(_) => return Err(bad("allowed_tools.mode must be auto or required")),
                    }
                }
                Some("custom") => {
                    return Err(OpenAiError::unsupported_value(
                        "tool_choice".into(),
                        "Custom tools are not supported",
                    ))
                }
                _ => {
                    return Err(bad(
                        "tool_choice must be auto, none, required or a function",
                    ))
                }
            },
        };
        if tools.is_empty() {
            // `auto` and `none` without tools mean "no tools"; anything that
            // demands a call cannot be honoured.
            if choice
                .as_ref()
                .is_some_and(|c| c["type"] == "any" || c["type"] == "tool")
            {
                return Err(bad("tool_choice requires tools"));
            }
            return Ok(ToolPlan {
                tools,
                choice: None,
                explicit_choice: explicit,
            });
        }
        if parallel == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = Value::Bool(true);
            }
        }
        Ok(ToolPlan {
            tools,
            choice,
            explicit_choice: explicit,
        })
    }

    /// Serves `response_format`; returns the forced JSON tool's name, if one
    /// is used (see the module doc for the choice).
    pub(super) fn apply_response_format(
        &mut self,
        format: Option<&Value>,
        system: &mut Vec<TextBlock<'a>>,
    ) -> Result<Option<String>, OpenAiError> {
        let bad =
            |m: &str| OpenAiError::invalid_request(Some("response_format".into()), m.to_owned());
        let Some(format) = format.filter(|f| !f.is_null()) else {
            return Ok(None);
        };
        match format.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => {
                system.push(TextBlock::owned(JSON_OBJECT_INSTRUCTION.to_owned()));
                Ok(None)
            }
            Some("json_schema") => {
                let spec = format
                    .get("json_schema")
                    .ok_or_else(|| bad("response_format.json_schema is required"))?;
                let schema = spec
                    .get("schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object"}));
                if !schema.is_object() {
                    return Err(bad("response_format.json_schema.schema must be an object"));
                }
                let object_root = schema.get("type").and_then(Value::as_str) == Some("object");
                if self.tools.is_empty() && !self.explicit_choice && object_root {
                    let name = spec
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| is_tool_name(n))
                        .unwrap_or(JSON_TOOL_FALLBACK_NAME)
                        .to_owned();
                    let description = spec.get("description").and_then(Value::as_str).map_or_else(
                        || "Give the final answer as this JSON object.".to_owned(),
                        |d| format!("Give the final answer as this JSON object. {d}"),
                    );
                    self.tools.push(AnthropicTool {
                        name: Cow::Owned(name.clone()),
                        description: Some(Cow::Owned(description)),
                        input_schema: schema,
                    });
                    self.choice = Some(json!({
                        "type": "tool", "name": name, "disable_parallel_tool_use": true
                    }));
                    return Ok(Some(name));
                }
                let schema_text = serde_json::to_string(&schema).unwrap_or_default();
                system.push(TextBlock::owned(format!(
                    "Respond with a single JSON value that conforms to this JSON Schema, and nothing else (no Markdown code fences, no text before or after it):\n{schema_text}"
                )));
                Ok(None)
            }
            _ => Err(bad(
                "response_format.type must be text, json_object or json_schema",
            )),
        }
    }
}

fn is_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
