"""What the operator CLI's commands share: exit codes, loading the repo, the Redis client,
error text without secrets, and the text form of durations and of one entity hash.

`main` and `doctor` both import from here, never from each other.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # both import Feast: `--help` should not wait for it
    from ..inspection import EntityHash
    from ..repo_loading import RepoInfo

EXIT_OK = 0
EXIT_PROBLEM = 1  # a missing key, or doctor found something wrong
EXIT_ERROR = 2  # could not do what was asked (bad arguments, unreachable Redis, missing repo)


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ repo and Redis


def load(args: argparse.Namespace) -> RepoInfo:
    from ..repo_loading import load_repo

    err(f"loading feature repo {args.repo} ...")
    return load_repo(args.repo, args.connection)


def load_or_report(args: argparse.Namespace) -> RepoInfo | None:
    try:
        return load(args)
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not trace back
        err(f"error: could not load the repo: {describe_error(exc)}")
        return None


def client_of(repo: RepoInfo) -> Any:
    from ..clients import build_sync_client

    return build_sync_client(repo.store_config)


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    from ..errors import HexpireError

    return (redis.RedisError, OSError, HexpireError)


def where(repo: RepoInfo) -> str:
    """The connection string without its secrets."""
    return str(repo.store_config.where)


def describe_error(exc: BaseException) -> str:
    from ..redaction import redact

    text = redact(str(exc).strip()) or type(exc).__name__
    return text.splitlines()[0] if "\n" in text and len(text) > 300 else text


# ------------------------------------------------------------------ text output


def format_ttl(ttl_ms: int | None) -> str:
    """-1 -> "no expiry", -2 -> "gone", else a compact duration such as ``4m47s``."""
    from ..inspection import NO_EXPIRY, NO_SUCH_FIELD

    if ttl_ms is None:
        return "-"
    if ttl_ms == NO_EXPIRY:
        return "no expiry"
    if ttl_ms == NO_SUCH_FIELD:
        return "gone"
    seconds = ttl_ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return "".join(shown) or "0s"


def format_hash_table(entity: EntityHash, max_value_width: int = 40) -> str:
    """A readable table: field | value | view (kind) | field TTL, then the key TTL."""
    from ..inspection import NO_EXPIRY

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
