"""Every error the store raises on purpose, in one tree rooted at `HexpireError`.

    HexpireError (feast.errors.FeastError)
    ├── ConfigError                            raised while validating config and views
    │   ├── InvalidConnectionString
    │   ├── InvalidViewConfig
    │   └── FieldConflictError
    ├── ServerCheckError                       the server cannot run this store
    │   ├── UnsupportedServer                  a server or version without hash-field expiry
    │   └── SearchUnavailable                  no Query Engine, or no index for the view
    ├── RedisPermissionError                   the Redis user lacks a command or key (NOPERM)
    ├── WriteFailed                            Redis refused a write (OOM, WRONGTYPE, ...)
    │   └── FieldExpiryError                   a per-field expiry was not set
    ├── InvalidInput (ValueError)              a request or row was rejected; nothing written
    │   ├── UnknownFeature (also a KeyError, as Feast raises)
    │   ├── InvalidFeatureValue
    │   └── InvalidEntityKey
    └── CorruptStoredValue                     a stored value does not decode as its dtype

Rooting the tree in Feast's own `FeastError` lets `feast serve` answer each with its
`http_status_code()`: input errors reach clients as 4xx with the message, not as 500.

Every error keeps the facts its message names as attributes (`view`, `key`, `feature`,
`value`, `setting`, `cause`; None where they do not apply), so callers need not parse
messages. Where a message names several (two views declaring one field, three unknown
features), the attribute holds the first and the class may add the whole list
(`FieldConflictError.clashes`). `cause` is always `__cause__` too: a raise that sets it
chains it (`from exc`), and one that hides the original (`from None`) sets no cause.
"""

from __future__ import annotations

from typing import Any

from feast.errors import FeastError


class HexpireError(FeastError):
    """Base class: `except HexpireError` catches everything this store raises on purpose."""

    # Class-level defaults: Feast rebuilds errors from their detail without __init__.
    view: str | None = None
    """The feature view concerned."""
    key: str | None = None
    """The Redis key (or `first key and N more keys`) concerned."""
    feature: str | None = None
    """The feature (or join key) concerned."""
    value: Any = None
    """The offending value, as given (never a secret: connection strings are not kept)."""
    setting: str | None = None
    """The config option or view tag concerned (`retry_attempts`, `hexpire.ttl_seconds`)."""
    cause: BaseException | None = None
    """redis-py's (or Feast's) exception behind this one; also its `__cause__`."""

    def __init__(
        self,
        message: str,
        *,
        view: str | None = None,
        key: str | None = None,
        feature: str | None = None,
        value: Any = None,
        setting: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.view, self.key, self.feature, self.value, self.cause = view, key, feature, value, cause
        if setting is not None:  # else the class's own (InvalidConnectionString's)
            self.setting = setting

    def http_status_code(self) -> int:
        return 500


# ---------------------------------------------------------------- configuration


class ConfigError(HexpireError):
    """The online_store config or a view's tags cannot be honoured. Raised while Feast loads
    the config (`feast apply`, FeatureStore construction). Not a ValueError on purpose:
    pydantic would wrap it, and Feast re-raises pydantic errors with their raw input, which
    holds the connection string and its password."""


class InvalidConnectionString(ConfigError):
    """`connection_string` is malformed; the message shows it with secrets redacted, and
    `value` stays None: the string may hold a password."""

    setting = "connection_string"


class InvalidViewConfig(ConfigError):
    """A view's `hexpire.*` tags or definition cannot be honoured."""


class FieldConflictError(ConfigError):
    """Two views of one entity would write the same hash field (`field_naming: plain`).
    `clashes` maps each such field to the views declaring it; `feature` and `view` are the
    first field and its first view."""

    clashes: dict[str, list[str]] = {}  # noqa: RUF012 - a default Feast's rebuild leaves alone

    def __init__(self, message: str, *, clashes: dict[str, list[str]] | None = None, **facts: Any) -> None:
        super().__init__(message, **facts)
        self.clashes = clashes or {}


# ---------------------------------------------------------------- the server


class ServerCheckError(HexpireError):
    """The server cannot run this store: too old, or missing the HEXPIRE command family."""

    def http_status_code(self) -> int:
        return 503


class UnsupportedServer(ServerCheckError):
    """A server this store cannot run on: Redis before 7.4, Valkey before 9.0, or another
    server. `server` is what HELLO called it, `version` its version text."""

    def __init__(self, message: str, *, server: str, version: str) -> None:
        super().__init__(message)
        self.server = server
        self.version = version


class RedisPermissionError(HexpireError):
    """The Redis user may not run a command, or touch a key, that the store sends."""

    def http_status_code(self) -> int:
        return 503


class WriteFailed(HexpireError):
    """Redis answered a write with an error; the message names the key, the view and
    Redis's own text (OOM, WRONGTYPE, NOPERM, ...)."""

    def http_status_code(self) -> int:
        return 503


class FieldExpiryError(WriteFailed):
    """Redis answered a per-field expiry (HSETEX / HPEXPIREAT) with something other than success."""


# ---------------------------------------------------------------- input


class InvalidInput(HexpireError, ValueError):
    """A request or row was rejected before anything was sent to Redis."""

    def http_status_code(self) -> int:
        return 422


class UnknownFeature(InvalidInput, KeyError):
    """A row or request names a feature its view does not declare. A KeyError too, as
    Feast raises for an unknown feature of a known view (its own tests expect one)."""

    def __str__(self) -> str:
        return BaseException.__str__(self)  # KeyError would quote the message


class InvalidFeatureValue(InvalidInput):
    """A value does not fit its feature's declared type (or its event time is missing)."""


class InvalidEntityKey(InvalidInput):
    """An entity key is malformed: missing or unexpected join keys, a null or unsupported
    join-key value, or join keys and values of different counts."""


# ---------------------------------------------------------------- stored data


class CorruptStoredValue(HexpireError):
    """A stored value does not decode as its feature's declared type (written by something
    else, or the view's dtype changed without rewriting the data)."""


# ---------------------------------------------------------------- vector and text retrieval


class SearchUnavailable(ServerCheckError):
    """Retrieval needs the Redis Query Engine (FT.* commands), and the server has none, or
    the view has no index yet. Every other feature of the store keeps working. `node` is
    the cluster node (`host:port`) without a usable index, when it is one node's."""

    node: str | None = None

    def __init__(self, message: str, *, node: str | None = None, **facts: Any) -> None:
        super().__init__(message, **facts)
        self.node = node
