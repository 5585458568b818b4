"""feast-redis-hexpire: a Feast online store on Redis 7.4+ with per-field expiry.

`type: feast_redis_hexpire.RedisHexpireOnlineStore` in feature_store.yaml. Feast looks up
`RedisHexpireOnlineStoreConfig` next to it. `provider: feast_redis_hexpire.HexpireProvider`
opts into the Arrow-native write path (provider.py). `EventWriter` / `AsyncEventWriter`
write stream events one at a time or in batches without `store.push` (events.py);
`DocumentSearch` / `AsyncDocumentSearch` search documents in rank order (documents.py). Imports are lazy, so
`import feast_redis_hexpire` does not load Feast until one of these names is used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AsyncDocumentSearch",
    "AsyncEventWriter",
    "DocumentResponse",
    "DocumentSearch",
    "EventWriteResult",
    "EventWriter",
    "HexpireProvider",
    "RedisHexpireOnlineStore",
    "RedisHexpireOnlineStoreConfig",
]
_EVENTS = ("AsyncEventWriter", "EventWriteResult", "EventWriter")
_DOCUMENTS = ("AsyncDocumentSearch", "DocumentResponse", "DocumentSearch")
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name == "RedisHexpireOnlineStore":
        from .store import RedisHexpireOnlineStore

        return RedisHexpireOnlineStore
    if name == "HexpireProvider":
        from .provider import HexpireProvider

        return HexpireProvider
    if name in _EVENTS:
        from . import events

        return getattr(events, name)
    if name in _DOCUMENTS:
        from . import documents

        return getattr(documents, name)
    if name == "RedisHexpireOnlineStoreConfig":
        from .config import RedisHexpireOnlineStoreConfig

        return RedisHexpireOnlineStoreConfig
    raise AttributeError(f"module 'feast_redis_hexpire' has no attribute {name!r}")
