"""Redis clients: parsed from the config once, created once per process (and per event
loop for asyncio), and checked once for a server that has the HEXPIRE family and a
user allowed to run what the store sends.

Topologies (`redis_type`, names as in Feast's own Redis store):

- `redis`: one server, `host:port`.
- `redis_cluster`: `host:port[,host:port...]` are startup nodes; redis-py's RedisCluster
  routes every key to its slot's primary, groups pipelines by node (one round trip per
  node), and follows MOVED/ASK redirects during resharding and failover.
- `redis_sentinel`: `host:port[,...]` are the sentinels; the client asks them for the
  current primary of `sentinel_master` on every (re)connect and at most every second
  while it works (FollowingSentinelPool), so it follows a failover.

See docs/topologies.md for the configuration of each, ACL users and TLS.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
import uuid
from typing import Any, Dict, List, Set, Tuple, Union

import redis
import redis.asyncio as redis_async
from redis.backoff import EqualJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from .config import RedisHexpireOnlineStoreConfig, RedisType
from .errors import UnsupportedRedisServer
from .write_script import BATCH_MODE, SCRIPT_SHA, SCRIPT_SOURCE, STREAM_MODE

MIN_SERVER_VERSION = (7, 4, 0)

SyncClient = Union[redis.Redis, RedisCluster]
AsyncClient = Union[redis_async.Redis, redis_async.RedisCluster]

# Connection-string params that must reach redis-py as numbers or bools.
_FLOAT_PARAMS = {"socket_timeout", "socket_connect_timeout", "health_check_interval"}
# Params kept as text whatever they look like (secrets, file paths, names).
_TEXT_PARAMS = {
    "password", "username", "sentinel_password", "sentinel_username", "client_name",
    "ssl_ca_certs", "ssl_ca_path", "ssl_ca_data", "ssl_certfile", "ssl_keyfile", "ssl_password",
    "ssl_cert_reqs", "ssl_min_version",
}
# The store's own params: consumed here, never passed to redis-py.
_STORE_PARAMS = {"sentinel_username", "sentinel_password", "skip_full_coverage_check"}
# Sentinel connections inherit these from the data-node params (TLS and timeouts).
_SENTINEL_INHERITED = ("socket_timeout", "socket_connect_timeout", "ssl")

# Backoff between retries of a command that hit a connection error or timeout.
_BACKOFF_BASE_S = 0.1
_BACKOFF_CAP_S = 2.0
# How often a Sentinel client re-asks the sentinels which server is the primary.
SENTINEL_RECHECK_S = 1.0


class RedisPermissionError(UnsupportedRedisServer):
    """The Redis user may not run a command, or touch a key, that the store needs."""


def parse_connection_string(connection_string: str) -> Tuple[List[Tuple[str, int]], Dict[str, Any], bool]:
    """Feast's `host:port[,host:port][,k=v...]` or a redis:// / rediss:// URL.

    Returns (nodes, params, is_url); for a URL, nodes hold the URL's host/port and params
    what redis-py parses from it (query parameters included, e.g. `?ssl_ca_certs=...`)."""
    text = connection_string.strip()
    if text.startswith(("redis://", "rediss://", "unix://")):
        pool_kwargs = redis.connection.parse_url(text)
        kwargs = dict(pool_kwargs)
        if text.startswith("rediss://"):
            kwargs["ssl"] = True
        kwargs.pop("connection_class", None)
        for name in list(kwargs):
            if name not in _TEXT_PARAMS and isinstance(kwargs[name], str):
                kwargs[name] = _param_value(name, kwargs[name])
        host, port = kwargs.pop("host", "localhost"), int(kwargs.pop("port", 6379))
        return [(host, port)], kwargs, True
    nodes: List[Tuple[str, int]] = []
    kwargs: Dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part:
            name, raw = part.split("=", 1)
            kwargs[name.strip()] = _param_value(name.strip(), raw.strip())
        else:
            host, _, port = part.rpartition(":")
            if not host:
                host, port = port, "6379"
            nodes.append((host, int(port)))
    if not nodes:
        raise ValueError(f"connection_string {connection_string!r} names no host:port")
    return nodes, kwargs, False


def _param_value(name: str, raw: str) -> Any:
    if name in _TEXT_PARAMS or not raw:
        return raw
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if name in _FLOAT_PARAMS:
        return float(raw)
    if name == "db" or name == "port":
        return int(raw)
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


_SECRET_PARAM = re.compile(r"((?:^|,)\s*(?:sentinel_)?password\s*=)[^,]*")
_URL_PASSWORD = re.compile(r"^(rediss?://[^:/@]*:)[^@]*@")


def redacted(connection_string: str) -> str:
    """The connection string for messages: passwords replaced by `***`."""
    return _URL_PASSWORD.sub(r"\1***@", _SECRET_PARAM.sub(r"\1***", connection_string))


def _signature(config: RedisHexpireOnlineStoreConfig) -> tuple:
    return (config.connection_string, config.redis_type, config.sentinel_master, config.retry_attempts)


def _retry(config: RedisHexpireOnlineStoreConfig) -> Retry:
    """Connection errors and timeouts (a failover, a restarted node) are retried with
    jittered exponential backoff. Every command the store sends is safe to repeat: reads,
    and the write script, which keeps the newest event and rewrites an equal one."""
    return Retry(EqualJitterBackoff(cap=_BACKOFF_CAP_S, base=_BACKOFF_BASE_S), config.retry_attempts)


class _Settings:
    """The connection string split into what each redis-py constructor takes."""

    def __init__(self, config: RedisHexpireOnlineStoreConfig) -> None:
        self.nodes, params, _ = parse_connection_string(config.connection_string)
        store = {name: params.pop(name) for name in list(params) if name in _STORE_PARAMS}
        self.kwargs: Dict[str, Any] = params
        self.require_full_coverage = not store.get("skip_full_coverage_check", False)
        sentinel_kwargs = {k: v for k, v in params.items() if k in _SENTINEL_INHERITED or k.startswith("ssl_")}
        if "sentinel_username" in store:
            sentinel_kwargs["username"] = store["sentinel_username"]
        if "sentinel_password" in store:
            sentinel_kwargs["password"] = store["sentinel_password"]
        self.sentinel_kwargs = sentinel_kwargs
        if config.redis_type is RedisType.redis_cluster and params.pop("db", 0) not in (0, None):
            raise ValueError("Redis Cluster has only database 0: remove db=... from connection_string")


# ---------------------------------------------------------------- sync


try:  # request policies arrived in redis-py 7.1; 7.0's pipelines route EVALSHA by key already
    from redis.commands.policies import (
        CommandPolicies,
        PolicyResolver,
        RequestPolicy,
        ResponsePolicy,
        StaticPolicyResolver,
    )
except ImportError:  # pragma: no cover - depends on the installed redis-py
    PolicyResolver = None

if PolicyResolver is not None:

    class _KeyedScripts(PolicyResolver):
        """Routes EVALSHA/EVAL by their declared keys. Without a policy, redis-py 7's sync
        cluster pipeline asks the default node `COMMAND GETKEYS` for every queued EVALSHA
        (one extra round trip per entity) before routing it by those same keys."""

        _KEYED = CommandPolicies(
            request_policy=RequestPolicy.DEFAULT_KEYED, response_policy=ResponsePolicy.DEFAULT_KEYED
        )

        def __init__(self, fallback=None) -> None:
            self._fallback = fallback or StaticPolicyResolver()

        def resolve(self, command_name: str):
            if command_name in ("evalsha", "eval"):
                return self._KEYED
            return self._fallback.resolve(command_name)

        def with_fallback(self, fallback):
            return _KeyedScripts(fallback)

    _CLUSTER_EXTRA_KWARGS: Dict[str, Any] = {"policy_resolver": _KeyedScripts()}
else:  # pragma: no cover
    _CLUSTER_EXTRA_KWARGS = {}


class StoreRedisCluster(RedisCluster):
    """RedisCluster whose pipelines route the write script without a lookup per command.
    Pipelines still group commands by node: one round trip per node per batch."""

    def pipeline(self, transaction=None, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        if _CLUSTER_EXTRA_KWARGS:
            pipe._policy_resolver = self._policy_resolver  # redis-py gives pipelines a default one
        return pipe


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

    def __init__(self, service_name, sentinel_manager, **kwargs):
        super().__init__(service_name, sentinel_manager, **kwargs)
        self._checked_at = time.monotonic()

    def get_connection(self, *args, **kwargs):
        if self._recheck_due():
            try:
                self.get_master_address()
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # no sentinel answers: keep using the primary we know
        return super().get_connection(*args, **kwargs)


class FollowingAsyncSentinelPool(_PrimaryRecheckClock, redis_async.sentinel.SentinelConnectionPool):
    """FollowingSentinelPool for redis.asyncio."""

    def __init__(self, service_name, sentinel_manager, **kwargs):
        super().__init__(service_name, sentinel_manager, **kwargs)
        self._checked_at = time.monotonic()

    async def get_connection(self, *args, **kwargs):
        if self._recheck_due():
            try:
                await self.get_master_address()
            except (redis.ConnectionError, redis.TimeoutError):
                pass
        return await super().get_connection(*args, **kwargs)


def build_sync_client(config: RedisHexpireOnlineStoreConfig) -> SyncClient:
    settings = _Settings(config)
    if config.redis_type is RedisType.redis_cluster:
        return StoreRedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in settings.nodes],
            retry=_retry(config),
            require_full_coverage=settings.require_full_coverage,
            **_CLUSTER_EXTRA_KWARGS,
            **settings.kwargs,
        )
    if config.redis_type is RedisType.redis_sentinel:
        sentinel = Sentinel(
            settings.nodes, sentinel_kwargs=settings.sentinel_kwargs, retry=_retry(config), **settings.kwargs
        )
        return sentinel.master_for(config.sentinel_master, connection_pool_class=FollowingSentinelPool)
    host, port = settings.nodes[0]
    return redis.Redis(host=host, port=port, retry=_retry(config), **settings.kwargs)


def check_server(client: SyncClient, config: RedisHexpireOnlineStoreConfig) -> Tuple[int, ...]:
    """Refuse servers without HEXPIRE (every node of a cluster, replicas included, since
    any may be promoted), load the write script (on every primary of a cluster), and
    check that the user may run what the store sends (`check_permissions`)."""
    where = redacted(config.connection_string)
    try:
        versions = _server_versions(client)
    except redis.exceptions.NoPermissionError as exc:
        raise _permission_error(exc, where, "the version check (INFO server)") from None
    lowest: Tuple[int, ...] = ()
    for text in versions:
        version = tuple(int(p) for p in str(text).split(".")[:3])
        if version < MIN_SERVER_VERSION:
            raise UnsupportedRedisServer(
                f"Redis at {where} is version {text}; feast-redis-hexpire needs Redis 7.4+ "
                "for per-field expiry (HEXPIRE/HPEXPIREAT)."
            )
        lowest = min(lowest, version) if lowest else version
    try:
        client.script_load(SCRIPT_SOURCE)
    except redis.exceptions.NoPermissionError as exc:
        raise _permission_error(exc, where, "loading the write script (SCRIPT LOAD)") from None
    check_permissions(client, config)
    return lowest


def _server_versions(client: SyncClient) -> List[str]:
    """`redis_version` of the server, or of every cluster node: primaries must answer, a
    replica that is down is skipped (it is checked again when this process restarts)."""
    if not isinstance(client, RedisCluster):
        return [client.info("server").get("redis_version", "0")]
    versions = []
    for node in client.get_nodes():
        try:
            info = client.info("server", target_nodes=node)
        except (redis.ConnectionError, redis.TimeoutError):
            if node.server_type == "primary":
                raise
            continue
        versions.append(info.get("redis_version", "0"))
    return versions


_PROBE_TTL_MS = 60_000


def check_permissions(client: SyncClient, config: RedisHexpireOnlineStoreConfig) -> None:
    """Run every command the store sends once, on a scratch key under `key_prefix`, so a
    user without one of them (an ACL missing HPEXPIREAT, a key pattern that does not cover
    the prefix) fails here, at `feast apply`, with the command named, rather than on the
    first streaming write. The key is removed again (and expires in 60 s regardless)."""
    where = redacted(config.connection_string)
    key = f"{config.key_prefix}:__hexpire_check__:{uuid.uuid4().hex}".encode()
    # The script anchors stream expiry at min(event time, server time): a day ahead makes
    # it the server's clock, so client clock skew cannot turn the probe into a no-op.
    now_ms = int(time.time() * 1000) + 86_400_000
    ts_field, ts = b"_ts:__check__", b"1970-01-01T00:00:00.000000Z"
    steps = [
        # The write script in both modes: HGET, TIME, HSET, HPEXPIREAT / HSET, HDEL, PEXPIRE.
        ("a stream write (EVALSHA of the write script: HGET, TIME, HSET, HPEXPIREAT)",
         ("EVALSHA", SCRIPT_SHA, 1, key, STREAM_MODE, ts_field, ts, _PROBE_TTL_MS, now_ms, 1, b"f", b"1")),
        ("a batch write (EVALSHA of the write script: HGET, HSET, HDEL, PEXPIRE)",
         ("EVALSHA", SCRIPT_SHA, 1, key, BATCH_MODE, ts_field, ts, _PROBE_TTL_MS, now_ms, 1, b"f", b"1", b"g")),
        ("an online read (HMGET)", ("HMGET", key, b"f", ts_field)),
        ("removing a deleted view's fields (HDEL)", ("HDEL", key, b"g")),
        ("teardown (UNLINK)", ("UNLINK", key)),
    ]
    replies = _run_steps(client, steps)
    if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
        client.script_load(SCRIPT_SOURCE)  # the server lost the script since it was loaded
        replies = _run_steps(client, steps)
    for (what, _), reply in zip(steps, replies):
        if _is_permission_error(reply):
            raise _permission_error(reply, where, what, config.key_prefix) from None
        if isinstance(reply, redis.exceptions.ResponseError):
            if "unknown command" in str(reply).lower():
                raise UnsupportedRedisServer(
                    f"Redis at {where} cannot run {what}: {reply}. feast-redis-hexpire needs Redis 7.4+ "
                    "with the HEXPIRE command family."
                ) from None
            raise UnsupportedRedisServer(f"Redis at {where} failed {what}: {reply}") from None
    try:
        client.scan(0, match=f"{config.key_prefix}:__hexpire_check__:*", count=1)
    except redis.exceptions.NoPermissionError as exc:
        raise _permission_error(exc, where, "teardown and view removal (SCAN)") from None


def _run_steps(client: SyncClient, steps: List[Tuple[str, tuple]]) -> List[Any]:
    pipe = client.pipeline(transaction=False)
    for _, command in steps:
        pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)


_COMMAND_IN_NOPERM = re.compile(r"permissions to (?:run|access) the '([^']+)' command", re.IGNORECASE)


def _is_permission_error(reply: object) -> bool:
    """NOPERM, or an ACL failure inside the write script (Redis reports that one as
    `ERR ACL failure in script: ... no permissions to run the 'hpexpireat' command`)."""
    if isinstance(reply, redis.exceptions.NoPermissionError):
        return True
    if not isinstance(reply, redis.exceptions.ResponseError):
        return False
    text = str(reply)
    return "NOPERM" in text or "ACL failure" in text or "no permissions" in text.lower()


def _permission_error(exc: Exception, where: str, what: str, key_prefix: str = "") -> RedisPermissionError:
    message = str(exc)
    command = _COMMAND_IN_NOPERM.search(message)
    if command:
        detail = f"the Redis user may not run {command.group(1).upper()}"
    elif "key" in message.lower():
        detail = f"the Redis user may not access keys matching {key_prefix or '<key_prefix>'}:*"
    else:
        detail = "the Redis user lacks a permission"
    return RedisPermissionError(
        f"Redis at {where}: {detail}, needed for {what} ({message}). Grant the ACL user the "
        "commands and key pattern listed in docs/topologies.md."
    )


_sync_clients: Dict[tuple, SyncClient] = {}
_checked_prefixes: Set[tuple] = set()
_lock = threading.Lock()


def sync_client(config: RedisHexpireOnlineStoreConfig) -> SyncClient:
    key = (os.getpid(), *_signature(config))
    client = _sync_clients.get(key)
    if client is None or (key, config.key_prefix) not in _checked_prefixes:
        with _lock:
            client = _sync_clients.get(key)
            if client is None:
                client = build_sync_client(config)
                try:
                    check_server(client, config)
                except BaseException:
                    client.close()
                    raise
                _sync_clients[key] = client
            elif (key, config.key_prefix) not in _checked_prefixes:
                check_permissions(client, config)  # the same server, another key prefix
            _checked_prefixes.add((key, config.key_prefix))
    return client


# ---------------------------------------------------------------- async


def build_async_client(config: RedisHexpireOnlineStoreConfig) -> AsyncClient:
    settings = _Settings(config)
    if config.redis_type is RedisType.redis_cluster:
        return redis_async.RedisCluster(
            startup_nodes=[redis_async.cluster.ClusterNode(h, p) for h, p in settings.nodes],
            retry=_retry(config),
            require_full_coverage=settings.require_full_coverage,
            **settings.kwargs,
        )
    if config.redis_type is RedisType.redis_sentinel:
        sentinel = redis_async.sentinel.Sentinel(
            settings.nodes, sentinel_kwargs=settings.sentinel_kwargs, retry=_retry(config), **settings.kwargs
        )
        return sentinel.master_for(config.sentinel_master, connection_pool_class=FollowingAsyncSentinelPool)
    host, port = settings.nodes[0]
    return redis_async.Redis(host=host, port=port, retry=_retry(config), **settings.kwargs)


# key -> (the loop it belongs to, client). Holding the loop keeps its id from being reused.
_async_clients: Dict[tuple, Tuple[asyncio.AbstractEventLoop, AsyncClient]] = {}


async def async_client(config: RedisHexpireOnlineStoreConfig) -> AsyncClient:
    """One client per event loop: redis.asyncio connections are bound to the loop that made them."""
    # The sync check runs once per process and covers the version, script and permissions.
    sync_client(config)
    loop = asyncio.get_running_loop()
    key = (os.getpid(), id(loop), *_signature(config))
    entry = _async_clients.get(key)
    if entry is None or entry[0] is not loop:
        for stale in [k for k, (l, _) in _async_clients.items() if l.is_closed()]:
            del _async_clients[stale]
        entry = (loop, build_async_client(config))
        _async_clients[key] = entry
    return entry[1]


async def close_async_clients() -> None:
    loop = asyncio.get_running_loop()
    for key in [k for k, (l, _) in _async_clients.items() if l is loop]:
        _, client = _async_clients.pop(key)
        await client.aclose()


def reset_clients() -> None:
    """Forget every cached client (tests, and after teardown of a server)."""
    with _lock:
        for client in _sync_clients.values():
            try:
                client.close()
            except Exception:
                pass
        _sync_clients.clear()
        _checked_prefixes.clear()
        _async_clients.clear()
