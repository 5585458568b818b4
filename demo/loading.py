"""Getting data into the demo's Redis and out again: the working copy of the sample repo,
bulk loads (generate the parquet data, then materialize view by view through Feast) and
deleting the project's keys.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from inspect import signature
from pathlib import Path
from typing import Any

from .catalog import Catalog

FRESH_SHARE = 4
"""The freshest generated stream row is at most 1/FRESH_SHARE of the stream TTL old, so a
bulk load's stream rows are still within the TTL when written."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def delete_project_keys(client: Any, key_prefix: str, project: str) -> int:
    from feast_redis_hexpire.maintenance import delete_entities

    return delete_entities(client, key_prefix, project)


def _materialize(
    store: Any, online_store: Any, catalog: Catalog, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Each view on its own, with what the store's counters say it wrote and skipped."""
    views = []
    # Stream views first: their rows age by the time the batch views take.
    for layout in sorted(catalog.layouts, key=lambda layout: layout.kind.value != "stream"):
        before = online_store.stats.as_dict()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # Feast prints a banner per view
            store.materialize(start, end, feature_views=[layout.name])
        after = online_store.stats.as_dict()
        views.append(
            {
                "view": layout.name,
                "kind": layout.kind.value,
                "ttl_seconds": layout.ttl_seconds,
                "seconds": round(time.perf_counter() - t0, 3),
                "written": after["rows_written"] - before["rows_written"],
                "skipped_stale": after["rows_skipped_stale"] - before["rows_skipped_stale"],
                "skipped_expired": after["rows_skipped_expired"] - before["rows_skipped_expired"],
            }
        )
    order = [layout.name for layout in catalog.layouts]
    views.sort(key=lambda v: order.index(v["view"]))
    return views


def bulk_load(
    store: Any,
    online_store: Any,
    catalog: Catalog,
    generate: Callable[..., dict[str, Any]],
    data_dir: Path,
    *,
    users: int,
    days: int,
    seed: int,
) -> tuple[dict[str, Any], list[str]]:
    """Generate ``users`` users' data and materialize every view: the load's figures, and
    the user ids generated."""
    started = time.perf_counter()
    now = utcnow()
    extra: dict[str, Any] = {}
    if catalog.stream_ttl_seconds and "fresh_seconds" in signature(generate).parameters:
        extra["fresh_seconds"] = catalog.stream_ttl_seconds / FRESH_SHARE
    data = generate(data_dir, count=users, days=days, seed=seed, now=now, **extra)
    generate_seconds = time.perf_counter() - started

    materialize_started = time.perf_counter()
    views = _materialize(store, online_store, catalog, now - timedelta(days=days + 1), utcnow() + timedelta(seconds=1))
    materialize_seconds = time.perf_counter() - materialize_started
    result = {
        "users": users,
        "seconds": round(time.perf_counter() - started, 3),
        "generate_seconds": round(generate_seconds, 3),
        "materialize_seconds": round(materialize_seconds, 3),
        "rows_written": sum(v["written"] for v in views),
        "rows_skipped_stale": sum(v["skipped_stale"] for v in views),
        "rows_skipped_expired": sum(v["skipped_expired"] for v in views),
        "source_rows": dict(data.get("rows", {})),
        "views": views,
        "stream_view_seconds": round(sum(v["seconds"] for v in views if v["kind"] == "stream"), 3),
    }
    return result, list(data["user_ids"])


def load_notes(result: dict[str, Any], stream_ttl_seconds: int | None) -> list[str]:
    """What a newcomer would otherwise read as a fault in a load's figures."""
    notes = []
    if result["rows_skipped_expired"]:
        notes.append(
            f"{result['rows_skipped_expired']:,} generated stream rows were already past the "
            f"{stream_ttl_seconds} s stream TTL when written: the data is dated before the load, "
            f"and generating and writing it took {result['generate_seconds'] + result['stream_view_seconds']:.1f} s. "
            "Expected with a short TTL; the worker pushes fresh ones."
        )
    stale_stream = sum(v["skipped_stale"] for v in result["views"] if v["kind"] == "stream")
    if stale_stream:
        notes.append(
            f"{stale_stream:,} generated stream rows were older than what the streaming worker had already "
            "pushed for those users, and were skipped (newest wins): expected while the worker runs."
        )
    if result["ttl_changed"] and result["users"] < result["users_loaded"]:
        notes.append(
            f"The new TTLs apply to the {result['users']:,} users this load wrote and to later writes; "
            f"the other {result['users_loaded'] - result['users']:,} keep theirs until rewritten "
            "(Inspect shows a key's own)."
        )
    return notes
