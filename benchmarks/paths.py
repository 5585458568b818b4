"""The write paths the harness compares, each able to materialize the whole data set,
push fresh stream rows, and name its keys: one FeatureStore per store kind (repo.KINDS)
and the raw redis-py baselines (measure.RAW_SHAPES)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from . import measure
from . import repo as benchrepo


@dataclass
class WritePath:
    name: str
    label: str
    materialize: Callable[[], Any]  # every view, every user
    push: Callable[[Sequence[pd.DataFrame]], Any]  # fresh rows of the stream view, batch by batch
    key_of: Callable[[str], bytes]
    key_pattern: str
    timer: measure.WriteBatchTimer | None = None
    repo: benchrepo.BenchRepo | None = None


def materialize_window() -> tuple[datetime, datetime]:
    """A window holding every generated row (they are at most an hour old)."""
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    return end - timedelta(days=2), end


def store_path(repo: benchrepo.BenchRepo) -> WritePath:
    from feast.data_source import PushMode

    fs: Any = repo.store

    def materialize() -> None:
        start, end = materialize_window()
        fs.materialize(start, end)

    def push(batches: Sequence[pd.DataFrame]) -> None:
        for df in batches:
            fs.push(benchrepo.PUSH_SOURCE, df, to=PushMode.ONLINE)

    return WritePath(
        name=repo.kind.name,
        label=repo.kind.label,
        materialize=materialize,
        push=push,
        key_of=repo.key,
        key_pattern=repo.key_pattern(),
        timer=measure.WriteBatchTimer(repo.online_store),
        repo=repo,
    )


def raw_path(name: str, client: Any, frames: dict[str, pd.DataFrame], prefix: str, hsetex: bool) -> WritePath:
    def materialize() -> None:
        measure.raw_write(client, frames, prefix, name, hsetex)

    def push(batches: Sequence[pd.DataFrame]) -> None:
        for df in batches:
            measure.raw_write(client, {benchrepo.STREAM_VIEW: df}, prefix, name, hsetex)

    return WritePath(
        name=name,
        label=measure.RAW_SHAPES[name],
        materialize=materialize,
        push=push,
        key_of=lambda user_id: measure.raw_key(prefix, user_id),
        key_pattern=f"{prefix}:*",
    )


def probe_provider(repo: benchrepo.BenchRepo) -> str | None:
    """Why the HexpireProvider kind cannot be measured, or None when a push through it
    stores what get_online_features then reads back."""
    from feast.data_source import PushMode

    fs: Any = repo.store
    provider = type(fs._get_provider())
    if provider.__name__ != benchrepo.FAST_PROVIDER.rsplit(".", 1)[1]:
        return f"feature_store.yaml names {benchrepo.FAST_PROVIDER} but Feast built {provider.__name__}"
    df = benchrepo.push_frames(2, 2, seed=0)[0]
    df["user_id"] = ["probe-a", "probe-b"]
    try:
        fs.push(benchrepo.PUSH_SOURCE, df, to=PushMode.ONLINE)
        got = fs.get_online_features(
            features=["activity:last_amount"], entity_rows=[{"user_id": u} for u in df["user_id"]]
        ).to_dict()
    except Exception as exc:  # noqa: BLE001 - the reason is the report
        return f"push through {provider.__name__} failed: {type(exc).__name__}: {exc}"
    if got["last_amount"] != df["last_amount"].tolist():
        return f"push through {provider.__name__} stored {got['last_amount']}, pushed {df['last_amount'].tolist()}"
    return None


def provider_missing() -> str | None:
    """Why `feast_redis_hexpire.HexpireProvider` cannot be imported, or None."""
    try:
        import feast_redis_hexpire

        feast_redis_hexpire.HexpireProvider  # noqa: B018 - the import is the check
    except Exception as exc:  # noqa: BLE001 - the reason is the report
        return (
            f"{benchrepo.FAST_PROVIDER} is not importable here ({type(exc).__name__}: {exc}); "
            "it is being built on branch `provider`"
        )
    return None
