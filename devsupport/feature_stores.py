"""A FeatureStore of its own (project, registry) on a given server: what the vector
retrieval tests and benchmarks/retrieval.py each build, over and over."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from feast import FeatureStore, RepoConfig


def feature_store(
    server: Any, tmp: Path, provider: str = "local", project_prefix: str = "v", **online: Any
) -> FeatureStore:
    """This store on `server` (anything with a `connection_string`), a fresh project and
    registry under `tmp`; `online` adds online_store options (vector_enabled, ...)."""
    config = RepoConfig(
        project=f"{project_prefix}_{uuid.uuid4().hex[:8]}",
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
