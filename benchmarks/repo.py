"""The synthetic Feast repo the benchmarks run against, built identically for each store.

Entity ``user`` (String join key ``user_id``); two batch views over parquet FileSources
and one stream view over a PushSource:

* ``profile``   country (str), account_age_days (int), credit_score (float)
* ``tx_stats``  tx_count_7d (int), avg_amount_30d (float), chargebacks_180d (int)
* ``activity``  tx_count_5m (int), last_amount (float), last_device (str),
  failed_logins_15m (int); its PushSource is ``activity_push``.

One row per user per view. Values come from numpy with a fixed seed, so both stores
(and the raw baselines) write byte-for-byte the same data.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")  # no telemetry calls while timing

import secrets
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

BATCH_TTL_SECONDS = 172800  # both stores: key-level expiry of 2 days
STREAM_TTL_SECONDS = 86400  # this store: per-field expiry of pushed/stream fields (long enough for any run)
HEXPIRE_KEY_PREFIX = "benchhx"

VIEWS: dict[str, list[str]] = {
    "profile": ["country", "account_age_days", "credit_score"],
    "tx_stats": ["tx_count_7d", "avg_amount_30d", "chargebacks_180d"],
    "activity": ["tx_count_5m", "last_amount", "last_device", "failed_logins_15m"],
}
BATCH_VIEWS = ("profile", "tx_stats")
STREAM_VIEW = "activity"
PUSH_SOURCE = "activity_push"

# The mixed read: 5 features across the three views.
READ_FEATURES = [
    "profile:country",
    "profile:account_age_days",
    "tx_stats:avg_amount_30d",
    "tx_stats:tx_count_7d",
    "activity:last_amount",
]
READ_BY_VIEW: dict[str, list[str]] = {}
for _ref in READ_FEATURES:
    _view, _name = _ref.split(":")
    READ_BY_VIEW.setdefault(_view, []).append(_name)

COUNTRIES = np.array(["US", "GB", "DE", "FR", "NL", "ES", "BR", "IN", "JP", "CA"], dtype=object)


def user_ids(n: int) -> np.ndarray:
    width = max(7, len(str(n)))
    return np.array([f"u{i:0{width}d}" for i in range(n)], dtype=object)


def _timestamps(rng: np.random.Generator, n: int, now: datetime, lo_s: float, hi_s: float) -> pd.Series:
    base = np.datetime64(now.astimezone(timezone.utc).replace(tzinfo=None), "us")
    offsets = rng.integers(int(lo_s * 1_000_000), int(hi_s * 1_000_000), size=n).astype("timedelta64[us]")
    return pd.Series(base - offsets).dt.tz_localize("UTC")


def generate(n: int, seed: int = 42, now: datetime | None = None) -> dict[str, pd.DataFrame]:
    """One row per user per view; batch rows 1 min .. 1 h old, activity rows 1 s .. 2 min old."""
    now = now or datetime.now(timezone.utc)
    rng = np.random.default_rng(seed)
    ids = user_ids(n)
    frames: dict[str, pd.DataFrame] = {}

    ts = _timestamps(rng, n, now, 60, 3600)
    frames["profile"] = pd.DataFrame(
        {
            "user_id": ids,
            "country": COUNTRIES[rng.integers(0, len(COUNTRIES), n)],
            "account_age_days": rng.integers(1, 3650, n).astype("int64"),
            "credit_score": np.round(rng.uniform(300, 850, n), 4),
            "event_timestamp": ts,
            "created": ts,
        }
    )
    ts = _timestamps(rng, n, now, 60, 3600)
    frames["tx_stats"] = pd.DataFrame(
        {
            "user_id": ids,
            "tx_count_7d": rng.poisson(12, n).astype("int64"),
            "avg_amount_30d": np.round(rng.lognormal(3.5, 0.6, n), 2),
            "chargebacks_180d": rng.choice([0, 1, 2, 3], n, p=[0.85, 0.10, 0.04, 0.01]).astype("int64"),
            "event_timestamp": ts,
            "created": ts,
        }
    )
    frames["activity"] = activity_frame(rng, ids, now, 1, 120)
    return frames


def activity_frame(rng: np.random.Generator, ids: np.ndarray, now: datetime, lo_s: float, hi_s: float) -> pd.DataFrame:
    n = len(ids)
    ts = _timestamps(rng, n, now, lo_s, hi_s)
    return pd.DataFrame(
        {
            "user_id": ids,
            "tx_count_5m": rng.choice([0, 1, 2, 3, 5], n, p=[0.5, 0.3, 0.12, 0.06, 0.02]).astype("int64"),
            "last_amount": np.round(rng.lognormal(3.0, 1.0, n), 2),
            "last_device": np.array([f"dev-{x:06x}" for x in rng.integers(0, 16**6, n)], dtype=object),
            "failed_logins_15m": rng.choice([0, 1, 2, 4], n, p=[0.8, 0.12, 0.06, 0.02]).astype("int64"),
            "event_timestamp": ts,
            "created": ts,
        }
    )


def push_frames(n: int, batch: int, seed: int = 7) -> list[pd.DataFrame]:
    """Fresh activity rows for every user, pre-split. Event times are "now" minus < 1 ms, so a
    push is always newer than anything written before it (no row is skipped as stale)."""
    rng = np.random.default_rng(seed)
    df = activity_frame(rng, user_ids(n), datetime.now(timezone.utc), 0, 0.001)
    return [df.iloc[i : i + batch].reset_index(drop=True) for i in range(0, n, batch)]


def write_parquet(frames: dict[str, pd.DataFrame], data_dir: Path) -> dict[str, Path]:
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for view, df in frames.items():
        paths[view] = data_dir / f"{view}.parquet"
        df.to_parquet(paths[view], index=False)
    return paths


def feast_objects(paths: dict[str, Path]) -> list:
    from feast import Entity, FeatureView, Field, FileSource, PushSource
    from feast.types import Float64, Int64, String
    from feast.value_type import ValueType

    dtypes = {
        "country": String,
        "account_age_days": Int64,
        "credit_score": Float64,
        "tx_count_7d": Int64,
        "avg_amount_30d": Float64,
        "chargebacks_180d": Int64,
        "tx_count_5m": Int64,
        "last_amount": Float64,
        "last_device": String,
        "failed_logins_15m": Int64,
    }
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

    def source(view: str) -> FileSource:
        return FileSource(
            name=f"{view}_source",
            path=str(paths[view]),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )

    def schema(view: str) -> list:
        return [Field(name="user_id", dtype=String)] + [Field(name=f, dtype=dtypes[f]) for f in VIEWS[view]]

    push = PushSource(name=PUSH_SOURCE, batch_source=source("activity"))
    views = [
        FeatureView(name=v, entities=[user], ttl=timedelta(days=2), schema=schema(v), source=source(v), online=True)
        for v in BATCH_VIEWS
    ]
    views.append(
        FeatureView(
            name=STREAM_VIEW,
            entities=[user],
            ttl=timedelta(days=1),
            schema=schema(STREAM_VIEW),
            source=push,
            online=True,
        )
    )
    return [user, push, *views]


@dataclass(frozen=True)
class StoreKind:
    """One store configuration the harness builds a repo for."""

    name: str
    label: str
    store: str  # "hexpire" | "builtin": which online store block
    field_naming: str | None = None  # this store only
    provider: str = "local"  # feature_store.yaml's provider


FAST_PROVIDER = "feast_redis_hexpire.HexpireProvider"
KINDS: dict[str, StoreKind] = {
    k.name: k
    for k in (
        StoreKind("builtin", "built-in (type: redis)", "builtin"),
        StoreKind("builtin_glide", "built-in, client: glide", "builtin"),
        StoreKind("hexpire", "this store", "hexpire", "plain"),
        StoreKind("hexpire_qualified", "this store, qualified names", "hexpire", "qualified"),
        StoreKind("hexpire_fast", "this store + HexpireProvider", "hexpire", "plain", FAST_PROVIDER),
    )
}
"""`plain` field names are the benchmark's shape (the raw baselines use the same names);
`hexpire_qualified` is the store's default naming (`<view>:<feature>`), measured beside it."""


@dataclass
class BenchRepo:
    kind: StoreKind
    path: Path
    project: str
    store: object = None  # feast.FeatureStore
    extra: dict = field(default_factory=dict)

    @property
    def online_store(self):
        return self.store._get_provider().online_store

    def key(self, user_id: str) -> bytes:
        if self.kind.store == "hexpire":
            return hexpire_key(self.project, user_id)
        return builtin_key(self.project, user_id)

    def key_pattern(self) -> str:
        """SCAN pattern of every key this repo's store writes."""
        if self.kind.store == "hexpire":
            return f"{HEXPIRE_KEY_PREFIX}:{self.project}:*=*"  # entity keys, not the project's `_views` record
        return f"*{self.project}"  # the built-in store's keys are <serialized entity key><project>


def online_store_block(kind: StoreKind, connection_string: str) -> dict:
    if kind.store == "hexpire":
        block = {
            "type": "feast_redis_hexpire.RedisHexpireOnlineStore",
            "connection_string": connection_string,
            "key_prefix": HEXPIRE_KEY_PREFIX,
            "batch_ttl_seconds": BATCH_TTL_SECONDS,
            "stream_ttl_seconds": STREAM_TTL_SECONDS,
        }
        if kind.field_naming:
            block["field_naming"] = kind.field_naming
        return block
    if kind.store == "builtin":
        # Feast's own store, defaults otherwise (skip_dedup: false, i.e. it reads the
        # stored timestamps before writing, as this store's Lua script does).
        block = {"type": "redis", "connection_string": connection_string, "key_ttl_seconds": BATCH_TTL_SECONDS}
        if kind.name == "builtin_glide":
            block["client"] = "glide"  # Valkey GLIDE: the built-in's fastest read configuration
        return block
    raise ValueError(kind)


def build_repo(
    kind: StoreKind | str, connection_string: str, paths: dict[str, Path], run_id: str, root: Path | None = None
) -> BenchRepo:
    """Temp dir with feature_store.yaml, FeatureStore over it, definitions applied."""
    from feast import FeatureStore

    kind = KINDS[kind] if isinstance(kind, str) else kind
    path = Path(tempfile.mkdtemp(prefix=f"bench-{kind.name}-", dir=root))
    # Every kind's project name has one length: keys hold it, and a longer key costs the
    # server more to hash and copy (hexpire_fast's was 5 bytes longer than hexpire's).
    project = f"bench_{zlib.crc32(kind.name.encode()):08x}_{run_id}"
    config = {
        "project": project,
        "provider": kind.provider,
        "registry": {"path": str(path / "registry.db"), "cache_ttl_seconds": 0},
        "offline_store": {"type": "file"},
        "online_store": online_store_block(kind, connection_string),
        "entity_key_serialization_version": 3,
    }
    (path / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    store = FeatureStore(repo_path=str(path))
    store.apply(feast_objects(paths))
    store.refresh_registry()
    return BenchRepo(kind=kind, path=path, project=project, store=store)


def new_run_id() -> str:
    return secrets.token_hex(3)


def hexpire_key(project: str, user_id: str) -> bytes:
    return f"{HEXPIRE_KEY_PREFIX}:{project}:user_id={user_id}".encode()


def builtin_key(project: str, user_id: str) -> bytes:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    ek = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])
    return serialize_entity_key(ek, entity_key_serialization_version=3) + project.encode()
