"""Retrieval with `read_from_replicas: true` on Redis Cluster and Sentinel: every search
(the KNN, the hybrid's scoring search) and the reads of its hits go to replicas, which
index what they replicate; the results equal the primaries'; a replica that is down
leaves the search to its primary, as reads do. Proved by each node's INFO commandstats."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from devsupport.topologies import SentinelGroup, admin, wait_until
from feast_redis_hexpire import AsyncDocumentSearch, DocumentSearch, clients
from tests.support.store import command_calls
from tests.test_vector_cluster import DIM, ITEM, VIEW, frame, nearest, ranked_ids, retrieve_async

pytestmark = [pytest.mark.topology, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def search_sentinel(tmp_path_factory):
    with SentinelGroup(tmp_path_factory.mktemp("search-sentinel"), search=True) as group:
        group.start()
        yield group


class Topology:
    """What the tests need of either topology: which nodes are primaries and replicas."""

    def __init__(self, kind: str, servers) -> None:
        self.kind, self.servers = kind, servers

    @property
    def extra(self) -> dict:
        if self.kind == "cluster":
            return {"redis_type": "redis_cluster"}
        return {"redis_type": "redis_sentinel", "sentinel_master": self.servers.master_name}

    def roles(self) -> tuple[list[int], list[int]]:
        if self.kind == "cluster":
            primaries = self.servers.primary_ports()
            return primaries, [self.servers.replica_of(port) for port in primaries]
        primary = self.servers.primary_port()
        return [primary], [port for port in self.servers.data_ports() if port != primary]


@pytest.fixture(params=["cluster", "sentinel"])
def topology(request) -> Topology:
    fixture = "search_cluster" if request.param == "cluster" else "search_sentinel"
    return Topology(request.param, request.getfixturevalue(fixture))


@pytest.fixture
def repo(topology, tmp_path):
    from devsupport.feature_stores import feature_store

    clients.reset_clients()
    fs = feature_store(topology.servers, tmp_path, vector_enabled=True, text_search_enabled=True, **topology.extra)
    fs.apply([ITEM, VIEW])
    data = frame()
    fs.write_to_online_store("docs", data)
    primaries, _ = topology.roles()
    for port in primaries:
        assert admin(port).execute_command("WAIT", 1, 5000) >= 1  # the replicas have every write
    yield fs, data
    fs.config.online_store.read_from_replicas = False
    fs.teardown()
    clients.reset_clients()


QUERY = np.random.default_rng(3).normal(size=DIM).astype(np.float32)


def searches(fs) -> list[dict]:
    """A KNN, a keyword search and the hybrid (whose scoring search is a second FT.SEARCH),
    sync, and the KNN async; the KNN and the hybrid through DocumentSearch too, sync and
    async (made here: it takes read_from_replicas as the config has it when made)."""
    knn = fs.retrieve_online_documents_v2(features=["docs:title", "docs:rating"], query=list(QUERY), top_k=7)
    words = fs.retrieve_online_documents_v2(features=["docs:title"], query_string="gamma", top_k=500)
    hybrid = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(QUERY), query_string="beta", top_k=6)
    ranked = DocumentSearch(fs, ["docs:title", "docs:rating"])
    ranked_async = AsyncDocumentSearch(fs, ["docs:title"])

    async def hybrid_async() -> dict:
        return (await ranked_async.query(list(QUERY), query_string="beta", top_k=6)).to_dict()

    return [
        knn.to_dict(),
        words.to_dict(),
        hybrid.to_dict(),
        {"rows": retrieve_async(fs, ["title"], QUERY, 7)},
        ranked.query(list(QUERY), top_k=7).to_dict(),
        asyncio.run(hybrid_async()),
    ]


def calls(ports: list[int], command: str) -> list[int]:
    return [command_calls(admin(port), command) for port in ports]


def test_replicas_answer_every_search_with_the_primaries_results(topology, repo):
    fs, data = repo
    expected = searches(fs)  # read_from_replicas off: the primaries answer
    assert ranked_ids(expected[0]) == nearest(data, QUERY, 7)
    primaries, replicas = topology.roles()
    for port in primaries + replicas:
        admin(port).config_resetstat()
    fs.config.online_store.read_from_replicas = True
    assert searches(fs) == expected
    # 3 searches of every shard (the hybrid's scoring search is the 4th) and the async one
    assert all(n >= 4 for n in calls(replicas, "FT.SEARCH")), calls(replicas, "FT.SEARCH")
    assert calls(primaries, "FT.SEARCH") == [0] * len(primaries)
    assert calls(primaries, "hmget") == [0] * len(primaries)
    if topology.kind == "cluster":  # the hits' fields come by HMGET there (inline in FT.SEARCH otherwise)
        assert sum(calls(replicas, "hmget")) > 0


def test_a_replica_down_leaves_the_search_to_its_primary(topology, repo):
    fs, _ = repo
    expected = searches(fs)
    primaries, replicas = topology.roles()
    fs.config.online_store.read_from_replicas = True
    searches(fs)  # the clients know the replicas before one goes
    down = topology.servers.server(replicas[0])
    down.crash()
    try:
        for port in primaries:
            admin(port).config_resetstat()
        assert searches(fs) == expected
        assert sum(calls(primaries, "FT.SEARCH")) >= 4  # the down replica's primary answered
    finally:
        down.revive()
        if topology.kind == "cluster":
            topology.servers.wait_healthy(60)
        else:
            wait_until(
                lambda: admin(replicas[0]).info("replication").get("master_link_status") == "up", 60, "replica sync"
            )


def test_replica_searches_keep_the_global_top_k_through_a_cluster_failover(search_cluster, tmp_path):
    from devsupport.feature_stores import feature_store

    clients.reset_clients()
    fs = feature_store(
        search_cluster, tmp_path, redis_type="redis_cluster", vector_enabled=True, read_from_replicas=True
    )
    try:
        fs.apply([ITEM, VIEW])
        data = frame()
        fs.write_to_online_store("docs", data)
        for port in search_cluster.primary_ports():
            assert admin(port).execute_command("WAIT", 1, 5000) >= 1
        expected = nearest(data, QUERY, 5)
        outcomes: list[object] = []
        stop = threading.Event()

        def searching() -> None:
            while not stop.is_set():
                try:
                    got = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(QUERY), top_k=5)
                    outcomes.append(ranked_ids(got.to_dict()) == expected)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    outcomes.append(exc)

        worker = threading.Thread(target=searching)
        worker.start()
        try:
            time.sleep(0.5)
            before = len(outcomes)
            primary = search_cluster.primary_ports()[-1]
            search_cluster.failover(search_cluster.replica_of(primary))
            time.sleep(1.0)
        finally:
            stop.set()
            worker.join(timeout=60)
        assert before > 0 and len(outcomes) > before + 3
        assert all(outcome is True for outcome in outcomes), [o for o in outcomes if o is not True][:3]
        assert primary not in search_cluster.primary_ports()
        assert (
            ranked_ids(fs.retrieve_online_documents_v2(features=["docs:title"], query=list(QUERY), top_k=5).to_dict())
            == expected
        )
    finally:
        fs.config.online_store.read_from_replicas = False
        fs.teardown()
        clients.reset_clients()
