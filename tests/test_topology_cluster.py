"""The store on a real 3-primary / 3-replica Redis Cluster on 127.0.0.1: the Feast
workflow as a least-privilege ACL user, one round trip per node per batch, NOSCRIPT
on a primary, the `project` hash tag, and resharding / failover under load with every
acknowledged write checked afterwards."""

from __future__ import annotations

import asyncio
import random
import subprocess
import threading
import time

import pytest
from redis.cluster import RedisCluster

from devsupport.redis_binary import find_tool
from devsupport.topologies import HOST, Cluster, admin
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.write_script import SCRIPT_SHA
from tests.support.credentials import round_trip_through_provider, use_provider
from tests.support.store import USER, batch_view, now, plain, repo_config, row, run_async, stream_view, user_key
from tests.support.topology import CLUSTER_STORE_ACL_RULES, count_round_trips, create_acl_user, feast_workflow

pytestmark = pytest.mark.topology


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, server_kind):
    with Cluster(tmp_path_factory.mktemp("cluster")) as started:
        started.start()
        for port in started.ports:  # ACLs are per node: every node, replicas included
            create_acl_user(admin(port), "feast", "feast-pw", "fs", CLUSTER_STORE_ACL_RULES)
        yield started
    clients.reset_clients()


@pytest.fixture
def raw(cluster):
    client = RedisCluster(host=HOST, port=cluster.ports[0])
    yield client
    client.close()


@pytest.fixture
def store():
    return RedisHexpireOnlineStore()


def cluster_config(cluster, project, tmp_path, **store):
    store.setdefault("field_naming", "plain")  # these tests read fields by feature name
    return repo_config(cluster.connection_string, project, tmp_path, redis_type="redis_cluster", **store)


def error_stats(cluster) -> dict[str, int]:
    """Error replies (MOVED, ASK, NOSCRIPT...) counted by the servers, summed over nodes."""
    total: dict[str, int] = {}
    for port in cluster.ports:
        for name, value in admin(port).info("errorstats").items():
            total[name] = total.get(name, 0) + int(value["count"])
    return total


def reset_stats(cluster) -> None:
    for port in cluster.ports:
        admin(port).config_resetstat()


# ---------------------------------------------------------------- workflow


@pytest.mark.both_servers
def test_a_credential_provider_logs_in_to_every_node(cluster, store, tmp_path, unique_project, monkeypatch):
    provider = use_provider(monkeypatch, tmp_path / "credentials", "feast", "feast-pw")
    config = cluster_config(cluster, unique_project, tmp_path, credential_provider=provider)
    round_trip_through_provider(store, config)
    logged_in = cluster.for_each_primary(lambda c: any(x["user"] == "feast" for x in c.client_list()))
    assert set(logged_in.values()) == {True}
    clients.reset_clients()


@pytest.mark.both_servers
def test_feast_workflow_on_cluster_as_acl_user(cluster, raw, tmp_path, unique_project):
    """apply / materialize / push / read / teardown as the documented least-privilege
    user; the entities of one batch land on every primary and come back in order."""
    connection_string = f"{cluster.connection_string},username=feast,password=feast-pw"
    result = feast_workflow(tmp_path / "repo", unique_project, connection_string, raw, redis_type="redis_cluster")
    homes = {cluster.port_for_key(key) for key in result["keys"]}
    assert homes == set(cluster.primary_ports())
    for port in cluster.ports:
        denied = admin(port).acl_log()
        assert denied == [], (port, denied[:3])


@pytest.mark.both_servers
def test_a_batch_costs_one_round_trip_per_node(cluster, store, tmp_path, unique_project):
    config = cluster_config(cluster, unique_project, tmp_path)
    view = batch_view()
    users = [f"u{i:04d}" for i in range(300)]
    store.online_write_batch(config, view, [row(u, now(), tx_count_7d=0) for u in users], None)  # connect to all
    primaries = {f"{HOST}:{p}" for p in cluster.primary_ports()}
    reset_stats(cluster)

    with count_round_trips() as writes:
        store.online_write_batch(config, view, [row(u, now(), tx_count_7d=i) for i, u in enumerate(users)], None)
    assert writes == {name: 1 for name in primaries}
    calls = cluster.for_each_primary(lambda c: int(c.info("commandstats")["cmdstat_evalsha"]["calls"]))
    assert sum(calls.values()) == len(users) and all(calls.values()), calls

    keys = [user_key(u) for u in reversed(users)]
    with count_round_trips() as reads:
        result = store.online_read(config, view, keys)
    assert reads == {name: 1 for name in primaries}
    assert [plain(values)["tx_count_7d"] for _, values in result] == list(reversed(range(len(users))))

    async def async_batch():
        await store.online_read_async(config, view, keys)  # this loop's client: discovery, connections
        with count_round_trips() as async_writes:
            await store.online_write_batch_async(
                config, view, [row(u, now(), tx_count_7d=-i) for i, u in enumerate(users)], None
            )
        with count_round_trips() as async_reads:
            got = await store.online_read_async(config, view, keys)
        return async_writes, async_reads, got

    async_writes, async_reads, got = run_async(store, async_batch)
    assert async_writes == {name: 1 for name in primaries}
    assert async_reads == {name: 1 for name in primaries}
    assert [plain(values)["tx_count_7d"] for _, values in got] == [-i for i in reversed(range(len(users)))]


def test_a_primary_without_the_script_gets_it_reloaded(cluster, store, tmp_path, unique_project):
    config = cluster_config(cluster, unique_project, tmp_path)
    store.online_write_batch(config, batch_view(), [row("u0", now(), tx_count_7d=0)], None)  # connected, loaded
    flushed = cluster.primary_ports()[1]
    admin(flushed).script_flush()
    users = [f"u{i}" for i in range(60)]
    store.online_write_batch(config, batch_view(), [row(u, now(), tx_count_7d=7) for u in users], None)
    assert all(
        plain(v) == {"tx_count_7d": 7} for _, v in store.online_read(config, batch_view(), [user_key(u) for u in users])
    )
    assert cluster.for_each_primary(lambda c: c.script_exists(SCRIPT_SHA)[0]) == {
        p: True for p in cluster.primary_ports()
    }

    admin(flushed).script_flush()  # the async path recovers too

    async def write_async():
        await store.online_write_batch_async(config, batch_view(), [row(u, now(), tx_count_7d=8) for u in users], None)

    run_async(store, write_async)
    assert all(
        plain(v) == {"tx_count_7d": 8} for _, v in store.online_read(config, batch_view(), [user_key(u) for u in users])
    )


def test_project_hash_tag_puts_the_project_on_one_node(cluster, raw, tmp_path, unique_project):
    result = feast_workflow(
        tmp_path / "repo",
        unique_project,
        cluster.connection_string,
        raw,
        redis_type="redis_cluster",
        hash_tag="project",
        count=12,
    )
    assert all(key.startswith(f"fs:{{{unique_project}}}:user_id=".encode()) for key in result["keys"])
    assert len({cluster.port_for_key(key) for key in result["keys"]}) == 1


def test_project_hash_tag_batch_is_one_round_trip(cluster, store, tmp_path, unique_project):
    config = cluster_config(cluster, unique_project, tmp_path, hash_tag="project")
    users = [f"u{i}" for i in range(100)]
    store.online_write_batch(config, batch_view(), [row(u, now(), tx_count_7d=1) for u in users], None)
    with count_round_trips() as reads:
        result = store.online_read(config, batch_view(), [user_key(u) for u in users])
    assert len(reads) == 1 and sum(reads.values()) == 1
    assert all(plain(v) == {"tx_count_7d": 1} for _, v in result)
    # teardown finds the tagged keys (and would find untagged ones written before a switch)
    store.teardown(config, [batch_view()], [])
    assert list(RedisCluster(host=HOST, port=cluster.ports[0]).scan_iter(match=f"fs:*{unique_project}*")) == []


def test_deleting_a_view_removes_its_fields_on_every_primary(cluster, raw, store, tmp_path, unique_project):
    config = cluster_config(cluster, unique_project, tmp_path)
    users = [f"u{i}" for i in range(60)]
    store.online_write_batch(config, batch_view(), [row(u, now(), tx_count_7d=1) for u in users], None)
    store.online_write_batch(config, stream_view(), [row(u, now(), tx_count_5m=2) for u in users], None)
    keys = [f"fs:{unique_project}:user_id={u}".encode() for u in users]
    assert {cluster.port_for_key(k) for k in keys} == set(cluster.primary_ports())

    store.update(config, [stream_view()], [batch_view()], [], [USER], partial=False)
    for k in keys:
        assert raw.hgetall(k).keys() == {b"tx_count_7d", b"_ts:user_profile"}, k


# ---------------------------------------------------------------- topology changes under load


def run_load(
    store,
    config,
    users: list[str],
    done,
    *,
    max_seconds: float,
    max_iterations: int,
    after_done: int = 5,
    on_iteration=None,
) -> dict[str, object]:
    """Write then read every entity, sync and async alternately, until `done()` has been
    true for `after_done` iterations. Any exception fails the test (no error may reach
    the caller); returns the last acknowledged value per entity."""
    view = batch_view()
    keys = [user_key(u) for u in users]
    acked: dict[str, int] = {}
    iterations, finished_at = 0, None

    async def body():
        nonlocal iterations, finished_at
        started = time.monotonic()
        while iterations < max_iterations and time.monotonic() - started < max_seconds:
            value = iterations
            rows = [row(u, now(), tx_count_7d=value) for u in users]
            if iterations % 2:
                await store.online_write_batch_async(config, view, rows, None)
            else:
                store.online_write_batch(config, view, rows, None)
            acked.update((u, value) for u in users)
            if iterations % 2:
                read = await store.online_read_async(config, view, keys)
            else:
                read = store.online_read(config, view, keys)
            assert [plain(values)["tx_count_7d"] for _, values in read] == [value] * len(users), value
            iterations += 1
            if on_iteration:
                on_iteration(iterations)
            if finished_at is None and done():
                finished_at = iterations
            if finished_at is not None and iterations - finished_at >= after_done:
                return

    run_async(store, body)
    assert finished_at is not None, (
        f"the topology change did not finish within {max_seconds}s / {max_iterations} iterations"
    )
    return {"acked": acked, "iterations": iterations}


def verify_acknowledged(cluster, tmp_path, project, acked: dict[str, int]) -> None:
    """Read every entity back through a brand-new client: each holds its last acknowledged write."""
    clients.reset_clients()
    config = cluster_config(cluster, project, tmp_path)
    users = sorted(acked)
    result = RedisHexpireOnlineStore().online_read(config, batch_view(), [user_key(u) for u in users])
    lost = {u: (acked[u], plain(v)) for u, (_, v) in zip(users, result) if plain(v) != {"tx_count_7d": acked[u]}}
    assert lost == {}


def test_resharding_under_load_loses_no_acknowledged_write(cluster, store, tmp_path, unique_project):
    """First one slot by hand, held half way (MIGRATING/IMPORTING, its keys already moved,
    so they answer ASK), then 1500 slots with `redis-cli --cluster reshard`, while every
    entity is written and read back in a loop."""
    config = cluster_config(cluster, unique_project, tmp_path)
    users = [f"u{i:04d}" for i in range(400)]
    store.online_write_batch(config, batch_view(), [row(u, now(), tx_count_7d=-1) for u in users], None)
    source, target = cluster.primary_ports()[:2]
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    moving = next(
        f"fs:{unique_project}:user_id={u}".encode()
        for u in users
        if cluster.port_for_key(f"fs:{unique_project}:user_id={u}".encode()) == source
    )
    slot = admin(source).execute_command("CLUSTER", "KEYSLOT", moving)
    log = tmp_path / "reshard.log"
    reshard: list[subprocess.Popen] = []

    def change_topology(iteration: int) -> None:
        if iteration == 3:  # open the slot's migration and move its key: ASK from now on
            admin(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            admin(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            for key in admin(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                admin(source).execute_command("MIGRATE", HOST, target, "", 0, 5000, "KEYS", key)
        elif iteration == 8:  # close it: the slot belongs to the target
            for port in dict.fromkeys((target, source, *cluster.primary_ports())):
                admin(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        elif iteration == 10:
            with open(log, "w") as out:  # a file, not a pipe: redis-cli prints a line per slot
                reshard.append(
                    subprocess.Popen(
                        [
                            str(find_tool("redis-cli")),
                            "--cluster",
                            "reshard",
                            f"{HOST}:{source}",
                            "--cluster-from",
                            source_id,
                            "--cluster-to",
                            target_id,
                            "--cluster-slots",
                            "1500",
                            "--cluster-yes",
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    reset_stats(cluster)
    try:
        outcome = run_load(
            store,
            config,
            users,
            lambda: bool(reshard) and reshard[0].poll() is not None,
            max_seconds=60,
            max_iterations=3000,
            on_iteration=change_topology,
        )
    finally:
        for process in reshard:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
    assert reshard[0].returncode == 0, log.read_text()[-2000:]
    cluster.wait_healthy()
    redirects = error_stats(cluster)
    print("reshard:", outcome["iterations"], "iterations", redirects)
    assert redirects.get("errorstat_ASK", 0) > 0 and redirects.get("errorstat_MOVED", 0) > 0, redirects
    assert cluster.port_for_key(moving) == target
    verify_acknowledged(cluster, tmp_path, unique_project, outcome["acked"])


@pytest.mark.both_servers
def test_failover_under_load_loses_no_acknowledged_write(cluster, store, tmp_path, unique_project):
    config = cluster_config(cluster, unique_project, tmp_path)
    users = [f"u{i:04d}" for i in range(300)]
    store.online_write_batch(config, batch_view(), [row(u, now(), tx_count_7d=-1) for u in users], None)
    old_primary = cluster.primary_ports()[0]
    replica = cluster.replica_of(old_primary)
    assert admin(replica).script_exists(SCRIPT_SHA) == [False]  # scripts are not replicated
    reset_stats(cluster)

    def maybe_fail_over(iteration: int) -> None:
        if iteration == 5:
            assert admin(replica).execute_command("CLUSTER", "FAILOVER") in (b"OK", True)

    def promoted() -> bool:
        return (
            admin(replica).info("replication")["role"] == "master"
            and admin(old_primary).info("replication")["role"] == "slave"
        )

    outcome = run_load(
        store, config, users, promoted, max_seconds=60, max_iterations=3000, after_done=10, on_iteration=maybe_fail_over
    )
    cluster.wait_healthy()
    errors = error_stats(cluster)
    print("failover:", outcome["iterations"], "iterations", errors)
    assert errors.get("errorstat_MOVED", 0) > 0, errors  # the old primary redirected us
    assert errors.get("errorstat_NOSCRIPT", 0) > 0, errors  # the new primary lacked the script...
    assert admin(replica).script_exists(SCRIPT_SHA) == [True]  # ...and got it
    verify_acknowledged(cluster, tmp_path, unique_project, outcome["acked"])


def slot_counts(cluster) -> dict[int, int]:
    """Slots per primary, from CLUSTER SLOTS."""
    counts: dict[int, int] = {}
    for entry in admin(cluster.ports[0]).execute_command("CLUSTER", "SLOTS"):
        port = int(entry[2][1])
        counts[port] = counts.get(port, 0) + entry[1] - entry[0] + 1
    return counts


def reshard(cluster, source: int, target: int, slots: int, log) -> None:
    """`redis-cli --cluster reshard`: `slots` slots and their keys from `source` to `target`."""
    with open(log, "a") as out:  # a file, not a pipe: redis-cli prints a line per slot
        subprocess.run(
            [
                str(find_tool("redis-cli")),
                "--cluster",
                "reshard",
                f"{HOST}:{source}",
                "--cluster-from",
                cluster.node_id(source),
                "--cluster-to",
                cluster.node_id(target),
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
        )


def hold_a_slot_half_moved(cluster, project: str, users: list[str], source: int, target: int, seconds: float) -> None:
    """One slot of `source` with entities in it, its migration to `target` opened and its
    keys moved, for `seconds` (requests for them get ASK), then closed. redis-cli's reshard
    moves a slot in about a millisecond: too briefly for a request to land in between."""
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    key = next(k for k in (f"fs:{project}:user_id={u}".encode() for u in users) if cluster.port_for_key(k) == source)
    slot = admin(source).execute_command("CLUSTER", "KEYSLOT", key)
    admin(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    admin(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    for moving in admin(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000):
        admin(source).execute_command("MIGRATE", HOST, target, "", 0, 5000, "KEYS", moving)
    time.sleep(seconds)
    for port in dict.fromkeys((target, source, *cluster.primary_ports())):
        admin(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


@pytest.mark.timeout(180)
def test_concurrent_sync_and_async_load_through_live_resharding(cluster, store, tmp_path, unique_project):
    """Writers and readers at once, sync (threads sharing the process's client) and async
    (tasks sharing one event loop's client), while one slot is held half moved (ASK) and
    `redis-cli --cluster reshard` moves 3,000 slots four times. No call may fail, no read
    may go back in time (a value older than one acknowledged before the read began), and
    every acknowledged row is read back.

    redis-py's async cluster client closes every connection of every node on each fifth
    MOVED reply (a topology refresh), including connections other tasks are sending on:
    one async write failed with "'NoneType' object has no attribute 'writelines'" (in 1
    of 3 runs of this test before StoreAsyncRedisCluster)."""
    config = cluster_config(cluster, unique_project, tmp_path)
    view = batch_view()
    users = [f"u{i:05d}" for i in range(20000)]
    owners = {"sync writer": users[0::3], "async writer 0": users[1::3], "async writer 1": users[2::3]}
    acked: dict[str, int] = {}  # the last value acknowledged per entity (each writer owns its own)
    errors: list[str] = []
    calls = {"writes": 0, "reads": 0}
    done = threading.Event()
    store.online_write_batch(config, view, [row(u, now(), tx_count_7d=0) for u in users], None)
    acked.update((u, 0) for u in users)

    def batch(rng: random.Random, size: int) -> list[str]:
        return rng.sample(users, size)

    def check(read_users: list[str], floor: dict[str, int], result) -> None:
        got = [plain(values) for _, values in result]
        behind = [(u, floor[u], g) for u, g in zip(read_users, got) if g is None or g["tx_count_7d"] < floor[u]]
        if behind:
            errors.append(f"read went back in time: {behind[:3]}")

    def next_rows(name: str, generation: int, rng: random.Random) -> tuple[list[str], list]:
        chosen = rng.sample(owners[name], 200)
        return chosen, [row(u, now(), tx_count_7d=generation) for u in chosen]

    def sync_writer() -> None:
        rng, generation = random.Random(1), 0
        while not done.is_set():
            generation += 1
            chosen, rows = next_rows("sync writer", generation, rng)
            try:
                store.online_write_batch(config, view, rows, None)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                errors.append(f"sync write: {exc!r}")
                continue
            acked.update((u, generation) for u in chosen)
            calls["writes"] += 1

    def sync_reader() -> None:
        rng = random.Random(2)
        while not done.is_set():
            chosen = batch(rng, 300)
            floor = {u: acked[u] for u in chosen}
            try:
                check(chosen, floor, store.online_read(config, view, [user_key(u) for u in chosen]))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"sync read: {exc!r}")
            calls["reads"] += 1

    async def async_side() -> None:
        async def writer(name: str, seed: int) -> None:
            rng, generation = random.Random(seed), 0
            while not done.is_set():
                generation += 1
                chosen, rows = next_rows(name, generation, rng)
                try:
                    await store.online_write_batch_async(config, view, rows, None)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{name}: {exc!r}")
                    continue
                acked.update((u, generation) for u in chosen)
                calls["writes"] += 1

        async def reader(seed: int) -> None:
            rng = random.Random(seed)
            while not done.is_set():
                chosen = batch(rng, 300)
                floor = {u: acked[u] for u in chosen}
                try:
                    check(chosen, floor, await store.online_read_async(config, view, [user_key(u) for u in chosen]))
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"async read: {exc!r}")
                calls["reads"] += 1

        await asyncio.gather(writer("async writer 0", 3), writer("async writer 1", 4), reader(5), reader(6), reader(7))

    workers = [
        threading.Thread(target=sync_writer),
        threading.Thread(target=sync_reader),
        threading.Thread(target=lambda: run_async(store, async_side)),
    ]
    reset_stats(cluster)
    log = tmp_path / "reshard.log"
    started = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        time.sleep(1.0)  # the load is under way
        first, second, third = sorted(slot_counts(cluster), key=lambda port: -slot_counts(cluster)[port])
        hold_a_slot_half_moved(cluster, unique_project, users, first, second, seconds=1.0)
        for source, target in ((first, second), (second, third), (third, first), (first, second)):
            reshard(cluster, source, target, 3000, log)
        time.sleep(1.0)
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=60)
    seconds = time.monotonic() - started
    cluster.wait_healthy()
    redirects = error_stats(cluster)
    print(f"\nlive resharding: {calls} in {seconds:.1f} s, {redirects}, errors {errors[:5]}")
    assert errors == []
    assert redirects.get("errorstat_MOVED", 0) > 0 and redirects.get("errorstat_ASK", 0) > 0, redirects
    assert calls["writes"] > 20 and calls["reads"] > 20, calls
    verify_acknowledged(cluster, tmp_path, unique_project, acked)
