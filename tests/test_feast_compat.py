"""Feast's documented write paths give the same online features on this store as on
Feast's reference sqlite store, on identical data: materialize, `push` in each
PushMode, `write_to_online_store`, on-demand views computed at read time and with
`write_to_online_store=True`, and a LabelView fed by a push source.

Every call runs on both stores in the same order, with event times only moving forward.
Out-of-order writes are where the two differ by design: sqlite keeps the last write,
this store (like Feast's own Redis store) the newest event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from tests.support.compat_repo import DRIVERS, compat_stores

pytestmark = pytest.mark.e2e

STATS = ["conv_rate", "acc_rate", "avg_daily_trips", "city"]
FEATURES = (
    [f"driver_stats:{name}" for name in STATS]
    + [f"driver_stats_fresh:{name}" for name in STATS]
    + ["fresh_plus_val:conv_plus_val"]
    + ["stats_on_write:conv_x_acc", "stats_on_write:trips_doubled"]
    + ["fresh_on_write:city_upper", "fresh_on_write:trips_plus_one"]
)
ENTITY_ROWS = [{"driver_id": driver, "val_to_add": 10 * i} for i, driver in enumerate(DRIVERS + [9999])]


@pytest.fixture
def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
def stores(tmp_path: Path, redis_server, now: datetime) -> Iterator[dict[str, Any]]:
    key_prefix = f"compat{uuid.uuid4().hex[:8]}"
    yield compat_stores(tmp_path, "compat", redis_server.connection_string, key_prefix, now)
    client = redis.Redis.from_url(redis_server.url)
    try:
        keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def online(store, features: list[str] = FEATURES) -> dict[str, list[Any]]:
    return store.get_online_features(features=features, entity_rows=ENTITY_ROWS, full_feature_names=True).to_dict()


def same_online(stores: dict[str, Any], features: list[str] = FEATURES) -> dict[str, list[Any]]:
    """What both stores serve, asserted equal; returns sqlite's."""
    expected = online(stores["sqlite"], features)
    assert online(stores["hexpire"], features) == expected
    return expected


def both(stores: dict[str, Any], call: str, *args: Any, **kwargs: Any) -> None:
    for store in stores.values():
        getattr(store, call)(*args, **kwargs)


def stats_frame(drivers: list[int], event_time: datetime, seed: int) -> pd.DataFrame:
    """Rows shaped like the driver_stats source, recognisable values."""
    return pd.DataFrame(
        {
            "driver_id": drivers,
            "conv_rate": [0.25 * seed + i for i in range(len(drivers))],
            "acc_rate": [0.5 + i for i in range(len(drivers))],
            "avg_daily_trips": [1000 * seed + i for i in range(len(drivers))],
            "city": [f"Pushed-{seed}-{i}" for i in range(len(drivers))],
            "event_timestamp": [event_time] * len(drivers),
            "created": [event_time] * len(drivers),
        }
    ).astype({"conv_rate": "float32", "acc_rate": "float32"})


def materialize(stores: dict[str, Any], now: datetime) -> dict[str, list[Any]]:
    both(stores, "materialize", now - timedelta(days=1), now)
    return same_online(stores)


def test_materialize_serves_what_sqlite_serves(stores, now) -> None:
    """Batch view, push-fed view (materialized from its batch source), an on-demand view
    at read time and the write-time on-demand views (Feast materializes those too)."""
    served = materialize(stores, now)
    for name in ("driver_stats__conv_rate", "driver_stats_fresh__city", "fresh_plus_val__conv_plus_val"):
        assert None not in served[name][:-1] and served[name][-1] is None, (name, served[name])


@pytest.mark.parametrize("mode", ["ONLINE", "ONLINE_AND_OFFLINE", "OFFLINE"])
def test_push_serves_what_sqlite_serves(stores, now, mode: str) -> None:
    from feast.data_source import PushMode

    before = materialize(stores, now)
    pushed = stats_frame(DRIVERS[:2], now - timedelta(seconds=30), seed=1)
    both(stores, "push", "driver_stats_push", pushed, to=PushMode[mode])
    after = same_online(stores)
    changed = after["driver_stats_fresh__avg_daily_trips"] != before["driver_stats_fresh__avg_daily_trips"]
    assert changed == (mode != "OFFLINE")
    assert after["driver_stats_fresh__avg_daily_trips"][:2] == (
        [1000, 1001] if changed else before["driver_stats_fresh__avg_daily_trips"][:2]
    )
    offline_rows = {
        name: len(pd.read_parquet(Path(store.repo_path) / "data/driver_stats.parquet"))
        for name, store in stores.items()
    }
    assert offline_rows["sqlite"] == offline_rows["hexpire"] == 50 + (2 if mode != "ONLINE" else 0)


def test_write_to_online_store_serves_what_sqlite_serves(stores, now) -> None:
    materialize(stores, now)
    frame = stats_frame(DRIVERS[1:4], now - timedelta(seconds=20), seed=2)
    both(stores, "write_to_online_store", "driver_stats", frame)
    after = same_online(stores)
    assert after["driver_stats__city"][1:4] == ["Pushed-2-0", "Pushed-2-1", "Pushed-2-2"]


def test_write_time_on_demand_views_serve_what_sqlite_serves(stores, now) -> None:
    """`write_to_online_store` of an on-demand view with write_to_online_store=True runs
    its transformation and stores the result, for pandas and python mode."""
    materialize(stores, now)
    frame = stats_frame(DRIVERS[:3], now - timedelta(seconds=10), seed=3)
    both(stores, "write_to_online_store", "stats_on_write", frame)
    both(stores, "write_to_online_store", "fresh_on_write", frame)
    after = same_online(stores)
    assert after["stats_on_write__trips_doubled"][:3] == [6000, 6002, 6004]
    assert after["fresh_on_write__city_upper"][:3] == ["PUSHED-3-0", "PUSHED-3-1", "PUSHED-3-2"]


def test_push_to_a_label_view_serves_what_sqlite_serves(stores, now) -> None:
    from feast.data_source import PushMode

    labels = pd.DataFrame(
        {
            "driver_id": DRIVERS[:2],
            "is_reliable": [1, 0],
            "quality_score": pd.Series([0.75, 0.25], dtype="float32"),
            "labeler": ["ana", "rui"],
            "event_timestamp": [now - timedelta(seconds=5)] * 2,
        }
    )
    both(stores, "push", "driver_labels_push", labels, to=PushMode.ONLINE)
    refs = ["driver_labels:is_reliable", "driver_labels:quality_score", "driver_labels:labeler"]
    served = same_online(stores, refs)
    assert served["driver_labels__labeler"][:2] == ["ana", "rui"]


def label_frame(labelers: list[str], event_time: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "driver_id": DRIVERS[:2],
            "is_reliable": [1, 0],
            "quality_score": pd.Series([0.75, 0.25], dtype="float32"),
            "labeler": labelers,
            "event_timestamp": [event_time] * 2,
        }
    )


def test_pushed_labels_outlive_the_stream_ttl(stores, now) -> None:
    """A LabelView's Feast ttl=0 means its labels never expire online: on sqlite and here,
    whatever stream_ttl_seconds says."""
    import time

    from feast.data_source import PushMode

    stores["hexpire"].config.online_store.stream_ttl_seconds = 1
    both(stores, "push", "driver_labels_push", label_frame(["ana", "rui"], now), to=PushMode.ONLINE)
    time.sleep(2)
    served = same_online(stores, ["driver_labels:is_reliable", "driver_labels:labeler"])
    assert served["driver_labels__labeler"][:2] == ["ana", "rui"]


def test_labels_are_served_last_write_wins_like_feast_serves_them(stores, now) -> None:
    """Feast documents LAST_WRITE_WINS for labels online: a relabel dated earlier than the
    first label still replaces it (feature views keep the newest event instead)."""
    from feast.data_source import PushMode

    both(stores, "push", "driver_labels_push", label_frame(["ana", "rui"], now), to=PushMode.ONLINE)
    both(
        stores, "push", "driver_labels_push", label_frame(["eve", "max"], now - timedelta(hours=1)), to=PushMode.ONLINE
    )
    served = same_online(stores, ["driver_labels:labeler"])
    assert served["driver_labels__labeler"][:2] == ["eve", "max"]
