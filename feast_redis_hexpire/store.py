"""RedisHexpireOnlineStore: the Feast OnlineStore. It plans (planning.py), sends
(redis_io.py) and decodes; the interesting rules live in the Lua write script."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from feast import Entity, FeatureView, RepoConfig
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from . import lifecycle, redis_io
from .config import RedisHexpireOnlineStoreConfig
from .connection import async_client, close_async_clients, sync_client
from .errors import InvalidViewConfig
from .planning import WriteReport, WriteRow, plan_grouped_read, plan_view_read, plan_writes
from .views import check_views, view_layout

logger = logging.getLogger(__name__)

ReadResult = List[Tuple[Optional[datetime], Optional[Dict[str, ValueProto]]]]


@dataclass
class StoreStats:
    """Counters for this process: what the demo page and the CLI show."""

    rows_written: int = 0
    rows_skipped_stale: int = 0
    rows_skipped_expired: int = 0
    write_batches: int = 0
    read_calls: int = 0
    entities_read: int = 0

    def as_dict(self) -> Dict[str, int]:
        return asdict(self)


def _store_config(config: RepoConfig) -> RedisHexpireOnlineStoreConfig:
    store_config = config.online_store
    if not isinstance(store_config, RedisHexpireOnlineStoreConfig):
        raise InvalidViewConfig(
            f"online_store config is {type(store_config).__name__}, expected RedisHexpireOnlineStoreConfig"
        )
    return store_config


class RedisHexpireOnlineStore(OnlineStore):
    """One flat hash per entity; key EXPIRE for batch views, per-field HEXPIRE for stream views."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = StoreStats()

    @property
    def async_supported(self) -> SupportedAsyncMethods:
        return SupportedAsyncMethods(read=True, write=True)

    # ------------------------------------------------------------ writes

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: List[WriteRow],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        store_config = _store_config(config)
        calls = plan_writes(config, table, data)
        report = redis_io.write(sync_client(store_config), calls, store_config.write_chunk_size, progress)
        self._record_write(table, report)

    async def online_write_batch_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: List[WriteRow],
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        store_config = _store_config(config)
        calls = plan_writes(config, table, data)
        client = await async_client(store_config)
        report = await redis_io.write_async(client, calls, store_config.write_chunk_size, progress)
        self._record_write(table, report)

    def _record_write(self, table: FeatureView, report: WriteReport) -> None:
        self.stats.rows_written += report.written
        self.stats.rows_skipped_stale += report.stale
        self.stats.rows_skipped_expired += report.expired
        self.stats.write_batches += 1
        self.last_write_report = report
        if report.stale or report.expired:
            logger.info(
                "%s: wrote %d rows; skipped %d older than the stored event time, %d already past their expiry",
                table.name, report.written, report.stale, report.expired,
            )

    # ------------------------------------------------------------ reads

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: List[EntityKeyProto],
        requested_features: Optional[List[str]] = None,
    ) -> ReadResult:
        group, read = plan_view_read(config, table, entity_keys, requested_features)
        replies = redis_io.hmget(sync_client(_store_config(config)), [(k, group.fields) for k in group.keys])
        self._record_read(len(group.keys))
        return read.decode(replies)

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: List[EntityKeyProto],
        requested_features: Optional[List[str]] = None,
    ) -> ReadResult:
        group, read = plan_view_read(config, table, entity_keys, requested_features)
        client = await async_client(_store_config(config))
        replies = await redis_io.hmget_async(client, [(k, group.fields) for k in group.keys])
        self._record_read(len(group.keys))
        return read.decode(replies)

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: List,
        join_key_values: Dict,
        entity_name_to_join_key_map: Dict,
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Feast's grouped-read hook: every view of one entity in a single HMGET."""
        plan = plan_grouped_read(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        commands = plan.commands()
        replies = redis_io.hmget(sync_client(_store_config(config)), commands)
        self._record_read(len(commands))
        plan.populate(replies, online_features_response, full_feature_names, include_feature_view_version_metadata)

    async def _read_features_per_fv_async(
        self,
        config: RepoConfig,
        grouped_refs: List,
        join_key_values: Dict,
        entity_name_to_join_key_map: Dict,
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        plan = plan_grouped_read(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        commands = plan.commands()
        client = await async_client(_store_config(config))
        replies = await redis_io.hmget_async(client, commands)
        self._record_read(len(commands))
        plan.populate(replies, online_features_response, full_feature_names, include_feature_view_version_metadata)

    def _record_read(self, entities: int) -> None:
        self.stats.read_calls += 1
        self.stats.entities_read += entities

    # ------------------------------------------------------------ lifecycle

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        store_config = _store_config(config)
        kept = check_views(tables_to_keep, store_config)
        client = sync_client(store_config)  # refuses servers without HEXPIRE
        for table in tables_to_delete:
            touched = lifecycle.remove_view_fields(
                client, store_config.key_prefix, config.project, view_layout(table, store_config), kept
            )
            logger.info("removed the fields of deleted view %s from %d entities", table.name, touched)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        store_config = _store_config(config)
        deleted = lifecycle.delete_project(sync_client(store_config), store_config.key_prefix, config.project)
        logger.info("teardown removed %d keys of project %s", deleted, config.project)

    async def close(self) -> None:
        await close_async_clients()
