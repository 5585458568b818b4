"""feast-redis-hexpire: a Feast online store on Redis 7.4+ with per-field expiry.

`type: feast_redis_hexpire.RedisHexpireOnlineStore` in feature_store.yaml. Feast looks
up `RedisHexpireOnlineStoreConfig` next to it. Imports are lazy so that tools such as
`python -m feast_redis_hexpire.local_redis` start without loading Feast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RedisHexpireOnlineStore", "RedisHexpireOnlineStoreConfig"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "RedisHexpireOnlineStore":
        from .store import RedisHexpireOnlineStore

        return RedisHexpireOnlineStore
    if name == "RedisHexpireOnlineStoreConfig":
        from .config import RedisHexpireOnlineStoreConfig

        return RedisHexpireOnlineStoreConfig
    raise AttributeError(f"module 'feast_redis_hexpire' has no attribute {name!r}")
