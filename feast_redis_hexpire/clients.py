"""Redis clients: built from the parsed config, created once per process (and per event
loop for asyncio), with one retry policy for sync and async alike.

Topologies (`redis_type`, names as in Feast's own Redis store):

- `redis`: one server, `host:port` or a `unix://` socket.
- `redis_cluster`: the hosts are startup nodes; redis-py's RedisCluster routes every key
  to its slot's primary, groups pipelines by node (one round trip per node), and follows
  MOVED/ASK redirects during resharding and failover.
- `redis_sentinel`: the hosts are the sentinels; the client asks them for the current
  primary on every (re)connect and at most every second while it works
  (FollowingSentinelPool), so it follows a failover.

With `read_from_replicas`, reads go to replicas (round robin; the primary when none is
up) and writes to the primary. See docs/topologies.md.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio as redis_async
import redis.asyncio.retry as async_retry
import redis.asyncio.sentinel as async_sentinel
from redis.backoff import EqualJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, LoadBalancingStrategy, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from . import metrics
from .config import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_SOCKET_TIMEOUT_SECONDS,
    RedisHexpireOnlineStoreConfig,
    RedisType,
    load_credential_provider,
)
from .redis_version import FieldExpiry, field_expiry
from .server_checks import check_server, hello_reply_info, server_infos

SyncClient = redis.Redis | RedisCluster
AsyncClient = redis_async.Redis | redis_async.RedisCluster
T = TypeVar("T")

# Backoff between retries of a command that hit a connection error or timeout.
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
MAX_TIMEOUT_RETRIES = 2
"""A timeout is retried at most this often: a restart or failover refuses or drops
connections (connection errors, retried `retry_attempts` times), while repeated timeouts
mean a hung server, where every further try would only add `socket_timeout`."""

# How often a Sentinel client re-asks the sentinels which server is the primary.
SENTINEL_RECHECK_S = 1.0

# Sentinel connections inherit these from the data-node params (TLS and timeouts).
_SENTINEL_INHERITED = ("socket_timeout", "socket_connect_timeout", "ssl")


# ---------------------------------------------------------------- retry


class _RetryBudget:
    """Wraps redis-py's `is_retryable` for one operation: timeouts stop being retried after
    MAX_TIMEOUT_RETRIES and a refused login is not retried at all (redis-py's
    AuthenticationError is a ConnectionError: the same password would be refused again,
    after seconds of backoff and a refused login per try), while other connection errors
    keep the full `retry_attempts`."""

    def __init__(self, inner: Callable[[Exception], bool] | None) -> None:
        self.inner = inner
        self.timeouts = 0

    def __call__(self, error: Exception) -> bool:
        if self.inner is not None and not self.inner(error):
            return False
        if isinstance(error, redis.AuthenticationError):
            return False
        if isinstance(error, (redis.TimeoutError, TimeoutError)):
            self.timeouts += 1
            return self.timeouts <= MAX_TIMEOUT_RETRIES
        return True


_RETRYING: ContextVar[bool] = ContextVar("feast_redis_hexpire_retrying", default=False)
"""True while a store retry runs an operation in this thread or task. redis-py runs its
own retries under ours with the same policy: a pool checkout connects under
`connection.retry`, and so does a send on a dropped connection. Nested, budgets multiply:
a server that is down (connections refused) cost a warm process about 41 s per call, 7
checkouts of 7 connects each, instead of one budget's 3.5-7 s."""


@contextmanager
def tried_once() -> Iterator[None]:
    """The store's retries inside this block try once: for a caller that retries itself,
    elsewhere (a search falls back from a replica to its primary, and refreshes the
    cluster's topology before trying again)."""
    outer = _RETRYING.set(True)
    try:
        yield
    finally:
        _RETRYING.reset(outer)


class StoreRetry(Retry):
    """redis-py's Retry with a smaller budget for timeouts (see MAX_TIMEOUT_RETRIES), none
    for a refused password (see _RetryBudget), and one budget per operation: called under
    another of the store's retries (see _RETRYING), it tries once and leaves retrying to
    the outer one."""

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        if _RETRYING.get():
            try:
                return do()
            except self._supported_errors as error:
                _failed_once(error, fail, is_retryable, with_failure_count)
                raise
        attempts = metrics.AttemptCounter(do)
        outermost = _RETRYING.set(True)
        try:
            return super().call_with_retry(attempts, fail, _RetryBudget(is_retryable), with_failure_count)
        finally:
            _RETRYING.reset(outermost)
            attempts.record()


class AsyncStoreRetry(async_retry.Retry):
    """The asyncio twin of StoreRetry: redis.asyncio needs its own Retry class (it awaits
    the operation and sleeps with asyncio); given the sync one it never retries. Tasks
    started under a retry inherit its context, so they try once too."""

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        if _RETRYING.get():
            try:
                return await do()
            except self._supported_errors as error:
                undone = _failed_once(error, fail, is_retryable, with_failure_count)
                if undone is not None:
                    await undone
                raise
        attempts = metrics.AttemptCounter(do)
        outermost = _RETRYING.set(True)
        try:
            return await super().call_with_retry(attempts, fail, _RetryBudget(is_retryable), with_failure_count)
        finally:
            _RETRYING.reset(outermost)
            attempts.record()


def _failed_once(
    error: Exception,
    fail: Callable[..., Any],
    is_retryable: Callable[[Exception], bool] | None,
    with_failure_count: bool,
) -> Any:
    """What redis-py's Retry does after a failure when it has no retries left: the failure
    handler (e.g. dropping the connection) unless the error is not retryable at all.
    Returns the handler's result (an awaitable, for redis.asyncio)."""
    if is_retryable is not None and not is_retryable(error):
        return None
    return fail(error, 1) if with_failure_count else fail(error)


def sync_retry(config: RedisHexpireOnlineStoreConfig) -> StoreRetry:
    """Connection errors and timeouts (a failover, a restarted node) are retried with
    jittered exponential backoff. Every command the store sends is safe to repeat: reads,
    and the write script, which keeps the newest event and rewrites an equal one."""
    return StoreRetry(EqualJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), config.retry_attempts)


def async_retry_policy(config: RedisHexpireOnlineStoreConfig) -> AsyncStoreRetry:
    return AsyncStoreRetry(EqualJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), config.retry_attempts)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Settings:
    """The parsed connection string, split into what each redis-py constructor takes."""

    nodes: tuple[tuple[str, int], ...]
    kwargs: dict[str, Any]
    sentinel_kwargs: dict[str, Any]
    require_full_coverage: bool

    @classmethod
    def of(cls, config: RedisHexpireOnlineStoreConfig) -> _Settings:
        parsed = config.parsed_connection
        kwargs = dict(parsed.params)
        if config.credential_provider is not None:  # redis-py asks it on every new connection
            kwargs["credential_provider"] = _credential_provider(config.credential_provider)
        kwargs.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT_SECONDS)
        kwargs.setdefault("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS)
        if parsed.unix_socket_path:
            kwargs["unix_socket_path"] = parsed.unix_socket_path
        if config.redis_type is RedisType.redis_cluster:
            kwargs.pop("db", None)  # only db 0 exists; config validation rejects others
        store = parsed.store_params
        sentinel_kwargs = {k: v for k, v in kwargs.items() if k in _SENTINEL_INHERITED or k.startswith("ssl_")}
        if "sentinel_username" in store:
            sentinel_kwargs["username"] = store["sentinel_username"]
        if "sentinel_password" in store:
            sentinel_kwargs["password"] = store["sentinel_password"]
        return cls(
            nodes=parsed.nodes,
            kwargs=kwargs,
            sentinel_kwargs=sentinel_kwargs,
            require_full_coverage=not store.get("skip_full_coverage_check", False),
        )


_providers: dict[tuple[int, str], Any] = {}
_providers_lock = threading.Lock()  # not _lock: clients are built while it is held


def _credential_provider(reference: str) -> Any:
    """One provider per factory per process, shared by its sync and async clients: a token
    provider may refresh in the background, and one is enough."""
    key = (os.getpid(), reference)
    with _providers_lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = load_credential_provider(reference)
    return provider


# ---------------------------------------------------------------- redis-py subclasses


try:  # request policies arrived in redis-py 7.1; 7.0's pipelines route EVALSHA by key already
    from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
    from redis.commands.policies import PolicyResolver, StaticPolicyResolver

    class _KeyedScripts(PolicyResolver):
        """Routes EVALSHA/EVAL by their declared keys. Without a policy, redis-py 7's sync
        cluster pipeline asks the default node `COMMAND GETKEYS` for every queued EVALSHA
        (one extra round trip per call) before routing it by those same keys."""

        _KEYED = CommandPolicies(
            request_policy=RequestPolicy.DEFAULT_KEYED, response_policy=ResponsePolicy.DEFAULT_KEYED
        )

        def __init__(self, fallback: PolicyResolver | None = None) -> None:
            self._fallback = fallback or StaticPolicyResolver()

        def resolve(self, command_name: str) -> CommandPolicies | None:
            if command_name in ("evalsha", "eval"):
                return self._KEYED
            return self._fallback.resolve(command_name)

        def with_fallback(self, fallback: PolicyResolver) -> PolicyResolver:
            return _KeyedScripts(fallback)

    _CLUSTER_EXTRA_KWARGS: dict[str, Any] = {"policy_resolver": _KeyedScripts()}
except ImportError:  # pragma: no cover - depends on the installed redis-py
    _CLUSTER_EXTRA_KWARGS = {}


class StoreRedisCluster(RedisCluster):
    """RedisCluster whose pipelines route the write script without a lookup per command.
    Pipelines still group commands by node: one round trip per node per batch."""

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        if _CLUSTER_EXTRA_KWARGS:
            pipe._policy_resolver = self._policy_resolver  # redis-py gives pipelines a default one
        return pipe

    def determine_slot(self, *args: Any) -> Any:
        """XREADGROUP's keys follow its STREAMS word; redis-py, which cannot place them,
        would ask a node `COMMAND GETKEYS` before every read of the stream ingester."""
        if args and str(args[0]).upper() == "XREADGROUP":
            words = [word.upper() if isinstance(word, (str, bytes)) else word for word in args]
            at = words.index(b"STREAMS") if b"STREAMS" in words else words.index("STREAMS")
            keys = args[at + 1 : at + 1 + (len(args) - at - 1) // 2]
            slots = {self.keyslot(key) for key in keys}
            if len(slots) == 1:
                return slots.pop()
        return super().determine_slot(*args)


class _GuardedSend:
    """An asyncio connection that refuses to send on a writer another task closed.

    redis.asyncio checks that a connection is open, then sends from a task of its own
    (asyncio.wait_for, for the socket timeout). A cluster client disconnects a node's idle
    connections after a connection error while other tasks may be taking them; one closed
    in between failed a write with "'NoneType' object has no attribute 'writelines'", an
    error no retry policy knows. Here it is the ConnectionError it is, and retried as one."""

    _writer: asyncio.StreamWriter | None
    host: str
    port: int

    async def _send_packed_command(self, command: Any) -> None:
        writer = self._writer
        if writer is None or writer.transport.is_closing():
            raise redis.ConnectionError(f"Connection to {self.host}:{self.port} was closed before sending")
        writer.writelines(command)
        await writer.drain()


class _GuardedConnection(_GuardedSend, redis_async.Connection):
    """redis_async.Connection with _GuardedSend."""


class _GuardedSSLConnection(_GuardedSend, redis_async.SSLConnection):
    """redis_async.SSLConnection with _GuardedSend."""


_GUARDED: dict[type, type] = {
    redis_async.Connection: _GuardedConnection,
    redis_async.SSLConnection: _GuardedSSLConnection,
}


class StoreAsyncRedisCluster(redis_async.RedisCluster):
    """redis.asyncio's RedisCluster without closing connections other tasks are using.

    redis-py calls `aclose()` in the middle of operations to make the client re-read the
    slot map: on every fifth MOVED reply (resharding), on CLUSTERDOWN and before retrying
    a pipeline. Its aclose closes every connection of every node, including those other
    tasks of the event loop are sending on or reading from: under live resharding an
    async write failed that way. Here that refresh only flags the slot map as stale; the
    next command re-reads it, which marks every connection for reconnect, and each is
    reconnected by the task that next takes it. `close_connections` closes for good.
    Connections also refuse to send on a writer closed under them (_GuardedSend)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        guarded = _GUARDED[self.connection_kwargs["connection_class"]]
        self.connection_kwargs["connection_class"] = guarded  # the nodes found later
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = guarded

    async def aclose(self) -> None:
        self._initialize = True

    async def close_connections(self) -> None:
        self._initialize = False  # redis-py's aclose closes only an initialized client
        await super().aclose()


class _PrimaryRecheckClock:
    """When a Sentinel pool should ask the sentinels again: at most every SENTINEL_RECHECK_S."""

    _checked_at: float = 0.0

    def _recheck_due(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at < SENTINEL_RECHECK_S:
            return False
        self._checked_at = now
        return True


class FollowingSentinelPool(_PrimaryRecheckClock, SentinelConnectionPool):
    """A Sentinel primary pool that notices a failover even while its connections stay up.

    redis-py asks the sentinels for the primary only when it opens a connection. After a
    `SENTINEL FAILOVER` of a healthy primary, the old one keeps accepting reads and writes
    until the sentinels demote it (about 10 s later), and writes it took then are lost.
    This pool re-asks at most every SENTINEL_RECHECK_S when handing out a connection; if
    the primary moved, idle connections are dropped (redis-py's get_master_address) and
    connections to the old one are not reused, so the next command goes to the new one."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)
        self._checked_at = time.monotonic()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master and self._recheck_due():
            try:
                self.get_master_address()
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # no sentinel answers: keep using the primary we know
        return super().get_connection(*args, **kwargs)


class FollowingAsyncSentinelPool(_PrimaryRecheckClock, async_sentinel.SentinelConnectionPool):
    """FollowingSentinelPool for redis.asyncio."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)
        self._checked_at = time.monotonic()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master and self._recheck_due():
            try:
                await self.get_master_address()
            except (redis.ConnectionError, redis.TimeoutError):
                pass
        return await super().get_connection(*args, **kwargs)


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class _Flavour:
    """The redis-py classes of one I/O model: the only difference between the sync and
    async clients this module builds."""

    redis: Any
    cluster: Any
    cluster_node: Any
    sentinel: Any
    primary_pool: Any
    retry: Callable[[RedisHexpireOnlineStoreConfig], Retry | async_retry.Retry]
    cluster_extra: dict[str, Any]
    retry_class: Any


_SYNC = _Flavour(
    redis.Redis,
    StoreRedisCluster,
    ClusterNode,
    Sentinel,
    FollowingSentinelPool,
    sync_retry,
    _CLUSTER_EXTRA_KWARGS,
    Retry,
)
_ASYNC = _Flavour(
    redis_async.Redis,
    StoreAsyncRedisCluster,
    redis_async.cluster.ClusterNode,
    async_sentinel.Sentinel,
    FollowingAsyncSentinelPool,
    async_retry_policy,
    {},
    async_retry.Retry,
)


def _build(flavour: _Flavour, config: RedisHexpireOnlineStoreConfig, for_reads: bool) -> Any:
    settings = _Settings.of(config)
    retry = flavour.retry(config)
    replicas = for_reads and config.read_from_replicas
    if config.redis_type is RedisType.redis_cluster:
        extra = dict(flavour.cluster_extra)
        if replicas:
            extra["load_balancing_strategy"] = LoadBalancingStrategy.ROUND_ROBIN_REPLICAS
        return flavour.cluster(
            startup_nodes=[flavour.cluster_node(h, p) for h, p in settings.nodes],
            retry=retry,
            require_full_coverage=settings.require_full_coverage,
            **extra,
            **settings.kwargs,
        )
    if config.redis_type is RedisType.redis_sentinel:
        # One question per sentinel per try: the data connection's retry (which asks the
        # sentinels again on every try) is the only one. redis-py would otherwise give each
        # sentinel client its default retry (3 more tries, 1-10 s backoff), so a sentinel
        # that is down or hung cost seconds per question, on the request path.
        sentinel_kwargs = {**settings.sentinel_kwargs, "retry": flavour.retry_class(NoBackoff(), 0)}
        sentinel = flavour.sentinel(
            list(settings.nodes), sentinel_kwargs=sentinel_kwargs, retry=retry, **settings.kwargs
        )
        if replicas:
            return sentinel.slave_for(config.sentinel_master)
        return sentinel.master_for(config.sentinel_master, connection_pool_class=flavour.primary_pool)
    address = dict(zip(("host", "port"), settings.nodes[0])) if settings.nodes else {}
    return flavour.redis(retry=retry, **address, **settings.kwargs)


def build_sync_client(config: RedisHexpireOnlineStoreConfig, *, for_reads: bool = False) -> SyncClient:
    """A client of the primary, or with `for_reads` and `read_from_replicas`, one that reads
    from replicas (round robin, the primary when none is up)."""
    client: SyncClient = _build(_SYNC, config, for_reads)
    return client


def build_async_client(config: RedisHexpireOnlineStoreConfig, *, for_reads: bool = False) -> AsyncClient:
    client: AsyncClient = _build(_ASYNC, config, for_reads)
    return client


# ---------------------------------------------------------------- caching


def _signature(config: RedisHexpireOnlineStoreConfig) -> tuple[Any, ...]:
    return (
        config.connection_string,
        config.redis_type,
        config.sentinel_master,
        config.retry_attempts,
        config.read_from_replicas,
        config.field_expiry_commands,
        config.credential_provider,
    )


_sync_clients: dict[tuple[Any, ...], SyncClient] = {}
_unchecked_clients: dict[tuple[Any, ...], SyncClient] = {}  # built, their check running
_checked: dict[tuple[Any, ...], FieldExpiry] = {}  # passed checks -> the write commands they chose
_checks_running: dict[tuple[Any, ...], Future[FieldExpiry]] = {}
_lock = threading.Lock()

_FIELD_EXPIRY = "_hexpire_field_expiry"
"""The attribute of a client that holds its servers' FieldExpiry (set when handed out)."""


def field_expiry_of(client: SyncClient) -> FieldExpiry:
    """The commands the write script sets expiring fields with on this client's servers:
    chosen by the start-up check for the clients this module hands out, read from HELLO
    (once) for any other client."""
    expiry: FieldExpiry | None = getattr(client, _FIELD_EXPIRY, None)
    if expiry is None:
        expiry = field_expiry(server_infos(client))
        setattr(client, _FIELD_EXPIRY, expiry)
    return expiry


async def field_expiry_of_async(client: AsyncClient) -> FieldExpiry:
    """field_expiry_of for redis.asyncio clients; another client's servers are read from
    the HELLO of the node it asks (every node of a store's cluster is checked at start-up)."""
    expiry: FieldExpiry | None = getattr(client, _FIELD_EXPIRY, None)
    if expiry is None:
        expiry = field_expiry([hello_reply_info(await client.execute_command("HELLO"))])
        setattr(client, _FIELD_EXPIRY, expiry)
    return expiry


def _check_once(client: SyncClient, config: RedisHexpireOnlineStoreConfig) -> FieldExpiry:
    """Run the server check once per process and config. Callers that arrive while it runs
    wait for it and share its outcome, error included, and nobody holds a lock while it
    talks to the server: against a hung server every caller gets the check's error after
    one check's time, instead of each running the check in turn behind the one before."""
    check = (os.getpid(), *_signature(config))
    if check in _checked:
        return _checked[check]
    with _lock:
        if check in _checked:
            return _checked[check]
        running = _checks_running.get(check)
        if running is None:
            running = _checks_running[check] = Future()
            owner = True
        else:
            owner = False
    if not owner:
        return running.result()  # raises the running check's error
    try:
        expiry = check_server(client, config)
    except BaseException as exc:
        running.set_exception(exc)
        raise
    else:
        _checked[check] = expiry
        running.set_result(expiry)
    finally:
        with _lock:
            _checks_running.pop(check, None)
    return expiry


def sync_client(config: RedisHexpireOnlineStoreConfig, *, for_reads: bool = False) -> SyncClient:
    """The process's client for this config. The first one is checked once (server version;
    never a write, so a read-only user and a server at maxmemory both pass); a client is
    handed out only once its config passed the check."""
    replicas = for_reads and config.read_from_replicas
    key = (os.getpid(), replicas, *_signature(config))
    client = _sync_clients.get(key)
    if client is not None:
        return client
    with _lock:
        client = _sync_clients.get(key) or _unchecked_clients.get(key)
        if client is None:
            client = _unchecked_clients[key] = build_sync_client(config, for_reads=for_reads)
    try:
        setattr(client, _FIELD_EXPIRY, _check_once(client, config))
    except BaseException:
        with _lock:
            if _unchecked_clients.get(key) is client:
                del _unchecked_clients[key]
        client.close()
        raise
    with _lock:
        _unchecked_clients.pop(key, None)
        return _sync_clients.setdefault(key, client)


# key -> (the loop it belongs to, client). Holding the loop keeps its id from being reused.
_async_clients: dict[tuple[Any, ...], tuple[asyncio.AbstractEventLoop, AsyncClient]] = {}


async def async_client(config: RedisHexpireOnlineStoreConfig, *, for_reads: bool = False) -> AsyncClient:
    """One client per event loop: redis.asyncio connections are bound to the loop that made them."""
    check = (os.getpid(), *_signature(config))
    if check not in _checked:  # the server check runs once per process, on a sync client
        await asyncio.get_running_loop().run_in_executor(None, lambda: sync_client(config))
    loop = asyncio.get_running_loop()
    replicas = for_reads and config.read_from_replicas
    key = (os.getpid(), id(loop), replicas, *_signature(config))
    entry = _async_clients.get(key)
    if entry is None or entry[0] is not loop:
        for stale in [k for k, (other, _) in _async_clients.items() if other.is_closed()]:
            del _async_clients[stale]
        built = build_async_client(config, for_reads=for_reads)
        setattr(built, _FIELD_EXPIRY, _checked[check])
        entry = (loop, built)
        _async_clients[key] = entry
    return entry[1]


async def close_async_clients() -> None:
    loop = asyncio.get_running_loop()
    for key in [k for k, (other, _) in _async_clients.items() if other is loop]:
        _, client = _async_clients.pop(key)
        await (client.close_connections() if isinstance(client, StoreAsyncRedisCluster) else client.aclose())


def reset_clients() -> None:
    """Forget every cached client (tests, and after teardown of a server)."""
    with _lock:
        for client in [*_sync_clients.values(), *_unchecked_clients.values()]:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a dead client must not fail a reset
                pass
        _sync_clients.clear()
        _unchecked_clients.clear()
        _checked.clear()
        _async_clients.clear()
        _providers.clear()
