"""Which module may import which, read from the source with `ast` (nothing is imported).

The operator CLI is a layer on top: library code (the package, the demo, the benchmarks,
devsupport) never imports a module of `feast_redis_hexpire/cli/`, and the CLI's commands
share `cli/helpers.py` instead of importing each other. The benchmarks import downward:
no circle among their modules (lazy imports included).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = "feast_redis_hexpire.cli"
LIBRARY_DIRS = ("feast_redis_hexpire", "demo", "benchmarks", "devsupport", "feature_repo")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module an import statement in ``path`` names, relative imports resolved,
    including imports inside functions (the lazy ones count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            yield target
            # `from . import x` / `from .pkg import module`: x may be a module itself
            yield from (f"{target}.{alias.name}" for alias in node.names)


def is_cli(module: str) -> bool:
    return module == CLI or module.startswith(CLI + ".")


def python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)


def test_the_walker_sees_relative_and_lazy_imports():
    """The checks below are only as good as the walker: it must resolve what the CLI itself
    imports, top-level and inside functions."""
    main = ROOT / "feast_redis_hexpire" / "cli" / "main.py"
    found = set(imported_modules(main))
    assert f"{CLI}.helpers" in found
    assert f"{CLI}.doctor" in found  # imported inside cmd_doctor
    assert "feast_redis_hexpire.inspection" in found


def test_nothing_outside_cli_imports_the_cli():
    offenders = {
        module_name(path): sorted(m for m in imported_modules(path) if is_cli(m))
        for path in python_files(*LIBRARY_DIRS)
        if not is_cli(module_name(path))
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_cli_commands_share_helpers_not_each_other():
    cli_dir = ROOT / "feast_redis_hexpire" / "cli"
    helpers = set(imported_modules(cli_dir / "helpers.py"))
    assert not any(is_cli(m) for m in helpers), "helpers.py is the bottom of the CLI"
    for command in ("doctor", "stats"):
        imported = {m for m in imported_modules(cli_dir / f"{command}.py") if is_cli(m)}
        assert f"{CLI}.main" not in imported, f"cli/{command}.py imports cli/main.py"


def _graph(directory: str) -> dict[str, set[str]]:
    files = python_files(directory)
    names = {module_name(p) for p in files}
    return {module_name(p): {m for m in imported_modules(p) if m in names} - {module_name(p)} for p in files}


def test_benchmarks_import_downward():
    graph = _graph("benchmarks")
    graph.pop("benchmarks", None)  # the package's __init__ is imported by every member
    for edges in graph.values():
        edges.discard("benchmarks")
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
