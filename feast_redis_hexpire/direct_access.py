"""What the store's own APIs (EventWriter for writes, DocumentSearch for retrieval) share:
the online store behind a FeatureStore, its clients looked up once, and what they resolve
from the registry kept per registry version.

Feast's FeatureStore methods resolve views from the registry on every call; these APIs
resolve once (`PerRegistryVersion`) and look again only when Feast's cached registry
changed, at most every REGISTRY_CHECK_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from . import feast_hooks
from .clients import async_client, sync_client
from .config import RedisHexpireOnlineStoreConfig
from .errors import ConfigError, InvalidInput
from .store import RedisHexpireOnlineStore, store_config_of

T = TypeVar("T")
U = TypeVar("U")

REGISTRY_CHECK_INTERVAL_S = 0.01
"""How often an API asks Feast's registry cache whether it changed (RegistryVersion): that
check reads the clock and stats the registry file (~7 µs), as much as the rest of a
one-event write's client work; at most every 10 ms it costs nothing measurable, and a
change is seen within 10 ms of Feast seeing it."""


def online_store_of(store: Any, api: str) -> RedisHexpireOnlineStore:
    """The online store a FeatureStore serves from, which must be this store (`api` names
    what asks, for the message): its provider's own object, so these APIs share its write
    counters and warning pacing with store.push; where this Feast has no `_get_provider`
    (feast_hooks.SHARED_STORE), one of their own."""
    if feast_hooks.check().active(feast_hooks.SHARED_STORE):
        online_store = store._get_provider().online_store
    elif isinstance(store.config.online_store, RedisHexpireOnlineStoreConfig):
        online_store = RedisHexpireOnlineStore()
    else:
        online_store = None
    if not isinstance(online_store, RedisHexpireOnlineStore):
        kind = type(store.config.online_store).__name__
        raise ConfigError(
            f"{api} works on RedisHexpireOnlineStore; this repo's online store config is {kind}",
            setting="online_store.type",
            value=kind,
        )
    return online_store


class RegistryVersion:
    """A cheap token that changes when Feast's cached registry may have changed.

    Feast's file registry (`Registry`) checks its own cache on every lookup: its TTL
    (`cache_ttl_seconds`) and, in the default `cache_mode: sync`, the registry file's
    modification time, replacing `cached_registry_proto` when either says so. This asks
    that same check (`_get_registry_proto(allow_cache=True)`: a lock, a clock read and a
    stat) and takes the proto's `last_updated` as the version: every commit sets it, in
    place on the cached proto too, so an apply through the same FeatureStore counts. Not
    the proto's identity: `store.push` itself re-reads the registry file on every call
    (`_precompute_for_push` lists feature services without the cache), which replaces
    the proto with an equal one. Caching registries (SQL, remote) get their own
    `_refresh_cached_registry_if_necessary` and the same token; any other registry is
    re-read every `cache_ttl_seconds`."""

    def __init__(self, store: Any) -> None:
        self._store = store
        registry = store.registry
        self._proto_of = getattr(registry, "_get_registry_proto", None)
        self._refresh = getattr(registry, "_refresh_cached_registry_if_necessary", None)
        ttl = getattr(getattr(store.config, "registry", None), "cache_ttl_seconds", 600)
        self._ttl = float(ttl or 0)
        self._started = time.monotonic()

    def token(self) -> Any:
        registry = self._store.registry
        if self._proto_of is not None:
            proto = self._proto_of(project=self._store.project, allow_cache=True)
        elif self._refresh is not None:
            self._refresh()
            proto = getattr(registry, "cached_registry_proto", None)
        else:
            elapsed = time.monotonic() - self._started
            return registry, int(elapsed // self._ttl) if self._ttl > 0 else 0
        stamp = proto.last_updated if proto is not None else None
        if stamp is not None and (stamp.seconds or stamp.nanos):
            return None, stamp.seconds, stamp.nanos
        return proto, 0, 0  # a registry that stamps no commit: its proto's identity


def same_version(token: Any, other: Any) -> bool:
    return other is not None and token[0] is other[0] and token[1:] == other[1:]


class PerRegistryVersion(Generic[T]):
    """`resolve()`'s value as of the registry version last seen. Thread-safe: one thread
    resolves, the others keep the value they had until it is ready."""

    def __init__(self, store: Any, resolve: Callable[[], T]) -> None:
        self._store = store
        self._resolve = resolve
        self._version = RegistryVersion(store)
        self._lock = threading.Lock()
        self._token: Any = None
        self._value: T | None = None
        self._next_check = 0.0

    def get(self, *, now_or_never: bool = False) -> T:
        """The value; the version is looked at again at most every
        REGISTRY_CHECK_INTERVAL_S, or at once with `now_or_never`."""
        value = self._value
        now = time.monotonic()
        if value is not None and now < self._next_check and not now_or_never:
            return value
        token = self._version.token()
        self._next_check = now + REGISTRY_CHECK_INTERVAL_S
        if value is not None and same_version(token, self._token):
            return value
        with self._lock:
            if self._value is None or not same_version(token, self._token):
                self._value = self._resolve()
                self._token = token
            return self._value

    def using(self, use: Callable[[T], U]) -> tuple[T, U]:
        """The value and `use` of it. A value up to REGISTRY_CHECK_INTERVAL_S old that `use`
        refuses (InvalidInput) makes it look at the registry again at once and try once more
        on a newer value: a `feast apply` a moment ago (a new feature, say) must not refuse
        what comes right after it."""
        value = self.get()
        try:
            return value, use(value)
        except InvalidInput:
            fresh = self.get(now_or_never=True)
            if fresh is value:
                raise
            return fresh, use(fresh)

    def refresh(self) -> T:
        """Re-read the registry now (Feast's refresh_registry) and resolve again."""
        self._store.refresh_registry()
        with self._lock:
            self._value = None
            self._token = None
            self._next_check = 0.0
        return self.get()


class StoreClients:
    """The store's shared clients for one config, looked up once (sync_client builds its
    cache key from the whole config on every call), the async one once per event loop.
    `for_reads`: the clients a search uses, on replicas with `read_from_replicas`, and
    the primaries' to fall back to (`primary_sync`, `primary_async`; None without)."""

    def __init__(self, store_config: RedisHexpireOnlineStoreConfig, *, for_reads: bool = False) -> None:
        self.store_config = store_config
        self.for_reads = for_reads
        self._client: Any = None
        self._async_client: tuple[asyncio.AbstractEventLoop, Any] | None = None
        replicas = for_reads and store_config.read_from_replicas
        self.primary_sync: Callable[[], Any] | None = (lambda: sync_client(store_config)) if replicas else None
        self.primary_async: Callable[[], Awaitable[Any]] | None = (
            (lambda: async_client(store_config)) if replicas else None
        )

    @classmethod
    def of(cls, store: Any, *, for_reads: bool = False) -> StoreClients:
        return cls(store_config_of(store.config), for_reads=for_reads)

    def sync_client(self) -> Any:
        client = self._client
        if client is None:
            client = self._client = sync_client(self.store_config, for_reads=self.for_reads)
        return client

    async def async_client(self) -> Any:
        loop = asyncio.get_running_loop()
        cached = self._async_client
        if cached is not None and cached[0] is loop:
            return cached[1]
        client = await async_client(self.store_config, for_reads=self.for_reads)
        self._async_client = (loop, client)
        return client
