"""The compatibility lane: one virtualenv per older supported Feast release.

Each lane is a venv under `~/.cache/feast-redis-hexpire/feast-lanes/<version>` made the way a
user on that Feast installs this package: `pip install feast==<version>` first, then
`pip install <this checkout>` without `--no-deps`, which must leave that Feast in place
(checked after the install). The tests run there with this checkout first on PYTHONPATH, so
a cached lane serves every later change of the code; it is rebuilt only when the project's
dependencies, the lane's test tools or the Python version change. The newest release is the
project's own .venv, not a lane.

python -m devsupport feast-lanes            make (or check) every lane; fast when cached
python -m devsupport feast-lanes --run      ... and run the lane suite on each (tests/test_feast_releases.py)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

LANE_RELEASES: tuple[str, ...] = ("0.64.0", "0.65.0", "0.66.0")
"""The supported Feast releases older than the one .venv has (pyproject.toml: feast>=0.64)."""

LANE_TEST_TOOLS = ("pytest", "pytest-timeout", "hypothesis")
"""What the lane suite needs beyond the package's own dependencies (versions from the dev extra)."""

LANE_TESTS: tuple[str, ...] = (
    "tests/test_feast_hooks.py",  # every hook there as expected, and the forward canary
    "tests/test_store.py",  # the store's semantics: TTL layers, newest-wins, expiry, bad input
    "tests/test_serving.py",  # the serving fast path against Feast's generic path
    "tests/test_feast_quickstart.py",  # Feast's own `feast init` quickstart against its sqlite store
    # the core workflow through the feast CLI, FeatureStore and `feast serve`
    "tests/test_e2e_workflow.py::test_materialize_and_incremental_write_flat_hashes",
    "tests/test_e2e_workflow.py::test_push_python_api_and_feast_serve",
    "tests/test_e2e_workflow.py::test_mixed_staleness_stream_expires_before_batch",
    "tests/test_e2e_workflow.py::test_newest_event_wins_across_push_and_materialize",
    "tests/test_e2e_workflow.py::test_async_reads_match_sync",
)
"""The smaller suite each older release runs, on Redis (Valkey, the rest of the end-to-end
workflow and Feast's write paths against sqlite run on the newest release; the latter's
repo uses views newer than the older releases)."""

Log = Callable[[str], None]


class LaneError(RuntimeError):
    """A lane could not be made: pip failed, or moved the lane's Feast."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "feast-redis-hexpire" / "feast-lanes"


def _project() -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pip's own copy
        from pip._vendor import tomli as tomllib
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _requirements() -> list[str]:
    """The lane's test tools as the dev extra pins them."""
    project = _project()
    dev = project["optional-dependencies"]["dev"]
    return [spec for spec in dev if spec.split(">")[0].split("=")[0].split("[")[0].strip() in LANE_TEST_TOOLS]


def _lane_key(version: str) -> str:
    """What a lane's contents depend on; a change rebuilds it."""
    project = _project()
    text = json.dumps(
        [version, sys.version_info[:2], project["dependencies"], _requirements()],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Lane:
    version: str
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.path / "lane.json"

    def ready(self) -> bool:
        try:
            return json.loads(self.stamp.read_text()).get("key") == _lane_key(self.version) and self.python.exists()
        except (OSError, ValueError):
            return False

    def installed_feast(self) -> str:
        proc = subprocess.run(
            [str(self.python), "-c", "import importlib.metadata as m; print(m.version('feast'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc.stdout.strip()


def lane(version: str) -> Lane:
    return Lane(version, cache_root() / version)


def _pip(python: Path, args: Sequence[str], log: Log) -> None:
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if proc.returncode != 0:
        raise LaneError(f"`pip install {' '.join(args)}` exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    log(f"[feast-lanes]   pip install {' '.join(args)}: {time.monotonic() - started:.0f}s")


def ensure(version: str, log: Log = print) -> Lane:
    """The lane of one Feast release, made if missing or out of date. Safe to call from
    several processes at once (a lock per lane); a no-op when the lane is current."""
    target = lane(version)
    if target.ready():
        return target
    target.path.parent.mkdir(parents=True, exist_ok=True)
    with open(target.path.parent / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.ready():
            return target
        started = time.monotonic()
        log(f"[feast-lanes] making the Feast {version} lane in {target.path}")
        shutil.rmtree(target.path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(target.path)], check=True, timeout=300)
        # As a user on this Feast would: Feast first, then the package, which must keep it.
        _pip(target.python, [f"feast=={version}", *_requirements()], log)
        with open(target.path.parent / ".build.lock", "w") as build_lock:  # pip builds in the source tree
            fcntl.flock(build_lock, fcntl.LOCK_EX)
            _pip(target.python, [str(ROOT)], log)
        found = target.installed_feast()
        if found != version:
            raise LaneError(f"installing this package next to Feast {version} changed it to Feast {found}")
        target.stamp.write_text(
            json.dumps({"key": _lane_key(version), "feast": found, "seconds": round(time.monotonic() - started)})
        )
        log(f"[feast-lanes] Feast {version} lane ready ({time.monotonic() - started:.0f}s)")
    return target


def lane_env(redis_server_bin: str | None = None, version: str = "") -> dict[str, str]:
    """A lane's environment: this checkout first on PYTHONPATH; its tests start their own
    servers from the given redis-server (the build the main suite runs on)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "PROMETHEUS_MULTIPROC", "VIRTUAL_ENV")) and name != "REDIS_URL"
    }
    env["PYTHONPATH"] = str(ROOT)
    env["FEAST_USAGE"] = "False"
    env["FEAST_LANE"] = version
    if redis_server_bin:
        env["REDIS_SERVER_BIN"] = redis_server_bin
    return env


def fast_paths(target: Lane) -> dict[str, object]:
    """feast_hooks' report in the lane: which fast paths this Feast release gets."""
    proc = subprocess.run(
        [str(target.python), "-m", "feast_redis_hexpire.feast_hooks", "--json"],
        env=lane_env(version=target.version),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise LaneError(f"feast_hooks failed on Feast {target.version}:\n{proc.stderr[-4000:]}")
    report: dict[str, object] = json.loads(proc.stdout)
    return report


def start_suite(target: Lane, redis_server_bin: str, basetemp: Path, output: Path) -> subprocess.Popen[bytes]:
    """The lane suite on one release, in its own process (its output goes to `output`)."""
    command = [
        str(target.python),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "not valkey",
        f"--basetemp={basetemp}",
        *LANE_TESTS,
    ]
    with open(output, "wb") as sink:
        return subprocess.Popen(
            command, env=lane_env(redis_server_bin, target.version), stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT
        )


def main(argv: Sequence[str]) -> int:
    """Make every lane; with --run, run each lane's suite too (one after the other)."""
    from devsupport.redis_binary import find_redis_server

    run = "--run" in argv
    failed = 0
    for version in LANE_RELEASES:
        started = time.monotonic()
        target = ensure(version)
        print(f"Feast {version}: lane ready in {time.monotonic() - started:.1f}s ({target.path})", flush=True)
        if run:
            output = cache_root() / f"{version}.log"
            proc = start_suite(target, str(find_redis_server()), cache_root() / f"tmp-{version}", output)
            proc.wait()
            tail = output.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            print(f"Feast {version}: {tail[0]} (output: {output})", flush=True)
            failed += proc.returncode != 0
    return 1 if failed else 0
