"""The store's metrics through a real `feast serve --metrics` with two gunicorn workers, on
a copy of the sample repo: pushed events of a known age, reads of known and unknown
entities, then one scrape of Feast's Prometheus endpoint, which aggregates the workers
(prometheus_client's multiprocess mode). Feast serves its metrics on the fixed port 8000."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.request
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from feast_redis_hexpire import metrics
from tests.support.e2e import FeastServe, feast_cli, iso, make_repo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

METRICS_URL = "http://127.0.0.1:8000/metrics"
STREAM_TTL_S = 600
EVENT_AGE_S = 100.0
PUSHED = ["u0001", "u0002", "u0003", "u0004"]
READ = PUSHED + ["u0005", "u0006", "nobody-1", "nobody-2"]  # u0005-6: batch only; nobody: no key
REQUESTS = 12


def _port_8000_free() -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", 8000))
        except OSError:
            return False
    return True


def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(METRICS_URL, timeout=10) as reply:
        text = reply.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= found)


def push_rows(users: list[str], event_time: datetime) -> dict[str, list]:
    return {
        "user_id": users,
        "last_login_ts": [int(event_time.timestamp())] * len(users),
        "last_device_id": [f"dev-{u}" for u in users],
        "tx_count_5m": list(range(len(users))),
        "failed_logins_15m": [0] * len(users),
        "session_country": ["PT"] * len(users),
        "event_timestamp": [event_time.isoformat()] * len(users),
        "created": [event_time.isoformat()] * len(users),
    }


def test_feast_serve_metrics_from_two_workers_match_what_was_pushed_and_read(redis_server, tmp_path):
    assert _port_8000_free(), "port 8000 is taken: feast serve --metrics always serves its metrics there"
    project = f"t_{uuid.uuid4().hex[:8]}_metrics"
    repo = make_repo(tmp_path / "repo", project, redis_server.connection_string, stream_ttl_seconds=STREAM_TTL_S)
    feast_cli(repo, "apply")
    now = datetime.now(timezone.utc)
    feast_cli(repo, "materialize", iso(now - timedelta(days=4)), iso(now), "-v", "user_profile")

    with FeastServe(repo, tmp_path / "serve.log", serve_args=["--workers", "2", "--metrics"]) as serve:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                scrape()
                break
            assert time.monotonic() < deadline, f"no metrics on port 8000:\n{serve.log()}"
            time.sleep(0.3)

        event_time = datetime.now(timezone.utc) - timedelta(seconds=EVENT_AGE_S)
        serve.push(push_rows(PUSHED, event_time))
        serve.push(push_rows(["u0001"], event_time - timedelta(seconds=50)))  # older than stored: stale
        serve.push(push_rows(["u0005"], event_time - timedelta(seconds=STREAM_TTL_S)))  # past its expiry

        read_started = time.time()
        for _ in range(REQUESTS):
            reply = serve.get_online_features(["user_profile:risk_segment", "user_activity:tx_count_5m"], READ)
            assert reply["tx_count_5m"]["statuses"] == ["PRESENT"] * 4 + ["NOT_FOUND"] * 4
            assert reply["risk_segment"]["statuses"] == ["PRESENT"] * 6 + ["NOT_FOUND"] * 2
        read_finished = time.time()
        # each worker hands its counts to prometheus_client once a second (metrics.FLUSH_INTERVAL_S)
        time.sleep(metrics.FLUSH_INTERVAL_S * 2.5)
        samples = scrape()

    def outcome(view: str, kind: str) -> float:
        return value(samples, "feast_hexpire_read_outcomes_total", project=project, feature_view=view, outcome=kind)

    assert outcome("user_profile", "present") == 6 * REQUESTS
    assert outcome("user_profile", "view_absent") == 0
    assert outcome("user_profile", "entity_absent") == 2 * REQUESTS
    assert outcome("user_activity", "present") == 4 * REQUESTS
    assert outcome("user_activity", "view_absent") == 2 * REQUESTS
    assert outcome("user_activity", "entity_absent") == 2 * REQUESTS

    def age(view: str, suffix: str) -> float:
        return value(samples, f"feast_hexpire_served_age_seconds_{suffix}", project=project, feature_view=view)

    assert age("user_activity", "count") == 4 * REQUESTS
    assert age("user_profile", "count") == 6 * REQUESTS
    low = 4 * REQUESTS * (read_started - event_time.timestamp())  # each age: read time - event time
    high = 4 * REQUESTS * (read_finished - event_time.timestamp())
    assert low - 1 <= age("user_activity", "sum") <= high + 1
    inf_bucket = value(
        samples, "feast_hexpire_served_age_seconds_bucket", project=project, feature_view="user_activity", le="+Inf"
    )
    below_60 = value(
        samples, "feast_hexpire_served_age_seconds_bucket", project=project, feature_view="user_activity", le="60.0"
    )
    assert inf_bucket == 4 * REQUESTS and below_60 == 0

    def rows(kind: str) -> float:
        return value(
            samples,
            "feast_hexpire_rows_total",
            project=project,
            feature_view="user_activity",
            path="push",
            outcome=kind,
        )

    assert (rows("written"), rows("skipped_stale"), rows("skipped_expired"), rows("skipped_future")) == (4, 1, 1, 0)
    assert value(samples, "feast_hexpire_view_ttl_seconds", project=project, feature_view="user_activity") == (
        STREAM_TTL_S
    )
    assert value(samples, "feast_hexpire_redis_round_trips_total", op="read") >= REQUESTS
    assert value(samples, "feast_hexpire_redis_round_trips_total", op="exists") == REQUESTS  # the 2 unknown ones
    # Feast's own status counter, fed by the store, agrees
    assert value(samples, "feast_online_features_status_total", feature_view="user_activity", status="present") == (
        4 * REQUESTS
    )
