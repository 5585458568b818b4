"""Search is exact under expiry and newest-wins, on a search-enabled Redis: the index reads
the hashes in place, so what a read would not serve, a search never returns."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import redis
from feast import Entity, FeatureView, Field, FileSource, PushSource
from feast.data_source import PushMode
from feast.types import Array, Float32, Int64, String
from feast.value_type import ValueType

from devsupport.feature_stores import feature_store
from feast_redis_hexpire.errors import InvalidInput

ITEM = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
SOURCE = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
DIM = 4


def vector_field() -> Field:
    return Field(name="emb", dtype=Array(Float32), vector_index=True, vector_length=DIM)


def profile_view(ttl: str | None = None, with_title: bool = True) -> FeatureView:
    return FeatureView(
        name="profile",
        entities=[ITEM],
        schema=[
            Field(name="item_id", dtype=String),
            vector_field(),
            *([Field(name="title", dtype=String)] if with_title else []),
            Field(name="rank", dtype=Int64),
        ],
        source=SOURCE,
        tags={"hexpire.ttl_seconds": ttl} if ttl else {},
    )


LIVE = FeatureView(  # a stream view: per-field expiry anchored at event time
    name="live",
    entities=[ITEM],
    schema=[Field(name="item_id", dtype=String), vector_field(), Field(name="note", dtype=String)],
    source=PushSource(name="live_push", batch_source=SOURCE),
    tags={"hexpire.ttl_seconds": "3"},
)


@pytest.fixture
def fs(search_server, tmp_path):
    store = feature_store(search_server, tmp_path, vector_enabled=True)
    yield store
    store.teardown()


@pytest.fixture
def raw(search_server):
    client = redis.Redis.from_url(search_server.url)
    yield client
    client.close()


def rows(ids, vectors, ts, **columns) -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": ids, "emb": [list(map(float, v)) for v in vectors], "event_timestamp": ts, **columns}
    )


def search(fs, view: str, query, k: int = 10, features=("emb",)) -> dict:
    return fs.retrieve_online_documents_v2(
        features=[f"{view}:{f}" for f in features], query=list(query), top_k=k
    ).to_dict()


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_expired_stream_embedding_is_never_returned_while_its_key_lives(fs, raw):
    fs.apply([ITEM, profile_view(), LIVE])
    now = datetime.now(timezone.utc)
    # the batch view keeps both keys alive (key TTL: two days)
    fs.write_to_online_store(
        "profile", rows(["old", "new"], [[1, 0, 0, 0], [0, 1, 0, 0]], [now, now], title=["a", "b"], rank=[1, 2])
    )
    pushed = rows(["old", "new"], [[1, 1, 0, 0], [1, 1, 0, 0.1]], [now - timedelta(seconds=2), now], note=["o", "n"])
    fs.push("live_push", pushed, to=PushMode.ONLINE)
    assert sorted(search(fs, "live", [1, 1, 0, 0])["item_id"]) == ["new", "old"]
    key = f"fs:{fs.project}:item_id=old".encode()

    def old_gone() -> bool:
        return search(fs, "live", [1, 1, 0, 0])["item_id"] == ["new"]

    wait_until(old_gone, timeout=5)  # 3 s after its event time, 1 s after the push
    assert raw.exists(key) == 1 and raw.hget(key, "live:emb") is None
    assert raw.hget(key, "profile:emb") is not None  # the key and its batch view live on
    # many times over: it never comes back, and the live one stays until its own expiry
    for _ in range(20):
        assert search(fs, "live", [1, 1, 0, 0])["item_id"] == ["new"]
    assert sorted(search(fs, "profile", [1, 1, 0, 0])["item_id"]) == ["new", "old"]


def test_an_expired_batch_key_is_never_returned(fs, raw):
    fs.apply([ITEM, profile_view(ttl="1")])
    now = datetime.now(timezone.utc)
    fs.write_to_online_store(
        "profile", rows(["a", "b"], [[1, 0, 0, 0], [0, 1, 0, 0]], [now, now], title=["x", "y"], rank=[1, 2])
    )
    assert sorted(search(fs, "profile", [1, 0, 0, 0])["item_id"]) == ["a", "b"]
    started = time.monotonic()
    # (an empty result has no join-key column: Feast builds it from the hits)
    wait_until(lambda: search(fs, "profile", [1, 0, 0, 0])["distance"] == [], timeout=5)
    assert time.monotonic() - started < 2.5
    assert raw.exists(f"fs:{fs.project}:item_id=a") == 0


def test_an_older_write_skipped_by_newest_wins_never_changes_what_search_returns(fs, raw):
    fs.apply([ITEM, profile_view()])
    now = datetime.now(timezone.utc)
    fs.write_to_online_store(
        "profile", rows(["a", "b"], [[1, 0, 0, 0], [0, 0, 1, 0]], [now, now], title=["new", "b"], rank=[2, 0])
    )
    before = search(fs, "profile", [0, 1, 0, 0], features=("emb", "title", "rank"))
    # an older row for "a" whose vector equals the query: skipped, so nothing changes
    fs.write_to_online_store(
        "profile", rows(["a"], [[0, 1, 0, 0]], [now - timedelta(minutes=5)], title=["old"], rank=[1])
    )
    after = search(fs, "profile", [0, 1, 0, 0], features=("emb", "title", "rank"))
    assert after == before
    a = after["item_id"].index("a")
    assert after["emb"][a] == [1.0, 0.0, 0.0, 0.0] and after["title"][a] == "new" and after["distance"][a] == 2.0
    # and with a filter that only the skipped row would match, nothing is found
    from feast.filter_models import ComparisonFilter

    got = fs.retrieve_online_documents_v2(
        features=["profile:title"],
        query=[0, 1, 0, 0],
        top_k=5,
        filters=ComparisonFilter(type="eq", key="rank", value=1),
    ).to_dict()
    assert got["distance"] == [] and "item_id" not in got


def test_a_dropped_feature_leaves_no_indexed_field(fs, raw):
    fs.apply([ITEM, profile_view()])
    now = datetime.now(timezone.utc)
    fs.write_to_online_store("profile", rows(["a"], [[1, 0, 0, 0]], [now], title=["hello"], rank=[3]))
    fs.apply([ITEM, profile_view(with_title=False)])  # `title` dropped from the view
    key = f"fs:{fs.project}:item_id=a".encode()
    assert raw.hget(key, "profile:title") is None  # the field is gone from the hash
    info = raw.execute_command("FT.INFO", f"fs:{fs.project}:_idx:profile")
    attributes = dict(zip(info[::2], info[1::2]))[b"attributes"]
    assert not [a for a in attributes if b"profile:title" in a]  # and from the index
    assert [a for a in attributes if b"profile:emb" in a]
    from feast.filter_models import ComparisonFilter

    with pytest.raises(InvalidInput, match="cannot filter on 'title'"):
        fs.retrieve_online_documents_v2(
            features=["profile:emb"],
            query=[1, 0, 0, 0],
            top_k=1,
            filters=ComparisonFilter(type="eq", key="title", value="hello"),
        )
    assert search(fs, "profile", [1, 0, 0, 0], features=("emb", "rank"))["rank"] == [3]


def test_a_view_that_loses_its_vector_field_loses_its_index(fs, raw):
    fs.apply([ITEM, profile_view()])
    plain = FeatureView(
        name="profile",
        entities=[ITEM],
        schema=[Field(name="item_id", dtype=String), Field(name="rank", dtype=Int64)],
        source=SOURCE,
    )
    fs.apply([ITEM, plain], partial=False)
    names = [n.decode() for n in raw.execute_command("FT._LIST") if n.decode().startswith(f"fs:{fs.project}:")]
    assert names == []
