"""RedisHexpireOnlineStore: the Feast OnlineStore. It plans (`writes`, `reads`), sends
(`redis_io`) and reports; the rules that must hold under concurrency live in the write
script."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from feast import Entity, FeatureService, FeatureView, RepoConfig
from feast import utils as feast_utils
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.registry.base_registry import BaseRegistry
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.online_response import OnlineResponse
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from . import feast_hooks, maintenance, metrics, redis_io, search_io, serving
from .clients import async_client, close_async_clients, sync_client
from .config import FieldNaming, RedisHexpireOnlineStoreConfig
from .errors import ConfigError, InvalidInput, SearchUnavailable, UnknownFeature
from .keys import project_prefix
from .metrics import ViewServed
from .reads import GroupedReadPlan, ReadRow, plan_grouped_read, plan_view_read
from .search_index import IndexSchema, index_schema
from .search_query import ResultRow, SearchPlan, plan_search
from .views import ViewLayout, check_field_conflicts, view_layout
from .writes import SkippedRowWarnings, WritePlan, WriteReport, WriteRow, plan_writes

try:  # Feast's metrics (feast serve --metrics); absent in some builds
    from feast import metrics as _feast_metrics
except ImportError:  # pragma: no cover
    _feast_metrics = None

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
    plans_built: int = 0
    """Request shapes the serving fast path planned: once per shape, and again after a
    registry refresh (Feast resolves the references anew); such a read costs more."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def entity_types_of(table: FeatureView) -> dict[str, Any]:
    """The view's join keys and their value types, as a search's entity keys are typed."""
    return {column.name: column.dtype.to_value_type() for column in table.entity_columns}


def store_config_of(config: RepoConfig) -> RedisHexpireOnlineStoreConfig:
    store_config = config.online_store
    if not isinstance(store_config, RedisHexpireOnlineStoreConfig):
        raise ConfigError(
            f"online_store config is {type(store_config).__name__}, expected RedisHexpireOnlineStoreConfig",
            setting="online_store.type",
            value=type(store_config).__name__,
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


_SCHEMAS: dict[tuple[Any, ...], tuple[ViewLayout, IndexSchema | None]] = {}


def index_schema_of(table: Any, config: RepoConfig) -> IndexSchema | None:
    """The view's Query Engine index (None: the view has no vector_index field). Cached
    per layout (itself cached) and what else the schema depends on: it runs per search."""
    store_config = store_config_of(config)
    layout = layout_of(table, config)
    tags = tuple(sorted((table.tags or {}).items()))
    prefix = key_prefix_of(config)
    qualified = store_config.field_naming is FieldNaming.qualified
    key = (id(layout), tags, prefix, store_config.text_search_enabled, store_config.index_type, qualified)
    hit = _SCHEMAS.get(key)
    if hit is not None and hit[0] is layout:
        return hit[1]
    schema = index_schema(
        layout,
        dict(tags),
        prefix,
        text_search=store_config.text_search_enabled,
        config_index_type=store_config.index_type,
        view_fields=qualified,
    )
    if len(_SCHEMAS) > 1024:
        _SCHEMAS.clear()
    _SCHEMAS[key] = (layout, schema)  # holding the layout keeps its id from being reused
    return schema


def searchable_schema(config: RepoConfig, table: Any) -> IndexSchema:
    """The view's index, or the error that says why the view cannot be searched."""
    if not store_config_of(config).vector_enabled:
        raise SearchUnavailable(
            f"view {table.name!r}: vector and text retrieval is off: set vector_enabled: true in the "
            "online_store config and run feast apply (it builds the search indexes)",
            view=table.name,
        )
    schema = index_schema_of(table, config)
    if schema is None:
        raise InvalidInput(
            f"view {table.name!r} has no searchable feature: declare an Array(Float32) or Array(Float64) "
            "Field with vector_index=True and vector_length, and run feast apply",
            view=table.name,
        )
    return schema


def _request_context(registry: BaseRegistry, project: str, features: Any, full_feature_names: bool) -> tuple[Any, ...]:
    """Feast's resolution of the request. Where Feast fails with a bare KeyError, find out
    why from the registry and raise what Feast's contract asks for (a KeyError naming the
    view and feature, which `feast serve` answers with 422)."""
    try:
        return serving.request_context(registry, project, features, full_feature_names)
    except KeyError:
        _check_feature_refs(registry, project, features)
        raise


def _check_feature_refs(registry: BaseRegistry, project: str, features: Any) -> None:
    if isinstance(features, FeatureService):
        return
    for ref in features:
        if ":" not in ref:
            continue
        view_name, version, feature = feast_utils._parse_feature_ref(ref)
        view = registry.get_any_feature_view(view_name, project, allow_cache=True)
        if version is not None:
            continue
        declared = [f.name for f in view.features]
        if feature not in declared:
            raise UnknownFeature(
                f"view {view_name!r} has no feature {feature!r} (requested as {ref!r}; "
                f"the view declares {', '.join(sorted(declared))})",
                view=view_name,
                feature=feature,
                value=ref,
            )


def _without_precompute(features: list[str] | FeatureService) -> list[str] | FeatureService:
    """The service as Feast's generic path must read it here: from the entity hashes."""
    if isinstance(features, FeatureService) and getattr(features, "precompute_online", False):
        features = copy.copy(features)
        features.precompute_online = False
    return features


_PRECOMPUTE_LOGGED: set[str] = set()


def _log_precompute_once(service: str) -> None:
    if service not in _PRECOMPUTE_LOGGED:
        _PRECOMPUTE_LOGGED.add(service)
        logger.info(
            "FeatureService %r has precompute_online=True: this store serves it from the entity hashes, "
            "which hold the same values in one HMGET per entity, and writes no precomputed vectors",
            service,
        )


def write_path(progress: Callable[[int], Any] | None) -> str:
    """Which Feast path a default-provider write came from: Feast's compute engines pass a
    progress callback when materializing; its ingestion (store.push, `/push`,
    write_to_online_store, which push goes through) passes none."""
    return "materialize" if progress is not None else "push"


def _feast_metrics_on() -> bool:
    flags = getattr(_feast_metrics, "_config", None)  # feast_hooks checks it at start-up
    return bool(getattr(flags, "online_features", False))


class RedisHexpireOnlineStore(OnlineStore):
    """One flat hash per entity; key EXPIRE for batch views, per-field expiry for stream views."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = StoreStats()
        self._plans = serving.PlanCache()
        self._skip_warnings = SkippedRowWarnings()
        self.last_write_report: WriteReport | None = None
        # The private Feast hooks the fast paths need, checked once as Feast creates the
        # store: what is missing or re-signed turns its fast path off (one WARNING each).
        self.hooks = feast_hooks.check()
        self._serving_on = self.hooks.active(feast_hooks.SERVING)
        self._grouped_read_on = self.hooks.active(feast_hooks.GROUPED_READ)
        for name in self.hooks.feasts_own("OnlineStore"):
            setattr(self, name, getattr(super(), name))

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
        self.record_write(config, plan.layout, report, write_path(progress))

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
        self.record_write(config, plan.layout, report, write_path(progress))

    def record_write(self, config: RepoConfig, layout: ViewLayout, report: WriteReport, path: str) -> None:
        """Count a finished write (`path`: materialize or push), and warn when rows were not
        written (shown by the Feast CLI at its default log level): a skipped row is never
        silent, and at production rates the warnings are paced (SkippedRowWarnings)."""
        self.stats.rows_written += report.written
        self.stats.rows_skipped_stale += report.stale
        self.stats.rows_skipped_expired += report.expired
        self.stats.rows_skipped_future += report.future
        self.stats.write_batches += 1
        self.last_write_report = report
        if metrics.enabled():
            metrics.record_rows(config.project, layout, path, report.outcomes())
        message = self._skip_warnings.message(layout, report, store_config_of(config))
        if message is not None:
            logger.warning("%s", message)

    # ------------------------------------------------------------ reads

    def get_online_features(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: Any,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        """The serving fast path (`serving`), or Feast's generic path for what it does not cover."""
        request = self._plan_request(
            config, features, entity_rows, registry, project, full_feature_names, include_feature_view_version_metadata
        )
        if isinstance(request, serving.Fallback):
            return super().get_online_features(
                config,
                _without_precompute(features),
                entity_rows,
                registry,
                project,
                full_feature_names,
                include_feature_view_version_metadata,
            )
        plan, columns, batches = request
        started = time.monotonic()
        client = sync_client(store_config_of(config), for_reads=True)
        replies = redis_io.hmget(client, serving.commands(plan, batches))
        response = self._response(plan, columns, batches, replies, started)
        if tally := self._read_tally(config, lambda: serving.served_views(plan, batches, response.replies)):
            tally.record(redis_io.exists(client, tally.unsure))
        return response

    async def get_online_features_async(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: Any,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        include_feature_view_version_metadata: bool = False,
    ) -> OnlineResponse:
        request = self._plan_request(
            config, features, entity_rows, registry, project, full_feature_names, include_feature_view_version_metadata
        )
        if isinstance(request, serving.Fallback):
            return await super().get_online_features_async(
                config,
                _without_precompute(features),
                entity_rows,
                registry,
                project,
                full_feature_names,
                include_feature_view_version_metadata,
            )
        plan, columns, batches = request
        started = time.monotonic()
        client = await async_client(store_config_of(config), for_reads=True)
        replies = await redis_io.hmget_async(client, serving.commands(plan, batches))
        response = self._response(plan, columns, batches, replies, started)
        if tally := self._read_tally(config, lambda: serving.served_views(plan, batches, response.replies)):
            tally.record(await redis_io.exists_async(client, tally.unsure))
        return response

    def _plan_request(
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: Any,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool,
        include_version_metadata: bool,
    ) -> tuple[serving.ServingPlan, dict[str, Any], list[serving.EntityBatch]] | serving.Fallback:
        """Everything before the round trip, shared by sync and async: the request's plan
        and its entity keys, or why it goes to Feast's generic path."""
        if (isinstance(entity_rows, (list, dict)) and not entity_rows) or (
            isinstance(entity_rows, list) and not entity_rows[0]
        ):
            serving.check_entity_columns({})
        if isinstance(features, FeatureService) and getattr(features, "precompute_online", False):
            _log_precompute_once(features.name)
        if not self._serving_on:
            return serving.Fallback("the serving fast path is off in this Feast (feast_hooks)")
        context = _request_context(registry, project, features, full_feature_names)
        try:
            columns = dict(serving.entity_columns(entity_rows))
            store_config = store_config_of(config)
            shape = (
                serving.features_key(features),
                project,
                full_feature_names,
                include_version_metadata,
                tuple(columns),
                store_config.key_prefix,
                store_config.hash_tag,
                store_config.field_naming,
                versioning_enabled(config),
            )
            plan = self._plans.get(shape, context)
            if plan is None:
                plan = serving.build_plan(
                    context,
                    list(columns),
                    key_prefix_of(config),
                    lambda table: layout_of(table, config),
                    full_feature_names,
                    include_version_metadata,
                )
                self._plans.put(shape, plan)
                self.stats.plans_built += 1
            return plan, columns, serving.entity_batches(plan, columns)
        except serving.Fallback as fallback:
            logger.debug("get_online_features: Feast's generic path (%s)", fallback.reason)
            return fallback

    def _response(
        self,
        plan: serving.ServingPlan,
        columns: dict[str, Any],
        batches: list[serving.EntityBatch],
        replies: list[list[bytes | None]],
        started: float,
    ) -> serving.ServedResponse:
        """The replies as Feast's response, counted (and timed for Feast's metrics)."""
        self._record_read(len(replies))
        by_group = serving.split_replies(batches, replies)
        if _feast_metrics_on():
            metrics.feast_read(time.monotonic() - started, serving.status_counts(plan, batches, by_group))
        return serving.ServedResponse(plan, columns, batches, by_group)

    def write_precomputed_vector(
        self,
        config: RepoConfig,
        feature_service_name: str,
        project: str,
        entity_key: EntityKeyProto,
        vector_bytes: bytes,
    ) -> None:
        """Not written: the store serves `precompute_online` services from the entity hashes."""
        _log_precompute_once(feature_service_name)

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
        if tally := self._read_tally(config, lambda: [ViewServed(read.layout, group.keys, replies, read.ts_at)]):
            tally.record(redis_io.exists(client, tally.unsure))
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
        if tally := self._read_tally(config, lambda: [ViewServed(read.layout, group.keys, replies, read.ts_at)]):
            tally.record(await redis_io.exists_async(client, tally.unsure))
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
        if not self._grouped_read_on:
            return super()._read_features_per_fv(
                config,
                grouped_refs,
                join_key_values,
                entity_name_to_join_key_map,
                online_features_response,
                full_feature_names,
                include_feature_view_version_metadata,
            )
        plan = self._grouped_plan(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        commands = plan.commands()
        client = sync_client(store_config_of(config), for_reads=True)
        replies = redis_io.hmget(client, commands)
        self._record_read(len(commands))
        plan.populate(replies, online_features_response, full_feature_names, include_feature_view_version_metadata)
        if tally := self._read_tally(config, lambda: plan.served_views(replies)):
            tally.record(redis_io.exists(client, tally.unsure))

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
        if not self._grouped_read_on:
            return await super()._read_features_per_fv_async(
                config,
                grouped_refs,
                join_key_values,
                entity_name_to_join_key_map,
                online_features_response,
                full_feature_names,
                include_feature_view_version_metadata,
            )
        plan = self._grouped_plan(config, grouped_refs, join_key_values, entity_name_to_join_key_map)
        commands = plan.commands()
        client = await async_client(store_config_of(config), for_reads=True)
        replies = await redis_io.hmget_async(client, commands)
        self._record_read(len(commands))
        plan.populate(replies, online_features_response, full_feature_names, include_feature_view_version_metadata)
        if tally := self._read_tally(config, lambda: plan.served_views(replies)):
            tally.record(await redis_io.exists_async(client, tally.unsure))

    @staticmethod
    def _read_tally(config: RepoConfig, views: Callable[[], list[ViewServed]]) -> metrics.ReadTally | None:
        """Count what a read found for the served-age and outcome metrics (no work at all
        while Feast's metrics are off). A tally comes back when entities had none of the
        requested views: the caller settles its `unsure` keys with EXISTS."""
        if not metrics.enabled():
            return None
        return metrics.tally_reads(config.project, views())

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
        if store_config.vector_enabled:
            self._update_indexes(config, client, tables_to_keep, tables_to_delete, partial)

    @staticmethod
    def _update_indexes(
        config: RepoConfig, client: Any, kept: Sequence[FeatureView], deleted: Sequence[FeatureView], partial: bool
    ) -> None:
        """Indexes follow the views: built or changed for kept views with vector fields,
        dropped for deleted views (and, on a full apply, for every other view)."""
        store_config = store_config_of(config)
        wanted = [schema for table in kept if (schema := index_schema_of(table, config)) is not None]
        if partial:  # only the applied views are known: keep the indexes of the others
            gone = {layout_of(table, config).name for table in deleted}
            keep_others = True
        else:
            gone, keep_others = set(), False
        try:
            changes = search_io.sync_indexes(
                client, wanted, key_prefix_of(config), store_config.where, keep_others=keep_others, drop_views=gone
            )
        except SearchUnavailable as exc:
            # Every other feature works without the Query Engine: apply goes on, and
            # retrieval raises this same error until the server has one.
            logger.warning("%s No search index was built.", exc)
            return
        for change in changes:
            logger.info("%s", change)

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]) -> None:
        store_config = store_config_of(config)
        client = sync_client(store_config)
        if store_config.vector_enabled:
            dropped = search_io.drop_project_indexes(client, key_prefix_of(config), store_config.where)
            logger.info("teardown dropped %d search index(es) of project %s", dropped, config.project)
        deleted = maintenance.delete_project(client, store_config.key_prefix, config.project)
        logger.info("teardown removed %d keys of project %s", deleted, config.project)

    # ------------------------------------------------------------ vector and text retrieval

    @staticmethod
    def _search_plan(
        config: RepoConfig,
        table: FeatureView,
        requested_features: Sequence[str] | None,
        embedding: Sequence[float] | None,
        top_k: int,
        distance_metric: str | None,
        query_string: str | None,
        filters: Any,
        inline: bool = True,
    ) -> SearchPlan:
        return plan_search(
            searchable_schema(config, table),
            layout_of(table, config),
            list(requested_features or []),
            embedding,
            top_k,
            distance_metric,
            query_string,
            filters,
            inline=inline,
        )

    def retrieve_online_documents_v2(
        self,
        config: RepoConfig,
        table: FeatureView,
        requested_features: list[str],
        embedding: list[float] | None,
        top_k: int,
        distance_metric: str | None = None,
        query_string: str | None = None,
        filters: Any = None,
        include_feature_view_version_metadata: bool = False,
    ) -> list[ResultRow]:
        """KNN, BM25 keyword search or both on the view's Query Engine index (search_query).
        `L1` is exact over an L2-indexed field: L2 candidates, widened until their L1 ranking
        is settled (exact on a FLAT index; on HNSW as approximate as its L2 neighbours)."""
        store_config = store_config_of(config)
        client = sync_client(store_config, for_reads=True)  # replicas answer with read_from_replicas
        request = (requested_features, embedding, top_k, distance_metric, query_string, filters)
        plan = self._search_plan(config, table, *request, inline=not search_io.is_cluster(client))
        primary = (lambda: sync_client(store_config)) if store_config.read_from_replicas else None
        hits = search_io.run_search(client, plan, store_config.where, store_config.retry_attempts, primary)
        return plan.rows(hits, entity_types_of(table))

    async def retrieve_online_documents_v2_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        requested_features: list[str],
        embedding: list[float] | None,
        top_k: int,
        distance_metric: str | None = None,
        query_string: str | None = None,
        filters: Any = None,
        include_feature_view_version_metadata: bool = False,
    ) -> list[ResultRow]:
        store_config = store_config_of(config)
        client = await async_client(store_config, for_reads=True)
        request = (requested_features, embedding, top_k, distance_metric, query_string, filters)
        plan = self._search_plan(config, table, *request, inline=not search_io.is_cluster(client))
        primary_async = (lambda: async_client(store_config)) if store_config.read_from_replicas else None
        where, attempts = store_config.where, store_config.retry_attempts
        hits = await search_io.run_search_async(client, plan, where, attempts, primary_async)
        return plan.rows(hits, entity_types_of(table))

    def retrieve_online_documents(
        self,
        config: RepoConfig,
        table: FeatureView,
        requested_features: list[str],
        embedding: list[float],
        top_k: int,
        distance_metric: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Feast's first retrieval API: (event time, entity key, the requested feature's value,
        the stored vector, distance) per hit, from the same search as the v2 API."""
        vectors = [f.name for f in layout_of(table, config).features.values() if f.vector is not None]
        wanted = list(dict.fromkeys([*requested_features, *vectors]))  # the stored vector comes back too
        rows = self.retrieve_online_documents_v2(config, table, wanted, embedding, top_k, distance_metric)
        vector = vectors[0] if vectors else None
        first = requested_features[0] if requested_features else vector
        out: list[tuple[Any, ...]] = []
        for ts, key, values in rows:
            values = values or {}
            out.append((ts, key, values.get(first or ""), values.get(vector or ""), values.get("distance")))
        return out

    async def close(self) -> None:
        await close_async_clients()
