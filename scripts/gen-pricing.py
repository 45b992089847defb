#!/usr/bin/env python3
"""Generate src/usage/pricing.json, the relay's embedded Claude price table.

Source: LiteLLM's model_prices_and_context_window.json (MIT, Copyright (c) 2023
Berri AI; see /work/shared/data/NOTICE). Prices there are USD per token as
floats; here they become exact integers in pico-USD per token (3e-06 -> 3000000),
converted through the decimal text of each float, never through float maths.

Which entries:
  * Anthropic's own models: bare ids (`claude-...`, no provider prefix) with
    `litellm_provider == "anthropic"` and `mode == "chat"`. These are listed
    by `/v1/models` unless their `deprecation_date` is before --today.
  * Older models LiteLLM only keeps as Bedrock ids (e.g. Opus 4.1, Sonnet 4,
    3.x): taken from the base-region entry `anthropic.<id>-<YYYYMMDD>-vN:0`
    (region-prefixed ids like `us.`/`eu.` carry a regional premium and are
    skipped), whose prices are Anthropic's list prices. They are priced, under
    the dated and the undated bare id, but not listed. Only the newest date of
    each bare id is used.
  * Aliases: bare `*-latest` entries with `alias_of` pointing at a kept id.

Fields per model: input, output, cache write 5m (`cache_creation_input_token_cost`,
else 1.25x input), cache write 1h (`cache_creation_input_token_cost_above_1hr`,
else 2x input, as Anthropic prices it), cache read (`cache_read_input_token_cost`,
else 0.1x input), max input/output tokens, a display name ("Claude Sonnet 4.5"),
and created_at: the date in the dated id, else the date of the dated twin
(claude-opus-4-6 -> claude-opus-4-6-20260205), else CREATED_AT_FALLBACK.
Long-context (`*_above_200k_tokens`), batch and regional prices are not carried.

Listed models are ordered newest first: created_at, then version numbers, then id.
A dated model is listed under its dated id only, as Anthropic's /v1/models does.

Usage: scripts/gen-pricing.py [--source PATH] [--out PATH] [--today YYYY-MM-DD]
"""

import argparse
import datetime
import json
import re
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `shared/` sits beside the main checkout (worktrees are one level deeper).
_SOURCE_NAME = Path("shared") / "data" / "model_prices_and_context_window.json"
DEFAULT_SOURCE = next(
    (p for p in (ROOT.parent / _SOURCE_NAME, ROOT.parent.parent / _SOURCE_NAME, Path("/work") / _SOURCE_NAME)
     if p.exists()),
    Path("/work") / _SOURCE_NAME,
)
DEFAULT_OUT = ROOT / "src" / "usage" / "pricing.json"

NOTICE = (
    "Prices derived from LiteLLM's model_prices_and_context_window.json "
    "(litellm 1.110.2, MIT License, Copyright (c) 2023 Berri AI) by scripts/gen-pricing.py"
)

# Undated ids (Anthropic stopped dating ids after Opus 4.7) have no release date
# in the source. They get this fixed date: the newest dated id of the source
# (claude-opus-4-7-20260416), since every undated id is at least that recent in
# practice; the version tie-break then orders them among themselves.
CREATED_AT_FALLBACK = "2026-04-16T00:00:00Z"

DATED = re.compile(r"^(claude-[a-z0-9-]+?)-(\d{8})$")
BEDROCK_BASE = re.compile(r"^anthropic\.(claude-[a-z0-9-]+?)-(\d{8})-v\d+:\d+$")
PICO = Decimal(10) ** 12


def pico(usd_per_token) -> int:
    """Exact pico-USD of a LiteLLM per-token float, via its shortest decimal text."""
    value = Decimal(repr(float(usd_per_token))) * PICO
    if value != value.to_integral_value():
        raise SystemExit(f"price {usd_per_token!r} is not a whole number of pico-USD")
    return int(value)


def prices(entry: dict) -> dict:
    inp = pico(entry["input_cost_per_token"])
    out = pico(entry["output_cost_per_token"])

    def opt(field, default):
        v = entry.get(field)
        return default if v is None else pico(v)

    return {
        "input": inp,
        "output": out,
        "cache_write_5m": opt("cache_creation_input_token_cost", inp * 5 // 4),
        "cache_write_1h": opt("cache_creation_input_token_cost_above_1hr", inp * 2),
        "cache_read": opt("cache_read_input_token_cost", inp // 10),
    }


def date_of(model_id: str):
    m = DATED.match(model_id)
    if not m:
        return None, model_id
    d = m.group(2)
    try:
        datetime.date(int(d[:4]), int(d[4:6]), int(d[6:]))
    except ValueError:
        return None, model_id
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T00:00:00Z", m.group(1)


def display_name(bare: str) -> str:
    """claude-sonnet-4-5 -> Claude Sonnet 4.5; claude-3-5-haiku -> Claude Haiku 3.5."""
    parts = bare.split("-")[1:]
    words = [p for p in parts if not p.isdigit()]
    nums = [p for p in parts if p.isdigit()]
    name = " ".join(w.capitalize() for w in words)
    return "Claude " + (f"{name} {'.'.join(nums)}" if nums else name)


def version(bare: str):
    return tuple(int(p) for p in bare.split("-") if p.isdigit())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--today", default=datetime.date.today().isoformat(),
                    help="models deprecated before this date are priced but not listed")
    args = ap.parse_args()
    src = json.loads(args.source.read_text())

    models = {}  # id -> record
    for key, e in src.items():
        if (e.get("litellm_provider") == "anthropic" and e.get("mode") == "chat"
                and re.fullmatch(r"claude-[a-z0-9-]+", key) and "input_cost_per_token" in e):
            dep = e.get("deprecation_date")
            models[key] = {
                "id": key,
                **prices(e),
                "max_input_tokens": e.get("max_input_tokens"),
                "max_output_tokens": e.get("max_output_tokens"),
                "listed": not (dep and dep < args.today),
            }

    # Older models kept by LiteLLM only as Bedrock base-region ids.
    legacy = {}  # bare -> (date, entry)
    for key, e in src.items():
        m = BEDROCK_BASE.match(key)
        if not m or "input_cost_per_token" not in e or e.get("mode") != "chat":
            continue
        bare, d = m.group(1), m.group(2)
        if bare in legacy and legacy[bare][0] >= d:
            continue
        legacy[bare] = (d, e)
    for bare, (d, e) in legacy.items():
        if bare in models or any(date_of(k)[1] == bare for k in models):
            continue
        for mid in (f"{bare}-{d}", bare):
            models[mid] = {
                "id": mid,
                **prices(e),
                "max_input_tokens": e.get("max_input_tokens"),
                "max_output_tokens": e.get("max_output_tokens"),
                "listed": False,
            }

    dated_twin = {}
    for mid in models:
        created, bare = date_of(mid)
        if created:
            dated_twin[bare] = max(dated_twin.get(bare, ""), created)
    for mid, rec in models.items():
        created, bare = date_of(mid)
        rec["display_name"] = display_name(bare)
        rec["created_at"] = created or dated_twin.get(bare) or CREATED_AT_FALLBACK
        # Listed once, under the dated id when there is one.
        if not created and bare in dated_twin:
            rec["listed"] = False

    aliases = {}
    for key, e in src.items():
        target = e.get("alias_of")
        if target in models and re.fullmatch(r"claude-[a-z0-9-]+", key):
            aliases[key] = target

    order = sorted(models.values(),
                   key=lambda r: (r["created_at"], version(date_of(r["id"])[1]), r["id"]),
                   reverse=True)
    order.sort(key=lambda r: not r["listed"])  # stable: listed first, newest first

    keys = ["id", "display_name", "created_at", "listed", "max_input_tokens", "max_output_tokens",
            "input", "output", "cache_write_5m", "cache_write_1h", "cache_read"]
    lines = [json.dumps({k: r[k] for k in keys}, separators=(",", ":")) for r in order]
    out = "{\n"
    out += f'"notice":{json.dumps(NOTICE)},\n'
    out += '"unit":"pico-USD per token",\n'
    out += f'"listed_as_of":{json.dumps(args.today)},\n'
    out += f'"created_at_fallback":{json.dumps(CREATED_AT_FALLBACK)},\n'
    out += '"models":[\n' + ",\n".join(lines) + "\n],\n"
    out += '"aliases":' + json.dumps(dict(sorted(aliases.items())), separators=(",", ":")) + "\n}\n"
    args.out.write_text(out)
    print(f"wrote {args.out}: {len(order)} models ({sum(r['listed'] for r in order)} listed), "
          f"{len(aliases)} aliases")


if __name__ == "__main__":
    main()
