"""Clients that die or race, sync and async (issue: reliability). The writers are real
processes (forked from the test, see tests.support.faults.ClientProcess): SIGKILL takes
one down at a random moment, and several write the same entities at once.

- A writer killed mid-write, several times: every view of every entity holds one whole
  generation (all-old or all-new), never less than what was acknowledged.
- Concurrent writers with overlapping entities and shuffled event times: per (entity,
  view) the newest event any of them wrote is what Redis holds, whoever wrote last.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis

from devsupport.net import wait_until
from devsupport.redis_server import LocalRedisServer
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from tests.support.faults import VIEWS, ClientProcess, base_time, stamped_row, stamped_rows, stored_generations
from tests.support.store import repo_config

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path):
    clients.reset_clients()
    with LocalRedisServer(workdir=tmp_path / "redis", log=lambda _: None) as started:
        yield started
    clients.reset_clients()


# ---------------------------------------------------------------- a writer killed mid-write

KILLED_USERS = [f"u{i}" for i in range(1000)]
KILLS = 5


def _generation_writer(config, mode: str, first: int, base):
    """Generation after generation of every view to every user, one `online_write_batch`
    each (twenty script calls of 50 entities, one round trip each), reporting
    `<view> <generation>` when one is acknowledged, until killed."""

    def write(report) -> None:
        store = RedisHexpireOnlineStore()
        if mode == "sync":
            for generation in range(first, first + 10_000):
                for view in VIEWS:
                    store.online_write_batch(config, view, stamped_rows(view, KILLED_USERS, generation, base), None)
                    report(f"{view.name} {generation}")
            return

        async def main() -> None:
            for generation in range(first, first + 10_000):
                for view in VIEWS:
                    rows = stamped_rows(view, KILLED_USERS, generation, base)
                    await store.online_write_batch_async(config, view, rows, None)
                    report(f"{view.name} {generation}")

        asyncio.run(main())

    return write


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_writer_killed_at_random_moments_leaves_every_entity_whole(server, tmp_path, unique_project, mode):
    config = repo_config(server.connection_string, unique_project, tmp_path, write_chunk_size=50)
    raw, base, rng = redis.Redis(port=server.port), base_time(), random.Random(5)
    first, mid_batch_kills = 1, 0
    for _round in range(KILLS):
        writer = ClientProcess(_generation_writer(config, mode, first, base))
        wait_until(  # every view acknowledged once this round: the checks below compare with that
            lambda w=writer: len({line.split()[0] for line in w.lines}) == len(VIEWS) or w.returncode is not None,
            30,
            "the writer's first acknowledgement of every view",
        )
        time.sleep(rng.uniform(0.0, 0.5))
        writer.kill()
        assert writer.errors() == []
        acked: dict[str, int] = {}
        for line in writer.lines:
            view, generation = line.split()
            acked[view] = int(generation)
        stored = stored_generations(raw, config, KILLED_USERS, base)  # raises on a torn entity
        for view in VIEWS:
            held = {stored[(uid, view.name)] for uid in KILLED_USERS}
            # all-old or all-new: what was acknowledged, or the generation in flight
            assert held <= {acked[view.name], acked[view.name] + 1}, (view.name, held, acked)
            mid_batch_kills += len(held) == 2
        first = max(acked.values()) + 2
    print(f"\n[{mode}] {mid_batch_kills} of {KILLS} kills landed with a write half sent")


# ---------------------------------------------------------------- concurrent writers

RACING_USERS = [f"u{i}" for i in range(100)]
WRITERS = ("sync", "async", "sync")
STEPS = 20


def _plan(writer: int, rng: random.Random) -> dict[str, list[tuple[str, int]]]:
    """Per view, (user, stamp) rows in shuffled order: stamps `step * len(WRITERS) +
    writer + 1` are unique across writers, so exactly one write per (user, view) is the
    newest. Each writer skips half of them at random, so any writer may hold the newest."""
    plan = {}
    for view in VIEWS:
        rows = [
            (uid, step * len(WRITERS) + writer + 1)
            for uid in RACING_USERS
            for step in range(STEPS)
            if rng.random() < 0.5
        ]
        rng.shuffle(rows)
        plan[view.name] = rows
    return plan


def _racing_writer(config, mode: str, plan, base, start_at: float):
    """Waits for the common start time, then writes its plan in batches of 50 rows,
    alternating views, and reports what the store counted."""

    def batches():
        by_name = {view.name: view for view in VIEWS}
        cursors = {name: 0 for name in plan}
        while any(cursors[name] < len(plan[name]) for name in plan):
            for name, rows in plan.items():
                chunk = rows[cursors[name] : cursors[name] + 50]
                cursors[name] += 50
                if chunk:
                    yield by_name[name], [stamped_row(by_name[name], uid, stamp, base) for uid, stamp in chunk]

    def write(report) -> None:
        store = RedisHexpireOnlineStore()
        time.sleep(max(0.0, start_at - time.time()))
        began = time.time()
        if mode == "sync":
            for view, rows in batches():
                store.online_write_batch(config, view, rows, None)
        else:

            async def main() -> None:
                for view, rows in batches():
                    await store.online_write_batch_async(config, view, rows, None)

            asyncio.run(main())
        stats = store.stats
        report(f"{began} {time.time()} {stats.rows_written} {stats.rows_skipped_stale}")

    return write


def test_concurrent_writers_leave_the_newest_event_per_entity_and_view(server, tmp_path, unique_project):
    config = repo_config(server.connection_string, unique_project, tmp_path)
    base, rng = base_time(), random.Random(17)
    plans = [_plan(w, rng) for w in range(len(WRITERS))]
    start_at = time.time() + 0.5
    writers = [ClientProcess(_racing_writer(config, mode, plan, base, start_at)) for mode, plan in zip(WRITERS, plans)]
    for writer in writers:
        assert writer.wait() == 0, writer.lines
    reports = [[float(x) for x in writer.lines[-1].split()] for writer in writers]
    spans = [(began, ended) for began, ended, _, _ in reports]
    assert max(began for began, _ in spans) < min(ended for _, ended in spans), f"writers did not overlap: {spans}"

    expected: dict[tuple[str, str], int | None] = {(uid, v.name): None for uid in RACING_USERS for v in VIEWS}
    for plan in plans:
        for view, rows in plan.items():
            for uid, stamp in rows:
                if expected[(uid, view)] is None or stamp > expected[(uid, view)]:
                    expected[(uid, view)] = stamp
    assert stored_generations(redis.Redis(port=server.port), config, RACING_USERS, base) == expected

    # Every row was either written or counted as stale, and both happened: the race was real.
    sent = sum(len(rows) for plan in plans for rows in plan.values())
    written, stale = sum(r[2] for r in reports), sum(r[3] for r in reports)
    assert written + stale == sent
    assert stale > 0 and written > 0
    print(f"\n{len(WRITERS)} writers, {sent} rows: {int(written)} written, {int(stale)} skipped as older")
