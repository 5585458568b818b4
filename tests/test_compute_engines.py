"""Feast's Ray and Spark compute engines (`batch_engine: ray.engine` / `spark.engine`)
write exactly what the local engine writes: every key, field, value and expiry.

Also pins the Feast 0.67 behaviours docs/compute-engines.md tells users about: a
StreamFeatureView does not materialize on either engine (Spark raises, Ray writes
nothing and raises nothing), Ray logs a failed write in its worker logs instead of
raising, and Spark ignores `spark_conf:` (settings come from top-level `spark.*` keys
of `batch_engine:` or PYSPARK_SUBMIT_ARGS).

Each engine starts once for the module: all of its `feast materialize` commands run in
one process (`tests.support.engine_runner`), the three engines' processes side by side.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.engine_repo import MERCHANTS, USERS, EngineRepo, StoredHash, project_contents
from tests.support.engine_runner import EngineRun, Runner

pytestmark = [pytest.mark.engines, pytest.mark.timeout(900)]

START = datetime(2020, 1, 1, tzinfo=timezone.utc)
BATCH_TTL_MS = 172800 * 1000  # the store's default batch_ttl_seconds
SPARK_APP_NAME = "hexpire-engine-tests"
SPARK_CONF_APP_NAME = "set-by-spark-conf"
SFV_FAILURE = "Error parsing message with type 'feast.core.FeatureView'"


def require_engine(engine: str) -> None:
    """A missing engine fails (never skips) and says how to install it."""
    install = "pip install -e '.[engines]' (`make test` does it through scripts/bootstrap.sh)"
    module = {"ray": "ray", "spark": "pyspark"}[engine]
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"the {engine} engine needs the `{module}` package: {install}")
    if engine == "spark" and not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.fail(
            "Spark needs a Java runtime and none is on PATH (nor JAVA_HOME): "
            "sudo apt-get install -y openjdk-17-jre-headless (scripts/bootstrap.sh installs it)"
        )


@dataclass
class Runs:
    local: EngineRun
    ray: EngineRun
    spark: EngineRun
    ray_temp_dir: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, redis_server) -> Iterator[Runs]:
    require_engine("ray")
    require_engine("spark")
    base = tmp_path_factory.mktemp("engines")
    client = redis.Redis.from_url(redis_server.url)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    end = now + timedelta(minutes=1)
    stamp = f"{int(time.time()) % 100000}_{os.getpid()}"
    # Ray's socket paths must stay short (AF_UNIX), so not under pytest's tmp_path.
    ray_temp_dir = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))
    ray_engine = {
        "type": "ray.engine",
        "ray_conf": {"num_cpus": 1, "_temp_dir": str(ray_temp_dir)},
    }
    spark_engine = {
        "type": "spark.engine",
        "spark_conf": {"spark.app.name": SPARK_CONF_APP_NAME},
        "spark.app.name": SPARK_APP_NAME,
    }
    engines: dict[str, dict[str, Any] | None] = {"local": None, "ray": ray_engine, "spark": spark_engine}

    def repos_for(engine: str) -> dict[str, EngineRepo]:
        def repo(purpose: str, **kwargs: Any) -> EngineRepo:
            return EngineRepo(
                base / engine / purpose,
                f"eng_{engine}_{purpose}_{stamp}",
                redis_server.connection_string,
                now,
                batch_engine=engines[engine],
                **kwargs,
            )

        repos = {"main": repo("main"), "sfv": repo("sfv", stream_feature_view=True)}
        if engine == "ray":
            repos["fail"] = repo("fail")
        return repos

    def jobs(repos: dict[str, EngineRepo]) -> list[dict[str, Any]]:
        """Build every repo, then materialize: all repos, the stream feature view, the
        views that hit the wrong-type key."""
        out = [{"name": f"build {purpose}", "build": repo.to_json()} for purpose, repo in repos.items()]
        out.append({"name": "main", "argv": repos["main"].materialize_argv(START, end)})
        out.append({"name": "sfv", "argv": repos["sfv"].materialize_argv(START, end, "activity_stream")})
        if "fail" in repos:
            out.append({"name": "fail", "argv": repos["fail"].materialize_argv(START, end, "profile", "activity")})
        return out

    env = {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_SUBMIT_ARGS": (
            "--master local[1] --conf spark.sql.shuffle.partitions=1 --conf spark.ui.enabled=false pyspark-shell"
        ),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    all_repos: dict[str, dict[str, EngineRepo]] = {}
    try:
        all_repos = {engine: repos_for(engine) for engine in engines}
        # A string where user u00's hash goes: every write to that entity fails with WRONGTYPE.
        fail = all_repos["ray"]["fail"]
        client.set(f"{fail.key_prefix}:{fail.project}:user_id=u00", "not a hash")
        runners = {engine: Runner(base / engine / "runner", jobs(all_repos[engine]), env) for engine in engines}
        try:
            finished = {engine: runner.wait(timeout=600) for engine, runner in runners.items()}
        finally:
            for runner in runners.values():
                runner.kill()
        done = {engine: EngineRun(all_repos[engine], *result) for engine, result in finished.items()}
        for engine, run in done.items():
            timings = ", ".join(
                f"{n} {(j['end_ms'] - j['start_ms']) / 1000:.1f} s" for n, j in run.report["jobs"].items()
            )
            print(f"{engine} engine runner: {run.seconds:.1f} s ({timings})")
            for name, job in run.report["jobs"].items():
                if name.startswith("build "):
                    assert job["error"] is None, f"{engine}: {name}: {job['error']}"
        yield Runs(done["local"], done["ray"], done["spark"], ray_temp_dir)
    finally:
        for repos in all_repos.values():
            for repo in repos.values():
                keys = list(client.scan_iter(match=f"{repo.key_prefix}:{repo.project}:*", count=1000))
                if keys:
                    client.delete(*keys)
        client.close()
        shutil.rmtree(ray_temp_dir, ignore_errors=True)


def contents(redis_server, repo: EngineRepo) -> dict[bytes, StoredHash]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        return project_contents(client, repo.key_prefix, repo.project)
    finally:
        client.close()


def assert_same_contents(redis_server, reference: EngineRun, other: EngineRun) -> None:
    """Same keys, fields, values and field expiries; the key expiry of both is the batch
    TTL counted from a moment within its own `feast materialize`."""
    for run in (reference, other):
        assert run.job("main")["error"] is None, run.job("main")["error"]
    expected = contents(redis_server, reference.repos["main"])
    actual = contents(redis_server, other.repos["main"])
    assert sorted(actual) == sorted(expected)
    for key, want in expected.items():
        got = actual[key]
        assert got.fields == want.fields, key
        assert got.field_expiry_ms == want.field_expiry_ms, key
        assert (got.key_expiry_ms == -1) == (want.key_expiry_ms == -1), key
        for run, stored in ((reference, want), (other, got)):
            if stored.key_expiry_ms != -1:
                window = run.job("main")
                assert window["start_ms"] + BATCH_TTL_MS <= stored.key_expiry_ms <= window["end_ms"] + BATCH_TTL_MS, key


def test_the_local_reference_holds_every_entity(runs: Runs, redis_server) -> None:
    """What the engines are compared with: every user and (user, merchant) pair, the
    newest row per entity, an event-time tie broken by the later `created`."""
    assert runs.local.job("main")["error"] is None, runs.local.job("main")["error"]
    stored = contents(redis_server, runs.local.repos["main"])
    users = {f"user_id={u}".encode() for u in USERS}
    pairs = {f"merchant_id={m}:user_id={u}".encode() for i, u in enumerate(USERS) for m in MERCHANTS[: 1 + i % 3]}
    assert set(stored) == users | pairs | {b"_views"}
    assert stored[b"user_id=u08"].fields[b"profile:country"] == b"TIE-LATER"
    assert b"profile:country" not in stored[b"user_id=u03"].fields  # a null deletes the field
    assert all(stored[u].field_expiry_ms[b"activity:clicks"] > 0 for u in users)  # push view: per-field expiry


def test_ray_engine_writes_what_the_local_engine_writes(runs: Runs, redis_server) -> None:
    assert_same_contents(redis_server, runs.local, runs.ray)


def test_spark_engine_writes_what_the_local_engine_writes(runs: Runs, redis_server) -> None:
    assert_same_contents(redis_server, runs.local, runs.spark)


def stream_view_fields(redis_server, repo: EngineRepo) -> list[bytes]:
    stored = contents(redis_server, repo)
    return [field for key, h in stored.items() if key != b"_views" for field in h.fields if b"activity_stream" in field]


def ray_worker_logs(runs: Runs) -> str:
    return "\n".join(
        path.read_text(errors="replace") for path in sorted(runs.ray_temp_dir.glob("session_*/logs/worker-*.err"))
    )


def test_stream_feature_view_materializes_on_the_local_engine(runs: Runs, redis_server) -> None:
    assert runs.local.job("sfv")["error"] is None, runs.local.job("sfv")["error"]
    assert len(stream_view_fields(redis_server, runs.local.repos["sfv"])) == 3 * len(USERS)


def test_stream_feature_view_fails_on_spark(runs: Runs, redis_server) -> None:
    """Feast 0.67 ships a StreamFeatureView to Spark's workers as a FeatureView proto,
    which they cannot parse."""
    error = runs.spark.job("sfv")["error"]
    assert error is not None and SFV_FAILURE in error["message"], error
    assert stream_view_fields(redis_server, runs.spark.repos["sfv"]) == []


def test_stream_feature_view_writes_nothing_on_ray_and_raises_nothing(runs: Runs, redis_server) -> None:
    """The same parse failure on Ray is caught in the worker: `feast materialize`
    succeeds, writes nothing, and only Ray's worker log says why."""
    assert runs.ray.job("sfv")["error"] is None
    assert stream_view_fields(redis_server, runs.ray.repos["sfv"]) == []
    assert f"Batch processing failed in write_batch_with_serialized_artifacts: {SFV_FAILURE}" in ray_worker_logs(runs)


def test_ray_engine_logs_a_failed_write_instead_of_raising(runs: Runs, redis_server) -> None:
    """The store raises (WRONGTYPE on u00's key); Ray's write node catches it: the command
    succeeds, its own output says nothing, Ray's worker log names the view and the key."""
    repo = runs.ray.repos["fail"]
    assert runs.ray.job("fail")["error"] is None
    assert "WRONGTYPE" not in runs.ray.log
    key = f"{repo.key_prefix}:{repo.project}:user_id=u00"
    logs = ray_worker_logs(runs)
    for view in ("profile", "activity"):
        assert f"Failed to write to online store for {view}: write of view '{view}' to {key}" in logs
    assert "WRONGTYPE" in logs


def test_spark_takes_settings_from_top_level_keys_and_pyspark_submit_args_not_spark_conf(runs: Runs) -> None:
    """Feast 0.67 hands the whole `batch_engine:` block to SparkConf: top-level `spark.*`
    keys reach the session, the `spark_conf` mapping is one unknown key and does not.
    PYSPARK_SUBMIT_ARGS reaches it too."""
    settings = runs.spark.report["spark"]
    assert settings is not None, "no Spark session was active after the Spark jobs"
    assert settings["spark.app.name"] == SPARK_APP_NAME != SPARK_CONF_APP_NAME
    assert "Ignoring non-Spark config property: spark_conf" in runs.spark.log
    assert settings["spark.master"] == "local[1]"
    assert settings["spark.sql.shuffle.partitions"] == "1"
