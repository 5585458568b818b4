"""The sample repo's vector view: ``user_embedding``, a second *stream* view.

A small 8-dim embedding of each user's activity (``generate_data.user_embedding``: a
fixed-seed projection, no model), indexed for vector search (``vector_index=True``,
COSINE), so ``FeatureStore.retrieve_online_documents_v2`` finds similar users. It lives in
the same hash as the user's other features; with ``vector_enabled: true`` in the online
store config (the demo sets it) ``feast apply`` builds a Redis Query Engine index over those
hashes. Its own PushSource is fed by ``stream_producer.py`` beside each activity event, so
each embedding expires per field at event time + ``stream_ttl_seconds``, and an expired one
is no longer a search result. Without ``vector_enabled`` it is stored and read like any
other feature (raw little-endian floats) and nothing is indexed.

Kept in a file of its own, importing nothing of the repo's, so a copy of the repo can
leave it out (the store's core end-to-end tests check the three views' hashes field by
field). So it declares the ``user`` entity again, exactly as features.py does: applying
an equal entity twice is one entity.
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, PushSource
from feast.types import Array, Float32
from feast.value_type import ValueType

DATA_DIR = "data"  # features.DATA_DIR

EMBEDDING_DIM = 8  # generate_data.EMBEDDING_DIM

user = Entity(  # features.user, the same entity
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A customer account, e.g. u0001.",
)

user_embedding_batch_source = FileSource(
    name="user_embedding_batch_source",
    path=f"{DATA_DIR}/user_embedding.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

user_embedding_push = PushSource(
    name="user_embedding_push",
    batch_source=user_embedding_batch_source,
    description="Activity embeddings (generate_data.user_embedding) from feature_repo/stream_producer.py.",
)

user_embedding = FeatureView(
    name="user_embedding",
    entities=[user],
    ttl=timedelta(0),  # as user_activity: stream_ttl_seconds decides how long it lives online
    schema=[
        Field(
            name="embedding",
            dtype=Array(Float32),
            vector_index=True,
            vector_length=EMBEDDING_DIM,
            vector_search_metric="COSINE",
        ),
    ],
    source=user_embedding_push,
    online=True,
    tags={"team": "risk", "hexpire.kind": "stream"},
)
