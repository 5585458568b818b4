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
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
import redis.asyncio as redis_async
from redis.cluster import RedisCluster
from redis.crc import key_slot

from .clients import tried_once
from .errors import SearchUnavailable, WriteFailed
from .reads import HmgetCommand
from .redaction import redact
from .redis_io import hmget, hmget_async
from .search_index import IndexSchema, alias_of, is_project_index
from .search_query import Hit, SearchPlan
from .server_checks import is_permission_error, permission_error, server_infos

logger = logging.getLogger("feast_redis_hexpire")

T = TypeVar("T")

INDEXING_TIMEOUT_SECONDS = 600.0
LAYOUT_CHANGES = 5
"""How often the cluster's slots may change under one async search before it gives up."""
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


# ---------------------------------------------------------------- every shard
#
# The module treats an index name (and an alias) as a key: on Redis Cluster a node only
# takes index commands for names in its own slots, and answers MOVED for the others. So
# each primary's copy of an index is named with a hash tag in that primary's slots,
# `<name>{<n>}`; `feast apply` picks the smallest n whose slot it owns. A promoted replica
# owns the same slots, so it finds the copy it replicated; a replica answers searches of
# the copy it replicated (READONLY).
#
# Slots move (resharding, a new primary), and a name then may no longer hash to its node's
# slots: that node can no longer search, inspect or drop that copy (MOVED), and a node that
# gained hashes may have none. A search finds each node's copy by listing FT._LIST on the
# node (never by the name alone: redis-py would follow the MOVED to another node's copy,
# whose documents would then come twice and these never), and a node with no copy in its
# own slots fails the search, naming the node and `feast apply`, which builds one.
#
# With `hash_tag: project` the names already carry the project's tag, and the one primary
# holding the project's slot holds its index.


Layout = tuple[tuple[str, tuple[str, ...], tuple[tuple[int, int], ...]], ...]
"""CLUSTER SLOTS per primary: its name (`host:port`), its replicas' names and its slot
ranges, sorted; comparable, so a search sees at once whether the cluster changed."""


@dataclass(frozen=True)
class Shard:
    """One primary, its replicas and the slot ranges it owns; `nodes` is () for a client of
    one server (standalone, or Sentinel's, which finds its server itself)."""

    nodes: tuple[Any, ...]
    ranges: tuple[tuple[int, int], ...]
    tagged: bool = True  # its index names carry a hash tag of its own (not `hash_tag: project`)

    @property
    def primary(self) -> Any:
        return self.nodes[0] if self.nodes else None

    @property
    def name(self) -> str:
        return str(self.primary.name) if self.nodes else ""

    def owns(self, name: str) -> bool:
        slot = key_slot(name.encode())
        return any(first <= slot <= last for first, last in self.ranges)

    def derived_tag(self) -> str:
        """The tag `feast apply` gives a new copy here: the smallest n in the node's slots."""
        if not self.tagged:
            return ""
        n = 0
        while not self.owns(str(n)):
            n += 1
        return f"{{{n}}}"


_ONE_SERVER = Shard((), (), tagged=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def layout_of(reply: Any, asked: Any) -> Layout:
    """CLUSTER SLOTS (asked of the node `asked`) as a Layout; a node without a host is the
    node asked, as redis-py reads it."""
    primaries: dict[str, tuple[set[str], list[tuple[int, int]]]] = {}
    for entry in reply:
        names = [f"{_text(node[0]) or asked.host}:{int(node[1])}" for node in entry[2:]]
        replicas, ranges = primaries.setdefault(names[0], (set(), []))
        replicas.update(names[1:])
        ranges.append((int(entry[0]), int(entry[1])))
    return tuple(
        (name, tuple(sorted(replicas)), tuple(sorted(ranges))) for name, (replicas, ranges) in sorted(primaries.items())
    )


def shards_of(client: Any, layout: Layout, base: str) -> list[Shard] | None:
    """The shards a command for `base` goes to, with the client's nodes; None when the
    client does not know a node yet (its topology needs a refresh)."""
    known = client.nodes_manager.nodes_cache
    shards: list[Shard] = []
    for primary, replicas, ranges in layout:
        if primary not in known:
            return None
        nodes = (known[primary], *(known[name] for name in replicas if name in known))
        shards.append(Shard(nodes, ranges))
    if "{" in base:  # hash_tag: project: the one primary holding the project's slot
        slot = key_slot(base.encode())
        return [Shard(shard.nodes, ((slot, slot),), tagged=False) for shard in shards if shard.owns(base)]
    return shards


def _asked(client: Any) -> Any:
    """The node asked for CLUSTER SLOTS: any primary the client knows."""
    return random.choice(client.get_primaries())


def _shards(client: Any, base: str) -> list[Shard]:
    """Every primary with its slots, as a node of the cluster says now (the client's map
    may miss a new primary: one that no keyed command was redirected to yet)."""
    if not is_cluster(client):
        return [_ONE_SERVER]
    asked = _asked(client)
    layout = layout_of(_on(client, asked, "CLUSTER", "SLOTS"), asked)
    shards = shards_of(client, layout, base)
    if shards is None:
        client.nodes_manager.initialize()
        shards = shards_of(client, layout, base)
    if shards is None:
        raise redis.exceptions.ClusterDownError(f"CLUSTER SLOTS names nodes the cluster does not list: {layout}")
    return shards


_TAGGED_NAME = re.compile(r"#[0-9a-f]+(\{[0-9]+\})$")


def choose_tag(listed: set[str], shard: Shard, alias: str, current: str | None) -> str | None:
    """Which copy of a view's index on this node to use: a tag in the node's own slots that
    holds the view's `current` index (the digest name), else any copy of the view there;
    the tag apply gives new copies first, then the smallest. None: the node has no copy it
    can serve (it gained its slots after the last apply)."""
    tags: dict[str, bool] = {}
    for name in listed:
        if not name.startswith(alias + "#") or not shard.owns(name):
            continue
        match = _TAGGED_NAME.search(name)
        if match:
            tag = match.group(1)
            tags[tag] = tags.get(tag, False) or (current is not None and name == current + tag)
    for pool in ({t for t, cur in tags.items() if cur}, set(tags)):
        if shard.derived_tag() in pool:
            return shard.derived_tag()
        if pool:
            return min(pool, key=lambda tag: int(tag[1:-1]))
    return None


def _listed_names(reply: Any) -> set[str]:
    return {_text(name) for name in reply or []}


def _on(client: Any, node: Any, *args: Any) -> Any:
    """A command to one node, never redirected: a MOVED comes back as MovedError."""
    if node is None:
        return client.execute_command(*args)
    return client.get_redis_connection(node).execute_command(*args)


def _with_failover(client: Any, attempts: int, operation: Callable[[], T]) -> T:
    """Retry an every-primary operation through a cluster failover: refresh the topology
    and send again, with backoff, up to `attempts` more times."""
    for attempt in range(attempts + 1):
        try:
            with tried_once() if is_cluster(client) else nullcontext():
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
    return _listed_names(_on(client, node, "FT._LIST"))


def check_engine(client: Any, where: str) -> None:
    """FT._LIST on every primary (no write); raises SearchUnavailable without the Query Engine."""
    try:
        for shard in _shards(client, ""):
            _listed(client, shard.primary)
    except redis.ResponseError as exc:
        raise _explained(client, exc, where, "FT._LIST (detecting the Query Engine)") from exc


def _view_of(name: str) -> str:
    """The alias an index (or alias) name belongs to, its digest and tag cut off."""
    return re.sub(r"\{[0-9]+\}$", "", name.split("#", 1)[0])


def _stranded(shard: Shard, names: set[str]) -> set[str]:
    """Copies named for slots the node no longer owns: it answers MOVED for them, so they
    can be neither searched nor dropped there (they follow their node's writes unused)."""
    return {name for name in names if shard.tagged and not shard.owns(name)}


def sync_indexes(
    client: Any,
    wanted: Sequence[IndexSchema],
    project_prefix: str,
    where: str,
    *,
    keep_others: bool = False,
    drop_views: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[str]:
    """Make the project's indexes `wanted` on every primary: build each new or changed one
    alongside the old, wait until it has indexed every hash, point the view's alias at it,
    then drop what no view uses (with `keep_others`, a partial apply, only old versions of
    `wanted` views and the views in `drop_views`). Serving (which queries the alias) never
    sees a half-built index. After resharding, a primary whose copy's name left its slots
    (or that never had one) gets a copy named in its own slots. Returns what changed, for
    the log."""
    check_engine(client, where)
    mine = {schema.alias for schema in wanted} | {alias_of(project_prefix, view) for view in drop_views}
    changes: list[str] = []
    try:
        for shard in _shards(client, project_prefix):
            node = shard.primary
            project = {name for name in _listed(client, node) if is_project_index(name, project_prefix)}
            stranded = _stranded(shard, project)
            existing = project - stranded
            tags = {
                schema.alias: choose_tag(existing, shard, schema.alias, schema.name) or shard.derived_tag()
                for schema in wanted
            }
            built = [schema for schema in wanted if schema.name + tags[schema.alias] not in existing]
            for schema in built:
                _on(client, node, *schema.create_args(schema.name + tags[schema.alias]))
            for schema in built:
                _wait_indexed(client, node, schema.name + tags[schema.alias])
            for schema in wanted:
                tag = tags[schema.alias]
                _on(client, node, "FT.ALIASUPDATE", schema.alias + tag, schema.name + tag)
            changes += [f"built index {s.name}{tags[s.alias]} for view {s.view!r} on {_at(shard)}" for s in built]
            unused = existing - {schema.name + tags[schema.alias] for schema in wanted}
            if keep_others:
                unused = {name for name in unused if _view_of(name) in mine}
                stranded = {name for name in stranded if _view_of(name) in mine}
            for name in sorted(unused):
                _on(client, node, "FT.DROPINDEX", name)
                changes.append(f"dropped index {name} on {_at(shard)}")
            changes += [_stranded_note(shard, name) for name in sorted(stranded)]
    except redis.ResponseError as exc:
        raise _explained(client, exc, where, "an index change at feast apply") from exc
    return changes


def _at(shard: Shard) -> str:
    return f"node {shard.name}" if shard.nodes else "the server"


def _stranded_note(shard: Shard, name: str) -> str:
    return (
        f"left index {name} on {_at(shard)}: its name's slot {key_slot(name.encode())} moved to another node, "
        "so this node refuses every command for it (MOVED); it is never searched, and goes when the slot "
        "comes back and feast apply runs, or with the node's data"
    )


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
    for shard in _shards(client, project_prefix):
        project = {name for name in _listed(client, shard.primary) if is_project_index(name, project_prefix)}
        stranded = _stranded(shard, project)
        for name in sorted(project - stranded):
            _on(client, shard.primary, "FT.DROPINDEX", name)
            dropped += 1
        for name in sorted(stranded):
            logger.warning("%s", _stranded_note(shard, name))
    return dropped


def index_coverage(client: Any, schema: IndexSchema) -> tuple[list[str], list[str]]:
    """Which primaries (`host:port`, "the server" for one server) hold a copy of the view's
    index they can serve, and which do not (for `doctor`): a primary whose slots changed
    since the last `feast apply` (resharding, a new primary) has none until the next."""
    served: list[str] = []
    unserved: list[str] = []
    for shard in _shards(client, schema.alias):
        listed = _listed(client, shard.primary)
        if shard.tagged:
            usable = choose_tag(listed, shard, schema.alias, schema.name) is not None
        else:
            usable = any(name.startswith(schema.alias + "#") for name in listed)
        (served if usable else unserved).append(shard.name or "the server")
    return served, unserved


# ---------------------------------------------------------------- searches
#
# Each shard answers from a replica with `read_from_replicas` (the client's round robin,
# as reads), else from its primary, and from the primary when the replica does not
# answer. Sentinel's replica client picks its replica (or the primary) itself.


def _per_target(plan: SearchPlan, tag: str, query: Sequence[Any] | None) -> list[Any]:
    args = list(plan.args if query is None else query)
    args[1] = plan.schema.alias + tag
    return args


def _replica(client: Any, shard: Shard) -> Any:
    """The node that should answer a read of this shard (the client's round robin, as
    reads), when it is not the primary."""
    strategy = getattr(client, "load_balancing_strategy", None)
    if strategy is None or len(shard.nodes) < 2:
        return None
    index = client.nodes_manager.read_load_balancer.get_server_index(shard.name, len(shard.nodes), strategy)
    return shard.nodes[index] if index else None


_TAGS = "_hexpire_search_tags"
_LAYOUT = "_hexpire_cluster_layout"


def _known_tag(client: Any, shard: Shard, alias: str) -> str:
    """The tag found for this shard by an earlier search, while its slot is still the
    shard's; else the tag apply gives."""
    tag: str | None = getattr(client, _TAGS, {}).get((alias, shard.name))
    return tag if tag is not None and shard.owns(alias + tag) else shard.derived_tag()


def _relocated(client: Any, shard: Shard, plan: SearchPlan, tag: str, listed: set[str], exc: Exception) -> str:
    """The copy to search after `exc` (MOVED, or no such index) on the copy named `tag`;
    raises when there is no other: SearchUnavailable naming the node without one, or `exc`
    again when the slot map itself is stale (the failover loop refreshes it)."""
    located = choose_tag(listed, shard, plan.schema.alias, plan.schema.name)
    if located is None:
        raise _unindexed(shard, plan, exc)
    if located == tag:
        raise exc
    if not hasattr(client, _TAGS):
        setattr(client, _TAGS, {})
    getattr(client, _TAGS)[(plan.schema.alias, shard.name)] = located
    return located


def _relocatable(shard: Shard, exc: redis.ResponseError) -> bool:
    return shard.tagged and (isinstance(exc, redis.exceptions.MovedError) or _no_index(exc))


def _unrelocated(shard: Shard, plan: SearchPlan, exc: redis.ResponseError) -> None:
    """A shard's failure that FT._LIST cannot mend: a cluster node without the index is
    named (the slot of `hash_tag: project` moved, or apply never ran); others go on."""
    if shard.nodes and _no_index(exc):
        raise _unindexed(shard, plan, exc) from exc


def _unindexed(shard: Shard, plan: SearchPlan, cause: BaseException) -> SearchUnavailable:
    view = plan.layout.name
    return SearchUnavailable(
        f"view {view!r} has no search index that Redis Cluster node {shard.name} can serve: its slots changed "
        "since the last feast apply (resharding, or a new primary; a node takes index commands only for names "
        "in its own slots), or feast apply has not run with vector_enabled: true. Run feast apply: it builds "
        "the index on every primary. (A search without this node would leave out its documents.)",
        view=view,
        node=shard.name,
        cause=cause,
    )


def search(client: Any, plan: SearchPlan, where: str, attempts: int, query: Sequence[Any] | None = None) -> list[Any]:
    """The plan's FT.SEARCH (or `query`, another search of the same index) on every shard."""

    def send(shard: Shard, tag: str) -> Any:
        args = _per_target(plan, tag, query)
        replica = _replica(client, shard)
        if replica is not None:
            try:
                return _on(client, replica, *args)
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # the primary answers, as reads do
        return _on(client, shard.primary, *args)

    def one(shard: Shard) -> Any:
        tag = _known_tag(client, shard, plan.schema.alias)
        try:
            return send(shard, tag)
        except redis.ResponseError as exc:
            if not _relocatable(shard, exc):
                _unrelocated(shard, plan, exc)
                raise
            return send(shard, _relocated(client, shard, plan, tag, _listed(client, shard.primary), exc))

    def run() -> list[Any]:
        return [one(shard) for shard in _shards(client, plan.schema.alias)]

    try:
        return _with_failover(client, attempts, run)
    except redis.ResponseError as exc:
        raise _explained(client, exc, where, "a search", plan.layout.name) from exc


async def _on_async(client: Any, node: Any, *args: Any) -> Any:
    return await (client.execute_command(*args) if node is None else node.execute_command(*args))


async def search_async(
    client: Any, plan: SearchPlan, where: str, attempts: int, query: Sequence[Any] | None = None
) -> list[Any]:
    async def send(shard: Shard, tag: str) -> Any:
        args = _per_target(plan, tag, query)
        replica = _replica(client, shard)
        if replica is not None:
            try:
                return await _on_async(client, replica, *args)
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # the primary answers, as reads do
        return await _on_async(client, shard.primary, *args)

    async def one(shard: Shard) -> Any:
        tag = _known_tag(client, shard, plan.schema.alias)
        try:
            return await send(shard, tag)
        except redis.ResponseError as exc:
            if not _relocatable(shard, exc):
                _unrelocated(shard, plan, exc)
                raise
            listed = _listed_names(await _on_async(client, shard.primary, "FT._LIST"))
            return await send(shard, _relocated(client, shard, plan, tag, listed, exc))

    async def searched() -> list[Any] | None:
        """Every shard's reply; None when the cluster's layout changed (search again).
        The shards of the layout seen last are searched while a node is asked for the
        layout now: the replies stand if it did not change, so a search costs no extra
        round trip, and a search from an outdated layout never stands."""
        if not is_cluster(client):
            return [await one(_ONE_SERVER)]
        await client.initialize()  # a new async cluster client knows no slots before
        asked = _asked(client)
        ask = _on_async(client, asked, "CLUSTER", "SLOTS")
        seen: Layout | None = getattr(client, _LAYOUT, None)
        shards = None if seen is None else shards_of(client, seen, plan.schema.alias)
        if shards is None:
            layout = layout_of(await ask, asked)
        else:
            reply, *replies = await asyncio.gather(ask, *(one(shard) for shard in shards), return_exceptions=True)
            if isinstance(reply, BaseException):
                raise reply
            layout = layout_of(reply, asked)
            if layout == seen:
                for outcome in replies:
                    if isinstance(outcome, BaseException):
                        raise outcome
                return replies
        setattr(client, _LAYOUT, layout)
        if shards_of(client, layout, plan.schema.alias) is None:
            await client.nodes_manager.initialize()  # a node it does not know yet
        return None

    attempt = changes = 0
    while True:
        try:
            replies = await searched()
            if replies is not None:
                return replies
            changes += 1
            if changes > LAYOUT_CHANGES:
                raise SearchUnavailable(
                    f"the Redis Cluster at {where} changed its slots {changes} times during one search of view "
                    f"{plan.layout.name!r}; try again",
                    view=plan.layout.name,
                )
        except _RETRYABLE:
            if not is_cluster(client) or attempt == attempts:
                raise
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            attempt += 1
            try:
                await client.nodes_manager.initialize()
            except _RETRYABLE:
                pass
        except redis.ResponseError as exc:
            raise _explained(client, exc, where, "a search", plan.layout.name) from exc
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- a whole search


def run_search(
    client: Any, plan: SearchPlan, where: str, attempts: int, primary: Callable[[], Any] | None = None
) -> list[Hit]:
    """The plan's hits, global top k in rank order: the search on every shard (again,
    wider, while an L1 ranking needs more L2 candidates: `SearchPlan.next_round`), each
    hit's fields (Redis Cluster; with `primary`, replica reads, see `hit_fields`), and the
    hybrid's BM25 scores."""
    current: SearchPlan | None = plan
    hits: list[Hit] = []
    while current is not None:
        plan = current
        hits = plan.merge(search(client, plan, where, attempts))
        hits = plan.with_fields(hits, hit_fields(client, primary, plan.field_reads(hits)))
        current = plan.next_round(hits)
    hits = plan.top(hits)
    scoring = plan.score_query(hits)
    return plan.with_scores(hits, scoring and search(client, plan, where, attempts, scoring))


async def run_search_async(
    client: Any, plan: SearchPlan, where: str, attempts: int, primary: Callable[[], Awaitable[Any]] | None = None
) -> list[Hit]:
    current: SearchPlan | None = plan
    hits: list[Hit] = []
    while current is not None:
        plan = current
        hits = plan.merge(await search_async(client, plan, where, attempts))
        hits = plan.with_fields(hits, await hit_fields_async(client, primary, plan.field_reads(hits)))
        current = plan.next_round(hits)
    hits = plan.top(hits)
    scoring = plan.score_query(hits)
    return plan.with_scores(hits, scoring and await search_async(client, plan, where, attempts, scoring))


def hit_fields(client: Any, primary: Callable[[], Any] | None, commands: Sequence[HmgetCommand]) -> list[Any]:
    """The hits' fields (an HMGET per hit), from the client that searched; with `primary`
    (replica reads), a replica that does not answer leaves them to the primaries, as the
    search itself."""
    try:
        return hmget(client, commands)
    except (redis.ConnectionError, redis.TimeoutError):
        if primary is None:
            raise
        return hmget(primary(), commands)


async def hit_fields_async(
    client: Any, primary: Callable[[], Awaitable[Any]] | None, commands: Sequence[HmgetCommand]
) -> list[Any]:
    try:
        return await hmget_async(client, commands)
    except (redis.ConnectionError, redis.TimeoutError):
        if primary is None:
            raise
        return await hmget_async(await primary(), commands)
