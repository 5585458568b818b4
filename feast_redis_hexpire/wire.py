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
    """Protobuf base-128 varint; negative numbers as their 64-bit two's complement.
    Unrolled up to 5 bytes: event times in seconds and nanoseconds are 5 bytes each."""
    if 0 <= value < 16384:
        return _SMALL_VARINTS[value]
    if 0 < value < 1 << 21:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14))
    if 0 < value < 1 << 28:
        return bytes((value & 0x7F | 0x80, value >> 7 & 0x7F | 0x80, value >> 14 & 0x7F | 0x80, value >> 21))
    if 0 < value < 1 << 35:
        return bytes(
            (
                value & 0x7F | 0x80,
                value >> 7 & 0x7F | 0x80,
                value >> 14 & 0x7F | 0x80,
                value >> 21 & 0x7F | 0x80,
                value >> 28,
            )
        )
    return _varint(value)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def _field_tag(proto_field: str, wire_type: int) -> bytes:
    return varint(ValueProto.DESCRIPTOR.fields_by_name[proto_field].number << 3 | wire_type)


def _varint_payload(tag: bytes) -> ValueEncoder:
    return lambda raw: tag + varint(int(raw))


def _fixed_payload(tag: bytes, fmt: str) -> ValueEncoder:
    pack = struct.Struct(fmt).pack
    return lambda raw: tag + pack(float(raw))


def _bool_payload(tag: bytes) -> ValueEncoder:
    return {b"true": tag + b"\x01", b"false": tag + b"\x00"}.__getitem__


def _text_payload(tag: bytes) -> ValueEncoder:
    def encode(raw: bytes) -> bytes:
        raw.decode()  # a string_val must be UTF-8, as the proto path checks
        return tag + varint(len(raw)) + raw

    return encode


def _bytes_payload(tag: bytes) -> ValueEncoder:
    return lambda raw: tag + varint(len(raw)) + raw


_DIRECT: dict[ValueType, tuple[int, Callable[[bytes], ValueEncoder]]] = {
    ValueType.INT32: (0, _varint_payload),
    ValueType.INT64: (0, _varint_payload),
    ValueType.UNIX_TIMESTAMP: (0, _varint_payload),
    ValueType.DOUBLE: (1, lambda tag: _fixed_payload(tag, "<d")),
    ValueType.FLOAT: (5, lambda tag: _fixed_payload(tag, "<f")),
    ValueType.BOOL: (0, _bool_payload),
    ValueType.STRING: (2, _text_payload),
    ValueType.BYTES: (2, _bytes_payload),
}
"""(wire type, payload encoder) of the scalars encoded without the proto."""
_DIRECT_ERRORS = (ValueError, OverflowError, KeyError, struct.error)


def _via_proto(codec: TypeCodec, view: str, feature: str) -> ValueEncoder:
    def encode(raw: bytes) -> bytes:
        return decode_value(codec, raw, view=view, feature=feature).SerializeToString()

    return encode


def framed_encoder(codec: TypeCodec, view: str, feature: str) -> ValueEncoder:
    """Stored bytes -> one framed element of `FeatureVector.values` (the serialized
    `ValueProto` that `codec.decode` would give, with its tag and length), in one call: it
    runs once per value served. Scalars are encoded directly; what they do not take (and
    every other type) goes through the proto, which raises `CorruptStoredValue` for bytes
    that are no such value."""
    via_proto = _via_proto(codec, view, feature)
    spec = _DIRECT.get(codec.value_type)
    direct = via_proto if spec is None else spec[1](_field_tag(codec.proto_field, spec[0]))
    small = _SMALL_VARINTS

    def framed(raw: bytes) -> bytes:
        try:
            payload = direct(raw)
        except _DIRECT_ERRORS:
            payload = via_proto(raw)
        size = len(payload)
        return _VALUES_TAG + (small[size] if size < 16384 else varint(size)) + payload

    return framed


def timestamp_bytes(raw: bytes) -> bytes:
    """The framed `event_timestamps` element for a stored event time (`codec.timestamp_proto`)."""
    seconds, micros = divmod(stored_event_micros(raw), 1_000_000)
    payload = (b"\x08" + varint(seconds) if seconds else b"") + (b"\x10" + varint(micros * 1000) if micros else b"")
    return _TIMESTAMPS_TAG + _SMALL_VARINTS[len(payload)] + payload


def framed_value(encoded: bytes) -> bytes:
    """One element of `FeatureVector.values` from a serialized `ValueProto`."""
    return _VALUES_TAG + varint(len(encoded)) + encoded


def feature_vector(values: list[bytes], statuses: bytes, timestamps: list[bytes]) -> bytes:
    """A framed `GetOnlineFeaturesResponse.results` element from framed values and timestamps."""
    body = b"".join(values) + _STATUSES_TAG + varint(len(statuses)) + statuses + b"".join(timestamps)
    return RESULTS_TAG + varint(len(body)) + body
