"""Peak memory and write throughput of three write paths, each in a process of its own:

* ``builtin``  Feast's built-in ``type: redis`` store (provider ``local``);
* ``hexpire``  this store on Feast's default write path (provider ``local``);
* ``provider`` this store through ``feast_redis_hexpire.HexpireProvider`` (Arrow-native).

    python -m benchmarks.rss --users 100000                      # -> results/rss-100000.json
    python -m benchmarks.rss --users 1000000 --push-users 20000
    python -m benchmarks.rss --users 20000 --targets hexpire,provider --profile /tmp/prof

Each target runs in a fresh Python process on the same generated parquet files (the
benchmark repo of ``repo.py``: two batch views and one push-fed view, one row per user per
view): apply, then ``FeatureStore.materialize`` over the three views (peak RSS is the
process's high-water mark, VmHWM, right after it), then ``FeatureStore.push`` of fresh rows in
batches. Targets run one after another against one Redis (``--redis-url``, ``REDIS_URL``,
else a private server, flushed between targets). Timings on a shared machine move with
its load: compare the ratios of one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import cProfile
import json
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import measure
from . import repo as benchrepo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROVIDER = "feast_redis_hexpire.HexpireProvider"
TARGETS: dict[str, tuple[str, str]] = {
    "builtin": ("builtin", "local"),
    "hexpire": ("hexpire", "local"),
    "provider": ("hexpire", PROVIDER),
}


def log(message: str) -> None:
    print(f"[rss {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux's VmHWM belongs to the process image, whereas
    ru_maxrss starts a child at its parent's peak (it survives fork and exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- one target, in its own process


def _profiled(fn: Any, path: Path | None) -> Any:
    if path is None:
        return fn

    def run() -> None:
        profile = cProfile.Profile()
        profile.runcall(fn)
        profile.dump_stats(str(path.with_suffix(".prof")))
        with open(path.with_suffix(".txt"), "w") as out:
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)

    return run


def run_target(args: argparse.Namespace) -> dict[str, Any]:
    import redis
    from feast.data_source import PushMode

    kind, provider = TARGETS[args.child]
    data = Path(args.data)
    paths = {view: data / f"{view}.parquet" for view in benchrepo.VIEWS}
    with measure.quiet():
        repo = benchrepo.build_repo(kind, args.connection_string, paths, benchrepo.new_run_id(), data.parent, provider)
    client = redis.Redis.from_url(args.redis_url)
    ready_mb = peak_rss_mb()
    rows = args.users * len(benchrepo.VIEWS)
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    start = end - timedelta(days=2)
    profile_dir = Path(args.profile) if args.profile else None

    def materialize() -> None:
        repo.store.materialize(start, end)

    tp = measure.measure_throughput(
        rows, _profiled(materialize, profile_dir and profile_dir / f"{args.child}-materialize"), client
    )
    materialized_mb = peak_rss_mb()
    result: dict[str, Any] = {
        "target": args.child,
        "store": kind,
        "provider": provider,
        "users": args.users,
        "materialize": tp.as_dict(),
        "rss_mb_after_apply": round(ready_mb, 1),
        "peak_rss_mb_materialize": round(materialized_mb, 1),
        "rss_growth_mb_materialize": round(materialized_mb - ready_mb, 1),
    }
    log(
        f"{args.child}: materialized {rows:,} rows in {tp.seconds:.1f} s = {tp.rows_per_s:,.0f} rows/s, "
        f"peak RSS {materialized_mb:,.0f} MB ({ready_mb:,.0f} MB before)"
    )
    if args.push_users:
        batches = benchrepo.push_frames(args.push_users, args.push_batch, seed=args.seed + 1)

        def push() -> None:
            for df in batches:
                repo.store.push(benchrepo.PUSH_SOURCE, df, to=PushMode.ONLINE)

        push_tp = measure.measure_throughput(
            args.push_users, _profiled(push, profile_dir and profile_dir / f"{args.child}-push"), client
        )
        result["push"] = {**push_tp.as_dict(), "batch": args.push_batch}
        log(
            f"{args.child}: pushed {args.push_users:,} rows in {push_tp.seconds:.1f} s = {push_tp.rows_per_s:,.0f} rows/s"
        )
    online = repo.online_store
    if hasattr(online, "stats"):
        result["store_stats"] = online.stats.as_dict()
    client.close()
    return result


# ---------------------------------------------------------------- the comparison


def _child(target: str, args: argparse.Namespace, data: Path, server: Any) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.rss",
        "--child",
        target,
        "--data",
        str(data),
        "--users",
        str(args.users),
        "--push-users",
        str(args.push_users),
        "--push-batch",
        str(args.push_batch),
        "--seed",
        str(args.seed),
        "--redis-url",
        server.url,
        "--connection-string",
        server.connection_string,
    ]
    if args.profile:
        command += ["--profile", args.profile]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def compare(args: argparse.Namespace) -> dict[str, Any]:
    import redis

    from devsupport.redis_server import ExternalRedis, check_server_version, server_for_local_use

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="feast-hexpire-rss-"))
    results: dict[str, Any] = {"users": args.users, "targets": {}}
    try:
        log(f"generating {args.users:,} users")
        frames = benchrepo.generate(args.users, seed=args.seed)
        benchrepo.write_parquet(frames, workdir / "data")
        del frames
        url = args.redis_url or os.environ.get("REDIS_URL")
        server_context: Any
        if url:
            check_server_version(url)
            server_context = _given(ExternalRedis.from_url(url))
        else:
            server_context = server_for_local_use(log=log)
        with server_context as server:
            client = redis.Redis.from_url(server.url)
            for target in targets:
                results["targets"][target] = _child(target, args, workdir / "data", server)
                if getattr(server, "owned", False):
                    client.flushall()
            client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["ratios"] = ratios(results["targets"])
    results["load_average"] = os.getloadavg()
    return results


class _given:
    """A server someone else runs, as a context manager."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def __enter__(self) -> Any:
        return self.server

    def __exit__(self, *exc: object) -> None:
        return None


def ratios(targets: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def ratio(a: str, b: str, *path: str) -> float | None:
        if a not in targets or b not in targets:
            return None
        x, y = targets[a], targets[b]
        for part in path:
            x, y = x.get(part) if x else None, y.get(part) if y else None
        return round(x / y, 3) if x and y else None

    out["materialize_rows_per_s_provider_vs_builtin"] = ratio("provider", "builtin", "materialize", "rows_per_s")
    out["materialize_rows_per_s_provider_vs_hexpire"] = ratio("provider", "hexpire", "materialize", "rows_per_s")
    out["push_rows_per_s_provider_vs_builtin"] = ratio("provider", "builtin", "push", "rows_per_s")
    out["push_rows_per_s_provider_vs_hexpire"] = ratio("provider", "hexpire", "push", "rows_per_s")
    out["peak_rss_provider_vs_hexpire"] = ratio("provider", "hexpire", "peak_rss_mb_materialize")
    out["rss_growth_provider_vs_hexpire"] = ratio("provider", "hexpire", "rss_growth_mb_materialize")
    return out


def render(results: dict[str, Any]) -> str:
    lines = [
        f"{results['users']:,} users ({results['users'] * len(benchrepo.VIEWS):,} materialized rows)",
        f"{'target':<10} {'materialize rows/s':>19} {'peak RSS MB':>12} {'RSS growth MB':>14} {'push rows/s':>12}",
    ]
    for name, r in results["targets"].items():
        push = r.get("push", {}).get("rows_per_s")
        push_text = "-" if push is None else f"{push:,.0f}"
        lines.append(
            f"{name:<10} {r['materialize']['rows_per_s']:>19,.0f} {r['peak_rss_mb_materialize']:>12,.0f} "
            f"{r['rss_growth_mb_materialize']:>14,.0f} {push_text:>12}"
        )
    lines += [f"{k}: {v}" for k, v in results["ratios"].items()]
    lines.append(f"load average: {', '.join(f'{x:.2f}' for x in results['load_average'])}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rss", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--push-users", type=int, default=20_000, help="rows pushed after materializing (0: none)")
    parser.add_argument("--push-batch", type=int, default=1000)
    parser.add_argument("--targets", default="builtin,hexpire,provider")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--profile", default=None, help="directory for cProfile files <target>-<what>.prof/.txt")
    parser.add_argument("--out", default=None, help="JSON result (default results/rss-<users>.json)")
    parser.add_argument("--child", choices=sorted(TARGETS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--connection-string", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(run_target(args)))
        return 0
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    results = compare(args)
    out = Path(args.out) if args.out else RESULTS / f"rss-{args.users}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
