"""The `connection_string` of the online_store block: parsing and environment expansion.
Parsed once at config validation, so a malformed string fails `feast apply`
rather than the first read of a serving process.

Two forms are accepted:

- Feast's own: `host:port[,host:port...][,param=value...]`; hosts are the server, the
  cluster's startup nodes or the sentinels, depending on `redis_type`.
- A URL: `redis://[user:password@]host:port[/db][?param=value...]`, `rediss://...`
  (TLS) or `unix://[:password@]/path/to/socket`.

Params go to redis-py (`password`, `username`, `db`, `ssl`, `ssl_ca_certs`,
`socket_timeout`, ...), except the store's own (`sentinel_username`,
`sentinel_password`, `skip_full_coverage_check`). Its errors come from the store's error
tree (errors.py), which is rooted in Feast's FeastError, so this imports Feast through it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from redis.connection import parse_url

from .connection_syntax import feast_parts, is_url, param_name
from .errors import InvalidConnectionString
from .redaction import redact, redact_connection_string, remember_secrets

# Params that must reach redis-py as numbers.
_FLOAT_PARAMS = {"socket_timeout", "socket_connect_timeout", "health_check_interval"}
# Params kept as text whatever they look like (secrets, file paths, names).
_TEXT_PARAMS = {
    "password",
    "username",
    "sentinel_password",
    "sentinel_username",
    "client_name",
    "ssl_ca_certs",
    "ssl_ca_path",
    "ssl_ca_data",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_cert_reqs",
    "ssl_min_version",
}
STORE_PARAMS = frozenset({"sentinel_username", "sentinel_password", "skip_full_coverage_check"})
"""The store's own params: consumed by the client builder, never passed to redis-py."""

_ENV_WITH_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")
_ENV_PLAIN = re.compile(r"\$\{(\w+)\}")


def expand_env(value: str) -> str:
    """`${VAR:-default}` and `${VAR}` from the environment. Feast's own expansion knows only
    `${VAR}`, and leaves it as literal text when VAR is unset; here an unset VAR without a
    default is an error that names it (and never shows the rest of the string)."""
    expanded = _ENV_WITH_DEFAULT.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), value)

    def plain(match: re.Match[str]) -> str:
        found = os.environ.get(match.group(1))
        if found is None:
            raise InvalidConnectionString(
                f"connection_string refers to environment variable {match.group(1)}, which is not set; "
                f"set it, or give a default: ${{{match.group(1)}:-localhost:6379}}"
            )
        return found

    return _ENV_PLAIN.sub(plain, expanded)


@dataclass(frozen=True)
class ParsedConnection:
    """What each redis-py constructor needs, split out of one connection string."""

    nodes: tuple[tuple[str, int], ...]
    """host/port pairs: the server, the cluster's startup nodes or the sentinels."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for redis-py's client (the store's own params removed)."""
    store_params: dict[str, Any] = field(default_factory=dict)
    unix_socket_path: str | None = None


def parse(connection_string: str) -> ParsedConnection:
    """Feast's `host:port[,host:port][,k=v...]` or a redis:// / rediss:// / unix:// URL.

    Param names are read in any case. Raises InvalidConnectionString, with the string
    redacted, for anything malformed. Every secret it holds is hidden from later messages
    (`redaction.remember_secrets`)."""
    remember_secrets(connection_string)
    text = connection_string.strip()
    if not text:
        raise InvalidConnectionString("connection_string is empty; give host:port or a redis:// URL")
    if is_url(text):
        return _parse_url(text)
    nodes: list[tuple[str, int]] = []
    params: dict[str, Any] = {}
    for part in feast_parts(text):
        if part.name is not None:
            params[part.name] = _param_value(part.name, part.text, text)
        else:
            nodes.append(_host_port(part.text, text, after_params=bool(params)))
    if not nodes:
        raise InvalidConnectionString(f"connection_string {redact_connection_string(text)!r} names no host:port")
    return _split_store_params(tuple(nodes), params)


def _parse_url(text: str) -> ParsedConnection:
    scheme = text.split("://", 1)[0].lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise InvalidConnectionString(
            f"connection_string {redact_connection_string(text)!r}: unsupported scheme {scheme!r}; "
            "use redis://, rediss:// or unix://, or Feast's host:port[,param=value] form"
        )
    try:
        kwargs = dict(parse_url(text))
    except ValueError as exc:
        raise InvalidConnectionString(
            f"connection_string {redact_connection_string(text)!r} is not a valid URL: {redact(str(exc))}"
        ) from None
    kwargs = {param_name(name): value for name, value in kwargs.items()}
    kwargs.pop("connection_class", None)
    if scheme == "rediss":
        kwargs["ssl"] = True
    for name in list(kwargs):
        if name not in _TEXT_PARAMS and isinstance(kwargs[name], str):
            kwargs[name] = _param_value(name, kwargs[name], text)
    if scheme == "unix":
        path = kwargs.pop("path", None)
        if not path:
            raise InvalidConnectionString(f"connection_string {redact_connection_string(text)!r} names no socket path")
        return _split_store_params((), kwargs, unix_socket_path=path)
    host = kwargs.pop("host", None) or "localhost"
    port = kwargs.pop("port", None) or 6379
    return _split_store_params(((host, int(port)),), kwargs)


def _split_store_params(
    nodes: tuple[tuple[str, int], ...], params: dict[str, Any], unix_socket_path: str | None = None
) -> ParsedConnection:
    store = {name: params.pop(name) for name in list(params) if name in STORE_PARAMS}
    return ParsedConnection(nodes=nodes, params=params, store_params=store, unix_socket_path=unix_socket_path)


def _host_port(part: str, whole: str, after_params: bool) -> tuple[str, int]:
    host, _, port = part.rpartition(":")
    if not host:
        host, port = port, "6379"
    if host.startswith("[") and host.endswith("]"):  # [::1]:6379
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not host or not 0 < number < 65536:
        # A part after the params may be the rest of a value cut at a comma: not shown.
        shown = "a part after its params" if after_params else repr(redact(part))
        raise InvalidConnectionString(
            f"connection_string {redact_connection_string(whole)!r}: {shown} is not host:port (params are "
            "written name=value, and a value cannot hold a comma: use a URL, with %2C, for that)"
        )
    return host, number


def _param_value(name: str, raw: str, whole: str) -> Any:
    if name in _TEXT_PARAMS or not raw:
        return raw
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        if name in _FLOAT_PARAMS:
            return float(raw)
        if name in ("db", "port"):
            return int(raw)
    except ValueError:
        raise InvalidConnectionString(
            f"connection_string {redact_connection_string(whole)!r}: {name}={raw!r} is not a number"
        ) from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw
