"""The serving fast path against Feast's generic path, on the same Redis data.

`fs.get_online_features` goes through the store's fast path (`serving.py`);
`generic_online_features` runs Feast's own `OnlineStore.get_online_features` on the same
store (its request handling, its entity conversion, its response building, reading
through the store's grouped hook). Random requests must give identical responses: the
same proto, the same `to_dict()` with and without event timestamps, the same frames and
tables, or the same error.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig
from feast.errors import FeatureViewNotFoundException
from feast.on_demand_feature_view import on_demand_feature_view
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float32, Float64, Int32, Int64, String
from feast.value_type import ValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feast_redis_hexpire import serving
from feast_redis_hexpire.errors import UnknownFeature
from feast_redis_hexpire.keys import entity_redis_key, project_prefix
from feast_redis_hexpire.serving import ServedResponse
from tests.support.store import (
    generic_online_features,
    generic_online_features_async,
    now,
    run_async,
)
from tests.support.values import canonical
from tests.test_store import ALL_TYPES

USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
ACCOUNT = Entity(name="account", join_keys=["account_id"], value_type=ValueType.INT64)
DEVICE = Entity(name="device", join_keys=["device_id"], value_type=ValueType.INT32)
SOURCE = FileSource(name="unused", path="unused.parquet", timestamp_field="event_timestamp")

TYPED = FeatureView(
    name="typed",
    entities=[USER],
    schema=[Field(name="user_id", dtype=String)] + [f for f, _ in ALL_TYPES],
    source=SOURCE,
)
PROFILE = FeatureView(
    name="profile",
    entities=[USER],
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="tx_count_7d", dtype=Int64),
        Field(name="segment", dtype=String),
    ],
    source=SOURCE,
)
ACTIVITY = FeatureView(
    name="activity",
    entities=[USER],
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="tx_count_5m", dtype=Int64),
        Field(name="amount", dtype=Float64),
    ],
    source=PushSource(name="activity_push", batch_source=SOURCE),
)
BALANCE = FeatureView(
    name="balance",
    entities=[ACCOUNT],
    schema=[
        Field(name="account_id", dtype=Int64),
        Field(name="balance", dtype=Float32),
        Field(name="segment", dtype=String),
    ],
    source=SOURCE,
)
PAIR = FeatureView(
    name="pair",
    entities=[USER, ACCOUNT],
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="account_id", dtype=Int64),
        Field(name="score", dtype=Int32),
    ],
    source=SOURCE,
)
SCREEN = FeatureView(
    name="screen",
    entities=[DEVICE],
    schema=[Field(name="device_id", dtype=Int32), Field(name="width", dtype=Int32)],
    source=SOURCE,
)


@on_demand_feature_view(sources=[PROFILE], schema=[Field(name="tx_doubled", dtype=Int64)], mode="python")
def doubled(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"tx_doubled": [None if v is None else v * 2 for v in inputs["tx_count_7d"]]}


SERVICE = FeatureService(name="svc", features=[PROFILE, ACTIVITY[["tx_count_5m"]], BALANCE])
PRECOMPUTED = FeatureService(name="svc_pre", features=[PROFILE, ACTIVITY], precompute_online=True)
VIEWS = [TYPED, PROFILE, ACTIVITY, BALANCE, PAIR, SCREEN]
REFS = [f"{view.name}:{f.name}" for view in VIEWS for f in view.features] + ["doubled:tx_doubled"]

USERS = [f"u{i}" for i in range(8)] + ["u:with:colons", "nobody"]
ACCOUNTS = [1, 2, 3, 2**40, 999]
DEVICES = [1, 2, 77]


def _key(fs: FeatureStore, **join_keys: Any) -> bytes:
    config = fs.config.online_store
    names = sorted(join_keys)
    values = []
    for name in names:
        value = join_keys[name]
        if isinstance(value, str):
            values.append(ValueProto(string_val=value))
        elif name == "device_id":
            values.append(ValueProto(int32_val=value))
        else:
            values.append(ValueProto(int64_val=value))
    entity = EntityKeyProto(join_keys=names, entity_values=values)
    return entity_redis_key(project_prefix(config.key_prefix, fs.project, config.hash_tag), entity)


def _row(key: EntityKeyProto, values: dict[str, ValueProto], ts: Any = None) -> tuple:
    return (key, values, ts or now(), None)


def _user(user: str) -> EntityKeyProto:
    return EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=user)])


@pytest.fixture(scope="module")
def fs(redis_server, tmp_path_factory) -> FeatureStore:
    tmp: Path = tmp_path_factory.mktemp("serving")
    config = RepoConfig(
        project="serving_parity",
        provider="local",
        registry={"path": str(tmp / "registry.db"), "cache_ttl_seconds": 0},
        online_store={
            "type": "feast_redis_hexpire.RedisHexpireOnlineStore",
            "connection_string": redis_server.connection_string,
        },
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config, repo_path=str(tmp))
    store.apply([USER, ACCOUNT, DEVICE, *VIEWS, doubled, SERVICE, PRECOMPUTED])
    online = store._get_provider().online_store
    cfg = store.config
    typed_values = {f.name: v for f, v in ALL_TYPES}
    rows = []
    for i, user in enumerate(USERS[:7] + ["u:with:colons"]):
        values = dict(typed_values)
        values["f_int64"] = ValueProto(int64_val=i)
        values["f_string"] = ValueProto(string_val=f"s{i}")
        if i % 3 == 0:
            values["f_float"] = ValueProto()  # null: the field is not written
        rows.append(_row(_user(user), values))
    online.online_write_batch(cfg, TYPED, rows, None)
    online.online_write_batch(
        cfg,
        PROFILE,
        [
            _row(_user(u), {"tx_count_7d": ValueProto(int64_val=i), "segment": ValueProto(string_val="abc"[i % 3])})
            for i, u in enumerate(USERS[:6])
        ],
        None,
    )
    online.online_write_batch(
        cfg,
        ACTIVITY,
        [
            _row(_user(u), {"tx_count_5m": ValueProto(int64_val=10 + i), "amount": ValueProto(double_val=i / 3)})
            for i, u in enumerate(USERS[2:8])
        ],
        None,
    )
    online.online_write_batch(
        cfg,
        BALANCE,
        [
            _row(
                EntityKeyProto(join_keys=["account_id"], entity_values=[ValueProto(int64_val=a)]),
                {"balance": ValueProto(float_val=a / 7), "segment": ValueProto(string_val=f"acct{a}")},
                now() - timedelta(seconds=a % 5),
            )
            for a in ACCOUNTS[:4]
        ],
        None,
    )
    online.online_write_batch(
        cfg,
        PAIR,
        [
            _row(
                EntityKeyProto(
                    join_keys=["user_id", "account_id"],
                    entity_values=[ValueProto(string_val=u), ValueProto(int64_val=a)],
                ),
                {"score": ValueProto(int32_val=len(u) * a % 1000)},
            )
            for u in USERS[:4]
            for a in ACCOUNTS[:3]
        ],
        None,
    )
    online.online_write_batch(
        cfg,
        SCREEN,
        [
            _row(
                EntityKeyProto(join_keys=["device_id"], entity_values=[ValueProto(int32_val=d)]),
                {"width": ValueProto(int32_val=d * 100)},
            )
            for d in DEVICES[:2]
        ],
        None,
    )
    # Absent and expired data, made by the server: u2's activity event time is gone (the
    # view is absent although its fields are there), u3's amount expired on its own.
    client = online_client(store)
    client.hdel(_key(store, user_id="u2"), "_ts:activity")
    client.execute_command("HPEXPIRE", _key(store, user_id="u3"), 1, "FIELDS", 1, "activity:amount")
    client.hdel(_key(store, user_id="u4"), "typed:f_bool")
    import time

    time.sleep(0.05)
    assert client.hget(_key(store, user_id="u3"), "activity:amount") is None
    return store


def online_client(fs: FeatureStore) -> Any:
    from feast_redis_hexpire.clients import sync_client

    return sync_client(fs.config.online_store)


# ---------------------------------------------------------------- comparing two outcomes


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # noqa: BLE001 - both paths must fail alike
        return "error", (type(exc), str(exc))


def assert_same(fast: tuple[str, Any], generic: tuple[str, Any]) -> None:
    assert fast[0] == generic[0], (fast, generic)
    if fast[0] == "error":
        assert fast[1] == generic[1]
        return
    a, b = fast[1], generic[1]
    assert a.proto.SerializeToString(deterministic=True) == b.proto.SerializeToString(deterministic=True)
    for timestamps in (False, True):
        da, db = a.to_dict(include_event_timestamps=timestamps), b.to_dict(include_event_timestamps=timestamps)
        assert list(da) == list(db)
        assert canonical(da) == canonical(db)
    assert list(a.to_df().columns) == list(b.to_df().columns)
    assert canonical(a.to_df().to_dict("list")) == canonical(b.to_df().to_dict("list"))
    ta, tb = a.to_arrow(), b.to_arrow()
    assert ta.schema == tb.schema
    assert canonical(ta.to_pylist()) == canonical(tb.to_pylist())


# ---------------------------------------------------------------- random requests

JOIN_KEYS_OF = {
    "typed": ["user_id"],
    "profile": ["user_id"],
    "activity": ["user_id"],
    "doubled": ["user_id"],
    "balance": ["account_id"],
    "pair": ["user_id", "account_id"],
    "screen": ["device_id"],
}
POOLS = {"user_id": USERS, "account_id": ACCOUNTS, "device_id": DEVICES}


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    if draw(st.integers(0, 9)) == 0:
        features: Any = draw(st.sampled_from([SERVICE, PRECOMPUTED]))
        needed = {"user_id", "account_id"} if features is SERVICE else {"user_id"}
    else:
        features = draw(st.lists(st.sampled_from(REFS), min_size=1, max_size=8, unique=True))
        needed = {key for ref in features for key in JOIN_KEYS_OF[ref.split(":")[0]]}
    if draw(st.integers(0, 14)) == 0:
        needed.discard(draw(st.sampled_from(sorted(needed))))  # a missing join key
    rows = draw(st.integers(1, 7))
    columns: dict[str, list[Any]] = {}
    for name in draw(st.permutations(sorted(needed))):
        values = draw(st.lists(st.sampled_from(POOLS[name]), min_size=rows, max_size=rows))
        if draw(st.integers(0, 19)) == 0:
            values[draw(st.integers(0, rows - 1))] = None  # a None join key
        columns[name] = values
    if draw(st.booleans()) or not columns:  # a request with no columns at all: test_no_entity_columns
        columns["ignored_column"] = [0] * rows
    entity_rows: Any = columns
    if draw(st.booleans()):
        entity_rows = [{name: columns[name][i] for name in columns} for i in range(rows)]
    return {
        "features": features,
        "entity_rows": entity_rows,
        "full_feature_names": draw(st.booleans()),
        "include_feature_view_version_metadata": draw(st.booleans()),
    }


PARITY = settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@PARITY
@given(request=requests())
def test_fast_path_equals_feasts_generic_path(fs, request):
    assert_same(
        _outcome(lambda: fs.get_online_features(**request)),
        _outcome(lambda: generic_online_features(fs, **generic_request(request))),
    )


def generic_request(request: dict[str, Any]) -> dict[str, Any]:
    """Feast's generic path fails every read of a precompute_online service on a store it
    cannot scan; the store reads one as a plain service, so compare with that."""
    from feast_redis_hexpire.store import _without_precompute

    return {**request, "features": _without_precompute(request["features"])}


@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(request=requests())
def test_async_fast_path_equals_feasts_generic_path_and_sync(fs, request):
    online = fs._get_provider().online_store

    async def both() -> tuple[Any, Any]:
        async def fast() -> Any:
            return await fs.get_online_features_async(**request)

        async def generic() -> Any:
            return await generic_online_features_async(fs, **generic_request(request))

        return await _outcome_async(fast), await _outcome_async(generic)

    fast, generic = run_async(online, both)
    assert_same(fast, generic)
    assert_same(fast, _outcome(lambda: fs.get_online_features(**request)))


async def _outcome_async(call: Any) -> tuple[str, Any]:
    try:
        return "ok", await call()
    except Exception as exc:  # noqa: BLE001
        return "error", (type(exc), str(exc))


# ---------------------------------------------------------------- the fast path is taken


def test_plain_requests_take_the_fast_path_and_send_one_hmget_per_entity(fs):
    redis_client = online_client(fs)  # not the flushing fixture: the module's data stays
    redis_client.config_resetstat()
    response = fs.get_online_features(
        ["profile:tx_count_7d", "activity:tx_count_5m", "typed:f_string"],
        [{"user_id": "u0"}, {"user_id": "u3"}, {"user_id": "u0"}, {"user_id": "nobody"}],
    )
    assert isinstance(response, ServedResponse)
    assert response._proto is None  # nothing built until asked for
    assert response.to_dict() == {
        "user_id": ["u0", "u3", "u0", "nobody"],
        "tx_count_7d": [0, 3, 0, None],
        "tx_count_5m": [None, 11, None, None],
        "f_string": ["s0", "s3", "s0", None],
    }
    assert response._proto is None  # to_dict() does not build the proto
    hmget = redis_client.info("commandstats")["cmdstat_hmget"]["calls"]
    assert hmget == 3  # duplicate entity rows share one HMGET


def _attributes_read_by(cls: type) -> set[str]:
    """Every ``self.<name>`` that ``cls``'s own methods read or set, from its source."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    }


def test_served_response_has_every_attribute_feasts_online_response_reads(fs):
    """ServedResponse runs OnlineResponse.__init__ (on an empty proto) and keeps the proto
    lazy: whatever Feast's methods read from an OnlineResponse is there, with the request's
    values. When Feast reads a new attribute, this fails instead of a serving process."""
    from feast.online_response import OnlineResponse

    read = _attributes_read_by(OnlineResponse)
    assert {"proto", "_feature_types", "to_dict"} <= read  # the walker sees Feast's own
    response = fs.get_online_features(["profile:tx_count_7d", "typed:f_int64"], [{"user_id": "u3"}])
    assert isinstance(response, ServedResponse)
    missing = sorted(name for name in read if not hasattr(response, name))
    assert missing == []
    generic = generic_online_features(fs, ["profile:tx_count_7d", "typed:f_int64"], [{"user_id": "u3"}])
    assert response._feature_types == generic._feature_types
    assert list(response.proto.metadata.feature_names.val) == list(generic.proto.metadata.feature_names.val)
    assert response.to_arrow().to_pydict() == generic.to_arrow().to_pydict()
    assert [len(group) for group in response.replies] == [1]  # one entity group, one entity


@pytest.mark.parametrize(
    ("request_args", "reason"),
    [
        ({"features": ["doubled:tx_doubled"], "entity_rows": [{"user_id": "u1"}]}, "on-demand"),
        ({"features": ["profile:segment"], "entity_rows": [{"user_id": None}]}, "does not spell"),
        ({"features": ["balance:balance"], "entity_rows": [{"account_id": True}]}, "does not spell"),
        ({"features": ["profile:segment"], "entity_rows": [{"user": "u1"}]}, "entity name"),
    ],
)
def test_what_the_fast_path_does_not_cover_goes_to_feast_with_a_debug_log(fs, caplog, request_args, reason):
    with caplog.at_level(logging.DEBUG, logger="feast_redis_hexpire"):
        fast = _outcome(lambda: fs.get_online_features(**request_args))
    assert any("generic path" in r.getMessage() and reason in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
    if fast[0] == "ok":
        assert not isinstance(fast[1], ServedResponse)
    assert_same(fast, _outcome(lambda: generic_online_features(fs, **request_args)))


def test_odfv_values_through_the_fallback(fs):
    result = fs.get_online_features(
        ["doubled:tx_doubled", "profile:tx_count_7d"], [{"user_id": "u2"}, {"user_id": "x"}]
    )
    assert result.to_dict() == {"user_id": ["u2", "x"], "tx_doubled": [4, None], "tx_count_7d": [2, None]}


def test_plan_follows_a_registry_change(fs):
    """A plan lives as long as Feast's cached request context: after `apply` changes a
    view, the next request is planned again and sees the new feature."""
    rows = [{"device_id": 1}]
    assert fs.get_online_features(["screen:width"], rows).to_dict() == {"device_id": [1], "width": [100]}
    wider = FeatureView(
        name="screen",
        entities=[DEVICE],
        schema=[
            Field(name="device_id", dtype=Int32),
            Field(name="width", dtype=Int32),
            Field(name="height", dtype=Int32),
        ],
        source=SOURCE,
    )
    fs.apply([wider])
    fs._get_provider().online_store.online_write_batch(
        fs.config,
        wider,
        [
            _row(
                EntityKeyProto(join_keys=["device_id"], entity_values=[ValueProto(int32_val=1)]),
                {"width": ValueProto(int32_val=5), "height": ValueProto(int32_val=9)},
            )
        ],
        None,
    )
    assert fs.get_online_features(["screen:width", "screen:height"], rows).to_dict() == {
        "device_id": [1],
        "width": [5],
        "height": [9],
    }
    fs.apply([SCREEN])


# ---------------------------------------------------------------- errors, as Feast raises them


def test_unknown_feature_of_a_known_view_is_a_key_error_naming_both(fs):
    for call in (
        lambda: fs.get_online_features(["profile:nope"], [{"user_id": "u1"}]),
        lambda: run_async(
            fs._get_provider().online_store,
            lambda: fs.get_online_features_async(["profile:nope"], [{"user_id": "u1"}]),
        ),
    ):
        with pytest.raises(KeyError) as err:
            call()
        assert isinstance(err.value, UnknownFeature)
        assert "profile" in str(err.value) and "nope" in str(err.value)
        assert err.value.http_status_code() == 422


def test_unknown_view_is_feasts_feature_view_not_found(fs):
    with pytest.raises(FeatureViewNotFoundException):
        fs.get_online_features(["no_such_view:x"], [{"user_id": "u1"}])
    with pytest.raises(FeatureViewNotFoundException):
        generic_online_features(fs, ["no_such_view:x"], [{"user_id": "u1"}])


def test_no_entity_columns_is_a_clear_input_error(fs):
    from feast_redis_hexpire.errors import InvalidEntityKey

    for rows in ([{}], {}, []):
        with pytest.raises(InvalidEntityKey, match="no join-key values"):
            fs.get_online_features(["profile:segment"], rows)


# ---------------------------------------------------------------- precomputed feature services


def test_precompute_online_service_is_served_from_the_entity_hashes(fs, caplog):
    redis_client = online_client(fs)
    rows = [{"user_id": u} for u in ("u1", "u4", "nobody")]
    plain_service = fs.get_online_features(
        [f"profile:{f}" for f in ("tx_count_7d", "segment")] + ["activity:tx_count_5m", "activity:amount"], rows
    ).to_dict()
    from feast_redis_hexpire import store as store_module

    store_module._PRECOMPUTE_LOGGED.discard("svc_pre")  # earlier tests of this process read it
    with caplog.at_level(logging.INFO, logger="feast_redis_hexpire"):
        written = fs.precompute_feature_service("svc_pre")
        served = fs.get_online_features(PRECOMPUTED, rows).to_dict()
        again = fs.get_online_features(PRECOMPUTED, rows).to_dict()
    assert written == 0
    assert served == again == plain_service
    assert not [k for k in redis_client.scan_iter(match=b"*precomputed*")]
    mentions = [r for r in caplog.records if "precompute_online" in r.getMessage() and "svc_pre" in r.getMessage()]
    assert len(mentions) == 1  # said once, with why
    assert "entity hashes" in mentions[0].getMessage()
    # Feast's generic path on this store serves it too, rather than failing every read.
    assert generic_online_features(fs, serving_copy(PRECOMPUTED), rows).to_dict() == plain_service


def serving_copy(service: FeatureService) -> FeatureService:
    from feast_redis_hexpire.store import _without_precompute

    copy = _without_precompute(service)
    assert isinstance(copy, FeatureService) and not copy.precompute_online and service.precompute_online
    return copy


def test_precompute_online_service_through_the_generic_fallback(fs):
    """A request the fast path leaves to Feast (the entity's name instead of its join key)
    still reads a precompute_online service from the hashes instead of failing."""
    result = fs.get_online_features(PRECOMPUTED, [{"user": "u1"}]).to_dict()
    assert result["tx_count_7d"] == [1]


def test_serving_module_spells_the_same_keys_as_the_write_path(fs):
    plan_keys = serving.native_key_texts(ValueType.STRING, ["u:with:colons"])
    assert plan_keys == ["u%3Awith%3Acolons"]
    assert fs.get_online_features(["typed:f_string"], [{"user_id": "u:with:colons"}]).to_dict()["f_string"] == ["s7"]


# ---------------------------------------------------------------- versioned views


def test_versioned_reads_on_the_fast_path_equal_feasts_generic_path(tmp_path, redis_server, unique_project):
    from datetime import datetime, timezone

    from tests.test_dropin import USER as DRIVER_USER
    from tests.test_dropin import feature_store, hexpire_block, parquet

    stamp = datetime.now(timezone.utc).replace(microsecond=0)
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "trips": [3, 4],
            "rating": [4.5, 3.9],
            "event_timestamp": [stamp - timedelta(hours=1)] * 2,
        }
    )
    source = parquet(tmp_path, "drivers", frame)

    def view(*fields: Field) -> FeatureView:
        return FeatureView(
            name="driver_stats", entities=[DRIVER_USER], ttl=timedelta(days=1), schema=list(fields), source=source
        )

    store = feature_store(tmp_path, unique_project, hexpire_block(redis_server.connection_string), versioning=True)
    store.apply([DRIVER_USER, source, view(Field(name="trips", dtype=Int64))])
    store.materialize(stamp - timedelta(days=1), stamp)
    store.apply([view(Field(name="trips", dtype=Int64), Field(name="rating", dtype=Float64))])
    store.write_to_online_store("driver_stats", frame.assign(trips=[30, 40], event_timestamp=[stamp] * 2))
    rows = [{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u1"}, {"user_id": "u9"}]
    for features in (
        ["driver_stats@v0:trips"],
        ["driver_stats@v1:trips", "driver_stats@v1:rating"],
        ["driver_stats:trips", "driver_stats:rating"],
    ):
        for full in (False, True):
            for metadata in (False, True):
                request = {
                    "features": features,
                    "entity_rows": rows,
                    "full_feature_names": full,
                    "include_feature_view_version_metadata": metadata,
                }
                fast = _outcome(lambda: store.get_online_features(**request))  # noqa: B023
                assert fast[0] == "ok" and isinstance(fast[1], ServedResponse), fast
                assert_same(fast, _outcome(lambda: generic_online_features(store, **request)))  # noqa: B023
    assert store.get_online_features(["driver_stats@v0:trips"], rows).to_dict()["trips"] == [3, 4, 3, None]
