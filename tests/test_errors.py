"""Errors carry their facts (issue 19, item 5; issue 24, item 4): the store's errors keep
the view, key, feature, value, setting and cause their message names as attributes, in
every family (write, read, config, view, codec, server); `cause` is always `__cause__`;
and an error Feast rebuilds from its detail still has them (None)."""

from __future__ import annotations

import uuid

import pytest
import redis
from feast import FeatureStore, Field
from feast.errors import FeastError
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Int64, String
from feast.value_type import ValueType

from feast_redis_hexpire import RedisHexpireOnlineStore
from feast_redis_hexpire.codec import codec_for, stored_event_micros
from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig
from feast_redis_hexpire.errors import (
    ConfigError,
    CorruptStoredValue,
    FieldConflictError,
    HexpireError,
    InvalidConnectionString,
    InvalidEntityKey,
    InvalidFeatureValue,
    InvalidViewConfig,
    RedisPermissionError,
    ServerCheckError,
    UnknownFeature,
    UnsupportedServer,
    WriteFailed,
)
from feast_redis_hexpire.redis_version import hello_info
from feast_redis_hexpire.server_checks import choose_field_expiry, hello_reply_info
from feast_redis_hexpire.store import layout_of
from feast_redis_hexpire.views import check_field_conflicts
from tests.support.store import USER, batch_view, now, repo_config, row, user_key


@pytest.fixture
def config(redis_server, unique_project, tmp_path):
    return repo_config(redis_server.connection_string, unique_project, tmp_path, field_naming="plain")


def test_a_value_of_the_wrong_type_names_view_feature_and_value(config):
    with pytest.raises(InvalidFeatureValue) as err:
        RedisHexpireOnlineStore().online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d="x7")], None)
    assert (err.value.view, err.value.feature, err.value.value) == ("user_profile", "tx_count_7d", "x7")
    assert "'user_profile'" in str(err.value) and "'tx_count_7d'" in str(err.value) and "x7" in str(err.value)
    assert err.value.http_status_code() == 422


def test_an_unknown_feature_and_a_bad_entity_key_name_what_they_concern(config):
    store = RedisHexpireOnlineStore()
    with pytest.raises(UnknownFeature) as unknown:
        store.online_write_batch(config, batch_view(), [row("u1", now(), nope=1)], None)
    assert (unknown.value.view, unknown.value.feature) == ("user_profile", "nope")
    assert unknown.value.key == f"fs:{config.project}:user_id=u1"
    entity, values, ts, created = row("u1", now(), tx_count_7d=1)
    entity.entity_values[0].Clear()
    with pytest.raises(InvalidEntityKey) as bad_key:
        store.online_write_batch(config, batch_view(), [(entity, values, ts, created)], None)
    assert (bad_key.value.view, bad_key.value.feature) == ("user_profile", "user_id")


def test_a_write_redis_refused_chains_redis_pys_error(config, redis_client):
    key = f"fs:{config.project}:user_id=u1"
    redis_client.set(key, "a string, not a hash")
    with pytest.raises(WriteFailed) as err:
        RedisHexpireOnlineStore().online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=1)], None)
    assert isinstance(err.value.__cause__, redis.ResponseError)
    assert err.value.cause is err.value.__cause__
    assert "WRONGTYPE" in str(err.value.cause) and "WRONGTYPE" in str(err.value)
    assert (err.value.view, err.value.key) == ("user_profile", key)


def test_an_error_feast_rebuilds_from_its_detail_keeps_its_class_and_attributes():
    error = InvalidFeatureValue("view 'v', feature 'f': bad", view="v", feature="f", value=1)
    rebuilt = FeastError.from_error_detail(error.to_error_detail())
    assert isinstance(rebuilt, InvalidFeatureValue) and str(rebuilt) == str(error)
    assert rebuilt.view is None and rebuilt.cause is None  # Feast sends the message only
    assert isinstance(error, (HexpireError, ValueError))


# ---------------------------------------------------------------- read


@pytest.fixture
def applied(config):
    fs = FeatureStore(config=config)
    fs.apply([USER, batch_view()])
    return fs


def test_a_read_of_an_unknown_feature_names_view_feature_and_the_reference(applied, config):
    with pytest.raises(UnknownFeature) as through_feast:
        applied.get_online_features(["user_profile:nope"], [{"user_id": "u1"}])
    facts = (through_feast.value.view, through_feast.value.feature, through_feast.value.value)
    assert facts == ("user_profile", "nope", "user_profile:nope")
    with pytest.raises(UnknownFeature) as per_view:  # Feast's per-view online_read
        RedisHexpireOnlineStore().online_read(config, batch_view(), [user_key("u1")], ["tx_count_7d", "nope"])
    assert (per_view.value.view, per_view.value.feature) == ("user_profile", "nope")


def test_a_read_keeps_the_entity_keys_facts_with_its_view(config):
    null_value = EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto()])
    with pytest.raises(InvalidEntityKey) as null:
        RedisHexpireOnlineStore().online_read(config, batch_view(), [null_value], None)
    assert (null.value.view, null.value.feature) == ("user_profile", "user_id")
    unsupported = EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(double_val=1.5)])
    with pytest.raises(InvalidEntityKey) as wrong_type:
        RedisHexpireOnlineStore().online_read(config, batch_view(), [unsupported], None)
    assert (wrong_type.value.view, wrong_type.value.feature, wrong_type.value.value) == ("user_profile", "user_id", 1.5)
    other = EntityKeyProto(join_keys=["device_id"], entity_values=[ValueProto(string_val="d1")])
    with pytest.raises(InvalidEntityKey) as wrong_key:
        RedisHexpireOnlineStore().online_read(config, batch_view(), [other], None)
    assert (wrong_key.value.view, wrong_key.value.feature, wrong_key.value.value) == (
        "user_profile",
        "user_id",
        ["device_id"],
    )


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "options, setting, value",
    [
        ({"retry_attempts": -1}, "retry_attempts", -1),
        ({"batch_ttl_seconds": -5}, "batch_ttl_seconds", -5),
        ({"write_chunk_size": 0}, "write_chunk_size", 0),
        ({"key_prefix": "a:b"}, "key_prefix", "a:b"),
        ({"key_ttl_seconds": 600, "batch_ttl_seconds": 900}, "key_ttl_seconds", 600),
        ({"read_from_replicas": True}, "read_from_replicas", True),
        ({"credential_provider": "not a reference"}, "credential_provider", "not a reference"),
    ],
)
def test_a_config_error_names_the_setting_and_its_value(options, setting, value):
    with pytest.raises(ConfigError) as err:
        RedisHexpireOnlineStoreConfig(connection_string="h:1,password=hunter2-secret", **options)
    assert (err.value.setting, err.value.value) == (setting, value)
    assert setting in str(err.value)
    assert isinstance(value, bool) or str(value) in str(err.value)
    assert "hunter2-secret" not in str(err.value) and err.value.http_status_code() == 500


def test_a_bad_connection_string_names_the_setting_but_keeps_no_value():
    with pytest.raises(InvalidConnectionString) as err:
        RedisHexpireOnlineStoreConfig(connection_string="h:notaport,password=hunter2-secret")
    assert err.value.setting == "connection_string" and err.value.value is None
    assert "hunter2-secret" not in repr(vars(err.value))
    with pytest.raises(ConfigError) as unknown:  # an unknown option may be a misplaced secret
        RedisHexpireOnlineStoreConfig(connection_string="h:1", password=123456)
    assert unknown.value.setting == "password" and unknown.value.value is None
    assert "123456" not in str(unknown.value)


def test_a_credential_provider_that_cannot_be_imported_chains_the_import_error():
    from feast_redis_hexpire.config import load_credential_provider

    with pytest.raises(ConfigError) as err:
        load_credential_provider("no_such_module_xyz:factory")
    assert (err.value.setting, err.value.value) == ("credential_provider", "no_such_module_xyz:factory")
    assert isinstance(err.value.cause, ImportError) and err.value.__cause__ is err.value.cause


# ---------------------------------------------------------------- view


@pytest.mark.parametrize(
    "tags, setting, value",
    [
        ({"hexpire.kind": "sometimes"}, "hexpire.kind", "sometimes"),
        ({"hexpire.ttl_seconds": "-3"}, "hexpire.ttl_seconds", "-3"),
        ({"hexpire.ttl_seconds": "soon"}, "hexpire.ttl_seconds", "soon"),
    ],
)
def test_a_view_tag_error_names_view_tag_and_value(config, tags, setting, value):
    with pytest.raises(InvalidViewConfig) as err:
        layout_of(batch_view(tags=tags), config)
    assert (err.value.view, err.value.setting, err.value.value) == ("user_profile", setting, value)
    assert err.value.feature is None


def test_a_reserved_feature_name_names_view_and_feature(config):
    view = batch_view(schema=[Field(name="_ts:sneaky", dtype=Int64)])
    with pytest.raises(InvalidViewConfig) as err:
        layout_of(view, config)
    assert (err.value.view, err.value.feature) == ("user_profile", "_ts:sneaky")


def test_a_field_conflict_lists_every_clash(config):
    first = batch_view("a_view", schema=[Field(name="score", dtype=Int64), Field(name="tier", dtype=String)])
    second = batch_view("b_view", schema=[Field(name="score", dtype=Int64), Field(name="tier", dtype=String)])
    with pytest.raises(FieldConflictError) as err:
        check_field_conflicts([layout_of(first, config), layout_of(second, config)])
    assert err.value.clashes == {"score": ["a_view", "b_view"], "tier": ["a_view", "b_view"]}
    assert (err.value.view, err.value.feature, err.value.setting) == ("a_view", "score", "field_naming")


# ---------------------------------------------------------------- codec


def test_a_type_without_an_encoding_names_view_feature_and_type():
    with pytest.raises(InvalidViewConfig) as err:
        codec_for(ValueType.UNKNOWN, view="v", feature="f")
    assert (err.value.view, err.value.feature, err.value.value) == ("v", "f", "UNKNOWN")


def test_a_corrupt_stored_value_names_view_feature_value_and_chains_the_decoders_error(config, redis_client):
    key = f"fs:{config.project}:user_id=u1"
    RedisHexpireOnlineStore().online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=1)], None)
    redis_client.hset(key, "tx_count_7d", b"not-a-number")
    with pytest.raises(CorruptStoredValue) as err:
        RedisHexpireOnlineStore().online_read(config, batch_view(), [user_key("u1")], None)
    assert (err.value.view, err.value.feature, err.value.value) == ("user_profile", "tx_count_7d", b"not-a-number")
    assert err.value.cause is not None and err.value.__cause__ is err.value.cause
    with pytest.raises(CorruptStoredValue) as stamp:
        stored_event_micros(b"yesterday")
    assert stamp.value.value == b"yesterday" and stamp.value.cause is stamp.value.__cause__ is None


# ---------------------------------------------------------------- server


def test_an_unsupported_server_names_server_and_version():
    old = hello_info({"server": "redis", "version": "7.2.4"})
    with pytest.raises(UnsupportedServer) as err:
        choose_field_expiry([old], "auto", "h:1")
    assert (err.value.server, err.value.version) == ("redis", "7.2.4")
    assert err.value.http_status_code() == 503


def test_hsetex_asked_of_a_server_without_it_names_the_setting():
    redis_74 = hello_info({"server": "redis", "version": "7.4.2"})
    with pytest.raises(ServerCheckError) as err:
        choose_field_expiry([redis_74], "hsetex", "h:1")
    assert (err.value.setting, err.value.value) == ("field_expiry_commands", "hsetex")


def test_an_unreadable_hello_reply_chains_the_parse_error():
    with pytest.raises(ServerCheckError) as err:
        hello_reply_info({"server": "redis", "version": "unknown"})
    assert isinstance(err.value.cause, ValueError) and err.value.__cause__ is err.value.cause


def test_a_refused_command_chains_redis_pys_error(redis_server, redis_client, unique_project, tmp_path):
    """`.cause` is `__cause__` for permission errors (the start-up check raised `from None`
    while setting `cause=` before; a user may always run HELLO, so the write shows it)."""
    user, password = f"noscript_{uuid.uuid4().hex[:8]}", "pw-" + uuid.uuid4().hex
    redis_client.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all", "-@scripting"]
    )
    try:
        config = repo_config(
            f"{redis_server.connection_string},username={user},password={password}", unique_project, tmp_path
        )
        with pytest.raises(RedisPermissionError) as err:
            RedisHexpireOnlineStore().online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=1)], None)
    finally:
        redis_client.acl_deluser(user)
    assert isinstance(err.value.cause, redis.exceptions.NoPermissionError)
    assert err.value.__cause__ is err.value.cause
    assert err.value.view == "user_profile" and password not in str(err.value)
