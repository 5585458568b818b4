"""Secrets out of every message: one redaction for connection strings, URLs and params.

Imports nothing but `re`, so dev tooling can use it without importing Feast.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

SECRET_PARAMS = frozenset({"password", "sentinel_password", "ssl_password"})
"""Every param whose value is a secret, in either connection-string form."""

# `password=...` (also `sentinel_password`, `ssl_password`) in Feast's comma-separated form
# or a URL query; the value runs to the next `,`, `&` or whitespace.
_SECRET_PARAM = re.compile(r"((?:^|[,?&\s'\"])\s*(?:sentinel_|ssl_)?password\s*=)[^,&\s'\"]*", re.IGNORECASE)
# URL userinfo: `scheme://user:secret@` or `scheme://:secret@`.
_URL_USERINFO = re.compile(r"((?:rediss?|unix)://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every password-like value replaced by `***`: Feast-form params, URL
    userinfo and URL query params alike. Safe on any message that embeds a connection string."""
    return _URL_USERINFO.sub(rf"\g<1>{REDACTED}@", _SECRET_PARAM.sub(rf"\g<1>{REDACTED}", text))


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of client keyword arguments with secret values replaced."""
    return {name: (REDACTED if name in SECRET_PARAMS and value else value) for name, value in params.items()}
