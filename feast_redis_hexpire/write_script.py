"""The write script (write_script.lua): its source, SHA and reply codes.

Called by SHA (EVALSHA); a NOSCRIPT reply (server restart, SCRIPT FLUSH, failover to a
fresh replica) loads it and retries only the calls that did not run. Nothing loads it at
start-up, so a reader never needs the SCRIPT command.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from redis.exceptions import NoScriptError

SCRIPT_SOURCE: str = resources.files(__package__).joinpath("write_script.lua").read_text()
SCRIPT_SHA: str = hashlib.sha1(SCRIPT_SOURCE.encode()).hexdigest()

STALE = 0  # older than the stored event time: skipped
WRITTEN = 1
EXPIRED = 2  # stream row whose expiry is already past: skipped
FUTURE = 3  # event time too far ahead of the server clock: skipped

BATCH_MODE = b"b"
STREAM_MODE = b"s"
LAST_WRITE_MODE = b"l"  # stream expiry, but the last write wins whatever its event time (labels)

HSETEX_FLAG = b"x"  # ARGV[4]: set expiring fields with HSETEX, not HSET + HPEXPIREAT

# The script compares event times and expiries as text while every one of a call has these
# widths (epoch microseconds 2001-2286, epoch milliseconds 2001-2286); a call with any other
# width carries the "n" flag and is compared as numbers.
EVENT_TIME_DIGITS = 16
EXPIRY_DIGITS = 13
NUMERIC = b"n"  # ARGV[4] flag of such a call (write_rules.numeric)


def is_noscript(reply: object) -> bool:
    return isinstance(reply, NoScriptError)
