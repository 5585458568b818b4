"""Feast's serving response in protobuf wire format, straight from the stored bytes.

`feast serve` asks every response for its `.proto`. Building it through the protobuf API
costs a message object per value and per timestamp, copied again into each
`FeatureVector`. Here each distinct stored value and event time is encoded once, as the
bytes its `ValueProto` / `Timestamp` serializes to, the vectors are joined as bytes, and
the whole `GetOnlineFeaturesResponse` is parsed once, in C. The result is the same
message: tests/test_codec.py checks each encoder against the proto's own serialization,
and tests/test_serving.py the whole response against Feast's generic path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from .codec import TypeCodec, decode_value, stored_event_micros

ValueEncoder = Callable[[bytes], bytes]

PRESENT = 1  # FieldStatus.PRESENT
NOT_FOUND = 3  # FieldStatus.NOT_FOUND

_VALUES_TAG = b"\x0a"  # FeatureVector.values, length-delimited
_STATUSES_TAG = b"\x12"  # FeatureVector.statuses, packed
_TIMESTAMPS_TAG = b"\x1a"  # FeatureVector.event_timestamps
RESULTS_TAG = b"\x12"  # GetOnlineFeaturesResponse.results
METADATA_TAG = b"\x0a"  # GetOnlineFeaturesResponse.metadata

EMPTY_VALUE = _VALUES_TAG + b"\x00"  # ValueProto(): NOT_FOUND
EMPTY_TIMESTAMP = _TIMESTAMPS_TAG + b"\x00"  # Timestamp()


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = [_varint(n) for n in range(1 << 14)]  # lengths and small numbers: one list lookup


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative numbers as their 64-bit two's complement."""
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    return _varint(value)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def _field_tag(proto_field: str, wire_type: int) -> bytes:
    return varint(ValueProto.DESCRIPTOR.fields_by_name[proto_field].number << 3 | wire_type)


def _varint_encoder(tag: bytes) -> ValueEncoder:
    return lambda raw: tag + varint(int(raw))


def _double_encoder(tag: bytes) -> ValueEncoder:
    pack = struct.Struct("<d").pack
    return lambda raw: tag + pack(float(raw))


def _float_encoder(tag: bytes) -> ValueEncoder:
    pack = struct.Struct("<f").pack
    return lambda raw: tag + pack(float(raw))


def _bool_encoder(tag: bytes) -> ValueEncoder:
    encoded = {b"true": tag + b"\x01", b"false": tag + b"\x00"}
    return encoded.__getitem__


def _text_encoder(tag: bytes) -> ValueEncoder:
    def encode(raw: bytes) -> bytes:
        raw.decode()  # a string_val must be UTF-8, as the proto path checks
        return tag + varint(len(raw)) + raw

    return encode


def _bytes_encoder(tag: bytes) -> ValueEncoder:
    return lambda raw: tag + varint(len(raw)) + raw


_DIRECT: dict[ValueType, Callable[[bytes], ValueEncoder]] = {
    ValueType.INT32: lambda tag: _varint_encoder(tag),
    ValueType.INT64: lambda tag: _varint_encoder(tag),
    ValueType.UNIX_TIMESTAMP: lambda tag: _varint_encoder(tag),
    ValueType.DOUBLE: _double_encoder,
    ValueType.FLOAT: _float_encoder,
    ValueType.BOOL: _bool_encoder,
    ValueType.STRING: _text_encoder,
    ValueType.BYTES: _bytes_encoder,
}
_WIRE_TYPES = {ValueType.DOUBLE: 1, ValueType.FLOAT: 5, ValueType.STRING: 2, ValueType.BYTES: 2}


def framed_encoder(codec: TypeCodec, view: str, feature: str) -> ValueEncoder:
    """Stored bytes -> one framed element of `FeatureVector.values`."""
    encode = value_encoder(codec, view, feature)
    return lambda raw: framed_value(encode(raw))


def value_encoder(codec: TypeCodec, view: str, feature: str) -> ValueEncoder:
    """Stored bytes -> the serialized `ValueProto` that `codec.decode` would give. Scalars
    are encoded directly; anything they do not take (and every other type) goes through
    the proto, which raises `CorruptStoredValue` for bytes that are no such value."""

    def via_proto(raw: bytes) -> bytes:
        return decode_value(codec, raw, view=view, feature=feature).SerializeToString()

    make = _DIRECT.get(codec.value_type)
    if make is None:
        return via_proto
    direct = make(_field_tag(codec.proto_field, _WIRE_TYPES.get(codec.value_type, 0)))

    def encode(raw: bytes) -> bytes:
        try:
            return direct(raw)
        except (ValueError, OverflowError, KeyError, struct.error):
            return via_proto(raw)

    return encode


def timestamp_bytes(raw: bytes) -> bytes:
    """The framed `event_timestamps` element for a stored event time (`codec.timestamp_proto`)."""
    seconds, micros = divmod(stored_event_micros(raw), 1_000_000)
    payload = Timestamp(seconds=seconds, nanos=micros * 1000).SerializeToString()  # upb: faster than Python varints
    return _TIMESTAMPS_TAG + varint(len(payload)) + payload


def framed_value(encoded: bytes) -> bytes:
    """One element of `FeatureVector.values`."""
    return _VALUES_TAG + varint(len(encoded)) + encoded


def feature_vector(values: list[bytes], statuses: bytes, timestamps: list[bytes]) -> bytes:
    """A framed `GetOnlineFeaturesResponse.results` element from framed values and timestamps."""
    body = b"".join(values) + _STATUSES_TAG + varint(len(statuses)) + statuses + b"".join(timestamps)
    return RESULTS_TAG + varint(len(body)) + body
