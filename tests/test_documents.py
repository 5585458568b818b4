"""DocumentSearch / AsyncDocumentSearch (documents.py): the store's own retrieval API, in
rank order. Checked against what this API did not write: a raw FT.SEARCH and numpy brute
force for the order, Feast's FeatureStore.retrieve_online_documents_v2 for the rows and
columns, the online store's own method for the errors. Real servers, real Feast."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import redis
from feast import FeatureService, FeatureStore, FeatureView, Field
from feast.data_source import PushMode
from feast.errors import FeatureViewNotFoundException
from feast.filter_models import ComparisonFilter, CompoundFilter
from feast.online_response import OnlineResponse
from feast.types import Int64, String

from devsupport.feature_stores import feature_store
from devsupport.redis_server import LocalRedisServer, use_server_kind
from feast_redis_hexpire import AsyncDocumentSearch, DocumentResponse, DocumentSearch, clients, feast_hooks
from feast_redis_hexpire.config import DEFAULT_SOCKET_TIMEOUT_SECONDS
from feast_redis_hexpire.errors import ConfigError, InvalidInput, SearchUnavailable, UnknownFeature
from tests.support.store import run_async
from tests.test_vector_expiry import LIVE
from tests.test_vector_retrieval import (
    DIM,
    FEATURES,
    ITEM,
    SOURCE,
    brute_force,
    data,
    docs_view,
    make_store,
    refs,
)

VIEWS = ("docs_l2", "docs_cosine")


@pytest.fixture(scope="module")
def repo(search_server, tmp_path_factory):
    fs = make_store(search_server, tmp_path_factory.mktemp("documents"))
    fs.apply([ITEM, docs_view("docs_l2"), docs_view("docs_cosine", "COSINE")])
    frame = data()
    for view in VIEWS:
        fs.write_to_online_store(view, frame)
    return fs, frame


@pytest.fixture
def raw(search_server):
    with redis.Redis.from_url(search_server.url) as client:
        yield client


def query_vector(seed: int) -> list[float]:
    return [float(x) for x in np.random.default_rng(seed).normal(size=DIM).astype(np.float32)]


def raw_knn(raw, fs, view: str, attribute: str, query: list[float], k: int) -> list[str]:
    """One FT.SEARCH written here, not by the store: the keys nearest first."""
    reply = raw.execute_command(
        "FT.SEARCH", f"fs:{fs.project}:_idx:{view}", f"*=>[KNN {k} @{attribute} $B AS d]",
        "PARAMS", 2, "B", np.asarray(query, dtype="<f4").tobytes(), "SORTBY", "d", "ASC",
        "RETURN", 1, "d", "LIMIT", 0, k, "DIALECT", 2,
    )  # fmt: skip
    return [key.decode().rsplit("item_id=", 1)[1] for key in reply[1::2]]


def as_rows(result: dict) -> set[tuple]:
    """A to_dict() as a set of rows (vectors made hashable)."""
    names = list(result)
    columns = [[tuple(v) if isinstance(v, list) else v for v in result[name]] for name in names]
    return set(zip(*columns))


# ---------------------------------------------------------------- rank order


@pytest.mark.parametrize(
    ("view", "metric", "attribute"),
    [("docs_l2", None, "emb"), ("docs_cosine", None, "emb"), ("docs_l2", "IP", "emb__ip"), ("docs_l2", "cosine", "emb__cosine")],
)  # fmt: skip
def test_knn_comes_in_the_order_of_raw_ft_search_and_brute_force(repo, raw, view, metric, attribute):
    fs, frame = repo
    search = DocumentSearch(fs, refs(view))
    for seed in (11, 12, 13):
        query = query_vector(seed)
        got = search.query(query, top_k=7, distance_metric=metric).to_dict()
        want_ids, want_distances = brute_force(
            frame, np.array(query), (metric or ("COSINE" if view == "docs_cosine" else "L2")).upper(), 7
        )
        assert got["item_id"] == want_ids == raw_knn(raw, fs, view, attribute, query, 7)
        assert got["item_id"] != sorted(got["item_id"])  # rank order, not Feast's join-key order
        assert got["distance"] == sorted(got["distance"])
        assert got["distance"] == pytest.approx(want_distances, rel=1e-4, abs=1e-5)
        by_id = frame.set_index("item_id")
        for i, item in enumerate(got["item_id"]):  # each document's own stored values
            assert got["emb"][i] == [float(x) for x in by_id.loc[item, "emb"]]
            assert (got["title"][i], got["rating"][i]) == (by_id.loc[item, "title"], by_id.loc[item, "rating"])


def test_keyword_results_best_bm25_first_and_hybrid_nearest_first(repo):
    fs, frame = repo
    search = DocumentSearch(fs, refs("docs_l2", ["title"]))
    got = search.query(query_string="stone", top_k=100).to_dict()
    assert sorted(got["item_id"]) == sorted(frame["item_id"][frame["title"].str.contains("stone")])
    assert got["text_rank"] == sorted(got["text_rank"], reverse=True) and len(set(got["text_rank"])) > 1
    assert got["distance"] == [None] * len(got["item_id"])
    query = query_vector(8)
    hybrid = search.query(query, query_string="river", top_k=4).to_dict()
    matching = frame[frame["title"].str.contains("river")]
    assert hybrid["item_id"] == brute_force(matching, np.array(query), "L2", 4)[0]
    assert all(rank > 0 for rank in hybrid["text_rank"])


@pytest.mark.parametrize(
    ("flt", "mask"),
    [
        (ComparisonFilter(type="eq", key="category", value="c d"), lambda f: f["category"] == "c d"),
        (ComparisonFilter(type="nin", key="rating", value=[1, 2, 3]), lambda f: ~f["rating"].isin([1, 2, 3])),
        (
            CompoundFilter(
                type="or",
                filters=[
                    ComparisonFilter(type="eq", key="active", value=True),
                    ComparisonFilter(type="gte", key="price", value=60.0),
                ],
            ),
            lambda f: f["active"] | (f["price"] >= 60),
        ),
    ],
)
def test_filters_hold_and_top_k_holds_after_them(repo, flt, mask):
    fs, frame = repo
    query = query_vector(5)
    got = DocumentSearch(fs, refs("docs_l2")).query(query, top_k=6, filters=flt).to_dict()
    assert got["item_id"] == brute_force(frame[mask(frame)], np.array(query), "L2", 6)[0]
    assert len(got["item_id"]) == 6


# ---------------------------------------------------------------- the same rows and columns as Feast's


REQUESTS = {
    "knn": {"query": query_vector(21)},
    "knn cosine": {"query": query_vector(22), "view": "docs_cosine"},
    "keyword": {"query_string": "apple"},
    "hybrid": {"query": query_vector(23), "query_string": "blue"},
    "filtered": {"query": query_vector(24), "filters": ComparisonFilter(type="lt", key="rating", value=4)},
    "filtered keyword": {"query_string": "red", "filters": ComparisonFilter(type="eq", key="active", value=False)},
    "join key asked for": {"query": query_vector(25), "features": ["title", "item_id", "price"]},
}


@pytest.mark.parametrize("name", list(REQUESTS))
@pytest.mark.parametrize("timestamps", [False, True])
def test_rows_and_columns_are_feature_stores_in_rank_order(repo, name, timestamps):
    fs, _ = repo
    request = dict(REQUESTS[name])
    view = request.pop("view", "docs_l2")
    features = refs(view, request.pop("features", FEATURES))
    top_k = 8
    feast = fs.retrieve_online_documents_v2(features=features, top_k=top_k, **request).to_dict(timestamps)
    embedding = request.pop("query", None)
    response = DocumentSearch(fs, features).query(embedding, top_k=top_k, **request)
    got = response.to_dict(timestamps)
    assert list(got) == list(feast)  # the same columns, in Feast's order
    assert as_rows(got) == as_rows(feast) and len(got["item_id"]) == len(feast["item_id"]) > 0
    rank = "distance" if embedding is not None else "text_rank"
    assert got[rank] == sorted(got[rank], reverse=rank == "text_rank")
    # Feast's own reading of the proto (built by Feast's functions) says the same
    assert isinstance(response, OnlineResponse) and len(response) == len(got["item_id"])
    assert OnlineResponse.to_dict(response, timestamps) == got
    assert response.to_df(timestamps).to_dict("list") == pd.DataFrame(got).to_dict("list")


def test_a_feature_service_top_k_beyond_the_data_and_an_empty_result(repo):
    fs, frame = repo
    service = FeatureService(name="docs_svc", features=[fs.get_feature_view("docs_l2")[["title", "rating"]]])
    fs.apply([service])
    search = DocumentSearch(fs, fs.get_feature_service("docs_svc"))
    assert search.view == "docs_l2" and search.features == ["title", "rating"]
    everything = search.query([0.0] * DIM, top_k=1000).to_dict()
    assert list(everything) == ["title", "rating", "distance", "item_id"]
    assert sorted(everything["item_id"]) == sorted(frame["item_id"])
    none = search.query(query_string="nonexistent", top_k=3).to_dict()
    assert none == {"title": [], "rating": [], "distance": [], "text_rank": [], "item_id": []}


def test_version_metadata_reaches_the_proto(repo):
    fs, _ = repo
    response = DocumentSearch(fs, refs("docs_l2", ["title"])).query(
        query_vector(3), top_k=2, include_feature_view_version_metadata=True
    )
    assert [m.name for m in response.proto.metadata.feature_view_metadata] == ["docs_l2"]


# ---------------------------------------------------------------- async


def test_the_async_twin_returns_the_same(repo):
    fs, _ = repo
    features = refs("docs_l2", ["title", "rating"])
    search, twin = DocumentSearch(fs, features), AsyncDocumentSearch(fs, features)
    for request in (
        {"embedding": query_vector(31)},
        {"query_string": "green"},
        {"embedding": query_vector(32), "query_string": "stone"},
    ):
        want = search.query(top_k=5, **request).to_dict(True)
        got = run_async(fs, lambda request=request: twin.query(top_k=5, **request))
        assert isinstance(got, DocumentResponse) and got.to_dict(True) == want and want["item_id"]
    with pytest.raises(InvalidInput, match="top_k must be a whole number"):
        run_async(fs, lambda: twin.query(query_vector(1), top_k=0))


# ---------------------------------------------------------------- bad input: the store's errors


BAD = [
    {"embedding": None},
    {"embedding": [1.0] * DIM, "top_k": 0},
    {"embedding": [1.0, 2.0]},
    {"embedding": [1.0] * DIM, "distance_metric": "L2", "view": "docs_cosine"},
    {"embedding": [1.0] * DIM, "filters": ComparisonFilter(type="eq", key="emb", value=1)},
    {"embedding": [1.0] * DIM, "filters": ComparisonFilter(type="gt", key="category", value="a")},
    {"embedding": [1.0] * DIM, "filters": ComparisonFilter(type="in", key="rating", value=[])},
    {"query_string": "!!"},
]


@pytest.mark.parametrize("bad", BAD, ids=range(len(BAD)))
def test_bad_input_is_the_stores_own_error(repo, bad):
    fs, _ = repo
    request = dict(bad)
    view = request.pop("view", "docs_l2")
    embedding = request.pop("embedding", None)
    online = fs._get_provider().online_store
    table = fs.get_feature_view(view)
    with pytest.raises(InvalidInput) as theirs:
        online.retrieve_online_documents_v2(
            fs.config, table, ["title"], embedding, request.get("top_k", 3), request.get("distance_metric"),
            request.get("query_string"), request.get("filters"),
        )  # fmt: skip
    with pytest.raises(InvalidInput) as ours:
        DocumentSearch(fs, refs(view, ["title"])).query(embedding, **{"top_k": 3, **request})
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)
    assert ours.value.view == view


def test_bad_features_fail_when_the_search_is_made(repo, search_server, tmp_path):
    fs, _ = repo
    with pytest.raises(UnknownFeature, match="view 'docs_l2' has no feature 'nope'"):
        DocumentSearch(fs, ["docs_l2:title", "docs_l2:nope"])
    with pytest.raises(InvalidInput, match="searches a single feature view.*'docs_cosine', 'docs_l2'"):
        DocumentSearch(fs, ["docs_l2:title", "docs_cosine:title"])
    with pytest.raises(FeatureViewNotFoundException):
        DocumentSearch(fs, ["missing:title"])
    off = make_store(search_server, tmp_path / "off", vector_enabled=False)
    off.apply([ITEM, docs_view()])
    with pytest.raises(SearchUnavailable, match="set vector_enabled: true"):
        DocumentSearch(off, ["docs:title"])
    plain = FeatureView(name="plain", entities=[ITEM], schema=[Field(name="title", dtype=String)], source=SOURCE)
    fs.apply([plain])
    with pytest.raises(InvalidInput, match="view 'plain' has no searchable feature"):
        DocumentSearch(fs, ["plain:title"])


def test_a_changed_feast_internal_turns_the_api_off_with_a_clear_error(repo, monkeypatch):
    import feast.utils

    fs, _ = repo

    def re_signed(registry, project, features, cache):  # the "next" Feast's signature
        raise AssertionError("not called")

    monkeypatch.setattr(feast.utils, "_get_feature_views_to_use", re_signed)
    assert not feast_hooks.check(warn=False).active(feast_hooks.DOCUMENT_SEARCH)
    with pytest.raises(ConfigError, match="feast.utils._get_feature_views_to_use is re-signed"):
        DocumentSearch(fs, refs("docs_l2", ["title"]))


# ---------------------------------------------------------------- the registry and expiry


def stocked(stock: bool) -> FeatureView:
    return docs_view(extra=[Field(name="stock", dtype=Int64)] if stock else [])


@pytest.mark.parametrize("where", ["this store", "another process"])
def test_a_feast_apply_is_picked_up_without_a_refresh(search_server, tmp_path, where):
    fs = make_store(search_server, tmp_path)
    fs.apply([ITEM, stocked(False)])
    frame = data(20)
    fs.write_to_online_store("docs", frame)
    search = DocumentSearch(fs, ["docs:title", "docs:emb"])
    in_stock = ComparisonFilter(type="gt", key="stock", value=10)
    with pytest.raises(InvalidInput, match="cannot filter on 'stock'"):
        search.query([1.0] * DIM, filters=in_stock)
    applier = fs if where == "this store" else FeatureStore(config=fs.config)
    applier.apply([ITEM, stocked(True)])  # a new feature: a new index behind the alias
    fs.write_to_online_store("docs", frame.assign(stock=range(20)))
    query = query_vector(4)
    got = search.query(query, top_k=5, filters=in_stock).to_dict()
    assert got["item_id"] == brute_force(frame[frame.index > 10], np.array(query), "L2", 5)[0]
    fs.teardown()


def test_a_feature_the_view_drops_fails_the_next_query(search_server, tmp_path):
    fs = make_store(search_server, tmp_path)
    fs.apply([ITEM, stocked(True)])
    fs.write_to_online_store("docs", data(5).assign(stock=range(5)))
    search = DocumentSearch(fs, ["docs:stock"])
    assert sorted(search.query([1.0] * DIM, top_k=5).to_dict()["stock"]) == [0, 1, 2, 3, 4]
    FeatureStore(config=fs.config).apply([ITEM, stocked(False)])
    time.sleep(0.02)  # past the 10 ms between registry checks
    with pytest.raises(UnknownFeature, match="'stock'"):
        search.query([1.0] * DIM)
    fs.teardown()


def test_an_expired_embedding_is_never_returned(search_server, raw, tmp_path):
    fs = feature_store(search_server, tmp_path, vector_enabled=True)
    fs.apply([ITEM, LIVE])
    now = datetime.now(timezone.utc)
    fs.push(
        "live_push",
        pd.DataFrame(
            {
                "item_id": ["old", "new"],
                "emb": [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.1]],
                "note": ["o", "n"],
                "event_timestamp": [now - timedelta(seconds=2), now],
            }
        ),
        to=PushMode.ONLINE,
    )
    search = DocumentSearch(fs, ["live:emb", "live:note"])
    assert search.query([1, 1, 0, 0]).to_dict()["item_id"] == ["old", "new"]  # old is the nearer
    deadline = time.monotonic() + 5
    while search.query([1, 1, 0, 0]).to_dict()["item_id"] != ["new"]:
        assert time.monotonic() < deadline, "the expired embedding is still returned"
        time.sleep(0.05)
    assert raw.hget(f"fs:{fs.project}:item_id=old", "live:emb") is None
    for _ in range(20):  # never again, sync or async
        assert search.query([1, 1, 0, 0]).to_dict()["item_id"] == ["new"]
    got = run_async(fs, lambda: AsyncDocumentSearch(fs, ["live:note"]).query([1, 1, 0, 0]))
    assert got.to_dict()["item_id"] == ["new"]
    fs.teardown()


# ---------------------------------------------------------------- a hung server


def test_a_hung_server_is_an_error_within_the_timeout_and_search_works_once_it_does(tmp_path):
    """SIGSTOP under open connections: sync and async, an error within the bound the store's
    client sets (socket_timeout, MAX_TIMEOUT_RETRIES), as the store's own method gives; after
    SIGCONT the same results as before."""
    bound = (1 + clients.MAX_TIMEOUT_RETRIES) * DEFAULT_SOCKET_TIMEOUT_SECONDS + 0.6 + 1.0
    with use_server_kind("redis"), LocalRedisServer(search=True) as server:
        fs = make_store(server, tmp_path)
        fs.apply([ITEM, docs_view()])
        fs.write_to_online_store("docs", data(12))
        search, twin = DocumentSearch(fs, ["docs:title"]), AsyncDocumentSearch(fs, ["docs:title"])
        query = query_vector(6)
        want = search.query(query, top_k=4).to_dict()
        online, table = fs._get_provider().online_store, fs.get_feature_view("docs")
        with server.paused():
            errors = []
            for call in (
                lambda: online.retrieve_online_documents_v2(fs.config, table, ["title"], query, 4),
                lambda: search.query(query, top_k=4),
                lambda: run_async(fs, lambda: twin.query(query, top_k=4)),
            ):
                started = time.monotonic()
                with pytest.raises((redis.TimeoutError, redis.ConnectionError)) as caught:
                    call()
                assert DEFAULT_SOCKET_TIMEOUT_SECONDS <= time.monotonic() - started <= bound
                errors.append(type(caught.value))
            assert errors[1] is errors[0]  # what the store's own method raises
        assert search.query(query, top_k=4).to_dict() == want
        assert run_async(fs, lambda: twin.query(query, top_k=4)).to_dict() == want
    clients.reset_clients()


# ---------------------------------------------------------------- Redis Cluster


@pytest.mark.topology
def test_on_the_cluster_the_global_top_k_in_rank_order(search_cluster, tmp_path):
    from tests.test_vector_cluster import VIEW, frame, nearest

    fs = feature_store(
        search_cluster, tmp_path, redis_type="redis_cluster", vector_enabled=True, text_search_enabled=True
    )
    try:
        fs.apply([ITEM, VIEW])
        cluster_data = frame()
        fs.write_to_online_store("docs", cluster_data)
        features = ["docs:title", "docs:rating", "docs:emb"]
        search, twin = DocumentSearch(fs, features), AsyncDocumentSearch(fs, features)
        for seed in range(3):
            query = np.random.default_rng(seed).normal(size=6).astype(np.float32)
            got = search.query(list(query), top_k=8).to_dict()
            assert got["item_id"] == nearest(cluster_data, query, 8)
            feast = fs.retrieve_online_documents_v2(features=features, query=list(query), top_k=8).to_dict()
            assert list(got) == list(feast) and as_rows(got) == as_rows(feast)
            assert run_async(fs, lambda query=query: twin.query(list(query), top_k=8)).to_dict() == got
        rated = ComparisonFilter(type="gte", key="rating", value=3)
        got = search.query(list(query), top_k=5, filters=rated).to_dict()
        assert got["item_id"] == nearest(cluster_data, query, 5, cluster_data["rating"] >= 3)
        keyword = search.query(query_string="gamma", top_k=500).to_dict()
        assert sorted(keyword["item_id"]) == sorted(
            cluster_data["item_id"][cluster_data["title"].str.startswith("gamma")]
        )
        assert keyword["text_rank"] == sorted(keyword["text_rank"], reverse=True)
    finally:
        fs.teardown()
        clients.reset_clients()
