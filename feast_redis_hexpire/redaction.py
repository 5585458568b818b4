"""Secrets out of every message: one redaction for connection strings, URLs and free text.

A connection string is redacted where the parser reads its secrets (connection_syntax,
the tokenizer both share), so any spelling the parser accepts is hidden. Free text (a
redis-py error, a message embedding a URL) is redacted by pattern, and every secret a
parsed connection string held is hidden wherever it appears.

Imports nothing from Feast, so dev tooling can use it without the multi-second Feast import.
"""

from __future__ import annotations

import re

from .connection_syntax import SECRET_PARAMS, feast_parts, is_url, url_secret_spans, url_secret_values

__all__ = ["REDACTED", "SECRET_PARAMS", "redact", "redact_connection_string", "remember_secrets", "secret_values"]

REDACTED = "***"

_NAME = r"(?:sentinel_|ssl_)?password"
_VALUE = r"(?:\"[^\"]*\"|'[^']*'|[^,\s'\"]*)"
# Feast's comma-separated form: `,password=...` runs to the next comma (a password may hold
# `&` or `@` there), or to whitespace or a quote when the string sits inside a message.
_FEAST_PARAM = re.compile(rf"((?:^|[,\s'\"])\s*{_NAME}\s*=\s*){_VALUE}", re.IGNORECASE)
# A URL query: `?password=...` or `&password=...` runs to the next `&`.
_QUERY_PARAM = re.compile(rf"([?&]{_NAME}=)[^&\s'\"#]*", re.IGNORECASE)
# URL userinfo: `scheme://user:secret@` or `scheme://:secret@`, up to the last `@` before
# whitespace (redis-py splits at the authority's last `@`, so a password may hold an unencoded
# `@`; one holding a `/` is not a password to redis-py, but is hidden all the same).
_URL_USERINFO = re.compile(r"((?:rediss?|unix)://[^:/@\s]*:)\S*@", re.IGNORECASE)

_MIN_REMEMBERED = 4
"""Shorter remembered secrets are hidden only where a connection string's layout shows
them: replacing every `ab` in every message would leave little of it readable."""
_remembered: set[str] = set()


def secret_spans(connection_string: str) -> list[tuple[int, int]]:
    """Where the values the parser takes as secrets lie in a connection string."""
    if is_url(connection_string):
        return url_secret_spans(connection_string)
    return [(part.start, part.end) for part in feast_parts(connection_string) if part.secret]


def secret_values(connection_string: str) -> list[str]:
    """Every secret value of a connection string, as written (and, in a URL, as decoded)."""
    if is_url(connection_string):
        return url_secret_values(connection_string)
    return [part.text for part in feast_parts(connection_string) if part.secret]


def remember_secrets(connection_string: str) -> None:
    """Hide this connection string's secrets in every later `redact`ed text (the parser
    calls it, so a password echoed in a redis-py error is hidden too)."""
    _remembered.update(value for value in secret_values(connection_string) if len(value) >= _MIN_REMEMBERED)


def redact_connection_string(connection_string: str) -> str:
    """A connection string as messages show it: every value the parser would read as a
    secret replaced by `***`, whatever its spelling (case, spacing, quotes, encoding)."""
    text = connection_string
    for start, end in sorted(secret_spans(connection_string), reverse=True):
        text = text[:start] + REDACTED + text[end:]
    return redact(text)


def redact(text: str) -> str:
    """`text` with every password-like value replaced by `***`: Feast-form params, URL
    userinfo and URL query params alike, and every secret of a connection string parsed
    so far. Safe on any message that embeds a connection string."""
    for secret in sorted(_remembered, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", text)
    text = _QUERY_PARAM.sub(rf"\g<1>{REDACTED}", text)
    return _FEAST_PARAM.sub(rf"\g<1>{REDACTED}", text)
