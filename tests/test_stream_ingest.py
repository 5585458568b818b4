"""The Redis Streams ingester against real servers and a real FeatureStore, Redis and Valkey:
entries written as `store.push` writes them and readable through `get_online_features`, one
write round trip per batch, dead letters, rows skipped by the write rules, duplicate
delivery, a consumer SIGKILLed mid-batch, several consumers in one group, a Redis restart
during ingestion, and the lag metrics."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest
import redis
from feast import FeatureStore
from feast import metrics as feast_metrics
from feast.data_source import PushMode

from devsupport.redis_server import LocalRedisServer
from feast_redis_hexpire import clients, metrics
from feast_redis_hexpire.stream_ingest import StreamIngester, run_until
from tests.support.faults import ClientProcess, RetriedErrors, aof_workdir
from tests.support.ingest import SOURCE, drained, group_info, make_store, xadd_all
from tests.support.topology import count_round_trips

pytestmark = [pytest.mark.both_servers, pytest.mark.timeout(180)]

FEATURES = ["activity:tx_count_5m", "activity:last_amount"]


@pytest.fixture
def store(redis_server, redis_client, tmp_path, unique_project) -> Iterator[FeatureStore]:
    yield make_store(tmp_path, redis_server.connection_string, unique_project)


@pytest.fixture
def stream(unique_project) -> str:
    return f"events:{unique_project}"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def entry(user: str, count: int, amount: float, when: datetime, **extra: str) -> dict[str, str]:
    """An entry as a producer would XADD it: every value as text."""
    fields = {
        "user_id": user,
        "tx_count_5m": str(count),
        "last_amount": repr(amount),
        "event_timestamp": when.isoformat(),
    }
    fields.update(extra)
    return fields


def group_state(client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    info = group_info(client, stream, group)
    assert info is not None, f"no group {group}"
    return info


def online(store: FeatureStore, users: list[str]) -> dict[str, list[Any]]:
    return store.get_online_features(features=FEATURES, entity_rows=[{"user_id": u} for u in users]).to_dict()


# ---------------------------------------------------------------- writes


def test_entries_are_written_as_push_writes_them_and_read_back(
    redis_server, redis_client, store, stream, tmp_path, unique_project
):
    users = [f"u{i}" for i in range(50)]
    when = utc_now().replace(microsecond=123456) - timedelta(seconds=5)
    entries = [entry(u, i, i + 0.25, when, note="extra fields are ignored") for i, u in enumerate(users)]
    xadd_all(redis_client, stream, entries)

    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1", batch=100)
    run_until(ingester, lambda: drained(redis_client, stream, "feast"))
    assert ingester.stats.written == 50 and ingester.stats.dead_letters == 0

    got = online(store, users)
    assert got["tx_count_5m"] == list(range(50))
    assert got["last_amount"] == [i + 0.25 for i in range(50)]

    # The same events through store.push, into another project: the same bytes and TTLs.
    pushed = make_store(tmp_path, redis_server.connection_string, unique_project + "p")
    frame = pd.DataFrame(
        {
            "user_id": users,
            "tx_count_5m": list(range(50)),
            "last_amount": [i + 0.25 for i in range(50)],
            "event_timestamp": [when] * 50,
        }
    )
    pushed.push(SOURCE, frame, to=PushMode.ONLINE)
    for user in users[:10]:
        ours = redis_client.hgetall(f"fs:{unique_project}:user_id={user}")
        theirs = redis_client.hgetall(f"fs:{unique_project}p:user_id={user}")
        assert ours == theirs
        fields = list(ours)
        assert redis_client.hpexpiretime(f"fs:{unique_project}:user_id={user}", *fields) == (
            redis_client.hpexpiretime(f"fs:{unique_project}p:user_id={user}", *fields)
        )


def test_a_batch_is_one_read_and_one_write_and_its_ack_rides_with_the_next_read(redis_client, store, stream):
    when = utc_now() - timedelta(seconds=1)
    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1", batch=500)
    ingester.run_once(block_ms=0)  # creates the group, reads its own (empty) history
    ingester._next_claim = time.monotonic() + 3600  # no claim pass in the measured steps
    xadd_all(redis_client, stream, [entry(f"u{i}", i, 1.0, when) for i in range(300)])
    with count_round_trips() as trips:
        step = ingester.run_once(block_ms=0)
    assert (step.source, step.entries, step.written) == ("new", 300, 300)
    assert sum(trips.values()) == 2, trips  # XREADGROUP, the write
    assert group_state(redis_client, stream, "feast")["pending"] == 300  # written, not yet acknowledged
    with count_round_trips() as trips:
        assert ingester.run_once(block_ms=0).entries == 0
    assert sum(trips.values()) == 1, trips  # XACK and the next XREADGROUP, pipelined
    assert drained(redis_client, stream, "feast")


def test_group_and_stream_are_created_and_an_existing_group_is_kept(redis_client, store, stream):
    StreamIngester(store, SOURCE, stream, "feast").ensure_group()
    assert redis_client.exists(stream) and group_state(redis_client, stream, "feast")["last-delivered-id"] == b"0-0"
    xadd_all(redis_client, stream, [entry("u1", 1, 1.0, utc_now())])
    redis_client.xgroup_setid(stream, "feast", "$")
    StreamIngester(store, SOURCE, stream, "feast").ensure_group()  # BUSYGROUP: kept as it is
    assert group_state(redis_client, stream, "feast")["last-delivered-id"] != b"0-0"


# ---------------------------------------------------------------- dead letters and skipped rows


def test_unwritable_entries_go_to_the_dead_letter_stream_and_never_block(redis_client, store, stream):
    when = utc_now() - timedelta(seconds=1)
    bad = {
        "wrong type": entry("u2", 0, 1.0, when) | {"tx_count_5m": "abc"},
        "missing key": {k: v for k, v in entry("u3", 3, 1.0, when).items() if k != "user_id"},
        "bad time": entry("u4", 4, 1.0, when) | {"event_timestamp": "last tuesday"},
        "naive time": entry("u5", 5, 1.0, when) | {"event_timestamp": "2026-01-01T00:00:00"},
        "no time": {k: v for k, v in entry("u6", 6, 1.0, when).items() if k != "event_timestamp"},
        "out of range": entry("u7", 0, 1.0, when) | {"tx_count_5m": str(2**70)},  # the writer refuses it
    }
    good = [entry("u1", 1, 1.5, when), entry("u8", 8, 8.5, when)]
    ids = xadd_all(redis_client, stream, [good[0], *bad.values(), good[1]])

    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1")
    run_until(ingester, lambda: drained(redis_client, stream, "feast"))
    assert ingester.stats.dead_letters == len(bad) and ingester.stats.written == 2

    assert online(store, ["u1", "u8"])["tx_count_5m"] == [1, 8]
    assert online(store, ["u2", "u7"])["tx_count_5m"] == [None, None]  # nothing of a bad entry stored
    letters = redis_client.xrange(stream + ":dead")
    assert [fields[b"_id"] for _, fields in letters] == ids[1:-1]
    by_id = {fields[b"_id"]: fields for _, fields in letters}
    for entry_id, (what, fields) in zip(ids[1:-1], bad.items()):
        letter = by_id[entry_id]
        assert letter[b"_stream"] == stream.encode() and letter[b"_group"] == b"feast"
        for name, value in fields.items():  # the original entry, field by field
            assert letter[name.encode()] == value.encode(), what
    reasons = {what: by_id[entry_id][b"_reason"].decode() for entry_id, what in zip(ids[1:-1], bad)}
    assert "'tx_count_5m'" in reasons["wrong type"] and "abc" in reasons["wrong type"]
    assert "user_id" in reasons["missing key"]
    assert "last tuesday" in reasons["bad time"]
    assert "no UTC offset" in reasons["naive time"]
    assert "missing event time" in reasons["no time"]
    assert "tx_count_5m" in reasons["out of range"] and str(2**70) in reasons["out of range"]


def test_rows_the_write_rules_skip_are_counted_not_dead_lettered(redis_client, store, stream):
    now = utc_now()
    xadd_all(redis_client, stream, [entry("u1", 2, 2.0, now - timedelta(seconds=1))])
    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1")
    run_until(ingester, lambda: drained(redis_client, stream, "feast"))
    xadd_all(
        redis_client,
        stream,
        [
            entry("u1", 1, 1.0, now - timedelta(seconds=30)),  # older than stored: newest wins
            entry("u2", 1, 1.0, now - timedelta(hours=2)),  # past its 600 s expiry already
        ],
    )
    run_until(ingester, lambda: drained(redis_client, stream, "feast"))
    assert (ingester.stats.written, ingester.stats.skipped, ingester.stats.dead_letters) == (1, 2, 0)
    assert not redis_client.exists(stream + ":dead")
    assert online(store, ["u1", "u2"])["tx_count_5m"] == [2, None]


# ---------------------------------------------------------------- delivery


def stored(client: redis.Redis, project: str, users: list[str]) -> list[tuple[dict, list]]:
    """Each user's hash and its fields' expiry times."""
    result = []
    for user in users:
        key = f"fs:{project}:user_id={user}"
        fields = client.hgetall(key)
        result.append((fields, client.hpexpiretime(key, *fields) if fields else []))
    return result


def test_a_redelivered_entry_rewrites_the_same_value(redis_client, store, stream, unique_project):
    users = [f"u{i}" for i in range(40)]
    base = utc_now() - timedelta(seconds=10)
    xadd_all(redis_client, stream, [entry(u, i, i / 4, base + timedelta(microseconds=i)) for i, u in enumerate(users)])
    first = StreamIngester(store, SOURCE, stream, "feast", consumer="c1")
    run_until(first, lambda: drained(redis_client, stream, "feast"))
    before = stored(redis_client, unique_project, users)

    # Every entry delivered again, to another consumer (as after a crash before XACK).
    redis_client.xgroup_setid(stream, "feast", "0")
    again = StreamIngester(store, SOURCE, stream, "feast", consumer="c2")
    run_until(again, lambda: drained(redis_client, stream, "feast"))
    assert again.stats.entries == 40 and again.stats.written == 40  # the same event time is rewritten
    assert stored(redis_client, unique_project, users) == before
    assert online(store, users)["tx_count_5m"] == list(range(40))


def test_consumers_of_one_group_share_the_entries(redis_client, store, stream):
    users = [f"u{i}" for i in range(2000)]
    when = utc_now() - timedelta(seconds=1)
    xadd_all(redis_client, stream, [entry(u, i, 0.5, when) for i, u in enumerate(users)])
    ingesters = [StreamIngester(store, SOURCE, stream, "feast", consumer=f"c{i}", batch=50) for i in range(3)]
    ingesters[0].ensure_group()
    threads = [threading.Thread(target=ingester.run) for ingester in ingesters]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while not drained(redis_client, stream, "feast") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        for ingester in ingesters:
            ingester.stop()
        for thread in threads:
            thread.join(10)
    counts = [ingester.stats.entries for ingester in ingesters]
    assert sum(counts) == 2000 and all(counts), counts  # each entry delivered once, all took part
    assert sum(ingester.stats.claimed for ingester in ingesters) == 0
    assert online(store, users[::97])["tx_count_5m"] == list(range(0, 2000, 97))


def test_a_consumer_killed_mid_batch_loses_no_event(redis_client, store, stream):
    """SIGKILL while the consumer holds entries it read and has not acknowledged: another
    consumer claims them after the idle time and writes them."""
    users = [f"u{i}" for i in range(3000)]
    when = utc_now() - timedelta(seconds=1)
    xadd_all(redis_client, stream, [entry(u, i, i + 0.5, when) for i, u in enumerate(users)])
    StreamIngester(store, SOURCE, stream, "feast").ensure_group()

    def consume(report) -> None:
        ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="doomed", batch=100)
        while True:
            step = ingester.run_once(block_ms=100)
            report(f"{step.source} {step.entries}")

    held = 0
    for _attempt in range(5):  # a kill may land between an XACK and the next read: try again
        child = ClientProcess(consume)
        deadline = time.monotonic() + 60
        while len([line for line in child.lines if line.startswith("new")]) < 3 and time.monotonic() < deadline:
            assert not child.errors(), child.errors()
            time.sleep(0.002)
        child.kill()
        held = len(redis_client.xpending_range(stream, "feast", "-", "+", 1000, consumername="doomed"))
        if held:
            break
    assert held > 0, "no kill landed mid-batch"
    assert not drained(redis_client, stream, "feast")

    rescuer = StreamIngester(store, SOURCE, stream, "feast", consumer="rescuer", batch=500, claim_idle_ms=300)
    run_until(rescuer, lambda: drained(redis_client, stream, "feast"))
    assert rescuer.stats.claimed >= held
    got = online(store, users)
    assert got["tx_count_5m"] == list(range(3000))
    assert got["last_amount"] == [i + 0.5 for i in range(3000)]


def test_a_restarted_consumer_finishes_its_own_pending_entries_first(redis_client, store, stream):
    when = utc_now() - timedelta(seconds=1)
    xadd_all(redis_client, stream, [entry(f"u{i}", i, 1.0, when) for i in range(20)])
    StreamIngester(store, SOURCE, stream, "feast").ensure_group()
    redis_client.xreadgroup("feast", "worker", {stream: ">"}, count=20)  # delivered, then the process died
    again = StreamIngester(store, SOURCE, stream, "feast", consumer="worker")
    step = again.run_once(block_ms=0)
    assert (step.source, step.written) == ("own", 20)
    assert again.run_once(block_ms=0).source == "none"  # its history is done (and acknowledged)
    assert drained(redis_client, stream, "feast")


def test_stop_ends_run_after_the_batch_in_hand(redis_client, store, stream):
    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1", block_ms=200)
    thread = threading.Thread(target=ingester.run)
    thread.start()
    xadd_all(redis_client, stream, [entry("u1", 1, 1.0, utc_now())])
    deadline = time.monotonic() + 20
    while ingester.stats.written < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    ingester.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 1.0
    assert drained(redis_client, stream, "feast")


# ---------------------------------------------------------------- metrics


@pytest.fixture
def metrics_on() -> Iterator[None]:
    before = feast_metrics._config
    feast_metrics._config = feast_metrics.build_metrics_flags(None)
    try:
        yield
    finally:
        feast_metrics._config = before


def test_lag_pending_and_event_age_are_in_the_metrics(redis_client, store, stream, metrics_on):
    when = utc_now() - timedelta(seconds=2)
    xadd_all(redis_client, stream, [entry(f"u{i}", i, 1.0, when) for i in range(30)])
    xadd_all(redis_client, stream, [entry("u99", 1, 1.0, when) | {"tx_count_5m": "x"}])
    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1", batch=10)
    ingester.ensure_group()
    ingester.run_once(block_ms=0)  # the group state is reported before the first read
    assert metrics.INGEST_LAG.labels(stream, "feast")._value.get() == 31
    assert metrics.INGEST_PENDING.labels(stream, "feast")._value.get() == 0
    run_until(ingester, lambda: drained(redis_client, stream, "feast"))
    ingester._next_stats = 0.0
    ingester.run_once(block_ms=0)
    assert metrics.INGEST_LAG.labels(stream, "feast")._value.get() == 0
    metrics.flush()
    written = metrics.INGEST_ENTRIES.labels(stream, "feast", "written")._value.get()
    dead = metrics.INGEST_ENTRIES.labels(stream, "feast", "dead_letter")._value.get()
    assert (written, dead) == (30, 1)
    child = metrics.INGEST_AGE.labels(stream, "feast")
    ages = [bucket.get() for bucket in child._buckets]
    assert sum(ages) == 30
    # written about 2 s after their event time: every age falls in the (1 s, 2.5 s] bucket or the next
    assert sum(ages[metrics.LAG_BUCKETS_SECONDS.index(2.5) :]) == 30
    assert 30 * 2.0 <= child._sum.get() < 30 * 30


# ---------------------------------------------------------------- a Redis restart


@pytest.fixture
def persistent_server(tmp_path) -> Iterator[LocalRedisServer]:
    clients.reset_clients()
    with (
        aof_workdir(tmp_path / "redis") as workdir,
        LocalRedisServer(
            extra_args=["--appendonly", "yes", "--appendfsync", "always"], workdir=workdir, log=lambda _: None
        ) as started,
    ):
        yield started
    clients.reset_clients()


def test_a_redis_restart_during_ingestion_loses_and_duplicates_nothing(persistent_server, tmp_path, unique_project):
    server = persistent_server
    store = make_store(tmp_path, server.connection_string, unique_project)
    raw = redis.Redis(port=server.port)
    stream = "events"
    users = [f"u{i}" for i in range(1000)]
    base = utc_now().replace(microsecond=0) - timedelta(seconds=30)
    generations = 12

    def generation(g: int) -> list[dict[str, str]]:  # every value and the event time say g
        return [entry(u, g, g + 0.5, base + timedelta(microseconds=g)) for u in users]

    xadd_all(raw, stream, [fields for g in range(1, 7) for fields in generation(g)])
    ingester = StreamIngester(store, SOURCE, stream, "feast", consumer="c1", batch=100, claim_idle_ms=500)
    ingester.ensure_group()
    thread = threading.Thread(target=ingester.run)
    rng = random.Random(5)
    with RetriedErrors() as retried:
        thread.start()
        _restart_while_producing(server, stream, generation, generations, rng)
        deadline = time.monotonic() + 90
        raw = redis.Redis(port=server.port)
        try:
            while not drained(raw, stream, "feast") and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            ingester.stop()
            thread.join(30)
    assert drained(raw, stream, "feast"), group_state(raw, stream, "feast")
    assert ingester.stats.dead_letters == 0 and not raw.exists(stream + ":dead")
    # The producer's client retries a pipeline cut by a restart, so an entry may be in the
    # stream twice: every (user, generation) is there, and every entry was ingested.
    produced = {(f[b"user_id"], int(f[b"tx_count_5m"])) for _, f in raw.xrange(stream)}
    assert produced == {(u.encode(), g) for u in users for g in range(1, generations + 1)}
    assert ingester.stats.written == ingester.stats.entries >= raw.xlen(stream)
    assert retried.count > 0, "no restart hit a request in flight"
    for fields, _expiry in stored(raw, unique_project, users):
        assert fields[b"activity:tx_count_5m"] == str(generations).encode()
        assert fields[b"activity:last_amount"] == f"{generations}.5".encode()
        assert int(fields[b"_ts:activity"]) == int(base.timestamp()) * 1_000_000 + generations
    got = online(store, users)
    assert got["tx_count_5m"] == [generations] * len(users)
    print(f"\ningester through {generations - 6} restarts: {ingester.stats.as_dict()}")


def _restart_while_producing(server, stream, generation, generations, rng) -> None:
    """Generations 7.. produced one by one, each after a restart (kill or SHUTDOWN NOSAVE)
    that lands while the ingester works through the entries before it."""
    for g in range(7, generations + 1):
        time.sleep(rng.uniform(0.02, 0.1))
        server.restart("kill" if g % 2 else "shutdown", down_for=rng.uniform(0.0, 0.3))
        producer = redis.Redis(port=server.port)
        xadd_all(producer, stream, generation(g))
        producer.close()
