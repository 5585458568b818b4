"""What the store checks about a server, and how it explains a refusal.

The start-up check never writes: it asks every node its server and version with `HELLO`
(allowed for any authenticated user, and answered at `maxmemory`), so a read-only ACL user, a
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

from .errors import RedisPermissionError, ServerCheckError, UnsupportedServer
from .redaction import redact
from .redis_version import FieldExpiry, ServerInfo, field_expiry, hello_info, version_text

Client = redis.Redis | RedisCluster


def server_infos(client: Client) -> list[ServerInfo]:
    """The server and version of the server, or of every cluster node: primaries must
    answer; a replica that is down is skipped (it is checked again when this process
    restarts)."""
    if not isinstance(client, RedisCluster):
        return [hello_reply_info(client.execute_command("HELLO"))]
    infos = []
    for node in client.get_nodes():
        try:
            reply = client.execute_command("HELLO", target_nodes=node)
        except (redis.ConnectionError, redis.TimeoutError):
            if node.server_type == "primary":
                raise
            continue
        infos.append(hello_reply_info(reply))
    return infos


def hello_reply_info(reply: Any) -> ServerInfo:
    """hello_info for a reply as redis-py returns it (a cluster's keyed by node)."""
    if isinstance(reply, dict) and len(reply) == 1 and isinstance(next(iter(reply.values())), (list, dict)):
        reply = next(iter(reply.values()))  # a cluster reply keyed by node
    try:
        return hello_info(reply)
    except ValueError as exc:
        raise ServerCheckError(
            f"the server's HELLO reply names no version this store can read: {exc}", cause=exc
        ) from exc


def check_server(client: Client, config: Any) -> FieldExpiry:
    """Refuse servers without hash-field expiry (every node of a cluster, replicas
    included, since any may be promoted). Returns the commands the write script sets
    expiring fields with, by what every node supports. Never writes."""
    where = config.where
    try:
        infos = server_infos(client)
    except redis.exceptions.NoPermissionError as exc:
        raise permission_error(exc, where, "the version check (HELLO)") from exc
    return choose_field_expiry(infos, getattr(config, "field_expiry_commands", "auto"), where)


def choose_field_expiry(infos: Sequence[ServerInfo], wanted: str, where: str) -> FieldExpiry:
    """The start-up decision on the servers' HELLO answers: refuse any server without
    hash-field expiry, then take the configured commands (`auto`: HSETEX where every node
    has it), refusing HSETEX where a node lacks it."""
    for info in infos:
        if not info.supported:
            raise UnsupportedServer(info.refusal(where), server=info.name, version=version_text(info.version))
    available = field_expiry(infos)
    if wanted == "auto":
        return available
    if wanted == FieldExpiry.hsetex.value and available is not FieldExpiry.hsetex:
        lacking = ", ".join(sorted({str(info) for info in infos if not info.has_hsetex}))
        raise ServerCheckError(
            f"field_expiry_commands is hsetex, but the server at {where} ({lacking}) has no HSETEX "
            "(Redis 8.0+, Valkey 9.0+): set it to auto or hpexpireat",
            setting="field_expiry_commands",
            value=wanted,
        )
    return FieldExpiry(wanted)


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
