"""RedisHexpireOnlineStore: the Feast OnlineStore. It plans (`writes`, `reads`), sends
(`redis_io`) and reports; the rules that must hold under concurrency live in the write
script."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from feast import Entity, FeatureView, RepoConfig
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from . import maintenance, redis_io
from .clients import async_client, close_async_clients, sync_client
from .config import RedisHexpireOnlineStoreConfig
from .errors import ConfigError, InvalidEntityKey, UnknownFeature
from .keys import project_prefix
from .reads import GroupedReadPlan, ReadRow, plan_grouped_read, plan_view_read
from .views import ViewLayout, check_field_conflicts, view_layout
from .writes import WritePlan, WriteReport, WriteRow, plan_writes, skipped_rows_message

logger = logging.getLogger("feast_redis_hexpire")


@dataclass
class StoreStats:
    """Counters for this process: what the demo page and the CLI show."""

    rows_written: int = 0
    rows_skipped_stale: int = 0
    rows_skipped_expired: int = 0
    rows_skipped_future: int = 0
    write_batches: int = 0
    read_calls: int = 0
    entities_read: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_UNKNOWN_FEATURE = re.compile(r"Feature (.+) not found in projection (.+)")


@contextmanager
def _request_errors() -> Iterator[None]:
    """Bad requests that Feast's own request handling (which the store inherits) turns into
    bare KeyErrors, and so into HTTP 500 from `feast serve`: an unknown feature of a known
    view, and a request without any join-key values. Raised as the store's input errors
    (HTTP 422) instead, with what was wrong."""
    try:
        yield
    except KeyError as exc:
        text = str(exc.args[0]) if exc.args else ""
        unknown = _UNKNOWN_FEATURE.fullmatch(text)
        if unknown:
            raise UnknownFeature(
                f"view {unknown.group(2)!r} has no feature {unknown.group(1)!r} (requested as "
                f"'{unknown.group(2)}:{unknown.group(1)}')"
            ) from None
        if text == "pop from an empty set":  # feast.utils._validate_entity_values on no columns
            raise InvalidEntityKey(
                "the request gives no join-key values: give every join key of the requested views in each entity row"
            ) from None
        raise


def store_config_of(config: RepoConfig) -> RedisHexpireOnlineStoreConfig:
    store_config = config.online_store
    if not isinstance(store_config, RedisHexpireOnlineStoreConfig):
        raise ConfigError(
            f"online_store config is {type(store_config).__name__}, expected RedisHexpireOnlineStoreConfig"
        )
    return store_config


def versioning_enabled(config: RepoConfig) -> bool:
    return bool(getattr(getattr(config, "registry", None), "enable_online_feature_view_versioning", False))


def view_version(table: Any, config: RepoConfig) -> int | None:
    """The version whose fields a read or write touches, as Feast's versioned stores pick
    it: the requested `@vN`, else the view's current version; None without versioning."""
    if not versioning_enabled(config):
        return None
    projection = getattr(table, "projection", None)
    tag = getattr(projection, "version_tag", None)
    return tag if tag is not None else getattr(table, "current_version_number", None)


def layout_of(table: Any, config: RepoConfig) -> ViewLayout:
    return view_layout(table, store_config_of(config), view_version(table, config))


def key_prefix_of(config: RepoConfig) -> str:
    store_config = store_config_of(config)
    return project_prefix(store_config.key_prefix, config.project, store_config.hash_tag)


class RedisHexpireOnlineStore(OnlineStore):
    """One flat hash per entity; key EXPIRE for batch views, per-field expiry for stream views."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = StoreStats()
        self.last_write_report: WriteReport | None = None

    @property
    def async_supported(self) -> SupportedAsyncMethods:
        return SupportedAsyncMethods(read=True, write=True)

    def _is_versioned_read_supported(self) -> bool:
        """Versions > 0 have their own fields (`<view>@v2:<feature>`), so `view@vN:feature`
        reads never see another version's data."""
        return True

    # ------------------------------------------------------------ writes

    def plan_write(self, config: RepoConfig, table: Any, data: Sequence[WriteRow]) -> WritePlan:
        return plan_writes(layout_of(table, config), store_config_of(config), key_prefix_of(config), data)

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[WriteRow],
        progress: Callable[[int], Any] | None,
    ) -> None:
        store_config = store_config_of(config)
        plan = self.plan_write(config, table, data)
        client = sync_client(store_config)
        report = redis_io.write(client, plan, store_config.write_chunk_size, progress, store_config.where)
        self.record_write(plan.layout, report, store_config)

    async def online_write_batch_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[WriteRow],
        progress: Callable[[int], Any] | None,
    ) -> None:
        store_config = store_config_of(config)
        plan = self.plan_write(config, table, data)
        client = await async_client(store_config)
        report = await redis_io.write_async(client, plan, store_config.write_chunk_size, progress, store_config.where)
        self.record_write(plan.layout, report, store_config)

    def record_write(
        self, layout: ViewLayout, report: WriteReport, store_config: RedisHexpireOnlineStoreConfig
    ) -> None:
        """Count a finished write, and warn when rows were not written (shown by the Feast
        CLI at its default log level): a skipped row is never silent."""
        self.stats.rows_written += report.written
        self.stats.rows_skipped_stale += report.stale
        self.stats.rows_skipped_expired += report.expired
        self.stats.rows_skipped_future += report.future
        self.stats.write_batches += 1
        self.last_write_report = report
        if report.skipped:
            logger.warning("%s", skipped_rows_message(layout, report, store_config))

    # ------------------------------------------------------------ reads

    def get_online_features(self, *args: Any, **kwargs: Any) -> Any:
        with _request_errors():
            return super().get_online_features(*args, **kwargs)

    async def get_online_features_async(self, *args: Any, **kwargs: Any) -> Any:
        with _request_errors():
            return await super().get_online_features_async(*args, **kwargs)

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        group, read = plan_view_read(
            table, layout_of(table, config), key_prefix_of(config), entity_keys, requested_features
        )
        client = sync_client(store_config_of(config), for_reads=True)
        replies = redis_io.hmget(client, [(key, group.fields) for key in group.keys])
        self._record_read(len(group.keys))
        rows: list[ReadRow] = read.decode(replies)
        return rows

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        group, read = plan_view_read(
            table, layout_of(table, config), key_prefix_of(config), entity_keys, requested_features
        )
        client = await async_client(store_config_of(config), for_reads=True)
        replies = await redis_io.hmget_async(client, [(key, group.fields) for key in group.keys])
        self._record_read(len(group.keys))
        rows: list[ReadRow] = read.decode(replies)
        return rows

    def _grouped_plan(
        self, config: RepoConfig, grouped_refs: list[Any], join_key_values: dict[str, Any], entity_map: dict[str, str]
    ) -> GroupedReadPlan:
        reads = [(table, layout_of(table, config), requested) for table, requested in grouped_refs]
        return plan_grouped_read(key_prefix_of(config), reads, join_key_values, entity_map)

    def _read_features_per_fv(
        self,
        config: RepoConfig,
        grouped_refs: list[Any],
        join_key_values: dict[str, Any],
        entity_name_to_join_key_map: dict[str, str],
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        """Feast's grouped-read hook: every view of one entity in a single HMGET."""
        plan = self._grouped_plan(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        commands = plan.commands()
        replies = redis_io.hmget(sync_client(store_config_of(config), for_reads=True), commands)
        self._record_read(len(commands))
        plan.populate(replies, online_features_response, full_feature_names, include_feature_view_version_metadata)

    async def _read_features_per_fv_async(
        self,
        config: RepoConfig,
        grouped_refs: list[Any],
        join_key_values: dict[str, Any],
        entity_name_to_join_key_map: dict[str, str],
        online_features_response: Any,
        full_feature_names: bool,
        include_feature_view_version_metadata: bool,
    ) -> None:
        plan = self._grouped_plan(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        commands = plan.commands()
        client = await async_client(store_config_of(config), for_reads=True)
        replies = await redis_io.hmget_async(client, commands)
        self._record_read(len(commands))
        plan.populate(replies, online_features_response, full_feature_names, include_feature_view_version_metadata)

    def _record_read(self, entities: int) -> None:
        self.stats.read_calls += 1
        self.stats.entities_read += entities

    # ------------------------------------------------------------ apply and teardown

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Validate the views, then remove the fields of deleted views and of features that
        kept views dropped, from every stored entity."""
        store_config = store_config_of(config)
        kept = [layout_of(table, config) for table in tables_to_keep]
        check_field_conflicts(kept)
        deleted = [layout_of(table, config) for table in tables_to_delete]
        client = sync_client(store_config)
        record = maintenance.record_key(store_config.key_prefix, config.project, store_config.hash_tag)
        recorded = maintenance.read_record(client, record)
        for removal in maintenance.plan_removals(deleted, kept, recorded):
            touched = maintenance.remove_fields(
                client, store_config.key_prefix, config.project, removal.join_keys, removal.fields
            )
            logger.info("%s: removed %d field(s) from %d entities", removal.reason, len(removal.fields), touched)
        maintenance.write_record(client, record, kept, deleted, recorded)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        store_config = store_config_of(config)
        deleted = maintenance.delete_project(sync_client(store_config), store_config.key_prefix, config.project)
        logger.info("teardown removed %d keys of project %s", deleted, config.project)

    async def close(self) -> None:
        await close_async_clients()
