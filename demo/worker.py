"""The streaming worker as the demo runs it.

The demo's users change (bulk loads, resets) and so may the stream TTL; the worker must
stream for exactly the loaded users at the current TTL, stay paused when the user paused
it, and keep still while a load or reset runs. Counters survive a worker's replacement,
so the page's totals never go back. It runs in the worker's own process
(``worker_process``), driven from the server's.

It writes as a stream processor would: one event per ``EventWriter.write`` call (the
store's per-event API), each stamped with its own event time, and reads the last event of
each tick back through ``get_online_features`` to measure the event-to-visible lag.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .errors import Conflict, DemoError, shown

logger = logging.getLogger(__name__)

WORKER_SEED = 7
TOTALS = ("ticks", "rows_pushed", "failed_ticks", "rows_skipped", "embeddings_written", "events_written")
WRITE_MODE = "events"
"""One event per write through EventWriter (feature_repo.stream_producer's write_mode)."""


class DemoWorker:
    """One :class:`~feature_repo.stream_producer.StreamingWorker` at a time, for the loaded users."""

    def __init__(self, store: Any, *, interval_seconds: float, min_batch: int, paused: bool) -> None:
        self.store = store
        self.interval_seconds = interval_seconds
        self.min_batch = min_batch
        self.paused_by_user = paused
        self._lock = threading.RLock()
        self._worker: Any = None  # StreamingWorker
        self._started = False
        self._users = 0
        self._retired: Counter[str] = Counter()
        self._retired_error: str | None = None

    def hold(self) -> None:
        """Pause until the next :meth:`follow` (a load is running); returns once an
        in-flight tick has finished."""
        with self._lock:
            if self._worker is not None and self._started:
                self._worker.pause()

    def follow(self, users: Sequence[str], ttl_seconds: int | None) -> None:
        """Stream for exactly ``users`` at ``ttl_seconds``; run unless the user paused it.
        With no users it pauses, and returns once an in-flight tick has finished."""
        with self._lock:
            self._users = len(users)
            if users and (self._worker is None or self._worker.user_ids != list(users)):
                self._replace(users, ttl_seconds)
            elif self._worker is not None:
                self._worker.ttl_seconds = ttl_seconds
            self._apply()

    def _replace(self, users: Sequence[str], ttl_seconds: int | None) -> None:
        from feature_repo.stream_producer import StreamingWorker

        old = self._worker
        if old is not None:
            old.stop(timeout=10)
            status = old.status()
            for name in TOTALS:
                self._retired[name] += int(status.get(name) or 0)
            self._retired_error = status.get("last_error") or self._retired_error
        self._worker = StreamingWorker(
            self.store,
            list(users),
            interval_seconds=self.interval_seconds,
            batch_size=self.min_batch,
            seed=WORKER_SEED,
            ttl_seconds=ttl_seconds,
            write_mode=WRITE_MODE,
        )
        self._started = False

    def _apply(self) -> None:
        worker = self._worker
        if worker is None:
            return
        if self._users and not self.paused_by_user:
            if self._started:
                worker.resume()
            else:
                worker.start()
                self._started = True
        elif self._started:
            worker.pause()

    def toggle(self, action: str | None = None) -> str:
        """Pause or resume (``None``: the other one of the current state); returns which."""
        if action not in (None, "pause", "resume"):
            raise DemoError(f"action must be 'pause' or 'resume', got {shown(action)}", 422)
        with self._lock:
            if not self._users:
                raise Conflict("no users are loaded, so there is nothing to stream: bulk-load first")
            if action is None:
                action = "resume" if self.paused_by_user else "pause"
            self.paused_by_user = action == "pause"
            self._apply()
        logger.info("streaming worker %s", "paused" if action == "pause" else "resumed")
        return action

    def status(self) -> dict[str, Any]:
        with self._lock:
            worker = self._worker
            status: dict[str, Any] = {"state": "idle", "last_error": None} if worker is None else worker.status()
            if worker is not None and not self._started:
                status["state"] = "paused"
            for name in TOTALS:
                status[name] = int(status.get(name) or 0) + self._retired[name]
            status["last_error"] = status.get("last_error") or self._retired_error
            status["paused_by_user"] = self.paused_by_user
            if not self._users:
                # The retired round-robin is no plan any more: say none rather than its pace.
                status.update(state="idle", note="no users loaded", users=0, batch_size=0, cycle_seconds=None)
                status["rate_rows_per_second"] = 0.0
                status["events_per_second"] = 0.0
            return status

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop(timeout=10)
