"""Recent read latencies for the page's chart: every ``get_online_features`` the demo
serves (one user, or a batch), kept in a short ring with p50/p99 per series.

A series is one kind at one size: one user, or a batch of N users. One user and 10,000
users in one call are different questions, and so are batches of 100 and of 10,000: a
p99 mixing them would say nothing about either.

Each read also carries the store's own time (``online_read``, as the store timed it),
so the page shows how much of a read is the store and how much is Feast around it.

A read that planned a new request shape (the first of its shape, or the first after a
registry refresh such as a bulk load's: Feast resolves the feature references again and
the store builds its read plan) is marked ``planned``: it is plotted, and counted, but kept
out of the percentiles, which are about reads of a known shape.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

KEEP = 200
"""Reads kept for the percentiles."""
POINTS = 60
"""Reads the chart plots."""


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ordered, non-empty sequence."""
    rank = max(1, math.ceil(pct * len(ordered) / 100))
    return ordered[min(rank, len(ordered)) - 1]


def series_of(kind: str, entities: int) -> str:
    """``read`` for one user, ``batch:<N>`` for a batch of N users."""
    return "read" if kind == "read" else f"{kind}:{entities}"


@dataclass(frozen=True)
class Read:
    at: float  # epoch seconds
    kind: str  # "read" (one user) or "batch"
    entities: int
    ms: float
    store_ms: float | None = None  # the store's online_read, when it was timed
    series: str = ""
    planned: bool = False  # it planned a new request shape: out of the percentiles

    def __post_init__(self) -> None:
        if not self.series:
            object.__setattr__(self, "series", series_of(self.kind, self.entities))


class LatencyLog:
    """Thread-safe: FastAPI serves reads from its thread pool."""

    def __init__(self, keep: int = KEEP) -> None:
        self._reads: deque[Read] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, kind: str, entities: int, ms: float, store_ms: float | None = None, planned: bool = False) -> None:
        with self._lock:
            self._reads.append(
                Read(
                    round(time.time(), 3),
                    kind,
                    entities,
                    round(ms, 3),
                    None if store_ms is None else round(store_ms, 3),
                    planned=planned,
                )
            )

    def summary(self, points: int = POINTS) -> dict[str, Any]:
        """``points``: the newest reads, oldest first; ``series``: per series (in order of
        first appearance) its kind, size, count (``planned`` of them planned a new shape),
        and p50/p99 of the page's time and of the store's time over the other reads kept
        (None while there are none). ``kinds`` is the same keyed by series name."""
        with self._lock:
            reads = list(self._reads)
        series: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(r.series for r in reads):
            mine = [r for r in reads if r.series == name]
            known = [r for r in mine if not r.planned]
            ordered = sorted(r.ms for r in known)
            store = sorted(r.store_ms for r in known if r.store_ms is not None)
            series[name] = {
                "kind": mine[0].kind,
                "entities": mine[0].entities,
                "count": len(mine),
                "planned": len(mine) - len(known),
                "p50_ms": percentile(ordered, 50) if ordered else None,
                "p99_ms": percentile(ordered, 99) if ordered else None,
                "store_p50_ms": percentile(store, 50) if store else None,
                "store_p99_ms": percentile(store, 99) if store else None,
            }
        return {"points": [asdict(r) for r in reads[-points:]], "kinds": series}
