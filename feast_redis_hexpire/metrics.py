"""The store's Prometheus metrics: how old the served features are, what each read found,
what each write did, and what Redis cost. One place for every metric the store exports.

They are recorded through Feast's own metrics machinery: `prometheus_client` in
multiprocess mode (Feast sets the directory up when `feast.metrics` is imported, so
gunicorn workers aggregate), and only while Feast's metrics are on (`feast serve
--metrics`, or `feature_server: metrics: enabled: true`). Off, every hook returns after
one attribute check.

Served age is the reason this module exists: every entity hash carries `_ts:<view>`, the
event time of what it serves, so each read can report how old its PRESENT features are.
A stream view whose served age nears its TTL, or whose `view_absent` share jumps, has a
stalled pipeline; an `entity_absent` jump on a batch view means its key TTL ran out.
"""

from __future__ import annotations

import bisect
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import redis

from .codec import stored_event_micros
from .errors import CorruptStoredValue
from .views import ViewLayout

try:  # importing feast.metrics first puts prometheus_client in multiprocess mode
    from feast import metrics as feast_metrics
except ImportError:  # pragma: no cover - Feast builds without the metrics module
    feast_metrics = None

from prometheus_client import Counter, Gauge, Histogram

P = ParamSpec("P")
T = TypeVar("T")

AGE_BUCKETS_SECONDS: tuple[float, ...] = (
    1,
    5,
    15,
    30,
    60,
    120,
    300,
    600,
    1800,
    3600,
    7200,
    21600,
    43200,
    86400,
    172800,
    604800,
)
"""From a second to a week: a 60 s stream view and a daily batch view both read well."""

LATENCY_BUCKETS_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)

SERVED_AGE = Histogram(
    "feast_hexpire_served_age_seconds",
    "Age (now minus _ts:<view>) of each PRESENT view of each entity read",
    ["project", "feature_view"],
    buckets=AGE_BUCKETS_SECONDS,
)
READ_OUTCOMES = Counter(
    "feast_hexpire_read_outcomes_total",
    "Views of entities read, by outcome: present, view_absent (the key exists without this "
    "view's _ts: its fields expired or were never written), entity_absent (no key at all)",
    ["project", "feature_view", "outcome"],
)
VIEW_TTL = Gauge(
    "feast_hexpire_view_ttl_seconds",
    "The TTL a view's writes get (per-field for stream views, key TTL for batch views); 0: none",
    ["project", "feature_view", "kind"],
    multiprocess_mode="max",
)
ROWS = Counter(
    "feast_hexpire_rows_total",
    "Rows given to the store to write, by outcome: written, skipped_stale, skipped_expired, "
    "skipped_future; path is materialize or push (store.push, /push, write_to_online_store)",
    ["project", "feature_view", "path", "outcome"],
)
ROUND_TRIPS = Counter(
    "feast_hexpire_redis_round_trips_total",
    "Pipelined round trips to Redis, by operation (read, write, exists, script_load)",
    ["op"],
)
ROUND_TRIP_SECONDS = Histogram(
    "feast_hexpire_redis_round_trip_seconds",
    "Wall time of one pipelined round trip, retries included",
    ["op"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
RETRIES = Counter(
    "feast_hexpire_redis_retries_total",
    "Commands sent again after a connection error or timeout (restart, failover, cut connection)",
)
ERRORS = Counter(
    "feast_hexpire_redis_errors_total",
    "Round trips that failed, and error replies, by kind: connection, timeout, auth, "
    "noscript (the script cache was emptied; reloaded), response (OOM, NOPERM, ...), other",
    ["op", "kind"],
)

EXPORTED = (SERVED_AGE, READ_OUTCOMES, VIEW_TTL, ROWS, ROUND_TRIPS, ROUND_TRIP_SECONDS, RETRIES, ERRORS)
"""Every metric this store exports (the dashboard test checks its queries against these)."""


def enabled() -> bool:
    """Feast's metrics are on in this process (`start_metrics_server` replaces the flags
    object, so it is looked up each time)."""
    return feast_metrics is not None and feast_metrics._config.enabled


def exported_names() -> set[str]:
    """The series names a scrape shows, suffixes included."""
    names: set[str] = set()
    for metric in EXPORTED:
        base = metric._name
        if isinstance(metric, Counter):
            names.add(base + "_total")
        elif isinstance(metric, Histogram):
            names.update({base + "_bucket", base + "_sum", base + "_count"})
        else:
            names.add(base)
    return names


# ---------------------------------------------------------------- reads


@dataclass
class ViewServed:
    """One view's part of a read: which entities it was read for, and where its event time
    sits in their HMGET replies. Views read from the same entities share one `keys` list."""

    layout: ViewLayout
    keys: Sequence[bytes]
    replies: Sequence[Sequence[bytes | None]]
    ts_at: int


_AGE_BOUNDS_US = [int(bound * 1_000_000) for bound in AGE_BUCKETS_SECONDS]


@dataclass
class ReadTally:
    """What one read found, per view, before it is recorded. Entities where no requested
    view is present may have no key at all: `unsure` lists their keys, and `record` takes
    whether each exists (one pipelined EXISTS round trip, only while metrics are on)."""

    project: str
    views: list[tuple[ViewServed, int, int, list[bytes], list[int], int]] = field(default_factory=list)
    unsure: list[bytes] = field(default_factory=list)

    def record(self, exists: Sequence[bool] | None = ()) -> None:
        """`exists`: whether each `unsure` key exists; None when that could not be asked
        (the error counter has it), and then they count as entity_absent."""
        existing = {key for key, found in zip(self.unsure, exists or ()) if found}
        for view, present, view_absent, unsure, buckets, age_sum_us in self.views:
            entity_absent = 0
            for key in unsure:
                if key in existing:
                    view_absent += 1
                else:
                    entity_absent += 1
            labels = (self.project, view.layout.name)
            _view_ttl(self.project, view.layout)
            outcomes = _outcome_children(labels)
            for child, count in zip(outcomes, (present, view_absent, entity_absent)):
                if count:
                    child.inc(count)
            if present:
                histogram = _age_child(labels)
                histogram._sum.inc(age_sum_us / 1_000_000)
                for index, count in enumerate(buckets):
                    if count:
                        histogram._buckets[index].inc(count)


def tally_reads(project: str, views: Iterable[ViewServed]) -> ReadTally:
    """Present views, their ages bucketed (one increment per bucket, not per entity), and
    the absent ones. An absent view of an entity whose other requested views are present
    is view_absent for sure: the key exists."""
    now_us = time.time_ns() // 1000
    tally = ReadTally(project)
    any_present: dict[int, list[bool]] = {}
    views = list(views)
    for view in views:
        seen = any_present.setdefault(id(view.keys), [False] * len(view.replies))
        for index, reply in enumerate(view.replies):
            if reply[view.ts_at] is not None:
                seen[index] = True
    unsure: set[bytes] = set()
    bounds = _AGE_BOUNDS_US
    for view in views:
        seen = any_present[id(view.keys)]
        buckets = [0] * (len(bounds) + 1)
        present = view_absent = age_sum = 0
        view_unsure: list[bytes] = []
        ts_at = view.ts_at
        for index, reply in enumerate(view.replies):
            raw = reply[ts_at]
            if raw is not None:
                try:
                    age = now_us - int(raw)
                except ValueError:
                    age = now_us - _stored_micros(raw)
                if age < 0:  # an event time ahead of this clock (allowed up to max_future_seconds)
                    age = 0
                present += 1
                age_sum += age
                buckets[bisect.bisect_left(bounds, age)] += 1
            elif seen[index]:
                view_absent += 1
            else:
                key = view.keys[index]
                view_unsure.append(key)
                unsure.add(key)
        tally.views.append((view, present, view_absent, view_unsure, buckets, age_sum))
    tally.unsure = sorted(unsure)
    return tally


def _stored_micros(raw: bytes) -> int:
    """An event time int() cannot read: ISO text of old versions; corrupt text counts as
    age 0 here (the read itself reports it), so metrics never fail a read."""
    try:
        return stored_event_micros(raw)
    except CorruptStoredValue:
        return time.time_ns() // 1000


_AGE_CHILDREN: dict[tuple[str, str], Any] = {}
_OUTCOME_CHILDREN: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
_TTL_SET: dict[tuple[str, str], tuple[str, int]] = {}


def _age_child(labels: tuple[str, str]) -> Any:
    child = _AGE_CHILDREN.get(labels)
    if child is None:
        child = _AGE_CHILDREN[labels] = SERVED_AGE.labels(*labels)
    return child


def _outcome_children(labels: tuple[str, str]) -> tuple[Any, Any, Any]:
    children = _OUTCOME_CHILDREN.get(labels)
    if children is None:
        children = _OUTCOME_CHILDREN[labels] = tuple(  # type: ignore[assignment]
            READ_OUTCOMES.labels(*labels, outcome) for outcome in ("present", "view_absent", "entity_absent")
        )
    return children  # type: ignore[return-value]


def _view_ttl(project: str, layout: ViewLayout) -> None:
    """The TTL gauge beside a view's served age, set when it changes."""
    labels = (project, layout.name)
    current = (layout.kind.value, layout.ttl_seconds)
    if _TTL_SET.get(labels) != current:
        _TTL_SET[labels] = current
        VIEW_TTL.labels(project, layout.name, layout.kind.value).set(layout.ttl_seconds)


# ---------------------------------------------------------------- writes


def record_rows(project: str, layout: ViewLayout, path: str, counts: Sequence[tuple[str, int]]) -> None:
    """Rows of one finished write, by outcome."""
    for outcome, count in counts:
        if count:
            ROWS.labels(project, layout.name, path, outcome).inc(count)
    _view_ttl(project, layout)


# ---------------------------------------------------------------- Redis traffic


def error_kind(error: BaseException) -> str:
    if isinstance(error, redis.AuthenticationError):
        return "auth"
    if isinstance(error, (redis.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(error, (redis.ConnectionError, ConnectionError, OSError)):
        return "connection"
    if isinstance(error, redis.ResponseError):
        return "noscript" if str(error).startswith("NOSCRIPT") else "response"
    return "other"


def _record_round_trip(op: str, started: float, result: Any, error: BaseException | None) -> None:
    ROUND_TRIPS.labels(op).inc()
    ROUND_TRIP_SECONDS.labels(op).observe(time.perf_counter() - started)
    if error is not None:
        ERRORS.labels(op, error_kind(error)).inc()
    elif isinstance(result, list):
        for reply in result:
            if isinstance(reply, Exception):
                ERRORS.labels(op, error_kind(reply)).inc()


def timed(op: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Count and time a function that makes one round trip (sync), and its error replies."""

    def wrap(function: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(function)
        def timed_call(*args: P.args, **kwargs: P.kwargs) -> T:
            if not enabled():
                return function(*args, **kwargs)
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                _record_round_trip(op, started, None, exc)
                raise
            _record_round_trip(op, started, result, None)
            return result

        return timed_call

    return wrap


def timed_async(op: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """`timed` for coroutines."""

    def wrap(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(function)
        async def timed_call(*args: P.args, **kwargs: P.kwargs) -> T:
            if not enabled():
                return await function(*args, **kwargs)
            started = time.perf_counter()
            try:
                result = await function(*args, **kwargs)
            except Exception as exc:
                _record_round_trip(op, started, None, exc)
                raise
            _record_round_trip(op, started, result, None)
            return result

        return timed_call

    return wrap


class AttemptCounter:
    """Wraps the operation a Retry runs, counting its attempts: every one after the first
    is a retry."""

    def __init__(self, do: Callable[[], T]) -> None:
        self.do = do
        self.attempts = 0

    def __call__(self) -> Any:
        self.attempts += 1
        return self.do()

    def record(self) -> None:
        if self.attempts > 1 and enabled():
            RETRIES.inc(self.attempts - 1)
