"""Value codec: Feast ValueProto <-> readable bytes in a hash field, driven by the declared dtype.

Encoding (what `redis-cli HGET` shows):

| declared type                               | stored as                                         |
|---------------------------------------------|---------------------------------------------------|
| INT32, INT64                                | decimal digits: `14`                              |
| UNIX_TIMESTAMP                              | integer seconds since the epoch: `1764091200`     |
| DOUBLE                                      | shortest round-trip text: `0.1`, `nan`, `-inf`    |
| FLOAT                                       | shortest text that round-trips as float32: `0.1`  |
| BOOL                                        | `true` / `false`                                  |
| STRING, JSON, UUID, TIME_UUID, DECIMAL      | the UTF-8 text                                    |
| BYTES                                       | the raw bytes                                     |
| *_LIST and *_SET of the above               | a JSON array: `[1,2,3]`, `["a","b"]`, `[0.5,NaN]`; |
|                                             | bytes elements as base64 strings                  |
| MAP, STRUCT, *_MAP_LIST, VALUE_LIST/SET,    | protobuf JSON of the value (`json_format`)        |
| SCALAR_MAP, ZONED_TIMESTAMP                 |                                                   |
| null (no value, or null_val)                | no field: the write deletes it                    |

The event time of each view (`_ts:<view>`) is an integer count of microseconds since the
epoch, `1764091200123456`: the write script compares two of them as numbers, and Redis
keeps such a value as an integer in the hash's listpack (8 bytes instead of 27 of text).
Values written as ISO-8601 text by earlier versions still decode.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from .errors import CorruptStoredValue, InvalidFeatureValue, InvalidViewConfig

Encoder = Callable[[Any], bytes]
Decoder = Callable[[bytes], ValueProto]
ItemsEncoder = Callable[[Sequence[Any]], bytes]

_UTC = timezone.utc


# ---------------------------------------------------------------- scalars


def _encode_int(value: int) -> bytes:
    return b"%d" % value


def double_text(value: float) -> bytes:
    """A DOUBLE's stored text: Python's shortest round-trip repr (`0.1`, `1e+16`, `inf`)."""
    return repr(value).encode()


def _float32_text(value: float) -> str:
    # numpy prints the shortest decimal that reads back to the same float32 bits.
    return str(np.float32(value))


def float32_text(value: float) -> bytes:
    """A FLOAT's stored text: the shortest decimal that reads back as the same float32."""
    return _float32_text(value).encode()


TRUE_TEXT = b"true"
FALSE_TEXT = b"false"


def _encode_bool(value: bool) -> bytes:
    return TRUE_TEXT if value else FALSE_TEXT


def _decode_bool_text(raw: bytes) -> bool:
    if raw == TRUE_TEXT:
        return True
    if raw == FALSE_TEXT:
        return False
    raise ValueError(f"not a bool: {raw!r}")


def _encode_text(value: str) -> bytes:
    return value.encode()


def _encode_bytes(value: bytes) -> bytes:
    return value


# ---------------------------------------------------------------- lists and sets


def _json_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _json_float32(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return _json_number(value)
    return _float32_text(value)


# Each takes the element values of a list or set (a proto's `.val`, or the same values
# from an Arrow column): the proto path and the Arrow path share them.


def int_list_text(values: Iterable[int]) -> bytes:
    return ("[" + ",".join(map(str, values)) + "]").encode()


def double_list_text(values: Iterable[float]) -> bytes:
    return ("[" + ",".join(map(_json_number, values)) + "]").encode()


def float_list_text(values: Iterable[float]) -> bytes:
    return ("[" + ",".join(map(_json_float32, values)) + "]").encode()


def bool_list_text(values: Iterable[bool]) -> bytes:
    return ("[" + ",".join("true" if v else "false" for v in values) + "]").encode()


def str_list_text(values: Iterable[str]) -> bytes:
    return json.dumps(list(values), ensure_ascii=False, separators=(",", ":")).encode()


def bytes_list_text(values: Iterable[bytes]) -> bytes:
    return json.dumps([base64.b64encode(v).decode() for v in values], separators=(",", ":")).encode()


def _decode_json_array(raw: bytes) -> list[Any]:
    items = json.loads(raw)
    if not isinstance(items, list):
        raise ValueError(f"expected a JSON array, got {raw[:40]!r}")
    return items


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class TypeCodec:
    """How one declared Feast type is written and read back."""

    value_type: ValueType
    proto_field: str  # the ValueProto oneof member this type must arrive in
    encode: Encoder  # takes getattr(value, proto_field)
    decode: Decoder
    encode_items: ItemsEncoder | None = None
    """Lists and sets: the same encoding from the element values alone (`encode` is
    `encode_items(message.val)`), for writers that never build the proto."""


def _scalar(value_type: ValueType, field: str, encode: Encoder, parse: Callable[[bytes], Any]) -> TypeCodec:
    def decode(raw: bytes) -> ValueProto:
        return ValueProto(**{field: parse(raw)})

    return TypeCodec(value_type, field, encode, decode)


def _repeated(
    value_type: ValueType, field: str, encode_items: ItemsEncoder, parse_item: Callable[[Any], Any]
) -> TypeCodec:
    def encode(msg: Any) -> bytes:
        return encode_items(msg.val)

    def decode(raw: bytes) -> ValueProto:
        proto = ValueProto()
        container = getattr(proto, field)
        container.SetInParent()
        container.val.extend(parse_item(item) for item in _decode_json_array(raw))
        return proto

    return TypeCodec(value_type, field, encode, decode, encode_items)


def _message(value_type: ValueType, field: str) -> TypeCodec:
    """Composite types: protobuf JSON of the sub-message, exact and still readable."""

    def encode(msg: Any) -> bytes:
        return json.dumps(
            json_format.MessageToDict(msg, preserving_proto_field_name=True),
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    def decode(raw: bytes) -> ValueProto:
        proto = ValueProto()
        container = getattr(proto, field)
        container.SetInParent()
        # Floats are handed over as text: protobuf range-checks JSON numbers as doubles and
        # rejects its own float32 maximum (3.4028235e+38), but converts text exactly.
        json_format.ParseDict(json.loads(raw, parse_float=str), container)
        return proto

    return TypeCodec(value_type, field, encode, decode)


def _float_item(item: Any) -> float:
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        raise ValueError(f"not a number: {item!r}")
    return float(item)


def _int_item(item: Any) -> int:
    if isinstance(item, bool) or not isinstance(item, int):
        raise ValueError(f"not an integer: {item!r}")
    return item


def _bool_item(item: Any) -> bool:
    if not isinstance(item, bool):
        raise ValueError(f"not a bool: {item!r}")
    return item


def _str_item(item: Any) -> str:
    if not isinstance(item, str):
        raise ValueError(f"not a string: {item!r}")
    return item


def _bytes_item(item: Any) -> bytes:
    return base64.b64decode(_str_item(item), validate=True)


def _build_codecs() -> dict[ValueType, TypeCodec]:
    VT = ValueType
    codecs = [
        _scalar(VT.INT32, "int32_val", _encode_int, int),
        _scalar(VT.INT64, "int64_val", _encode_int, int),
        _scalar(VT.UNIX_TIMESTAMP, "unix_timestamp_val", _encode_int, int),
        _scalar(VT.DOUBLE, "double_val", double_text, float),
        _scalar(VT.FLOAT, "float_val", float32_text, float),
        _scalar(VT.BOOL, "bool_val", _encode_bool, _decode_bool_text),
        _scalar(VT.STRING, "string_val", _encode_text, bytes.decode),
        _scalar(VT.JSON, "json_val", _encode_text, bytes.decode),
        _scalar(VT.UUID, "uuid_val", _encode_text, bytes.decode),
        _scalar(VT.TIME_UUID, "time_uuid_val", _encode_text, bytes.decode),
        _scalar(VT.DECIMAL, "decimal_val", _encode_text, bytes.decode),
        _scalar(VT.BYTES, "bytes_val", _encode_bytes, bytes),
        _scalar(VT.PDF_BYTES, "bytes_val", _encode_bytes, bytes),
        _scalar(VT.IMAGE_BYTES, "bytes_val", _encode_bytes, bytes),
    ]
    for suffix in ("LIST", "SET"):
        low = suffix.lower()
        codecs += [
            _repeated(VT[f"INT32_{suffix}"], f"int32_{low}_val", int_list_text, _int_item),
            _repeated(VT[f"INT64_{suffix}"], f"int64_{low}_val", int_list_text, _int_item),
            _repeated(VT[f"UNIX_TIMESTAMP_{suffix}"], f"unix_timestamp_{low}_val", int_list_text, _int_item),
            _repeated(VT[f"DOUBLE_{suffix}"], f"double_{low}_val", double_list_text, _float_item),
            _repeated(VT[f"FLOAT_{suffix}"], f"float_{low}_val", float_list_text, _float_item),
            _repeated(VT[f"BOOL_{suffix}"], f"bool_{low}_val", bool_list_text, _bool_item),
            _repeated(VT[f"STRING_{suffix}"], f"string_{low}_val", str_list_text, _str_item),
            _repeated(VT[f"BYTES_{suffix}"], f"bytes_{low}_val", bytes_list_text, _bytes_item),
            _repeated(VT[f"UUID_{suffix}"], f"uuid_{low}_val", str_list_text, _str_item),
            _repeated(VT[f"TIME_UUID_{suffix}"], f"time_uuid_{low}_val", str_list_text, _str_item),
            _repeated(VT[f"DECIMAL_{suffix}"], f"decimal_{low}_val", str_list_text, _str_item),
        ]
    codecs.append(_repeated(VT.JSON_LIST, "json_list_val", str_list_text, _str_item))
    codecs += [
        _message(VT.MAP, "map_val"),
        _message(VT.MAP_LIST, "map_list_val"),
        _message(VT.STRUCT, "struct_val"),
        _message(VT.STRUCT_LIST, "struct_list_val"),
        _message(VT.VALUE_LIST, "list_val"),
        _message(VT.VALUE_SET, "set_val"),
    ]
    # Newer than some supported Feast releases (SCALAR_MAP: 0.64, ZONED_TIMESTAMP: 0.65):
    # offered where the installed Feast has them.
    codecs += [_message(VT[name], field) for name, field in NEWER_MESSAGE_TYPES if name in VT.__members__]
    return {codec.value_type: codec for codec in codecs}


NEWER_MESSAGE_TYPES = (("SCALAR_MAP", "scalar_map_val"), ("ZONED_TIMESTAMP", "zoned_timestamp_val"))


CODECS: dict[ValueType, TypeCodec] = _build_codecs()


def codec_for(value_type: ValueType, *, view: str, feature: str, struct_fields: Sequence[str] = ()) -> TypeCodec:
    """The codec of a declared type. For a Struct, `struct_fields` is its declared field order,
    which the stored JSON follows (a protobuf map has no order of its own)."""
    try:
        codec = CODECS[value_type]
    except KeyError:
        raise InvalidViewConfig(
            f"view {view!r}, feature {feature!r}: declared type {value_type.name} has no online encoding",
            view=view,
            feature=feature,
            value=value_type.name,
        ) from None
    if value_type is ValueType.STRUCT and struct_fields:
        return _ordered_struct(codec, tuple(struct_fields))
    return codec


def _ordered_struct(codec: TypeCodec, order: tuple[str, ...]) -> TypeCodec:
    rank = {name: i for i, name in enumerate(order)}

    def encode(msg: Any) -> bytes:
        as_dict = json_format.MessageToDict(msg, preserving_proto_field_name=True)
        fields = as_dict.get("val", {})
        as_dict["val"] = {k: fields[k] for k in sorted(fields, key=lambda k: (rank.get(k, len(rank)), k))}
        return json.dumps(as_dict, ensure_ascii=False, separators=(",", ":")).encode()

    return TypeCodec(codec.value_type, codec.proto_field, encode, codec.decode)


def encode_value(codec: TypeCodec, value: ValueProto, *, view: str, feature: str) -> bytes | None:
    """Bytes for the hash field, or None for a null (the write deletes the field)."""
    kind = value.WhichOneof("val")
    if kind == codec.proto_field:
        return codec.encode(getattr(value, kind))
    if kind is None or kind == "null_val":
        return None
    given = getattr(value, kind)
    raise InvalidFeatureValue(
        f"view {view!r}, feature {feature!r}: declared {codec.value_type.name} but got {kind} = {short_repr(given)}",
        view=view,
        feature=feature,
        value=given,
    )


def decode_value(codec: TypeCodec, raw: bytes, *, view: str, feature: str) -> ValueProto:
    try:
        return codec.decode(raw)
    except Exception as exc:
        raise CorruptStoredValue(
            f"view {view!r}, feature {feature!r}: stored value {raw[:60]!r} "
            f"is not a valid {codec.value_type.name}: {exc}",
            view=view,
            feature=feature,
            value=raw,
            cause=exc,
        ) from exc


def short_repr(value: Any) -> str:
    """A value as messages show it: its repr, on one line, at most 60 characters."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- event timestamps

_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH = datetime(1970, 1, 1)


def event_ts_micros(ts: datetime) -> int:
    """Whole microseconds since the epoch, in integer arithmetic (timestamp() rounds);
    naive datetimes are UTC, as everywhere in Feast."""
    delta = ts - (_EPOCH if ts.tzinfo is None else _EPOCH_UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_event_ts(ts: datetime) -> bytes:
    return b"%d" % event_ts_micros(ts)


def stored_event_micros(raw: bytes) -> int:
    try:
        if b"T" in raw:  # ISO-8601 text written by versions before 0.2: 2026-11-25T17:34:00.123456Z
            return event_ts_micros(datetime.fromisoformat(raw.rstrip(b"Z").decode()))
        return int(raw)
    except (ValueError, UnicodeDecodeError):
        raise CorruptStoredValue(
            f"stored event time {raw[:40]!r} is neither epoch microseconds nor ISO-8601 text", value=raw
        ) from None


def decode_event_ts(raw: bytes) -> datetime:
    return _EPOCH_UTC + timedelta(microseconds=stored_event_micros(raw))


def timestamp_proto(raw: bytes) -> Timestamp:
    seconds, micros = divmod(stored_event_micros(raw), 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def event_ts_seconds(raw: bytes) -> int:
    """`timestamp_proto(raw).seconds`: what Feast's `to_dict(include_event_timestamps=True)` shows."""
    return stored_event_micros(raw) // 1_000_000


# ---------------------------------------------------------------- straight to Python values

_FLOAT32 = struct.Struct("<f")


def as_float32(value: float) -> float:
    """What a float_val proto gives back for `value`: its float32 bits, widened to a
    Python float."""
    return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])


def _float32_value(raw: bytes) -> float:
    return as_float32(float(raw))


_PYTHON_SCALARS: dict[ValueType, Callable[[bytes], Any]] = {
    ValueType.INT32: int,
    ValueType.INT64: int,
    ValueType.DOUBLE: float,
    ValueType.FLOAT: _float32_value,
    ValueType.BOOL: _decode_bool_text,
    ValueType.STRING: bytes.decode,
    ValueType.BYTES: bytes,
}
"""Types whose Python value (what Feast's `to_dict()` gives) comes straight from the stored
bytes. Each equals `feast_value_type_to_python_type(decode(raw))`: tests/test_codec.py
checks that over generated values. Every other type goes through the proto."""


def python_decoder(codec: TypeCodec, feature_type: ValueType | None, view: str, feature: str) -> Callable[[bytes], Any]:
    """Stored bytes -> the Python value Feast's `OnlineResponse.to_dict()` shows for them.
    `feature_type` is what `to_dict` passes Feast's conversion for this column."""
    direct = _PYTHON_SCALARS.get(codec.value_type)

    def via_proto(raw: bytes) -> Any:
        return feast_value_type_to_python_type(decode_value(codec, raw, view=view, feature=feature), feature_type)

    if direct is not None:

        def scalar(raw: bytes) -> Any:
            try:
                return direct(raw)
            except (ValueError, OverflowError):
                return via_proto(raw)  # raises CorruptStoredValue where the proto path would

        return scalar

    return via_proto
