"""Measuring primitives: throughput runs with the Redis server's CPU and memory deltas,
latency series with and without gc.freeze(), the raw redis-py baselines, and MEMORY USAGE
sampling. No assertions on timings."""

from __future__ import annotations

import contextlib
import gc
import io
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .repo import BATCH_TTL_SECONDS, READ_BY_VIEW, READ_FEATURES, STREAM_TTL_SECONDS, STREAM_VIEW, VIEWS

RAW_CHUNK = 500  # rows per pipeline round trip, the same as the store's default write_chunk_size


# ---------------------------------------------------------------- gc


class GcWatch:
    """Counts collections per generation and the time spent in them while active."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_s = 0.0
        self.max_pause_s = 0.0
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            pause = time.perf_counter() - self._t0
            self.pause_s += pause
            self.max_pause_s = max(self.max_pause_s, pause)
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gen0": self.collections[0],
            "gen1": self.collections[1],
            "gen2": self.collections[2],
            "pause_ms_total": round(self.pause_s * 1000, 3),
            "pause_ms_max": round(self.max_pause_s * 1000, 3),
        }


# ---------------------------------------------------------------- throughput


@contextlib.contextmanager
def quiet():
    """Feast prints progress bars; keep them out of the terminal (and out of the timing noise)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class WriteBatchTimer:
    """Wraps one OnlineStore instance's online_write_batch to time the store's share of a
    materialize/push (the rest is Feast: reading the source, arrow -> ValueProto, registry)."""

    def __init__(self, online_store: Any) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.rows = 0
        original = online_store.online_write_batch

        def timed_write_batch(config, table, data, progress):
            t0 = time.perf_counter()
            try:
                return original(config, table, data, progress)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1
                self.rows += len(data)

        online_store.online_write_batch = timed_write_batch

    def take(self) -> dict[str, Any]:
        out = {"seconds": round(self.seconds, 4), "calls": self.calls, "rows": self.rows}
        self.seconds, self.calls, self.rows = 0.0, 0, 0
        return out


def commandstats(client) -> dict[str, dict[str, float]]:
    stats = client.info("commandstats")
    return {k[len("cmdstat_") :]: {"calls": v.get("calls", 0), "usec": v.get("usec", 0)} for k, v in stats.items()}


def command_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Calls and time per command between two snapshots (no CONFIG RESETSTAT: safe on a
    shared server). Commands a Lua script calls are counted inside EVALSHA's time *and* on
    their own line."""
    commands = {}
    for name, a in after.items():
        b = before.get(name, {"calls": 0, "usec": 0})
        calls, usec = a["calls"] - b["calls"], a["usec"] - b["usec"]
        if calls > 0 and name not in ("info", "client|setinfo", "client|setname", "memory|usage"):
            commands[name] = {"calls": int(calls), "usec": int(usec), "usec_per_call": round(usec / calls, 3)}
    return commands


CPU_TOTAL = ("used_cpu_user", "used_cpu_sys")
CPU_MAIN = ("used_cpu_user_main_thread", "used_cpu_sys_main_thread")


def server_cpu(client) -> tuple[float, float]:
    """Redis's own CPU seconds so far: the whole process (what the issue measures) and its
    main thread (the event loop and every command; excludes background threads)."""
    info = client.info("cpu")
    return sum(float(info[k]) for k in CPU_TOTAL), sum(float(info.get(k, 0.0)) for k in CPU_MAIN)


def idle_cpu_rate(client, seconds: float = 2.0) -> float:
    """Server CPU microseconds per wall second with nothing to do (serverCron): the floor
    under every delta, so a slow run's figure can be judged."""
    total0, _ = server_cpu(client)
    time.sleep(seconds)
    total1, _ = server_cpu(client)
    return round((total1 - total0) * 1e6 / seconds, 1)


def used_memory(client, settle_s: float = 0.0) -> int:
    """INFO used_memory, after `settle_s` so serverCron finishes incremental rehashing and
    client buffers shrink: a write's own transients are not counted as the data's."""
    if settle_s:
        time.sleep(settle_s)
    return int(client.info("memory")["used_memory"])


@dataclass
class Throughput:
    rows: int
    seconds: float
    cpu_seconds: float  # this process's CPU time (user+sys): less sensitive to a busy machine
    gc: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "rows_per_s": round(self.rows_per_s, 1),
            "cpu_seconds": round(self.cpu_seconds, 4),
            "rows_per_cpu_s": round(self.rows / self.cpu_seconds, 1) if self.cpu_seconds else None,
            "gc": self.gc,
            **self.extra,
        }


MEMORY_SETTLE_S = 0.3


def measure_throughput(
    rows: int,
    fn: Callable[[], Any],
    client,
    timer: WriteBatchTimer | None = None,
    entities: int | None = None,
) -> Throughput:
    """One timed run. gc.collect() first, so no run inherits another's garbage. Records the
    Redis server's CPU per row (INFO cpu delta), its commands (commandstats delta), with a
    timer the store's share, and with `entities` the used_memory delta per entity."""
    gc.collect()
    memory_before = used_memory(client, MEMORY_SETTLE_S) if entities else 0
    commands_before = commandstats(client)
    if timer is not None:
        timer.take()
    total0, main0 = server_cpu(client)
    with quiet(), GcWatch() as watch:
        cpu0 = time.process_time()
        seconds = timed(fn)
        cpu = time.process_time() - cpu0
    total1, main1 = server_cpu(client)
    extra: dict[str, Any] = {}
    if timer is not None:
        store = timer.take()
        if store["calls"]:  # HexpireProvider writes without online_write_batch
            extra["online_write_batch"] = store
            extra["store_share"] = round(store["seconds"] / seconds, 3) if seconds else None
            extra["feast_seconds"] = round(seconds - store["seconds"], 4)
    extra["redis_cpu"] = {
        "total_s": round(total1 - total0, 6),
        "main_thread_s": round(main1 - main0, 6),
        "us_per_row": round((total1 - total0) * 1e6 / rows, 3),
        "main_thread_us_per_row": round((main1 - main0) * 1e6 / rows, 3),
    }
    extra["redis_commands"] = command_delta(commands_before, commandstats(client))
    if entities:
        delta = used_memory(client, MEMORY_SETTLE_S) - memory_before
        extra["used_memory_delta"] = {"bytes": delta, "per_entity": round(delta / entities, 1)}
    return Throughput(rows, seconds, cpu, watch.as_dict(), extra)


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def summarize_repeats(runs: list[Throughput], idle_us_per_s: float = 0.0, steady_from: int = 1) -> dict[str, Any]:
    """The run of median wall time, then each figure's own median over the repeats (server
    CPU per row, also net of the server's idle work over the run's wall time; used_memory
    per entity from repeat `steady_from` on: the first write into a fresh server also grows
    the allocator's pools), plus every run."""
    ordered = sorted(runs, key=lambda t: t.seconds)
    out = ordered[len(ordered) // 2].as_dict()
    out["rows_per_s"] = round(_median([t.rows_per_s for t in runs]), 1)
    out["rows_per_s_all"] = [round(t.rows_per_s, 1) for t in runs]
    out["rows_per_s_best"] = round(max(t.rows_per_s for t in runs), 1)
    cpu = [t.extra["redis_cpu"] for t in runs]
    net = [c["us_per_row"] - idle_us_per_s * t.seconds / t.rows for c, t in zip(cpu, runs)]
    out["redis_cpu"] = {
        "us_per_row": round(_median([c["us_per_row"] for c in cpu]), 3),
        "net_of_idle_us_per_row": round(_median(net), 3),
        "main_thread_us_per_row": round(_median([c["main_thread_us_per_row"] for c in cpu]), 3),
        "us_per_row_all": [c["us_per_row"] for c in cpu],
        "main_thread_us_per_row_all": [c["main_thread_us_per_row"] for c in cpu],
    }
    memory = [t.extra["used_memory_delta"]["per_entity"] for t in runs if "used_memory_delta" in t.extra]
    if memory:
        steady = memory[steady_from:] or memory
        out["used_memory_per_entity"] = {
            "steady": round(_median(steady), 1),
            "first_write": memory[0],
            "all": memory,
            "steady_from_repeat": steady_from + 1 if len(memory) > steady_from else 1,
        }
    out.pop("used_memory_delta", None)
    out["repeats"] = [t.as_dict() for t in runs]
    return out


# ---------------------------------------------------------------- raw redis-py baselines


RAW_SHAPES = {
    "raw_hset_expire": "HSET + EXPIRE per row, every view (the built-in's command shape, minus its HMGET)",
    "raw_hsetex": "batch views HSET + EXPIRE; the stream view HSETEX PXAT event time + TTL "
    "(HSET + HPEXPIREAT before Redis 8): this store's shape, no Lua, no newest-wins check",
}


def raw_key(prefix: str, user_id: str) -> bytes:
    return f"{prefix}:user_id={user_id}".encode()


def event_micros(ts: pd.Series) -> np.ndarray:
    """Epoch microseconds, as this store writes `_ts:<view>`."""
    return ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)


def raw_write(
    client, frames: dict[str, pd.DataFrame], prefix: str, shape: str, hsetex: bool, chunk: int = RAW_CHUNK
) -> None:
    """The same rows, in this store's flat-hash shape with plain field names and epoch-µs
    `_ts:<view>` fields, pipelined `chunk` rows per round trip; no Feast and no Lua.
    `shape` is a key of RAW_SHAPES; `hsetex`: the server has HSETEX (Redis >= 8)."""
    for view, df in frames.items():
        names = VIEWS[view]
        fields = [*names, f"_ts:{view}"]
        micros = event_micros(df["event_timestamp"])
        columns = [df[name].tolist() for name in names] + [micros.tolist()]
        keys = [raw_key(prefix, u) for u in df["user_id"].tolist()]
        field_expiry = shape == "raw_hsetex" and view == STREAM_VIEW
        expire_at = (micros // 1000 + STREAM_TTL_SECONDS * 1000).tolist()
        n = len(keys)
        for start in range(0, n, chunk):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + chunk, n)):
                key = keys[i]
                values = [col[i] for col in columns]
                if field_expiry and hsetex:
                    pairs = [x for pair in zip(fields, values) for x in pair]
                    pipe.execute_command("HSETEX", key, "PXAT", expire_at[i], "FIELDS", len(fields), *pairs)
                elif field_expiry:
                    pipe.hset(key, mapping=dict(zip(fields, values)))
                    pipe.hpexpireat(key, expire_at[i], *fields)
                else:
                    pipe.hset(key, mapping=dict(zip(fields, values)))
                    pipe.expire(key, BATCH_TTL_SECONDS)
            pipe.execute()


READ_FIELDS_5 = [ref.split(":")[1] for ref in READ_FEATURES]
READ_FIELDS_8 = READ_FIELDS_5 + [f"_ts:{view}" for view in READ_BY_VIEW]


def raw_hmget(client, prefix: str, fields: Sequence[str]) -> Callable[[Sequence[str]], Any]:
    def read(ids: Sequence[str]) -> Any:
        pipe = client.pipeline(transaction=False)
        for u in ids:
            pipe.hmget(f"{prefix}:user_id={u}", fields)
        return pipe.execute()

    return read


# ---------------------------------------------------------------- latency


def percentile(values_ms: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values_ms), q)) if len(values_ms) else float("nan")


@dataclass
class Series:
    """One latency series: one sample per call after warm-up."""

    samples_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # this thread's CPU time per call: client-side cost
    gc: dict[str, Any] = field(default_factory=dict)
    frozen: bool = False

    def summary(self) -> dict[str, Any]:
        s = self.samples_ms
        return {
            "n": len(s),
            "p50_ms": round(percentile(s, 50), 4),
            "p90_ms": round(percentile(s, 90), 4),
            "p99_ms": round(percentile(s, 99), 4),
            "max_ms": round(max(s), 4) if s else None,
            "mean_ms": round(float(np.mean(s)), 4) if s else None,
            "cpu_p50_ms": round(percentile(self.cpu_ms, 50), 4),
            "cpu_p99_ms": round(percentile(self.cpu_ms, 99), 4),
            "gc": self.gc,
        }


class AttributingGcWatch:
    """GcWatch that charges each collection to the target whose timed call it interrupted."""

    def __init__(self, names: Sequence[str]) -> None:
        self.current: str | None = None
        self.watches = {name: GcWatch() for name in names}
        self._t0 = 0.0
        self._charged: str | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._charged = self.current
        if self._charged is not None:
            self.watches[self._charged]._callback(phase, info)

    def __enter__(self) -> AttributingGcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


Target = tuple[Callable[[Any], Any], Callable[[Any], Any] | None]


def run_round_robin(targets: dict[str, Target], args: Sequence[Any], warmup: int, freeze: bool) -> dict[str, Series]:
    """Call every target on every arg, in a new random order each round, so a busy machine
    (or a GC pass, or the previous target's leftovers) hits all targets alike rather than
    whichever series ran at the bad moment.

    `prepare(arg)` (untimed) turns an arg into what fn receives. With `freeze`, gc.freeze()
    runs after the warm-up and gc.unfreeze() at the end, so the next run starts from the same heap."""
    names = list(targets)
    for arg in args[:warmup]:
        for name in names:
            fn, prepare = targets[name]
            fn(prepare(arg) if prepare else arg)
    gc.collect()
    if freeze:
        gc.freeze()
    series = {name: Series(frozen=freeze) for name in names}
    perf, thread_time = time.perf_counter_ns, time.thread_time_ns
    watch = AttributingGcWatch(names)
    try:
        with watch:
            order = random.Random(7)
            for arg in args[warmup:]:
                # A fresh order each round: a rotation kept each target behind the same one,
                # and a call right after a glide one ran ~0.04 ms slower (its threads still
                # wanted the GIL), which loaded one target's figures alone.
                shuffled = names[:]
                order.shuffle(shuffled)
                for name in shuffled:
                    fn, prepare = targets[name]
                    x = prepare(arg) if prepare else arg
                    watch.current = name
                    c0 = thread_time()
                    t0 = perf()
                    fn(x)
                    t1 = perf()
                    c1 = thread_time()
                    watch.current = None
                    entry = series[name]
                    entry.samples_ms.append((t1 - t0) / 1e6)
                    entry.cpu_ms.append((c1 - c0) / 1e6)
    finally:
        if freeze:
            gc.unfreeze()
    for name in names:
        series[name].gc = watch.watches[name].as_dict()
    return series


# ---------------------------------------------------------------- memory


def memory_per_key(client, keys: Sequence[bytes]) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    sizes = [s for s in pipe.execute() if s is not None]
    pipe = client.pipeline(transaction=False)
    for key in keys[:50]:
        pipe.object("encoding", key)
    encodings = sorted({(e.decode() if isinstance(e, bytes) else str(e)) for e in pipe.execute() if e})
    pipe = client.pipeline(transaction=False)
    for key in keys[:50]:
        pipe.hlen(key)
    hlens = pipe.execute()
    return {
        "sampled": len(keys),
        "found": len(sizes),
        "bytes_mean": round(float(np.mean(sizes)), 1) if sizes else None,
        "bytes_min": int(min(sizes)) if sizes else None,
        "bytes_max": int(max(sizes)) if sizes else None,
        "encodings": encodings,
        "fields_per_key": round(float(np.mean(hlens)), 2) if hlens else None,
    }
