"""The operator CLI lines the demo prints at start: ``feast-redis-hexpire inspect|stats|
doctor`` pointed at the demo's own working repo and Redis, ready to paste into another
terminal while the demo runs. That terminal is a fresh shell, with no virtualenv
activated: each line names the command by its absolute path, the console script beside
the interpreter running the demo (or that interpreter with ``-m``).

The Redis URL may carry a password (``REDIS_URL=redis://:secret@host``) and nothing the
demo prints may show it: a URL that came from ``$REDIS_URL`` is printed as
``"$REDIS_URL"`` (still exact, for a shell with the same environment); one given on the
command line is printed redacted, with a note.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from feast_redis_hexpire.redaction import redact

COMMAND = "feast-redis-hexpire"
CLI_MODULE = "feast_redis_hexpire.cli"


def cli_invocation(interpreter: str | None = None) -> str:
    """How to run the CLI from any shell: the console script installed beside
    ``interpreter`` (a venv's ``bin/``), else one on ``$PATH``, else the interpreter with
    ``-m``; always an absolute path, so no activated venv is needed."""
    python = Path(interpreter or sys.executable).absolute()  # not resolved: a venv's python is a symlink
    script = python.parent / COMMAND
    if script.is_file():
        return shlex.quote(str(script))
    found = shutil.which(COMMAND)
    if found:
        return shlex.quote(str(Path(found).absolute()))
    return f"{shlex.quote(str(python))} -m {CLI_MODULE}"


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


def operator_commands(
    repo: Path, url: str, user: str, *, from_env: bool = False, interpreter: str | None = None
) -> list[str]:
    """Lines to print: the three commands, then a note if the URL had to be redacted."""
    redis_url, note = redis_argument(url, from_env)
    command = cli_invocation(interpreter)
    target = f"--repo {shlex.quote(str(repo))} --redis-url {redis_url}"
    lines = [
        f"{command} inspect {shlex.quote(user)} {target}",
        f"{command} stats {target}",
        f"{command} doctor {target}",
    ]
    if note:
        lines.append(f"({note})")
    return lines
