"""Similar users: a KNN over the ``user_embedding`` view through the store's
``DocumentSearch`` (Feast's ``retrieve_online_documents_v2`` in rank order, at about the cost
of the raw search), on the Redis Query Engine over the entity hashes themselves.

The query is the selected user's own embedding as a read serves it now. Each result has
its COSINE distance and its served age (now minus its ``_ts:user_embedding``, read from
Redis). The embeddings are stream fields with a per-field expiry: pause the worker and,
one stream TTL later, users whose embedding expired leave the results (the index follows
the expiry on the server). Without the Query Engine the answer says so; nothing else of
the demo needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from feast_redis_hexpire.codec import decode_event_ts
from feast_redis_hexpire.errors import HexpireError, SearchUnavailable

EMBEDDING_VIEW = "user_embedding"
EMBEDDING_FEATURE = "embedding"
EMBEDDING_REF = f"{EMBEDDING_VIEW}:{EMBEDDING_FEATURE}"
METRIC = "COSINE"
MAX_K = 50


def has_embedding_view(views: list[Any]) -> bool:
    return any(view.name == EMBEDDING_VIEW for view in views)


class Searches:
    """The page's DocumentSearch, made at the first search: one per runtime, kept."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._search: Any = None

    def query(self, embedding: list[float], top_k: int) -> dict[str, Any]:
        from feast_redis_hexpire import DocumentSearch

        if self._search is None:
            self._search = DocumentSearch(self._store, [EMBEDDING_REF])
        result: dict[str, Any] = self._search.query(embedding, top_k=top_k, distance_metric=METRIC).to_dict()
        return result


def similar_users(
    store: Any,
    searches: Searches,
    client: Any,
    key_of: Callable[[str], str],
    join_key: str,
    user_id: str,
    top_k: int,
) -> dict[str, Any]:
    """The ``top_k`` users nearest ``user_id`` (itself left out), nearest first."""
    answer: dict[str, Any] = {"user_id": user_id, "top_k": top_k, "metric": METRIC, "available": True}
    started = time.perf_counter()
    own = store.get_online_features(features=[EMBEDDING_REF], entity_rows=[{join_key: user_id}]).to_dict()
    query = own[EMBEDDING_FEATURE][0]
    if not query:
        answer.update(
            results=[],
            query=None,
            note=f"{user_id}'s embedding is not served (expired with the stream TTL, or never written): "
            "no query vector. Resume the worker and it comes back.",
        )
        return answer
    try:
        found = searches.query(list(query), top_k + 1)  # nearest first
    except SearchUnavailable as exc:
        return {**answer, "available": False, "reason": str(exc), "results": []}
    seconds = time.perf_counter() - started
    hits = [(str(uid), float(dist)) for uid, dist in zip(found.get(join_key, []), found.get("distance", []))]
    hits = [hit for hit in hits if hit[0] != user_id][:top_k]
    now = time.time()
    ts_field = f"_ts:{EMBEDDING_VIEW}"
    pipe = client.pipeline(transaction=False)
    for uid, _ in hits:
        pipe.hget(key_of(uid), ts_field)
    ages: list[float | None] = []
    for raw in pipe.execute() if hits else []:
        try:
            stamp = None if raw is None else decode_event_ts(raw if isinstance(raw, bytes) else str(raw).encode())
            ages.append(None if stamp is None else round(max(0.0, now - stamp.timestamp()), 3))
        except HexpireError:
            ages.append(None)
    answer.update(
        query=[round(float(v), 4) for v in query],
        seconds=round(seconds, 4),
        results=[
            {"user_id": uid, "distance": round(dist, 6), "served_age_s": age}
            for (uid, dist), age in zip(hits, ages, strict=True)
        ],
    )
    return answer
