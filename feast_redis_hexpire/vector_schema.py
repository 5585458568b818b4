"""Which features the Redis Query Engine indexes, and how a vector field is stored.

A feature whose Feast `Field` has `vector_index=True` and type `Array(Float32)` or
`Array(Float64)` is stored as the raw little-endian floats the index reads (FLOAT32 /
FLOAT64 in `FT.CREATE`), not as today's JSON text. Its length is fixed: `vector_length`
(or the config's `embedding_dim`); a value of another length is refused at write time,
because the index would silently skip the whole hash. Reads decode the floats back into
the same `float_list_val` / `double_list_val` the text encoding gives.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from .codec import TypeCodec
from .errors import ConfigError, CorruptStoredValue, InvalidFeatureValue, InvalidViewConfig

METRICS = {
    "L2": "L2",
    "EUCLIDEAN": "L2",
    "COSINE": "COSINE",
    "IP": "IP",
    "INNER_PRODUCT": "IP",
    "DOT_PRODUCT": "IP",
    "DOT": "IP",
}
"""Metric names Feast's stores use, and the Query Engine's name for each."""

_ELEMENT = {ValueType.FLOAT_LIST: ("FLOAT32", "<f4"), ValueType.DOUBLE_LIST: ("FLOAT64", "<f8")}


def canonical_metric(name: str, *, what: str) -> str:
    """`L2`, `COSINE` or `IP` for any spelling Feast's stores accept; a ConfigError names `what`."""
    found = METRICS.get(name.strip().upper().replace("-", "_"))
    if found is None:
        raise ConfigError(f"{what}: unknown distance metric; use L2, COSINE or IP (inner product)")
    return found


@dataclass(frozen=True)
class VectorSpec:
    """A vector field as the index declares it."""

    element: str  # FLOAT32 or FLOAT64
    dim: int
    metric: str  # L2, COSINE or IP
    also: tuple[str, ...] = ()
    """Further metrics the field is indexed for: a field that names no metric (and a config
    that names none) is indexed for all three, since Feast's caller picks one per query."""

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric, *self.also)

    @property
    def numpy_dtype(self) -> str:
        return "<f4" if self.element == "FLOAT32" else "<f8"

    def pack(self, values: Sequence[float] | np.ndarray) -> bytes:
        """A query vector as the index compares it."""
        return np.asarray(values, dtype=self.numpy_dtype).tobytes()

    def describe(self, raw: bytes) -> str | None:
        """A stored vector for people (inspect, the demo), or None when `raw` is not one
        vector of this field."""
        dtype = np.dtype(self.numpy_dtype)
        if len(raw) != self.dim * dtype.itemsize:
            return None
        return vector_text(np.frombuffer(raw, dtype=dtype).tolist(), self.element)


def vector_text(values: Sequence[float], element: str, shown: int = 6) -> str:
    """A vector as inspect and the demo show it: its type, length and first values."""
    head = ", ".join(f"{v:.4g}" for v in values[:shown])
    more = ", …" if len(values) > shown else ""
    return f"{element.lower()}[{len(values)}] [{head}{more}]"


def vector_spec(
    feature: Any, value_type: ValueType, *, view: str, default_dim: int | None, default_metric: str | None
) -> VectorSpec | None:
    """The spec of a Feast Field marked `vector_index=True`, None for any other field."""
    if not getattr(feature, "vector_index", False):
        return None
    element = _ELEMENT.get(value_type)
    if element is None:
        raise InvalidViewConfig(
            f"view {view!r}, feature {feature.name!r}: vector_index=True needs Array(Float32) or Array(Float64), "
            f"not {value_type.name}",
            view=view,
            feature=feature.name,
        )
    dim = getattr(feature, "vector_length", 0) or default_dim or 0
    if dim < 1:
        raise InvalidViewConfig(
            f"view {view!r}, feature {feature.name!r}: vector_index=True needs vector_length "
            "(or the online store's embedding_dim): the index fixes each vector's length",
            view=view,
            feature=feature.name,
        )
    declared = getattr(feature, "vector_search_metric", None)
    if declared:
        what = f"view {view!r}, feature {feature.name!r}: vector_search_metric {declared!r}"
        return VectorSpec(element[0], dim, canonical_metric(declared, what=what))
    if default_metric:
        return VectorSpec(element[0], dim, default_metric)
    return VectorSpec(element[0], dim, "L2", ("COSINE", "IP"))


def wrong_length(view: str, feature: str, length: int, dim: int) -> InvalidFeatureValue:
    """The error of a vector whose length is not its field's `vector_length`."""
    return InvalidFeatureValue(
        f"view {view!r}, feature {feature!r}: a vector of length {length}, but the field's vector_length is {dim}",
        view=view,
        feature=feature,
        value=length,
    )


def vector_values(spec: VectorSpec, *, view: str, feature: str) -> Callable[[bytes], list[float]]:
    """Stored vector bytes -> its floats as Python floats: the list Feast's `to_dict()` shows
    for the decoded proto (float32 values widened exactly as the proto's reader widens them)."""
    size = np.dtype(spec.numpy_dtype).itemsize
    unpack = struct.Struct(f"<{spec.dim}{'f' if size == 4 else 'd'}").unpack

    def values(raw: bytes) -> list[float]:
        if len(raw) != spec.dim * size:
            raise CorruptStoredValue(
                f"view {view!r}, feature {feature!r}: stored vector of {len(raw)} bytes is not {spec.dim} "
                f"{spec.element} values",
                view=view,
                feature=feature,
                value=raw[:60],
            )
        return list(unpack(raw))

    return values


def vector_columns(spec: VectorSpec, *, view: str, feature: str) -> Callable[[list[bytes | None]], list[Any]]:
    """`vector_values` over a column of stored vectors (None where absent) at once: one
    numpy conversion for the whole column, each vector checked as `vector_values` does."""
    values = vector_values(spec, view=view, feature=feature)
    size = spec.dim * np.dtype(spec.numpy_dtype).itemsize

    def column(raws: list[bytes | None]) -> list[Any]:
        if all(raw is not None and len(raw) == size for raw in raws):
            joined = b"".join(raws)  # type: ignore[arg-type]
            rows: list[Any] = np.frombuffer(joined, dtype=spec.numpy_dtype).reshape(len(raws), spec.dim).tolist()
            return rows
        return [None if raw is None else values(raw) for raw in raws]

    return column


def vector_codec(base: TypeCodec, spec: VectorSpec, *, view: str, feature: str) -> TypeCodec:
    """`base` (the list type's text codec) with raw little-endian floats of length `spec.dim`."""
    dtype = np.dtype(spec.numpy_dtype)
    field = base.proto_field

    def encode_items(items: Sequence[float]) -> bytes:
        if len(items) != spec.dim:
            raise wrong_length(view, feature, len(items), spec.dim)
        return np.asarray(items, dtype=dtype).tobytes()

    def encode(msg: Any) -> bytes:
        return encode_items(msg.val)

    values = vector_values(spec, view=view, feature=feature)

    def decode(raw: bytes) -> ValueProto:
        proto = ValueProto()
        container = getattr(proto, field)
        container.SetInParent()
        container.val.extend(values(raw))
        return proto

    return TypeCodec(base.value_type, field, encode, decode, encode_items)
