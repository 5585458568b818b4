"""Vector-indexed fields (`Field(vector_index=True)`) are stored as the raw little-endian
floats the Query Engine reads, and still round-trip exactly through Feast's reads; the
config accepts Feast's vector-store names. Storage needs no search module: Redis and Valkey."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import FloatList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Float32, Float64, String
from feast.value_type import ValueType

from devsupport.feature_stores import feature_store
from feast_redis_hexpire.errors import ConfigError, InvalidFeatureValue, InvalidViewConfig
from feast_redis_hexpire.inspection import inspect_key
from feast_redis_hexpire.store import layout_of
from tests.support.parity import differences, project_state
from tests.support.store import generic_online_features, generic_online_features_async, run_async

pytestmark = pytest.mark.both_servers

ITEM = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
SOURCE = FileSource(path="unused.parquet", timestamp_field="event_timestamp")
VIEW = FeatureView(
    name="item_vectors",
    entities=[ITEM],
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="emb", dtype=Array(Float32), vector_index=True, vector_length=4, vector_search_metric="COSINE"),
        Field(name="plain", dtype=Array(Float32)),
        Field(name="title", dtype=String),
    ],
    source=SOURCE,
)
VIEW64 = FeatureView(  # Feast allows one vector feature per view
    name="item_vectors64",
    entities=[ITEM],
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="emb64", dtype=Array(Float64), vector_index=True, vector_length=3),
    ],
    source=SOURCE,
)
REFS = [f"item_vectors:{name}" for name in ("emb", "plain", "title")] + ["item_vectors64:emb64"]
TS = datetime(2026, 1, 1, tzinfo=timezone.utc)

EMB = [[0.1, -2.5, 3.0e-8, 1e30], [float("inf"), 0.0, -0.0, 7.25], [1.0, 2.0, 3.0, 4.0]]
EMB64 = [[0.1, 1 / 3, -1e300], [2.0**-1074, 5.5, -7.0], [0.0, 0.0, 1.0]]


def store(server, tmp: Path, provider: str = "local", **online) -> FeatureStore:
    fs = feature_store(server, tmp, provider, **online)
    fs.apply([ITEM, VIEW, VIEW64])
    return fs


def frame(emb=EMB) -> pd.DataFrame:
    n = len(emb)
    return pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "emb": emb,
            "plain": [[0.5, 0.25]] * n,
            "title": [f"title {k}" for k in range(n)],
            "event_timestamp": [TS] * n,
        }
    )


def frame64() -> pd.DataFrame:
    return pd.DataFrame({"item_id": ["i0", "i1", "i2"], "emb64": EMB64, "event_timestamp": [TS] * 3})


def write_both(fs: FeatureStore, data: pd.DataFrame | None = None) -> None:
    fs.write_to_online_store("item_vectors", frame() if data is None else data)
    fs.write_to_online_store("item_vectors64", frame64())


def as_float32(values):
    return [float(np.float32(v)) for v in values]


@pytest.fixture
def raw(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_vector_fields_stored_as_raw_floats_and_read_back_exactly(redis_server, raw, tmp_path):
    fs = store(redis_server, tmp_path)
    write_both(fs)
    key = f"fs:{fs.project}:item_id=i0".encode()
    stored = raw.hgetall(key)
    assert stored[b"item_vectors:emb"] == np.array(EMB[0], "<f4").tobytes()
    assert stored[b"item_vectors64:emb64"] == np.array(EMB64[0], "<f8").tobytes()
    assert stored[b"item_vectors:plain"] == b"[0.5,0.25]"  # not vector-indexed: today's text
    rows = [{"item_id": f"i{k}"} for k in range(3)] + [{"item_id": "missing"}]
    fast = fs.get_online_features(features=REFS, entity_rows=rows).to_dict()
    assert fast["emb"] == [as_float32(v) for v in EMB] + [None]
    assert fast["emb64"] == EMB64 + [None]
    assert fast["plain"][0] == [0.5, 0.25]
    assert generic_online_features(fs, REFS, rows).to_dict() == fast
    assert run_async(fs, lambda: fs.get_online_features_async(features=REFS, entity_rows=rows)).to_dict() == fast
    assert run_async(fs, lambda: generic_online_features_async(fs, REFS, rows)).to_dict() == fast


def test_arrow_write_path_stores_the_same_bytes(redis_server, raw, tmp_path):
    """HexpireProvider encodes Arrow columns itself: byte for byte what Feast's path stores."""
    default = store(redis_server, tmp_path)
    arrow = store(redis_server, tmp_path, provider="feast_redis_hexpire.HexpireProvider")
    data = frame()
    data.loc[1, "emb"] = None  # a null vector: no field, as on Feast's path
    for fs in (default, arrow):
        write_both(fs, data)
    expected = project_state(raw, "fs", default.project)
    assert b"item_vectors:emb" not in expected[b"item_id=i1"].fields
    assert differences(expected, project_state(raw, "fs", arrow.project)) == []
    read = arrow.get_online_features(features=REFS, entity_rows=[{"item_id": "i2"}]).to_dict()
    assert read["emb"] == [as_float32(EMB[2])] and read["emb64"] == [EMB64[2]]


@pytest.mark.parametrize("path", ["online_write_batch", "HexpireProvider materialize", "HexpireProvider push"])
def test_wrong_vector_length_is_refused_and_nothing_is_written(redis_server, raw, tmp_path, path):
    """Every write path refuses a vector whose length is not the field's vector_length with
    the store's InvalidFeatureValue (a ValueError, as Feast's own check raises), naming the
    view, feature and length: online_write_batch (stream engines, custom ingestion) and
    HexpireProvider's Arrow paths, before Feast's plainer check of the same."""
    bad = frame(emb=[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    view = "item_vectors"
    if path == "online_write_batch":
        fs = store(redis_server, tmp_path)
        online = fs._get_provider().online_store
        rows = [
            (
                EntityKeyProto(join_keys=["item_id"], entity_values=[ValueProto(string_val=f"i{k}")]),
                {"emb": ValueProto(float_list_val=FloatList(val=values))},
                TS,
                None,
            )
            for k, values in enumerate(bad["emb"])
        ]
        with pytest.raises(InvalidFeatureValue) as caught:
            online.online_write_batch(fs.config, fs.get_feature_view("item_vectors"), rows, None)
    elif path == "HexpireProvider push":
        # FeatureStore.write_to_online_store checks the DataFrame itself (Feast 0.67+) before
        # any provider sees it: its ValueError, and the store's where Feast checks nothing
        fs = store(redis_server, tmp_path, provider="feast_redis_hexpire.HexpireProvider")
        with pytest.raises(ValueError, match="length 2") as refused:
            fs.write_to_online_store("item_vectors", bad)
        assert list(raw.scan_iter(match=f"fs:{fs.project}:item_id=*")) == []
        if not isinstance(refused.value, InvalidFeatureValue):
            return
        caught = refused
    else:
        bad.to_parquet(tmp_path / "bad.parquet")
        source = FileSource(path=str(tmp_path / "bad.parquet"), timestamp_field="event_timestamp")
        fs = store(redis_server, tmp_path, provider="feast_redis_hexpire.HexpireProvider")
        fs.apply([FeatureView(name="from_file", entities=[ITEM], schema=VIEW.schema, source=source)])
        view = "from_file"
        with pytest.raises(InvalidFeatureValue) as caught:
            fs.materialize(TS - timedelta(days=1), TS + timedelta(days=1), feature_views=["from_file"])
    error = caught.value
    assert (error.view, error.feature, error.value) == (view, "emb", 2)
    assert f"'{view}'" in str(error) and "'emb'" in str(error) and "length 2" in str(error)
    assert "vector_length is 4" in str(error)
    assert list(raw.scan_iter(match=f"fs:{fs.project}:item_id=*")) == []


def test_a_vector_index_on_a_non_float_array_or_without_length_is_refused(redis_server, tmp_path):
    bad_type = FeatureView(
        name="bad_type",
        entities=[ITEM],
        schema=[Field(name="item_id", dtype=String), Field(name="v", dtype=String, vector_index=True)],
        source=SOURCE,
    )
    with pytest.raises(InvalidViewConfig, match="'bad_type'.*'v'.*Array\\(Float32\\) or Array\\(Float64\\)"):
        store(redis_server, tmp_path).apply([bad_type])
    no_length = FeatureView(
        name="no_length",
        entities=[ITEM],
        schema=[Field(name="item_id", dtype=String), Field(name="v", dtype=Array(Float32), vector_index=True)],
        source=SOURCE,
    )
    with pytest.raises(InvalidViewConfig, match="'no_length'.*'v'.*vector_length"):
        store(redis_server, tmp_path).apply([no_length])
    # Milvus's embedding_dim gives the length when the Field declares none
    fs = store(redis_server, tmp_path, embedding_dim=2)
    fs.apply([no_length])
    fs.write_to_online_store("no_length", pd.DataFrame({"item_id": ["a"], "v": [[1.0, 2.0]], "event_timestamp": [TS]}))
    assert fs.get_online_features(features=["no_length:v"], entity_rows=[{"item_id": "a"}]).to_dict()["v"] == [
        [1.0, 2.0]
    ]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"similarity": "hamming"}, "similarity 'hamming': unknown distance metric"),
        ({"similarity": "cosine", "metric_type": "L2"}, "similarity .COSINE. and metric_type .L2. disagree"),
        ({"index_type": "IVF_FLAT"}, "index_type 'IVF_FLAT' must be HNSW or FLAT"),
        ({"embedding_dim": 0}, "embedding_dim: Input should be greater than or equal to 1, got 0"),
    ],
)
def test_config_refuses_what_it_cannot_honour(options, error):
    from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig

    with pytest.raises(ConfigError, match=error):
        RedisHexpireOnlineStoreConfig(**options)


def test_config_accepts_feasts_vector_store_names():
    from feast_redis_hexpire.config import RedisHexpireOnlineStoreConfig

    config = RedisHexpireOnlineStoreConfig(
        vector_enabled=True, text_search_enabled=True, similarity="inner_product", embedding_dim=8, index_type="hnsw"
    )
    assert (config.vector_enabled, config.text_search_enabled, config.default_metric) == (True, True, "IP")
    assert (config.embedding_dim, config.index_type) == (8, "HNSW")
    assert RedisHexpireOnlineStoreConfig(metric_type="COSINE").default_metric == "COSINE"
    assert RedisHexpireOnlineStoreConfig().default_metric == "L2"  # what Feast asks for by default
    assert RedisHexpireOnlineStoreConfig().vector_enabled is False


def test_inspect_shows_a_vector_decoded_and_other_fields_as_stored(redis_server, raw, tmp_path):
    """`inspect` (CLI, demo) prints what redis-cli shows, except a vector's raw float bytes,
    which it shows as their type and first values."""
    fs = store(redis_server, tmp_path)
    write_both(fs)
    layouts = [layout_of(fs.get_feature_view(name), fs.config) for name in ("item_vectors", "item_vectors64")]
    shown = {f.field: f for f in inspect_key(raw, f"fs:{fs.project}:item_id=i2", layouts).fields}
    assert shown["item_vectors:emb"].value == "float32[4] [1, 2, 3, 4]"
    assert shown["item_vectors64:emb64"].value == "float64[3] [0, 0, 1]"
    assert shown["item_vectors:title"].value == raw.hget(f"fs:{fs.project}:item_id=i2", "item_vectors:title").decode()
    spec = layouts[0].features["emb"].vector
    assert spec is not None
    wide = replace(spec, dim=8).describe(np.arange(8, dtype="<f4").tobytes())  # cut after six values
    assert wide == "float32[8] [0, 1, 2, 3, 4, 5, …]"
    assert spec.describe(b"\x00" * 3) is None  # not one vector of the field: shown as stored
