"""The online store against a real Redis >= 7.4: data model, values, TTL layers,
newest-wins, grouped reads, async, lifecycle and bad input (issue: core store)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from feast import FeatureStore, Field
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Bool, Bytes, Float32, Float64, Int32, Int64, String, UnixTimestamp

from devsupport.net import wait_until
from devsupport.redis_server import LocalRedisServer
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.codec import encode_event_ts, event_ts_micros
from feast_redis_hexpire.errors import (
    FieldConflictError,
    FieldExpiryError,
    InvalidInput,
    InvalidViewConfig,
    ServerCheckError,
)
from feast_redis_hexpire.redis_version import FieldExpiry
from feast_redis_hexpire.writes import script_calls, tally
from tests.support.faults import DroppingProxy
from tests.support.store import (
    USER,
    batch_view,
    command_calls,
    generic_online_features,
    now,
    old_redis_server_binary,
    plain,
    repo_config,
    row,
    seconds_ago,
    stream_view,
    to_proto,
    user_key,
)

pytestmark = pytest.mark.both_servers  # Redis 8 and Valkey 9


@pytest.fixture
def make_config(redis_server, unique_project, tmp_path):
    """These tests read hash fields by feature name, so they ask for `field_naming: plain`;
    the qualified default is specified in test_naming.py."""

    def make(**store):
        store.setdefault("field_naming", "plain")
        return repo_config(redis_server.connection_string, unique_project, tmp_path, **store)

    return make


@pytest.fixture
def store() -> RedisHexpireOnlineStore:
    return RedisHexpireOnlineStore()


def key_of(config, user_id: str) -> bytes:
    return f"fs:{config.project}:user_id={user_id}".encode()


# ---------------------------------------------------------------- 1. data model


def test_flat_readable_hash_per_entity(store, make_config, redis_client):
    config = make_config()
    view = batch_view()
    ts = now()
    store.online_write_batch(config, view, [row("u0001", ts, risk_segment="low", tx_count_7d=14)], None)

    key = key_of(config, "u0001")
    assert redis_client.hgetall(key) == {
        b"risk_segment": b"low",
        b"tx_count_7d": b"14",
        b"_ts:user_profile": encode_event_ts(ts),  # epoch microseconds, an integer in the listpack
    }
    assert redis_client.hmget(key, "risk_segment", "tx_count_7d") == [b"low", b"14"]


def test_composite_and_int_keys_sorted_and_escaped(store, make_config, redis_client):
    from feast import Entity
    from feast.value_type import ValueType

    config = make_config()
    merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64)
    view = batch_view("pair", entities=[USER, merchant])
    entity = EntityKeyProto(
        join_keys=["user_id", "merchant_id"],
        entity_values=[ValueProto(string_val="a:b=c"), ValueProto(int64_val=42)],
    )
    store.online_write_batch(config, view, [(entity, {"tx_count_7d": to_proto(1)}, now(), None)], None)
    assert redis_client.exists(f"fs:{config.project}:merchant_id=42:user_id=a%3Ab%3Dc".encode())

    # (a="x:b=y", b="z") and (a="x", b="y:b=z") join naively to the same "a=x:b=y:b=z".
    first = Entity(name="first", join_keys=["a"], value_type=ValueType.STRING)
    second = Entity(name="second", join_keys=["b"], value_type=ValueType.STRING)
    two = batch_view("two", entities=[first, second])
    for a, b, count in (("x:b=y", "z", 1), ("x", "y:b=z", 2)):
        ek = EntityKeyProto(join_keys=["a", "b"], entity_values=[ValueProto(string_val=a), ValueProto(string_val=b)])
        store.online_write_batch(config, two, [(ek, {"tx_count_7d": to_proto(count)}, now(), None)], None)
    keys = sorted(k for k in redis_client.scan_iter(match=f"fs:{config.project}:a=*".encode()))
    assert keys == [f"fs:{config.project}:a=x%3Ab%3Dy:b=z".encode(), f"fs:{config.project}:a=x:b=y%3Ab%3Dz".encode()]
    assert sorted(redis_client.hget(k, "tx_count_7d") for k in keys) == [b"1", b"2"]


def test_apply_rejects_two_views_writing_one_field(store, make_config):
    config = make_config()
    profile = batch_view("user_profile")
    clash = batch_view("user_profile_v2", schema=[Field(name="risk_segment", dtype=String)])
    with pytest.raises(FieldConflictError) as err:
        store.update(config, [], [profile, clash], [], [USER], partial=False)
    message = str(err.value)
    assert "risk_segment" in message and "user_profile" in message and "user_profile_v2" in message
    assert "field_naming: qualified" in message


def test_qualified_naming_lets_shared_feature_names_coexist(store, make_config, redis_client):
    config = make_config(field_naming="qualified")
    profile = batch_view("user_profile")
    clash = batch_view("user_profile_v2", schema=[Field(name="risk_segment", dtype=String)])
    store.update(config, [], [profile, clash], [], [USER], partial=False)
    store.online_write_batch(config, profile, [row("u1", now(), risk_segment="low", tx_count_7d=1)], None)
    store.online_write_batch(config, clash, [row("u1", now(), risk_segment="high")], None)
    stored = redis_client.hgetall(key_of(config, "u1"))
    assert stored[b"user_profile:risk_segment"] == b"low"
    assert stored[b"user_profile_v2:risk_segment"] == b"high"
    [(_, values)] = store.online_read(config, profile, [user_key("u1")], ["risk_segment"])
    assert plain(values) == {"risk_segment": "low"}


def test_reserved_field_prefix_and_bad_tags_rejected(store, make_config):
    config = make_config()
    with pytest.raises(InvalidViewConfig, match="_ts:"):
        store.update(config, [], [batch_view(schema=[Field(name="_ts:x", dtype=Int64)])], [], [USER], partial=False)
    with pytest.raises(InvalidViewConfig, match="hexpire.ttl_seconds"):
        store.update(config, [], [batch_view(tags={"hexpire.ttl_seconds": "soon"})], [], [USER], partial=False)
    with pytest.raises(InvalidViewConfig, match="hexpire.kind"):
        store.update(config, [], [batch_view(tags={"hexpire.kind": "realtime"})], [], [USER], partial=False)


# ---------------------------------------------------------------- 2. values


ALL_TYPES = [
    (Field(name="f_int32", dtype=Int32), ValueProto(int32_val=-(2**31))),
    (Field(name="f_int64", dtype=Int64), ValueProto(int64_val=2**63 - 1)),
    (Field(name="f_float", dtype=Float32), ValueProto(float_val=0.1)),
    (Field(name="f_double", dtype=Float64), ValueProto(double_val=float("nan"))),
    (Field(name="f_double_inf", dtype=Float64), ValueProto(double_val=float("-inf"))),
    (Field(name="f_bool", dtype=Bool), ValueProto(bool_val=False)),
    (Field(name="f_string", dtype=String), ValueProto(string_val="héllo: wörld")),
    (Field(name="f_bytes", dtype=Bytes), ValueProto(bytes_val=b"\x00\xff:=")),
    (Field(name="f_ts", dtype=UnixTimestamp), ValueProto(unix_timestamp_val=1764091200)),
    (Field(name="f_int32_list", dtype=Array(Int32)), ValueProto(int32_list_val={"val": [1, -2]})),
    (Field(name="f_int64_list", dtype=Array(Int64)), ValueProto(int64_list_val={"val": []})),
    (Field(name="f_float_list", dtype=Array(Float32)), ValueProto(float_list_val={"val": [0.5, float("inf")]})),
    (Field(name="f_double_list", dtype=Array(Float64)), ValueProto(double_list_val={"val": [0.1, float("nan")]})),
    (Field(name="f_bool_list", dtype=Array(Bool)), ValueProto(bool_list_val={"val": [True, False]})),
    (Field(name="f_string_list", dtype=Array(String)), ValueProto(string_list_val={"val": ["a", "ß", ""]})),
    (Field(name="f_bytes_list", dtype=Array(Bytes)), ValueProto(bytes_list_val={"val": [b"\x01", b""]})),
    (Field(name="f_ts_list", dtype=Array(UnixTimestamp)), ValueProto(unix_timestamp_list_val={"val": [0, 1764091200]})),
]


def test_every_online_type_round_trips_through_redis(store, make_config, redis_client):
    config = make_config()
    view = batch_view("typed", schema=[f for f, _ in ALL_TYPES])
    values = {f.name: v for f, v in ALL_TYPES}
    store.online_write_batch(config, view, [(user_key("u1"), values, now(), None)], None)

    [(ts, read)] = store.online_read(config, view, [user_key("u1")])
    assert ts is not None
    for name, original in values.items():
        assert read[name].SerializeToString(deterministic=True) == original.SerializeToString(deterministic=True), name

    stored = redis_client.hgetall(key_of(config, "u1"))
    assert stored[b"f_int64"] == b"9223372036854775807"
    assert stored[b"f_float"] == b"0.1"
    assert stored[b"f_double"] == b"nan"
    assert stored[b"f_bool"] == b"false"
    assert stored[b"f_string"] == "héllo: wörld".encode()
    assert stored[b"f_bytes"] == b"\x00\xff:="
    assert stored[b"f_double_list"] == b"[0.1,NaN]"
    assert stored[b"f_string_list"] == '["a","ß",""]'.encode()


def test_null_deletes_the_field_in_the_same_write(store, make_config, redis_client):
    config = make_config()
    view = batch_view()
    store.online_write_batch(config, view, [row("u1", seconds_ago(10), risk_segment="low", tx_count_7d=3)], None)
    store.online_write_batch(config, view, [row("u1", now(), risk_segment=None, tx_count_7d=4)], None)
    stored = redis_client.hgetall(key_of(config, "u1"))
    assert b"risk_segment" not in stored and stored[b"tx_count_7d"] == b"4"
    [(_, read)] = store.online_read(config, view, [user_key("u1")])
    assert plain(read) == {"tx_count_7d": 4}


# ---------------------------------------------------------------- 3. batch views


def test_batch_write_sets_key_ttl_and_rematerialize_refreshes_it(store, make_config, redis_client):
    config = make_config(batch_ttl_seconds=1000)
    view = batch_view()
    rows = [row("u1", seconds_ago(60), risk_segment="low", tx_count_7d=1)]
    store.online_write_batch(config, view, rows, None)
    key = key_of(config, "u1")
    assert 990 <= redis_client.ttl(key) <= 1000
    assert redis_client.httl(key, "risk_segment") == [-1]  # no per-field TTL on batch fields

    redis_client.expire(key, 5)  # as if most of the cycle had passed
    store.online_write_batch(config, view, rows, None)  # the same rows again
    assert redis_client.ttl(key) >= 990


def test_batch_ttl_tag_overrides_and_zero_disables(store, make_config, redis_client):
    config = make_config(batch_ttl_seconds=1000)
    store.online_write_batch(
        config, batch_view("short", tags={"hexpire.ttl_seconds": "50"}), [row("u1", now(), tx_count_7d=1)], None
    )
    assert 45 <= redis_client.ttl(key_of(config, "u1")) <= 50
    store.online_write_batch(make_config(batch_ttl_seconds=0), batch_view(), [row("u2", now(), tx_count_7d=1)], None)
    assert redis_client.ttl(key_of(config, "u2")) == -1


# ---------------------------------------------------------------- 4. stream views


def test_stream_write_sets_field_ttl_on_exactly_the_written_fields(store, make_config, redis_client):
    config = make_config(stream_ttl_seconds=300)
    store.online_write_batch(config, batch_view(), [row("u1", now(), risk_segment="low", tx_count_7d=1)], None)
    store.online_write_batch(config, stream_view(), [row("u1", now(), tx_count_5m=3, last_amount=None)], None)
    key = key_of(config, "u1")
    ttls = redis_client.httl(key, "tx_count_5m", "_ts:user_activity", "risk_segment", "tx_count_7d", "last_amount")
    assert 295 <= ttls[0] <= 300 and 295 <= ttls[1] <= 300
    assert ttls[2:4] == [-1, -1]  # batch fields untouched
    assert ttls[4] == -2  # null: not stored at all


def test_stream_expiry_is_anchored_at_event_time(store, make_config, redis_client):
    config = make_config(stream_ttl_seconds=300)
    store.online_write_batch(config, stream_view(), [row("u1", seconds_ago(100), tx_count_5m=3)], None)
    [ttl] = redis_client.httl(key_of(config, "u1"), "tx_count_5m")
    assert 195 <= ttl <= 200
    # A future event time (within max_future_seconds) does not buy a longer life than `now + ttl`.
    store.online_write_batch(config, stream_view(), [row("u2", now() + timedelta(seconds=200), tx_count_5m=3)], None)
    [ttl] = redis_client.httl(key_of(config, "u2"), "tx_count_5m")
    assert 295 <= ttl <= 300


def test_rows_already_past_expiry_are_skipped_and_counted(store, make_config, redis_client):
    config = make_config(stream_ttl_seconds=60)
    rows = [row("u1", seconds_ago(120), tx_count_5m=1), row("u2", seconds_ago(5), tx_count_5m=2)]
    store.online_write_batch(config, stream_view(), rows, None)
    assert not redis_client.exists(key_of(config, "u1"))
    assert redis_client.hget(key_of(config, "u2"), "tx_count_5m") == b"2"
    assert (store.last_write_report.written, store.last_write_report.expired) == (1, 1)
    assert store.stats.rows_skipped_expired == 1


def test_stream_tag_on_a_plain_view_and_ttl_override(store, make_config, redis_client):
    config = make_config(stream_ttl_seconds=300)
    view = batch_view("tagged", tags={"hexpire.kind": "stream", "hexpire.ttl_seconds": "30"})
    store.online_write_batch(config, view, [row("u1", now(), tx_count_7d=1)], None)
    [ttl] = redis_client.httl(key_of(config, "u1"), "tx_count_7d")
    assert 25 <= ttl <= 30
    assert redis_client.ttl(key_of(config, "u1")) == -1


def server_ms(client) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def read_by_the_clock(client, read, expires_at_ms: int, alive, gone):
    """``read()``, checked against the server's clock rather than this test's speed: before
    ``expires_at_ms`` (by the server's TIME on both sides of the read) it must give
    ``alive``, after it ``gone``; a read that straddles the moment may give either. On a
    loaded machine a write and the next read can be seconds apart."""
    before = server_ms(client)
    got = read()
    after = server_ms(client)
    if after < expires_at_ms:
        assert got == alive
    elif before > expires_at_ms:  # Redis expires once its clock is past the time, not at it
        assert got == gone
    else:
        assert got in (alive, gone)


def wait_for_server_time(client, at_ms: int) -> None:
    """Until the server's clock is past `at_ms`: a key or field whose expiry time equals the
    clock is still alive to Redis (it expires once now > when)."""
    wait_until(lambda: server_ms(client) > at_ms, timeout=60, what=f"server time past {at_ms}")


def test_short_ttls_stream_fields_vanish_then_the_entity(store, make_config, redis_client):
    config = make_config(stream_ttl_seconds=1, batch_ttl_seconds=3)
    batch, stream = batch_view(), stream_view()
    key = key_of(config, "u1")
    for _ in range(10):  # a loaded machine may take the 1 s TTL between stamping and writing
        event = now()
        store.online_write_batch(config, batch, [row("u1", event, risk_segment="low", tx_count_7d=5)], None)
        store.online_write_batch(config, stream, [row("u1", event, tx_count_5m=3, last_amount=9.5)], None)
        if store.last_write_report.written == 1:
            break
    assert store.last_write_report.written == 1
    # When each goes is what Redis holds: the stream fields at event time + 1 s, the key
    # (batch TTL, from the write) later.
    stream_expiry = redis_client.hpexpiretime(key, "tx_count_5m", "last_amount", "_ts:user_activity")
    assert stream_expiry == [event_ts_micros(event) // 1000 + 1000] * 3
    key_expiry = redis_client.pexpiretime(key)
    assert key_expiry > stream_expiry[0]

    def stream_read():
        return [(ts, plain(values)) for ts, values in store.online_read(config, stream, [user_key("u1")])]

    def batch_read():
        return [plain(values) for _, values in store.online_read(config, batch, [user_key("u1")])]

    alive = stream_read()[0][0]  # the event time as read back, if still there
    read_by_the_clock(
        redis_client, stream_read, stream_expiry[0], [(alive, {"tx_count_5m": 3, "last_amount": 9.5})], [(None, None)]
    )
    wait_for_server_time(redis_client, stream_expiry[0])
    assert store.online_read(config, stream, [user_key("u1")]) == [(None, None)]
    read_by_the_clock(redis_client, batch_read, key_expiry, [{"risk_segment": "low", "tx_count_7d": 5}], [None])
    assert b"_ts:user_activity" not in redis_client.hgetall(key)

    wait_for_server_time(redis_client, key_expiry)
    assert store.online_read(config, batch, [user_key("u1")]) == [(None, None)]
    assert not redis_client.exists(key)


def test_every_expiry_reply_is_checked(store, make_config, redis_client):
    """A row the script answers with an expiry failure (a real Redis error reply inside the
    script's reply array) raises an error naming the view, key and field."""
    config = make_config()
    plan = store.plan_write(config, stream_view(), [row("u1", now(), tx_count_5m=1)])
    [call] = script_calls(plan, plan.rows, by_slot=False, expiry=FieldExpiry.hpexpireat)
    failure = "HEXPIRE_FAILED HPEXPIREAT 1 on key fs:p:user_id=u1 field tx_count_5m answered -2 (expected 1)"
    replies = redis_client.pipeline(transaction=False).eval(f"return {{ {{err='{failure}'}} }}", 0).execute()
    with pytest.raises(FieldExpiryError, match=r"'user_activity'.*fs:p:user_id=u1.*tx_count_5m.*-2"):
        tally(plan, [call], replies, "test")


# ---------------------------------------------------------------- 5. newest wins, atomic, one round trip


def test_older_write_is_skipped_equal_is_rewritten(store, make_config, redis_client):
    config = make_config()
    view = batch_view()
    newer = seconds_ago(10)
    store.online_write_batch(config, view, [row("u1", newer, risk_segment="high", tx_count_7d=9)], None)
    store.online_write_batch(config, view, [row("u1", seconds_ago(3600), risk_segment="low", tx_count_7d=1)], None)
    assert store.last_write_report.stale == 1
    assert redis_client.hget(key_of(config, "u1"), "risk_segment") == b"high"

    store.online_write_batch(config, view, [row("u1", newer, risk_segment="medium", tx_count_7d=9)], None)
    assert redis_client.hget(key_of(config, "u1"), "risk_segment") == b"medium"


def test_rows_for_one_entity_in_one_batch_keep_the_newest(store, make_config, redis_client):
    config = make_config()
    rows = [row("u1", seconds_ago(5), tx_count_7d=2), row("u1", seconds_ago(50), tx_count_7d=1)]
    store.online_write_batch(config, batch_view(), rows, None)
    assert redis_client.hget(key_of(config, "u1"), "tx_count_7d") == b"2"


def test_write_is_one_script_call_per_hundred_entities_without_a_read_round_trip(store, make_config, redis_client):
    config = make_config()
    store.online_write_batch(config, batch_view(), [row("warm", now(), tx_count_7d=0)], None)
    redis_client.config_resetstat()
    rows = [row(f"u{i}", now(), risk_segment="low", tx_count_7d=i) for i in range(250)]
    store.online_write_batch(config, batch_view(), rows, None)
    assert command_calls(redis_client, "evalsha") == 3  # 100 + 100 + 50 entities
    assert command_calls(redis_client, "hmget") == 0  # Feast's own store reads timestamps first
    assert command_calls(redis_client, "hset") == 250 and command_calls(redis_client, "pexpire") == 250


def test_script_is_reloaded_after_script_flush(store, make_config, redis_client):
    config = make_config()
    store.online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=1)], None)
    redis_client.script_flush()
    store.online_write_batch(config, batch_view(), [row("u2", now(), tx_count_7d=2)], None)
    assert redis_client.hget(key_of(config, "u2"), "tx_count_7d") == b"2"


# ---------------------------------------------------------------- 6. reads


def test_read_missing_entity_and_requested_subset(store, make_config):
    config = make_config()
    view = batch_view()
    store.online_write_batch(config, view, [row("u1", now(), risk_segment="low", tx_count_7d=2)], None)
    result = store.online_read(config, view, [user_key("u1"), user_key("nobody")], ["tx_count_7d"])
    assert plain(result[0][1]) == {"tx_count_7d": 2} and result[0][0] is not None
    assert result[1] == (None, None)


def _feature_store(config, tmp_path: Path, views) -> FeatureStore:
    fs = FeatureStore(config=config, repo_path=str(tmp_path))
    fs.apply([USER, *views])
    return fs


def test_get_online_features_reads_all_views_with_one_hmget_per_entity(make_config, redis_client, tmp_path):
    config = make_config()
    profile, stream = batch_view(), stream_view()
    extra = batch_view("user_extra", schema=[Field(name="country_iso", dtype=String)])
    fs = _feature_store(config, tmp_path, [profile, stream, extra])
    online = fs._get_provider().online_store
    users = [f"u{i}" for i in range(5)]
    online.online_write_batch(
        config, profile, [row(u, now(), risk_segment="low", tx_count_7d=i) for i, u in enumerate(users)], None
    )
    online.online_write_batch(config, stream, [row(u, now(), tx_count_5m=i) for i, u in enumerate(users)], None)
    online.online_write_batch(config, extra, [row(u, now(), country_iso="DE") for u in users], None)

    refs = [
        "user_profile:tx_count_7d",
        "user_activity:tx_count_5m",
        "user_extra:country_iso",
        "user_profile:risk_segment",
    ]
    redis_client.config_resetstat()
    result = fs.get_online_features(refs, [{"user_id": u} for u in users + ["nobody"]]).to_dict()
    assert command_calls(redis_client, "hmget") == 6  # one per entity, not one per entity per view
    assert result["tx_count_7d"] == [0, 1, 2, 3, 4, None]
    assert result["tx_count_5m"] == [0, 1, 2, 3, 4, None]
    assert result["country_iso"] == ["DE"] * 5 + [None]

    # The per-view fallback (no grouped hook) gives the same answer.
    from feast.infra.online_stores.online_store import OnlineStore

    redis_client.config_resetstat()
    original = online._read_features_per_fv
    online._read_features_per_fv = lambda *a, **k: OnlineStore._read_features_per_fv(online, *a, **k)
    try:
        fallback = generic_online_features(fs, refs, [{"user_id": u} for u in users + ["nobody"]]).to_dict()
    finally:
        online._read_features_per_fv = original
    assert fallback == result
    assert command_calls(redis_client, "hmget") == 18  # 3 views x 6 entities


def test_expired_stream_field_reads_as_not_found(make_config, tmp_path, redis_client):
    config = make_config(stream_ttl_seconds=1)
    profile, stream = batch_view(), stream_view()
    fs = _feature_store(config, tmp_path, [profile, stream])
    online = fs._get_provider().online_store
    online.online_write_batch(config, profile, [row("u1", now(), risk_segment="low", tx_count_7d=1)], None)
    online.online_write_batch(config, stream, [row("u1", now(), tx_count_5m=3)], None)
    [expiry] = redis_client.hpexpiretime(key_of(config, "u1"), "tx_count_5m")
    refs = ["user_profile:risk_segment", "user_activity:tx_count_5m"]

    def read():
        return fs.get_online_features(refs, [{"user_id": "u1"}]).to_dict()["tx_count_5m"]

    read_by_the_clock(redis_client, read, expiry, [3], [None])
    wait_for_server_time(redis_client, expiry)
    response = fs.get_online_features(refs, [{"user_id": "u1"}])
    assert response.to_dict()["tx_count_5m"] == [None]
    assert response.to_dict()["risk_segment"] == ["low"]
    statuses = {
        name: vec.statuses[0] for name, vec in zip(response.proto.metadata.feature_names.val, response.proto.results)
    }
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    assert statuses["tx_count_5m"] == FieldStatus.NOT_FOUND
    assert statuses["risk_segment"] == FieldStatus.PRESENT


# ---------------------------------------------------------------- 7. async


def test_async_write_and_read_match_sync(store, make_config, tmp_path):
    config = make_config()
    view = batch_view()
    rows = [row(f"u{i}", now(), risk_segment="low", tx_count_7d=i) for i in range(20)]
    keys = [user_key(f"u{i}") for i in range(21)]

    async def go():
        await store.online_write_batch_async(config, view, rows, None)
        return await store.online_read_async(config, view, keys)

    async_result = asyncio.run(go())
    sync_result = store.online_read(config, view, keys)
    assert [(ts, plain(v)) for ts, v in async_result] == [(ts, plain(v)) for ts, v in sync_result]
    assert plain(sync_result[7][1]) == {"risk_segment": "low", "tx_count_7d": 7}
    assert store.async_supported.read and store.async_supported.write

    fs = _feature_store(config, tmp_path, [view])
    refs = ["user_profile:tx_count_7d"]
    entity_rows = [{"user_id": f"u{i}"} for i in range(21)]
    assert (
        asyncio.run(fs.get_online_features_async(refs, entity_rows)).to_dict()
        == fs.get_online_features(refs, entity_rows).to_dict()
    )


# ---------------------------------------------------------------- 8. lifecycle


def test_update_refuses_redis_older_than_7_4(tmp_path, unique_project):
    binary = old_redis_server_binary()
    with LocalRedisServer(binary=binary) as old:
        config = repo_config(old.connection_string, unique_project, tmp_path)
        with pytest.raises(ServerCheckError) as err:
            RedisHexpireOnlineStore().update(config, [], [batch_view()], [], [USER], partial=False)
    message = str(err.value)
    assert "7.4" in message and "7.0.15" in message and "HEXPIRE" in message


def test_update_removes_deleted_view_fields_only(store, make_config, redis_client):
    config = make_config()
    profile, stream = batch_view(), stream_view()
    moved = batch_view("user_moved", schema=[Field(name="last_amount", dtype=Float64)])
    store.online_write_batch(
        config, profile, [row(f"u{i}", now(), risk_segment="low", tx_count_7d=i) for i in range(3)], None
    )
    store.online_write_batch(
        config, stream, [row(f"u{i}", now(), tx_count_5m=i, last_amount=1.5) for i in range(3)], None
    )
    other = repo_config(
        config.online_store.connection_string, config.project + "_other", Path("/tmp"), field_naming="plain"
    )
    store.online_write_batch(other, stream, [row("u0", now(), tx_count_5m=7)], None)

    # user_activity is deleted; its `last_amount` now belongs to user_moved and must stay.
    store.update(config, [stream], [profile, moved], [], [USER], partial=False)
    for i in range(3):
        stored = redis_client.hgetall(key_of(config, f"u{i}"))
        assert b"tx_count_5m" not in stored and b"_ts:user_activity" not in stored
        assert stored[b"risk_segment"] == b"low" and stored[b"last_amount"] == b"1.5"
    assert redis_client.hget(key_of(other, "u0"), "tx_count_5m") == b"7"


def test_teardown_unlinks_project_keys_with_scan_not_keys(store, make_config, redis_client):
    config = make_config()
    other = repo_config(
        config.online_store.connection_string, config.project + "_other", Path("/tmp"), field_naming="plain"
    )
    store.online_write_batch(config, batch_view(), [row(f"u{i}", now(), tx_count_7d=i) for i in range(1200)], None)
    store.online_write_batch(other, batch_view(), [row("u1", now(), tx_count_7d=1)], None)
    redis_client.config_resetstat()
    store.teardown(config, [batch_view()], [USER])
    assert list(redis_client.scan_iter(match=f"fs:{config.project}:*".encode())) == []
    assert redis_client.hget(key_of(other, "u1"), "tx_count_7d") == b"1"
    assert command_calls(redis_client, "keys") == 0
    assert command_calls(redis_client, "scan") >= 1 and command_calls(redis_client, "unlink") >= 1200


def test_connections_are_created_once_and_reused(store, make_config, redis_client):
    config = make_config()
    clients.reset_clients()  # start from no cached client, whatever ran before
    client = clients.sync_client(config.online_store)
    for i in range(20):
        store.online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=i)], None)
        store.online_read(config, batch_view(), [user_key("u1")])
    assert clients.sync_client(config.online_store) is client
    assert len(client.connection_pool._available_connections) + len(client.connection_pool._in_use_connections) == 1


def test_password_db_and_url_connection_options(tmp_path, unique_project):
    with LocalRedisServer(extra_args=["--requirepass", "s3cret"]) as server:
        for connection_string in (
            f"127.0.0.1:{server.port},password=s3cret,db=2,socket_timeout=5",
            f"redis://:s3cret@127.0.0.1:{server.port}/2",
        ):
            config = repo_config(connection_string, unique_project, tmp_path, field_naming="plain")
            store = RedisHexpireOnlineStore()
            store.online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=5)], None)
            assert plain(store.online_read(config, batch_view(), [user_key("u1")])[0][1]) == {"tx_count_7d": 5}
            raw = redis.Redis(port=server.port, password="s3cret", db=2)
            assert raw.hget(f"fs:{unique_project}:user_id=u1", "tx_count_7d") == b"5"
            raw.flushall()
        bad = repo_config(f"127.0.0.1:{server.port},password=wrong", unique_project + "x", tmp_path)
        with pytest.raises(redis.AuthenticationError):
            RedisHexpireOnlineStore().online_read(bad, batch_view(), [user_key("u1")])


# ---------------------------------------------------------------- 9. bad input


@pytest.mark.parametrize(
    "bad_row, message",
    [
        (
            lambda: row("u3", now(), tx_count_7d="fourteen"),
            r"'user_profile'.*'tx_count_7d'.*INT64.*string_val.*fourteen",
        ),
        (lambda: row("u3", now(), churn_score=0.5), r"'user_profile'.*unknown feature 'churn_score'"),
        (
            lambda: (
                EntityKeyProto(join_keys=["account_id"], entity_values=[ValueProto(string_val="a")]),
                {"tx_count_7d": to_proto(1)},
                now(),
                None,
            ),
            r"'user_profile'.*join keys.*missing \['user_id'\]",
        ),
        (
            lambda: (
                EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto()]),
                {"tx_count_7d": to_proto(1)},
                now(),
                None,
            ),
            r"'user_profile'.*join key 'user_id'.*null",
        ),
    ],
)
def test_bad_row_rejects_the_batch_and_changes_nothing(store, make_config, redis_client, bad_row, message):
    config = make_config()
    view = batch_view()
    store.online_write_batch(config, view, [row("u1", seconds_ago(60), risk_segment="low", tx_count_7d=1)], None)
    before = redis_client.hgetall(key_of(config, "u1"))
    batch = [row("u1", now(), risk_segment="high", tx_count_7d=2), row("u2", now(), tx_count_7d=3), bad_row()]
    with pytest.raises(InvalidInput, match=message):
        store.online_write_batch(config, view, batch, None)
    assert redis_client.hgetall(key_of(config, "u1")) == before
    assert not redis_client.exists(key_of(config, "u2"))


# ---------------------------------------------------------------- 10. progress


def test_progress_callback_counts_every_row_in_chunks(store, make_config):
    config = make_config(write_chunk_size=100)
    calls: list[int] = []
    store.online_write_batch(
        config, batch_view(), [row(f"u{i}", now(), tx_count_7d=i) for i in range(250)], calls.append
    )
    assert calls == [100, 100, 50]


@pytest.mark.parametrize("retry_attempts, survives", [(6, True), (0, False)])
def test_batches_survive_a_connection_dropped_mid_batch(
    redis_server, unique_project, tmp_path, redis_client, retry_attempts, survives
):
    proxy = DroppingProxy(redis_server.port)
    try:
        config = repo_config(
            f"127.0.0.1:{proxy.port}", unique_project, tmp_path, retry_attempts=retry_attempts, field_naming="plain"
        )
        store, view = RedisHexpireOnlineStore(), batch_view()
        rows = [row(f"u{i}", now(), tx_count_7d=i) for i in range(50)]
        store.online_write_batch(config, view, [row("warm", now(), tx_count_7d=0)], None)

        proxy.armed.set()
        if not survives:
            with pytest.raises(redis.ConnectionError):
                store.online_write_batch(config, view, rows, None)
            return
        store.online_write_batch(config, view, rows, None)  # applied, reply lost, sent again
        assert proxy.drops == 1
        assert [redis_client.hget(f"fs:{unique_project}:user_id=u{i}", "tx_count_7d") for i in (0, 49)] == [b"0", b"49"]

        proxy.armed.set()
        result = store.online_read(config, view, [user_key("u7"), user_key("u8")])
        assert proxy.drops == 2
        assert [plain(values) for _, values in result] == [{"tx_count_7d": 7}, {"tx_count_7d": 8}]
    finally:
        proxy.close()
        clients.reset_clients()


def test_connection_string_env_default_syntax(monkeypatch):
    from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig
    from feast_redis_hexpire.errors import ConfigError

    monkeypatch.delenv("HEXPIRE_TEST_REDIS", raising=False)
    template = "${HEXPIRE_TEST_REDIS:-localhost:6379},db=1"
    assert RedisHexpireOnlineStoreConfig(connection_string=template).connection_string == "localhost:6379,db=1"
    monkeypatch.setenv("HEXPIRE_TEST_REDIS", "10.1.2.3:7000")
    assert RedisHexpireOnlineStoreConfig(connection_string=template).connection_string == "10.1.2.3:7000,db=1"
    # What Feast's expandvars leaves behind for an unset ${VAR}: a clear error, not a DNS failure.
    with pytest.raises(ConfigError, match="HEXPIRE_UNSET_VAR.*not set"):
        RedisHexpireOnlineStoreConfig(connection_string="${HEXPIRE_UNSET_VAR}")
    # A '$' inside a password is not a variable.
    assert (
        RedisHexpireOnlineStoreConfig(connection_string="h:1,password=pa$$w").connection_string == "h:1,password=pa$$w"
    )


def test_ttl_changed_in_place_on_the_same_config_applies(store, make_config, redis_client):
    """Tools (like the demo) change the TTL on a live config object; cached layouts must follow."""
    config = make_config(batch_ttl_seconds=1000)
    view = batch_view()
    store.online_write_batch(config, view, [row("u1", now(), tx_count_7d=1)], None)
    assert 990 <= redis_client.ttl(key_of(config, "u1")) <= 1000
    config.online_store.batch_ttl_seconds = 50
    view.tags["hexpire.kind"] = "batch"
    store.online_write_batch(config, view, [row("u1", now(), tx_count_7d=2)], None)
    assert 45 <= redis_client.ttl(key_of(config, "u1")) <= 50


# ---------------------------------------------------------------- 11. event times of any width


def test_event_times_before_2001_and_before_1970_still_compare_by_time(store, make_config, redis_client):
    """The script compares 16-digit event times as text; other widths as numbers."""
    from datetime import datetime, timezone

    config = make_config(batch_ttl_seconds=0)
    view = batch_view()
    y1999 = datetime(1999, 1, 1, tzinfo=timezone.utc)
    y1969 = datetime(1969, 7, 20, tzinfo=timezone.utc)
    store.online_write_batch(config, view, [row("u1", y1999, tx_count_7d=1999)], None)
    store.online_write_batch(config, view, [row("u1", y1969, tx_count_7d=1969)], None)
    assert store.last_write_report.stale == 1
    assert redis_client.hget(key_of(config, "u1"), "tx_count_7d") == b"1999"
    store.online_write_batch(config, view, [row("u1", now(), tx_count_7d=2026)], None)
    store.online_write_batch(config, view, [row("u1", y1999, tx_count_7d=1999)], None)
    assert redis_client.hget(key_of(config, "u1"), "tx_count_7d") == b"2026"
    store.online_write_batch(config, view, [row("u2", y1969, tx_count_7d=1)], None)
    store.online_write_batch(config, view, [row("u2", datetime(1960, 1, 1, tzinfo=timezone.utc), tx_count_7d=2)], None)
    assert redis_client.hget(key_of(config, "u2"), "tx_count_7d") == b"1"
    [(ts, _)] = store.online_read(config, view, [user_key("u2")])
    assert ts == y1969
    # 1940 and 1960 are both 16 characters ("-946...", "-315..."): as text, 1940 would win.
    store.online_write_batch(config, view, [row("u3", datetime(1960, 1, 1, tzinfo=timezone.utc), tx_count_7d=60)], None)
    store.online_write_batch(config, view, [row("u3", datetime(1940, 1, 1, tzinfo=timezone.utc), tx_count_7d=40)], None)
    assert store.last_write_report.stale == 1
    assert redis_client.hget(key_of(config, "u3"), "tx_count_7d") == b"60"


def test_event_time_written_as_iso_text_by_an_earlier_version_is_replaced(store, make_config, redis_client):
    config = make_config()
    key = key_of(config, "u1")
    redis_client.hset(key, mapping={"_ts:user_profile": "2099-01-01T00:00:00.000000Z", "tx_count_7d": "1"})
    store.online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=2)], None)
    assert redis_client.hget(key, "tx_count_7d") == b"2"
    assert redis_client.hget(key, "_ts:user_profile").isdigit()


def test_rows_of_different_shapes_in_one_batch(store, make_config, redis_client):
    """Rows with and without nulls go to different script calls; each lands whole."""
    config = make_config()
    rows = [
        row("u1", now(), risk_segment="low", tx_count_7d=1),
        row("u2", now(), risk_segment=None, tx_count_7d=2),
        row("u3", now(), tx_count_7d=3),
        row("u1", seconds_ago(60), risk_segment=None, tx_count_7d=0),  # older: skipped
    ]
    store.online_write_batch(config, batch_view(), rows, None)
    assert (store.last_write_report.written, store.last_write_report.stale) == (3, 1)
    assert redis_client.hmget(key_of(config, "u1"), "risk_segment", "tx_count_7d") == [b"low", b"1"]
    assert redis_client.hmget(key_of(config, "u2"), "risk_segment", "tx_count_7d") == [None, b"2"]
    assert redis_client.hmget(key_of(config, "u3"), "risk_segment", "tx_count_7d") == [None, b"3"]


def test_event_times_far_in_the_future_are_skipped_counted_and_warned(store, make_config, redis_client, caplog):
    """One mis-dated row must not freeze a view: beyond max_future_seconds it is not stored."""
    config = make_config(max_future_seconds=60)
    view = batch_view()
    with caplog.at_level("WARNING", logger="feast_redis_hexpire"):
        store.online_write_batch(
            config,
            view,
            [
                row("u1", now() + timedelta(days=365 * 50), tx_count_7d=99),
                row("u2", now() + timedelta(seconds=30), tx_count_7d=2),
            ],
            None,
        )
    assert not redis_client.exists(key_of(config, "u1"))
    assert redis_client.hget(key_of(config, "u2"), "tx_count_7d") == b"2"  # within the bound
    assert store.last_write_report.future == 1 and store.stats.rows_skipped_future == 1
    [message] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "'user_profile'" in message and "1 dated more than 60 s ahead" in message and "max_future_seconds" in message
    store.online_write_batch(config, view, [row("u1", now(), tx_count_7d=1)], None)
    assert redis_client.hget(key_of(config, "u1"), "tx_count_7d") == b"1"  # later real rows still land
    unbounded = make_config(max_future_seconds=None)
    store.online_write_batch(unbounded, view, [row("u3", now() + timedelta(days=3650), tx_count_7d=3)], None)
    assert redis_client.hget(key_of(config, "u3"), "tx_count_7d") == b"3"
