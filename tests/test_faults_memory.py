"""A Redis at `maxmemory`, sync and async (issue: reliability).

- `noeviction`: a process starts and reads while Redis is full (the start-up check never
  writes); a write fails with WriteFailed naming the key, the view and Redis's own OOM
  message, also when the script has to be loaded first; no entity is half-written.
- `allkeys-lru`: writes go on; an evicted entity reads as NOT_FOUND, never as a wrong or
  older value.
- The documented read-only user and a per-project writer at maxmemory: the reader starts
  and reads, the writer gets the OOM error (not a permission error), and the ACL log shows
  nothing refused.
"""

from __future__ import annotations

import json

import pytest
import redis

from devsupport.redis_server import LocalRedisServer
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.errors import WriteFailed
from tests.support.faults import (
    VIEWS,
    ClientProcess,
    base_time,
    read_generation,
    stamped_rows,
    stored_generations,
)
from tests.support.store import repo_config, run_async, user_key
from tests.support.topology import ACL_RULES, create_acl_user

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

OOM = "OOM command not allowed when used memory > 'maxmemory'"
ADMIN_PASSWORD = "admin-pw"


@pytest.fixture(autouse=True)
def fresh_clients():
    clients.reset_clients()
    yield
    clients.reset_clients()


def start_server(tmp_path, policy: str, *extra: str) -> LocalRedisServer:
    return LocalRedisServer(
        extra_args=["--maxmemory-policy", policy, *extra], workdir=tmp_path / "redis", log=lambda _: None
    ).start()


@pytest.fixture
def make_server(tmp_path, unique_project):
    """A server with the given eviction policy, an admin client and the store's config."""
    started: list[LocalRedisServer] = []

    def make(policy: str):
        server = start_server(tmp_path, policy)
        started.append(server)
        return redis.Redis(port=server.port), repo_config(server.connection_string, unique_project, tmp_path)

    yield make
    for server in started:
        server.stop()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def read_all(store, config, users, base, mode: str) -> dict[tuple[str, str], int | None]:
    """(user, view) -> generation, as the store reads it (each reply checked for a wrong value)."""
    keys = [user_key(uid) for uid in users]

    async def read_async() -> list:
        return [await store.online_read_async(config, view, keys) for view in VIEWS]

    replies = run_async(store, read_async) if mode == "async" else [store.online_read(config, v, keys) for v in VIEWS]
    return {
        (uid, view.name): read_generation(view.name, ts, values, base)
        for view, rows in zip(VIEWS, replies)
        for uid, (ts, values) in zip(users, rows)
    }


@pytest.mark.both_servers
def test_noeviction_refuses_writes_whole_and_says_why_while_reads_go_on(make_server, unique_project):
    admin, config = make_server("noeviction")
    store, base = RedisHexpireOnlineStore(), base_time()
    users = [f"u{i}" for i in range(300)]
    for view in VIEWS:
        store.online_write_batch(config, view, stamped_rows(view, users, 1, base), None)
    admin.config_set("maxmemory", used_memory(admin) + 300_000)

    # New users, 500 per write, until Redis refuses: the refused script call names a key,
    # the view and Redis's message; the calls before it in that write stay written.
    more, failure = list(users), None
    for start in range(300, 20_000, 500):
        batch = [f"u{i}" for i in range(start, start + 500)]
        more += batch
        try:
            for view in VIEWS:
                store.online_write_batch(config, view, stamped_rows(view, batch, 2, base), None)
        except WriteFailed as exc:
            failure = str(exc)
            break
    assert failure is not None, "Redis never filled up"
    assert OOM in failure and f"fs:{unique_project}:user_id=u" in failure, failure
    assert "view 'user_profile'" in failure or "view 'user_activity'" in failure, failure

    stored = stored_generations(admin, config, more, base)  # raises on a half-written entity
    assert {stored[(uid, view.name)] for uid in users for view in VIEWS} == {1}
    assert set(stored.values()) == {None, 1, 2}  # the refused write left some users out

    # Firmly full, and the script lost as by a restart: every write, sync and async, is
    # refused with the same message, and changes nothing.
    admin.config_set("maxmemory", used_memory(admin) // 2)
    admin.script_flush()

    rows = stamped_rows(VIEWS[1], users, 3, base)
    with pytest.raises(WriteFailed, match=rf"view 'user_activity' to fs:{unique_project}:user_id=u0 .*{OOM}"):
        run_async(store, lambda: store.online_write_batch_async(config, VIEWS[1], rows, None))
    with pytest.raises(WriteFailed, match=rf"view 'user_profile' to fs:{unique_project}:user_id=u0 .*{OOM}"):
        store.online_write_batch(config, VIEWS[0], stamped_rows(VIEWS[0], users, 3, base), None)
    assert stored_generations(admin, config, more, base) == stored

    # A process that starts now checks the server and reads, sync and async.
    def reader(report) -> None:
        fresh = RedisHexpireOnlineStore()
        for mode in ("sync", "async"):
            found = read_all(fresh, config, more, base, mode)
            report(json.dumps({f"{uid} {view}": g for (uid, view), g in found.items()}))

    process = ClientProcess(reader)
    assert process.wait() == 0, process.lines
    expected = {f"{uid} {view}": g for (uid, view), g in stored.items()}
    assert [json.loads(line) for line in process.lines] == [expected, expected]
    assert admin.info("stats")["evicted_keys"] == 0


def test_allkeys_lru_keeps_writing_and_evicted_entities_read_as_not_found(make_server):
    admin, config = make_server("allkeys-lru")
    store, base = RedisHexpireOnlineStore(), base_time()
    users = [f"u{i}" for i in range(8000)]
    admin.config_set("maxmemory", used_memory(admin) + 2_000_000)
    for view in VIEWS:
        store.online_write_batch(config, view, stamped_rows(view, users, 1, base), None)

    async def write_async() -> None:
        for view in VIEWS:
            await store.online_write_batch_async(config, view, stamped_rows(view, users, 2, base), None)

    run_async(store, write_async)  # no error: Redis evicts instead of refusing
    evicted = int(admin.info("stats")["evicted_keys"])
    assert evicted > 0

    stored = stored_generations(admin, config, users, base)  # raises on a half-evicted entity
    assert set(stored.values()) == {None, 2}
    for mode in ("sync", "async"):
        read = read_all(store, config, users, base, mode)
        # What was evicted reads as NOT_FOUND; what was there is generation 2 or, evicted
        # by the reads' own memory since, NOT_FOUND; never generation 1.
        wrong = {entity: (g, stored[entity]) for entity, g in read.items() if g not in (stored[entity], None)}
        assert wrong == {}
        assert None in read.values() and 2 in read.values()
    print(f"\n{evicted} keys evicted; {sum(g is None for g in stored.values())} (entity, view) NOT_FOUND")


def test_documented_reader_and_project_writer_at_maxmemory(tmp_path, unique_project):
    server = start_server(tmp_path, "noeviction", "--requirepass", ADMIN_PASSWORD)
    try:
        admin = redis.Redis(port=server.port, password=ADMIN_PASSWORD)
        create_acl_user(admin, "feast-reader", "reader-pw", "fs", ACL_RULES["reader"])
        project_keys = (f"~fs:{unique_project}:*", f"~fs:{{{unique_project}}}:*")
        create_acl_user(admin, "project-writer", "writer-pw", "fs", ACL_RULES["writer"], keys=project_keys)
        at = f"127.0.0.1:{server.port}"
        writer = repo_config(f"{at},username=project-writer,password=writer-pw", unique_project, tmp_path)
        reader = repo_config(f"{at},username=feast-reader,password=reader-pw", unique_project, tmp_path)
        store, base = RedisHexpireOnlineStore(), base_time()
        users = [f"u{i}" for i in range(100)]
        for view in VIEWS:
            store.online_write_batch(writer, view, stamped_rows(view, users, 1, base), None)

        admin.config_set("maxmemory", used_memory(admin) // 2)  # full from here on
        admin.script_flush()  # and the script must be loaded again
        admin.acl_log_reset()
        clients.reset_clients()  # processes starting now

        expected = {(uid, view.name): 1 for uid in users for view in VIEWS}
        for mode in ("sync", "async"):
            assert read_all(store, reader, users, base, mode) == expected
            assert read_all(store, writer, users, base, mode) == expected

        with pytest.raises(WriteFailed, match=rf"view 'user_profile' to fs:{unique_project}:user_id=u0 .*{OOM}"):
            store.online_write_batch(writer, VIEWS[0], stamped_rows(VIEWS[0], users, 2, base), None)

        rows = stamped_rows(VIEWS[1], users, 2, base)
        with pytest.raises(WriteFailed, match=rf"view 'user_activity' to fs:{unique_project}:user_id=u0 .*{OOM}"):
            run_async(store, lambda: store.online_write_batch_async(writer, VIEWS[1], rows, None))
        assert admin.acl_log() == []  # nothing was refused for want of a permission
        assert stored_generations(admin, writer, users, base) == expected
    finally:
        server.stop()
