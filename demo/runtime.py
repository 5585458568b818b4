"""Everything the demo does, without HTTP: a working copy of the sample repo wired to one
Redis, `feast apply` through the FeatureStore API, bulk loads by materialization, reads
through ``get_online_features``, the streaming worker (``worker.py``), stream coverage
(``coverage.py``), read latencies (``latency.py``), inspection and reset.

The web app (``app.py``) is a thin layer over :class:`DemoRuntime`; tests drive either.
Errors meant for the user are :class:`~demo.errors.DemoError` (with an HTTP status);
anything else is a bug and reaches the app's 500 handler.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from inspect import signature
from pathlib import Path
from typing import Any

from devsupport.sample_repo import load_module, working_copy, write_yaml
from feast_redis_hexpire.inspection import (
    NO_EXPIRY,
    NO_SUCH_FIELD,
    entity_key,
    field_owners,
    hash_tag_of,
    inspect_key,
)
from feast_redis_hexpire.keys import project_prefix
from feast_redis_hexpire.redaction import redact
from feast_redis_hexpire.repo_loading import RepoDefinitions, load_definitions

from . import DEFAULT_SOURCE_REPO, DEFAULT_USERS, MAX_TTL_SECONDS, MAX_USERS
from .coverage import measure, spread
from .errors import Conflict, DemoError, NotFound, shown
from .freshness import AgeLog
from .freshness import measure as measure_ages
from .latency import LatencyLog
from .worker_process import WorkerProcess

__all__ = ["MAX_TTL_SECONDS", "MAX_USERS", "Conflict", "DemoError", "DemoRuntime", "NotFound"]

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 3
DEFAULT_SEED = 42
DEFAULT_WORKER_BATCH = 5
USERS_LISTED = 50
"""Loaded user ids the page offers as suggestions."""
ENTITY_COUNT_SECONDS = 5.0
"""How stale the Entities tile's count may be (keys also go by expiry, unseen)."""
NO_USERS = "no users are loaded (after a reset); bulk-load first"
FRESH_SHARE = 4
"""The freshest generated stream row is at most 1/FRESH_SHARE of the stream TTL old, so a
bulk load's stream rows are still within the TTL when written."""

STREAM_ONLY_NOTE = (
    "No batch fields: this user's key expired with its batch cycle (or was never materialized), and "
    "the worker's next push re-created it with stream fields only. That is by design: the stream "
    "fields expire on their own, so the key has no TTL (no expiry) and Redis removes it when its last "
    "field expires; the next bulk load brings the batch fields and the key TTL back."
)
"""Said wherever a key holds stream fields only."""

Log = Callable[[str], None]


@dataclass(frozen=True)
class FeatureInfo:
    ref: str  # "view:feature", what get_online_features takes
    view: str
    name: str
    kind: str  # batch / stream
    dtype: str
    field: str  # hash field


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _display(value: Any, dtype: str) -> str | None:
    """A read value as Inspect shows it in the hash: floats in the store's own text
    (``27.0``, the shortest float32 decimal), so Read and Inspect agree."""
    from feast_redis_hexpire.codec import double_text, float32_text

    if value is None:
        return None
    if isinstance(value, float) and not isinstance(value, bool):
        return (float32_text(value) if dtype == "Float32" else double_text(value)).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(_jsonable(value))


def _ms_to_seconds(ttl_ms: int) -> float | None:
    return None if ttl_ms < 0 else round(ttl_ms / 1000, 1)


STORE_READ_HOOKS = ("get_online_features", "_read_features_per_fv", "online_read")
"""The online store's methods that do its reading inside Feast's ``get_online_features``
(its serving fast path, and the grouped hook and per-view read of Feast's generic path it
falls back to): timed, outermost only, for the page's "store" figure."""


class StoreReadTimer:
    """The online store's own time inside each ``get_online_features``, per thread.

    The page's read latency is Feast's whole call in the demo server, where /state polling
    competes with it for the GIL (on a busy machine a read may wait ms for it); the store's
    part beside it says how much of that is the store.
    """

    def __init__(self, online_store: Any) -> None:
        self._local = threading.local()
        for name in STORE_READ_HOOKS:
            original = getattr(online_store, name, None)
            if callable(original):
                setattr(online_store, name, self._timed(original))

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            local = self._local
            depth = getattr(local, "depth", 0)
            local.depth = depth + 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                local.depth = depth
                if depth == 0:  # the outermost hook only: one may call the other
                    local.ms = getattr(local, "ms", 0.0) + (time.perf_counter() - started) * 1000

        return timed

    def start(self) -> None:
        self._local.ms = 0.0

    def ms(self) -> float | None:
        """The store's time since :meth:`start` in this thread (None if no hook ran)."""
        ms = getattr(self._local, "ms", 0.0)
        return ms or None


class DemoRuntime:
    """The sample repo, applied and loaded, plus the streaming worker.

    Call :meth:`setup` once (it takes a few seconds: Feast import, apply, first load),
    then the operations from any thread; :meth:`close` stops the worker.
    """

    def __init__(
        self,
        connection_string: str,
        workdir: Path | str,
        *,
        source_repo: Path | str = DEFAULT_SOURCE_REPO,
        project: str | None = None,
        users: int = DEFAULT_USERS,
        batch_ttl_seconds: int | None = None,
        stream_ttl_seconds: int | None = None,
        reset: bool = True,
        days: int = DEFAULT_DAYS,
        seed: int = DEFAULT_SEED,
        worker_interval: float = 1.0,
        worker_batch_size: int = DEFAULT_WORKER_BATCH,
        start_worker: bool = True,
        redis_label: str | None = None,
        log: Log = print,
    ) -> None:
        self.connection_string = connection_string
        self.redis_label = redact(redis_label or connection_string)
        self.workdir = Path(workdir).resolve()
        self.source_repo = Path(source_repo).resolve()
        self.project_override = project
        self.initial_users = self._check_count(users, "users")
        self.initial_batch_ttl = batch_ttl_seconds
        self.initial_stream_ttl = stream_ttl_seconds
        self.reset_on_start = reset
        self.days = days
        self.seed = seed
        self.worker_interval = worker_interval
        self.worker_batch_size = worker_batch_size
        self.start_worker = start_worker
        self.log = log

        self.store: Any = None  # feast.FeatureStore
        self.online_store: Any = None
        self.definitions = RepoDefinitions()
        self.features: list[FeatureInfo] = []
        self.layouts: list[Any] = []
        self.join_key = "user_id"
        self.redis_version = "?"
        self._generate: Callable[..., dict[str, Any]] | None = None
        self._users: list[str] = []
        self._user_set: set[str] = set()
        self._sample: list[str] | None = None
        self._counted: tuple[float, int] | None = None  # (monotonic, entity count)
        self._last_load: dict[str, Any] | None = None
        self._last_reset: dict[str, Any] | None = None
        self._admin_lock = threading.Lock()
        self.worker: WorkerProcess | None = None  # set up with the store
        self.latency = LatencyLog()
        self.ages = AgeLog()

    # ------------------------------------------------------------------ setup

    @property
    def project(self) -> str:
        return self.store.config.project

    @property
    def store_config(self) -> Any:
        return self.store.config.online_store

    @property
    def client(self) -> Any:
        from feast_redis_hexpire.clients import sync_client

        return sync_client(self.store_config)

    def setup(self) -> DemoRuntime:
        started = time.monotonic()
        self._prepare_workdir()
        self.log(f"[demo] working copy of {self.source_repo} in {self.workdir}")
        # Its own process (it imports Feast meanwhile): its pushes must not hold the GIL
        # that this process's reads wait for.
        self.worker = WorkerProcess(
            str(self.workdir),
            interval_seconds=self.worker_interval,
            min_batch=self.worker_batch_size,
            paused=not self.start_worker,
            settings=self._write_settings,
        )
        from feast import FeatureStore

        self._generate = load_module(self.workdir / "generate_data.py").generate
        self.definitions = load_definitions(self.workdir)
        self.store = FeatureStore(repo_path=str(self.workdir))
        online_views = [fv for fv in self.definitions.feature_views if getattr(fv, "online", True)]
        self.store.apply(self.definitions.objects())  # the store checks the views as `feast apply` does
        self.online_store = self.store._get_provider().online_store
        self.store_timer = StoreReadTimer(self.online_store)
        self._catalog(online_views)
        info = self.client.info("server")
        self.redis_version = str(info.get("redis_version", "?")) if isinstance(info, dict) else "?"
        self.log(
            f"[demo] applied project {self.project!r}: {len(online_views)} views "
            f"({', '.join(f'{layout.name} [{layout.kind.value}]' for layout in self.layouts)}), "
            f"{len(self.definitions.feature_services)} feature service(s), Redis {self.redis_version} at {self.redis_label}"
        )
        if self.reset_on_start:
            deleted = self._delete_project_keys()
            self.log(
                f"[demo] reset: deleted {deleted} existing keys of project {self.project!r} "
                f"({self.store_config.key_prefix}:{self.project}:*); pass --no-reset to keep them"
            )
        else:
            self.log(f"[demo] --no-reset: kept the {self.entity_count()} existing keys of project {self.project!r}")
        result = self.bulk_load(self.initial_users)
        self.log(
            f"[demo] loaded {result['users']} users by materialization in {result['seconds']:.2f}s "
            f"({result['rows_written']} rows written); batch key TTL {self.store_config.batch_ttl_seconds}s, "
            f"stream field TTL {self.store_config.stream_ttl_seconds}s"
        )
        for note in result["notes"]:
            self.log(f"[demo] note: {note}")
        if self._users:  # warm Feast's read path, so the first read on the page is not a cold one
            self.store.get_online_features(
                features=[f.ref for f in self.features], entity_rows=[{self.join_key: self._users[0]}]
            )
        worker = self.worker_status()
        self.log(
            f"[demo] streaming worker: round-robin over all {worker.get('users', 0)} users, "
            f"{worker.get('batch_size', 0)} per push every {self.worker_interval:g}s: every user is "
            f"refreshed every {worker.get('cycle_seconds', 0):g}s, within the {self.stream_ttl_seconds}s stream TTL"
            + ("" if self.start_worker else "; starts paused (--no-worker): resume it on the page")
        )
        self.log(f"[demo] ready in {time.monotonic() - started:.1f}s")
        return self

    def _prepare_workdir(self) -> None:
        if not (self.source_repo / "generate_data.py").is_file():
            raise FileNotFoundError(f"{self.source_repo} has no generate_data.py")
        online: dict[str, Any] = {}
        if self.initial_batch_ttl is not None:
            online["batch_ttl_seconds"] = self._check_ttl(self.initial_batch_ttl, "batch_ttl_seconds")
        if self.initial_stream_ttl is not None:
            online["stream_ttl_seconds"] = self._check_ttl(self.initial_stream_ttl, "stream_ttl_seconds")
        self._yaml = working_copy(
            self.workdir, self.connection_string, project=self.project_override, source=self.source_repo, **online
        )

    def _write_settings(self) -> dict[str, Any]:
        """What the worker's pushes must follow of this process's store config."""
        return {
            "batch_ttl_seconds": self.store_config.batch_ttl_seconds,
            "stream_ttl_seconds": self.store_config.stream_ttl_seconds,
        }

    def _write_yaml(self) -> None:
        write_yaml(self.workdir, self._yaml)

    def _catalog(self, views: Sequence[Any]) -> None:
        from feast_redis_hexpire.store import layout_of

        self.layouts = [layout_of(fv, self.store.config) for fv in views]
        features = []
        for fv, layout in zip(views, self.layouts):
            dtypes = {f.name: str(f.dtype) for f in fv.features}
            for feature in layout.features.values():
                features.append(
                    FeatureInfo(
                        ref=f"{layout.name}:{feature.name}",
                        view=layout.name,
                        name=feature.name,
                        kind=layout.kind.value,
                        dtype=dtypes.get(feature.name, "?"),
                        field=feature.field.decode(),
                    )
                )
        self.features = features
        join_keys = self.definitions.join_keys()
        if len(join_keys) != 1:
            raise RuntimeError(f"the demo expects one join key, the repo has {join_keys}")
        self.join_key = join_keys[0]

    @property
    def user_ids(self) -> list[str]:
        """The loaded users, in load order (a copy)."""
        return list(self._users)

    @property
    def stream_layouts(self) -> list[Any]:
        return [layout for layout in self.layouts if layout.kind.value == "stream"]

    @property
    def stream_ttl_seconds(self) -> int | None:
        """The expiry of the streamed fields as the store resolves it (None: no expiry)."""
        return min((layout.ttl_seconds for layout in self.stream_layouts), default=0) or None

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()

    # ------------------------------------------------------------------ validation

    @staticmethod
    def _check_count(value: int, what: str, maximum: int = MAX_USERS) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
            raise DemoError(f"{what} must be a whole number between 1 and {maximum}, got {shown(value)}", 422)
        return value

    @staticmethod
    def _check_ttl(value: int, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TTL_SECONDS:
            raise DemoError(
                f"{what} must be a whole number of seconds between 0 (no expiry) and {MAX_TTL_SECONDS}, "
                f"got {shown(value)}",
                422,
            )
        return value

    def check_user(self, user_id: str) -> str:
        user_id = (user_id or "").strip()
        if not self._users:  # first: after a reset the page has no user to fill in
            raise NotFound(NO_USERS)
        if not user_id:
            raise DemoError("user_id is required: enter a user id such as " + self._users[0], 422)
        if user_id not in self._user_set:
            raise NotFound(f"unknown user {shown(user_id)}: the demo has users {self._users[0]} .. {self._users[-1]}")
        return user_id

    def check_features(self, refs: Sequence[str] | None) -> list[FeatureInfo]:
        by_ref = {f.ref: f for f in self.features}
        if not refs:
            return list(self.features)
        unknown = [r for r in refs if r not in by_ref]
        if unknown:
            listed = ", ".join(shown(u) for u in unknown[:3]) + (
                f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            )
            raise DemoError(f"unknown feature(s) {listed}; known: {', '.join(by_ref)}", 422)
        seen: dict[str, FeatureInfo] = {}
        for ref in refs:
            seen.setdefault(ref, by_ref[ref])
        return list(seen.values())

    def _set_users(self, ids: list[str]) -> None:
        self._user_set = set(ids)
        self._users = ids
        self._sample: list[str] | None = None
        self._counted = None  # a load or reset changes the count: SCAN again

    def key_of(self, user_id: str) -> str:
        return entity_key(
            self.store_config.key_prefix, self.project, user_id, [self.join_key], hash_tag_of(self.store_config)
        )

    def _sample_keys(self) -> list[str]:
        """The keys of an even sample of the loaded users (coverage and served age), built
        once per set of users: every poll would otherwise rebuild up to 1,000 keys."""
        if self._sample is None:
            self._sample = [self.key_of(uid) for uid in spread(self._users)]
        return self._sample

    def coverage(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Share of the loaded users whose stream fields are all present, from Redis."""
        keys = self._sample_keys() if keys is None else keys
        fields = [field for layout in self.stream_layouts for field in layout.all_fields()]
        return measure(self.client, keys, fields, len(self._users)).as_dict()

    def served_age(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Served age per view over the sample (now minus ``_ts:<view>``), with its recent
        history; a new sample at most once a second."""
        now = time.time()
        if self.ages.due(now):
            keys = self._sample_keys() if keys is None else keys
            self.ages.record(now, measure_ages(self.client, keys, self.layouts, now))
        return self.ages.summary()

    # ------------------------------------------------------------------ state

    def entity_count(self, max_age: float = 0.0) -> int:
        """The project's entity keys, by SCAN; ``max_age``: a count this recent will do.

        At 10,000 users the SCAN is a few hundred ms of Python in the demo's process, where
        it holds the GIL that reads wait for: the page's polling reuses a count for a few
        seconds (a load or reset always counts afresh)."""
        from feast_redis_hexpire.maintenance import count_project_keys

        now = time.monotonic()
        if self._counted is not None and now - self._counted[0] < max_age:
            return self._counted[1]
        count = count_project_keys(self.client, self.store_config.key_prefix, self.project)
        self._counted = (now, count)
        return count

    def state(self) -> dict[str, Any]:
        assert self.worker is not None, "setup() first"
        sample = self._sample_keys()
        raw_worker = _jsonable(self.worker.status())
        return {
            "project": self.project,
            "redis": {"where": self.redis_label, "version": self.redis_version},
            "repo": str(self.workdir),
            "key_pattern": project_prefix(self.store_config.key_prefix, self.project, hash_tag_of(self.store_config))
            + "*",
            "entities": self.entity_count(max_age=ENTITY_COUNT_SECONDS),
            "users_loaded": len(self._users),
            "first_user": self._users[0] if self._users else None,
            "last_user": self._users[-1] if self._users else None,
            # The ids themselves, never re-derived: the page suggests exactly these.
            "user_ids": self._users[:USERS_LISTED],
            "ttl": {
                "batch_seconds": self.store_config.batch_ttl_seconds,
                "stream_seconds": self.store_config.stream_ttl_seconds,
            },
            "counters": self.counters(raw_worker),
            "worker": {k: v for k, v in raw_worker.items() if k != "store_counters"},
            "coverage": self.coverage(sample),
            "served_age": self.served_age(sample),
            "latency": self.latency.summary(),
            "last_bulk_load": self._last_load,
            "last_reset": self._last_reset,
            "limits": {"max_users": MAX_USERS, "max_ttl_seconds": MAX_TTL_SECONDS},
            "features": [asdict(f) for f in self.features],
            "feature_services": {
                fs.name: [
                    f"{proj.name_to_use()}:{feature.name}"
                    for proj in fs.feature_view_projections
                    for feature in proj.features
                ]
                for fs in self.definitions.feature_services
            },
        }

    # ------------------------------------------------------------------ worker

    def worker_status(self) -> dict[str, Any]:
        assert self.worker is not None, "setup() first"
        status = _jsonable(self.worker.status())
        status.pop("store_counters", None)
        return status

    def counters(self, worker: dict[str, Any] | None = None) -> dict[str, int]:
        """The store's counters, of this process and of the worker's (its pushes)."""
        assert self.worker is not None, "setup() first"
        totals = Counter(self._stats())
        totals.update((worker if worker is not None else self.worker.status()).get("store_counters") or {})
        return dict(totals)

    def toggle_worker(self, action: str | None = None) -> dict[str, Any]:
        assert self.worker is not None, "setup() first"
        action = self.worker.toggle(action)
        return {"action": action, "worker": self.worker_status()}

    # ------------------------------------------------------------------ bulk load

    def _stats(self) -> dict[str, int]:
        return dict(self.online_store.stats.as_dict())

    def bulk_load(
        self,
        users: int = DEFAULT_USERS,
        batch_ttl_seconds: int | None = None,
        stream_ttl_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Generate the parquet data for ``users`` users and materialize every view.

        The worker is held paused during the load, so the counters it reports are the
        load's own. TTLs given here change the store config (and the working yaml) for this
        load and every later write, stream pushes included."""
        users = self._check_count(users, "users")
        if batch_ttl_seconds is not None:
            self._check_ttl(batch_ttl_seconds, "batch_ttl_seconds")
        if stream_ttl_seconds is not None:
            self._check_ttl(stream_ttl_seconds, "stream_ttl_seconds")
        assert self.worker is not None, "setup() first"
        if not self._admin_lock.acquire(blocking=False):
            raise Conflict("a bulk load or reset is already running; try again when it has finished")
        try:
            self.worker.hold()  # returns once an in-flight tick has finished
            try:
                return self._bulk_load_locked(users, batch_ttl_seconds, stream_ttl_seconds)
            finally:
                self.worker.follow(self._users, self.stream_ttl_seconds)
        finally:
            self._admin_lock.release()

    def _bulk_load_locked(self, users: int, batch_ttl: int | None, stream_ttl: int | None) -> dict[str, Any]:
        store_config = self.store_config
        if batch_ttl is not None:
            store_config.batch_ttl_seconds = batch_ttl
            self._yaml["online_store"]["batch_ttl_seconds"] = batch_ttl
        if stream_ttl is not None:
            store_config.stream_ttl_seconds = stream_ttl
            self._yaml["online_store"]["stream_ttl_seconds"] = stream_ttl
        if batch_ttl is not None or stream_ttl is not None:
            self._write_yaml()
            self._catalog([fv for fv in self.definitions.feature_views if getattr(fv, "online", True)])

        started = time.perf_counter()
        now = _utcnow()
        assert self._generate is not None, "setup() first"
        extra: dict[str, Any] = {}
        if self.stream_ttl_seconds and "fresh_seconds" in signature(self._generate).parameters:
            extra["fresh_seconds"] = self.stream_ttl_seconds / FRESH_SHARE
        data = self._generate(self.workdir / "data", count=users, days=self.days, seed=self.seed, now=now, **extra)
        generate_seconds = time.perf_counter() - started

        start = now - timedelta(days=self.days + 1)
        end = _utcnow() + timedelta(seconds=1)
        views = []
        materialize_started = time.perf_counter()
        # Stream views first: their rows age by the time the batch views take.
        for layout in sorted(self.layouts, key=lambda layout: layout.kind.value != "stream"):
            before = self._stats()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # Feast prints a banner per view
                self.store.materialize(start, end, feature_views=[layout.name])
            after = self._stats()
            views.append(
                {
                    "view": layout.name,
                    "kind": layout.kind.value,
                    "ttl_seconds": layout.ttl_seconds,
                    "seconds": round(time.perf_counter() - t0, 3),
                    "written": after["rows_written"] - before["rows_written"],
                    "skipped_stale": after["rows_skipped_stale"] - before["rows_skipped_stale"],
                    "skipped_expired": after["rows_skipped_expired"] - before["rows_skipped_expired"],
                }
            )
        materialize_seconds = time.perf_counter() - materialize_started
        order = [layout.name for layout in self.layouts]
        views.sort(key=lambda v: order.index(v["view"]))
        total = time.perf_counter() - started

        ids = list(data["user_ids"])
        if len(ids) > len(self._users):  # users only grow until a reset
            self._set_users(ids)
        result = {
            "users": users,
            "users_loaded": len(self._users),
            "seconds": round(total, 3),
            "generate_seconds": round(generate_seconds, 3),
            "materialize_seconds": round(materialize_seconds, 3),
            "rows_written": sum(v["written"] for v in views),
            "rows_skipped_stale": sum(v["skipped_stale"] for v in views),
            "rows_skipped_expired": sum(v["skipped_expired"] for v in views),
            "source_rows": dict(data.get("rows", {})),
            "views": views,
            "batch_ttl_seconds": store_config.batch_ttl_seconds,
            "stream_ttl_seconds": store_config.stream_ttl_seconds,
            "ttl_changed": batch_ttl is not None or stream_ttl is not None,
            "stream_view_seconds": round(sum(v["seconds"] for v in views if v["kind"] == "stream"), 3),
            "finished_at": _utcnow().isoformat(),
        }
        result["notes"] = self._load_notes(result)
        self._last_load = result
        self._counted = None
        logger.info("bulk load: %d users in %.2fs (%d rows written)", users, total, result["rows_written"])
        return result

    def _load_notes(self, result: dict[str, Any]) -> list[str]:
        """What a newcomer would otherwise read as a fault in a load's figures."""
        notes = []
        if result["rows_skipped_expired"]:
            notes.append(
                f"{result['rows_skipped_expired']:,} generated stream rows were already past the "
                f"{self.stream_ttl_seconds} s stream TTL when written: the data is dated before the load, "
                f"and generating and writing it took {result['generate_seconds'] + result['stream_view_seconds']:.1f} s. "
                "Expected with a short TTL; the worker pushes fresh ones."
            )
        stale_stream = sum(v["skipped_stale"] for v in result["views"] if v["kind"] == "stream")
        if stale_stream:
            notes.append(
                f"{stale_stream:,} generated stream rows were older than what the streaming worker had already "
                "pushed for those users, and were skipped (newest wins): expected while the worker runs."
            )
        if result["ttl_changed"] and result["users"] < result["users_loaded"]:
            notes.append(
                f"The new TTLs apply to the {result['users']:,} users this load wrote and to later writes; "
                f"the other {result['users_loaded'] - result['users']:,} keep theirs until rewritten "
                "(Inspect shows a key's own)."
            )
        return notes

    # ------------------------------------------------------------------ reset

    def _delete_project_keys(self) -> int:
        from feast_redis_hexpire.maintenance import delete_entities

        return delete_entities(self.client, self.store_config.key_prefix, self.project)

    def reset(self) -> dict[str, Any]:
        """Drop every entity of the demo project. The worker stops pushing (it would
        recreate them); a bulk load brings users and the worker back."""
        assert self.worker is not None, "setup() first"
        if not self._admin_lock.acquire(blocking=False):
            raise Conflict("a bulk load or reset is already running; try again when it has finished")
        try:
            # No users: the worker pauses (an in-flight push lands first) and cannot be
            # resumed, so nothing recreates keys while they are deleted.
            self.worker.follow([], self.stream_ttl_seconds)
            self._set_users([])
            started = time.perf_counter()
            deleted = self._delete_project_keys()
            seconds = time.perf_counter() - started
            self._last_reset = {
                "deleted": deleted,
                "seconds": round(seconds, 3),
                "finished_at": _utcnow().isoformat(),
            }
            logger.info("reset: deleted %d keys", deleted)
            return {**self._last_reset, "worker": self.worker_status()}
        finally:
            self._admin_lock.release()

    # ------------------------------------------------------------------ reads

    def _ttls(self, key: str, fields: Sequence[str]) -> tuple[int, list[int]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.pttl(key)
        if fields:
            pipe.hpttl(key, *fields)
        replies = pipe.execute()
        key_ttl = int(replies[0])
        field_ttls = [int(t) for t in replies[1]] if fields else []
        return key_ttl, field_ttls

    def read(self, user_id: str, features: Sequence[str] | None = None) -> dict[str, Any]:
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
        from feast.type_map import feast_value_type_to_python_type

        user_id = self.check_user(user_id)
        wanted = self.check_features(features)
        self.store_timer.start()
        started = time.perf_counter()
        response = self.store.get_online_features(
            features=[f.ref for f in wanted], entity_rows=[{self.join_key: user_id}], full_feature_names=True
        )
        latency_ms = (time.perf_counter() - started) * 1000
        store_ms = self.store_timer.ms()
        self.latency.record("read", 1, latency_ms, store_ms)
        proto = response.proto
        columns = {name: i for i, name in enumerate(proto.metadata.feature_names.val)}
        key = self.key_of(user_id)
        key_ttl, field_ttls = self._ttls(key, [f.field for f in wanted])
        rows = []
        for info, field_ttl in zip(wanted, field_ttls):
            result = proto.results[columns[f"{info.view}__{info.name}"]]
            status = FieldStatus.Name(result.statuses[0])
            value = feast_value_type_to_python_type(result.values[0]) if status == "PRESENT" else None
            event_ts = result.event_timestamps[0] if len(result.event_timestamps) else None
            event_time = (
                datetime.fromtimestamp(event_ts.seconds + event_ts.nanos / 1e9, tz=timezone.utc).isoformat()
                if event_ts is not None and (event_ts.seconds or event_ts.nanos)
                else None
            )
            if field_ttl >= 0:
                ttl_ms, ttl_source = field_ttl, "field"
            elif field_ttl == NO_EXPIRY:
                ttl_ms, ttl_source = key_ttl, "key"
            else:  # NO_SUCH_FIELD: expired (stream) or never written
                ttl_ms, ttl_source = NO_SUCH_FIELD, "missing"
            rows.append(
                {
                    "ref": info.ref,
                    "view": info.view,
                    "feature": info.name,
                    "kind": info.kind,
                    "value": _jsonable(value),
                    "text": _display(value, info.dtype),
                    "status": status,
                    "event_time": event_time,
                    "ttl_ms": ttl_ms,
                    "ttl_seconds": _ms_to_seconds(ttl_ms),
                    "ttl_source": ttl_source,
                }
            )
        batch_rows = [r for r in rows if r["kind"] == "batch"]
        stream_only = (
            key_ttl == NO_EXPIRY and bool(batch_rows) and all(r["ttl_source"] == "missing" for r in batch_rows)
        )
        return {
            "user_id": user_id,
            "key": key,
            "note": STREAM_ONLY_NOTE if stream_only else None,
            "latency_ms": round(latency_ms, 3),
            "store_ms": None if store_ms is None else round(store_ms, 3),
            "key_ttl_seconds": _ms_to_seconds(key_ttl),
            "key_exists": key_ttl != NO_SUCH_FIELD,
            "present": sum(1 for r in rows if r["status"] == "PRESENT"),
            "features": rows,
        }

    def batch_read(self, count: int, features: Sequence[str] | None = None) -> dict[str, Any]:
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

        if not self._users:
            raise NotFound(NO_USERS)
        count = self._check_count(count, "count", len(self._users))
        wanted = self.check_features(features)
        ids = self._users[:count]
        before = self._stats()
        self.store_timer.start()
        started = time.perf_counter()
        response = self.store.get_online_features(
            features=[f.ref for f in wanted], entity_rows=[{self.join_key: uid} for uid in ids], full_feature_names=True
        )
        latency_ms = (time.perf_counter() - started) * 1000
        store_ms = self.store_timer.ms()
        self.latency.record("batch", len(ids), latency_ms, store_ms)
        after = self._stats()
        proto = response.proto
        present = FieldStatus.PRESENT
        kind_of = {f"{f.view}__{f.name}": f.kind for f in wanted}
        returned = [0] * len(ids)
        missing: dict[str, list[int]] = {"batch": [0] * len(ids), "stream": [0] * len(ids)}
        for i, name in enumerate(proto.metadata.feature_names.val):
            kind = kind_of.get(name)
            if kind is None:  # the join key's column
                continue
            for j, status in enumerate(proto.results[i].statuses):
                if status == present:
                    returned[j] += 1
                else:
                    missing.setdefault(kind, [0] * len(ids))[j] += 1
        histogram = Counter(returned)
        return {
            "count": len(ids),
            "features_requested": len(wanted),
            "latency_ms": round(latency_ms, 3),
            "store_ms": None if store_ms is None else round(store_ms, 3),
            "per_entity_ms": round(latency_ms / len(ids), 4),
            "store_read_calls": after["read_calls"] - before["read_calls"],
            "entities_read": after["entities_read"] - before["entities_read"],
            "histogram": {str(k): histogram[k] for k in sorted(histogram, reverse=True)},
            "requested_by_kind": dict(Counter(f.kind for f in wanted)),
            "entities": [
                {
                    "user_id": uid,
                    "returned": n,
                    "missing_batch": missing["batch"][j],
                    "missing_stream": missing["stream"][j],
                }
                for j, (uid, n) in enumerate(zip(ids, returned))
            ],
        }

    def inspect(self, user_id: str) -> dict[str, Any]:
        user_id = self.check_user(user_id)
        entity = inspect_key(self.client, self.key_of(user_id), self.layouts)
        out = entity.as_dict()
        for row, info in zip(out["fields"], entity.fields):
            effective = info.effective_ttl_ms(entity.key_ttl_ms)
            row["ttl_source"] = "field" if info.ttl_ms >= 0 else ("key" if entity.key_ttl_ms >= 0 else "none")
            row["effective_ttl_seconds"] = _ms_to_seconds(effective)
        present = {f.field for f in entity.fields}
        out["missing"] = [
            {"field": name.decode(), "view": owner.view, "kind": owner.kind, "feature": owner.feature}
            for name, owner in field_owners(self.layouts).items()
            if name.decode() not in present
        ]
        out["user_id"] = user_id
        out["key_ttl_seconds"] = _ms_to_seconds(entity.key_ttl_ms)
        has_batch = any(f.kind == "batch" for f in entity.fields)
        out["note"] = STREAM_ONLY_NOTE if entity.exists and not has_batch and entity.key_ttl_ms == NO_EXPIRY else None
        return out
