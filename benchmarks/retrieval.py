"""Vector retrieval: recall and latency of `retrieve_online_documents_v2`, and what indexing
costs the writes, in one run on one search-enabled Redis (RediSearch 2.10 on Redis 8.10).

    flock /tmp/bench.lock python -m benchmarks.retrieval            # 20k x 128 -> results/retrieval.json
    flock /tmp/bench.lock python -m benchmarks.retrieval --quick    # 5k x 128, fewer queries
    python -m benchmarks.retrieval --entities 100000                # the issue's recall shape (minutes)

Figures (every ratio from this run):

* recall@10 of `retrieve_online_documents_v2(...).to_dict()` against exact brute force
  (numpy, COSINE) over the same vectors, for each index choice: FLAT (the store's default),
  HNSW with the module's own defaults (M 16, EF_RUNTIME 10), HNSW with EF_RUNTIME 100, and
  HNSW with the store's HNSW defaults (M 16, EF_CONSTRUCTION 200, EF_RUNTIME 400); on random
  Gaussian vectors (HNSW's hardest case) and on clustered ones;
* p50 of that call (top_k 10, the stored vector and a string feature returned) against one
  raw `FT.SEARCH` of the same query bytes (the floor; target <= 1.5x), the same for the
  online store's own method (what the store adds, without Feast's FeatureStore: its
  registry lookups and response building), the same for the store's own retrieval API,
  `DocumentSearch(...).query(...).to_dict()` (documents.py: rank order, the view resolved
  once; `document_search_ratio_vs_raw`, target <= 1.5x, its calls taken in turn with raw
  ones so that a shared machine's load weighs on both), and against Feast's
  own Milvus store on milvus-lite over the same data, when `pymilvus` and `milvus-lite`
  are installed (the `bench` extra);
* write cost: materialize rows/s of a view with a 128-dim vector, indexed (FLAT, HNSW)
  and not (`vector_index=False`: JSON text; `vector_index=True` with `vector_enabled:
  false`: raw floats, no index), with the server's memory per entity.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis

ROOT = Path(__file__).resolve().parent
DIM = 128
TOP_K = 10
CONFIGS: dict[str, dict[str, str]] = {
    "flat (default)": {"hexpire.vector.index_type": "FLAT"},
    "hnsw module defaults (M 16, EF_RUNTIME 10)": {
        "hexpire.vector.index_type": "HNSW",
        "hexpire.vector.m": "16",
        "hexpire.vector.ef_construction": "200",
        "hexpire.vector.ef_runtime": "10",
    },
    "hnsw EF_RUNTIME 100": {"hexpire.vector.index_type": "HNSW", "hexpire.vector.ef_runtime": "100"},
    "hnsw store defaults (M 16, EF_CONSTRUCTION 200, EF_RUNTIME 400)": {"hexpire.vector.index_type": "HNSW"},
}


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- data


def vectors(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.normal(size=(n, DIM)).astype(np.float32)
    centers = rng.normal(size=(max(10, n // 200), DIM))
    return (centers[rng.integers(0, len(centers), n)] + 0.15 * rng.normal(size=(n, DIM))).astype(np.float32)


def frame(data: np.ndarray) -> pd.DataFrame:
    now = datetime.now(timezone.utc)
    return pd.DataFrame(
        {
            "item_id": [f"i{k:07d}" for k in range(len(data))],
            "emb": list(data),
            "title": [f"item {k}" for k in range(len(data))],
            "event_timestamp": [now] * len(data),
        }
    )


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int) -> list[set[int]]:
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return [set(np.argsort(-(unit @ row))[:k].tolist()) for row in q]


def p50_ms(fn: Callable[[], Any], calls: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def paired_p50_ms(
    first: Callable[[], Any], second: Callable[[], Any], calls: int, warmup: int = 3
) -> tuple[float, float]:
    """Both p50s from calls taken in turn, so a busy moment of a shared machine weighs on
    both alike: for a ratio of two fast calls."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for fn, out in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            fn()
            out.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


# ---------------------------------------------------------------- this store


def view(tags: dict[str, str], vector_index: bool = True, source: Any = None) -> Any:
    from feast import Entity, FeatureView, Field, FileSource
    from feast.types import Array, Float32, String
    from feast.value_type import ValueType

    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
    return item, FeatureView(
        name="docs",
        entities=[item],
        schema=[
            Field(name="item_id", dtype=String),
            Field(
                name="emb",
                dtype=Array(Float32),
                vector_index=vector_index,
                vector_length=DIM if vector_index else 0,
                vector_search_metric="COSINE" if vector_index else None,
            ),
            Field(name="title", dtype=String),
        ],
        source=source or FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
        tags=tags,
    )


def store(server: Any, tmp: Path, **online: Any) -> Any:
    from devsupport.feature_stores import feature_store

    return feature_store(server, tmp, project_prefix="bench", **online)


def wait_background_indexing(client: redis.Redis, alias: str) -> None:
    """HNSW indexes are tiered: writes land in a flat buffer, moved into the graph by
    background threads. Measure the graph, not the buffer."""
    while True:
        info = client.execute_command("FT.DEBUG", "VECSIM_INFO", alias, "emb")
        pairs = dict(zip(info[::2], info[1::2]))
        if int(pairs.get(b"BACKGROUND_INDEXING", 0)) == 0:
            return
        time.sleep(0.2)


def search_figures(server: Any, tmp: Path, data: np.ndarray, queries: np.ndarray, calls: int) -> dict[str, Any]:
    from feast_redis_hexpire import DocumentSearch

    fs = store(server, tmp, vector_enabled=True)
    item, docs = view(CONFIGS["flat (default)"])
    fs.apply([item, docs])
    started = time.perf_counter()
    fs.write_to_online_store("docs", frame(data))
    log(f"  wrote {len(data)} vectors in {time.perf_counter() - started:.1f}s")
    raw = redis.Redis.from_url(server.url)
    online = fs._get_provider().online_store
    truth = exact_top_k(data, queries, TOP_K)
    alias = f"fs:{fs.project}:_idx:docs"
    out: dict[str, Any] = {}
    for name, tags in CONFIGS.items():
        _, docs = view(tags)
        started = time.perf_counter()
        fs.apply([docs])  # a changed index: built alongside, then the alias swapped
        if tags.get("hexpire.vector.index_type") == "HNSW":
            wait_background_indexing(raw, alias)
        build_s = time.perf_counter() - started
        found = []
        for q, want in zip(queries, truth):
            got = fs.retrieve_online_documents_v2(features=["docs:emb", "docs:title"], query=list(q), top_k=TOP_K)
            found.append(len({int(i[1:]) for i in got.to_dict()["item_id"]} & want) / TOP_K)
        first = list(queries[0])
        table = fs.get_feature_view("docs")
        args = online._search_plan(fs.config, table, ["emb", "title"], first, TOP_K, "COSINE", None, None).args
        store_p50 = p50_ms(
            lambda first=first: fs.retrieve_online_documents_v2(
                features=["docs:emb", "docs:title"], query=first, top_k=TOP_K
            ).to_dict(),
            calls,
        )
        raw_p50 = p50_ms(lambda args=args: raw.execute_command(*args), calls)
        call_p50 = p50_ms(
            lambda first=first, table=table: online.retrieve_online_documents_v2(
                fs.config, table, ["emb", "title"], first, TOP_K, "COSINE"
            ),
            calls,
        )
        search = DocumentSearch(fs, ["docs:emb", "docs:title"])
        search_p50, paired_raw_p50 = paired_p50_ms(
            lambda first=first, search=search: search.query(first, top_k=TOP_K).to_dict(),
            lambda args=args: raw.execute_command(*args),
            calls,
        )
        out[name] = {
            "recall_at_10": round(float(np.mean(found)), 4),
            "p50_ms": round(store_p50, 3),
            "raw_ft_search_p50_ms": round(raw_p50, 3),
            "ratio_vs_raw": round(store_p50 / raw_p50, 2),
            "store_call_p50_ms": round(call_p50, 3),  # the online store's method: Feast's FeatureStore aside
            "store_call_ratio_vs_raw": round(call_p50 / raw_p50, 2),
            # DocumentSearch(...).query(...).to_dict(), its calls taken in turn with raw FT.SEARCHes
            "document_search_p50_ms": round(search_p50, 3),
            "document_search_paired_raw_p50_ms": round(paired_raw_p50, 3),
            "document_search_ratio_vs_raw": round(search_p50 / paired_raw_p50, 2),  # target <= 1.5
            "index_build_s": round(build_s, 1),
        }
        log(f"  {name}: {out[name]}")
        figures = out[name]
        log(
            f"    p50 against one raw FT.SEARCH: FeatureStore {figures['ratio_vs_raw']}x, the online store's method "
            f"{figures['store_call_ratio_vs_raw']}x, DocumentSearch {figures['document_search_ratio_vs_raw']}x "
            "(target <= 1.5x)"
        )
    fs.teardown()
    raw.close()
    return out


# ---------------------------------------------------------------- Feast's Milvus store on milvus-lite


def milvus_figures(tmp: Path, data: np.ndarray, queries: np.ndarray, calls: int) -> dict[str, Any]:
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError as exc:
        return {"available": False, "reason": f"{exc}: pip install -e '.[bench]'"}
    from feast import FeatureStore, RepoConfig

    config = RepoConfig(
        project=f"mv_{uuid.uuid4().hex[:6]}",
        provider="local",
        registry={"path": str(tmp / "milvus_registry.db"), "cache_ttl_seconds": 0},
        online_store={
            "type": "milvus",
            "path": str(tmp / "milvus.db"),
            "embedding_dim": DIM,
            "index_type": "FLAT",
            "metric_type": "COSINE",
            "vector_enabled": True,
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    fs = FeatureStore(config=config, repo_path=str(tmp))
    item, docs = view({})
    fs.apply([item, docs])
    started = time.perf_counter()
    fs.write_to_online_store("docs", frame(data))
    log(f"  milvus-lite: wrote {len(data)} vectors in {time.perf_counter() - started:.1f}s")
    truth = exact_top_k(data, queries, TOP_K)
    found = []
    for q, want in zip(queries, truth):
        got = fs.retrieve_online_documents_v2(
            features=["docs:emb", "docs:title"], query=list(q), top_k=TOP_K, distance_metric="COSINE"
        ).to_dict()
        found.append(len({int(i[1:]) for i in got["item_id"]} & want) / TOP_K)
    q = list(queries[0])
    p50 = p50_ms(
        lambda: fs.retrieve_online_documents_v2(
            features=["docs:emb", "docs:title"], query=q, top_k=TOP_K, distance_metric="COSINE"
        ).to_dict(),
        calls,
        warmup=2,
    )
    return {
        "available": True,
        "index": "FLAT",
        "recall_at_10": round(float(np.mean(found)), 4),
        "p50_ms": round(p50, 3),
    }


# ---------------------------------------------------------------- write cost


def write_cost(server: Any, tmp: Path, data: np.ndarray) -> dict[str, Any]:
    from feast import FileSource

    path = tmp / "vectors.parquet"
    frame(data).to_parquet(path)
    source = FileSource(path=str(path), timestamp_field="event_timestamp")
    raw = redis.Redis.from_url(server.url)
    variants = {
        "Array(Float32), no vector_index (JSON text)": ({}, False, False),
        "vector_index, vector_enabled false (raw floats, no index)": ({}, True, False),
        "vector_index + FLAT index": ({"hexpire.vector.index_type": "FLAT"}, True, True),
        "vector_index + HNSW index": ({"hexpire.vector.index_type": "HNSW"}, True, True),
    }
    out: dict[str, Any] = {}
    for name, (tags, vector_index, enabled) in variants.items():
        fs = store(server, tmp, vector_enabled=enabled)
        item, docs = view(tags, vector_index, source)
        fs.apply([item, docs])
        before = int(raw.info("memory")["used_memory"])
        started = time.perf_counter()
        fs.materialize(
            datetime.now(timezone.utc) - timedelta(days=1), datetime.now(timezone.utc) + timedelta(minutes=1)
        )
        seconds = time.perf_counter() - started
        if enabled and tags.get("hexpire.vector.index_type") == "HNSW":
            wait_background_indexing(raw, f"fs:{fs.project}:_idx:docs")
        total = time.perf_counter() - started
        memory = int(raw.info("memory")["used_memory"]) - before
        out[name] = {
            "materialize_rows_per_s": round(len(data) / seconds),
            "until_indexed_rows_per_s": round(len(data) / total),
            "memory_bytes_per_entity": round(memory / len(data)),
        }
        log(f"  {name}: {out[name]}")
        fs.teardown()
    raw.close()
    return out


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrieval", description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=50, help="queries for recall")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per p50")
    parser.add_argument("--quick", action="store_true", help="5k entities, 20 queries, 40 calls")
    parser.add_argument("--no-milvus", action="store_true")
    parser.add_argument("--kinds", default="random,clustered", help="vector sets, comma-separated")
    parser.add_argument("--no-write-cost", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.entities, args.queries, args.calls = 5_000, 20, 40
    out_path = args.out or ROOT / "results" / ("retrieval-quick.json" if args.quick else "retrieval.json")

    from devsupport.redis_server import LocalRedisServer
    from devsupport.search_module import MODULE_BUILD

    results: dict[str, Any] = {
        "shape": {"entities": args.entities, "dim": DIM, "top_k": TOP_K, "queries": args.queries, "metric": "COSINE"},
        "server": f"Redis 8.10 with {MODULE_BUILD}",
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    try:
        with LocalRedisServer(search=True, log=log) as server:
            for kind in args.kinds.split(","):
                log(f"{kind} vectors, {args.entities} x {DIM}")
                data = vectors(kind, args.entities, seed=1)
                queries = (
                    vectors(kind, args.queries, seed=2)
                    if kind == "random"
                    else data[np.random.default_rng(2).integers(0, len(data), args.queries)]
                    + 0.05 * np.random.default_rng(3).normal(size=(args.queries, DIM)).astype(np.float32)
                )
                results[kind] = search_figures(server, tmp, data, queries, args.calls)
                if kind == "random" and not args.no_milvus:
                    results["milvus_lite_random"] = milvus_figures(tmp, data, queries, max(10, args.calls // 5))
                    log(f"  Feast's Milvus store on milvus-lite: {results['milvus_lite_random']}")
            if not args.no_write_cost:
                log("write cost (materialize)")
                results["write_cost"] = write_cost(server, tmp, vectors("random", args.entities, seed=4))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
