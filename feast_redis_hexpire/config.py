"""The `online_store:` block of feature_store.yaml, validated when Feast loads it.

Everything that can be wrong with the block (a malformed connection string, a negative
TTL, two TTL names that disagree) fails here, at `feast apply` or FeatureStore
construction, with the secrets of the connection string hidden.
"""

# No `from __future__ import annotations` here: pydantic resolves the field annotations in
# this class's `__module__`, which is the package (see below), not this module.
import functools
import importlib
import logging
import re
from enum import Enum
from functools import lru_cache
from typing import Any, Final, Literal

from feast.repo_config import FeastConfigBaseModel
from pydantic import (
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .connection_string import ParsedConnection, expand_env, parse
from .errors import ConfigError
from .redaction import redact, redact_connection_string

STORE_TYPE: Final = "feast_redis_hexpire.RedisHexpireOnlineStore"

logger = logging.getLogger(__name__)


class FieldNaming(str, Enum):
    """How feature names become hash fields."""

    qualified = "qualified"
    """`<view>:<feature>`, the text of a Feast feature reference: unique whatever the repo."""
    plain = "plain"
    """The feature name alone; `feast apply` rejects two views of one entity sharing one."""


class RedisType(str, Enum):
    """The deployment shape; names match Feast's own Redis store."""

    redis = "redis"
    redis_cluster = "redis_cluster"
    redis_sentinel = "redis_sentinel"


class HashTag(str, Enum):
    """Which part of the key, if any, is a Redis Cluster hash tag (`{...}`)."""

    none = "none"
    """`fs:proj:user_id=u1`: every entity hashes to its own slot, spread over all shards."""
    project = "project"
    """`fs:{proj}:user_id=u1`: the whole project in one slot, so on one shard."""


DEFAULT_BATCH_TTL_SECONDS = 172800
DEFAULT_SOCKET_TIMEOUT_SECONDS = 1.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 1.0

# Options of Feast's built-in Redis store that mean nothing here; accepted so a repo can
# switch `type:` without editing them, and logged once.
_IGNORED_BUILTIN_OPTIONS = {
    "full_scan_for_deletion": "removing a view's fields always SCANs the project's keys",
    "skip_dedup": "every write is newest-wins in one round trip already",
}


class RedisHexpireOnlineStoreConfig(FeastConfigBaseModel):
    """Online store config. Feast finds it by the `<StoreClass>Config` naming convention,
    and finds the store class in this class's `__module__`: point that at the package,
    which exports both."""

    __module__ = "feast_redis_hexpire"

    # Validation errors must never echo the input: the connection string may hold a password
    # (Feast expands `${VAR}` before we see it). Assignments are validated too, so a live
    # config changed at runtime (`config.online_store.key_ttl_seconds = 1`) stays consistent.
    model_config = ConfigDict(hide_input_in_errors=True, validate_assignment=True)

    type: Literal[
        "feast_redis_hexpire.RedisHexpireOnlineStore",
        "feast_redis_hexpire.store.RedisHexpireOnlineStore",
    ] = STORE_TYPE

    connection_string: StrictStr = Field("localhost:6379", repr=False)  # never in a repr
    """Feast's format `host:port[,host:port][,param=value...]`, or a redis:// / rediss:// /
    unix:// URL. Params go to redis-py (username, password, db, ssl, ssl_ca_certs,
    socket_timeout, ...); the store's own: sentinel_username, sentinel_password,
    skip_full_coverage_check. Hosts are cluster startup nodes (redis_cluster) or sentinels
    (redis_sentinel). `${VAR:-default}` is expanded from the environment."""

    credential_provider: StrictStr | None = None
    """`package.module:callable`: a factory (called with no arguments) returning a redis-py
    `CredentialProvider`, asked for a username and password on every new connection, so
    short-lived tokens (cloud IAM, Entra ID) rotate without a restart. Replaces
    username/password in the connection string; setting both is an error. Applies to the
    data nodes of every redis_type (sentinels keep sentinel_username/sentinel_password).
    Examples: docs/credentials.md."""

    redis_type: RedisType = RedisType.redis
    sentinel_master: StrictStr = "mymaster"
    """The master name the sentinels monitor (redis_type: redis_sentinel)."""

    retry_attempts: int = Field(6, ge=0)
    """Retries of a command after a connection error (restart, failover), with jittered
    exponential backoff from 0.1 s to 2 s between tries. Timeouts (a hung server) are
    retried at most twice, so a hung server surfaces as an error after about 3 x
    socket_timeout (3.6 s with the defaults); a refused password is not retried. On Redis
    Cluster redis-py retries without a pause and counts timeouts like other errors."""

    read_from_replicas: bool = False
    """Serve reads from replicas (redis_cluster, redis_sentinel). Writes always go to the
    primary. A replica may lag behind the primary, and hides a field past its expiry by its
    own clock: keep the servers' clocks in sync (docs/topologies.md, Reading from replicas)."""

    key_prefix: StrictStr = "fs"
    """First component of every entity key: `<key_prefix>:<project>:<join_key>=<value>`."""

    hash_tag: HashTag = HashTag.none
    """`project` writes `<key_prefix>:{<project>}:...`: on Redis Cluster the whole project
    shares one slot (one shard serves all of it). `none` spreads entities over all slots."""

    batch_ttl_seconds: int | None = Field(DEFAULT_BATCH_TTL_SECONDS, ge=0)
    """Key-level EXPIRE set by every batch-view write. 0 or null: keys never expire."""

    key_ttl_seconds: int | None = Field(None, ge=0)
    """Feast's built-in Redis store's name for the key-level TTL: when set, it is the batch
    TTL (`batch_ttl_seconds` may then be left out, or must agree)."""

    stream_ttl_seconds: int | None = Field(300, ge=0)
    """Per-field expiry for push/stream views without a TTL of their own (tag or Feast
    `ttl=`), anchored at event time. 0 or null: none."""

    max_future_seconds: int | None = Field(86400, ge=0)
    """Rows whose event time is more than this ahead of the server's clock are skipped and
    counted (never stored): one mis-dated row would otherwise freeze a view's newest-wins.
    A day, because Feast reads naive datetimes as UTC: code that stamps rows with a local
    `datetime.now()` east of UTC (Feast's own quickstart does) writes up to 14 hours ahead.
    null disables the bound."""

    field_naming: FieldNaming = FieldNaming.qualified

    field_expiry_commands: Literal["auto", "hsetex", "hpexpireat"] = "auto"
    """How stream rows set their fields and per-field expiry: `hsetex` one HSETEX (Redis
    8+, Valkey 9+), `hpexpireat` HSET then HPEXPIREAT (every supported server). `auto`
    takes HSETEX when every node has it (read from HELLO at start-up). Stored bytes and
    TTLs are the same either way; HSETEX costs the server less."""

    write_chunk_size: int = Field(500, ge=1)
    """Entities per pipelined round trip on writes (also the progress-bar step)."""

    full_scan_for_deletion: bool | None = None
    skip_dedup: bool | None = None

    # ------------------------------------------------------------ vector and text retrieval
    # Feast's own names for vector stores (VectorStoreConfig and the Milvus, Elasticsearch,
    # Postgres and SQLite stores' settings), where they mean the same thing here.

    vector_enabled: bool = False
    """`feast apply` keeps a Redis Query Engine index per view with vector (or, with
    `text_search_enabled`, text) fields, and `retrieve_online_documents_v2` searches it.
    Off: no index is made and retrieval is refused. Vector fields are stored as raw floats
    either way (they are what an index reads), so turning it on needs no rewrite."""

    text_search_enabled: bool = False
    """Also index the String features of indexed views as TEXT, for `query_string` (BM25)."""

    similarity: StrictStr | None = None
    """The index's distance metric when a vector field names none (`vector_search_metric`):
    `L2`, `COSINE` or `IP` (inner product; `inner_product`, `dot_product` too). Feast's
    VectorStoreConfig name. Unset (and no metric_type): such a field is indexed for all
    three, and each query's distance_metric picks one (Feast asks for L2 by default)."""

    metric_type: StrictStr | None = None
    """Milvus's name for `similarity`; setting both to different metrics is an error."""

    embedding_dim: int | None = Field(None, ge=1)
    """The vector length when a vector field declares no `vector_length` (Milvus's name)."""

    index_type: StrictStr | None = None
    """`FLAT` (exact, the default) or `HNSW` (approximate, for collections too large to scan
    per query) for every index; a view's `hexpire.vector.index_type` tag overrides it."""

    # ------------------------------------------------------------ validation

    @model_validator(mode="wrap")
    @classmethod
    def _no_input_in_errors(cls, values: Any, handler: Any) -> Any:
        """Turn pydantic's own errors (a wrong type, an unknown option, a number out of its
        range) into a ConfigError whose message shows no text input: Feast re-raises
        validation errors showing the whole online_store block, connection string and
        password included. A number is shown (`retry_attempts: ... >= 0, got -1`): it
        cannot be a secret. `setting` and `value` are the first problem's."""
        try:
            return handler(values)
        except ValidationError as exc:
            problems = [_Problem.of(error) for error in exc.errors()]
            raise ConfigError(
                f"invalid online_store config: {redact('; '.join(p.text for p in problems))}",
                setting=problems[0].setting,
                value=problems[0].number,
            ) from None

    @field_validator("connection_string")
    @classmethod
    def _parse_connection_string(cls, value: str) -> str:
        expanded = expand_env(value)
        parsed_connection(expanded)  # raises InvalidConnectionString, with secrets redacted
        return expanded

    @field_validator("credential_provider")
    @classmethod
    def _factory_reference(cls, value: str | None) -> str | None:
        if value is not None and not _FACTORY.fullmatch(value):
            raise ConfigError(
                f"credential_provider {value!r} must name a factory as package.module:callable "
                "(e.g. mycompany.redis_auth:iam_provider)",
                setting="credential_provider",
                value=value,
            )
        return value

    @field_validator("key_prefix")
    @classmethod
    def _prefix_has_no_separator(cls, value: str) -> str:
        if not value or any(c in value for c in ":{}*?[]\\ "):
            raise ConfigError(
                f"key_prefix {value!r} must be non-empty and free of ':', braces, glob characters and spaces",
                setting="key_prefix",
                value=value,
            )
        return value

    @field_validator("similarity", "metric_type")
    @classmethod
    def _known_metric(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        from .vector_schema import canonical_metric  # the metric names live there

        try:
            return canonical_metric(value, what=f"{info.field_name} {value!r}")
        except ConfigError as exc:
            exc.setting, exc.value = info.field_name, value
            raise

    @field_validator("index_type")
    @classmethod
    def _known_index_type(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in ("HNSW", "FLAT"):
            raise ConfigError(f"index_type {value!r} must be HNSW or FLAT", setting="index_type", value=value)
        return None if value is None else value.upper()

    # ------------------------------------------------------------ whole-block rules

    @model_validator(mode="after")
    def _consistent(self) -> "RedisHexpireOnlineStoreConfig":
        if (
            self.key_ttl_seconds is not None
            and "batch_ttl_seconds" in self.model_fields_set
            and self.batch_ttl_seconds != self.key_ttl_seconds
        ):
            raise ConfigError(
                f"key_ttl_seconds ({self.key_ttl_seconds}) and batch_ttl_seconds ({self.batch_ttl_seconds}) "
                "disagree: they name the same key-level TTL of batch views (key_ttl_seconds is Feast's "
                "built-in Redis store's name for it). Set one of them.",
                setting="key_ttl_seconds",
                value=self.key_ttl_seconds,
            )
        parsed = parsed_connection(self.connection_string)
        if self.redis_type is RedisType.redis_cluster and parsed.params.get("db") not in (0, None):
            raise ConfigError(
                "Redis Cluster has only database 0: remove db=... from connection_string",
                setting="connection_string",
                value=parsed.params.get("db"),
            )
        if self.redis_type is not RedisType.redis and parsed.unix_socket_path:
            raise ConfigError(
                f"redis_type {self.redis_type.value} needs host:port nodes, not a unix:// socket",
                setting="redis_type",
                value=self.redis_type.value,
            )
        if self.credential_provider is not None:
            given = [name for name in ("username", "password") if parsed.params.get(name)]
            if given:
                raise ConfigError(
                    f"credential_provider is set, and the connection_string also gives a {' and a '.join(given)}: "
                    "the credential provider supplies the username and password of every connection, so "
                    "remove them from connection_string (sentinel_username/sentinel_password may stay)",
                    setting="credential_provider",
                    value=self.credential_provider,
                )
        if self.read_from_replicas and self.redis_type is RedisType.redis:
            raise ConfigError(
                "read_from_replicas needs redis_type redis_cluster or redis_sentinel: a standalone "
                "connection string names one server",
                setting="read_from_replicas",
                value=True,
            )
        if self.similarity and self.metric_type and self.similarity != self.metric_type:
            raise ConfigError(
                f"similarity ({self.similarity}) and metric_type ({self.metric_type}) disagree: they name the "
                "same default distance metric (metric_type is Feast's Milvus store's name for it). Set one of them.",
                setting="metric_type",
                value=self.metric_type,
            )
        for name, why in _IGNORED_BUILTIN_OPTIONS.items():
            if getattr(self, name) is not None:
                _log_ignored_once(name, why)
        return self

    # ------------------------------------------------------------ derived values

    @property
    def effective_batch_ttl_seconds(self) -> int:
        """The key TTL batch views get by default: `key_ttl_seconds` when set (also when set
        at runtime on a live config), else `batch_ttl_seconds`."""
        if self.key_ttl_seconds is not None:
            return self.key_ttl_seconds
        return self.batch_ttl_seconds or 0

    @property
    def default_metric(self) -> str:
        """The distance metric of a vector field that names none."""
        return self.similarity or self.metric_type or "L2"

    @property
    def parsed_connection(self) -> ParsedConnection:
        return parsed_connection(self.connection_string)

    @property
    def where(self) -> str:
        """The connection string as messages show it: secrets redacted. Every write and
        search passes it along for its messages, so each string is redacted once (~15 µs)."""
        return _redacted(self.connection_string)


@functools.lru_cache(maxsize=64)
def _redacted(connection_string: str) -> str:
    return redact_connection_string(connection_string)


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


class _Problem:
    """One pydantic error as the message shows it: where, what, and a number input."""

    def __init__(self, setting: str, text: str, number: int | float | None) -> None:
        self.setting, self.text, self.number = setting, text, number

    @classmethod
    def of(cls, error: Any) -> "_Problem":
        setting = ".".join(str(part) for part in error["loc"]) or "online_store"
        given = error.get("input")
        # Only a number out of range is shown: an unknown option may be a misplaced password.
        number = given if error["type"] in _RANGE_ERRORS and isinstance(given, (int, float)) else None
        shown = "" if number is None else f", got {number}"
        return cls(setting, f"{setting}: {error['msg']}{shown}", number)


_FACTORY = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def load_credential_provider(reference: str) -> Any:
    """Import `package.module:callable` and call it: a redis-py CredentialProvider. Errors
    name the reference and what went wrong, with secrets redacted."""
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"credential_provider {reference!r} cannot be loaded: {type(exc).__name__}: {exc}",
            setting="credential_provider",
            value=reference,
            cause=exc,
        ) from exc
    try:
        provider = target()
    except Exception as exc:  # noqa: BLE001 - a factory's own failure (no cloud credentials, ...)
        # Not chained: a factory's own error may hold a token or password (the text is redacted).
        raise ConfigError(
            f"credential_provider {reference!r} failed: {type(exc).__name__}: {redact(str(exc))}",
            setting="credential_provider",
            value=reference,
        ) from None
    if not callable(getattr(provider, "get_credentials", None)):
        raise ConfigError(
            f"credential_provider {reference!r} returned {type(provider).__name__}, not a redis-py "
            "CredentialProvider (an object with get_credentials())",
            setting="credential_provider",
            value=reference,
        )
    return provider


@lru_cache(maxsize=64)
def parsed_connection(connection_string: str) -> ParsedConnection:
    return parse(connection_string)


_logged_ignored: set[str] = set()


def _log_ignored_once(name: str, why: str) -> None:
    if name not in _logged_ignored:
        _logged_ignored.add(name)
        logger.info("online_store option %s (from Feast's built-in Redis store) has no effect here: %s", name, why)
