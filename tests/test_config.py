"""Topology configuration without servers: connection-string parsing (Feast format and
URLs, TLS options, sentinel credentials), secret redaction, the clients built for each
redis_type, and the `hash_tag` key layout."""

from __future__ import annotations

import pytest
import redis
from pydantic import ValidationError
from redis.commands.policies import RequestPolicy

from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_redis_hexpire import connection
from feast_redis_hexpire.config import HashTag, RedisHexpireOnlineStoreConfig, RedisType
from feast_redis_hexpire.connection import (
    FollowingSentinelPool,
    _KeyedScripts,
    _Settings,
    build_async_client,
    build_sync_client,
    parse_connection_string,
    redacted,
)
from feast_redis_hexpire.keys import (
    entity_redis_key,
    join_key_names,
    project_prefix,
    project_prefixes,
    project_scan_pattern,
)


def config(connection_string: str, **kwargs) -> RedisHexpireOnlineStoreConfig:
    return RedisHexpireOnlineStoreConfig(connection_string=connection_string, **kwargs)


# ---------------------------------------------------------------- connection strings


def test_feast_format_nodes_and_typed_params():
    nodes, params, is_url = parse_connection_string(
        "10.0.0.1:7000, 10.0.0.2:7001,ssl=true,db=0,socket_timeout=2,health_check_interval=30,"
        "ssl_ca_certs=/etc/ca/1,ssl_cert_reqs=none,password=p=w:1,username=feast"
    )
    assert not is_url
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert params == {
        "ssl": True, "db": 0, "socket_timeout": 2.0, "health_check_interval": 30.0,
        "ssl_ca_certs": "/etc/ca/1",  # a path stays text even when it looks like a number
        "ssl_cert_reqs": "none", "password": "p=w:1", "username": "feast",
    }


def test_url_forms_carry_tls_options_and_credentials():
    nodes, params, is_url = parse_connection_string(
        "rediss://feast:s3cret@cache.internal:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem"
        "&ssl_keyfile=/k.pem&socket_timeout=3"
    )
    assert is_url and nodes == [("cache.internal", 6380)]
    assert params["ssl"] is True and params["username"] == "feast" and params["password"] == "s3cret"
    assert (params["ssl_ca_certs"], params["ssl_certfile"], params["ssl_keyfile"]) == ("/ca.pem", "/c.pem", "/k.pem")
    assert params["socket_timeout"] == 3.0


def test_no_host_is_an_error():
    with pytest.raises(ValueError, match="names no host"):
        parse_connection_string("ssl=true,password=x")


def test_store_params_are_consumed_and_sentinels_inherit_tls():
    settings = _Settings(config(
        "s1:26379,s2:26379,password=data-pw,sentinel_username=sentinel,sentinel_password=sentinel-pw,"
        "ssl=true,ssl_ca_certs=/ca.pem,socket_timeout=1", redis_type="redis_sentinel"))
    assert settings.kwargs == {"password": "data-pw", "ssl": True, "ssl_ca_certs": "/ca.pem", "socket_timeout": 1.0}
    assert settings.sentinel_kwargs == {
        "ssl": True, "ssl_ca_certs": "/ca.pem", "socket_timeout": 1.0,
        "username": "sentinel", "password": "sentinel-pw",
    }


def test_cluster_options():
    settings = _Settings(config("n1:7000,skip_full_coverage_check=true,db=0", redis_type="redis_cluster"))
    assert settings.require_full_coverage is False and "skip_full_coverage_check" not in settings.kwargs
    assert "db" not in settings.kwargs
    with pytest.raises(ValueError, match="only database 0"):
        _Settings(config("n1:7000,db=3", redis_type="redis_cluster"))


@pytest.mark.parametrize(
    "text, shown",
    [
        ("h:1,password=abc,db=2", "h:1,password=***,db=2"),
        ("h:1,sentinel_password=x,password=y", "h:1,sentinel_password=***,password=***"),
        ("rediss://feast:pw@h:1/0?ssl_ca_certs=/ca", "rediss://feast:***@h:1/0?ssl_ca_certs=/ca"),
        ("redis://:pw@h:1", "redis://:***@h:1"),
        ("h:1,username=feast", "h:1,username=feast"),
    ],
)
def test_redacted(text, shown):
    assert redacted(text) == shown


# ---------------------------------------------------------------- clients per redis_type


def test_standalone_client_retries_with_backoff():
    client = build_sync_client(config("127.0.0.1:1", retry_attempts=4))
    try:
        assert isinstance(client, redis.Redis)
        assert client.get_retry().get_retries() == 4
    finally:
        client.close()


def test_sentinel_clients_use_the_failover_following_pools():
    store_config = config("127.0.0.1:1,127.0.0.1:2", redis_type="redis_sentinel", sentinel_master="cache")
    client = build_sync_client(store_config)  # no connection until the first command
    assert isinstance(client.connection_pool, FollowingSentinelPool)
    assert client.connection_pool.service_name == "cache"
    async_client = build_async_client(store_config)
    assert isinstance(async_client.connection_pool, connection.FollowingAsyncSentinelPool)


def test_cluster_pipelines_route_the_write_script_by_its_key():
    policies = _KeyedScripts().resolve("evalsha")
    assert policies.request_policy is RequestPolicy.DEFAULT_KEYED
    assert _KeyedScripts().resolve("hmget") is None  # everything else: redis-py's defaults


def test_config_values():
    assert config("h:1").hash_tag is HashTag.none and config("h:1").redis_type is RedisType.redis
    assert config("h:1", hash_tag="project").hash_tag is HashTag.project
    with pytest.raises(ValidationError):
        config("h:1", hash_tag="entity")
    with pytest.raises(ValidationError):
        config("h:1", retry_attempts=-1)


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
