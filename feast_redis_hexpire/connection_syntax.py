"""How a connection string splits into parts: the one tokenizer that the parser
(connection_string.py) reads params from and the redactor (redaction.py) finds secrets
with, so a value the parser takes as a password is always one the redactor hides.

Imports nothing but the standard library, so dev tooling can use it without importing Feast.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

SECRET_PARAMS = frozenset({"password", "sentinel_password", "ssl_password"})
"""Every param whose value is a secret, in either connection-string form."""

_SCHEME = re.compile(r"^\s*[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def is_url(text: str) -> bool:
    return _SCHEME.match(text) is not None


def param_name(raw: str) -> str:
    """A param's name as the store reads it: surrounding spaces dropped, case ignored
    (every redis-py keyword is lower case)."""
    return raw.strip().lower()


@dataclass(frozen=True)
class Part:
    """One comma-separated part of Feast's form: a `host:port`, or a `name=value` param."""

    name: str | None
    """The param's name (param_name), None for a host:port part."""
    text: str
    """The param's value, or the whole host:port part, spaces stripped."""
    start: int
    end: int
    """Where `text` lies in the string."""

    @property
    def secret(self) -> bool:
        return self.name in SECRET_PARAMS


def feast_parts(text: str) -> Iterator[Part]:
    """The non-empty parts of `host:port[,host:port...][,name=value...]`, split at every
    comma (a value cannot hold one), each stripped; a param's value is what follows its
    first `=`."""
    position = 0
    for raw in text.split(","):
        start, position = position, position + len(raw) + 1
        if not raw.strip():
            continue
        if "=" in raw:
            name, _, value = raw.partition("=")
            value_start = start + len(name) + 1 + len(value) - len(value.lstrip())
            stripped = value.strip()
            yield Part(param_name(name), stripped, value_start, value_start + len(stripped))
        else:
            part_start = start + len(raw) - len(raw.lstrip())
            stripped = raw.strip()
            yield Part(None, stripped, part_start, part_start + len(stripped))


def url_secret_spans(text: str) -> list[tuple[int, int]]:
    """Where a URL's secrets lie, found as redis-py's `parse_url` (urllib's `urlparse`)
    splits it: the password of the userinfo (after its first `:`, up to the last `@` of the
    authority) and the value of every query param whose name is a secret one (in any case,
    percent-encoded or not; every occurrence, since redis-py keeps the first and this parser's
    Feast form the last)."""
    scheme_end = text.find("://")
    if scheme_end < 0:
        return []
    spans: list[tuple[int, int]] = []
    authority_start = scheme_end + 3
    authority_end = _first_of(text, "/?#", authority_start)
    at = text.rfind("@", authority_start, authority_end)
    if at >= 0:
        colon = text.find(":", authority_start, at)
        if colon >= 0:
            spans.append((colon + 1, at))
    query_start = text.find("?", authority_end)
    query_end = _first_of(text, "#", authority_start)
    if 0 <= query_start < query_end:
        position = query_start + 1
        for piece in text[query_start + 1 : query_end].split("&"):
            name, equals, _ = piece.partition("=")
            if equals and param_name(unquote_plus(name)) in SECRET_PARAMS:
                spans.append((position + len(name) + 1, position + len(piece)))
            position += len(piece) + 1
    return spans


def url_secret_values(text: str) -> list[str]:
    """The secrets at url_secret_spans, both as written and as redis-py decodes them."""
    values: list[str] = []
    for start, end in url_secret_spans(text):
        raw = text[start:end]
        values.extend({raw, unquote(raw), unquote(unquote_plus(raw))})
    return values


def _first_of(text: str, characters: str, start: int) -> int:
    """The position of the first of `characters` at or after `start`, else len(text)."""
    found = [i for i in (text.find(c, start) for c in characters) if i >= 0]
    return min(found, default=len(text))
