//! Unit tests of the request translation: the captured OpenAI SDK bodies and
//! every mapping rule of the request module.

use super::*;
use serde_json::{json, Value};

/// The three bodies the `openai` Python SDK 3.57 sent (captures/python_openai.jsonl).
const CAPTURED_PLAIN: &str = r#"{"model":"claude-sonnet-4-6","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hi"}],"max_tokens":64}"#;
const CAPTURED_STREAM: &str = r#"{"model":"claude-sonnet-4-6","stream":true,"messages":[{"role":"user","content":"Say hi (stream)"}],"max_tokens":64,"stream_options":{"include_usage":true}}"#;
const CAPTURED_TOOLS: &str = r#"{"model":"claude-sonnet-4-6","messages":[{"role":"user","content":"Weather in Paris?"}],"max_completion_tokens":64,"tool_choice":"auto","tools":[{"type":"function","function":{"name":"get_weather","description":"Get weather","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}]}"#;

fn translate(body: Value) -> Translated {
    to_anthropic(body.to_string().as_bytes(), &TranslateOptions::default()).unwrap()
}

fn anthropic(body: Value) -> Value {
    serde_json::from_slice(&translate(body).body).unwrap()
}

fn error(body: Value) -> OpenAiError {
    to_anthropic(body.to_string().as_bytes(), &TranslateOptions::default()).unwrap_err()
}

fn with_messages(messages: Value) -> Value {
    json!({"model": "claude-sonnet-4-6", "messages": messages})
}

#[test]
fn captured_plain() {
    let t = to_anthropic(CAPTURED_PLAIN.as_bytes(), &TranslateOptions::default()).unwrap();
    assert_eq!(
        (t.model.as_str(), t.stream, t.include_usage),
        ("claude-sonnet-4-6", false, false)
    );
    assert!(t.remote_images.is_empty());
    assert_eq!(t.reply.model, "claude-sonnet-4-6");
    assert_eq!(t.reply.json_tool, None);
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "You are terse."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
        })
    );
}

#[test]
fn captured_stream_with_usage() {
    let t = to_anthropic(CAPTURED_STREAM.as_bytes(), &TranslateOptions::default()).unwrap();
    assert!(t.stream && t.include_usage && t.reply.include_usage);
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi (stream)"}]}],
            "stream": true
        })
    );
}

#[test]
fn captured_tools() {
    let t = to_anthropic(CAPTURED_TOOLS.as_bytes(), &TranslateOptions::default()).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json!({
            "model": "claude-sonnet-4-6",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}],
            "tools": [{
                "name": "get_weather",
                "description": "Get weather",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
            }],
            "tool_choice": {"type": "auto"}
        })
    );
}

#[test]
fn system_and_developer_messages_all_kept_in_order() {
    let v = anthropic(with_messages(json!([
        {"role": "system", "content": "one"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}]},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "four"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": ""}
    ])));
    let texts: Vec<&str> = v["system"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three", "four"]);
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn consecutive_same_role_turns_merge() {
    let v = anthropic(with_messages(json!([
        {"role": "user", "content": "a"},
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "b"}]},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": null, "tool_calls": []},
        {"role": "user", "content": "e"}
    ])));
    assert_eq!(
        v["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
            {"role": "user", "content": [{"type": "text", "text": "e"}]}
        ])
    );
}

#[test]
fn images_from_data_urls() {
    let v = anthropic(with_messages(json!([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}}
    ]}])));
    assert_eq!(
        v["messages"][0]["content"],
        json!([
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
        ])
    );
    // Escaped slashes (PHP clients) still work: the data is unescaped.
    let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image\/gif;base64,R0lG\/w=="}}]}]}"#;
    let t = to_anthropic(body.as_bytes(), &TranslateOptions::default()).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["messages"][0]["content"][0]["source"]["data"], "R0lG/w==");
    assert_eq!(
        v["messages"][0]["content"][0]["source"]["media_type"],
        "image/gif"
    );
}

#[test]
fn bad_images_are_clear_400s() {
    for (url, needle) in [
        ("data:image/bmp;base64,Qk0=", "JPEG, PNG, GIF or WebP"),
        ("data:image/png,rawbytes", "base64"),
        ("data:image/png;base64,", "base64"),
        ("ftp://example.com/a.png", "http(s)"),
        ("https://example.com/a.png", "does not fetch image URLs"),
    ] {
        let e = error(with_messages(json!([{"role": "user", "content": [
            {"type": "text", "text": "x"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}])));
        assert_eq!(e.status(), 400, "{url}");
        assert!(e.message().contains(needle), "{url}: {}", e.message());
        assert_eq!(e.param(), Some("messages[0].content[1].image_url"));
    }
}

#[test]
fn remote_images_listed_and_attached_when_fetching_is_on() {
    let opts = TranslateOptions {
        fetch_images: true,
        ..Default::default()
    };
    let body = with_messages(json!([
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "text", "text": "and"},
            {"type": "image_url", "image_url": {"url": "http://example.com/b"}}
        ]},
        {"role": "assistant", "content": "ok", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/c.webp"}}]}
    ]));
    let mut t = to_anthropic(body.to_string().as_bytes(), &opts).unwrap();
    assert_eq!(
        t.remote_images,
        [
            "https://example.com/a.png",
            "http://example.com/b",
            "https://example.com/c.webp"
        ]
    );
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v["messages"][0]["content"][0]["source"],
        json!({"type": "url", "url": "https://example.com/a.png"})
    );
    let img = |t: &str, d: &'static [u8]| FetchedImage {
        media_type: t.into(),
        data: Bytes::from_static(d),
    };
    // Wrong count or a type Claude cannot read: 400.
    assert!(t.clone().attach_images(&[img("image/png", b"x")]).is_err());
    let e = t
        .clone()
        .attach_images(&[
            img("image/png", b"a"),
            img("text/html", b"b"),
            img("image/webp", b"c"),
        ])
        .unwrap_err();
    assert!(e.message().contains("http://example.com/b"));

    t.attach_images(&[
        img("image/png", b"a"),
        img("image/jpeg; charset=x", b"b"),
        img("IMAGE/WEBP", b"c"),
    ])
    .unwrap();
    assert!(t.remote_images.is_empty());
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    let c = &v["messages"][0]["content"];
    assert_eq!(
        c[0]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "YQ=="})
    );
    assert_eq!(
        c[2]["source"],
        json!({"type": "base64", "media_type": "image/jpeg", "data": "Yg=="})
    );
    assert_eq!(
        v["messages"][2]["content"][0]["content"][0]["source"],
        json!({"type": "base64", "media_type": "image/webp", "data": "Yw=="})
    );
}

#[test]
fn pdf_files_and_unsupported_parts() {
    let v = anthropic(with_messages(json!([{"role": "user", "content": [
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}},
        {"type": "text", "text": "summarise"}
    ]}])));
    assert_eq!(
        v["messages"][0]["content"][0],
        json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}})
    );
    for part in [
        json!({"type": "file", "file": {"file_id": "file-abc"}}),
        json!({"type": "file", "file": {"file_data": "data:text/plain;base64,aGk="}}),
        json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
        json!({"type": "video"}),
    ] {
        let e = error(with_messages(
            json!([{"role": "user", "content": [part.clone()]}]),
        ));
        assert_eq!(e.status(), 400, "{part}");
        assert!(
            e.param().unwrap().starts_with("messages[0].content[0]"),
            "{part}"
        );
    }
    // Images are user (and tool) content only.
    let e = error(with_messages(json!([{"role": "system", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    ]}])));
    assert_eq!(e.param(), Some("messages[0].content[0].type"));
}

#[test]
fn tools_choice_and_parallel() {
    let tools = json!([
        {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"x": {"type": "number"}}}, "strict": true}},
        {"type": "function", "function": {"name": "b", "description": ""}}
    ]);
    let with = |choice: Value, parallel: Value| {
        let mut body = with_messages(json!([{"role": "user", "content": "go"}]));
        body["tools"] = tools.clone();
        body["tool_choice"] = choice;
        body["parallel_tool_calls"] = parallel;
        body
    };
    let v = anthropic(with(Value::Null, Value::Null));
    assert_eq!(
        v["tools"],
        json!([
            {"name": "a", "input_schema": {"type": "object", "properties": {"x": {"type": "number"}}}},
            {"name": "b", "input_schema": {"type": "object", "properties": {}}}
        ])
    );
    assert!(v.get("tool_choice").is_none());
    for (choice, parallel, want) in [
        (json!("auto"), Value::Null, json!({"type": "auto"})),
        (json!("none"), json!(false), json!({"type": "none"})),
        (json!("required"), Value::Null, json!({"type": "any"})),
        (
            json!("required"),
            json!(false),
            json!({"type": "any", "disable_parallel_tool_use": true}),
        ),
        (
            Value::Null,
            json!(false),
            json!({"type": "auto", "disable_parallel_tool_use": true}),
        ),
        (
            json!({"type": "function", "function": {"name": "b"}}),
            json!(true),
            json!({"type": "tool", "name": "b"}),
        ),
    ] {
        assert_eq!(
            anthropic(with(choice.clone(), parallel))["tool_choice"],
            want,
            "{choice}"
        );
    }
    // allowed_tools filters the list.
    let v = anthropic(with(
        json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "b"}}]}}),
        Value::Null,
    ));
    assert_eq!(v["tools"].as_array().unwrap().len(), 1);
    assert_eq!(v["tools"][0]["name"], "b");
    assert_eq!(v["tool_choice"], json!({"type": "any"}));

    for bad in [
        json!("sometimes"),
        json!({"type": "function", "function": {"name": "zzz"}}),
        json!({"type": "function"}),
        json!({"type": "custom", "custom": {"name": "a"}}),
    ] {
        assert_eq!(
            error(with(bad.clone(), Value::Null)).param(),
            Some("tool_choice"),
            "{bad}"
        );
    }
    // Without tools: auto/none are dropped, a demanded call is a 400.
    let mut body = with_messages(json!([{"role": "user", "content": "go"}]));
    body["tool_choice"] = json!("none");
    assert!(anthropic(body.clone()).get("tool_choice").is_none());
    body["tool_choice"] = json!("required");
    assert_eq!(error(body).status(), 400);
    // Custom tools and bad parameters.
    let mut body = with_messages(json!([{"role": "user", "content": "go"}]));
    body["tools"] = json!([{"type": "custom", "custom": {"name": "x"}}]);
    assert_eq!(error(body.clone()).param(), Some("tools[0].type"));
    body["tools"] = json!([{"type": "function", "function": {"name": "x", "parameters": "nope"}}]);
    assert_eq!(error(body).param(), Some("tools[0].function.parameters"));
}

#[test]
fn tool_call_round_trip_history() {
    let v = anthropic(with_messages(json!([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
            {"id": "call.x:9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Rome\"}"}},
            {"id": "toolu_01C", "type": "function", "function": {"name": "now", "arguments": ""}}
        ]},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "tool", "tool_call_id": "call.x:9", "content": [{"type": "text", "text": "21C"}]},
        {"role": "tool", "tool_call_id": "toolu_01C", "content": ""},
        {"role": "user", "content": "Thanks"}
    ])));
    assert_eq!(
        v["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_x_9", "name": "get_weather", "input": {"location": "Rome"}},
                {"type": "tool_use", "id": "toolu_01C", "name": "now", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": [{"type": "text", "text": "18C"}]},
                {"type": "tool_result", "tool_use_id": "call_x_9", "content": [{"type": "text", "text": "21C"}]},
                {"type": "tool_result", "tool_use_id": "toolu_01C"},
                {"type": "text", "text": "Thanks"}
            ]}
        ])
    );
}

#[test]
fn tool_results_move_before_text_in_a_user_turn() {
    let v = anthropic(with_messages(json!([
        {"role": "assistant", "content": "x", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "before"},
        {"role": "tool", "tool_call_id": "t1", "content": "r"}
    ])));
    let kinds: Vec<&str> = v["messages"][1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["tool_result", "text"]);
}

#[test]
fn bad_tool_history() {
    for (messages, param) in [
        (
            json!([{"role": "tool", "content": "r"}]),
            "messages[0].tool_call_id",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}]),
            "messages[0].tool_calls[0].id",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]),
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role": "function", "name": "f", "content": "x"}]),
            "messages[0].role",
        ),
        (
            json!([{"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}]),
            "messages[0].function_call",
        ),
        (
            json!([{"role": "wizard", "content": "x"}]),
            "messages[0].role",
        ),
    ] {
        let e = error(with_messages(messages.clone()));
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some(param)),
            "{messages}"
        );
    }
}

#[test]
fn max_tokens_rules() {
    let base = with_messages(json!([{"role": "user", "content": "x"}]));
    assert_eq!(anthropic(base.clone())["max_tokens"], DEFAULT_MAX_TOKENS);
    let opts = TranslateOptions {
        default_max_tokens: 1000,
        ..Default::default()
    };
    let t = to_anthropic(base.to_string().as_bytes(), &opts).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&t.body).unwrap()["max_tokens"],
        1000
    );
    let mut b = base.clone();
    b["max_tokens"] = json!(100);
    b["max_completion_tokens"] = json!(200);
    assert_eq!(
        anthropic(b.clone())["max_tokens"],
        200,
        "max_completion_tokens wins"
    );
    b["max_completion_tokens"] = Value::Null;
    assert_eq!(anthropic(b.clone())["max_tokens"], 100);
    b["max_tokens"] = json!(0);
    assert_eq!(error(b.clone()).param(), Some("max_tokens"));
    b["max_tokens"] = json!(-5);
    assert_eq!(error(b).status(), 400);
}

#[test]
fn sampling_parameters() {
    let with = |fields: Value| {
        let mut b = with_messages(json!([{"role": "user", "content": "x"}]));
        for (k, v) in fields.as_object().unwrap() {
            b[k] = v.clone();
        }
        anthropic(b)
    };
    let v = with(json!({"temperature": 0.7, "top_p": 0.9}));
    assert_eq!(
        (v["temperature"].as_f64(), v["top_p"].as_f64()),
        (Some(0.7), Some(0.9))
    );
    let v = with(json!({"temperature": 1.8, "top_p": 1}));
    assert_eq!(v["temperature"], 1.0, "clamped to Claude's maximum");
    assert!(
        v.get("top_p").is_none(),
        "top_p 1 is the no-op default and is dropped"
    );
    let v = with(json!({"temperature": 0, "stop": "END"}));
    assert_eq!(v["temperature"], 0.0);
    assert_eq!(v["stop_sequences"], json!(["END"]));
    let v = with(json!({"stop": ["a", "", "\n\n"]}));
    assert_eq!(v["stop_sequences"], json!(["a", "\n\n"]));
    let v = with(json!({"stop": null, "temperature": null}));
    assert!(v.get("stop_sequences").is_none() && v.get("temperature").is_none());

    for (field, value) in [
        ("temperature", json!(2.5)),
        ("temperature", json!(-0.1)),
        ("top_p", json!(1.5)),
    ] {
        let mut b = with_messages(json!([{"role": "user", "content": "x"}]));
        b[field] = value;
        assert_eq!(error(b).param(), Some(field));
    }
}

#[test]
fn user_becomes_metadata() {
    let mut b = with_messages(json!([{"role": "user", "content": "x"}]));
    b["user"] = json!("user-42");
    assert_eq!(
        anthropic(b.clone())["metadata"],
        json!({"user_id": "user-42"})
    );
    b["user"] = Value::Null;
    b["safety_identifier"] = json!("hash-1");
    assert_eq!(anthropic(b)["metadata"], json!({"user_id": "hash-1"}));
}

#[test]
fn response_format_json_object_adds_an_instruction() {
    let mut b = with_messages(
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}]),
    );
    b["response_format"] = json!({"type": "json_object"});
    let t = translate(b);
    assert_eq!(t.reply.json_tool, None);
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v["system"][0]["text"], "Be brief.",
        "the client's system prompt stays first"
    );
    assert!(v["system"][1]["text"]
        .as_str()
        .unwrap()
        .contains("JSON object"));
}

#[test]
fn response_format_json_schema_forces_a_tool() {
    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false});
    let mut b = with_messages(json!([{"role": "user", "content": "x"}]));
    b["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": schema}});
    let t = translate(b.clone());
    assert_eq!(t.reply.json_tool.as_deref(), Some("person"));
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["tools"][0]["name"], "person");
    assert_eq!(v["tools"][0]["input_schema"], schema);
    assert_eq!(
        v["tool_choice"],
        json!({"type": "tool", "name": "person", "disable_parallel_tool_use": true})
    );
    assert!(v.get("system").is_none());

    // An unusable name falls back to a fixed one.
    b["response_format"]["json_schema"]["name"] = json!("my schema!");
    assert_eq!(
        translate(b.clone()).reply.json_tool.as_deref(),
        Some("json_response")
    );

    // With client tools the schema goes into the system prompt instead.
    b["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let t = translate(b.clone());
    assert_eq!(t.reply.json_tool, None);
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["tools"].as_array().unwrap().len(), 1);
    assert!(v["system"][0]["text"]
        .as_str()
        .unwrap()
        .contains("\"additionalProperties\":false"));

    // A non-object root schema cannot be a tool input.
    let mut b = with_messages(json!([{"role": "user", "content": "x"}]));
    b["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "list", "schema": {"type": "array"}}});
    assert_eq!(translate(b.clone()).reply.json_tool, None);
    b["response_format"] = json!({"type": "xml"});
    assert_eq!(error(b.clone()).param(), Some("response_format"));
    b["response_format"] = json!({"type": "text"});
    assert!(anthropic(b).get("system").is_none());
}

#[test]
fn meaning_changing_fields_are_400() {
    for (field, value) in [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("audio", json!({"voice": "alloy", "format": "mp3"})),
        ("modalities", json!(["text", "audio"])),
        ("logit_bias", json!({"50256": -100})),
        ("web_search_options", json!({})),
        ("functions", json!([{"name": "f"}])),
        ("function_call", json!("auto")),
    ] {
        let mut b = with_messages(json!([{"role": "user", "content": "x"}]));
        b[field] = value;
        let e = error(b);
        assert_eq!(
            (e.status().as_u16(), e.param()),
            (400, Some(field)),
            "{field}"
        );
        assert!(e.code().is_some(), "{field}");
    }
}

#[test]
fn harmless_fields_are_ignored() {
    let mut b = with_messages(json!([{"role": "user", "content": "x", "name": "alice"}]));
    for (field, value) in [
        ("n", json!(1)),
        ("logprobs", json!(false)),
        ("top_logprobs", json!(0)),
        ("modalities", json!(["text"])),
        ("logit_bias", json!({})),
        ("frequency_penalty", json!(0.5)),
        ("presence_penalty", json!(0.1)),
        ("seed", json!(7)),
        ("service_tier", json!("auto")),
        ("store", json!(false)),
        ("metadata", json!({"k": "v"})),
        ("reasoning_effort", json!("low")),
        ("verbosity", json!("low")),
        ("prediction", json!({"type": "content", "content": "x"})),
        ("prompt_cache_key", json!("k")),
        ("something_new", json!({"a": 1})),
        ("audio", Value::Null),
    ] {
        b[field] = value;
    }
    let v = anthropic(b);
    assert_eq!(
        v,
        json!({"model": "claude-sonnet-4-6", "max_tokens": DEFAULT_MAX_TOKENS,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})
    );
}

#[test]
fn malformed_bodies() {
    for (body, param) in [
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            Some("model"),
        ),
        (
            json!({"model": "", "messages": [{"role": "user", "content": "x"}]}),
            Some("model"),
        ),
        (json!({"model": "m"}), Some("messages")),
        (json!({"model": "m", "messages": []}), Some("messages")),
        (
            json!({"model": "m", "messages": [{"role": "system", "content": "only system"}]}),
            Some("messages"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": 5}]}),
            None,
        ),
        (
            json!({"model": "m", "messages": [{"content": "no role"}]}),
            None,
        ),
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            None,
        ),
    ] {
        let e = error(body.clone());
        assert_eq!((e.status().as_u16(), e.param()), (400, param), "{body}");
    }
    for body in [&b"not json"[..], b"[]", b""] {
        assert_eq!(
            to_anthropic(body, &TranslateOptions::default())
                .unwrap_err()
                .status(),
            400
        );
    }
}

#[test]
fn cache_control_and_refusal_parts_pass() {
    let v = anthropic(with_messages(json!([
        {"role": "system", "content": [{"type": "text", "text": "big prompt", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]}
    ])));
    assert_eq!(
        v["system"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(
        v["messages"][1]["content"][0],
        json!({"type": "text", "text": "I can't."})
    );
}

#[test]
fn model_passes_through_and_strings_borrowed_or_escaped() {
    let v = anthropic(
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "quote \" and \\ and ☀ \u{1F600}"}]}),
    );
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(
        v["messages"][0]["content"][0]["text"],
        "quote \" and \\ and ☀ \u{1F600}"
    );
}
