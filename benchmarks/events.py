"""The streaming-write benchmark (issue 22): one event at a time and in batches, through
`store.push`, the per-event API (EventWriter / AsyncEventWriter) and the raw floor, in
one run against one server.

    python -m benchmarks.events                  # Redis 8 -> results/events.json
    python -m benchmarks.events --server valkey  # Valkey 9 -> results/events_valkey.json
    python -m benchmarks.events --quick          # fewer calls

The repo: one entity, one stream view of five features (Int64, Float64, String, Int64,
Float64) fed by a push source, per-field TTL one hour, `provider: HexpireProvider` (this
store's own push path). The floor is one raw redis-py pipeline of `HSETEX key PXAT <event
time + TTL> FIELDS 6 ...` (the five features and `_ts`), or `HSET` + `HPEXPIREAT` where the
server lacks HSETEX: this store's data shape with no Lua, no newest-wins check, no Feast.

Targets (every ratio from this run):

* per-event write p50 <= 1.5x the raw floor's p50, p99 <= 2x its p99, sync and async;
* batched API rows/s >= 0.7x the raw floor pipelining the same rows, and >= 100,000/s;
* server CPU per event through the API <= the same events through `store.push`.

Latency series are interleaved call by call, in a new random order each round
(measure.run_round_robin), so machine noise hits every path alike. Also reported: async
writes from 32 concurrent tasks with and without coalescing, and the server's time per
script call against per HSETEX (commandstats), which says what the write script costs.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import measure
from .run import ROOT, log, machine_info

FEATURES = {"clicks": "Int64", "spend": "Float64", "page": "String", "items": "Int64", "score": "Float64"}
VIEW = "activity"
SOURCE = "activity_push"
TTL_SECONDS = 3600
USERS = 5000
BATCH = 1000
TARGET_P50, TARGET_P99 = 1.5, 2.0
TARGET_BATCH_VS_RAW, TARGET_BATCH_EVENTS_PER_S = 0.7, 100_000
CONCURRENCY = 32
UTC = timezone.utc


def default_out(server: str, quick: bool) -> Path:
    name = "events" + ("_valkey" if server == "valkey" else "") + ("-quick" if quick else "")
    return ROOT / "benchmarks" / "results" / f"{name}.json"


# ---------------------------------------------------------------- the repo and the events


def build_store(connection_string: str, root: Path) -> Any:
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig
    from feast import types as feast_types
    from feast.value_type import ValueType

    from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig

    config = RepoConfig(
        project="bench_events",
        provider="feast_redis_hexpire.HexpireProvider",
        registry=str(root / "registry.db"),
        online_store=RedisHexpireOnlineStoreConfig(connection_string=connection_string, field_naming="plain"),
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
    source = FileSource(path=str(root / "unused.parquet"), timestamp_field="event_timestamp")
    view = FeatureView(
        name=VIEW,
        entities=[user],
        schema=[Field(name="user_id", dtype=feast_types.String)]
        + [Field(name=name, dtype=getattr(feast_types, dtype)) for name, dtype in FEATURES.items()],
        source=PushSource(name=SOURCE, batch_source=source),
        ttl=timedelta(seconds=TTL_SECONDS),
    )
    store = FeatureStore(config=config)
    store.apply([user, view])
    return store


class Events:
    """Events with strictly increasing event times across every instance (so every write
    is written, none skipped by newest-wins), over USERS users."""

    clock = datetime.now(UTC) - timedelta(minutes=30)

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)

    def next(self) -> dict[str, Any]:
        Events.clock += timedelta(microseconds=7)
        rng = self.rng
        return {
            "user_id": f"u{rng.randrange(USERS):05d}",
            "clicks": rng.randrange(1000),
            "spend": round(rng.random() * 100, 2),
            "page": rng.choice(["home", "cart", "search", "product"]),
            "items": rng.randrange(20),
            "score": rng.random(),
            "event_timestamp": Events.clock,
        }

    def many(self, count: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(count)]


def raw_commands(events: Sequence[dict[str, Any]], hsetex: bool) -> list[tuple[Any, ...]]:
    """The floor's commands for these events: this store's fields, no Lua."""
    commands: list[tuple[Any, ...]] = []
    for event in events:
        key = f"fs:bench_events:user_id={event['user_id']}".encode()
        micros = int(event["event_timestamp"].timestamp() * 1_000_000)
        expire_at = micros // 1000 + TTL_SECONDS * 1000
        pairs: list[Any] = [f"_ts:{VIEW}", micros]
        for name in FEATURES:
            pairs += [name, event[name]]
        if hsetex:
            commands.append(("HSETEX", key, "PXAT", expire_at, "FIELDS", len(pairs) // 2, *pairs))
        else:
            commands.append(("HSET", key, *pairs))
            commands.append(("HPEXPIREAT", key, expire_at, "FIELDS", len(pairs) // 2, *pairs[::2]))
    return commands


def raw_sync(client: Any, hsetex: bool) -> Callable[[Sequence[dict[str, Any]]], Any]:
    def write(events: Sequence[dict[str, Any]]) -> Any:
        pipe = client.pipeline(transaction=False)
        for command in raw_commands(events, hsetex):
            pipe.execute_command(*command)
        return pipe.execute()

    return write


def raw_async(client: Any, hsetex: bool) -> Callable[[Sequence[dict[str, Any]]], Any]:
    async def write(events: Sequence[dict[str, Any]]) -> Any:
        pipe = client.pipeline(transaction=False)
        for command in raw_commands(events, hsetex):
            pipe.execute_command(*command)
        return await pipe.execute()

    return write


# ---------------------------------------------------------------- measurements


def latency_sync(store: Any, writer: Any, client: Any, hsetex: bool, calls: int, warmup: int) -> dict[str, Any]:
    events = Events(1)
    raw = raw_sync(client, hsetex)
    targets: dict[str, measure.Target] = {
        "push": (lambda event: store.push(SOURCE, pd.DataFrame([event])), None),
        "api_sync": (writer.write, None),
        "raw": (lambda event: raw([event]), None),
    }
    series = measure.run_round_robin(targets, [events.next() for _ in range(calls + warmup)], warmup, freeze=False)
    return {name: entry.summary() for name, entry in series.items()}


async def latency_async(writer: Any, client: Any, hsetex: bool, calls: int, warmup: int) -> dict[str, Any]:
    """The async twin of run_round_robin: api_async and the async raw floor, interleaved."""
    events = Events(2)
    raw = raw_async(client, hsetex)
    targets = {"api_async": writer.write, "raw_async": lambda event: raw([event])}
    for _ in range(warmup):
        for fn in targets.values():
            await fn(events.next())
    samples: dict[str, list[float]] = {name: [] for name in targets}
    order = random.Random(7)
    for _ in range(calls):
        names = list(targets)
        order.shuffle(names)
        for name in names:
            event = events.next()
            started = time.perf_counter_ns()
            await targets[name](event)
            samples[name].append((time.perf_counter_ns() - started) / 1e6)
    return {name: measure.Series(samples_ms=values).summary() for name, values in samples.items()}


async def concurrent(store: Any, window_ms: float | None, seconds: float) -> dict[str, Any]:
    """CONCURRENCY tasks writing one event per call for `seconds`: events/s and latency."""
    from feast_redis_hexpire import AsyncEventWriter

    writer = AsyncEventWriter(store, SOURCE, coalesce_window_ms=window_ms)
    events = Events(3)
    samples: list[float] = []
    deadline = time.monotonic() + seconds

    async def task() -> int:
        done = 0
        while time.monotonic() < deadline:
            started = time.perf_counter_ns()
            await writer.write(events.next())
            samples.append((time.perf_counter_ns() - started) / 1e6)
            done += 1
        return done

    await asyncio.gather(*(task() for _ in range(CONCURRENCY)))  # warm: the pool's connections
    samples.clear()
    deadline = time.monotonic() + seconds
    started = time.perf_counter()
    counts = await asyncio.gather(*(task() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    await writer.aclose()
    summary = measure.Series(samples_ms=samples).summary()
    summary.pop("gc", None)
    return {"window_ms": window_ms, "tasks": CONCURRENCY, "events_per_s": round(sum(counts) / elapsed, 1), **summary}


def batched(writer: Any, client: Any, hsetex: bool, repeats: int) -> dict[str, Any]:
    """BATCH events per call: the API (a list of dicts, and an Arrow table) and the raw floor
    pipelining the same events in one round trip, interleaved repeat by repeat."""
    import pyarrow as pa

    events = Events(4)
    raw = raw_sync(client, hsetex)
    paths: dict[str, tuple[Callable[[list[dict[str, Any]]], Any], Callable[[Any], Any]]] = {
        "api_batch": (lambda batch: batch, writer.write),
        "api_batch_arrow": (pa.Table.from_pylist, writer.write),
        "raw_batch": (lambda batch: batch, raw),
    }
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for repeat in range(repeats + 1):
        for name, (prepare, write) in paths.items():
            prepared = prepare(events.many(BATCH))
            started = time.perf_counter()
            write(prepared)
            if repeat:  # the first repeat warms up
                seconds[name].append(time.perf_counter() - started)
    return {
        name: {
            "events_per_call": BATCH,
            "events_per_s": round(BATCH / float(np.median(values)), 1),
            "events_per_s_all": [round(BATCH / v, 1) for v in values],
        }
        for name, values in seconds.items()
    }


def server_cost(store: Any, writer: Any, client: Any, hsetex: bool, count: int) -> dict[str, Any]:
    """Server CPU per event (INFO cpu delta) and commandstats, one event per call, through
    store.push, the API and the raw floor."""
    events = Events(5)
    raw = raw_sync(client, hsetex)
    paths = {
        "push": lambda event: store.push(SOURCE, pd.DataFrame([event])),
        "api_sync": writer.write,
        "raw": lambda event: raw([event]),
    }
    out: dict[str, Any] = {}
    for name, write in paths.items():
        batch = events.many(count)
        before = measure.commandstats(client)
        total0, main0 = measure.server_cpu(client)
        started = time.perf_counter()
        for event in batch:
            write(event)
        elapsed = time.perf_counter() - started
        total1, main1 = measure.server_cpu(client)
        commands = measure.command_delta(before, measure.commandstats(client))
        out[name] = {
            "events": count,
            "seconds": round(elapsed, 3),
            "redis_cpu_us_per_event": round((total1 - total0) * 1e6 / count, 3),
            "main_thread_us_per_event": round((main1 - main0) * 1e6 / count, 3),
            "commands": commands,
        }
    return out


def script_overhead(client: Any, count: int) -> dict[str, Any]:
    """The server's time per EVALSHA of a script that does nothing (`return 1`) with as
    many keys and arguments as a one-event write: what calling a script costs before its
    Lua runs. Beside server_cost's EVALSHA and HSETEX times it splits the script's cost
    into that dispatch, the script's own commands and its Lua."""
    noop = client.script_load("return 1")
    args = [b"x" * 16] * 19  # a one-event write's 19 arguments: head, flags, counts, 6 fields, record
    before = measure.commandstats(client)
    for _ in range(count):
        client.evalsha(noop, 1, b"bench:noop", *args)
    delta = measure.command_delta(before, measure.commandstats(client))
    return {"calls": count, "noop_evalsha_usec_per_call": delta.get("evalsha", {}).get("usec_per_call")}


def push_share(store: Any, count: int) -> dict[str, Any]:
    """Where a one-row `store.push` spends its time: Feast's lookup of the push source's
    views (`_fvs_for_push_source_or_raise`), the store's `ingest_df` (Arrow table, plan,
    one round trip), and the rest of Feast's `push` / `write_to_online_store` (its own view
    lookup, the frame's null checks, `_precompute_for_push`). Medians per call, of this
    thread's CPU time and of wall time: on a busy machine the wall time of a CPU-heavy call
    includes waiting for the CPU back after its send, so the CPU split is the one to read."""
    provider = store._get_provider()
    spent: dict[str, list[tuple[int, int]]] = {"push": [], "views": [], "ingest_df": []}

    def timing(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name].append((time.thread_time_ns() - cpu, time.perf_counter_ns() - wall))

        return timed

    views, ingest = store._fvs_for_push_source_or_raise, provider.ingest_df
    store._fvs_for_push_source_or_raise = timing("views", views)
    provider.ingest_df = timing("ingest_df", ingest)
    push = timing("push", store.push)
    try:
        events = Events(6)
        for _ in range(count):
            push(SOURCE, pd.DataFrame([events.next()]))
    finally:
        del store._fvs_for_push_source_or_raise, provider.ingest_df

    def median_ms(name: str, which: int) -> float:
        return float(np.median([sample[which] for sample in spent[name]])) / 1e6

    out: dict[str, Any] = {"calls": count}
    for which, label in ((0, "cpu"), (1, "wall")):
        push_ms, views_ms, ingest_ms = (median_ms(name, which) for name in ("push", "views", "ingest_df"))
        out[label] = {
            "push_ms": round(push_ms, 3),
            "feast_views_ms": round(views_ms, 3),
            "store_ingest_df_ms": round(ingest_ms, 3),
            "feast_rest_ms": round(push_ms - views_ms - ingest_ms, 3),
            "store_share": round(ingest_ms / push_ms, 3),
        }
    return out


# ---------------------------------------------------------------- targets


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def check(results: dict[str, Any]) -> list[dict[str, Any]]:
    lat, alat = results["latency_sync"], results["latency_async"]
    batch, cost = results["batched"], results["server_cost"]
    rows: list[dict[str, Any]] = []

    def target(name: str, value: float | None, limit: float, at_most: bool = True) -> None:
        ok = value is not None and (value <= limit if at_most else value >= limit)
        rows.append({"target": name, "value": value, "limit": limit, "at_most": at_most, "pass": ok})

    target("sync p50 / raw p50", _ratio(lat["api_sync"]["p50_ms"], lat["raw"]["p50_ms"]), TARGET_P50)
    target("sync p99 / raw p99", _ratio(lat["api_sync"]["p99_ms"], lat["raw"]["p99_ms"]), TARGET_P99)
    target("async p50 / raw p50", _ratio(alat["api_async"]["p50_ms"], alat["raw_async"]["p50_ms"]), TARGET_P50)
    target("async p99 / raw p99", _ratio(alat["api_async"]["p99_ms"], alat["raw_async"]["p99_ms"]), TARGET_P99)
    api, raw = batch["api_batch"]["events_per_s"], batch["raw_batch"]["events_per_s"]
    target("batched API / raw rows/s", _ratio(api, raw), TARGET_BATCH_VS_RAW, at_most=False)
    target("batched API events/s", api, TARGET_BATCH_EVENTS_PER_S, at_most=False)
    target(
        "server CPU/event API / push",
        _ratio(cost["api_sync"]["redis_cpu_us_per_event"], cost["push"]["redis_cpu_us_per_event"]),
        1.0,
    )
    return rows


def report(results: dict[str, Any]) -> str:
    lat, alat = results["latency_sync"], results["latency_async"]
    lines = [f"server: {results['machine'].get('server', '?')}; field expiry: {results['field_expiry']}", ""]
    lines.append("| one event per call | p50 ms | p99 ms | x raw p50 | client CPU p50 ms |")
    lines.append("|---|---|---|---|---|")
    for name, entry, raw in [
        ("store.push (HexpireProvider)", lat["push"], lat["raw"]),
        ("EventWriter.write", lat["api_sync"], lat["raw"]),
        ("raw pipelined HSETEX", lat["raw"], lat["raw"]),
        ("AsyncEventWriter.write", alat["api_async"], alat["raw_async"]),
        ("raw async pipelined HSETEX", alat["raw_async"], alat["raw_async"]),
    ]:
        lines.append(
            f"| {name} | {entry['p50_ms']:.3f} | {entry['p99_ms']:.3f} | {entry['p50_ms'] / raw['p50_ms']:.2f} "
            f"| {entry.get('cpu_p50_ms', float('nan')):.3f} |"
        )
    lines += ["", "| 32 concurrent async writers | events/s | p50 ms | p99 ms |", "|---|---|---|---|"]
    for name, entry in results["concurrent"].items():
        lines.append(f"| {name} | {entry['events_per_s']:,.0f} | {entry['p50_ms']:.3f} | {entry['p99_ms']:.3f} |")
    lines += ["", f"| {BATCH} events per call | events/s |", "|---|---|"]
    for name, entry in results["batched"].items():
        lines.append(f"| {name} | {entry['events_per_s']:,.0f} |")
    lines += ["", "| server, per event | Redis CPU µs | main thread µs | commands (µs per call) |", "|---|---|---|---|"]
    for name, entry in results["server_cost"].items():
        commands = ", ".join(f"{c} {v['usec_per_call']}" for c, v in entry["commands"].items())
        lines.append(
            f"| {name} | {entry['redis_cpu_us_per_event']} | {entry['main_thread_us_per_event']} | {commands} |"
        )
    share = results["push_share"]
    lines.append("")
    lines.append(
        f"EVALSHA of a no-op script, same arguments: {results['script_overhead']['noop_evalsha_usec_per_call']} µs"
    )
    for label in ("cpu", "wall"):
        part = share[label]
        lines.append(
            f"store.push, one row, median {label} of {share['calls']}: {part['push_ms']} ms = Feast's view "
            f"lookup {part['feast_views_ms']} ms + the store's ingest_df {part['store_ingest_df_ms']} ms "
            f"({part['store_share']:.0%}) + the rest of Feast's push {part['feast_rest_ms']} ms"
        )
    lines += ["", "| target | value | limit | |", "|---|---|---|---|"]
    for row in results["targets"]:
        sign = "<=" if row["at_most"] else ">="
        lines.append(
            f"| {row['target']} | {row['value']} | {sign} {row['limit']} | {'PASS' if row['pass'] else 'MISS'} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    import redis
    import redis.asyncio as redis_async

    from devsupport.redis_server import LocalRedisServer, use_server_kind
    from feast_redis_hexpire import AsyncEventWriter, EventWriter
    from feast_redis_hexpire.clients import field_expiry_of, sync_client
    from feast_redis_hexpire.redis_version import FieldExpiry
    from feast_redis_hexpire.store import store_config_of

    calls, warmup = (300, 30) if args.quick else (args.calls, 100)
    root = Path(tempfile.mkdtemp(prefix="bench-events-"))
    try:
        with use_server_kind(args.server), LocalRedisServer(log=lambda m: log(m)) as server:
            client = redis.Redis.from_url(server.url)
            store = build_store(server.connection_string, root)
            writer = EventWriter(store, SOURCE)
            writer.write(Events(0).next())
            hsetex = field_expiry_of(sync_client(store_config_of(store.config))) is FieldExpiry.hsetex
            results: dict[str, Any] = {
                "machine": machine_info(client),
                "field_expiry": "HSETEX" if hsetex else "HSET + HPEXPIREAT",
                "calls": calls,
            }
            log(f"one event per call, sync: {calls} interleaved calls per path")
            results["latency_sync"] = latency_sync(store, writer, client, hsetex, calls, warmup)

            async def async_part() -> tuple[dict[str, Any], dict[str, Any]]:
                async_writer = AsyncEventWriter(store, SOURCE)
                async_client = redis_async.Redis.from_url(server.url)
                log(f"one event per call, async: {calls} interleaved calls per path")
                latency = await latency_async(async_writer, async_client, hsetex, calls, warmup)
                seconds = 1.0 if args.quick else 3.0
                log(f"{CONCURRENCY} concurrent async writers, {seconds} s each, coalescing off and on")
                together = {
                    "no coalescing": await concurrent(store, None, seconds),
                    "coalesce 1 ms": await concurrent(store, 1.0, seconds),
                }
                await async_client.aclose()
                await store._get_provider().online_store.close()
                return latency, together

            results["latency_async"], results["concurrent"] = asyncio.run(async_part())
            repeats = 5 if args.quick else 15
            log(f"batched: {BATCH} events per call, {repeats} repeats")
            results["batched"] = batched(writer, client, hsetex, repeats)
            count = 300 if args.quick else 1000
            log(f"server CPU: {count} single-event calls per path")
            results["server_cost"] = server_cost(store, writer, client, hsetex, count)
            results["script_overhead"] = script_overhead(client, count)
            log(f"store.push's parts: {count // 2} one-row pushes")
            results["push_share"] = push_share(store, count // 2)
            results["targets"] = check(results)
            client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=("redis", "valkey"), default="redis")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--calls", type=int, default=1000, help="interleaved single-event calls per path")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = run(args)
    out = args.out or default_out(args.server, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(report(results))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
