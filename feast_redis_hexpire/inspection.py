"""One entity hash as `HGETALL` + `HPTTL` + `PTTL` show it, each field labelled with the
view (and kind) that writes it: what `feast-redis-hexpire inspect`, its `stats` and the
demo's Inspect tab show. A library module, so the demo needs nothing of the CLI.

Nothing here writes to Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from .errors import InvalidEntityKey
from .keys import entity_key_texts, project_prefix
from .vector_schema import VectorSpec
from .views import TS_FIELD_PREFIX, ViewLayout

__all__ = [
    "NO_EXPIRY",
    "NO_SUCH_FIELD",
    "EntityHash",
    "FieldInfo",
    "FieldOwner",
    "entity_key",
    "field_owners",
    "hash_tag_of",
    "inspect_key",
    "owner_of",
    "seconds_from_ms",
]

# HPTTL / PTTL sentinels
NO_SUCH_FIELD = -2
NO_EXPIRY = -1


def seconds_from_ms(ttl_ms: int) -> int:
    """What TTL/HTTL print: milliseconds rounded to the nearest second; -1/-2 unchanged."""
    return ttl_ms if ttl_ms < 0 else (ttl_ms + 500) // 1000


# ------------------------------------------------------------------ field ownership


@dataclass(frozen=True)
class FieldOwner:
    view: str
    kind: str  # "batch" / "stream"
    feature: str | None  # None for the view's `_ts:<view>` event-time field
    vector: VectorSpec | None = None  # a vector-indexed feature: raw floats, shown decoded


def field_owners(layouts: Iterable[ViewLayout]) -> dict[bytes, FieldOwner]:
    """Hash field -> the view that writes it (features and `_ts:<view>` fields)."""
    owners: dict[bytes, FieldOwner] = {}
    for layout in layouts:
        for feature in layout.features.values():
            owners[feature.field] = FieldOwner(layout.name, layout.kind.value, feature.name, feature.vector)
        owners[layout.ts_field] = FieldOwner(layout.name, layout.kind.value, None)
    return owners


def owner_of(name: bytes, owners: dict[bytes, FieldOwner]) -> FieldOwner | None:
    """The view a field belongs to: from the repo's layouts, else from the field's own text
    (`_ts:<view>`, or a qualified `<view>:<feature>`), so fields of views no longer defined
    and of other versions are still labelled."""
    owner = owners.get(name)
    if owner is not None:
        return owner
    text = name.decode(errors="replace")
    if text.startswith(TS_FIELD_PREFIX):
        return FieldOwner(text[len(TS_FIELD_PREFIX) :], "unknown", None)
    view, sep, feature = text.rpartition(":")
    if sep and view:
        return FieldOwner(view, "unknown", feature)
    return None


# ------------------------------------------------------------------ one key


@dataclass
class FieldInfo:
    field: str
    value: str
    ttl_ms: int  # HPTTL: -1 no per-field expiry, -2 gone since HGETALL
    view: str | None = None
    kind: str | None = None
    feature: str | None = None

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
    fields: list[FieldInfo] = field(default_factory=list)
    memory_bytes: int | None = None

    @property
    def key_ttl_seconds(self) -> int:
        return seconds_from_ms(self.key_ttl_ms)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["key_ttl_seconds"] = self.key_ttl_seconds
        for info, row in zip(self.fields, out["fields"]):
            row["ttl_seconds"] = info.ttl_seconds
        return out


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="backslashreplace")
    return str(raw)


def _value_text(raw: bytes, owner: FieldOwner | None) -> str:
    """The stored value as redis-cli shows it; a vector's raw float bytes decoded instead."""
    described = owner.vector.describe(raw) if owner is not None and owner.vector is not None else None
    return _text(raw) if described is None else described


def _field_sort_key(info: FieldInfo) -> tuple[bool, str, bool, str]:
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
    values: dict[bytes, bytes] = replies[0] or {}
    key_ttl = int(replies[1])
    mem = replies[2] if memory else None
    if not values:
        return EntityHash(key=_text(key_bytes), exists=False, key_ttl_ms=key_ttl)
    names = list(values)
    ttls = client.hpttl(key_bytes, *names)
    owners = field_owners(layouts)
    fields = []
    for name, ttl in zip(names, ttls):
        owner = owner_of(name, owners)
        fields.append(
            FieldInfo(
                field=_text(name),
                value=_value_text(values[name], owner),
                ttl_ms=int(ttl),
                view=owner.view if owner else None,
                kind=owner.kind if owner else None,
                feature=owner.feature if owner else None,
            )
        )
    fields.sort(key=_field_sort_key)
    return EntityHash(
        key=_text(key_bytes),
        exists=True,
        key_ttl_ms=key_ttl,
        fields=fields,
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
        raise InvalidEntityKey("empty entity", value=entity)
    if "=" not in text:
        if len(join_keys) != 1:
            raise InvalidEntityKey(
                f"entity {entity!r} has no join key name and the repo has "
                f"{'no' if not join_keys else 'several'} join keys "
                f"({', '.join(join_keys) or '-'}); give it as join_key=value[,join_key=value]",
                value=entity,
            )
        pairs = {join_keys[0]: text}
    else:
        pairs = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise InvalidEntityKey(f"entity part {part!r} is not join_key=value", value=part)
            pairs[name.strip()] = value.strip()
    # As text values: a string join key's key text, and the digits an int key's would be.
    columns = [(name, (ValueProto(string_val=value),)) for name, value in pairs.items()]
    return entity_key_texts(project_prefix(key_prefix, project, hash_tag), columns)[0]
