"""End-to-end: the shipped feature_repo/ driven by the real `feast` CLI, the real
FeatureStore API and `feast serve`, against a real Redis >= 7.4.

What Redis must hold (the store's contract): one hash per user,
``<prefix>:<project>:user_id=<id>``, fields = feature names as readable text plus
``_ts:<view>`` (fixed-width ISO-8601 UTC, microseconds). Batch writes re-arm a key
EXPIRE; stream (push) writes set per-field expiry at min(event_time, now) + stream TTL
on exactly the fields written. Newest event time wins on every path.

Each `feast` CLI call costs several seconds of Feast import, so the module shares one
applied repo and tests that change the registry or need short TTLs make their own.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from devsupport.net import wait_until
from tests.support.e2e import (
    ALL_FEATURE_REFS,
    BATCH_VIEWS,
    FEATURES,
    STREAM_FIELDS,
    STREAM_VIEW,
    E2ERepo,
    FeastServe,
    activity_frame,
    clear_project,
    expected_fields,
    feast_cli,
    field_pttls,
    field_ttls,
    hgetall_text,
    iso,
    latest_per_user,
    make_repo,
    online_dict,
    online_statuses,
    project_keys,
    remove_view_from_definitions,
    ts_field_text,
)
from tests.support.store import run_async

pytestmark = pytest.mark.e2e

# The teardown test's project is a string prefix of the shared repo's project: a
# teardown that matched `fs:<project>*` instead of `fs:<project>:*` would show.
_BASE = f"t_{uuid.uuid4().hex[:8]}"
SHARED_PROJECT = f"{_BASE}_shared"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture(scope="module")
def shared_repo(redis_server, tmp_path_factory) -> E2ERepo:
    """One applied copy of feature_repo/ with the shipped TTLs (2 days / 300 s)."""
    repo = make_repo(
        tmp_path_factory.mktemp("shared_repo"),
        SHARED_PROJECT,
        redis_server.connection_string,
    )
    out = feast_cli(repo, "apply").stdout
    assert "user_activity" in out and "user_profile" in out
    return repo


def _push(store, df) -> None:
    from feast.data_source import PushMode

    store.push("user_activity_push", df, to=PushMode.ONLINE)


# ---------------------------------------------------------------- materialize


@pytest.fixture
def fresh_repo(redis_server, unique_project, tmp_path) -> E2ERepo:
    """An applied repo nothing has materialized yet: materialize-incremental's window
    starts where *this test's* `feast materialize` ended."""
    repo = make_repo(tmp_path / "repo", unique_project, redis_server.connection_string)
    feast_cli(repo, "apply")
    return repo


@pytest.mark.both_servers  # the Feast CLI is slow: Valkey runs the core workflow, not every case
def test_materialize_and_incremental_write_flat_hashes(fresh_repo: E2ERepo, redis_client):
    repo = fresh_repo
    now = repo.regenerate(_utcnow())["now"]
    users = repo.data["user_ids"]
    mid = now - timedelta(hours=12)

    # 1. `feast materialize` of an older window: yesterday's batch rows. Activity rows
    #    that old are past the 300 s stream TTL, so none of them may be written.
    feast_cli(repo, "materialize", iso(now - timedelta(days=3)), iso(mid))
    old = {view: latest_per_user(repo.frame(view), end=mid) for view in BATCH_VIEWS}
    assert all(set(rows) == set(users) for rows in old.values())
    assert sorted(project_keys(redis_client, repo.key_prefix, repo.project)) == sorted(repo.key(u) for u in users)
    for uid in users:
        want = {
            **expected_fields("user_profile", old["user_profile"][uid]),
            **expected_fields("user_tx_stats", old["user_tx_stats"][uid]),
        }
        assert hgetall_text(redis_client, repo.key(uid)) == want, uid
        ttl = redis_client.ttl(repo.key(uid))
        assert repo.batch_ttl_seconds - 60 < ttl <= repo.batch_ttl_seconds, (uid, ttl)

    # 2. `feast materialize-incremental` picks up from `mid`: today's batch rows plus the
    #    freshest activity row (seconds old, so within the stream TTL).
    end = _utcnow() + timedelta(seconds=5)
    feast_cli(repo, "materialize-incremental", iso(end))
    checked_at = time.time()
    new = {view: latest_per_user(repo.frame(view), end=end) for view in FEATURES}
    for uid in users:
        key = repo.key(uid)
        stored = hgetall_text(redis_client, key)
        want = {}
        for view in FEATURES:
            want.update(expected_fields(view, new[view][uid]))
        assert stored == want, uid
        # `_ts` holds the event time in epoch microseconds: 1764091200123456
        for view in FEATURES:
            assert stored[f"_ts:{view}"].isdigit() and len(stored[f"_ts:{view}"]) == 16

        ttl = redis_client.ttl(key)
        assert repo.batch_ttl_seconds - 60 < ttl <= repo.batch_ttl_seconds, (uid, ttl)
        # Batch fields have no field-level expiry; the stream fields expire at
        # event_time + stream TTL.
        batch_fields = FEATURES["user_profile"] + FEATURES["user_tx_stats"]
        assert set(field_ttls(redis_client, key, batch_fields).values()) == {-1}
        event_time = new[STREAM_VIEW][uid]["event_timestamp"].timestamp()
        expected_left = event_time + repo.stream_ttl_seconds - checked_at
        for name, left in field_ttls(redis_client, key, STREAM_FIELDS).items():
            assert 0 < left <= repo.stream_ttl_seconds, (uid, name, left)
            assert abs(left - expected_left) <= 3, (uid, name, left, expected_left)

    # 3. Feast reads back what the parquet files say, typed.
    store = repo.store()
    got = online_dict(store, ALL_FEATURE_REFS, users[:3])
    for i, uid in enumerate(users[:3]):
        assert got["risk_segment"][i] == new["user_profile"][uid]["risk_segment"]
        assert got["account_age_days"][i] == new["user_profile"][uid]["account_age_days"]
        assert got["avg_amount_30d"][i] == new["user_tx_stats"][uid]["avg_amount_30d"]
        assert got["tx_count_5m"][i] == new["user_activity"][uid]["tx_count_5m"]
        assert got["last_device_id"][i] == new["user_activity"][uid]["last_device_id"]
        assert got["last_login_ts"][i] == new["user_activity"][uid]["last_login_ts"].to_pydatetime()


# ---------------------------------------------------------------- push


@pytest.mark.both_servers  # the Feast CLI is slow: Valkey runs the core workflow, not every case
def test_push_python_api_and_feast_serve(shared_repo: E2ERepo, redis_client, tmp_path):
    clear_project(redis_client, shared_repo)
    repo = shared_repo
    store = repo.store()
    now = _utcnow()

    # Python API push.
    py_users = ["u0001", "u0002"]
    df = activity_frame(py_users, now)
    _push(store, df)
    for i, uid in enumerate(py_users):
        key = repo.key(uid)
        stored = hgetall_text(redis_client, key)
        assert stored == {
            "last_login_ts": str(int(now.timestamp())),
            "last_device_id": f"dev-push-{i}",
            "tx_count_5m": str(10 + i),
            "failed_logins_15m": str(i),
            "session_country": "PT",
            f"_ts:{STREAM_VIEW}": ts_field_text(now),
        }
        ttls = field_ttls(redis_client, key, STREAM_FIELDS)
        assert all(repo.stream_ttl_seconds - 5 <= t <= repo.stream_ttl_seconds for t in ttls.values()), ttls
    got = online_dict(store, [f"{STREAM_VIEW}:{f}" for f in FEATURES[STREAM_VIEW]], py_users)
    assert got["tx_count_5m"] == [10, 11]
    assert got["last_device_id"] == ["dev-push-0", "dev-push-1"]
    assert got["session_country"] == ["PT", "PT"]

    # An event stamped a little in the future (clock skew) is anchored at "now": it cannot
    # outlive the TTL. One stamped beyond max_future_seconds (a day) is not stored at all.
    future_user, far_user = "u0009", "u0010"
    _push(store, activity_frame([future_user], now + timedelta(hours=9)))
    ttls = field_ttls(redis_client, repo.key(future_user), STREAM_FIELDS)
    assert all(0 < t <= repo.stream_ttl_seconds for t in ttls.values()), ttls
    _push(store, activity_frame([far_user], now + timedelta(days=3)))
    assert not redis_client.exists(repo.key(far_user))

    # Join-key values are percent-escaped in the key and read back unchanged.
    odd_user = "x:y=z%{1}"
    _push(store, activity_frame([odd_user], _utcnow(), last_device_id="dev-odd"))
    odd_key = f"{repo.key_prefix}:{repo.project}:user_id=x%3Ay%3Dz%25%7B1%7D".encode()
    assert hgetall_text(redis_client, odd_key)["last_device_id"] == "dev-odd"
    assert online_dict(store, ["user_activity:last_device_id"], [odd_user])["last_device_id"] == ["dev-odd"]

    # HTTP /push and /get-online-features through `feast serve`.
    http_users = ["u0003", "u0004"]
    http_now = _utcnow()
    with FeastServe(repo, tmp_path / "serve.log") as serve:
        serve.push(
            {
                "user_id": http_users,
                "last_login_ts": [int(http_now.timestamp())] * 2,
                "last_device_id": ["dev-http-a", "dev-http-b"],
                "tx_count_5m": [3, 4],
                "failed_logins_15m": [0, 7],
                "session_country": ["SE", "NO"],
                "event_timestamp": [http_now.isoformat()] * 2,
                "created": [http_now.isoformat()] * 2,
            }
        )
        for uid in http_users:
            key = repo.key(uid)
            stored = hgetall_text(redis_client, key)
            assert stored[f"_ts:{STREAM_VIEW}"] == ts_field_text(http_now)
            assert set(stored) == set(STREAM_FIELDS), stored
            ttls = field_ttls(redis_client, key, STREAM_FIELDS)
            assert all(0 < t <= repo.stream_ttl_seconds for t in ttls.values()), ttls
        assert hgetall_text(redis_client, repo.key("u0004"))["failed_logins_15m"] == "7"

        reply = serve.get_online_features(
            [
                "user_activity:tx_count_5m",
                "user_activity:last_device_id",
                "user_activity:failed_logins_15m",
                "user_profile:country_iso",
            ],
            py_users + http_users + ["u_missing"],
        )
        assert reply["tx_count_5m"]["values"] == [10, 11, 3, 4, None]
        assert reply["last_device_id"]["values"][:4] == ["dev-push-0", "dev-push-1", "dev-http-a", "dev-http-b"]
        assert reply["failed_logins_15m"]["values"][:4] == [0, 1, 0, 7]
        assert reply["tx_count_5m"]["statuses"] == ["PRESENT"] * 4 + ["NOT_FOUND"]
        # Nothing was materialized in this test: batch features are missing.
        assert reply["country_iso"]["statuses"] == ["NOT_FOUND"] * 5

    # The Python API sees the HTTP-pushed rows too.
    got = online_dict(store, ["user_activity:session_country"], http_users)
    assert got["session_country"] == ["SE", "NO"]


# ---------------------------------------------------------------- staleness


@pytest.fixture
def short_ttl_repo(redis_server, unique_project, tmp_path) -> E2ERepo:
    repo = make_repo(
        tmp_path / "repo",
        unique_project,
        redis_server.connection_string,
        batch_ttl_seconds=6,
        stream_ttl_seconds=2,
        count=4,
        days=2,
    )
    feast_cli(repo, "apply")
    return repo


def test_mixed_staleness_stream_expires_before_batch(short_ttl_repo: E2ERepo, redis_client):
    repo = short_ttl_repo
    store = repo.store()
    users = ["u0001", "u0002", "u0003"]
    now = _utcnow()
    store.materialize(now - timedelta(days=3), now + timedelta(seconds=1), feature_views=list(BATCH_VIEWS))
    _push(store, activity_frame(users, _utcnow()))

    refs = [
        "user_profile:risk_segment",
        "user_tx_stats:tx_count_7d",
        "user_activity:tx_count_5m",
        "user_activity:last_device_id",
    ]
    resp = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users])
    statuses = online_statuses(resp)
    assert all(s == ["PRESENT"] * 3 for name, s in statuses.items() if name != "user_id"), statuses
    key = repo.key("u0001")
    assert 0 < redis_client.pttl(key) <= 6000
    assert all(0 < t <= 2000 for t in field_pttls(redis_client, key, STREAM_FIELDS).values())

    # An event already older than the stream TTL is not written at all; one 1 s old
    # gets only the remaining second.
    _push(store, activity_frame(["u0004"], _utcnow() - timedelta(seconds=10)))
    assert not set(STREAM_FIELDS) & set(hgetall_text(redis_client, repo.key("u0004")))
    _push(store, activity_frame(["u0004"], _utcnow() - timedelta(seconds=1)))
    pttls = field_pttls(redis_client, repo.key("u0004"), STREAM_FIELDS)
    assert all(0 < t <= 1100 for t in pttls.values()), pttls

    # ~2 s: the streaming fields are gone, the batch fields (and the key) remain.
    wait_until(lambda: not redis_client.hexists(key, "tx_count_5m"), timeout=4, what="stream fields to expire")
    assert redis_client.exists(key) == 1
    remaining = hgetall_text(redis_client, key)
    assert not set(STREAM_FIELDS) & set(remaining), remaining
    assert "risk_segment" in remaining and "_ts:user_tx_stats" in remaining
    resp = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users])
    got, statuses = resp.to_dict(), online_statuses(resp)
    assert got["tx_count_5m"] == [None] * 3 and got["last_device_id"] == [None] * 3
    assert statuses["tx_count_5m"] == ["NOT_FOUND"] * 3
    assert statuses["risk_segment"] == ["PRESENT"] * 3
    assert None not in got["risk_segment"] and None not in got["tx_count_7d"]

    # ~6 s after the batch write: the key TTL ends the whole entity.
    wait_until(lambda: redis_client.exists(key) == 0, timeout=6, what="key to expire")
    resp = store.get_online_features(features=refs, entity_rows=[{"user_id": u} for u in users])
    got = resp.to_dict()
    assert all(got[name.split(":")[1]] == [None] * 3 for name in refs), got
    assert project_keys(redis_client, repo.key_prefix, repo.project) == []


# ---------------------------------------------------------------- newest wins


def test_newest_event_wins_across_push_and_materialize(shared_repo: E2ERepo, redis_client):
    clear_project(redis_client, shared_repo)
    repo = shared_repo
    store = repo.store()
    now = repo.regenerate(_utcnow())["now"]
    activity = latest_per_user(repo.frame(STREAM_VIEW))

    # A push newer than the parquet's latest row survives a later materialize.
    pushed_user, control_user, older_push_user = "u0005", "u0006", "u0007"
    push_time = _utcnow()
    assert push_time > activity[pushed_user]["event_timestamp"]
    _push(store, activity_frame([pushed_user], push_time, last_device_id="dev-newest"))
    end = _utcnow() + timedelta(seconds=1)
    store.materialize(now - timedelta(days=3), end, feature_views=[STREAM_VIEW])

    stored = hgetall_text(redis_client, repo.key(pushed_user))
    assert stored["last_device_id"] == "dev-newest"
    assert stored[f"_ts:{STREAM_VIEW}"] == ts_field_text(push_time)
    # ...while a user without a newer push got the materialized row.
    control = hgetall_text(redis_client, repo.key(control_user))
    assert control == expected_fields(STREAM_VIEW, activity[control_user])

    # A push older than what is stored changes nothing, TTLs included.
    stored_before = hgetall_text(redis_client, repo.key(older_push_user))
    ttl_before = field_pttls(redis_client, repo.key(older_push_user), STREAM_FIELDS)
    older = activity[older_push_user]["event_timestamp"].to_pydatetime() - timedelta(seconds=30)
    _push(store, activity_frame([older_push_user], older, last_device_id="dev-stale", tx_count_5m=99))
    assert hgetall_text(redis_client, repo.key(older_push_user)) == stored_before
    ttl_after = field_pttls(redis_client, repo.key(older_push_user), STREAM_FIELDS)
    assert all(ttl_after[f] <= ttl_before[f] for f in STREAM_FIELDS), (ttl_before, ttl_after)

    # An equal event time is rewritten (last write wins for the same instant).
    same = activity[older_push_user]["event_timestamp"].to_pydatetime()
    _push(store, activity_frame([older_push_user], same, last_device_id="dev-same-ts"))
    assert hgetall_text(redis_client, repo.key(older_push_user))["last_device_id"] == "dev-same-ts"

    # Batch path: materializing an older window after a newer one keeps the newer row.
    store.materialize(now - timedelta(days=3), end, feature_views=list(BATCH_VIEWS))
    newest = {v: latest_per_user(repo.frame(v), end=end) for v in BATCH_VIEWS}
    before = hgetall_text(redis_client, repo.key(control_user))
    # Re-writing the same event time re-arms the key TTL (a re-run counts as a refresh).
    redis_client.pexpire(repo.key(control_user), 60_000)
    store.materialize(now - timedelta(days=3), end, feature_views=list(BATCH_VIEWS))
    assert redis_client.ttl(repo.key(control_user)) > repo.batch_ttl_seconds - 60
    assert hgetall_text(redis_client, repo.key(control_user)) == before
    store.materialize(now - timedelta(days=3), now - timedelta(hours=12), feature_views=list(BATCH_VIEWS))
    after = hgetall_text(redis_client, repo.key(control_user))
    assert after == before
    for view in BATCH_VIEWS:
        for name, text in expected_fields(view, newest[view][control_user]).items():
            assert after[name] == text, (view, name)


# ---------------------------------------------------------------- apply / teardown


def test_apply_removing_a_view_and_teardown(shared_repo: E2ERepo, redis_server, redis_client, tmp_path):
    clear_project(redis_client, shared_repo)
    # _BASE is a string prefix of the shared repo's project name.
    repo = make_repo(tmp_path / "repo", _BASE, redis_server.connection_string, count=5, days=2)
    feast_cli(repo, "apply")
    store = repo.store()
    end = _utcnow() + timedelta(seconds=1)
    store.materialize(end - timedelta(days=3), end)
    users = repo.data["user_ids"]

    # The other project, written through its own FeatureStore.
    shared_store = shared_repo.store()
    _push(shared_store, activity_frame(["u0001", "u0002"], _utcnow()))
    other_before = {k: redis_client.hgetall(k) for k in project_keys(redis_client, "fs", shared_repo.project)}
    assert len(other_before) == 2

    for uid in users:
        assert {"tx_count_7d", "_ts:user_tx_stats", "tx_count_5m"} <= set(hgetall_text(redis_client, repo.key(uid)))

    remove_view_from_definitions(repo, "user_tx_stats")
    feast_cli(repo, "apply")
    removed = set(FEATURES["user_tx_stats"]) | {"_ts:user_tx_stats"}
    for uid in users:
        stored = hgetall_text(redis_client, repo.key(uid))
        assert not removed & set(stored), (uid, stored)
        assert {"risk_segment", "_ts:user_profile", "_ts:user_activity", "tx_count_5m"} <= set(stored), stored
        assert redis_client.ttl(repo.key(uid)) > 0

    feast_cli(repo, "teardown")
    assert project_keys(redis_client, repo.key_prefix, repo.project) == []
    other_after = {k: redis_client.hgetall(k) for k in project_keys(redis_client, "fs", shared_repo.project)}
    assert other_after == other_before


# ---------------------------------------------------------------- async


@pytest.mark.both_servers  # the Feast CLI is slow: Valkey runs the core workflow, not every case
def test_async_reads_match_sync(shared_repo: E2ERepo, redis_client):
    clear_project(redis_client, shared_repo)
    repo = shared_repo
    store = repo.store()
    repo.regenerate(_utcnow())
    end = _utcnow() + timedelta(seconds=1)
    store.materialize(end - timedelta(days=3), end)
    _push(store, activity_frame(["u0002"], _utcnow(), last_device_id="dev-async"))
    rows = [{"user_id": u} for u in ["u0001", "u0002", "u0003", "u_nobody"]]
    service = store.get_feature_service("fraud_model_v1")

    async def read_async():
        by_refs = await store.get_online_features_async(features=ALL_FEATURE_REFS, entity_rows=rows)
        by_service = await store.get_online_features_async(features=service, entity_rows=rows)
        return by_refs.to_dict(), by_service.to_dict()

    by_refs_async, by_service_async = run_async(store, read_async)
    by_refs_sync = store.get_online_features(features=ALL_FEATURE_REFS, entity_rows=rows).to_dict()
    by_service_sync = store.get_online_features(features=service, entity_rows=rows).to_dict()
    assert by_refs_async == by_refs_sync
    assert by_service_async == by_service_sync
    assert by_refs_sync["last_device_id"][1] == "dev-async"
    assert all(values[3] is None for name, values in by_refs_sync.items() if name != "user_id")
    assert None not in by_refs_sync["risk_segment"][:3]
