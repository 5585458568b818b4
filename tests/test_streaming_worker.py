"""StreamingWorker end to end: real pushes into a real Redis through an applied copy of
feature_repo/, in-process and through `feast serve`, plus the module's CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from devsupport.net import free_port, wait_until
from feature_repo.stream_producer import StreamingWorker, stream_ttl_of, user_ids_for, users_per_tick
from tests.support.e2e import (
    FEATURES,
    STREAM_FIELDS,
    STREAM_VIEW,
    E2ERepo,
    FeastServe,
    clear_project,
    feast_cli,
    field_ttls,
    hgetall_text,
    make_repo,
    online_dict,
    project_keys,
    subprocess_env,
    ts_field_text,
)

pytestmark = pytest.mark.e2e

ACTIVITY_REFS = [f"{STREAM_VIEW}:{name}" for name in FEATURES[STREAM_VIEW]]
USERS = user_ids_for(12)


@pytest.fixture(scope="module")
def worker_repo(redis_server, tmp_path_factory) -> E2ERepo:
    import uuid

    repo = make_repo(
        tmp_path_factory.mktemp("worker_repo"),
        f"t_{uuid.uuid4().hex[:8]}_worker",
        redis_server.connection_string,
        count=len(USERS),
        days=1,
    )
    feast_cli(repo, "apply")
    return repo


@pytest.fixture(scope="module")
def feature_store(worker_repo: E2ERepo):
    return worker_repo.store()


def _assert_batch_readable(repo: E2ERepo, store, redis_client, batch: pd.DataFrame) -> None:
    """Every row of `batch` is in Redis with per-field TTLs and reads back through Feast."""
    users = list(batch["user_id"])
    for _, row in batch.iterrows():
        key = repo.key(row["user_id"])
        stored = hgetall_text(redis_client, key)
        assert stored[f"_ts:{STREAM_VIEW}"] == ts_field_text(row["event_timestamp"])
        assert stored["tx_count_5m"] == str(row["tx_count_5m"])
        assert stored["last_device_id"] == row["last_device_id"]
        ttls = field_ttls(redis_client, key, STREAM_FIELDS)
        assert all(0 < t <= repo.stream_ttl_seconds for t in ttls.values()), ttls
    got = online_dict(store, ACTIVITY_REFS, users)
    assert got["tx_count_5m"] == list(batch["tx_count_5m"])
    assert got["failed_logins_15m"] == list(batch["failed_logins_15m"])
    assert got["last_device_id"] == list(batch["last_device_id"])
    assert got["session_country"] == list(batch["session_country"])
    assert got["last_login_ts"] == [ts.to_pydatetime() for ts in batch["last_login_ts"]]


def test_tick_pushes_rows_that_become_readable(worker_repo, feature_store, redis_client):
    worker = StreamingWorker(feature_store, USERS, interval_seconds=0.2, batch_size=5, seed=3)
    assert worker.status()["state"] == "stopped"

    assert worker.tick() == 5
    status = worker.status()
    assert (status["ticks"], status["rows_pushed"], status["failed_ticks"]) == (1, 5, 0)
    assert status["last_error"] is None and status["last_tick_at"] is not None
    batch = worker.last_batch
    assert batch is not None and len(batch) == 5 and batch["user_id"].is_unique
    assert set(batch["user_id"]) <= set(USERS)
    _assert_batch_readable(worker_repo, feature_store, redis_client, batch)

    # A second tick moves the same users' rolling state forward: newer event time wins.
    assert worker.tick() == 5
    _assert_batch_readable(worker_repo, feature_store, redis_client, worker.last_batch)
    assert worker.status()["rows_pushed"] == 10


def test_events_mode_writes_one_event_per_call_and_measures_lag(worker_repo, feature_store, redis_client):
    """write_mode="events": each event goes through its own EventWriter.write, stamped with
    its own event time, and the tick's last event is read back until visible."""
    stats = feature_store._get_provider().online_store.stats
    batches = stats.write_batches
    worker = StreamingWorker(feature_store, USERS, interval_seconds=0.2, batch_size=5, seed=13, write_mode="events")
    assert worker.tick() == 5
    assert stats.write_batches == batches + 5  # one write call per event
    status = worker.status()
    assert status["write_mode"] == "events" and status["rows_pushed"] == 5 and status["failed_ticks"] == 0
    batch = worker.last_batch
    got = online_dict(feature_store, ACTIVITY_REFS, list(batch["user_id"]))
    assert got["tx_count_5m"] == list(batch["tx_count_5m"])
    assert got["last_device_id"] == list(batch["last_device_id"])
    stamps = [hgetall_text(redis_client, worker_repo.key(uid))[f"_ts:{STREAM_VIEW}"] for uid in batch["user_id"]]
    assert len(set(stamps)) == 5  # each event its own event time, not the tick's
    lag = status["lag"]
    assert lag["samples"] == 1 and lag["unseen"] == 0
    # Event time to readable: a write and a read on loopback, well under a second.
    assert 0 < lag["p50_ms"] <= lag["max_ms"] < 1000, lag
    assert 0 < lag["from_write_call_p50_ms"] <= lag["p50_ms"] + 1, lag
    assert worker.tick() == 5 and worker.status()["lag"]["samples"] == 2
    # push mode samples no lag unless asked: its figures stay as they were
    assert StreamingWorker(feature_store, USERS, batch_size=1).status()["lag"] is None
    with pytest.raises(ValueError, match="write_mode"):
        StreamingWorker(feature_store, USERS, write_mode="kafka")


def test_round_robin_visits_every_user_equally(feature_store):
    """Each tick takes the next users in turn: no user twice in a tick, every user once
    per ceil(users / batch) ticks, and over whole rounds every user equally often."""
    worker = StreamingWorker(feature_store, USERS, batch_size=5, seed=3)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    batches = [list(worker.next_batch(t0 + timedelta(seconds=i))["user_id"]) for i in range(12)]
    assert all(len(b) == 5 and len(set(b)) == 5 for b in batches)
    for start in range(len(batches) - 2):  # any 3 consecutive ticks (15 slots) cover all 12
        assert set().union(*batches[start : start + 3]) == set(USERS), start
    visits = pd.Series([uid for b in batches for uid in b]).value_counts()
    assert set(visits.index) == set(USERS) and set(visits) == {60 // len(USERS)}


@pytest.mark.parametrize("users", [1, 7, 300, 10_000])
@pytest.mark.parametrize("ttl", [2, 20, 60, 300])
@pytest.mark.parametrize("interval", [0.2, 1.0])
def test_batch_scales_so_every_user_is_refreshed_twice_per_ttl(users, ttl, interval):
    batch = users_per_tick(users, interval, ttl)
    assert 1 <= batch <= users
    round_seconds = -(-users // batch) * interval  # ticks to visit everyone, in seconds
    assert round_seconds <= max(ttl / 2, interval)
    # ...without pushing everyone every tick when a slower pace is enough.
    if users >= 300 and ttl >= 20:
        assert batch <= users / 5
    # A tick that covers a longer time (slow push, pause) pushes proportionally more.
    assert users_per_tick(users, 3 * interval, ttl) >= min(users, 3 * batch - 2)
    # No expiry (TTL 0 / none): nothing goes stale, the configured batch is enough.
    assert users_per_tick(users, interval, 0, minimum=4) == min(4, users)
    assert users_per_tick(users, interval, None, minimum=4) == min(4, users)


def test_status_reports_the_scaled_batch_and_round_time(feature_store):
    worker = StreamingWorker(feature_store, user_ids_for(10_000), interval_seconds=1.0, batch_size=1, ttl_seconds=60)
    status = worker.status()
    assert status["users"] == 10_000 and status["ttl_seconds"] == 60
    assert status["batch_size"] == users_per_tick(10_000, 1.0, 60)
    assert 0 < status["cycle_seconds"] <= 30  # every user twice per 60 s TTL
    assert status["rate_rows_per_second"] == 0 and status["last_batch_size"] == 0


def test_running_worker_keeps_every_user_fresh(redis_server, redis_client, tmp_path):
    """200 users, a 3 s stream TTL: while the worker runs, every user's stream fields are
    present at every look (a random sample of users per tick leaves many expired); once it
    pauses they all expire within the TTL."""
    import uuid

    repo = make_repo(
        tmp_path / "fresh_repo",
        f"t_{uuid.uuid4().hex[:8]}_fresh",
        redis_server.connection_string,
        stream_ttl_seconds=3,
        count=1,
        days=1,
    )
    feast_cli(repo, "apply")
    store = repo.store()
    assert stream_ttl_of(store) == 3
    users = user_ids_for(200)
    keys = [repo.key(uid) for uid in users]

    def fresh() -> int:
        pipe = redis_client.pipeline(transaction=False)
        for key in keys:
            pipe.hpttl(key, f"_ts:{STREAM_VIEW}")
        return sum(1 for (ttl,) in pipe.execute() if ttl > 0)

    worker = StreamingWorker(store, users, interval_seconds=0.25, batch_size=1, seed=8, ttl_seconds=3)
    worker.start()
    try:
        wait_until(lambda: fresh() == len(users), timeout=15, what="every user pushed once")
        looks = []
        deadline = time.monotonic() + 2 * 3  # two TTLs
        while time.monotonic() < deadline:
            looks.append(fresh())
            time.sleep(0.4)
        assert looks and min(looks) == len(users), looks
        status = worker.status()
        assert status["failed_ticks"] == 0 and status["state"] == "running"
        ideal = 2 * len(users) / 3  # rows/s for two refreshes per TTL
        assert 0.6 * ideal <= status["rate_rows_per_second"] <= 1.6 * ideal, status
        assert status["last_tick_at"] is not None and status["last_tick_seconds"] >= 0
        worker.pause()
        assert worker.status()["rate_rows_per_second"] == 0
        wait_until(lambda: fresh() == 0, timeout=3 + 5, what="every stream field expired")
    finally:
        worker.stop()
        clear_project(redis_client, repo)


def test_rolling_windows_rise_and_decay(feature_store):
    """tx_count_5m / failed_logins_15m are real sliding-window counts per user."""
    worker = StreamingWorker(feature_store, USERS[:2], batch_size=2, seed=11)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    seen_tx = []
    for minute in range(0, 8):
        batch = worker.next_batch(t0 + timedelta(minutes=minute))
        seen_tx.append(batch.set_index("user_id")["tx_count_5m"].to_dict())
        assert (batch["event_timestamp"] == t0 + timedelta(minutes=minute)).all()
        assert (batch["last_login_ts"] <= batch["event_timestamp"]).all()
    # Counts accumulate while events stay inside 5 minutes...
    assert max(max(d.values()) for d in seen_tx) > 0
    # ...and after 20 quiet minutes both windows are empty again.
    state = worker._users[USERS[0]]
    state.prune(t0 + timedelta(minutes=30))
    assert len(state.tx_times) == 0 and len(state.failed_login_times) == 0
    for uid, st in worker._users.items():
        assert all(t > t0 + timedelta(minutes=7) - timedelta(minutes=5) for t in st.tx_times), uid


def test_background_thread_pause_resume_stop(worker_repo, feature_store, redis_client):
    worker = StreamingWorker(feature_store, USERS, interval_seconds=0.15, batch_size=3, seed=5)
    worker.start()
    try:
        wait_until(lambda: worker.status()["ticks"] >= 2, timeout=15, what="two ticks")
        assert worker.status()["state"] == "running"
        worker.pause()
        paused_at = worker.status()
        assert paused_at["state"] == "paused"
        time.sleep(0.6)
        assert worker.status()["ticks"] == paused_at["ticks"]  # nothing ran while paused
        worker.resume()
        wait_until(lambda: worker.status()["ticks"] >= paused_at["ticks"] + 2, timeout=15, what="ticks after resume")
        assert worker.status()["state"] == "running"
    finally:
        worker.stop()
    status = worker.status()
    assert status["state"] == "stopped" and status["failed_ticks"] == 0
    ticks = status["ticks"]
    time.sleep(0.4)
    assert worker.status()["ticks"] == ticks
    assert len(project_keys(redis_client, worker_repo.key_prefix, worker_repo.project)) >= 3


class _SlowPushWorker(StreamingWorker):
    """Makes the in-flight window observable: the real push runs after a delay."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.push_started = threading.Event()
        self.push_finished = threading.Event()

    def _push(self, df):
        self.push_started.set()
        time.sleep(0.8)
        super()._push(df)
        self.push_finished.set()


def test_pause_waits_for_in_flight_tick(worker_repo, feature_store, redis_client):
    worker = _SlowPushWorker(feature_store, USERS, interval_seconds=5, batch_size=4, seed=9)
    worker.start()
    try:
        assert worker.push_started.wait(15)
        assert not worker.push_finished.is_set()
        started = time.monotonic()
        worker.pause()
        # pause() returned only after the push landed in Redis and was counted.
        assert worker.push_finished.is_set()
        assert time.monotonic() - started > 0.3
        status = worker.status()
        assert status["state"] == "paused" and status["ticks"] == 1 and status["rows_pushed"] == 4
        _assert_batch_readable(worker_repo, feature_store, redis_client, worker.last_batch)
    finally:
        worker.stop()


def test_failing_ticks_are_counted_and_the_worker_keeps_going(worker_repo, feature_store, redis_client):
    # Nothing listens on this port: every push is refused.
    bad_url = f"http://127.0.0.1:{free_port()}"
    worker = StreamingWorker(None, USERS, interval_seconds=0.1, batch_size=2, seed=1, push_url=bad_url)
    assert worker.tick() == 0
    status = worker.status()
    assert status["failed_ticks"] == 1 and status["rows_pushed"] == 0
    assert "refused" in status["last_error"].lower() or "urlerror" in status["last_error"].lower()
    worker.start()
    try:
        wait_until(lambda: worker.status()["failed_ticks"] >= 4, timeout=15, what="failing ticks")
        assert worker.status()["state"] == "running"
    finally:
        worker.stop()

    # In-process: an unknown push source fails inside Feast; fixing it recovers the
    # same worker without a restart.
    worker = StreamingWorker(
        feature_store, USERS, interval_seconds=0.1, batch_size=2, seed=2, push_source_name="no_such_push"
    )
    worker.start()
    try:
        wait_until(lambda: worker.status()["failed_ticks"] >= 2, timeout=15, what="failing ticks")
        assert "no_such_push" in worker.status()["last_error"]
        worker.push_source_name = "user_activity_push"
        wait_until(lambda: worker.status()["rows_pushed"] >= 4, timeout=15, what="recovered ticks")
    finally:
        worker.stop()
    assert worker.status()["state"] == "stopped"
    assert len(project_keys(redis_client, worker_repo.key_prefix, worker_repo.project)) >= 2


def test_http_push_through_feast_serve(worker_repo, feature_store, redis_client, tmp_path):
    with FeastServe(worker_repo, tmp_path / "serve.log") as serve:
        worker = StreamingWorker(None, USERS, interval_seconds=1, batch_size=6, seed=4, push_url=serve.url)
        assert worker.tick() == 6, worker.status()
        assert worker.status()["push_mode"] == "http"
        batch = worker.last_batch
        _assert_batch_readable(worker_repo, feature_store, redis_client, batch)
        reply = serve.get_online_features(["user_activity:tx_count_5m"], list(batch["user_id"]))
        assert reply["tx_count_5m"]["values"] == list(batch["tx_count_5m"])
        assert reply["tx_count_5m"]["statuses"] == ["PRESENT"] * 6


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_cli_runs_until_stopped(worker_repo, redis_client, signum):
    """Stops cleanly on Ctrl-C and on SIGTERM, also when started with SIGINT ignored (as
    here when the suite itself runs as a background job)."""
    clear_project(redis_client, worker_repo)  # "keys appeared" must mean "the CLI pushed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "feature_repo.stream_producer",
            "--repo",
            str(worker_repo.path),
            "--users",
            str(len(USERS)),
            "--batch-size",
            "4",
            "--interval",
            "0.3",
            "--seed",
            "1",
        ],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: (
                proc.poll() is not None
                or len(project_keys(redis_client, worker_repo.key_prefix, worker_repo.project)) >= 4
            ),
            timeout=60,
            interval=0.2,
            what="the CLI's first push",
        )
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    status = json.loads(out.strip().splitlines()[-1])
    assert status["state"] == "stopped"
    assert status["ticks"] >= 1 and status["failed_ticks"] == 0
    assert status["rows_pushed"] == 4 * status["ticks"]
    assert "Traceback" not in err
