"""What a read may return when the data around it is not what the request expects
(issue: reliability), sync and async.

- Composite keys: a view keyed on (a, b) and a view keyed on (a) both declare `pmarker`
  (`field_naming: plain` and `qualified`): a request for the (a, b) view that gives only
  `a` is refused and never answered with the (a) view's value; a view whose `_ts:<view>`
  is absent reads as NOT_FOUND even when a field of its name is on the hash.
- Replica reads (`read_from_replicas: true`, Sentinel and Cluster): reads go to replicas,
  writes to primaries, and a stream field past its expiry reads as NOT_FOUND from a
  replica although the primary has not yet deleted it (it is paused, so its expiry never
  reaches the replica): the replica judges expiry by its own clock.
"""

from __future__ import annotations

import time

import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
from feast.types import Int64, String
from feast.value_type import ValueType

from devsupport.topologies import Cluster, SentinelGroup, admin
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.errors import InvalidEntityKey
from tests.support.store import (
    batch_view,
    command_calls,
    now,
    repo_config,
    row,
    run_async,
    stream_view,
    to_proto,
    user_key,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def fresh_clients():
    clients.reset_clients()
    yield
    clients.reset_clients()


# ---------------------------------------------------------------- composite keys

A = Entity(name="a_entity", join_keys=["a"], value_type=ValueType.STRING)
B = Entity(name="b_entity", join_keys=["b"], value_type=ValueType.STRING)
_SOURCE = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
VIEW_AB = FeatureView(
    name="view_ab",
    entities=[A, B],
    schema=[Field(name="a", dtype=String), Field(name="b", dtype=String), Field(name="pmarker", dtype=String)],
    source=_SOURCE,
)
VIEW_A = FeatureView(
    name="view_a",
    entities=[A],
    schema=[Field(name="a", dtype=String), Field(name="pmarker", dtype=String), Field(name="count", dtype=Int64)],
    source=_SOURCE,
)


def _entity_key(**join_keys: str):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey

    names = sorted(join_keys)
    return EntityKey(join_keys=names, entity_values=[to_proto(join_keys[n]) for n in names])


def _get(fs: FeatureStore, refs, rows, mode: str, **kwargs):
    if mode == "sync":
        return fs.get_online_features(refs, rows, **kwargs)

    return run_async(fs._get_provider().online_store, lambda: fs.get_online_features_async(refs, rows, **kwargs))


def _statuses(response) -> dict[str, list[str]]:
    names = response.proto.metadata.feature_names.val
    return {n: [FieldStatus.Name(s) for s in r.statuses] for n, r in zip(names, response.proto.results)}


@pytest.mark.parametrize("naming", ["plain", "qualified"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_view_on_a_b_never_answers_with_the_a_views_value(redis_server, tmp_path, unique_project, naming, mode):
    config = repo_config(redis_server.connection_string, unique_project, tmp_path, field_naming=naming)
    fs = FeatureStore(config=config, repo_path=str(tmp_path))
    fs.apply([A, B, VIEW_AB, VIEW_A])  # plain naming allows it: the views have different entities
    online = fs._get_provider().online_store
    online.online_write_batch(
        config,
        VIEW_A,
        [(_entity_key(a="1"), {"pmarker": to_proto("from view_a"), "count": to_proto(7)}, now(), None)],
        None,
    )
    online.online_write_batch(
        config, VIEW_AB, [(_entity_key(a="2", b="x"), {"pmarker": to_proto("from view_ab")}, now(), None)], None
    )

    # Only `a` given for a view keyed on (a, b): refused, naming the view and the missing key.
    for refs in (["view_ab:pmarker"], ["view_ab:pmarker", "view_a:pmarker"]):
        with pytest.raises(InvalidEntityKey, match=r"view 'view_ab' is keyed on \['a', 'b'\].*missing \['b'\]"):
            _get(fs, refs, [{"a": "1"}], mode, full_feature_names=True)
    with pytest.raises(InvalidEntityKey, match=r"join key 'b': the entity value is null"):
        _get(fs, ["view_ab:pmarker"], [{"a": "1", "b": None}], mode)

    # Both keys given: each view reads its own hash; (a=1, b=x) was never written.
    both = ["view_ab:pmarker", "view_a:pmarker"]
    response = _get(fs, both, [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}], mode, full_feature_names=True)
    assert response.to_dict()["view_ab__pmarker"] == [None, "from view_ab"]
    assert response.to_dict()["view_a__pmarker"] == ["from view_a", None]
    assert _statuses(response)["view_ab__pmarker"] == ["NOT_FOUND", "PRESENT"]

    # A field named like the view's feature, without the view's `_ts:<view>` (left by another
    # writer, a dropped view, a partial restore): NOT_FOUND, on both hashes.
    raw = redis.Redis.from_url(redis_server.url)
    stray = b"pmarker" if naming == "plain" else b"view_ab:pmarker"
    raw.hset(f"fs:{unique_project}:a=1:b=x", stray, "stray")
    raw.hset(f"fs:{unique_project}:a=3", b"pmarker" if naming == "plain" else b"view_a:pmarker", "stray")
    response = _get(fs, both, [{"a": "1", "b": "x"}, {"a": "3", "b": "x"}], mode, full_feature_names=True)
    assert response.to_dict()["view_ab__pmarker"] == [None, None]
    assert response.to_dict()["view_a__pmarker"] == ["from view_a", None]
    assert _statuses(response)["view_ab__pmarker"] == ["NOT_FOUND", "NOT_FOUND"]
    assert _statuses(response)["view_a__pmarker"] == ["PRESENT", "NOT_FOUND"]
    # The per-view read path (Feast's online_read) says the same.
    rows = online.online_read(config, VIEW_AB, [_entity_key(a="1", b="x")])
    assert rows == [(None, None)]
    raw.close()


# ---------------------------------------------------------------- replica reads after field expiry

STREAM_TTL_S = 2
USERS = [f"u{i}" for i in range(40)]


def _data_nodes(topology) -> tuple[list[int], list[int]]:
    """(primary ports, replica ports)."""
    if isinstance(topology, Cluster):
        primaries = topology.primary_ports()
        return primaries, [p for p in topology.ports if p not in primaries]
    primary = topology.primary_port()
    return [primary], [p for p in topology.data_ports() if p != primary]


def _replica_of(topology, key: bytes) -> redis.Redis:
    """A connection to the replica that holds `key`, allowed to read there."""
    if isinstance(topology, Cluster):
        client = admin(topology.replica_of(topology.port_for_key(key)))
        client.execute_command("READONLY")
        return client
    return admin(_data_nodes(topology)[1][0])


@pytest.fixture(params=["sentinel", "cluster"])
def replicated(request, tmp_path):
    if request.param == "sentinel":
        with SentinelGroup(tmp_path / "sentinel") as group:
            group.start()
            extra = {"redis_type": "redis_sentinel", "sentinel_master": group.master_name}
            yield group, extra
    else:
        with Cluster(tmp_path / "cluster", primaries=3, replicas=1) as cluster:
            cluster.start()
            yield cluster, {"redis_type": "redis_cluster"}
    clients.reset_clients()


def test_replicas_serve_reads_and_hide_an_expired_stream_field_before_the_primary_deletes_it(
    replicated, tmp_path, unique_project
):
    topology, extra = replicated
    config = repo_config(
        topology.connection_string, unique_project, tmp_path, read_from_replicas=True, field_naming="plain", **extra
    )
    store = RedisHexpireOnlineStore()
    profile, activity = batch_view(), stream_view(tags={"hexpire.ttl_seconds": str(STREAM_TTL_S)})
    keys = [user_key(uid) for uid in USERS]
    written = now()
    store.online_write_batch(
        config, profile, [row(u, written, risk_segment="low", tx_count_7d=i) for i, u in enumerate(USERS)], None
    )
    store.online_write_batch(
        config, activity, [row(u, written, tx_count_5m=i, last_amount=1.5) for i, u in enumerate(USERS)], None
    )
    primaries, replicas = _data_nodes(topology)
    for port in primaries:
        assert admin(port).execute_command("WAIT", 1, 5000) >= 1  # every replica has the writes
    for port in primaries + replicas:
        admin(port).config_resetstat()

    def read_both(mode: str) -> tuple[list, list]:
        if mode == "sync":
            return store.online_read(config, profile, keys), store.online_read(config, activity, keys)

        async def read():
            return await store.online_read_async(config, profile, keys), await store.online_read_async(
                config, activity, keys
            )

        return run_async(store, read)

    for mode in ("sync", "async"):
        batch_rows, stream_rows = read_both(mode)
        assert [values["tx_count_7d"].int64_val for _, values in batch_rows] == list(range(len(USERS))), mode
        assert [values["tx_count_5m"].int64_val for _, values in stream_rows] == list(range(len(USERS))), mode
    assert sum(command_calls(admin(p), "hmget") for p in replicas) == 4 * len(USERS)  # 2 views, sync and async
    assert [command_calls(admin(p), "hmget") for p in primaries] == [0] * len(primaries)
    assert [command_calls(admin(p), "evalsha") for p in replicas] == [0] * len(replicas)

    # The primaries stop expiring and propagating (CLIENT PAUSE WRITE pauses both); the
    # stream fields' expiry passes.
    offsets = {}
    pause_ms = int((STREAM_TTL_S + 6) * 1000)
    for port in primaries:
        admin(port).execute_command("CLIENT", "PAUSE", pause_ms, "WRITE")
        offsets[port] = admin(port).info("replication")["master_repl_offset"]
    try:
        time.sleep(max(0.0, written.timestamp() + STREAM_TTL_S + 0.3 - time.time()))
        for mode in ("sync", "async"):
            batch_rows, stream_rows = read_both(mode)
            assert [values["tx_count_7d"].int64_val for _, values in batch_rows] == list(range(len(USERS))), mode
            assert stream_rows == [(None, None)] * len(USERS), mode
        # The fields are still on the replicas (the primary's HDEL never came): the replica
        # hid them by its own clock.
        key = f"fs:{unique_project}:user_id={USERS[0]}".encode()
        replica = _replica_of(topology, key)
        assert replica.hlen(key) == 6  # 2 batch + 2 stream features, 2 event-time fields
        assert replica.hmget(key, ["tx_count_5m", "risk_segment"]) == [None, b"low"]
        assert {port: admin(port).info("replication")["master_repl_offset"] for port in primaries} == offsets
    finally:
        for port in primaries:
            admin(port).execute_command("CLIENT", "UNPAUSE")
    assert [command_calls(admin(p), "hmget") for p in primaries] == [0] * len(primaries)
