"""A FeatureStore of its own (project, registry) on a given server, for the vector storage
and retrieval tests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from feast import FeatureStore, RepoConfig


def feature_store(server: Any, tmp: Path, provider: str = "local", **online: Any) -> FeatureStore:
    """`online` adds online_store options (vector_enabled, similarity, ...)."""
    config = RepoConfig(
        project=f"v_{uuid.uuid4().hex[:8]}",
        provider=provider,
        registry={"path": str(tmp / f"{uuid.uuid4().hex}.db"), "cache_ttl_seconds": 0},
        online_store={
            "type": "feast_redis_hexpire.RedisHexpireOnlineStore",
            "connection_string": server.connection_string,
            **online,
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    return FeatureStore(config=config, repo_path=str(tmp))
