"""Arrow record batches straight into the write script's records, without ValueProtos.

Feast's own write path turns every Arrow value into a ValueProto
(`feast.utils._convert_arrow_to_proto`), and the store then turns each proto into bytes
(`writes.plan_writes`). This module goes from the Arrow columns to the same bytes and
the same `EntityWrite` records directly, column by column:

- where pyarrow compute gives the store's exact bytes it is used (integers as digits,
  strings and bytes as they are, bools as words, epoch arithmetic for event times);
- where the text rule is Python's (a DOUBLE is `repr`, a FLOAT numpy's float32 text, lists
  are JSON), the codec's own functions run per value on the column's Python values;
- any column whose Arrow type is not one of those (a string pushed for an Int64 feature,
  an int64 column with nulls and values past 2**53, sets, maps, structs, JSON, ...) goes
  through Feast's own conversion for that column (`python_values_to_proto_values`) and
  the codec's proto encoder: the bytes are then the default path's by construction.

So the stored bytes equal the default path's for every input, and the fast columns are
those whose equality is certain (tests/test_provider.py checks it property-based against
the default path on a real Redis).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from feast import utils as feast_utils
from feast.type_map import python_values_to_proto_values
from feast.utils import _coerce_datetime
from feast.value_type import ValueType

from .codec import (
    FALSE_TEXT,
    TRUE_TEXT,
    TypeCodec,
    double_text,
    encode_event_ts,
    encode_value,
    float32_text,
    short_repr,
)
from .errors import InvalidEntityKey, InvalidFeatureValue, InvalidInput
from .keys import entity_value_text, int_texts, key_texts, string_texts
from .vector_schema import wrong_length
from .views import FeatureField, ViewLayout
from .write_rules import event_ttl_ms, expiry_ms, numeric
from .writes import EntityWrite, Shape, WritePlan

logger = logging.getLogger("feast_redis_hexpire")

VT = ValueType
Values = np.ndarray  # object array: bytes, or None for a null (the write deletes the field)

INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)
EXACT_FLOAT_INT = 2**53
NULL_TIMESTAMP = b"%d" % -(2**63)  # what Feast's conversion makes of a null UnixTimestamp
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


# ---------------------------------------------------------------- small helpers


def _objects(array: pa.Array) -> Values:
    values: np.ndarray = array.to_numpy(zero_copy_only=False)
    return values


def _binary(array: pa.Array) -> Values:
    """A string or binary array as an object array of bytes (None for nulls)."""
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.large_binary())
    elif pa.types.is_string(array.type):
        array = array.cast(pa.binary())
    return _objects(array)


def _digits(array: pa.Array) -> Values:
    """Integers as decimal digits: the codec's `b"%d" % value`, vectorised."""
    return _binary(pc.cast(array, pa.string()))


def _min_max(array: pa.Array) -> tuple[int, int] | None:
    result = pc.min_max(array)
    low, high = result["min"].as_py(), result["max"].as_py()
    return None if low is None else (low, high)


def _integers(array: pa.Array, bounds: tuple[int, int]) -> bool:
    """An integer column Feast reads as the same integers: every value within `bounds`
    (else protobuf refuses it), and, with nulls (which make `to_numpy` return float64),
    every value exact as a double."""
    if not pa.types.is_integer(array.type):
        return False
    extremes = _min_max(array)
    if extremes is None:
        return True
    low, high = extremes
    if low < bounds[0] or high > bounds[1]:
        return False
    return not array.null_count or max(-low, high) <= EXACT_FLOAT_INT


def _is_string(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(data_type) or pa.types.is_large_string(data_type))


def _is_binary(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type))


def _is_list(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_list(data_type) or pa.types.is_large_list(data_type))


# ---------------------------------------------------------------- feature columns
#
# Each fast encoder returns the column's encoded values, or None when its Arrow type is not
# one it encodes exactly; the column then goes through Feast's own conversion.

FastEncoder = Callable[[pa.Array, TypeCodec], "Values | None"]


def _int_column(bounds: tuple[int, int]) -> FastEncoder:
    def encode(array: pa.Array, codec: TypeCodec) -> Values | None:
        return _digits(array) if _integers(array, bounds) else None

    return encode


def _unix_timestamps(array: pa.Array, codec: TypeCodec) -> Values | None:
    """Whole seconds, floored (numpy's datetime64[s] cast). Feast stores a null timestamp as
    INT64_MIN, and reads an int column with nulls as floats, which it also stores that way:
    that case goes through Feast's conversion."""
    if pa.types.is_timestamp(array.type):
        raw = array.cast(pa.int64()).fill_null(0).to_numpy()
        values = _digits(pa.array(raw // _PER_SECOND[array.type.unit]))
        if array.null_count:
            values[_null_mask(array)] = NULL_TIMESTAMP
        return values
    if array.null_count == 0 and _integers(array, INT64_RANGE):
        return _digits(array)
    return None


def _null_mask(array: pa.Array) -> np.ndarray:
    mask: np.ndarray = array.is_null().to_numpy(zero_copy_only=False)
    return mask


def _with_nulls(texts: list[Any], nulls: np.ndarray) -> Values:
    values: Values = np.empty(len(texts), dtype=object)
    values[:] = texts
    if nulls.any():
        values[nulls] = None
    return values


def _doubles(array: pa.Array, codec: TypeCodec) -> Values | None:
    """Feast treats NaN like a null for a scalar (pd.isnull), and stores the rest as they are."""
    if not pa.types.is_float64(array.type):
        return None
    floats = array.to_numpy(zero_copy_only=False)  # nulls become NaN
    return _with_nulls(list(map(double_text, floats.tolist())), np.isnan(floats))


def _floats(array: pa.Array, codec: TypeCodec) -> Values | None:
    """float32 or float64 in, float32 stored (protobuf's float field rounds a double)."""
    if not (pa.types.is_float32(array.type) or pa.types.is_float64(array.type)):
        return None
    floats = _as_float32(array.to_numpy(zero_copy_only=False))
    return _with_nulls(list(map(float32_text, floats.tolist())), np.isnan(floats))


def _as_float32(floats: np.ndarray) -> np.ndarray:
    """Doubles rounded to float32 as protobuf's float field stores them (past its range: ±inf)."""
    with np.errstate(over="ignore"):
        return floats.astype(np.float32)


def _bools(array: pa.Array, codec: TypeCodec) -> Values | None:
    if not pa.types.is_boolean(array.type):
        return None
    return _objects(pc.if_else(array, pa.scalar(TRUE_TEXT, pa.binary()), pa.scalar(FALSE_TEXT, pa.binary())))


def _texts(array: pa.Array, codec: TypeCodec) -> Values | None:
    return _binary(array) if _is_string(array.type) else None


def _raw_bytes(array: pa.Array, codec: TypeCodec) -> Values | None:
    """Feast infers nothing from an empty value: a column holding only b"" and nulls is all
    null to it."""
    if not _is_binary(array.type):
        return None
    longest = pc.max(pc.binary_length(array)).as_py()
    if not longest:
        return np.full(len(array), None, dtype=object)
    return _objects(array)


# ---------------------------------------------------------------- list columns
#
# Feast reads a list column as numpy arrays (`to_numpy`), replaces None elements with a
# per-type default, and builds the repeated proto; the codec then writes `encode_items` of
# its elements. Here the elements come from the flattened child column instead.

ItemReader = Callable[[pa.Array], "list[Any] | None"]


def _float_items(child: pa.Array) -> list[Any] | None:
    if not (pa.types.is_float32(child.type) or pa.types.is_float64(child.type)):
        return None
    items: list[Any] = child.to_numpy(zero_copy_only=False).tolist()  # null elements: NaN
    return items


def _float32_items(child: pa.Array) -> list[Any] | None:
    if not (pa.types.is_float32(child.type) or pa.types.is_float64(child.type)):
        return None
    items: list[Any] = _as_float32(child.to_numpy(zero_copy_only=False)).tolist()
    return items


def _int_items(bounds: tuple[int, int]) -> ItemReader:
    def read(child: pa.Array) -> list[Any] | None:
        # A null element makes numpy read the list as floats, which Feast refuses.
        if child.null_count or not _integers(child, bounds):
            return None
        items: list[Any] = child.to_pylist()
        return items

    return read


def _items_or(default: Any, accepts: Callable[[pa.DataType], bool]) -> ItemReader:
    def read(child: pa.Array) -> list[Any] | None:
        if not accepts(child.type):
            return None
        items: list[Any] = child.to_pylist()
        if child.null_count:
            items = [default if item is None else item for item in items]
        return items

    return read


def _list_column(read_items: ItemReader) -> FastEncoder:
    def encode(array: pa.Array, codec: TypeCodec) -> Values | None:
        if not _is_list(array.type) or codec.encode_items is None:
            return None
        offsets = array.offsets.to_numpy()
        start, end = int(offsets[0]), int(offsets[-1])
        items = read_items(array.values.slice(start, end - start))
        if items is None:
            return None
        encode_items = codec.encode_items
        bounds = (offsets - start).tolist()
        nulls = _null_mask(array)
        if nulls.any():  # a null row is no value, not an empty list (a vector's length is checked)
            texts = [None if null else encode_items(items[lo:hi]) for (lo, hi), null in zip(pairwise(bounds), nulls)]
        else:
            texts = [encode_items(items[lo:hi]) for lo, hi in pairwise(bounds)]
        return _with_nulls(texts, nulls)

    return encode


_STRING_ITEMS = _items_or("", _is_string)

FAST_ENCODERS: dict[ValueType, FastEncoder] = {
    VT.INT32: _int_column(INT32_RANGE),
    VT.INT64: _int_column(INT64_RANGE),
    VT.UNIX_TIMESTAMP: _unix_timestamps,
    VT.DOUBLE: _doubles,
    VT.FLOAT: _floats,
    VT.BOOL: _bools,
    VT.STRING: _texts,
    VT.UUID: _texts,
    VT.TIME_UUID: _texts,
    VT.DECIMAL: _texts,
    VT.BYTES: _raw_bytes,
    VT.PDF_BYTES: _raw_bytes,
    VT.IMAGE_BYTES: _raw_bytes,
    VT.INT32_LIST: _list_column(_int_items(INT32_RANGE)),
    VT.INT64_LIST: _list_column(_int_items(INT64_RANGE)),
    VT.DOUBLE_LIST: _list_column(_float_items),
    VT.FLOAT_LIST: _list_column(_float32_items),
    VT.BOOL_LIST: _list_column(_items_or(False, pa.types.is_boolean)),
    VT.STRING_LIST: _list_column(_STRING_ITEMS),
    VT.UUID_LIST: _list_column(_STRING_ITEMS),
    VT.TIME_UUID_LIST: _list_column(_STRING_ITEMS),
    VT.DECIMAL_LIST: _list_column(_STRING_ITEMS),
    VT.BYTES_LIST: _list_column(_items_or(b"", _is_binary)),
}
"""Types with an Arrow fast path. Sets (Feast deduplicates through a Python set), maps,
structs, nested lists, JSON (validated per value) and zoned timestamps always take
Feast's conversion."""


_CONVERSION_ERRORS = (ValueError, TypeError, OverflowError)
"""What Feast's conversion raises for a value that does not fit its type ("abc" for a Float32)."""


def _via_feast(array: pa.Array, codec: TypeCodec, view: str, feature: str) -> Values:
    """Feast's own conversion of the column, then the codec's proto encoder: the default
    path, column by column. A value Feast cannot convert is the store's invalid-value error
    (HTTP 422 through `feast serve`), naming the view, the feature and the value."""
    protos = _feast_protos(array, codec.value_type, InvalidFeatureValue, view, "feature", feature)
    values: Values = np.empty(len(protos), dtype=object)
    values[:] = [encode_value(codec, proto, view=view, feature=feature) for proto in protos]
    return values


def _feast_protos(
    array: pa.Array, value_type: ValueType, error: type[InvalidInput], view: str, what: str, name: str
) -> list[Any]:
    """Feast's conversion of a column to ValueProtos; a value it cannot convert raises `error`
    naming the view, the column and the value."""
    values = array.to_numpy(zero_copy_only=False)
    try:
        protos: list[Any] = python_values_to_proto_values(values, value_type)
    except _CONVERSION_ERRORS as exc:
        value = _first_unconvertible(values, value_type)
        raise error(
            f"view {view!r}, {what} {name!r}: declared {value_type.name} but got "
            f"{type(value).__name__} = {short_repr(value)} ({exc})",
            view=view,
            feature=name,
            value=value,
            cause=exc,
        ) from exc
    return protos


def _first_unconvertible(values: np.ndarray, value_type: ValueType) -> Any:
    """The first value Feast cannot convert on its own (else the first non-null: the column's
    values disagree with each other)."""
    for value in values:
        try:
            python_values_to_proto_values(np.array([value], dtype=object), value_type)
        except _CONVERSION_ERRORS:
            return value
    return next((value for value in values if value is not None), None)


def encode_column(array: pa.Array, codec: TypeCodec, view: str, feature: str) -> Values:
    """A feature column's stored bytes, None where the value is null."""
    fast = FAST_ENCODERS.get(codec.value_type)
    values = fast(array, codec) if fast is not None else None
    return values if values is not None else _via_feast(array, codec, view, feature)


# ---------------------------------------------------------------- event times and keys


def event_times(array: pa.Array, view: str, column: str) -> tuple[Values, np.ndarray]:
    """`_ts:<view>` values (epoch microseconds as digits) and the same as int64. A timestamp
    column (naive = UTC; Feast reads a zoned one as its UTC instant) is floored to
    microseconds as pandas' `to_pydatetime` does; anything else (strings, dates, nulls) goes
    through Feast's own `pd.to_datetime` reading."""
    if pa.types.is_timestamp(array.type) and array.null_count == 0:
        raw = array.cast(pa.int64()).to_numpy()
        per_second = _PER_SECOND[array.type.unit]
        micros = raw // 1000 if per_second > 1_000_000 else raw * (1_000_000 // per_second)
        return _digits(pa.array(micros)), micros
    values: Values = np.empty(len(array), dtype=object)
    python_values = array.to_numpy(zero_copy_only=False)
    try:
        times = pd.to_datetime(python_values)
    except _CONVERSION_ERRORS as exc:
        value = next((v for v in python_values if not _reads_as_time(v)), None)
        raise InvalidFeatureValue(
            f"view {view!r}, event-time column {column!r}: {type(value).__name__} = {short_repr(value)} "
            f"is not a time ({exc})",
            view=view,
            feature=column,
            value=value,
            cause=exc,
        ) from exc
    values[:] = [encode_event_ts(_coerce_datetime(ts)) for ts in times]
    return values, np.array([int(value) for value in values], dtype=np.int64)


def _reads_as_time(value: Any) -> bool:
    try:
        pd.to_datetime([value])
    except _CONVERSION_ERRORS:
        return False
    return True


def join_key_texts(name: str, value_type: ValueType, array: pa.Array, view: str) -> list[str]:
    """One join key's value texts, by keys.py's rules (string_texts, int_texts; anything
    else per value from Feast's protos, as the default path)."""
    if array.null_count == 0:
        if value_type is VT.STRING and _is_string(array.type):
            return string_texts(array.to_pylist())
        bounds = {VT.INT64: INT64_RANGE, VT.INT32: INT32_RANGE}.get(value_type)
        if bounds is not None and _integers(array, bounds):
            return int_texts(array.to_pylist())
    protos = _feast_protos(array, value_type, InvalidEntityKey, view, "join key", name)
    return [entity_value_text(name, proto) for proto in protos]


# ---------------------------------------------------------------- a pushed frame


def table_from_frame(df: pd.DataFrame, encoder: ArrowViewEncoder) -> pa.Table:
    """A pushed frame as Arrow, as Feast builds it (`pa.Table.from_pandas`). A column Arrow
    cannot hold (a string among an Int64 feature's numbers) is the store's invalid-value
    error, naming the view, the column and the value, instead of pyarrow's."""
    try:
        return _columns_as_arrow(df)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        declared = {feature.name: feature.field.codec.value_type for feature in encoder.features}
        join_keys = dict(encoder.join_keys)
        view = encoder.layout.name
        for name in df.columns:
            try:
                pa.array(df[name], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                value = _odd_one_out(df[name].tolist())
                value_type = join_keys.get(name) or declared.get(name)
                error: type[InvalidInput] = InvalidEntityKey if name in join_keys else InvalidFeatureValue
                what = "join key" if name in join_keys else "feature" if name in declared else "column"
                raise error(
                    f"view {view!r}, {what} {name!r}: "
                    + (f"declared {value_type.name} but " if value_type else "")
                    + f"got {type(value).__name__} = {short_repr(value)} among values of another type ({exc})",
                    view=view,
                    feature=str(name),
                    value=value,
                    cause=exc,
                ) from exc
        raise


def _columns_as_arrow(df: pd.DataFrame) -> pa.Table:
    """`pa.Table.from_pandas(df)`'s columns, each converted as it converts them
    (`pa.array(column, from_pandas=True)`), without the pandas metadata and index it
    adds, which nothing here reads: half its time on a one-row push (1.0 ms -> 0.5 ms).
    Frames whose column names are not distinct strings take from_pandas itself."""
    names = list(df.columns)
    if not all(type(name) is str for name in names) or len(set(names)) != len(names):
        return pa.Table.from_pandas(df)
    return pa.Table.from_arrays([pa.array(df[name], from_pandas=True) for name in names], names=names)


def _odd_one_out(values: list[Any]) -> Any:
    """The first value whose type differs from the first non-null value's."""
    present = [value for value in values if value is not None and not (isinstance(value, float) and math.isnan(value))]
    first = type(present[0]) if present else None
    return next((value for value in present if type(value) is not first), present[0] if present else None)


# ---------------------------------------------------------------- records


def assemble(
    keys: Sequence[bytes],
    layout: ViewLayout,
    times: Values,
    micros: np.ndarray,
    fields: Sequence[bytes],
    columns: Sequence[Values],
) -> list[EntityWrite]:
    """The script's record per row (write_script.lua): the expiry for expiring stream rows,
    the event time, then the values of the fields the row sets, in the view's order; nulls
    are deleted. Rows sharing a pattern of nulls share a shape: they are laid out together
    in one 2-D object array, whose `tolist()` builds their records in C."""
    count = len(keys)
    ttl_ms = event_ttl_ms(layout)
    lead: list[Values] = []
    if ttl_ms is None:
        flags = numeric(micros)
    else:
        expire = expiry_ms(micros, ttl_ms)
        flags = numeric(micros, expire)
        lead.append(_digits(pa.array(expire)))
    lead.append(times)
    records: list[Any] = [None] * count
    shapes: list[Shape | None] = [None] * count
    patterns: np.ndarray = np.zeros(count, dtype=np.int64)
    if columns:
        nulls = np.stack([np.equal(column, None) for column in columns], axis=1)
        if len(columns) < 63:
            patterns = nulls @ (1 << np.arange(len(columns), dtype=np.int64))
        else:  # too many features for a bit pattern: one group per distinct row of nulls
            patterns = np.unique(nulls, axis=0, return_inverse=True)[1].reshape(-1)
    distinct = np.unique(patterns)
    for pattern in distinct.tolist():
        rows = None if len(distinct) == 1 else np.flatnonzero(patterns == pattern)
        present = [j for j, column in enumerate(columns) if not _is_null(column, rows)]
        shape: Shape = (
            (layout.ts_field, *(fields[j] for j in present)),
            tuple(fields[j] for j in range(len(columns)) if j not in present),
        )
        parts = [*lead, *(columns[j] for j in present)]
        block: np.ndarray = np.empty((count if rows is None else len(rows), len(parts)), dtype=object)
        for position, part in enumerate(parts):
            block[:, position] = part if rows is None else part[rows]
        if rows is None:
            records = block.tolist()
            shapes = [shape] * count
        else:
            for row, record in zip(rows.tolist(), block.tolist()):
                records[row] = record
                shapes[row] = shape
    return [
        EntityWrite(key, record, shape, flag)
        for key, record, shape, flag in zip(keys, records, cast(list[Shape], shapes), flags.tolist())
    ]


def _is_null(column: Values, rows: np.ndarray | None) -> bool:
    """Whether a column is null in the rows of one null pattern (all or none of them are)."""
    return column[0 if rows is None else rows[0]] is None


# ---------------------------------------------------------------- a view's encoder


@dataclass(frozen=True)
class FeatureColumn:
    name: str
    field: FeatureField


@dataclass
class ArrowViewEncoder:
    """Everything needed to turn one view's record batches into write plans."""

    feature_view: Any
    layout: ViewLayout
    head: list[Any]
    prefix: str
    join_keys: list[tuple[str, ValueType]]  # as Feast's conversion sees them: entity columns
    features: list[FeatureColumn]  # the view's features, in its order
    feature_names: list[str]  # every declared feature: Feast requires each column
    timestamp_column: str
    created_column: str | None

    def _check_vector_widths(self, batch: pa.RecordBatch) -> None:
        """A vector-indexed feature's values must be `vector_length` long: InvalidFeatureValue
        naming the view, feature and the first wrong length, and nothing is written."""
        names = set(batch.schema.names)
        for feature in self.features:
            spec = feature.field.vector
            if spec is None or feature.name not in names:
                continue
            column = batch.column(feature.name)
            if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
                continue  # a fixed-size list, or not a list: the encoder names what is wrong
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            wrong = np.flatnonzero((lengths != spec.dim) & ~np.isnan(lengths.astype(float)))
            if len(wrong):
                raise wrong_length(self.layout.name, feature.name, int(lengths[wrong[0]]), spec.dim)

    def plan(self, batch: pa.RecordBatch) -> WritePlan:
        """Validate and encode one batch, in the checks' order of Feast's conversion."""
        self._check_vector_widths(batch)  # the store's error, before Feast's plainer one
        # Feast's conversion checks vector widths since 0.67 (also of a field without
        # vector_length, against its first row); before, it checks none.
        validate_widths = getattr(feast_utils, "_validate_vector_field_lengths", None)
        if validate_widths is not None:
            validate_widths(batch, self.feature_view)
        names = set(batch.schema.names)
        for column in [*self.feature_names, *(name for name, _ in self.join_keys)]:
            if column not in names:
                raise ValueError(f"Column {column} not found in table")
        view = self.layout.name
        columns = [
            encode_column(batch.column(feature.name), feature.field.codec, view, feature.name)
            for feature in self.features
        ]
        texts = [
            (name, join_key_texts(name, value_type, batch.column(name), view)) for name, value_type in self.join_keys
        ]
        keys = [key.encode() for key in key_texts(self.prefix, texts)]
        times, micros = event_times(batch.column(self.timestamp_column), view, self.timestamp_column)
        if self.created_column:
            batch.column(self.created_column)  # Feast reads it (the store does not): it must exist
        fields = [feature.field.field for feature in self.features]
        rows = assemble(keys, self.layout, times, micros, fields, columns)
        return WritePlan(self.layout, self.head, rows)
