"""cProfile the store's hot paths on the benchmark repo, one FeatureStore per process.

    python -m benchmarks.profiling [--users 20000] [--store hexpire|builtin|hexpire_fast|...]
                                   [--what materialize,push,gof1,gof100,gof1000]
                                   [--out-dir benchmarks/results/profiles]

    # sampling, with native frames (hiredis, upb, the GC), no cProfile distortion:
    py-spy record --native -r 250 -f raw -o /tmp/gof.raw -- \
        python -m benchmarks.profiling --what gof1000 --plain 15
    python -m benchmarks.profiling --collapsed /tmp/gof.raw > benchmarks/results/profiles/pyspy-gof1000.txt

For each path it writes `<store>-<path>.prof` (open with `python -m pstats` or snakeviz)
and `<store>-<path>.txt`: self time by layer (this package / Feast / typeguard / redis-py /
hiredis / protobuf / pandas+pyarrow / socket / other), inclusive time of the main entry
points, and the top functions by cumulative and by self time. A summary of every path
goes to `<store>-summary.json`. cProfile inflates the cost of many small Python calls
relative to C code; read the shares, not the absolute times.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import cProfile
import gc
import json
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from . import measure
from . import repo as benchrepo
from .harness import ROOT, log, redis_server

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "profiles"
GOF_CALLS = {1: 1000, 100: 200, 1000: 30}

LAYERS = (
    "this package",
    "feast",
    "typeguard (Feast @typechecked)",
    "redis-py",
    "hiredis (C)",
    "protobuf (upb C)",
    "pandas/pyarrow/numpy",
    "socket I/O",
    "python stdlib/builtins",
    "other",
)


def layer_of(func: tuple[str, int, str]) -> str:
    filename, _line, name = func
    path = filename.replace("\\", "/")
    if "feast_redis_hexpire" in path:
        return "this package"
    if "/typeguard/" in path:
        return "typeguard (Feast @typechecked)"
    if "/feast/" in path:
        return "feast"
    if "/redis/" in path:
        return "redis-py"
    if "/google/protobuf/" in path:
        return "protobuf (upb C)"
    if any(p in path for p in ("/pandas/", "/pyarrow/", "/numpy/")):
        return "pandas/pyarrow/numpy"
    if filename == "~":  # C functions: pstats names them "<method 'x' of 'T' objects>" / "<built-in method ...>"
        if "hiredis" in name:
            return "hiredis (C)"
        if "google._upb" in name or "_message" in name or "upb" in name:
            return "protobuf (upb C)"
        if "socket" in name or "recv" in name or "sendall" in name or "select" in name or "poll" in name:
            return "socket I/O"
        if "pyarrow" in name or "numpy" in name or "pandas" in name:
            return "pandas/pyarrow/numpy"
        return "python stdlib/builtins"
    if "site-packages" not in path:
        return "python stdlib/builtins"
    return "other"


def _fname(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    short = filename
    for marker in ("site-packages/", "/work/main/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    return f"{short}:{line}({name})"


def analyse(prof: cProfile.Profile, entry_points: Sequence[str], top: int = 35) -> dict[str, Any]:
    stats = pstats.Stats(prof)
    raw = stats.stats  # func -> (cc, nc, tt, ct, callers)
    total = sum(v[2] for v in raw.values()) or 1e-12
    by_layer: dict[str, float] = {layer: 0.0 for layer in LAYERS}
    charged: dict[str, float] = {layer: 0.0 for layer in LAYERS}
    for func, (_cc, _nc, tt, _ct, callers) in raw.items():
        layer = layer_of(func)
        by_layer[layer] += tt
        if layer != "python stdlib/builtins" or not callers:
            charged[layer] += tt
            continue
        # builtins / stdlib (dict.get, isinstance, datetime, dataclass __init__...): charge their
        # self time to the layer of whoever called them, in proportion to each caller's share.
        for caller, caller_stats in callers.items():
            charged[layer_of(caller)] += caller_stats[2]
    entries = []
    for func, (_cc, nc, _tt, ct, _callers) in raw.items():
        label = _fname(func)
        if any(ep in label for ep in entry_points):
            entries.append(
                {"function": label, "calls": nc, "cum_s": round(ct, 4), "cum_pct": round(100 * ct / total, 1)}
            )
    entries.sort(key=lambda e: -e["cum_s"])

    def top_by(index: int) -> list[dict[str, Any]]:
        items = sorted(raw.items(), key=lambda kv: -kv[1][index])[:top]
        return [
            {
                "function": _fname(f),
                "layer": layer_of(f),
                "calls": v[1],
                "self_s": round(v[2], 4),
                "self_pct": round(100 * v[2] / total, 1),
                "cum_s": round(v[3], 4),
                "cum_pct": round(100 * v[3] / total, 1),
            }
            for f, v in items
        ]

    return {
        "total_s": round(total, 4),
        "self_time_by_layer_pct": {
            k: round(100 * v / total, 1) for k, v in sorted(by_layer.items(), key=lambda kv: -kv[1]) if v
        },
        "self_time_by_layer_stdlib_charged_to_caller_pct": {
            k: round(100 * v / total, 1) for k, v in sorted(charged.items(), key=lambda kv: -kv[1]) if v
        },
        "entry_points": entries,
        "top_cumulative": top_by(3),
        "top_self": top_by(2),
    }


def text_report(title: str, a: dict[str, Any], wall_s: float, note: str) -> str:
    out = [
        f"# {title}",
        f"wall time under profiler {wall_s:.3f} s; profiled self time {a['total_s']:.3f} s. {note}",
        "",
    ]
    out.append("## self time by layer")
    out += [f"  {pct:5.1f}%  {layer}" for layer, pct in a["self_time_by_layer_pct"].items()]
    out.append("")
    out.append("## self time by layer, builtins/stdlib charged to the layer that called them")
    out += [f"  {pct:5.1f}%  {layer}" for layer, pct in a["self_time_by_layer_stdlib_charged_to_caller_pct"].items()]
    out.append("")
    out.append("## entry points (inclusive)")
    out += [f"  {e['cum_pct']:5.1f}%  {e['cum_s']:8.4f} s  {e['calls']:>8}  {e['function']}" for e in a["entry_points"]]
    for key, label in (("top_cumulative", "top by cumulative"), ("top_self", "top by self time (tottime)")):
        out.append("")
        out.append(f"## {label}")
        out.append("   cum%   self%     calls  layer                           function")
        out += [
            f"  {e['cum_pct']:5.1f}  {e['self_pct']:5.1f}  {e['calls']:>8}  {e['layer']:30}  {e['function']}"
            for e in a[key]
        ]
    return "\n".join(out) + "\n"


ENTRY_POINTS = [
    # Feast
    "feature_store.py:",
    "(get_online_features)",
    "(materialize)",
    "(push)",
    "(write_to_online_store)",
    "(_prepare_entities_to_read_from_online_store)",
    "(_convert_arrow_to_proto)",
    "(_populate_response_from_feature_data)",
    "(_get_unique_entities)",
    "(_get_entity_key_protos)",
    "(_drop_unneeded_columns)",
    "(_build_feature_types)",
    "(ingest_df)",
    "(python_values_to_proto_values)",
    "(pull_latest_from_table_or_query)",
    "(_run_pyarrow_field_mapping)",
    "(_get_column_names)",
    # this package
    "feast_redis_hexpire/",
    # redis-py
    "(execute)",
    "(_execute_pipeline)",
    "(pack_commands)",
    "(read_response)",
    "(hmget)",
    "(evalsha)",
]


def _keep(e: dict[str, Any], min_pct: float = 0.5) -> bool:
    return e["cum_pct"] >= min_pct


PLAIN_LOOP_SECONDS: float | None = None  # --plain: no cProfile, repeat each path (for py-spy)


def profile_path(name: str, fn: Callable[[], Any], out_dir: Path, store: str, note: str) -> dict[str, Any]:
    gc.collect()
    if PLAIN_LOOP_SECONDS is not None:
        t_end, runs = time.perf_counter() + PLAIN_LOOP_SECONDS, 0
        with measure.quiet():
            while True:
                fn()
                runs += 1
                if time.perf_counter() >= t_end:
                    break
        log(f"ran {name} {runs} times without cProfile")
        return {"plain_runs": runs}
    prof = cProfile.Profile()
    with measure.quiet():
        t0 = time.perf_counter()
        prof.enable()
        fn()
        prof.disable()
        wall = time.perf_counter() - t0
    prof.dump_stats(str(out_dir / f"{store}-{name}.prof"))
    a = analyse(prof, ENTRY_POINTS)
    a["entry_points"] = [e for e in a["entry_points"] if _keep(e)]
    a["wall_s"] = round(wall, 4)
    a["note"] = note
    (out_dir / f"{store}-{name}.txt").write_text(text_report(f"{store}: {name}", a, wall, note))
    log(f"profiled {name}: {wall:.2f} s -> {out_dir / f'{store}-{name}.txt'}")
    log(
        "   self time by layer (stdlib charged to caller): "
        + ", ".join(f"{k} {v}%" for k, v in a["self_time_by_layer_stdlib_charged_to_caller_pct"].items())
    )
    return a


def phase_split(fs: Any, users: list[str], seed: int) -> dict[str, Any]:
    """Median thread-CPU ms of each phase of one get_online_features, no profiler attached."""
    import statistics

    from feast import utils

    from feast_redis_hexpire import redis_io
    from feast_redis_hexpire.clients import sync_client

    config = fs.config
    online_store = fs._get_provider().online_store
    rng = np.random.default_rng(seed)
    clock = time.thread_time_ns
    out: dict[str, Any] = {}
    for n in (1, 10, 100, 1000):
        if n > len(users):
            continue
        acc: dict[str, list[int]] = {
            k: [] for k in ("get_online_features", "feast_prepare", "plan", "hmget", "populate")
        }
        for _ in range(200 if n < 100 else 60 if n == 100 else 30):
            ids = [users[i] for i in rng.choice(len(users), n, replace=False)]
            t0 = clock()
            fs.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=[{"user_id": u} for u in ids])
            acc["get_online_features"].append(clock() - t0)
            t0 = clock()
            join_key_values, grouped_refs, entity_map, _, _, _, response = (
                utils._prepare_entities_to_read_from_online_store(
                    registry=fs.registry,
                    project=fs.project,
                    features=benchrepo.READ_FEATURES,
                    entity_values={"user_id": ids},
                    full_feature_names=False,
                    native_entity_values=True,
                )
            )
            t1 = clock()
            plan = online_store._grouped_plan(config, grouped_refs, join_key_values, entity_map)
            commands = plan.commands()
            t2 = clock()
            replies = redis_io.hmget(sync_client(config.online_store, for_reads=True), commands)
            t3 = clock()
            plan.populate(replies, response, False, False)
            t4 = clock()
            for key, a, b in (("feast_prepare", t0, t1), ("plan", t1, t2), ("hmget", t2, t3), ("populate", t3, t4)):
                acc[key].append(b - a)
        out[str(n)] = {k: round(statistics.median(v) / 1e6, 4) for k, v in acc.items()}
    return out


def summarise_collapsed(path: Path, root: str = "get_online_features", top: int = 45) -> str:
    """py-spy `record -f raw` output (one collapsed stack per line) -> inclusive / leaf shares."""
    import collections
    import re

    strip = re.compile(r" \(/[^)]*/(site-packages|main)/")
    line_no = re.compile(r":\d+\)$")  # aggregate per function, not per line
    inclusive: collections.Counter = collections.Counter()
    leaf: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any(root in f for f in frames):
            continue
        count = int(count_text)
        total += count
        for name in {line_no.sub(")", strip.sub(" (", f)) for f in frames}:
            inclusive[name] += count
        leaf[line_no.sub(")", strip.sub(" (", frames[-1]))] += count
    out = [f"samples under {root}: {total}", "", "inclusive"]
    out += [f"  {100 * c / total:5.1f}%  {name[:160]}" for name, c in inclusive.most_common(top)]
    out += ["", "leaf (self)"]
    out += [f"  {100 * c / total:5.1f}%  {name[:160]}" for name, c in leaf.most_common(top)]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--store", choices=sorted(benchrepo.KINDS), default="hexpire")
    parser.add_argument("--what", default="materialize,push,gof1,gof100,gof1000")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--push-batch", type=int, default=1000)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--collapsed",
        type=Path,
        default=None,
        metavar="FILE",
        help="instead: summarise a py-spy `record -f raw` file (inclusive and leaf shares)",
    )
    parser.add_argument(
        "--phases",
        action="store_true",
        help="instead: thread-CPU split of get_online_features into Feast / plan / HMGET / populate "
        "(uses the store's internal planning API; may need updating when it changes)",
    )
    parser.add_argument(
        "--plain",
        type=float,
        default=None,
        metavar="SECONDS",
        help="no cProfile: repeat each selected path for SECONDS (attach py-spy to this)",
    )
    args = parser.parse_args(argv)
    global PLAIN_LOOP_SECONDS
    PLAIN_LOOP_SECONDS = args.plain
    if args.collapsed:
        print(summarise_collapsed(args.collapsed))
        return 0
    what = [] if args.phases else [w.strip() for w in args.what.split(",") if w.strip()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from .harness import package_fingerprint

    summary: dict[str, Any] = {
        "store": args.store,
        "users": args.users,
        "package_sha256": package_fingerprint(),
        "paths": {},
    }

    from feast.data_source import PushMode

    with redis_server(args.redis_url) as server:
        workdir = Path(tempfile.mkdtemp(prefix="feast-hexpire-prof-"))
        try:
            frames = benchrepo.generate(args.users, seed=args.seed)
            paths = benchrepo.write_parquet(frames, workdir / "data")
            rows = sum(len(df) for df in frames.values())
            users = frames["profile"]["user_id"].tolist()
            with measure.quiet():
                r = benchrepo.build_repo(
                    args.store, server.connection_string, paths, benchrepo.new_run_id(), root=workdir
                )
            fs = r.store
            end = datetime.now(timezone.utc) + timedelta(seconds=1)
            start = end - timedelta(days=2)

            def materialize():
                fs.materialize(start, end)

            if "materialize" in what and args.plain is None:
                summary["paths"]["materialize"] = profile_path(
                    "materialize",
                    materialize,
                    args.out_dir,
                    args.store,
                    f"FeatureStore.materialize over 3 views, {rows:,} rows",
                )
            else:
                with measure.quiet():
                    materialize()

            batches = benchrepo.push_frames(args.users, args.push_batch, seed=args.seed + 1)

            def push():
                for df in batches:
                    fs.push(benchrepo.PUSH_SOURCE, df, to=PushMode.ONLINE)

            if args.phases:
                print(json.dumps(phase_split(fs, users, args.seed), indent=2))
                return 0

            if "push" in what:
                summary["paths"]["push"] = profile_path(
                    "push",
                    push,
                    args.out_dir,
                    args.store,
                    f"{len(batches)} x FeatureStore.push of {args.push_batch} rows ({args.users:,} rows)",
                )

            rng = np.random.default_rng(args.seed)
            for n in (1, 100, 1000):
                key = f"gof{n}"
                if key not in what or n > len(users):
                    continue
                calls = [
                    [{"user_id": users[i]} for i in rng.choice(len(users), size=n, replace=False)]
                    for _ in range(GOF_CALLS[n])
                ]
                for rows_ in calls[:5]:  # warm-up: registry cache, connections
                    fs.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows_)

                def gof(calls=calls):
                    for rows_ in calls:
                        fs.get_online_features(features=benchrepo.READ_FEATURES, entity_rows=rows_)

                summary["paths"][key] = profile_path(
                    key,
                    gof,
                    args.out_dir,
                    args.store,
                    f"{len(calls)} x get_online_features({n} entities, 5 features over 3 views)",
                )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.plain is None:
        out = args.out_dir / f"{args.store}-summary.json"
        out.write_text(json.dumps(summary, indent=2) + "\n")
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
