"""Deterministic server cost of the write paths: redis-server under valgrind's callgrind,
instructions counted only while the measured writes run.

    python -m benchmarks.server_cost [--users 1000] [--variants builtin,hexpire,...] [--quick]
                                     [--server redis|valkey] [--out benchmarks/results/server_cost.json]

Each variant gets a fresh `redis-server` under `valgrind --tool=callgrind
--instr-atstart=no` (`--hz 1`, no persistence) and its own FeatureStore (or raw redis-py
client). Warm-up writes (connections, the script load) run uninstrumented; then, per
segment, `callgrind_control -i on`, the writes, `-i off`, `-d` (a dump of that segment):

* `batch`:  materialize of the two batch views into empty keys (2 rows per user);
* `stream`: materialize of the stream view onto those keys (1 row per user);
* `push`:   FeatureStore.push of newer stream rows onto them (1 row per user).

Instructions per row = (the dump's total - serverCron's inclusive cost) / rows: the
timer's work depends on how long the (slowed-down) writes take, not on the writes.
Counts do not depend on machine load. `callgrind_annotate` gives the function-level
breakdown. Lever variants patch one thing in this process (entities per script call,
numeric event-time comparison, HSET + HPEXPIREAT instead of HSETEX) or run the store's
code from an earlier commit in a child process.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import measure
from . import repo as benchrepo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "server_cost.json"
USERS = 1000
QUICK_USERS = 500
PUSH_BATCH = 1000
CRON = "serverCron"
PREVIOUS_SCRIPT_COMMIT = "d9f6a5b^"
"""The write script before 'field names once per call, event times compared as text'."""
MARK = "SERVER_COST_RESULT "

SEGMENTS = ("batch", "stream", "push")
COMMANDS = {
    # the data commands' own functions (inclusive), wherever they are called from
    "HGET": ("hgetCommand",),
    "HMGET": ("hmgetCommand",),
    "HSET": ("hsetCommand",),
    "HSETEX": ("hsetexCommand",),
    "HPEXPIREAT": ("hpexpireatCommand",),
    "EXPIRE / PEXPIRE": ("expireCommand", "pexpireCommand"),
    "HDEL": ("hdelCommand",),
    "TIME": ("timeCommand",),
}
LISTPACK_CONVERSION = "hashTypeConvertListpack"  # a hash's first field expiry: listpack -> listpackex


@dataclass(frozen=True)
class Variant:
    name: str
    path: str  # a store kind (repo.KINDS) or a raw shape (measure.RAW_SHAPES)
    about: str
    hsetex: bool = True  # raw shapes: HSETEX on Redis >= 8; False: HSET + HPEXPIREAT
    entities_per_call: int | None = None  # this store: writes.ENTITIES_PER_CALL
    numeric_times: bool = False  # this store: event times compared as numbers (the "n" flag)
    script_hsetex: bool = True  # this store: False takes the script's HSET + HPEXPIREAT branch
    commit: str | None = None  # this store's code at a git commit (child process)
    no_script: bool = False  # this store's own rows sent as plain commands: the floor


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("builtin", "builtin", "Feast's built-in store: HMGET _ts, then HSET + EXPIRE, pipelined"),
        Variant("hexpire", "hexpire", "this store, plain names: the write script, 100 entities per EVALSHA"),
        Variant("hexpire_fast", "hexpire_fast", "this store with HexpireProvider (Arrow-native writes)"),
        Variant("hexpire_qualified", "hexpire_qualified", "this store, qualified names (<view>:<feature>)"),
        Variant(
            "hexpire_no_script",
            "hexpire",
            "the floor: this store's own keys, fields and values (the same rows), pipelined as "
            "HSET + PEXPIRE (batch) / HSETEX PXAT event expiry (stream) without the script or its HGET",
            no_script=True,
        ),
        Variant("raw_hset_expire", "raw_hset_expire", measure.RAW_SHAPES["raw_hset_expire"]),
        Variant("raw_hsetex", "raw_hsetex", measure.RAW_SHAPES["raw_hsetex"]),
        Variant(
            "raw_hset_hpexpireat",
            "raw_hsetex",
            "as raw_hsetex, stream rows as HSET + HPEXPIREAT (two commands)",
            hsetex=False,
        ),
        *(
            Variant(f"hexpire_calls_{n}", "hexpire", f"this store, {n} entities per EVALSHA", entities_per_call=n)
            for n in (1, 10, 30, 300)
        ),
        Variant(
            "hexpire_numeric_times",
            "hexpire",
            "this store, event times compared as numbers (tonumber per row)",
            numeric_times=True,
        ),
        Variant(
            "hexpire_hpexpireat",
            "hexpire",
            "this store, stream rows by HSET + HPEXPIREAT in the script instead of HSETEX",
            script_hsetex=False,
        ),
        Variant(
            "hexpire_previous_script",
            "hexpire",
            f"this store at {PREVIOUS_SCRIPT_COMMIT}: field names per row, numeric event times",
            commit=PREVIOUS_SCRIPT_COMMIT,
        ),
    )
}
PATH_VARIANTS = (
    "builtin",
    "hexpire",
    "hexpire_fast",
    "hexpire_no_script",
    "raw_hset_expire",
    "raw_hsetex",
)  # the write paths, and the floor
DEFAULT_VARIANTS = tuple(VARIANTS)
BREAKDOWN_VARIANTS = ("builtin", "hexpire", "hexpire_fast", "hexpire_no_script", "raw_hsetex")
FLOOR = "hexpire_no_script"
"""The variant the script's overhead is stated against."""


def log_stderr(msg: str) -> None:
    print(f"[server_cost {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- redis-server under callgrind


class CallgrindControl:
    """Collection on/off and dumps of one valgrind'd process (callgrind_control talks to it
    through vgdb, which wakes it even while it sleeps in epoll_wait)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _control(self, *args: str) -> None:
        done = subprocess.run(["callgrind_control", *args, str(self.pid)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or "OK" not in done.stdout:
            raise RuntimeError(f"callgrind_control {' '.join(args)} failed: {done.stdout}{done.stderr}")

    def measure(self, fn: Callable[[], Any]) -> None:
        """Count fn's server work, then dump it (the dump zeroes the counters)."""
        self._control("-i", "on")
        try:
            fn()
        finally:
            self._control("-i", "off")
        self._control("-d")


@contextlib.contextmanager
def callgrind_redis(workdir: Path, server: str = "redis") -> Iterator[tuple[int, int, Path]]:
    """(pid, port, callgrind output base) of a fresh redis-server (or valkey-server)
    under callgrind."""
    import redis

    from devsupport.net import free_port
    from devsupport.redis_server import server_binary

    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH (apt-get install valgrind)")
    port = free_port()
    out = workdir / "cg.out"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    cmd += [str(server_binary(server, log=log_stderr)), "--port", str(port), "--bind", "127.0.0.1"]
    cmd += ["--save", "", "--appendonly", "no", "--hz", "1", "--dir", str(workdir)]
    with (workdir / "valgrind.log").open("wb") as vg_log:
        proc = subprocess.Popen(cmd, stdout=vg_log, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, socket_timeout=120)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server under valgrind did not start: {(workdir / 'valgrind.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield proc.pid, port, out
    finally:
        with contextlib.suppress(Exception):
            client.shutdown(nosave=True)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        client.close()


# ---------------------------------------------------------------- the writes


@contextlib.contextmanager
def patched(variant: Variant) -> Iterator[None]:
    """The lever a variant changes, in this process only, undone afterwards. Each reaches
    into the store's internals by name and fails loudly when that name has moved."""
    from feast_redis_hexpire import redis_io, writes

    undo: list[tuple[Any, str, Any]] = []

    def setattr_(module: Any, name: str, value: Any) -> None:
        undo.append((module, name, getattr(module, name)))  # AttributeError: the code moved on
        setattr(module, name, value)

    try:
        if variant.entities_per_call is not None:
            setattr_(writes, "ENTITIES_PER_CALL", variant.entities_per_call)
        if variant.numeric_times:
            encode = writes._encode_time

            def numeric(event_ts: Any, ttl_ms: int | None) -> tuple[bytes, bytes | None, bool]:
                micros, expire, _ = encode(event_ts, ttl_ms)
                return micros, expire, True

            setattr_(writes, "_encode_time", numeric)
        if variant.no_script:
            setattr_(redis_io, "_send_calls", _without_script(variant.hsetex))
        if not variant.script_hsetex:
            setattr_(writes, "HSETEX_FLAG", b"")  # the script's HSET + HPEXPIREAT branch
        yield
    finally:
        for module, name, value in reversed(undo):
            setattr(module, name, value)


def _without_script(hsetex: bool) -> Callable[[Any, Sequence[Any]], list[Any]]:
    """A stand-in for redis_io._send_calls that sends each script call's rows (the same keys,
    fields and values) as the data commands the script would run, pipelined, without the
    script, its TIME or its newest-wins HGET; every row is answered "written"."""
    from feast_redis_hexpire.write_script import BATCH_MODE, WRITTEN

    def send(client: Any, calls: Sequence[Any]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for call in calls:
            mode, ttl_ms = call.args[0], int(call.args[1])
            for row in call.rows:
                fields, deletes = row.shape
                values, expire = row.record, None
                if mode != BATCH_MODE and ttl_ms > 0:
                    expire, values = values[0], values[1:]
                pairs = [x for pair in zip(fields, values) for x in pair]
                if expire is not None and hsetex:
                    pipe.execute_command("HSETEX", row.key, "PXAT", expire, "FIELDS", len(fields), *pairs)
                elif expire is not None:
                    pipe.execute_command("HSET", row.key, *pairs)
                    pipe.execute_command("HPEXPIREAT", row.key, expire, "FIELDS", len(fields), *fields)
                else:
                    pipe.execute_command("HSET", row.key, *pairs)
                    if ttl_ms > 0:
                        pipe.execute_command("PEXPIRE", row.key, ttl_ms)
                if deletes:
                    pipe.execute_command("HDEL", row.key, *deletes)
        pipe.execute()
        return [[WRITTEN] * len(call.rows) for call in calls]

    return send


def run_segments(variant: Variant, pid: int, port: int, data: Path, users: int, workdir: Path) -> dict[str, int]:
    """Warm up, then count each segment; returns rows per segment, in dump order."""
    import redis
    from feast.data_source import PushMode

    from .paths import materialize_window

    control = CallgrindControl(pid)
    frames = benchrepo.generate(users, seed=42)
    pushes = benchrepo.push_frames(users, PUSH_BATCH, seed=43)
    warm = benchrepo.push_frames(10, 10, seed=44)[0]
    warm["user_id"] = [f"warm{i}" for i in range(len(warm))]
    rows = {"batch": 2 * users, "stream": users, "push": users}
    if variant.path in measure.RAW_SHAPES:
        client = redis.Redis(port=port, socket_timeout=120)

        def write(views: dict[str, Any]) -> None:
            measure.raw_write(client, views, "raw", variant.path, variant.hsetex)

        write({benchrepo.STREAM_VIEW: warm})
        control.measure(lambda: write({v: frames[v] for v in benchrepo.BATCH_VIEWS}))
        control.measure(lambda: write({benchrepo.STREAM_VIEW: frames[benchrepo.STREAM_VIEW]}))
        control.measure(lambda: [write({benchrepo.STREAM_VIEW: df}) for df in pushes])
        client.close()
        return rows
    kind = benchrepo.KINDS[variant.path]
    connection = f"127.0.0.1:{port}" + (",socket_timeout=120" if kind.store == "hexpire" else "")
    paths = {view: data / f"{view}.parquet" for view in benchrepo.VIEWS}
    with measure.quiet():
        repo = benchrepo.build_repo(kind, connection, paths, benchrepo.new_run_id(), root=workdir)
    fs: Any = repo.store
    start, end = materialize_window()
    with patched(variant), measure.quiet():
        fs.push(benchrepo.PUSH_SOURCE, warm, to=PushMode.ONLINE)  # connections, the script load
        control.measure(lambda: fs.materialize(start, end, feature_views=list(benchrepo.BATCH_VIEWS)))
        control.measure(lambda: fs.materialize(start, end, feature_views=[benchrepo.STREAM_VIEW]))
        control.measure(lambda: [fs.push(benchrepo.PUSH_SOURCE, df, to=PushMode.ONLINE) for df in pushes])
    return rows


def run_segments_at_commit(
    variant: Variant, pid: int, port: int, data: Path, users: int, workdir: Path
) -> dict[str, int]:
    """The store's package as of `variant.commit`, driven by this harness in a child process."""
    assert variant.commit
    code = workdir / "code"
    code.mkdir()
    archive = subprocess.run(
        ["git", "archive", variant.commit, "feast_redis_hexpire"], cwd=ROOT, capture_output=True, timeout=60
    )
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {variant.commit} failed: {archive.stderr.decode(errors='replace')}")
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True, timeout=60)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(ROOT)])}
    cmd = [sys.executable, "-m", "benchmarks.server_cost", "--child", variant.name, "--pid", str(pid)]
    cmd += ["--port", str(port), "--data", str(data), "--users", str(users), "--workdir", str(workdir)]
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child for {variant.name} exited {done.returncode}: {done.stderr[-3000:]}")
    result: dict[str, int] = json.loads(lines[-1][len(MARK) :])
    return result


# ---------------------------------------------------------------- reading the dumps


_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)(?:\s+\[(.+)\])?\s*$")


def annotate(dump: Path, inclusive: bool) -> dict[str, int]:
    """function -> instructions, from callgrind_annotate (every function: threshold 100).
    A function inlined into several files is listed once per file: self costs add up,
    inclusive costs overlap (the largest is the function's)."""
    text = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", str(dump)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    costs: dict[str, int] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or "PROGRAM TOTALS" in m.group(2):
            continue
        name = re.sub(r"\.(lto_priv|constprop|isra|part|cold)\.\d+", "", m.group(2).rsplit(":", 1)[-1])
        obj = Path(m.group(3)).name if m.group(3) else ""
        if obj and obj not in ("redis-server", "valkey-server"):
            name = f"{name} ({obj})"
        cost = int(m.group(1).replace(",", ""))
        costs[name] = max(costs.get(name, 0), cost) if inclusive else costs.get(name, 0) + cost
    return costs


def totals(dump: Path) -> int:
    m = re.search(r"^totals:\s+(\d+)", dump.read_text(errors="replace"), re.M)
    if not m:
        raise RuntimeError(f"{dump} has no totals line")
    return int(m.group(1))


def breakdown(incl: dict[str, int], total: int) -> dict[str, int]:
    """Where a segment's instructions go: input handling, the script's own work, each data
    command (inclusive). Lua rows appear only when EVALSHA ran."""
    commands = {label: sum(incl.get(fn, 0) for fn in fns) for label, fns in COMMANDS.items()}
    commands = {label: cost for label, cost in commands.items() if cost}
    out = {
        "total (without serverCron)": total,
        "read + parse requests": incl.get("readQueryFromClient", 0) - incl.get("processCommand", 0),
    }
    evalsha = incl.get("evalShaCommand", 0)
    if evalsha:
        out["EVALSHA, all of it"] = evalsha
    lua_call = incl.get("luaRedisGenericCommand", 0)
    if evalsha and lua_call:  # Valkey's stripped binary names none of its Lua functions
        out["  KEYS/ARGV into Lua tables"] = incl.get("luaCreateArray", 0)
        out["  Lua code outside redis.call"] = evalsha - lua_call - incl.get("luaCreateArray", 0)
        out["  redis.call, minus the command"] = lua_call - sum(commands.values())
    for label, cost in commands.items():
        out[label] = cost
    if incl.get(LISTPACK_CONVERSION):
        out["  listpack -> listpackex (first field TTL)"] = incl[LISTPACK_CONVERSION]
    return out


def read_segment(dump: Path, rows: int, with_functions: bool) -> dict[str, Any]:
    total = totals(dump)
    incl = annotate(dump, inclusive=True)
    cron = incl.get(CRON, 0)
    out: dict[str, Any] = {
        "rows": rows,
        "instructions": total,
        "server_cron": cron,
        "per_row": round((total - cron) / rows, 1),
        "per_row_with_cron": round(total / rows, 1),
        "breakdown_per_row": {label: round(cost / rows, 1) for label, cost in breakdown(incl, total - cron).items()},
    }
    if with_functions:
        own = annotate(dump, inclusive=False)
        top = sorted(own.items(), key=lambda kv: -kv[1])[:15]
        out["self_per_row"] = {name: round(cost / rows, 1) for name, cost in top}
    return out


# ---------------------------------------------------------------- a run


def run_variant(
    variant: Variant,
    data: Path,
    users: int,
    log: Callable[[str], None],
    keep: Path | None = None,
    server: str = "redis",
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"feast-hexpire-cg-{variant.name}-"))
    try:
        with callgrind_redis(workdir, server) as (pid, port, out):
            runner = run_segments_at_commit if variant.commit else run_segments
            rows = runner(variant, pid, port, data, users, workdir)
        dumps = sorted(workdir.glob(out.name + ".*"), key=lambda p: int(p.suffix[1:]))
        if len(dumps) != len(SEGMENTS):
            raise RuntimeError(f"expected {len(SEGMENTS)} callgrind dumps, found {[d.name for d in dumps]}")
        segments = {
            seg: read_segment(dump, rows[seg], variant.name in BREAKDOWN_VARIANTS) for seg, dump in zip(SEGMENTS, dumps)
        }
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for seg, dump in zip(SEGMENTS, dumps):
                shutil.copy(dump, keep / f"{variant.name}-{seg}.callgrind")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    batch, stream = segments["batch"], segments["stream"]
    materialize = (batch["per_row"] * batch["rows"] + stream["per_row"] * stream["rows"]) / (
        batch["rows"] + stream["rows"]
    )
    result = {
        **asdict(variant),
        "segments": segments,
        "per_row": {
            "materialize": round(materialize, 1),
            **{seg: segments[seg]["per_row"] for seg in SEGMENTS},
        },
    }
    log(
        f"server cost {variant.name}: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in result["per_row"].items())
        + " instructions/row"
    )
    return result


def run(
    names: Sequence[str],
    users: int = USERS,
    log: Callable[[str], None] = log_stderr,
    keep: Path | None = None,
    server: str = "redis",
) -> dict[str, Any]:
    """Every named variant, each on its own redis-server (or valkey-server) under callgrind."""
    from .paths import provider_missing

    out: dict[str, Any] = {
        "server": server,
        "users": users,
        "segments": {"batch": "materialize, 2 batch views", "stream": "materialize, stream view", "push": "push"},
        "per_row_excludes": CRON,
        "variants": {},
    }
    data = Path(tempfile.mkdtemp(prefix="feast-hexpire-cg-data-"))
    try:
        benchrepo.write_parquet(benchrepo.generate(users, seed=42), data)
        for name in names:
            variant = VARIANTS[name]
            if variant.path == "hexpire_fast":
                reason = provider_missing()
                if reason:
                    out["variants"][name] = {**asdict(variant), "error": f"not available: {reason}"}
                    log(f"server cost {name}: not available: {reason}")
                    continue
            try:
                out["variants"][name] = run_variant(variant, data, users, log, keep, server)
            except Exception as exc:  # noqa: BLE001 - one variant's failure is reported, the rest run
                out["variants"][name] = {**asdict(variant), "error": f"{type(exc).__name__}: {exc}"}
                log(f"server cost {name}: FAILED: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=None, help=f"default {USERS}, --quick {QUICK_USERS}")
    parser.add_argument("--variants", default=None, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--quick", action="store_true", help=f"{', '.join(PATH_VARIANTS)} only, fewer users")
    parser.add_argument("--out", type=Path, default=None, help=f"default {DEFAULT_OUT} (Redis), or ..._valkey.json")
    parser.add_argument("--server", choices=("redis", "valkey"), default="redis", help="the server to measure")
    parser.add_argument(
        "--keep-dumps",
        type=Path,
        default=None,
        metavar="DIR",
        help="copy each segment's callgrind dump here (<variant>-<segment>.callgrind) for callgrind_annotate",
    )
    # the child of a variant at another commit:
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    users = args.users or (QUICK_USERS if args.quick else USERS)
    if args.child:
        rows = run_segments(VARIANTS[args.child], args.pid, args.port, args.data, users, args.workdir)
        print(MARK + json.dumps(rows), flush=True)
        return 0
    names = args.variants.split(",") if args.variants else (PATH_VARIANTS if args.quick else DEFAULT_VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    from devsupport.redis_server import use_server_kind

    from . import report
    from .harness import machine_info, redis_client, redis_server, write_json

    out = args.out or (DEFAULT_OUT if args.server == "redis" else DEFAULT_OUT.with_name("server_cost_valkey.json"))
    with use_server_kind(args.server), redis_server(None) as server:  # machine info names the measured binary
        client = redis_client(server)
        machine = machine_info(client)
        client.close()
    result = {"machine": machine, **run(names, users, keep=args.keep_dumps, server=args.server)}
    print(report.render_server_cost(result))
    write_json(out, result)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
