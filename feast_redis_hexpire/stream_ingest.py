"""The Redis Streams ingester: a consumer group's entries written through the per-event API.

    ingester = StreamIngester(store, "user_activity_push", "events", "feast")
    ingester.run()        # until stop(), SIGTERM or SIGINT (with handle_signals=True)

Each step reads up to `batch` entries (`XREADGROUP`), writes the batch through
`EventWriter` (one round trip per node, every rule of every other write: newest-wins,
event-time expiry, skipped rows counted), and only then acknowledges (`XACK`) what Redis
acknowledged writing, in the round trip of the next read. A consumer that dies leaves its
entries pending; any consumer of the group claims them once they have been idle
`claim_idle_ms` (`XAUTOCLAIM`) and writes them.
Delivery is at-least-once; newest-wins makes a redelivered event rewrite the value it
already wrote (the same event time is rewritten), so what readers see is exactly-once.

An entry that cannot be written (a value of the wrong type, a missing join key, an
unreadable event time, anything the writer refuses as input) goes to the dead-letter
stream with the reason, the entry's id and its fields, and is acknowledged: it never
blocks the group. Entries the write rules skip (older than stored, already expired) are
not dead letters: they are counted as every write counts them.

A Redis error (a restart beyond the retry budget, OOM) leaves the batch pending and
unacknowledged; the loop waits and goes on, and the entries are claimed again later.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from . import metrics
from .clients import build_sync_client, sync_client
from .config import DEFAULT_SOCKET_TIMEOUT_SECONDS, RedisType
from .errors import InvalidInput, WriteFailed
from .stream_entries import Entry, EntryReader, EventGroup, ParsedBatch, Rejected, as_mapping

if TYPE_CHECKING:
    from feast import FeatureStore

    from .clients import SyncClient

logger = logging.getLogger(__name__)

DEAD_LETTER_SUFFIX = ":dead"
DEAD_LETTER_FIELDS = ("_reason", "_id", "_stream", "_group")
"""What a dead letter carries before the entry's own fields: why, the entry's id, and the
stream and group it was read from."""

BLOCK_MARGIN_S = 0.25
"""A blocking read must return before the socket times out: `block_ms` is capped at the
connection's socket_timeout minus this."""

REFUSED = (InvalidInput, ValueError, TypeError, OverflowError)
"""What the writer raises for an event it cannot take: a dead letter, not a retry. (Redis
errors are neither: they leave the batch pending.)"""

RETRIED = (redis.RedisError, OSError, WriteFailed)
"""Errors `run()` waits out: Redis unreachable past the retry budget, or refusing a write
(OOM, a failover's READONLY). The batch stays pending and is read again."""

ERROR_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
STATS_INTERVAL_S = 1.0
"""How often the group's pending count and lag are asked for (XINFO GROUPS) while metrics are on."""


@dataclass
class IngestStats:
    """What an ingester did since it started."""

    entries: int = 0  # read or claimed, each time it was delivered
    written: int = 0
    skipped: int = 0  # skipped by the write rules (stale, expired, future)
    dead_letters: int = 0
    deleted: int = 0  # pending entries whose content was gone (trimmed, XDEL)
    claimed: int = 0
    batches: int = 0
    errors: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StepResult:
    """One step: how many entries it handled, and how."""

    source: str  # "own" (this consumer's pending history), "claimed", "new" or "none"
    entries: int = 0
    written: int = 0
    skipped: int = 0
    dead_letters: list[Rejected] = field(default_factory=list)
    deleted: int = 0
    event_micros: list[int] = field(default_factory=list)
    """The event times of the events written (or skipped by the rules), in microseconds."""
    written_at_us: int = 0
    """When the write's reply arrived (epoch microseconds): minus an event time, its age at write."""


@dataclass
class _Batch:
    """Entries read and parsed, on their way to the writer."""

    result: StepResult
    ids: list[bytes]
    parsed: ParsedBatch
    live: Sequence[Entry]  # the entries not deleted since they were added, as read


class StreamIngester:
    """Consumes `stream` as consumer `consumer` of `group`, writing each entry as an event
    of `push_source` (a push source, or a stream view, by name) of `store`.

    `batch`: entries per read (and per write). `block_ms`: how long a read waits for new
    entries. `claim_idle_ms`: how long an entry stays pending with a consumer before
    another may claim it. `dead_letter_stream`: where unwritable entries go (default
    `<stream>:dead`), capped at about `dead_letter_maxlen` entries. `start_id`: where a
    group created here starts (`0`: the whole stream; `$`: only new entries)."""

    def __init__(
        self,
        store: FeatureStore,
        push_source: str,
        stream: str,
        group: str,
        *,
        consumer: str | None = None,
        batch: int = 1000,
        block_ms: int = 500,
        claim_idle_ms: int = 30_000,
        dead_letter_stream: str | None = None,
        dead_letter_maxlen: int = 100_000,
        start_id: str = "0",
    ) -> None:
        from .events import EventWriter

        if batch < 1:
            raise ValueError("batch must be >= 1")
        if block_ms < 0 or claim_idle_ms < 1:
            raise ValueError("block_ms must be >= 0 and claim_idle_ms >= 1")
        self.store = store
        self.push_source = push_source
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self.dead_letter_stream = dead_letter_stream or stream + DEAD_LETTER_SUFFIX
        self.dead_letter_maxlen = dead_letter_maxlen
        self.start_id = start_id
        self.writer = EventWriter(store, push_source)
        self.project = store.project
        self.stats = IngestStats()
        self._store_config = store.config.online_store
        self.block_ms = min(block_ms, self._block_cap_ms())
        self._reader: EntryReader | None = None
        self._reader_schema: Any = None
        self._stop = threading.Event()
        self._own_history_done = False
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        self._next_stats = 0.0
        self._group_ready = False
        self._unacked: list[bytes] = []
        self._piggyback = self._store_config.redis_type is not RedisType.redis_cluster
        self._stream_client: Any = None
        self._stream_client_pid = 0

    # ------------------------------------------------------------ set-up

    @property
    def client(self) -> SyncClient:
        """The client of the stream commands: the stream sits on the store's Redis. On a
        single server it is a client of its own (retrying as every store command does),
        whose reads return Redis's flat field lists as they come: redis-py would build a
        dict per entry. Behind Sentinel and on a Cluster it is the store's own client, so
        that a batch's acknowledgement goes where its write went: were they to reach two
        primaries in the middle of a failover, an entry could be acknowledged on the new
        one while its write was lost with the old."""
        if self._store_config.redis_type is not RedisType.redis:
            return sync_client(self._store_config)
        if self._stream_client is None or self._stream_client_pid != os.getpid():
            client = build_sync_client(self._store_config)
            for command in ("XREADGROUP", "XAUTOCLAIM"):
                client.set_response_callback(command, _as_sent)
            self._stream_client, self._stream_client_pid = client, os.getpid()
        return self._stream_client

    def _block_cap_ms(self) -> int:
        params = self._store_config.parsed_connection.params
        timeout = params.get("socket_timeout", DEFAULT_SOCKET_TIMEOUT_SECONDS)
        if timeout is None:
            return 2**31
        return max(0, int((float(timeout) - BLOCK_MARGIN_S) * 1000))

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; an existing group is kept as it is."""
        try:
            self.client.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
            logger.info("created consumer group %r on stream %r at %s", self.group, self.stream, self.start_id)
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        self._group_ready = True

    def entry_reader(self) -> EntryReader:
        """How entries are read, rebuilt when the writer's schema changes (feast apply)."""
        schema = self.writer.schema
        if self._reader is None or schema != self._reader_schema:
            self._reader = EntryReader(schema, *self._source_columns())
            self._reader_schema = dict(schema)
        return self._reader

    def _source_columns(self) -> tuple[str, list[str]]:
        """The event time's column and the join keys every entry must carry."""
        timestamp = getattr(self.writer, "timestamp_column", None)
        join_keys = getattr(self.writer, "join_keys", None)
        if timestamp is None or join_keys is None:
            timestamp, join_keys = source_columns(self.store, self.push_source)
        return timestamp, list(join_keys)

    # ------------------------------------------------------------ the loop

    def run(self, *, handle_signals: bool = False) -> IngestStats:
        """Step until `stop()` (or SIGTERM / SIGINT with `handle_signals`, from the main
        thread): the batch in hand is written and acknowledged first. Redis errors are
        logged and waited out; this consumer's pending entries are then read again.

        One step after the other: writing a batch in a second thread while the next is
        read and parsed measured slower (the two threads contend for the GIL; see
        benchmarks/ingest.py)."""
        with self._signals_stop() if handle_signals else _nothing():
            failures = 0
            while not self._stop.is_set():
                try:
                    self.run_once()
                    failures = 0
                except RETRIED as exc:
                    failures = self._failed(exc, failures)
            try:
                self.flush_acks()
            except (redis.RedisError, OSError) as exc:  # they are delivered again: at least once
                logger.warning("stream %r: last acknowledgements not sent: %s", self.stream, exc)
        metrics.flush_ingest()
        return self.stats

    def _failed(self, exc: BaseException, failures: int) -> int:
        """Count and log a Redis error, wait (backing off), and read this consumer's own
        pending entries again next: what it read and did not write is retried at once."""
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self._own_history_done = False
        pause = ERROR_BACKOFF_S[min(failures, len(ERROR_BACKOFF_S) - 1)]
        logger.warning("stream %r: %s; trying again in %.1f s", self.stream, self.stats.last_error, pause)
        self._stop.wait(pause)
        return failures + 1

    def stop(self) -> None:
        """End `run()` after the current step (a blocked read returns within `block_ms`)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @contextmanager
    def _signals_stop(self) -> Iterator[None]:
        def handler(signum: int, frame: object) -> None:
            logger.info("signal %d: stopping after the current batch", signum)
            self.stop()

        previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def run_once(self, block_ms: int | None = None) -> StepResult:
        """One step: this consumer's own pending entries first (after a restart under the
        same name), then, when due, entries idle with other consumers; else new entries,
        waiting up to `block_ms` for them. Each is written, then acknowledged."""
        if not self._group_ready:
            self.ensure_group()
        self._report_group()
        source, entries = self._next(self.block_ms if block_ms is None else block_ms)
        if not entries:
            return StepResult("none")
        batch = self._prepare(source, entries)
        self._complete(batch)
        return self._finish(batch)

    def _next(self, block_ms: int) -> tuple[str, list[Entry]]:
        """The next entries to handle, and where they come from."""
        if not self._own_history_done:
            entries = self._read("0", 0)
            if entries:
                return "own", entries
            self._own_history_done = True
        if time.monotonic() >= self._next_claim:
            claimed = self._claim()
            if claimed:
                self.stats.claimed += len(claimed)
                return "claimed", claimed
        return "new", self._read(">", block_ms)

    # ------------------------------------------------------------ Redis

    def _read(self, start: str, block_ms: int) -> list[Entry]:
        """XREADGROUP; the acknowledgements of the batch before go in the same round trip."""
        acks, self._unacked = self._unacked, []
        read = (self.group, self.consumer, {self.stream: start})
        options = {"count": self.batch, "block": block_ms or None}
        reply: Any
        if acks:
            pipe = self.client.pipeline(transaction=False)
            pipe.xack(self.stream, self.group, *acks)
            pipe.xreadgroup(*read, **options)  # type: ignore[arg-type]
            try:
                _, reply = pipe.execute()
            except BaseException:
                self._unacked = acks + self._unacked  # sent again with the next read
                raise
        else:
            reply = self.client.xreadgroup(*read, **options)  # type: ignore[arg-type]
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3 (protocol=3): {stream: entries}
            entries = next(iter(reply.values()))
            if entries and isinstance(entries[0], list) and entries[0] and isinstance(entries[0][0], (list, tuple)):
                entries = entries[0]  # redis-py's parsed form nests them once more
            return [(entry[0], entry[1]) for entry in entries]
        sent: list[Entry] = reply[0][1]  # [id, fields] lists as Redis sent them: no tuple per entry
        return sent

    def _claim(self) -> list[Entry]:
        """Entries idle with any consumer for `claim_idle_ms`, a page at a time; a full pass
        over the pending list ends in waiting half the idle time before the next."""
        self.flush_acks()
        reply: Any = self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, start_id=self._claim_cursor, count=self.batch
        )
        cursor, entries = reply[0], [(entry[0], entry[1]) for entry in reply[1]]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        if self._claim_cursor == "0-0":
            self._next_claim = time.monotonic() + min(self.claim_idle_ms / 2000, 5.0)
        return list(entries)

    def flush_acks(self) -> None:
        """Acknowledge now what is written and not yet acknowledged (the next read would)."""
        acks, self._unacked = self._unacked, []
        if acks:
            try:
                self.client.xack(self.stream, self.group, *acks)
            except BaseException:
                self._unacked = acks + self._unacked
                raise

    def _store_dead_letters(self, dead: Sequence[Rejected]) -> None:
        """Dead letters are stored before their entries are acknowledged: an entry leaves
        the pending list only once its event is written or its dead letter is stored. The
        XACK goes with the next read (one round trip fewer per batch), except on a cluster,
        where redis-py would look up the read's node with an extra round trip inside a
        pipeline."""
        if not dead:
            return
        pipe = self.client.pipeline(transaction=False)
        for rejected in dead:
            pipe.xadd(
                self.dead_letter_stream,
                self._dead_letter(rejected),  # type: ignore[arg-type]
                maxlen=self.dead_letter_maxlen,
                approximate=True,
            )
        pipe.execute()

    def _dead_letter(self, rejected: Rejected) -> dict[bytes, bytes]:
        letter = {
            b"_reason": rejected.reason.encode(),
            b"_id": rejected.entry_id,
            b"_stream": self.stream.encode(),
            b"_group": self.group.encode(),
        }
        for name, value in (rejected.fields or {}).items():
            letter.setdefault(name, value)
        return letter

    def _report_group(self) -> None:
        """The group's pending count and lag, once a second while metrics are on."""
        if not metrics.enabled() or time.monotonic() < self._next_stats:
            return
        self._next_stats = time.monotonic() + STATS_INTERVAL_S
        groups: Any = self.client.xinfo_groups(self.stream)
        for info in groups:
            name = info.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                metrics.ingest_group_state(self.stream, self.group, info.get("pending"), info.get("lag"))
                return

    # ------------------------------------------------------------ a batch

    def _prepare(self, source: str, entries: Sequence[Entry]) -> _Batch:
        """Entries read as events (no I/O)."""
        result = StepResult(source, entries=len(entries))
        # no new object per entry when none was deleted (the common batch): a batch's
        # containers live until it is written, and each one is more garbage-collector work
        live = entries if all(fields for _, fields in entries) else [entry for entry in entries if entry[1]]
        result.deleted = len(entries) - len(live)
        parsed = self.entry_reader().read(live)
        return _Batch(result, [entry_id for entry_id, _ in entries], parsed, live)

    def _complete(self, batch: _Batch) -> StepResult:
        """The batch written and its dead letters stored."""
        self._write(batch.parsed, batch.result, batch.live)
        batch.result.dead_letters = batch.parsed.rejected
        self._store_dead_letters(batch.parsed.rejected)
        return batch.result

    def _finish(self, batch: _Batch) -> StepResult:
        """A completed batch acknowledged (with the next read, or now on a Cluster) and counted."""
        self._unacked.extend(batch.ids)
        if not self._piggyback:
            self.flush_acks()
        self._count(batch.result)
        return batch.result

    def _write(self, parsed: ParsedBatch, result: StepResult, live: Sequence[Entry]) -> None:
        """Every readable event in one write call (one round trip per node); when the
        writer refuses the batch as input, each event is checked alone, the refused ones
        become dead letters and the rest are written."""
        groups = parsed.groups
        if not groups:
            return
        try:
            outcome = self._send(groups)
        except REFUSED:
            groups = self._sift(groups, parsed.rejected, dict(live))
            if not groups:
                return
            outcome = self._send(groups)
        result.written_at_us = time.time_ns() // 1000
        written, skipped = write_counts(outcome)
        result.written += written
        result.skipped += skipped
        result.event_micros = [t for group in groups for t in group.event_micros]
        metrics.ingest_ages(self.stream, self.group, result.written_at_us, result.event_micros)

    def _send(self, groups: Sequence[EventGroup]) -> Any:
        if len(groups) == 1:
            return self.writer.write(groups[0].events_arg)
        return self.writer.write([event for group in groups for event in group.events()])

    def _sift(
        self, groups: Sequence[EventGroup], rejected: list[Rejected], fields_of: dict[bytes, Any]
    ) -> list[EventGroup]:
        """The events the writer takes; the others join `rejected` with its reason."""
        kept: list[EventGroup] = []
        for group in groups:
            good = EventGroup([], [])
            for entry_id, event, micros in zip(group.entry_ids, group.events(), group.event_micros):
                try:
                    self.writer.check(event)
                except REFUSED as exc:
                    reason = str(exc) if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
                    rejected.append(Rejected(entry_id, as_mapping(fields_of.get(entry_id, {})), reason))
                    continue
                good.entry_ids.append(entry_id)
                good.event_micros.append(micros)
                for name, value in event.items():
                    good.columns.setdefault(name, []).append(value)
            if good.entry_ids:
                kept.append(good)
        return kept

    def _count(self, result: StepResult) -> None:
        stats = self.stats
        stats.batches += 1
        stats.entries += result.entries
        stats.written += result.written
        stats.skipped += result.skipped
        stats.dead_letters += len(result.dead_letters)
        stats.deleted += result.deleted
        metrics.ingest_entries(
            self.stream,
            self.group,
            (
                ("written", result.written),
                ("skipped", result.skipped),
                ("dead_letter", len(result.dead_letters)),
                ("deleted", result.deleted),
                ("claimed", result.entries if result.source == "claimed" else 0),
            ),
        )


def write_counts(outcome: Any) -> tuple[int, int]:
    """(written, skipped) of an EventWriteResult."""
    written = int(getattr(outcome, "written", 0))
    skipped = getattr(outcome, "skipped", None)
    if skipped is None:
        skipped = sum(int(getattr(outcome, name, 0)) for name in ("skipped_stale", "skipped_expired", "skipped_future"))
    return written, int(skipped)


def source_columns(store: FeatureStore, push_source: str) -> tuple[str, list[str]]:
    """A push source's event-time column and the join keys of the views it feeds."""
    source = store.get_data_source(push_source)
    batch = getattr(source, "batch_source", None) or source
    join_keys: list[str] = []
    for view in store.list_feature_views():
        stream_source = getattr(view, "stream_source", None)
        if view.name == push_source or (stream_source is not None and stream_source.name == push_source):
            for column in view.entity_columns:
                if column.name not in join_keys:
                    join_keys.append(column.name)
    return batch.timestamp_field, join_keys


def _as_sent(response: Any, **options: Any) -> Any:
    """A reply as Redis sent it (no dict per stream entry)."""
    return response


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def run_until(ingester: StreamIngester, done: Callable[[], bool], timeout: float = 60.0) -> IngestStats:
    """Step until `done()` (tests and benchmarks); raises TimeoutError past `timeout`."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"ingester not done after {timeout} s: {ingester.stats.as_dict()}")
        ingester.run_once(block_ms=50)
    return ingester.stats
