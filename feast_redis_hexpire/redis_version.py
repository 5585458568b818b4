"""The servers this store runs on, how to tell them apart, and how to read a version.

One table and one parser for every check: the store's start-up check, the operator
CLI's `doctor`, and the dev tooling that finds or builds a local `redis-server` or
`valkey-server`. Nothing here imports Feast, so tools can use it without the
multi-second Feast import.

Redis and Valkey number their releases differently, and Valkey reports
`redis_version:7.2.4` in INFO and in the Lua `REDIS_VERSION_NUM` whatever its own
version: only HELLO's `server` and `version` say which server it is. Valkey 8 has no
hash-field expiry at all; Valkey 9 has all of it, HSETEX included.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

MIN_SERVER_VERSION: tuple[int, int, int] = (7, 4, 0)
"""Per-field hash expiry (HEXPIRE, HPEXPIREAT, HTTL) arrived in Redis 7.4."""

HSETEX_VERSION: tuple[int, int, int] = (8, 0, 0)
"""HSETEX (set fields and their expiry in one command) arrived in Redis 8.0."""

MIN_VALKEY_VERSION: tuple[int, int, int] = (9, 0, 0)
"""Valkey 9.0 added hash-field expiry, HSETEX with it."""


class Family(str, Enum):
    """The server, as HELLO's `server` names it."""

    redis = "redis"
    valkey = "valkey"

    @property
    def label(self) -> str:
        return {Family.redis: "Redis", Family.valkey: "Valkey"}[self]


_NEEDED = {Family.redis: MIN_SERVER_VERSION, Family.valkey: MIN_VALKEY_VERSION}
_HSETEX = {Family.redis: HSETEX_VERSION, Family.valkey: MIN_VALKEY_VERSION}
REQUIREMENT = "Redis 7.4+ or Valkey 9.0+"
"""What the store needs, as messages say it."""


class FieldExpiry(str, Enum):
    """The commands the write script sets a stream row's fields and their expiry with."""

    hsetex = "hsetex"
    """HSETEX key PXAT t FIELDS n f v ...: one command (Redis 8+, Valkey 9+)."""
    hpexpireat = "hpexpireat"
    """HSET, then HPEXPIREAT t FIELDS n f ...: two commands (every supported server)."""

    @property
    def commands(self) -> str:
        return "HSETEX" if self is FieldExpiry.hsetex else "HSET + HPEXPIREAT"


@dataclass(frozen=True)
class ServerInfo:
    """One server as HELLO describes it. `name` is HELLO's `server` as sent; `family` is
    None for a server this store does not know (it is refused)."""

    name: str
    version: tuple[int, int, int]

    @property
    def family(self) -> Family | None:
        try:
            return Family(self.name.lower())
        except ValueError:
            return None

    @property
    def supported(self) -> bool:
        family = self.family
        return family is not None and self.version >= _NEEDED[family]

    @property
    def has_hsetex(self) -> bool:
        family = self.family
        return family is not None and self.version >= _HSETEX[family]

    def __str__(self) -> str:
        family = self.family
        return f"{family.label if family else self.name} {version_text(self.version)}"

    def refusal(self, where: str) -> str:
        """Why this server is refused, and what is needed instead."""
        family = self.family
        if family is None:
            what = f"a server that calls itself {self.name!r} (version {version_text(self.version)})"
        else:
            what = f"{family.label} {version_text(self.version)}"
        hint = ""
        if family is Family.redis and self.version == (7, 2, 4):
            hint = (
                " Valkey with extended-redis-compatibility on reports itself as Redis 7.2.4: turn it off "
                "(CONFIG SET extended-redis-compatibility no) so the store sees the real version."
            )
        elif family is Family.valkey:
            hint = " Valkey 8 and older have no hash-field expiry."
        return (
            f"the server at {where} is {what}; feast-redis-hexpire needs {REQUIREMENT} for per-field "
            f"expiry (HEXPIRE/HPEXPIREAT).{hint}"
        )


def hello_info(reply: object) -> ServerInfo:
    """The server and version from a HELLO reply: RESP2's flat list or RESP3's map, keys
    and values as bytes or text. Raises ValueError when there is no version in it."""
    fields: dict[str, object] = {}
    if isinstance(reply, dict):
        items = list(reply.items())
    elif isinstance(reply, (list, tuple)):
        items = list(zip(reply[::2], reply[1::2]))
    else:
        raise ValueError(f"HELLO replied {type(reply).__name__}, not a map")
    for key, value in items:
        fields[_text(key)] = value
    name = _text(fields.get("server", "redis"))
    return ServerInfo(name, parse_version(_text(fields.get("version", ""))))


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def field_expiry(servers: Iterable[ServerInfo]) -> FieldExpiry:
    """HSETEX when every server has it (any cluster node may serve a write after a
    failover), else HSET + HPEXPIREAT. On Valkey 9 HSETEX costs the server fewer
    instructions per row than HSET + HPEXPIREAT, as on Redis 8 (benchmarks/PROFILE.md)."""
    servers = list(servers)
    if servers and all(server.has_hsetex for server in servers):
        return FieldExpiry.hsetex
    return FieldExpiry.hpexpireat


_VERSION = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int]:
    """`(major, minor, patch)` from `redis-server --version` output (`v=8.10.2`), an INFO or
    HELLO `version` value, or a bare `7.4`."""
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", text) or _VERSION.search(text)
    if not match:
        raise ValueError(f"no Redis version number found in {text[:80]!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
