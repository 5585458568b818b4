"""Errors carry their facts (issue 19, item 5): the store's errors keep the view, key,
feature, value and cause their message names as attributes, a write Redis refused chains
redis-py's exception, and an error Feast rebuilds from its detail still has them (None)."""

from __future__ import annotations

import pytest
import redis
from feast.errors import FeastError

from feast_redis_hexpire import RedisHexpireOnlineStore
from feast_redis_hexpire.errors import HexpireError, InvalidEntityKey, InvalidFeatureValue, UnknownFeature, WriteFailed
from tests.support.store import batch_view, now, repo_config, row


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
