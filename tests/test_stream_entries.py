"""Stream entry text to event values: the event-time units by magnitude, each declared
type's accepted text (redis-cli's and the store's own encoding), and a batch's bad entries
found and named one by one while the others go on. No server needed."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

from feast_redis_hexpire.codec import CODECS
from feast_redis_hexpire.stream_entries import EntryError, EntryReader, event_micros, parser_for

MOMENT = datetime(2026, 12, 7, 22, 51, 39, 123456, tzinfo=timezone.utc)
MICROS = 1796683899123456


def test_the_moment_is_what_the_constants_say() -> None:
    assert int(MOMENT.timestamp() * 1_000_000) == MICROS


@pytest.mark.parametrize(
    "text, micros",
    [
        ("1796683899", 1796683899_000000),  # seconds
        ("1796683899.123456", MICROS),  # seconds with a fraction
        ("1796683899.5", 1796683899_500000),
        ("1796683899123", 1796683899_123000),  # milliseconds
        ("1796683899123456", MICROS),  # microseconds
        ("1796683899123456789", MICROS),  # nanoseconds
        ("2026-12-07T22:51:39.123456Z", MICROS),
        ("2026-12-07T23:51:39.123456+01:00", MICROS),
        ("2026-12-07 22:51:39.123456+00:00", MICROS),
        ("99999999999", 99999999999_000000),  # the last seconds value: year 5138
        ("100000000000", 100000000000_000),  # the first milliseconds value: March 1973
    ],
)
def test_event_times_by_form_and_magnitude(text: str, micros: int) -> None:
    assert event_micros(text.encode()) == micros


@pytest.mark.parametrize(
    "text, why",
    [
        ("2026-12-07T22:51:39", "no UTC offset"),
        ("yesterday", "neither ISO 8601 nor digits"),
        ("", "neither ISO 8601 nor digits"),
        ("-5", "neither ISO 8601 nor digits"),
    ],
)
def test_unreadable_event_times_say_why(text: str, why: str) -> None:
    with pytest.raises(EntryError, match=why):
        event_micros(text.encode())


def test_a_fraction_only_on_seconds() -> None:
    with pytest.raises(ValueError, match="fraction"):
        event_micros(b"1796683899123.5")


@pytest.mark.parametrize(
    "value_type, text, value",
    [
        (ValueType.INT64, b"14", 14),
        (ValueType.INT64, b"-3", -3),
        (ValueType.INT32, b"7", 7),
        (ValueType.DOUBLE, b"0.1", 0.1),
        (ValueType.DOUBLE, b"1e-3", 0.001),
        (ValueType.DOUBLE, b"-inf", -math.inf),
        (ValueType.FLOAT, b"2.5", 2.5),
        (ValueType.BOOL, b"true", True),
        (ValueType.BOOL, b"False", False),
        (ValueType.BOOL, b"1", True),
        (ValueType.BOOL, b"0", False),
        (ValueType.STRING, "naïve".encode(), "naïve"),
        (ValueType.STRING, b"", ""),
        (ValueType.BYTES, b"\x00\xff", b"\x00\xff"),
        (ValueType.UNIX_TIMESTAMP, b"1796683899", datetime(2026, 12, 7, 22, 51, 39, tzinfo=timezone.utc)),
        (ValueType.UNIX_TIMESTAMP, b"2026-12-07T22:51:39.123456Z", MOMENT),
        (ValueType.INT64_LIST, b"[1,2,3]", [1, 2, 3]),
        (ValueType.DOUBLE_LIST, b"[0.5, 1, -2.25]", [0.5, 1.0, -2.25]),
        (ValueType.STRING_LIST, b'["a","b"]', ["a", "b"]),
        (ValueType.BOOL_LIST, b"[true,false]", [True, False]),
        (ValueType.INT64_SET, b"[4,5]", [4, 5]),
    ],
)
def test_values_as_redis_cli_sends_them(value_type: ValueType, text: bytes, value: object) -> None:
    assert parser_for(value_type)(text) == value


def test_nan_reads_as_nan() -> None:
    assert math.isnan(parser_for(ValueType.DOUBLE)(b"nan"))
    assert math.isnan(parser_for(ValueType.DOUBLE_LIST)(b"[NaN]")[0])


@pytest.mark.parametrize(
    "value_type, text",
    [
        (ValueType.INT64, b"abc"),
        (ValueType.INT64, b"1.5"),
        (ValueType.INT64, b""),
        (ValueType.DOUBLE, b"x"),
        (ValueType.BOOL, b"yes"),
        (ValueType.INT64_LIST, b"[1,2.5]"),
        (ValueType.INT64_LIST, b"{}"),
        (ValueType.STRING_LIST, b"[1]"),
        (ValueType.STRING, b"\xff"),
    ],
)
def test_wrong_text_is_refused(value_type: ValueType, text: bytes) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError)):
        parser_for(value_type)(text)


@pytest.mark.parametrize(
    "value_type, proto",
    [
        (ValueType.MAP, None),
        (ValueType.BYTES_LIST, ValueProto(bytes_list_val={"val": [b"\x00", b"ab"]})),
        (ValueType.FLOAT_LIST, ValueProto(float_list_val={"val": [0.5, 2.0]})),
    ],
)
def test_the_stores_own_encoding_reads_back(value_type: ValueType, proto: ValueProto | None) -> None:
    """What the store writes for a value is accepted as that value's text."""
    if proto is None:
        proto = ValueProto()
        proto.map_val.val["a"].int64_val = 1
        proto.map_val.val["b"].string_val = "x"
    codec = CODECS[value_type]
    stored = codec.encode(getattr(proto, codec.proto_field))
    expected = feast_value_type_to_python_type(proto)
    assert parser_for(value_type)(stored) == expected


SCHEMA = {
    "user_id": ValueType.STRING,
    "tx_count_5m": ValueType.INT64,
    "last_amount": ValueType.DOUBLE,
    "event_timestamp": ValueType.UNIX_TIMESTAMP,
}


def reader() -> EntryReader:
    return EntryReader(SCHEMA, "event_timestamp", ["user_id"])


def entry(n: int, **fields: str) -> tuple[bytes, dict[bytes, bytes]]:
    base = {"user_id": f"u{n}", "tx_count_5m": str(n), "last_amount": "1.5", "event_timestamp": "1796683899"}
    base.update(fields)
    return f"1-{n}".encode(), {k.encode(): v.encode() for k, v in base.items() if v is not None}


def test_a_batch_reads_as_columns_and_ignores_extra_fields() -> None:
    batch = reader().read([entry(1), entry(2, extra="ignored")])
    assert batch.rejected == []
    (group,) = batch.groups
    assert group.entry_ids == [b"1-1", b"1-2"]
    assert group.table is not None  # every column of a type Arrow takes: one table
    assert group.events() == [
        {"user_id": f"u{n}", "tx_count_5m": n, "last_amount": 1.5, "event_timestamp": MOMENT.replace(microsecond=0)}
        for n in (1, 2)
    ]
    assert group.event_micros == [1796683899_000000] * 2


def test_bad_entries_are_named_and_the_rest_go_on() -> None:
    entries = [
        entry(1),
        entry(2, tx_count_5m="abc"),
        entry(3, user_id=None),
        entry(4, event_timestamp="soon"),
        entry(5, event_timestamp=None),
        entry(6, event_timestamp="2026-12-07T22:51:39"),
        entry(7),
    ]
    batch = reader().read(entries)
    (group,) = batch.groups
    assert group.entry_ids == [b"1-1", b"1-7"]
    assert [event["tx_count_5m"] for event in group.events()] == [1, 7]
    reasons = {rejected.entry_id: rejected.reason for rejected in batch.rejected}
    assert set(reasons) == {b"1-2", b"1-3", b"1-4", b"1-5", b"1-6"}
    assert "'tx_count_5m'" in reasons[b"1-2"] and "INT64" in reasons[b"1-2"] and "abc" in reasons[b"1-2"]
    assert reasons[b"1-3"] == "missing join key 'user_id'"
    assert "'event_timestamp'" in reasons[b"1-4"] and "soon" in reasons[b"1-4"]
    assert reasons[b"1-5"] == "missing event time 'event_timestamp'"
    assert "no UTC offset" in reasons[b"1-6"]
    rejected = next(r for r in batch.rejected if r.entry_id == b"1-2")
    assert rejected.fields[b"tx_count_5m"] == b"abc"  # the original entry, for the dead letter


def test_entries_leaving_out_a_feature_are_a_group_of_their_own() -> None:
    """A feature left out is not written (never deleted): such entries go as their own shape."""
    batch = reader().read([entry(1), entry(2, last_amount=None), entry(3)])
    assert batch.rejected == []
    assert all(group.table is None for group in batch.groups)
    shapes = {tuple(group.columns): group.entry_ids for group in batch.groups}
    assert shapes == {
        ("user_id", "tx_count_5m", "last_amount", "event_timestamp"): [b"1-1", b"1-3"],
        ("user_id", "tx_count_5m", "event_timestamp"): [b"1-2"],
    }


def test_a_column_arrow_refuses_is_read_value_by_value() -> None:
    """Python's float syntax takes `1_000.5`; Arrow's does not: the batch still reads."""
    batch = reader().read([entry(1, last_amount="1_000.5"), entry(2)])
    assert batch.rejected == []
    assert [event["last_amount"] for group in batch.groups for event in group.events()] == [1000.5, 1.5]


def test_event_times_in_mixed_forms_in_one_batch() -> None:
    batch = reader().read(
        [
            entry(1, event_timestamp="1796683899123"),
            entry(2, event_timestamp="2026-12-07T22:51:39.123Z"),
            entry(3, event_timestamp="1796683899.123"),
        ]
    )
    (group,) = batch.groups
    assert group.event_micros == [1796683899_123000] * 3


@pytest.mark.parametrize(
    "texts, micros",
    [
        (["1796683899", "1796683900"], [1796683899_000000, 1796683900_000000]),  # all seconds
        (["1796683899123", "1796683899124"], [1796683899_123000, 1796683899_124000]),  # all milliseconds
        (["1796683899123456", "1796683899123457"], [MICROS, MICROS + 1]),  # all microseconds
        (["1796683899123456789", "1796683899123457999"], [MICROS, MICROS + 1]),  # all nanoseconds
        (  # every unit in one batch: each read by its own magnitude
            ["1796683899", "1796683899123", "1796683899123456", "1796683899123456789", "99999999999", "100000000000"],
            [1796683899_000000, 1796683899_123000, MICROS, MICROS, 99999999999_000000, 100000000000_000],
        ),
    ],
)
def test_whole_digit_event_times_of_a_batch_by_magnitude(texts: list[str], micros: list[int]) -> None:
    """A column of whole digits is read in one pass when its values share a unit, one by
    one when not: the same times either way."""
    batch = reader().read([flat(entry(n, event_timestamp=text)) for n, text in enumerate(texts)])
    assert batch.rejected == []
    (group,) = batch.groups
    assert group.event_micros == micros
    assert group.event_micros == [event_micros(text.encode()) for text in texts]


def flat(entry_id_and_fields: tuple[bytes, dict[bytes, bytes]], reverse: bool = False) -> tuple[bytes, list[bytes]]:
    """An entry as Redis sends it: [name, value, name, value, ...]."""
    entry_id, fields = entry_id_and_fields
    pairs = list(fields.items())[::-1] if reverse else list(fields.items())
    return entry_id, [item for pair in pairs for item in pair]


@pytest.mark.parametrize("mixed_order", [False, True], ids=["one_order", "mixed_orders"])
def test_entries_as_redis_sends_them(mixed_order: bool) -> None:
    third = entry(3, extra="x") if mixed_order else entry(3)  # one order: columns taken by position
    entries = [flat(entry(1)), flat(entry(2, tx_count_5m="bad"), reverse=mixed_order), flat(third)]
    batch = reader().read(entries)
    assert [event["tx_count_5m"] for group in batch.groups for event in group.events()] == [1, 3]
    (rejected,) = batch.rejected
    assert rejected.entry_id == b"1-2" and rejected.fields[b"tx_count_5m"] == b"bad"  # a mapping again
    assert rejected.fields[b"user_id"] == b"u2"
