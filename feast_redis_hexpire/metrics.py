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

import atexit
import bisect
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, ParamSpec, TypeVar

import redis

from .codec import stored_event_micros
from .errors import CorruptStoredValue
from .views import ViewLayout

try:  # importing feast.metrics first puts prometheus_client in multiprocess mode
    from feast import metrics as feast_metrics
except ImportError:  # pragma: no cover - Feast builds without the metrics module
    feast_metrics = None

from prometheus_client import Counter, Gauge, Histogram

FEAST_SERIES = all(
    hasattr(feast_metrics, name) for name in ("online_features_status_total", "online_store_read_duration_seconds")
)
"""Feast's own series the store feeds where it reads past Feast's code (feast_hooks checks them)."""

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("feast_redis_hexpire")

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
_AGE_BOUNDS_US = [int(bound * 1_000_000) for bound in AGE_BUCKETS_SECONDS]

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

DROPPED = Counter(
    "feast_hexpire_metric_samples_dropped_total",
    "Metric samples dropped because the flush to prometheus_client fell behind (it failed, or "
    "a burst outran it) and pending samples reached their bound, by kind: served_age "
    "(entities' served ages), read_seconds (Feast's read-duration observations)",
    ["kind"],
)

LAG_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Event age at write time: a millisecond to five minutes (a backlog being caught up on)."""

INGEST_ENTRIES = Counter(
    "feast_hexpire_stream_entries_total",
    "Redis Stream entries the ingester handled, by outcome: written, skipped (by the write "
    "rules: older than stored, expired, future), dead_letter, deleted (pending but gone from "
    "the stream), claimed (taken over from an idle consumer; also counted by their outcome)",
    ["stream", "group", "outcome"],
)
INGEST_PENDING = Gauge(
    "feast_hexpire_stream_pending_entries",
    "Entries delivered to the group's consumers and not yet acknowledged (XINFO GROUPS pending)",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
INGEST_LAG = Gauge(
    "feast_hexpire_stream_lag_entries",
    "Entries in the stream not yet delivered to the group (XINFO GROUPS lag; absent while the "
    "server cannot tell, e.g. after XDEL)",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
INGEST_AGE = Histogram(
    "feast_hexpire_stream_event_age_seconds",
    "Age of each ingested event when Redis acknowledged writing it: event time to write reply",
    ["stream", "group"],
    buckets=LAG_BUCKETS_SECONDS,
)

EXPORTED = (
    SERVED_AGE,
    READ_OUTCOMES,
    VIEW_TTL,
    ROWS,
    ROUND_TRIPS,
    ROUND_TRIP_SECONDS,
    RETRIES,
    ERRORS,
    INGEST_ENTRIES,
    INGEST_PENDING,
    INGEST_LAG,
    INGEST_AGE,
    DROPPED,
)
"""Every metric this store exports (the dashboard test checks its queries against these)."""


def enabled() -> bool:
    """Feast's metrics are on in this process (`start_metrics_server` replaces the flags
    object, so it is looked up each time; feast_hooks checks the name at start-up)."""
    return bool(getattr(getattr(feast_metrics, "_config", None), "enabled", False))


def exported_names() -> set[str]:
    """The series names a scrape shows, suffixes included."""
    names: set[str] = set()
    for metric in EXPORTED:
        base = next(iter(metric.describe())).name
        if isinstance(metric, Counter):
            names.add(base + "_total")
        elif isinstance(metric, Histogram):
            names.update({base + "_bucket", base + "_sum", base + "_count"})
        else:
            names.add(base)
    return names


# ---------------------------------------------------------------- batching

FLUSH_INTERVAL_S = 1.0
"""How often a process's counts reach prometheus_client. Every increment of a multiprocess
metric is a locked write to a memory-mapped file (about 1 µs); a one-entity read would
make a dozen. Reads and round trips are counted in plain Python under one lock and
flushed by a daemon thread, so a scrape lags by at most this much."""

MAX_PENDING_STAMP_BYTES = 32 * 1024 * 1024
"""Event times of reads awaiting the flush, per process (about 17 bytes an entity): the
flush turns them into histogram counts every second, far below this, even while applying
those counts fails. Only a flush that cannot run (stuck, or slower than the reads) lets
them pile up; reads past the bound keep their outcome counts and drop their served ages
(DROPPED, kind served_age)."""
MAX_PENDING_READ_SECONDS = 100_000
"""Feast read-duration observations awaiting the flush (DROPPED, kind read_seconds)."""
FLUSH_ERROR_LOG_INTERVAL_S = 60.0
"""A failing flush is logged at most once a minute, with the failures since the last log."""

FLUSH_THREAD_NAME = "feast-hexpire-metrics"

Series = tuple[Callable[[Any, tuple[str, ...], Any], None], Any, tuple[str, ...]]
"""One prometheus_client series and how a flush updates it: (apply, metric, label values).
A flush gathers one value per series (see _merge), so what waits for a retried flush is
bounded by the number of series, not by the time flushes have been failing."""


class _ReadSlot:
    """One (project, view)'s read counts since the last flush."""

    __slots__ = ("age_sum_us", "buckets", "layout", "outcomes", "read_times", "stamp_texts")

    def __init__(self, layout: ViewLayout) -> None:
        self.layout = layout
        self.outcomes = [0, 0, 0]  # present, view_absent, entity_absent
        self.age_sum_us = 0
        self.buckets = [0] * (len(AGE_BUCKETS_SECONDS) + 1)
        # each read's time and its present `_ts` values, space-separated: ages are taken at the flush
        self.read_times: list[int] = []
        self.stamp_texts: list[bytes] = []

    def add_ages(self, now_us: int, stamps: Sequence[bytes]) -> None:
        """Present views' event times: their ages, `now_us` minus each (0 for an event time
        ahead of this clock), into the buckets. Runs at the flush, off the request: sorted
        once, then one bisection per bucket bound, in C rather than a loop per entity."""
        try:
            times = sorted(map(int, stamps))
        except ValueError:
            times = sorted(_stored_micros(stamp) for stamp in stamps)
        past = bisect.bisect_right(times, now_us)  # times[past:] are ahead of now: age 0
        self.age_sum_us += past * now_us - sum(times[:past])
        buckets, total, below = self.buckets, len(times), 0
        for index, bound in enumerate(_AGE_BOUNDS_US):
            within = total - bisect.bisect_left(times, now_us - bound)  # age <= bound
            buckets[index] += within - below
            below = within
        buckets[-1] += total - below


class _Pending:
    """Counts not yet flushed, and the flusher thread of this process (gunicorn forks
    workers: each starts its own on first use).

    The thread must outlive any error: if it died, the lists of pending samples would
    grow with every read for the life of the process. A flush that fails is logged (see
    FLUSH_ERROR_LOG_INTERVAL_S) and what it could not apply is retried at the next tick.
    Everything pending is bounded: counts and histograms by their number of series,
    samples by MAX_PENDING_STAMP_BYTES and MAX_PENDING_READ_SECONDS, past which they are
    dropped and counted (DROPPED)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reads: dict[tuple[str, str], _ReadSlot] = {}
        self.stamp_bytes = 0  # of every slot's stamp_texts
        self.trips: dict[str, list[Any]] = {}  # op: [count, seconds, latency buckets]
        self.feast_statuses: dict[tuple[str, str], int] = {}  # Feast's own counter, fed by the store
        self.feast_read_seconds: list[float] = []
        self.dropped: dict[str, int] = {}  # DROPPED's counts by kind, not yet flushed
        self.unpublished: dict[Series, Any] = {}  # what failed flushes could not apply yet
        self.flushing = threading.Lock()  # one flush at a time: the thread, atexit, tests
        self.failures = 0  # failed flushes since the last one logged
        self.logged_at: float | None = None
        self.ingest: dict[tuple[str, str], list[Any]] = {}  # (stream, group): [outcome counts, age sum, age buckets]
        self._pid = 0

    def slot(self, project: str, layout: ViewLayout) -> _ReadSlot:
        """The view's counts since the last flush (hold the lock)."""
        slot = self.reads.get((project, layout.name))
        if slot is None:
            slot = self.reads[(project, layout.name)] = _ReadSlot(layout)
        return slot

    def drop(self, kind: str, count: int) -> None:
        """Samples dropped past a bound (hold the lock)."""
        self.dropped[kind] = self.dropped.get(kind, 0) + count

    def started(self) -> None:
        if self._pid != os.getpid():
            with self.lock:
                if self._pid == os.getpid():
                    return
                self._pid = os.getpid()
            threading.Thread(target=self._run, name=FLUSH_THREAD_NAME, daemon=True).start()
            atexit.register(self.flush_logged)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            self.flush_logged()

    def flush_logged(self) -> None:
        """flush, with its failure logged instead of raised: the thread lives on."""
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - any error: a dead flusher is the worse failure
            self.failures += 1
            now = time.monotonic()
            if self.logged_at is None or now - self.logged_at >= FLUSH_ERROR_LOG_INTERVAL_S:
                logger.warning(
                    "feast_redis_hexpire: flushing metrics to prometheus_client failed (%d times since the "
                    "last such warning; at most one a minute): %r. Counts are kept for the next flush, "
                    "within bounds; what is dropped is counted in feast_hexpire_metric_samples_dropped_total.",
                    self.failures,
                    exc,
                )
                self.logged_at, self.failures = now, 0

    def flush(self) -> None:
        """Hand what was counted to prometheus_client, together with what earlier flushes
        could not. A series whose update fails is kept for the next flush (merged with what
        comes) while the others go on; then the first error is raised."""
        with self.flushing:
            with self.lock:
                reads, self.reads, self.stamp_bytes = self.reads, {}, 0
                trips, self.trips = self.trips, {}
                statuses, self.feast_statuses = self.feast_statuses, {}
                read_seconds, self.feast_read_seconds = self.feast_read_seconds, []
                dropped, self.dropped = self.dropped, {}
                ingest, self.ingest = self.ingest, {}
            updates = self.unpublished
            for series, value in _updates(reads, trips, statuses, read_seconds, dropped, ingest):
                _merge(updates, series, value)
            failed: BaseException | None = None
            for series in list(updates):
                apply, metric, labels = series
                try:
                    apply(metric, labels, updates[series])
                except Exception as exc:  # noqa: BLE001 - kept for the next flush; the others go on
                    failed = failed or exc
                else:
                    del updates[series]
            if failed is not None:
                raise failed


def _updates(
    reads: dict[tuple[str, str], _ReadSlot],
    trips: dict[str, list[Any]],
    statuses: dict[tuple[str, str], int],
    read_seconds: list[float],
    dropped: dict[str, int],
    ingest: dict[tuple[str, str], list[Any]],
) -> Iterator[tuple[Series, Any]]:
    """What one flush adds to each series."""
    for (project, view), slot in reads.items():
        for now_us, text in zip(slot.read_times, slot.stamp_texts):
            slot.add_ages(now_us, text.split(b" "))
        yield (_set_view_ttl, None, (project, view)), slot.layout
        for outcome, count in zip(("present", "view_absent", "entity_absent"), slot.outcomes):
            if count:
                yield (_inc, READ_OUTCOMES, (project, view, outcome)), count
        if slot.outcomes[0]:
            yield (_observe_many, SERVED_AGE, (project, view)), (slot.buckets, slot.age_sum_us / 1_000_000)
    for op, (count, seconds, buckets) in trips.items():
        yield (_inc, ROUND_TRIPS, (op,)), count
        yield (_observe_many, ROUND_TRIP_SECONDS, (op,)), (buckets, seconds)
    if FEAST_SERIES:
        for (view, status), count in statuses.items():
            if count:
                yield (_inc, feast_metrics.online_features_status_total, (view, status)), count
        if read_seconds:
            yield (_observe_each, feast_metrics.online_store_read_duration_seconds, ()), read_seconds
    for kind, count in dropped.items():
        yield (_inc, DROPPED, (kind,)), count
    for (stream, group), (outcomes, age_sum, buckets) in ingest.items():
        for outcome, count in outcomes.items():
            yield (_inc, INGEST_ENTRIES, (stream, group, outcome)), count
        if any(buckets):
            yield (_observe_many, INGEST_AGE, (stream, group)), (buckets, age_sum)


def _merge(updates: dict[Series, Any], series: Series, value: Any) -> None:
    """Add one flush's value for a series to what is waiting for it."""
    waiting = updates.get(series)
    apply = series[0]
    if waiting is None or apply is _set_view_ttl:  # a gauge: the latest value
        updates[series] = value
    elif apply is _inc:
        updates[series] = waiting + value
    elif apply is _observe_many:
        updates[series] = ([a + b for a, b in zip(waiting[0], value[0])], waiting[1] + value[1])
    else:  # _observe_each: single observations, bounded
        merged = waiting + value
        excess = len(merged) - MAX_PENDING_READ_SECONDS
        if excess > 0:
            del merged[:excess]
            _merge(updates, (_inc, DROPPED, ("read_seconds",)), excess)
        updates[series] = merged


def _inc(metric: Any, labels: tuple[str, ...], amount: float) -> None:
    metric.labels(*labels).inc(amount)


def _observe_many(metric: Any, labels: tuple[str, ...], value: tuple[Sequence[int], float]) -> None:
    buckets, total = value
    add_to_histogram(metric.labels(*labels), buckets, total)


def _observe_each(metric: Any, labels: tuple[str, ...], values: list[float]) -> None:
    """Observe each value, keeping in `values` only those not observed yet."""
    for observed, value in enumerate(values):
        try:
            metric.observe(value)
        except BaseException:
            del values[:observed]
            raise


def _set_view_ttl(metric: Any, labels: tuple[str, ...], layout: ViewLayout) -> None:
    _view_ttl(labels[0], layout)


def add_to_histogram(child: Any, buckets: Sequence[int], total: float) -> None:
    """Many observations at once: `buckets[i]` observations in bucket i (not cumulative; the
    last is +Inf) summing to `total`. The store's only use of prometheus_client internals:
    its public API observes one value at a time, and its histogram keeps a value per bucket
    (made cumulative when exposed) and a sum. test_metrics checks this against `observe()`
    on the installed prometheus_client, so a change there fails a test, not a flush."""
    child._sum.inc(total)
    for index, count in enumerate(buckets):
        if count:
            child._buckets[index].inc(count)


PENDING = _Pending()


def flush() -> None:
    """Flush now (tests, and a process about to be scraped)."""
    PENDING.flush()


def feast_read(seconds: float, statuses: Iterable[tuple[str, int, int]]) -> None:
    """Feast's own metrics of a read the store served itself: the store-read duration and
    PRESENT / NOT_FOUND values per view (what Feast's generic path records)."""
    with PENDING.lock:
        if len(PENDING.feast_read_seconds) < MAX_PENDING_READ_SECONDS:
            PENDING.feast_read_seconds.append(seconds)
        else:
            PENDING.drop("read_seconds", 1)
        counts = PENDING.feast_statuses
        for view, present, not_found in statuses:
            counts[(view, "present")] = counts.get((view, "present"), 0) + present
            counts[(view, "not_found")] = counts.get((view, "not_found"), 0) + not_found
    PENDING.started()


# ---------------------------------------------------------------- reads


class ViewServed(NamedTuple):
    """One view's part of a read: which entities it was read for, and where its event time
    sits in their HMGET replies. Views read from the same entities share one `keys` list."""

    layout: ViewLayout
    keys: Sequence[bytes]
    replies: Sequence[Sequence[bytes | None]]
    ts_at: int


@dataclass
class ReadTally:
    """The views of entities where no requested view was present: the key may not exist
    at all. `record` takes whether each `unsure` key exists (one pipelined EXISTS round
    trip, only while metrics are on and only for such entities)."""

    project: str
    absent: list[tuple[ViewLayout, bytes]]
    unsure: list[bytes]

    def record(self, exists: Sequence[bool] | None) -> None:
        """`exists`: whether each `unsure` key exists; None when that could not be asked
        (the error counter has it), and then they count as entity_absent."""
        existing = {key for key, found in zip(self.unsure, exists or ()) if found}
        with PENDING.lock:
            for layout, key in self.absent:
                PENDING.slot(self.project, layout).outcomes[1 if key in existing else 2] += 1


def tally_reads(project: str, views: Sequence[ViewServed]) -> ReadTally | None:
    """Count one read: each view's present and absent entities now, their event times for
    the flush to turn into ages (now minus `_ts`, bucketed): the request pays for a list
    per view, not for the histogram. An absent view of an entity with another requested
    view present is view_absent for sure (the key exists); when no requested view of an
    entity is present, the returned tally asks EXISTS. None when nothing is left to ask."""
    now_us = time.time_ns() // 1000
    read = [(view, [reply[view.ts_at] for reply in view.replies]) for view in views]
    unsure: list[tuple[ViewLayout, bytes]] = []
    with PENDING.lock:
        for view, stamps in read:
            absent = stamps.count(None)
            slot = PENDING.slot(project, view.layout)
            slot.outcomes[0] += len(stamps) - absent
            if absent:
                nobody = _entities_with_no_view(view, read)
                slot.outcomes[1] += absent - len(nobody)
                unsure.extend((view.layout, view.keys[index]) for index in nobody)
            if absent < len(stamps):  # kept as one bytes object: nothing for the GC to traverse
                text = b" ".join([stamp for stamp in stamps if stamp is not None])
                if PENDING.stamp_bytes + len(text) <= MAX_PENDING_STAMP_BYTES:
                    PENDING.stamp_bytes += len(text)
                    slot.read_times.append(now_us)
                    slot.stamp_texts.append(text)
                else:
                    PENDING.drop("served_age", len(stamps) - absent)
    PENDING.started()
    if not unsure:
        return None
    return ReadTally(project, unsure, sorted({key for _, key in unsure}))


def _entities_with_no_view(view: ViewServed, read: list[tuple[ViewServed, list[bytes | None]]]) -> list[int]:
    """The entities of `view`'s group for which no requested view is present."""
    group = [stamps for other, stamps in read if other.keys is view.keys]
    if not all(None in stamps for stamps in group):
        return []
    return [index for index in range(len(group[0])) if all(stamps[index] is None for stamps in group)]


def _stored_micros(raw: bytes) -> int:
    """An event time int() cannot read: ISO text of old versions; corrupt text counts as
    age 0 here (the read itself reports it), so metrics never fail a read."""
    try:
        return stored_event_micros(raw)
    except CorruptStoredValue:
        return time.time_ns() // 1000


_TTL_SET: dict[tuple[str, str], tuple[str, int]] = {}


def _view_ttl(project: str, layout: ViewLayout) -> None:
    """The TTL gauge beside a view's served age, set when it changes."""
    labels = (project, layout.name)
    current = (layout.kind.value, layout.ttl_seconds)
    if _TTL_SET.get(labels) != current:
        VIEW_TTL.labels(project, layout.name, layout.kind.value).set(layout.ttl_seconds)
        _TTL_SET[labels] = current


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
    seconds = time.perf_counter() - started
    with PENDING.lock:
        slot = PENDING.trips.get(op)
        if slot is None:
            slot = PENDING.trips[op] = [0, 0.0, [0] * (len(LATENCY_BUCKETS_SECONDS) + 1)]
        slot[0] += 1
        slot[1] += seconds
        slot[2][bisect.bisect_left(LATENCY_BUCKETS_SECONDS, seconds)] += 1
    PENDING.started()
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


# ---------------------------------------------------------------- the stream ingester


def _ingest_slot(stream: str, group: str) -> list[Any]:
    """A (stream, group)'s counts since the last flush (hold the lock)."""
    slot = PENDING.ingest.get((stream, group))
    if slot is None:
        slot = PENDING.ingest[(stream, group)] = [{}, 0.0, [0] * (len(LAG_BUCKETS_SECONDS) + 1)]
    return slot


def ingest_entries(stream: str, group: str, counts: Iterable[tuple[str, int]]) -> None:
    """Entries of one ingested batch, by outcome."""
    if not enabled():
        return
    with PENDING.lock:
        outcomes = _ingest_slot(stream, group)[0]
        for outcome, count in counts:
            if count:
                outcomes[outcome] = outcomes.get(outcome, 0) + count
    PENDING.started()


def ingest_ages(stream: str, group: str, now_us: int, event_micros: Sequence[int]) -> None:
    """Ages (`now_us` minus each event time, 0 for one ahead of this clock) of a batch the
    store just acknowledged writing, bucketed here: one sort and a bisection per bound."""
    if not enabled() or not event_micros:
        return
    ages = sorted(max(0, now_us - micros) for micros in event_micros)
    buckets, below = [0] * (len(LAG_BUCKETS_SECONDS) + 1), 0
    for index, bound in enumerate(LAG_BUCKETS_SECONDS):
        within = bisect.bisect_right(ages, bound * 1_000_000)
        buckets[index] = within - below
        below = within
    buckets[-1] = len(ages) - below
    with PENDING.lock:
        slot = _ingest_slot(stream, group)
        slot[1] += sum(ages) / 1_000_000
        slot[2] = [a + b for a, b in zip(slot[2], buckets)]
    PENDING.started()


def ingest_group_state(stream: str, group: str, pending: int | None, lag: int | None) -> None:
    """The group's pending count and lag as XINFO GROUPS reported them (lag may be unknown)."""
    if pending is not None:
        INGEST_PENDING.labels(stream, group).set(pending)
    if lag is not None:
        INGEST_LAG.labels(stream, group).set(lag)


def flush_ingest() -> None:
    """Hand the ingester's counts over now (it is stopping)."""
    if enabled():
        PENDING.flush_logged()
