"""Text output of the operator CLI: durations."""

from __future__ import annotations

# HPTTL / PTTL sentinels
NO_SUCH_FIELD = -2
NO_EXPIRY = -1


def seconds_from_ms(ttl_ms: int) -> int:
    """What TTL/HTTL print: milliseconds rounded to the nearest second; -1/-2 unchanged."""
    return ttl_ms if ttl_ms < 0 else (ttl_ms + 500) // 1000


def format_ttl(ttl_ms: int | None) -> str:
    """-1 -> "no expiry", -2 -> "gone", else a compact duration such as ``4m47s``."""
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
