"""HexpireProvider (issue "writes", item 2): an opt-in provider whose materialization and
push paths encode Arrow batches straight into the write script's records.

The specification is parity: whatever goes through Feast's own path (its
arrow-to-protobuf conversion, then `online_write_batch`) into one project must come out
of the provider into another project byte for byte, every hash field, every key TTL and
every field TTL, for every type the store supports, and both paths must refuse the same
inputs. Real Redis, real Feast.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
import yaml
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig
from feast.data_source import RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import (
    Array,
    Bool,
    Bytes,
    Float32,
    Float64,
    Int32,
    Int64,
    Json,
    Map,
    PdfBytes,
    Set,
    String,
    Struct,
    TimeUuid,
    UnixTimestamp,
    Uuid,
)
from feast.types import (
    Decimal as DecimalType,
)
from feast.utils import _convert_arrow_to_proto
from feast.value_type import ValueType
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import feast_redis_hexpire
from devsupport.sample_repo import write_yaml
from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig
from feast_redis_hexpire.errors import InvalidFeatureValue
from feast_redis_hexpire.keys import escape_component
from feast_redis_hexpire.provider import HexpireProvider
from feast_redis_hexpire.store import RedisHexpireOnlineStore, StoreStats
from tests.support.e2e import E2ERepo, FeastServe, feast_cli, http_post, iso, make_repo
from tests.support.parity import KeyState, builtin_state, clear, differences, project_state

# Feast's own warnings about the generated data (both paths see them alike).
pytestmark = [
    pytest.mark.filterwarnings("ignore:Discarding nonzero nanoseconds:UserWarning"),
    pytest.mark.filterwarnings("ignore:Cannot write dataframe with empty feature columns:UserWarning"),
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature:RuntimeWarning"),
]

PROVIDER = "feast_redis_hexpire.HexpireProvider"
KEY_PREFIX = "pv"
STREAM_TTL = 3600
SHOP_TTL = 600
UTC = timezone.utc

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
# Each Redis-level example runs Feast twice (push or materialize) and reads both projects
# back: a few dozen examples per test keep the file within a couple of minutes on 2 cores.
REDIS_PROPERTY = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=_HEALTH,
    phases=[Phase.explicit, Phase.generate],
)
PLAN_PROPERTY = settings(max_examples=300, deadline=None, database=None, suppress_health_check=_HEALTH)


# ---------------------------------------------------------------- the repo, defined once for both projects

USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
SHOP = Entity(name="shop", join_keys=["shop_id"], value_type=ValueType.INT64)

EVERYTHING: dict[str, Any] = {
    "i32": Int32,
    "i64": Int64,
    "f32": Float32,
    "f64": Float64,
    "s": String,
    "b": Bool,
    "by": Bytes,
    "ts": UnixTimestamp,
    "i32l": Array(Int32),
    "i64l": Array(Int64),
    "f32l": Array(Float32),
    "f64l": Array(Float64),
    "sl": Array(String),
    "bl": Array(Bool),
    "byl": Array(Bytes),
    "i64s": Set(Int64),
    "ss": Set(String),
    "j": Json,
    "m": Map,
    "st": Struct({"a": Int64, "b": String}),
    "u": Uuid,
    "dec": DecimalType,
    "tu": TimeUuid,
    "pdf": PdfBytes,
    "tsl": Array(UnixTimestamp),
    "ul": Array(Uuid),
    "decl": Array(DecimalType),
    "f64s": Set(Float64),
    "bs": Set(Bool),
    "i64ll": Array(Array(Int64)),
    "stl": Array(Struct({"a": Int64, "b": String})),
}
"""One feature per supported kind of value: scalars, lists, sets, composites, text types."""


@dataclass
class Repo:
    """The definitions both projects apply, over parquet files in `data`."""

    data: Path
    objects: list[Any]

    def path(self, view: str) -> Path:
        return self.data / f"{view}.parquet"


def define(data: Path) -> Repo:
    def source(view: str, **kwargs: Any) -> FileSource:
        return FileSource(
            name=f"{view}_source",
            path=str(data / f"{view}.parquet"),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
            **kwargs,
        )

    schema = [Field(name=name, dtype=dtype) for name, dtype in EVERYTHING.items()]
    everything = FeatureView(
        name="everything",
        entities=[USER],
        schema=[Field(name="user_id", dtype=String), *schema],
        source=source("everything"),
    )
    stream_push = PushSource(name="everything_push", batch_source=source("everything_stream"))
    everything_stream = FeatureView(
        name="everything_stream",
        entities=[USER],
        schema=[Field(name="user_id", dtype=String), *schema],
        source=stream_push,
        ttl=timedelta(seconds=STREAM_TTL),
    )
    purchases = FeatureView(
        name="purchases",
        entities=[USER, SHOP],
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="shop_id", dtype=Int64),
            Field(name="amount", dtype=Float64),
            Field(name="note", dtype=String),
        ],
        source=source("purchases", field_mapping={"raw_note": "note"}),
    )
    shop_push = PushSource(name="shop_push", batch_source=source("shop_stats"))
    shop_stats = FeatureView(
        name="shop_stats",
        entities=[SHOP],
        schema=[
            Field(name="shop_id", dtype=Int64),
            Field(name="visits", dtype=Int64),
            Field(name="rating", dtype=Float32),
        ],
        source=shop_push,
        tags={"hexpire.ttl_seconds": str(SHOP_TTL)},
    )
    return Repo(data, [USER, SHOP, stream_push, shop_push, everything, everything_stream, purchases, shop_stats])


def repo_config(
    connection_string: str, project: str, path: Path, provider: str, online: dict | None = None
) -> RepoConfig:
    return RepoConfig(
        project=project,
        provider=provider,
        registry=str(path / f"{project}.db"),
        online_store=online
        or RedisHexpireOnlineStoreConfig(
            connection_string=connection_string, key_prefix=KEY_PREFIX, stream_ttl_seconds=STREAM_TTL
        ),
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )


@dataclass
class Pair:
    """The same repo twice: Feast's own write path, and the provider's."""

    default: FeatureStore
    provider: FeatureStore
    repo: Repo
    client: redis.Redis

    def stores(self) -> tuple[FeatureStore, FeatureStore]:
        return self.default, self.provider

    def online(self, store: FeatureStore) -> Any:
        return store._get_provider().online_store

    def state(self, store: FeatureStore) -> dict[bytes, KeyState]:
        if isinstance(self.online(store), RedisHexpireOnlineStore):
            return project_state(self.client, KEY_PREFIX, store.project)
        return builtin_state(self.client, store.project)

    def reset(self) -> None:
        clear(self.client, KEY_PREFIX, self.default.project, self.provider.project)
        for store in self.stores():
            online = self.online(store)
            if isinstance(online, RedisHexpireOnlineStore):
                online.stats = StoreStats()
            else:
                keys = list(self.client.scan_iter(match=f"*{store.project}", count=1000))
                if keys:
                    self.client.unlink(*keys)

    def run_both(self, action: Callable[[FeatureStore], Any]) -> Exception | None:
        """Run `action` on each store: both must succeed, or both fail with the same error,
        and the store must warn alike (skipped rows)."""
        outcomes, warnings = [], []
        for store in self.stores():
            with _warnings_of("feast_redis_hexpire") as messages:
                try:
                    action(store)
                    outcomes.append(None)
                except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
                    outcomes.append(exc)
            warnings.append(messages)
        expected, actual = outcomes
        assert type(expected) is type(actual), f"default path: {expected!r}\nprovider: {actual!r}"
        assert warnings[0] == warnings[1], f"default path warned {warnings[0]}, the provider {warnings[1]}"
        return expected

    def assert_same(self, clock_fields: bytes | None = None) -> None:
        problems = differences(self.state(self.default), self.state(self.provider), clock_fields=clock_fields)
        assert not problems, "\n".join(problems)
        stats = [getattr(self.online(store), "stats", StoreStats()).as_dict() for store in self.stores()]
        assert stats[0] == stats[1], f"store stats differ: default {stats[0]}, provider {stats[1]}"

    def close(self) -> None:
        self.reset()
        self.client.close()


@contextmanager
def _warnings_of(logger_name: str) -> Iterator[list[str]]:
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # The paced warning's elapsed seconds depend on how fast this machine ran.
            messages.append(re.sub(r"over the last \d+ s", "over the last N s", record.getMessage()))

    handler = Collect(level=logging.WARNING)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def build_pair(
    redis_server: Any, root: Path, repo: Repo, online: Callable[[], Any] | None = None, **config: Any
) -> Pair:
    """Two projects applying `repo`: provider `local` and HexpireProvider, with the same
    online store block (`online()`, else this store) and RepoConfig options."""
    run = uuid.uuid4().hex[:6]
    stores = []
    for name, provider in (("default", "local"), ("arrow", PROVIDER)):
        project_config = repo_config(
            redis_server.connection_string, f"pv_{name}_{run}", root, provider, online() if online else None
        )
        for option, value in config.items():
            setattr(project_config, option, value)
        stores.append(FeatureStore(config=project_config))
    default, arrow = stores
    assert type(arrow._get_provider()) is HexpireProvider
    for store in stores:
        store.apply(repo.objects)
    return Pair(default, arrow, repo, redis.Redis.from_url(redis_server.url))


@pytest.fixture(scope="module")
def pair(redis_server, tmp_path_factory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("provider")
    (root / "data").mkdir()
    built = build_pair(redis_server, root, define(root / "data"))
    yield built
    built.close()


# ---------------------------------------------------------------- data: pandas frames as users push them

TEXT = st.text(max_size=6)
KEY_TEXT = st.text(alphabet=st.sampled_from("ab:%= {}\x00é😀"), max_size=3)  # few values: rows share entities
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=5,
)
DATETIMES = st.builds(
    lambda moment, nanos: pd.Timestamp(moment) + pd.Timedelta(nanoseconds=nanos),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(0, 999),
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "i32": st.integers(-(2**31), 2**31 - 1),
    "i64": st.integers(-(2**63), 2**63 - 1),
    "f32": st.floats(),
    "f64": st.floats(),
    "s": TEXT,
    "b": st.booleans(),
    "by": st.binary(max_size=6),
    "ts": DATETIMES,
    "i32l": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
    "i64l": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
    "f32l": st.lists(st.floats() | st.none(), max_size=4),
    "f64l": st.lists(st.floats() | st.none(), max_size=4),
    "sl": st.lists(TEXT | st.none(), max_size=4),
    "bl": st.lists(st.booleans() | st.none(), max_size=4),
    "byl": st.lists(st.binary(max_size=4) | st.none(), max_size=4),
    "i64s": st.lists(st.integers(-3, 3), max_size=5),
    "ss": st.lists(st.sampled_from(["a", "b", "é", ""]), max_size=5),
    "j": JSON_VALUES.map(json.dumps),
    "m": st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(-9, 9) | st.none(), min_size=1),
    "st": st.fixed_dictionaries({"a": st.integers(-9, 9) | st.none(), "b": TEXT | st.none()}),
    "u": st.uuids().map(str),
    "dec": st.decimals(min_value=-(10**6), max_value=10**6, places=3).map(str),
    "tu": st.uuids(version=1).map(str),
    "pdf": st.binary(max_size=6),
    "tsl": st.lists(DATETIMES.map(lambda t: t.floor("us").to_pydatetime()), max_size=3),
    "ul": st.lists(st.uuids().map(str), max_size=3),
    "decl": st.lists(st.decimals(min_value=-100, max_value=100, places=2).map(str), max_size=3),
    "f64s": st.lists(st.sampled_from([0.5, -1.0, math.inf, 3.25]), max_size=4),
    "bs": st.lists(st.booleans(), max_size=3),
    "i64ll": st.lists(st.lists(st.integers(-9, 9), min_size=1, max_size=3), max_size=3),
    "stl": st.lists(st.fixed_dictionaries({"a": st.integers(-9, 9), "b": TEXT}), max_size=3),
}
assert set(VALUES) == set(EVERYTHING)

# Event times relative to now, clear of the edges where one write a moment later would
# decide differently: the stream TTLs (3600 s, 600 s) and max_future_seconds (300 s).
EVENT_OFFSETS = [-60 * 365 * 86400, -400 * 86400, -7200, -1800, -120, -1, 0, 30, 120, 900]
TIME_ZONES = ["UTC", None, "Etc/GMT-3", "America/New_York"]


def _timestamps(values: list[Any], zone: str | None, unit: str = "ns") -> pd.Series:
    series = pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")
    if zone is not None:
        series = series.dt.tz_localize("UTC").dt.tz_convert(zone)
    return series.astype(f"datetime64[{unit}]" if zone is None else f"datetime64[{unit}, {zone}]")


@st.composite
def event_times(draw: Any, count: int) -> list[pd.Timestamp]:
    now = pd.Timestamp.now("UTC").tz_localize(None)
    return [
        now
        + pd.Timedelta(seconds=draw(st.sampled_from(EVENT_OFFSETS)))
        + pd.Timedelta(nanoseconds=draw(st.integers(-(10**8), 10**8)))
        for _ in range(count)
    ]


@st.composite
def column(draw: Any, name: str, count: int) -> Any:
    """One feature column, in one of the shapes pandas users hand Feast."""
    values = draw(st.lists(st.none() | VALUES[name], min_size=count, max_size=count))
    if name in ("i32", "i64"):
        if any(v is not None and abs(v) > 2**53 for v in values):
            # Feast reads nulls in an int column as float64 NaN, and refuses the rounded
            # big values: a column users can write has one or the other.
            values = [0 if v is None else v for v in values]
        elif draw(st.booleans()):
            return values  # pandas' own inference: int64, or float64 with NaN for the nulls
        return pd.array(values, dtype="Int32" if name == "i32" else "Int64")
    if name == "f32" and draw(st.booleans()):
        with np.errstate(over="ignore"):
            return np.array([math.nan if v is None else v for v in values], dtype=np.float32)
    if name == "ts":
        return _timestamps(values, draw(st.sampled_from(TIME_ZONES)))
    return values


@st.composite
def frames(draw: Any, keys: dict[str, st.SearchStrategy[Any]], features: list[str], max_rows: int = 6) -> pd.DataFrame:
    count = draw(st.integers(1, max_rows))
    data: dict[str, Any] = {
        name: draw(st.lists(strategy, min_size=count, max_size=count)) for name, strategy in keys.items()
    }
    for name in features:
        data[name] = draw(column(name, count))
    zone = draw(st.sampled_from(TIME_ZONES))
    unit = draw(st.sampled_from(["ns", "us"]))
    data["event_timestamp"] = _timestamps(draw(event_times(count)), zone, unit)
    data["created"] = _timestamps(draw(event_times(count)), zone, unit)
    return pd.DataFrame(data)


def shop_ids() -> st.SearchStrategy[int]:
    return st.sampled_from([0, 7, -1, 2**63 - 1, -(2**63), 2**53 + 1])


def everything_frames() -> st.SearchStrategy[pd.DataFrame]:
    return frames({"user_id": KEY_TEXT}, list(EVERYTHING))


def purchase_frames(note: str) -> st.SearchStrategy[pd.DataFrame]:
    """`raw_note` is the source's name for feature `note` (a field mapping). Feast applies
    it on materialize; `write_to_online_store` looks for the feature's own name first."""
    extras = {"amount": st.floats() | st.none(), note: TEXT | st.none()}
    return frames({"user_id": KEY_TEXT, "shop_id": shop_ids(), **extras}, [])


def shop_frames() -> st.SearchStrategy[pd.DataFrame]:
    extras = {"visits": st.integers(0, 10**6), "rating": st.floats(0, 5, width=32)}
    return frames({"shop_id": shop_ids(), **extras}, [])


# ---------------------------------------------------------------- push parity


@REDIS_PROPERTY
@given(everything=everything_frames(), purchases=purchase_frames("note"), shops=shop_frames())
def test_push_and_write_to_online_store_store_what_feasts_own_path_stores(pair, everything, purchases, shops):
    """store.push to stream views (per-field TTL) and write_to_online_store to batch views
    (key TTL): every type, nulls, NaN, ±inf, empty lists, unicode, composite and int join
    keys, zoned and naive event times, expired and future rows."""
    pair.reset()
    pair.run_both(lambda store: store.push("everything_push", everything))
    pair.run_both(lambda store: store.write_to_online_store("everything", everything))
    pair.run_both(lambda store: store.write_to_online_store("purchases", purchases))
    pair.run_both(lambda store: store.push("shop_push", shops))
    pair.assert_same()


def test_push_contract_extra_columns_pass_and_which_provider_names_a_wrong_type(pair):
    """What the README says in its install section: Feast's push contract takes the view's
    columns from what is pushed and ignores the rest, so an extra column passes silently on
    both providers and through both calls. A wrong-typed value: HexpireProvider converts it
    itself and raises InvalidFeatureValue naming the view, the feature and the value;
    provider `local` leaves the conversion to Feast, whose bare ValueError names neither."""
    pair.reset()
    stamp = pd.Timestamp.now(tz="UTC")
    frame = pd.DataFrame(
        {"shop_id": [7], "visits": [3], "rating": [4.5], "event_timestamp": [stamp], "created": [stamp]}
    )
    extra = frame.assign(bogus_feature=["what is this"])
    for store in pair.stores():
        store.push("shop_push", extra)
        store.write_to_online_store("shop_stats", extra.assign(shop_id=[8]))
        read = store.get_online_features(["shop_stats:visits"], [{"shop_id": 7}, {"shop_id": 8}]).to_dict()
        assert read["visits"] == [3, 3], store.project
    wrong = frame.assign(shop_id=[9], visits=["abc"])
    for store in pair.stores():
        for call in (
            lambda store=store: store.push("shop_push", wrong),
            lambda store=store: store.write_to_online_store("shop_stats", wrong),
        ):
            with pytest.raises(ValueError) as err:
                call()
            if store is pair.provider:
                assert isinstance(err.value, InvalidFeatureValue), repr(err.value)
                assert (err.value.view, err.value.feature, err.value.value) == ("shop_stats", "visits", "abc")
            else:
                assert not isinstance(err.value, InvalidFeatureValue), repr(err.value)
                assert "shop_stats" not in str(err.value) and "visits" not in str(err.value), str(err.value)
        assert store.get_online_features(["shop_stats:visits"], [{"shop_id": 9}]).to_dict()["visits"] == [None]


# ---------------------------------------------------------------- materialize parity

MATERIALIZED_VIEWS = ["everything", "everything_stream", "purchases", "shop_stats"]


def _write_sources(repo: Repo, frames: dict[str, pd.DataFrame]) -> None:
    for view, frame in frames.items():
        frame.to_parquet(repo.path(view), index=False)


def _materialize(store: FeatureStore) -> None:
    now = datetime.now(UTC)
    store.materialize(now - timedelta(days=365 * 100), now + timedelta(days=1), feature_views=MATERIALIZED_VIEWS)


@REDIS_PROPERTY
@given(
    everything=everything_frames(),
    stream=everything_frames(),
    purchases=purchase_frames("raw_note"),
    shops=shop_frames(),
    batch_size=st.sampled_from([None, 1, 3]),
)
def test_materialize_stores_what_feasts_own_path_stores(pair, everything, stream, purchases, shops, batch_size):
    """Materializing parquet sources with the local engine: the newest row per entity,
    batch and stream TTL rules, field mappings, created-timestamp tie breaks; with and
    without `online_write_batch_size`."""
    _write_sources(
        pair.repo, {"everything": everything, "everything_stream": stream, "purchases": purchases, "shop_stats": shops}
    )
    pair.reset()
    for store in pair.stores():
        store.config.materialization_config.online_write_batch_size = batch_size
    pair.run_both(_materialize)
    pair.assert_same()


# ---------------------------------------------------------------- plan parity, any Arrow column for any declared type

INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
DECLARED = [
    Int32, Int64, Float32, Float64, Bool, String, Bytes, UnixTimestamp, Uuid, DecimalType, Json,
    Array(Int32), Array(Int64), Array(Float32), Array(Float64), Array(Bool), Array(String), Array(Bytes),
    Array(UnixTimestamp), Array(Uuid), Set(String), Set(Int64), PdfBytes, TimeUuid, Array(DecimalType),
    Set(Float64), Set(Bool),
]  # fmt: skip


def _int_range(data_type: pa.DataType) -> tuple[int, int]:
    info = np.iinfo(data_type.to_pandas_dtype())
    return int(info.min), int(info.max)


@st.composite
def arrow_columns(draw: Any, count: int, depth: int = 0) -> pa.Array:
    """A column of any of the Arrow types a source or a pandas frame produces."""
    kinds = ["int", "float", "bool", "string", "binary", "timestamp", "null", "dictionary"]
    kind = draw(st.sampled_from(kinds if depth else [*kinds, "list", "list", "list"]))

    def values(strategy: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(st.none() | strategy, min_size=count, max_size=count))

    if kind == "int":
        data_type = draw(st.sampled_from(INT_TYPES))
        low, high = _int_range(data_type)
        return pa.array(
            values(st.integers(low, high) | st.sampled_from([low, high, 0, 2**53 + 1 if high > 2**53 else 0])),
            data_type,
        )
    if kind == "float":
        width = draw(st.sampled_from([32, 64]))
        return pa.array(values(st.floats(width=width)), pa.float32() if width == 32 else pa.float64())
    if kind == "bool":
        return pa.array(values(st.booleans()), pa.bool_())
    if kind == "string":
        return pa.array(
            values(TEXT | st.sampled_from(["1", "1.5", "true", "{}", "[1]"])),
            draw(st.sampled_from([pa.string(), pa.large_string()])),
        )
    if kind == "binary":
        return pa.array(values(st.binary(max_size=4)), draw(st.sampled_from([pa.binary(), pa.large_binary()])))
    if kind == "timestamp":
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        limit = 4 * 10**9 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
        zone = draw(st.sampled_from([None, "UTC", "Asia/Tokyo"]))
        return pa.array(values(st.integers(-limit, limit)), pa.int64()).cast(pa.timestamp(unit, zone))
    if kind == "null":
        return pa.nulls(count)
    if kind == "dictionary":
        return pa.array(values(st.sampled_from(["a", "b:c"])), pa.string()).dictionary_encode()
    lengths = draw(st.lists(st.none() | st.integers(0, 3), min_size=count, max_size=count))
    child = draw(arrow_columns(sum(n or 0 for n in lengths), depth + 1))
    offsets, position = [0], 0
    for n in lengths:
        position += n or 0
        offsets.append(position)
    mask = pa.array([n is None for n in lengths])
    large = draw(st.booleans())
    build = pa.LargeListArray.from_arrays if large else pa.ListArray.from_arrays
    return build(pa.array(offsets, pa.int64() if large else pa.int32()), child, mask=mask)


@st.composite
def batches(draw: Any) -> tuple[Any, pa.Table]:
    count = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(DECLARED))
    keys = draw(st.lists(KEY_TEXT, min_size=count, max_size=count))
    unit = draw(st.sampled_from(["s", "us", "ns"]))
    times = pa.array(draw(st.lists(st.integers(-(10**9), 4 * 10**9), min_size=count, max_size=count)), pa.int64())
    times = pa.compute.multiply(times, {"s": 1, "us": 10**6, "ns": 10**9}[unit])
    table = pa.table(
        {
            "user_id": pa.array(keys, pa.string()),
            "value": draw(arrow_columns(count)),
            "event_timestamp": times.cast(pa.timestamp(unit, draw(st.sampled_from([None, "UTC"])))),
        }
    )
    return dtype, table


@pytest.fixture(scope="module")
def offline_provider(tmp_path_factory) -> HexpireProvider:
    """A provider that never connects: plans only."""
    return HexpireProvider(repo_config("127.0.0.1:1", "pv_plans", tmp_path_factory.mktemp("plans"), PROVIDER))


def _outcome(plan: Callable[[], Any], dtype: Any) -> Any:
    try:
        return [
            (row.key, [_set_items(value, dtype) for value in row.record], row.shape, row.numeric) for row in plan().rows
        ]
    except Exception as exc:  # noqa: BLE001 - refusing is an outcome to compare
        return exc


def _set_items(value: Any, dtype: Any) -> Any:
    """A set's stored JSON array, as a sorted list of its items' texts. Feast orders a set
    by iterating a Python set, and NaN hashes by identity, so with a NaN in it the order
    differs from one conversion to the next even on Feast's own path."""
    if not isinstance(dtype, Set) or not isinstance(value, bytes) or not value.startswith(b"["):
        return value
    return sorted(json.dumps(item) for item in json.loads(value, parse_constant=str))


@PLAN_PROPERTY
@given(case=batches(), chunk=st.integers(1, 4))
def test_any_arrow_column_plans_what_feasts_conversion_plans(offline_provider, case, chunk):
    """For a feature of each declared type and a column of any Arrow type (mismatches
    included: Feast converts many of them, refuses others), in batches that slice the
    table: the provider's records equal `plan_writes` of Feast's own conversion, or
    both refuse the batch."""
    dtype, table = case
    view = FeatureView(
        name="v",
        entities=[USER],
        schema=[Field(name="user_id", dtype=String), Field(name="value", dtype=dtype)],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    )
    route = offline_provider._arrow_route(view)
    assert not isinstance(route, str), route
    store = offline_provider.online_store
    for batch in table.to_batches(max_chunksize=chunk):
        expected = _outcome(
            lambda b=batch: store.plan_write(
                offline_provider.repo_config, view, _convert_arrow_to_proto(b, view, {"user_id": ValueType.STRING})
            ),
            dtype,
        )
        actual = _outcome(lambda b=batch: route.encoder.plan(b), dtype)
        if isinstance(expected, Exception) or isinstance(actual, Exception):
            assert isinstance(expected, Exception) and isinstance(actual, Exception), (
                f"{dtype} from {batch.schema.field('value').type}: default {expected!r}, provider {actual!r}"
            )
        else:
            assert actual == expected, f"{dtype} from {batch.schema.field('value').type}"


# ---------------------------------------------------------------- async push parity


@settings(REDIS_PROPERTY, max_examples=10)
@given(everything=everything_frames(), shops=shop_frames())
def test_async_push_stores_what_feasts_own_async_path_stores(pair, everything, shops):
    """push_async and write_to_online_store_async (what `feast serve` /push awaits)."""

    async def push(store: FeatureStore) -> None:
        await store.push_async("everything_push", everything)
        await store.write_to_online_store_async("everything", everything)
        await store.push_async("shop_push", shops)
        await store._get_provider().close()

    pair.reset()
    pair.run_both(lambda store: asyncio.run(push(store)))
    pair.assert_same()


# ---------------------------------------------------------------- what takes Feast's own path


def _debug_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "takes Feast's own path" in r.getMessage()]


@pytest.fixture(scope="module")
def builtin_pair(redis_server, tmp_path_factory) -> Iterator[Pair]:
    """The provider configured with Feast's built-in Redis online store."""
    root = tmp_path_factory.mktemp("builtin")
    (root / "data").mkdir()
    online = {"type": "redis", "connection_string": redis_server.connection_string, "key_ttl_seconds": 7200}
    built = build_pair(redis_server, root, define(root / "data"), online=lambda: dict(online))
    yield built
    built.close()


@settings(REDIS_PROPERTY, max_examples=5)
@given(everything=everything_frames(), shops=shop_frames(), purchases=purchase_frames("raw_note"))
def test_with_another_online_store_the_provider_writes_feasts_way(builtin_pair, caplog, everything, shops, purchases):
    """Push and materialize with `type: redis` (Feast's built-in store): the same keys,
    values and TTLs as provider `local`, and a DEBUG line saying why."""
    caplog.set_level(logging.DEBUG, logger="feast_redis_hexpire")
    caplog.clear()
    pair = builtin_pair
    pair.reset()
    pair.run_both(lambda store: store.push("shop_push", shops))
    _write_sources(pair.repo, {"everything": everything, "purchases": purchases})
    pair.run_both(
        lambda store: store.materialize(
            datetime.now(UTC) - timedelta(days=365 * 100),
            datetime.now(UTC) + timedelta(days=1),
            feature_views=["everything", "purchases"],
        )
    )
    pair.assert_same()
    assert pair.state(pair.provider), "nothing was written"
    reasons = _debug_reasons(caplog)
    assert any("push of view 'shop_stats'" in r and "the online store is RedisOnlineStore" in r for r in reasons), (
        reasons
    )
    assert any("materialization of view 'purchases'" in r for r in reasons), reasons


@pytest.fixture(scope="module")
def odd_views_pair(redis_server, tmp_path_factory) -> Iterator[Pair]:
    """An on-demand view written to the online store, and an entity-less view."""
    root = tmp_path_factory.mktemp("odd")
    (root / "data").mkdir()
    amounts = RequestSource(name="amounts", schema=[Field(name="amount", dtype=Float64)])

    @on_demand_feature_view(
        entities=[USER],
        sources=[amounts],
        schema=[Field(name="doubled", dtype=Float64), Field(name="label", dtype=String)],
        mode="pandas",
        write_to_online_store=True,
    )
    def doubled(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"doubled": inputs["amount"] * 2, "label": inputs["amount"].astype(str)})

    totals = FeatureView(
        name="totals",
        entities=[],
        schema=[Field(name="total", dtype=Int64)],
        source=FileSource(path=str(root / "data" / "totals.parquet"), timestamp_field="event_timestamp"),
    )
    built = build_pair(redis_server, root, Repo(root / "data", [USER, amounts, doubled, totals]))
    yield built
    built.close()


def test_on_demand_and_entity_less_views_take_feasts_own_path(odd_views_pair, caplog):
    """An on-demand view is transformed and converted by Feast; the provider hands it to
    Feast's own path, which stamps rows with the write time (compared to the second).
    An entity-less push is refused by both paths alike; its materialization writes the
    same dummy-entity key."""
    caplog.set_level(logging.DEBUG, logger="feast_redis_hexpire")
    pair = odd_views_pair
    pair.reset()
    now = pd.Timestamp.now("UTC")
    pushed = pd.DataFrame({"user_id": ["a", "b:c", "d"], "amount": [1.5, None, -0.0], "event_timestamp": [now] * 3})
    assert pair.run_both(lambda store: store.write_to_online_store("doubled", pushed)) is None
    pair.assert_same(clock_fields=b"_ts:")
    assert any("view 'doubled'" in r and "on-demand" in r for r in _debug_reasons(caplog))

    totals = pd.DataFrame({"total": [5, 9], "event_timestamp": [now - pd.Timedelta(seconds=5), now]})
    totals.to_parquet(pair.repo.path("totals"), index=False)
    error = pair.run_both(lambda store: store.write_to_online_store("totals", totals))
    assert error is not None  # Feast's conversion gives an entity-less row no join key
    assert (
        pair.run_both(
            lambda store: store.materialize(now - pd.Timedelta(days=1), now + pd.Timedelta(days=1), ["totals"])
        )
        is None
    )
    pair.assert_same(clock_fields=b"_ts:doubled")
    assert b"__dummy_id=" in pair.state(pair.provider)


@pytest.mark.engines
def test_another_compute_engine_takes_feasts_own_path(redis_server, tmp_path, caplog):
    """With `batch_engine: ray.engine` the provider leaves materialization to Ray (which
    writes through the store itself): the same data as provider `local`."""
    import ray

    caplog.set_level(logging.DEBUG, logger="feast_redis_hexpire")
    (tmp_path / "data").mkdir()
    engine = {"type": "ray.engine", "max_workers": 1, "ray_conf": {"num_cpus": 1, "include_dashboard": False}}
    pair = build_pair(redis_server, tmp_path, define(tmp_path / "data"), batch_engine_config=engine)
    try:
        now = pd.Timestamp.now("UTC")
        shops = pd.DataFrame(
            {"shop_id": [1, 2, 1], "visits": [3, 4, 5], "rating": [1.5, 2.5, None], "event_timestamp": [now] * 3}
        )
        shops["created"] = [now - pd.Timedelta(seconds=s) for s in (3, 2, 1)]
        shops.to_parquet(pair.repo.path("shop_stats"), index=False)
        window = (now - pd.Timedelta(days=1), now + pd.Timedelta(days=1))
        assert pair.run_both(lambda store: store.materialize(*window, ["shop_stats"])) is None
        assert set(pair.state(pair.provider)) >= {b"shop_id=1", b"shop_id=2"}
        pair.assert_same()
        assert any("the compute engine is RayComputeEngine" in r for r in _debug_reasons(caplog))
    finally:
        pair.close()
        ray.shutdown()


# ---------------------------------------------------------------- the Arrow path is the one taken


def test_provider_is_importable_from_the_package_as_feast_resolves_it(tmp_path):
    """`provider: feast_redis_hexpire.HexpireProvider` is what feature_store.yaml names."""
    from feast.infra.provider import get_provider

    assert feast_redis_hexpire.HexpireProvider is HexpireProvider
    assert "HexpireProvider" in feast_redis_hexpire.__all__
    provider = get_provider(repo_config("127.0.0.1:1", "pv_import", tmp_path, PROVIDER))
    assert type(provider) is HexpireProvider


def test_supported_views_are_written_without_value_protos(pair, monkeypatch):
    """Materialize (local engine) and push (sync and async) of views of plain types never
    run Feast's arrow-to-protobuf conversion, for a row or a column, and leave the cyclic
    garbage collector as they found it."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted to ValueProtos")

    now = pd.Timestamp.now("UTC")
    shops = pd.DataFrame(
        {"shop_id": [1, 2, 3], "visits": [10, 20, None], "rating": [4.5, None, 1.0], "event_timestamp": [now] * 3}
    )
    shops["visits"] = shops["visits"].astype("Int64")
    shops["created"] = shops["event_timestamp"]
    purchases = pd.DataFrame(
        {
            "user_id": ["a", "b:%", "c"],
            "shop_id": [1, 2, -(2**63)],
            "amount": [1.25, math.inf, None],
            "raw_note": ["x", None, "ü"],
            "event_timestamp": [now - pd.Timedelta(minutes=m) for m in (1, 2, 3)],
        }
    )
    purchases["created"] = purchases["event_timestamp"]
    _write_sources(pair.repo, {"purchases": purchases, "shop_stats": shops})
    pair.reset()
    for store in (pair.default,):
        store.materialize(now - pd.Timedelta(days=1), now + pd.Timedelta(days=1), ["purchases", "shop_stats"])
        store.push("shop_push", shops)
        asyncio.run(store.push_async("shop_push", shops.assign(visits=shops["visits"] + 1)))
    for target in ("feast.utils", "feast.infra.passthrough_provider", "feast.infra.compute_engines.local.nodes"):
        monkeypatch.setattr(f"{target}._convert_arrow_to_proto", refuse)
    monkeypatch.setattr("feast_redis_hexpire.arrow_writes.python_values_to_proto_values", refuse)
    store = pair.provider
    store.materialize(now - pd.Timedelta(days=1), now + pd.Timedelta(days=1), ["purchases", "shop_stats"])
    assert gc.isenabled()  # paused while writing, on again after
    store.push("shop_push", shops)
    asyncio.run(store.push_async("shop_push", shops.assign(visits=shops["visits"] + 1)))
    assert len(pair.state(store)) == 6  # 3 purchases, 3 shops
    pair.assert_same()


# ---------------------------------------------------------------- the CLI and feast serve


def _sample_repos(redis_server: Any, root: Path, now: datetime) -> tuple[E2ERepo, E2ERepo]:
    """Two copies of feature_repo/ with the same generated data: provider `local`, and
    the HexpireProvider."""
    run = uuid.uuid4().hex[:6]
    repos = []
    for name, provider in (("default", "local"), ("arrow", PROVIDER)):
        repo = make_repo(root / name, f"pv_cli_{name}_{run}", redis_server.connection_string, count=40, now=now)
        config = yaml.safe_load((repo.path / "feature_store.yaml").read_text())
        config["provider"] = provider
        write_yaml(repo.path, config)
        repos.append(repo)
    return repos[0], repos[1]


def _repo_state(client: redis.Redis, repo: E2ERepo) -> dict[bytes, KeyState]:
    return project_state(client, repo.key_prefix, repo.project)


def test_feast_materialize_cli_with_the_provider(redis_server, redis_client, tmp_path):
    """`feast apply` + `feast materialize` with `provider: feast_redis_hexpire.HexpireProvider`
    in feature_store.yaml write what provider `local` writes, through the Arrow path."""
    now = datetime.now(UTC)
    default, arrow = _sample_repos(redis_server, tmp_path, now)
    window = (iso(now - timedelta(days=4)), iso(now + timedelta(minutes=1)))
    logs = {}
    for repo in (default, arrow):
        feast_cli(repo, "apply")
    started = time.monotonic()
    for repo in (default, arrow):
        logs[repo.project] = feast_cli(repo, "--log-level", "DEBUG", "materialize", *window).stderr
    apart_ms = int((time.monotonic() - started) * 1000)  # key TTLs run from each write
    assert "takes Feast's own path" not in logs[arrow.project]
    expected, actual = _repo_state(redis_client, default), _repo_state(redis_client, arrow)
    assert len(actual) > 40  # every user, plus the store's view record
    problems = differences(expected, actual, tolerance_ms=apart_ms)
    assert not problems, "\n".join(problems)


def test_feast_serve_push_with_the_provider(redis_server, redis_client, tmp_path):
    """`feast serve` /push awaits the provider's async push: the same data as provider
    `local` serving the same request, JSON-typed columns included."""
    now = datetime.now(UTC)
    default, arrow = _sample_repos(redis_server, tmp_path, now)
    users = ["u0001", "u:0002", "ü 3"]
    rows = {
        "user_id": users,
        "last_login_ts": [int(now.timestamp())] * 3,
        "last_device_id": ["dev-a", None, "dev-ç"],
        "tx_count_5m": [3, 4, 5],
        "failed_logins_15m": [0, None, 7],
        "session_country": ["SE", "NO", ""],
        "event_timestamp": [now.isoformat(), (now - timedelta(seconds=30)).isoformat(), now.isoformat()],
        "created": [now.isoformat()] * 3,
    }
    started = time.monotonic()
    for repo in (default, arrow):
        feast_cli(repo, "apply")
        with FeastServe(repo, tmp_path / f"{repo.project}.log") as serve:
            serve.push(rows)
    apart_ms = int((time.monotonic() - started) * 1000)
    expected, actual = _repo_state(redis_client, default), _repo_state(redis_client, arrow)
    assert {f"user_id={escape_component(u)}".encode() for u in users} <= set(actual)
    problems = differences(expected, actual, tolerance_ms=apart_ms)
    assert not problems, "\n".join(problems)


def test_feast_serve_push_of_a_wrong_typed_value(redis_server, redis_client, tmp_path):
    """`"abc"` pushed for an Int64 feature: with HexpireProvider the conversion is the
    store's, which answers 422 naming the view, the feature and the value, and writes
    nothing; with provider `local` it is Feast's, before the store runs: a 500 naming
    neither (what the README says of each)."""
    now = datetime.now(UTC)
    default, arrow = _sample_repos(redis_server, tmp_path, now)
    rows = {
        "user_id": ["u9001", "u9002"],
        "last_login_ts": [int(now.timestamp())] * 2,
        "last_device_id": ["dev-a", "dev-b"],
        "tx_count_5m": [3, "abc"],
        "failed_logins_15m": [0, 1],
        "session_country": ["SE", "NO"],
        "event_timestamp": [now.isoformat()] * 2,
        "created": [now.isoformat()] * 2,
    }
    only_strings = {**rows, "tx_count_5m": ["abc", "def"]}  # a string column, not a mixed one
    # An extra column is Feast's push contract: ignored, with a 200, on either provider.
    extra = {**rows, "user_id": ["u8001", "u8002"], "tx_count_5m": [3, 4], "bogus_feature": ["x", "y"]}
    answers: dict[str, list[tuple[int, str]]] = {}
    for repo in (default, arrow):
        feast_cli(repo, "apply")
        with FeastServe(repo, tmp_path / f"{repo.project}-bad.log") as serve:
            answers[repo.project] = [
                http_post(f"{serve.url}/push", {"push_source_name": "user_activity_push", "df": df, "to": "online"})
                for df in (rows, only_strings)
            ]
            status, body = http_post(
                f"{serve.url}/push", {"push_source_name": "user_activity_push", "df": extra, "to": "online"}
            )
            assert status == 200, body
        assert not list(redis_client.scan_iter(match=f"{repo.key_prefix}:{repo.project}:user_id=u900*"))
        pushed = redis_client.hgetall(f"{repo.key_prefix}:{repo.project}:user_id=u8002")
        assert pushed and not any(b"bogus" in field for field in pushed), pushed
    for status, body in answers[arrow.project]:
        assert status == 422, body
        detail = json.loads(json.loads(body)) if body.startswith('"') else json.loads(body)
        assert detail["class"] == "InvalidFeatureValue", detail
        assert "'user_activity'" in detail["message"] and "'tx_count_5m'" in detail["message"]
        assert "'abc'" in detail["message"] and "INT64" in detail["message"]
    for status, body in answers[default.project]:  # Feast's conversion error, as Feast reports it
        assert status == 500, body
        assert "InvalidFeatureValue" not in body and "'user_activity'" not in body, body
