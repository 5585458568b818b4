"""The online_store block without servers: validation at load time (connection strings in
both forms, TTL names, options), secrets never shown, the clients built for each
redis_type, and the `hash_tag` key layout."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from redis._parsers.commands import RequestPolicy

from feast_redis_hexpire import clients
from feast_redis_hexpire.clients import (
    AsyncStoreRetry,
    FollowingSentinelPool,
    StoreRetry,
    _KeyedScripts,
    _Settings,
    build_async_client,
    build_sync_client,
)
from feast_redis_hexpire.config import FieldNaming, HashTag, RedisHexpireOnlineStoreConfig, RedisType
from feast_redis_hexpire.connection_string import parse
from feast_redis_hexpire.errors import ConfigError, InvalidConnectionString
from feast_redis_hexpire.keys import (
    entity_redis_key,
    join_key_names,
    project_prefix,
    project_prefixes,
    project_scan_pattern,
)
from feast_redis_hexpire.redaction import redact


def config(connection_string: str, **kwargs) -> RedisHexpireOnlineStoreConfig:
    return RedisHexpireOnlineStoreConfig(connection_string=connection_string, **kwargs)


# ---------------------------------------------------------------- connection strings


def test_feast_format_nodes_and_typed_params():
    parsed = parse(
        "10.0.0.1:7000, 10.0.0.2:7001,ssl=true,db=0,socket_timeout=2,health_check_interval=30,"
        "ssl_ca_certs=/etc/ca/1,ssl_cert_reqs=none,password=p=w:1,username=feast"
    )
    assert parsed.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert parsed.params == {
        "ssl": True,
        "db": 0,
        "socket_timeout": 2.0,
        "health_check_interval": 30.0,
        "ssl_ca_certs": "/etc/ca/1",  # a path stays text even when it looks like a number
        "ssl_cert_reqs": "none",
        "password": "p=w:1",
        "username": "feast",
    }


def test_url_forms_carry_tls_options_and_credentials():
    parsed = parse(
        "rediss://feast:s3cret@cache.internal:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem"
        "&ssl_keyfile=/k.pem&socket_timeout=3"
    )
    params = parsed.params
    assert parsed.nodes == (("cache.internal", 6380),)
    assert params["ssl"] is True and params["username"] == "feast" and params["password"] == "s3cret"
    assert (params["ssl_ca_certs"], params["ssl_certfile"], params["ssl_keyfile"]) == ("/ca.pem", "/c.pem", "/k.pem")
    assert params["socket_timeout"] == 3.0


def test_unix_socket_url():
    parsed = parse("unix://:pw@/run/redis/redis.sock?db=3")
    assert parsed.nodes == () and parsed.unix_socket_path == "/run/redis/redis.sock"
    assert parsed.params["password"] == "pw" and parsed.params["db"] == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("ssl=true,password=x", "names no host"),
        ("h:notaport", "not host:port"),
        ("h:70000", "not host:port"),
        ("h:1,socket_timeout=soon", "socket_timeout='soon' is not a number"),
        ("http://h:1", "unsupported scheme 'http'"),
        ("", "empty"),
    ],
)
def test_malformed_connection_strings_fail_at_validation(text, message):
    """A bad string fails when Feast loads the config (`feast apply` reports it), not on the
    first read of a serving process."""
    with pytest.raises(ConfigError, match=message):
        config(text)
    with pytest.raises(InvalidConnectionString, match=message):
        parse(text)


def test_store_params_are_consumed_and_sentinels_inherit_tls():
    settings = _Settings.of(
        config(
            "s1:26379,s2:26379,password=data-pw,sentinel_username=sentinel,sentinel_password=sentinel-pw,"
            "ssl=true,ssl_ca_certs=/ca.pem,socket_timeout=1",
            redis_type="redis_sentinel",
        )
    )
    assert settings.kwargs == {
        "password": "data-pw",
        "ssl": True,
        "ssl_ca_certs": "/ca.pem",
        "socket_timeout": 1.0,
        "socket_connect_timeout": 1.0,
    }
    assert settings.sentinel_kwargs == {
        "ssl": True,
        "ssl_ca_certs": "/ca.pem",
        "socket_timeout": 1.0,
        "socket_connect_timeout": 1.0,
        "username": "sentinel",
        "password": "sentinel-pw",
    }


def test_default_timeouts_unless_the_connection_string_sets_them():
    """A hung server surfaces as an error: there is always a connect and a socket timeout."""
    assert _Settings.of(config("h:1")).kwargs == {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    own = _Settings.of(config("h:1,socket_timeout=5,socket_connect_timeout=0.5")).kwargs
    assert own == {"socket_timeout": 5.0, "socket_connect_timeout": 0.5}


def test_cluster_options():
    settings = _Settings.of(config("n1:7000,skip_full_coverage_check=true,db=0", redis_type="redis_cluster"))
    assert settings.require_full_coverage is False and "skip_full_coverage_check" not in settings.kwargs
    assert "db" not in settings.kwargs
    with pytest.raises(ConfigError, match="only database 0"):
        config("n1:7000,db=3", redis_type="redis_cluster")


@pytest.mark.parametrize(
    "text, shown",
    [
        ("h:1,password=abc,db=2", "h:1,password=***,db=2"),
        ("h:1,sentinel_password=x,password=y", "h:1,sentinel_password=***,password=***"),
        ("h:1,ssl=true,ssl_password=key-pw", "h:1,ssl=true,ssl_password=***"),
        ("rediss://feast:pw@h:1/0?ssl_ca_certs=/ca", "rediss://feast:***@h:1/0?ssl_ca_certs=/ca"),
        ("redis://:pw@h:1", "redis://:***@h:1"),
        ("unix://:pw@/run/redis.sock", "unix://:***@/run/redis.sock"),
        ("redis://h:1/0?password=pw&db=1", "redis://h:1/0?password=***&db=1"),
        ("redis://h:1?ssl_password=kp", "redis://h:1?ssl_password=***"),
        ("h:1,username=feast", "h:1,username=feast"),
        # A password may hold ':' and '=': redaction runs to the next separator, erring long.
        ("Redis at h:1,password=a:b=c refused", "Redis at h:1,password=*** refused"),
    ],
)
def test_redact(text, shown):
    assert redact(text) == shown


def test_validation_errors_never_show_the_connection_string(monkeypatch):
    """Feast expands ${VAR} before the store sees the string: a failing validation must not
    echo the expanded password (pydantic shows input values by default)."""
    monkeypatch.setenv("HEXPIRE_TEST_PW", "hunter2-secret")
    for bad in (
        "h:notaport,password=hunter2-secret",
        "redis://:hunter2-secret@h:1,bad",
        "h:1,password=hunter2-secret,db=x",
    ):
        with pytest.raises(ConfigError) as err:
            config(bad)
        assert "hunter2-secret" not in str(err.value), str(err.value)
    for other_mistake in ({"batch_ttl_seconds": -1}, {"retry_attempts": "six"}, {"no_such_option": 1}):
        with pytest.raises(ConfigError) as err:
            config("h:1,password=${HEXPIRE_TEST_PW}", **other_mistake)
        assert "hunter2-secret" not in str(err.value) and "hunter2-secret" not in repr(err.value)


def test_feast_repo_config_validation_errors_hide_the_secret_too(tmp_path, monkeypatch):
    from feast.repo_config import load_repo_config

    monkeypatch.setenv("HEXPIRE_TEST_PW", "hunter2-secret")
    (tmp_path / "feature_store.yaml").write_text(
        "project: p\nprovider: local\nregistry: data/registry.db\nentity_key_serialization_version: 3\n"
        "online_store:\n  type: feast_redis_hexpire.RedisHexpireOnlineStore\n"
        "  connection_string: 'h:nope,password=${HEXPIRE_TEST_PW}'\n"
    )
    with pytest.raises(InvalidConnectionString) as err:
        load_repo_config(tmp_path, tmp_path / "feature_store.yaml").online_store  # noqa: B018
    assert "not host:port" in str(err.value)
    assert "hunter2-secret" not in str(err.value) and "hunter2-secret" not in repr(err.value)


# ---------------------------------------------------------------- TTL names and options


def test_key_ttl_seconds_is_feasts_name_for_the_batch_ttl():
    assert config("h:1").effective_batch_ttl_seconds == 172800
    assert config("h:1", key_ttl_seconds=600).effective_batch_ttl_seconds == 600
    assert config("h:1", key_ttl_seconds=600, batch_ttl_seconds=600).effective_batch_ttl_seconds == 600
    with pytest.raises(ConfigError, match=r"key_ttl_seconds \(600\) and batch_ttl_seconds \(900\) disagree"):
        config("h:1", key_ttl_seconds=600, batch_ttl_seconds=900)


def test_key_ttl_seconds_changed_on_a_live_config_is_validated_and_used():
    live = config("h:1")
    live.key_ttl_seconds = 1
    assert live.effective_batch_ttl_seconds == 1
    explicit = config("h:1", batch_ttl_seconds=900)
    with pytest.raises(ConfigError, match="disagree"):
        explicit.key_ttl_seconds = 5


def test_defaults_and_enums():
    assert config("h:1").field_naming is FieldNaming.qualified
    assert config("h:1").max_future_seconds == 86400
    assert config("h:1").hash_tag is HashTag.none and config("h:1").redis_type is RedisType.redis
    assert config("h:1", hash_tag="project").hash_tag is HashTag.project
    for bad in ({"hash_tag": "entity"}, {"retry_attempts": -1}, {"field_naming": "short"}, {"max_future_seconds": -5}):
        with pytest.raises(ConfigError):
            config("h:1", **bad)
    with pytest.raises(ConfigError, match="read_from_replicas needs"):
        config("h:1", read_from_replicas=True)


def test_builtin_store_options_are_accepted_without_effect(caplog):
    store_config = config("h:1", skip_dedup=True, full_scan_for_deletion=False)
    assert store_config.skip_dedup is True


# ---------------------------------------------------------------- clients per redis_type


def test_standalone_clients_retry_with_backoff_sync_and_async():
    """The async client needs redis.asyncio's own Retry: given the sync one, it never retries."""
    client = build_sync_client(config("127.0.0.1:1", retry_attempts=4))
    try:
        assert isinstance(client, redis.Redis)
        assert isinstance(client.get_retry(), StoreRetry) and client.get_retry().get_retries() == 4
    finally:
        client.close()
    async_client = build_async_client(config("127.0.0.1:1", retry_attempts=4))
    assert isinstance(async_client, redis.asyncio.Redis)
    retry = async_client.get_retry()
    assert isinstance(retry, AsyncStoreRetry) and retry.get_retries() == 4


def test_sentinel_clients_use_the_failover_following_pools():
    store_config = config("127.0.0.1:1,127.0.0.1:2", redis_type="redis_sentinel", sentinel_master="cache")
    client = build_sync_client(store_config)  # no connection until the first command
    assert isinstance(client.connection_pool, FollowingSentinelPool)
    assert client.connection_pool.service_name == "cache"
    async_client = build_async_client(store_config)
    assert isinstance(async_client.connection_pool, clients.FollowingAsyncSentinelPool)


def test_cluster_pipelines_route_the_write_script_by_its_key():
    policies = _KeyedScripts().resolve("evalsha")
    assert policies.request_policy is RequestPolicy.DEFAULT_KEYED
    assert _KeyedScripts().resolve("hmget") is None  # everything else: redis-py's defaults


# ---------------------------------------------------------------- hash tags


def key(project: str, value: str, hash_tag: str = "none") -> bytes:
    entity = EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=value)])
    return entity_redis_key(project_prefix("fs", project, hash_tag), entity)


def test_project_hash_tag_layout():
    assert key("fraud", "u1") == b"fs:fraud:user_id=u1"
    assert key("fraud", "u1", "project") == b"fs:{fraud}:user_id=u1"
    assert key("fraud", "u1", HashTag.project) == b"fs:{fraud}:user_id=u1"
    # Braces in values and project names are escaped: the only tag is the one we add.
    assert key("fraud", "{u1}", "project") == b"fs:{fraud}:user_id=%7Bu1%7D"
    assert key("{fraud}", "u1") == b"fs:%7Bfraud%7D:user_id=u1"
    assert key("{fraud}", "u1") != key("fraud", "u1", "project")


def test_both_layouts_are_found_by_maintenance():
    assert project_prefixes("fs", "fraud") == ("fs:fraud:", "fs:{fraud}:")
    assert project_scan_pattern("fs", "fraud", hash_tag="project") == "fs:{fraud}:*"
    assert project_scan_pattern("fs", "fraud", ["user_id"], hash_tag="project") == "fs:{fraud}:user_id=*"
    assert join_key_names(b"fs:{fraud}:merchant=m:user_id=u1", "fs", "fraud") == ("merchant", "user_id")
    assert join_key_names(b"fs:fraud:user_id=u1", "fs", "fraud") == ("user_id",)
