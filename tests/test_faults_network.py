"""Connections cut at random points between the store and Redis, sync and async (issue:
reliability): a loopback proxy gives every connection a random budget of request bytes
and of reply bytes and cuts it where one runs out, so the server sees commands cut off
half way and the client sees replies cut off half way, often several per batch.

Under the default retry policy no request fails, no acknowledged write is lost, no
entity is torn (each view of each entity holds one whole generation) and no read
returns a value as PRESENT that was not written as it reads."""

from __future__ import annotations

import time

import pytest
import redis

from devsupport.redis_server import LocalRedisServer
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from tests.support.faults import VIEWS, DroppingProxy, RetriedErrors, base_time, run_load, stored_generations
from tests.support.store import repo_config

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

USERS = [f"u{i}" for i in range(200)]
# A write of one view to 200 users is ~12 kB, a read ~15 kB with a ~8 kB reply. Budgets
# drawn up to these maxima cut roughly one round trip in eight (measured: 25-30 cuts in 4 s
# over ~200 requests), sometimes two in a row, mid-command and mid-reply alike. Seven in a row, beyond
# retry_attempts, would fail a request: odds of about 1e-7 each.
MAX_REQUEST_BYTES = 400_000
MAX_REPLY_BYTES = 300_000


@pytest.fixture
def server(tmp_path):
    with LocalRedisServer(workdir=tmp_path / "redis", log=lambda _: None) as started:
        yield started
    clients.reset_clients()


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_random_cuts_lose_no_acknowledged_write_tear_nothing_and_read_nothing_wrong(
    server, tmp_path, unique_project, mode
):
    clients.reset_clients()
    proxy = DroppingProxy(server.port)
    try:
        config = repo_config(f"127.0.0.1:{proxy.port}", unique_project, tmp_path)  # default retries
        store, base = RedisHexpireOnlineStore(), base_time()

        def cuts() -> None:
            time.sleep(0.3)
            proxy.cut_at_random(
                seed=3 if mode == "sync" else 4, max_request_bytes=MAX_REQUEST_BYTES, max_reply_bytes=MAX_REPLY_BYTES
            )
            time.sleep(4.0)
            proxy.stop_cutting()

        with RetriedErrors() as retried:
            result = run_load(store, config, USERS, mode, cuts, base)
    finally:
        proxy.close()
        clients.reset_clients()

    print(
        f"\n[{mode}] {proxy.cuts} cuts; {result.writes} writes, {result.reads} reads, "
        f"{retried.count} errors retried, slowest request {result.max_latency:.2f} s"
    )
    assert proxy.cuts >= 8, "too few cuts to mean anything"
    assert retried.count > 0
    assert result.errors == []
    assert result.bad_reads == []
    stored = stored_generations(redis.Redis(port=server.port), config, USERS, base)  # raises on a torn entity
    for view in VIEWS:
        assert {stored[(uid, view.name)] for uid in USERS} == {result.acked[view.name]}, view.name
