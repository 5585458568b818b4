"""Planning shared by the sync and async paths: keys, encoded values, script arguments,
HMGET field lists and the decoding of replies. Nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

from feast import FeatureView, RepoConfig
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus, GetOnlineFeaturesResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

try:  # Feast's optional feature-status metrics; absent in some builds
    from feast.metrics import track_feature_statuses as _track_feature_statuses
except Exception:  # pragma: no cover
    _track_feature_statuses = None

from .codec import decode_event_ts, decode_value, encode_event_ts, encode_value, event_ts_millis
from .errors import FieldExpiryError, HexpireStoreError, InvalidFeatureValue
from .keys import entity_key_texts, entity_redis_key, entity_value_text, join_key_head, project_prefix
from .views import ViewKind, ViewLayout, view_layout
from .write_script import BATCH_MODE, EXPIRED, STALE, STREAM_MODE, WRITTEN

WriteRow = Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]
ReadRow = Tuple[Optional[datetime], Optional[Dict[str, ValueProto]]]


def _key_prefix(config: RepoConfig) -> str:
    store_config = config.online_store
    return project_prefix(store_config.key_prefix, config.project, store_config.hash_tag)


# ---------------------------------------------------------------- writes


@dataclass(frozen=True, slots=True)
class WriteCall:
    """One EVALSHA of the write script: KEYS[1] and its ARGV. Slotted: a materialization
    keeps one per row alive until sent, and fewer tracked objects mean fewer GC passes."""

    key: bytes
    args: list


@dataclass
class WriteReport:
    written: int = 0
    stale: int = 0  # older than what was stored: skipped
    expired: int = 0  # stream rows already past their expiry: skipped

    def add(self, other: "WriteReport") -> None:
        self.written += other.written
        self.stale += other.stale
        self.expired += other.expired


def plan_writes(config: RepoConfig, table: FeatureView, data: Sequence[WriteRow]) -> List[WriteCall]:
    """Validate and encode every row before anything is sent, so a bad row changes nothing."""
    store_config = config.online_store
    layout = view_layout(table, store_config)
    prefix = _key_prefix(config)
    mode = STREAM_MODE if layout.kind is ViewKind.stream else BATCH_MODE
    head = [mode, layout.ts_field]
    ttl_ms = layout.ttl_millis
    features = layout.features
    view = layout.name
    single_key = layout.join_keys[0] if len(layout.join_keys) == 1 else None
    single_key_head = prefix + join_key_head(single_key) if single_key else ""
    times: Dict[datetime, Tuple[bytes, int]] = {}  # rows of one batch often share event times
    calls: List[WriteCall] = []
    for row_number, (entity_key, values, event_ts, _created) in enumerate(data):
        join_keys = entity_key.join_keys
        if single_key is not None and len(join_keys) == 1 and join_keys[0] == single_key:
            try:
                key = (single_key_head + entity_value_text(single_key, entity_key.entity_values[0])).encode()
            except InvalidFeatureValue as exc:
                raise InvalidFeatureValue(f"view {view!r}, row {row_number}: {exc}") from None
        else:
            key = _write_key(layout, prefix, entity_key, row_number)
        args = [*head, b"", ttl_ms, 0, 0]
        deletes: Optional[list] = None
        for name, value in values.items():
            feature = features.get(name)
            if feature is None:
                raise InvalidFeatureValue(
                    f"view {view!r}: unknown feature {name!r} in row {row_number} "
                    f"(the view declares {', '.join(sorted(features)) or 'no features'})"
                )
            codec = feature.codec
            kind = value.WhichOneof("val")
            if kind == codec.proto_field:
                args.append(feature.field)
                args.append(codec.encode(getattr(value, kind)))
            elif encode_value(codec, value, view=view, feature=name) is None:  # null, or raises
                if deletes is None:
                    deletes = []
                deletes.append(feature.field)
        if event_ts is None:
            raise InvalidFeatureValue(f"view {view!r}: row {row_number} for {key.decode()} has no event timestamp")
        encoded_time = times.get(event_ts)
        if encoded_time is None:
            encoded_time = times[event_ts] = (encode_event_ts(event_ts), event_ts_millis(event_ts))
        args[2], args[4] = encoded_time
        args[5] = (len(args) - 6) // 2
        if deletes:
            args.extend(deletes)
        calls.append(WriteCall(key, args))
    return calls


def _write_key(layout: ViewLayout, prefix: str, entity_key: EntityKeyProto, row_number: int) -> bytes:
    if layout.join_keys and tuple(sorted(entity_key.join_keys)) != layout.join_keys:
        missing = sorted(set(layout.join_keys) - set(entity_key.join_keys))
        extra = sorted(set(entity_key.join_keys) - set(layout.join_keys))
        raise InvalidFeatureValue(
            f"view {layout.name!r}: row {row_number} has join keys {list(entity_key.join_keys)}, "
            f"expected {list(layout.join_keys)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    try:
        return entity_redis_key(prefix, entity_key)
    except InvalidFeatureValue as exc:
        raise InvalidFeatureValue(f"view {layout.name!r}, row {row_number}: {exc}") from None


def tally_writes(calls: Sequence[WriteCall], replies: Sequence[Any]) -> WriteReport:
    report = WriteReport()
    for call, reply in zip(calls, replies):
        if reply == WRITTEN:
            report.written += 1
        elif reply == STALE:
            report.stale += 1
        elif reply == EXPIRED:
            report.expired += 1
        elif isinstance(reply, Exception) and "HEXPIRE_FAILED" in str(reply):
            raise FieldExpiryError(str(reply).replace("HEXPIRE_FAILED ", ""))
        else:
            raise HexpireStoreError(f"write to {call.key.decode(errors='replace')} failed: {reply!r}")
    return report


# ---------------------------------------------------------------- reads


@dataclass
class ViewRead:
    """One view's slice of the per-entity HMGET field list."""

    table: FeatureView
    layout: ViewLayout
    requested: List[str]
    offset: int

    def decode(self, replies: Sequence[Sequence[Optional[bytes]]]) -> List[ReadRow]:
        view = self.layout.name
        features = self.layout.features
        codecs = [(name, features[name].codec) for name in self.requested]
        start, ts_index = self.offset, self.offset + len(codecs)
        rows: List[ReadRow] = []
        for reply in replies:
            found: Dict[str, ValueProto] = {}
            for (name, codec), raw in zip(codecs, reply[start:ts_index]):
                if raw is not None:
                    found[name] = decode_value(codec, raw, view=view, feature=name)
            if not found:
                rows.append((None, None))
                continue
            raw_ts = reply[ts_index]
            rows.append((decode_event_ts(raw_ts) if raw_ts is not None else None, found))
        return rows


@dataclass
class EntityGroup:
    """Unique entities of one join-key set: one HMGET per entity covers every view keyed on it."""

    keys: List[bytes]
    indexes: List[List[int]] = field(default_factory=list)  # response rows each entity fills
    output_len: int = 0
    fields: List[bytes] = field(default_factory=list)

    def add_view(self, table: FeatureView, layout: ViewLayout, requested: Optional[Sequence[str]]) -> ViewRead:
        names = list(requested) if requested else list(layout.features)
        unknown = [n for n in names if n not in layout.features]
        if unknown:
            raise InvalidFeatureValue(
                f"view {layout.name!r}: unknown feature(s) {unknown} requested "
                f"(the view declares {', '.join(sorted(layout.features))})"
            )
        read = ViewRead(table, layout, names, len(self.fields))
        self.fields.extend(layout.features[n].field for n in names)
        self.fields.append(layout.ts_field)
        return read


def entity_keys_for(config: RepoConfig, entity_keys: Sequence[EntityKeyProto]) -> List[bytes]:
    prefix = _key_prefix(config)
    return [entity_redis_key(prefix, ek) for ek in entity_keys]


def plan_view_read(
    config: RepoConfig, table: FeatureView, entity_keys: Sequence[EntityKeyProto], requested: Optional[Sequence[str]]
) -> Tuple[EntityGroup, ViewRead]:
    group = EntityGroup(keys=entity_keys_for(config, entity_keys))
    read = group.add_view(table, view_layout(table, config.online_store), requested)
    return group, read


def _unique_entity_keys(
    prefix: str, columns: List[Tuple[str, List[ValueProto]]]
) -> Tuple[List[bytes], List[List[int]], int]:
    """Redis key per distinct entity and the request rows it answers, in first-seen order."""
    texts = entity_key_texts(prefix, columns)
    position: Dict[str, int] = {}
    keys: List[bytes] = []
    indexes: List[List[int]] = []
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
    table: FeatureView, join_key_values: Dict[str, List[ValueProto]], entity_name_to_join_key_map: Dict[str, str]
) -> List[Tuple[str, List[ValueProto]]]:
    """The request columns a view is keyed on, under the view's own join-key names
    (mirrors feast.utils._get_table_entity_values, including projection aliases)."""
    wanted = {entity_name_to_join_key_map[name] for name in table.entities}
    alias_to_join_key = {alias: key for key, alias in table.projection.join_key_map.items()}
    columns = [
        (alias_to_join_key.get(name, name), values)
        for name, values in join_key_values.items()
        if alias_to_join_key.get(name, name) in wanted
    ]
    if not columns and wanted - {"__dummy_id"}:
        raise KeyError(
            f"Missing join key values for view {table.name!r}: expected {sorted(wanted)}, "
            f"got {sorted(join_key_values)}"
        )
    return columns


@dataclass
class GroupedReadPlan:
    """All views of one get_online_features call, grouped so each entity costs one HMGET."""

    groups: List[EntityGroup]
    order: List[Tuple[EntityGroup, ViewRead]]  # in Feast's grouped_refs order

    def commands(self) -> List[Tuple[bytes, List[bytes]]]:
        return [(key, group.fields) for group in self.groups for key in group.keys]

    def populate(
        self,
        replies: Sequence[Sequence[Optional[bytes]]],
        response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Build Feast's response vectors directly, decoding each distinct stored value once."""
        offsets, position = {}, 0
        for group in self.groups:
            offsets[id(group)] = position
            position += len(group.keys)
        ts_cache: Dict[bytes, Timestamp] = {}
        for group, read in self.order:
            start = offsets[id(group)]
            fill_response(read, group, replies[start : start + len(group.keys)], response,
                          full_feature_names, include_feature_view_version_metadata, ts_cache)


_EMPTY_TS = Timestamp()
_NULL_VALUE = ValueProto()
_PRESENT = FieldStatus.PRESENT
_NOT_FOUND = FieldStatus.NOT_FOUND
_EPOCH = datetime(1970, 1, 1)


def _timestamp_proto(raw: bytes) -> Timestamp:
    delta = datetime.fromisoformat(raw[:-1].decode()) - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def fill_response(
    read: ViewRead,
    group: EntityGroup,
    replies: Sequence[Sequence[Optional[bytes]]],
    response: Any,
    full_feature_names: bool,
    include_feature_view_version_metadata: bool,
    ts_cache: Dict[bytes, Timestamp],
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
    start, ts_index = read.offset, read.offset + len(read.requested)
    timestamps = [_EMPTY_TS] * output_len
    found_any = [False] * len(replies)
    columns = []
    present_total = 0
    for column_number, name in enumerate(read.requested):
        codec = layout.features[name].codec
        decoded: Dict[bytes, ValueProto] = {}
        values = [_NULL_VALUE] * output_len
        statuses = [_NOT_FOUND] * output_len
        at = start + column_number
        for unique, reply in enumerate(replies):
            raw = reply[at]
            if raw is None:
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
                ts = ts_cache[raw_ts] = _timestamp_proto(raw_ts)
            for row in indexes[unique]:
                timestamps[row] = ts
    for values, statuses in columns:
        response.results.append(
            GetOnlineFeaturesResponse.FeatureVector(values=values, statuses=statuses, event_timestamps=timestamps)
        )
    if _track_feature_statuses is not None:
        _track_feature_statuses(table.name, present_total, len(read.requested) * output_len - present_total)


def plan_grouped_read(
    config: RepoConfig,
    grouped_refs: Sequence[Tuple[FeatureView, List[str]]],
    join_key_values: Dict[str, List[ValueProto]],
    entity_name_to_join_key_map: Dict[str, str],
) -> GroupedReadPlan:
    prefix = _key_prefix(config)
    groups: Dict[tuple, EntityGroup] = {}
    order: List[Tuple[EntityGroup, ViewRead]] = []
    for table, requested in grouped_refs:
        entity_set = (
            tuple(sorted(entity_name_to_join_key_map[name] for name in table.entities)),
            tuple(sorted((table.projection.join_key_map or {}).items())),
        )
        group = groups.get(entity_set)
        if group is None:
            columns = _table_columns(table, join_key_values, entity_name_to_join_key_map)
            keys, indexes, output_len = _unique_entity_keys(prefix, columns)
            group = groups[entity_set] = EntityGroup(keys, indexes, output_len)
        order.append((group, group.add_view(table, view_layout(table, config.online_store), requested)))
    return GroupedReadPlan(list(groups.values()), order)
