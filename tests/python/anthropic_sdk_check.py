"""Drives the relay with the official `anthropic` Python SDK.

Run by tests/python_sdk.rs with ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY set;
exits non-zero (with the reason) on the first mismatch.
"""
import os
import sys

import anthropic

client = anthropic.Anthropic(max_retries=0)
MODEL = "claude-sonnet-4-5"

msg = client.messages.create(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Say hi"}])
assert msg.type == "message", msg
assert msg.content and msg.content[0].type == "text" and msg.content[0].text, msg
assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0, msg.usage

with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Stream please"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text, "empty streamed text"
assert final.usage.output_tokens > 0, final.usage
assert final.content[0].text == text

raw = client.messages.create(model=MODEL, max_tokens=32, stream=True, messages=[{"role": "user", "content": "raw stream"}])
kinds = [event.type for event in raw]
assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds

count = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "count these tokens"}])
assert count.input_tokens > 0, count

page = client.models.list(limit=2)
ids = [m.id for m in page.data]
assert len(ids) == 2, ids
all_ids = [m.id for m in client.models.list(limit=2)]  # auto-pagination follows after_id
assert len(all_ids) >= 2 and all_ids[:2] == ids, all_ids
one = client.models.retrieve(ids[0])
assert one.id == ids[0]

bad = anthropic.Anthropic(api_key="cr_wrong", max_retries=0)
try:
    bad.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    sys.exit("a wrong key was accepted")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401

print("anthropic SDK", anthropic.__version__, "OK:", len(all_ids), "models")
