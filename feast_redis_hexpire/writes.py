"""The write path, without I/O: rows become script calls, script replies become a report.

Sync and async share all of it; `redis_io` only sends. Every row of a batch is validated
and encoded before anything is sent, so a bad row changes nothing stored. The argument
layout is the write script's contract (write_script.lua).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from redis.crc import key_slot

from .codec import encode_value, event_ts_micros
from .config import RedisHexpireOnlineStoreConfig
from .errors import FieldExpiryError, HexpireError, InvalidEntityKey, InvalidFeatureValue, UnknownFeature, WriteFailed
from .keys import key_builder
from .redis_version import FieldExpiry
from .server_checks import is_permission_error, permission_error, redis_error_text
from .views import ViewKind, ViewLayout
from .write_rules import event_ttl_ms, expiry_ms, numeric
from .write_script import (
    BATCH_MODE,
    EXPIRED,
    FUTURE,
    HSETEX_FLAG,
    LAST_WRITE_MODE,
    NUMERIC,
    STALE,
    STREAM_MODE,
    WRITTEN,
)

logger = logging.getLogger("feast_redis_hexpire")

WriteRow = tuple[EntityKeyProto, dict[str, ValueProto], datetime, "datetime | None"]

ENTITIES_PER_CALL = 100
"""Entities one script call writes. Larger calls spread the script's fixed cost (argument
conversion, the clock read) over more rows; smaller ones keep any one call short, so reads
queued behind it wait less. 100 costs ~0.5 ms of server time (benchmarks/PROFILE.md)."""


# ---------------------------------------------------------------- planning


Shape = tuple[tuple[bytes, ...], tuple[bytes, ...]]
"""The hash fields a row sets (its view's `_ts` field first) and deletes."""


@dataclass(slots=True)
class EntityWrite:
    """One row as the script receives it: the key, its record (see write_script.lua: the
    expiry for expiring stream rows, the event time, the values) and its shape. Rows of
    one script call share a shape, so field names travel once per call."""

    key: bytes
    record: list[Any]
    shape: Shape
    numeric: bool  # write_rules.numeric: the script compares this row's times as numbers


@dataclass
class WritePlan:
    """A view's validated, encoded rows."""

    layout: ViewLayout
    head: list[Any]  # mode, ttl_ms, max_future_us
    rows: list[EntityWrite]


def write_head(layout: ViewLayout, config: RedisHexpireOnlineStoreConfig) -> list[Any]:
    if not layout.newest_wins:
        mode = LAST_WRITE_MODE
    else:
        mode = STREAM_MODE if layout.kind is ViewKind.stream else BATCH_MODE
    future = b"" if config.max_future_seconds is None else config.max_future_seconds * 1_000_000
    return [mode, layout.ttl_millis, future]


def plan_writes(
    layout: ViewLayout, config: RedisHexpireOnlineStoreConfig, prefix: str, data: Sequence[WriteRow]
) -> WritePlan:
    """Validate and encode every row. Values named like one of the view's join keys are
    the entity itself (Feast passes them for on-demand and stream views): not stored.
    `arrow_writes` builds the same records from Arrow columns (HexpireProvider), with the
    same write_rules and keys functions (tests/test_provider.py compares the two)."""
    view = layout.name
    features = layout.features
    join_keys = set(layout.join_keys)
    ts_field = layout.ts_field
    key_of = key_builder(prefix, layout.join_keys)
    ttl_ms = event_ttl_ms(layout)
    times: dict[datetime, tuple[bytes, bytes | None, bool]] = {}  # rows of one batch often share event times
    shapes: dict[Shape, Shape] = {}  # one tuple object per distinct shape
    rows: list[EntityWrite] = []
    for row_number, (entity_key, values, event_ts, _created) in enumerate(data):
        try:
            key = key_of(entity_key)
        except InvalidEntityKey as exc:
            raise InvalidEntityKey(
                f"view {view!r}, row {row_number}: {exc}", view=view, feature=exc.feature, value=exc.value
            ) from None
        if event_ts is None:
            text = key.decode(errors="replace")
            raise InvalidFeatureValue(
                f"view {view!r}: row {row_number} for {text} has no event timestamp", view=view, key=text
            )
        encoded = times.get(event_ts)
        if encoded is None:
            encoded = times[event_ts] = encode_time(event_ts, ttl_ms)
        encoded_time, expire_text, numeric = encoded
        record: list[Any] = [encoded_time] if expire_text is None else [expire_text, encoded_time]
        fields = [ts_field]
        deletes: list[bytes] = []
        for name, value in values.items():
            feature = features.get(name)
            if feature is None:
                if name in join_keys:
                    continue
                raise UnknownFeature(
                    f"view {view!r}: unknown feature {name!r} in row {row_number} "
                    f"(the view declares {', '.join(sorted(features)) or 'no features'})",
                    view=view,
                    key=key.decode(errors="replace"),
                    feature=name,
                )
            codec = feature.codec
            kind = value.WhichOneof("val")
            if kind == codec.proto_field:
                fields.append(feature.field)
                record.append(codec.encode(getattr(value, kind)))
            elif encode_value(codec, value, view=view, feature=name) is None:  # null, or raises
                deletes.append(feature.field)
        shape = (tuple(fields), tuple(deletes))
        rows.append(EntityWrite(key, record, shapes.setdefault(shape, shape), numeric))
    return WritePlan(layout, write_head(layout, config), rows)


def encode_time(event_ts: datetime, ttl_ms: int | None) -> tuple[bytes, bytes | None, bool]:
    """The event time as the script receives it (epoch microseconds), for expiring stream
    rows its expiry (epoch milliseconds), and whether they must be compared as numbers."""
    micros = event_ts_micros(event_ts)
    if ttl_ms is None:
        return b"%d" % micros, None, bool(numeric(micros))
    expire = expiry_ms(micros, ttl_ms)
    return b"%d" % micros, b"%d" % expire, bool(numeric(micros, expire))


# ---------------------------------------------------------------- script calls


@dataclass(slots=True)
class ScriptCall:
    """One EVALSHA: the keys (one cluster slot) and the arguments after them."""

    rows: list[EntityWrite]
    args: list[Any]


def script_calls(
    plan: WritePlan, rows: Sequence[EntityWrite], *, by_slot: bool, expiry: FieldExpiry
) -> list[ScriptCall]:
    """Group rows into calls of up to ENTITIES_PER_CALL rows of one shape. On Redis
    Cluster one call may only touch one slot, so rows are also grouped by slot (with
    `hash_tag: project` that is one group). Whatever the grouping, the newest event time
    of an entity wins: the script compares each row with what is stored. `expiry` is the
    commands the server sets expiring fields with (the start-up check chose them)."""
    hsetex = HSETEX_FLAG if expiry is FieldExpiry.hsetex else b""
    groups: dict[tuple[int, Shape], list[EntityWrite]] = {}
    for row in rows:
        slot = key_slot(row.key) if by_slot else 0
        groups.setdefault((slot, row.shape), []).append(row)
    calls = []
    for (_slot, (fields, deletes)), group in groups.items():
        for start in range(0, len(group), ENTITIES_PER_CALL):
            part = group[start : start + ENTITIES_PER_CALL]
            flags = hsetex + NUMERIC if any(row.numeric for row in part) else hsetex
            args: list[Any] = [*plan.head, flags, len(fields), len(deletes), *fields, *deletes]
            for row in part:
                args.extend(row.record)
            calls.append(ScriptCall(part, args))
    return calls


def chunks(rows: Sequence[EntityWrite], size: int) -> Iterator[Sequence[EntityWrite]]:
    """Rows per round trip (`write_chunk_size`)."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


# ---------------------------------------------------------------- replies


@dataclass
class WriteReport:
    written: int = 0
    stale: int = 0  # older than what was stored: skipped
    expired: int = 0  # stream rows already past their expiry: skipped
    future: int = 0  # event time too far ahead of the server clock: skipped

    def add(self, other: WriteReport) -> None:
        self.written += other.written
        self.stale += other.stale
        self.expired += other.expired
        self.future += other.future

    @property
    def skipped(self) -> int:
        return self.stale + self.expired + self.future

    def outcomes(self) -> list[tuple[str, int]]:
        """The counts by the outcome names the metrics use."""
        return [
            ("written", self.written),
            ("skipped_stale", self.stale),
            ("skipped_expired", self.expired),
            ("skipped_future", self.future),
        ]


def tally(plan: WritePlan, calls: Sequence[ScriptCall], replies: Sequence[Any], where: str) -> WriteReport:
    """Count the script's per-row codes. A refused call (out of memory, no permission) or a
    refused row (wrong type, expiry not set) raises, naming the key, the view and Redis's
    own message; rows of earlier calls stay written, each one whole."""
    report, failure = plan_report(plan, calls, replies, where)
    if failure is not None:
        raise failure from failure.__cause__
    return report


def plan_report(
    plan: WritePlan, calls: Sequence[ScriptCall], replies: Sequence[Any], where: str
) -> tuple[WriteReport, HexpireError | None]:
    """Every row's script code counted, and the first refused row or call as an error
    (None if none was). A call whose every row has a code is counted in bulk: a function
    call per row was a tenth of a batch write's client time."""
    report = WriteReport()
    failure: HexpireError | None = None
    for call, reply in zip(calls, replies):
        if type(reply) is list and len(reply) == len(call.rows) and _CODES.issuperset(reply):
            written = reply.count(WRITTEN)
            report.written += written
            if written != len(reply):
                report.stale += reply.count(STALE)
                report.expired += reply.count(EXPIRED)
                report.future += reply.count(FUTURE)
            continue
        for _row, outcome in row_outcomes(plan, [call], [reply], where):
            if isinstance(outcome, HexpireError):
                failure = failure or outcome
            else:
                count(report, outcome)
    return report, failure


def count(report: WriteReport, code: int) -> None:
    """Add one row's script code (WRITTEN, STALE, EXPIRED or FUTURE) to a report."""
    if code == WRITTEN:
        report.written += 1
    elif code == STALE:
        report.stale += 1
    elif code == EXPIRED:
        report.expired += 1
    else:
        report.future += 1


def row_outcomes(
    plan: WritePlan, calls: Sequence[ScriptCall], replies: Sequence[Any], where: str
) -> Iterator[tuple[EntityWrite, int | HexpireError]]:
    """Each row with its script code, or the error that refused it (a refused call refuses
    every row of it). `tally` counts them; the per-event writer's coalescing hands each
    caller its own rows' outcomes."""
    view = plan.layout.name
    for call, reply in zip(calls, replies):
        if isinstance(reply, BaseException):
            error = _call_failed(call, reply, view, where)
            error.__cause__ = reply
            for row in call.rows:
                yield row, error
            continue
        for row, code in zip(call.rows, reply):
            if code in _CODES:
                yield row, code
            else:
                error = _row_failed(row, code, view, where)
                error.__cause__ = code if isinstance(code, BaseException) else None
                yield row, error


_CODES = frozenset((WRITTEN, STALE, EXPIRED, FUTURE))


def _call_failed(call: ScriptCall, error: BaseException, view: str, where: str) -> HexpireError:
    first = call.rows[0].key.decode(errors="replace")
    keys = first if len(call.rows) == 1 else f"{first} and {len(call.rows) - 1} more keys"
    if is_permission_error(error):
        return permission_error(
            error, where, f"writing view {view!r} to {keys}", keys="keys like " + first, view=view, key=keys
        )
    return WriteFailed(
        f"write of view {view!r} to {keys} on Redis at {where} failed: {redis_error_text(error)}",
        view=view,
        key=keys,
        cause=error,
    )


def _row_failed(row: EntityWrite, reply: Any, view: str, where: str) -> HexpireError:
    key = row.key.decode(errors="replace")
    text = redis_error_text(reply)
    cause = reply if isinstance(reply, BaseException) else None
    if "HEXPIRE_FAILED" in text:
        return FieldExpiryError(
            f"write of view {view!r} to {key}: {text.replace('HEXPIRE_FAILED ', '')}", view=view, key=key, cause=cause
        )
    if is_permission_error(reply):
        return permission_error(reply, where, f"writing view {view!r} to {key}", keys=key, view=view, key=key)
    return WriteFailed(
        f"write of view {view!r} to {key} on Redis at {where} failed: {text}", view=view, key=key, cause=cause
    )


# ---------------------------------------------------------------- the report, for people


def skipped_rows_message(layout: ViewLayout, report: WriteReport, config: RedisHexpireOnlineStoreConfig) -> str:
    """What a WARNING says when rows were not written: how many, why, and what changes it."""
    total = report.written + report.skipped
    reasons = []
    if report.stale:
        reasons.append(
            f"{report.stale} older than the event time already stored (newest wins; re-materialize "
            "a newer range or push newer events to replace them)"
        )
    if report.expired:
        reasons.append(
            f"{report.expired} already past their expiry (event time + {layout.ttl_seconds} s, the TTL "
            f"from {layout.ttl_source}; raise it with the view's tag hexpire.ttl_seconds, its Feast "
            "ttl= or stream_ttl_seconds to keep older events)"
        )
    if report.future:
        reasons.append(
            f"{report.future} dated more than {config.max_future_seconds} s ahead of the server clock "
            "(max_future_seconds; check the event-time column and the producers' clocks)"
        )
    return f"view {layout.name!r}: wrote {report.written} of {total} rows; skipped " + "; ".join(reasons)


class SkippedRowWarnings:
    """At production push rates most calls may skip a row (a late event, a replay), and a
    WARNING per call drowns the log. Each view's first warning is logged as it comes; after
    it, at most one per view per INTERVAL_S, carrying the counts since the last one. The
    metrics (`feast_hexpire_rows_total`) carry the exact totals."""

    INTERVAL_S = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._since: dict[str, tuple[WriteReport, int]] = {}  # counts and calls since the last warning

    def message(self, layout: ViewLayout, report: WriteReport, config: RedisHexpireOnlineStoreConfig) -> str | None:
        """The warning to log for this write, or None while the view's interval runs."""
        with self._lock:
            name = layout.name
            last = self._last.get(name)
            if last is None:
                if not report.skipped:
                    return None
                self._last[name] = self._clock()
                return skipped_rows_message(layout, report, config)
            since, calls = self._since.get(name) or (WriteReport(), 0)
            since.add(report)
            calls += 1
            now = self._clock()
            if not since.skipped or now - last < self.INTERVAL_S:
                self._since[name] = (since, calls)
                return None
            self._last[name] = now
            self._since.pop(name, None)
        return (
            f"{skipped_rows_message(layout, since, config)} "
            f"(in {calls} write calls over the last {now - last:.0f} s; at most one such warning per view "
            f"every {self.INTERVAL_S:.0f} s)"
        )


ProgressCallback = Callable[[int], Any] | None
