"""The private Feast hooks the store relies on (feast_redis_hexpire/feast_hooks.py), and a
forward canary.

On every supported Feast release (this file runs in each lane of tests/test_feast_releases.py)
every hook is there as the store was written against, so every fast path is on. The canary
builds a fake "next" Feast in this process: it removes or re-signs one private hook on
Feast's own module or class. A store Feast creates then turns that fast path off with one
WARNING naming the hook and the Feast version, takes Feast's generic path (visibly: the
response type, the HMGETs it sends, the methods it calls), and serves exactly what Feast's
generic path served before the change.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from feast import FeatureService, FeatureStore, RepoConfig
from feast import utils as feast_utils
from feast.data_source import PushMode
from feast.infra.online_stores.online_store import OnlineStore
from feast.online_response import OnlineResponse
from feast.value_type import ValueType

from feast_redis_hexpire import EventWriter, feast_hooks
from feast_redis_hexpire.codec import CODECS, NEWER_MESSAGE_TYPES
from feast_redis_hexpire.serving import ServedResponse
from tests.support.store import command_calls, generic_online_features, generic_online_features_async, now, run_async
from tests.test_serving import ACCOUNT, ACTIVITY, BALANCE, PROFILE, USER

SERVICE = FeatureService(name="canary_svc", features=[PROFILE, ACTIVITY, BALANCE])
USERS = ["u0", "u1", "u2", "u3", "nobody"]
REQUESTS: list[dict[str, Any]] = [
    {
        "features": ["profile:tx_count_7d", "profile:segment", "activity:amount", "balance:balance"],
        "entity_rows": [{"user_id": u, "account_id": i} for i, u in enumerate(USERS)],
    },
    {"features": SERVICE, "entity_rows": {"user_id": USERS, "account_id": [0, 1, 2, 3, 4]}, "full_feature_names": True},
]


# ---------------------------------------------------------------- the hooks of this Feast


def test_every_hook_is_there_on_this_supported_feast() -> None:
    report = feast_hooks.check(warn=False)
    assert report.problems == (), [problem.message(report.feast_version) for problem in report.problems]
    assert all(report.summary()["fast_paths"].values())


def test_value_types_this_feast_lacks_are_simply_not_offered() -> None:
    """Every value type of the installed Feast but NULL and UNKNOWN has a codec; the newer
    ones only where this Feast has them."""
    assert {vt.name for vt in ValueType if vt not in CODECS} == {"NULL", "UNKNOWN"}
    for name, _ in NEWER_MESSAGE_TYPES:
        assert (name in ValueType.__members__) == any(vt.name == name for vt in CODECS)


def test_the_hook_report_command_prints_every_fast_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert feast_hooks.main(["--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["feast"] == feast_hooks.feast_version()
    assert set(report["fast_paths"]) == set(feast_hooks.FAST_PATHS)


# ---------------------------------------------------------------- the canary


@pytest.fixture
def make_store(redis_server, tmp_path: Path, unique_project: str, monkeypatch: pytest.MonkeyPatch):
    """FeatureStores on one registry and one Redis, with data written; each call is a new
    store, so Feast creates the online store (and its hook check) again. Warnings are
    counted afresh for each test."""
    monkeypatch.setattr(feast_hooks, "_warned", set())
    config = RepoConfig(
        project=unique_project,
        provider="feast_redis_hexpire.HexpireProvider",
        registry={"path": str(tmp_path / "registry.db"), "cache_ttl_seconds": 0},
        online_store={
            "type": "feast_redis_hexpire.RedisHexpireOnlineStore",
            "connection_string": redis_server.connection_string,
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )

    def make() -> FeatureStore:
        return FeatureStore(config=config, repo_path=str(tmp_path))

    first = make()
    first.apply([USER, ACCOUNT, PROFILE, ACTIVITY, BALANCE, SERVICE])
    first.write_to_online_store(
        "profile",
        pd.DataFrame(
            {
                "user_id": USERS[:4],
                "tx_count_7d": [10, 11, 12, 13],
                "segment": ["a", "b", "c", "a"],
                "event_timestamp": [now() - timedelta(minutes=1)] * 4,
            }
        ),
    )
    first.write_to_online_store(
        "activity",
        pd.DataFrame(
            {"user_id": USERS[1:3], "tx_count_5m": [4, 5], "amount": [1.5, -2.25], "event_timestamp": [now()] * 2}
        ),
    )
    first.write_to_online_store(
        "balance",
        pd.DataFrame(
            {
                "account_id": [0, 2, 4],
                "balance": [100.0, 0.5, 7.0],
                "segment": ["x", None, "z"],
                "event_timestamp": [now()] * 3,
            }
        ),
    )
    return make


def _served(fs: FeatureStore) -> list[tuple[dict[str, Any], bytes]]:
    out = []
    for request in REQUESTS:
        response = fs.get_online_features(**request)
        out.append((response.to_dict(include_event_timestamps=True), response.proto.SerializeToString()))
    return out


def _generic(fs: FeatureStore) -> list[tuple[dict[str, Any], bytes]]:
    out = []
    for request in REQUESTS:
        response = generic_online_features(fs, **request)
        out.append((response.to_dict(include_event_timestamps=True), response.proto.SerializeToString()))
    return out


def _warnings(caplog: pytest.LogCaptureFixture, hook: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "feast_redis_hexpire" and r.levelno == logging.WARNING and hook in r.getMessage()
    ]


def test_canary_with_a_re_signed_online_response_serves_through_feasts_generic_path(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The next Feast's OnlineResponse takes one more argument: the store's ServedResponse,
    which stands in for it, may no longer be what Feast makes, so the serving fast path
    steps aside and Feast's generic path serves."""
    before = make_store()
    expected = _generic(before)
    assert _served(before) == expected
    assert isinstance(before.get_online_features(**REQUESTS[0]), ServedResponse)

    original = OnlineResponse.__init__

    def resigned(self, online_response_proto, feature_types=None, row_order=None):
        original(self, online_response_proto, feature_types)

    monkeypatch.setattr(OnlineResponse, "__init__", resigned)
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        after = make_store()
        online = after._get_provider().online_store
        served = _served(after)
        assert make_store()._get_provider().online_store.hooks.problems  # a second store: no second warning
    [warning] = _warnings(caplog, "feast.online_response.OnlineResponse.__init__")
    assert f"Feast {feast_hooks.feast_version()}" in warning and "re-signed" in warning and "row_order" in warning
    assert "serving fast path" in warning
    assert not online.hooks.active(feast_hooks.SERVING) and online.hooks.active(feast_hooks.GROUPED_READ)
    response = after.get_online_features(**REQUESTS[0])
    assert type(response) is OnlineResponse  # Feast's own response, from its generic path
    assert served == expected

    async def both() -> list[dict[str, Any]]:
        return [(await after.get_online_features_async(**request)).to_dict() for request in REQUESTS]

    assert run_async(online, both) == [
        (run_async(online, lambda r=request: generic_online_features_async(after, **r))).to_dict()
        for request in REQUESTS
    ]


def test_canary_with_a_re_signed_grouped_read_leaves_the_read_to_feast(
    make_store, redis_server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The next Feast's `_read_features_per_fv` takes one more parameter: the store's
    override steps aside, and Feast's own method (one read per view) serves."""
    before = make_store()
    expected = _generic(before)
    client = redis.Redis.from_url(redis_server.url)
    request = {"features": ["profile:tx_count_7d", "activity:amount"], "entity_rows": [{"user_id": u} for u in USERS]}
    grouped = command_calls(client, "hmget")
    generic_online_features(before, **request)
    assert command_calls(client, "hmget") - grouped == len(USERS)  # the store's grouped read: one HMGET per entity

    original = OnlineStore._read_features_per_fv
    calls: list[int] = []

    def resigned(self, config, grouped_refs, *rest, read_batch_size=None):
        calls.append(len(grouped_refs))
        return original(self, config, grouped_refs, *rest)

    monkeypatch.setattr(OnlineStore, "_read_features_per_fv", resigned)
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        after = make_store()
        online = after._get_provider().online_store
    [warning] = _warnings(caplog, "OnlineStore._read_features_per_fv ")
    assert "re-signed" in warning and "read_batch_size" in warning and f"Feast {feast_hooks.feast_version()}" in warning
    assert not online.hooks.active(feast_hooks.GROUPED_READ)

    client.config_resetstat()
    assert _generic(after) == expected
    assert calls  # Feast's (re-signed) method ran, not the store's override
    per_view = command_calls(client, "hmget")
    generic_online_features(after, **request)
    assert command_calls(client, "hmget") - per_view == 2 * (len(USERS))  # one HMGET per view and entity
    assert _served(after) == expected  # the serving fast path is not this hook's: still on, still right
    client.close()


def test_canary_without_the_field_mapping_hook_pushes_through_feasts_path(
    make_store, redis_server, unique_project: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """HexpireProvider's Arrow push needs feast.utils._run_pyarrow_field_mapping: without it,
    the push goes through Feast's own conversion and stores the same bytes."""
    frame = pd.DataFrame({"user_id": ["p1"], "tx_count_5m": [2], "amount": [3.75], "event_timestamp": [now()]})
    before = make_store()
    before.push("activity_push", frame, to=PushMode.ONLINE)

    monkeypatch.delattr(feast_utils, "_run_pyarrow_field_mapping")
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        after = make_store()
        provider = after._get_provider()
    [warning] = _warnings(caplog, "_run_pyarrow_field_mapping")
    assert "Arrow push" in warning
    with caplog.at_level(logging.DEBUG, logger="feast_redis_hexpire"):
        after.push("activity_push", frame.assign(user_id=["p2"]), to=PushMode.ONLINE)
    assert any("takes Feast's own path" in r.getMessage() for r in caplog.records)
    assert not provider.hooks.active(feast_hooks.ARROW_PUSH)

    client = redis.Redis.from_url(redis_server.url)
    try:
        keys = {user: next(iter(client.scan_iter(match=f"*{unique_project}*user_id={user}*"))) for user in ("p1", "p2")}
        assert client.hgetall(keys["p1"]) == client.hgetall(keys["p2"])
    finally:
        client.close()
    rows = [{"user_id": "p1"}, {"user_id": "p2"}]
    assert after.get_online_features(["activity:amount"], rows).to_dict()["amount"] == [3.75, 3.75]


def test_a_request_context_of_another_shape_falls_back_with_one_warning(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What a signature cannot show: the next Feast's cached request context holds one more
    value. The plan is not built from it; Feast's generic path serves."""
    from feast_redis_hexpire import serving

    fs = make_store()
    expected = _generic(fs)
    original = serving.request_context
    monkeypatch.setattr(serving, "request_context", lambda *args: (*original(*args), "something new"))
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        served = _served(fs)
        response = fs.get_online_features(**REQUESTS[0])
    [warning] = _warnings(caplog, "feast.utils._get_cached_request_context")
    assert "returning 10 values, not 9" in warning and f"Feast {feast_hooks.feast_version()}" in warning
    assert type(response) is OnlineResponse
    assert served == expected


def test_canary_without_get_provider_the_event_writer_writes_through_its_own_store(
    make_store, redis_server, unique_project: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EventWriter reaches the FeatureStore's online store through FeatureStore._get_provider:
    without it, one WARNING, and the writer writes the same bytes through an online store of
    its own (only the write counters are no longer the provider's)."""
    fs = make_store()
    event = {"user_id": "e1", "tx_count_5m": 7, "amount": 1.25, "event_timestamp": now()}
    with EventWriter(fs, "activity") as writer:
        assert writer._writer._online_store is fs._get_provider().online_store
        writer.write(event)

    monkeypatch.delattr(FeatureStore, "_get_provider")
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"), EventWriter(fs, "activity") as writer:
        assert writer.write({**event, "user_id": "e2"}).written == 1
    [warning] = _warnings(caplog, "FeatureStore._get_provider")
    assert "is missing" in warning and "EventWriter" in warning
    assert not feast_hooks.check(warn=False).active(feast_hooks.SHARED_STORE)

    client = redis.Redis.from_url(redis_server.url)
    try:
        keys = {user: next(iter(client.scan_iter(match=f"*{unique_project}*user_id={user}*"))) for user in ("e1", "e2")}
        assert client.hgetall(keys["e1"]) == client.hgetall(keys["e2"])
    finally:
        client.close()
