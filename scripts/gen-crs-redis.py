#!/usr/bin/env python3
"""Generates a claude-relay-service-shaped Redis data set for benchmarking
`claude-relay import-redis` (scripts/bench-import-redis.sh drives it): N API
keys (CRS hash fields, `apikey:idx:all`, `apikey:hash_map`, key hashes
sha256(raw + ENCRYPTION_KEY)) with usage for two models at every level CRS
keeps per key x model (alltime, monthly, daily, hourly) plus the per-key
aggregates and cost counters CRS writes beside them (which the importer must
scan past). Output is Redis protocol for `redis-cli --pipe`.

Dates are relative to now in CRS's UTC+8 (its default TIMEZONE_OFFSET), so
the data stays plausible whenever the benchmark runs: one hour two hours ago,
today's and a day six days ago, their months, and an all-time total larger
than the months (older usage). Counters are consistent across levels as CRS
would leave them.

    python3 scripts/gen-crs-redis.py 100000 | redis-cli -p 6390 --pipe
"""

import datetime as dt
import hashlib
import os
import sys
import uuid

SECRET = "bench-encryption-key"
MODELS = ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]
# One request's worth of counters for one model.
UNIT = {
    "requests": 3,
    "inputTokens": 300,
    "outputTokens": 90,
    "cacheCreateTokens": 0,
    "cacheReadTokens": 1000,
    "realCostMicro": 2500,
    "ratedCostMicro": 2500,
}


def resp(*args):
    out = [f"*{len(args)}\r\n"]
    for a in args:
        s = str(a)
        out.append(f"${len(s.encode())}\r\n{s}\r\n")
    return "".join(out)


def hset(key, fields):
    flat = []
    for k, v in fields.items():
        flat += [k, v]
    return resp("HSET", key, *flat)


def times(unit, n):
    return {k: v * n for k, v in unit.items()}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    local = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=8)
    hour = local - dt.timedelta(hours=2)
    earlier = local - dt.timedelta(days=6)
    hour_label = hour.strftime("%Y-%m-%d:%H")
    days = [hour.strftime("%Y-%m-%d"), earlier.strftime("%Y-%m-%d")]
    months = {}
    for d in days:
        months[d[:7]] = months.get(d[:7], 0) + 1
    # Keys created one after another over the 50 days up to 10 days ago (UTC),
    # as a live deployment's are: each key's id carries its creation time,
    # and keys sharing one instant would all fall in one trigram group of the
    # key index (a pathological case, measured separately with
    # CREATED_AT_ONCE=1).
    first = local - dt.timedelta(days=60, hours=8)
    once = os.environ.get("CREATED_AT_ONCE") == "1"

    def created(i):
        at = first if once else first + dt.timedelta(days=50) * (i / max(n, 1))
        return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"

    w = sys.stdout.write
    for i in range(n):
        kid = str(uuid.UUID(int=i + 1, version=4))
        raw = f"cr_{i:064x}"
        h = hashlib.sha256((raw + SECRET).encode()).hexdigest()
        w(hset(f"apikey:{kid}", {
            "id": kid, "name": f"bench-{i}", "description": "", "apiKey": h,
            "isActive": "true", "isDeleted": "false", "tokenLimit": "0",
            "concurrencyLimit": str(i % 4), "rateLimitWindow": "60",
            "rateLimitRequests": "100", "rateLimitCost": "0", "dailyCostLimit": "5",
            "totalCostLimit": "0", "weeklyOpusCostLimit": "0", "permissions": "[]",
            "tags": '["bench"]', "expirationMode": "fixed", "expiresAt": "",
            "claudeAccountId": "", "claudeConsoleAccountId": "",
            "enableModelRestriction": "false", "restrictedModels": "[]",
            "enableClientRestriction": "false", "allowedClients": "[]",
            "createdAt": created(i), "lastUsedAt": "", "serviceRates": "{}",
        }))
        w(resp("SADD", "apikey:idx:all", kid))
        w(resp("HSET", "apikey:hash_map", h, kid))
        per_model = len(MODELS)
        for m in MODELS:
            w(hset(f"usage:{kid}:model:alltime:{m}", times(UNIT, len(days) + 1)))
            for mo, count in months.items():
                w(hset(f"usage:{kid}:model:monthly:{m}:{mo}", times(UNIT, count)))
            for d in days:
                w(hset(f"usage:{kid}:model:daily:{m}:{d}", times(UNIT, 1)))
            w(hset(f"usage:{kid}:model:hourly:{m}:{hour_label}", times(UNIT, 1)))
        # CRS's per-key aggregates (all models): not read by the importer,
        # present so the SCANs walk a keyspace shaped like CRS's.
        agg = {
            "totalRequests": UNIT["requests"] * per_model * (len(days) + 1),
            "totalInputTokens": UNIT["inputTokens"] * per_model * (len(days) + 1),
            "totalOutputTokens": UNIT["outputTokens"] * per_model * (len(days) + 1),
        }
        w(hset(f"usage:{kid}", agg))
        for d in days:
            w(hset(f"usage:daily:{kid}:{d}", {"requests": UNIT["requests"] * per_model}))
        w(resp("SET", f"usage:cost:total:{kid}", UNIT["ratedCostMicro"] * per_model * (len(days) + 1) / 1e6))
        w(resp("SET", f"usage:cost:daily:{kid}:{days[0]}", UNIT["ratedCostMicro"] * per_model / 1e6))


if __name__ == "__main__":
    main()
