"""Generate the synthetic parquet files every source in features.py reads.

    python generate_data.py [--seed 42] [--count 200] [--days 7] [--out data/]

Deterministic: the same ``--seed`` (and ``now``) gives byte-for-byte the same values.
Each user gets its own RNG seeded from ``(seed, user_id)``, so raising ``--count``
adds users without changing the existing ones. Timestamps are relative to ``now``
(the current time unless passed to :func:`generate`), so a fresh run always lands
inside ``feast materialize-incremental``'s window.

Files (event_timestamp / created are timezone-aware UTC, microsecond precision):

* ``user_profile.parquet``  one daily snapshot per user per day, ``days`` days back;
* ``user_tx_stats.parquet`` one daily aggregate per user per day;
* ``user_activity.parquet`` history of the pushed activity features: one row every
  6 hours per user, plus a fresh row, at most ``fresh_seconds`` old (two minutes by
  default, within the repo's 300 s stream TTL), so that materializing the streaming view
  writes fields that are still within the stream TTL. A shorter TTL wants a smaller
  ``fresh_seconds`` (the demo passes a quarter of its TTL).
* ``user_embedding.parquet`` one :func:`user_embedding` per activity row, at its time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_OUT = Path(__file__).resolve().parent / "data"

COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "BR", "IN", "JP", "CA"]
RISK_SEGMENTS = ["low", "medium", "high"]
ACTIVITY_EVERY = timedelta(hours=6)
FRESH_SECONDS = 120
"""The freshest activity row is at most this old (and at least a second)."""


def user_ids_for(count: int) -> list[str]:
    """``u0001``, ``u0002``, ... ``u9999``, ``u10000``: one format at every count, so loading
    more users never renames the ones already loaded."""
    return [f"u{i:04d}" for i in range(1, count + 1)]


EMBEDDING_DIM = 8
EMBEDDING_SEED = 20240601
"""The fixed seed of the embedding's projection: the same inputs, the same vector, everywhere."""
_PROJECTION = [
    [random.Random(f"{EMBEDDING_SEED}:{row}:{col}").gauss(0.0, 1.0) for col in range(6)] for row in range(EMBEDDING_DIM)
]


def user_embedding(uid: str, tx_count_5m: int, failed_logins_15m: int, session_country: str) -> list[float]:
    """A small deterministic embedding of a user's activity (no model): a fixed random
    projection of the user's stable traits (from its id) and its current activity,
    normalized. Users with similar activity land near each other under COSINE."""
    digest = hashlib.sha256(uid.encode()).digest()
    stable = [(digest[i] / 255.0 - 0.5) * 0.6 for i in range(3)]
    country = COUNTRIES.index(session_country) / len(COUNTRIES) if session_country in COUNTRIES else 0.5
    inputs = [*stable, math.log1p(tx_count_5m), math.log1p(failed_logins_15m) * 1.5, country]
    vector = [sum(w * x for w, x in zip(row, inputs, strict=True)) for row in _PROJECTION]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def _created(ts: datetime, now: datetime) -> datetime:
    # The row lands in the warehouse a moment after the event, never in the future.
    return min(ts + timedelta(seconds=2), now)


def _user_rows(
    uid: str, seed: int, days: int, now: datetime, fresh_seconds: float = FRESH_SECONDS
) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(f"{seed}:{uid}")
    home = rng.choice(COUNTRIES)
    segment = rng.choices(RISK_SEGMENTS, weights=[70, 22, 8])[0]
    age_today = rng.randint(days, 3650)
    tx_rate = rng.uniform(0.2, 6.0)  # transactions per day
    avg_amount = rng.lognormvariate(3.5, 0.6)
    chargebacks = rng.choices([0, 1, 2, 3], weights=[85, 10, 4, 1])[0]
    devices = [f"dev-{rng.randrange(16**6):06x}" for _ in range(rng.randint(1, 3))]
    # The daily batch job runs at a per-user offset before "now".
    batch_offset = timedelta(seconds=rng.randint(60, 3600), microseconds=rng.randrange(10**6))

    profile: list[dict[str, Any]] = []
    stats: list[dict[str, Any]] = []
    for k in range(days - 1, -1, -1):  # oldest first
        ts = now - timedelta(days=k) - batch_offset
        if rng.random() < 0.05:
            segment = rng.choice(RISK_SEGMENTS)
        profile.append(
            {
                "user_id": uid,
                "country_iso": home,
                "risk_segment": segment,
                "account_age_days": age_today - k,
                "event_timestamp": ts,
                "created": _created(ts, now),
            }
        )
        stats.append(
            {
                "user_id": uid,
                "tx_count_7d": max(0, round(rng.gauss(tx_rate * 7, 2))),
                # Two decimals, like a currency amount: short round-trip text in Redis.
                "avg_amount_30d": round(avg_amount * rng.uniform(0.9, 1.1), 2),
                "chargeback_count_180d": chargebacks,
                "event_timestamp": ts,
                "created": _created(ts, now),
            }
        )

    activity: list[dict[str, Any]] = []
    start = now - timedelta(days=days)
    times = []
    t = start + timedelta(seconds=rng.randint(0, int(ACTIVITY_EVERY.total_seconds()) - 1))
    while t < now - timedelta(minutes=10):
        times.append(t)
        t += ACTIVITY_EVERY
    # The freshest row: recent enough to be within the stream TTL when materialized.
    fresh_micros = max(1_000_000, int(fresh_seconds * 1_000_000))
    times.append(now - timedelta(microseconds=rng.randint(min(5_000_000, fresh_micros // 2), fresh_micros)))
    for ts in times:
        login = ts - timedelta(seconds=rng.randint(0, 900))
        activity.append(
            {
                "user_id": uid,
                "last_login_ts": login.replace(microsecond=0),
                "last_device_id": rng.choice(devices),
                "tx_count_5m": rng.choices([0, 1, 2, 3, 5], weights=[50, 30, 12, 6, 2])[0],
                "failed_logins_15m": rng.choices([0, 1, 2, 4], weights=[80, 12, 6, 2])[0],
                "session_country": home if rng.random() < 0.93 else rng.choice(COUNTRIES),
                "event_timestamp": ts,
                "created": _created(ts, now),
            }
        )
    embedding = [
        {
            "user_id": uid,
            "embedding": user_embedding(uid, row["tx_count_5m"], row["failed_logins_15m"], row["session_country"]),
            "event_timestamp": row["event_timestamp"],
            "created": row["created"],
        }
        for row in activity
    ]
    return {"user_profile": profile, "user_tx_stats": stats, "user_activity": activity, "user_embedding": embedding}


def _frame(rows: list[dict[str, Any]], int_cols: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in ("event_timestamp", "created", "last_login_ts"):
        if col in df:
            df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[us, UTC]")
    for col in int_cols:
        df[col] = df[col].astype("int64")
    return df


def generate(
    out_dir: str | Path,
    count: int = 200,
    days: int = 7,
    seed: int = 42,
    now: datetime | None = None,
    fresh_seconds: float = FRESH_SECONDS,
) -> dict[str, Any]:
    """Write the four parquet files into ``out_dir`` and describe what was written.
    Each user's freshest activity row is at most ``fresh_seconds`` before ``now``.

    Returns ``{"out_dir", "now", "user_ids", "files": {view: path}, "rows": {view: n}}``;
    read the files back with pandas for the exact values.
    """
    if count < 1 or days < 1:
        raise ValueError("count and days must be >= 1")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    now = now.astimezone(timezone.utc)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    uids = user_ids_for(count)
    rows: dict[str, list[dict[str, Any]]] = {
        "user_profile": [],
        "user_tx_stats": [],
        "user_activity": [],
        "user_embedding": [],
    }
    for uid in uids:
        for view, view_rows in _user_rows(uid, seed, days, now, fresh_seconds).items():
            rows[view].extend(view_rows)

    int_cols = {
        "user_profile": ["account_age_days"],
        "user_tx_stats": ["tx_count_7d", "chargeback_count_180d"],
        "user_activity": ["tx_count_5m", "failed_logins_15m"],
        "user_embedding": [],
    }
    files: dict[str, str] = {}
    for view, view_rows in rows.items():
        path = out / f"{view}.parquet"
        _frame(view_rows, int_cols[view]).to_parquet(path, index=False)
        files[view] = str(path)

    return {
        "out_dir": str(out),
        "now": now,
        "user_ids": uids,
        "files": files,
        "rows": {view: len(view_rows) for view, view_rows in rows.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--count", type=int, default=200, help="number of users")
    parser.add_argument("--days", type=int, default=7, help="days of history")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    result = generate(args.out, count=args.count, days=args.days, seed=args.seed)
    summary = {k: v for k, v in result.items() if k != "user_ids"}
    summary["now"] = result["now"].isoformat()
    summary["users"] = len(result["user_ids"])
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
