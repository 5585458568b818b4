"""The store behind Redis Sentinel (one primary, one replica, three sentinels on
127.0.0.1): the Feast workflow, and a `SENTINEL FAILOVER` in the middle of a read loop
that the client follows to the new primary without an error reaching the caller."""

from __future__ import annotations

import asyncio
import time

import pytest

from devsupport.topologies import SentinelGroup, admin
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from tests.support.credentials import round_trip_through_provider, use_provider
from tests.support.store import batch_view, now, plain, repo_config, row, run_async, user_key
from tests.support.topology import STORE_ACL_RULES, create_acl_user, feast_workflow

pytestmark = [pytest.mark.topology, pytest.mark.both_servers]


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory, server_kind):
    with SentinelGroup(tmp_path_factory.mktemp("sentinel"), sentinels=3) as group:
        group.start()
        yield group
    clients.reset_clients()


def sentinel_config(group, project, tmp_path, **store):
    store.setdefault("field_naming", "plain")  # these tests read fields by feature name
    return repo_config(
        group.connection_string,
        project,
        tmp_path,
        redis_type="redis_sentinel",
        sentinel_master=group.master_name,
        **store,
    )


def test_feast_workflow_through_sentinel(sentinel, tmp_path, unique_project):
    raw = admin(sentinel.primary_port())
    feast_workflow(
        tmp_path / "repo",
        unique_project,
        sentinel.connection_string,
        raw,
        redis_type="redis_sentinel",
        sentinel_master=sentinel.master_name,
        count=12,
    )


def test_a_credential_provider_logs_in_behind_sentinel(sentinel, tmp_path, unique_project, monkeypatch):
    """The provider authenticates the data connections; the sentinels need no password."""
    for port in sentinel.data_ports():  # ACLs are not replicated
        create_acl_user(admin(port), "feast", "feast-pw", "fs", STORE_ACL_RULES)
    provider = use_provider(monkeypatch, tmp_path / "credentials", "feast", "feast-pw")
    store = RedisHexpireOnlineStore()
    round_trip_through_provider(
        store, sentinel_config(sentinel, unique_project, tmp_path, credential_provider=provider)
    )
    assert any(c["user"] == "feast" for c in admin(sentinel.primary_port()).client_list())
    clients.reset_clients()


def test_failover_during_a_read_loop_is_followed(sentinel, tmp_path, unique_project):
    """Reads (sync and async alternately) never fail across `SENTINEL FAILOVER`, and within
    about a second of the sentinels naming the new primary the store uses it, for reads
    and writes, although the old primary is still up and still a primary (the sentinels
    demote it only ~10 s later; writes it accepted meanwhile would be lost)."""
    store = RedisHexpireOnlineStore()
    config = sentinel_config(sentinel, unique_project, tmp_path)
    view = batch_view()
    users = [f"u{i:03d}" for i in range(100)]
    keys = [user_key(u) for u in users]
    store.online_write_batch(config, view, [row(u, now(), tx_count_7d=i) for i, u in enumerate(users)], None)
    old_primary = sentinel.primary_port()
    new_primary = next(p for p in sentinel.data_ports() if p != old_primary)
    assert admin(old_primary).execute_command("WAIT", 1, 5000) == 1  # the replica has every write
    expected = list(range(len(users)))

    def all_sentinels_switched() -> bool:
        return all(
            int(admin(p).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.master_name)[1]) == new_primary
            for p in sentinel.sentinel_ports
        )

    def reads_served_by_new_primary() -> bool:
        return int(admin(new_primary).info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)) > 0

    reads, switched_at, followed_at = 0, None, None

    async def loop():
        nonlocal reads, switched_at, followed_at
        started = time.monotonic()
        while reads < 3000 and time.monotonic() - started < 30:
            if reads % 2:
                result = await store.online_read_async(config, view, keys)
            else:
                result = store.online_read(config, view, keys)
            assert [plain(v)["tx_count_7d"] for _, v in result] == expected, reads
            reads += 1
            if reads == 5:
                admin(new_primary).config_resetstat()
                admin(sentinel.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", sentinel.master_name)
            if reads > 5 and reads % 5 == 0:
                if switched_at is None and all_sentinels_switched():
                    switched_at = time.monotonic()
                if switched_at is not None and followed_at is None and reads_served_by_new_primary():
                    followed_at = time.monotonic()
            if followed_at is not None and time.monotonic() - followed_at > 0.5:
                return
            await asyncio.sleep(0.005)

    run_async(store, loop)
    assert switched_at is not None, f"the sentinels did not switch within the loop ({reads} reads)"
    assert followed_at is not None, "reads never reached the new primary"
    assert followed_at - switched_at < clients.SENTINEL_RECHECK_S + 1.0
    assert admin(old_primary).info("replication")["role"] == "master"  # not yet demoted...

    # ...yet the cached clients write to the new primary, sync and async, once their pools
    # have re-asked the sentinels (at most SENTINEL_RECHECK_S after the switch).
    time.sleep(clients.SENTINEL_RECHECK_S)
    store.online_write_batch(config, view, [row("u000", now(), tx_count_7d=1000)], None)
    assert admin(new_primary).hget(f"fs:{unique_project}:user_id=u000", "tx_count_7d") == b"1000"

    async def write_async():
        await store.online_write_batch_async(config, view, [row("u001", now(), tx_count_7d=1001)], None)

    run_async(store, write_async)
    assert admin(new_primary).hget(f"fs:{unique_project}:user_id=u001", "tx_count_7d") == b"1001"
    assert admin(old_primary).hget(f"fs:{unique_project}:user_id=u001", "tx_count_7d") == b"1"
