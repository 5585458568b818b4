"""Timing primitives: throughput runs, latency series with and without gc.freeze(),
the raw redis-py baselines, and MEMORY USAGE sampling. No assertions on timings."""

from __future__ import annotations

import contextlib
import gc
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .repo import BATCH_TTL_SECONDS, READ_BY_VIEW, READ_FEATURES, VIEWS

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


def server_delta(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], rows: int) -> dict[str, Any]:
    """Redis-side time per command between two snapshots (no CONFIG RESETSTAT: safe on a shared server).
    Commands a Lua script calls are counted inside EVALSHA's time *and* on their own line."""
    commands = {}
    for name, a in after.items():
        b = before.get(name, {"calls": 0, "usec": 0})
        calls, usec = a["calls"] - b["calls"], a["usec"] - b["usec"]
        if calls > 0 and name not in ("info", "client|setinfo", "client|setname", "memory|usage"):
            commands[name] = {"calls": int(calls), "usec": int(usec), "usec_per_call": round(usec / calls, 3)}
    if "evalsha" in commands:
        top = commands["evalsha"]["usec"]
    else:
        top = sum(c["usec"] for c in commands.values())
    return {"commands": commands, "top_level_usec": int(top), "usec_per_row": round(top / rows, 3) if rows else None}


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


def measure_throughput(
    rows: int, fn: Callable[[], Any], client=None, timer: WriteBatchTimer | None = None
) -> Throughput:
    """One timed run. gc.collect() first, so no run inherits another's garbage. With a
    client, also the Redis-side time (commandstats delta); with a timer, the store's share."""
    gc.collect()
    before = commandstats(client) if client is not None else None
    if timer is not None:
        timer.take()
    with quiet(), GcWatch() as watch:
        cpu0 = time.process_time()
        seconds = timed(fn)
        cpu = time.process_time() - cpu0
    extra: dict[str, Any] = {}
    if timer is not None:
        store = timer.take()
        extra["online_write_batch"] = store
        extra["store_share"] = round(store["seconds"] / seconds, 3) if seconds else None
        extra["feast_seconds"] = round(seconds - store["seconds"], 4)
    if client is not None:
        extra["redis_server"] = server_delta(before, commandstats(client), rows)
    return Throughput(rows, seconds, cpu, watch.as_dict(), extra)


def summarize_repeats(runs: list[Throughput]) -> dict[str, Any]:
    """Median of the repeats (by wall time) plus every run."""
    ordered = sorted(runs, key=lambda t: t.seconds)
    median = ordered[len(ordered) // 2]
    out = median.as_dict()
    out["repeats"] = [t.as_dict() for t in runs]
    out["rows_per_s_all"] = [round(t.rows_per_s, 1) for t in runs]
    out["rows_per_s_best"] = round(max(t.rows_per_s for t in runs), 1)
    return out


# ---------------------------------------------------------------- raw redis-py baselines


def raw_key(prefix: str, user_id: str) -> bytes:
    return f"{prefix}:user_id={user_id}".encode()


def _iso_text(ts: pd.Series) -> list[str]:
    values = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return [s + "Z" for s in np.datetime_as_string(values, unit="us").tolist()]


def raw_write(client, frames: dict[str, pd.DataFrame], prefix: str, field_expiry: bool, chunk: int = RAW_CHUNK) -> None:
    """Same rows, same flat-hash shape as this store, no Feast and no Lua.

    field_expiry=False: HSET <fields + _ts:view> then EXPIRE key (the built-in's pattern).
    field_expiry=True:  HSET <fields + _ts:view> then HEXPIRE key ttl FIELDS ... (per-field
    expiry on every row, the primitive this store's stream writes rely on)."""
    for view, df in frames.items():
        names = VIEWS[view]
        ts_field = f"_ts:{view}"
        fields = names + [ts_field]
        columns = [df[name].tolist() for name in names] + [_iso_text(df["event_timestamp"])]
        keys = [raw_key(prefix, u) for u in df["user_id"].tolist()]
        n = len(keys)
        for start in range(0, n, chunk):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + chunk, n)):
                key = keys[i]
                pipe.hset(key, mapping=dict(zip(fields, [col[i] for col in columns])))
                if field_expiry:
                    pipe.hexpire(key, BATCH_TTL_SECONDS, *fields)
                else:
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
    """Call every target on every arg, rotating the order each round, so a busy machine (or a
    GC pass) hits all targets alike rather than whichever series ran at the bad moment.

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
            for i, arg in enumerate(args[warmup:]):
                k = i % len(names)
                for name in names[k:] + names[:k]:
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
