"""Two copies of one small Feast repo with identical data: one on Feast's reference
sqlite online store, one on this store. Tests run the same Feast calls on both and
compare what `get_online_features` returns."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.feast_repo import apply, hexpire_online_store, write_feature_store_yaml

DRIVERS = [1001, 1002, 1003, 1004, 1005]
CITIES = ["Lisbon", "Porto", "Faro", "Braga", "Evora"]


def write_data(data_dir: Path, now: datetime) -> None:
    """Ten hourly rows per driver ending an hour before `now`, and an empty label file."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    rows = []
    for hours_ago in range(10, 0, -1):
        event = now - timedelta(hours=hours_ago)
        for i, driver in enumerate(DRIVERS):
            rows.append(
                {
                    "driver_id": driver,
                    "conv_rate": np.float32(rng.random()),
                    "acc_rate": np.float32(rng.random()),
                    "avg_daily_trips": int(rng.integers(0, 1000)),
                    "city": CITIES[(i + hours_ago) % len(CITIES)],
                    "event_timestamp": event,
                    "created": event,
                }
            )
    frame = pd.DataFrame(rows)
    for column in ("event_timestamp", "created"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(data_dir / "driver_stats.parquet", index=False)
    labels = pa.schema(
        [
            ("driver_id", pa.int64()),
            ("is_reliable", pa.int64()),
            ("quality_score", pa.float32()),
            ("labeler", pa.string()),
            ("event_timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )
    pq.write_table(
        pa.table({f.name: pa.array([], type=f.type) for f in labels}, schema=labels), data_dir / "driver_labels.parquet"
    )


def compat_stores(base: Path, project: str, connection_string: str, key_prefix: str, now: datetime) -> dict[str, Any]:
    """{"sqlite": FeatureStore, "hexpire": FeatureStore}: both applied, nothing written."""
    from tests.support import compat_repo_definitions as definitions

    online_stores = {
        "sqlite": {"type": "sqlite", "path": "data/online_store.db"},
        "hexpire": hexpire_online_store(connection_string, key_prefix),
    }
    stores = {}
    for name, online_store in online_stores.items():
        path = base / name
        write_feature_store_yaml(path, project, online_store)
        write_data(path / "data", now)
        stores[name] = apply(path, list(definitions.OBJECTS))
    return stores
