"""Building blocks for the stream ingester's tests: a FeatureStore with one push-fed stream
view, entries as a producer XADDs them, and whether a consumer group has caught up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feast import FeatureStore

from tests.support.store import USER, repo_config, stream_view

ACTIVITY = stream_view("activity")  # tx_count_5m Int64, last_amount Float64, fed by activity_push
SOURCE = "activity_push"


def make_store(tmp: Path, connection_string: str, project: str, **online: Any) -> FeatureStore:
    """The view applied to a file registry in `tmp`, on the given Redis (stream TTL 600 s)."""
    (tmp / project).mkdir(parents=True, exist_ok=True)
    config = repo_config(connection_string, project, tmp / project, stream_ttl_seconds=600, **online)
    store = FeatureStore(config=config, repo_path=str(tmp))
    store.apply([USER, ACTIVITY])
    return store


def xadd_all(client: Any, stream: str, entries: list[dict[str, str]]) -> list[Any]:
    """XADD every entry in one pipeline; their ids."""
    pipe = client.pipeline(transaction=False)
    for fields in entries:
        pipe.xadd(stream, fields)
    return pipe.execute()


def group_info(client: Any, stream: str, group: str) -> dict[str, Any] | None:
    if not client.exists(stream):
        return None
    for info in client.xinfo_groups(stream):
        if info["name"] in (group, group.encode()):
            return info
    return None


def drained(client: Any, stream: str, group: str) -> bool:
    """Every entry delivered to the group and acknowledged (False before the group exists)."""
    info = group_info(client, stream, group)
    return info is not None and info["pending"] == 0 and info["lag"] == 0
