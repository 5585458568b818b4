"""Project-wide maintenance: removing a deleted view's fields and tearing a project down.
Both walk keys with SCAN and never call KEYS. On Redis Cluster, redis-py's SCAN visits
every primary (one cursor per node) and the HDEL/UNLINK pipelines are grouped by node.
Both key layouts (`hash_tag: none` and `project`) are covered, so keys written before a
change of `hash_tag` are still cleaned up."""

from __future__ import annotations

from typing import Iterator, List, Sequence

from .connection import SyncClient
from .keys import PROJECT_HASH_TAG, join_key_names, project_scan_pattern
from .views import ViewLayout, fields_owned_elsewhere

SCAN_COUNT = 1000
BATCH = 500
DUMMY_JOIN_KEYS = ("__dummy_id",)  # Feast's join key for entity-less views


def _batches(keys: Iterator[bytes], size: int) -> Iterator[List[bytes]]:
    batch: List[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def project_keys(client: SyncClient, key_prefix: str, project: str, join_keys: Sequence[str] = ()) -> Iterator[bytes]:
    """A project's entity keys, optionally only those whose join keys are exactly `join_keys`."""
    keys = (
        key
        for hash_tag in ("none", PROJECT_HASH_TAG)
        for key in client.scan_iter(
            match=project_scan_pattern(key_prefix, project, join_keys, hash_tag), count=SCAN_COUNT
        )
    )
    if not join_keys:
        yield from keys
        return
    wanted = tuple(sorted(join_keys))
    for key in keys:
        # `*` in the pattern also matches longer composite keys: keep exact matches only.
        if tuple(sorted(join_key_names(key, key_prefix, project))) == wanted:
            yield key


def remove_view_fields(
    client: SyncClient, key_prefix: str, project: str, deleted: ViewLayout, kept: Sequence[ViewLayout]
) -> int:
    """HDEL a deleted view's fields from every entity, except fields a kept view now owns.
    Hashes left empty vanish on their own. Returns the number of entities touched."""
    protected = fields_owned_elsewhere(deleted, kept)
    fields = [f for f in deleted.all_fields() if f not in protected]
    touched = 0
    for batch in _batches(project_keys(client, key_prefix, project, deleted.join_keys or DUMMY_JOIN_KEYS), BATCH):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.hdel(key, *fields)
        touched += sum(1 for removed in pipe.execute() if removed)
    return touched


def delete_project(client: SyncClient, key_prefix: str, project: str) -> int:
    """UNLINK every key of the project in batches; other projects' keys are untouched."""
    deleted = 0
    for batch in _batches(project_keys(client, key_prefix, project), BATCH):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.unlink(key)  # one key per command, so a cluster pipeline can route it
        deleted += sum(pipe.execute())
    return deleted


def count_project_keys(client: SyncClient, key_prefix: str, project: str) -> int:
    return sum(1 for _ in project_keys(client, key_prefix, project))
