"""Read-only views of what the store keeps in Redis, shared by the CLI and the demo.

* :func:`inspect_key`: one entity hash the way ``HGETALL`` + ``HPTTL`` + ``PTTL`` show it,
  each field labelled with the view (and kind) that writes it;
* :func:`sample_project`: entity count (SCAN, never KEYS) and, over a random sample of at
  most 1000 keys, the key/field TTL distribution and ``MEMORY USAGE`` per entity;
* :func:`load_repo`: a repo's config and feature definitions without ``feast apply``
  (the definitions are imported from the repo's ``.py`` files, as Feast does).

Nothing here writes to Redis.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from .keys import entity_key_texts, project_prefix
from .lifecycle import project_keys
from .views import TS_FIELD_PREFIX, ViewLayout

# HPTTL / PTTL sentinels
NO_SUCH_FIELD = -2
NO_EXPIRY = -1

DEFAULT_SAMPLE_SIZE = 1000
_PIPELINE_BATCH = 200

Progress = Callable[[int], None]


# ------------------------------------------------------------------ field ownership


@dataclass(frozen=True)
class FieldOwner:
    view: str
    kind: str  # "batch" / "stream"
    feature: Optional[str]  # None for the view's `_ts:<view>` event-time field


def field_owners(layouts: Iterable[ViewLayout]) -> Dict[bytes, FieldOwner]:
    """Hash field -> the view that writes it (features and `_ts:<view>` fields)."""
    owners: Dict[bytes, FieldOwner] = {}
    for layout in layouts:
        for feature in layout.features.values():
            owners[feature.field] = FieldOwner(layout.name, layout.kind.value, feature.name)
        owners[layout.ts_field] = FieldOwner(layout.name, layout.kind.value, None)
    return owners


def _owner_of(name: bytes, owners: Dict[bytes, FieldOwner]) -> Optional[FieldOwner]:
    owner = owners.get(name)
    if owner is None and name.startswith(TS_FIELD_PREFIX.encode()):
        # A view that is no longer defined still reads as "its event time".
        return FieldOwner(name[len(TS_FIELD_PREFIX):].decode(errors="replace"), "unknown", None)
    return owner


# ------------------------------------------------------------------ one key


def seconds_from_ms(ttl_ms: int) -> int:
    """What TTL/HTTL print: milliseconds rounded to the nearest second; -1/-2 unchanged."""
    return ttl_ms if ttl_ms < 0 else (ttl_ms + 500) // 1000


@dataclass
class FieldInfo:
    field: str
    value: str
    ttl_ms: int  # HPTTL: -1 no per-field expiry, -2 gone since HGETALL
    view: Optional[str] = None
    kind: Optional[str] = None
    feature: Optional[str] = None

    @property
    def ttl_seconds(self) -> int:
        return seconds_from_ms(self.ttl_ms)

    def effective_ttl_ms(self, key_ttl_ms: int) -> int:
        """When the value goes away: its own expiry or the key's, whichever is first."""
        candidates = [t for t in (self.ttl_ms, key_ttl_ms) if t >= 0]
        return min(candidates) if candidates else NO_EXPIRY


@dataclass
class EntityHash:
    key: str
    exists: bool
    key_ttl_ms: int  # PTTL: -1 no expiry, -2 no such key
    fields: List[FieldInfo] = field(default_factory=list)
    memory_bytes: Optional[int] = None

    @property
    def key_ttl_seconds(self) -> int:
        return seconds_from_ms(self.key_ttl_ms)

    def as_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["key_ttl_seconds"] = self.key_ttl_seconds
        for info, row in zip(self.fields, out["fields"]):
            row["ttl_seconds"] = info.ttl_seconds
        return out


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="backslashreplace")
    return str(raw)


def _field_sort_key(info: FieldInfo) -> Tuple:
    # Group by view, event-time field last within its view, then by name.
    return (info.view is None, info.view or "", info.feature is None, info.field)


def inspect_key(
    client: Any,
    key: bytes | str,
    layouts: Sequence[ViewLayout] = (),
    memory: bool = True,
) -> EntityHash:
    """HGETALL + PTTL (+ MEMORY USAGE) in one round trip, then HPTTL on the fields found."""
    key_bytes = key.encode() if isinstance(key, str) else key
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(key_bytes)
    pipe.pttl(key_bytes)
    if memory:
        pipe.memory_usage(key_bytes)
    replies = pipe.execute()
    values: Dict[bytes, bytes] = replies[0] or {}
    key_ttl = int(replies[1])
    mem = replies[2] if memory else None
    if not values:
        return EntityHash(key=_text(key_bytes), exists=False, key_ttl_ms=key_ttl)
    names = list(values)
    ttls = client.hpttl(key_bytes, *names)
    owners = field_owners(layouts)
    fields = []
    for name, ttl in zip(names, ttls):
        owner = _owner_of(name, owners)
        fields.append(
            FieldInfo(
                field=_text(name),
                value=_text(values[name]),
                ttl_ms=int(ttl),
                view=owner.view if owner else None,
                kind=owner.kind if owner else None,
                feature=owner.feature if owner else None,
            )
        )
    fields.sort(key=_field_sort_key)
    return EntityHash(
        key=_text(key_bytes), exists=True, key_ttl_ms=key_ttl, fields=fields,
        memory_bytes=int(mem) if mem is not None else None,
    )


def hash_tag_of(store_config: Any) -> str:
    """The config's `hash_tag` as text ("none" / "project")."""
    tag = getattr(store_config, "hash_tag", "none")
    return getattr(tag, "value", tag) or "none"


def entity_key(
    key_prefix: str, project: str, entity: str, join_keys: Sequence[str] = (), hash_tag: str = "none"
) -> str:
    """The Redis key of an entity given as ``u0001`` (when there is exactly one join key),
    ``user_id=u0001``, or ``a=1,b=2`` for composite keys. Values are taken as text,
    which is what string and integer join keys both become in the key. ``hash_tag`` is
    the store config's (``project`` puts the project in braces)."""
    text = entity.strip()
    if not text:
        raise ValueError("empty entity")
    if "=" not in text:
        if len(join_keys) != 1:
            raise ValueError(
                f"entity {entity!r} has no join key name and the repo has "
                f"{'no' if not join_keys else 'several'} join keys "
                f"({', '.join(join_keys) or '-'}); give it as join_key=value[,join_key=value]"
            )
        pairs = {join_keys[0]: text}
    else:
        pairs = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"entity part {part!r} is not join_key=value")
            pairs[name.strip()] = value.strip()
    # As text values: a string join key's key text, and the digits an int key's would be.
    columns = [(name, (ValueProto(string_val=value),)) for name, value in pairs.items()]
    return entity_key_texts(project_prefix(key_prefix, project, hash_tag), columns)[0]


def format_ttl(ttl_ms: Optional[int]) -> str:
    """-1 -> "no expiry", -2 -> "gone", else a compact duration such as ``4m47s``."""
    if ttl_ms is None:
        return "-"
    if ttl_ms == NO_EXPIRY:
        return "no expiry"
    if ttl_ms == NO_SUCH_FIELD:
        return "gone"
    seconds = ttl_ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return "".join(shown) or "0s"


def format_hash_table(entity: EntityHash, max_value_width: int = 40) -> str:
    """A readable table: field | value | view (kind) | field TTL, then the key TTL."""
    if not entity.exists:
        return f"{entity.key}: no such key (never written, expired, or every field expired)"
    header = ("field", "value", "view", "kind", "HTTL (s)", "expires in")
    rows = []
    for info in entity.fields:
        value = info.value if len(info.value) <= max_value_width else info.value[: max_value_width - 1] + "…"
        rows.append(
            (
                info.field,
                value,
                info.view or "?",
                info.kind or "?",
                str(info.ttl_seconds),
                format_ttl(info.ttl_ms) if info.ttl_ms != NO_EXPIRY else "(key TTL)",
            )
        )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"key {entity.key}"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows)
    lines.append("")
    lines.append(f"key TTL (TTL): {entity.key_ttl_seconds} s ({format_ttl(entity.key_ttl_ms)})")
    lines.append(f"fields (HLEN): {len(entity.fields)}")
    if entity.memory_bytes is not None:
        lines.append(f"memory (MEMORY USAGE): {entity.memory_bytes} bytes")
    return "\n".join(lines)


# ------------------------------------------------------------------ sampling stats


@dataclass
class Distribution:
    """TTLs in seconds over the values that expire; ``no_expiry`` counts the others."""

    count: int = 0
    no_expiry: int = 0
    min: Optional[float] = None
    p50: Optional[float] = None
    p90: Optional[float] = None
    max: Optional[float] = None

    @classmethod
    def of(cls, ttls_ms: Sequence[int]) -> "Distribution":
        expiring = sorted(t / 1000 for t in ttls_ms if t >= 0)
        dist = cls(count=len(ttls_ms), no_expiry=sum(1 for t in ttls_ms if t == NO_EXPIRY))
        if expiring:
            dist.min, dist.max = expiring[0], expiring[-1]
            dist.p50 = _percentile(expiring, 50)
            dist.p90 = _percentile(expiring, 90)
        return dist


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ordered, non-empty sequence."""
    rank = max(1, int(-(-pct * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class ProjectStats:
    key_pattern: str
    entities: int
    sampled: int
    key_ttl: Distribution
    field_ttl: Dict[str, Distribution]  # by kind: batch / stream / unknown
    fields_per_entity_avg: Optional[float]
    memory_bytes_avg: Optional[float]
    memory_bytes_min: Optional[int]
    memory_bytes_max: Optional[int]

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def sample_project(
    client: Any,
    key_prefix: str,
    project: str,
    layouts: Sequence[ViewLayout] = (),
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    progress: Optional[Progress] = None,
    seed: Optional[int] = None,
    hash_tag: str = "none",
) -> ProjectStats:
    """SCAN every key of the project (counting them, reporting ``progress(scanned)``
    every 1000 keys), keep a uniform reservoir sample of ``sample_size`` keys, and
    measure PTTL, HPTTL of every field and MEMORY USAGE on the sample.

    Keys of both layouts (``hash_tag`` none and project) are counted, as the store's
    maintenance does; ``hash_tag`` only picks the pattern shown in the report."""
    if sample_size < 1:
        raise ValueError("sample_size must be >= 1")
    rng = random.Random(seed)
    sample: List[bytes] = []
    scanned = 0
    for key in project_keys(client, key_prefix, project):
        scanned += 1
        if len(sample) < sample_size:
            sample.append(key)
        else:
            slot = rng.randrange(scanned)
            if slot < sample_size:
                sample[slot] = key
        if progress is not None and scanned % 1000 == 0:
            progress(scanned)
    if progress is not None and scanned % 1000:
        progress(scanned)

    owners = field_owners(layouts)
    key_ttls: List[int] = []
    field_ttls: Dict[str, List[int]] = {}
    field_counts: List[int] = []
    memory: List[int] = []
    for start in range(0, len(sample), _PIPELINE_BATCH):
        batch = sample[start : start + _PIPELINE_BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.pttl(key)
            pipe.hkeys(key)
            pipe.memory_usage(key)
        replies = pipe.execute()
        present: List[Tuple[bytes, List[bytes]]] = []
        for i, key in enumerate(batch):
            ttl, names, mem = replies[3 * i : 3 * i + 3]
            if not names:  # expired between SCAN and now
                continue
            key_ttls.append(int(ttl))
            field_counts.append(len(names))
            if mem is not None:
                memory.append(int(mem))
            present.append((key, names))
        pipe = client.pipeline(transaction=False)
        for key, names in present:
            pipe.hpttl(key, *names)
        for (key, names), ttls in zip(present, pipe.execute()):
            for name, ttl in zip(names, ttls):
                if int(ttl) == NO_SUCH_FIELD:
                    continue
                owner = _owner_of(name, owners)
                kind = owner.kind if owner else "unknown"
                field_ttls.setdefault(kind, []).append(int(ttl))

    return ProjectStats(
        key_pattern=project_prefix(key_prefix, project, hash_tag) + "*",
        entities=scanned,
        sampled=len(key_ttls),
        key_ttl=Distribution.of(key_ttls),
        field_ttl={kind: Distribution.of(ttls) for kind, ttls in sorted(field_ttls.items())},
        fields_per_entity_avg=(sum(field_counts) / len(field_counts)) if field_counts else None,
        memory_bytes_avg=(sum(memory) / len(memory)) if memory else None,
        memory_bytes_min=min(memory) if memory else None,
        memory_bytes_max=max(memory) if memory else None,
    )


def _fmt_seconds(value: Optional[float]) -> str:
    return "-" if value is None else format_ttl(int(value * 1000))


def format_stats(stats: ProjectStats) -> str:
    lines = [
        f"keys matching {stats.key_pattern}: {stats.entities} entities (SCAN)",
        f"sample: {stats.sampled} keys",
    ]
    if not stats.sampled:
        return "\n".join(lines)
    header = ("TTL of", "count", "no expiry", "min", "p50", "p90", "max")
    rows = [("keys (TTL)", stats.key_ttl)]
    rows += [(f"{kind} fields (HTTL)", dist) for kind, dist in stats.field_ttl.items()]
    table = [header] + [
        (
            name,
            str(d.count),
            str(d.no_expiry),
            _fmt_seconds(d.min),
            _fmt_seconds(d.p50),
            _fmt_seconds(d.p90),
            _fmt_seconds(d.max),
        )
        for name, d in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines.append("")
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    if stats.fields_per_entity_avg is not None:
        lines.append(f"fields per entity: {stats.fields_per_entity_avg:.1f} on average")
    if stats.memory_bytes_avg is not None:
        lines.append(
            f"memory per entity (MEMORY USAGE): {stats.memory_bytes_avg:.0f} bytes on average "
            f"(min {stats.memory_bytes_min}, max {stats.memory_bytes_max}); "
            f"~{stats.memory_bytes_avg * stats.entities / 1024 / 1024:.2f} MiB for all {stats.entities}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ repo loading


@dataclass
class RepoDefinitions:
    """Feast objects defined in a repo's Python files (what `feast apply` would register)."""

    entities: List[Any] = field(default_factory=list)
    feature_views: List[Any] = field(default_factory=list)  # incl. stream feature views
    on_demand_feature_views: List[Any] = field(default_factory=list)
    feature_services: List[Any] = field(default_factory=list)
    data_sources: List[Any] = field(default_factory=list)

    def objects(self) -> List[Any]:
        return [
            *self.data_sources, *self.entities, *self.feature_views,
            *self.on_demand_feature_views, *self.feature_services,
        ]

    def join_keys(self) -> List[str]:
        return sorted({entity.join_key for entity in self.entities})


def load_definitions(repo_path: Path | str) -> RepoDefinitions:
    """Import every ``.py`` file of the repo (Feast's rules: recursive, honouring
    ``.feastignore``) under private module names, and collect its Feast objects.

    Unlike ``feast.repo_operations.parse_repo`` this needs no ``chdir`` and does not
    reuse modules cached from another repo with the same file names."""
    from feast import Entity, FeatureService
    from feast.base_feature_view import BaseFeatureView
    from feast.data_source import DataSource
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.repo_operations import get_repo_files

    root = Path(repo_path).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"feature repo {root} is not a directory")
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    defs = RepoDefinitions()
    seen: set = set()

    def add(bucket: List[Any], obj: Any) -> None:
        if id(obj) not in seen:
            seen.add(id(obj))
            bucket.append(obj)

    sys.path.insert(0, str(root))
    try:
        for path in get_repo_files(root):
            rel = path.relative_to(root).with_suffix("")
            name = f"_fhx_repo_{tag}_" + "_".join(rel.parts)
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            for obj in vars(module).values():
                if isinstance(obj, DataSource):
                    add(defs.data_sources, obj)
                    batch = getattr(obj, "batch_source", None)
                    if isinstance(batch, DataSource):
                        add(defs.data_sources, batch)
                elif isinstance(obj, Entity):
                    add(defs.entities, obj)
                elif isinstance(obj, OnDemandFeatureView):
                    add(defs.on_demand_feature_views, obj)
                elif isinstance(obj, BaseFeatureView):
                    add(defs.feature_views, obj)
                elif isinstance(obj, FeatureService):
                    add(defs.feature_services, obj)
    finally:
        try:
            sys.path.remove(str(root))
        except ValueError:
            pass
    return defs


@dataclass
class RepoInfo:
    path: Path
    config: Any  # feast RepoConfig
    definitions: RepoDefinitions

    @property
    def store_config(self) -> Any:
        return self.config.online_store

    @property
    def project(self) -> str:
        return self.config.project

    def online_views(self) -> List[Any]:
        return [fv for fv in self.definitions.feature_views if getattr(fv, "online", True)]

    def layouts(self) -> List[ViewLayout]:
        from .views import view_layout

        return [view_layout(fv, self.store_config) for fv in self.online_views()]


def load_repo(repo_path: Path | str, connection_string: Optional[str] = None, definitions: bool = True) -> RepoInfo:
    """feature_store.yaml (env vars expanded, as Feast does) plus the repo's definitions.

    ``connection_string`` (a ``host:port[,k=v]`` string or a redis:// URL) replaces the
    yaml's (which may use ``${VAR:-default}``, expanded by the store's config)."""
    from feast.repo_config import load_repo_config

    from .config import RedisHexpireOnlineStoreConfig

    root = Path(repo_path).resolve()
    yaml_path = root / "feature_store.yaml"
    if not yaml_path.is_file():
        raise FileNotFoundError(f"{yaml_path} not found (use --repo to point at a Feast repo)")
    config = load_repo_config(root, yaml_path)
    store_config = config.online_store
    if not isinstance(store_config, RedisHexpireOnlineStoreConfig):
        raise ValueError(
            f"{yaml_path}: online_store type is {type(store_config).__name__}, not feast_redis_hexpire"
        )
    if connection_string:
        store_config.connection_string = connection_string
    defs = load_definitions(root) if definitions else RepoDefinitions()
    if defs.feature_views:
        infer_entity_columns(defs, config)
    return RepoInfo(path=root, config=config, definitions=defs)


def infer_entity_columns(defs: RepoDefinitions, config: Any) -> bool:
    """Fill in each view's entity columns (hence ``join_keys``) as ``feast apply`` does.

    Views fresh from Python files have no join keys until Feast's inference runs; with
    entities that declare a value type this needs no data. If inference would have to
    read a data source that is not there, the views are left as they are (False)."""
    from feast.inference import update_feature_views_with_inferred_features_and_entities
    from feast.infra.provider import get_provider

    try:
        update_feature_views_with_inferred_features_and_entities(
            get_provider(config), defs.feature_views, defs.entities, config
        )
    except Exception:  # noqa: BLE001 - inference is a nicety for display and conflict checks
        return False
    return True
