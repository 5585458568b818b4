"""The per-event write API: a stream processor's events straight into the store.

    writer = EventWriter(store, "driver_stats_push")       # a push source, or a view name
    result = writer.write({"driver_id": 1001, "conv_rate": 0.5, "event_timestamp": now})

`store.push` rebuilds every view from the registry, builds a DataFrame and Arrow table,
and validates it on each call: for one event, twenty times the round trip. A writer
resolves its source once per registry version (`_Resolution`) and then does per call only
what an event needs: a walk over its dict, the encode (event_values), and one pipelined
round trip (one per node on a cluster) for every event and view of the call. The rules are
the store's own: the write plan is `writes`' EntityWrite records, sent by `redis_io`
through the same write script (newest wins, event-time expiry, future bound), counted and
warned about by the store's `record_write` under the metrics path label "events".

Unlike push, an unknown field is an error (a typo must not pass silently), and a feature
left out of an event is not written: what is stored for it stays. An explicit None
deletes it, as a null does on every write path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.value_type import ValueType

from . import redis_io
from .arrow_writes import ArrowViewEncoder, FeatureColumn
from .codec import short_repr
from .config import RedisHexpireOnlineStoreConfig
from .direct_access import PerRegistryVersion, StoreClients, online_store_of
from .errors import ConfigError, HexpireError, InvalidEntityKey, InvalidFeatureValue, InvalidInput, UnknownFeature
from .event_values import KeyEncoder, ValueEncoder, key_encoder, value_encoder
from .keys import join_key_head
from .store import key_prefix_of, layout_of, store_config_of
from .views import DUMMY_JOIN_KEY, ViewLayout
from .write_rules import event_ttl_ms
from .writes import (
    EntityWrite,
    Shape,
    WritePlan,
    WriteReport,
    count,
    encode_time,
    plan_report,
    row_outcomes,
    write_head,
)

__all__ = ["AsyncEventWriter", "EventWriteResult", "EventWriter", "Events"]

logger = logging.getLogger("feast_redis_hexpire")

PATH = "events"
"""The `path` label of this API's rows in feast_hexpire_rows_total."""

Events: TypeAlias = Mapping[str, Any] | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | pa.Table
"""One event (a dict), a list of them, columns (name -> list of values), or an Arrow table."""


@dataclass(frozen=True)
class EventWriteResult:
    """What one write did, in rows (an event feeding two views is two rows), by the
    outcomes every write path counts (writes.WriteReport)."""

    written: int = 0
    stale: int = 0  # older than the event time already stored: newest wins, skipped
    expired: int = 0  # a stream row already past its expiry: skipped
    future: int = 0  # dated too far ahead of the server clock (max_future_seconds): skipped

    @property
    def skipped(self) -> int:
        return self.stale + self.expired + self.future

    @classmethod
    def of(cls, report: WriteReport) -> EventWriteResult:
        return cls(report.written, report.stale, report.expired, report.future)


# ---------------------------------------------------------------- one view, resolved


@dataclass
class _ViewEvents:
    """One view fed by the source: how an event's values become its row."""

    layout: ViewLayout
    head: list[Any]
    ttl_ms: int | None
    prefix: str
    keys: list[tuple[str, str, KeyEncoder]]  # (input name, view join key, encoder), by join key
    features: list[tuple[str, bytes, ValueEncoder]]  # (input name, hash field, encoder), view order
    feature_names: frozenset[str]  # input names of the features
    timestamp: str  # input name of the event-time column
    encoder: ArrowViewEncoder  # for Arrow tables: arrow_writes, column by column
    mapping: dict[str, str]  # input name -> the view's column name (batch_source.field_mapping)
    shapes: dict[tuple[int, int], Shape] = field(default_factory=dict)  # by (set, deleted) feature bits
    full_shape: Shape = field(init=False)  # the shape of a row that sets every feature

    def __post_init__(self) -> None:
        self.full_shape = self._shape((1 << len(self.features)) - 1, 0)

    def row(self, event: Mapping[str, Any], micros: tuple[bytes, bytes | None, bool]) -> EntityWrite | None:
        """The event's row, or None when it carries none of the view's features. An event
        that sets every feature (the common one) takes one comprehension; any other is
        walked feature by feature (`_partial_row`)."""
        if type(event) is not dict:  # a mapping's [] may make a missing value (defaultdict)
            return self._partial_row(event, micros)
        try:
            values = [encode(event[name]) for name, _field, encode in self.features]
        except KeyError:  # a feature left out (or an encoder's own KeyError, raised again there)
            return self._partial_row(event, micros)
        if None in values or not values:  # a null deletes its field: a shape of its own
            return self._partial_row(event, micros)
        encoded_time, expire_text, numeric = micros
        record = [encoded_time, *values] if expire_text is None else [expire_text, encoded_time, *values]
        return EntityWrite(self.key(event), record, self.full_shape, numeric)

    def _partial_row(self, event: Mapping[str, Any], micros: tuple[bytes, bytes | None, bool]) -> EntityWrite | None:
        """The features the event sets and deletes, as bits, pick its shape (interned: a
        call groups its rows by shape, and field names travel once per script call)."""
        encoded_time, expire_text, numeric = micros
        record: list[Any] = [encoded_time] if expire_text is None else [expire_text, encoded_time]
        append = record.append
        written = deleted = 0
        bit = 1
        for name, _field, encode in self.features:
            if name in event:
                value = encode(event[name])
                if value is None:
                    deleted |= bit
                else:
                    append(value)
                    written |= bit
            bit <<= 1
        if not (written or deleted):
            return None
        shape = self.shapes.get((written, deleted))
        if shape is None:
            shape = self._shape(written, deleted)
        return EntityWrite(self.key(event), record, shape, numeric)

    def _shape(self, written: int, deleted: int) -> Shape:
        fields = [self.layout.ts_field]
        deletes = []
        for position, (_name, hash_field, _encode) in enumerate(self.features):
            if written >> position & 1:
                fields.append(hash_field)
            elif deleted >> position & 1:
                deletes.append(hash_field)
        shape = (tuple(fields), tuple(deletes))
        if len(self.shapes) > 1024:  # many patterns of left-out features: stop growing
            self.shapes.clear()
        self.shapes[(written, deleted)] = shape
        return shape

    def key(self, event: Mapping[str, Any]) -> bytes:
        """keys.key_texts' spelling for one event: `<prefix><join key>=<value>[:...]`."""
        heads = self.heads
        if len(heads) == 1:
            name, head, encode = heads[0]
            if name in event:
                return (head + encode(event[name])).encode()
            self._missing(name)
        parts = []
        for name, head, encode in heads:
            if name not in event:
                self._missing(name)
            parts.append(head + encode(event[name]))
        return (self.prefix + ":".join(parts)).encode()

    def _missing(self, name: str) -> None:
        raise InvalidEntityKey(
            f"view {self.layout.name!r}: the event has no join key {name!r} "
            f"(it sets the view's features; its keys are {', '.join(n for n, _, _ in self.keys)})",
            view=self.layout.name,
            feature=name,
        )

    @property
    def heads(self) -> list[tuple[str, str, KeyEncoder]]:
        """(input name, `<join key>=` with the prefix in front when it is the only key, encoder)."""
        heads = self._heads
        if heads is None:
            single = len(self.keys) == 1
            heads = self._heads = [
                (name, (self.prefix if single else "") + join_key_head(join_key), encode)
                for name, join_key, encode in self.keys
            ]
        return heads

    _heads: list[tuple[str, str, KeyEncoder]] | None = None


def _view_events(view: Any, store: Any) -> _ViewEvents:
    config = store.config
    layout = layout_of(view, config)
    source = getattr(view, "batch_source", None)
    if source is None or not source.timestamp_field:
        raise ConfigError(f"view {view.name!r} has no batch source with a timestamp field: it cannot take events")
    if layout.join_keys == (DUMMY_JOIN_KEY,):
        raise ConfigError(f"view {view.name!r} has no entities: the per-event API writes entity views only")
    mapping = dict(source.field_mapping or {})
    reverse = {target: name for name, target in mapping.items()}
    join_keys = sorted((column.name, column.dtype.to_value_type()) for column in view.entity_columns)
    store_config = store_config_of(config)
    features = [
        (reverse.get(feature.name, feature.name), layout.features[feature.name])
        for feature in view.features
        if feature.name in layout.features
    ]
    encoder = ArrowViewEncoder(
        feature_view=view,
        layout=layout,
        head=write_head(layout, store_config),
        prefix=key_prefix_of(config),
        join_keys=[(name, value_type) for name, value_type in join_keys],
        features=[FeatureColumn(feature.name, layout.features[feature.name]) for feature in view.features],
        feature_names=[feature.name for feature in view.features],
        timestamp_column=source.timestamp_field,
        created_column=None,
    )
    return _ViewEvents(
        layout=layout,
        head=encoder.head,
        ttl_ms=event_ttl_ms(layout),
        prefix=encoder.prefix,
        keys=[
            (reverse.get(name, name), name, key_encoder(layout.name, name, value_type))
            for name, value_type in join_keys
        ],
        features=[(name, feature.field, value_encoder(feature.codec, layout.name, name)) for name, feature in features],
        feature_names=frozenset(name for name, _ in features),
        timestamp=reverse.get(source.timestamp_field, source.timestamp_field),
        encoder=encoder,
        mapping=mapping,
    )


# ---------------------------------------------------------------- the source, resolved


@dataclass
class _Resolution:
    """Everything a write needs from the registry, for one registry version."""

    source: str
    views: list[_ViewEvents]
    schema: dict[str, ValueType]
    known: frozenset[str]
    timestamp: str
    optional: frozenset[str]  # columns accepted and not stored (a created-timestamp column)


def _source_views(store: Any, source: str) -> list[Any]:
    """The views a push writes for `source` (FeatureStore._fvs_for_push_source_or_raise's
    rule: views and stream views whose stream source is that push source, label views fed
    by it), or the view of that name."""
    from feast.data_source import PushSource

    candidates: list[Any] = [
        *store.list_feature_views(allow_cache=True),
        *store.list_stream_feature_views(allow_cache=True),
    ]
    list_label_views = getattr(store, "list_label_views", None)
    labels = list(list_label_views(allow_cache=True)) if list_label_views is not None else []
    fed = [
        view
        for view in [*candidates, *labels]
        if isinstance(getattr(view, "stream_source", None), PushSource) and view.stream_source.name == source
    ]
    if fed:
        return sorted(fed, key=lambda view: view.name)
    named = [view for view in [*candidates, *labels] if view.name == source]
    if named:
        return named[:1]
    pushes = sorted(
        {view.stream_source.name for view in candidates if isinstance(getattr(view, "stream_source", None), PushSource)}
    )
    raise ConfigError(
        f"no push source or feature view named {source!r} in project {store.project!r}"
        + (f" (push sources: {', '.join(pushes)})" if pushes else "")
    )


def _resolve(store: Any, source: str) -> _Resolution:
    feast_views = _source_views(store, source)
    views = [_view_events(view, store) for view in feast_views]
    stamps = {view.timestamp for view in views}
    if len(stamps) > 1:
        raise ConfigError(f"source {source!r} feeds views with different event-time columns: {sorted(stamps)}")
    timestamp = stamps.pop()
    schema: dict[str, ValueType] = {}
    for view in views:
        for name, join_key, _ in view.keys:
            column = next(c for c in view.encoder.join_keys if c[0] == join_key)
            schema.setdefault(name, column[1])
        for name, _, _ in view.features:
            schema.setdefault(name, view.layout.features[view.mapping.get(name, name)].codec.value_type)
    schema[timestamp] = ValueType.UNIX_TIMESTAMP
    optional: set[str] = set()
    for raw_view in feast_views:
        created = getattr(raw_view.batch_source, "created_timestamp_column", None)
        if created:
            schema.setdefault(created, ValueType.UNIX_TIMESTAMP)
            optional.add(created)
    return _Resolution(source, views, schema, frozenset(schema), timestamp, frozenset(optional))


# ---------------------------------------------------------------- the shared writer


class _Writer:
    """Everything but the I/O, shared by EventWriter and AsyncEventWriter."""

    def __init__(self, store: Any, source: str) -> None:
        self._store = store
        self._online_store = online_store_of(store, "the per-event API")
        self._config = store.config
        self.clients = StoreClients.of(store)
        self.store_config: RedisHexpireOnlineStoreConfig = self.clients.store_config
        self.where = self.store_config.where  # redacted once: messages only
        self.source = source
        self._resolved = PerRegistryVersion(store, self._resolve_source)
        self._resolution()  # an unknown source fails here, not at the first write

    def _resolve_source(self) -> _Resolution:
        resolved = _resolve(self._store, self.source)
        logger.debug("EventWriter %r: resolved %d view(s)", self.source, len(resolved.views))
        return resolved

    def _resolution(self, *, now_or_never: bool = False) -> _Resolution:
        """The source's views as of the registry version last seen (PerRegistryVersion)."""
        return self._resolved.get(now_or_never=now_or_never)

    def refresh(self) -> None:
        """Re-read the registry now (Feast's refresh_registry) and resolve the source again."""
        self._resolved.refresh()

    @property
    def schema(self) -> dict[str, ValueType]:
        """Every column the source accepts, by its declared type: join keys, features, and the
        event-time column (and a created-timestamp column, if the source has one) as
        UNIX_TIMESTAMP."""
        return dict(self._resolution().schema)

    def check(self, event: Mapping[str, Any]) -> None:
        """Raise what `write` would raise for this one event; write nothing."""
        self.prepare([event])

    def plans(self, resolved: _Resolution, events: Sequence[Mapping[str, Any]]) -> list[WritePlan]:
        """Validate and encode every event: a bad one raises before anything is sent."""
        by_ttl: dict[int | None, dict[Any, tuple[bytes, bytes | None, bool]]] = {}
        # each view with its rows and its encoded event times (one cache per TTL: views of
        # one TTL share them)
        targets: list[tuple[_ViewEvents, list[EntityWrite], dict[Any, tuple[bytes, bytes | None, bool]]]] = [
            (view, [], by_ttl.setdefault(view.ttl_ms, {})) for view in resolved.views
        ]
        known = resolved.known
        stamp = resolved.timestamp
        for number, event in enumerate(events):
            if not known.issuperset(event):
                _unknown(resolved, event, number)
            when = event.get(stamp)
            found = False
            for view, rows, times in targets:
                cached = times.get(when) if type(when) is datetime else None
                if cached is None:
                    cached = times[when] = encode_time(_event_time(view, stamp, when, number), view.ttl_ms)
                row = view.row(event, cached)
                if row is not None:
                    rows.append(row)
                    found = True
            if not found:
                _no_features(resolved, event, number)
        return [WritePlan(view.layout, view.head, rows) for view, rows, _ in targets if rows]

    def table_plans(self, resolved: _Resolution, table: pa.Table) -> list[WritePlan]:
        """An Arrow table, column by column (arrow_writes: push's own encoders)."""
        names = set(table.column_names)
        unknown = sorted(names - resolved.known)
        if unknown:
            _unknown(resolved, dict.fromkeys(table.column_names), 0)
        if resolved.timestamp not in names:
            raise InvalidFeatureValue(
                f"source {self.source!r}: the table has no event-time column {resolved.timestamp!r}",
                feature=resolved.timestamp,
            )
        plans = []
        for view in resolved.views:
            present = [column for column in view.encoder.features if _input(view, column.name) in names]
            if not present:
                continue
            for name, _, _ in view.keys:
                if name not in names:
                    raise InvalidEntityKey(
                        f"view {view.layout.name!r}: the table has no join key column {name!r}",
                        view=view.layout.name,
                        feature=name,
                    )
            encoder = _partial_encoder(view.encoder, present)
            renamed = table.rename_columns([view.mapping.get(name, name) for name in table.column_names])
            rows: list[EntityWrite] = []
            for batch in renamed.to_batches():
                rows.extend(encoder.plan(batch).rows)
            if rows:
                plans.append(WritePlan(view.layout, view.head, rows))
        return plans

    def sync_client(self) -> Any:
        return self.clients.sync_client()

    async def async_client(self) -> Any:
        return await self.clients.async_client()

    def prepare(self, events: Events) -> tuple[_Resolution, list[WritePlan]]:
        return self._resolved.using(lambda resolved: self._planned(resolved, events))

    def _planned(self, resolved: _Resolution, events: Events) -> list[WritePlan]:
        if type(events) is list:  # the common shapes first: ABC isinstance checks cost µs
            return self.plans(resolved, events)
        if isinstance(events, pa.Table):
            return self.table_plans(resolved, events)
        return self.plans(resolved, _as_rows(events))

    def finish(
        self, resolved: _Resolution, plans: Sequence[WritePlan], reports: Sequence[WriteReport]
    ) -> EventWriteResult:
        total = WriteReport()
        for plan, report in zip(plans, reports):
            self._online_store.record_write(self._config, plan.layout, report, PATH)
            total.add(report)
        return EventWriteResult.of(total)

    def outcomes(
        self, plans: Sequence[WritePlan], per_plan: Sequence[Sequence[Any]], replies: Sequence[Any]
    ) -> list[WriteReport]:
        """Each plan's report; the first refused row or call raises (after every view's
        written rows are counted, so the counts stay true)."""
        reports = []
        failure: HexpireError | None = None
        position = 0
        where = self.where
        for plan, calls in zip(plans, per_plan):
            report, refused = plan_report(plan, calls, replies[position : position + len(calls)], where)
            failure = failure or refused
            position += len(calls)
            reports.append(report)
        if failure is not None:
            for plan, report in zip(plans, reports):
                self._online_store.record_write(self._config, plan.layout, report, PATH)
            raise failure from failure.__cause__
        return reports


def _input(view: _ViewEvents, column: str) -> str:
    for name, target in view.mapping.items():
        if target == column:
            return name
    return column


def _partial_encoder(encoder: ArrowViewEncoder, present: list[FeatureColumn]) -> ArrowViewEncoder:
    if len(present) == len(encoder.features):
        return encoder
    return ArrowViewEncoder(
        feature_view=encoder.feature_view,
        layout=encoder.layout,
        head=encoder.head,
        prefix=encoder.prefix,
        join_keys=encoder.join_keys,
        features=present,
        feature_names=[column.name for column in present],
        timestamp_column=encoder.timestamp_column,
        created_column=None,
    )


def _event_time(view: _ViewEvents, stamp: str, when: Any, number: int) -> datetime:
    if isinstance(when, datetime) and when.tzinfo is not None and when.utcoffset() is not None:
        return when
    if when is None:
        problem = "has no event time" if when is None else ""
    else:
        problem = (
            f"has a naive event time {when!r} (give it a time zone, e.g. tzinfo=timezone.utc)"
            if isinstance(when, datetime)
            else f"has event time {type(when).__name__} = {short_repr(when)}, not a datetime with a time zone"
        )
    raise InvalidFeatureValue(
        f"view {view.layout.name!r}: event {number} {problem} in column {stamp!r}",
        view=view.layout.name,
        feature=stamp,
        value=when,
    )


def _unknown(resolved: _Resolution, event: Mapping[str, Any], number: int) -> None:
    names = sorted(str(name) for name in event if name not in resolved.known)
    name = names[0]
    views = ", ".join(repr(view.layout.name) for view in resolved.views)
    raise UnknownFeature(
        f"source {resolved.source!r} (view {views}): unknown field {name!r} in event {number} "
        f"= {short_repr(event.get(name))} (accepted: {', '.join(sorted(resolved.known))})",
        view=views,
        feature=name,
        value=event.get(name),
    )


def _no_features(resolved: _Resolution, event: Mapping[str, Any], number: int) -> None:
    raise InvalidFeatureValue(
        f"source {resolved.source!r}: event {number} sets no feature (fields: {', '.join(map(str, event))}; "
        f"features: {', '.join(sorted(n for view in resolved.views for n in view.feature_names))})",
        view=", ".join(view.layout.name for view in resolved.views),
    )


def _as_rows(events: Any) -> Sequence[Mapping[str, Any]]:
    """One event, a list of events, or columns, as a sequence of events."""
    if type(events) is dict or isinstance(events, Mapping):
        values = list(events.values())
        if values and all(isinstance(value, _COLUMN_TYPES) for value in values):
            if len({len(value) for value in values}) != 1:
                raise InvalidInput(
                    "events given as columns must have columns of one length, got "
                    + ", ".join(f"{name}: {len(value)}" for name, value in events.items())
                )
            names = list(events)
            return [dict(zip(names, row)) for row in zip(*(_py(value) for value in values))]
        return [events]
    if isinstance(events, Sequence) and not isinstance(events, (str, bytes)):
        return events
    if isinstance(events, Iterable) and not isinstance(events, (str, bytes)):
        return list(events)
    raise InvalidInput(
        f"events must be a dict, a list of dicts, a dict of columns or a pyarrow.Table, not {type(events).__name__}"
    )


_COLUMN_TYPES = (list, tuple, np.ndarray, pd.Series)
"""A dict whose every value is one of these is columns: one event always has a scalar
(its event time)."""


def _py(column: Any) -> Any:
    """A numpy or pandas column's values as Python objects (what a dict event holds)."""
    if isinstance(column, pd.Series):
        column = column.to_numpy(dtype=object)
    return column.tolist() if isinstance(column, np.ndarray) else column


# ---------------------------------------------------------------- sync


class _Facade:
    """What both writers expose besides `write`."""

    _writer: _Writer

    @property
    def schema(self) -> dict[str, ValueType]:
        """Every column the source accepts, by declared type (the event-time column as
        UNIX_TIMESTAMP): what a consumer of text values parses them as."""
        return self._writer.schema

    @property
    def source(self) -> str:
        return self._writer.source

    def check(self, event: Mapping[str, Any]) -> None:
        """Raise the error `write` would raise for this one event; write nothing."""
        self._writer.check(event)

    def refresh(self) -> None:
        """Re-read the registry now and resolve the source again."""
        self._writer.refresh()


class EventWriter(_Facade):
    """Writes events of one push source (or one push-fed view) to the online store.

    Thread-safe; make one per source and keep it. Each `write` is one round trip (per node
    on a cluster) whatever the number of events and views."""

    def __init__(self, store: Any, source: str) -> None:
        self._writer = _Writer(store, source)

    def write(self, events: Events) -> EventWriteResult:
        writer = self._writer
        resolved, plans = writer.prepare(events)
        if not plans:
            return EventWriteResult()
        per_plan, replies = redis_io.write_plans(writer.sync_client(), plans)
        return writer.finish(resolved, plans, writer.outcomes(plans, per_plan, replies))

    def close(self) -> None:
        """Nothing to release: the writer uses the store's shared clients."""

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- async


@dataclass
class _Waiting:
    plans: list[WritePlan]
    future: asyncio.Future[EventWriteResult]


class AsyncEventWriter(_Facade):
    """EventWriter for asyncio. With `coalesce_window_ms`, concurrent writes arriving within
    that window (or until `coalesce_max_events` events wait) share one round trip; each
    caller's events are validated before they wait, and each caller gets its own rows'
    counts or error."""

    def __init__(
        self,
        store: Any,
        source: str,
        *,
        coalesce_window_ms: float | None = None,
        coalesce_max_events: int = 256,
    ) -> None:
        if coalesce_window_ms is not None and not 0 <= coalesce_window_ms <= 1000:
            raise ConfigError(f"coalesce_window_ms must be between 0 and 1000, got {coalesce_window_ms}")
        if coalesce_max_events < 1:
            raise ConfigError(f"coalesce_max_events must be >= 1, got {coalesce_max_events}")
        self._writer = _Writer(store, source)
        self._window = None if coalesce_window_ms is None else coalesce_window_ms / 1000
        self._max_events = coalesce_max_events
        self._waiting: list[_Waiting] = []
        self._waiting_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def write(self, events: Events) -> EventWriteResult:
        writer = self._writer
        resolved, plans = writer.prepare(events)
        if not plans:
            return EventWriteResult()
        if self._window is None:
            return await self._send(resolved, plans)
        future: asyncio.Future[EventWriteResult] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(plans, future))
        self._waiting_rows += sum(len(plan.rows) for plan in plans)
        if self._waiting_rows >= self._max_events:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window, self._flush_now)
        return await future

    async def _send(self, resolved: _Resolution, plans: list[WritePlan]) -> EventWriteResult:
        writer = self._writer
        client = await writer.async_client()
        per_plan, replies = await redis_io.write_plans_async(client, plans)
        return writer.finish(resolved, plans, writer.outcomes(plans, per_plan, replies))

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting, self._waiting_rows = self._waiting, [], 0
        if batch:
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[_Waiting]) -> None:
        """One round trip for every waiting caller; each gets its own rows' outcome."""
        writer = self._writer
        merged: dict[int, WritePlan] = {}
        for waiting in batch:
            for plan in waiting.plans:
                target = merged.get(id(plan.layout))
                if target is None:
                    target = merged[id(plan.layout)] = WritePlan(plan.layout, plan.head, [])
                target.rows.extend(plan.rows)
        plans = list(merged.values())
        try:
            client = await writer.async_client()
            per_plan, replies = await redis_io.write_plans_async(client, plans)
        except BaseException as exc:
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        owner = {id(row): index for index, waiting in enumerate(batch) for plan in waiting.plans for row in plan.rows}
        reports: list[dict[str, WriteReport]] = [{} for _ in batch]
        failures: list[HexpireError | None] = [None] * len(batch)
        position = 0
        where = writer.where
        for plan, calls in zip(plans, per_plan):
            for row, outcome in row_outcomes(plan, calls, replies[position : position + len(calls)], where):
                index = owner[id(row)]
                if isinstance(outcome, HexpireError):
                    failures[index] = failures[index] or outcome
                else:
                    count(reports[index].setdefault(plan.layout.name, WriteReport()), outcome)
            position += len(calls)
        layouts = {plan.layout.name: plan.layout for plan in plans}
        for index, waiting in enumerate(batch):
            total = WriteReport()
            for name, report in reports[index].items():
                writer._online_store.record_write(writer._config, layouts[name], report, PATH)
                total.add(report)
            if waiting.future.done():
                continue
            failure = failures[index]
            if failure is not None:
                waiting.future.set_exception(failure)
            else:
                waiting.future.set_result(EventWriteResult.of(total))

    async def aclose(self) -> None:
        """Send what still waits for its window, and wait for every flush."""
        self._flush_now()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def __aenter__(self) -> AsyncEventWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
