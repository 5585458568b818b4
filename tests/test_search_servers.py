"""The search-enabled test servers: Redis 8 with the Query Engine module the suite fetches
(devsupport.search_module), standalone and on the 3-primary cluster."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from devsupport.redis_binary import RedisProvisioningError
from devsupport.redis_server import LocalRedisServer, use_server_kind
from devsupport.topologies import HOST


def _module_names(client: redis.Redis) -> set[bytes]:
    return {dict(zip(m[::2], m[1::2]))[b"name"] for m in client.execute_command("MODULE", "LIST")}


def _index_and_find(client, write, node=None, name="fs:probe:_idx") -> list:
    """FT.CREATE over a prefix, HSET hashes with a FLOAT32 vector (`write`), KNN finds one."""
    options = {} if node is None else {"target_nodes": node}
    client.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", "fs:probe:", "SCHEMA",
        "emb", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", "2", "DISTANCE_METRIC", "L2",
        **options,
    )  # fmt: skip
    write()  # after FT.CREATE: a write is indexed as it happens (existing hashes are indexed in the background)
    try:
        return client.execute_command(
            "FT.SEARCH", name, "*=>[KNN 1 @emb $v AS d]", "PARAMS", "2", "v",
            np.array([1, 0], "<f4").tobytes(), "RETURN", "1", "d", "DIALECT", "2",
            **options,
        )  # fmt: skip
    finally:
        client.execute_command("FT.DROPINDEX", name, **options)


def test_module_loads_and_indexes_a_hash(search_server):
    client = redis.Redis.from_url(search_server.url)
    assert b"search" in _module_names(client)

    def write():
        client.hset("fs:probe:a", "emb", np.array([1, 0], "<f4").tobytes())
        client.hset("fs:probe:b", "emb", np.array([0, 5], "<f4").tobytes())

    assert _index_and_find(client, write) == [1, b"fs:probe:a", [b"d", b"0"]]
    client.delete("fs:probe:a", "fs:probe:b")


def test_plain_servers_have_no_query_engine(redis_server):
    if not redis_server.owned:
        pytest.skip("REDIS_URL names a server of the user's, which may have the module")
    client = redis.Redis.from_url(redis_server.url)
    assert b"search" not in _module_names(client)


def test_every_cluster_primary_loads_the_module_and_indexes_its_own_hashes(search_cluster):
    """Without a coordinator each primary indexes its own hashes, and takes index commands
    only for names in its slots: the index name carries a hash tag of that primary."""
    client = RedisCluster(host=HOST, port=search_cluster.ports[0])
    try:
        primaries = client.get_primaries()
        assert len(primaries) == 3
        for i, node in enumerate(primaries):
            key = next(f"fs:probe:{n}" for n in range(10_000) if client.get_node_from_key(f"fs:probe:{n}") == node)
            vector = np.array([1, i], "<f4").tobytes()
            reply = _index_and_find(
                client, lambda key=key, vector=vector: client.hset(key, "emb", vector), node, f"fs:probe:_idx{{{key}}}"
            )
            assert reply[:2] == [1, key.encode()], (node, reply)
            client.delete(key)
    finally:
        client.close()


def test_valkey_servers_cannot_load_it():
    with use_server_kind("valkey"), pytest.raises(RedisProvisioningError, match="valkey-search is not on PyPI"):
        LocalRedisServer(search=True).start()
