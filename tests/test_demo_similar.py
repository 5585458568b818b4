"""The demo's similar-users panel over its API: a KNN on the sample repo's user_embedding
view through the store's DocumentSearch (ranked), on a Redis with the Query Engine (the
search_server fixture), and the clear answer on a Redis without it. Real materialization,
real per-event writes from the streaming worker, real per-field expiry."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from demo.app import create_app
from demo.runtime import DemoRuntime
from feast_redis_hexpire import clients
from feature_repo.generate_data import EMBEDDING_DIM, user_embedding
from feature_repo.stream_producer import StreamingWorker

pytestmark = pytest.mark.e2e

USERS = 40
STREAM_TTL = 6


def _runtime(server, tmp_path_factory, name: str, stream_ttl: int) -> DemoRuntime:
    return DemoRuntime(
        server.connection_string,
        tmp_path_factory.mktemp(name),
        project=f"t_{uuid.uuid4().hex[:8]}_{name}",
        users=USERS,
        stream_ttl_seconds=stream_ttl,
        worker_interval=0.2,
        worker_batch_size=5,
        start_worker=False,
        log=lambda message: None,
    ).setup()


@pytest.fixture(scope="module")
def searchable(search_server, tmp_path_factory):
    rt = _runtime(search_server, tmp_path_factory, "similar", STREAM_TTL)
    try:
        with TestClient(create_app(rt)) as client:
            yield rt, client
    finally:
        rt.close()
        clients.reset_clients()


def test_embedding_is_small_deterministic_and_normalized():
    a = user_embedding("u0001", 2, 0, "US")
    assert a == user_embedding("u0001", 2, 0, "US") and len(a) == EMBEDDING_DIM
    assert abs(sum(v * v for v in a) - 1) < 1e-4
    assert a != user_embedding("u0001", 2, 4, "US") and a != user_embedding("u0002", 2, 0, "US")


def test_similar_users_are_the_nearest_by_distance_with_their_served_age(searchable):
    rt, client = searchable
    # Fresh embeddings for everyone, by the worker's own per-event writes.
    StreamingWorker(rt.store, rt.user_ids, batch_size=USERS, write_mode="events").tick()
    body = client.get("/similar", params={"user_id": "u0001", "k": 5}).json()
    assert body["available"] is True and body["metric"] == "COSINE", body
    results = body["results"]
    assert len(results) == 5 and "u0001" not in [r["user_id"] for r in results]
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances) and all(0 <= d <= 2 for d in distances)
    assert all(0 <= r["served_age_s"] < STREAM_TTL for r in results), results
    # Exact (FLAT): the distances are the ones of the stored vectors, recomputed here.
    online = rt.store.get_online_features(
        features=["user_embedding:embedding"], entity_rows=[{"user_id": u} for u in rt.user_ids]
    ).to_dict()
    vectors = dict(zip(online["user_id"], online["embedding"], strict=True))
    query = vectors["u0001"]

    def cosine_distance(v):
        dot = sum(x * y for x, y in zip(query, v, strict=True))
        norm = (sum(x * x for x in query) * sum(y * y for y in v)) ** 0.5
        return 1 - dot / norm

    expected = sorted((cosine_distance(v), u) for u, v in vectors.items() if u != "u0001")[:5]
    assert [r["user_id"] for r in results] == [u for _, u in expected]
    assert distances == pytest.approx([d for d, _ in expected], abs=1e-4)
    assert client.get("/state").json()["search"]["available"] is True


def test_expired_embeddings_leave_the_results(searchable):
    rt, client = searchable
    keep = rt.user_ids[:3]
    everyone = StreamingWorker(rt.store, rt.user_ids, batch_size=USERS, write_mode="events")
    everyone.tick()
    time.sleep(STREAM_TTL - 2)
    # Only three users get a new embedding; the others' expire a TTL after their last write.
    StreamingWorker(rt.store, keep, batch_size=len(keep), write_mode="events").tick()
    time.sleep(2.5)
    body = client.get("/similar", params={"user_id": keep[0], "k": 10}).json()
    assert sorted(r["user_id"] for r in body["results"]) == sorted(keep[1:]), body
    # A user whose embedding expired has no query vector: the answer says so.
    gone = client.get("/similar", params={"user_id": rt.user_ids[-1], "k": 10}).json()
    assert gone["query"] is None and gone["results"] == [] and "expired" in gone["note"]


def test_similar_rejects_bad_input(searchable):
    _, client = searchable
    assert client.get("/similar", params={"user_id": "nobody", "k": 5}).status_code == 404
    assert client.get("/similar", params={"user_id": "u0001", "k": 0}).status_code == 422
    assert client.get("/similar", params={"user_id": "u0001", "k": 51}).status_code == 422


def test_without_the_query_engine_the_panel_says_so_and_the_rest_works(redis_server, tmp_path_factory):
    rt = _runtime(redis_server, tmp_path_factory, "nosearch", 300)
    try:
        with TestClient(create_app(rt)) as client:
            body = client.get("/similar", params={"user_id": "u0001", "k": 5}).json()
            assert body["available"] is False and body["results"] == []
            assert "Query Engine" in body["reason"] or "search" in body["reason"].lower(), body
            assert client.get("/state").json()["search"]["available"] is False
            read = client.post("/read", json={"user_id": "u0001"})
            assert read.status_code == 200, read.text
    finally:
        rt.close()
        clients.reset_clients()
