"""The atomic per-entity write: Lua source, its SHA, and the reply codes.

Loaded once per connection and called by SHA (EVALSHA); a NOSCRIPT reply (server
restart, SCRIPT FLUSH, failover to a fresh replica) reloads it and retries only the
calls that did not run.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from redis.exceptions import NoScriptError

SCRIPT_SOURCE: str = resources.files(__package__).joinpath("write_entity.lua").read_text()
SCRIPT_SHA: str = hashlib.sha1(SCRIPT_SOURCE.encode()).hexdigest()

STALE = 0  # older than the stored event timestamp: skipped
WRITTEN = 1
EXPIRED = 2  # stream row whose expiry is already past: skipped

BATCH_MODE = b"b"
STREAM_MODE = b"s"


def is_noscript(reply: object) -> bool:
    return isinstance(reply, NoScriptError)
