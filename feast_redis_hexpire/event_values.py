"""One Python value at a time, to the bytes `store.push` would store for it.

The per-event writer (events.py) holds plain Python values, not a frame. Pushing them
would build a DataFrame, then Arrow, then encode column by column (arrow_writes); for one
event that costs far more than the round trip. Here each declared type gets one encoder
made once per registry version, whose fast branch takes the Python types whose stored
bytes are certain (an int for an Int64, a float for a Float64, a str for a String, ...),
in a few hundred nanoseconds. Every other value goes the way a one-row push takes it: a
one-row DataFrame, `pa.Table.from_pandas`, and `arrow_writes`' own column encoder, so its
bytes are push's by construction. tests/test_events.py checks the two against `store.push`
on a real Redis, property-based, over every type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.value_type import ValueType

from .arrow_writes import INT32_RANGE, INT64_RANGE, encode_column, join_key_texts
from .codec import FALSE_TEXT, TRUE_TEXT, TypeCodec, event_ts_micros, float32_text, short_repr
from .errors import InvalidEntityKey, InvalidFeatureValue
from .keys import NEEDS_ESCAPE, bytes_value_text, escape_component

VT = ValueType

ValueEncoder = Callable[[Any], "bytes | None"]
"""A feature value -> its stored bytes, or None for a null (the write deletes the field)."""
KeyEncoder = Callable[[Any], str]
"""A join-key value -> its text in the entity's key."""

_NOT_FAST = object()
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# pandas holds datetimes as int64 nanoseconds: outside these years a column is objects.
_PANDAS_YEARS = (1678, 2261)


def _one_row(name: str, value: Any) -> pa.Array:
    """The column a one-row push of `value` gives Feast: pandas' inference, then Arrow's."""
    table = pa.Table.from_pandas(pd.DataFrame({name: [value]}), preserve_index=False)
    return table.column(0).combine_chunks()


_NUMBERS = frozenset((VT.INT32, VT.INT64, VT.FLOAT, VT.DOUBLE, VT.UNIX_TIMESTAMP))
_TEXTS = frozenset((VT.STRING, VT.UUID, VT.TIME_UUID, VT.DECIMAL, VT.JSON))
_BYTES = frozenset((VT.BYTES, VT.PDF_BYTES, VT.IMAGE_BYTES))


def _wrong_kind(declared: ValueType, value: Any) -> bool:
    """A value whose kind is not the declared one. Push converts more than it should (a
    str "7" or a float 7.5 for an Int64 becomes 7, an int for a String "5", a list for a
    Float64 nothing at all); an event's value must at least be of the declared kind:
    a number for a number, a str for text, bytes for bytes, a bool for a bool, a list
    for a list or set."""
    name = declared.name
    if name.endswith(("_LIST", "_SET")):
        return not isinstance(value, (list, tuple, set, frozenset, np.ndarray))
    if declared in _NUMBERS:
        if isinstance(value, (str, bytes, bool, np.bool_, list, tuple, dict, set)):
            return True
        if declared in (VT.INT32, VT.INT64) and isinstance(value, float):
            return not value.is_integer()
        return False
    if declared is VT.BOOL:
        return not isinstance(value, (bool, np.bool_))
    if declared in _TEXTS:
        return isinstance(value, (bytes, bool, int, float, list, tuple, set))
    if declared in _BYTES:
        return not isinstance(value, (bytes, bytearray, memoryview))
    return False


def _as_pushed(view: str, name: str, value: Any, what: str, declared: ValueType) -> pa.Array:
    error = InvalidEntityKey if what == "join key" else InvalidFeatureValue
    problem = "" if not _wrong_kind(declared, value) else "not a value of that kind"
    if not problem:
        try:
            return _one_row(name, value)
        except (
            pa.ArrowInvalid,
            pa.ArrowTypeError,
            pa.ArrowNotImplementedError,
            ValueError,
            TypeError,
            OverflowError,
        ) as exc:
            problem = str(exc)
    raise error(
        f"view {view!r}, {what} {name!r}: declared {declared.name} but got "
        f"{type(value).__name__} = {short_repr(value)} ({problem})",
        view=view,
        feature=name,
        value=value,
    )


def _one(encoded: list[Any], view: str, what: str, name: str, declared: ValueType, value: Any) -> Any:
    """The one encoded value of a one-row column; Feast's conversion drops a value it
    cannot read as the declared type (a list for a Float64) instead of refusing it."""
    if len(encoded) == 1:
        return encoded[0]
    error = InvalidEntityKey if what == "join key" else InvalidFeatureValue
    raise error(
        f"view {view!r}, {what} {name!r}: declared {declared.name} but got "
        f"{type(value).__name__} = {short_repr(value)} (not a value of that type)",
        view=view,
        feature=name,
        value=value,
    )


def _in(bounds: tuple[int, int]) -> Callable[[int], bool]:
    low, high = bounds
    return lambda value: low <= value <= high


def _int_fast(bounds: tuple[int, int]) -> Callable[[Any], Any]:
    fits = _in(bounds)

    def fast(value: Any) -> Any:
        return b"%d" % value if type(value) is int and fits(value) else _NOT_FAST

    return fast


def _double_fast(value: Any) -> Any:
    if type(value) is not float:
        return _NOT_FAST
    return None if value != value else repr(value).encode()  # NaN is a null to Feast


def _float_fast(value: Any) -> Any:
    if type(value) is not float or not (value != value or math.isinf(value) or abs(value) <= _FLOAT32_MAX):
        return _NOT_FAST
    return None if value != value else float32_text(value)


def _bool_fast(value: Any) -> Any:
    if value is True:
        return TRUE_TEXT
    if value is False:
        return FALSE_TEXT
    return _NOT_FAST


def _text_fast(value: Any) -> Any:
    return value.encode() if type(value) is str else _NOT_FAST


def _bytes_fast(value: Any) -> Any:
    return value if type(value) is bytes and value else _NOT_FAST  # b"" alone is a null to Feast


def _timestamp_fast(value: Any) -> Any:
    if type(value) is int and INT64_RANGE[0] <= value <= INT64_RANGE[1]:
        return b"%d" % value
    if isinstance(value, datetime) and _PANDAS_YEARS[0] <= value.year <= _PANDAS_YEARS[1]:
        return b"%d" % (event_ts_micros(value) // 1_000_000)
    return _NOT_FAST


def _all_nan(items: list[float]) -> bool:
    """pandas makes each NaN of a pushed list a null, and Feast stores a list of nothing but
    nulls as zeros (one with a number in it keeps its NaNs): such a list takes the one-row
    push path, which does what push does."""
    return all(item != item for item in items)


def _items_fast(item_type: type, codec: TypeCodec, check: Callable[[Any], bool] | None = None) -> Callable[[Any], Any]:
    encode_items = codec.encode_items
    assert encode_items is not None

    def fast(value: Any) -> Any:
        if type(value) is not list or not value:  # an empty list has no element type for Arrow
            return _NOT_FAST
        for item in value:
            if type(item) is not item_type or (check is not None and not check(item)):
                return _NOT_FAST
        if item_type is float and _all_nan(value):
            return _NOT_FAST
        return encode_items(value)

    return fast


def _float32_items(codec: TypeCodec) -> Callable[[Any], Any]:
    encode_items = codec.encode_items
    assert encode_items is not None

    def fast(value: Any) -> Any:
        if type(value) is not list or not value:
            return _NOT_FAST
        for item in value:
            if type(item) is not float or (abs(item) > _FLOAT32_MAX and not math.isinf(item)):
                return _NOT_FAST
        if _all_nan(value):
            return _NOT_FAST
        items: list[Any] = np.array(value, dtype=np.float32).tolist()
        return encode_items(items)

    return fast


def _fast_encoder(codec: TypeCodec) -> Callable[[Any], Any] | None:
    kind = codec.value_type
    if kind in (VT.INT64, VT.INT32):
        return _int_fast(INT64_RANGE if kind is VT.INT64 else INT32_RANGE)
    if kind is VT.DOUBLE:
        return _double_fast
    if kind is VT.FLOAT:
        return _float_fast
    if kind is VT.BOOL:
        return _bool_fast
    if kind in (VT.STRING, VT.UUID, VT.TIME_UUID, VT.DECIMAL):
        return _text_fast
    if kind in (VT.BYTES, VT.PDF_BYTES, VT.IMAGE_BYTES):
        return _bytes_fast
    if kind is VT.UNIX_TIMESTAMP:
        return _timestamp_fast
    if kind in (VT.INT64_LIST, VT.INT32_LIST):
        return _items_fast(int, codec, _in(INT64_RANGE if kind is VT.INT64_LIST else INT32_RANGE))
    if kind is VT.DOUBLE_LIST:
        return _items_fast(float, codec)
    if kind is VT.FLOAT_LIST:
        return _float32_items(codec)
    if kind is VT.BOOL_LIST:
        return _items_fast(bool, codec)
    if kind in (VT.STRING_LIST, VT.UUID_LIST, VT.TIME_UUID_LIST, VT.DECIMAL_LIST):
        return _items_fast(str, codec)
    if kind is VT.BYTES_LIST:
        return _items_fast(bytes, codec)
    return None


_FAST_ERRORS = (UnicodeEncodeError, OverflowError, ValueError, TypeError)
"""A fast branch that cannot encode a value exactly (a lone surrogate in a str, ...) hands
it to the one-row push path, which names the value in its error."""


def value_encoder(codec: TypeCodec, view: str, feature: str) -> ValueEncoder:
    """The encoder of one feature's values."""

    def as_pushed(value: Any) -> bytes | None:
        array = _as_pushed(view, feature, value, "feature", codec.value_type)
        encoded: list[bytes | None] = encode_column(array, codec, view, feature).tolist()
        one: bytes | None = _one(encoded, view, "feature", feature, codec.value_type, value)
        return one

    def other(value: Any) -> bytes | None:
        return None if value is None else as_pushed(value)

    common = _common_encoder(codec.value_type, other)
    if common is not None:
        return common
    fast = _fast_encoder(codec)
    if fast is None:
        return other

    def encode(value: Any) -> bytes | None:
        if value is None:
            return None
        try:
            encoded = fast(value)
        except _FAST_ERRORS:
            encoded = _NOT_FAST
        return as_pushed(value) if encoded is _NOT_FAST else encoded

    return encode


def _common_encoder(kind: ValueType, other: ValueEncoder) -> ValueEncoder | None:
    """The scalar types nearly every stream feature has, as one function call per value
    (the same bytes as their `_fast_encoder`; `other` takes every other value)."""
    if kind in (VT.INT64, VT.INT32):
        low, high = INT64_RANGE if kind is VT.INT64 else INT32_RANGE

        def integer(value: Any) -> bytes | None:
            if type(value) is int and low <= value <= high:
                return b"%d" % value
            return other(value)

        return integer
    if kind is VT.DOUBLE:

        def double(value: Any) -> bytes | None:
            if type(value) is float:
                return repr(value).encode() if value == value else None  # NaN is a null to Feast
            return other(value)

        return double
    if kind is VT.STRING:

        def text(value: Any) -> bytes | None:
            if type(value) is str:
                try:
                    return value.encode()
                except UnicodeEncodeError:  # a lone surrogate: push's path names it
                    pass
            return other(value)

        return text
    return None


def key_encoder(view: str, name: str, value_type: ValueType) -> KeyEncoder:
    """The encoder of one join key's values (keys.py spells them; a one-row push decides
    what any other value means)."""
    needs_escape = NEEDS_ESCAPE.search

    def as_pushed(value: Any) -> str:
        if value is None:
            raise InvalidEntityKey(
                f"view {view!r}, join key {name!r}: the value is None; every join key needs a value",
                view=view,
                feature=name,
                value=None,
            )
        texts = join_key_texts(name, value_type, _as_pushed(view, name, value, "join key", value_type), view)
        text: str = _one(texts, view, "join key", name, value_type, value)
        return text

    if value_type is VT.STRING:

        def string(value: Any) -> str:
            if type(value) is str:
                return value if needs_escape(value) is None else escape_component(value)
            return as_pushed(value)

        return string
    if value_type in (VT.INT64, VT.INT32):
        fits = _in(INT64_RANGE if value_type is VT.INT64 else INT32_RANGE)

        def integer(value: Any) -> str:
            return str(value) if type(value) is int and fits(value) else as_pushed(value)

        return integer
    if value_type is VT.BYTES:

        def raw(value: Any) -> str:
            return bytes_value_text(value) if type(value) is bytes and value else as_pushed(value)

        return raw
    return as_pushed
