"""Every private Feast hook the store relies on, in one list, checked at start-up.

The store leans on Feast's internals on purpose: its serving fast path, the grouped read,
the provider's Arrow write paths. Those internals change between Feast minors, so each
fast path names the hooks it needs here, and `check()` looks each one up in the Feast that
is installed: is it there, and does it take the parameters the store passes (or, for a
method the store overrides or a function whose output it reproduces, exactly the
parameters it was written against)? A fast path with a missing or re-signed hook turns
itself off, with one WARNING naming the hook and the Feast version, and Feast's generic
path serves instead: the results are the same, only the speed differs.

`python -m feast_redis_hexpire.feast_hooks [--json]` prints which fast paths this Feast
gets (the compatibility lane, devsupport/feast_lanes.py, reports it per release).
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger("feast_redis_hexpire")

SERVING = "serving"
GROUPED_READ = "grouped_read"
VERSIONED_READS = "versioned_reads"
ARROW_PUSH = "arrow_push"
ARROW_MATERIALIZE = "arrow_materialize"
METRICS = "metrics"
SHARED_STORE = "shared_store"
DOCUMENT_SEARCH = "document_search"

FAST_PATHS: dict[str, str] = {
    SERVING: "the serving fast path (get_online_features planned once per request shape, values decoded "
    "straight from the HMGET replies)",
    GROUPED_READ: "the grouped read (every view of an entity in one HMGET on Feast's generic path)",
    VERSIONED_READS: "versioned reads (`view@vN:feature`)",
    ARROW_PUSH: "HexpireProvider's Arrow push (store.push, write_to_online_store without ValueProtos)",
    ARROW_MATERIALIZE: "HexpireProvider's Arrow materialization (local compute engine)",
    METRICS: "the store's Prometheus metrics under `feast serve --metrics`",
    SHARED_STORE: "the store's own APIs (EventWriter) sharing the FeatureStore's online store object (write "
    "counters and skipped-row warning pacing shared with store.push; off, each API has its own)",
    DOCUMENT_SEARCH: "DocumentSearch (retrieval in rank order, the view resolved once per registry version; "
    "off, it refuses to start and FeatureStore.retrieve_online_documents_v2 still serves, in join-key order)",
}
"""Each fast path and what a user loses (speed only) when it is off."""

Kind = Literal["called", "mirrored", "overridden", "attributes"]


@dataclass(frozen=True)
class Hook:
    """One private Feast name the store depends on.

    kind:
      called      the store calls it: each of `params` must be there, in this order, and
                  any other parameter must have a default;
      mirrored    the store reproduces what it does: exactly `params`, or the copy may be
                  out of date;
      overridden  the store overrides it and Feast calls it: exactly `params`; otherwise
                  Feast's own method serves (see `feasts_own`);
      attributes  an object whose attributes (or dataclass fields) `params` the store reads.
    optional: absent in some supported releases, where Feast itself makes no such call
    either (the store then skips it too, without a warning).
    """

    path: str  # "module:qualified.name"
    kind: Kind
    params: tuple[str, ...]
    fast_path: str
    optional: bool = False

    @property
    def name(self) -> str:
        module, _, qualname = self.path.partition(":")
        return f"{module}.{qualname}"


_ONLINE_STORE = "feast.infra.online_stores.online_store:OnlineStore"
_PROVIDER = "feast.infra.passthrough_provider:PassthroughProvider"
_REQUEST = ("self", "config", "features", "entity_rows", "registry", "project", "full_feature_names")
_GROUPED = (
    "self",
    "config",
    "grouped_refs",
    "join_key_values",
    "entity_name_to_join_key_map",
    "online_features_response",
    "full_feature_names",
    "include_feature_view_version_metadata",
)

_POPULATE = (
    "requested_features",
    "read_rows",
    "indexes",
    "online_features_response",
    "full_feature_names",
    "table",
    "output_len",
    "include_feature_view_version_metadata",
)

HOOKS: tuple[Hook, ...] = (
    # serving.py / store.py: the serving fast path
    Hook(
        f"{_ONLINE_STORE}.get_online_features",
        "overridden",
        (*_REQUEST, "include_feature_view_version_metadata"),
        SERVING,
    ),
    Hook(
        f"{_ONLINE_STORE}.get_online_features_async",
        "overridden",
        (*_REQUEST, "include_feature_view_version_metadata"),
        SERVING,
    ),
    Hook(
        "feast.utils:_get_cached_request_context",
        "called",
        ("registry", "project", "features", "full_feature_names"),
        SERVING,
    ),
    Hook(f"{_ONLINE_STORE}._build_feature_types", "called", ("grouped_refs",), SERVING),
    Hook("feast.utils:_parse_feature_ref", "called", ("ref",), SERVING),
    Hook(
        "feast.online_response:OnlineResponse.__init__",
        "mirrored",
        ("self", "online_response_proto", "feature_types"),
        SERVING,
    ),
    # store.py / reads.py: the grouped read Feast's generic path calls
    Hook(f"{_ONLINE_STORE}._read_features_per_fv", "overridden", _GROUPED, GROUPED_READ),
    Hook(f"{_ONLINE_STORE}._read_features_per_fv_async", "overridden", _GROUPED, GROUPED_READ),
    Hook(
        "feast.utils:_populate_response_from_feature_data",
        "mirrored",
        _POPULATE,
        GROUPED_READ,
    ),
    Hook(f"{_ONLINE_STORE}._is_versioned_read_supported", "overridden", ("self",), VERSIONED_READS),
    # provider.py / arrow_writes.py: the Arrow write paths
    Hook(f"{_PROVIDER}.ingest_df", "overridden", ("self", "feature_view", "df", "field_mapping"), ARROW_PUSH),
    Hook(f"{_PROVIDER}.ingest_df_async", "overridden", ("self", "feature_view", "df", "field_mapping"), ARROW_PUSH),
    Hook(
        f"{_PROVIDER}._prep_rows_to_write_for_ingestion",
        "mirrored",
        ("feature_view", "df", "field_mapping"),
        ARROW_PUSH,
    ),
    Hook("feast.utils:_run_pyarrow_field_mapping", "called", ("table", "field_mapping"), ARROW_PUSH),
    Hook("feast.utils:_convert_arrow_to_proto", "mirrored", ("table", "feature_view", "join_keys"), ARROW_PUSH),
    Hook("feast.utils:_coerce_datetime", "called", ("ts",), ARROW_PUSH),
    Hook("feast.utils:_validate_vector_field_lengths", "called", ("table", "feature_view"), ARROW_PUSH, optional=True),
    Hook(
        f"{_PROVIDER}.materialize_single_feature_view",
        "overridden",
        (
            "self",
            "config",
            "feature_view",
            "start_date",
            "end_date",
            "registry",
            "project",
            "tqdm_builder",
            "disable_event_timestamp",
        ),
        ARROW_MATERIALIZE,
    ),
    Hook("feast.utils:_convert_arrow_to_proto", "mirrored", ("table", "feature_view", "join_keys"), ARROW_MATERIALIZE),
    Hook("feast.utils:_coerce_datetime", "called", ("ts",), ARROW_MATERIALIZE),
    Hook(
        "feast.infra.compute_engines.local.compute:LocalComputeEngine._get_backend",
        "called",
        ("self", "context"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.compute_engines.local.compute:LocalComputeEngine.get_execution_context",
        "called",
        ("self", "registry", "task"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.common.materialization_job:MaterializationTask.__init__",
        "called",
        ("self", "project", "feature_view", "start_time", "end_time", "tqdm_builder", "disable_event_timestamp"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.compute_engines.local.feature_builder:LocalFeatureBuilder.__init__",
        "called",
        ("self", "registry", "task", "backend"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.compute_engines.local.feature_builder:LocalFeatureBuilder.build_output_nodes",
        "overridden",
        ("self", "view", "input_node"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.compute_engines.local.nodes:LocalOutputNode.__init__",
        "called",
        ("self", "name", "feature_view", "inputs"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.compute_engines.local.nodes:LocalOutputNode.execute",
        "overridden",
        ("self", "context"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.compute_engines.local.nodes:LocalOutputNode.get_single_table",
        "called",
        ("self", "context"),
        ARROW_MATERIALIZE,
    ),
    Hook(
        "feast.infra.compute_engines.dag.context:ExecutionContext",
        "attributes",
        ("repo_config", "offline_store", "node_outputs"),
        ARROW_MATERIALIZE,
    ),
    # documents.py / direct_access.py: DocumentSearch
    Hook("feast.feature_store:FeatureStore._get_provider", "called", ("self",), DOCUMENT_SEARCH),
    Hook(
        "feast.infra.registry.registry:Registry._get_registry_proto",
        "called",
        ("self", "project", "allow_cache"),
        DOCUMENT_SEARCH,
    ),
    Hook(
        "feast.utils:_get_feature_views_to_use",
        "called",
        ("registry", "project", "features", "allow_cache", "hide_dummy_entity"),
        DOCUMENT_SEARCH,
    ),
    Hook("feast.utils:_parse_feature_ref", "called", ("ref",), DOCUMENT_SEARCH),
    Hook(
        "feast.utils:_populate_response_from_feature_data",
        "called",
        _POPULATE,
        DOCUMENT_SEARCH,
    ),
    Hook(
        "feast.utils:_populate_result_rows_from_columnar",
        "called",
        ("online_features_response", "data"),
        DOCUMENT_SEARCH,
    ),
    # metrics.py / store.py: Feast's metrics switches and the series the store feeds
    Hook("feast.metrics:_config", "attributes", ("enabled", "online_features"), METRICS),
    Hook("feast.metrics:online_features_status_total", "attributes", ("labels",), METRICS),
    Hook("feast.metrics:online_store_read_duration_seconds", "attributes", ("observe",), METRICS),
    # store.py's online_store_of: the store's own APIs reach the FeatureStore's online store
    Hook("feast.feature_store:FeatureStore._get_provider", "called", ("self",), SHARED_STORE),
)


# ---------------------------------------------------------------- looking hooks up


def feast_version() -> str:
    try:
        from importlib.metadata import version

        return version("feast")
    except Exception:  # noqa: BLE001 - an unusual install still gets checked
        return str(getattr(sys.modules.get("feast"), "__version__", "unknown"))


_MISSING = object()


def resolve(path: str) -> Any:
    """The object at "module:qualified.name", or `_MISSING`."""
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError:
        return _MISSING
    for part in qualname.split("."):
        target = getattr(target, part, _MISSING)
        if target is _MISSING:
            return _MISSING
    return target


def _spelled(params: Sequence[inspect.Parameter]) -> str:
    marks: dict[Any, str] = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return "(" + ", ".join(marks.get(p.kind, "") + p.name for p in params) + ")"


def problem_of(hook: Hook) -> str | None:
    """What is wrong with one hook in the installed Feast: None when it is as expected."""
    target = resolve(hook.path)
    if target is _MISSING:
        return "missing"
    if hook.kind == "attributes":
        fields = getattr(target, "__dataclass_fields__", {})
        absent = [name for name in hook.params if name not in fields and not hasattr(target, name)]
        return f"missing its attribute(s) {', '.join(absent)}" if absent else None
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return "no longer a function"
    names = [p.name for p in params]
    expected = "(" + ", ".join(hook.params) + ")"
    if hook.kind in ("mirrored", "overridden"):
        if tuple(names) != hook.params:
            return f"re-signed: {_spelled(params)}, expected {expected}"
        return None
    # called: the store's arguments still fit
    positions = [names.index(name) for name in hook.params if name in names]
    extra_required = [
        p.name
        for p in params
        if p.name not in hook.params
        and p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if len(positions) != len(hook.params) or positions != sorted(positions) or extra_required:
        return f"re-signed: {_spelled(params)}, expected {expected}"
    return None


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class HookProblem:
    """A hook that is missing or re-signed, and the fast paths it turns off."""

    name: str
    problem: str
    fast_paths: tuple[str, ...]

    def message(self, version: str) -> str:
        paths = "; ".join(FAST_PATHS[name] for name in self.fast_paths)
        return (
            f"Feast {version}: {self.name} is {self.problem}. Off: {paths}. "
            "Feast's generic path serves instead (same results, slower)."
        )


@dataclass(frozen=True)
class HookReport:
    """What `check()` found: which fast paths this Feast gets, and why not the others."""

    feast_version: str
    problems: tuple[HookProblem, ...]
    absent_optional: tuple[str, ...] = ()

    def active(self, fast_path: str) -> bool:
        return not any(fast_path in p.fast_paths for p in self.problems)

    def feasts_own(self, owner: str) -> list[str]:
        """Methods of Feast's class `owner` ("OnlineStore") that Feast re-signed and the
        store overrides: the store leaves them to Feast, which then calls its own method
        with whatever parameters it now has. (An override whose own hook is fine, on a
        fast path that is off, hands over to Feast's method itself.)"""
        broken = {p.name for p in self.problems}
        names = []
        for hook in HOOKS:
            cls, _, method = hook.path.partition(":")[2].rpartition(".")
            if (
                hook.kind == "overridden"
                and cls == owner
                and hook.name in broken
                and resolve(hook.path) is not _MISSING
            ):
                names.append(method)
        return names

    def summary(self) -> dict[str, Any]:
        return {
            "feast": self.feast_version,
            "fast_paths": {name: self.active(name) for name in FAST_PATHS},
            "problems": [
                {"hook": p.name, "problem": p.problem, "fast_paths": list(p.fast_paths)} for p in self.problems
            ],
            "absent_optional": list(self.absent_optional),
        }


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def check(warn: bool = True) -> HookReport:
    """Look every hook up in the installed Feast (about a millisecond: the store and the
    provider call it when Feast creates them). Each problem is logged once per process,
    as one WARNING per hook."""
    version = feast_version()
    found: dict[str, tuple[str, list[str]]] = {}  # path -> (problem, fast paths)
    absent: list[str] = []
    for hook in HOOKS:
        if hook.path in found:
            found[hook.path][1].append(hook.fast_path)
            continue
        problem = problem_of(hook)
        if problem is None:
            continue
        if hook.optional and problem == "missing":
            absent.append(hook.name)
            continue
        found[hook.path] = (problem, [hook.fast_path])
    problems = tuple(
        HookProblem(path.replace(":", "."), problem, tuple(dict.fromkeys(paths)))
        for path, (problem, paths) in found.items()
    )
    if warn:
        for found_problem in problems:
            _warn_once(found_problem, version)
    return HookReport(version, problems, tuple(absent))


def changed(name: str, problem: str, fast_path: str) -> None:
    """A hook found changed in use (what a signature cannot show, such as the shape of what
    it returns): one WARNING, as `check()` gives."""
    _warn_once(HookProblem(name, problem, (fast_path,)), feast_version())


def _warn_once(problem: HookProblem, version: str) -> None:
    key = (problem.name, problem.problem)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning("%s", problem.message(version))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    report = check(warn=False).summary()
    if "--json" in args:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    print(f"Feast {report['feast']}")
    for name, on in report["fast_paths"].items():
        print(f"  {'on ' if on else 'off'}  {name}: {FAST_PATHS[name]}")
    for problem in report["problems"]:
        print(f"  {problem['hook']} is {problem['problem']} (off: {', '.join(problem['fast_paths'])})")
    for name in report["absent_optional"]:
        print(f"  {name}: not in this Feast (nor used by it); skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
