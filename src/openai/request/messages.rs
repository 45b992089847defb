//! OpenAI messages → Anthropic `system` blocks and alternating turns: roles,
//! content parts (text, images, PDF files), assistant tool calls and tool
//! results. See the rules in the parent module's doc.

use super::wire::{Block, Content, Message, Part, Source, TextBlock, ToolCall, Turn};
use super::TranslateOptions;
use crate::openai::error::OpenAiError;
use serde_json::{json, Value};
use std::borrow::Cow;

/// The translated conversation, built message by message.
#[derive(Default)]
pub(super) struct Conversation<'a> {
    pub(super) system: Vec<TextBlock<'a>>,
    pub(super) turns: Vec<Turn<'a>>,
    pub(super) remote_images: Vec<String>,
}

impl<'a> Conversation<'a> {
    pub(super) fn add(
        &mut self,
        i: usize,
        m: Message<'a>,
        opts: &TranslateOptions,
    ) -> Result<(), OpenAiError> {
        if m.function_call.is_some() {
            return Err(OpenAiError::unsupported_parameter(
                &format!("messages[{i}].function_call"),
                "The deprecated function_call is not supported; use tool_calls",
            ));
        }
        match &*m.role {
            "system" | "developer" => {
                for (j, part) in content_parts(m.content) {
                    match part {
                        PartOut::Text(text, cache_control) => self.system.push(TextBlock {
                            kind: "text",
                            text,
                            cache_control,
                        }),
                        PartOut::Part(p) => {
                            return Err(not_allowed(i, j, &p.kind, &m.role));
                        }
                    }
                }
                Ok(())
            }
            "user" => {
                let mut blocks = Vec::new();
                for (j, part) in content_parts(m.content) {
                    match part {
                        PartOut::Text(text, cache_control) => blocks.push(Block::Text {
                            text,
                            cache_control,
                        }),
                        PartOut::Part(p) => blocks.push(self.media(i, j, p, opts)?),
                    }
                }
                self.push("user", blocks);
                Ok(())
            }
            "assistant" => {
                if m.audio.is_some() {
                    return Err(OpenAiError::unsupported_parameter(
                        &format!("messages[{i}].audio"),
                        "Audio is not supported by Claude",
                    ));
                }
                let mut blocks = Vec::new();
                for (j, part) in content_parts(m.content) {
                    match part {
                        PartOut::Text(text, cache_control) => blocks.push(Block::Text {
                            text,
                            cache_control,
                        }),
                        PartOut::Part(p) if p.kind == "refusal" => {
                            if let Some(text) = p.refusal.filter(|t| !t.is_empty()) {
                                blocks.push(Block::Text {
                                    text,
                                    cache_control: None,
                                });
                            }
                        }
                        PartOut::Part(p) => return Err(not_allowed(i, j, &p.kind, "assistant")),
                    }
                }
                for (j, call) in m.tool_calls.into_iter().flatten().enumerate() {
                    blocks.push(tool_use(i, j, call)?);
                }
                self.push("assistant", blocks);
                Ok(())
            }
            "tool" => {
                let id = m
                    .tool_call_id
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| required_at(format!("messages[{i}].tool_call_id")))?;
                let mut content = Vec::new();
                for (j, part) in content_parts(m.content) {
                    match part {
                        PartOut::Text(text, cache_control) => content.push(Block::Text {
                            text,
                            cache_control,
                        }),
                        PartOut::Part(p) if p.kind == "image_url" => {
                            content.push(self.media(i, j, p, opts)?)
                        }
                        PartOut::Part(p) => return Err(not_allowed(i, j, &p.kind, "tool")),
                    }
                }
                let block = Block::ToolResult {
                    tool_use_id: tool_id(&id),
                    content,
                };
                self.push("user", vec![block]);
                Ok(())
            }
            "function" => Err(OpenAiError::unsupported_value(
                format!("messages[{i}].role"),
                "The deprecated function role is not supported; use tool messages",
            )),
            other => Err(OpenAiError::invalid_request(
                Some(format!("messages[{i}].role")),
                format!("Unknown message role {other:?}"),
            )),
        }
    }

    /// Adds a turn, merging it into the previous one of the same role.
    fn push(&mut self, role: &'static str, blocks: Vec<Block<'a>>) {
        if blocks.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => self.turns.push(Turn {
                role,
                content: blocks,
            }),
        }
    }

    /// Within each user turn, tool results first (stable), as Anthropic requires.
    pub(super) fn tool_results_first(&mut self) {
        for turn in &mut self.turns {
            if turn.role == "user" {
                turn.content
                    .sort_by_key(|b| !matches!(b, Block::ToolResult { .. }));
            }
        }
    }

    /// An image or file part of a user (or tool) message.
    fn media(
        &mut self,
        i: usize,
        j: usize,
        part: Part<'a>,
        opts: &TranslateOptions,
    ) -> Result<Block<'a>, OpenAiError> {
        match &*part.kind {
            "image_url" => {
                let param = || format!("messages[{i}].content[{j}].image_url");
                let url = part
                    .image_url
                    .map(|u| u.url)
                    .ok_or_else(|| required_at(param()))?;
                if url.starts_with("data:") {
                    let (media_type, data) = data_url(url).ok_or_else(|| {
                        OpenAiError::invalid_request(
                            Some(param()),
                            "Image data URLs must be base64: data:image/<type>;base64,<data>",
                        )
                    })?;
                    let media_type = image_media_type(&media_type).ok_or_else(|| {
                        OpenAiError::invalid_request(
                            Some(param()),
                            "Images must be JPEG, PNG, GIF or WebP",
                        )
                    })?;
                    return Ok(Block::Image {
                        source: Source::Base64 {
                            media_type: Cow::Borrowed(media_type),
                            data,
                        },
                    });
                }
                let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                    return Err(OpenAiError::invalid_request(
                        Some(param()),
                        "Image URLs must be base64 data URLs or http(s) URLs",
                    ));
                }
                if !opts.fetch_images {
                    return Err(OpenAiError::invalid_request(
                        Some(param()),
                        "This relay does not fetch image URLs; send the image inline as a base64 data URL (data:image/png;base64,...)",
                    ));
                }
                self.remote_images.push(url.clone().into_owned());
                Ok(Block::Image {
                    source: Source::Url { url },
                })
            }
            "file" => {
                let param = || format!("messages[{i}].content[{j}].file");
                let file = part.file.ok_or_else(|| required_at(param()))?;
                let Some(file_data) = file.file_data else {
                    return Err(OpenAiError::unsupported_value(
                        param(),
                        "Uploaded file ids are not available here; send the file inline as file_data",
                    ));
                };
                match data_url(file_data) {
                    Some((media_type, data))
                        if media_type.eq_ignore_ascii_case("application/pdf") =>
                    {
                        Ok(Block::Document {
                            source: Source::Base64 {
                                media_type: Cow::Borrowed("application/pdf"),
                                data,
                            },
                        })
                    }
                    _ => Err(OpenAiError::unsupported_value(
                        param(),
                        "Only PDF files are supported, as data:application/pdf;base64,<data>",
                    )),
                }
            }
            "input_audio" => Err(OpenAiError::unsupported_value(
                format!("messages[{i}].content[{j}]"),
                "Audio input is not supported by Claude",
            )),
            other => Err(OpenAiError::invalid_request(
                Some(format!("messages[{i}].content[{j}].type")),
                format!("Unknown content part type {other:?}"),
            )),
        }
    }
}

pub(super) fn required_at(param: String) -> OpenAiError {
    let message = format!("{param}: Field required");
    OpenAiError::invalid_request(Some(param), message)
}

fn not_allowed(i: usize, j: usize, kind: &str, role: &str) -> OpenAiError {
    OpenAiError::invalid_request(
        Some(format!("messages[{i}].content[{j}].type")),
        format!("Content parts of type {kind:?} are not allowed in {role} messages"),
    )
}

/// A content part after the common text handling.
enum PartOut<'a> {
    Text(Cow<'a, str>, Option<Value>),
    Part(Part<'a>),
}

/// A message's content as indexed parts; empty text is dropped (Anthropic
/// refuses empty text blocks).
fn content_parts(content: Content<'_>) -> impl Iterator<Item = (usize, PartOut<'_>)> {
    let parts: Vec<(usize, PartOut<'_>)> = match content {
        Content::Absent => Vec::new(),
        Content::Text(t) => vec![(0, PartOut::Text(t, None))],
        Content::Parts(parts) => parts
            .into_iter()
            .enumerate()
            .map(|(j, p)| match (&*p.kind, p.text) {
                ("text", Some(text)) => (j, PartOut::Text(text, p.cache_control)),
                ("text", None) => (j, PartOut::Text(Cow::Borrowed(""), None)),
                (_, text) => (j, PartOut::Part(Part { text, ..p })),
            })
            .collect(),
    };
    parts
        .into_iter()
        .filter(|(_, p)| !matches!(p, PartOut::Text(t, _) if t.is_empty()))
}

/// An assistant `tool_calls` entry → a `tool_use` block.
fn tool_use<'a>(i: usize, j: usize, call: ToolCall<'a>) -> Result<Block<'a>, OpenAiError> {
    let param = |f: &str| format!("messages[{i}].tool_calls[{j}]{f}");
    if call.kind.as_deref().is_some_and(|k| k != "function") {
        return Err(OpenAiError::unsupported_value(
            param(".type"),
            "Only function tool calls are supported",
        ));
    }
    let id = call
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| required_at(param(".id")))?;
    let function = call
        .function
        .ok_or_else(|| required_at(param(".function")))?;
    let arguments = function.arguments.unwrap_or_default();
    let input = if arguments.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(&arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(OpenAiError::invalid_request(
                    Some(param(".function.arguments")),
                    "Tool call arguments must be a JSON object",
                ))
            }
        }
    };
    Ok(Block::ToolUse {
        id: tool_id(&id),
        name: function.name,
        input,
    })
}

/// A tool call id as Anthropic accepts it (`[A-Za-z0-9_-]+`): ids from other
/// providers may carry other characters; the same replacement on the call
/// and on its result keeps them paired.
fn tool_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `data:<type>[;params];base64,<data>` → (type, data). The data is not
/// decoded: upstream checks it, and we avoid copying large payloads.
fn data_url(url: Cow<'_, str>) -> Option<(String, Cow<'_, str>)> {
    let comma = url.find(',')?;
    let header = url.get(5..comma)?;
    let mut params = header.split(';');
    let media_type = params.next()?.trim().to_ascii_lowercase();
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) || comma + 1 >= url.len() {
        return None;
    }
    let data = match url {
        Cow::Borrowed(s) => Cow::Borrowed(&s[comma + 1..]),
        Cow::Owned(mut s) => {
            s.drain(..=comma);
            Cow::Owned(s)
        }
    };
    Some((media_type, data))
}

/// The Anthropic media type for an image type, or `None` if Claude cannot read it.
pub(super) fn image_media_type(content_type: &str) -> Option<&'static str> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    match base.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => Some("image/jpeg"),
        "image/png" => Some("image/png"),
        "image/gif" => Some("image/gif"),
        "image/webp" => Some("image/webp"),
        _ => None,
    }
}
