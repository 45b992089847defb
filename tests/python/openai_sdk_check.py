"""Drives the relay's OpenAI-compatible endpoint with the official `openai`
Python SDK: plain, streaming with usage, and a tool-calling round trip.

Run by tests/openai_compat.rs with OPENAI_BASE_URL and OPENAI_API_KEY set;
exits non-zero (with the reason) on the first mismatch.
"""
import json
import sys

import openai

client = openai.OpenAI(max_retries=0)
MODEL = "claude-sonnet-4-5"

plain = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}],
    max_completion_tokens=64,
)
assert plain.object == "chat.completion", plain
assert plain.choices[0].message.role == "assistant"
assert plain.choices[0].message.content, plain
assert plain.choices[0].finish_reason == "stop", plain.choices[0].finish_reason
assert plain.usage.prompt_tokens > 0 and plain.usage.completion_tokens > 0, plain.usage
assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens

chunks = list(
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=64,
    )
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text, "no streamed text"
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
assert finishes == ["stop"], finishes
usage = [c.usage for c in chunks if c.usage]
assert len(usage) == 1 and usage[0].completion_tokens > 0, usage

tools = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
first = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, tool_choice="required", max_tokens=128)
choice = first.choices[0]
assert choice.finish_reason == "tool_calls", choice
call = choice.message.tool_calls[0]
assert call.function.name == "get_weather", call
json.loads(call.function.arguments)
messages.append(choice.message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"})
second = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, max_tokens=128)
assert second.choices[0].message.content, second
assert second.choices[0].finish_reason == "stop", second.choices[0].finish_reason

with client.chat.completions.stream(model=MODEL, messages=[{"role": "user", "content": "weather in Rome"}], tools=tools, tool_choice="required", max_tokens=128) as s:
    final = s.get_final_completion()
assert final.choices[0].message.tool_calls[0].function.name == "get_weather", final

models = client.models.list()
assert any(m.id.startswith("claude") for m in models.data), models

bad = openai.OpenAI(api_key="cr_wrong", max_retries=0)
try:
    bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    sys.exit("a wrong key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401

print("openai SDK", openai.__version__, "OK")
