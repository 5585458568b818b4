"""Feature definitions for the hexpire demo: two batch views, one streaming view (and
``user_embedding.py``: a second streaming view, vector-indexed).

Storage layout produced by the feast_redis_hexpire online store: every user is ONE
Redis hash (``fs:hexpire_demo:user_id=u0001``) holding the features of all three
views plus one ``_ts:<view>`` field per view.

* ``user_profile`` / ``user_tx_stats`` are *batch* views: written by
  ``feast materialize-incremental`` once a day; the whole key gets an EXPIRE of
  ``batch_ttl_seconds`` (feature_store.yaml) on every write, so a user that stops being
  refreshed disappears after two missed cycles.
* ``user_activity`` is a *stream* view (its source is a PushSource): written by
  ``FeatureStore.push`` / ``feast serve``'s ``/push``; each written field gets its own
  expiry at event_time + ``stream_ttl_seconds``, so stale streaming features read
  as missing while the batch features on the same key are still served.

On the batch views, ``ttl`` is Feast's *offline* max-age (point-in-time joins and the
start of the first ``materialize-incremental`` window), not the Redis key TTL. On a stream
view a non-zero ``ttl`` would also be its per-field TTL online; ``user_activity`` has
``ttl=0`` so that ``stream_ttl_seconds`` decides.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.types import Float64, Int64, String, UnixTimestamp
from feast.value_type import ValueType

# Paths are relative to this repo directory (Feast resolves them against repo_path);
# generate_data.py writes them.
DATA_DIR = "data"

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A customer account, e.g. u0001.",
)

# --- batch sources -----------------------------------------------------------------

user_profile_source = FileSource(
    name="user_profile_source",
    path=f"{DATA_DIR}/user_profile.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

user_tx_stats_source = FileSource(
    name="user_tx_stats_source",
    path=f"{DATA_DIR}/user_tx_stats.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

# History of the pushed activity features: backs the push source for historical
# retrieval and for `feast materialize` of the streaming view.
user_activity_batch_source = FileSource(
    name="user_activity_batch_source",
    path=f"{DATA_DIR}/user_activity.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

user_activity_push = PushSource(
    name="user_activity_push",
    batch_source=user_activity_batch_source,
    description="Realtime login / transaction aggregates from feature_repo/stream_producer.py.",
)

# --- feature views -----------------------------------------------------------------

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    # Refreshed daily; a profile snapshot older than two days is considered missing
    # offline, matching the 2-day key TTL online.
    ttl=timedelta(days=2),
    schema=[
        Field(name="country_iso", dtype=String),
        Field(name="risk_segment", dtype=String),
        Field(name="account_age_days", dtype=Int64),
    ],
    source=user_profile_source,
    online=True,
    tags={"team": "risk"},
)

user_tx_stats = FeatureView(
    name="user_tx_stats",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="tx_count_7d", dtype=Int64),
        Field(name="avg_amount_30d", dtype=Float64),
        Field(name="chargeback_count_180d", dtype=Int64),
    ],
    source=user_tx_stats_source,
    online=True,
    tags={"team": "risk"},
)

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    # ttl=0: how long pushed fields live online is then the store's stream_ttl_seconds
    # (feature_store.yaml), which the demo changes at runtime. A non-zero Feast ttl= on a
    # stream view would take precedence over it (and a hexpire.ttl_seconds tag over
    # both). Offline, 0 means no max age; the first materialize-incremental starts a
    # year back.
    ttl=timedelta(0),
    schema=[
        Field(name="last_login_ts", dtype=UnixTimestamp),
        Field(name="last_device_id", dtype=String),
        Field(name="tx_count_5m", dtype=Int64),
        Field(name="failed_logins_15m", dtype=Int64),
        Field(name="session_country", dtype=String),
    ],
    # A PushSource makes this a stream view for the store (per-field HPEXPIREAT);
    # the tag says the same thing explicitly.
    source=user_activity_push,
    online=True,
    tags={"team": "risk", "hexpire.kind": "stream"},
)

# --- feature service ---------------------------------------------------------------

fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[
        user_profile[["risk_segment"]],
        user_tx_stats[["tx_count_7d", "avg_amount_30d"]],
        user_activity[["tx_count_5m", "failed_logins_15m", "last_device_id"]],
    ],
    description="Inputs of the v1 card-fraud model: slow batch context + fresh activity.",
)
