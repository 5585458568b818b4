"""Failure injection on loopback, for the fault tests: a proxy that cuts connections,
rows that say which generation wrote them (so a torn, lost or wrong value shows), and a
read/write load that checks every reply while a fault is injected. Redis processes are
restarted, hung (SIGSTOP) and filled through `devsupport.redis_server.LocalRedisServer`.
Nothing here mocks Redis: every fault is one a real client sees from a real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_redis_hexpire.views import ViewLayout, view_layout
from tests.support.store import batch_view, run_async, stream_view, user_key

# ---------------------------------------------------------------- the proxy


class DroppingProxy:
    """A loopback TCP proxy to Redis that cuts connections in two ways.

    `armed`: forward the next request, then close the client's connection before any reply
    reaches it (a batch applied on the server but never acknowledged, the worst case for a
    retry). `cut_at_random`: every connection gets a random budget of request bytes and of
    reply bytes; the chunk that exhausts one is forwarded only up to the budget and both
    sides are closed, so requests are cut mid-command and replies mid-reply."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = threading.Event()
        self.drops = 0
        self.cuts = 0
        self._random: random.Random | None = None
        self._max_bytes = {True: 0, False: 0}
        self._epoch = 0  # bumped when cutting starts or stops: budgets are drawn again
        self.before_reply: Callable[[bytes], Any] | None = None
        """Called with each chunk of replies before the client gets it: lets a test change
        the server at an exact point of a conversation (e.g. flush its scripts)."""
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_at_random(self, seed: int, max_request_bytes: int, max_reply_bytes: int) -> None:
        """From now on every connection, open or new, is cut after uniform(1, max) more
        bytes in one direction or the other."""
        with self._lock:
            self._random = random.Random(seed)
            self._max_bytes = {True: max_request_bytes, False: max_reply_bytes}
            self._epoch += 1

    def stop_cutting(self) -> None:
        with self._lock:
            self._random = None
            self._epoch += 1

    def _budget(self, requests: bool) -> tuple[int, float]:
        """(the cutting epoch, bytes this direction of a connection may still carry)."""
        with self._lock:
            if self._random is None:
                return self._epoch, float("inf")
            return self._epoch, self._random.randint(1, self._max_bytes[requests])

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the server is down: the client sees a dropped connection
                continue
            with self._lock:
                self._open.update((client, upstream))
            cut = threading.Event()  # set: replies on this connection are swallowed
            pair = (client, upstream)
            for source, target, requests in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, target, cut, pair, requests), daemon=True).start()

    def _close(self, pair: tuple[socket.socket, socket.socket]) -> None:
        for sock in pair:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                self._open.discard(sock)

    def _pump(self, source, target, cut, pair, requests: bool) -> None:
        """Forward `source` to `target` until either side closes or the byte budget runs out.
        On the request side an armed proxy forwards one chunk and then stops replies."""
        epoch, budget = self._budget(requests)
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                break
            if not data:
                break
            if requests and self.armed.is_set():
                self.armed.clear()
                self.drops += 1
                cut.set()
                target.sendall(data)
                time.sleep(0.2)  # let the server run the batch; its replies go nowhere
                break
            if not requests and cut.is_set():
                continue
            if not requests and self.before_reply is not None:
                self.before_reply(data)
            if epoch != self._epoch:
                epoch, budget = self._budget(requests)
            exhausted = len(data) >= budget
            if exhausted:
                self.cuts += 1
                data = data[: int(budget)]  # part of a command, or part of a reply
            budget -= len(data)
            try:
                target.sendall(data)
            except OSError:
                break
            if exhausted:
                break
        self._close(pair)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            try:
                sock.close()
            except OSError:
                pass


# ---------------------------------------------------------------- generation-stamped rows

VIEWS = (batch_view(), stream_view())
"""A batch view (key-level TTL) and a stream view (per-field expiry) of one entity."""


def base_time() -> datetime:
    """Event times are `base + generation µs`: recent, so stream rows are far from expiry."""
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=30)


def _stamped(dtype_name: str, generation: int) -> ValueProto:
    if dtype_name == "String":
        return ValueProto(string_val=f"g{generation}")
    if dtype_name == "Float64":
        return ValueProto(double_val=generation + 0.5)
    return ValueProto(int64_val=generation)


def _generation_of(text: str) -> int:
    """The inverse of `_stamped` on stored text (`g12`, `12`, `12.5`) or a proto's value."""
    return int(float(text.lstrip("g")))


def stamped_row(view: Any, user: str, generation: int, base: datetime) -> tuple:
    """A row whose every value and event time (`base + generation µs`) say `generation`."""
    values = {f.name: _stamped(str(f.dtype), generation) for f in view.features}
    return (user_key(user), values, base + timedelta(microseconds=generation), None)


def stamped_rows(view: Any, users: Sequence[str], generation: int, base: datetime) -> list[tuple]:
    return [stamped_row(view, uid, generation, base) for uid in users]


def read_generation(view: str, ts: datetime | None, values: dict[str, ValueProto] | None, base: datetime) -> int | None:
    """The generation a PRESENT read shows, or None for NOT_FOUND; raises AssertionError
    when its values disagree with each other or with its event time (a wrong value)."""
    if values is None:
        assert ts is None, f"{view}: NOT_FOUND with an event time {ts}"
        return None
    generations = {name: _generation_of(str(getattr(v, v.WhichOneof("val")))) for name, v in values.items()}
    assert ts is not None, f"{view}: values {generations} without an event time"
    from_ts = round((ts - base).total_seconds() * 1_000_000)
    assert set(generations.values()) == {from_ts}, f"{view}: values {generations} at event-time generation {from_ts}"
    return from_ts


def layouts(config: Any) -> dict[str, ViewLayout]:
    return {view.name: view_layout(view, config.online_store) for view in VIEWS}


def stored_generations(
    raw: Any, config: Any, users: Sequence[str], base: datetime
) -> dict[tuple[str, str], int | None]:
    """(user, view) -> the generation stored in Redis (None: absent). Raises AssertionError
    for a torn entity: some of a view's fields without the others, or fields of two
    generations side by side."""
    by_view = layouts(config)
    pipe = raw.pipeline(transaction=False)
    for uid in users:
        pipe.hgetall(f"fs:{config.project}:user_id={uid}")
    stored: dict[tuple[str, str], int | None] = {}
    for uid, fields in zip(users, pipe.execute()):
        for name, layout in by_view.items():
            wanted = [f.field for f in layout.features.values()]
            present = {f: fields[f] for f in wanted if f in fields}
            ts = fields.get(layout.ts_field)
            if not present and ts is None:
                stored[(uid, name)] = None
                continue
            assert ts is not None and len(present) == len(wanted), (
                f"torn {uid}/{name}: event time {ts!r}, fields {sorted(present)} of {sorted(wanted)}"
            )
            generations = {_generation_of(v.decode()) for v in present.values()}
            from_ts = int(ts) - int(base.timestamp() * 1_000_000)
            assert generations == {from_ts}, (
                f"torn {uid}/{name}: values of generations {generations}, event time {from_ts}"
            )
            stored[(uid, name)] = from_ts
    return stored


# ---------------------------------------------------------------- a checked load


@dataclass
class LoadResult:
    """What a load saw: per view the last generation written to every user and acknowledged,
    and the last one attempted; failed requests; reads that broke a rule."""

    acked: dict[str, int] = field(default_factory=dict)
    attempted: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    bad_reads: list[str] = field(default_factory=list)
    writes: int = 0
    reads: int = 0
    latencies: list[float] = field(default_factory=list)

    def record_error(self, what: str, exc: BaseException) -> None:
        self.errors.append(f"{what}: {type(exc).__module__}.{type(exc).__name__}: {exc}")

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)

    def check_read(self, view: str, rows: Sequence[tuple], acked_before: int, base: datetime) -> None:
        """A read may show only a whole generation, at least the one acknowledged before it
        started and at most the newest attempted."""
        for index, (ts, values) in enumerate(rows):
            try:
                generation = read_generation(view, ts, values, base)
            except AssertionError as exc:
                self.bad_reads.append(f"u{index}: {exc}")
                continue
            newest = self.attempted.get(view, 0)
            if generation is None and acked_before:
                self.bad_reads.append(f"u{index}/{view}: NOT_FOUND after generation {acked_before} was acknowledged")
            elif generation is not None and not acked_before <= generation <= newest:
                self.bad_reads.append(
                    f"u{index}/{view}: generation {generation} outside [{acked_before}, {newest}] (acknowledged, attempted)"
                )


def _writer(result: LoadResult, users: Sequence[str], base: datetime, stop: threading.Event) -> Iterator[tuple]:
    """Every view to every user, generation after generation: yields the requests to send
    and is sent each one's outcome (the reply or the exception)."""
    generation = 0
    while not stop.is_set():
        generation += 1
        for view in VIEWS:
            result.attempted[view.name] = generation
            outcome = yield "write", view, stamped_rows(view, users, generation, base)
            result.writes += 1
            if isinstance(outcome, BaseException):
                result.record_error(f"write {view.name} g{generation}", outcome)
            else:
                result.acked[view.name] = generation


def _reader(
    result: LoadResult, users: Sequence[str], base: datetime, stop: threading.Event, turn: int
) -> Iterator[tuple]:
    keys = [user_key(uid) for uid in users]
    while not stop.is_set():
        view = VIEWS[turn % len(VIEWS)]
        turn += 1
        acked_before = result.acked.get(view.name, 0)
        outcome = yield "read", view, keys
        if isinstance(outcome, BaseException):
            result.record_error(f"read {view.name}", outcome)
        else:
            result.reads += 1
            result.check_read(view.name, outcome, acked_before, base)


def run_load(
    store: Any,
    config: Any,
    users: Sequence[str],
    mode: str,
    fault: Callable[[], Any],
    base: datetime,
    readers: int = 2,
) -> LoadResult:
    """One writer (every user, every view, generation after generation) and `readers`
    readers (every user of one view per request, each reply checked by `check_read`) while
    `fault()` runs. `sync` sends through the sync API, each client in a thread of its own;
    `async` through the async API, as tasks of one event loop. Returns when `fault`
    returns and the requests in flight have finished."""
    result, stop = LoadResult(), threading.Event()

    async def send(kind: str, view: Any, payload: Any) -> Any:
        if mode == "sync" and kind == "write":
            return await asyncio.to_thread(store.online_write_batch, config, view, payload, None)
        if mode == "sync":
            return await asyncio.to_thread(store.online_read, config, view, payload)
        if kind == "write":
            return await store.online_write_batch_async(config, view, payload, None)
        return await store.online_read_async(config, view, payload)

    async def drive(requests: Iterator[tuple]) -> None:
        outcome: Any = None
        while True:
            try:
                request = requests.send(outcome)
            except StopIteration:
                return
            started = time.monotonic()
            try:
                outcome = await send(*request)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                outcome = exc
            result.latencies.append(time.monotonic() - started)
            await asyncio.sleep(0)

    async def main() -> None:
        loads = [_writer(result, users, base, stop)] + [_reader(result, users, base, stop, i) for i in range(readers)]
        tasks = [asyncio.create_task(drive(load)) for load in loads]
        try:
            await asyncio.to_thread(fault)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)

    run_async(store, main)
    return result


class RetriedErrors:
    """Counts the connection errors and timeouts the store's retry policy (sync and async)
    was asked about: evidence that a fault hit requests in flight, not only idle time."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> RetriedErrors:
        from feast_redis_hexpire import clients

        self._original = original = clients._RetryBudget.__call__
        counter = self

        def counting(budget: Any, error: Exception) -> bool:
            counter.count += 1
            return original(budget, error)

        clients._RetryBudget.__call__ = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from feast_redis_hexpire import clients

        clients._RetryBudget.__call__ = self._original  # type: ignore[method-assign]


# ---------------------------------------------------------------- client processes


class ClientProcess:
    """A store client in a process of its own, forked from the test (so it starts in
    milliseconds instead of paying Feast's import again) and killable with SIGKILL at any
    moment. The store sees a new process: its clients are per pid, so the child connects
    and runs the server check afresh. `target(report)` runs in the child; each
    `report(line)` reaches `lines` in the parent at once (one write() on a pipe, drained by
    a thread), so what a killed child acknowledged before dying is known exactly."""

    def __init__(self, target: Callable[[Callable[[str], None]], Any]) -> None:
        self.lines: list[str] = []
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(read_end)
                target(lambda line: os.write(write_end, (line + "\n").encode()))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                os.write(write_end, f"ERROR {type(exc).__module__}.{type(exc).__name__}: {exc}\n".encode()[:4000])
                code = 1
            finally:
                os._exit(code)
        os.close(write_end)
        self.pid = pid
        self._reader = threading.Thread(target=self._drain, args=(read_end,), daemon=True)
        self._reader.start()
        self.returncode: int | None = None

    def _drain(self, fd: int) -> None:
        buffered = b""
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                buffered += chunk
                *complete, buffered = buffered.split(b"\n")
                self.lines.extend(line.decode() for line in complete)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"client process {self.pid} still running after {timeout} s")
            time.sleep(0.01)
        self._reader.join(timeout=10)
        return self.returncode

    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith("ERROR")]


@contextlib.contextmanager
def aof_workdir(fallback: Path) -> Iterator[Path]:
    """A directory for a server with `appendfsync always`, on tmpfs when the machine has
    one: the tests are about what the store does across restarts, and an fsync that waits
    behind other processes' disk writes for longer than socket_timeout would make them
    about the disk instead."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield fallback
        return
    directory = Path(tempfile.mkdtemp(prefix="feast-hexpire-aof-", dir=shm))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
