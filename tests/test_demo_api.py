"""The demo's JSON API through FastAPI's TestClient: a real working copy of feature_repo/
applied with the FeatureStore API, real materialization and pushes into the test Redis.

One runtime per module (setup costs a few seconds); tests run in file order and the
ones that change the loaded users or TTLs put them back.
"""

from __future__ import annotations

import struct
import time
import uuid
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from demo.app import create_app
from demo.latency import LatencyLog
from demo.runtime import MAX_USERS, DemoRuntime
from devsupport.net import wait_until
from feast_redis_hexpire import clients
from feast_redis_hexpire.redis_version import hello_info
from feast_redis_hexpire.vector_schema import vector_text
from feature_repo.stream_producer import StreamingWorker, user_ids_for
from tests.support.e2e import STREAM_FIELDS as E2E_STREAM_FIELDS

pytestmark = pytest.mark.e2e

USERS = 30
BATCH_TTL = 7200
STREAM_TTL = 300
ALL_REFS = [
    "user_profile:country_iso",
    "user_profile:risk_segment",
    "user_profile:account_age_days",
    "user_tx_stats:tx_count_7d",
    "user_tx_stats:avg_amount_30d",
    "user_tx_stats:chargeback_count_180d",
    "user_activity:last_login_ts",
    "user_activity:last_device_id",
    "user_activity:tx_count_5m",
    "user_activity:failed_logins_15m",
    "user_activity:session_country",
    "user_embedding:embedding",
]
# The demo's stream fields: user_activity's and the vector view's (feature_repo/user_embedding.py).
STREAM_FIELDS = set(E2E_STREAM_FIELDS) | {"embedding", "_ts:user_embedding"}


@pytest.fixture(scope="module")
def runtime(redis_server, tmp_path_factory):
    rt = DemoRuntime(
        redis_server.connection_string,
        tmp_path_factory.mktemp("demo_api"),
        project=f"t_{uuid.uuid4().hex[:8]}_demo",
        users=USERS,
        batch_ttl_seconds=BATCH_TTL,
        stream_ttl_seconds=STREAM_TTL,
        worker_interval=0.2,
        worker_batch_size=5,
        start_worker=False,
        log=lambda message: None,
    ).setup()
    try:
        yield rt
    finally:
        rt.close()
        # The demo used the process-wide cached client from several threads, so its pool
        # holds several connections: later tests get fresh clients.
        clients.reset_clients()


@pytest.fixture(scope="module")
def client(runtime):
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


def _key(runtime, user_id: str) -> str:
    return f"fs:{runtime.project}:user_id={user_id}"


def assert_client_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    for word in words:
        assert word in body["error"], body
    return body


# ---------------------------------------------------------------- page and state


def test_index_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for element in (
        *("bulk-btn", "read-btn", "batch-btn", "inspect-btn", "worker-btn", "reset-btn"),
        *("worker-coverage", "worker-rate", "worker-last-tick", "latency-chart", "bulk-errors", "batch-errors"),
    ):
        assert f'id="{element}"' in html
    # No build step and no network: nothing is loaded from elsewhere.
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html


def test_state_reports_entities_ttls_counters_and_worker(client, runtime):
    state = client.get("/state").json()
    assert state["project"] == runtime.project
    assert state["entities"] == USERS
    assert state["users_loaded"] == USERS
    assert (state["first_user"], state["last_user"]) == ("u0001", user_ids_for(USERS)[-1])
    assert state["ttl"] == {"batch_seconds": BATCH_TTL, "stream_seconds": STREAM_TTL}
    assert set(state["counters"]) >= {"rows_written", "read_calls", "entities_read", "write_batches"}
    assert state["counters"]["rows_written"] >= 2 * USERS  # both batch views, every user
    # The start-up read that warms Feast's read path is the demo's own, not one of the page's:
    # before the page reads, the Reads tile shows none (the latency chart has none either).
    assert (state["counters"]["read_calls"], state["counters"]["entities_read"]) == (0, 0)
    assert state["latency"]["points"] == []
    assert runtime.online_store.stats.read_calls == 1  # it did read, once
    # The page names the commands stream rows are written with, as doctor's "write mode".
    hsetex = hello_info(runtime.client.execute_command("HELLO")).has_hsetex
    assert state["write_mode"] == (
        {"mode": "hsetex", "commands": "HSETEX"} if hsetex else {"mode": "hpexpireat", "commands": "HSET + HPEXPIREAT"}
    )
    assert state["worker"]["state"] == "paused"  # start_worker=False
    assert state["worker"]["last_error"] is None
    assert [f["ref"] for f in state["features"]] == ALL_REFS
    kinds = {f["view"]: f["kind"] for f in state["features"]}
    assert kinds == {
        "user_profile": "batch",
        "user_tx_stats": "batch",
        "user_activity": "stream",
        "user_embedding": "stream",
    }
    assert state["feature_services"]["fraud_model_v1"] == [
        "user_profile:risk_segment",
        "user_tx_stats:tx_count_7d",
        "user_tx_stats:avg_amount_30d",
        "user_activity:tx_count_5m",
        "user_activity:failed_logins_15m",
        "user_activity:last_device_id",
    ]
    load = state["last_bulk_load"]
    assert load["users"] == USERS and load["seconds"] > 0
    assert [v["view"] for v in load["views"]] == ["user_profile", "user_tx_stats", "user_activity", "user_embedding"]
    # The generated stream rows are dated within the stream TTL: none is skipped as expired,
    # so no start-up warning reads like a fault.
    assert load["rows_skipped_expired"] == 0 and load["notes"] == [], load
    written = {v["view"]: v["written"] for v in load["views"]}
    assert written["user_activity"] == written["user_embedding"] == USERS


def test_served_age_per_view_is_measured_in_redis(client, runtime, raw):
    """now minus `_ts:<view>` of the sampled users, per view, against what Redis holds."""
    time.sleep(1.1)  # a new sample is due
    before = time.time()
    served = client.get("/state").json()["served_age"]
    views = served["latest"]["views"]
    assert set(views) == {"user_profile", "user_tx_stats", "user_activity", "user_embedding"}
    assert views["user_activity"]["kind"] == "stream" and views["user_activity"]["ttl_seconds"] == STREAM_TTL
    ages = []
    for uid in runtime.user_ids:
        (ts,) = raw.hmget(_key(runtime, uid), "_ts:user_profile")
        ages.append(before - int(ts) / 1e6)
    profile = views["user_profile"]
    assert profile["present"] == profile["sampled"] == USERS
    assert min(ages) - 1 <= profile["p50_s"] <= profile["p99_s"] <= profile["max_s"] <= max(ages) + 5
    assert len(served["samples"]) >= 1 and served["samples"][-1] == served["latest"]


def test_unknown_endpoint_is_json_404(client):
    assert_client_error(client.get("/nope"), 404)


# ---------------------------------------------------------------- read


def test_read_all_features_with_kinds_ttls_and_latency(client, runtime, raw):
    body = client.post("/read", json={"user_id": "u0003"}).json()
    assert body["user_id"] == "u0003"
    assert body["key"] == _key(runtime, "u0003")
    assert body["latency_ms"] > 0
    assert [f["ref"] for f in body["features"]] == ALL_REFS
    binary = {k.decode(): v for k, v in runtime.client.hgetall(_key(runtime, "u0003")).items()}
    # The embedding is stored as raw little-endian float32s (a vector-indexed field).
    embedding = binary.pop("embedding")
    assert len(embedding) == 4 * 8
    stored = {k: v.decode() for k, v in binary.items()}
    key_ttl = raw.ttl(_key(runtime, "u0003"))
    for feature in body["features"]:
        assert feature["status"] == "PRESENT", feature
        if feature["feature"] == "embedding":
            assert feature["value"] == pytest.approx(list(struct.unpack("<8f", embedding)), abs=1e-6)
            assert feature["text"] == vector_text(feature["value"], "FLOAT32")  # as Inspect shows it
            assert feature["text"].startswith("float32[8] [") and feature["text"].endswith(", …]")
            assert feature["kind"] == "stream" and 0 < feature["ttl_seconds"] <= STREAM_TTL
            continue
        if feature["feature"] != "last_login_ts":  # Read shows a value as Inspect does: 27.0, not 27
            assert feature["text"] == stored[feature["feature"]], feature
        if feature["kind"] == "batch":
            assert feature["ttl_source"] == "key"
            assert abs(feature["ttl_seconds"] - key_ttl) <= 2 and feature["ttl_seconds"] <= BATCH_TTL
        else:
            assert feature["ttl_source"] == "field"
            assert 0 < feature["ttl_seconds"] <= STREAM_TTL
        # The decoded value is what the hash holds (timestamps: epoch seconds in Redis).
        if feature["feature"] == "last_login_ts":
            assert feature["value"].startswith("20")
        else:
            assert str(feature["value"]) == stored[feature["feature"]] or float(feature["value"]) == float(
                stored[feature["feature"]]
            )
    assert body["present"] == len(ALL_REFS)
    assert body["note"] is None
    assert 0 < body["store_ms"] <= body["latency_ms"]  # the store's own part of the read


def test_read_a_subset(client):
    refs = ["user_activity:tx_count_5m", "user_profile:risk_segment"]
    body = client.post("/read", json={"user_id": "u0001", "features": refs}).json()
    assert [f["ref"] for f in body["features"]] == refs
    assert [f["kind"] for f in body["features"]] == ["stream", "batch"]


@pytest.mark.parametrize(
    "payload, status, words",
    [
        ({"user_id": "u0001", "features": ["user_profile:nope"]}, 422, ["unknown feature", "user_profile:nope"]),
        ({"user_id": "u0001", "features": ["nope"]}, 422, ["unknown feature"]),
        ({"user_id": "bob"}, 404, ["unknown user", "bob"]),
        ({"user_id": user_ids_for(USERS + 1)[-1]}, 404, ["unknown user"]),
        ({"user_id": ""}, 422, ["user_id"]),
        ({}, 422, ["user_id", "required"]),
        ({"user_id": "u0001", "colour": "red"}, 422, ["colour"]),
        ({"user_id": "u0001", "features": "user_profile:risk_segment"}, 422, ["features"]),
        ({"user_id": "u0001", "features": []}, 422, ["features"]),
    ],
)
def test_read_rejects_bad_input(client, payload, status, words):
    assert_client_error(client.post("/read", json=payload), status, *words)


def test_malformed_json_is_a_422_with_a_message(client):
    response = client.post("/read", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_client_error(response, 422, "JSON")


HUGE = 100_000


@pytest.mark.parametrize(
    "method, path, request_args, marker",
    [
        ("post", "/read", {"json": {"user_id": "x" * HUGE}}, "x"),
        ("post", "/read", {"json": {"user_id": "u0001", "features": ["x" * HUGE]}}, "x"),
        ("post", "/read", {"json": {"user_id": "u0001", "x" * HUGE: 1}}, "x"),  # an unknown key is echoed
        ("post", "/read", {"json": {"user_id": "u0001", "features": [f"v:{'x' * 190}{i}" for i in range(64)]}}, "x"),
        ("post", "/batch-read", {"json": {"count": 3, "features": ["user_profile:" + "x" * HUGE]}}, "x"),
        ("post", "/bulk-load", {"json": {"users": "9" * 4000}}, "9"),
        ("post", "/worker/toggle", {"json": {"action": "x" * HUGE}}, "x"),
        ("get", "/inspect", {"params": {"user_id": "x" * 10_000}}, "x"),
    ],
)
def test_422_quotes_only_a_short_piece_of_the_input(client, method, path, request_args, marker):
    """An attacker-sized input must not come back whole: a 422 names the field and quotes
    at most a few dozen characters of what was sent."""
    response = getattr(client, method)(path, **request_args)
    body = assert_client_error(response, 422)
    assert len(response.text) < 2_000, len(response.text)
    assert marker * 100 not in response.text
    assert body["error"]  # still says what is wrong


def test_runtime_messages_quote_a_short_piece_of_the_input(runtime):
    """The same bound when the runtime is driven without the HTTP layer's limits."""
    from demo.errors import DemoError

    for call in (
        lambda: runtime.check_user("q" * HUGE),
        lambda: runtime.check_features(["q" * HUGE, "q", "qq", "qqq", "qqqq"]),
        lambda: runtime.toggle_worker("q" * HUGE),
    ):
        with pytest.raises(DemoError) as raised:
            call()
        assert len(raised.value.message) < 600 and "q" * 100 not in raised.value.message


# ---------------------------------------------------------------- batch read


def test_batch_read_is_one_pipelined_call(client):
    body = client.post("/batch-read", json={"count": USERS}).json()
    assert body["count"] == USERS
    assert body["features_requested"] == len(ALL_REFS)
    assert body["store_read_calls"] == 1  # one get_online_features -> one grouped read
    assert body["entities_read"] == USERS  # one HMGET per entity, pipelined
    assert body["latency_ms"] > 0
    assert body["histogram"] == {str(len(ALL_REFS)): USERS}
    assert [e["user_id"] for e in body["entities"]] == user_ids_for(USERS)
    assert all(e["returned"] == len(ALL_REFS) for e in body["entities"])


def test_batch_read_subset_counts_only_requested_features(client):
    body = client.post("/batch-read", json={"count": 5, "features": ["user_profile:risk_segment"]}).json()
    assert body["histogram"] == {"1": 5}


def test_read_latencies_are_kept_for_the_chart(client):
    """Every read the demo serves lands in the chart's series, single reads and batch reads
    apart, with p50 <= p99 per kind."""
    before = client.get("/state").json()["latency"]
    reads_before = before["kinds"].get("read", {}).get("count", 0)
    for uid in ("u0001", "u0002", "u0003"):
        client.post("/read", json={"user_id": uid})
    client.post("/batch-read", json={"count": 7})
    latency = client.get("/state").json()["latency"]
    client.post("/batch-read", json={"count": 3})
    latency = client.get("/state").json()["latency"]
    assert latency["kinds"]["read"]["count"] == reads_before + 3
    # Batch reads are split by size: 7 users and 3 users are different series.
    assert latency["kinds"]["batch:7"]["entities"] == 7 and latency["kinds"]["batch:7"]["count"] >= 1
    assert latency["kinds"]["batch:3"]["entities"] == 3
    for kind in ("read", "batch:7", "batch:3"):
        stats = latency["kinds"][kind]
        assert 0 < stats["p50_ms"] <= stats["p99_ms"]
        assert 0 < stats["store_p50_ms"] <= stats["store_p99_ms"]
    newest = latency["points"][-5:]
    assert [p["kind"] for p in newest] == ["read", "read", "read", "batch", "batch"]
    assert [p["entities"] for p in newest] == [1, 1, 1, 7, 3]
    assert [p["series"] for p in newest] == ["read", "read", "read", "batch:7", "batch:3"]
    assert all(p["ms"] > 0 and p["at"] <= time.time() + 1 for p in newest)
    assert len(latency["points"]) <= 60


def test_a_read_that_plans_a_new_request_shape_is_kept_out_of_the_percentiles(client, runtime):
    """The first read of a request shape (and the first after a bulk load, whose
    materialization refreshes Feast's registry) plans it: Feast resolves the references and
    the store builds its read plan, milliseconds a read of a known shape does not pay. It is
    on the chart, marked, and not in p50/p99."""
    subset = ["user_profile:country_iso", "user_activity:tx_count_5m"]
    first = client.post("/read", json={"user_id": "u0002", "features": subset}).json()
    again = client.post("/read", json={"user_id": "u0003", "features": subset}).json()
    assert (first["planned"], again["planned"]) == (True, False)
    client.post("/bulk-load", json={"users": USERS})
    after_load = client.post("/read", json={"user_id": "u0004", "features": subset}).json()
    assert after_load["planned"] is True
    latency = client.get("/state").json()["latency"]
    newest = latency["points"][-3:]
    assert [p["planned"] for p in newest] == [True, False, True]
    series = latency["kinds"]["read"]
    assert series["planned"] >= 2 and series["count"] >= series["planned"] + 1


def test_the_percentiles_leave_out_reads_that_planned():
    log = LatencyLog()
    for ms in (1.0, 2.0, 3.0):
        log.record("read", 1, ms, 0.5)
    log.record("read", 1, 500.0, 400.0, planned=True)
    [series] = log.summary()["kinds"].values()
    assert (series["count"], series["planned"], series["p99_ms"], series["store_p99_ms"]) == (4, 1, 3.0, 0.5)
    only_planned = LatencyLog()
    only_planned.record("batch", 5, 9.0, planned=True)
    assert only_planned.summary()["kinds"]["batch:5"]["p50_ms"] is None


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"count": 0}, ["count"]),
        ({"count": MAX_USERS + 1}, ["count"]),
        ({"count": USERS + 1}, ["count", str(USERS)]),  # more than are loaded
        ({"count": "ten"}, ["count"]),
        ({"count": 3, "features": ["user_tx_stats:bogus"]}, ["unknown feature"]),
    ],
)
def test_batch_read_rejects_bad_input(client, payload, words):
    assert_client_error(client.post("/batch-read", json=payload), 422, *words)


# ---------------------------------------------------------------- inspect


def test_inspect_shows_every_field_with_field_and_key_ttls(client, runtime, raw):
    body = client.get("/inspect", params={"user_id": "u0002"}).json()
    key = _key(runtime, "u0002")
    assert body["key"] == key and body["exists"] is True
    stored = {k.decode(): v for k, v in runtime.client.hgetall(key).items()}
    shown = {f["field"]: f["value"] for f in body["fields"]}
    assert set(shown) == set(stored)
    # Text values as stored; the embedding's raw little-endian floats decoded.
    assert all(shown[name] == value.decode() for name, value in stored.items() if name != "embedding")
    assert shown["embedding"] == vector_text(struct.unpack("<8f", stored["embedding"]), "FLOAT32")
    assert body["missing"] == []
    assert abs(body["key_ttl_seconds"] - raw.ttl(key)) <= 2
    assert body["memory_bytes"] > 0
    for field in body["fields"]:
        if field["field"] in STREAM_FIELDS:
            assert field["kind"] == "stream" and field["view"] in ("user_activity", "user_embedding")
            assert 0 < field["ttl_ms"] <= STREAM_TTL * 1000
        else:
            assert field["kind"] == "batch"
            assert field["ttl_ms"] == -1 and field["ttl_source"] == "key"


def test_inspect_rejects_bad_input(client):
    assert_client_error(client.get("/inspect", params={"user_id": "eve"}), 404, "unknown user")
    assert_client_error(client.get("/inspect"), 422, "user_id")


def test_unexpected_failure_is_a_short_500(client, runtime, raw):
    """A key of the wrong type under the demo's prefix (someone else wrote it): WRONGTYPE
    from Redis is not a user error; the answer is a 500 with a message, no traceback."""
    key = _key(runtime, "u0004")
    saved = raw.dump(key)
    ttl = raw.pttl(key)
    raw.delete(key)
    raw.set(key, "not a hash")
    try:
        body = assert_client_error(client.get("/inspect", params={"user_id": "u0004"}), 500, "internal error")
        assert "WRONGTYPE" not in body["error"]
    finally:
        raw.delete(key)
        raw.restore(key, max(ttl, 0), saved)


# ---------------------------------------------------------------- worker


def test_worker_toggle_pause_and_resume(client, runtime):
    own_batches = runtime.online_store.stats.write_batches
    written_before = client.get("/state").json()["counters"]["rows_written"]
    body = client.post("/worker/toggle").json()  # paused -> running
    assert body["action"] == "resume" and body["worker"]["state"] == "running"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        worker = client.get("/state").json()["worker"]
        if worker["ticks"] >= 2:
            break
        time.sleep(0.1)
    assert worker["ticks"] >= 2 and worker["rows_pushed"] >= 10 and worker["failed_ticks"] == 0
    # One EventWriter.write per event; the page's figures: events/s, and the lag from an
    # event's event time to get_online_features returning it (read back in the worker).
    assert worker["write_mode"] == "events" and worker["events_per_second"] > 0, worker
    lag = worker["lag"]
    assert lag["samples"] >= 1 and lag["unseen"] == 0, lag
    assert 0 < lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"] < 2000, lag
    # The pushes come from the worker's own process (its GIL is not the reads'), and the
    # page's counters add them to this process's own.
    assert runtime.online_store.stats.write_batches == own_batches
    assert client.get("/state").json()["counters"]["rows_written"] >= written_before + 10
    body = client.post("/worker/toggle", json={"action": "pause"}).json()
    assert body["action"] == "pause" and body["worker"]["state"] == "paused"
    ticks = body["worker"]["ticks"]
    time.sleep(0.6)
    paused = client.get("/state").json()["worker"]
    assert paused["ticks"] == ticks  # really paused
    assert paused["events_per_second"] == 0 and paused["rate_rows_per_second"] == 0, paused
    # An explicit pause of a paused worker is fine; a bad action is not.
    assert client.post("/worker/toggle", json={"action": "pause"}).json()["worker"]["state"] == "paused"
    assert_client_error(client.post("/worker/toggle", json={"action": "faster"}), 422, "action")


def _coverage(client) -> dict:
    return client.get("/state").json()["coverage"]


def test_coverage_is_measured_in_redis_and_the_worker_restores_it(client, runtime, raw):
    """Coverage counts the users whose stream fields are all in Redis: fields removed
    behind the worker's back lower it at once (it is not the worker's bookkeeping), and
    the running worker brings every user back within one round."""
    client.post("/worker/toggle", json={"action": "pause"})
    assert _coverage(client)["fields"] and set(_coverage(client)["fields"]) == STREAM_FIELDS
    users = runtime.user_ids
    StreamingWorker(runtime.store, users, batch_size=len(users)).tick()  # every user fresh to start with
    full = _coverage(client)
    assert (full["users"], full["sampled"], full["fresh"], full["percent"]) == (USERS, USERS, USERS, 100.0)
    assert 0 < full["soonest_expiry_seconds"] <= STREAM_TTL

    for uid in users[:9]:
        raw.hdel(_key(runtime, uid), *STREAM_FIELDS)
    raw.hdel(_key(runtime, users[9]), "tx_count_5m")  # one stream field gone is not fresh either
    partial = _coverage(client)
    assert (partial["sampled"], partial["fresh"]) == (USERS, USERS - 10)
    assert abs(partial["percent"] - 100 * (USERS - 10) / USERS) < 0.1

    client.post("/worker/toggle", json={"action": "resume"})
    try:
        wait_until(lambda: _coverage(client)["percent"] == 100.0, timeout=20, what="coverage back to 100%")
        for uid in users:  # Redis agrees: every user's stream fields have a fresh expiry
            ttls = raw.hpttl(_key(runtime, uid), *STREAM_FIELDS)
            assert all(0 < t <= STREAM_TTL * 1000 for t in ttls), (uid, ttls)
        worker = client.get("/state").json()["worker"]
        assert worker["state"] == "running" and worker["rate_rows_per_second"] > 0
        assert worker["batch_size"] >= 5 and worker["cycle_seconds"] <= STREAM_TTL / 2
        last_tick = datetime.fromisoformat(worker["last_tick_at"])
        assert (datetime.now(timezone.utc) - last_tick).total_seconds() < 10
    finally:
        client.post("/worker/toggle", json={"action": "pause"})


# ---------------------------------------------------------------- freshness


def test_stream_fields_expire_while_batch_fields_stay(client, runtime, raw):
    """Short stream TTL, worker paused: a pushed user's stream features read as missing
    after the TTL while its batch features are still served."""
    load = client.post("/bulk-load", json={"users": USERS, "stream_ttl_seconds": 2}).json()
    assert load["stream_ttl_seconds"] == 2
    try:
        assert client.get("/state").json()["worker"]["state"] == "paused"
        StreamingWorker(runtime.store, ["u0005"], batch_size=1).tick()  # one real push
        fresh = client.post("/read", json={"user_id": "u0005"}).json()
        assert fresh["present"] == len(ALL_REFS)
        stream = [f for f in fresh["features"] if f["kind"] == "stream"]
        assert all(0 < f["ttl_seconds"] <= 2 for f in stream)
        time.sleep(2.3)
        stale = client.post("/read", json={"user_id": "u0005"}).json()
        statuses = {f["ref"]: (f["kind"], f["status"]) for f in stale["features"]}
        assert all(status == "PRESENT" for kind, status in statuses.values() if kind == "batch")
        assert all(status == "NOT_FOUND" for kind, status in statuses.values() if kind == "stream")
        inspected = client.get("/inspect", params={"user_id": "u0005"}).json()
        assert {m["field"] for m in inspected["missing"]} == STREAM_FIELDS
        assert all(f["kind"] == "batch" for f in inspected["fields"])
        # Served age counts the users that still have the stream view (earlier tests pushed
        # some with the module's long TTL): exactly those Redis holds; u0005 is not one.
        time.sleep(1.1)
        views = client.get("/state").json()["served_age"]["latest"]["views"]
        holding = [uid for uid in runtime.user_ids if raw.hexists(_key(runtime, uid), "_ts:user_activity")]
        assert "u0005" not in holding
        assert views["user_activity"]["present"] == len(holding)
        assert views["user_profile"]["present"] == USERS
    finally:
        client.post("/bulk-load", json={"users": USERS, "stream_ttl_seconds": STREAM_TTL})


# ---------------------------------------------------------------- bulk load and reset


def test_bulk_load_more_users_with_a_new_key_ttl(client, runtime, raw):
    body = client.post("/bulk-load", json={"users": USERS + 10, "batch_ttl_seconds": 1234}).json()
    assert body["users"] == USERS + 10 and body["users_loaded"] == USERS + 10
    assert body["seconds"] > 0 and body["materialize_seconds"] > 0
    views = {v["view"]: v for v in body["views"]}
    assert views["user_profile"]["written"] == USERS + 10
    assert views["user_tx_stats"]["written"] == USERS + 10
    assert views["user_profile"]["ttl_seconds"] == 1234
    assert body["batch_ttl_seconds"] == 1234
    state = client.get("/state").json()
    assert state["entities"] == USERS + 10 and state["ttl"]["batch_seconds"] == 1234
    assert 1200 < raw.ttl(_key(runtime, user_ids_for(USERS + 10)[-1])) <= 1234
    assert "batch_ttl_seconds: 1234" in (runtime.workdir / "feature_store.yaml").read_text()
    # Back to the module's settings.
    client.post("/bulk-load", json={"users": USERS, "batch_ttl_seconds": BATCH_TTL})


@pytest.mark.parametrize(
    "payload, words",
    [
        ({"users": 0}, ["users"]),
        ({"users": MAX_USERS + 1}, ["users"]),
        ({"users": 5, "batch_ttl_seconds": -1}, ["batch_ttl_seconds"]),
        ({"users": 5, "stream_ttl_seconds": 10**12}, ["stream_ttl_seconds"]),
        ({"users": 2.5}, ["users"]),
    ],
)
def test_bulk_load_rejects_bad_input(client, payload, words):
    assert_client_error(client.post("/bulk-load", json=payload), 422, *words)


def test_reset_drops_every_entity_and_bulk_load_brings_them_back(client, runtime, raw):
    other = f"fs:{runtime.project}x:user_id=u0001"  # a project whose name extends ours
    raw.hset(other, "risk_segment", "low")
    try:
        loaded = client.get("/state").json()["entities"]
        body = client.post("/reset").json()
        assert body["deleted"] == loaded
        state = client.get("/state").json()
        assert state["entities"] == 0 and state["users_loaded"] == 0
        assert state["worker"]["state"] == "idle"
        # The last load's users are gone, and so is its tile; served age samples no one.
        assert state["last_bulk_load"] is None and state["last_reset"]["deleted"] == loaded
        assert all(v["sampled"] == 0 for v in state["served_age"]["latest"]["views"].values())
        # Every entity is gone; what `feast apply` recorded of the views stays for the next apply.
        assert list(raw.scan_iter(match=f"fs:{runtime.project}:*")) == [f"fs:{runtime.project}:_views"]
        assert raw.exists(other)  # other projects untouched
        assert_client_error(client.get("/inspect", params={"user_id": "u0001"}), 404, "bulk-load")
        assert_client_error(client.post("/read", json={"user_id": "u0001"}), 404)
        assert_client_error(client.post("/batch-read", json={"count": 1}), 404)
        assert_client_error(client.post("/worker/toggle"), 409, "bulk-load")
        # The page's user fields are empty after a reset: the answer says why, not "1 character".
        assert_client_error(client.post("/read", json={"user_id": ""}), 404, "no users are loaded")
        assert_client_error(client.get("/inspect", params={"user_id": ""}), 404, "no users are loaded")
        # The retired round-robin is not reported as the worker's plan.
        worker = state["worker"]
        assert (worker["users"], worker["batch_size"], worker["cycle_seconds"]) == (0, 0, None)
    finally:
        raw.delete(other)
        client.post("/bulk-load", json={"users": USERS})
    assert client.get("/state").json()["entities"] == USERS
    assert client.post("/read", json={"user_id": "u0001"}).json()["present"] >= 6


def test_ten_thousand_users_keep_the_id_format_and_the_default_user(client, runtime, raw):
    """User ids are u0001..u9999, u10000 at any count: loading 10,000 users renames nobody,
    the ids the page offers are the loaded ones, and the default user (the first) still
    reads and inspects."""
    started = time.monotonic()
    load = client.post("/bulk-load", json={"users": MAX_USERS}).json()
    load_seconds = time.monotonic() - started
    try:
        assert load["users_loaded"] == MAX_USERS, load
        state = client.get("/state").json()
        assert state["entities"] == MAX_USERS
        assert (state["first_user"], state["last_user"]) == ("u0001", "u10000")
        offered = state["user_ids"]
        assert offered and offered == user_ids_for(MAX_USERS)[: len(offered)]
        default = offered[0]
        assert default == state["first_user"] == "u0001"  # the user loaded first, before and after
        read = client.post("/read", json={"user_id": default}).json()
        assert read["key"] == _key(runtime, "u0001") and read["key_exists"]
        assert all(f["status"] == "PRESENT" for f in read["features"] if f["kind"] == "batch")
        inspected = client.get("/inspect", params={"user_id": default}).json()
        assert inspected["exists"] and inspected["key"] == _key(runtime, "u0001")
        last = client.post("/read", json={"user_id": "u10000"}).json()
        assert last["key"] == _key(runtime, "u10000") and last["key_exists"]
        assert raw.exists(_key(runtime, "u9999"), _key(runtime, "u10000")) == 2
        assert raw.exists(_key(runtime, "u00001"), _key(runtime, "u09999")) == 0  # never re-padded
        assert_client_error(client.post("/read", json={"user_id": "u00001"}), 404, "unknown user")
        print(f"10,000 users loaded in {load_seconds:.1f}s")
    finally:
        client.post("/reset")
        client.post("/bulk-load", json={"users": USERS})
    assert client.get("/state").json()["entities"] == USERS


def test_a_key_without_its_batch_fields_is_explained(client, runtime, raw):
    """The batch key expired, then the worker's push re-created the user with stream fields
    only and no key TTL: by design, and Read, Inspect and Batch read say so, naming the
    batch fields as the missing ones."""
    uid = "u0006"
    key = _key(runtime, uid)
    raw.delete(key)  # what the key's EXPIRE does at the end of its batch cycle
    StreamingWorker(runtime.store, [uid], batch_size=1).tick()
    try:
        assert raw.ttl(key) == -1 and set(raw.hkeys(key)) == STREAM_FIELDS
        read = client.post("/read", json={"user_id": uid}).json()
        assert read["note"] and "by design" in read["note"] and "stream fields only" in read["note"]
        assert read["key_exists"] and read["key_ttl_seconds"] is None
        inspected = client.get("/inspect", params={"user_id": uid}).json()
        assert inspected["note"] == read["note"]
        assert {m["kind"] for m in inspected["missing"]} == {"batch"}
        batch = client.post("/batch-read", json={"count": 6}).json()
        short = [e for e in batch["entities"] if e["returned"] < batch["features_requested"]]
        assert short == [{"user_id": uid, "returned": 6, "missing_batch": 6, "missing_stream": 0}]
        other = client.get("/inspect", params={"user_id": "u0005"}).json()
        assert other["note"] is None
    finally:
        client.post("/bulk-load", json={"users": USERS})
    assert raw.ttl(key) > 0


def test_bulk_load_notes_what_only_new_writes_get(client, runtime, raw):
    """A TTL change in a load of fewer users than are loaded: the others keep their TTL,
    and the load's answer says so."""
    body = client.post("/bulk-load", json={"users": 3, "batch_ttl_seconds": 999}).json()
    try:
        assert any("keep theirs until rewritten" in n for n in body["notes"]), body["notes"]
        assert 900 < raw.ttl(_key(runtime, "u0003")) <= 999
        assert raw.ttl(_key(runtime, "u0004")) > 999  # written before, with the old TTL
    finally:
        client.post("/bulk-load", json={"users": USERS, "batch_ttl_seconds": BATCH_TTL})
