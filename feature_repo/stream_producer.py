"""A synthetic streaming producer for the demo repo's ``user_activity`` view.

It plays the part of a stream processor: every tick it draws login and transaction
events for the next users in a round-robin over all of them, keeps per-user rolling
windows, and writes the resulting ``user_activity`` rows: through Feast's push API
in-process (``FeatureStore.push(..., to=PushMode.ONLINE)``, ``write_mode="push"``), over
HTTP to a ``feast serve`` ``/push`` endpoint, or one event per call through the store's
per-event API (``EventWriter``, ``write_mode="events"``), each event stamped with its own
event time as a stream processor emits it; or it adds them to a Redis Stream (``--stream``,
one ``XADD`` per row, pipelined) for ``feast-redis-hexpire ingest`` to write. The online store gives each written field its
own expiry, so a user the worker stops touching loses its activity features after the
stream TTL while keeping its batch features.

In-process, each row's embedding (``generate_data.user_embedding``) goes to the
``user_embedding_push`` source too when the repo has it (``user_embedding.py``), so the
vector view's per-field expiry follows the stream like the activity's.

In-process, each tick also measures the event-to-visible lag honestly: it reads the tick's
last event back through ``get_online_features`` until the event time it was written with
shows (:class:`LagSampler`).

Given the stream TTL, each tick pushes as many users as keep every user refreshed
``REFRESHES_PER_TTL`` times per TTL (scaled by the time since the previous tick, so a
slow push or a pause is caught up on): while the worker runs, no user's stream fields
expire, whatever the number of users.

CLI::

    python -m feature_repo.stream_producer --repo feature_repo \
        [--interval 1] [--users 200] [--batch-size 20] [--ttl-seconds N] [--seed 7] \
        [--push-url http://127.0.0.1:6566 | --events | --stream events [--redis-url redis://...]] [--ticks N]

Ctrl-C or SIGTERM stops it cleanly (the in-flight push finishes first).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .generate_data import user_embedding, user_ids_for

if TYPE_CHECKING:  # feast is imported lazily: the HTTP mode does not need it in-process
    from feast import FeatureStore

__all__ = [
    "LagSampler",
    "StreamingWorker",
    "UserActivityState",
    "main",
    "stream_ttl_of",
    "user_ids_for",
    "users_per_tick",
]

logger = logging.getLogger(__name__)

PUSH_SOURCE = "user_activity_push"
EMBEDDING_PUSH_SOURCE = "user_embedding_push"
"""Each activity row's embedding (generate_data.user_embedding) goes to this source too,
in-process, when the repo has it: the user_embedding view's per-field expiry follows the
stream like the activity's."""
TX_WINDOW = timedelta(minutes=5)
FAILED_LOGIN_WINDOW = timedelta(minutes=15)
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "BR", "IN", "JP", "CA"]
REFRESHES_PER_TTL = 2
"""Every user is pushed this many times per stream TTL: one late tick never expires anyone."""
RATE_WINDOW_SECONDS = 10.0
WRITE_MODES = ("push", "events")
LAG_SAMPLES = 60
"""Lag samples kept (one per tick): the last minute at the default interval."""
LAG_TIMEOUT_SECONDS = 5.0
"""How long a lag sample waits for its event to be readable before it counts as not seen."""


def users_per_tick(
    users: int, seconds: float, ttl_seconds: float | None, minimum: int = 1, refreshes: int = REFRESHES_PER_TTL
) -> int:
    """How many users a tick covering ``seconds`` must push so that a round-robin over
    ``users`` refreshes each of them ``refreshes`` times per TTL. Without a TTL (none,
    or 0 = no expiry) nothing goes stale: ``minimum`` per tick."""
    if not ttl_seconds or ttl_seconds <= 0:
        return min(minimum, users)
    cycle = ttl_seconds / refreshes
    return min(users, max(minimum, math.ceil(users * seconds / cycle)))


def stream_ttl_of(store: FeatureStore, push_source_name: str = PUSH_SOURCE) -> int | None:
    """The expiry the online store gives the fields of the view fed by ``push_source_name``
    (its tag, Feast ttl= or stream_ttl_seconds, as the store resolves it); None if none."""
    from feast_redis_hexpire.store import layout_of

    for view in store.list_feature_views():
        source = getattr(view, "stream_source", None)
        if source is not None and source.name == push_source_name:
            return layout_of(view, store.config).ttl_seconds or None
    return None


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class UserActivityState:
    """Rolling per-user state, so windowed counts rise and decay like real ones."""

    home_country: str
    devices: list[str]
    last_login_ts: datetime
    last_device_id: str
    session_country: str
    tx_times: deque[datetime] = field(default_factory=deque)
    failed_login_times: deque[datetime] = field(default_factory=deque)

    def prune(self, now: datetime) -> None:
        while self.tx_times and self.tx_times[0] <= now - TX_WINDOW:
            self.tx_times.popleft()
        while self.failed_login_times and self.failed_login_times[0] <= now - FAILED_LOGIN_WINDOW:
            self.failed_login_times.popleft()


class LagSampler:
    """Event-to-visible lag: from an event's event time to the first ``get_online_features``
    that returns it (its stream view's event timestamp at least the event's), polled from
    the write's return; also from the write call's start. One sample per tick, the last
    ``LAG_SAMPLES`` kept."""

    def __init__(self, store: FeatureStore, push_source_name: str) -> None:
        self.store = store
        self.view, self.ref = _stream_view_ref(store, push_source_name)
        self._samples: deque[tuple[float, float]] = deque(maxlen=LAG_SAMPLES)  # (event ms, write ms)
        self.unseen = 0
        self._lock = threading.Lock()

    def sample(self, user_id: str, event_time: datetime, write_started: float) -> float | None:
        """Read ``user_id`` until the event is visible; the lag in ms from ``event_time``
        (None if not seen within ``LAG_TIMEOUT_SECONDS``). ``write_started`` is the wall
        clock (``time.time()``) when the write call began."""
        wanted = event_time.timestamp()
        deadline = time.monotonic() + LAG_TIMEOUT_SECONDS
        while True:
            response = self.store.get_online_features(features=[self.ref], entity_rows=[{"user_id": user_id}])
            seen_at = time.time()
            stamps = response.proto.results[-1].event_timestamps
            # Microseconds are what the store keeps: compare at that precision.
            if stamps and round(stamps[0].seconds * 1e6 + stamps[0].nanos / 1e3) >= round(wanted * 1e6):
                break
            if time.monotonic() > deadline:
                with self._lock:
                    self.unseen += 1
                return None
            time.sleep(0.001)
        lag_ms = (seen_at - wanted) * 1000
        with self._lock:
            self._samples.append((lag_ms, (seen_at - write_started) * 1000))
        return lag_ms

    def summary(self) -> dict[str, Any]:
        with self._lock:
            samples = list(self._samples)
            unseen = self.unseen
        if not samples:
            return {"samples": 0, "unseen": unseen}
        events = sorted(e for e, _ in samples)
        writes = sorted(w for _, w in samples)

        def pick(values: list[float], q: float) -> float:
            return round(values[min(len(values) - 1, int(q * len(values)))], 2)

        return {
            "samples": len(samples),
            "unseen": unseen,
            "last_ms": round(samples[-1][0], 2),
            "p50_ms": pick(events, 0.5),
            "p99_ms": pick(events, 0.99),
            "max_ms": round(events[-1], 2),
            "from_write_call_p50_ms": pick(writes, 0.5),
        }


def _stream_view_ref(store: FeatureStore, push_source_name: str) -> tuple[str, str]:
    """The view fed by ``push_source_name`` and a feature ref of it to read."""
    for view in store.list_feature_views():
        source = getattr(view, "stream_source", None)
        if source is not None and source.name == push_source_name and view.features:
            return view.name, f"{view.name}:{view.features[0].name}"
    raise ValueError(f"no feature view is fed by push source {push_source_name!r}")


class StreamingWorker:
    """Pushes synthetic ``user_activity`` rows for the next users of a round-robin.

    ``store`` is a :class:`feast.FeatureStore` or a repo path; it may be ``None`` only
    when ``push_url`` is given (rows are then POSTed to ``<push_url>/push``).
    ``write_mode`` is ``"push"`` (one ``store.push`` per tick) or ``"events"`` (one
    ``EventWriter.write`` per event, each stamped with its own event time). ``sample_lag``
    (default: in events mode) reads each tick's last event back (:class:`LagSampler`).
    ``batch_size`` is the users per tick; with ``ttl_seconds`` (the stream TTL) it is the
    least, and a tick pushes as many as :func:`users_per_tick` says. ``ttl_seconds`` may
    be changed between ticks. A failed tick is logged and counted in :meth:`status`; the
    worker keeps going.
    """

    def __init__(
        self,
        store: FeatureStore | str | Path | None,
        user_ids: Sequence[str],
        interval_seconds: float = 1.0,
        batch_size: int = 20,
        seed: int = 0,
        push_url: str | None = None,
        *,
        ttl_seconds: float | None = None,
        push_source_name: str = PUSH_SOURCE,
        http_timeout: float = 10.0,
        clock: Callable[[], datetime] = _utc_now,
        stream_key: str | None = None,
        stream_client: Any = None,
        stream_maxlen: int | None = None,
        write_mode: str = "push",
        sample_lag: bool | None = None,
        embedding_source: str | None = EMBEDDING_PUSH_SOURCE,
    ) -> None:
        if not user_ids:
            raise ValueError("user_ids must not be empty")
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be > 0")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if stream_key is not None and push_url is not None:
            raise ValueError("give a push_url or a stream_key, not both")
        if store is None and push_url is None and stream_client is None:
            raise ValueError("give a FeatureStore / repo path, a push_url, or a stream_key and its stream_client")
        if write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode must be one of {WRITE_MODES}, got {write_mode!r}")
        if push_url is not None and write_mode != "push":
            raise ValueError("push_url writes through feast serve's /push: write_mode must be 'push'")
        if stream_key is not None and write_mode != "push":
            raise ValueError("stream_key adds the rows to a Redis Stream: write_mode must be 'push'")
        if isinstance(store, (str, Path)):
            from feast import FeatureStore

            store = FeatureStore(repo_path=str(store))
        self.store: FeatureStore | None = store
        self.user_ids: list[str] = list(user_ids)
        self.interval_seconds = float(interval_seconds)
        self.batch_size = min(int(batch_size), len(self.user_ids))
        self.ttl_seconds = ttl_seconds
        self.push_url = push_url.rstrip("/") if push_url else None
        self.push_source_name = push_source_name
        self.http_timeout = http_timeout
        self.stream_key = stream_key
        self.stream_maxlen = stream_maxlen
        if stream_key is not None and stream_client is None:
            assert self.store is not None
            from feast_redis_hexpire.clients import sync_client

            stream_client = sync_client(self.store.config.online_store)  # the store's own Redis
        self.stream_client = stream_client
        self._clock = clock
        self.write_mode = write_mode
        self._writer: Any = None  # EventWriter, made on the first events write
        self._embedding_writer: Any = None
        self.embedding_source = (
            _push_source_of(store, embedding_source) if push_url is None and stream_key is None else None
        )
        self.lag: LagSampler | None = None
        if sample_lag is None:  # by default where the demo shows it: the per-event writes
            sample_lag = write_mode == "events"
        if store is not None and push_url is None and sample_lag:
            self.lag = LagSampler(store, push_source_name)
        self._rng = random.Random(seed)
        self._users: dict[str, UserActivityState] = {}
        self._cursor = 0  # the round-robin's next user
        self.last_batch: pd.DataFrame | None = None
        """The rows of the most recent tick (pushed or not): for dashboards and tests."""

        # _tick_lock is held for the whole of a tick: pause()/stop() take it to wait
        # for an in-flight tick, and the loop re-checks _paused under it.
        self._tick_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused = False
        self._ticks = 0
        self._rows_pushed = 0
        self._failed_ticks = 0
        self._embeddings = 0  # embedding rows written beside the activity rows
        self._skipped = 0  # rows the store skipped (stale, expired, future): events mode
        self._last_error: str | None = None
        self._last_tick_at: datetime | None = None
        self._last_tick_started: float | None = None  # monotonic
        self._last_tick_seconds: float | None = None
        self._last_batch_size = 0
        self._recent: deque[tuple[float, int]] = deque()  # (monotonic, rows) of recent pushes
        self._rate_since: float | None = None  # monotonic start of the current run

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Run ticks every ``interval_seconds`` in a daemon thread (resumes if paused)."""
        if self._thread is not None and self._thread.is_alive():
            self.resume()
            return
        self._stop_event.clear()
        with self._tick_lock:
            self._paused = False
            self._rate_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="feast-hexpire-streaming", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop ticking; returns only once an in-flight tick has finished."""
        with self._tick_lock:
            self._paused = True

    def resume(self) -> None:
        """Start ticking again right away."""
        with self._tick_lock:
            if self._paused:
                self._rate_since = time.monotonic()
            self._paused = False
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread after any in-flight tick; safe to call twice."""
        self._stop_event.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def planned_batch(self) -> int:
        """Users per tick at the nominal interval."""
        return users_per_tick(len(self.user_ids), self.interval_seconds, self.ttl_seconds, self.batch_size)

    def rate(self, now: float | None = None) -> float:
        """Rows pushed per second over the last ``RATE_WINDOW_SECONDS`` of running."""
        now = time.monotonic() if now is None else now
        with self._status_lock:
            while self._recent and self._recent[0][0] < now - RATE_WINDOW_SECONDS:
                self._recent.popleft()
            rows = sum(n for _, n in self._recent)
            since = self._rate_since
        if not rows:
            return 0.0
        running_for = now - since if since is not None else RATE_WINDOW_SECONDS
        return rows / max(self.interval_seconds, min(RATE_WINDOW_SECONDS, running_for))

    def status(self) -> dict[str, Any]:
        """Counters for dashboards/tests; ``state`` is running, paused or stopped."""
        alive = self._thread is not None and self._thread.is_alive()
        if not alive or self._stop_event.is_set():
            state = "stopped"
        elif self._paused:
            state = "paused"
        else:
            state = "running"
        batch = self.planned_batch()
        rate = self.rate() if state == "running" else 0.0
        with self._status_lock:
            return {
                "state": state,
                "ticks": self._ticks,
                "rows_pushed": self._rows_pushed,
                "failed_ticks": self._failed_ticks,
                "last_error": self._last_error,
                "last_tick_at": self._last_tick_at.isoformat() if self._last_tick_at else None,
                "last_tick_seconds": self._last_tick_seconds,
                "last_batch_size": self._last_batch_size,
                "users": len(self.user_ids),
                "batch_size": batch,
                "min_batch_size": self.batch_size,
                "interval_seconds": self.interval_seconds,
                "ttl_seconds": self.ttl_seconds,
                "cycle_seconds": round(math.ceil(len(self.user_ids) / batch) * self.interval_seconds, 3),
                "rate_rows_per_second": round(rate, 2),
                "push_mode": "http" if self.push_url else "stream" if self.stream_key else "python",
                # Each activity row is one event, and its embedding another, when written.
                "events_per_second": round(rate * (2 if self.embedding_source else 1), 2),
                "embeddings_written": self._embeddings,
                "events_written": self._rows_pushed + self._embeddings,
                "write_mode": "http" if self.push_url else "stream" if self.stream_key else self.write_mode,
                "rows_skipped": self._skipped,
                "lag": self.lag.summary() if self.lag is not None else None,
            }

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            with self._tick_lock:
                if not self._paused and not self._stop_event.is_set():
                    self._tick_locked()
            next_at += self.interval_seconds
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow push: don't try to catch up with a burst of ticks
                next_at, delay = time.monotonic(), 0.0
            self._wake.wait(delay)
            if self._wake.is_set():  # resume()/stop(): tick now, reset the schedule
                self._wake.clear()
                next_at = time.monotonic()

    # --------------------------------------------------------------------- ticks

    def tick(self) -> int:
        """Run one tick synchronously (also while paused); returns rows pushed, 0 on failure."""
        with self._tick_lock:
            return self._tick_locked()

    def _tick_locked(self) -> int:
        now = self._clock()
        started = time.monotonic()
        # A tick covers the time since the previous one: after a slow push or a pause it
        # pushes more, so the round-robin keeps its pace.
        since = started - self._last_tick_started if self._last_tick_started is not None else 0.0
        count = users_per_tick(len(self.user_ids), max(self.interval_seconds, since), self.ttl_seconds, self.batch_size)
        self._last_tick_started = started
        try:
            df = self.next_batch(now, count)
            self.last_batch = df
            last = self._push(df)
            if self.lag is not None and last is not None:
                self.lag.sample(*last)
        except Exception as exc:  # keep going: a stream producer must survive a bad push
            with self._status_lock:
                self._ticks += 1
                self._failed_ticks += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._last_tick_at = now
                self._last_tick_seconds = round(time.monotonic() - started, 3)
            logger.warning("streaming tick failed: %s: %s", type(exc).__name__, exc)
            logger.debug("streaming tick failure", exc_info=True)
            return 0
        with self._status_lock:
            self._ticks += 1
            self._rows_pushed += len(df)
            self._last_tick_at = now
            self._last_tick_seconds = round(time.monotonic() - started, 3)
            self._last_batch_size = len(df)
            self._recent.append((started, len(df)))
        logger.info("wrote %d user_activity rows (%s)", len(df), self.write_mode)
        return len(df)

    def next_users(self, count: int) -> list[str]:
        """The next ``count`` users of the round-robin (each at most once)."""
        n = len(self.user_ids)
        count = max(0, min(count, n))
        users = [self.user_ids[(self._cursor + i) % n] for i in range(count)]
        self._cursor = (self._cursor + count) % n
        return users

    def next_batch(self, now: datetime | None = None, count: int | None = None) -> pd.DataFrame:
        """Draw events at ``now`` for the next ``count`` users of the round-robin (default:
        :meth:`planned_batch`) and return the rows to push."""
        now = now or self._clock()
        users = self.next_users(self.planned_batch() if count is None else count)
        rows = [self._advance(uid, now) for uid in sorted(users)]
        df = pd.DataFrame(rows)
        for col in ("event_timestamp", "created", "last_login_ts"):
            df[col] = pd.to_datetime(df[col], utc=True)
        return df

    def _state(self, uid: str, now: datetime) -> UserActivityState:
        state = self._users.get(uid)
        if state is None:
            rng = self._rng
            home = rng.choice(COUNTRIES)
            devices = [f"dev-{rng.randrange(16**6):06x}" for _ in range(rng.randint(1, 3))]
            state = UserActivityState(
                home_country=home,
                devices=devices,
                last_login_ts=(now - timedelta(seconds=rng.randint(60, 6 * 3600))).replace(microsecond=0),
                last_device_id=devices[0],
                session_country=home,
            )
            self._users[uid] = state
        return state

    def _advance(self, uid: str, now: datetime) -> dict[str, Any]:
        """Apply this tick's events to one user and return its feature row."""
        rng = self._rng
        st = self._state(uid, now)
        # Logins: mostly successful; occasionally a credential-stuffing burst.
        if rng.random() < 0.02:
            st.failed_login_times.extend([now] * rng.randint(3, 6))
        elif rng.random() < 0.3:
            if rng.random() < 0.1:
                st.failed_login_times.append(now)
            else:
                st.last_login_ts = now.replace(microsecond=0)
                if rng.random() < 0.08:  # a new phone / browser
                    st.devices.append(f"dev-{rng.randrange(16**6):06x}")
                st.last_device_id = rng.choice(st.devices)
                st.session_country = st.home_country if rng.random() < 0.95 else rng.choice(COUNTRIES)
        # Transactions: a few per user per minute at most.
        st.tx_times.extend([now] * rng.choices([0, 1, 2, 3], weights=[55, 30, 10, 5])[0])
        st.prune(now)
        return {
            "user_id": uid,
            "last_login_ts": st.last_login_ts,
            "last_device_id": st.last_device_id,
            "tx_count_5m": len(st.tx_times),
            "failed_logins_15m": len(st.failed_login_times),
            "session_country": st.session_country,
            "event_timestamp": now,
            "created": now,
        }

    # ---------------------------------------------------------------------- push

    def _push(self, df: pd.DataFrame) -> tuple[str, datetime, float] | None:
        """Write the tick's rows; returns the last event's (user id, event time, wall
        clock at its write call) for the lag sample, None over HTTP or with no rows."""
        if self.push_url:
            self._push_http(df)
            return None
        if self.stream_key:
            self._add_to_stream(df)
            return None
        assert self.store is not None
        if self.write_mode == "events":
            return self._write_events(df)
        from feast.data_source import PushMode

        started = time.time()
        self.store.push(self.push_source_name, df, to=PushMode.ONLINE)
        if df.empty:
            return None
        if self.embedding_source:
            embeddings = df[["user_id", "event_timestamp", "created"]].copy()
            embeddings["embedding"] = [_embedding_of(row) for row in df.to_dict("records")]
            self.store.push(self.embedding_source, embeddings, to=PushMode.ONLINE)
            with self._status_lock:
                self._embeddings += len(embeddings)
        last = df.iloc[-1]
        return str(last["user_id"]), last["event_timestamp"].to_pydatetime(), started

    def _write_events(self, df: pd.DataFrame) -> tuple[str, datetime, float] | None:
        """One ``EventWriter.write`` per event, as a stream processor writes each event it
        has just computed: each is stamped with the time of its own write."""
        if self._writer is None:
            from feast_redis_hexpire.events import EventWriter

            self._writer = EventWriter(self.store, self.push_source_name)
            if self.embedding_source:
                self._embedding_writer = EventWriter(self.store, self.embedding_source)
        last: tuple[str, datetime, float] | None = None
        skipped = embeddings = 0
        for event in df.drop(columns=["created"], errors="ignore").to_dict("records"):
            event["last_login_ts"] = event["last_login_ts"].to_pydatetime()
            stamp = self._clock()
            event["event_timestamp"] = stamp
            started = time.time()
            result = self._writer.write(event)
            skipped += result.skipped
            # A skipped event (an older one than stored, say) never shows: no lag sample.
            last = (str(event["user_id"]), stamp, started) if result.written else None
            if self._embedding_writer is not None:
                embedded = self._embedding_writer.write(
                    {"user_id": event["user_id"], "embedding": _embedding_of(event), "event_timestamp": self._clock()}
                )
                skipped += embedded.skipped
                embeddings += embedded.written
        with self._status_lock:
            self._skipped += skipped
            self._embeddings += embeddings
        return last

    def _push_http(self, df: pd.DataFrame) -> None:
        """POST the rows to feast serve's /push (body: PushFeaturesRequest)."""
        payload = {
            "push_source_name": self.push_source_name,
            "df": http_push_columns(df),
            "to": "online",
        }
        request = urllib.request.Request(
            f"{self.push_url}/push",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:300]
            raise RuntimeError(f"POST {self.push_url}/push -> HTTP {exc.code}: {body}") from exc

    def _add_to_stream(self, df: pd.DataFrame) -> None:
        """XADD each row to the stream, all in one pipelined round trip."""
        pipe = self.stream_client.pipeline(transaction=False)
        for entry in stream_entries(df):
            pipe.xadd(self.stream_key, entry, maxlen=self.stream_maxlen, approximate=True)
        pipe.execute()


def stream_entries(df: pd.DataFrame) -> list[dict[str, str]]:
    """One Redis Stream entry per row, every value as text the way ``redis-cli XADD`` sends
    it: the event and created times as ISO 8601 with their offset, UnixTimestamp features
    as epoch seconds, numbers and strings as their text (what ``feast-redis-hexpire
    ingest`` reads)."""
    columns = http_push_columns(df)
    names = list(columns)
    return [
        {name: _entry_text(value) for name, value in zip(names, values) if value is not None}
        for values in zip(*columns.values())
    ]


def _entry_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _embedding_of(row: dict[str, Any]) -> list[float]:
    return user_embedding(
        str(row["user_id"]), int(row["tx_count_5m"]), int(row["failed_logins_15m"]), str(row["session_country"])
    )


def _push_source_of(store: FeatureStore | None, name: str | None) -> str | None:
    """``name`` if ``store``'s registry has that push source, else None (an older repo)."""
    if store is None or name is None:
        return None
    return name if any(source.name == name for source in store.list_data_sources()) else None


def http_push_columns(df: pd.DataFrame) -> dict[str, list[Any]]:
    """Column-oriented JSON for feast serve (it rebuilds the frame with ``pd.DataFrame``).

    Event/created timestamps go as ISO-8601 strings (Feast parses them with
    ``pd.to_datetime``); UnixTimestamp *features* go as integer epoch seconds, the
    form Feast's value conversion accepts without a datetime object.
    """
    out: dict[str, list[Any]] = {}
    for col in df.columns:
        series = df[col]
        if col in ("event_timestamp", "created"):
            out[col] = [ts.isoformat() for ts in pd.to_datetime(series, utc=True)]
        elif pd.api.types.is_datetime64_any_dtype(series):
            out[col] = [int(ts.timestamp()) for ts in pd.to_datetime(series, utc=True)]
        else:
            out[col] = [v.item() if hasattr(v, "item") else v for v in series.tolist()]
    return out


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM (a process manager, `kill`) both end in the clean stop below, also
    when the process started with SIGINT ignored, as a script's background job does."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feature_repo.stream_producer",
        description="Push synthetic user_activity features through Feast's push API.",
    )
    parser.add_argument("--repo", default="feature_repo", help="Feast repo directory")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    parser.add_argument("--users", type=int, default=200, help="user ids u0001..uNNNN")
    parser.add_argument(
        "--batch-size", type=int, default=20, help="users per tick; with a stream TTL, the least per tick"
    )
    parser.add_argument(
        "--ttl-seconds",
        type=float,
        default=None,
        help="stream TTL to pace the round-robin by (default: the repo's, in-process; none with --push-url)",
    )
    parser.add_argument("--seed", type=int, default=7)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--push-url", help="feast serve base URL; default: in-process push")
    target.add_argument(
        "--events", action="store_true", help="write one event per call through EventWriter instead of store.push"
    )
    target.add_argument(
        "--stream", metavar="KEY", help="XADD the rows to this Redis Stream instead of pushing them (for `ingest`)"
    )
    parser.add_argument(
        "--redis-url", help="with --stream: the Redis holding the stream (default: the repo's online store)"
    )
    parser.add_argument("--stream-maxlen", type=int, default=None, help="with --stream: trim it to about N entries")
    parser.add_argument("--ticks", type=int, help="stop after N ticks (default: run until Ctrl-C)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # Feast logs a registry refresh per push at INFO
        logging.getLogger("feast").setLevel(logging.WARNING)

    store = None
    ttl = args.ttl_seconds
    stream_client = None
    if args.stream and args.redis_url:
        import redis

        stream_client = redis.Redis.from_url(args.redis_url)
    if not args.push_url:
        from feast import FeatureStore

        store = FeatureStore(repo_path=args.repo)
        if ttl is None:
            ttl = stream_ttl_of(store)
    worker = StreamingWorker(
        store,
        user_ids_for(args.users),
        interval_seconds=args.interval,
        batch_size=args.batch_size,
        seed=args.seed,
        push_url=args.push_url,
        ttl_seconds=ttl,
        stream_key=args.stream,
        stream_client=stream_client,
        stream_maxlen=args.stream_maxlen,
        write_mode="events" if args.events else "push",
    )
    _stop_on_signals()
    try:
        if args.ticks is not None:
            for i in range(args.ticks):
                started = time.monotonic()
                worker.tick()
                if i + 1 < args.ticks:
                    time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
        else:
            worker.start()
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("interrupted, stopping")
    finally:
        worker.stop()
    print(json.dumps(worker.status()))
    return 0 if worker.status()["failed_ticks"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
