"""What the store needs to know about one feature view: its kind, TTL and hash fields.

A view is *stream* when it is a StreamFeatureView, has a stream/push source, or carries
the tag `hexpire.kind: stream`; otherwise it is *batch*. Tags:

- `hexpire.kind`: `batch` or `stream`, overriding the inferred kind.
- `hexpire.ttl_seconds`: this view's TTL (key TTL for batch, per-field TTL for stream);
  `0` disables expiry for the view.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Sequence

from feast import FeatureView
from feast.stream_feature_view import StreamFeatureView

from .codec import TypeCodec, codec_for
from .config import FieldNaming, RedisHexpireOnlineStoreConfig
from .errors import FieldConflictError, InvalidViewConfig

KIND_TAG = "hexpire.kind"
TTL_TAG = "hexpire.ttl_seconds"
TS_FIELD_PREFIX = "_ts:"


class ViewKind(str, Enum):
    batch = "batch"
    stream = "stream"


@dataclass(frozen=True)
class FeatureField:
    name: str
    field: bytes  # hash field name
    codec: TypeCodec


@dataclass(frozen=True)
class ViewLayout:
    name: str
    kind: ViewKind
    ttl_seconds: int  # 0: no expiry
    join_keys: tuple[str, ...]  # sorted
    ts_field: bytes
    features: dict[str, FeatureField]

    @property
    def ttl_millis(self) -> int:
        return self.ttl_seconds * 1000

    def all_fields(self) -> list[bytes]:
        return [f.field for f in self.features.values()] + [self.ts_field]


def view_kind(table: FeatureView) -> ViewKind:
    tagged = (table.tags or {}).get(KIND_TAG)
    if tagged is not None:
        try:
            return ViewKind(tagged)
        except ValueError:
            raise InvalidViewConfig(
                f"view {table.name!r}: tag {KIND_TAG}={tagged!r} must be 'batch' or 'stream'"
            ) from None
    if isinstance(table, StreamFeatureView) or getattr(table, "stream_source", None) is not None:
        return ViewKind.stream
    return ViewKind.batch


def view_ttl_seconds(table: FeatureView, kind: ViewKind, config: RedisHexpireOnlineStoreConfig) -> int:
    tagged = (table.tags or {}).get(TTL_TAG)
    if tagged is not None:
        try:
            ttl = int(tagged)
        except ValueError:
            ttl = -1
        if ttl < 0:
            raise InvalidViewConfig(
                f"view {table.name!r}: tag {TTL_TAG}={tagged!r} must be a whole number of seconds >= 0"
            )
        return ttl
    default = config.stream_ttl_seconds if kind is ViewKind.stream else config.batch_ttl_seconds
    return default or 0


def field_name(view: str, feature: str, naming: FieldNaming) -> str:
    return feature if naming is FieldNaming.plain else f"{view}:{feature}"


def _check_feature_name(view: str, feature: str) -> None:
    if feature.startswith(TS_FIELD_PREFIX):
        raise InvalidViewConfig(
            f"view {view!r}, feature {feature!r}: names starting with {TS_FIELD_PREFIX!r} "
            "are reserved for the store's event-timestamp fields"
        )


def _signature(table: FeatureView, config: RedisHexpireOnlineStoreConfig) -> tuple:
    return (
        table.name,
        type(table).__name__,
        getattr(table, "stream_source", None) is not None,
        tuple(sorted((table.tags or {}).items())),
        tuple(table.join_keys),
        tuple((f.name, f.dtype) for f in table.features),
        config.field_naming,
        config.batch_ttl_seconds,
        config.stream_ttl_seconds,
    )


_LAYOUTS: dict[tuple, ViewLayout] = {}
# Feast's read path reuses the FeatureView objects of its cached request context, so
# most lookups hit this identity cache. Entries hold the objects, so ids are not reused.
# A hit must also match what can change in place on the same objects.
_BY_IDENTITY: dict[tuple[int, int], tuple[FeatureView, RedisHexpireOnlineStoreConfig, tuple, ViewLayout]] = {}


def _mutable_parts(table: FeatureView, config: RedisHexpireOnlineStoreConfig) -> tuple:
    return (
        len(table.features),
        tuple((table.tags or {}).items()),
        config.batch_ttl_seconds,
        config.stream_ttl_seconds,
        config.field_naming,
    )


def view_layout(table: FeatureView, config: RedisHexpireOnlineStoreConfig) -> ViewLayout:
    """Cached: building a layout validates tags and resolves codecs for every feature."""
    identity = (id(table), id(config))
    hit = _BY_IDENTITY.get(identity)
    mutable = _mutable_parts(table, config)
    if hit is not None and hit[2] == mutable:
        return hit[3]
    signature = _signature(table, config)
    layout = _LAYOUTS.get(signature)
    if layout is None:
        layout = _build_layout(table, config)
        if len(_LAYOUTS) > 4096:
            _LAYOUTS.clear()
        _LAYOUTS[signature] = layout
    if len(_BY_IDENTITY) > 4096:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[identity] = (table, config, mutable, layout)
    return layout


def _build_layout(table: FeatureView, config: RedisHexpireOnlineStoreConfig) -> ViewLayout:
    kind = view_kind(table)
    features: dict[str, FeatureField] = {}
    for feature in table.features:
        _check_feature_name(table.name, feature.name)
        features[feature.name] = FeatureField(
            name=feature.name,
            field=field_name(table.name, feature.name, config.field_naming).encode(),
            codec=codec_for(feature.dtype.to_value_type(), view=table.name, feature=feature.name),
        )
    return ViewLayout(
        name=table.name,
        kind=kind,
        ttl_seconds=view_ttl_seconds(table, kind, config),
        join_keys=tuple(sorted(table.join_keys)),
        ts_field=f"{TS_FIELD_PREFIX}{table.name}".encode(),
        features=features,
    )


def check_views(tables: Iterable[FeatureView], config: RedisHexpireOnlineStoreConfig) -> list[ViewLayout]:
    """Validate every view and reject two views of one entity writing the same field."""
    layouts = [view_layout(table, config) for table in tables]
    owners: dict[tuple[tuple[str, ...], bytes], list[str]] = defaultdict(list)
    for layout in layouts:
        for feature in layout.features.values():
            owners[(layout.join_keys, feature.field)].append(layout.name)
    clashes = {key: views for key, views in owners.items() if len(views) > 1}
    if clashes:
        lines = [
            f"  field {field.decode()!r} on entity ({', '.join(join_keys) or 'no join keys'}) "
            f"is declared by views {', '.join(repr(v) for v in sorted(views))}"
            for (join_keys, field), views in sorted(clashes.items())
        ]
        raise FieldConflictError(
            "two feature views of the same entity declare the same feature name, so they would "
            "overwrite each other's hash field:\n"
            + "\n".join(lines)
            + "\nRename one of the features, or set `field_naming: qualified` in the online_store "
            "config to store fields as '<view>:<feature>'."
        )
    return layouts


def fields_owned_elsewhere(
    deleted: ViewLayout, kept: Sequence[ViewLayout]
) -> set[bytes]:
    """Fields of a deleted view that a kept view of the same entity now writes."""
    return {
        f.field
        for layout in kept
        if layout.join_keys == deleted.join_keys
        for f in layout.features.values()
    }
