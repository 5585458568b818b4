"""HexpireProvider: Feast's passthrough provider, with online writes that skip ValueProtos.

    provider: feast_redis_hexpire.HexpireProvider      # feature_store.yaml

Opt-in. With `RedisHexpireOnlineStore` configured, materialization on the local compute
engine and every push (`store.push`, `write_to_online_store`, `feast serve` /push, sync
and async) encode Arrow record batches straight into the write script's records
(`arrow_writes`) instead of building a ValueProto per value first. Materialization
streams: Feast's own local DAG still reads, filters, deduplicates and validates, and its
result is written batch by batch, never held as protos. The stored bytes, keys, event
times and TTLs are the default path's (tests/test_provider.py compares them).

Anything else takes Feast's own path, and a DEBUG log on the `feast_redis_hexpire` logger
says why: another online store, an on-demand view, a view the store cannot encode, an
entity-less view, another compute engine. Reads, retrieval, the offline store and the
registry are the passthrough provider's.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa
from feast import utils as feast_utils
from feast.infra.passthrough_provider import PassthroughProvider
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig

try:  # the local engine's DAG, which the Arrow materialization extends (feast_hooks checks it)
    from feast.infra.common.materialization_job import MaterializationTask
    from feast.infra.compute_engines.dag.context import ExecutionContext
    from feast.infra.compute_engines.local.arrow_table_value import ArrowTableValue
    from feast.infra.compute_engines.local.compute import LocalComputeEngine
    from feast.infra.compute_engines.local.feature_builder import LocalFeatureBuilder
    from feast.infra.compute_engines.local.nodes import LocalOutputNode
except ImportError:  # pragma: no cover - a Feast that moved them: feast_hooks turns the path off
    MaterializationTask = ExecutionContext = ArrowTableValue = LocalComputeEngine = None
    LocalFeatureBuilder = LocalOutputNode = object

from . import feast_hooks, redis_io
from .arrow_writes import ArrowViewEncoder, FeatureColumn, table_from_frame
from .clients import async_client, sync_client
from .config import RedisHexpireOnlineStoreConfig
from .errors import HexpireError
from .store import RedisHexpireOnlineStore, key_prefix_of, layout_of, store_config_of
from .writes import WritePlan, WriteReport, write_head

logger = logging.getLogger("feast_redis_hexpire")

BATCH_ROWS = 10_000
"""Rows per record batch when materializing and `online_write_batch_size` is unset: large
enough that the column operations dominate their fixed costs, small enough that a batch's
encoded records stay a few MB."""


@dataclass
class _Route:
    """A view's Arrow write: its encoder and where it goes."""

    encoder: ArrowViewEncoder
    store: RedisHexpireOnlineStore
    config: RepoConfig
    store_config: RedisHexpireOnlineStoreConfig

    def finish(self, report: WriteReport, path: str) -> None:
        self.store.record_write(self.config, self.encoder.layout, report, path)


class HexpireProvider(PassthroughProvider):
    """PassthroughProvider whose materialization (local engine) and push paths write Arrow
    batches through `arrow_writes`."""

    def __init__(self, config: RepoConfig) -> None:
        super().__init__(config)
        # The private Feast hooks the Arrow paths need: what is missing or re-signed turns
        # its path off (one WARNING each), and Feast's own write path serves.
        self.hooks = feast_hooks.check()
        self._arrow_on = {
            "push": self.hooks.active(feast_hooks.ARROW_PUSH),
            "materialization": self.hooks.active(feast_hooks.ARROW_MATERIALIZE),
        }
        for name in self.hooks.feasts_own("PassthroughProvider"):
            setattr(self, name, getattr(super(), name))

    # ------------------------------------------------------------ routing

    def _route(self, feature_view: Any, what: str) -> _Route | None:
        """The Arrow route for a view, or None (Feast's own path, logged at DEBUG)."""
        route = self._arrow_route(feature_view) if self._arrow_on[what] else f"the Arrow {what} is off in this Feast"
        if isinstance(route, str):
            logger.debug(
                "HexpireProvider: %s of view %r takes Feast's own path: %s",
                what,
                getattr(feature_view, "name", feature_view),
                route,
            )
            return None
        return route

    def _arrow_route(self, feature_view: Any) -> _Route | str:
        store = self.online_store
        if not isinstance(store, RedisHexpireOnlineStore):
            return f"the online store is {type(store).__name__}, not RedisHexpireOnlineStore"
        if isinstance(feature_view, OnDemandFeatureView):
            return "an on-demand feature view (Feast transforms and converts it)"
        source = getattr(feature_view, "batch_source", None)
        if source is None or not source.timestamp_field:
            return "the view has no batch source with a timestamp field"
        entity_columns = list(getattr(feature_view, "entity_columns", None) or ())
        if not entity_columns:
            return "an entity-less view"
        config = self.repo_config
        try:
            layout = layout_of(feature_view, config)
        except HexpireError as exc:  # the default path raises it from the store
            return f"the store cannot write the view as declared ({exc})"
        join_keys = [(field.name, field.dtype.to_value_type()) for field in entity_columns]
        if tuple(sorted(name for name, _ in join_keys)) != layout.join_keys:
            return f"its entity columns {[n for n, _ in join_keys]} are not its join keys {list(layout.join_keys)}"
        store_config = store_config_of(config)
        encoder = ArrowViewEncoder(
            feature_view=feature_view,
            layout=layout,
            head=write_head(layout, store_config),
            prefix=key_prefix_of(config),
            join_keys=join_keys,
            features=[
                FeatureColumn(feature.name, layout.features[feature.name])
                for feature in feature_view.features
                if feature.name in layout.features
            ],
            feature_names=[feature.name for feature in feature_view.features],
            timestamp_column=source.timestamp_field,
            created_column=source.created_timestamp_column or None,
        )
        return _Route(encoder, store, config, store_config)

    # ------------------------------------------------------------ push

    def ingest_df(self, feature_view: Any, df: pd.DataFrame, field_mapping: dict[str, str] | None = None) -> None:
        route = self._route(feature_view, "push") if df is not None else None
        if route is None:
            return super().ingest_df(feature_view, df, field_mapping)
        plan = _push_plan(route, df)
        config = route.store_config
        report = redis_io.write(sync_client(config), plan, config.write_chunk_size, None, config.where)
        route.finish(report, "push")

    async def ingest_df_async(
        self, feature_view: Any, df: pd.DataFrame, field_mapping: dict[str, str] | None = None
    ) -> None:
        route = self._route(feature_view, "push") if df is not None else None
        if route is None:
            return await super().ingest_df_async(feature_view, df, field_mapping)
        plan = _push_plan(route, df)
        config = route.store_config
        client = await async_client(config)
        report = await redis_io.write_async(client, plan, config.write_chunk_size, None, config.where)
        route.finish(report, "push")

    # ------------------------------------------------------------ materialize

    def materialize_single_feature_view(
        self,
        config: RepoConfig,
        feature_view: Any,
        start_date: datetime,
        end_date: datetime,
        registry: BaseRegistry,
        project: str,
        tqdm_builder: Callable[[int], Any],
        disable_event_timestamp: bool = False,
    ) -> None:
        engine = self.batch_engine
        route = None
        if type(engine) is not LocalComputeEngine:
            logger.debug(
                "HexpireProvider: materialization of view %r takes Feast's own path: the compute engine is %s",
                feature_view.name,
                type(engine).__name__,
            )
        elif not isinstance(feature_view, OnDemandFeatureView) and getattr(feature_view, "online", False):
            route = self._route(feature_view, "materialization")
        if route is None:
            return super().materialize_single_feature_view(
                config,
                feature_view,
                start_date,
                end_date,
                registry,
                project,
                tqdm_builder,
                disable_event_timestamp,
            )
        task = MaterializationTask(
            project=project,
            feature_view=feature_view,
            start_time=start_date,
            end_time=end_date,
            tqdm_builder=tqdm_builder,
            disable_event_timestamp=disable_event_timestamp,
        )
        context = engine.get_execution_context(registry, task)
        builder = _ArrowFeatureBuilder(registry, task, backend=engine._get_backend(context), provider=self)
        # Errors propagate as from Feast's engine (which wraps them in the job and re-raises).
        builder.build().execute(context)

    def _write_table(self, feature_view: Any, table: pa.Table, config: RepoConfig) -> bool:
        """Materialize's write: stream the DAG's result batch by batch. False when the view
        turns out not to take the Arrow path (the caller then writes Feast's way)."""
        route = self._route(feature_view, "materialization")
        if route is None:
            return False
        batch_size = config.materialization_config.online_write_batch_size
        store_config = route.store_config
        client = sync_client(store_config)
        total = WriteReport()
        with _cyclic_gc_paused():
            for batch in table.to_batches(max_chunksize=batch_size or BATCH_ROWS):
                plan = route.encoder.plan(batch)
                report = redis_io.write(client, plan, store_config.write_chunk_size, None, store_config.where)
                if batch_size:  # Feast's engine writes (and the store counts) one batch at a time
                    route.finish(report, "materialize")
                else:  # ... or the whole table at once
                    total.add(report)
        if not batch_size:
            route.finish(total, "materialize")
        return True


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Materializing allocates two GC-tracked objects per row (its record and EntityWrite),
    none in a reference cycle: reference counting frees each batch. Left on, the cyclic
    collector ran full passes over the whole process every few batches, a fifth of the
    client's time (benchmarks/rss.py at 300k users: 2.5 s of 11 s)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _push_plan(route: _Route, df: pd.DataFrame) -> WritePlan:
    """The table Feast's `_prep_rows_to_write_for_ingestion` builds for a feature view, as one
    plan: every batch is encoded before anything is sent, as on the default path."""
    table = table_from_frame(df, route.encoder)
    source = route.encoder.feature_view.batch_source
    if source.field_mapping is not None:
        table = feast_utils._run_pyarrow_field_mapping(table, source.field_mapping)
    plans = [route.encoder.plan(batch) for batch in table.to_batches()]
    return WritePlan(route.encoder.layout, route.encoder.head, _rows(plans))


def _rows(plans: Iterable[WritePlan]) -> list[Any]:
    rows: list[Any] = []
    for plan in plans:
        rows.extend(plan.rows)
    return rows


# ---------------------------------------------------------------- Feast's local DAG, our output node


class _ArrowOutputNode(LocalOutputNode):
    """Feast's output node with the online write replaced; the offline write is Feast's."""

    def __init__(self, name: str, feature_view: Any, provider: HexpireProvider, inputs: list[Any]) -> None:
        super().__init__(name, feature_view, inputs=inputs)
        self.provider = provider

    def execute(self, context: ExecutionContext) -> ArrowTableValue:
        table = self.get_single_table(context).data
        if table.num_rows == 0 or not self.feature_view.online:
            return super().execute(context)
        if not self.provider._write_table(self.feature_view, table, context.repo_config):
            return super().execute(context)
        output = ArrowTableValue(data=table)
        context.node_outputs[self.name] = output
        if self.feature_view.offline:
            context.offline_store.offline_write_batch(
                config=context.repo_config,
                feature_view=self.feature_view,
                table=table,
                progress=lambda x: None,
            )
        return output


class _ArrowFeatureBuilder(LocalFeatureBuilder):
    def __init__(self, registry: BaseRegistry, task: MaterializationTask, backend: Any, provider: HexpireProvider):
        super().__init__(registry, task, backend=backend)
        self.provider = provider

    def build_output_nodes(self, view: Any, input_node: Any) -> _ArrowOutputNode:
        node = _ArrowOutputNode("output", self.dag_root.view, self.provider, inputs=[input_node])
        self.nodes.append(node)
        return node
