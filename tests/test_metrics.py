"""The store's own metrics, in process, against a real server: served age, read outcomes,
rows by path and outcome, Redis round trips and retries; sync and async, the serving fast
path and Feast's generic path, both write paths; nothing recorded while metrics are off.
The same metrics through a real `feast serve --metrics` with two workers are in
test_metrics_serve.py."""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feast import FeatureStore, Field, RepoConfig
from feast import metrics as feast_metrics
from feast.data_source import PushMode
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Int64

from feast_redis_hexpire import clients, metrics
from feast_redis_hexpire.views import ViewKind, ViewLayout
from feast_redis_hexpire.writes import SkippedRowWarnings, WriteReport
from tests.support.faults import DroppingProxy
from tests.support.store import USER, batch_view, command_calls, row, stream_view

pytestmark = pytest.mark.both_servers

PROFILE = batch_view("profile")
ACTIVITY = stream_view("activity")


@on_demand_feature_view(sources=[PROFILE], schema=[Field(name="double_tx", dtype=Int64)], mode="python")
def doubled(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"double_tx": [None if v is None else v * 2 for v in inputs["tx_count_7d"]]}


def make_store(tmp: Path, connection_string: str, project: str, provider: str = "local") -> FeatureStore:
    config = RepoConfig(
        project=project,
        provider=provider,
        registry={"path": str(tmp / "registry.db"), "cache_ttl_seconds": 0},
        online_store={
            "type": "feast_redis_hexpire.RedisHexpireOnlineStore",
            "connection_string": connection_string,
            "stream_ttl_seconds": 600,
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config, repo_path=str(tmp))
    store.apply([USER, PROFILE, ACTIVITY, doubled])
    return store


@pytest.fixture
def metrics_on() -> Iterator[None]:
    """Feast's metrics on in this process, as `feast serve --metrics` turns them on."""
    before = feast_metrics._config
    feast_metrics._config = feast_metrics.build_metrics_flags(None)
    try:
        yield
    finally:
        feast_metrics._config = before


def counter(metric: Any, *labels: str) -> float:
    metrics.flush()  # reads and round trips reach prometheus_client once a second
    return float(metric.labels(*labels)._value.get()) if labels else float(metric._value.get())


def age(project: str, view: str) -> tuple[int, float]:
    child = metrics.SERVED_AGE.labels(project, view)
    return int(sum(bucket.get() for bucket in child._buckets)), float(child._sum.get())


def outcomes(project: str, view: str) -> dict[str, int]:
    return {
        outcome: int(counter(metrics.READ_OUTCOMES, project, view, outcome))
        for outcome in ("present", "view_absent", "entity_absent")
    }


def snapshot(project: str) -> dict[str, Any]:
    metrics.flush()
    return {view: {"age": age(project, view), "outcomes": outcomes(project, view)} for view in ("profile", "activity")}


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for view in before:
        (c0, s0), (c1, s1) = before[view]["age"], after[view]["age"]
        out[view] = {
            "count": c1 - c0,
            "sum": s1 - s0,
            **{k: after[view]["outcomes"][k] - before[view]["outcomes"][k] for k in before[view]["outcomes"]},
        }
    return out


PROFILE_AGE_S = 3600.0
ACTIVITY_AGE_S = 90.0


@pytest.fixture
def written(tmp_path, redis_server, redis_client, unique_project) -> FeatureStore:
    """u1-u4 have the batch view (an hour old); u1, u2 also the stream view (90 s old);
    u5 and u6 do not exist. (After `redis_client`, which flushes an owned server.)"""
    store = make_store(tmp_path, redis_server.connection_string, unique_project)
    online, config = store._get_provider().online_store, store.config
    now = datetime.now(timezone.utc)
    online.online_write_batch(
        config,
        PROFILE,
        [
            row(u, now - timedelta(seconds=PROFILE_AGE_S), risk_segment="low", tx_count_7d=i)
            for i, u in enumerate(USERS)
        ],
        None,
    )
    online.online_write_batch(
        config,
        ACTIVITY,
        [
            row(u, now - timedelta(seconds=ACTIVITY_AGE_S), tx_count_5m=i, last_amount=1.5)
            for i, u in enumerate(USERS[:2])
        ],
        None,
    )
    return store


USERS = ["u1", "u2", "u3", "u4"]
REQUEST = USERS + ["u5", "u6"]
FEATURES = ["profile:risk_segment", "activity:tx_count_5m", "activity:last_amount"]
EXPECTED = {
    "profile": {"count": 4, "present": 4, "view_absent": 0, "entity_absent": 2},
    "activity": {"count": 2, "present": 2, "view_absent": 2, "entity_absent": 2},
}


def assert_read_recorded(found: dict[str, Any], started: float, finished: float, times: int = 1) -> None:
    for view, expected in EXPECTED.items():
        got = found[view]
        assert {k: got[k] for k in expected} == {k: v * times for k, v in expected.items()}, (view, got)
    for view, event_age in (("profile", PROFILE_AGE_S), ("activity", ACTIVITY_AGE_S)):
        count, total = found[view]["count"], found[view]["sum"]
        # each age is now - event time, taken between `started` and `finished`
        assert count * event_age - 1 <= total <= count * (event_age + finished - started) + 1, (view, total)


def timed_read(store: FeatureStore, call: Any) -> tuple[dict[str, Any], float, float]:
    project = store.project
    before = snapshot(project)
    started = time.time()
    call()
    finished = time.time()
    return delta(before, snapshot(project)), started, finished


def test_fast_path_read_records_served_age_and_outcomes_sync_and_async(written, metrics_on):
    store = written
    rows = [{"user_id": u} for u in REQUEST]
    found, started, finished = timed_read(store, lambda: store.get_online_features(FEATURES, rows).to_dict())
    assert_read_recorded(found, started, finished)

    found, started, finished = timed_read(
        store, lambda: asyncio.run(_async_read(store, lambda: store.get_online_features_async(FEATURES, rows)))
    )
    assert_read_recorded(found, started, finished)


async def _async_read(store: FeatureStore, call: Any) -> Any:
    try:
        return (await call()).to_dict()
    finally:
        await store._get_provider().online_store.close()


def test_generic_path_read_counts_the_same(written, metrics_on):
    """An on-demand view sends the request through Feast's generic path (the store's
    grouped-read hook): the same views of the same entities count the same."""
    store = written
    rows = [{"user_id": u} for u in REQUEST]
    features = FEATURES + ["doubled:double_tx"]
    found, started, finished = timed_read(store, lambda: store.get_online_features(features, rows).to_dict())
    assert_read_recorded(found, started, finished)
    found, started, finished = timed_read(
        store, lambda: asyncio.run(_async_read(store, lambda: store.get_online_features_async(features, rows)))
    )
    assert_read_recorded(found, started, finished)


def test_duplicate_entities_count_once_per_distinct_entity(written, metrics_on):
    store = written
    found, _, _ = timed_read(
        store, lambda: store.get_online_features(FEATURES, [{"user_id": u} for u in ["u1", "u1", "u5", "u5"]])
    )
    assert found["activity"]["present"] == 1 and found["activity"]["entity_absent"] == 1


def test_nothing_is_recorded_or_sent_while_metrics_are_off(written, redis_client):
    store = written
    before = snapshot(store.project)
    exists_before = command_calls(redis_client, "exists")
    store.get_online_features(FEATURES, [{"user_id": u} for u in REQUEST]).to_dict()
    assert snapshot(store.project) == before
    assert command_calls(redis_client, "exists") == exists_before


def test_entity_absent_needs_one_exists_round_trip_only_for_entities_with_no_view_present(
    written, metrics_on, redis_client
):
    store = written
    exists_before = command_calls(redis_client, "exists")
    store.get_online_features(FEATURES, [{"user_id": u} for u in USERS]).to_dict()
    assert command_calls(redis_client, "exists") == exists_before  # every entity had a view present
    store.get_online_features(FEATURES, [{"user_id": u} for u in REQUEST]).to_dict()
    assert command_calls(redis_client, "exists") == exists_before + 2  # u5, u6


def rows_by_outcome(project: str, view: str, path: str) -> dict[str, int]:
    return {
        outcome: int(counter(metrics.ROWS, project, view, path, outcome))
        for outcome in ("written", "skipped_stale", "skipped_expired", "skipped_future")
    }


def activity_frame(users: list[str], event_time: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": users,
            "tx_count_5m": list(range(len(users))),
            "last_amount": [0.5] * len(users),
            "event_timestamp": pd.to_datetime([event_time] * len(users), utc=True),
        }
    )


@pytest.mark.parametrize("provider", ["local", "feast_redis_hexpire.HexpireProvider"])
def test_rows_by_path_and_outcome_on_both_write_paths(tmp_path, redis_server, unique_project, metrics_on, provider):
    store = make_store(tmp_path, redis_server.connection_string, unique_project, provider)
    now = datetime.now(timezone.utc)
    store.push("activity_push", activity_frame(["a", "b", "c"], now - timedelta(seconds=5)), to=PushMode.ONLINE)
    store.push("activity_push", activity_frame(["a"], now - timedelta(seconds=50)), to=PushMode.ONLINE)  # stale
    store.push("activity_push", activity_frame(["d"], now - timedelta(hours=1)), to=PushMode.ONLINE)  # expired
    store.push("activity_push", activity_frame(["e"], now + timedelta(days=3)), to=PushMode.ONLINE)  # future
    assert rows_by_outcome(unique_project, "activity", "push") == {
        "written": 3,
        "skipped_stale": 1,
        "skipped_expired": 1,
        "skipped_future": 1,
    }
    online = store._get_provider().online_store
    online.online_write_batch(store.config, PROFILE, [row("a", now, risk_segment="x")], lambda n: None)
    assert rows_by_outcome(unique_project, "profile", "materialize")["written"] == 1
    assert counter(metrics.VIEW_TTL, unique_project, "activity", "stream") == 600
    assert counter(metrics.VIEW_TTL, unique_project, "profile", "batch") == 172800


def test_async_writes_count_the_same(tmp_path, redis_server, unique_project, metrics_on):
    store = make_store(tmp_path, redis_server.connection_string, unique_project)
    now = datetime.now(timezone.utc)

    async def push() -> None:
        try:
            await store.push_async("activity_push", activity_frame(["a", "b"], now), to=PushMode.ONLINE)
            await store.push_async(
                "activity_push", activity_frame(["a"], now - timedelta(seconds=9)), to=PushMode.ONLINE
            )
        finally:
            await store._get_provider().online_store.close()

    asyncio.run(push())
    assert rows_by_outcome(unique_project, "activity", "push") == {
        "written": 2,
        "skipped_stale": 1,
        "skipped_expired": 0,
        "skipped_future": 0,
    }


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_round_trips_and_retries_when_a_reply_is_cut(tmp_path, redis_server, unique_project, metrics_on, mode):
    """The proxy forwards a read, then closes the connection before its reply: the read is
    sent again, and counted once as a round trip and once as a retry."""
    proxy = DroppingProxy(redis_server.port)
    try:
        store = make_store(tmp_path, f"127.0.0.1:{proxy.port}", unique_project)
        now = datetime.now(timezone.utc)
        store._get_provider().online_store.online_write_batch(
            store.config, PROFILE, [row("a", now, risk_segment="low")], None
        )
        rows = [{"user_id": "a"}]
        trips, retries = counter(metrics.ROUND_TRIPS, "read"), counter(metrics.RETRIES)
        proxy.armed.set()
        if mode == "sync":
            got = store.get_online_features(["profile:risk_segment"], rows).to_dict()
        else:
            got = asyncio.run(
                _async_read(store, lambda: store.get_online_features_async(["profile:risk_segment"], rows))
            )
        assert got["risk_segment"] == ["low"]
        assert proxy.drops == 1
        assert counter(metrics.ROUND_TRIPS, "read") == trips + 1
        assert counter(metrics.RETRIES) == retries + 1
    finally:
        proxy.close()
        clients.reset_clients()


def test_a_failed_round_trip_is_counted_by_kind(written, metrics_on, redis_client):
    store = written
    errors = counter(metrics.ERRORS, "read", "response")
    redis_client.set(b"not-a-hash", b"x")
    from feast_redis_hexpire import redis_io
    from feast_redis_hexpire.clients import sync_client

    with pytest.raises(Exception, match="WRONGTYPE"):
        redis_io.hmget(sync_client(store.config.online_store), [(b"not-a-hash", [b"f"])])
    assert counter(metrics.ERRORS, "read", "response") == errors + 1


# ---------------------------------------------------------------- skipped-row warnings


LAYOUT = ViewLayout(
    name="activity",
    view="activity",
    kind=ViewKind.stream,
    ttl_seconds=300,
    ttl_source="stream_ttl_seconds",
    join_keys=("user_id",),
    ts_field=b"_ts:activity",
    features={},
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_skipped_row_warnings_first_as_it_comes_then_one_a_minute_with_counts_since(written):
    config = written.config.online_store
    clock = Clock()
    warnings = SkippedRowWarnings(clock)
    first = warnings.message(LAYOUT, WriteReport(written=5, stale=1), config)
    assert first is not None and "wrote 5 of 6 rows" in first and "1 older than" in first
    for _ in range(40):  # 40 more calls within the minute: no warning
        clock.now += 1
        assert warnings.message(LAYOUT, WriteReport(written=2, stale=1), config) is None
    clock.now += 20  # 60 s after the first warning
    paced = warnings.message(LAYOUT, WriteReport(written=2, expired=1), config)
    assert paced is not None
    assert "wrote 82 of 123 rows" in paced and "40 older than" in paced and "1 already past" in paced
    assert "in 41 write calls over the last 60 s" in paced
    clock.now += 1
    assert warnings.message(LAYOUT, WriteReport(written=1, stale=1), config) is None
    other = ViewLayout(**{**LAYOUT.__dict__, "name": "other", "ts_field": b"_ts:other"})
    assert warnings.message(other, WriteReport(stale=1), config) is not None  # per view


def test_the_store_paces_its_skipped_row_warnings(tmp_path, redis_server, unique_project, caplog):
    store = make_store(tmp_path, redis_server.connection_string, unique_project)
    now = datetime.now(timezone.utc)
    store.push("activity_push", activity_frame(["a"], now), to=PushMode.ONLINE)
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        for _ in range(20):
            store.push("activity_push", activity_frame(["a"], now - timedelta(seconds=30)), to=PushMode.ONLINE)
    warned = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]


def feast_statuses(view: str) -> tuple[float, float]:
    metrics.flush()
    counter = feast_metrics.online_features_status_total
    return (
        counter.labels(feature_view=view, status="present")._value.get(),
        counter.labels(feature_view=view, status="not_found")._value.get(),
    )


def test_feasts_own_status_counts_equal_on_the_fast_and_the_generic_path(written, metrics_on):
    """Feast's PRESENT / NOT_FOUND counter, fed by the store on its fast path, counts as
    Feast's generic path does: per request row, duplicates included."""
    from tests.support.store import generic_online_features

    store = written
    rows = [{"user_id": u} for u in ["u1", "u1", "u3", "u5", "u5", "u2"]]
    counted = {}
    for path, call in (
        ("fast", lambda: store.get_online_features(FEATURES, rows)),
        ("generic", lambda: generic_online_features(store, FEATURES, rows)),
    ):
        before = {view: feast_statuses(view) for view in ("profile", "activity")}
        call()
        after = {view: feast_statuses(view) for view in ("profile", "activity")}
        counted[path] = {view: tuple(a - b for a, b in zip(after[view], before[view])) for view in before}
    assert counted["fast"] == counted["generic"] == {"profile": (4, 2), "activity": (6, 6)}


# ---------------------------------------------------------------- the flush thread


def test_adding_to_a_histogram_matches_observing_each_value():
    """add_to_histogram is the store's one use of prometheus_client internals (a
    histogram's per-bucket values and sum): on the installed prometheus_client it must
    expose exactly what observing each value does. A change there fails here, loudly,
    instead of in every flush of a serving process."""
    from prometheus_client import Histogram

    name = f"hexpire_internals_{uuid.uuid4().hex[:8]}"  # multiprocess values are kept by name
    values = [0.00005, 0.0003, 0.0003, 0.002, 0.04, 0.7, 3.0, 12.0]
    bounds = metrics.LATENCY_BUCKETS_SECONDS
    observed = Histogram(f"{name}_observed", "test", buckets=bounds, registry=None)
    added = Histogram(f"{name}_added", "test", buckets=bounds, registry=None)
    for value in values:
        observed.observe(value)
    buckets = [0] * (len(bounds) + 1)
    for value in values:
        buckets[bisect.bisect_left(bounds, value)] += 1
    metrics.add_to_histogram(added, buckets, sum(values))

    def exposed(histogram: Any) -> dict[tuple[str, str], float]:
        return {
            (sample.name.rsplit("_", 1)[-1], sample.labels.get("le", "")): sample.value
            for family in histogram.collect()
            for sample in family.samples
            if not sample.name.endswith("_created")
        }

    assert exposed(added) == exposed(observed)
    assert exposed(added)[("count", "")] == len(values)


def test_a_failing_flush_keeps_the_thread_the_bound_and_the_counts(written, metrics_on, monkeypatch, caplog):
    """A flush that cannot run lets pending served ages pile up to their bound and no
    further: past it they are dropped and counted. A flush that fails (here:
    prometheus_client's histogram changed under the store) is logged once, not once a
    second, by a thread that lives on and retries what failed at each tick without
    piling it up; the rest still goes through. Once flushes work again every read outcome
    has arrived, none twice, and every served age has arrived or was counted as dropped."""
    store, project = written, written.project
    rows = [{"user_id": u} for u in REQUEST]
    store.get_online_features(FEATURES, rows).to_dict()  # the flush thread runs
    before = snapshot(project)
    dropped_before = counter(metrics.DROPPED, "served_age")
    stamp = b"1796210040123456"  # an event time in microseconds: 16 digits
    per_read = len(b" ".join([stamp] * 4)) + len(b" ".join([stamp] * 2))  # 4 ages of profile, 2 of activity
    monkeypatch.setattr(metrics, "MAX_PENDING_STAMP_BYTES", 4 * per_read)
    working = metrics.add_to_histogram

    def changed(child: Any, buckets: Any, total: float) -> None:
        raise AttributeError("'Histogram' object has no attribute '_buckets'")

    monkeypatch.setattr(metrics, "add_to_histogram", changed)
    monkeypatch.setattr(metrics.PENDING, "logged_at", None)  # no failure logged in the last minute
    caplog.set_level(logging.WARNING, logger="feast_redis_hexpire")

    with metrics.PENDING.flushing:  # a flush that cannot run: 8 reads, the ages of 4 fit
        for _ in range(8):
            store.get_online_features(FEATURES, rows).to_dict()
            assert metrics.PENDING.stamp_bytes <= metrics.MAX_PENDING_STAMP_BYTES
    monkeypatch.setattr(metrics, "MAX_PENDING_STAMP_BYTES", 1000 * per_read)  # no more drops from here
    failing_reads, kept = 8, []
    for _ in range(12):  # 3.6 s: three or four ticks of the flush thread fail
        store.get_online_features(FEATURES, rows).to_dict()
        failing_reads += 1
        time.sleep(0.3)
        kept.append(dict(metrics.PENDING.unpublished))
    flusher = [thread for thread in threading.enumerate() if thread.name == metrics.FLUSH_THREAD_NAME]
    assert len(flusher) == 1 and flusher[0].is_alive()
    warned = [record for record in caplog.records if "flushing metrics to prometheus_client failed" in record.message]
    assert len(warned) == 1 and "_buckets" in warned[0].message, warned
    assert metrics.PENDING.failures >= 1  # more failures since, not logged
    histograms = {(metrics.SERVED_AGE, (project, "profile")), (metrics.SERVED_AGE, (project, "activity"))}
    histograms |= {(metrics.ROUND_TRIP_SECONDS, ("read",)), (metrics.ROUND_TRIP_SECONDS, ("exists",))}
    for waiting in kept[3:]:  # one value per failing series, however many ticks failed
        assert {(metric, labels) for _, metric, labels in waiting} == histograms
    time.sleep(metrics.FLUSH_INTERVAL_S + 0.3)  # a tick after the last read
    present = metrics.READ_OUTCOMES.labels(project, "profile", "present")._value.get()  # applied while others fail
    assert present - before["profile"]["outcomes"]["present"] == 4 * failing_reads

    monkeypatch.setattr(metrics, "add_to_histogram", working)
    deadline = time.monotonic() + 5 * metrics.FLUSH_INTERVAL_S
    while metrics.PENDING.unpublished:  # the thread's next tick applies what waited
        assert time.monotonic() < deadline, "the flush thread did not recover"
        time.sleep(0.1)
    found = delta(before, snapshot(project))
    dropped = counter(metrics.DROPPED, "served_age") - dropped_before
    for view, expected in EXPECTED.items():
        got = {k: found[view][k] for k in ("present", "view_absent", "entity_absent")}
        assert got == {k: expected[k] * failing_reads for k in got}, (view, found[view])
    assert dropped == 4 * (4 + 2)  # the ages of the four reads past the bound
    assert found["profile"]["count"] + found["activity"]["count"] + dropped == (4 + 2) * failing_reads
