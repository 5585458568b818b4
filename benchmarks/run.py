"""Side-by-side benchmark: this store vs Feast's built-in Redis store vs raw redis-py.

    python -m benchmarks.run [--users N] [--redis-url URL] [--out benchmarks/results/latest.json] [--quick]
    python -m benchmarks.run --scale 20000,100000,1000000      # materialize time vs users (this store)

Redis: --redis-url, else $REDIS_URL, else a private redis-server started for the run
(feast_redis_hexpire.local_redis). Against a server you own, the run only touches its
own projects / key prefixes and removes them at the end.

Measures (all in one process, one run, interleaved store by store):
  * FeatureStore.materialize(start, end) throughput over the three views, each store;
    raw pipelined HSET+EXPIRE and HSET+HEXPIRE of the same rows;
  * FeatureStore.push(..., to=PushMode.ONLINE) throughput in batches;
  * latency of get_online_features (5 features across the 3 views), of the store's
    grouped read (_read_features_per_fv), of online_read per view, and of raw pipelined
    HMGET of the same fields, for 1/10/100/1000 random entities; each with the GC
    running normally and with gc.freeze() after the warm-up;
  * MEMORY USAGE per entity key.
It prints a table with ratios and the issue's targets as PASS/MISS, and writes JSON.
No timing assertions anywhere.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import contextlib
import gc
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import measure, report
from . import repo as benchrepo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest.json"
QUICK_OUT = ROOT / "benchmarks" / "results" / "quick.json"  # so a smoke run never replaces the real one
ENTITY_COUNTS = (1, 10, 100, 1000)
ITERATIONS = {1: 300, 10: 300, 100: 100, 1000: 30}
WARMUP = {1: 30, 10: 30, 100: 10, 1000: 3}
QUICK_USERS = 2000
QUICK_ITERATIONS = {1: 100, 10: 100, 100: 40, 1000: 12}
QUICK_WARMUP = {1: 10, 10: 10, 100: 4, 1000: 2}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- redis


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[Any]:
    from feast_redis_hexpire.local_redis import ExternalRedis, check_server_version, server_for_local_use

    if url:
        version = check_server_version(url)
        log(f"using --redis-url {url} (Redis {'.'.join(map(str, version))}); it is left running")
        yield ExternalRedis.from_url(url)
        return
    with server_for_local_use(log=lambda m: log(m)) as server:
        yield server


def redis_client(server: Any):
    import redis

    return redis.Redis.from_url(server.url)


def clear_keys(client, repos: dict[str, benchrepo.BenchRepo], raw_prefixes: Sequence[str]) -> None:
    """Remove every key the run wrote (this store's, the built-in's, the raw baselines')."""
    for kind, r in repos.items():
        if kind == "hexpire":
            delete_prefix(client, f"{benchrepo.HEXPIRE_KEY_PREFIX}:{r.project}:*")
        else:  # the built-in store's keys are <serialized entity key><project>
            delete_prefix(client, f"*{r.project}")
    for prefix in raw_prefixes:
        delete_prefix(client, f"{prefix}:*")


def delete_prefix(client, pattern: str) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += client.unlink(*batch)
            batch = []
    if batch:
        deleted += client.unlink(*batch)
    return deleted


# ---------------------------------------------------------------- machine info


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is reported as None
        return None


def machine_info(client) -> dict[str, Any]:
    info = client.info("server")
    git = {}
    try:
        git["head"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "feast_redis_hexpire"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
        git["package_changes"] = dirty
    except Exception:  # noqa: BLE001 - no git: the run is still valid
        pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "redis_server_version": info.get("redis_version"),
        "redis_server_arch_bits": info.get("arch_bits"),
        "feast": _version("feast"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "protobuf": _version("protobuf"),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "feast_redis_hexpire": _version("feast-redis-hexpire"),
        "git": git,
        "package_sha256": package_fingerprint(),
    }


def package_fingerprint() -> str:
    """Hash of the store's source files: the tree changes under us, so say which code was measured."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "feast_redis_hexpire").glob("*")):
        if path.suffix in (".py", ".lua"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- the read targets


def share_feature_resolution_cache(repos: dict[str, benchrepo.BenchRepo]) -> None:
    """Let both FeatureStores of this process use Feast's feature-resolution cache at once.

    feast.utils._get_cached_request_context keeps ONE process-wide cache and clears it
    whenever it sees a registry whose `cached_registry_proto_created` differs from the last
    one. A server process has one FeatureStore, so it always hits; here two stores take turns
    call by call, and every get_online_features would rebuild its FeatureViews from protos
    (~10 ms, typeguard-heavy) for BOTH stores. Giving the two registries the same timestamp
    (cache_ttl_seconds is 0: it never expires) keeps each store's entries (keyed by project)
    alive, i.e. the one-store-per-process situation being measured."""
    stamps = [r.store.registry.cached_registry_proto_created for r in repos.values()]
    shared = max(s for s in stamps if s is not None)
    for r in repos.values():
        r.store.registry.cached_registry_proto_created = shared


def read_targets(repos: dict[str, benchrepo.BenchRepo], client, raw_prefix: str) -> dict[str, tuple]:
    """name -> (fn, prepare): prepare(ids) runs untimed, fn(prepared) is timed."""
    from feast import utils
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    targets: dict[str, tuple] = {}
    for kind, r in repos.items():
        fs = r.store
        online_store = r.online_store
        config = fs.config
        views = {name: fs.get_feature_view(name, allow_registry_cache=True) for name in benchrepo.READ_BY_VIEW}

        def gof(rows, fs=fs):
            return fs.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows)

        def gof_prepare(ids):
            return [{"user_id": u} for u in ids]

        def grouped_prepare(ids, fs=fs):
            (join_key_values, grouped_refs, entity_map, _odfvs, _refs, _names, response) = (
                utils._prepare_entities_to_read_from_online_store(
                    registry=fs.registry,
                    project=fs.project,
                    features=benchrepo.READ_FEATURES,
                    entity_values={"user_id": list(ids)},
                    full_feature_names=False,
                    native_entity_values=True,
                )
            )
            return grouped_refs, join_key_values, entity_map, response

        def grouped(prepared, online_store=online_store, config=config):
            grouped_refs, join_key_values, entity_map, response = prepared
            online_store._read_features_per_fv(
                config, grouped_refs, join_key_values, entity_map, response, False, False
            )

        def keys_prepare(ids):
            return [EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=u)]) for u in ids]

        def online_read(keys, online_store=online_store, config=config, views=views):
            for view, names in benchrepo.READ_BY_VIEW.items():
                # a fresh list: Feast's built-in store appends to requested_features
                online_store.online_read(
                    config=config, table=views[view], entity_keys=keys, requested_features=list(names)
                )

        targets[f"{kind}.gof"] = (gof, gof_prepare)
        targets[f"{kind}.grouped_read"] = (grouped, grouped_prepare)
        targets[f"{kind}.online_read"] = (online_read, keys_prepare)
    targets["raw.hmget5"] = (measure.raw_hmget(client, raw_prefix, measure.READ_FIELDS_5), None)
    targets["raw.hmget8"] = (measure.raw_hmget(client, raw_prefix, measure.READ_FIELDS_8), None)
    return targets


def run_latency(
    targets: dict[str, tuple],
    users: Sequence[str],
    counts: Sequence[int],
    iterations: dict[int, int],
    warmup: dict[int, int],
    seed: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pool = np.asarray(users, dtype=object)
    for n in counts:
        if n > len(pool):
            log(f"skipping {n} entities: only {len(pool)} users")
            continue
        rng = np.random.default_rng(seed + n)
        total = iterations[n] + warmup[n]
        args = [pool[rng.choice(len(pool), size=n, replace=False)].tolist() for _ in range(total)]
        out[str(n)] = {}
        for mode, frozen in (("gc_normal", False), ("gc_frozen", True)):
            series = measure.run_round_robin(targets, args, warmup[n], frozen)
            out[str(n)][mode] = {name: s.summary() for name, s in series.items()}
            row = out[str(n)][mode]
            log(
                f"  {n:>4} entities, {mode:9}: gof p50 hexpire {row['hexpire.gof']['p50_ms']:.3f} ms / "
                f"built-in {row['builtin.gof']['p50_ms']:.3f} ms; grouped {row['hexpire.grouped_read']['p50_ms']:.3f}"
                f" ms; raw HMGET {row['raw.hmget5']['p50_ms']:.3f} ms"
            )
    return out


# ---------------------------------------------------------------- consistency


def consistency(repos: dict[str, benchrepo.BenchRepo], users: Sequence[str], sample: int = 200) -> dict[str, Any]:
    """Not a timing check: both stores must answer the same values, or the comparison is moot."""
    rng = np.random.default_rng(1)
    ids = [users[i] for i in rng.choice(len(users), size=min(sample, len(users)), replace=False)]
    answers = {
        kind: r.store.get_online_features(
            features=benchrepo.READ_FEATURES, entity_rows=[{"user_id": u} for u in ids]
        ).to_dict()
        for kind, r in repos.items()
    }
    a, b = answers["hexpire"], answers["builtin"]
    mismatched = sorted(k for k in a if a[k] != b.get(k))
    nulls = sum(v is None for col in a.values() for v in col)
    return {
        "checked_entities": len(ids),
        "equal": not mismatched,
        "mismatched_columns": mismatched,
        "null_values_in_this_store": nulls,
    }


# ---------------------------------------------------------------- main run


def main_run(args: argparse.Namespace) -> dict[str, Any]:
    users_n = args.users
    iterations = QUICK_ITERATIONS if args.quick else ITERATIONS
    warmup = QUICK_WARMUP if args.quick else WARMUP
    run_id = benchrepo.new_run_id()
    workdir = Path(tempfile.mkdtemp(prefix="feast-hexpire-bench-"))
    results: dict[str, Any] = {
        "params": {
            "users": users_n,
            "quick": args.quick,
            "push_batch": args.push_batch,
            "seed": args.seed,
            "repeats": args.repeats,
            "iterations": iterations,
            "warmup": warmup,
            "read_features": benchrepo.READ_FEATURES,
            "raw_write_chunk": measure.RAW_CHUNK,
            "run_id": run_id,
            "ttl": {"batch_s": benchrepo.BATCH_TTL_SECONDS, "stream_s": benchrepo.STREAM_TTL_SECONDS},
        },
        "throughput": {},
    }
    t_start = time.perf_counter()
    with redis_server(args.redis_url) as server:
        client = redis_client(server)
        results["machine"] = machine_info(client)
        raw_exp = f"benchraw_{run_id}"
        raw_hexp = f"benchrawfx_{run_id}"
        repos: dict[str, benchrepo.BenchRepo] = {}
        try:
            log(f"generating {users_n:,} users x 3 views in {workdir}")
            frames = benchrepo.generate(users_n, seed=args.seed)
            paths = benchrepo.write_parquet(frames, workdir / "data")
            rows_total = sum(len(df) for df in frames.values())
            users = frames["profile"]["user_id"].tolist()

            for kind in ("hexpire", "builtin"):
                with measure.quiet():
                    repos[kind] = benchrepo.build_repo(kind, server.connection_string, paths, run_id, root=workdir)
                log(f"applied {kind} repo: project {repos[kind].project} in {repos[kind].path}")
            results["projects"] = {k: r.project for k, r in repos.items()}
            results["online_store_config"] = {
                k: json.loads(r.store.config.online_store.model_dump_json()) for k, r in repos.items()
            }

            # ---- materialize (apply excluded) and the raw writes of the same rows, interleaved.
            # Every repeat starts from empty keys (an initial load), so repeats are alike.
            from feast.data_source import PushMode

            runs: dict[str, list[measure.Throughput]] = {}
            timers = {kind: measure.WriteBatchTimer(r.online_store) for kind, r in repos.items()}
            for rep in range(args.repeats):
                clear_keys(client, repos, (raw_exp, raw_hexp))
                end = datetime.now(timezone.utc) + timedelta(seconds=1)
                start = end - timedelta(days=2)
                for kind in ("hexpire", "builtin"):
                    fs = repos[kind].store
                    tp = measure.measure_throughput(
                        rows_total, lambda fs=fs, start=start, end=end: fs.materialize(start, end), client, timers[kind]
                    )
                    runs.setdefault(f"{kind}_materialize", []).append(tp)
                    log(
                        f"[{rep + 1}/{args.repeats}] materialize {kind}: {tp.rows:,} rows in {tp.seconds:.2f} s = "
                        f"{tp.rows_per_s:,.0f} rows/s (cpu {tp.cpu_seconds:.2f} s)"
                    )
                for name, prefix, field_expiry in (
                    ("raw_hset_expire", raw_exp, False),
                    ("raw_hset_hexpire", raw_hexp, True),
                ):
                    tp = measure.measure_throughput(
                        rows_total,
                        lambda prefix=prefix, field_expiry=field_expiry: measure.raw_write(
                            client, frames, prefix, field_expiry
                        ),
                        client,
                    )
                    runs.setdefault(name, []).append(tp)
                    log(
                        f"[{rep + 1}/{args.repeats}] {name}: {tp.rows:,} rows in {tp.seconds:.2f} s = "
                        f"{tp.rows_per_s:,.0f} rows/s"
                    )
            results["hexpire_store_stats_after_materialize"] = repos["hexpire"].online_store.stats.as_dict()

            # ---- push: fresh (newer) activity rows for every user, onto the materialized keys
            for rep in range(args.repeats):
                for kind in ("hexpire", "builtin"):
                    batches = benchrepo.push_frames(users_n, args.push_batch, seed=args.seed + 1 + rep)
                    fs = repos[kind].store

                    def push_all(fs=fs, batches=batches):
                        for df in batches:
                            fs.push(benchrepo.PUSH_SOURCE, df, to=PushMode.ONLINE)

                    tp = measure.measure_throughput(users_n, push_all, client, timers[kind])
                    runs.setdefault(f"{kind}_push", []).append(tp)
                    log(
                        f"[{rep + 1}/{args.repeats}] push {kind}: {tp.rows:,} rows in {len(batches)} pushes, "
                        f"{tp.seconds:.2f} s = {tp.rows_per_s:,.0f} rows/s (cpu {tp.cpu_seconds:.2f} s)"
                    )
            results["hexpire_store_stats_after_push"] = repos["hexpire"].online_store.stats.as_dict()
            for name, tps in runs.items():
                results["throughput"][name] = measure.summarize_repeats(tps)

            # The built-in store's keys got the push too; the raw keys keep their materialized
            # activity rows (the read only needs the fields to exist).
            results["consistency"] = consistency(repos, users)
            if not results["consistency"]["equal"]:
                log(f"WARNING: stores disagree on {results['consistency']['mismatched_columns']}")

            # ---- memory per entity
            rng = np.random.default_rng(3)
            sample = [users[i] for i in rng.choice(len(users), size=min(1000, len(users)), replace=False)]
            results["memory"] = {
                "hexpire": measure.memory_per_key(
                    client, [benchrepo.hexpire_key(repos["hexpire"].project, u) for u in sample]
                ),
                "builtin": measure.memory_per_key(
                    client, [benchrepo.builtin_key(repos["builtin"].project, u) for u in sample]
                ),
                "raw_hset_expire": measure.memory_per_key(client, [measure.raw_key(raw_exp, u) for u in sample]),
                "raw_hset_hexpire": measure.memory_per_key(client, [measure.raw_key(raw_hexp, u) for u in sample]),
            }
            log("memory per entity: " + ", ".join(f"{k} {v['bytes_mean']} B" for k, v in results["memory"].items()))

            # ---- read latency
            targets = read_targets(repos, client, raw_exp)
            share_feature_resolution_cache(repos)  # after anything that refreshes a registry
            for fn, prepare in targets.values():  # one untouched call each: connections, caches
                fn(prepare(users[:10]) if prepare else users[:10])
            gc.collect()
            results["gc_tracked_objects_before_reads"] = len(gc.get_objects())
            results["gc_thresholds"] = list(gc.get_threshold())
            log(f"read latency ({len(gc.get_objects()):,} gc-tracked objects in this process)")
            results["latency"] = run_latency(targets, users, ENTITY_COUNTS, iterations, warmup, args.seed)
            stamps = {r.store.registry.cached_registry_proto_created for r in repos.values()}
            results["feature_resolution_cache_shared_throughout"] = len(stamps) == 1
        finally:
            if not getattr(server, "owned", False):  # someone else's server: remove what we wrote
                for r in repos.values():
                    with contextlib.suppress(Exception), measure.quiet():
                        r.store.teardown()
                for prefix in (raw_exp, raw_hexp):
                    with contextlib.suppress(Exception):
                        delete_prefix(client, f"{prefix}:*")
            client.close()
            shutil.rmtree(workdir, ignore_errors=True)

    results["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    results["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["ratios"] = report.compute_ratios(results)
    results["targets"] = report.check_targets(results)
    results["anchors"] = {k: v for k, v in report.ANCHORS.items()}
    return results


# ---------------------------------------------------------------- scale mode


def scale_run(args: argparse.Namespace) -> dict[str, Any]:
    points: list[dict[str, Any]] = []
    stores = [s.strip() for s in args.scale_stores.split(",") if s.strip()]
    sizes = [int(s.replace("_", "")) for s in args.scale.split(",") if s.strip()]
    result: dict[str, Any] = {"params": {"scale": sizes, "stores": stores, "seed": args.seed}, "points": points}
    with redis_server(args.redis_url) as server:
        client = redis_client(server)
        result["machine"] = machine_info(client)
        for n in sizes:
            workdir = Path(tempfile.mkdtemp(prefix="feast-hexpire-scale-"))
            try:
                log(f"scale: generating {n:,} users")
                frames = benchrepo.generate(n, seed=args.seed)
                paths = benchrepo.write_parquet(frames, workdir / "data")
                rows = sum(len(df) for df in frames.values())
                del frames
                for kind in stores:
                    run_id = benchrepo.new_run_id()
                    with measure.quiet():
                        r = benchrepo.build_repo(kind, server.connection_string, paths, run_id, root=workdir)
                    end = datetime.now(timezone.utc) + timedelta(seconds=1)
                    start = end - timedelta(days=2)
                    gc.collect()
                    timer = measure.WriteBatchTimer(r.online_store)
                    tp = measure.measure_throughput(
                        rows, lambda r=r, start=start, end=end: r.store.materialize(start, end), client, timer
                    )
                    mem = client.info("memory")
                    extra = tp.as_dict()
                    point = {
                        "store": kind,
                        "users": n,
                        "rows": rows,
                        "seconds": round(tp.seconds, 3),
                        "cpu_seconds": extra["cpu_seconds"],
                        "online_write_batch_seconds": extra["online_write_batch"]["seconds"],
                        "feast_seconds": extra["feast_seconds"],
                        "redis_server_usec_per_row": extra["redis_server"]["usec_per_row"],
                        "rows_per_s": round(tp.rows_per_s, 1),
                        "us_per_row": round(tp.seconds / rows * 1e6, 3),
                        "gc": tp.gc,
                        "redis_used_memory_mb": mem["used_memory"] / 2**20,
                        "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    }
                    points.append(point)
                    log(f"scale {kind} {n:,} users: {rows:,} rows in {tp.seconds:.2f} s = {tp.rows_per_s:,.0f} rows/s")
                    with measure.quiet():
                        if getattr(server, "owned", False):
                            client.flushall()
                        else:
                            r.store.teardown()
                    del r
                    gc.collect()
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        client.close()
    for kind in stores:
        mine = [p for p in points if p["store"] == kind]
        if mine:
            base = mine[0]["us_per_row"]
            for p in mine:
                p["relative_us_per_row"] = round(p["us_per_row"] / base, 3) if base else None
    return result


# ---------------------------------------------------------------- cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=None, help="users (rows per view); default 20000, --quick 2000")
    parser.add_argument("--redis-url", default=None, help="Redis >= 7.4 to use (default: $REDIS_URL or a private one)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)}; --quick: {QUICK_OUT.relative_to(ROOT)}; "
        "scale mode: results/scale.json)",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_USERS} users, fewer iterations")
    parser.add_argument("--push-batch", type=int, default=1000, help="rows per FeatureStore.push call")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of each write measurement, median reported (default 5, --quick 2)",
    )
    parser.add_argument(
        "--scale",
        default=None,
        metavar="N1,N2,...",
        help="scale mode only: materialize time vs users, e.g. 20000,100000,1000000",
    )
    parser.add_argument("--scale-stores", default="hexpire", help="scale mode: hexpire[,builtin]")
    args = parser.parse_args(argv)
    if args.users is None:
        args.users = QUICK_USERS if args.quick else 20000
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.users < 1 or args.users > 5_000_000:
        parser.error("--users must be in 1..5,000,000")
    return args


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scale:
        result = scale_run(args)
        out = args.out or (ROOT / "benchmarks" / "results" / "scale.json")
        print()
        print(report.render_scale(result))
    else:
        result = main_run(args)
        out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
        print()
        print(report.render(result))
    write_json(out, result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
