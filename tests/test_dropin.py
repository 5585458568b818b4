"""A drop-in for any Feast repo (issue: drop-in): repos Feast accepts apply and serve with the
default config, TTLs follow what the user declared in Feast, skipped rows are visible,
Feast's own config names work, on-demand and stream feature views store what Feast's
built-in store stores, dropped features are removed, versioned views keep versions apart,
struct values keep their declared order. Where Feast's sqlite store is the reference, both
stores get identical definitions and data and must answer alike."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, PushSource, RepoConfig
from feast.data_source import PushMode
from feast.on_demand_feature_view import on_demand_feature_view
from feast.stream_feature_view import StreamFeatureView
from feast.types import Float64, Int32, Int64, String, Struct
from feast.value_type import ValueType

from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig
from feast_redis_hexpire.writes import SkippedRowWarnings
from tests.support.e2e import feast_cli, field_ttls, make_repo, remove_view_from_definitions

pytestmark = pytest.mark.e2e

UTC = timezone.utc
USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
MERCHANT = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)


def hexpire_block(connection_string: str, **online) -> dict:
    return {"type": "feast_redis_hexpire.RedisHexpireOnlineStore", "connection_string": connection_string, **online}


def feature_store(tmp: Path, project: str, online: dict, versioning: bool = False) -> FeatureStore:
    registry = {"path": str(tmp / f"registry_{online['type'].rsplit('.', 1)[-1]}.db"), "cache_ttl_seconds": 0}
    if versioning:
        registry["enable_online_feature_view_versioning"] = True
    config = RepoConfig(
        project=project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )
    return FeatureStore(config=config, repo_path=str(tmp))


def twins(tmp: Path, redis_server, project: str, versioning: bool = False, **online) -> dict[str, FeatureStore]:
    """Feast's sqlite store and this store, same project and definitions, separate registries."""
    return {
        "sqlite": feature_store(tmp, project, {"type": "sqlite", "path": str(tmp / "online.db")}, versioning),
        "hexpire": feature_store(tmp, project, hexpire_block(redis_server.connection_string, **online), versioning),
    }


def online(fs: FeatureStore, refs: list[str], rows: list[dict], **kwargs) -> dict:
    return fs.get_online_features(features=refs, entity_rows=rows, **kwargs).to_dict()


def parquet(tmp: Path, name: str, frame: pd.DataFrame) -> FileSource:
    path = tmp / f"{name}.parquet"
    frame.to_parquet(path)
    return FileSource(name=f"{name}_source", path=str(path), timestamp_field="event_timestamp")


def hash_of(redis_client, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in redis_client.hgetall(key).items()}


# ---------------------------------------------------------------- 1. views sharing feature names


def test_views_sharing_feature_names_apply_and_serve_with_the_default_config(
    tmp_path, redis_server, redis_client, unique_project
):
    """A batch view, a fresher push view of the same features (Feast's quickstart pattern),
    and a composite-key view sharing a name with a single-key view, all on one entity hash."""
    now = datetime.now(UTC).replace(microsecond=0)
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "conv_rate": [0.1, 0.2],
            "acc_rate": [0.5, 0.6],
            "event_timestamp": [now - timedelta(hours=1)] * 2,
        }
    )
    pairs = pd.DataFrame(
        {"user_id": ["u1"], "merchant_id": ["m1"], "conv_rate": [0.9], "event_timestamp": [now - timedelta(hours=1)]}
    )
    stats_source = parquet(tmp_path, "stats", users)
    stats = FeatureView(
        name="stats",
        entities=[USER],
        ttl=timedelta(days=1),
        schema=[Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64)],
        source=stats_source,
    )
    push = PushSource(name="stats_push", batch_source=stats_source)
    fresh = FeatureView(
        name="stats_fresh",
        entities=[USER],
        ttl=timedelta(days=1),
        schema=[Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64)],
        source=push,
    )
    pair = FeatureView(
        name="pair",
        entities=[USER, MERCHANT],
        ttl=timedelta(days=1),
        schema=[Field(name="conv_rate", dtype=Float64)],
        source=parquet(tmp_path, "pair", pairs),
    )
    refs = ["stats:conv_rate", "stats_fresh:conv_rate", "stats_fresh:acc_rate"]
    results = {}
    for name, fs in twins(tmp_path, redis_server, unique_project).items():
        fs.apply([USER, MERCHANT, stats_source, push, stats, fresh, pair])
        fs.materialize(now - timedelta(days=1), now)
        fs.push(
            "stats_push",
            pd.DataFrame({"user_id": ["u1"], "conv_rate": [0.7], "acc_rate": [0.8], "event_timestamp": [now]}),
            to=PushMode.ONLINE,
        )
        results[name] = (
            online(fs, refs, [{"user_id": "u1"}, {"user_id": "u2"}], full_feature_names=True),
            online(
                fs, ["pair:conv_rate"], [{"user_id": "u1", "merchant_id": "m1"}, {"user_id": "u2", "merchant_id": "m1"}]
            ),
        )
    assert results["hexpire"] == results["sqlite"]
    assert results["hexpire"][0]["stats__conv_rate"] == [0.1, 0.2]
    assert results["hexpire"][0]["stats_fresh__conv_rate"] == [0.7, 0.2]  # pushed over the materialized value
    assert results["hexpire"][1]["conv_rate"] == [0.9, None]
    stored = hash_of(redis_client, f"fs:{unique_project}:user_id=u1")
    assert stored["stats:conv_rate"] == "0.1" and stored["stats_fresh:conv_rate"] == "0.7"  # `<view>:<feature>`
    assert hash_of(redis_client, f"fs:{unique_project}:merchant_id=m1:user_id=u1")["pair:conv_rate"] == "0.9"


# ---------------------------------------------------------------- 2. TTLs from what the user declared


def test_stream_ttl_precedence_tag_then_feast_ttl_then_stream_ttl_seconds(
    tmp_path, redis_server, redis_client, unique_project
):
    def push_view(name: str, ttl: timedelta | None, tags: dict | None = None) -> FeatureView:
        return FeatureView(
            name=name,
            entities=[USER],
            ttl=ttl,
            schema=[Field(name="clicks", dtype=Int64)],
            source=PushSource(
                name=f"{name}_push", batch_source=FileSource(path="unused.parquet", timestamp_field="event_timestamp")
            ),
            tags=tags or {},
        )

    views = {
        "tagged": push_view("tagged", timedelta(hours=1), {"hexpire.ttl_seconds": "120"}),
        "feast_ttl": push_view("feast_ttl", timedelta(hours=1)),
        "zero_ttl": push_view("zero_ttl", timedelta(0)),
        "no_ttl": push_view("no_ttl", None),
    }
    batch = FeatureView(
        name="batchy",
        entities=[USER],
        ttl=timedelta(hours=1),
        schema=[Field(name="score", dtype=Int64)],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    )
    fs = feature_store(
        tmp_path,
        unique_project,
        hexpire_block(redis_server.connection_string, stream_ttl_seconds=600, batch_ttl_seconds=7200),
    )
    fs.apply([USER, batch, *views.values()])
    now = datetime.now(UTC)
    for name in views:
        fs.push(
            f"{name}_push",
            pd.DataFrame({"user_id": ["u1"], "clicks": [1], "event_timestamp": [now]}),
            to=PushMode.ONLINE,
        )
    fs.write_to_online_store("batchy", pd.DataFrame({"user_id": ["u1"], "score": [5], "event_timestamp": [now]}))
    key = f"fs:{unique_project}:user_id=u1"
    ttls = field_ttls(redis_client, key.encode(), [f"{name}:clicks" for name in views] + ["batchy:score"])
    assert 115 <= ttls["tagged:clicks"] <= 120  # the tag wins
    assert 3595 <= ttls["feast_ttl:clicks"] <= 3600  # then the view's own Feast ttl=
    assert 595 <= ttls["zero_ttl:clicks"] <= 600 and 595 <= ttls["no_ttl:clicks"] <= 600  # then stream_ttl_seconds
    assert ttls["batchy:score"] == -1  # batch fields live with the key...
    assert 7195 <= redis_client.ttl(key) <= 7200  # ...whose TTL is batch_ttl_seconds, not Feast's ttl=


# ---------------------------------------------------------------- 3. skipped rows are visible


def test_feast_materialize_cli_warns_about_rows_it_did_not_write(tmp_path, redis_server, redis_client, unique_project):
    """Materializing a day of activity history with a 60 s stream TTL: most rows are past
    their expiry. The Feast CLI, at its default log level, shows why and what to change."""
    repo = make_repo(tmp_path / "repo", unique_project, redis_server.connection_string, stream_ttl_seconds=60, count=6)
    feast_cli(repo, "apply")
    now = repo.data["now"]
    proc = feast_cli(
        repo,
        "materialize",
        (now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S"),
        (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    output = proc.stdout + proc.stderr
    [warning] = [line for line in output.splitlines() if "WARNING" in line and "user_activity" in line]
    assert "wrote 0 of 6 rows" in warning and "6 already past their expiry" in warning
    assert "event time + 60 s" in warning and "stream_ttl_seconds" in warning and "hexpire.ttl_seconds" in warning
    assert not any(
        "WARNING" in line and "user_profile" in line for line in output.splitlines()
    )  # nothing skipped there


def test_push_and_write_to_online_store_warn_about_stale_rows(
    tmp_path, redis_server, unique_project, caplog, monkeypatch
):
    now = datetime.now(UTC)
    view = FeatureView(
        name="clicks",
        entities=[USER],
        schema=[Field(name="clicks", dtype=Int64)],
        source=PushSource(
            name="clicks_push", batch_source=FileSource(path="unused.parquet", timestamp_field="event_timestamp")
        ),
    )
    fs = feature_store(tmp_path, unique_project, hexpire_block(redis_server.connection_string))
    fs.apply([USER, view])
    fs.push(
        "clicks_push",
        pd.DataFrame({"user_id": ["u1", "u2"], "clicks": [2, 2], "event_timestamp": [now, now]}),
        to=PushMode.ONLINE,
    )
    older = pd.DataFrame(
        {"user_id": ["u1", "u2", "u3"], "clicks": [1, 1, 1], "event_timestamp": [now - timedelta(seconds=5)] * 3}
    )
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        fs.push("clicks_push", older, to=PushMode.ONLINE)  # the view's first warning: as it comes
        fs.write_to_online_store("clicks", older)  # within the minute after it: counted, not logged
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # u3 is new the first time; the second time its equal event time is rewritten (a re-run).
    assert len(warnings) == 1 and "'clicks': wrote 1 of 3 rows; skipped 2 older than the event time" in warnings[0]

    monkeypatch.setattr(SkippedRowWarnings, "INTERVAL_S", 0.0)  # the minute is over
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="feast_redis_hexpire"):
        fs.write_to_online_store("clicks", older)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'clicks': wrote 2 of 6 rows; skipped 4 older than the event time" in warnings[0]
    assert "in 2 write calls" in warnings[0]  # the paced call's counts travel with the next warning
    stats = fs._get_provider().online_store.stats
    assert stats.rows_skipped_stale == 6


# ---------------------------------------------------------------- 4. Feast's config names


def test_key_ttl_seconds_works_like_feasts_builtin_store_also_when_changed_at_runtime(
    tmp_path, redis_server, redis_client, unique_project
):
    view = FeatureView(
        name="scores",
        entities=[USER],
        schema=[Field(name="score", dtype=Int64)],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    )
    fs = feature_store(tmp_path, unique_project, hexpire_block(redis_server.connection_string, key_ttl_seconds=900))
    fs.apply([USER, view])
    key = f"fs:{unique_project}:user_id=u1"
    fs.write_to_online_store(
        "scores", pd.DataFrame({"user_id": ["u1"], "score": [1], "event_timestamp": [datetime.now(UTC)]})
    )
    assert 895 <= redis_client.ttl(key) <= 900
    fs.config.online_store.key_ttl_seconds = 1  # as with Feast's built-in store: the next write uses it
    fs.write_to_online_store(
        "scores", pd.DataFrame({"user_id": ["u1"], "score": [2], "event_timestamp": [datetime.now(UTC)]})
    )
    assert redis_client.pttl(key) <= 1000
    time.sleep(1.2)
    assert not redis_client.exists(key)
    with pytest.raises(Exception, match=r"key_ttl_seconds \(5\) and batch_ttl_seconds \(900\) disagree"):
        RedisHexpireOnlineStoreConfig(connection_string="h:1", key_ttl_seconds=5, batch_ttl_seconds=900)


# ---------------------------------------------------------------- 5. on-demand and stream feature views


def test_on_demand_feature_view_written_to_the_online_store_matches_sqlite(
    tmp_path, redis_server, redis_client, unique_project
):
    """Feast passes an ODFV's join key among its values and writes ODFVs first during
    `materialize`: the row is stored (without the join key as a field) and read back."""
    now = datetime.now(UTC).replace(microsecond=0)
    source = parquet(
        tmp_path,
        "tx",
        pd.DataFrame(
            {
                "user_id": ["u1", "u2"],
                "amount": [10.0, 30.0],
                "count": [2, 3],
                "event_timestamp": [now - timedelta(hours=1)] * 2,
            }
        ),
    )
    tx = FeatureView(
        name="tx",
        entities=[USER],
        ttl=timedelta(days=1),
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="amount", dtype=Float64),
            Field(name="count", dtype=Int64),
        ],
        source=source,
    )

    @on_demand_feature_view(
        sources=[tx], schema=[Field(name="avg_amount", dtype=Float64)], write_to_online_store=True, entities=[USER]
    )
    def tx_avg(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"avg_amount": inputs["amount"] / inputs["count"]})

    answers = {}
    for name, fs in twins(tmp_path, redis_server, unique_project).items():
        fs.apply([USER, source, tx, tx_avg])
        fs.materialize(now - timedelta(days=1), now)
        answers[name] = online(
            fs, ["tx_avg:avg_amount", "tx:amount"], [{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "nobody"}]
        )
    assert answers["hexpire"] == answers["sqlite"]
    assert answers["hexpire"]["avg_amount"] == [5.0, 10.0, None]
    stored = hash_of(redis_client, f"fs:{unique_project}:user_id=u1")
    assert stored["tx_avg:avg_amount"] == "5.0" and "_ts:tx_avg" in stored
    assert not any(field.endswith("user_id") for field in stored)  # the entity is the key, not a field


def test_stream_feature_view_does_not_store_its_join_key_as_a_feature(
    tmp_path, redis_server, redis_client, unique_project
):
    push = PushSource(
        name="taps_push", batch_source=FileSource(path="unused.parquet", timestamp_field="event_timestamp")
    )
    taps = StreamFeatureView(
        name="taps",
        entities=[USER],
        schema=[Field(name="user_id", dtype=String), Field(name="taps", dtype=Int64)],
        source=push,
        ttl=timedelta(minutes=10),
    )
    answers = {}
    for name, fs in twins(tmp_path, redis_server, unique_project).items():
        fs.apply([USER, push, taps])
        fs.push(
            "taps_push",
            pd.DataFrame({"user_id": ["u1"], "taps": [3], "event_timestamp": [datetime.now(UTC)]}),
            to=PushMode.ONLINE,
        )
        answers[name] = online(fs, ["taps:taps"], [{"user_id": "u1"}])
    assert answers["hexpire"] == answers["sqlite"] == {"user_id": ["u1"], "taps": [3]}
    stored = hash_of(redis_client, f"fs:{unique_project}:user_id=u1")
    assert set(stored) == {"taps:taps", "_ts:taps"}
    assert (
        595 <= field_ttls(redis_client, f"fs:{unique_project}:user_id=u1".encode(), ["taps:taps"])["taps:taps"] <= 600
    )


# ---------------------------------------------------------------- 6. dropped features


@pytest.mark.parametrize("naming", ["plain", "qualified"])
def test_feast_apply_removes_the_fields_of_dropped_and_renamed_features(
    tmp_path, redis_server, redis_client, unique_project, naming
):
    repo = make_repo(tmp_path / "repo", unique_project, redis_server.connection_string, count=4)
    settings = (repo.path / "feature_store.yaml").read_text().replace("field_naming: plain", f"field_naming: {naming}")
    (repo.path / "feature_store.yaml").write_text(settings)
    feast_cli(repo, "apply")
    now = repo.data["now"]
    feast_cli(
        repo,
        "materialize",
        (now - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%S"),
        (now + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    prefix = "" if naming == "plain" else "user_tx_stats:"
    before = hash_of(redis_client, repo.key("u0001").decode())
    assert f"{prefix}chargeback_count_180d" in before and f"{prefix}avg_amount_30d" in before

    # Drop chargeback_count_180d, rename avg_amount_30d to avg_amount_31d (a drop plus an add).
    features = (repo.path / "features.py").read_text()
    features = features.replace('        Field(name="chargeback_count_180d", dtype=Int64),\n', "")
    features = features.replace('"avg_amount_30d"', '"avg_amount_31d"')
    (repo.path / "features.py").write_text(features)
    feast_cli(repo, "apply")
    for uid in repo.data["user_ids"]:
        after = hash_of(redis_client, repo.key(uid).decode())
        assert f"{prefix}chargeback_count_180d" not in after and f"{prefix}avg_amount_30d" not in after, uid
        assert after[f"{prefix}tx_count_7d"] == before[f"{prefix}tx_count_7d"] or uid != "u0001"
        assert "_ts:user_tx_stats" in after and any(k.endswith("country_iso") for k in after)

    remove_view_from_definitions(repo, "user_tx_stats")
    feast_cli(repo, "apply")
    after = hash_of(redis_client, repo.key("u0001").decode())
    assert not any("tx_count_7d" in k or k == "_ts:user_tx_stats" for k in after)
    assert any(k.endswith("country_iso") for k in after)  # other views untouched


# ---------------------------------------------------------------- 7. versioned feature views


def test_versioned_views_keep_versions_apart_and_report_version_metadata(
    tmp_path, redis_server, redis_client, unique_project
):
    now = datetime.now(UTC).replace(microsecond=0)
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "trips": [3, 4],
            "rating": [4.5, 3.9],
            "event_timestamp": [now - timedelta(hours=1)] * 2,
        }
    )
    source = parquet(tmp_path, "drivers", frame)

    def view(*fields: Field) -> FeatureView:
        return FeatureView(
            name="driver_stats", entities=[USER], ttl=timedelta(days=1), schema=list(fields), source=source
        )

    v0 = view(Field(name="trips", dtype=Int64))
    v1 = view(Field(name="trips", dtype=Int64), Field(name="rating", dtype=Float64))
    answers = {}
    for name, fs in twins(tmp_path, redis_server, unique_project, versioning=True).items():
        fs.apply([USER, source, v0])
        fs.materialize(now - timedelta(days=1), now)
        fs.apply([v1])
        assert fs.get_feature_view("driver_stats").current_version_number == 1
        fs.write_to_online_store("driver_stats", frame.assign(trips=[30, 40], event_timestamp=[now] * 2))
        rows = [{"user_id": "u1"}, {"user_id": "u2"}]
        answers[name] = {
            "v0": online(fs, ["driver_stats@v0:trips"], rows),
            "v1": online(fs, ["driver_stats@v1:trips", "driver_stats@v1:rating"], rows),
            "latest": online(fs, ["driver_stats:trips"], rows),
            "meta": [
                (m.name, m.version)
                for m in fs.get_online_features(
                    features=["driver_stats@v1:trips"], entity_rows=rows, include_feature_view_version_metadata=True
                ).proto.metadata.feature_view_metadata
            ],
        }
    assert answers["hexpire"] == answers["sqlite"]
    assert answers["hexpire"]["v0"]["trips"] == [3, 4]
    assert answers["hexpire"]["v1"]["trips"] == [30, 40] and answers["hexpire"]["v1"]["rating"] == [4.5, 3.9]
    stored = hash_of(redis_client, f"fs:{unique_project}:user_id=u1")
    assert stored["driver_stats:trips"] == "3" and stored["driver_stats@v1:trips"] == "30"
    assert "_ts:driver_stats" in stored and "_ts:driver_stats@v1" in stored


# ---------------------------------------------------------------- 8. struct values


def test_struct_values_are_stored_in_their_declared_field_order(tmp_path, redis_server, redis_client, unique_project):
    """The stored JSON follows the Struct's declared order (what redis-cli shows). Feast then
    hands every store's value back as a protobuf map, whose iteration order protobuf
    defines: the read equals sqlite's."""
    person = Struct({"name": String, "age": Int32, "city": String})
    view = FeatureView(
        name="people",
        entities=[USER],
        schema=[Field(name="person", dtype=person)],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    )
    frame = pd.DataFrame(
        {
            "user_id": ["u1"],
            "person": [{"name": "Ada", "age": 36, "city": "London"}],
            "event_timestamp": [datetime.now(UTC)],
        }
    )
    answers = {}
    for name, fs in twins(tmp_path, redis_server, unique_project).items():
        fs.apply([USER, view])
        fs.write_to_online_store("people", frame)
        answers[name] = online(fs, ["people:person"], [{"user_id": "u1"}])
    assert answers["hexpire"] == answers["sqlite"]
    assert answers["hexpire"]["person"][0] == {"name": "Ada", "age": 36, "city": "London"}
    stored = redis_client.hget(f"fs:{unique_project}:user_id=u1", "people:person").decode()
    assert stored.index('"name"') < stored.index('"age"') < stored.index('"city"'), stored
