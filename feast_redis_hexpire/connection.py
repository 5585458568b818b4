"""Redis clients: parsed from the config once, created once per process (and per event
loop for asyncio), and checked once for a server that has the HEXPIRE family."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any, Dict, List, Tuple, Union

import redis
import redis.asyncio as redis_async
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from .config import RedisHexpireOnlineStoreConfig, RedisType
from .errors import UnsupportedRedisServer
from .write_script import SCRIPT_SOURCE

MIN_SERVER_VERSION = (7, 4, 0)

SyncClient = Union[redis.Redis, RedisCluster]
AsyncClient = Union[redis_async.Redis, redis_async.RedisCluster]

# Connection-string params that must reach redis-py as numbers or bools.
_FLOAT_PARAMS = {"socket_timeout", "socket_connect_timeout", "health_check_interval"}


def parse_connection_string(connection_string: str) -> Tuple[List[Tuple[str, int]], Dict[str, Any], bool]:
    """Feast's `host:port[,host:port][,k=v...]` or a redis:// / rediss:// URL.

    Returns (nodes, redis-py kwargs, is_url); for a URL, nodes hold the URL's host/port
    and kwargs what redis-py parses from it."""
    text = connection_string.strip()
    if text.startswith(("redis://", "rediss://", "unix://")):
        pool_kwargs = redis.connection.parse_url(text)
        kwargs = dict(pool_kwargs)
        if text.startswith("rediss://"):
            kwargs["ssl"] = True
        kwargs.pop("connection_class", None)
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
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if name in _FLOAT_PARAMS:
        return float(raw)
    if name == "db" or name == "port":
        return int(raw)
    if name in ("password", "username") or not raw:
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _signature(config: RedisHexpireOnlineStoreConfig) -> tuple:
    return (config.connection_string, config.redis_type, config.sentinel_master)


# ---------------------------------------------------------------- sync


def build_sync_client(config: RedisHexpireOnlineStoreConfig) -> SyncClient:
    nodes, kwargs, _ = parse_connection_string(config.connection_string)
    if config.redis_type is RedisType.redis_cluster:
        kwargs.pop("db", None)
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], **kwargs)
    if config.redis_type is RedisType.redis_sentinel:
        sentinel_kwargs = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
        sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs or None, **kwargs)
        return sentinel.master_for(config.sentinel_master)
    host, port = nodes[0]
    return redis.Redis(host=host, port=port, **kwargs)


def check_server(client: SyncClient, where: str) -> Tuple[int, ...]:
    """Refuse servers without HEXPIRE, and load the write script while connected."""
    info = client.info("server")
    if isinstance(info, dict) and "redis_version" not in info:  # cluster: one dict per node
        versions = [v.get("redis_version", "0") for v in info.values() if isinstance(v, dict)]
    else:
        versions = [info.get("redis_version", "0")]
    for text in versions:
        version = tuple(int(p) for p in str(text).split(".")[:3])
        if version < MIN_SERVER_VERSION:
            raise UnsupportedRedisServer(
                f"Redis at {where} is version {text}; feast-redis-hexpire needs Redis 7.4+ "
                "for per-field expiry (HEXPIRE/HPEXPIREAT)."
            )
    client.script_load(SCRIPT_SOURCE)
    return version


_sync_clients: Dict[tuple, SyncClient] = {}
_lock = threading.Lock()


def sync_client(config: RedisHexpireOnlineStoreConfig) -> SyncClient:
    key = (os.getpid(), *_signature(config))
    client = _sync_clients.get(key)
    if client is None:
        with _lock:
            client = _sync_clients.get(key)
            if client is None:
                client = build_sync_client(config)
                check_server(client, config.connection_string)
                _sync_clients[key] = client
    return client


# ---------------------------------------------------------------- async


def build_async_client(config: RedisHexpireOnlineStoreConfig) -> AsyncClient:
    nodes, kwargs, _ = parse_connection_string(config.connection_string)
    if config.redis_type is RedisType.redis_cluster:
        kwargs.pop("db", None)
        return redis_async.RedisCluster(
            startup_nodes=[redis_async.cluster.ClusterNode(h, p) for h, p in nodes], **kwargs
        )
    if config.redis_type is RedisType.redis_sentinel:
        sentinel_kwargs = {k: v for k, v in kwargs.items() if k in ("socket_timeout", "socket_connect_timeout")}
        sentinel = redis_async.sentinel.Sentinel(nodes, sentinel_kwargs=sentinel_kwargs or None, **kwargs)
        return sentinel.master_for(config.sentinel_master)
    host, port = nodes[0]
    return redis_async.Redis(host=host, port=port, **kwargs)


# key -> (the loop it belongs to, client). Holding the loop keeps its id from being reused.
_async_clients: Dict[tuple, Tuple[asyncio.AbstractEventLoop, AsyncClient]] = {}


async def async_client(config: RedisHexpireOnlineStoreConfig) -> AsyncClient:
    """One client per event loop: redis.asyncio connections are bound to the loop that made them."""
    # The sync check runs once per process and covers the version and script loading.
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
        _async_clients.clear()
