"""Working copies of the sample `feature_repo/`: the one way tests and the demo get a
private Feast repo wired to their own Redis.

A copy has the repo's Python files and a feature_store.yaml rewritten from the shipped
one (own project, own registry under the copy's `data/`, the given connection string and
online_store overrides), so a change to the shipped yaml is exercised by every copy.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_REPO = ROOT / "feature_repo"


def working_copy(
    dest: Path,
    connection_string: str,
    *,
    project: str | None = None,
    source: Path = SAMPLE_REPO,
    exclude: tuple[str, ...] = (),
    **online: Any,
) -> dict[str, Any]:
    """Copy `source` into `dest` and rewrite its yaml; returns the yaml as written.
    `exclude`: Python files of the repo to leave out (e.g. ``user_embedding.py``)."""
    source = Path(source)
    if not (source / "feature_store.yaml").is_file():
        raise FileNotFoundError(f"{source} has no feature_store.yaml; point at a Feast repo")
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.py"):
        if path.name not in exclude:
            shutil.copy(path, dest / path.name)
    if (source / ".feastignore").is_file():
        shutil.copy(source / ".feastignore", dest / ".feastignore")
    # Read the shipped yaml without env expansion: only what the copy needs changes.
    config = yaml.safe_load((source / "feature_store.yaml").read_text())
    if project:
        config["project"] = project
    config["registry"] = "data/registry.db"
    store = config.setdefault("online_store", {})
    store["connection_string"] = connection_string
    store.update(online)
    write_yaml(dest, config)
    return config


def write_yaml(repo: Path, config: dict[str, Any]) -> None:
    header = "# A working copy of feature_repo/ (devsupport.sample_repo); rewritten on every copy.\n"
    (repo / "feature_store.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))


def load_module(path: Path, name: str | None = None) -> ModuleType:
    """Import one file of a repo copy under a private name (copies must not share modules)."""
    module_name = name or f"_sample_repo_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
