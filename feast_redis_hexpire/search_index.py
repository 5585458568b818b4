"""A view's Redis Query Engine index as part of the schema: what `FT.CREATE` declares.

One index per project and view with vector fields (`vector_enabled: true`), over the
entity hashes in place (`ON HASH PREFIX <project prefix><first join key>=`): the index
follows every write and every expiry on the server, so there is no second copy to keep
in step. Serving queries the alias `<project prefix>_idx:<view>`; the index behind it is
named after a digest of its definition, so a changed view builds a new index alongside,
and `feast apply` swaps the alias once it is built (`search_io`).

Indexed attributes (named by feature; hash fields may hold `:`):

| feature type                              | attribute                                     |
|-------------------------------------------|-----------------------------------------------|
| `vector_index=True` Array(Float32/64)     | VECTOR (FLAT or HNSW, the field's metric)     |
| Int32, Int64, Float32, Float64, UnixTime  | NUMERIC (filters)                             |
| String, Bool                              | TAG (filters); String also TEXT with          |
|                                           | `text_search_enabled` (BM25 `query_string`)   |
| `_ts:<view>` (the view's event time)      | NUMERIC `__ts`: a hash is a document of the   |
|                                           | view only while it has the view's data        |

No Feast import: this is plain data from a ViewLayout.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from feast.value_type import ValueType

from .errors import InvalidViewConfig
from .keys import join_key_head
from .vector_schema import VectorSpec
from .views import ViewLayout

INDEX_SEGMENT = "_idx:"
TS_ATTRIBUTE = "__ts"
TEXT_SUFFIX = "__text"
DISTANCE_ATTRIBUTE = "__distance"

INDEX_TYPE_TAG = "hexpire.vector.index_type"
M_TAG = "hexpire.vector.m"
EF_CONSTRUCTION_TAG = "hexpire.vector.ef_construction"
EF_RUNTIME_TAG = "hexpire.vector.ef_runtime"

DEFAULT_INDEX_TYPE = "FLAT"
"""Exact search: recall 1.0 whatever the data (benchmarks/retrieval.py measures its latency
against HNSW). HNSW is one tag away for collections too large to scan per query."""
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF_RUNTIME = 400

_NUMERIC = {ValueType.INT32, ValueType.INT64, ValueType.FLOAT, ValueType.DOUBLE, ValueType.UNIX_TIMESTAMP}
_TAG = {ValueType.STRING, ValueType.BOOL}
_ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class VectorIndexParams:
    """FLAT, or HNSW with its graph parameters; `ef_runtime` is sent with every query."""

    algorithm: str
    m: int = DEFAULT_M
    ef_construction: int = DEFAULT_EF_CONSTRUCTION
    ef_runtime: int = DEFAULT_EF_RUNTIME


@dataclass(frozen=True)
class IndexedField:
    feature: str
    field: bytes  # the hash field
    attribute: str  # its name in queries
    kind: str  # VECTOR, NUMERIC, TAG or TEXT
    value_type: ValueType
    vector: VectorSpec | None = None
    metric: str | None = None  # a VECTOR attribute's metric (one attribute per metric)


@dataclass(frozen=True)
class IndexSchema:
    """The index of one view: its alias, the key prefix it covers and its attributes."""

    view: str  # the versioned view name
    alias: str
    key_prefix: str
    ts_field: bytes
    fields: tuple[IndexedField, ...]
    params: VectorIndexParams
    view_fields: bool = True
    """Hash fields name their view (`field_naming: qualified`): a hash holding one of them
    holds that view's data, so a plain KNN needs no `_ts` clause (which would make it a
    filtered, brute-force query)."""

    @property
    def vectors(self) -> list[IndexedField]:
        return [f for f in self.fields if f.kind == "VECTOR"]

    @property
    def texts(self) -> list[IndexedField]:
        return [f for f in self.fields if f.kind == "TEXT"]

    def attribute_of(self, feature: str, kinds: tuple[str, ...]) -> IndexedField | None:
        return next((f for f in self.fields if f.feature == feature and f.kind in kinds), None)

    def schema_args(self) -> list[Any]:
        args: list[Any] = [self.ts_field, "AS", TS_ATTRIBUTE, "NUMERIC"]
        for f in self.fields:
            args += [f.field, "AS", f.attribute, f.kind]
            if f.vector is not None and f.metric is not None:
                args += _vector_args(f.vector, f.metric, self.params)
            elif f.kind == "TAG":
                args += ["SEPARATOR", "\x1f"]  # the whole value is one tag, commas included
        return args

    def create_args(self, name: str) -> list[Any]:
        return ["FT.CREATE", name, "ON", "HASH", "PREFIX", "1", self.key_prefix, "SCHEMA", *self.schema_args()]

    @property
    def name(self) -> str:
        """The index behind the alias: a digest of the definition, so a changed view gets a
        new index and an unchanged one is left alone."""
        text = repr([self.key_prefix, *self.schema_args()]).encode()
        return f"{self.alias}#{hashlib.sha1(text).hexdigest()[:12]}"


def _vector_args(spec: VectorSpec, metric: str, params: VectorIndexParams) -> list[Any]:
    attributes: list[Any] = ["TYPE", spec.element, "DIM", spec.dim, "DISTANCE_METRIC", metric]
    if params.algorithm == "HNSW":
        attributes += ["M", params.m, "EF_CONSTRUCTION", params.ef_construction, "EF_RUNTIME", params.ef_runtime]
    return [params.algorithm, len(attributes), *attributes]


def alias_of(project_prefix: str, view: str) -> str:
    return f"{project_prefix}{INDEX_SEGMENT}{view}"


def is_project_index(name: str, project_prefix: str) -> bool:
    """An index (or alias) this store made for the project: `<prefix>_idx:<view>[#digest]`."""
    return name.startswith(project_prefix + INDEX_SEGMENT)


def _positive_tag(tags: dict[str, str], tag: str, default: int, view: str) -> int:
    raw = tags.get(tag)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidViewConfig(f"view {view!r}: tag {tag}={raw!r} must be a whole number >= 1", view=view)
    return value


def index_params(tags: dict[str, str], config_index_type: str | None, view: str) -> VectorIndexParams:
    """The view's tags, else the config's `index_type`, else the defaults above."""
    raw = tags.get(INDEX_TYPE_TAG) or config_index_type or DEFAULT_INDEX_TYPE
    algorithm = raw.upper()
    if algorithm not in ("FLAT", "HNSW"):
        raise InvalidViewConfig(f"view {view!r}: tag {INDEX_TYPE_TAG}={raw!r} must be FLAT or HNSW", view=view)
    return VectorIndexParams(
        algorithm,
        _positive_tag(tags, M_TAG, DEFAULT_M, view),
        _positive_tag(tags, EF_CONSTRUCTION_TAG, DEFAULT_EF_CONSTRUCTION, view),
        _positive_tag(tags, EF_RUNTIME_TAG, DEFAULT_EF_RUNTIME, view),
    )


def index_schema(
    layout: ViewLayout,
    tags: dict[str, str],
    project_prefix: str,
    *,
    text_search: bool,
    config_index_type: str | None,
    view_fields: bool = True,
) -> IndexSchema | None:
    """The view's index, or None for a view without vector fields (it is not indexed)."""
    if not any(f.vector is not None for f in layout.features.values()):
        return None
    fields: list[IndexedField] = []
    for feature in layout.features.values():
        name = feature.name if _ATTRIBUTE_NAME.fullmatch(feature.name) else f"f{len(fields)}"
        value_type = feature.codec.value_type
        if feature.vector is not None:
            for metric in feature.vector.metrics:  # the first under the feature's name
                attribute = name if metric == feature.vector.metric else f"{name}__{metric.lower()}"
                fields.append(
                    IndexedField(feature.name, feature.field, attribute, "VECTOR", value_type, feature.vector, metric)
                )
        elif value_type in _NUMERIC:
            fields.append(IndexedField(feature.name, feature.field, name, "NUMERIC", value_type))
        elif value_type in _TAG:
            fields.append(IndexedField(feature.name, feature.field, name, "TAG", value_type))
            if text_search and value_type is ValueType.STRING:
                fields.append(IndexedField(feature.name, feature.field, name + TEXT_SUFFIX, "TEXT", value_type))
    return IndexSchema(
        view=layout.name,
        alias=alias_of(project_prefix, layout.name),
        key_prefix=project_prefix + join_key_head(layout.join_keys[0]),
        ts_field=layout.ts_field,
        fields=tuple(fields),
        params=index_params(tags, config_index_type, layout.view),
        view_fields=view_fields,
    )
