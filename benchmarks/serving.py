"""The serving benchmark: `get_online_features(...).to_dict()` against the physical floor
and against Feast's built-in store in its two read configurations, in one run.

    python -m benchmarks.serving                 # 20k users -> results/serving.json
    python -m benchmarks.serving --quick         # 2k users, fewer calls -> results/serving-quick.json

Targets (every ratio from this run):

* to_dict p50 / one raw pipelined HMGET of the same fields (bytes, no decoding):
  <= 1.7x at 1 entity, <= 1.5x at 10, 100 and 1,000;
* to_dict p50 / the faster of the built-in's `client: redis` and `client: glide`:
  <= 0.5x at 1 entity, <= 0.18x at 100, <= 0.12x at 1,000;
* async / sync p50 <= 1.10 at every size;
* GC-tracked objects net-allocated per call at 1,000 entities (what triggers gen-0
  collections), beside the built-in's, and p99 with GC normal and frozen;
* with Feast's metrics on (`feast serve --metrics`: served age, read outcomes, round
  trips) / off, p50: <= 1.05 at 1 and 100 entities.

`hexpire_qualified.generic_to_dict` is Feast's generic path on this store (its request
handling and response, reading through the store's grouped hook): what reads cost before
the store served them itself.

Also: a `precompute_online=True` feature service, served by this store from the entity
hashes, against Feast's precomputed-vector path on the built-in store.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from . import measure
from . import repo as benchrepo
from .harness import ROOT, log, machine_info, redis_client, redis_server, share_feature_resolution_cache

KINDS = ("hexpire_qualified", "builtin", "builtin_glide")
COUNTS = (1, 10, 100, 1000)
ITERATIONS = {1: 400, 10: 300, 100: 100, 1000: 30}
WARMUP = {1: 40, 10: 30, 100: 10, 1000: 3}
QUICK_ITERATIONS = {1: 100, 10: 100, 100: 30, 1000: 8}
QUICK_WARMUP = {1: 10, 10: 10, 100: 4, 1000: 2}
TARGET_VS_RAW = {1: 1.7, 10: 1.5, 100: 1.5, 1000: 1.5}
TARGET_VS_BUILTIN = {1: 0.5, 100: 0.18, 1000: 0.12}
TARGET_ASYNC = 1.10
TARGET_METRICS = {1: 1.05, 100: 1.05}


def targets(repos: dict[str, benchrepo.BenchRepo], client: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, r in repos.items():
        fs = r.store

        def to_dict(rows: Any, fs: Any = fs) -> Any:
            return fs.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows).to_dict()

        out[f"{kind}.to_dict"] = (to_dict, _rows)
    hexpire = repos["hexpire_qualified"].store

    def response_only(rows: Any) -> Any:
        return hexpire.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows)

    def proto(rows: Any) -> Any:  # what feast serve asks for
        return hexpire.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows).proto

    def generic_to_dict(rows: Any) -> Any:  # the path before the store served reads itself
        from feast.infra.online_stores.online_store import OnlineStore

        return OnlineStore.get_online_features(
            hexpire._get_provider().online_store,
            config=hexpire.config,
            features=benchrepo.READ_FEATURES,
            entity_rows=rows,
            registry=hexpire.registry,
            project=hexpire.project,
        ).to_dict()

    out["hexpire_qualified.response"] = (response_only, _rows)
    out["hexpire_qualified.generic_to_dict"] = (generic_to_dict, _rows)
    out["hexpire_qualified.proto"] = (proto, _rows)
    prefix = f"{benchrepo.HEXPIRE_KEY_PREFIX}:{repos['hexpire_qualified'].project}"
    out["raw.hmget"] = (measure.raw_hmget(client, prefix, benchrepo.READ_FEATURES), None)  # qualified field names
    out["raw.hmget_packed"] = (raw_hmget_packed(client, prefix, benchrepo.READ_FEATURES), None)
    return out


def metrics_targets(repos: dict[str, benchrepo.BenchRepo]) -> dict[str, Any]:
    """This store's to_dict with Feast's metrics off and on, timed against each other alone:
    in the full round robin, whatever ran just before (a glide call, whose threads still
    want the GIL) moved either figure by more than the difference measured."""
    hexpire = repos["hexpire_qualified"].store

    def to_dict(rows: Any) -> Any:
        return hexpire.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows).to_dict()

    def to_dict_metrics_on(rows: Any) -> Any:  # as in a `feast serve --metrics` worker
        from feast import metrics as feast_metrics

        flags, feast_metrics._config = feast_metrics._config, METRICS_ON
        try:
            return hexpire.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows).to_dict()
        finally:
            feast_metrics._config = flags

    return {"metrics_off": (to_dict, _rows), "metrics_on": (to_dict_metrics_on, _rows)}


def _metrics_flags() -> Any:
    from feast import metrics as feast_metrics

    return feast_metrics.build_metrics_flags(None)


METRICS_ON = _metrics_flags()


def raw_hmget_packed(client: Any, prefix: str, fields: Sequence[str]) -> Any:
    """The floor without redis-py's pipeline bookkeeping: every HMGET packed into one write
    on a pooled connection, every reply read back (bytes, no decoding)."""
    encoded = [f.encode() for f in fields]

    def read(ids: Sequence[str]) -> Any:
        connection = client.connection_pool.get_connection()
        try:
            connection.send_packed_command(
                connection.pack_commands([(b"HMGET", f"{prefix}:user_id={u}".encode(), *encoded) for u in ids])
            )
            return [connection.read_response() for _ in ids]
        finally:
            client.connection_pool.release(connection)

    return read


def async_vs_sync(fs: Any, calls: Sequence[list[str]], warmup: int, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """Sync and async `to_dict()` alternately inside one running event loop, as an async
    server calls it: timing `run_until_complete` per call would charge the loop's own
    start-up to async."""

    async def series() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"sync": [], "async": []}
        for i, ids in enumerate(calls):
            rows = _rows(ids)
            order = ("sync", "async") if i % 2 else ("async", "sync")
            for kind in order:
                t0 = time.perf_counter()
                if kind == "sync":
                    fs.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows).to_dict()
                else:
                    (await fs.get_online_features_async(features=benchrepo.READ_FEATURES, entity_rows=rows)).to_dict()
                if i >= warmup:
                    out[kind].append((time.perf_counter() - t0) * 1000)
        return out

    timings = loop.run_until_complete(series())
    return {
        kind: {"p50_ms": round(measure.percentile(v, 50), 4), "p99_ms": round(measure.percentile(v, 99), 4)}
        for kind, v in timings.items()
    }


def _rows(ids: Sequence[str]) -> list[dict[str, str]]:
    return [{"user_id": u} for u in ids]


def allocations(fn: Any, arg: Any, calls: int = 5) -> int:
    """GC-tracked objects net-allocated by one call, result kept: the count that drives
    gen-0 collections. The median of `calls`."""
    counts = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(calls):
            before = gc.get_count()[0]
            result = fn(arg)
            counts.append(gc.get_count()[0] - before)
            del result
            gc.collect()
    finally:
        gc.enable()
    return int(np.median(counts))


def precompute(repos: dict[str, benchrepo.BenchRepo], users: Sequence[str], calls: int) -> dict[str, Any]:
    """A precompute_online service on both stores: Feast's precomputed vectors on the
    built-in store, this store's entity hashes."""
    from feast import FeatureService

    out: dict[str, Any] = {}
    for kind in ("hexpire_qualified", "builtin"):
        fs = repos[kind].store
        views = [fs.get_feature_view(v) for v in benchrepo.READ_BY_VIEW]
        service = FeatureService(
            name="bench_precomputed",
            features=[v[benchrepo.READ_BY_VIEW[v.name]] for v in views],
            precompute_online=True,
        )
        with measure.quiet():
            fs.apply([service])
            fs.refresh_registry()
            started = time.perf_counter()
            written = fs.precompute_feature_service("bench_precomputed")
        precompute_s = time.perf_counter() - started
        service = fs.get_feature_service("bench_precomputed")
        rng = np.random.default_rng(5)
        series: dict[int, list[float]] = {}
        for n in (1, 100):
            samples = []
            for i in range(calls + 5):
                ids = [users[j] for j in rng.choice(len(users), size=n, replace=False)]
                t0 = time.perf_counter()
                # full names: Feast 0.67 stores precomputed vectors under full names and reads
                # them back only with full_feature_names=True (a schema mismatch otherwise)
                fs.get_online_features(features=service, entity_rows=_rows(ids), full_feature_names=True).to_dict()
                if i >= 5:
                    samples.append((time.perf_counter() - t0) * 1000)
            series[n] = samples
        out[kind] = {
            "vectors_written": written,
            "precompute_s": round(precompute_s, 2),
            **{f"p50_ms_{n}": round(measure.percentile(s, 50), 4) for n, s in series.items()},
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    iterations = QUICK_ITERATIONS if args.quick else ITERATIONS
    warmup = QUICK_WARMUP if args.quick else WARMUP
    run_id = benchrepo.new_run_id()
    workdir = Path(tempfile.mkdtemp(prefix="feast-hexpire-serving-"))
    results: dict[str, Any] = {
        "params": {"users": args.users, "quick": args.quick, "features": benchrepo.READ_FEATURES}
    }
    loop = asyncio.new_event_loop()
    with redis_server(args.redis_url) as server:
        client = redis_client(server)
        results["machine"] = machine_info(client)
        try:
            frames = benchrepo.generate(args.users, seed=args.seed)
            paths = benchrepo.write_parquet(frames, workdir / "data")
            users = frames["profile"]["user_id"].tolist()
            repos = {}
            for kind in KINDS:
                with measure.quiet():
                    repos[kind] = benchrepo.build_repo(kind, server.connection_string, paths, run_id, root=workdir)
                    start = min(f["event_timestamp"].min() for f in frames.values()).to_pydatetime()
                    end = max(f["event_timestamp"].max() for f in frames.values()).to_pydatetime()
                    repos[kind].store.materialize(start - timedelta(seconds=1), end + timedelta(seconds=1))
                log(f"{kind}: {args.users:,} users materialized")
            share_feature_resolution_cache(repos)
            fns = targets(repos, client, loop)
            metrics_fns = metrics_targets(repos)
            for fn, prepare in fns.values():
                fn(prepare(users[:10]) if prepare else users[:10])
            sample = _rows(users[:50])
            first = {k: fns[f"{k}.to_dict"][0](sample) for k in KINDS}
            results["consistency_equal"] = all(first[k] == first["builtin"] for k in KINDS)
            latency: dict[str, Any] = {}
            pool = np.asarray(users, dtype=object)
            for n in COUNTS:
                rng = np.random.default_rng(args.seed + n)
                total = iterations[n] + warmup[n]
                calls = [pool[rng.choice(len(pool), size=n, replace=False)].tolist() for _ in range(total)]
                latency[str(n)] = {}
                for mode, frozen in (("gc_normal", False), ("gc_frozen", True)):
                    series = measure.run_round_robin(fns, calls, warmup[n], frozen)
                    latency[str(n)][mode] = {name: s.summary() for name, s in series.items()}
                ab = measure.run_round_robin(metrics_fns, calls, warmup[n], False)
                latency[str(n)]["metrics_ab"] = {name: s.summary() for name, s in ab.items()}
                latency[str(n)]["async_vs_sync"] = async_vs_sync(
                    repos["hexpire_qualified"].store, calls, warmup[n], loop
                )
                row = latency[str(n)]["gc_normal"]
                log(
                    f"{n:>5} entities: to_dict p50 hexpire {row['hexpire_qualified.to_dict']['p50_ms']:.3f} ms, "
                    f"raw HMGET {row['raw.hmget']['p50_ms']:.3f}, built-in {row['builtin.to_dict']['p50_ms']:.3f}, "
                    f"glide {row['builtin_glide.to_dict']['p50_ms']:.3f}"
                )
            results["latency"] = latency
            results["gc_objects_per_call_1000"] = {
                name: allocations(fn, prepare(users[:1000]) if prepare else users[:1000])
                for name, (fn, prepare) in fns.items()
            }
            results["precompute"] = precompute(repos, users, 30 if args.quick else 100)
        finally:
            client.close()
            loop.close()
            shutil.rmtree(workdir, ignore_errors=True)
    results["targets"] = check_targets(results)
    return results


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    latency = results["latency"]

    def p50(n: int, name: str) -> float:
        return float(latency[str(n)]["gc_normal"][name]["p50_ms"])

    for n, limit in TARGET_VS_RAW.items():
        floor = min(p50(n, "raw.hmget"), p50(n, "raw.hmget_packed"))
        ratio = p50(n, "hexpire_qualified.to_dict") / floor
        out.append({"target": f"to_dict / raw HMGET, {n} entities", "limit": limit, "ratio": round(ratio, 3)})
    for n, limit in TARGET_VS_BUILTIN.items():
        best = min(p50(n, "builtin.to_dict"), p50(n, "builtin_glide.to_dict"))
        ratio = p50(n, "hexpire_qualified.to_dict") / best
        out.append({"target": f"to_dict / faster built-in, {n} entities", "limit": limit, "ratio": round(ratio, 3)})
    for n, limit in TARGET_METRICS.items():
        ab = latency[str(n)]["metrics_ab"]
        ratio = ab["metrics_on"]["p50_ms"] / ab["metrics_off"]["p50_ms"]
        out.append({"target": f"metrics on / off, {n} entities", "limit": limit, "ratio": round(ratio, 3)})
    for n in COUNTS:
        pair = latency[str(n)]["async_vs_sync"]
        ratio = pair["async"]["p50_ms"] / pair["sync"]["p50_ms"]
        out.append({"target": f"async / sync, {n} entities", "limit": TARGET_ASYNC, "ratio": round(ratio, 3)})
    for entry in out:
        entry["result"] = "PASS" if entry["ratio"] <= entry["limit"] else "MISS"
    return out


def print_report(results: dict[str, Any]) -> None:
    latency = results["latency"]
    names = list(latency["1"]["gc_normal"])
    print("\np50 / p99 ms (GC normal) | p99 (gc.freeze)")
    print(f"{'target':34}" + "".join(f"{n:>26}" for n in COUNTS))
    for name in names:
        cells = []
        for n in COUNTS:
            normal, frozen = latency[str(n)]["gc_normal"][name], latency[str(n)]["gc_frozen"][name]
            cells.append(f"{normal['p50_ms']:.3f}/{normal['p99_ms']:.2f} | {frozen['p99_ms']:.2f}")
        print(f"{name:34}" + "".join(f"{c:>26}" for c in cells))
    print("\nthis store's to_dict with Feast's metrics off / on, timed against each other alone, p50 ms:")
    for n in COUNTS:
        ab = latency[str(n)]["metrics_ab"]
        print(f"  {n:>5} entities: off {ab['metrics_off']['p50_ms']:.3f}, on {ab['metrics_on']['p50_ms']:.3f}")
    print("\nasync vs sync in one event loop, p50 ms:")
    for n in COUNTS:
        pair = latency[str(n)]["async_vs_sync"]
        print(f"  {n:>5} entities: sync {pair['sync']['p50_ms']:.3f}, async {pair['async']['p50_ms']:.3f}")
    print("\nGC-tracked objects net-allocated per call, 1,000 entities:")
    for name, count in results["gc_objects_per_call_1000"].items():
        print(f"  {name:34} {count:>8,}")
    print("\nprecompute_online service:", json.dumps(results["precompute"]))
    print("\ntargets:")
    for t in results["targets"]:
        print(f"  {t['result']:4}  {t['target']:42} {t['ratio']:.3f} (limit {t['limit']})")
    print(f"consistency (every store's to_dict equal): {results['consistency_equal']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.users is None:
        args.users = 2000 if args.quick else 20_000
    results = run(args)
    out = args.out or ROOT / "benchmarks" / "results" / ("serving-quick.json" if args.quick else "serving.json")
    out.write_text(json.dumps(results, indent=1, default=str))
    print_report(results)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
