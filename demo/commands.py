"""The operator CLI lines the demo prints at start: ``feast-redis-hexpire inspect|stats|
doctor`` pointed at the demo's own working repo and Redis, ready to paste into another
terminal while the demo runs.

The Redis URL may carry a password (``REDIS_URL=redis://:secret@host``) and nothing the
demo prints may show it: a URL that came from ``$REDIS_URL`` is printed as
``"$REDIS_URL"`` (still exact, for a shell with the same environment); one given on the
command line is printed redacted, with a note.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from feast_redis_hexpire.redaction import redact

COMMAND = "feast-redis-hexpire"


def redis_argument(url: str, from_env: bool) -> tuple[str, str | None]:
    """The ``--redis-url`` value to print, and a note when it cannot be printed exactly."""
    if redact(url) == url:
        return shlex.quote(url), None
    if from_env:
        return '"$REDIS_URL"', None
    return shlex.quote(redact(url)), (
        "the password is shown as ***: put yours back, or leave out --redis-url "
        "(the working repo's feature_store.yaml has the full connection string)"
    )


def operator_commands(repo: Path, url: str, user: str, *, from_env: bool = False) -> list[str]:
    """Lines to print: the three commands, then a note if the URL had to be redacted."""
    redis_url, note = redis_argument(url, from_env)
    target = f"--repo {shlex.quote(str(repo))} --redis-url {redis_url}"
    lines = [
        f"{COMMAND} inspect {shlex.quote(user)} {target}",
        f"{COMMAND} stats {target}",
        f"{COMMAND} doctor {target}",
    ]
    if note:
        lines.append(f"({note})")
    return lines
