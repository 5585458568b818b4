"""What `feast apply` and `feast teardown` do to stored data: remove the fields of deleted
views and dropped features (SCAN + HDEL in batches, never KEYS), and UNLINK a project.

To know which features a kept view dropped, the store keeps one small hash per project,
`<prefix>:<project>:_views`: view name -> the fields it wrote, as of the last apply. It is
only read and written by `feast apply`; it holds no `=`, so it is never an entity key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .keys import PROJECT_HASH_TAG, join_key_names, project_prefix, project_scan_pattern
from .views import ViewLayout

SCAN_COUNT = 1000
BATCH = 500
VIEWS_RECORD = "_views"

Client = Any  # a sync redis-py client (standalone, Sentinel primary or Cluster)


def _batches(keys: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _is_entity_key(key: bytes, key_prefix: str, project: str) -> bool:
    untagged = project_prefix(key_prefix, project).encode()
    tagged = project_prefix(key_prefix, project, PROJECT_HASH_TAG).encode()
    rest = key[len(tagged) :] if key.startswith(tagged) else key[len(untagged) :]
    return b"=" in rest


def project_keys(client: Client, key_prefix: str, project: str, join_keys: Sequence[str] = ()) -> Iterator[bytes]:
    """A project's entity keys (both `hash_tag` layouts), optionally only those whose join
    keys are exactly `join_keys`."""
    keys = (
        key
        for hash_tag in ("none", PROJECT_HASH_TAG)
        for key in client.scan_iter(
            match=project_scan_pattern(key_prefix, project, join_keys, hash_tag), count=SCAN_COUNT
        )
    )
    if not join_keys:
        yield from (key for key in keys if _is_entity_key(key, key_prefix, project))
        return
    wanted = tuple(sorted(join_keys))
    for key in keys:
        # `*` in the pattern also matches longer composite keys: keep exact matches only.
        if tuple(sorted(join_key_names(key, key_prefix, project))) == wanted:
            yield key


def remove_fields(
    client: Client, key_prefix: str, project: str, join_keys: Sequence[str], fields: Sequence[bytes]
) -> int:
    """HDEL `fields` from every entity keyed on `join_keys`. Hashes left empty vanish on
    their own. Returns the number of entities touched."""
    if not fields:
        return 0
    touched = 0
    for batch in _batches(project_keys(client, key_prefix, project, join_keys), BATCH):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hdel(key, *fields)
        touched += sum(1 for removed in pipe.execute() if removed)
    return touched


def delete_project(client: Client, key_prefix: str, project: str) -> int:
    """UNLINK every key of the project in batches (`feast teardown`); other projects' keys
    are untouched."""
    patterns = [project_scan_pattern(key_prefix, project, None, tag) for tag in ("none", PROJECT_HASH_TAG)]
    return _unlink(client, (key for pattern in patterns for key in client.scan_iter(match=pattern, count=SCAN_COUNT)))


def delete_entities(client: Client, key_prefix: str, project: str) -> int:
    """UNLINK every entity of the project but keep what `feast apply` recorded of its views,
    so a later apply still knows which fields a dropped feature left behind."""
    return _unlink(client, project_keys(client, key_prefix, project))


def _unlink(client: Client, keys: Iterable[bytes]) -> int:
    deleted = 0
    for batch in _batches(keys, BATCH):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.unlink(key)  # one key per command, so a cluster pipeline can route it
        deleted += sum(pipe.execute())
    return deleted


def count_project_keys(client: Client, key_prefix: str, project: str) -> int:
    return sum(1 for _ in project_keys(client, key_prefix, project))


# ---------------------------------------------------------------- what each view wrote


@dataclass(frozen=True)
class RecordedView:
    """A view (or version) as the last apply left it."""

    view: str  # the Feast view name, without version
    join_keys: tuple[str, ...]
    fields: frozenset[bytes]

    def to_json(self) -> str:
        return json.dumps(
            {"view": self.view, "join_keys": list(self.join_keys), "fields": sorted(f.decode() for f in self.fields)}
        )

    @classmethod
    def from_json(cls, raw: bytes) -> RecordedView:
        data = json.loads(raw)
        return cls(data["view"], tuple(data["join_keys"]), frozenset(f.encode() for f in data["fields"]))

    @classmethod
    def of(cls, layout: ViewLayout) -> RecordedView:
        return cls(layout.view, layout.join_keys, frozenset(layout.all_fields()))


def record_key(key_prefix: str, project: str, hash_tag: str) -> bytes:
    return (project_prefix(key_prefix, project, hash_tag) + VIEWS_RECORD).encode()


def read_record(client: Client, key: bytes) -> dict[str, RecordedView]:
    return {name.decode(): RecordedView.from_json(raw) for name, raw in (client.hgetall(key) or {}).items()}


@dataclass
class Removal:
    """Fields to remove from every entity of one join-key set, and why (for the log)."""

    join_keys: tuple[str, ...]
    fields: list[bytes]
    reason: str


def plan_removals(
    deleted: Sequence[ViewLayout], kept: Sequence[ViewLayout], recorded: dict[str, RecordedView]
) -> list[Removal]:
    """What an apply removes: every field of a deleted view (all its versions), and every
    field a kept view wrote at the last apply but no longer declares. A field that a kept
    view of the same entity writes now is never removed."""
    owned: dict[tuple[str, ...], set[bytes]] = {}
    for layout in kept:
        owned.setdefault(layout.join_keys, set()).update(layout.all_fields())
    removals: list[Removal] = []

    def remove(join_keys: tuple[str, ...], fields: Iterable[bytes], reason: str) -> None:
        wanted = sorted(set(fields) - owned.get(join_keys, set()))
        if wanted:
            removals.append(Removal(join_keys, wanted, reason))

    deleted_views = {layout.view for layout in deleted}
    for layout in deleted:
        remove(layout.join_keys, layout.all_fields(), f"view {layout.name!r} was deleted")
    for name, old in recorded.items():
        if old.view in deleted_views:
            remove(old.join_keys, old.fields, f"view {name!r} was deleted")
    for layout in kept:
        before = recorded.get(layout.name)
        if before is None:
            continue
        same_entity = before.join_keys == layout.join_keys
        dropped = before.fields - set(layout.all_fields()) if same_entity else before.fields
        names = sorted(f.decode() for f in dropped)
        remove(before.join_keys, dropped, f"view {layout.name!r} no longer declares {', '.join(names)}")
    return removals


def write_record(
    client: Client,
    key: bytes,
    kept: Sequence[ViewLayout],
    deleted: Sequence[ViewLayout],
    recorded: dict[str, RecordedView],
) -> None:
    """Record what each kept view writes now; forget deleted views and all their versions."""
    deleted_views = {layout.view for layout in deleted}
    gone = [name for name, old in recorded.items() if old.view in deleted_views]
    pipe = client.pipeline(transaction=False)
    if gone:
        pipe.hdel(key, *gone)
    if kept:
        pipe.hset(key, mapping={layout.name: RecordedView.of(layout).to_json() for layout in kept})
    pipe.execute()
