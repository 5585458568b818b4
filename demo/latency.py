"""Recent read latencies for the page's chart: every ``get_online_features`` the demo
serves (one user, or a batch), kept in a short ring with p50/p99 per kind.

Kinds are kept apart because one user and 10,000 users in one call are different
questions: a p99 mixing them would say nothing about either.
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


@dataclass(frozen=True)
class Read:
    at: float  # epoch seconds
    kind: str  # "read" (one user) or "batch"
    entities: int
    ms: float


class LatencyLog:
    """Thread-safe: FastAPI serves reads from its thread pool."""

    def __init__(self, keep: int = KEEP) -> None:
        self._reads: deque[Read] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, kind: str, entities: int, ms: float) -> None:
        with self._lock:
            self._reads.append(Read(round(time.time(), 3), kind, entities, round(ms, 3)))

    def summary(self, points: int = POINTS) -> dict[str, Any]:
        """``points``: the newest reads, oldest first; ``kinds``: count, p50 and p99 per kind
        over every read kept."""
        with self._lock:
            reads = list(self._reads)
        kinds: dict[str, dict[str, Any]] = {}
        for kind in dict.fromkeys(r.kind for r in reads):
            ordered = sorted(r.ms for r in reads if r.kind == kind)
            kinds[kind] = {
                "count": len(ordered),
                "p50_ms": percentile(ordered, 50),
                "p99_ms": percentile(ordered, 99),
            }
        return {"points": [asdict(r) for r in reads[-points:]], "kinds": kinds}
