"""Run several `feast` CLI commands in one Python process, so a compute engine (Ray,
Spark) starts once for all of them, and report each command's outcome as JSON.

    python -m tests.support.engine_runner JOBS.json REPORT.json

JOBS.json: `[{"name": ..., "argv": ["-c", "<repo>", "materialize", ...]}, ...]`. Each
command runs through Feast's own click entry point (what the `feast` script calls), in
order. A job `{"name": ..., "build": EngineRepo.to_json()}` builds and applies a repo
first, so the runner's one Feast import serves that too. REPORT.json: per job its
wall-clock window (epoch ms) and the exception it raised, if any; plus, when a Spark
session ran, the settings it ran with.

`Runner` starts this module as a child process for a test and collects the report.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.e2e import subprocess_env

SPARK_SETTINGS = ("spark.master", "spark.app.name", "spark.sql.shuffle.partitions")


def timed(action: Callable[[], object]) -> dict[str, Any]:
    """Run `action`; its wall-clock window (epoch ms) and the exception it raised, if any."""
    started = time.time()
    error = None
    try:
        action()
    except SystemExit as exc:  # click exits 0 on success paths that call ctx.exit()
        if exc.code not in (0, None):
            error = {"type": "SystemExit", "message": str(exc.code), "traceback": ""}
    except Exception as exc:  # noqa: BLE001 - reported: the test decides whether this job had to fail
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()[-6000:]}
    return {"start_ms": int(started * 1000), "end_ms": int(time.time() * 1000), "error": error}


def run_job(argv: list[str]) -> dict[str, Any]:
    from feast.cli.cli import cli

    return timed(lambda: cli.main(args=argv, prog_name="feast", standalone_mode=False))


def build_repo(spec: dict[str, Any]) -> dict[str, Any]:
    from tests.support.engine_repo import EngineRepo

    return timed(EngineRepo.from_json(spec).build)


def spark_settings() -> dict[str, str | None] | None:
    if "pyspark" not in sys.modules:
        return None
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        return None
    return {name: session.conf.get(name, None) for name in SPARK_SETTINGS}


def stop_engines() -> None:
    """Stop what the jobs started, so the process exits promptly and leaves nothing behind."""
    if "pyspark" in sys.modules:
        from pyspark.sql import SparkSession

        session = SparkSession.getActiveSession()
        if session is not None:
            session.stop()
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()


def main(jobs_path: str, report_path: str) -> int:
    jobs = json.loads(Path(jobs_path).read_text())
    report: dict[str, Any] = {"jobs": {}}
    try:
        for job in jobs:
            print(f"=== job {job['name']}", file=sys.stderr, flush=True)
            if "build" in job:
                report["jobs"][job["name"]] = build_repo(job["build"])
            else:
                report["jobs"][job["name"]] = run_job(job["argv"])
            print(f"=== end {job['name']}", file=sys.stderr, flush=True)
        report["spark"] = spark_settings()
    finally:
        stop_engines()
        Path(report_path).write_text(json.dumps(report, indent=1))
    return 0


# ------------------------------------------------------------------ the test side


@dataclass
class EngineRun:
    """One finished runner process: the repos it used, its report and its output."""

    repos: dict[str, Any]  # purpose -> tests.support.engine_repo.EngineRepo
    report: dict[str, Any]
    log: str
    seconds: float

    def job(self, name: str) -> dict[str, Any]:
        return self.report["jobs"][name]


class Runner:
    """`python -m tests.support.engine_runner` in its own process group."""

    def __init__(self, workdir: Path, jobs: list[dict[str, Any]], env: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.jobs_path = workdir / "jobs.json"
        self.report_path = workdir / "report.json"
        self.log_path = workdir / "runner.log"
        self.jobs_path.write_text(json.dumps(jobs))
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.engine_runner", str(self.jobs_path), str(self.report_path)],
                env=subprocess_env(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> tuple[dict[str, Any], str, float]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"engine runner still running after {timeout}s:\n{self.log()}") from None
        seconds = time.monotonic() - self.started
        if self.proc.returncode != 0 or not self.report_path.exists():
            raise AssertionError(f"engine runner exited {self.proc.returncode}:\n{self.log()}")
        return json.loads(self.report_path.read_text()), self.log_path.read_text(errors="replace"), seconds

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-6000:]
        return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
