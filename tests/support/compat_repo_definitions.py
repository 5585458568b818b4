"""Definitions of the Feast-compatibility repo (`tests.support.compat_repo`): Feast's
documented write paths on the quickstart's driver data.

- `driver_stats`: a batch view; `driver_stats_fresh`: the same columns fed by a push
  source whose batch source is the same parquet file (as in `feast init`'s quickstart).
- `fresh_plus_val`: an on-demand view computed at read time from the push-fed view and
  request data.
- `stats_on_write` (pandas) and `fresh_on_write` (python): on-demand views with
  `write_to_online_store=True`, transformed when written and served from the store.
- `driver_labels`: a LabelView fed by its own push source (new in Feast 0.67's quickstart).
"""

from datetime import timedelta
from typing import Any

import pandas as pd
from feast import Entity, FeatureView, Field, FileSource, LabelView, PushSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float32, Float64, Int64, String
from feast.value_type import ValueType

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)

driver_stats_source = FileSource(
    name="driver_stats_source",
    path="data/driver_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

STATS_SCHEMA = [
    Field(name="conv_rate", dtype=Float32),
    Field(name="acc_rate", dtype=Float32),
    Field(name="avg_daily_trips", dtype=Int64),
    Field(name="city", dtype=String),
]

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=STATS_SCHEMA,
    source=driver_stats_source,
    online=True,
)

driver_stats_push = PushSource(name="driver_stats_push", batch_source=driver_stats_source)

driver_stats_fresh = FeatureView(
    name="driver_stats_fresh",
    entities=[driver],
    ttl=timedelta(days=1),
    schema=STATS_SCHEMA,
    source=driver_stats_push,
    online=True,
)

vals = RequestSource(name="vals", schema=[Field(name="val_to_add", dtype=Int64)])


@on_demand_feature_view(
    sources=[driver_stats_fresh, vals],
    schema=[Field(name="conv_plus_val", dtype=Float64)],
)
def fresh_plus_val(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["conv_plus_val"] = inputs["conv_rate"] + inputs["val_to_add"]
    return out


@on_demand_feature_view(
    entities=[driver],
    sources=[driver_stats],
    schema=[Field(name="conv_x_acc", dtype=Float64), Field(name="trips_doubled", dtype=Int64)],
    mode="pandas",
    write_to_online_store=True,
)
def stats_on_write(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["conv_x_acc"] = (inputs["conv_rate"] * inputs["acc_rate"]).astype("float64")
    out["trips_doubled"] = (inputs["avg_daily_trips"] * 2).astype("int64")
    return out


@on_demand_feature_view(
    entities=[driver],
    sources=[driver_stats_fresh],
    schema=[Field(name="city_upper", dtype=String), Field(name="trips_plus_one", dtype=Int64)],
    mode="python",
    write_to_online_store=True,
)
def fresh_on_write(inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "city_upper": [city.upper() for city in inputs["city"]],
        "trips_plus_one": [trips + 1 for trips in inputs["avg_daily_trips"]],
    }


driver_labels_push = PushSource(
    name="driver_labels_push",
    batch_source=FileSource(
        name="driver_labels_source", path="data/driver_labels.parquet", timestamp_field="event_timestamp"
    ),
)

driver_labels = LabelView(
    name="driver_labels",
    entities=[driver],
    schema=[
        Field(name="is_reliable", dtype=Int64),
        Field(name="quality_score", dtype=Float32),
        Field(name="labeler", dtype=String),
    ],
    source=driver_labels_push,
    labeler_field="labeler",
)

OBJECTS = [
    driver,
    driver_stats_source,
    driver_stats,
    driver_stats_push,
    driver_stats_fresh,
    vals,
    fresh_plus_val,
    stats_on_write,
    fresh_on_write,
    driver_labels_push,
    driver_labels,
]
