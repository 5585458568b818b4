"""Retrieval on Redis Cluster after slots move. Each primary's copy of a view's index is
named with a hash tag in its own slots, and a node refuses every command for a name
outside them (MOVED). A search after resharding returns the complete global top-k, or
fails with SearchUnavailable naming the node without a usable copy and `feast apply`;
never a top-k that leaves out a node's documents. `feast apply` then brings every
primary's copy back. On a cluster of its own (slots move for good here)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml
from redis.crc import key_slot

from devsupport.feature_stores import feature_store
from devsupport.topologies import Cluster, admin
from feast_redis_hexpire import clients
from feast_redis_hexpire.cli.main import main
from feast_redis_hexpire.errors import SearchUnavailable
from tests.test_vector_cluster import DIM, ITEM, VIEW, N, frame, nearest, ranked_ids, retrieve_async

pytestmark = [pytest.mark.topology, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("reshard-cluster"), primaries=3, replicas=0, search=True) as cluster:
        cluster.start()
        yield cluster


@pytest.fixture
def repo(cluster, tmp_path):
    clients.reset_clients()
    fs = feature_store(cluster, tmp_path, redis_type="redis_cluster", vector_enabled=True)
    fs.apply([ITEM, VIEW])
    data = frame()
    fs.write_to_online_store("docs", data)
    assert_complete(fs, data)  # the store's clients now hold the slot map from before the move
    yield fs, data
    fs.teardown()
    clients.reset_clients()


QUERIES = [np.random.default_rng(40 + i).normal(size=DIM).astype(np.float32) for i in range(3)]


def search_async(fs, query, top_k: int) -> list[str]:
    rows = retrieve_async(fs, ["item_id"], query, top_k)
    ranked = sorted(rows, key=lambda row: (row[2]["distance"].float_val, row[2]["item_id"].string_val))
    return [row[2]["item_id"].string_val for row in ranked]


def assert_complete(fs, data) -> None:
    """The global top-k, sync and async, and every document with a large top-k."""
    for query in QUERIES:
        got = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(query), top_k=9).to_dict()
        assert ranked_ids(got) == nearest(data, query, 9)
        assert search_async(fs, query, 9) == nearest(data, query, 9)
    everything = fs.retrieve_online_documents_v2(features=["docs:title"], query=list(QUERIES[0]), top_k=1000)
    assert sorted(everything.to_dict()["item_id"]) == sorted(data["item_id"])
    assert len(search_async(fs, QUERIES[0], 1000)) == N


def assert_refused_naming(fs, node: str) -> None:
    """Both APIs refuse with the node and the remedy, instead of answering without it."""
    with pytest.raises(SearchUnavailable, match="feast apply") as refused:
        fs.retrieve_online_documents_v2(features=["docs:title"], query=list(QUERIES[0]), top_k=9)
    assert refused.value.node == node and node in str(refused.value) and refused.value.view == "docs"
    with pytest.raises(SearchUnavailable, match="feast apply") as refused:
        search_async(fs, QUERIES[0], 9)
    assert refused.value.node == node


def copies(cluster, fs, port: int) -> list[str]:
    prefix = f"fs:{fs.project}:_idx:docs#"
    return sorted(n.decode() for n in admin(port).execute_command("FT._LIST") if n.decode().startswith(prefix))


def keys_by_slot(fs, data) -> dict[int, list[bytes]]:
    slots: dict[int, list[bytes]] = {}
    for item in data["item_id"]:
        key = f"fs:{fs.project}:item_id={item}".encode()
        slots.setdefault(key_slot(key), []).append(key)
    return slots


def test_hashes_that_change_primary_are_searched_on_their_new_one_without_apply(cluster, repo):
    fs, data = repo
    source, target = cluster.primary_ports()[:2]
    name = copies(cluster, fs, source)[0]
    moving = [slot for slot in keys_by_slot(fs, data) if cluster.port_for_slot(slot) == source]
    moving = [slot for slot in moving if slot != key_slot(name.encode())][:5]
    assert sum(cluster.move_slot(slot, target) for slot in moving) > 0
    cluster.wait_healthy()
    assert_complete(fs, data)  # the target's copy indexed the hashes it received


def test_a_primary_that_gained_a_smaller_tag_still_serves_its_copy_without_apply(cluster, repo):
    """The tag apply would now give the target (the smallest n in its slots) changes when it
    gains the slot of a smaller n; its copy, still named in its slots, is found by FT._LIST
    and searched, with no write (the reader role cannot build an index)."""
    fs, data = repo
    names = {key_slot(name.encode()) for port in cluster.primary_ports() for name in copies(cluster, fs, port)}

    def smaller_tag(port: int) -> int | None:
        (own,) = copies(cluster, fs, port)
        n = int(own.rsplit("{", 1)[1][:-1])
        return next((m for m in range(n) if key_slot(str(m).encode()) not in names), None)

    # with 3 primaries named {a} < {b} < {c}, the largest has a smaller n elsewhere
    target = max(cluster.primary_ports(), key=lambda port: smaller_tag(port) is not None)
    smaller = smaller_tag(target)
    assert smaller is not None
    (own,) = copies(cluster, fs, target)
    cluster.move_slot(key_slot(str(smaller).encode()), target)
    cluster.wait_healthy()
    creates = int(admin(target).info("commandstats").get("cmdstat_FT.CREATE", {}).get("calls", 0))
    assert_complete(fs, data)
    assert int(admin(target).info("commandstats").get("cmdstat_FT.CREATE", {}).get("calls", 0)) == creates
    assert copies(cluster, fs, target) == [own]


def test_a_copy_whose_name_left_its_primary_fails_the_search_until_feast_apply(cluster, repo):
    fs, data = repo
    source, target = cluster.primary_ports()[:2]
    (name,) = copies(cluster, fs, source)
    name_slot = key_slot(name.encode())
    with_hashes = [slot for slot in keys_by_slot(fs, data) if cluster.port_for_slot(slot) == source][:3]
    for slot in [name_slot, *with_hashes]:
        cluster.move_slot(slot, target)
    cluster.wait_healthy()
    source_node = f"127.0.0.1:{source}"
    assert_refused_naming(fs, source_node)  # the source still holds documents its copy cannot serve

    fs.apply([ITEM, VIEW])
    assert_complete(fs, data)
    # the source has a copy named in its slots; the old one stays (the node refuses to drop
    # a name outside its slots) and is never searched
    assert name in copies(cluster, fs, source) and len(copies(cluster, fs, source)) == 2
    assert all(key_slot(n.encode()) not in (name_slot,) for n in copies(cluster, fs, source) if n != name)
    assert len(copies(cluster, fs, target)) == 1  # the target kept its own copy


def test_a_new_primary_with_documents_fails_the_search_and_doctor_until_feast_apply(cluster, repo, capsys, tmp_path):
    fs, data = repo
    new = cluster.add_primary()
    donor = cluster.primary_ports()[0]
    with_hashes = [slot for slot in keys_by_slot(fs, data) if cluster.port_for_slot(slot) == donor][:4]
    assert sum(cluster.move_slot(slot, new) for slot in with_hashes) > 0
    cluster.wait_healthy()
    # The store's clients knew three primaries; the search must not answer from those alone.
    assert_refused_naming(fs, f"127.0.0.1:{new}")
    code, out = doctor(capsys, fs, tmp_path)
    assert code == 1 and re.search(rf"\[FAIL\] search +docs: no index that 127\.0\.0\.1:{new} can serve", out), out

    fs.apply([ITEM, VIEW])
    assert len(copies(cluster, fs, new)) == 1
    assert_complete(fs, data)
    code, out = doctor(capsys, fs, tmp_path)
    assert code == 0 and "[ok  ] search      docs: an index on every primary (4)" in out, out


def doctor(capsys, fs, tmp_path) -> tuple[int, str]:
    """`feast-redis-hexpire doctor` on a repo of the test's project and view."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "definitions.py").write_text("from tests.test_vector_cluster import ITEM, VIEW  # noqa: F401\n")
    settings = {
        "project": fs.project,
        "provider": "local",
        "registry": {"path": fs.config.registry.path, "cache_ttl_seconds": 0},
        "online_store": fs.config.online_store.model_dump(mode="json", exclude_unset=True),
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(settings))
    code = main(["doctor", "--repo", str(repo)])
    return code, capsys.readouterr().out


def test_with_the_project_hash_tag_a_moved_project_slot_fails_naming_its_new_primary_until_apply(cluster, tmp_path):
    clients.reset_clients()
    fs = feature_store(cluster, tmp_path, redis_type="redis_cluster", vector_enabled=True, hash_tag="project")
    try:
        fs.apply([ITEM, VIEW])
        data = frame()
        fs.write_to_online_store("docs", data)
        assert_complete(fs, data)
        slot = key_slot(f"{{{fs.project}}}".encode())
        source = cluster.port_for_slot(slot)
        target = next(port for port in cluster.primary_ports() if port != source)
        assert cluster.move_slot(slot, target) == N + 1  # the documents and the views record
        cluster.wait_healthy()
        assert_refused_naming(fs, f"127.0.0.1:{target}")
        fs.apply([ITEM, VIEW])
        assert_complete(fs, data)
    finally:
        fs.teardown()
        clients.reset_clients()
