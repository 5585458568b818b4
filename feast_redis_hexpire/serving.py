"""The serving fast path, without I/O: `get_online_features` from the caller's Python
entity values to an `OnlineResponse`, with one pipelined HMGET per entity (per node on a
cluster) and no protobuf work per value unless the caller asks for the proto.

Feast's generic path turns every join-key value into a `ValueProto`, plans the read per
call, builds a `FeatureVector` per feature and converts every value back to Python in
`to_dict()`. Here the plan is made once per request shape (features, names, the request's
columns) and cached on Feast's own cached request context, so it is rebuilt exactly when
Feast's is (a registry refresh). Keys are spelled from the Python values with the rules of
`keys.py`, and the response keeps the raw replies: `to_dict()` decodes them straight to
Python values, `.proto` builds Feast's protobuf (column-wise, as the grouped-read hook does)
the first time something asks for it, such as `feast serve`.

What the fast path does not cover goes to Feast's generic path, which this store serves
through its grouped-read hook: on-demand views and request data, entity-less views, entity
names instead of join keys, protobuf or numpy entity values, nulls and any value not of the
join key's exact Python type (Feast's conversion decides those, and raises what it raises).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from feast import utils as feast_utils
from feast.feature_service import FeatureService
from feast.infra.online_stores.online_store import OnlineStore
from feast.online_response import TIMESTAMP_POSTFIX, OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from . import feast_hooks, wire
from .codec import event_ts_seconds, python_decoder
from .errors import InvalidEntityKey
from .keys import COLUMN_TEXTS, key_texts
from .metrics import ViewServed
from .reads import EntityGroup, HmgetCommand, ViewRead
from .views import ViewLayout

Replies = Sequence[Sequence[bytes | None]]


@dataclass(frozen=True)
class JoinKeyType:
    """A join-key type the fast path spells itself, and the one Python type it takes."""

    proto_field: str
    python_type: type
    bounds: tuple[int, int] | None = None
    empty_is_null: bool = False  # Feast makes nulls of a column of empty bytes


NATIVE_JOIN_KEYS: dict[ValueType, JoinKeyType] = {
    ValueType.INT64: JoinKeyType("int64_val", int, (-(1 << 63), (1 << 63) - 1)),
    ValueType.INT32: JoinKeyType("int32_val", int, (-(1 << 31), (1 << 31) - 1)),
    ValueType.STRING: JoinKeyType("string_val", str),
    ValueType.BYTES: JoinKeyType("bytes_val", bytes, empty_is_null=True),
}


def native_key_texts(value_type: ValueType, values: Sequence[Any]) -> list[str] | None:
    """The key texts of one column of join-key values, spelled as `keys.entity_value_text`
    spells the `ValueProto`s Feast would make of them; None when a value is not exactly of
    the join key's Python type (bool, numpy scalars, None, a proto, out of range)."""
    spec = NATIVE_JOIN_KEYS.get(value_type)
    if spec is None:
        return None
    wanted = spec.python_type
    for value in values:
        if type(value) is not wanted:
            return None
    if spec.bounds is not None and values:
        low, high = spec.bounds
        if min(values) < low or max(values) > high:
            return None
    if spec.empty_is_null and not all(values):
        return None
    return COLUMN_TEXTS[spec.proto_field](values)


def native_value_protos(value_type: ValueType, values: Sequence[Any]) -> list[ValueProto]:
    """The `ValueProto`s Feast's `python_values_to_proto_values` makes of values that
    `native_key_texts` accepted."""
    proto_field = NATIVE_JOIN_KEYS[value_type].proto_field
    return [ValueProto(**{proto_field: value}) for value in values]


class Fallback(Exception):
    """This request is not for the fast path; `reason` says why (logged at DEBUG)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------- the plan of one request shape


@dataclass
class ColumnRead:
    """One requested feature: where its value sits in its group's HMGET reply."""

    name: str  # the output name (full or bare)
    at: int
    decode: Callable[[bytes], Any]  # stored bytes -> the Python value to_dict() shows
    frame: wire.ValueEncoder  # stored bytes -> the framed serialized ValueProto


@dataclass
class ViewSlice:
    """One view of the request: its proto-building read and its columns."""

    read: ViewRead
    group: int
    ts_at: int
    columns: list[ColumnRead]


@dataclass
class GroupShape:
    """The views keyed on one join-key set: one HMGET per distinct entity covers them all."""

    key_columns: list[tuple[str, str]]  # (the views' join key, the request column holding it)
    fields: list[bytes]


@dataclass
class ServingPlan:
    """Everything about a request that depends on its shape only, computed once."""

    context: tuple[Any, ...]  # Feast's cached request context this plan was made from
    prefix: str
    echo: list[str]  # the request's join-key columns, echoed first in the response
    join_key_types: dict[str, ValueType]
    groups: list[GroupShape]
    views: list[ViewSlice]
    feature_types: dict[str, ValueType]
    full_feature_names: bool
    include_version_metadata: bool
    names: list[str] = field(default_factory=list)  # every output column, in order
    metadata: bytes = b""  # the response's framed metadata


REQUEST_CONTEXT_SIZE = 9
"""What feast.utils._get_cached_request_context returns (Feast 0.64 to 0.67), unpacked below."""


def build_plan(
    context: tuple[Any, ...],
    columns: Sequence[str],
    prefix: str,
    layout_of: Callable[[Any], ViewLayout],
    full_feature_names: bool,
    include_version_metadata: bool,
) -> ServingPlan:
    """Raise `Fallback` for what the fast path does not cover."""
    if len(context) != REQUEST_CONTEXT_SIZE:
        feast_hooks.changed(
            "feast.utils._get_cached_request_context",
            f"returning {len(context)} values, not {REQUEST_CONTEXT_SIZE}",
            feast_hooks.SERVING,
        )
        raise Fallback("Feast's request context has another shape")
    (
        _feature_refs,
        on_demand_views,
        entity_name_to_join_key_map,
        entity_type_map,
        join_keys_set,
        grouped_refs,
        _row_names,
        needed_request_data,
        entityless_case,
    ) = context
    if on_demand_views:
        raise Fallback("on-demand feature views are transformed by Feast")
    if needed_request_data:
        raise Fallback("request data")
    if entityless_case:
        raise Fallback("an entity-less feature view")
    echo: list[str] = []
    for column in columns:
        if column in join_keys_set:
            echo.append(column)
        elif column in entity_name_to_join_key_map:
            raise Fallback(f"entity name {column!r} given instead of its join key")
    join_key_types = {column: entity_type_map.get(column, ValueType.UNKNOWN) for column in echo}
    for column, value_type in join_key_types.items():
        if value_type not in NATIVE_JOIN_KEYS:
            raise Fallback(f"join key {column!r} is {value_type.name}")

    groups: list[GroupShape] = []
    group_of: dict[tuple[Any, ...], int] = {}
    templates: list[EntityGroup] = []
    views: list[ViewSlice] = []
    feature_types = OnlineStore._build_feature_types(grouped_refs)
    for table, requested in grouped_refs:
        layout = layout_of(table)
        join_key_map = table.projection.join_key_map or {}
        entity_set = (
            tuple(sorted(entity_name_to_join_key_map[name] for name in table.entities)),
            tuple(sorted(join_key_map.items())),
        )
        index = group_of.get(entity_set)
        if index is None:
            key_columns = []
            for join_key in entity_set[0]:
                column = join_key_map.get(join_key, join_key)
                if column not in join_key_types:
                    raise Fallback(f"join key {column!r} of view {layout.name!r} is not in the request")
                key_columns.append((join_key, column))
            index = group_of[entity_set] = len(groups)
            templates.append(EntityGroup(keys=[]))
            groups.append(GroupShape(key_columns, templates[-1].fields))
        read = templates[index].add_view(table, layout, requested)
        table_name = table.projection.name_to_use()
        view_columns = []
        for number, name in enumerate(read.requested):
            output = f"{table_name}__{name}" if full_feature_names else name
            codec = layout.features[name].codec
            decode = python_decoder(codec, feature_types.get(output), layout.name, name)
            frame = wire.framed_encoder(codec, layout.name, name)
            view_columns.append(ColumnRead(output, read.offset + number, decode, frame))
        views.append(ViewSlice(read, index, read.ts_at, view_columns))
    plan = ServingPlan(
        context,
        prefix,
        echo,
        join_key_types,
        groups,
        views,
        feature_types,
        full_feature_names,
        include_version_metadata,
    )
    plan.names = echo + [column.name for view in views for column in view.columns]
    plan.metadata = _metadata_bytes(plan)
    return plan


def _metadata_bytes(plan: ServingPlan) -> bytes:
    """The response's framed metadata, as Feast's generic path fills it: every column's
    name, and with version metadata each view once, under its alias if it has one."""
    metadata = GetOnlineFeaturesResponse().metadata
    metadata.feature_names.val.extend(plan.names)
    if plan.include_version_metadata:
        for view in plan.views:
            projection = view.read.table.projection
            name = projection.name_alias or projection.name
            if name not in [m.name for m in metadata.feature_view_metadata]:
                entry = metadata.feature_view_metadata.add()
                entry.name = name
                entry.version = getattr(view.read.table, "current_version_number", 0) or 0
    return wire.length_delimited(wire.METADATA_TAG, metadata.SerializeToString())


class PlanCache:
    """Plans by request shape. A plan is reused only while Feast hands back the same cached
    request context object, so a registry refresh (a new context) makes a new plan."""

    LIMIT = 1024

    def __init__(self) -> None:
        self._plans: dict[tuple[Any, ...], ServingPlan] = {}
        self._lock = threading.Lock()

    def get(self, shape: tuple[Any, ...], context: tuple[Any, ...]) -> ServingPlan | None:
        plan = self._plans.get(shape)
        return plan if plan is not None and plan.context is context else None

    def put(self, shape: tuple[Any, ...], plan: ServingPlan) -> None:
        with self._lock:
            if len(self._plans) >= self.LIMIT:
                self._plans.clear()
            self._plans[shape] = plan

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()


def features_key(features: Sequence[str] | FeatureService) -> tuple[Any, ...]:
    """Feast's own cache key for the features of a request."""
    if isinstance(features, FeatureService):
        return ("__fs__", features.name)
    return tuple(features)


def request_context(registry: Any, project: str, features: Any, full_feature_names: bool) -> tuple[Any, ...]:
    """Feast's resolution of the requested features, from Feast's own cache (invalidated
    when the registry refreshes)."""
    return feast_utils._get_cached_request_context(registry, project, features, full_feature_names)


# ---------------------------------------------------------------- one request


def entity_columns(entity_rows: Any) -> dict[str, Sequence[Any]]:
    """The request's entity values by column, as Feast's generic path reads them."""
    if isinstance(entity_rows, list):
        if not entity_rows:
            raise Fallback("no entity rows")
        names = list(entity_rows[0])
        try:
            columns: dict[str, Sequence[Any]] = {name: [row[name] for row in entity_rows] for name in names}
        except (KeyError, TypeError):
            raise Fallback("entity rows of different keys") from None
        if any(len(row) != len(names) for row in entity_rows):
            raise Fallback("entity rows of different keys")
        return columns
    if isinstance(entity_rows, Mapping):
        out: dict[str, Sequence[Any]] = {}
        for name, values in entity_rows.items():
            if not isinstance(values, (list, tuple)):
                raise Fallback(f"column {name!r} is a {type(values).__name__}")
            out[name] = values
        return out
    raise Fallback(f"entity rows are a {type(entity_rows).__name__}")


@dataclass
class EntityBatch:
    """The distinct entities of one group and the request row each answers."""

    keys: list[bytes]
    row_entity: list[int] | None  # entity index of each request row; None when all are distinct
    rows: int

    def indexes(self) -> list[list[int]]:
        """The request rows of each entity (the proto builder's shape)."""
        if self.row_entity is None:
            return [[row] for row in range(self.rows)]
        out: list[list[int]] = [[] for _ in self.keys]
        for row, entity in enumerate(self.row_entity):
            out[entity].append(row)
        return out


def entity_batches(plan: ServingPlan, columns: Mapping[str, Sequence[Any]]) -> list[EntityBatch]:
    rows = {len(values) for values in columns.values()}
    if len(rows) != 1:
        raise Fallback("columns of different lengths")
    count = rows.pop()
    texts: dict[str, list[str]] = {}
    for column in plan.echo:
        spelled = native_key_texts(plan.join_key_types[column], columns[column])
        if spelled is None:
            raise Fallback(f"join key {column!r} holds values the fast path does not spell")
        texts[column] = spelled
    batches = []
    for group in plan.groups:
        keys_text = key_texts(plan.prefix, [(join_key, texts[column]) for join_key, column in group.key_columns])
        position: dict[str, int] = {}
        for text in keys_text:
            position.setdefault(text, len(position))
        if len(position) == count:
            batches.append(EntityBatch([text.encode() for text in keys_text], None, count))
        else:
            row_entity = [position[text] for text in keys_text]
            batches.append(EntityBatch([text.encode() for text in position], row_entity, count))
    return batches


def commands(plan: ServingPlan, batches: Sequence[EntityBatch]) -> list[HmgetCommand]:
    return [(key, group.fields) for group, batch in zip(plan.groups, batches) for key in batch.keys]


def split_replies(batches: Sequence[EntityBatch], replies: Replies) -> list[Replies]:
    out, start = [], 0
    for batch in batches:
        out.append(replies[start : start + len(batch.keys)])
        start += len(batch.keys)
    return out


def served_views(plan: ServingPlan, batches: Sequence[EntityBatch], replies: list[Replies]) -> list[ViewServed]:
    """Each view with its distinct entities' replies, for the read metrics."""
    return [
        ViewServed(view.read.layout, batches[view.group].keys, replies[view.group], view.ts_at) for view in plan.views
    ]


def status_counts(
    plan: ServingPlan, batches: Sequence[EntityBatch], replies: list[Replies]
) -> list[tuple[str, int, int]]:
    """(view, present values, not-found values) per view, as Feast's status metric counts
    them: a value is present when it and its view's `_ts` are on the hash. Counted a column
    at a time (list.count runs in C), per request row."""
    out = []
    for view in plan.views:
        batch, group_replies = batches[view.group], replies[view.group]
        ts_at = view.ts_at
        if batch.row_entity is None:
            live = [reply for reply in group_replies if reply[ts_at] is not None]
        else:  # a duplicated entity counts once per request row, as Feast counts it
            live = [reply for reply in _by_row(list(group_replies), batch) if reply[ts_at] is not None]
        present = sum(len(live) - [reply[column.at] for reply in live].count(None) for column in view.columns)
        total = len(view.columns) * batch.rows
        out.append((view.read.table.name, present, total - present))
    return out


# ---------------------------------------------------------------- the response


_EMPTY_RESPONSE = GetOnlineFeaturesResponse()
"""What the parent is initialised with: never changed (it holds no dummy-entity column)."""


class LazyResponse(OnlineResponse):
    """Feast's `OnlineResponse` whose `.proto` is built on first use (`_build_proto`):
    `to_dict()` (and so `to_df()`, `to_arrow()`) is the subclass's own, straight to Python.

    The parent's `__init__` runs (on an empty proto, so it builds nothing), then `.proto`
    goes back to lazy: whatever Feast's `__init__` sets is there, and tests/test_serving.py
    checks every attribute Feast's `OnlineResponse` reads."""

    def __init__(self, feature_types: dict[str, ValueType]) -> None:
        super().__init__(_EMPTY_RESPONSE, feature_types=feature_types)
        self._proto: GetOnlineFeaturesResponse | None = None

    @property
    def proto(self) -> GetOnlineFeaturesResponse:
        if self._proto is None:
            self._proto = self._build_proto()
        return self._proto

    @proto.setter
    def proto(self, value: GetOnlineFeaturesResponse) -> None:
        self._proto = value

    def _build_proto(self) -> GetOnlineFeaturesResponse:
        raise NotImplementedError


class ServedResponse(LazyResponse):
    """The serving fast path's response, kept as the raw HMGET replies."""

    def __init__(
        self,
        plan: ServingPlan,
        columns: Mapping[str, Sequence[Any]],
        batches: list[EntityBatch],
        replies: list[Replies],
    ) -> None:
        super().__init__(plan.feature_types)
        self._plan = plan
        self._columns = columns
        self._batches = batches
        self._replies = replies

    @property
    def replies(self) -> list[Replies]:
        """The HMGET replies, one list per entity group of the plan (`split_replies`): what
        the read metrics tally."""
        return self._replies

    def _build_proto(self) -> GetOnlineFeaturesResponse:
        """Feast's proto, encoded as wire bytes (`wire`) and parsed once."""
        plan = self._plan
        parts = [plan.metadata]
        for name in plan.echo:
            values = self._columns[name]
            encoded = [
                wire.framed_value(p.SerializeToString()) for p in native_value_protos(plan.join_key_types[name], values)
            ]
            parts.append(wire.feature_vector(encoded, _ALL_PRESENT * len(values), [wire.EMPTY_TIMESTAMP] * len(values)))
        for view in plan.views:
            parts.extend(_view_vectors(view, self._batches[view.group], self._replies[view.group]))
        return GetOnlineFeaturesResponse.FromString(b"".join(parts))

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._plan.echo:
            values = self._columns[name]
            out[name] = list(values)
            if include_event_timestamps:
                out[name + TIMESTAMP_POSTFIX] = [0] * len(values)
        for view in self._plan.views:
            batch, replies = self._batches[view.group], self._replies[view.group]
            ts_at = view.ts_at
            live = [reply if reply[ts_at] is not None else None for reply in replies]
            seconds: list[int] | None = None
            if include_event_timestamps:
                ats = [column.at for column in view.columns]
                seconds = _by_row(
                    [
                        event_ts_seconds(raw_ts)
                        if reply is not None
                        and (raw_ts := reply[ts_at]) is not None
                        and any(reply[i] is not None for i in ats)
                        else 0
                        for reply in live
                    ],
                    batch,
                )
            for column in view.columns:
                at, decode = column.at, column.decode
                out[column.name] = _by_row(
                    [None if reply is None or (raw := reply[at]) is None else decode(raw) for reply in live], batch
                )
                if seconds is not None:
                    out[column.name + TIMESTAMP_POSTFIX] = list(seconds)
        return out


_ALL_PRESENT = bytes([wire.PRESENT])


def _view_vectors(view: ViewSlice, batch: EntityBatch, replies: Replies) -> list[bytes]:
    """One view's framed `FeatureVector`s: a value is PRESENT only with the view's event
    time on the hash; the time is set on the rows where any requested value is."""
    ts_at = view.ts_at
    live = [reply if reply[ts_at] is not None else None for reply in replies]
    empty, present, not_found = wire.EMPTY_VALUE, wire.PRESENT, wire.NOT_FOUND
    columns = []
    for column in view.columns:
        at, frame = column.at, column.frame
        values = [empty if reply is None or (raw := reply[at]) is None else frame(raw) for reply in live]
        columns.append(values)
    ats = [column.at for column in view.columns]
    timestamps = [
        wire.timestamp_bytes(reply[ts_at])  # type: ignore[arg-type]
        if reply is not None and any(reply[i] is not None for i in ats)
        else wire.EMPTY_TIMESTAMP
        for reply in live
    ]
    timestamps = _by_row(timestamps, batch)
    out = []
    for values in columns:
        by_row = _by_row(values, batch)
        statuses = bytes([not_found if value is empty else present for value in by_row])
        out.append(wire.feature_vector(by_row, statuses, timestamps))
    return out


def _by_row(values: list[Any], batch: EntityBatch) -> list[Any]:
    if batch.row_entity is None:
        return values
    return [values[entity] for entity in batch.row_entity]


def check_entity_columns(columns: Mapping[str, Sequence[Any]]) -> None:
    """A request with no entity columns at all has nothing to key a read on."""
    if not columns:
        raise InvalidEntityKey(
            "the request gives no join-key values: give every join key of the requested views in each entity row"
        )
