"""Feature definitions of the compute-engine test repo (`tests.support.engine_repo`
writes its data and yaml and applies these objects).

Covers what materialization must carry through an engine unchanged: a string-keyed
batch view with scalar, array and nullable features of most Feast types, a batch view
on a composite (string, int) key, and a push-fed view (a stream view for the store:
per-field expiry anchored at event time).
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource, StreamFeatureView
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64)


def _source(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=f"data/{name}.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


profile = FeatureView(
    name="profile",
    entities=[user],
    ttl=timedelta(days=30),
    schema=[
        Field(name="country", dtype=String),
        Field(name="age", dtype=Int64),
        Field(name="score", dtype=Float64),
        Field(name="score32", dtype=Float32),
        Field(name="verified", dtype=Bool),
        Field(name="signup_ts", dtype=UnixTimestamp),
        Field(name="tags", dtype=Array(String)),
        Field(name="limits", dtype=Array(Int64)),
        Field(name="weights", dtype=Array(Float64)),
    ],
    source=_source("profile"),
    online=True,
)

pair_stats = FeatureView(
    name="pair_stats",
    entities=[user, merchant],
    ttl=timedelta(days=30),
    schema=[
        Field(name="tx_count", dtype=Int32),
        Field(name="total", dtype=Float64),
    ],
    source=_source("pair_stats"),
    online=True,
)

activity_push = PushSource(name="activity_push", batch_source=_source("activity"))

activity = FeatureView(
    name="activity",
    entities=[user],
    # A push-fed view: per-field expiry at event time + 30 days, so every row of the
    # data (all within the last days) is live whichever engine writes it.
    ttl=timedelta(days=30),
    schema=[
        Field(name="clicks", dtype=Int64),
        Field(name="last_page", dtype=String),
    ],
    source=activity_push,
    online=True,
)


OBJECTS = [user, merchant, activity_push, profile, pair_stats, activity]
MATERIALIZED_VIEWS = ("profile", "pair_stats", "activity")


def activity_stream() -> StreamFeatureView:
    """The push source's rows as a StreamFeatureView (built on demand: constructing one
    warns that the class is experimental)."""
    return StreamFeatureView(
        name="activity_stream",
        entities=[user],
        ttl=timedelta(days=30),
        schema=[Field(name="clicks", dtype=Int64), Field(name="last_page", dtype=String)],
        source=activity_push,
        online=True,
    )
