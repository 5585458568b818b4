"""Served age per view, measured in Redis: how old the features the store would serve are.

Every entity hash carries ``_ts:<view>``, the event time of what it holds for that view;
now minus it is the age a read would be served. One pipelined ``HMGET`` of the views'
``_ts`` fields over the same even sample of users as the coverage, at most once a second;
the page plots the history, so pausing the worker shows the stream view's age climbing to
its TTL and then the view vanishing (its fields expired), as numbers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from feast_redis_hexpire.codec import decode_event_ts
from feast_redis_hexpire.errors import CorruptStoredValue

from .latency import percentile

KEEP = 150
"""Samples kept: five minutes at the page's 2 s polling."""
MIN_INTERVAL = 1.0
"""Seconds between samples at least (several open pages share one history)."""


def measure(client: Any, keys: Sequence[str], layouts: Sequence[Any], now: float) -> dict[str, dict[str, Any]]:
    """Per view: how many sampled users have it (``present``), and p50/p99/max of their
    served age in seconds (None when none has it)."""
    fields = [layout.ts_field for layout in layouts]
    ages: list[list[float]] = [[] for _ in layouts]
    if keys and fields:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, fields)
        for reply in pipe.execute():
            for i, raw in enumerate(reply or ()):
                if raw is None:
                    continue
                try:
                    ts = decode_event_ts(raw if isinstance(raw, bytes) else str(raw).encode())
                except CorruptStoredValue:
                    continue
                ages[i].append(max(0.0, now - ts.timestamp()))
    out = {}
    for layout, view_ages in zip(layouts, ages):
        ordered = sorted(view_ages)
        out[layout.name] = {
            "kind": layout.kind.value,
            "ttl_seconds": layout.ttl_seconds or None,
            "sampled": len(keys),
            "present": len(ordered),
            "p50_s": round(percentile(ordered, 50), 3) if ordered else None,
            "p99_s": round(percentile(ordered, 99), 3) if ordered else None,
            "max_s": round(ordered[-1], 3) if ordered else None,
        }
    return out


class AgeLog:
    """A short history of :func:`measure` results; thread-safe."""

    def __init__(self, keep: int = KEEP, min_interval: float = MIN_INTERVAL) -> None:
        self._samples: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.min_interval = min_interval

    def due(self, now: float) -> bool:
        with self._lock:
            return not self._samples or now - self._samples[-1]["at"] >= self.min_interval

    def record(self, now: float, views: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            self._samples.append({"at": round(now, 3), "views": views})

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()

    def summary(self) -> dict[str, Any]:
        with self._lock:
            samples = list(self._samples)
        return {"samples": samples, "latest": samples[-1] if samples else None, "now": round(time.time(), 3)}
