"""What Redis holds for the demo project: one user's hash as the Inspect tab shows it, and
the project-wide figures the page polls (entity count, stream coverage, served age).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from feast_redis_hexpire.inspection import NO_EXPIRY, field_owners, inspect_key

from .coverage import measure as measure_coverage
from .freshness import AgeLog
from .freshness import measure as measure_ages

STREAM_ONLY_NOTE = (
    "No batch fields: this user's key expired with its batch cycle (or was never materialized), and "
    "the worker's next push re-created it with stream fields only. That is by design: the stream "
    "fields expire on their own, so the key has no TTL (no expiry) and Redis removes it when its last "
    "field expires; the next bulk load brings the batch fields and the key TTL back."
)
"""Said wherever a key holds stream fields only."""


def ms_to_seconds(ttl_ms: int) -> float | None:
    return None if ttl_ms < 0 else round(ttl_ms / 1000, 1)


def inspect_user(client: Any, key: str, layouts: Sequence[Any]) -> dict[str, Any]:
    """The hash's fields with their views and TTLs (the one that applies: the field's own,
    else the key's), and the fields of the views it does not hold."""
    entity = inspect_key(client, key, layouts)
    out = entity.as_dict()
    for row, info in zip(out["fields"], entity.fields):
        effective = info.effective_ttl_ms(entity.key_ttl_ms)
        row["ttl_source"] = "field" if info.ttl_ms >= 0 else ("key" if entity.key_ttl_ms >= 0 else "none")
        row["effective_ttl_seconds"] = ms_to_seconds(effective)
    present = {f.field for f in entity.fields}
    out["missing"] = [
        {"field": name.decode(), "view": owner.view, "kind": owner.kind, "feature": owner.feature}
        for name, owner in field_owners(layouts).items()
        if name.decode() not in present
    ]
    out["key_ttl_seconds"] = ms_to_seconds(entity.key_ttl_ms)
    has_batch = any(f.kind == "batch" for f in entity.fields)
    out["note"] = STREAM_ONLY_NOTE if entity.exists and not has_batch and entity.key_ttl_ms == NO_EXPIRY else None
    return out


class ProjectWatch:
    """The figures the page polls, each measured in Redis and kept no longer than it may be:
    the entity count (a SCAN) for a few seconds, served age at most once a second."""

    def __init__(self, client: Callable[[], Any], key_prefix: Callable[[], str], project: Callable[[], str]) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.project = project
        self.ages = AgeLog()
        self._counted: tuple[float, int] | None = None  # (monotonic, entity count)

    def forget_count(self) -> None:
        """A load or reset changes the count: SCAN again."""
        self._counted = None

    def forget_ages(self) -> None:
        """After a reset the sampled users are gone: the next poll samples afresh rather than
        showing, for up to a second, ages of keys that no longer exist."""
        self.ages.clear()

    def entity_count(self, max_age: float = 0.0) -> int:
        """The project's entity keys, by SCAN; ``max_age``: a count this recent will do.

        At 10,000 users the SCAN is a few hundred ms of Python in the demo's process, where
        it holds the GIL that reads wait for: the page's polling reuses a count for a few
        seconds (a load or reset always counts afresh)."""
        from feast_redis_hexpire.maintenance import count_project_keys

        now = time.monotonic()
        if self._counted is not None and now - self._counted[0] < max_age:
            return self._counted[1]
        count = count_project_keys(self.client(), self.key_prefix(), self.project())
        self._counted = (now, count)
        return count

    def coverage(self, keys: Sequence[str], stream_layouts: Sequence[Any], users: int) -> dict[str, Any]:
        """Share of the loaded users whose stream fields are all present."""
        fields = [field for layout in stream_layouts for field in layout.all_fields()]
        return measure_coverage(self.client(), keys, fields, users).as_dict()

    def served_age(self, keys: Sequence[str], layouts: Sequence[Any]) -> dict[str, Any]:
        """Served age per view over the sample (now minus ``_ts:<view>``), with its recent
        history; a new sample at most once a second."""
        now = time.time()
        if self.ages.due(now):
            self.ages.record(now, measure_ages(self.client(), keys, layouts, now))
        return self.ages.summary()
