"""Project-wide numbers from a sample: entity count (SCAN, never KEYS), the key and field
TTL distributions, the served age of each view (server time minus `_ts:<view>`), and
`MEMORY USAGE` per entity: `feast-redis-hexpire stats`.

Nothing here writes to Redis.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..codec import stored_event_micros
from ..inspection import NO_EXPIRY, NO_SUCH_FIELD, field_owners, owner_of
from ..keys import project_prefix
from ..maintenance import project_keys
from ..views import ViewLayout
from .helpers import format_ttl

DEFAULT_SAMPLE_SIZE = 1000
_PIPELINE_BATCH = 200

Progress = Callable[[int], None]


@dataclass
class Distribution:
    """TTLs in seconds over the values that expire; ``no_expiry`` counts the others."""

    count: int = 0
    no_expiry: int = 0
    min: float | None = None
    p50: float | None = None
    p90: float | None = None
    max: float | None = None

    @classmethod
    def of(cls, ttls_ms: Sequence[int]) -> Distribution:
        expiring = sorted(t / 1000 for t in ttls_ms if t >= 0)
        dist = cls(count=len(ttls_ms), no_expiry=sum(1 for t in ttls_ms if t == NO_EXPIRY))
        if expiring:
            dist.min, dist.max = expiring[0], expiring[-1]
            dist.p50 = _percentile(expiring, 50)
            dist.p90 = _percentile(expiring, 90)
        return dist


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ordered, non-empty sequence."""
    rank = max(1, int(-(-pct * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class ProjectStats:
    key_pattern: str
    entities: int
    sampled: int
    key_ttl: Distribution
    field_ttl: dict[str, Distribution]  # by kind: batch / stream / unknown
    served_age: dict[str, Distribution]  # by view: server time minus its _ts, over sampled keys holding it
    fields_per_entity_avg: float | None
    memory_bytes_avg: float | None
    memory_bytes_min: int | None
    memory_bytes_max: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_project(
    client: Any,
    key_prefix: str,
    project: str,
    layouts: Sequence[ViewLayout] = (),
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    progress: Progress | None = None,
    seed: int | None = None,
    hash_tag: str = "none",
) -> ProjectStats:
    """SCAN every key of the project (counting them, reporting ``progress(scanned)``
    every 1000 keys), keep a uniform reservoir sample of ``sample_size`` keys, and
    measure PTTL, HPTTL of every field and MEMORY USAGE on the sample.

    Keys of both layouts (``hash_tag`` none and project) are counted, as the store's
    maintenance does; ``hash_tag`` only picks the pattern shown in the report."""
    scanned, sample = sample_keys(client, key_prefix, project, sample_size, progress, seed)
    measured = measure_keys(client, sample, layouts)
    return summarise(measured, project_prefix(key_prefix, project, hash_tag) + "*", scanned)


def sample_keys(
    client: Any,
    key_prefix: str,
    project: str,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    progress: Progress | None = None,
    seed: int | None = None,
) -> tuple[int, list[bytes]]:
    """How many keys the project has, and a uniform sample of them (reservoir sampling over
    one SCAN, so memory stays at ``sample_size`` keys however many there are)."""
    sample_size = max(1, sample_size)
    rng = random.Random(seed)
    sample: list[bytes] = []
    scanned = 0
    for key in project_keys(client, key_prefix, project):
        scanned += 1
        if len(sample) < sample_size:
            sample.append(key)
        else:
            slot = rng.randrange(scanned)
            if slot < sample_size:
                sample[slot] = key
        if progress is not None and scanned % 1000 == 0:
            progress(scanned)
    if progress is not None and scanned % 1000:
        progress(scanned)
    return scanned, sample


@dataclass
class Measured:
    """The raw figures of the sampled keys that still exist."""

    key_ttls: list[int] = field(default_factory=list)
    field_ttls: dict[str, list[int]] = field(default_factory=dict)  # by kind
    ages_ms: dict[str, list[int]] = field(default_factory=dict)  # by view
    field_counts: list[int] = field(default_factory=list)
    memory: list[int] = field(default_factory=list)


def measure_keys(client: Any, sample: Sequence[bytes], layouts: Sequence[ViewLayout] = ()) -> Measured:
    """Per key, pipelined in batches: PTTL, HKEYS and MEMORY USAGE, then HPTTL of its fields
    and HMGET of the views' `_ts` fields (served age against the server's clock)."""
    owners = field_owners(layouts)
    ts_fields = [layout.ts_field for layout in layouts]
    seconds, micros = client.time()
    now_us = int(seconds) * 1_000_000 + int(micros)
    out = Measured(ages_ms={layout.name: [] for layout in layouts})
    for start in range(0, len(sample), _PIPELINE_BATCH):
        batch = sample[start : start + _PIPELINE_BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.pttl(key)
            pipe.hkeys(key)
            pipe.memory_usage(key)
        replies = pipe.execute()
        present: list[tuple[bytes, list[bytes]]] = []
        for i, key in enumerate(batch):
            ttl, names, mem = replies[3 * i : 3 * i + 3]
            if not names:  # expired between SCAN and now
                continue
            out.key_ttls.append(int(ttl))
            out.field_counts.append(len(names))
            if mem is not None:
                out.memory.append(int(mem))
            present.append((key, names))
        pipe = client.pipeline(transaction=False)
        for key, names in present:
            pipe.hpttl(key, *names)
            if ts_fields:
                pipe.hmget(key, ts_fields)
        replies = pipe.execute()
        step = 2 if ts_fields else 1
        stamp_replies = replies[1::step] if ts_fields else [[] for _ in present]
        for (_key, names), ttls, stamps in zip(present, replies[::step], stamp_replies):
            for layout, stamp in zip(layouts, stamps):
                if stamp is not None:
                    out.ages_ms[layout.name].append(max(0, now_us - stored_event_micros(stamp)) // 1000)
            for name, ttl in zip(names, ttls):
                if int(ttl) == NO_SUCH_FIELD:
                    continue
                owner = owner_of(name, owners)
                out.field_ttls.setdefault(owner.kind if owner else "unknown", []).append(int(ttl))
    return out


def summarise(measured: Measured, key_pattern: str, entities: int) -> ProjectStats:
    """Distributions and averages of what was measured."""
    memory = measured.memory
    counts = measured.field_counts
    return ProjectStats(
        key_pattern=key_pattern,
        entities=entities,
        sampled=len(measured.key_ttls),
        key_ttl=Distribution.of(measured.key_ttls),
        field_ttl={kind: Distribution.of(ttls) for kind, ttls in sorted(measured.field_ttls.items())},
        served_age={view: Distribution.of(ages) for view, ages in measured.ages_ms.items()},
        fields_per_entity_avg=(sum(counts) / len(counts)) if counts else None,
        memory_bytes_avg=(sum(memory) / len(memory)) if memory else None,
        memory_bytes_min=min(memory) if memory else None,
        memory_bytes_max=max(memory) if memory else None,
    )


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else format_ttl(int(value * 1000))


def format_stats(stats: ProjectStats) -> str:
    lines = [
        f"keys matching {stats.key_pattern}: {stats.entities} entities (SCAN)",
        f"sample: {stats.sampled} keys",
    ]
    if not stats.sampled:
        return "\n".join(lines)
    header = ("TTL of", "count", "no expiry", "min", "p50", "p90", "max")
    rows = [("keys (TTL)", stats.key_ttl)]
    rows += [(f"{kind} fields (HTTL)", dist) for kind, dist in stats.field_ttl.items()]
    lines.extend(_table(header, rows))
    if stats.served_age:
        lines.append("")
        lines.append("served age (server time minus _ts:<view>), over the sampled keys that hold the view:")
        age_header = ("age of view", "count", "min", "p50", "p90", "max")  # an age always "expires"
        lines.extend(_table(age_header, list(stats.served_age.items()), no_expiry=False))
    lines.append("")
    if stats.fields_per_entity_avg is not None:
        lines.append(f"fields per entity: {stats.fields_per_entity_avg:.1f} on average")
    if stats.memory_bytes_avg is not None:
        lines.append(
            f"memory per entity (MEMORY USAGE): {stats.memory_bytes_avg:.0f} bytes on average "
            f"(min {stats.memory_bytes_min}, max {stats.memory_bytes_max}); "
            f"~{stats.memory_bytes_avg * stats.entities / 1024 / 1024:.2f} MiB for all {stats.entities}"
        )
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: list[tuple[str, Distribution]], no_expiry: bool = True) -> list[str]:
    """Distributions as rows; ``no_expiry``: with the column counting values without expiry
    (TTLs have one, ages do not)."""
    table = [header] + [
        (
            name,
            str(d.count),
            *((str(d.no_expiry),) if no_expiry else ()),
            _fmt_seconds(d.min),
            _fmt_seconds(d.p50),
            _fmt_seconds(d.p90),
            _fmt_seconds(d.max),
        )
        for name, d in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [""]
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
