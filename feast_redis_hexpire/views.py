"""What the store needs to know about one feature view: its kind, TTL and hash fields.

A view is *stream* when it is a StreamFeatureView, has a stream/push source, or carries
the tag `hexpire.kind: stream`; otherwise it is *batch*.

TTL, in order of precedence:

- stream views: the `hexpire.ttl_seconds` tag; else the view's own Feast `ttl=` when set
  and non-zero; else `stream_ttl_seconds`. Applied per field, anchored at event time.
- label views (Feast's `LabelView`, pushed labels): the tag; else the view's Feast `ttl=`,
  where Feast's default 0 means labels never expire. Feast serves labels last write wins,
  so a label view's writes replace what is stored whatever its event time.
- batch views: the `hexpire.ttl_seconds` tag; else `key_ttl_seconds` /
  `batch_ttl_seconds`. Applied to the whole key. Feast's `ttl=` does not drive it: on a
  batch view it is the offline point-in-time horizon, and one key holds every batch view
  of an entity, so the key TTL follows the batch cycle, not one view.

Hash fields: with `field_naming: qualified` (the default) a feature's field is
`<view>:<feature>`, the text of its Feast feature reference, so views sharing feature names
never meet. With `plain` it is the feature name, and `check_views` rejects two views of
one entity declaring the same one. Versions > 0 of a versioned view get their own fields
(`<view>@v2:<feature>`, `_ts:<view>@v2`), so versions never share data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from feast.stream_feature_view import StreamFeatureView

from .codec import TypeCodec, codec_for
from .config import FieldNaming, RedisHexpireOnlineStoreConfig
from .errors import FieldConflictError, InvalidViewConfig
from .vector_schema import VectorSpec, vector_codec, vector_spec

KIND_TAG = "hexpire.kind"
TTL_TAG = "hexpire.ttl_seconds"
TS_FIELD_PREFIX = "_ts:"
DUMMY_JOIN_KEY = "__dummy_id"  # Feast's join key for entity-less views


class ViewKind(str, Enum):
    batch = "batch"
    stream = "stream"


@dataclass(frozen=True)
class FeatureField:
    name: str
    field: bytes  # hash field name
    codec: TypeCodec
    vector: VectorSpec | None = None  # a vector-indexed field: stored as raw floats


@dataclass(frozen=True)
class ViewLayout:
    name: str
    """The view's name in hash fields and messages: `<view>`, or `<view>@v<N>` for version N > 0."""
    view: str
    """The Feast view name, without version."""
    kind: ViewKind
    ttl_seconds: int  # 0: no expiry
    ttl_source: str  # where the TTL came from, for messages: a tag, Feast ttl=, a config key
    join_keys: tuple[str, ...]  # sorted
    ts_field: bytes
    features: dict[str, FeatureField]
    newest_wins: bool = True  # False for label views: the last write wins, as Feast serves labels

    @property
    def ttl_millis(self) -> int:
        return self.ttl_seconds * 1000

    def all_fields(self) -> list[bytes]:
        return [f.field for f in self.features.values()] + [self.ts_field]


def view_kind(table: Any) -> ViewKind:
    """Stream when tagged so, a StreamFeatureView, or fed by a stream/push source."""
    tagged = (table.tags or {}).get(KIND_TAG)
    if tagged is not None:
        try:
            return ViewKind(tagged)
        except ValueError:
            raise InvalidViewConfig(
                f"view {table.name!r}: tag {KIND_TAG}={tagged!r} must be 'batch' or 'stream'",
                view=table.name,
                setting=KIND_TAG,
                value=tagged,
            ) from None
    if isinstance(table, StreamFeatureView) or getattr(table, "stream_source", None) is not None:
        return ViewKind.stream
    if is_label_view(table):
        return ViewKind.stream  # labels arrive by push, one entity at a time
    return ViewKind.batch


def _feast_ttl_seconds(table: Any) -> int:
    ttl = getattr(table, "ttl", None)
    if ttl is None:
        return 0
    return max(0, int(ttl.total_seconds()))


def is_label_view(table: Any) -> bool:
    return type(table).__name__ == "LabelView"


def view_ttl(table: Any, kind: ViewKind, config: RedisHexpireOnlineStoreConfig) -> tuple[int, str]:
    """(seconds, where it came from): see the module docstring for the precedence."""
    tagged = (table.tags or {}).get(TTL_TAG)
    if tagged is not None:
        try:
            ttl = int(tagged)
        except ValueError:
            ttl = -1
        if ttl < 0:
            raise InvalidViewConfig(
                f"view {table.name!r}: tag {TTL_TAG}={tagged!r} must be a whole number of seconds >= 0",
                view=table.name,
                setting=TTL_TAG,
                value=tagged,
            )
        return ttl, f"tag {TTL_TAG}"
    if is_label_view(table):
        return _feast_ttl_seconds(table), "the label view's Feast ttl= (0: labels never expire)"
    if kind is ViewKind.stream:
        feast_ttl = _feast_ttl_seconds(table)
        if feast_ttl:
            return feast_ttl, "the view's Feast ttl="
        return config.stream_ttl_seconds or 0, "stream_ttl_seconds"
    if config.key_ttl_seconds is not None:
        return config.key_ttl_seconds, "key_ttl_seconds"
    return config.batch_ttl_seconds or 0, "batch_ttl_seconds"


def versioned_name(view: str, version: int | None) -> str:
    """`view` for version 0 or unversioned views, `view@v<N>` otherwise (Feast's reference syntax)."""
    return f"{view}@v{version}" if version else view


def field_name(view: str, feature: str, naming: FieldNaming) -> str:
    """`view` is the versioned name. Plain names carry the version as a suffix."""
    if naming is FieldNaming.qualified:
        return f"{view}:{feature}"
    _base, _, version = view.partition("@")
    return f"{feature}@{version}" if version else feature


def _check_feature_name(view: str, feature: str) -> None:
    if feature.startswith(TS_FIELD_PREFIX):
        raise InvalidViewConfig(
            f"view {view!r}, feature {feature!r}: names starting with {TS_FIELD_PREFIX!r} "
            "are reserved for the store's event-timestamp fields",
            view=view,
            feature=feature,
        )


def join_keys_of(table: Any) -> tuple[str, ...]:
    """Sorted join keys; entity-less views use Feast's dummy key."""
    return tuple(sorted(getattr(table, "join_keys", None) or ())) or (DUMMY_JOIN_KEY,)


def _config_parts(config: RedisHexpireOnlineStoreConfig) -> tuple[Any, ...]:
    return (
        config.field_naming,
        config.key_ttl_seconds,
        config.batch_ttl_seconds,
        config.stream_ttl_seconds,
        config.embedding_dim,
        config.similarity or config.metric_type,
    )


def _signature(table: Any, config: RedisHexpireOnlineStoreConfig, version: int | None) -> tuple[Any, ...]:
    return (
        table.name,
        version,
        type(table).__name__,
        getattr(table, "stream_source", None) is not None,
        tuple(sorted((table.tags or {}).items())),
        tuple(getattr(table, "join_keys", None) or ()),
        tuple(getattr(table, "entities", None) or ()),
        tuple(
            (
                f.name,
                f.dtype,
                getattr(f, "vector_index", False),
                getattr(f, "vector_length", 0),
                getattr(f, "vector_search_metric", None),
            )
            for f in table.features
        ),
        _feast_ttl_seconds(table),
        *_config_parts(config),
    )


def _mutable_parts(table: Any, config: RedisHexpireOnlineStoreConfig, version: int | None) -> tuple[Any, ...]:
    return (
        version,
        len(table.features),
        tuple((table.tags or {}).items()),
        getattr(table, "ttl", None),
        *_config_parts(config),
    )


_LAYOUTS: dict[tuple[Any, ...], ViewLayout] = {}
# Feast's read path reuses the FeatureView objects of its cached request context, so most
# lookups hit this identity cache. Entries hold the objects, so ids are not reused. A hit
# must also match what can change in place on the same objects (a live config's TTLs).
_BY_IDENTITY: dict[tuple[int, int], tuple[Any, RedisHexpireOnlineStoreConfig, tuple[Any, ...], ViewLayout]] = {}
_CACHE_LIMIT = 4096


def view_layout(table: Any, config: RedisHexpireOnlineStoreConfig, version: int | None = None) -> ViewLayout:
    """Cached: building a layout validates tags and resolves codecs for every feature."""
    identity = (id(table), id(config))
    hit = _BY_IDENTITY.get(identity)
    mutable = _mutable_parts(table, config, version)
    if hit is not None and hit[2] == mutable:
        return hit[3]
    signature = _signature(table, config, version)
    layout = _LAYOUTS.get(signature)
    if layout is None:
        layout = _build_layout(table, config, version)
        if len(_LAYOUTS) > _CACHE_LIMIT:
            _LAYOUTS.clear()
        _LAYOUTS[signature] = layout
    if len(_BY_IDENTITY) > _CACHE_LIMIT:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[identity] = (table, config, mutable, layout)
    return layout


def _build_layout(table: Any, config: RedisHexpireOnlineStoreConfig, version: int | None) -> ViewLayout:
    kind = view_kind(table)
    name = versioned_name(table.name, version)
    join_keys = join_keys_of(table)
    features: dict[str, FeatureField] = {}
    for feature in table.features:
        if feature.name in join_keys:  # a StreamFeatureView or ODFV may list its entity columns
            continue
        _check_feature_name(table.name, feature.name)
        value_type = feature.dtype.to_value_type()
        codec = codec_for(
            value_type,
            view=table.name,
            feature=feature.name,
            struct_fields=tuple(getattr(feature.dtype, "fields", None) or ()),
        )
        vector = vector_spec(
            feature,
            value_type,
            view=table.name,
            default_dim=config.embedding_dim,
            default_metric=config.similarity or config.metric_type,
        )
        if vector is not None:
            codec = vector_codec(codec, vector, view=table.name, feature=feature.name)
        features[feature.name] = FeatureField(
            name=feature.name,
            field=field_name(name, feature.name, config.field_naming).encode(),
            codec=codec,
            vector=vector,
        )
    ttl, ttl_source = view_ttl(table, kind, config)
    return ViewLayout(
        name=name,
        view=table.name,
        kind=kind,
        ttl_seconds=ttl,
        ttl_source=ttl_source,
        join_keys=join_keys,
        ts_field=f"{TS_FIELD_PREFIX}{name}".encode(),
        features=features,
        newest_wins=not is_label_view(table),
    )


def check_field_conflicts(layouts: Iterable[ViewLayout]) -> None:
    """Reject two views of one entity writing the same field (possible only with plain naming)."""
    owners: dict[tuple[tuple[str, ...], bytes], list[str]] = defaultdict(list)
    for layout in layouts:
        for feature in layout.features.values():
            owners[(layout.join_keys, feature.field)].append(layout.name)
    clashes = {key: views for key, views in owners.items() if len(views) > 1}
    if clashes:
        lines = [
            f"  field {field.decode()!r} on entity ({', '.join(join_keys)}) "
            f"is declared by views {', '.join(repr(v) for v in sorted(views))}"
            for (join_keys, field), views in sorted(clashes.items())
        ]
        ordered = sorted(clashes.items())
        (_first_keys, first_field), first_views = ordered[0]
        raise FieldConflictError(
            "with field_naming: plain, two feature views of the same entity declare the same feature "
            "name, so they would overwrite each other's hash field:\n"
            + "\n".join(lines)
            + "\nRename one of the features, or use `field_naming: qualified` (the default) to store "
            "fields as '<view>:<feature>'.",
            clashes={field.decode(): sorted(views) for (_keys, field), views in ordered},
            view=sorted(first_views)[0],
            feature=first_field.decode(),
            setting="field_naming",
            value="plain",
        )
