"""The store's own retrieval API: vector, keyword and hybrid search in rank order.

    search = DocumentSearch(store, ["docs:emb", "docs:title"])   # or a FeatureService
    result = search.query(embedding=vec, top_k=10)              # query_string=, filters=, distance_metric=
    result.to_dict()   # join keys, features, "distance" (and "text_rank"), nearest / best first

`FeatureStore.retrieve_online_documents_v2` answers in join-key order, not rank order: Feast
pairs the store's rows with the entities it sorts by join-key value
(`utils._get_unique_entities_from_values`), so the store must hand its rows over in that
order. Feast also resolves the view and builds protobufs on every call. A DocumentSearch
resolves the view, its layout, its index and its decoders once per registry version
(direct_access.PerRegistryVersion) and then per call does only the search: the plan and
the replies are the online store's own (`search_query.plan_search`, `search_io.run_search`,
the same rules and errors as its `retrieve_online_documents_v2`), and the response keeps
the hits in rank order, decoding them straight to Python in `to_dict()`; `.proto` (Feast's
GetOnlineFeaturesResponse, built by Feast's own functions) is built only when asked for.

The result has the columns Feast's `to_dict()` gives for the same request: the requested
features, `distance`, `text_rank` (with a query_string), then the join keys (here also when
nothing matched). `distance_metric` left out means the vector field's own metric.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from feast import utils as feast_utils
from feast.feature_service import FeatureService
from feast.online_response import TIMESTAMP_POSTFIX
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

from . import feast_hooks, search_io
from .codec import as_float32, event_ts_seconds, python_decoder
from .direct_access import PerRegistryVersion, StoreClients, online_store_of
from .errors import ConfigError, InvalidInput
from .search_index import IndexSchema
from .search_query import Hit, SearchPlan, entity_texts, entity_value, plan_search, requested_names
from .serving import LazyResponse
from .store import entity_types_of, layout_of, searchable_schema
from .vector_schema import vector_columns
from .views import ViewLayout

__all__ = ["AsyncDocumentSearch", "DocumentResponse", "DocumentSearch"]

Features: TypeAlias = "Sequence[str] | FeatureService"


# ---------------------------------------------------------------- the view, resolved


@dataclass(frozen=True)
class _Column:
    name: str
    field: bytes | None  # None: a join key asked for as a feature
    decode: Callable[[list[bytes | None]], list[Any]]  # stored values -> what Feast's to_dict() shows


def _each(decode: Callable[[bytes], Any]) -> Callable[[list[bytes | None]], list[Any]]:
    return lambda raws: [None if raw is None else decode(raw) for raw in raws]


@dataclass(frozen=True)
class _Resolution:
    """Everything a search needs from the registry, for one registry version."""

    table: Any  # the FeatureView, with Feast's projection
    layout: ViewLayout
    schema: IndexSchema
    requested: list[str]
    columns: list[_Column]
    join_keys: list[tuple[str, Callable[[str], Any]]]  # sorted: (join key, key text -> Python value)
    entity_types: dict[str, ValueType]
    feature_types: dict[str, ValueType]


_NATIVE_KEYS: dict[ValueType, Callable[[str], Any]] = {
    ValueType.STRING: str,
    ValueType.INT64: int,
    ValueType.INT32: int,
}


def _key_decoder(value_type: ValueType) -> Callable[[str], Any]:
    """Key text -> what Feast's to_dict() shows for the join key's ValueProto."""
    native = _NATIVE_KEYS.get(value_type)
    if native is not None:
        return native
    return lambda text: feast_value_type_to_python_type(entity_value(text, value_type))


def _resolve(store: Any, features: Features) -> _Resolution:
    """Feast's own resolution of the features (as FeatureStore.retrieve_online_documents_v2
    does it), checked once: one view, searchable, every feature known."""
    views, on_demand = feast_utils._get_feature_views_to_use(
        store.registry, store.project, features, allow_cache=True, hide_dummy_entity=False
    )
    names = sorted({view.name for view in [*views, *on_demand]})
    if on_demand or len(views) != 1:
        raise InvalidInput(
            "document retrieval searches a single feature view, not an on-demand one; the features name "
            + (", ".join(repr(n) for n in names) or "no view"),
            value=names,
        )
    table = views[0]
    if isinstance(features, FeatureService):
        requested = [feature.name for feature in table.projection.features]
    else:
        requested = [feast_utils._parse_feature_ref(ref)[2] for ref in features]
    config = store.config
    schema = searchable_schema(config, table)
    layout = layout_of(table, config)
    requested = requested_names(layout, requested)
    feature_types = {f.name: f.dtype.to_value_type() for f in table.features}
    entity_types = entity_types_of(table)
    columns = []
    for name in requested:
        feature = layout.features.get(name)
        if feature is None:
            columns.append(_Column(name, None, list))
        elif feature.vector is not None:
            columns.append(_Column(name, feature.field, vector_columns(feature.vector, view=layout.name, feature=name)))
        else:
            decode = python_decoder(feature.codec, feature_types.get(name), layout.name, name)
            columns.append(_Column(name, feature.field, _each(decode)))
    join_keys = [(name, _key_decoder(entity_types.get(name, ValueType.STRING))) for name in sorted(layout.join_keys)]
    return _Resolution(table, layout, schema, requested, columns, join_keys, entity_types, feature_types)


# ---------------------------------------------------------------- the response


class DocumentResponse(LazyResponse):
    """Feast's `OnlineResponse` of a search, in rank order (nearest, or best BM25 score,
    first). `to_dict()` / `to_df()` / `to_arrow()` decode the hits straight to Python;
    `.proto` is built with Feast's own functions on first use."""

    def __init__(self, resolved: _Resolution, plan: SearchPlan, hits: list[Hit], version_metadata: bool) -> None:
        super().__init__(resolved.feature_types)
        self._resolved = resolved
        self._plan = plan
        self._hits = hits
        self._version_metadata = version_metadata

    def __len__(self) -> int:
        return len(self._hits)

    def _rank_columns(self) -> list[str]:
        return ["distance", "text_rank"] if self._plan.text else ["distance"]

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, Any]:
        resolved, hits = self._resolved, self._hits
        out: dict[str, Any] = {}
        seconds = None
        if include_event_timestamps:
            ts_field = resolved.layout.ts_field
            seconds = [event_ts_seconds(hit.fields[ts_field]) for hit in hits]
        for column in resolved.columns:
            field, decode = column.field, column.decode
            if field is not None:
                out[column.name] = decode([hit.fields.get(field) for hit in hits])
            else:
                out[column.name] = None  # the join key's column, filled below where Feast puts it
            if seconds is not None:
                out[column.name + TIMESTAMP_POSTFIX] = list(seconds)
        out["distance"] = [None if hit.distance is None else as_float32(hit.distance) for hit in hits]
        if seconds is not None:
            out["distance" + TIMESTAMP_POSTFIX] = list(seconds)
        if self._plan.text:
            out["text_rank"] = [None if hit.score is None else as_float32(hit.score) for hit in hits]
            if seconds is not None:
                out["text_rank" + TIMESTAMP_POSTFIX] = list(seconds)
        schema = resolved.schema
        texts = [entity_texts(hit.key, schema) for hit in hits]
        for name, decode_key in resolved.join_keys:
            out[name] = [decode_key(parts[name]) for parts in texts]
            if seconds is not None:
                out[name + TIMESTAMP_POSTFIX] = [0] * len(hits)
        return out

    def _build_proto(self) -> GetOnlineFeaturesResponse:
        """What FeatureStore._retrieve_from_online_store_v2 builds, with the rows in rank
        order (each row its own entity)."""
        resolved = self._resolved
        rows = self._plan.ranked_rows(self._hits, resolved.entity_types)
        response = GetOnlineFeaturesResponse(results=[])
        feast_utils._populate_response_from_feature_data(
            requested_features=[*resolved.requested, *self._rank_columns()],
            read_rows=[(ts, values) for ts, _, values in rows],
            indexes=[[i] for i in range(len(rows))],
            online_features_response=response,
            full_feature_names=False,
            table=resolved.table,
            output_len=len(rows),
            include_feature_view_version_metadata=self._version_metadata,
        )
        entities: dict[str, list[ValueProto]] = {name: [] for name, _ in resolved.join_keys}
        for _, key, _ in rows:
            assert key is not None
            for name, value in zip(key.join_keys, key.entity_values):
                entities[name].append(value)
        feast_utils._populate_result_rows_from_columnar(online_features_response=response, data=entities)
        return response


# ---------------------------------------------------------------- the shared search


class _Search:
    """Everything but the I/O, shared by DocumentSearch and AsyncDocumentSearch."""

    def __init__(self, store: Any, features: Features) -> None:
        report = feast_hooks.check()
        if not report.active(feast_hooks.DOCUMENT_SEARCH):
            changed = [p for p in report.problems if feast_hooks.DOCUMENT_SEARCH in p.fast_paths]
            raise ConfigError(
                f"DocumentSearch needs Feast internals that Feast {report.feast_version} changed ("
                + "; ".join(f"{p.name} is {p.problem}" for p in changed)
                + "): use FeatureStore.retrieve_online_documents_v2 (its results come in join-key order)"
            )
        online_store_of(store, "DocumentSearch")  # this store's, or a ConfigError now
        self.clients = StoreClients.of(store, for_reads=True)  # replicas with read_from_replicas
        self.where = self.clients.store_config.where
        self.attempts = self.clients.store_config.retry_attempts
        self._store = store
        self._features = features
        self.resolved = PerRegistryVersion(store, lambda: _resolve(self._store, self._features))
        self.resolved.get()  # an unknown view or feature fails here, not at the first query

    def plan(self, client: Any, request: _Request) -> tuple[_Resolution, SearchPlan]:
        """The plan on the view last resolved (a filter on a feature `feast apply` added a
        moment ago looks again: PerRegistryVersion.using)."""
        return self.resolved.using(lambda resolved: request.plan(resolved, client))


@dataclass(frozen=True)
class _Request:
    embedding: Sequence[float] | None
    top_k: int
    query_string: str | None
    filters: Any
    distance_metric: str | None

    def plan(self, resolved: _Resolution, client: Any) -> SearchPlan:
        return plan_search(
            resolved.schema,
            resolved.layout,
            resolved.requested,
            self.embedding,
            self.top_k,
            self.distance_metric,
            self.query_string,
            self.filters,
            inline=not search_io.is_cluster(client),
        )


class _Facade:
    _search: _Search

    @property
    def view(self) -> str:
        """The searched view's name."""
        return str(self._search.resolved.get().table.name)

    @property
    def features(self) -> list[str]:
        """The features each result carries, besides its join keys and rank columns."""
        return list(self._search.resolved.get().requested)

    def refresh(self) -> None:
        """Re-read the registry now and resolve the view again."""
        self._search.resolved.refresh()


class DocumentSearch(_Facade):
    """Searches one feature view's documents: vector KNN, BM25 keywords or both, with
    Feast's filters, results in rank order. Thread-safe; make one per feature list and keep
    it."""

    def __init__(self, store: Any, features: Features) -> None:
        self._search = _Search(store, features)

    def query(
        self,
        embedding: Sequence[float] | None = None,
        *,
        top_k: int = 10,
        query_string: str | None = None,
        filters: Any = None,
        distance_metric: str | None = None,
        include_feature_view_version_metadata: bool = False,
    ) -> DocumentResponse:
        """`embedding`: KNN by `distance_metric` (the Field's own when left out);
        `query_string`: BM25 keywords, every word required; both: KNN among the keyword
        matches. `filters`: Feast's ComparisonFilter / CompoundFilter, part of the query, so
        `top_k` holds after them. The store's errors for what it cannot serve."""
        search = self._search
        client = search.clients.sync_client()
        resolved, plan = search.plan(client, _Request(embedding, top_k, query_string, filters, distance_metric))
        hits = search_io.run_search(client, plan, search.where, search.attempts, search.clients.primary_sync)
        return DocumentResponse(resolved, plan, plan.results(hits), include_feature_view_version_metadata)


class AsyncDocumentSearch(_Facade):
    """DocumentSearch for asyncio: the same search, sent with the store's async client."""

    def __init__(self, store: Any, features: Features) -> None:
        self._search = _Search(store, features)

    async def query(
        self,
        embedding: Sequence[float] | None = None,
        *,
        top_k: int = 10,
        query_string: str | None = None,
        filters: Any = None,
        distance_metric: str | None = None,
        include_feature_view_version_metadata: bool = False,
    ) -> DocumentResponse:
        search = self._search
        client = await search.clients.async_client()
        resolved, plan = search.plan(client, _Request(embedding, top_k, query_string, filters, distance_metric))
        hits = await search_io.run_search_async(
            client, plan, search.where, search.attempts, search.clients.primary_async
        )
        return DocumentResponse(resolved, plan, plan.results(hits), include_feature_view_version_metadata)
