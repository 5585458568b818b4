"""The demo without HTTP: a working copy of the sample repo wired to one Redis, applied
through the FeatureStore API, and the operations the page offers.

:class:`DemoRuntime` holds the state and the locks and hands each job to the module of its
concern: ``loading`` (working copy, bulk loads, reset), ``reads`` (timed
``get_online_features``), ``inspection`` (a user's hash; entity count, coverage and
served age), ``catalog`` (the views' features and the loaded users) and
``worker_process`` (the streaming worker).

The web app (``app.py``) is a thin layer over it; tests drive either. Errors meant for the
user are :class:`~demo.errors.DemoError` (with an HTTP status); anything else is a bug and
reaches the app's 500 handler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from devsupport.sample_repo import load_module, working_copy, write_yaml
from feast_redis_hexpire.inspection import entity_key, hash_tag_of
from feast_redis_hexpire.keys import project_prefix
from feast_redis_hexpire.redaction import redact
from feast_redis_hexpire.repo_loading import RepoDefinitions, load_definitions

from . import DEFAULT_SOURCE_REPO, DEFAULT_USERS, MAX_TTL_SECONDS, MAX_USERS
from .catalog import NO_USERS, Catalog, FeatureInfo, Users
from .errors import Conflict, DemoError, NotFound, shown
from .inspection import ProjectWatch, inspect_user
from .latency import LatencyLog
from .loading import bulk_load, delete_project_keys, load_notes, utcnow
from .reads import Reader, jsonable
from .similar import MAX_K, Searches, has_embedding_view, similar_users
from .worker_process import WorkerProcess

__all__ = ["MAX_TTL_SECONDS", "MAX_USERS", "Conflict", "DemoError", "DemoRuntime", "NotFound"]

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 3
DEFAULT_SEED = 42
DEFAULT_WORKER_BATCH = 5
USERS_LISTED = 50
"""Loaded user ids the page offers as suggestions."""
READ_COUNTERS = ("read_calls", "entities_read", "plans_built")
ENTITY_COUNT_SECONDS = 5.0
"""How stale the Entities tile's count may be (keys also go by expiry, unseen)."""

Log = Callable[[str], None]


def _check_count(value: int, what: str, maximum: int = MAX_USERS) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise DemoError(f"{what} must be a whole number between 1 and {maximum}, got {shown(value)}", 422)
    return value


def _check_ttl(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TTL_SECONDS:
        raise DemoError(
            f"{what} must be a whole number of seconds between 0 (no expiry) and {MAX_TTL_SECONDS}, got {shown(value)}",
            422,
        )
    return value


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
        self.initial_users = _check_count(users, "users")
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
        self.searches: Searches | None = None  # the similar-users panel's DocumentSearch
        self.online_store: Any = None
        self.definitions = RepoDefinitions()
        self.catalog = Catalog()
        self.users = Users(self.key_of)
        self.redis_version = "?"
        self.write_mode: dict[str, str] = {}
        self.search: dict[str, Any] = {"available": None, "reason": None}  # known after the first search
        self._uncounted: Counter[str] = Counter()  # the start-up read's counts: not the page's
        self._generate: Callable[..., dict[str, Any]] | None = None
        self._yaml: dict[str, Any] = {}
        self._last_load: dict[str, Any] | None = None
        self._last_reset: dict[str, Any] | None = None
        self._admin_lock = threading.Lock()
        self.worker: WorkerProcess | None = None  # set up with the store
        self.reader: Reader | None = None  # set up with the store
        self.latency = LatencyLog()
        self.watch = ProjectWatch(lambda: self.client, lambda: self.store_config.key_prefix, lambda: self.project)

    # ------------------------------------------------------------------ setup

    @property
    def project(self) -> str:
        return str(self.store.config.project)

    @property
    def store_config(self) -> Any:
        return self.store.config.online_store

    @property
    def client(self) -> Any:
        from feast_redis_hexpire.clients import sync_client

        return sync_client(self.store_config)

    @property
    def user_ids(self) -> list[str]:
        """The loaded users, in load order (a copy)."""
        return list(self.users.ids)

    @property
    def stream_ttl_seconds(self) -> int | None:
        return self.catalog.stream_ttl_seconds

    def _online_views(self) -> list[Any]:
        return [fv for fv in self.definitions.feature_views if getattr(fv, "online", True)]

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
        self.searches = Searches(self.store)
        self.store.apply(self.definitions.objects())  # the store checks the views as `feast apply` does
        self.online_store = self.store._get_provider().online_store
        self.reader = Reader(self.store, self.online_store, lambda: self.client, self.latency)
        self.catalog = Catalog.of(self._online_views(), self.store.config, self.definitions.join_keys())
        info = self.client.info("server")
        self.redis_version = str(info.get("redis_version", "?")) if isinstance(info, dict) else "?"
        self.write_mode = self._write_mode()
        self.log(
            f"[demo] applied project {self.project!r}: {len(self.catalog.layouts)} views "
            f"({', '.join(f'{layout.name} [{layout.kind.value}]' for layout in self.catalog.layouts)}), "
            f"{len(self.definitions.feature_services)} feature service(s), Redis {self.redis_version} at {self.redis_label}"
        )
        if self.reset_on_start:
            deleted = delete_project_keys(self.client, self.store_config.key_prefix, self.project)
            self.log(
                f"[demo] reset: deleted {deleted} existing keys of project {self.project!r} "
                f"({self.store_config.key_prefix}:{self.project}:*); pass --no-reset to keep them"
            )
        else:
            self.log(
                f"[demo] --no-reset: kept the {self.watch.entity_count()} existing keys of project {self.project!r}"
            )
        result = self.bulk_load(self.initial_users)
        self.log(
            f"[demo] loaded {result['users']} users by materialization in {result['seconds']:.2f}s "
            f"({result['rows_written']} rows written); batch key TTL {self.store_config.batch_ttl_seconds}s, "
            f"stream field TTL {self.store_config.stream_ttl_seconds}s"
        )
        for note in result["notes"]:
            self.log(f"[demo] note: {note}")
        if self.users.ids:  # warm Feast's read path, so the first read on the page is not a cold one
            self.store.get_online_features(
                features=[f.ref for f in self.catalog.features],
                entity_rows=[{self.catalog.join_key: self.users.ids[0]}],
            )
            stats = self.online_store.stats.as_dict()  # the page's Reads tile counts the page's reads
            self._uncounted = Counter({name: stats[name] for name in READ_COUNTERS})
        worker = self.worker_status()
        self.log(
            f"[demo] streaming worker: round-robin over all {worker.get('users', 0)} users, "
            f"{worker.get('batch_size', 0)} events per tick every {self.worker_interval:g}s (one EventWriter.write each): every user is "
            f"refreshed every {worker.get('cycle_seconds', 0):g}s, within the {self.stream_ttl_seconds}s stream TTL"
            + ("" if self.start_worker else "; starts paused (--no-worker): resume it on the page")
        )
        self.log(f"[demo] ready in {time.monotonic() - started:.1f}s")
        return self

    def _write_mode(self) -> dict[str, str]:
        """How stream fields get their expiry on this server, as the store decided from
        HELLO (doctor's "write mode"): the page names the commands in use."""
        from feast_redis_hexpire.clients import field_expiry_of

        expiry = field_expiry_of(self.client)
        return {"mode": expiry.value, "commands": expiry.commands}

    def _prepare_workdir(self) -> None:
        if not (self.source_repo / "generate_data.py").is_file():
            raise FileNotFoundError(f"{self.source_repo} has no generate_data.py")
        # Builds the user_embedding view's Query Engine index at apply (a warning and no
        # index on a server without it: the similar-users panel then says so).
        online: dict[str, Any] = {"vector_enabled": True}
        if self.initial_batch_ttl is not None:
            online["batch_ttl_seconds"] = _check_ttl(self.initial_batch_ttl, "batch_ttl_seconds")
        if self.initial_stream_ttl is not None:
            online["stream_ttl_seconds"] = _check_ttl(self.initial_stream_ttl, "stream_ttl_seconds")
        self._yaml = working_copy(
            self.workdir, self.connection_string, project=self.project_override, source=self.source_repo, **online
        )

    def _write_settings(self) -> dict[str, Any]:
        """What the worker's pushes must follow of this process's store config."""
        return {
            "batch_ttl_seconds": self.store_config.batch_ttl_seconds,
            "stream_ttl_seconds": self.store_config.stream_ttl_seconds,
        }

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()

    # ------------------------------------------------------------------ users and features

    def check_user(self, user_id: str) -> str:
        return self.users.check(user_id)

    def check_features(self, refs: Sequence[str] | None) -> list[FeatureInfo]:
        return self.catalog.check_features(refs)

    def key_of(self, user_id: str) -> str:
        return entity_key(
            self.store_config.key_prefix,
            self.project,
            user_id,
            [self.catalog.join_key],
            hash_tag_of(self.store_config),
        )

    def _set_users(self, ids: list[str]) -> None:
        self.users.replace(ids)
        self.watch.forget_count()

    # ------------------------------------------------------------------ bulk load and reset

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
        users = _check_count(users, "users")
        if batch_ttl_seconds is not None:
            _check_ttl(batch_ttl_seconds, "batch_ttl_seconds")
        if stream_ttl_seconds is not None:
            _check_ttl(stream_ttl_seconds, "stream_ttl_seconds")
        assert self.worker is not None, "setup() first"
        if not self._admin_lock.acquire(blocking=False):
            raise Conflict("a bulk load or reset is already running; try again when it has finished")
        try:
            self.worker.hold()  # returns once an in-flight tick has finished
            try:
                return self._bulk_load_locked(users, batch_ttl_seconds, stream_ttl_seconds)
            finally:
                self.worker.follow(self.users.ids, self.stream_ttl_seconds)
        finally:
            self._admin_lock.release()

    def _set_ttls(self, batch_ttl: int | None, stream_ttl: int | None) -> None:
        """New TTLs in the store config, the working yaml and the catalog's layouts."""
        for name, value in (("batch_ttl_seconds", batch_ttl), ("stream_ttl_seconds", stream_ttl)):
            if value is not None:
                setattr(self.store_config, name, value)
                self._yaml["online_store"][name] = value
        write_yaml(self.workdir, self._yaml)
        self.catalog = Catalog.of(self._online_views(), self.store.config, self.definitions.join_keys())

    def _bulk_load_locked(self, users: int, batch_ttl: int | None, stream_ttl: int | None) -> dict[str, Any]:
        ttl_changed = batch_ttl is not None or stream_ttl is not None
        if ttl_changed:
            self._set_ttls(batch_ttl, stream_ttl)
        assert self._generate is not None, "setup() first"
        result, ids = bulk_load(
            self.store,
            self.online_store,
            self.catalog,
            self._generate,
            self.workdir / "data",
            users=users,
            days=self.days,
            seed=self.seed,
        )
        if len(ids) > len(self.users.ids):  # users only grow until a reset
            self._set_users(ids)
        result.update(
            users_loaded=len(self.users.ids),
            batch_ttl_seconds=self.store_config.batch_ttl_seconds,
            stream_ttl_seconds=self.store_config.stream_ttl_seconds,
            ttl_changed=ttl_changed,
            finished_at=utcnow().isoformat(),
        )
        result["notes"] = load_notes(result, self.stream_ttl_seconds)
        self._last_load = result
        self.watch.forget_count()
        logger.info("bulk load: %d users in %.2fs (%d rows written)", users, result["seconds"], result["rows_written"])
        return result

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
            self._last_load = None  # its users are gone: the tile says so
            self.watch.forget_ages()
            started = time.perf_counter()
            deleted = delete_project_keys(self.client, self.store_config.key_prefix, self.project)
            self._last_reset = {
                "deleted": deleted,
                "seconds": round(time.perf_counter() - started, 3),
                "finished_at": utcnow().isoformat(),
            }
            logger.info("reset: deleted %d keys", deleted)
            return {**self._last_reset, "worker": self.worker_status()}
        finally:
            self._admin_lock.release()

    # ------------------------------------------------------------------ reads and inspection

    def read(self, user_id: str, features: Sequence[str] | None = None) -> dict[str, Any]:
        assert self.reader is not None, "setup() first"
        user_id = self.check_user(user_id)
        wanted = self.check_features(features)
        return self.reader.one(user_id, self.key_of(user_id), wanted, self.catalog.join_key)

    def batch_read(self, count: int, features: Sequence[str] | None = None) -> dict[str, Any]:
        assert self.reader is not None, "setup() first"
        if not self.users.ids:
            raise NotFound(NO_USERS)
        count = _check_count(count, "count", len(self.users.ids))
        wanted = self.check_features(features)
        return self.reader.batch(self.users.ids[:count], wanted, self.catalog.join_key)

    def similar(self, user_id: str, top_k: int = 10) -> dict[str, Any]:
        """The users nearest ``user_id`` by embedding (KNN on the Query Engine)."""
        user_id = self.check_user(user_id)
        top_k = _check_count(top_k, "k", MAX_K)
        if not has_embedding_view(self._online_views()):
            raise NotFound("this repo has no user_embedding view: nothing to search")
        assert self.searches is not None, "setup() first"
        answer = similar_users(
            self.store, self.searches, self.client, self.key_of, self.catalog.join_key, user_id, top_k
        )
        self.search = {"available": answer["available"], "reason": answer.get("reason")}
        return answer

    def inspect(self, user_id: str) -> dict[str, Any]:
        user_id = self.check_user(user_id)
        return {**inspect_user(self.client, self.key_of(user_id), self.catalog.layouts), "user_id": user_id}

    def state(self) -> dict[str, Any]:
        assert self.worker is not None, "setup() first"
        sample = self.users.sample_keys()
        raw_worker = jsonable(self.worker.status())
        ids = self.users.ids
        return {
            "project": self.project,
            "redis": {"where": self.redis_label, "version": self.redis_version},
            "write_mode": self.write_mode,
            "search": self.search,
            "repo": str(self.workdir),
            "key_pattern": project_prefix(self.store_config.key_prefix, self.project, hash_tag_of(self.store_config))
            + "*",
            "entities": self.watch.entity_count(max_age=ENTITY_COUNT_SECONDS),
            "users_loaded": len(ids),
            "first_user": ids[0] if ids else None,
            "last_user": ids[-1] if ids else None,
            # The ids themselves, never re-derived: the page suggests exactly these.
            "user_ids": ids[:USERS_LISTED],
            "ttl": {
                "batch_seconds": self.store_config.batch_ttl_seconds,
                "stream_seconds": self.store_config.stream_ttl_seconds,
            },
            "counters": self.counters(raw_worker),
            "worker": {k: v for k, v in raw_worker.items() if k != "store_counters"},
            "coverage": self.watch.coverage(sample, self.catalog.stream_layouts, len(ids)),
            "served_age": self.watch.served_age(sample, self.catalog.layouts),
            "latency": self.latency.summary(),
            "last_bulk_load": self._last_load,
            "last_reset": self._last_reset,
            "limits": {"max_users": MAX_USERS, "max_ttl_seconds": MAX_TTL_SECONDS},
            "features": [asdict(f) for f in self.catalog.features],
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
        status = jsonable(self.worker.status())
        status.pop("store_counters", None)
        return dict(status)

    def counters(self, worker: dict[str, Any] | None = None) -> dict[str, int]:
        """The store's counters, of this process and of the worker's writes. The worker's
        reads are its lag probes, not the page's: the Reads tile leaves them out."""
        assert self.worker is not None, "setup() first"
        totals = Counter(self.online_store.stats.as_dict())
        totals.subtract(self._uncounted)
        theirs = (worker if worker is not None else self.worker.status()).get("store_counters") or {}
        totals.update({name: value for name, value in theirs.items() if name not in READ_COUNTERS})
        return dict(totals)

    def toggle_worker(self, action: str | None = None) -> dict[str, Any]:
        assert self.worker is not None, "setup() first"
        action = self.worker.toggle(action)
        return {"action": action, "worker": self.worker_status()}
