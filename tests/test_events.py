"""The per-event write API (issue 22, part 1): EventWriter and AsyncEventWriter.

The specification is `store.push`: an event written through the API must leave Redis
exactly as a one-row `store.push` of the same values does (every field, key TTL and field
TTL, for every type; property-based, against Feast's own default write path), apply the
same rules (newest wins, event-time expiry, skipped rows counted and warned about), and
refuse bad input before anything is sent. On top of push: unknown fields are errors, a
left-out feature is never touched, the registry is read once per version, and a call is
one round trip. Real Redis / Valkey, real Feast.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import types
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import redis
from feast import FeatureStore, FeatureView, Field, PushSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from feast_redis_hexpire import AsyncEventWriter, EventWriter, EventWriteResult, direct_access
from feast_redis_hexpire.errors import ConfigError, InvalidEntityKey, InvalidFeatureValue, UnknownFeature
from feast_redis_hexpire.store import StoreStats
from tests.support.parity import KeyState, clear, differences, project_state
from tests.support.store import _SOURCE, USER, stream_view
from tests.support.store import repo_config as plain_config
from tests.support.topology import count_round_trips
from tests.test_metrics import metrics_on, rows_by_outcome  # noqa: F401 - metrics_on is a fixture
from tests.test_provider import EVENT_OFFSETS, EVERYTHING, KEY_PREFIX, KEY_TEXT, REDIS_PROPERTY, VALUES, define
from tests.test_provider import repo_config as provider_config

pytestmark = [
    pytest.mark.filterwarnings("ignore:Discarding nonzero nanoseconds:UserWarning"),
    pytest.mark.filterwarnings("ignore:Cannot write dataframe with empty feature columns:UserWarning"),
]

UTC = timezone.utc
ZONES = [UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5, minutes=-30))]


# ---------------------------------------------------------------- parity with store.push


@dataclass
class Twins:
    """The repo of tests/test_provider.py twice: `pushed` takes store.push (Feast's own
    default write path), `events` takes the per-event API."""

    pushed: FeatureStore
    events: FeatureStore
    client: redis.Redis

    def state(self, store: FeatureStore) -> dict[bytes, KeyState]:
        return project_state(self.client, KEY_PREFIX, store.project)

    def reset(self) -> None:
        clear(self.client, KEY_PREFIX, self.pushed.project, self.events.project)
        for store in (self.pushed, self.events):
            store._get_provider().online_store.stats = StoreStats()

    def assert_same(self) -> None:
        problems = differences(self.state(self.pushed), self.state(self.events))
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def twins(redis_server, tmp_path_factory) -> Iterator[Twins]:
    root = tmp_path_factory.mktemp("events")
    (root / "data").mkdir()
    repo = define(root / "data")
    run = uuid.uuid4().hex[:6]
    stores = []
    for name in ("pushed", "events"):
        store = FeatureStore(config=provider_config(redis_server.connection_string, f"ev_{name}_{run}", root, "local"))
        store.apply(repo.objects)
        stores.append(store)
    built = Twins(*stores, redis.Redis.from_url(redis_server.url))
    yield built
    built.reset()
    built.client.close()


@st.composite
def event_times(draw: Any) -> datetime:
    now = datetime.now(UTC)
    offset = timedelta(seconds=draw(st.sampled_from(EVENT_OFFSETS)), microseconds=draw(st.integers(-(10**5), 10**5)))
    return (now + offset).astimezone(draw(st.sampled_from(ZONES)))


@st.composite
def everything_events(draw: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"user_id": draw(KEY_TEXT)}
    for name in EVERYTHING:
        event[name] = draw(st.none() | VALUES[name])
    event["event_timestamp"] = draw(event_times())
    event["created"] = event["event_timestamp"]
    return event


@st.composite
def shop_events(draw: Any) -> dict[str, Any]:
    return {
        "shop_id": draw(st.sampled_from([0, 7, -1, 2**63 - 1, -(2**63), 2**53 + 1])),
        "visits": draw(st.none() | st.integers(0, 10**6)),
        "rating": draw(st.none() | st.floats(0, 5, width=32)),
        "event_timestamp": draw(event_times()),
        "created": draw(event_times()),
    }


def _pushable(event: dict[str, Any], features: list[str]) -> bool:
    """Feast's push drops a frame whose features are all null (with a warning): such an
    event is compared elsewhere (an explicit None deletes)."""
    return not pd.DataFrame([event])[features].isnull().all().all()


def _push_each(store: FeatureStore, source: str, events: list[dict[str, Any]]) -> list[Exception | None]:
    outcomes: list[Exception | None] = []
    for event in events:
        try:
            store.push(source, pd.DataFrame([event]))
            outcomes.append(None)
        except Exception as exc:  # noqa: BLE001 - compared with the API's outcome
            outcomes.append(exc)
    return outcomes


def _write_each(writer: EventWriter, events: list[dict[str, Any]]) -> list[Exception | None]:
    outcomes: list[Exception | None] = []
    for event in events:
        try:
            writer.write(event)
            outcomes.append(None)
        except Exception as exc:  # noqa: BLE001 - compared with push's outcome
            outcomes.append(exc)
    return outcomes


@pytest.mark.both_servers
@REDIS_PROPERTY
@given(
    everything=st.lists(everything_events(), min_size=1, max_size=4),
    shops=st.lists(shop_events(), min_size=1, max_size=4),
    how=st.sampled_from(["each", "batch", "async"]),
)
def test_events_store_what_one_row_pushes_store(twins, everything, shops, how):
    """Every Feast type, nulls, NaN, ±inf, unicode and escaped join keys, int join keys at
    the int64 edges, zoned event times, expired and future rows, newest-wins between
    events: one event at a time, a list in one call, and async, against one-row pushes."""
    everything = [e for e in everything if _pushable(e, list(EVERYTHING))]
    shops = [e for e in shops if _pushable(e, ["visits", "rating"])]
    assume(everything or shops)
    twins.reset()
    pushed = _push_each(twins.pushed, "everything_push", everything) + _push_each(twins.pushed, "shop_push", shops)
    assert pushed == [None] * len(pushed), pushed
    writers = [EventWriter(twins.events, "everything_push"), EventWriter(twins.events, "shop_push")]
    if how == "each":
        assert _write_each(writers[0], everything) + _write_each(writers[1], shops) == pushed
    elif how == "batch":
        results = [writers[0].write(everything), writers[1].write(shops)]
        assert sum(r.written + r.skipped for r in results) == len(everything) + len(shops)
    else:

        async def write_async() -> None:
            async_writers = [
                AsyncEventWriter(twins.events, "everything_push"),
                AsyncEventWriter(twins.events, "shop_push"),
            ]
            for event in everything:
                await async_writers[0].write(event)
            await async_writers[1].write(shops)
            await twins.events._get_provider().online_store.close()

        asyncio.run(write_async())
    twins.assert_same()
    stats = [store._get_provider().online_store.stats for store in (twins.pushed, twins.events)]
    assert (stats[0].rows_written, stats[0].rows_skipped_stale, stats[0].rows_skipped_expired) == (
        stats[1].rows_written,
        stats[1].rows_skipped_stale,
        stats[1].rows_skipped_expired,
    )


@pytest.mark.parametrize(
    "lists",
    [
        {"f32l": [float("nan")]},
        {"f64l": [float("nan"), float("nan")]},
        {"f32l": [struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]], "f64l": [float("nan"), 1.5]},
    ],
)
def test_a_float_list_of_nothing_but_nan_stores_what_push_stores(twins, lists):
    """pandas makes every NaN in a pushed list a null, and Feast stores a list whose items
    are all null otherwise than a list with a number in it: the per-event API follows
    push there too (the property test above found the case)."""
    twins.reset()
    event: dict[str, Any] = {"user_id": "nan", **dict.fromkeys(EVERYTHING), "i32": 1, **lists}
    event["event_timestamp"] = event["created"] = datetime.now(UTC)
    assert _push_each(twins.pushed, "everything_push", [event]) == [None]
    EventWriter(twins.events, "everything_push").write(event)
    twins.assert_same()


@pytest.mark.both_servers
@settings(REDIS_PROPERTY, max_examples=10)
@given(everything=st.lists(everything_events(), min_size=1, max_size=4))
def test_a_batch_view_by_name_stores_what_write_to_online_store_stores(twins, everything):
    """A view that no push source feeds, by name: key TTL and all, as write_to_online_store."""
    everything = [e for e in everything if _pushable(e, list(EVERYTHING))]
    assume(everything)
    twins.reset()
    for event in everything:
        twins.pushed.write_to_online_store("everything", pd.DataFrame([event]))
    EventWriter(twins.events, "everything").write(everything)
    twins.assert_same()


@pytest.mark.both_servers
def test_an_arrow_table_stores_what_push_stores(twins):
    now = datetime.now(UTC)
    frame = pd.DataFrame(
        {
            "shop_id": [1, 2, 3],
            "visits": [10, 20, 30],
            "rating": [1.5, 2.25, 4.0],
            "event_timestamp": [now, now, now - timedelta(seconds=5)],
            "created": [now, now, now],
        }
    )
    twins.reset()
    twins.pushed.push("shop_push", frame)
    result = EventWriter(twins.events, "shop_push").write(pa.Table.from_pandas(frame))
    assert result == EventWriteResult(written=3)
    twins.assert_same()


# ---------------------------------------------------------------- a small repo of our own


@dataclass
class Repo:
    store: FeatureStore
    client: redis.Redis
    path: Path

    def hash(self, user: str) -> dict[bytes, bytes]:
        return self.client.hgetall(f"fs:{self.store.project}:user_id={user}")

    def entity_keys(self) -> list[bytes]:
        return list(self.client.scan_iter(match=f"fs:{self.store.project}:user_id=*"))

    def online(self, *users: str) -> dict[str, list[Any]]:
        refs = ["user_activity:tx_count_5m", "user_activity:last_amount"]
        return self.store.get_online_features(refs, [{"user_id": u} for u in users]).to_dict()


@pytest.fixture
def repo(redis_server, tmp_path, unique_project) -> Iterator[Repo]:
    store = FeatureStore(config=plain_config(redis_server.connection_string, unique_project, tmp_path))
    store.apply([USER, stream_view()])
    client = redis.Redis.from_url(redis_server.url)
    yield Repo(store, client, tmp_path)
    store.teardown()
    client.close()


def event(user: str = "u1", seconds_ago: float = 0, **values: Any) -> dict[str, Any]:
    values.setdefault("tx_count_5m", 1)
    return {"user_id": user, "event_timestamp": datetime.now(UTC) - timedelta(seconds=seconds_ago), **values}


def test_the_schema_names_every_column_with_its_type(repo):
    writer = EventWriter(repo.store, "user_activity_push")
    assert writer.schema == {
        "user_id": ValueType.STRING,
        "tx_count_5m": ValueType.INT64,
        "last_amount": ValueType.DOUBLE,
        "event_timestamp": ValueType.UNIX_TIMESTAMP,
    }
    assert EventWriter(repo.store, "user_activity").schema == writer.schema  # the view by name


def test_an_unknown_source_fails_when_the_writer_is_made(repo):
    with pytest.raises(ConfigError, match="no push source or feature view named 'nope'.*user_activity_push"):
        EventWriter(repo.store, "nope")


def test_newest_wins_and_skipped_events_are_counted_and_warned(repo, caplog):
    writer = EventWriter(repo.store, "user_activity_push")
    assert writer.write(event(tx_count_5m=5)) == EventWriteResult(written=1)
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        result = writer.write(event(tx_count_5m=4, seconds_ago=60))
    assert (result.written, result.stale, result.skipped) == (0, 1, 1)
    assert any("older than the event time already stored" in m for m in caplog.messages)
    expired = writer.write(event(user="u2", seconds_ago=10 * 86400))  # stream TTL: a day by default
    assert expired.expired == 1
    future = writer.write(event(user="u3", seconds_ago=-3 * 86400))  # max_future_seconds: a day
    assert future.future == 1
    assert repo.online("u1", "u2", "u3")["tx_count_5m"] == [5, None, None]
    stats = repo.store._get_provider().online_store.stats
    assert (stats.rows_written, stats.rows_skipped_stale, stats.rows_skipped_expired) == (1, 1, 1)


def test_a_left_out_feature_is_kept_and_an_explicit_none_deletes(repo):
    writer = EventWriter(repo.store, "user_activity_push")
    writer.write(event(tx_count_5m=3, last_amount=9.5, seconds_ago=2))
    writer.write(event(tx_count_5m=4, seconds_ago=1))  # last_amount left out
    assert repo.online("u1") == {"user_id": ["u1"], "tx_count_5m": [4], "last_amount": [9.5]}
    writer.write(event(tx_count_5m=5, last_amount=None))
    assert repo.online("u1") == {"user_id": ["u1"], "tx_count_5m": [5], "last_amount": [None]}
    assert b"user_activity:last_amount" not in repo.hash("u1")


def test_a_left_out_feature_of_a_mapping_event_is_kept_too(repo):
    """An event that is a mapping other than a dict (a defaultdict would make a value for
    a missing key on []) leaves out what it does not contain, in a batch of every kind."""
    writer = EventWriter(repo.store, "user_activity_push")
    writer.write(event(tx_count_5m=3, last_amount=9.5, seconds_ago=2))
    left_out = collections.defaultdict(lambda: 0.0, event(tx_count_5m=4, seconds_ago=1))
    proxy = types.MappingProxyType(event(user="u2", tx_count_5m=7))
    assert writer.write([left_out, proxy, event(user="u3", last_amount=1.5)]) == EventWriteResult(written=3)
    assert "last_amount" not in left_out  # the writer made no value for it
    assert repo.online("u1", "u2", "u3") == {
        "user_id": ["u1", "u2", "u3"],
        "tx_count_5m": [4, 7, 1],
        "last_amount": [9.5, None, 1.5],
    }


def test_columns_and_lists_are_one_call(repo):
    writer = EventWriter(repo.store, "user_activity_push")
    now = datetime.now(UTC)
    columns = {"user_id": ["a", "b"], "tx_count_5m": [1, 2], "event_timestamp": [now, now]}
    assert writer.write(columns).written == 2
    assert writer.write([event("c"), event("d", tx_count_5m=7)]).written == 2
    assert repo.online("a", "b", "c", "d")["tx_count_5m"] == [1, 2, 1, 7]


# ---------------------------------------------------------------- bad input


BAD = [
    ({"tx_count5m": 3}, UnknownFeature, "tx_count5m", 3, "unknown field 'tx_count5m'"),
    ({"tx_count_5m": "three"}, InvalidFeatureValue, "tx_count_5m", "three", "declared INT64 but got str = 'three'"),
    ({"tx_count_5m": 2**70}, InvalidFeatureValue, "tx_count_5m", 2**70, "declared INT64 but got int"),
    ({"last_amount": [1.0]}, InvalidFeatureValue, "last_amount", [1.0], "declared DOUBLE but got list"),
    ({"user_id": None}, InvalidEntityKey, "user_id", None, "join key 'user_id'"),
    ({"user_id": ...}, InvalidEntityKey, "user_id", None, "no join key 'user_id'"),
    ({"event_timestamp": ...}, InvalidFeatureValue, "event_timestamp", None, "has no event time"),
    ({"event_timestamp": datetime(2026, 1, 1)}, InvalidFeatureValue, "event_timestamp", datetime(2026, 1, 1), "naive"),
    ({"event_timestamp": "2026-01-01"}, InvalidFeatureValue, "event_timestamp", "2026-01-01", "not a datetime"),
]


def _bad_event(change: dict[str, Any]) -> dict[str, Any]:
    bad = event("bad")
    for name, value in change.items():
        if value is ...:
            del bad[name]
        else:
            bad[name] = value
    return bad


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync", "async", "async-coalesced"])
@pytest.mark.parametrize(("change", "error", "feature", "value", "message"), BAD)
def test_bad_input_names_view_feature_and_value_and_writes_nothing(repo, mode, change, error, feature, value, message):
    bad = _bad_event(change)
    batch = [event("good1"), bad, event("good2")]
    writer = EventWriter(repo.store, "user_activity_push")
    with pytest.raises(error, match=message) as checked:
        writer.check(bad)
    if mode == "sync":
        with pytest.raises(error, match=message) as raised:
            writer.write(batch)
    else:
        window = 5.0 if mode == "async-coalesced" else None

        async def write_async() -> pytest.ExceptionInfo[Exception]:
            async_writer = AsyncEventWriter(repo.store, "user_activity_push", coalesce_window_ms=window)
            good = asyncio.ensure_future(async_writer.write(event("good3")))  # waits in the same window
            with pytest.raises(error, match=message) as info:
                await async_writer.write(batch)
            assert (await good).written == 1  # another caller's events are not held back
            await async_writer.aclose()
            await repo.store._get_provider().online_store.close()
            return info

        raised = asyncio.run(write_async())
    for exc in (checked.value, raised.value):
        assert "user_activity" in str(exc)
        assert exc.feature == feature
        assert exc.value == value
    stored = {key.decode().rsplit("=", 1)[1] for key in repo.entity_keys()}
    assert stored == (set() if mode == "sync" else {"good3"})
    writer.check(event("fine"))  # a good event passes the check
    assert "fine" not in {key.decode().rsplit("=", 1)[1] for key in repo.entity_keys()}


def test_an_event_with_no_feature_is_an_error(repo):
    with pytest.raises(InvalidFeatureValue, match="sets no feature"):
        EventWriter(repo.store, "user_activity_push").write({"user_id": "u1", "event_timestamp": datetime.now(UTC)})
    assert repo.entity_keys() == []


# ---------------------------------------------------------------- the registry


def test_the_registry_is_read_once_per_version(repo, monkeypatch):
    writer = EventWriter(repo.store, "user_activity_push")
    calls = []
    original = repo.store.list_feature_views

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(repo.store, "list_feature_views", counted)
    for i in range(20):
        writer.write(event(tx_count_5m=i))
    assert calls == []


def _widened_view() -> FeatureView:
    return FeatureView(
        name="user_activity",
        entities=[USER],
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="tx_count_5m", dtype=Int64),
            Field(name="last_amount", dtype=Float64),
            Field(name="risk", dtype=String),
        ],
        source=PushSource(name="user_activity_push", batch_source=_SOURCE),
    )


@pytest.mark.both_servers
@pytest.mark.parametrize("where", ["this store", "another process"])
def test_a_new_feast_apply_is_picked_up(repo, where, monkeypatch):
    """An apply through the writer's own FeatureStore, or by anyone else into the same
    registry file (another FeatureStore object stands in for `feast apply` in another
    process: it shares nothing with the writer's but the file). The periodic version check
    is pushed out of reach: an event the old views refuse makes the writer look again."""
    monkeypatch.setattr(direct_access, "REGISTRY_CHECK_INTERVAL_S", 3600.0)
    writer = EventWriter(repo.store, "user_activity_push")
    writer.write(event(tx_count_5m=1, seconds_ago=1))
    with pytest.raises(UnknownFeature, match="risk"):
        writer.write(event(risk="high"))
    applier = repo.store if where == "this store" else FeatureStore(config=repo.store.config)
    applier.apply([USER, _widened_view()])
    assert writer.write(event(risk="high")).written == 1
    assert "risk" in writer.schema
    assert repo.hash("u1")[b"user_activity:risk"] == b"high"


@pytest.mark.both_servers
def test_refresh_rereads_the_registry(repo):
    writer = EventWriter(repo.store, "user_activity_push")
    FeatureStore(config=repo.store.config).apply([USER, _widened_view()])
    writer.refresh()
    assert "risk" in writer.schema


# ---------------------------------------------------------------- round trips


@pytest.mark.both_servers
def test_an_event_or_a_batch_is_one_round_trip(repo):
    writer = EventWriter(repo.store, "user_activity_push")
    writer.write(event())  # connect
    with count_round_trips() as one:
        writer.write(event(tx_count_5m=2))
    with count_round_trips() as many:
        writer.write([event(f"u{i}", last_amount=float(i) if i % 2 else None) for i in range(200)])
    assert list(one.values()) == [1]
    assert list(many.values()) == [1]

    async def write_async() -> tuple[dict[str, int], dict[str, int]]:
        async_writer = AsyncEventWriter(repo.store, "user_activity_push", coalesce_window_ms=20)
        await async_writer.write(event())  # connect this loop's client
        with count_round_trips() as single:
            await async_writer.write(event(tx_count_5m=3))
        with count_round_trips() as coalesced:
            results = await asyncio.gather(*(async_writer.write(event(f"c{i}")) for i in range(50)))
        assert all(result.written == 1 for result in results)
        await repo.store._get_provider().online_store.close()
        return single, coalesced

    single, coalesced = asyncio.run(write_async())
    assert list(single.values()) == [1]
    assert list(coalesced.values()) == [1]


def test_coalescing_is_bounded_by_its_batch_size(repo):
    async def write_async() -> tuple[dict[str, int], list[EventWriteResult]]:
        writer = AsyncEventWriter(repo.store, "user_activity_push", coalesce_window_ms=1000, coalesce_max_events=10)
        await asyncio.gather(*(writer.write(event(f"c{i}")) for i in range(30)))  # three connections
        with count_round_trips() as trips:
            results = await asyncio.wait_for(
                asyncio.gather(*(writer.write(event(f"c{i}")) for i in range(30))), timeout=0.9
            )
        await repo.store._get_provider().online_store.close()
        return trips, results

    trips, results = asyncio.run(write_async())
    assert list(trips.values()) == [3]
    assert [result.written for result in results] == [1] * 30


# ---------------------------------------------------------------- metrics


@pytest.mark.usefixtures("metrics_on")
def test_rows_are_counted_by_outcome_under_the_events_path(repo):
    project = repo.store.project
    writer = EventWriter(repo.store, "user_activity_push")
    writer.write([event("a", seconds_ago=5), event("b", seconds_ago=5)])
    writer.write(event("a", seconds_ago=50))  # stale
    writer.write(event("c", seconds_ago=10 * 86400))  # expired

    async def coalesced() -> None:
        async_writer = AsyncEventWriter(repo.store, "user_activity_push", coalesce_window_ms=5)
        await asyncio.gather(async_writer.write(event("d")), async_writer.write(event("e", seconds_ago=-3 * 86400)))
        await repo.store._get_provider().online_store.close()

    asyncio.run(coalesced())
    assert rows_by_outcome(project, "user_activity", "events") == {
        "written": 3,
        "skipped_stale": 1,
        "skipped_expired": 1,
        "skipped_future": 1,
    }
    assert rows_by_outcome(project, "user_activity", "push")["written"] == 0
