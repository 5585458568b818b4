"""The read path, without I/O: which HMGETs to send, and Feast's response built from the
replies. Sync and async share all of it; `redis_io` only sends.

Every view of one entity is one hash, so a `get_online_features` call costs one HMGET
per distinct entity, covering every requested view keyed on it. A view's values count
only when that view's own `_ts:<view>` field is on the hash and every join key of the
view was given: nothing of another view, or of a stale version, is ever PRESENT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

try:  # Feast's optional feature-status metrics; absent in some builds
    from feast.metrics import track_feature_statuses as _track_feature_statuses
except ImportError:  # pragma: no cover
    _track_feature_statuses = None

from .codec import decode_event_ts, decode_value, timestamp_proto
from .errors import InvalidEntityKey, UnknownFeature
from .keys import entity_key_texts, key_builder
from .metrics import ViewServed
from .views import DUMMY_JOIN_KEY, ViewLayout

ReadRow = tuple["datetime | None", "dict[str, ValueProto] | None"]
HmgetCommand = tuple[bytes, list[bytes]]


@dataclass
class ViewRead:
    """One view's slice of the per-entity HMGET field list."""

    table: Any  # a Feast FeatureView
    layout: ViewLayout
    requested: list[str]
    offset: int

    @property
    def ts_at(self) -> int:
        """Where the view's `_ts` field sits in the HMGET reply: after its features."""
        return self.offset + len(self.requested)

    def decode(self, replies: Sequence[Sequence[bytes | None]]) -> list[ReadRow]:
        """Feast's `online_read` shape: (event time, {feature: value}) or (None, None)."""
        view = self.layout.name
        features = self.layout.features
        codecs = [(name, features[name].codec) for name in self.requested]
        start, ts_index = self.offset, self.ts_at
        rows: list[ReadRow] = []
        for reply in replies:
            raw_ts = reply[ts_index]
            found: dict[str, ValueProto] = {}
            if raw_ts is not None:
                for (name, codec), raw in zip(codecs, reply[start:ts_index]):
                    if raw is not None:
                        found[name] = decode_value(codec, raw, view=view, feature=name)
            rows.append((decode_event_ts(raw_ts), found) if found and raw_ts is not None else (None, None))
        return rows


@dataclass
class EntityGroup:
    """Unique entities of one join-key set: one HMGET per entity covers every view keyed on it."""

    keys: list[bytes]
    indexes: list[list[int]] = field(default_factory=list)  # response rows each entity fills
    output_len: int = 0
    fields: list[bytes] = field(default_factory=list)

    def add_view(self, table: Any, layout: ViewLayout, requested: Sequence[str] | None) -> ViewRead:
        names = list(requested) if requested else list(layout.features)
        unknown = [n for n in names if n not in layout.features]
        if unknown:
            raise UnknownFeature(
                f"view {layout.name!r}: unknown feature(s) {unknown} requested "
                f"(the view declares {', '.join(sorted(layout.features))})",
                view=layout.name,
                feature=unknown[0],
            )
        read = ViewRead(table, layout, names, len(self.fields))
        self.fields.extend(layout.features[n].field for n in names)
        self.fields.append(layout.ts_field)
        return read


def plan_view_read(
    table: Any, layout: ViewLayout, prefix: str, entity_keys: Sequence[EntityKeyProto], requested: Sequence[str] | None
) -> tuple[EntityGroup, ViewRead]:
    """Feast's per-view `online_read`: one HMGET per given entity key."""
    key_of = key_builder(prefix, layout.join_keys)
    try:
        keys = [key_of(entity_key) for entity_key in entity_keys]
    except InvalidEntityKey as exc:
        raise _in_view(exc, layout.name) from None
    group = EntityGroup(keys=keys)
    return group, group.add_view(table, layout, requested)


def _in_view(exc: InvalidEntityKey, view: str) -> InvalidEntityKey:
    """An entity-key error of a read, with the view it was for; its facts come along."""
    return InvalidEntityKey(f"view {view!r}: {exc}", view=view, key=exc.key, feature=exc.feature, value=exc.value)


@dataclass
class GroupedReadPlan:
    """All views of one get_online_features call, grouped so each entity costs one HMGET."""

    groups: list[EntityGroup]
    order: list[tuple[EntityGroup, ViewRead]]  # in Feast's grouped_refs order

    def commands(self) -> list[HmgetCommand]:
        return [(key, group.fields) for group in self.groups for key in group.keys]

    def served_views(self, replies: Sequence[Sequence[bytes | None]]) -> list[ViewServed]:
        """Each view with its entities' replies, for the read metrics."""
        by_group, position = {}, 0
        for group in self.groups:
            by_group[id(group)] = replies[position : position + len(group.keys)]
            position += len(group.keys)
        return [ViewServed(read.layout, group.keys, by_group[id(group)], read.ts_at) for group, read in self.order]

    def populate(
        self,
        replies: Sequence[Sequence[bytes | None]],
        response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Build Feast's response vectors directly, decoding each distinct stored value once."""
        offsets, position = {}, 0
        for group in self.groups:
            offsets[id(group)] = position
            position += len(group.keys)
        ts_cache: dict[bytes, Timestamp] = {}
        for group, read in self.order:
            start = offsets[id(group)]
            fill_response(
                read,
                group,
                replies[start : start + len(group.keys)],
                response,
                full_feature_names,
                include_feature_view_version_metadata,
                ts_cache,
            )


def plan_grouped_read(
    prefix: str,
    reads: Sequence[tuple[Any, ViewLayout, list[str]]],
    join_key_values: dict[str, list[ValueProto]],
    entity_name_to_join_key_map: dict[str, str],
) -> GroupedReadPlan:
    """`reads` are Feast's grouped_refs with each view's layout: (table, layout, features)."""
    groups: dict[tuple[Any, ...], EntityGroup] = {}
    order: list[tuple[EntityGroup, ViewRead]] = []
    for table, layout, requested in reads:
        entity_set = (
            tuple(sorted(entity_name_to_join_key_map[name] for name in table.entities)),
            tuple(sorted((table.projection.join_key_map or {}).items())),
        )
        group = groups.get(entity_set)
        if group is None:
            columns = _table_columns(table, layout, join_key_values, entity_name_to_join_key_map)
            try:
                keys, indexes, output_len = _unique_entity_keys(prefix, columns)
            except InvalidEntityKey as exc:
                raise _in_view(exc, layout.name) from None
            group = groups[entity_set] = EntityGroup(keys, indexes, output_len)
        order.append((group, group.add_view(table, layout, requested)))
    return GroupedReadPlan(list(groups.values()), order)


def _unique_entity_keys(
    prefix: str, columns: list[tuple[str, list[ValueProto]]]
) -> tuple[list[bytes], list[list[int]], int]:
    """Redis key per distinct entity and the request rows it answers, in first-seen order."""
    texts = entity_key_texts(prefix, columns)
    position: dict[str, int] = {}
    keys: list[bytes] = []
    indexes: list[list[int]] = []
    for row_index, text in enumerate(texts):
        unique = position.get(text)
        if unique is None:
            position[text] = len(keys)
            keys.append(text.encode())
            indexes.append([row_index])
        else:
            indexes[unique].append(row_index)
    return keys, indexes, len(texts)


def _table_columns(
    table: Any,
    layout: ViewLayout,
    join_key_values: dict[str, list[ValueProto]],
    entity_name_to_join_key_map: dict[str, str],
) -> list[tuple[str, list[ValueProto]]]:
    """The request columns a view is keyed on, under the view's own join-key names (as
    feast.utils._get_table_entity_values, projection aliases included). Every one of the
    view's join keys must be given: a key built from some of them would be another
    entity's hash."""
    wanted = {entity_name_to_join_key_map[name] for name in table.entities}
    alias_to_join_key = {alias: key for key, alias in table.projection.join_key_map.items()}
    columns = [
        (alias_to_join_key.get(name, name), values)
        for name, values in join_key_values.items()
        if alias_to_join_key.get(name, name) in wanted
    ]
    missing = sorted(wanted - {name for name, _ in columns} - {DUMMY_JOIN_KEY})
    if missing:
        given = sorted(join_key_values)
        raise InvalidEntityKey(
            f"view {layout.name!r} is keyed on {sorted(wanted)}; the request gives {given}, "
            f"missing {missing}. Give every join key of the view in each entity row.",
            view=layout.name,
            feature=missing[0],
        )
    return columns


_EMPTY_TS = Timestamp()
_NULL_VALUE = ValueProto()
_PRESENT = FieldStatus.PRESENT
_NOT_FOUND = FieldStatus.NOT_FOUND


def fill_response(
    read: ViewRead,
    group: EntityGroup,
    replies: Sequence[Sequence[bytes | None]],
    response: Any,
    full_feature_names: bool,
    include_feature_view_version_metadata: bool,
    ts_cache: dict[bytes, Timestamp],
) -> None:
    """Same output as feast.utils._populate_response_from_feature_data, without the
    intermediate dicts and datetimes."""
    table, layout = read.table, read.layout
    table_name = table.projection.name_to_use()
    response.metadata.feature_names.val.extend(
        [f"{table_name}__{n}" if full_feature_names else n for n in read.requested]
    )
    if include_feature_view_version_metadata:
        name = table.projection.name_alias or table.projection.name
        if name not in [m.name for m in response.metadata.feature_view_metadata]:
            meta = response.metadata.feature_view_metadata.add()
            meta.name = name
            meta.version = getattr(table, "current_version_number", 0) or 0

    output_len, indexes = group.output_len, group.indexes
    start, ts_index = read.offset, read.ts_at
    # A view's values count only with its own event-time field on the hash.
    live = [reply[ts_index] is not None for reply in replies]
    timestamps = [_EMPTY_TS] * output_len
    found_any = [False] * len(replies)
    columns = []
    present_total = 0
    for column_number, name in enumerate(read.requested):
        codec = layout.features[name].codec
        decoded: dict[bytes, ValueProto] = {}
        values = [_NULL_VALUE] * output_len
        statuses = [_NOT_FOUND] * output_len
        at = start + column_number
        for unique, reply in enumerate(replies):
            raw = reply[at]
            if raw is None or not live[unique]:
                continue
            value = decoded.get(raw)
            if value is None:
                value = decoded[raw] = decode_value(codec, raw, view=layout.name, feature=name)
            found_any[unique] = True
            for row in indexes[unique]:
                values[row] = value
                statuses[row] = _PRESENT
                present_total += 1
        columns.append((values, statuses))
    for unique, reply in enumerate(replies):
        raw_ts = reply[ts_index]
        if found_any[unique] and raw_ts is not None:
            ts = ts_cache.get(raw_ts)
            if ts is None:
                ts = ts_cache[raw_ts] = timestamp_proto(raw_ts)
            for row in indexes[unique]:
                timestamps[row] = ts
    for values, statuses in columns:
        response.results.append(
            GetOnlineFeaturesResponse.FeatureVector(values=values, statuses=statuses, event_timestamps=timestamps)
        )
    if _track_feature_statuses is not None:
        _track_feature_statuses(table.name, present_total, len(read.requested) * output_len - present_total)
