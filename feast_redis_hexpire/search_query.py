"""`retrieve_online_documents_v2` without I/O: a request becomes one `FT.SEARCH`, and the
replies of every node become Feast's result rows.

- vector KNN (`embedding`): `(<filters>)=>[KNN k @vec $BLOB AS __distance]`, nearest first;
- keyword search (`query_string`): BM25 over the view's TEXT attributes, best first;
- both: KNN among the documents matching the keywords (the keywords narrow, the vector ranks).

`L1` (Manhattan), which the engine has no metric for, is served exactly on a field indexed
for L2: any vector's L1 norm is at least its L2 norm, so once the k-th best L1 among the
first k' L2 neighbours is no more than the k'-th L2 distance, no other document can beat
it. `SearchPlan.next_round` widens k' until that holds (or every match is a candidate).
Exact on a FLAT index; on HNSW as approximate as the L2 neighbours it finds.

Feast's ComparisonFilter / CompoundFilter become query clauses, so `top_k` holds after
filtering. Every query also requires the view's `_ts` field: a hash is a document of the
view only while it holds the view's data (expired stream fields, dropped features and
other views' entities never match). Results carry each document's stored vector, read
back from the hash by the same query, and a hit whose vector or event time is gone is
never returned.

On Redis Cluster every primary indexes its own hashes: the query runs on each and
`merge` keeps the global top k.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from .codec import decode_event_ts, decode_value
from .errors import InvalidInput, UnknownFeature
from .keys import parse_entity_suffix
from .search_index import DISTANCE_ATTRIBUTE, TS_ATTRIBUTE, IndexedField, IndexSchema
from .vector_schema import METRICS
from .views import ViewLayout

DIALECT = "2"
MAX_WINDOW = 1_000_000
"""The most documents one FT.SEARCH returns (the module's MAXSEARCHRESULTS default)."""
L1_NAMES = frozenset({"L1", "MANHATTAN"})
"""Feast's names for the Manhattan distance (pgvector's `L1`, Qdrant's `l1`)."""
_DISTANCE_FIELD = DISTANCE_ATTRIBUTE.encode()
ResultRow = tuple["datetime | None", "EntityKeyProto | None", "dict[str, ValueProto] | None"]


@dataclass(slots=True)
class Hit:
    """One document found (not changed once made: a plain dataclass, as a frozen one costs
    a microsecond per hit to build)."""

    key: bytes
    distance: float | None
    score: float | None
    fields: dict[bytes, bytes]


@dataclass
class SearchPlan:
    """One FT.SEARCH (sent to every primary) and how to read its replies. With `inline`
    the search returns each document's fields itself; otherwise (Redis Cluster, where the
    module loads no hash fields) it returns keys and scores, and the fields come from one
    HMGET per hit (`field_reads`, `with_fields`).

    The search fetches `window` documents: `top_k`, or for `L1` (`manhattan` holds the
    query vector) the round's k' L2 candidates, ranked by L1 in `top`."""

    schema: IndexSchema
    layout: ViewLayout
    clauses: str  # the filters and keywords, "*" for none
    params: list[Any]
    order: list[Any]
    content: list[Any]
    requested: list[str]
    vector: IndexedField | None
    text: bool
    top_k: int
    window: int
    inline: bool = True
    loaded: list[bytes] = field(default_factory=list)  # the hash fields a hit needs
    keywords: str | None = None  # the keyword clause of a hybrid search
    manhattan: np.ndarray | None = None  # the L1 query vector, as the index stores vectors

    @property
    def args(self) -> list[Any]:
        query = self.clauses
        if self.vector is not None:
            scope = query if query == "*" else f"({query})"
            params = self.schema.params
            ef = f" EF_RUNTIME {max(params.ef_runtime, self.window)}" if params.algorithm == "HNSW" else ""
            query = f"{scope}=>[KNN {self.window} @{self.vector.attribute} $BLOB{ef} AS {DISTANCE_ATTRIBUTE}]"
        return ["FT.SEARCH", self.schema.alias, query, *self.params, *self.order, *self.content] + [
            "LIMIT", 0, self.window, "DIALECT", DIALECT
        ]  # fmt: skip

    def score_query(self, hits: Sequence[Hit]) -> list[Any] | None:
        """A hybrid search ranks by distance, and the engine scores its KNN hits 0: the
        hits' BM25 scores come from one more search, of the keywords over those keys."""
        if self.keywords is None or self.vector is None or not hits:
            return None
        keys = [hit.key for hit in hits]
        return ["FT.SEARCH", self.schema.alias, self.keywords, "WITHSCORES", "SCORER", "BM25", "NOCONTENT"] + [
            "INKEYS", len(keys), *keys, "LIMIT", 0, len(keys), "DIALECT", DIALECT
        ]  # fmt: skip

    def with_scores(self, hits: Sequence[Hit], replies: Sequence[Sequence[Any]] | None) -> list[Hit]:
        if replies is None:
            return list(hits)
        scores = {reply[i]: float(reply[i + 1]) for reply in replies for i in range(1, len(reply) - 1, 2)}
        return [Hit(hit.key, hit.distance, scores.get(hit.key, 0.0), hit.fields) for hit in hits]

    def hits(self, reply: Sequence[Any]) -> list[Hit]:
        """FT.SEARCH's RESP2 reply: total, then per document its key, its BM25 score
        (keyword searches) and its fields (with `inline`, or `__distance`)."""
        hits: list[Hit] = []
        scored = self.text and self.vector is None
        with_fields = self.inline or self.vector is not None
        at = 1
        while at < len(reply):
            key = reply[at]
            at += 1
            score = None
            if scored:
                score = float(reply[at])
                at += 1
            fields: dict[bytes, bytes] = {}
            if with_fields:
                flat = reply[at] or []
                fields = dict(zip(flat[::2], flat[1::2]))
                at += 1
            distance = fields.pop(_DISTANCE_FIELD, None)
            hits.append(Hit(key, None if distance is None else float(distance), score, fields))
        return hits

    def field_reads(self, hits: Sequence[Hit]) -> list[tuple[bytes, list[bytes]]]:
        """The HMGET of each hit's fields, when the search did not return them."""
        return [] if self.inline else [(hit.key, self.loaded) for hit in hits]

    def with_fields(self, hits: Sequence[Hit], replies: Sequence[Sequence[bytes | None]]) -> list[Hit]:
        if self.inline:
            return list(hits)
        return [
            Hit(hit.key, hit.distance, hit.score, {f: v for f, v in zip(self.loaded, reply) if v is not None})
            for hit, reply in zip(hits, replies)
        ]

    def merge(self, replies: Sequence[Sequence[Any]]) -> list[Hit]:
        """The global top `window` of every node's top `window`: nearest first, or best
        BM25 score first. A document no node returned is no nearer than the last of these:
        its own node returned `window` documents at least as near."""
        hits = [hit for reply in replies for hit in self.hits(reply)]
        if self.vector is not None:
            hits.sort(key=lambda hit: (hit.distance if hit.distance is not None else float("inf"), hit.key))
        else:
            hits.sort(key=lambda hit: (-(hit.score or 0.0), hit.key))
        return hits[: self.window]

    # ------------------------------------------------------------ L1 over the L2 index

    def next_round(self, hits: Sequence[Hit]) -> SearchPlan | None:
        """The wider search an L1 request still needs after these merged L2 candidates
        (their fields loaded), or None once they hold the exact L1 top k: when every
        match is a candidate, or when the k-th best L1 among them is within the L2
        distance of the last candidate, which bounds every other document's L1 from below
        (L1 >= L2). The engine reports L2 squared, rounded by its float arithmetic: the
        bound gives way by that rounding, so a near tie widens rather than guesses."""
        if self.manhattan is None or len(hits) < self.window:
            return None
        assert self.vector is not None and self.vector.vector is not None
        spec = self.vector.vector
        last = hits[-1].distance
        bound = math.sqrt(max(last, 0.0)) if last is not None else 0.0
        unit = 2.0**-24 if spec.element == "FLOAT32" else 2.0**-53
        l1 = np.sort(self._l1(hits))
        kth = float(l1[self.top_k - 1]) if len(l1) >= self.top_k else math.inf
        if bound * (1.0 - (spec.dim + 2) * unit - 1e-10) >= kth:
            return None
        if self.window >= MAX_WINDOW:
            feature = self.vector.feature
            raise InvalidInput(
                f"view {self.layout.name!r}, feature {feature!r}: distance metric 'L1' needs more than "
                f"{MAX_WINDOW} L2 candidates to be exact here; search by L2, or narrow the search with filters",
                view=self.layout.name,
                feature=feature,
                value="L1",
            )
        return replace(self, window=min(2 * self.window, MAX_WINDOW))

    def top(self, hits: Sequence[Hit]) -> list[Hit]:
        """The hits to return: for L1, the top k candidates by L1, which is their `distance`."""
        if self.manhattan is None:
            return list(hits)
        l1 = self._l1(hits)
        ranked = sorted((d, hit.key, hit) for d, hit in zip(l1.tolist(), hits) if d != math.inf)
        return [Hit(key, d, hit.score, hit.fields) for d, key, hit in ranked[: self.top_k]]

    def _l1(self, hits: Sequence[Hit]) -> np.ndarray:
        """Each hit's L1 distance from its stored vector; inf for one whose vector is gone."""
        assert self.vector is not None and self.vector.vector is not None and self.manhattan is not None
        spec = self.vector.vector
        size = spec.dim * np.dtype(spec.numpy_dtype).itemsize
        raws = [hit.fields.get(self.vector.field) for hit in hits]
        present = [i for i, raw in enumerate(raws) if raw is not None and len(raw) == size]
        distances = np.full(len(hits), math.inf)
        if present:
            stored = np.frombuffer(b"".join(raws[i] or b"" for i in present), dtype=spec.numpy_dtype)
            diff = stored.reshape(len(present), spec.dim).astype(np.float64) - self.manhattan
            distances[present] = np.abs(diff).sum(axis=1)
        return distances

    def results(self, hits: Sequence[Hit]) -> list[Hit]:
        """The hits that are results, in rank order: a hit whose view data (`_ts`) or
        searched vector expired between matching and loading is none."""
        vector = self.vector.field if self.vector is not None else None
        ts_field = self.layout.ts_field
        return [
            hit
            for hit in hits
            if hit.fields.get(ts_field) is not None and (vector is None or hit.fields.get(vector) is not None)
        ]

    def ranked_rows(self, hits: Sequence[Hit], entity_types: dict[str, ValueType]) -> list[ResultRow]:
        """Feast's result rows, in rank order: (event time, entity key, features +
        `distance` / `text_rank`)."""
        features = self.layout.features
        view = self.layout.name
        rows: list[ResultRow] = []
        for hit in self.results(hits):
            key = entity_key_of(hit.key, self.schema, entity_types)
            values: dict[str, ValueProto] = {}
            for name in self.requested:
                if name not in features:  # a join key asked for as a feature: the entity's value
                    values[name] = key.entity_values[list(key.join_keys).index(name)]
                    continue
                raw = hit.fields.get(features[name].field)
                values[name] = (
                    ValueProto() if raw is None else decode_value(features[name].codec, raw, view=view, feature=name)
                )
            if hit.distance is not None:
                values["distance"] = ValueProto(float_val=hit.distance)
            if hit.score is not None:
                values["text_rank"] = ValueProto(float_val=hit.score)
            rows.append((decode_event_ts(hit.fields[self.layout.ts_field]), key, values))
        return rows

    def rows(self, hits: Sequence[Hit], entity_types: dict[str, ValueType]) -> list[ResultRow]:
        """`ranked_rows` in the order Feast's FeatureStore needs (`_join_key_order`)."""
        return sorted(self.ranked_rows(hits, entity_types), key=_join_key_order)


def _join_key_order(row: ResultRow) -> tuple[Any, ...]:
    """Feast's FeatureStore builds the response from these rows assuming they come in the
    order of their join-key values (utils._get_unique_entities_from_values sorts entities
    and pairs the n-th sorted entity with the n-th row): rows in rank order would pair one
    document's values with another's key. So rows come in join-key order, each row whole;
    `distance` / `text_rank` carry the rank."""
    key = row[1]
    return tuple(getattr(value, value.WhichOneof("val") or "null_val") for value in key.entity_values) if key else ()


def entity_texts(key: bytes, schema: IndexSchema) -> dict[str, str]:
    """A stored key's join-key values, as text, by join key."""
    project_prefix = schema.key_prefix[: schema.key_prefix.rindex(":") + 1]
    return parse_entity_suffix(key.decode()[len(project_prefix) :])


def entity_key_of(key: bytes, schema: IndexSchema, entity_types: dict[str, ValueType]) -> EntityKeyProto:
    """The EntityKey of a stored key, its values typed as the view's join keys declare."""
    parts = entity_texts(key, schema)
    proto = EntityKeyProto()
    for name in sorted(parts):
        proto.join_keys.append(name)
        proto.entity_values.append(entity_value(parts[name], entity_types.get(name, ValueType.STRING)))
    return proto


def entity_value(text: str, value_type: ValueType) -> ValueProto:
    if value_type is ValueType.INT64:
        return ValueProto(int64_val=int(text))
    if value_type is ValueType.INT32:
        return ValueProto(int32_val=int(text))
    if value_type is ValueType.UNIX_TIMESTAMP:
        return ValueProto(unix_timestamp_val=int(text))
    if value_type is ValueType.BYTES:
        return ValueProto(bytes_val=text.encode("latin-1"))
    return ValueProto(string_val=text)


# ---------------------------------------------------------------- building the query


def plan_search(
    schema: IndexSchema,
    layout: ViewLayout,
    requested: Sequence[str],
    embedding: Sequence[float] | None,
    top_k: int,
    distance_metric: str | None,
    query_string: str | None,
    filters: Any,
    *,
    inline: bool = True,
) -> SearchPlan:
    view = layout.name
    if embedding is None and query_string is None:
        raise InvalidInput(f"view {view!r}: give an embedding, a query_string or both", view=view)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InvalidInput(f"view {view!r}: top_k must be a whole number >= 1, got {top_k!r}", view=view, value=top_k)
    names = requested_names(layout, requested)
    # The view's _ts narrows keyword and filtered searches to hashes holding the view's
    # data. A plain KNN goes without it where vector fields name their view: any clause
    # makes the engine filter first (brute force over the matches, not the HNSW graph).
    plain_knn = embedding is not None and filters is None and query_string is None and schema.view_fields
    clauses = [] if plain_knn else [f"@{TS_ATTRIBUTE}:[-inf +inf]"]
    if filters is not None:
        clauses.append(translate_filter(filters, schema, view))
    text = query_string is not None
    keywords = None
    if text:
        keywords = _text_clause(query_string or "", schema, view)
        clauses.append(keywords)
    base = " ".join(clauses) or "*"
    params: list[Any] = []
    returned = [layout.features[name].field for name in names if name in layout.features]
    vector = None
    manhattan = None
    window = top_k
    if embedding is not None:
        vector, l1 = _vector_field(schema, names, view, distance_metric)
        spec = vector.vector
        assert spec is not None
        if len(embedding) != spec.dim:
            raise InvalidInput(
                f"view {view!r}, feature {vector.feature!r}: the query vector has length {len(embedding)}, the "
                f"field's vector_length is {spec.dim}",
                view=view,
                feature=vector.feature,
                value=len(embedding),
            )
        blob = spec.pack(embedding)
        if l1:
            manhattan = np.frombuffer(blob, dtype=spec.numpy_dtype).astype(np.float64)
            window = max(top_k, min(2 * top_k, MAX_WINDOW))  # the first round's L2 candidates
        params = ["PARAMS", "2", "BLOB", blob]
        if vector.field not in returned:
            returned.append(vector.field)
        order = ["SORTBY", DISTANCE_ATTRIBUTE, "ASC"]
    else:
        order = ["WITHSCORES", "SCORER", "BM25"]
    returned.append(layout.ts_field)
    distance = [DISTANCE_ATTRIBUTE.encode()] if vector is not None else []
    if inline:
        content = ["RETURN", len(returned) + len(distance), *returned, *distance]
    else:
        content = ["RETURN", 1, *distance] if distance else ["NOCONTENT"]
    return SearchPlan(
        schema, layout, base, params, order, content, names, vector, text, top_k, window, inline,
        returned, keywords, manhattan,
    )  # fmt: skip


def requested_names(layout: ViewLayout, requested: Sequence[str]) -> list[str]:
    """The features a search returns: those asked for (a join key counts), else every one."""
    names = list(requested) or [name for name in layout.features]
    for name in names:
        if name not in layout.features and name not in layout.join_keys:
            raise UnknownFeature(
                f"view {layout.name!r} has no feature {name!r} (the view declares "
                f"{', '.join(sorted(layout.features))})",
                view=layout.name,
                feature=name,
            )
    return names


def _vector_field(
    schema: IndexSchema, requested: Sequence[str], view: str, asked: str | None
) -> tuple[IndexedField, bool]:
    """The vector attribute to search: the requested vector feature's (else the view's),
    for the metric asked (else the field's own); and whether the hits are ranked by L1,
    which the field's L2 attribute serves (see `SearchPlan.next_round`)."""
    vectors = schema.vectors
    if not vectors:
        raise InvalidInput(f"view {view!r} has no vector_index=True feature to search by embedding", view=view)
    feature = next((f.feature for f in vectors if f.feature in requested), vectors[0].feature)
    candidates = [f for f in vectors if f.feature == feature]
    if not asked:
        return candidates[0], False
    name = asked.strip().upper().replace("-", "_")
    l1 = name in L1_NAMES
    metric = "L2" if l1 else METRICS.get(name)
    chosen = next((f for f in candidates if f.metric == metric), None)
    if chosen is None:
        served = ", ".join(str(f.metric) for f in candidates)
        declare = (
            "L1 is ranked exactly over the nearest candidates of an L2 index, so it needs one: declare "
            'vector_search_metric="L2" on the Field'
            if l1
            else "Declare vector_search_metric on the Field (Feast then asks for it)"
        )
        raise InvalidInput(
            f"view {view!r}, feature {feature!r}: distance metric {asked!r} cannot be served: the index compares "
            f"by {served}. {declare}, or leave it and the online store's similarity unset (the field is then "
            "indexed for L2, COSINE and IP), and run feast apply",
            view=view,
            feature=feature,
            value=asked,
        )
    return chosen, l1


_WORD = re.compile(r"\w+", re.UNICODE)


def _text_clause(query_string: str, schema: IndexSchema, view: str) -> str:
    texts = schema.texts
    if not texts:
        raise InvalidInput(
            f"view {view!r}: query_string needs text search: set text_search_enabled: true in the online store "
            "config (String features are then indexed as TEXT) and run feast apply",
            view=view,
        )
    words = _WORD.findall(query_string)
    if not words:
        raise InvalidInput(f"view {view!r}: query_string {query_string!r} has no words to search", view=view)
    attributes = "|".join(f.attribute for f in texts)
    return f"@{attributes}:({' '.join(words)})"  # every word must match, as Feast's stores do


# ---------------------------------------------------------------- filters


def translate_filter(filters: Any, schema: IndexSchema, view: str) -> str:
    """A Feast ComparisonFilter / CompoundFilter as a query clause (dialect 2)."""
    kind = getattr(filters, "type", None)
    if kind in ("and", "or"):
        parts = [translate_filter(f, schema, view) for f in filters.filters]
        if not parts:
            return f"@{TS_ATTRIBUTE}:[-inf +inf]"
        return "(" + (" " if kind == "and" else " | ").join(f"({p})" for p in parts) + ")"
    return _comparison(filters, schema, view)


_RANGES = {"gt": "[({v} +inf]", "gte": "[{v} +inf]", "lt": "[-inf ({v}]", "lte": "[-inf {v}]"}


def _refused(view: str, feature: str, value: Any, why: str) -> InvalidInput:
    return InvalidInput(f"view {view!r}, feature {feature!r}: {why}", view=view, feature=feature, value=value)


def _comparison(f: Any, schema: IndexSchema, view: str) -> str:
    field = schema.attribute_of(f.key, ("NUMERIC", "TAG"))
    if field is None:
        filterable = ", ".join(a.feature for a in schema.fields if a.kind in ("NUMERIC", "TAG"))
        raise _refused(
            view,
            f.key,
            f.value,
            f"cannot filter on {f.key!r}: only numeric, String and Bool features are ({filterable})",
        )
    op = f.type
    values = f.value if op in ("in", "nin") else [f.value]
    if op in ("in", "nin") and (not isinstance(f.value, (list, tuple, set)) or not f.value):
        raise _refused(view, f.key, f.value, f"{op} needs a non-empty list of values")
    if field.kind == "NUMERIC":
        numbers = [_number(v, f.key, view) for v in values]
        if op in _RANGES:
            return f"@{field.attribute}:" + _RANGES[op].format(v=numbers[0])
        clause = " | ".join(f"@{field.attribute}:[{n} {n}]" for n in numbers)
    else:
        if op in _RANGES:
            raise _refused(view, f.key, f.value, f"{op} compares numbers; it is a {field.value_type.name} feature")
        clause = f"@{field.attribute}:{{{' | '.join(_tag_text(v, field, view) for v in values)}}}"
    if op in ("ne", "nin"):
        return f"-({clause})"
    return f"({clause})"


def _number(value: Any, key: str, view: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refused(view, key, value, f"filter value {value!r} is not a number")
    return repr(value)


_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")


def _tag_text(value: Any, field: IndexedField, view: str) -> str:
    if field.value_type is ValueType.BOOL:
        if not isinstance(value, bool):
            raise _refused(view, field.feature, value, f"filter value {value!r} is not a bool")
        return "true" if value else "false"
    if not isinstance(value, str):
        raise _refused(view, field.feature, value, f"filter value {value!r} is not a string")
    return _TAG_SPECIAL.sub(r"\\\1", value)
