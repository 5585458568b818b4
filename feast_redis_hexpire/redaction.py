"""Secrets out of every message: one redaction for connection strings, URLs and params.

Imports nothing but `re`, so dev tooling can use it without importing Feast.
"""

from __future__ import annotations

import re

REDACTED = "***"

SECRET_PARAMS = frozenset({"password", "sentinel_password", "ssl_password"})
"""Every param whose value is a secret, in either connection-string form."""

_NAME = r"(?:sentinel_|ssl_)?password"
# Feast's comma-separated form: `,password=...` runs to the next comma (a password may hold
# `&` or `@` there), or to whitespace or a quote when the string sits inside a message.
_FEAST_PARAM = re.compile(rf"((?:^|[,\s'\"])\s*{_NAME}\s*=)[^,\s'\"]*", re.IGNORECASE)
# A URL query: `?password=...` or `&password=...` runs to the next `&`.
_QUERY_PARAM = re.compile(rf"([?&]{_NAME}=)[^&\s'\"#]*", re.IGNORECASE)
# URL userinfo: `scheme://user:secret@` or `scheme://:secret@`, up to the last `@` before the
# host (redis-py splits there too, so a password may hold an unencoded `@`).
_URL_USERINFO = re.compile(r"((?:rediss?|unix)://[^:/@\s]*:)[^\s/]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password-like value replaced by `***`: Feast-form params, URL
    userinfo and URL query params alike. Safe on any message that embeds a connection string."""
    text = _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", text)
    text = _QUERY_PARAM.sub(rf"\g<1>{REDACTED}", text)
    return _FEAST_PARAM.sub(rf"\g<1>{REDACTED}", text)
