"""Redis Stream entries to events: the text of each field, read by its column's declared type.

An entry's fields are a push source's columns by name (join keys, features, the event
timestamp column); fields of other names are ignored. Each value is text as `redis-cli
XADD` sends it, or the store's own encoding (README, "Values"), which for most types is
the same text:

| declared type | accepted text |
|---|---|
| Int32, Int64 | decimal digits: `14`, `-3` |
| Float32, Float64 | any float Python reads: `0.1`, `1e-3`, `nan`, `inf` |
| Bool | `true` / `false`, `1` / `0`, in any case |
| UnixTimestamp | a time, as the event time below (the store's encoding is epoch seconds) |
| String, JSON, UUID, Decimal | the UTF-8 text |
| Bytes | the raw bytes |
| lists and sets | a JSON array: `[1,2,3]`, `["a","b"]`, `[0.5,NaN]`; bytes elements as base64 |
| maps, structs, ... | the store's encoding (protobuf JSON of the value) |

The event time (the push source's timestamp column) is ISO 8601 with a UTC offset
(`2026-12-07T22:51:39.123456Z`, `2026-12-07T23:51:39+01:00`), or digits since the epoch,
whose unit is read from their magnitude (`EPOCH_UNITS`): below 10^11 seconds (a fraction
allowed: `1796170800.25`), below 10^14 milliseconds, below 10^17 microseconds, else
nanoseconds. Every cut sits at about the year 5138 of the smaller unit and at March 1973 of
the larger, so any time between 1973 and 5138 reads right in every unit. ISO text without
an offset is refused, as a naive event time is everywhere in this store.

Parsing works a column at a time (one `map(int, ...)` over a batch is ten times cheaper
than a call per value); a column that fails is parsed again value by value, so each bad
entry is found and named, and the others go on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from typing import Any

import pyarrow as pa
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

from .arrow_writes import INT32_RANGE, INT64_RANGE
from .codec import CODECS, short_repr

Parse = Callable[[bytes], Any]

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)

EPOCH_UNITS: tuple[tuple[int, int], ...] = (
    (10**11, 1_000_000),  # below: seconds -> x 10^6 microseconds
    (10**14, 1_000),  # milliseconds
    (10**17, 1),  # microseconds
)
"""(exclusive upper bound of the digits, microseconds per unit); at or above the last
bound the digits are nanoseconds."""


class EntryError(ValueError):
    """One value of one entry cannot be read; the message says which and why."""


# ---------------------------------------------------------------- times


def epoch_micros(text: str) -> int:
    """Digits since the epoch (seconds may have a fraction) as microseconds, the unit
    read from the magnitude (`EPOCH_UNITS`)."""
    whole, dot, fraction = text.partition(".")
    if not whole.isdigit() or (dot and not fraction.isdigit()):
        raise ValueError(text)
    digits = int(whole)
    for bound, micros in EPOCH_UNITS:
        if digits < bound:
            if fraction and micros != 1_000_000:
                raise ValueError(f"{text}: a fraction is accepted on epoch seconds only")
            extra = round(int(fraction[:7].ljust(7, "0")) / 10) if fraction else 0  # to µs
            return digits * micros + extra
    if fraction:
        raise ValueError(f"{text}: a fraction is accepted on epoch seconds only")
    return digits // 1000


def event_micros(raw: bytes) -> int:
    """An event time's text as microseconds since the epoch (UTC)."""
    text = raw.decode().strip()
    if text[:1].isdigit() and (text.isdigit() or text.replace(".", "", 1).isdigit()):
        return epoch_micros(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise EntryError(
            f"{short_repr(text)} is neither ISO 8601 nor digits since the epoch "
            "(seconds, milliseconds, microseconds or nanoseconds)"
        ) from None
    if moment.tzinfo is None:
        raise EntryError(f"{short_repr(text)} has no UTC offset (write 2026-01-31T12:00:00Z or +00:00)")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros_to_datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _time(raw: bytes) -> datetime:
    return micros_to_datetime(event_micros(raw))


# ---------------------------------------------------------------- values

_BOOLS = {b"true": True, b"false": False, b"1": True, b"0": False}


def _bool(raw: bytes) -> bool:
    try:
        return _BOOLS[raw.lower()]
    except KeyError:
        raise ValueError(f"not a bool: {short_repr(raw)} (true, false, 1 or 0)") from None


def _int_in(bits: int, bounds: tuple[int, int]) -> Parse:
    low, high = bounds

    def parse(raw: bytes) -> int:
        if raw[:1] == b"+":  # int() takes these; the store's text never has them
            raise ValueError(raw)
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"out of the range of a {bits}-bit integer")
        return value

    return parse


_int32 = _int_in(32, INT32_RANGE)
_int64 = _int_in(64, INT64_RANGE)


def _text(raw: bytes) -> str:
    return raw.decode()


def _raw(raw: bytes) -> bytes:
    return raw


def _json_items(raw: bytes) -> list[Any]:
    items = json.loads(raw)
    if not isinstance(items, list):
        raise ValueError(f"not a JSON array: {short_repr(raw)}")
    return items


def _items_of(raw: bytes, kinds: tuple[type, ...], what: str) -> list[Any]:
    """A JSON array whose every item is exactly of one of `kinds` (bool is not an int here)."""
    items = _json_items(raw)
    if not all(type(item) in kinds for item in items):
        raise ValueError(f"not an array of {what}: {short_repr(raw)}")
    return items


def _int_items(raw: bytes) -> list[int]:
    return _items_of(raw, (int,), "integers")


def _int64_items(raw: bytes) -> list[int]:
    items = _int_items(raw)
    low, high = INT64_RANGE
    if not all(low <= item <= high for item in items):
        raise ValueError(f"out of the range of a 64-bit integer: {short_repr(raw)}")
    return items


def _float_items(raw: bytes) -> list[float]:
    return [float(item) for item in _items_of(raw, (int, float), "numbers")]


def _bool_items(raw: bytes) -> list[bool]:
    return _items_of(raw, (bool,), "true/false")


def _str_items(raw: bytes) -> list[str]:
    return _items_of(raw, (str,), "strings")


def _time_items(raw: bytes) -> list[datetime]:
    return [_time(str(item).encode()) for item in _items_of(raw, (int, str), "times")]


def _stored(value_type: ValueType) -> Parse:
    """The store's own encoding of the type, read as the store reads it."""
    codec = CODECS[value_type]

    def parse(raw: bytes) -> Any:
        return feast_value_type_to_python_type(codec.decode(raw), value_type)

    return parse


def parser_for(value_type: ValueType) -> Parse:
    """How text of one declared type becomes the Python value an event carries."""
    VT = ValueType
    direct: dict[ValueType, Parse] = {
        VT.INT32: _int32,
        VT.INT64: _int64,
        VT.DOUBLE: float,
        VT.FLOAT: float,
        VT.BOOL: _bool,
        VT.STRING: _text,
        VT.JSON: _text,
        VT.UUID: _text,
        VT.TIME_UUID: _text,
        VT.DECIMAL: _text,
        VT.BYTES: _raw,
        VT.PDF_BYTES: _raw,
        VT.IMAGE_BYTES: _raw,
        VT.UNIX_TIMESTAMP: _time,
    }
    if value_type in direct:
        return direct[value_type]
    name = value_type.name
    if name.endswith(("_LIST", "_SET")):
        element = name.rsplit("_", 1)[0]
        items: Parse | None = {
            "INT32": _int_items,
            "INT64": _int64_items,
            "DOUBLE": _float_items,
            "FLOAT": _float_items,
            "BOOL": _bool_items,
            "STRING": _str_items,
            "UUID": _str_items,
            "TIME_UUID": _str_items,
            "DECIMAL": _str_items,
            "JSON": _str_items,
            "UNIX_TIMESTAMP": _time_items,
        }.get(element)
        if items is not None:
            return items
    if value_type in CODECS:
        return _stored(value_type)
    raise KeyError(value_type)


# ---------------------------------------------------------------- Arrow columns

ArrowColumn = Callable[[list[bytes]], pa.Array]


def _utf8(raws: list[bytes]) -> pa.Array:
    return pa.array(raws, pa.binary()).cast(pa.string())  # refuses text that is not UTF-8


def _cast(target: pa.DataType) -> ArrowColumn:
    """Text parsed by Arrow in one pass (its integer and float syntax is Python's, minus
    underscores and surrounding spaces; a column Arrow refuses is parsed value by value)."""

    def column(raws: list[bytes]) -> pa.Array:
        return _utf8(raws).cast(target)

    return column


def _parsed(parse: Parse, target: pa.DataType) -> ArrowColumn:
    def column(raws: list[bytes]) -> pa.Array:
        return pa.array(list(map(parse, raws)), target)

    return column


def _micros_column(raws: list[bytes]) -> pa.Array:
    return pa.array(list(map(event_micros, raws)), _TIMESTAMP)


_TIMESTAMP = pa.timestamp("us", tz="UTC")


def arrow_column_for(value_type: ValueType) -> tuple[ArrowColumn, pa.DataType] | None:
    """How a column of one declared type becomes an Arrow array of the type a pushed frame
    gives (the writer encodes it with push's own column encoders), or None for types that
    go as Python values."""
    VT = ValueType
    text = (_utf8, pa.string())
    columns: dict[ValueType, tuple[ArrowColumn, pa.DataType]] = {
        VT.INT64: (_cast(pa.int64()), pa.int64()),
        VT.INT32: (_cast(pa.int32()), pa.int32()),
        VT.DOUBLE: (_cast(pa.float64()), pa.float64()),
        VT.FLOAT: (_cast(pa.float64()), pa.float64()),
        VT.BOOL: (_parsed(_bool, pa.bool_()), pa.bool_()),
        VT.STRING: text,
        VT.BYTES: (lambda raws: pa.array(raws, pa.binary()), pa.binary()),
        VT.UNIX_TIMESTAMP: (_micros_column, _TIMESTAMP),
        VT.INT64_LIST: (_parsed(_int64_items, pa.list_(pa.int64())), pa.list_(pa.int64())),
        VT.DOUBLE_LIST: (_parsed(_float_items, pa.list_(pa.float64())), pa.list_(pa.float64())),
        VT.STRING_LIST: (_parsed(_str_items, pa.list_(pa.string())), pa.list_(pa.string())),
        VT.BOOL_LIST: (_parsed(_bool_items, pa.list_(pa.bool_())), pa.list_(pa.bool_())),
    }
    return columns.get(value_type)


# ---------------------------------------------------------------- a batch of entries

Fields = Mapping[bytes, bytes]
Entry = tuple[bytes, Any]  # (id, fields): a mapping, or Redis's flat [name, value, ...] list


@dataclass(frozen=True)
class Column:
    name: str
    value_type: ValueType
    required: bool  # a join key: an entry without it cannot be written
    parse: Parse
    arrow: tuple[ArrowColumn, pa.DataType] | None
    field: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", self.name.encode())


@dataclass
class Rejected:
    """An entry that cannot be written, and why."""

    entry_id: bytes
    fields: Fields
    reason: str


@dataclass
class EventGroup:
    """Entries that carry the same columns: an Arrow table (every column of a type Arrow
    takes), else a list of Python values per column."""

    entry_ids: list[bytes]
    event_micros: list[int]
    table: pa.Table | None = None
    columns: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.entry_ids)

    @property
    def events_arg(self) -> pa.Table | dict[str, list[Any]]:
        """What EventWriter.write takes for the whole group."""
        return self.table if self.table is not None else self.columns

    def events(self) -> list[dict[str, Any]]:
        if self.table is not None:
            return self.table.to_pylist()
        names = list(self.columns)
        return [dict(zip(names, values)) for values in zip(*self.columns.values())]


@dataclass
class ParsedBatch:
    groups: list[EventGroup] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class EntryReader:
    """Reads stream entries as events of one push source: `schema` is every column the
    source takes, by name, with its declared type; `required` the names every entry must
    carry (join keys; the event time always is); `timestamp` the event time's column.

    A batch whose entries all carry the same columns, of types Arrow takes, becomes one
    Arrow table, each column parsed in one pass; any other batch becomes Python values,
    one group per set of columns present (a feature left out of an entry is not written,
    so it must not become a null that deletes it)."""

    def __init__(self, schema: Mapping[str, ValueType], timestamp: str, required: Sequence[str]) -> None:
        self.timestamp = timestamp
        self.columns = [
            Column(name, value_type, name in required, parser_for(value_type), arrow_column_for(value_type))
            for name, value_type in schema.items()
            if name != timestamp
        ]
        self._timestamp_field = timestamp.encode()

    def read(self, entries: Sequence[Entry]) -> ParsedBatch:
        """Entries as (id, fields): fields a mapping, or the flat [name, value, ...] list
        Redis sends (no dict per entry: when every entry lists its fields in one order,
        as a producer's entries do, each column is taken by position)."""
        entries, field_values = _by_field(entries)
        reasons: dict[int, str] = {}
        times = self._times(field_values(self._timestamp_field), reasons)
        raws = {column.name: field_values(column.field) for column in self.columns}
        for column in self.columns:
            if column.required:
                for index, raw in enumerate(raws[column.name]):
                    if raw is None and index not in reasons:
                        reasons[index] = f"missing join key {column.name!r}"
        arrays: dict[str, pa.Array] = {}
        values: dict[str, list[Any]] = {}
        for column in self.columns:
            column_raws = raws[column.name]
            if all(raw is None for raw in column_raws):
                continue
            array = self._arrow(column, column_raws) if None not in column_raws else None
            if array is not None:
                arrays[column.name] = array
            else:
                values[column.name] = self._parse_column(column, column_raws, reasons)
        keep = [index for index in range(len(entries)) if index not in reasons] if reasons else [*range(len(entries))]
        batch = ParsedBatch(
            rejected=[Rejected(entries[i][0], as_mapping(entries[i][1]), reasons[i]) for i in sorted(reasons)]
        )
        if not keep:
            return batch
        if not values:
            batch.groups = [self._table_group(entries, keep, times, arrays)]
        else:
            for name, array in arrays.items():
                values[name] = array.to_pylist()
            batch.groups = self._value_groups(entries, keep, times, raws, values)
        return batch

    @staticmethod
    def _arrow(column: Column, raws: list[bytes | None]) -> pa.Array | None:
        """The column in one pass, or None (another type, or a value Arrow refuses: it is
        parsed value by value then, which names the bad entry)."""
        if column.arrow is None:
            return None
        try:
            return column.arrow[0](raws)  # type: ignore[arg-type]
        except (pa.ArrowException, ValueError, TypeError, UnicodeDecodeError, OverflowError):
            return None

    def _table_group(
        self, entries: Sequence[Entry], keep: list[int], times: list[int], arrays: dict[str, pa.Array]
    ) -> EventGroup:
        micros = times if len(keep) == len(times) else [times[i] for i in keep]
        columns = dict(arrays)
        columns[self.timestamp] = pa.array(micros, _TIMESTAMP)
        table = pa.table(columns)
        if len(keep) < len(entries):
            rows = pa.array(keep, pa.int64())
            table = pa.table({name: (a if name == self.timestamp else a.take(rows)) for name, a in columns.items()})
        return EventGroup([entries[i][0] for i in keep], micros, table=table)

    def _value_groups(
        self,
        entries: Sequence[Entry],
        keep: list[int],
        times: list[int],
        raws: dict[str, list[bytes | None]],
        values: dict[str, list[Any]],
    ) -> list[EventGroup]:
        names = [column.name for column in self.columns if column.name in values]
        by_shape: dict[tuple[str, ...], EventGroup] = {}
        for index in keep:
            shape = tuple(name for name in names if raws[name][index] is not None)
            group = by_shape.get(shape)
            if group is None:
                group = by_shape[shape] = EventGroup([], [], columns={name: [] for name in (*shape, self.timestamp)})
            group.entry_ids.append(entries[index][0])
            group.event_micros.append(times[index])
            for name in shape:
                group.columns[name].append(values[name][index])
            group.columns[self.timestamp].append(micros_to_datetime(times[index]))
        return list(by_shape.values())

    def _times(self, raws: list[bytes | None], reasons: dict[int, str]) -> list[int]:
        name = self.timestamp
        if None not in raws:
            try:
                return _epoch_column(list(map(int, raws)))  # type: ignore[arg-type]
            except ValueError:
                pass  # ISO text, fractions or bad values: one by one
        times: list[int] = []
        for index, raw in enumerate(raws):
            if raw is None:
                reasons[index] = f"missing event time {name!r}"
                times.append(0)
                continue
            try:
                times.append(event_micros(raw))
            except (ValueError, UnicodeDecodeError) as exc:
                reasons[index] = f"event time {name!r}: {_why(exc, raw)}"
                times.append(0)
        return times

    @staticmethod
    def _parse_column(column: Column, raws: list[bytes | None], reasons: dict[int, str]) -> list[Any]:
        parse = column.parse
        if None not in raws:
            try:
                return list(map(parse, raws))  # type: ignore[arg-type]
            except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
                pass
        parsed: list[Any] = []
        for index, raw in enumerate(raws):
            if raw is None:
                parsed.append(None)
                continue
            try:
                parsed.append(parse(raw))
            except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
                parsed.append(None)
                if index not in reasons:
                    reasons[index] = (
                        f"field {column.name!r}: declared {column.value_type.name}, got {short_repr(raw)}"
                        + (f" ({_why(exc, raw)})" if str(exc) and short_repr(raw) not in str(exc) else "")
                    )
        return parsed


def as_mapping(fields: Any) -> Fields:
    return fields if isinstance(fields, Mapping) else dict(zip(fields[0::2], fields[1::2]))


def _by_field(entries: Sequence[Any]) -> tuple[Sequence[Any], Callable[[bytes], list[bytes | None]]]:
    """The entries, and how to take one field's value from each (None where absent)."""
    if entries and all(type(fields) is list for _, fields in entries):
        lists = [fields for _, fields in entries]
        names = lists[0][0::2]
        # a position's value in every entry, taken in C: no slice per entry (nor, as a
        # zip(*lists) would, an iterator per entry, which the garbage collector counts)
        if len(set(map(len, lists))) == 1 and all(
            list(map(itemgetter(2 * index), lists)).count(name) == len(lists) for index, name in enumerate(names)
        ):
            at = {name: 2 * index + 1 for index, name in enumerate(names)}

            def by_position(name: bytes) -> list[bytes | None]:
                index = at.get(name)
                if index is None:
                    return [None] * len(entries)
                return list(map(itemgetter(index), lists))

            return entries, by_position
        entries = [(entry_id, as_mapping(fields)) for entry_id, fields in entries]
    elif any(type(fields) is list for _, fields in entries):
        entries = [(entry_id, as_mapping(fields)) for entry_id, fields in entries]

    def by_name(name: bytes) -> list[bytes | None]:
        return [fields.get(name) for _, fields in entries]

    return entries, by_name


def _epoch_unit(digits: int) -> int | None:
    """Microseconds per unit of whole digits since the epoch, by magnitude (`EPOCH_UNITS`);
    None for nanoseconds."""
    if digits < 0:
        raise ValueError(digits)
    for bound, micros in EPOCH_UNITS:
        if digits < bound:
            return micros
    return None


def _epoch_digits(digits: int) -> int:
    """Whole digits since the epoch as microseconds."""
    unit = _epoch_unit(digits)
    return digits // 1000 if unit is None else digits * unit


def _epoch_column(digits: list[int]) -> list[int]:
    """A column of whole digits since the epoch as microseconds. Units go by magnitude, so
    when the smallest and the largest value read in one unit, every value does: the column
    converts in one pass (none at all for microseconds), not a call per value."""
    if not digits:
        return digits
    unit = _epoch_unit(min(digits))
    if unit != _epoch_unit(max(digits)):
        return [_epoch_digits(value) for value in digits]
    if unit == 1:
        return digits
    if unit is None:
        return [value // 1000 for value in digits]
    return [value * unit for value in digits]


def _why(exc: BaseException, raw: bytes) -> str:
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {short_repr(raw)}"
    if isinstance(exc, EntryError):
        return text
    return text if text else f"cannot read {short_repr(raw)}"
