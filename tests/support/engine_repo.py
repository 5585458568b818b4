"""A small Feast repo for materializing with Feast's compute engines, and a dump of
what a project holds in Redis for comparing engines.

`EngineRepo.build()` writes a feature_store.yaml (with an optional `batch_engine:` block)
and deterministic data for a fixed `now`, and applies `engine_repo_definitions`: two
repos built with the same `now` differ only in project and engine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.feast_repo import apply, hexpire_online_store, write_feature_store_yaml

USERS = [f"u{i:02d}" for i in range(12)]
MERCHANTS = [101, 102, 103]


@dataclass
class EngineRepo:
    """A repo to build (yaml, data, apply) and materialize; plain data, so a test can
    describe it without importing Feast and have another process build it."""

    path: Path
    project: str
    connection_string: str
    now: datetime
    key_prefix: str = "fs"
    batch_engine: dict[str, Any] | None = None
    stream_feature_view: bool = False
    """Also apply `activity_stream`, a StreamFeatureView on the push source."""

    def materialize_argv(self, start: datetime, end: datetime, *views: str) -> list[str]:
        """`feast` arguments materializing [start, end) (all views, or those named)."""
        argv = ["-c", str(self.path), "materialize", _cli_time(start), _cli_time(end)]
        for view in views:
            argv += ["--views", view]
        return argv

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(path=str(self.path), now=self.now.isoformat())
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineRepo:
        return cls(**dict(data, path=Path(data["path"]), now=datetime.fromisoformat(data["now"])))

    def build(self) -> EngineRepo:
        """Write feature_store.yaml and the data, and apply the definitions."""
        from tests.support import engine_repo_definitions as definitions

        online_store = hexpire_online_store(self.connection_string, self.key_prefix)
        write_feature_store_yaml(self.path, self.project, online_store, self.batch_engine)
        write_data(self.path / "data", self.now)
        objects: list[Any] = list(definitions.OBJECTS)
        if self.stream_feature_view:
            objects.append(definitions.activity_stream())
        apply(self.path, objects)
        return self


def _cli_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def write_data(data_dir: Path, now: datetime) -> None:
    """Rows for every view, all before `now`: several per entity (materialize keeps the
    newest), one event-time tie broken by the created column, nulls, NaN and arrays."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    data_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    hour = timedelta(hours=1)

    profile_rows = []
    for i, user in enumerate(USERS):
        for age_hours in (50, 26, 3):
            event = now - age_hours * hour - i * timedelta(minutes=1)
            profile_rows.append(
                {
                    "user_id": user,
                    "country": ["DE", "PT", "FR", "JP"][(i + age_hours) % 4],
                    "age": int(rng.integers(18, 90)),
                    "score": float(rng.random()),
                    "score32": float(np.float32(rng.random())),
                    "verified": bool(rng.integers(0, 2)),
                    "signup_ts": now - timedelta(days=100 + i),
                    "tags": [f"t{j}" for j in range(i % 3)],
                    "limits": [int(x) for x in rng.integers(0, 1000, size=i % 4)],
                    "weights": [float(x) for x in rng.random(size=2)],
                    "event_timestamp": event,
                    "created": event,
                }
            )
    newest = {row["user_id"]: row for row in profile_rows}  # the last row per user is its newest
    newest["u03"]["country"] = None
    newest["u04"]["tags"] = None
    newest["u05"]["score"] = float("nan")
    newest["u06"]["weights"] = [0.5, float("nan"), float("inf")]
    newest["u07"]["age"] = None
    # An event-time tie: the row created later must win.
    tie = dict(newest["u08"], country="TIE-LATER", created=newest["u08"]["created"] + timedelta(seconds=30))
    newest["u08"]["country"] = "TIE-EARLIER"
    profile_rows.append(tie)

    pair_rows = []
    for i, user in enumerate(USERS):
        for merchant in MERCHANTS[: 1 + i % 3]:
            for age_hours in (30, 5):
                event = now - age_hours * hour - timedelta(minutes=merchant - 100)
                pair_rows.append(
                    {
                        "user_id": user,
                        "merchant_id": merchant,
                        "tx_count": int(rng.integers(0, 50)),
                        "total": round(float(rng.random() * 500), 2),
                        "event_timestamp": event,
                        "created": event,
                    }
                )

    activity_rows = []
    for i, user in enumerate(USERS):
        for age_minutes in (90, 20 + i):
            event = now - timedelta(minutes=age_minutes)
            activity_rows.append(
                {
                    "user_id": user,
                    "clicks": int(rng.integers(0, 100)),
                    "last_page": f"/p/{i}/{age_minutes}",
                    "event_timestamp": event,
                    "created": event,
                }
            )

    def write(name: str, rows: list[dict[str, Any]], schema: dict[str, pa.DataType]) -> None:
        frame = pd.DataFrame(rows)
        for column in ("event_timestamp", "created"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        fields = [pa.field(c, schema.get(c, table.schema.field(c).type)) for c in table.column_names]
        pq.write_table(table.cast(pa.schema(fields)), data_dir / f"{name}.parquet")

    write(
        "profile",
        profile_rows,
        {
            "age": pa.int64(),
            "score32": pa.float32(),
            "signup_ts": pa.timestamp("us", tz="UTC"),
            "tags": pa.list_(pa.string()),
            "limits": pa.list_(pa.int64()),
        },
    )
    write("pair_stats", pair_rows, {"tx_count": pa.int32()})
    write("activity", activity_rows, {})


# ------------------------------------------------------------------ Redis contents


@dataclass
class StoredHash:
    fields: dict[bytes, bytes]
    field_expiry_ms: dict[bytes, int]  # HPEXPIRETIME: -1 none
    key_expiry_ms: int  # PEXPIRETIME: -1 none


def project_contents(client, key_prefix: str, project: str) -> dict[bytes, StoredHash]:
    """Every key of one project (suffix after `<prefix>:<project>:`), its fields and expiries."""
    head = f"{key_prefix}:{project}:".encode()
    out: dict[bytes, StoredHash] = {}
    for key in sorted(client.scan_iter(match=head + b"*", count=1000)):
        fields = client.hgetall(key)
        names = sorted(fields)
        expiries = client.execute_command("HPEXPIRETIME", key, "FIELDS", len(names), *names) if names else []
        out[key[len(head) :]] = StoredHash(
            fields=fields,
            field_expiry_ms=dict(zip(names, (int(e) for e in expiries))),
            key_expiry_ms=int(client.execute_command("PEXPIRETIME", key)),
        )
    return out
