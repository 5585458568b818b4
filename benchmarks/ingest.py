"""The Redis Streams ingester, end to end: from `XADD` to readable through `get_online_features`.

    python -m benchmarks.ingest                   # Redis 8 -> results/ingest.json
    python -m benchmarks.ingest --server valkey   # Valkey 9 -> results/ingest_valkey.json
    python -m benchmarks.ingest --quick           # fewer events, shorter steady run

One push-fed stream view of five features (Int64, Float64, String, Int64, String), one
user per event, every value as text the way `redis-cli XADD` sends it. Run alone on the
machine (`flock /tmp/bench.lock`).

Targets (issue 22):

* **throughput**: one consumer (`StreamIngester.run()`, batch 1,000) drains a backlog of N
  entries, from its first read to the last `XACK`: at least **50,000 events/s**. (Writing a
  batch in a second thread while the next was read and parsed was tried: 13,290 against
  27,241 events/s one step after the other, in one run, the two threads contending for the
  GIL; it was taken out.) Beside
  it, the floor measured in the same run: the same entries read with `XREADGROUP`, written
  as raw pipelined `HSETEX` (no parsing, no script, no newest-wins) and acknowledged; and
  afterwards every event is checked readable through `get_online_features`.
* **lag**: a producer process `XADD`s at a steady 5,000 events/s (a pipeline of 10
  entries every 2 ms, each stamped with its own time as event time) while one consumer
  ingests; the lag of each event is its event time to the write's reply in the consumer
  (both clocks are this machine's). p99 at most **50 ms**. A probe process beside them adds
  an entry of its own 10 times a second and polls `get_online_features` until its value
  is served (polling every 2 ms): the XADD-to-readable latency as a reader sees it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("FEAST_USAGE", "False")

import numpy as np

from .measure import percentile, server_cpu
from .run import ROOT, log, machine_info, redis_client

SOURCE = "activity_push"
FEATURES = ["tx_count_5m", "last_amount", "last_device", "failed_logins_15m", "session_country"]
TARGET_EVENTS_PER_S = 50_000
TARGET_P99_LAG_MS = 50.0
STEADY_RATE = 5_000
STEADY_BATCH = 10


def make_store(tmp: Path, connection_string: str, project: str) -> Any:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig
    from feast.types import Float64, Int64, String
    from feast.value_type import ValueType

    config = RepoConfig(
        project=project,
        provider="local",
        registry={"path": str(tmp / "registry.db"), "cache_ttl_seconds": 60},
        online_store={
            "type": "feast_redis_hexpire.RedisHexpireOnlineStore",
            "connection_string": connection_string,
            "stream_ttl_seconds": 86400,
            "field_naming": "plain",
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    source = FileSource(path=str(tmp / "unused.parquet"), timestamp_field="event_timestamp")
    push = PushSource(name=SOURCE, batch_source=source)
    dtypes = [Int64, Float64, String, Int64, String]
    view = FeatureView(
        name="activity",
        entities=[user],
        schema=[Field(name="user_id", dtype=String)] + [Field(name=n, dtype=t) for n, t in zip(FEATURES, dtypes)],
        source=push,
        online=True,
    )
    store = FeatureStore(config=config, repo_path=str(tmp))
    store.apply([user, push, view])
    return store


def entries(n: int, users: int, seed: int, start: int = 0) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, n)
    amounts = np.round(rng.uniform(1, 500, n), 2)
    fails = rng.integers(0, 5, n)
    now_us = time.time_ns() // 1000 - 60_000_000
    return [
        {
            "user_id": f"u{(start + i) % users:07d}",
            "tx_count_5m": str(int(counts[i])),
            "last_amount": repr(float(amounts[i])),
            "last_device": f"dev-{i % 997:04x}",
            "failed_logins_15m": str(int(fails[i])),
            "session_country": "DE",
            "event_timestamp": str(now_us + i),  # epoch microseconds, newer per entry
        }
        for i in range(n)
    ]


def xadd_all(client: Any, stream: str, fields: Sequence[dict[str, str]], chunk: int = 5000) -> None:
    for at in range(0, len(fields), chunk):
        pipe = client.pipeline(transaction=False)
        for entry in fields[at : at + chunk]:
            pipe.xadd(stream, entry)
        pipe.execute()


# ---------------------------------------------------------------- throughput


def ingester_drain(store: Any, client: Any, stream: str, backlog: list[dict[str, str]]) -> dict[str, Any]:
    """`StreamIngester.run()` over a backlog, stopped once every entry is handled."""
    from feast_redis_hexpire.stream_ingest import StreamIngester

    xadd_all(client, stream, backlog)
    ingester = StreamIngester(store, SOURCE, stream, "bench", consumer="c1", batch=1000, block_ms=50)
    ingester.ensure_group()

    def stop_when_done() -> None:
        while ingester.stats.entries < len(backlog):
            time.sleep(0.001)
        ingester.stop()

    watcher = threading.Thread(target=stop_when_done, daemon=True)
    with Cost(client, len(backlog)) as cost:
        watcher.start()
        ingester.run()
    stats = ingester.stats
    return {
        **cost.figures,
        "written": stats.written,
        "skipped": stats.skipped,
        "dead_letters": stats.dead_letters,
        "batches": stats.batches,
    }


def floor_drain(client: Any, stream: str, backlog: list[dict[str, str]], prefix: str) -> dict[str, Any]:
    """XREADGROUP, raw pipelined HSETEX of the entry's fields (expiry at a fixed time), XACK."""
    xadd_all(client, stream, backlog)
    client.xgroup_create(stream, "floor", id="0")
    expire_ms = str(int(time.time() * 1000) + 86_400_000)
    with Cost(client, len(backlog)) as cost:
        _floor_loop(client, stream, len(backlog), prefix, expire_ms)
    return cost.figures


def _floor_loop(client: Any, stream: str, count: int, prefix: str, expire_ms: str) -> None:
    handled = 0
    while handled < count:
        reply = client.xreadgroup("floor", "c1", {stream: ">"}, count=1000)
        batch = reply[0][1]
        pipe = client.pipeline(transaction=False)
        for _, fields in batch:
            key = prefix + fields[b"user_id"].decode()
            values: list[bytes] = []
            for name in FEATURES:
                values += [name.encode(), fields[name.encode()]]
            values += [b"_ts:activity", fields[b"event_timestamp"]]
            pipe.execute_command("HSETEX", key, "PXAT", expire_ms, "FIELDS", len(values) // 2, *values)
        pipe.execute()
        client.xack(stream, "floor", *[entry_id for entry_id, _ in batch])
        handled += len(batch)


class Cost:
    """Wall time, this process's CPU and the server's CPU (INFO cpu) over a drain of `events`.
    The consumer waits for each reply, so on a machine with two idle cores one consumer's
    ceiling is about 1 / (client CPU + server CPU) per event: `uncontended_events_per_s`,
    a model beside the measured rate when other processes share the cores."""

    def __init__(self, client: Any, events: int) -> None:
        self.client, self.events = client, events
        self.figures: dict[str, Any] = {}

    def __enter__(self) -> Cost:
        self._server = server_cpu(self.client)[0]
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        client_us = (time.process_time() - self._cpu) * 1e6 / self.events
        server_us = (server_cpu(self.client)[0] - self._server) * 1e6 / self.events
        self.figures = {
            "events": self.events,
            "seconds": round(wall, 3),
            "events_per_s": round(self.events / wall),
            "client_cpu_us_per_event": round(client_us, 2),
            "server_cpu_us_per_event": round(server_us, 2),
            "uncontended_events_per_s": round(1e6 / (client_us + server_us)),
        }


def check_readable(store: Any, backlog: list[dict[str, str]], users: int) -> dict[str, Any]:
    """The last entry of every user is what get_online_features serves."""
    last: dict[str, dict[str, str]] = {}
    for entry in backlog:
        last[entry["user_id"]] = entry
    ids = sorted(last)
    mismatched = 0
    for at in range(0, len(ids), 1000):
        chunk = ids[at : at + 1000]
        got = store.get_online_features(
            features=[f"activity:{name}" for name in FEATURES], entity_rows=[{"user_id": u} for u in chunk]
        ).to_dict()
        for index, user in enumerate(chunk):
            expected = last[user]
            if got["tx_count_5m"][index] != int(expected["tx_count_5m"]) or got["last_amount"][index] != float(
                expected["last_amount"]
            ):
                mismatched += 1
    return {"users_checked": len(ids), "mismatched": mismatched}


# ---------------------------------------------------------------- steady lag


def _producer(url: str, stream: str, seconds: float, ready: Any) -> None:
    import redis

    client = redis.Redis.from_url(url)
    ready.wait()
    interval = STEADY_BATCH / STEADY_RATE
    next_at = time.perf_counter()
    end = next_at + seconds
    n = 0
    while next_at < end:
        pipe = client.pipeline(transaction=False)
        for _ in range(STEADY_BATCH):
            now_us = time.time_ns() // 1000
            pipe.xadd(
                stream,
                {
                    "user_id": f"s{n % 20000:06d}",
                    "tx_count_5m": str(n % 50),
                    "last_amount": "12.5",
                    "last_device": "dev-1",
                    "failed_logins_15m": "0",
                    "session_country": "DE",
                    "event_timestamp": str(now_us),
                },
            )
            n += 1
        pipe.execute()
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def _probe(
    url: str, repo: str, connection_string: str, project: str, stream: str, seconds: float, ready: Any, out: Any
) -> None:
    """Every 100 ms: XADD an entry of a probe user with a new value, poll get_online_features
    until it is served; the XADD-to-readable latency (to within the 2 ms poll)."""
    import redis

    store = make_store(Path(repo), connection_string, project)
    client = redis.Redis.from_url(url)
    ready.wait()
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
        user = f"probe{n % 50}"
        started = time.perf_counter()
        client.xadd(
            stream,
            {
                "user_id": user,
                "tx_count_5m": str(n),
                "last_amount": "1.0",
                "last_device": "probe",
                "failed_logins_15m": "0",
                "session_country": "DE",
                "event_timestamp": str(time.time_ns() // 1000),
            },
        )
        while True:
            got = store.get_online_features(
                features=["activity:tx_count_5m"], entity_rows=[{"user_id": user}]
            ).to_dict()
            if got["tx_count_5m"][0] == n:
                break
            if time.perf_counter() - started > 5:
                break
            time.sleep(0.002)  # a poll every 2 ms: the probe must not starve the consumer it measures
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(max(0.0, 0.1 - (time.perf_counter() - started)))
    out.put(latencies)


def steady_lag(store: Any, server: Any, tmp: Path, project: str, seconds: float) -> dict[str, Any]:
    from feast_redis_hexpire.stream_ingest import StreamIngester

    stream = f"{project}:steady"
    ingester = StreamIngester(store, SOURCE, stream, "bench", consumer="c1", batch=1000, block_ms=500)
    ingester.ensure_group()
    context = multiprocessing.get_context("spawn")
    ready, out = context.Event(), context.Queue()
    producer = context.Process(target=_producer, args=(server.url, stream, seconds, ready))
    probe = context.Process(
        target=_probe,
        args=(server.url, str(tmp / "probe"), server.connection_string, project, stream, seconds, ready, out),
    )
    (tmp / "probe").mkdir()
    shutil.copy(tmp / "registry.db", tmp / "probe" / "registry.db")
    producer.start()
    probe.start()
    time.sleep(8)  # the probe process imports Feast and builds its store
    lags: list[float] = []
    ready.set()
    end = time.perf_counter() + seconds + 1.0
    events = 0
    probe_latencies: list[float] | None = None
    while time.perf_counter() < end or producer.is_alive() or probe_latencies is None:
        step = ingester.run_once(block_ms=100)
        events += step.entries
        lags.extend((step.written_at_us - micros) / 1000 for micros in step.event_micros)
        if probe_latencies is None and not out.empty():  # the probe is done once it reports
            probe_latencies = out.get()
        if time.perf_counter() > end + 60:
            raise TimeoutError("the producer or the probe did not finish")
    producer.join()
    probe.join()
    steady = lags[len(lags) // 10 :]  # the first tenth warms up
    return {
        "rate_target": STEADY_RATE,
        "seconds": seconds,
        "events": events,
        "events_per_s": round(events / seconds),
        "lag_ms": {
            "p50": round(percentile(steady, 50), 2),
            "p99": round(percentile(steady, 99), 2),
            "max": round(max(steady), 2),
        },
        "probe_xadd_to_readable_ms": {
            "count": len(probe_latencies),
            "p50": round(percentile(probe_latencies, 50), 2),
            "p99": round(percentile(probe_latencies, 99), 2),
        },
    }


# ---------------------------------------------------------------- the run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=("redis", "valkey"), default="redis")
    parser.add_argument("--events", type=int, default=200_000, help="backlog drained for the throughput figure")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--steady-seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="40,000 events, 6 s steady run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.steady_seconds = 40_000, 6.0
    out = args.out or ROOT / "benchmarks" / "results" / (
        "ingest.json" if args.server == "redis" else "ingest_valkey.json"
    )

    from devsupport.redis_server import server_for_local_use, use_server_kind

    with use_server_kind(args.server), server_for_local_use(log=log) as server:
        client = redis_client(server)
        tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        try:
            project = f"bi{os.getpid()}"
            load_before = round(os.getloadavg()[0], 2)
            store = make_store(tmp, server.connection_string, project)
            backlog = entries(args.events, args.users, seed=1)
            log(f"throughput: draining {len(backlog):,} entries (ingester, then the raw floor)")
            ingest = ingester_drain(store, client, f"{project}:drain", backlog)
            readable = check_readable(store, backlog, args.users)
            floor = floor_drain(client, f"{project}:floor", backlog, f"floor:{project}:")
            log(f"  ingester {ingest['events_per_s']:,} events/s, floor {floor['events_per_s']:,} events/s")
            log(
                f"steady: {STEADY_RATE:,} events/s for {args.steady_seconds:.0f} s, lag per event and a readability probe"
            )
            steady = steady_lag(store, server, tmp, project, args.steady_seconds)
            log(f"  lag p50 {steady['lag_ms']['p50']} ms, p99 {steady['lag_ms']['p99']} ms")
            results = {
                "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": machine_info(client),
                "load_average_1m": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
                "server": args.server,
                "throughput": {
                    "ingester": ingest,
                    "floor_xreadgroup_hsetex_xack": floor,
                    "readable": readable,
                },
                "steady": steady,
                "targets": {
                    "events_per_s_per_consumer": {
                        "target": f">= {TARGET_EVENTS_PER_S:,}",
                        "measured": ingest["events_per_s"],
                        "vs_floor": round(ingest["events_per_s"] / floor["events_per_s"], 3),
                        "uncontended_estimate": ingest["uncontended_events_per_s"],
                        "verdict": "PASS"
                        if ingest["events_per_s"] >= TARGET_EVENTS_PER_S and readable["mismatched"] == 0
                        else "MISS",
                    },
                    "p99_lag_ms_at_5000_per_s": {
                        "target": f"<= {TARGET_P99_LAG_MS}",
                        "measured": steady["lag_ms"]["p99"],
                        "verdict": "PASS" if steady["lag_ms"]["p99"] <= TARGET_P99_LAG_MS else "MISS",
                    },
                },
            }
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            client.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    for name, target in results["targets"].items():
        log(f"{target['verdict']}  {name}: {target['measured']} (target {target['target']})")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
