"""`retrieve_online_documents_v2` on the Redis Query Engine, through Feast's FeatureStore:
the index as part of the schema (apply, change, teardown), KNN by each metric against
brute force, Feast's filters, BM25 keyword and hybrid search, the result shape, sync and
async, and what a server without the Query Engine says. Real servers, real Feast."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.filter_models import ComparisonFilter, CompoundFilter
from feast.types import Array, Bool, Float32, Float64, Int64, String
from feast.value_type import ValueType

from devsupport.feature_stores import feature_store
from feast_redis_hexpire.errors import InvalidInput, SearchUnavailable
from tests.support.store import run_async

ITEM = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
SOURCE = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
DIM = 8
N = 60
TS = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
WORDS = ["red", "green", "blue", "apple", "river", "stone"]


def docs_view(
    name: str = "docs", metric: str | None = None, extra: list[Field] | None = None, tags=None
) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[ITEM],
        schema=[
            Field(name="item_id", dtype=String),
            Field(name="emb", dtype=Array(Float32), vector_index=True, vector_length=DIM, vector_search_metric=metric),
            Field(name="title", dtype=String),
            Field(name="category", dtype=String),
            Field(name="rating", dtype=Int64),
            Field(name="price", dtype=Float64),
            Field(name="active", dtype=Bool),
            *(extra or []),
        ],
        source=SOURCE,
        tags=tags or {},
    )


def make_store(server, tmp: Path, **online) -> FeatureStore:
    return feature_store(server, tmp, **{"vector_enabled": True, "text_search_enabled": True, **online})


def data(n: int = N, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    return pd.DataFrame(
        {
            "item_id": [f"i{k:03d}" for k in range(n)],
            "emb": list(vectors),
            "title": [f"{WORDS[k % 6]} {WORDS[(k * 5 + 1) % 6]} item {k}" for k in range(n)],
            "category": [("a", "b", "c d")[k % 3] for k in range(n)],
            "rating": [k % 10 for k in range(n)],
            "price": [k * 1.5 for k in range(n)],
            "active": [k % 2 == 0 for k in range(n)],
            "event_timestamp": [TS + timedelta(seconds=k) for k in range(n)],
        }
    )


def brute_force(frame: pd.DataFrame, query: np.ndarray, metric: str, k: int) -> tuple[list[str], list[float]]:
    """Exact neighbours and distances as the Query Engine defines them."""
    vectors = np.stack(frame["emb"].to_numpy()).astype(np.float64)
    q = query.astype(np.float32).astype(np.float64)
    if metric == "L2":
        distances = ((vectors - q) ** 2).sum(axis=1)  # squared, as the engine reports it
    elif metric == "COSINE":
        distances = 1 - vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    else:
        distances = 1 - vectors @ q
    order = np.argsort(distances, kind="stable")[:k]
    return [frame["item_id"].iloc[i] for i in order], [float(distances[i]) for i in order]


def ranked(result: dict, column: str = "distance", reverse: bool = False) -> dict:
    """The response's rows in rank order. Feast's FeatureStore lays out the response in
    join-key order (the store returns its rows that way, or Feast would pair one
    document's values with another's key), so the rank is in `distance` / `text_rank`."""
    order = sorted(range(len(result["item_id"])), key=lambda i: result[column][i], reverse=reverse)
    return {name: [values[i] for i in order] for name, values in result.items()}


def ids(result: dict, column: str = "distance", reverse: bool = False) -> list[str]:
    return ranked(result, column, reverse)["item_id"] if result["item_id"] else []


@pytest.fixture(scope="module")
def repo(search_server, tmp_path_factory):
    """One project with a view per metric, the same 60 documents in each."""
    fs = make_store(search_server, tmp_path_factory.mktemp("retrieval"))
    views = [docs_view("docs_l2"), docs_view("docs_cosine", "COSINE"), docs_view("docs_ip", "IP")]
    fs.apply([ITEM, *views])
    frame = data()
    for view in views:
        fs.write_to_online_store(view.name, frame)
    return fs, frame


@pytest.fixture
def raw(search_server):
    client = redis.Redis.from_url(search_server.url)
    yield client
    client.close()


FEATURES = ["emb", "title", "category", "rating", "price", "active"]


def refs(view: str, names=FEATURES) -> list[str]:
    return [f"{view}:{name}" for name in names]


# ---------------------------------------------------------------- KNN


@pytest.mark.parametrize(("view", "metric"), [("docs_l2", "L2"), ("docs_cosine", "COSINE"), ("docs_ip", "IP")])
def test_knn_matches_brute_force_for_each_metric(repo, view, metric):
    fs, frame = repo
    query = np.random.default_rng(11).normal(size=DIM).astype(np.float32)
    got = ranked(fs.retrieve_online_documents_v2(features=refs(view), query=list(query), top_k=7).to_dict())
    assert got["item_id"] != sorted(got["item_id"])  # the query is not a trivial one
    want_ids, want_distances = brute_force(frame, query, metric, 7)
    assert ids(got) == want_ids
    assert got["distance"] == pytest.approx(want_distances, rel=1e-4, abs=1e-5)
    by_id = frame.set_index("item_id")
    for i, item in enumerate(ids(got)):
        # each document's own stored vector (not the query), and its other features
        assert got["emb"][i] == [float(x) for x in by_id.loc[item, "emb"]]
        assert got["title"][i] == by_id.loc[item, "title"]
        assert got["rating"][i] == by_id.loc[item, "rating"]
        assert got["active"][i] == by_id.loc[item, "active"]


def test_event_timestamps_and_full_names(repo):
    fs, frame = repo
    query = list(frame["emb"].iloc[4])
    response = fs.retrieve_online_documents_v2(features=refs("docs_l2", ["title"]), query=query, top_k=1)
    got = response.to_dict(include_event_timestamps=True)
    assert ids(got) == ["i004"] and got["distance"] == [0.0]
    assert got["title__ts"] == [int((TS + timedelta(seconds=4)).timestamp())]


def test_async_and_v1_give_the_same_hits(repo):
    fs, frame = repo
    online = fs._get_provider().online_store
    table = fs.get_feature_view("docs_cosine")
    query = list(frame["emb"].iloc[9])
    sync_rows = online.retrieve_online_documents_v2(fs.config, table, ["title", "emb"], query, 5, "COSINE")
    async_rows = run_async(
        fs, lambda: online.retrieve_online_documents_v2_async(fs.config, table, ["title", "emb"], query, 5, "COSINE")
    )
    assert async_rows == sync_rows
    nearest = min(sync_rows, key=lambda row: row[2]["distance"].float_val)
    assert nearest[1].entity_values[0].string_val == "i009" and nearest[2]["distance"].float_val == pytest.approx(
        0, abs=1e-6
    )
    v1 = online.retrieve_online_documents(fs.config, table, ["title"], query, 5, "COSINE")
    assert [(ts, key, title.string_val, dist.float_val) for ts, key, title, _, dist in v1] == [
        (ts, key, values["title"].string_val, values["distance"].float_val) for ts, key, values in sync_rows
    ]
    assert list(v1[0][3].float_list_val.val) == list(sync_rows[0][2]["emb"].float_list_val.val)


def test_top_k_larger_than_the_data_returns_every_document(repo):
    fs, frame = repo
    got = fs.retrieve_online_documents_v2(features=refs("docs_l2", ["title"]), query=[0.0] * DIM, top_k=1000)
    assert got.to_dict()["item_id"] == sorted(frame["item_id"])


def test_an_empty_index_returns_no_documents(search_server, tmp_path):
    fs = make_store(search_server, tmp_path)
    fs.apply([ITEM, docs_view()])
    got = fs.retrieve_online_documents_v2(features=refs("docs", ["title"]), query=[1.0] * DIM, top_k=3).to_dict()
    assert got["distance"] == [] and got["title"] == []
    got = fs.retrieve_online_documents_v2(features=refs("docs", ["title"]), query_string="red", top_k=3).to_dict()
    assert got["title"] == []


def test_a_metric_the_index_cannot_serve_and_a_wrong_query_length_are_clear_errors(repo):
    fs, _ = repo
    online = fs._get_provider().online_store
    table = fs.get_feature_view("docs_cosine")
    with pytest.raises(InvalidInput, match="'docs_cosine', feature 'emb': distance metric 'L2' cannot be served"):
        online.retrieve_online_documents_v2(fs.config, table, ["title"], [1.0] * DIM, 3, "L2")
    with pytest.raises(InvalidInput, match="query vector has length 3, the field's vector_length is 8"):
        fs.retrieve_online_documents_v2(features=refs("docs_cosine", ["title"]), query=[1.0, 2.0, 3.0], top_k=3)


# ---------------------------------------------------------------- filters


def _filtered(frame: pd.DataFrame, mask, query, k: int) -> list[str]:
    return brute_force(frame[mask], query, "L2", k)[0]


@pytest.mark.parametrize(
    ("flt", "mask"),
    [
        (ComparisonFilter(type="eq", key="category", value="c d"), lambda f: f["category"] == "c d"),
        (ComparisonFilter(type="ne", key="category", value="a"), lambda f: f["category"] != "a"),
        (ComparisonFilter(type="gt", key="rating", value=6), lambda f: f["rating"] > 6),
        (ComparisonFilter(type="gte", key="rating", value=6), lambda f: f["rating"] >= 6),
        (ComparisonFilter(type="lt", key="price", value=30.0), lambda f: f["price"] < 30),
        (ComparisonFilter(type="lte", key="price", value=30.0), lambda f: f["price"] <= 30),
        (ComparisonFilter(type="in", key="rating", value=[1, 2]), lambda f: f["rating"].isin([1, 2])),
        (ComparisonFilter(type="nin", key="category", value=["a", "b"]), lambda f: ~f["category"].isin(["a", "b"])),
        (ComparisonFilter(type="eq", key="active", value=False), lambda f: ~f["active"]),
        (
            CompoundFilter(
                type="and",
                filters=[
                    ComparisonFilter(type="eq", key="category", value="b"),
                    CompoundFilter(
                        type="or",
                        filters=[
                            ComparisonFilter(type="lt", key="rating", value=3),
                            ComparisonFilter(type="gte", key="price", value=60.0),
                        ],
                    ),
                ],
            ),
            lambda f: (f["category"] == "b") & ((f["rating"] < 3) | (f["price"] >= 60)),
        ),
    ],
)
def test_filters_are_pushed_into_the_query_and_top_k_holds(repo, flt, mask):
    fs, frame = repo
    query = np.random.default_rng(5).normal(size=DIM).astype(np.float32)
    got = fs.retrieve_online_documents_v2(features=refs("docs_l2"), query=list(query), top_k=6, filters=flt)
    want = _filtered(frame, mask(frame), query, 6)
    assert ids(got.to_dict()) == want and len(want) == min(6, int(mask(frame).sum()))


def test_filters_on_what_is_not_indexed_are_clear_errors(repo):
    fs, _ = repo
    with pytest.raises(InvalidInput, match="cannot filter on 'emb'"):
        fs.retrieve_online_documents_v2(
            features=refs("docs_l2", ["title"]),
            query=[1.0] * DIM,
            top_k=3,
            filters=ComparisonFilter(type="eq", key="emb", value=1),
        )
    with pytest.raises(InvalidInput, match="'category': gt compares numbers"):
        fs.retrieve_online_documents_v2(
            features=refs("docs_l2", ["title"]),
            query=[1.0] * DIM,
            top_k=3,
            filters=ComparisonFilter(type="gt", key="category", value="a"),
        )


# ---------------------------------------------------------------- keyword and hybrid search


def test_keyword_search_ranks_by_bm25_over_string_features(repo):
    fs, frame = repo
    got = fs.retrieve_online_documents_v2(
        features=refs("docs_l2", ["title"]), query_string="stone", top_k=100
    ).to_dict()
    matching = sorted(frame["item_id"][frame["title"].str.contains("stone")])
    assert sorted(got["item_id"]) == matching and matching
    by_id = frame.set_index("item_id")
    assert all(by_id.loc[item, "title"] == title for item, title in zip(got["item_id"], got["title"]))
    assert all("stone" in title for title in got["title"]) and min(got["text_rank"]) > 0
    # BM25: a title where "stone" is one of fewer words ranks higher
    best = ranked(got, "text_rank", reverse=True)
    assert len(best["title"][0].split()) <= len(best["title"][-1].split())
    limited = fs.retrieve_online_documents_v2(
        features=refs("docs_l2", ["title"]),
        query_string="stone",
        top_k=3,
        filters=ComparisonFilter(type="eq", key="active", value=True),
    ).to_dict()
    assert len(limited["item_id"]) == 3 and all(by_id.loc[i, "active"] for i in limited["item_id"])
    assert all("stone" in title for title in limited["title"])


def test_hybrid_search_ranks_the_keyword_matches_by_distance(repo):
    fs, frame = repo
    query = np.random.default_rng(8).normal(size=DIM).astype(np.float32)
    got = fs.retrieve_online_documents_v2(
        features=refs("docs_l2", ["title"]), query=list(query), query_string="river", top_k=4
    ).to_dict()
    assert ids(got) == _filtered(frame, frame["title"].str.contains("river"), query, 4)
    assert all(isinstance(rank, float) and rank > 0 for rank in got["text_rank"])  # each match's BM25 score


def test_keyword_search_needs_text_search_enabled(search_server, tmp_path):
    fs = make_store(search_server, tmp_path, text_search_enabled=False)
    fs.apply([ITEM, docs_view()])
    with pytest.raises(InvalidInput, match="set text_search_enabled: true"):
        fs.retrieve_online_documents_v2(features=refs("docs", ["title"]), query_string="red", top_k=3)


# ---------------------------------------------------------------- the index as schema


def project_indexes(client, fs) -> list[str]:
    return sorted(n.decode() for n in client.execute_command("FT._LIST") if n.decode().startswith(f"fs:{fs.project}:"))


def test_apply_builds_changes_and_drops_indexes_and_serving_follows(search_server, raw, tmp_path):
    fs = make_store(search_server, tmp_path)
    fs.apply([ITEM, docs_view()])
    first = project_indexes(raw, fs)
    assert len(first) == 1 and first[0].startswith(f"fs:{fs.project}:_idx:docs#")
    fs.write_to_online_store("docs", data(10))
    fs.apply([ITEM, docs_view()])  # unchanged: the same index, nothing rebuilt
    assert project_indexes(raw, fs) == first

    changed = docs_view(extra=[Field(name="stock", dtype=Int64)], tags={"hexpire.vector.index_type": "HNSW"})
    fs.apply([changed])  # a new index built alongside, the alias moved to it, the old one dropped
    second = project_indexes(raw, fs)
    assert len(second) == 1 and second != first
    info = raw.execute_command("FT.INFO", f"fs:{fs.project}:_idx:docs")  # the alias names the new index
    info = dict(zip(info[::2], info[1::2]))
    assert info[b"index_name"].decode() == second[0] and int(info[b"num_docs"]) == 10
    got = fs.retrieve_online_documents_v2(features=refs("docs", ["title"]), query=[0.0] * DIM, top_k=20).to_dict()
    assert len(got["item_id"]) == 10

    fs.apply([], objects_to_delete=[changed], partial=False)  # what `feast apply` does for a removed view
    assert project_indexes(raw, fs) == []
    fs.apply([ITEM, docs_view()])
    assert len(project_indexes(raw, fs)) == 1
    fs.teardown()
    assert project_indexes(raw, fs) == []


def test_apply_writes_nothing_when_vector_search_is_off(search_server, raw, tmp_path):
    fs = make_store(search_server, tmp_path, vector_enabled=False)
    fs.apply([ITEM, docs_view()])
    assert project_indexes(raw, fs) == []
    with pytest.raises(SearchUnavailable, match="set vector_enabled: true"):
        fs.retrieve_online_documents_v2(features=refs("docs", ["title"]), query=[0.0] * DIM, top_k=2)


def test_hnsw_parameters_by_tag_reach_the_index(search_server, raw, tmp_path):
    fs = make_store(search_server, tmp_path)
    tags = {
        "hexpire.vector.index_type": "HNSW",
        "hexpire.vector.m": "24",
        "hexpire.vector.ef_construction": "300",
        "hexpire.vector.ef_runtime": "50",
    }
    fs.apply([ITEM, docs_view(tags=tags)])
    alias = f"fs:{fs.project}:_idx:docs"
    info = raw.execute_command("FT.INFO", alias)
    attributes = dict(zip(info[::2], info[1::2]))[b"attributes"]
    emb = next(dict(zip(a[::2], a[1::2])) for a in attributes if b"emb" in a)
    assert (emb[b"algorithm"], emb[b"M"], emb[b"ef_construction"]) == (b"HNSW", 24, 300)
    vecsim = raw.execute_command("FT.DEBUG", "VECSIM_INFO", alias, "emb")
    backend = dict(zip(vecsim[::2], vecsim[1::2]))[b"BACKEND_INDEX"]
    assert dict(zip(backend[::2], backend[1::2]))[b"EF_RUNTIME"] == 50
    fs.write_to_online_store("docs", data(20))
    query = list(data(20)["emb"].iloc[3])
    got = fs.retrieve_online_documents_v2(features=refs("docs", ["title"]), query=query, top_k=1).to_dict()
    assert got["item_id"] == ["i003"]


# ---------------------------------------------------------------- servers without the Query Engine


@pytest.mark.both_servers
def test_without_the_query_engine_apply_warns_search_explains_and_the_rest_works(
    redis_server, server_kind, tmp_path, caplog
):
    fs = make_store(redis_server, tmp_path)
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        fs.apply([ITEM, docs_view()])
    assert "has no Query Engine" in caplog.text
    fs.write_to_online_store("docs", data(3))
    read = fs.get_online_features(features=refs("docs", ["title"]), entity_rows=[{"item_id": "i001"}]).to_dict()
    assert read["title"] == [data(3)["title"][1]]
    with pytest.raises(SearchUnavailable) as caught:
        fs.retrieve_online_documents_v2(features=refs("docs", ["title"]), query=[0.0] * DIM, top_k=2)
    message = str(caught.value)
    assert "has no Query Engine" in message and "Redis 8 with the Query Engine, Redis Stack 7.4+" in message
    assert ("valkey-search" in message) and (("This is Valkey" in message) == (server_kind == "valkey"))
    fs.teardown()


@pytest.mark.parametrize("metric", ["L2", "cosine", "ip"])
def test_a_field_naming_no_metric_serves_each_metric_feast_asks_for(repo, metric):
    """docs_l2's Field names no vector_search_metric and the config no similarity: the
    field is indexed for L2, COSINE and IP, and Feast's distance_metric picks one."""
    fs, frame = repo
    query = np.random.default_rng(17).normal(size=DIM).astype(np.float32)
    got = fs.retrieve_online_documents_v2(
        features=refs("docs_l2", ["title", "item_id"]), query=list(query), top_k=6, distance_metric=metric
    ).to_dict()
    want_ids, want_distances = brute_force(frame, query, metric.upper(), 6)
    ranked_got = ranked(got)
    assert ranked_got["item_id"] == want_ids
    assert ranked_got["distance"] == pytest.approx(want_distances, rel=1e-4, abs=1e-5)


def test_every_keyword_must_match(repo):
    fs, frame = repo
    got = fs.retrieve_online_documents_v2(features=refs("docs_l2", ["title"]), query_string="red green", top_k=100)
    got = got.to_dict()
    both = frame["title"].str.contains("red") & frame["title"].str.contains("green")
    assert sorted(got["item_id"]) == sorted(frame["item_id"][both]) and 0 < both.sum() < len(frame)
    none = fs.retrieve_online_documents_v2(features=refs("docs_l2", ["title"]), query_string="red nonexistent", top_k=5)
    assert none.to_dict()["title"] == []
