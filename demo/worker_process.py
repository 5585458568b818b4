"""The streaming worker in a process of its own, driven from the demo's server process.

In the server's process the worker's pushes (pandas, Arrow, Feast: tens of ms of Python
a second at 10,000 users) held the GIL that the page's reads wait for: a read whose own
work is ~1 ms showed 10-40 ms at p90. A real stream processor is another process too.
:class:`WorkerProcess` has :class:`~demo.worker.DemoWorker`'s methods and runs one in a
child (``python -m demo.worker_process``, a fresh interpreter: no inherited Redis
connections or locks, and no re-import of whatever script made the runtime), which builds
its own FeatureStore on the working repo. Each call is one request and one answer on a pipe,
so ``hold``/``follow`` return only once the child's in-flight push has finished, as
before. The child exits when the server closes it or dies (its pipe ends).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from . import CHECKOUT

logger = logging.getLogger(__name__)

START_TIMEOUT = 180.0
"""Seconds the first call may wait: the child imports Feast and opens the repo."""
CALL_TIMEOUT = 60.0
"""Seconds any later call may wait (a push in flight finishes first)."""

Settings = Callable[[], dict[str, Any]]


def _serve(conn: Connection, repo: str, interval_seconds: float, min_batch: int, paused: bool) -> None:
    """The child: answer ``(method, args)`` requests with ``(ok, result or exception)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle; it closes us
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("feast", "feature_repo.stream_producer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from feast import FeatureStore

    from .worker import DemoWorker

    worker: DemoWorker | None = None
    store: Any = None
    try:
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError):  # the server is gone
                return
            if method == "close":
                conn.send((True, None))
                return
            try:
                if worker is None:
                    store = FeatureStore(repo_path=repo)
                    worker = DemoWorker(store, interval_seconds=interval_seconds, min_batch=min_batch, paused=paused)
                if method == "configure":  # the server changed the TTLs of later writes
                    for name, value in args[0].items():
                        setattr(store.config.online_store, name, value)
                    result = None
                elif method == "status":
                    result = worker.status()
                    result["store_counters"] = store._get_provider().online_store.stats.as_dict()
                else:
                    result = getattr(worker, method)(*args)
                conn.send((True, result))
            except Exception as exc:  # noqa: BLE001 - a DemoError for the user, or a bug: the server decides
                try:
                    conn.send((False, exc))
                except Exception:  # noqa: BLE001 - an exception that does not pickle
                    conn.send((False, RuntimeError(f"streaming worker: {type(exc).__name__}: {exc}")))
    finally:
        if worker is not None:
            worker.close()


class WorkerProcess:
    """:class:`~demo.worker.DemoWorker`'s interface, served by a child process.

    ``settings`` gives the store settings the child's pushes must follow (the TTLs the
    server may change between loads); they are sent before every ``follow``.
    """

    def __init__(self, repo: str, *, interval_seconds: float, min_batch: int, paused: bool, settings: Settings) -> None:
        self.paused_by_user = paused
        self._settings = settings
        self._lock = threading.Lock()
        self._started = False
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CHECKOUT), env.get("PYTHONPATH", "")) if p)
        # Imports Feast while the server applies and loads.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "demo.worker_process", str(theirs.fileno()), repo]
            + [str(interval_seconds), str(min_batch), "paused" if paused else "running"],
            pass_fds=[theirs.fileno()],
            env=env,
        )
        theirs.close()
        self._conn = Connection(ours.detach())

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            if self._process.poll() is not None:
                raise RuntimeError(f"the streaming worker process exited (code {self._process.returncode})")
            try:
                self._conn.send((method, args))
                if not self._conn.poll(CALL_TIMEOUT if self._started else START_TIMEOUT):
                    raise RuntimeError(f"the streaming worker process did not answer {method!r}")
                self._started = True
                ok, result = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise RuntimeError(f"the streaming worker process is gone ({exc})") from exc
        if not ok:
            raise result
        return result

    def hold(self) -> None:
        self._call("hold")

    def follow(self, users: Sequence[str], ttl_seconds: int | None) -> None:
        self._call("configure", self._settings())
        self._call("follow", list(users), ttl_seconds)

    def toggle(self, action: str | None = None) -> str:
        result: str = self._call("toggle", action)
        self.paused_by_user = result == "pause"
        return result

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._call("status")
        return status

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._call("close")
            except RuntimeError as exc:
                logger.warning("streaming worker process did not close cleanly: %s", exc)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._conn.close()


if __name__ == "__main__":
    fd, repo_path, interval, batch, start = sys.argv[1:6]
    _serve(Connection(int(fd)), repo_path, float(interval), int(batch), start == "paused")
