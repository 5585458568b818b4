"""The sample repo end to end through a Redis Stream: `python -m feature_repo.stream_producer
--stream` adds its user_activity rows to a stream, `feast-redis-hexpire ingest` writes them,
`get_online_features` serves them; SIGTERM stops the ingester cleanly after its batch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pandas as pd
import pytest

from devsupport.net import free_port, wait_until
from feature_repo.stream_producer import StreamingWorker, stream_entries, user_ids_for
from tests.support.e2e import (
    FEATURES,
    STREAM_VIEW,
    E2ERepo,
    feast_cli,
    make_repo,
    online_dict,
    subprocess_env,
    ts_field_text,
)
from tests.support.ingest import drained

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

USERS = user_ids_for(12)
ACTIVITY_REFS = [f"{STREAM_VIEW}:{name}" for name in FEATURES[STREAM_VIEW]]


@pytest.fixture(scope="module")
def repo(redis_server, tmp_path_factory) -> E2ERepo:
    made = make_repo(
        tmp_path_factory.mktemp("ingest_repo"),
        f"t_{uuid.uuid4().hex[:8]}_ingest",
        redis_server.connection_string,
        count=len(USERS),
        days=1,
    )
    feast_cli(made, "apply")
    return made


def ingest_command(repo: E2ERepo, source: str, stream: str, group: str, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "feast_redis_hexpire.cli",
        "ingest",
        "--repo",
        str(repo.path),
        "--push-source",
        source,
        "--stream",
        stream,
        "--group",
        group,
        *more,
    ]


def test_stream_entries_are_text_the_ingester_reads() -> None:
    when = pd.Timestamp("2026-12-07T22:51:39.123456Z")
    frame = pd.DataFrame(
        {
            "user_id": ["u0001"],
            "last_login_ts": [pd.Timestamp("2026-12-07T20:00:00Z")],
            "last_device_id": ["dev-1"],
            "tx_count_5m": [3],
            "failed_logins_15m": [0],
            "session_country": ["DE"],
            "event_timestamp": [when],
            "created": [when],
        }
    )
    (entry,) = stream_entries(frame)
    assert entry == {
        "user_id": "u0001",
        "last_login_ts": "1796673600",
        "last_device_id": "dev-1",
        "tx_count_5m": "3",
        "failed_logins_15m": "0",
        "session_country": "DE",
        "event_timestamp": "2026-12-07T22:51:39.123456+00:00",
        "created": "2026-12-07T22:51:39.123456+00:00",
    }


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


def test_producer_to_stream_to_ingester_to_reads(repo, raw) -> None:
    stream, group = f"activity:{repo.project}", "feast"
    metrics_port = free_port()
    producer = subprocess.run(
        [
            sys.executable,
            "-m",
            "feature_repo.stream_producer",
            "--repo",
            str(repo.path),
            "--users",
            str(len(USERS)),
            "--batch-size",
            "6",
            "--ticks",
            "2",
            "--interval",
            "0.1",
            "--stream",
            stream,
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert producer.returncode == 0, producer.stderr[-3000:]
    status = json.loads(producer.stdout.strip().splitlines()[-1])
    assert status["push_mode"] == "stream" and status["failed_ticks"] == 0
    produced = raw.xrange(stream)
    assert len(produced) == status["rows_pushed"] >= 12

    ingest = subprocess.Popen(
        ingest_command(
            repo,
            "user_activity_push",
            stream,
            group,
            "--consumer",
            "cli-1",
            "--block-ms",
            "200",
            "--metrics-port",
            str(metrics_port),
        ),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: ingest.poll() is not None or drained(raw, stream, group),
            timeout=90,
            interval=0.2,
            what="the ingester to catch up",
        )
        assert ingest.poll() is None, ingest.stderr.read()[-3000:]
        # More entries while it runs, written in the same process (the worker's stream mode).
        worker = StreamingWorker(repo.store(), USERS, batch_size=12, seed=9, stream_key=stream, stream_client=raw)
        assert worker.tick() == 12
        latest = worker.last_batch
        wait_until(lambda: drained(raw, stream, group), timeout=30, interval=0.1, what="the new entries")
        labels = f'group="{group}",stream="{stream}"'
        wait_until(
            lambda: (
                f"feast_hexpire_stream_event_age_seconds_count{{{labels}}} {len(produced) + 12}.0"
                in scrape(metrics_port)
            ),
            timeout=30,
            interval=0.5,
            what="the ingester's metrics",
        )
        scraped = scrape(metrics_port)
        assert f'feast_hexpire_stream_entries_total{{group="{group}",outcome="written",stream="{stream}"}}' in scraped
        assert f"feast_hexpire_stream_lag_entries{{{labels}}} 0.0" in scraped
        assert f"feast_hexpire_stream_pending_entries{{{labels}}}" in scraped
        started = time.monotonic()
        ingest.send_signal(signal.SIGTERM)
        out, err = ingest.communicate(timeout=20)
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()
    assert ingest.returncode == 0, err[-3000:]
    assert time.monotonic() - started < 15  # a stop, not a hang (generous: a busy machine)
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["entries"] == len(produced) + 12
    assert stats["dead_letters"] == 0 and stats["errors"] == 0
    assert stats["written"] + stats["skipped"] == stats["entries"]
    assert "Traceback" not in err

    got = online_dict(repo.store(), ACTIVITY_REFS, list(latest["user_id"]))
    assert got["tx_count_5m"] == list(latest["tx_count_5m"])
    assert got["last_device_id"] == list(latest["last_device_id"])
    assert got["last_login_ts"] == [ts.to_pydatetime() for ts in latest["last_login_ts"]]
    for _, row in latest.iterrows():
        stored = raw.hget(repo.key(row["user_id"]).decode(), f"_ts:{STREAM_VIEW}")
        assert stored == ts_field_text(row["event_timestamp"])


def test_ingest_refuses_an_unknown_push_source(repo) -> None:
    proc = subprocess.run(
        ingest_command(repo, "no_such_source", "s", "g"),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no_such_source" in proc.stderr and "Traceback" not in proc.stderr
