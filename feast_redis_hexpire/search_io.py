"""Sending the Query Engine's commands: indexes at `feast apply` / `feast teardown`, and
searches (sync and async share `search_query`; only the sending differs here).

Each Redis Cluster primary indexes its own hashes, so every index command and every
search goes to every primary; a search whose node fails (a failover) is sent again to
the primaries the refreshed topology names.

Detection never writes: `FT._LIST` at apply, and the first search's own reply. A server
without the Query Engine answers `unknown command`, which becomes SearchUnavailable
saying what to run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as redis_async
from redis.cluster import RedisCluster
from redis.crc import key_slot

from . import redis_io
from .errors import SearchUnavailable, WriteFailed
from .redaction import redact
from .search_index import IndexSchema, alias_of, is_project_index
from .search_query import Hit, SearchPlan
from .server_checks import is_permission_error, permission_error, server_infos

logger = logging.getLogger("feast_redis_hexpire")

T = TypeVar("T")

INDEXING_TIMEOUT_SECONDS = 600.0
_RETRYABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MovedError,  # a primary that became a replica: its slots moved
)


def is_cluster(client: Any) -> bool:
    return isinstance(client, (RedisCluster, redis_async.RedisCluster))


def _unknown_command(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "unknown command" in text and "ft." in text


def _no_index(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "no such index" in text or "unknown index name" in text or ("not found" in text and "index" in text)


def missing_engine(client: Any, where: str, cause: BaseException | None = None) -> SearchUnavailable:
    """What to run, named for the server that answered."""
    valkey = False
    if not isinstance(client, redis_async.Redis | redis_async.RedisCluster):
        try:
            valkey = any(info.name.lower() == "valkey" for info in server_infos(client))
        except (redis.RedisError, Exception):  # noqa: BLE001 - the hint is optional
            valkey = False
    hint = (
        " This is Valkey: load the valkey-search module (valkey-server --loadmodule libsearch.so) for vector "
        "KNN; valkey-search has no text search, so query_string is not served there."
        if valkey
        else ""
    )
    return SearchUnavailable(
        f"Redis at {where} has no Query Engine (the FT.* commands): vector and text retrieval needs Redis 8 with "
        "the Query Engine, Redis Stack 7.4+, Valkey with valkey-search, or a managed Redis with vector search."
        f"{hint} Every other feature of the store keeps working without it.",
        cause=cause,
    )


def _explained(client: Any, exc: redis.RedisError, where: str, what: str, view: str | None = None) -> Exception:
    if _unknown_command(exc):
        return missing_engine(client, where, exc)
    if is_permission_error(exc):
        return permission_error(exc, where, what, view=view)
    if _no_index(exc):
        return SearchUnavailable(
            f"view {view!r} has no search index on Redis at {where}: set vector_enabled: true in the online "
            "store config and run feast apply (it creates one index per view with vector_index=True fields)",
            view=view,
            cause=exc,
        )
    return WriteFailed(f"Redis at {where} refused {what}: {redact(str(exc))}", view=view, cause=exc)


# ---------------------------------------------------------------- every primary
#
# The module treats an index name (and an alias) as a key: on Redis Cluster a node only
# takes index commands for names in its own slots. So each primary's copy of an index is
# named with a hash tag of that primary, `<name>{<n>}` (the smallest n whose slot it
# owns); a promoted replica owns the same slots, so it finds the copy it replicated.
# With `hash_tag: project` the names already carry the project's tag, and the one
# primary holding the project's slot holds its index.


Target = tuple[Any, str]  # (cluster node or None, the suffix its index names carry)


def _tag_for(slots: set[int]) -> str:
    n = 0
    while key_slot(str(n).encode()) not in slots:
        n += 1
    return f"{{{n}}}"


def _targets(client: Any, base: str) -> list[Target]:
    if not is_cluster(client):
        return [(None, "")]
    if "{" in base:
        return [(client.get_node_from_key(base), "")]
    owned: dict[str, set[int]] = {}
    primaries: dict[str, Any] = {}
    for slot, nodes in client.nodes_manager.slots_cache.items():
        if nodes:
            owned.setdefault(nodes[0].name, set()).add(slot)
            primaries[nodes[0].name] = nodes[0]
    return [(primaries[name], _tag_for(slots)) for name, slots in sorted(owned.items())]


def _on(client: Any, node: Any, *args: Any) -> Any:
    return client.execute_command(*args) if node is None else client.execute_command(*args, target_nodes=node)


def _with_failover(client: Any, attempts: int, operation: Callable[[], T]) -> T:
    """Retry an all-primaries operation through a cluster failover: refresh the topology
    and send again, with backoff, up to `attempts` more times."""
    for attempt in range(attempts + 1):
        try:
            return operation()
        except _RETRYABLE:
            if not is_cluster(client) or attempt == attempts:
                raise
            time.sleep(min(2.0, 0.1 * 2**attempt))
            try:
                client.nodes_manager.initialize()
            except _RETRYABLE:
                pass
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- apply and teardown


def _listed(client: Any, node: Any) -> set[str]:
    reply = _on(client, node, "FT._LIST")
    return {n.decode() if isinstance(n, bytes) else str(n) for n in reply or []}


def check_engine(client: Any, where: str) -> None:
    """FT._LIST on every primary (no write); raises SearchUnavailable without the Query Engine."""
    try:
        for node, _ in _targets(client, ""):
            _listed(client, node)
    except redis.ResponseError as exc:
        raise _explained(client, exc, where, "FT._LIST (detecting the Query Engine)") from exc


def sync_indexes(
    client: Any,
    wanted: Sequence[IndexSchema],
    project_prefix: str,
    where: str,
    *,
    keep_others: bool = False,
    drop_views: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[str]:
    """Make the project's indexes `wanted`: build each new or changed one alongside the
    old, wait until it has indexed every hash, point the view's alias at it, then drop what
    no view uses (with `keep_others`, a partial apply, only old versions of `wanted` views
    and the views in `drop_views`). Serving (which queries the alias) never sees a
    half-built index. Returns what changed, for the log."""
    check_engine(client, where)
    mine = {schema.alias for schema in wanted} | {alias_of(project_prefix, view) for view in drop_views}
    changes: list[str] = []
    try:
        for node, tag in _targets(client, project_prefix):
            existing = {
                name[: len(name) - len(tag)]
                for name in _listed(client, node)
                if is_project_index(name, project_prefix) and name.endswith(tag)
            }
            if keep_others:
                existing = {name for name in existing if name.split("#", 1)[0] in mine}
            built = [schema for schema in wanted if schema.name not in existing]
            for schema in built:
                _on(client, node, *schema.create_args(schema.name + tag))
            for schema in built:
                _wait_indexed(client, node, schema.name + tag)
            for schema in wanted:
                _on(client, node, "FT.ALIASUPDATE", schema.alias + tag, schema.name + tag)
            changes += [f"built index {schema.name}{tag} for view {schema.view!r}" for schema in built]
            for name in sorted(existing - {schema.name for schema in wanted}):
                _on(client, node, "FT.DROPINDEX", name + tag)
                changes.append(f"dropped index {name}{tag}")
    except redis.ResponseError as exc:
        raise _explained(client, exc, where, "an index change at feast apply") from exc
    return changes


def _wait_indexed(client: Any, node: Any, name: str) -> None:
    deadline = time.monotonic() + INDEXING_TIMEOUT_SECONDS
    while _indexing(_on(client, node, "FT.INFO", name)):
        if time.monotonic() > deadline:
            raise WriteFailed(f"index {name} did not finish indexing within {INDEXING_TIMEOUT_SECONDS:.0f}s")
        time.sleep(0.05)


def _indexing(info: Any) -> bool:
    pairs = dict(zip(info[::2], info[1::2])) if isinstance(info, list) else dict(info)
    value = pairs.get(b"indexing", pairs.get("indexing", 0))
    return str(value.decode() if isinstance(value, bytes) else value) not in ("0", "0.0")


def drop_project_indexes(client: Any, project_prefix: str, where: str) -> int:
    """`feast teardown`: drop every index of the project (the hashes are UNLINKed apart)."""
    try:
        check_engine(client, where)
    except SearchUnavailable:
        return 0  # no Query Engine: nothing was ever indexed
    dropped = 0
    for node, tag in _targets(client, project_prefix):
        for name in sorted(_listed(client, node)):
            if is_project_index(name, project_prefix) and name.endswith(tag):
                _on(client, node, "FT.DROPINDEX", name)
                dropped += 1
    return dropped


# ---------------------------------------------------------------- searches


def _per_target(plan: SearchPlan, tag: str, query: Sequence[Any] | None) -> list[Any]:
    args = list(plan.args if query is None else query)
    args[1] = plan.schema.alias + tag
    return args


def search(client: Any, plan: SearchPlan, where: str, attempts: int, query: Sequence[Any] | None = None) -> list[Any]:
    """The plan's FT.SEARCH (or `query`, another search of the same index) on every primary."""

    def run() -> list[Any]:
        return [_on(client, node, *_per_target(plan, tag, query)) for node, tag in _targets(client, plan.schema.alias)]

    try:
        return _with_failover(client, attempts, run)
    except redis.ResponseError as exc:
        raise _explained(client, exc, where, "a search", plan.layout.name) from exc


async def search_async(
    client: Any, plan: SearchPlan, where: str, attempts: int, query: Sequence[Any] | None = None
) -> list[Any]:
    for attempt in range(attempts + 1):
        try:
            if is_cluster(client):
                await client.initialize()  # a new async cluster client knows no slots before
            targets = _targets(client, plan.schema.alias)
            return list(
                await asyncio.gather(
                    *(
                        client.execute_command(*_per_target(plan, tag, query))
                        if node is None
                        else client.execute_command(*_per_target(plan, tag, query), target_nodes=node)
                        for node, tag in targets
                    )
                )
            )
        except _RETRYABLE:
            if not is_cluster(client) or attempt == attempts:
                raise
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            try:
                await client.nodes_manager.initialize()
            except _RETRYABLE:
                pass
        except redis.ResponseError as exc:
            raise _explained(client, exc, where, "a search", plan.layout.name) from exc
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- a whole search


def run_search(client: Any, plan: SearchPlan, where: str, attempts: int) -> list[Hit]:
    """The plan's hits, global top k in rank order: the search on every primary (again,
    wider, while an L1 ranking needs more L2 candidates: `SearchPlan.next_round`), each
    hit's fields (Redis Cluster), and the hybrid's BM25 scores."""
    current: SearchPlan | None = plan
    hits: list[Hit] = []
    while current is not None:
        plan = current
        hits = plan.merge(search(client, plan, where, attempts))
        hits = plan.with_fields(hits, redis_io.hmget(client, plan.field_reads(hits)))
        current = plan.next_round(hits)
    hits = plan.top(hits)
    scoring = plan.score_query(hits)
    return plan.with_scores(hits, scoring and search(client, plan, where, attempts, scoring))


async def run_search_async(client: Any, plan: SearchPlan, where: str, attempts: int) -> list[Hit]:
    current: SearchPlan | None = plan
    hits: list[Hit] = []
    while current is not None:
        plan = current
        hits = plan.merge(await search_async(client, plan, where, attempts))
        hits = plan.with_fields(hits, await redis_io.hmget_async(client, plan.field_reads(hits)))
        current = plan.next_round(hits)
    hits = plan.top(hits)
    scoring = plan.score_query(hits)
    return plan.with_scores(hits, scoring and await search_async(client, plan, where, attempts, scoring))
