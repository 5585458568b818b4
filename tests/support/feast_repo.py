"""Write a Feast repo's feature_store.yaml and apply definition objects to it: what the
purpose-built test repos (`engine_repo`, `compat_repo`) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HEXPIRE_TYPE = "feast_redis_hexpire.RedisHexpireOnlineStore"


def hexpire_online_store(connection_string: str, key_prefix: str) -> dict[str, Any]:
    return {"type": HEXPIRE_TYPE, "connection_string": connection_string, "key_prefix": key_prefix}


def write_feature_store_yaml(
    path: Path, project: str, online_store: dict[str, Any], batch_engine: dict[str, Any] | None = None
) -> None:
    """A local-provider repo with a file offline store and a file registry under data/."""
    config: dict[str, Any] = {
        "project": project,
        "provider": "local",
        "registry": "data/registry.db",
        "offline_store": {"type": "file"},
        "online_store": online_store,
        "entity_key_serialization_version": 3,
    }
    if batch_engine is not None:
        config["batch_engine"] = batch_engine
    path.mkdir(parents=True, exist_ok=True)
    (path / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def apply(path: Path, objects: list[Any]):  # -> feast.FeatureStore; Feast imported lazily (slow)
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(path))
    store.apply(objects)
    return store
