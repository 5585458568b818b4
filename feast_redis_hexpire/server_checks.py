"""What the store checks about a server, and how it explains a refusal.

The start-up check never writes: it asks every node its version with `HELLO` (allowed
for any authenticated user, and answered at `maxmemory`), so a read-only ACL user, a
user confined to one project's keys and a full server all start. A user that lacks a
command finds out on the first command that needs it, with an error naming the
command, the key and the view (`permission_error`). `feast-redis-hexpire doctor` reuses
these checks and probes each command of a role (roles.py) that can change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from .errors import RedisPermissionError, ServerCheckError
from .redaction import redact
from .redis_version import MIN_SERVER_VERSION, parse_version, version_text

Client = redis.Redis | RedisCluster


def server_versions(client: Client) -> list[tuple[int, int, int]]:
    """The version of the server, or of every cluster node: primaries must answer; a
    replica that is down is skipped (it is checked again when this process restarts)."""
    if not isinstance(client, RedisCluster):
        return [_hello_version(client.execute_command("HELLO"))]
    versions = []
    for node in client.get_nodes():
        try:
            reply = client.execute_command("HELLO", target_nodes=node)
        except (redis.ConnectionError, redis.TimeoutError):
            if node.server_type == "primary":
                raise
            continue
        versions.append(_hello_version(reply))
    return versions


def _hello_version(reply: Any) -> tuple[int, int, int]:
    if isinstance(reply, dict) and len(reply) == 1 and isinstance(next(iter(reply.values())), (list, dict)):
        reply = next(iter(reply.values()))  # a cluster reply keyed by node
    if isinstance(reply, (list, tuple)):
        reply = dict(zip(reply[::2], reply[1::2]))
    raw = reply.get(b"version", reply.get("version", b"0"))
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return parse_version(text)
    except ValueError:
        raise ServerCheckError(f"the server reports version {text[:40]!r}, which is not a Redis version") from None


def check_server(client: Client, config: Any) -> tuple[int, int, int]:
    """Refuse servers without HEXPIRE (every node of a cluster, replicas included, since any
    may be promoted). Returns the lowest version found. Never writes."""
    where = config.where
    try:
        versions = server_versions(client)
    except redis.exceptions.NoPermissionError as exc:
        raise permission_error(exc, where, "the version check (HELLO)") from None
    for version in versions:
        if version < MIN_SERVER_VERSION:
            raise ServerCheckError(
                f"Redis at {where} is version {version_text(version)}; feast-redis-hexpire needs Redis "
                f"{version_text(MIN_SERVER_VERSION)}+ for per-field expiry (HEXPIRE/HPEXPIREAT)."
            )
    return min(versions)


def redis_error_text(error: BaseException) -> str:
    """Redis's own error text, secrets redacted. redis-py strips the error code from the
    replies it maps to a class (`OOM command not allowed...` arrives as OutOfMemoryError
    `command not allowed...`); the code goes back in front, as Redis sent it."""
    text = str(error)
    code = getattr(error, "status_code", None)
    if code and not text.startswith(code):
        text = f"{code} {text}"
    return redact(text)


# ---------------------------------------------------------------- permissions

_COMMAND_IN_NOPERM = re.compile(r"permissions to (?:run|access) the '([^']+)' command", re.IGNORECASE)


def is_permission_error(reply: object) -> bool:
    """NOPERM, or an ACL failure inside the write script (Redis reports that one as
    `ERR ACL failure in script: ... no permissions to run the 'hpexpireat' command`)."""
    if isinstance(reply, redis.exceptions.NoPermissionError):
        return True
    if not isinstance(reply, redis.exceptions.ResponseError):
        return False
    text = str(reply)
    return "NOPERM" in text or "ACL failure" in text or "no permissions" in text.lower()


def permission_error(
    exc: BaseException, where: str, what: str, keys: str = "", view: str | None = None, key: str | None = None
) -> RedisPermissionError:
    """A RedisPermissionError that names the command (or key pattern) the user lacks, what
    needed it, and where the ACL lines are documented."""
    message = redact(str(exc))
    command = _COMMAND_IN_NOPERM.search(message)
    if command:
        detail = f"the Redis user may not run {command.group(1).upper()}"
    elif "key" in message.lower():
        detail = f"the Redis user may not access {keys or 'these keys'}"
    else:
        detail = "the Redis user lacks a permission"
    return RedisPermissionError(
        f"Redis at {where}: {detail}, needed for {what} ({message}). Grant the ACL user the "
        "commands and key pattern listed in docs/topologies.md (reader, writer and operator lines).",
        view=view,
        key=key,
        cause=exc,
    )


def probe_permissions(client: redis.Redis, probes: Sequence[Sequence[str]]) -> list[str | None]:
    """Send each probe (roles.Command.probe: a command that passes Redis's ACL check, then
    changes nothing) in one pipeline: None where the user may run it, else Redis's NOPERM
    text. Any other reply, an error included, means the ACL check passed. Each refusal is
    recorded in the server's ACL log, as a refused command of the store would be."""
    pipe = client.pipeline(transaction=False)
    for probe in probes:
        pipe.execute_command(*probe)
    replies = pipe.execute(raise_on_error=False)
    return [redact(str(reply)) if is_permission_error(reply) else None for reply in replies]
