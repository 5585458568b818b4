"""The compatibility lane: the store on every supported Feast release, not only .venv's.

Each older supported release has its own venv (devsupport/feast_lanes.py: `pip install
feast==<release>`, then this package without `--no-deps`, which must leave that Feast in
place; cached under ~/.cache/feast-redis-hexpire/feast-lanes). There, in its own process,
on servers of the Redis build this suite runs on, run the hook checks with their canary,
the store's semantics, the serving parity tests, the core end-to-end workflow and Feast's
quickstart (feast_lanes.LANE_TESTS). The releases' lanes are made and run side by side,
while the rest of the suite runs. The newest release is .venv's own: the whole suite.

Each release's fast paths (feast_hooks' report) are written to
test-artifacts/feast-releases.json and printed at the end of the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devsupport import feast_lanes
from devsupport.redis_binary import find_redis_server
from feast_redis_hexpire import feast_hooks
from tests.conftest import _live_log

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

REPORT = Path(__file__).resolve().parents[1] / "test-artifacts" / "feast-releases.json"


def record(version: str, entry: dict[str, Any]) -> None:
    """Add one release to the run's report (all lane tests run in one process: one file)."""
    REPORT.parent.mkdir(exist_ok=True)
    try:
        report = json.loads(REPORT.read_text())
    except (OSError, ValueError):
        report = {}
    report[version] = entry
    REPORT.write_text(json.dumps(report, indent=2, sort_keys=True))


@pytest.fixture(scope="module", autouse=True)
def fresh_report() -> None:
    REPORT.unlink(missing_ok=True)


def test_newest_release_is_this_venvs_and_gets_every_fast_path() -> None:
    report = feast_hooks.check(warn=False).summary()
    record(report["feast"], {**report, "lane": ".venv (the whole suite)", "passed": None})
    assert report["problems"] == []
    assert all(report["fast_paths"].values())
    assert report["feast"] not in feast_lanes.LANE_RELEASES


@dataclass
class LaneRun:
    version: str
    report: dict[str, Any]
    returncode: int
    output: str
    lane_seconds: float
    suite_seconds: float
    installed_feast: str


def _run_lane(version: str, redis_server_bin: str, workdir: Path, log: Callable[[str], None]) -> LaneRun:
    started = time.monotonic()
    lane = feast_lanes.ensure(version, log=log)
    made = time.monotonic() - started
    report = feast_lanes.fast_paths(lane)
    output = workdir / f"{version}.log"
    proc = feast_lanes.start_suite(lane, redis_server_bin, workdir / version, output)
    try:
        proc.wait(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return LaneRun(
        version,
        report,
        proc.returncode,
        output.read_text(errors="replace"),
        made,
        time.monotonic() - started - made,
        lane.installed_feast(),
    )


@pytest.fixture(scope="module")
def lane_runs(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[dict[str, Future[LaneRun]]]:
    """Every release's lane, made and run side by side in the background."""
    binary = str(find_redis_server())
    workdir = tmp_path_factory.mktemp("feast-lanes")
    log = _live_log(pytestconfig)
    with ThreadPoolExecutor(max_workers=len(feast_lanes.LANE_RELEASES)) as pool:
        yield {version: pool.submit(_run_lane, version, binary, workdir, log) for version in feast_lanes.LANE_RELEASES}


@pytest.mark.parametrize("version", feast_lanes.LANE_RELEASES)
def test_lane_suite_passes_on_feast_release(version: str, lane_runs: dict[str, Future[LaneRun]]) -> None:
    run = lane_runs[version].result(timeout=1700)
    tail = run.output.strip().splitlines()[-1:] or ["(no output)"]
    record(
        version,
        {
            **run.report,
            "lane": "venv " + str(feast_lanes.lane(version).path),
            "passed": run.returncode == 0,
            "result": tail[0],
            "lane_seconds": round(run.lane_seconds, 1),
            "suite_seconds": round(run.suite_seconds, 1),
        },
    )
    assert run.installed_feast == version  # installing the package kept the user's Feast
    assert run.report["feast"] == version
    assert run.returncode == 0, f"Feast {version}:\n{run.output[-8000:]}"
    assert " passed" in tail[0] and "skipped" not in tail[0] and "failed" not in tail[0], tail[0]
    assert run.report["problems"] == [], run.report["problems"]  # every supported release gets every fast path
