"""`feast serve` under load: requests per second and latency with 16 concurrent clients,
this store against Feast's built-in store, on the same data and the same Redis.

    python -m benchmarks.serve_load                       # 10k users, 20 s per series -> results/serve_load.json
    python -m benchmarks.serve_load --users 2000 --seconds 5

Each store is served by its own `feast serve` (one worker, access log off, max-requests
high enough that no worker recycles during a series). The load generator is a separate
process: 16 threads, each with a keep-alive HTTP connection, posting
`/get-online-features` back to back for `--seconds`. Series alternate between the stores.

Targets: at 100 entities per request >= 2.5x the built-in's req/s and p99 <= 0.6x; at 1
entity per request >= 1.3x the req/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from . import measure
from . import repo as benchrepo
from .harness import ROOT, log, machine_info, redis_client, redis_server

KINDS = ("hexpire_qualified", "builtin")
CLIENTS = 16
TARGETS = {1: {"rps": 1.3}, 100: {"rps": 2.5, "p99": 0.6}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(repo_path: Path, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    feast = Path(sys.executable).with_name("feast")
    command = [
        str(feast),
        "-c",
        str(repo_path),
        "serve",
        "-p",
        str(port),
        "--no-access-log",
        "--max-requests",
        "10000000",
    ]
    proc = subprocess.Popen(command, stdout=log_file.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"feast serve exited: {log_file.read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("feast serve did not become healthy")


def load(port: int, bodies: list[bytes], seconds: float) -> dict[str, Any]:
    """16 client threads, keep-alive, back to back, for `seconds` (run in a child process)."""
    stop = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    errors = [0] * CLIENTS

    def client(i: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        k = i
        while time.monotonic() < stop:
            body = bodies[k % len(bodies)]
            k += CLIENTS
            t0 = time.perf_counter()
            try:
                connection.request("POST", "/get-online-features", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors[i] += 1
                    continue
            except OSError:
                errors[i] += 1
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies[i].append((time.perf_counter() - t0) * 1000)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    samples = [s for per in latencies for s in per]
    return {
        "requests": len(samples),
        "errors": sum(errors),
        "rps": round(len(samples) / elapsed, 1),
        "p50_ms": round(measure.percentile(samples, 50), 2),
        "p99_ms": round(measure.percentile(samples, 99), 2),
    }


def run_load_child(port: int, bodies_file: Path, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.serve_load", "--child", str(port), str(bodies_file), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def request_bodies(users: Sequence[str], entities: int, count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed + entities)
    pool = np.asarray(users, dtype=object)
    return [
        json.dumps(
            {
                "features": benchrepo.READ_FEATURES,
                "entities": {"user_id": pool[rng.choice(len(pool), size=entities, replace=False)].tolist()},
            }
        ).encode()
        for _ in range(count)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2, help="series per store and size, alternating")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        port, bodies_file, seconds = args.child
        bodies = [line.encode() for line in Path(bodies_file).read_text().splitlines()]
        print(json.dumps(load(int(port), bodies, float(seconds))))
        return 0

    run_id = benchrepo.new_run_id()
    workdir = Path(tempfile.mkdtemp(prefix="feast-hexpire-serve-load-"))
    results: dict[str, Any] = {"params": {"users": args.users, "seconds": args.seconds, "clients": CLIENTS}}
    servers: dict[str, subprocess.Popen[bytes]] = {}
    with redis_server(None) as server:
        client = redis_client(server)
        results["machine"] = machine_info(client)
        try:
            frames = benchrepo.generate(args.users, seed=args.seed)
            paths = benchrepo.write_parquet(frames, workdir / "data")
            users = frames["profile"]["user_id"].tolist()
            start = min(f["event_timestamp"].min() for f in frames.values()).to_pydatetime() - timedelta(seconds=1)
            end = max(f["event_timestamp"].max() for f in frames.values()).to_pydatetime() + timedelta(seconds=1)
            ports = {}
            for kind in KINDS:
                with measure.quiet():
                    repo = benchrepo.build_repo(kind, server.connection_string, paths, run_id, root=workdir)
                    repo.store.materialize(start, end)
                ports[kind] = free_port()
                servers[kind] = start_serve(repo.path, ports[kind], workdir / f"serve-{kind}.log")
                log(f"{kind}: feast serve on port {ports[kind]}")
            series: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for entities in TARGETS:
                bodies_file = workdir / f"bodies-{entities}.jsonl"
                bodies_file.write_text("\n".join(b.decode() for b in request_bodies(users, entities, 2000, args.seed)))
                for kind in KINDS:  # warm-up
                    run_load_child(ports[kind], bodies_file, 2)
                for r in range(args.rounds):
                    for kind in KINDS if r % 2 == 0 else tuple(reversed(KINDS)):
                        result = run_load_child(ports[kind], bodies_file, args.seconds)
                        series.setdefault(str(entities), {}).setdefault(kind, []).append(result)
                        log(f"{entities:>4} entities, {kind}: {result}")
            results["series"] = series
        finally:
            for proc in servers.values():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            client.close()
    results["targets"] = check_targets(results["series"])
    args.out.write_text(json.dumps(results, indent=1, default=str))
    for t in results["targets"]:
        print(f"  {t['result']:4}  {t['target']:46} {t['ratio']:.3f} (limit {t['limit']})")
    log(f"wrote {args.out}")
    return 0


def check_targets(series: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    def median(kind: str, entities: int, key: str) -> float:
        return float(np.median([s[key] for s in series[str(entities)][kind]]))

    out = []
    for entities, limits in TARGETS.items():
        rps = median("hexpire_qualified", entities, "rps") / median("builtin", entities, "rps")
        out.append(
            {
                "target": f"req/s vs built-in, {entities} entities",
                "limit": limits["rps"],
                "ratio": round(rps, 3),
                "result": "PASS" if rps >= limits["rps"] else "MISS",
            }
        )
        if "p99" in limits:
            p99 = median("hexpire_qualified", entities, "p99_ms") / median("builtin", entities, "p99_ms")
            out.append(
                {
                    "target": f"p99 vs built-in, {entities} entities",
                    "limit": limits["p99"],
                    "ratio": round(p99, 3),
                    "result": "PASS" if p99 <= limits["p99"] else "MISS",
                }
            )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
