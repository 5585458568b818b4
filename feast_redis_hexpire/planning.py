"""Planning shared by the sync and async paths: keys, encoded values, script arguments,
HMGET field lists and the decoding of replies. Nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

from feast import FeatureView, RepoConfig, utils
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from .codec import decode_event_ts, decode_value, encode_event_ts, encode_value, event_ts_millis
from .errors import FieldExpiryError, HexpireStoreError, InvalidFeatureValue
from .keys import entity_redis_key, project_prefix
from .views import ViewKind, ViewLayout, view_layout
from .write_script import BATCH_MODE, EXPIRED, STALE, STREAM_MODE, WRITTEN

WriteRow = Tuple[EntityKeyProto, Dict[str, ValueProto], datetime, Optional[datetime]]
ReadRow = Tuple[Optional[datetime], Optional[Dict[str, ValueProto]]]


# ---------------------------------------------------------------- writes


@dataclass(frozen=True)
class WriteCall:
    """One EVALSHA of the write script: KEYS[1] and its ARGV."""

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
    prefix = project_prefix(store_config.key_prefix, config.project)
    mode = STREAM_MODE if layout.kind is ViewKind.stream else BATCH_MODE
    ttl_ms = layout.ttl_millis
    features = layout.features
    view = layout.name
    calls: List[WriteCall] = []
    for row_number, (entity_key, values, event_ts, _created) in enumerate(data):
        key = _write_key(layout, prefix, entity_key, row_number)
        sets: list = []
        deletes: list = []
        for name, value in values.items():
            feature = features.get(name)
            if feature is None:
                raise InvalidFeatureValue(
                    f"view {view!r}: unknown feature {name!r} in row {row_number} "
                    f"(the view declares {', '.join(sorted(features)) or 'no features'})"
                )
            encoded = encode_value(feature.codec, value, view=view, feature=name)
            if encoded is None:
                deletes.append(feature.field)
            else:
                sets.append(feature.field)
                sets.append(encoded)
        if event_ts is None:
            raise InvalidFeatureValue(f"view {view!r}: row {row_number} for {key.decode()} has no event timestamp")
        calls.append(
            WriteCall(
                key,
                [mode, layout.ts_field, encode_event_ts(event_ts), ttl_ms, event_ts_millis(event_ts),
                 len(sets) // 2, *sets, *deletes],
            )
        )
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
class ReadGroup:
    """Views that share one entity set: one HMGET per entity covers all of them."""

    keys: List[bytes]
    fields: List[bytes] = field(default_factory=list)
    views: List[ViewRead] = field(default_factory=list)
    indexes: Any = None  # Feast's mapping from unique entity to response rows
    output_len: int = 0

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
        self.views.append(read)
        return read


def entity_keys_for(config: RepoConfig, entity_keys: Sequence[EntityKeyProto]) -> List[bytes]:
    prefix = project_prefix(config.online_store.key_prefix, config.project)
    return [entity_redis_key(prefix, ek) for ek in entity_keys]


def plan_view_read(
    config: RepoConfig, table: FeatureView, entity_keys: Sequence[EntityKeyProto], requested: Optional[Sequence[str]]
) -> Tuple[ReadGroup, ViewRead]:
    group = ReadGroup(keys=entity_keys_for(config, entity_keys))
    read = group.add_view(table, view_layout(table, config.online_store), requested)
    return group, read


@dataclass
class GroupedReadPlan:
    """All views of one get_online_features call, grouped so each entity costs one HMGET."""

    groups: List[ReadGroup]
    order: List[Tuple[ReadGroup, ViewRead]]  # in Feast's grouped_refs order

    def commands(self) -> List[Tuple[bytes, List[bytes]]]:
        return [(key, group.fields) for group in self.groups for key in group.keys]

    def populate(
        self,
        replies: Sequence[Sequence[Optional[bytes]]],
        response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        offsets, position = {}, 0
        for group in self.groups:
            offsets[id(group)] = position
            position += len(group.keys)
        for group, read in self.order:
            start = offsets[id(group)]
            rows = read.decode(replies[start : start + len(group.keys)])
            utils._populate_response_from_feature_data(
                read.requested,
                rows,
                group.indexes,
                response,
                full_feature_names,
                read.table,
                group.output_len,
                include_feature_view_version_metadata,
            )


def plan_grouped_read(
    config: RepoConfig,
    grouped_refs: Sequence[Tuple[FeatureView, List[str]]],
    join_key_values: Dict[str, List[ValueProto]],
    entity_name_to_join_key_map: Dict[str, str],
) -> GroupedReadPlan:
    groups: Dict[tuple, ReadGroup] = {}
    order: List[Tuple[ReadGroup, ViewRead]] = []
    for table, requested in grouped_refs:
        entity_set = (
            tuple(sorted(table.join_keys)),
            tuple(sorted((table.projection.join_key_map or {}).items())),
        )
        group = groups.get(entity_set)
        if group is None:
            entity_values, indexes, output_len = utils._get_unique_entities(
                table, join_key_values, entity_name_to_join_key_map
            )
            group = ReadGroup(
                keys=entity_keys_for(config, utils._get_entity_key_protos(entity_values)),
                indexes=indexes,
                output_len=output_len,
            )
            groups[entity_set] = group
        order.append((group, group.add_view(table, view_layout(table, config.online_store), requested)))
    return GroupedReadPlan(list(groups.values()), order)
