"""Stream coverage: how many loaded users have fresh stream fields, measured in Redis.

The worker's own bookkeeping says what it pushed, not what is still there: only the
hashes say whether a user's stream fields have expired. One pipelined ``HPTTL`` per
sampled user over the stream view's fields (features plus ``_ts:<view>``); a user counts
as fresh when every one of them is present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from feast_redis_hexpire.inspection import NO_SUCH_FIELD

SAMPLE_SIZE = 1000
"""Users looked at per measurement: all of them up to this many, else an even spread."""

T = TypeVar("T")


def spread(items: Sequence[T], at_most: int = SAMPLE_SIZE) -> list[T]:
    """Up to ``at_most`` items evenly spaced over ``items``, first and last included:
    a round-robin's progress shows the same in the sample as in the whole."""
    n = len(items)
    if n <= at_most:
        return list(items)
    if at_most <= 1:
        return list(items[:at_most])
    return [items[round(i * (n - 1) / (at_most - 1))] for i in range(at_most)]


@dataclass(frozen=True)
class Coverage:
    users: int
    """Users loaded."""
    sampled: int
    fresh: int
    """Sampled users with every stream field present."""
    percent: float | None
    soonest_expiry_seconds: float | None
    """The least time left on any fresh user's stream fields: how close to expiring the
    stalest user is (None when nothing fresh expires)."""
    fields: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(client: Any, keys: Sequence[str], fields: Sequence[bytes], users: int) -> Coverage:
    """Coverage of ``keys`` (a sample of the ``users`` loaded) over the stream ``fields``."""
    fresh = 0
    soonest: int | None = None
    if keys and fields:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hpttl(key, *fields)
        for reply in pipe.execute():
            ttls = [int(t) for t in reply or ()]  # Redis 7.4 answers nil for a missing key
            if len(ttls) != len(fields) or NO_SUCH_FIELD in ttls:
                continue
            fresh += 1
            expiring = [t for t in ttls if t >= 0]
            if expiring:
                soonest = min(expiring) if soonest is None else min(soonest, *expiring)
    sampled = len(keys) if fields else 0
    return Coverage(
        users=users,
        sampled=sampled,
        fresh=fresh,
        percent=math.floor(1000 * fresh / sampled) / 10 if sampled else None,  # 100.0 only if all are
        soonest_expiry_seconds=None if soonest is None else round(soonest / 1000, 1),
        fields=[f.decode() for f in fields],
    )
