"""The `online_store:` block of feature_store.yaml."""

import os
import re
from enum import Enum
from typing import Literal, Optional

from pydantic import StrictStr, field_validator

from feast.repo_config import FeastConfigBaseModel

STORE_TYPE = "feast_redis_hexpire.RedisHexpireOnlineStore"

_ENV_WITH_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")
_ENV_PLAIN = re.compile(r"\$\{(\w+)\}")


class FieldNaming(str, Enum):
    """How feature names become hash fields."""

    plain = "plain"  # field = feature name; `feast apply` rejects two views sharing one
    qualified = "qualified"  # field = "<view>:<feature>"; always unique


class RedisType(str, Enum):
    """The deployment shape; names match Feast's own Redis store."""

    redis = "redis"
    redis_cluster = "redis_cluster"
    redis_sentinel = "redis_sentinel"


class HashTag(str, Enum):
    """Which part of the key, if any, is a Redis Cluster hash tag (`{...}`)."""

    none = "none"  # fs:proj:user_id=u1 - every entity hashes to its own slot: spread over all shards
    project = "project"  # fs:{proj}:user_id=u1 - the whole project in one slot, so on one shard


class RedisHexpireOnlineStoreConfig(FeastConfigBaseModel):
    """Online store config. Feast finds it by the `<StoreClass>Config` naming convention,
    and finds the store class in this class's `__module__`: point that at the package,
    which exports both."""

    __module__ = "feast_redis_hexpire"

    type: Literal[
        "feast_redis_hexpire.RedisHexpireOnlineStore",
        "feast_redis_hexpire.store.RedisHexpireOnlineStore",
    ] = STORE_TYPE

    connection_string: StrictStr = "localhost:6379"
    """Feast's format `host:port[,host:port][,param=value...]`, or a redis:// / rediss:// URL.
    Params are passed to redis-py: username, password, db, ssl, ssl_ca_certs, ssl_certfile,
    ssl_keyfile, ssl_cert_reqs, socket_timeout...; the store's own: sentinel_username,
    sentinel_password, skip_full_coverage_check. Hosts are cluster startup nodes
    (redis_cluster) or sentinels (redis_sentinel). See docs/topologies.md.
    `${VAR:-default}` is expanded from the environment (Feast's own expansion only knows
    `${VAR}`, which it leaves as literal text when VAR is unset)."""

    redis_type: RedisType = RedisType.redis
    sentinel_master: StrictStr = "mymaster"
    """The master name the sentinels monitor (redis_type: redis_sentinel)."""

    retry_attempts: int = 6
    """Retries of a command after a connection error or timeout (failover, restart), with
    jittered exponential backoff from 0.1 s up to 2 s between tries (about 4-7 s in all)."""

    key_prefix: StrictStr = "fs"
    """First component of every entity key: `<key_prefix>:<project>:<join_key>=<value>`."""

    hash_tag: HashTag = HashTag.none
    """`project` writes `<key_prefix>:{<project>}:...`: on Redis Cluster the whole project
    shares one slot (one shard serves all of it). `none` spreads entities over all slots."""

    batch_ttl_seconds: Optional[int] = 172800
    """Key-level EXPIRE set by every batch-view write. 0 or null: keys never expire."""

    stream_ttl_seconds: Optional[int] = 300
    """Per-field expiry for push/stream views, anchored at event time. 0 or null: none."""

    field_naming: FieldNaming = FieldNaming.plain

    write_chunk_size: int = 500
    """Entities per pipelined round trip on writes (also the progress-bar step)."""

    @field_validator("batch_ttl_seconds", "stream_ttl_seconds")
    @classmethod
    def _non_negative_ttl(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value < 0:
            raise ValueError(f"TTL must be >= 0 seconds (0 or null disables it), got {value}")
        return value

    @field_validator("connection_string")
    @classmethod
    def _expand_env_defaults(cls, value: str) -> str:
        expanded = _ENV_WITH_DEFAULT.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), value)
        unexpanded = _ENV_PLAIN.search(expanded)
        if unexpanded:
            raise ValueError(
                f"connection_string refers to environment variable {unexpanded.group(1)}, which is not set; "
                f"set it, or give a default: ${{{unexpanded.group(1)}:-localhost:6379}}"
            )
        return expanded

    @field_validator("key_prefix")
    @classmethod
    def _prefix_has_no_separator(cls, value: str) -> str:
        if not value or any(c in value for c in ":{}*?[]\\ "):
            raise ValueError(
                f"key_prefix {value!r} must be non-empty and free of ':', braces, glob characters and spaces"
            )
        return value

    @field_validator("retry_attempts")
    @classmethod
    def _non_negative_retries(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"retry_attempts must be >= 0, got {value}")
        return value

    @field_validator("write_chunk_size")
    @classmethod
    def _positive_chunk(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"write_chunk_size must be >= 1, got {value}")
        return value
