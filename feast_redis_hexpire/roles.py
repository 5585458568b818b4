"""The Redis commands each kind of process sends: the one list `doctor` checks and
docs/topologies.md's ACL lines are tested against (tests/test_roles.py).

- reader: `feast serve`, `get_online_features` (reads.py: one HMGET per entity).
- writer: apply, materialize, push, teardown, and serving too: the write script
  (write_script.lua) and what it calls, and maintenance.py's apply and teardown commands.
- operator: the `feast-redis-hexpire` CLI (inspect, stats, doctor).
- with `vector_enabled: true`, SEARCH_ROLES: the reader's searches (FT.SEARCH), the
  writer's index upkeep at apply and teardown (FT._LIST, FT.CREATE, FT.INFO,
  FT.ALIASUPDATE, FT.DROPINDEX).

Every user also runs CLIENT SETINFO, which redis-py sends when it connects (it ignores a
refusal, but the refusal fills the ACL log). HELLO, the start-up version check, is open to
every user. Nothing here imports Feast.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY = "{key}"
"""Stands for a key under the project's prefix in a probe."""


@dataclass(frozen=True)
class Command:
    """One command a role sends: its ACL name and a probe that exercises the ACL check but
    can change nothing (a missing key, or arguments the command rejects after the check)."""

    acl: str
    probe: tuple[str, ...]
    needs_hsetex: bool | None = None
    """True: sent only where the server has HSETEX; False: only where it has not."""

    def needed(self, hsetex: bool) -> bool:
        return self.needs_hsetex is None or self.needs_hsetex == hsetex


CONNECT = (Command("client|setinfo", ("CLIENT", "SETINFO", "LIB-NAME", "redis-py")),)

READER = (
    *CONNECT,
    Command("hmget", ("HMGET", KEY, "f")),
    # with Feast's metrics on only: is an entity absent, or only its views (metrics.py)?
    Command("exists", ("EXISTS", KEY)),
)

WRITER = (
    *READER,
    # the write script: loaded on first use and after NOSCRIPT, called by SHA
    Command("evalsha", ("EVALSHA", "0" * 40, "1", KEY)),
    Command("script|load", ("SCRIPT", "LOAD", "syntax error: not loaded")),
    # ... and what it calls (write_script.lua)
    Command("hget", ("HGET", KEY, "f")),
    Command("hset", ("HSET", KEY, "f", "v", "odd-count")),
    Command("hsetex", ("HSETEX", KEY, "PXAT", "not-a-time", "FIELDS", "1", "f", "v"), needs_hsetex=True),
    Command("hdel", ("HDEL", KEY, "f")),
    Command("hpexpireat", ("HPEXPIREAT", KEY, "not-a-time", "FIELDS", "1", "f"), needs_hsetex=False),
    Command("pexpire", ("PEXPIRE", KEY, "not-a-time")),
    Command("time", ("TIME",)),
    # apply and teardown (maintenance.py); HSET and HDEL above also keep the views record
    Command("scan", ("SCAN", "0", "MATCH", KEY, "COUNT", "1")),
    Command("hgetall", ("HGETALL", KEY)),
    Command("unlink", ("UNLINK", KEY)),
)

OPERATOR = (
    *CONNECT,
    Command("hgetall", ("HGETALL", KEY)),
    Command("hkeys", ("HKEYS", KEY)),
    Command("pttl", ("PTTL", KEY)),
    Command("hpttl", ("HPTTL", KEY, "FIELDS", "1", "f")),
    Command("memory|usage", ("MEMORY", "USAGE", KEY)),
    Command("scan", ("SCAN", "0", "MATCH", KEY, "COUNT", "1")),
    # stats: each view's served age, server time minus its _ts
    Command("hmget", ("HMGET", KEY, "f")),
    Command("time", ("TIME",)),
)

ROLES: dict[str, tuple[Command, ...]] = {"reader": READER, "writer": WRITER, "operator": OPERATOR}

SEARCH_READER = (
    # retrieve_online_documents_v2 (search_io.search); on a cluster the hits' fields come by HMGET
    Command("ft.search", ("FT.SEARCH", KEY, "*")),
    # on a cluster, which copy of the index a node can serve after its slots moved
    Command("ft._list", ("FT._LIST",)),
)

SEARCH_WRITER = (
    *SEARCH_READER,
    # feast apply and teardown keep the indexes (search_io.sync_indexes, drop_project_indexes)
    Command("ft.create", ("FT.CREATE", KEY, "ON", "HASH", "SCHEMA")),
    Command("ft.info", ("FT.INFO", KEY)),
    Command("ft.aliasupdate", ("FT.ALIASUPDATE", KEY, KEY)),
    Command("ft.dropindex", ("FT.DROPINDEX", KEY)),
)

SEARCH_ROLES: dict[str, tuple[Command, ...]] = {"reader": SEARCH_READER, "writer": SEARCH_WRITER, "operator": ()}
"""What each role adds with `vector_enabled: true`. Kept apart from ROLES: a server without
the Query Engine refuses an ACL rule naming a command it does not have."""

CLUSTER_EXTRA = ("cluster|slots", "command")
"""What every user adds on Redis Cluster: redis-py's topology discovery and command table."""


def commands(role: str, hsetex: bool, search: bool = False) -> list[Command]:
    """What `role` sends to a server with (or without) HSETEX; with `search`, also the
    Query Engine commands of vector and text retrieval."""
    sent = [*ROLES[role], *(SEARCH_ROLES[role] if search else ())]
    return [command for command in sent if command.needed(hsetex)]


def search_acl_rules(role: str) -> str:
    """The rules a role's user adds for `vector_enabled: true` (docs/topologies.md)."""
    return " ".join(f"+{command.acl}" for command in SEARCH_ROLES[role])


def acl_rules(role: str) -> str:
    """The `+command` rules of a role's ACL line: everything it may send, on any server
    (on Redis 7.4, whose ACL does not know HSETEX, drop `+hsetex`)."""
    return " ".join(f"+{command.acl}" for command in ROLES[role])


def acl_line(role: str, key_patterns: str = "~fs:*", user: str | None = None) -> str:
    """The documented `ACL SETUSER` line of a role (docs/topologies.md)."""
    name = user or f"feast-{role}"
    return f"ACL SETUSER {name} on >CHANGE-ME resetkeys {key_patterns} resetchannels -@all {acl_rules(role)}"
