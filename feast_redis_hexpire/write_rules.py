"""The rules both write paths apply to a row's event time: the default path (writes.py,
one row at a time) and HexpireProvider's Arrow path (arrow_writes.py, a column at a time)
call these same functions, on a Python int or on a numpy int64 array alike.

Key spelling is keys.py's; the argument layout is the write script's (write_script.lua).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

from .views import ViewKind, ViewLayout
from .write_script import EVENT_TIME_DIGITS, EXPIRY_DIGITS

Micros = TypeVar("Micros", int, np.ndarray)

_TEXT_MICROS = (10 ** (EVENT_TIME_DIGITS - 1), 10**EVENT_TIME_DIGITS)
_TEXT_MILLIS = (10 ** (EXPIRY_DIGITS - 1), 10**EXPIRY_DIGITS)


def event_ttl_ms(layout: ViewLayout) -> int | None:
    """The TTL a row's expiry is anchored to its event time with: stream views with a TTL
    only (batch views get a key-level TTL, set by the script from the call's head)."""
    return layout.ttl_millis if layout.kind is ViewKind.stream and layout.ttl_millis > 0 else None


def expiry_ms(micros: Micros, ttl_ms: int) -> Micros:
    """A stream row's field expiry: its event time (epoch µs) + the TTL, in epoch ms."""
    return micros // 1000 + ttl_ms


def numeric(micros: Micros, expire_ms: Micros | None = None) -> Micros:
    """Whether the script must compare a row's times as numbers: an event time that is not
    16 digits of epoch microseconds (before 2001-09-09, from 2286 on, or before 1970 with a
    sign), or an expiry that is not 13 digits of epoch milliseconds. Text comparison of
    fixed-width digits is what keeps the script cheap; the flag travels once per call."""
    flag = (micros < _TEXT_MICROS[0]) | (micros >= _TEXT_MICROS[1])
    if expire_ms is not None:
        flag = flag | (expire_ms < _TEXT_MILLIS[0]) | (expire_ms >= _TEXT_MILLIS[1])
    return flag
