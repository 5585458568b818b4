"""A Feast repo as the operator CLI and the demo see it: feature_store.yaml (environment
expanded, as Feast does) and the Feast objects its Python files define, without `feast apply`."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .views import ViewLayout


@dataclass
class RepoDefinitions:
    """Feast objects defined in a repo's Python files (what `feast apply` would register)."""

    entities: list[Any] = field(default_factory=list)
    feature_views: list[Any] = field(default_factory=list)  # incl. stream feature views
    on_demand_feature_views: list[Any] = field(default_factory=list)
    feature_services: list[Any] = field(default_factory=list)
    data_sources: list[Any] = field(default_factory=list)

    def objects(self) -> list[Any]:
        return [
            *self.data_sources,
            *self.entities,
            *self.feature_views,
            *self.on_demand_feature_views,
            *self.feature_services,
        ]

    def join_keys(self) -> list[str]:
        return sorted({entity.join_key for entity in self.entities})


def load_definitions(repo_path: Path | str) -> RepoDefinitions:
    """Import every ``.py`` file of the repo (Feast's rules: recursive, honouring
    ``.feastignore``) under private module names, and collect its Feast objects.

    Unlike ``feast.repo_operations.parse_repo`` this needs no ``chdir`` and does not
    reuse modules cached from another repo with the same file names."""
    from feast import Entity, FeatureService
    from feast.base_feature_view import BaseFeatureView
    from feast.data_source import DataSource
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.repo_operations import get_repo_files

    root = Path(repo_path).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"feature repo {root} is not a directory")
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    defs = RepoDefinitions()
    seen: set[int] = set()

    def add(bucket: list[Any], obj: Any) -> None:
        if id(obj) not in seen:
            seen.add(id(obj))
            bucket.append(obj)

    sys.path.insert(0, str(root))
    try:
        for path in get_repo_files(root):
            rel = path.relative_to(root).with_suffix("")
            name = f"_fhx_repo_{tag}_" + "_".join(rel.parts)
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            for obj in vars(module).values():
                if isinstance(obj, DataSource):
                    add(defs.data_sources, obj)
                    batch = getattr(obj, "batch_source", None)
                    if isinstance(batch, DataSource):
                        add(defs.data_sources, batch)
                elif isinstance(obj, Entity):
                    add(defs.entities, obj)
                elif isinstance(obj, OnDemandFeatureView):
                    add(defs.on_demand_feature_views, obj)
                elif isinstance(obj, BaseFeatureView):
                    add(defs.feature_views, obj)
                elif isinstance(obj, FeatureService):
                    add(defs.feature_services, obj)
    finally:
        try:
            sys.path.remove(str(root))
        except ValueError:
            pass
    return defs


@dataclass
class RepoInfo:
    path: Path
    config: Any  # feast RepoConfig
    definitions: RepoDefinitions

    @property
    def store_config(self) -> Any:
        return self.config.online_store

    @property
    def project(self) -> str:
        return self.config.project

    def online_views(self) -> list[Any]:
        return [fv for fv in self.definitions.feature_views if getattr(fv, "online", True)]

    def layout(self, view: Any) -> ViewLayout:
        from .store import layout_of

        return layout_of(view, self.config)

    def layouts(self) -> list[ViewLayout]:
        return [self.layout(fv) for fv in self.online_views()]


def load_repo(repo_path: Path | str, connection_string: str | None = None, definitions: bool = True) -> RepoInfo:
    """feature_store.yaml (env vars expanded, as Feast does) plus the repo's definitions.

    ``connection_string`` (a ``host:port[,k=v]`` string or a redis:// URL) replaces the
    yaml's (which may use ``${VAR:-default}``, expanded by the store's config)."""
    from feast.repo_config import load_repo_config

    from .config import RedisHexpireOnlineStoreConfig
    from .errors import ConfigError

    root = Path(repo_path).resolve()
    yaml_path = root / "feature_store.yaml"
    if not yaml_path.is_file():
        raise FileNotFoundError(f"{yaml_path} not found (use --repo to point at a Feast repo)")
    config = load_repo_config(root, yaml_path)
    store_config = config.online_store
    if not isinstance(store_config, RedisHexpireOnlineStoreConfig):
        raise ConfigError(
            f"{yaml_path}: online_store type is {type(store_config).__name__}, not feast_redis_hexpire",
            setting="online_store.type",
            value=type(store_config).__name__,
        )
    if connection_string:
        store_config.connection_string = connection_string
    defs = load_definitions(root) if definitions else RepoDefinitions()
    if defs.feature_views:
        infer_entity_columns(defs, config)
    return RepoInfo(path=root, config=config, definitions=defs)


def infer_entity_columns(defs: RepoDefinitions, config: Any) -> bool:
    """Fill in each view's entity columns (hence ``join_keys``) as ``feast apply`` does.

    Views fresh from Python files have no join keys until Feast's inference runs; with
    entities that declare a value type this needs no data. If inference would have to
    read a data source that is not there, the views are left as they are (False)."""
    from feast.inference import update_feature_views_with_inferred_features_and_entities
    from feast.infra.provider import get_provider

    try:
        update_feature_views_with_inferred_features_and_entities(
            get_provider(config), defs.feature_views, defs.entities, config
        )
    except Exception:  # noqa: BLE001 - inference is a nicety for display and conflict checks
        return False
    return True
