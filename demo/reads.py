"""The page's reads: ``get_online_features`` for one user or a batch, timed (Feast's whole
call, and the store's part inside it) into the latency log, with each value's TTL beside it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from feast_redis_hexpire.inspection import NO_EXPIRY, NO_SUCH_FIELD

from .catalog import FeatureInfo
from .inspection import STREAM_ONLY_NOTE, ms_to_seconds
from .latency import LatencyLog

STORE_READ_HOOKS = ("get_online_features", "_read_features_per_fv", "online_read")
"""The online store's methods that do its reading inside Feast's ``get_online_features``
(its serving fast path, and the grouped hook and per-view read of Feast's generic path it
falls back to): timed, outermost only, for the page's "store" figure."""


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


VECTOR_TYPES = {"Array(Float32)": "FLOAT32", "Array(Float64)": "FLOAT64"}


def display(value: Any, dtype: str) -> str | None:
    """A read value as Inspect shows it in the hash: floats in the store's own text
    (``27.0``, the shortest float32 decimal), float lists by type, length and first values,
    so Read and Inspect agree."""
    from feast_redis_hexpire.codec import double_text, float32_text
    from feast_redis_hexpire.vector_schema import vector_text

    if value is None:
        return None
    if isinstance(value, float) and not isinstance(value, bool):
        return (float32_text(value) if dtype == "Float32" else double_text(value)).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list) and dtype in VECTOR_TYPES:  # as Inspect shows a stored vector
        return vector_text(value, VECTOR_TYPES[dtype])
    return str(jsonable(value))


class StoreReadTimer:
    """The online store's own time inside each ``get_online_features``, per thread.

    The page's read latency is Feast's whole call in the demo server, where /state polling
    competes with it for the GIL (on a busy machine a read may wait ms for it); the store's
    part beside it says how much of that is the store.
    """

    def __init__(self, online_store: Any) -> None:
        self._local = threading.local()
        for name in STORE_READ_HOOKS:
            original = getattr(online_store, name, None)
            if callable(original):
                setattr(online_store, name, self._timed(original))

    def _timed(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            local = self._local
            depth = getattr(local, "depth", 0)
            local.depth = depth + 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                local.depth = depth
                if depth == 0:  # the outermost hook only: one may call the other
                    local.ms = getattr(local, "ms", 0.0) + (time.perf_counter() - started) * 1000

        return timed

    def start(self) -> None:
        self._local.ms = 0.0

    def ms(self) -> float | None:
        """The store's time since :meth:`start` in this thread (None if no hook ran)."""
        ms = getattr(self._local, "ms", 0.0)
        return ms or None


class Reader:
    """Reads through the applied FeatureStore, as a serving process would."""

    def __init__(self, store: Any, online_store: Any, client: Callable[[], Any], latency: LatencyLog) -> None:
        self.store = store
        self.online_store = online_store
        self.client = client
        self.latency = latency
        self.timer = StoreReadTimer(online_store)

    def _timed_read(
        self, kind: str, refs: list[str], rows: list[dict[str, str]]
    ) -> tuple[Any, float, float | None, bool]:
        """The response, Feast's whole call and the store's part in ms, and whether the
        call planned a new request shape (recorded, but kept out of the percentiles)."""
        stats = self.online_store.stats
        plans_before = stats.plans_built
        self.timer.start()
        started = time.perf_counter()
        response = self.store.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
        latency_ms, store_ms = (time.perf_counter() - started) * 1000, self.timer.ms()
        planned = stats.plans_built > plans_before
        self.latency.record(kind, len(rows), latency_ms, store_ms, planned)
        return response, latency_ms, store_ms, planned

    def _ttls(self, key: str, fields: Sequence[str]) -> tuple[int, list[int]]:
        pipe = self.client().pipeline(transaction=False)
        pipe.pttl(key)
        if fields:
            pipe.hpttl(key, *fields)
        replies = pipe.execute()
        return int(replies[0]), [int(t) for t in replies[1]] if fields else []

    def one(self, user_id: str, key: str, wanted: Sequence[FeatureInfo], join_key: str) -> dict[str, Any]:
        """One user's features, each with its status, event time and TTL (the field's, else
        the key's), as the page's Read table shows them."""
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus
        from feast.type_map import feast_value_type_to_python_type

        response, latency_ms, store_ms, planned = self._timed_read(
            "read", [f.ref for f in wanted], [{join_key: user_id}]
        )
        proto = response.proto
        columns = {name: i for i, name in enumerate(proto.metadata.feature_names.val)}
        key_ttl, field_ttls = self._ttls(key, [f.field for f in wanted])
        rows = []
        for info, field_ttl in zip(wanted, field_ttls):
            result = proto.results[columns[f"{info.view}__{info.name}"]]
            status = FieldStatus.Name(result.statuses[0])
            value = feast_value_type_to_python_type(result.values[0]) if status == "PRESENT" else None
            event_ts = result.event_timestamps[0] if len(result.event_timestamps) else None
            event_time = (
                datetime.fromtimestamp(event_ts.seconds + event_ts.nanos / 1e9, tz=timezone.utc).isoformat()
                if event_ts is not None and (event_ts.seconds or event_ts.nanos)
                else None
            )
            if field_ttl >= 0:
                ttl_ms, ttl_source = field_ttl, "field"
            elif field_ttl == NO_EXPIRY:
                ttl_ms, ttl_source = key_ttl, "key"
            else:  # NO_SUCH_FIELD: expired (stream) or never written
                ttl_ms, ttl_source = NO_SUCH_FIELD, "missing"
            rows.append(
                {
                    "ref": info.ref,
                    "view": info.view,
                    "feature": info.name,
                    "kind": info.kind,
                    "value": jsonable(value),
                    "text": display(value, info.dtype),
                    "status": status,
                    "event_time": event_time,
                    "ttl_ms": ttl_ms,
                    "ttl_seconds": ms_to_seconds(ttl_ms),
                    "ttl_source": ttl_source,
                }
            )
        batch_rows = [r for r in rows if r["kind"] == "batch"]
        stream_only = (
            key_ttl == NO_EXPIRY and bool(batch_rows) and all(r["ttl_source"] == "missing" for r in batch_rows)
        )
        return {
            "user_id": user_id,
            "key": key,
            "note": STREAM_ONLY_NOTE if stream_only else None,
            "latency_ms": round(latency_ms, 3),
            "store_ms": None if store_ms is None else round(store_ms, 3),
            "planned": planned,
            "key_ttl_seconds": ms_to_seconds(key_ttl),
            "key_exists": key_ttl != NO_SUCH_FIELD,
            "present": sum(1 for r in rows if r["status"] == "PRESENT"),
            "features": rows,
        }

    def batch(self, ids: Sequence[str], wanted: Sequence[FeatureInfo], join_key: str) -> dict[str, Any]:
        """Many users in one call: how many features each got back, and what was missing."""
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

        before = self.online_store.stats.as_dict()
        response, latency_ms, store_ms, planned = self._timed_read(
            "batch", [f.ref for f in wanted], [{join_key: uid} for uid in ids]
        )
        after = self.online_store.stats.as_dict()
        proto = response.proto
        present = FieldStatus.PRESENT
        kind_of = {f"{f.view}__{f.name}": f.kind for f in wanted}
        returned = [0] * len(ids)
        missing: dict[str, list[int]] = {"batch": [0] * len(ids), "stream": [0] * len(ids)}
        for i, name in enumerate(proto.metadata.feature_names.val):
            kind = kind_of.get(name)
            if kind is None:  # the join key's column
                continue
            for j, status in enumerate(proto.results[i].statuses):
                if status == present:
                    returned[j] += 1
                else:
                    missing.setdefault(kind, [0] * len(ids))[j] += 1
        histogram = Counter(returned)
        return {
            "count": len(ids),
            "features_requested": len(wanted),
            "latency_ms": round(latency_ms, 3),
            "store_ms": None if store_ms is None else round(store_ms, 3),
            "planned": planned,
            "per_entity_ms": round(latency_ms / len(ids), 4),
            "store_read_calls": after["read_calls"] - before["read_calls"],
            "entities_read": after["entities_read"] - before["entities_read"],
            "histogram": {str(k): histogram[k] for k in sorted(histogram, reverse=True)},
            "requested_by_kind": dict(Counter(f.kind for f in wanted)),
            "entities": [
                {
                    "user_id": uid,
                    "returned": n,
                    "missing_batch": missing["batch"][j],
                    "missing_stream": missing["stream"][j],
                }
                for j, (uid, n) in enumerate(zip(ids, returned))
            ],
        }
