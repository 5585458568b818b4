"""Helpers for the end-to-end tests: private copies of feature_repo/, the real `feast`
CLI as a subprocess, a `feast serve` process, and small Redis/JSON utilities.

Every test repo is a copy of ``feature_repo/`` (definitions + generator) with its own
feature_store.yaml: own project, the test server's connection string, chosen TTLs,
registry under the copy's ``data/``. Nothing here mocks Feast or Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from devsupport.net import free_port
from devsupport.sample_repo import load_module, working_copy
from feast_redis_hexpire.maintenance import record_key

ROOT = Path(__file__).resolve().parents[2]

BATCH_VIEWS = ("user_profile", "user_tx_stats")
STREAM_VIEW = "user_activity"
FEATURES: dict[str, list[str]] = {
    "user_profile": ["country_iso", "risk_segment", "account_age_days"],
    "user_tx_stats": ["tx_count_7d", "avg_amount_30d", "chargeback_count_180d"],
    "user_activity": [
        "last_login_ts",
        "last_device_id",
        "tx_count_5m",
        "failed_logins_15m",
        "session_country",
    ],
}

# The stream view's fields as stored: its features plus its event-time field.
STREAM_FIELDS: list[str] = FEATURES[STREAM_VIEW] + [f"_ts:{STREAM_VIEW}"]
ALL_FEATURE_REFS = [f"{view}:{name}" for view, names in FEATURES.items() for name in names]


# ------------------------------------------------------------------ repos


@dataclass
class E2ERepo:
    """A private copy of feature_repo/ wired to the test Redis."""

    path: Path
    project: str
    key_prefix: str
    batch_ttl_seconds: int
    stream_ttl_seconds: int
    days: int
    seed: int
    data: dict[str, Any] = field(default_factory=dict)  # generate_data.generate() result

    def regenerate(self, now: datetime | None = None) -> dict[str, Any]:
        """Rewrite the parquet files (same seed, so same values) relative to ``now``:
        keeps the freshest activity rows inside the stream TTL whatever ran before."""
        generate_data = load_module(self.path / "generate_data.py", f"generate_data_{self.project}")
        self.data = generate_data.generate(
            self.path / "data",
            count=len(self.data["user_ids"]),
            days=self.days,
            seed=self.seed,
            now=now,
        )
        return self.data

    def key(self, user_id: str) -> bytes:
        return f"{self.key_prefix}:{self.project}:user_id={user_id}".encode()

    def store(self):  # -> feast.FeatureStore; imported lazily (slow import)
        from feast import FeatureStore

        return FeatureStore(repo_path=str(self.path))

    def frame(self, view: str):
        """The generated parquet rows of one view's source (pandas DataFrame)."""
        import pandas as pd

        return pd.read_parquet(self.path / "data" / f"{view}.parquet")


def make_repo(
    dest: Path,
    project: str,
    connection_string: str,
    *,
    batch_ttl_seconds: int = 172800,
    stream_ttl_seconds: int = 300,
    key_prefix: str = "fs",
    count: int = 12,
    days: int = 3,
    seed: int = 1,
    now: datetime | None = None,
) -> E2ERepo:
    """Copy feature_repo/ into ``dest``, rewrite its yaml and generate its data.

    The copy leaves out ``user_embedding.py`` (the vector view): these tests check the three
    core views' hashes field by field; the embedding view is the demo's, tested there
    (tests/test_demo_similar.py) and by the retrieval tests."""
    working_copy(
        dest,
        connection_string,
        project=project,
        exclude=("user_embedding.py",),
        key_prefix=key_prefix,
        batch_ttl_seconds=batch_ttl_seconds,
        stream_ttl_seconds=stream_ttl_seconds,
    )
    generate_data = load_module(dest / "generate_data.py", f"generate_data_{project}")
    data = generate_data.generate(dest / "data", count=count, days=days, seed=seed, now=now)
    return E2ERepo(
        path=dest,
        project=project,
        key_prefix=key_prefix,
        batch_ttl_seconds=batch_ttl_seconds,
        stream_ttl_seconds=stream_ttl_seconds,
        days=days,
        seed=seed,
        data=data,
    )


def remove_view_from_definitions(repo: E2ERepo, view: str) -> None:
    """Drop a FeatureView (and its use in the FeatureService) from the repo copy."""
    path = repo.path / "features.py"
    text = path.read_text()
    start = text.index(f"{view} = FeatureView(")
    end = text.index("\n)\n", start) + 3
    text = text[:start] + text[end:]
    # The feature service references it as `<view>[[...]]`.
    lines = [line for line in text.splitlines() if not line.strip().startswith(f"{view}[[")]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------ CLI


def installed_script(name: str) -> str:
    """A console script (`feast`, `feast-redis-hexpire`) of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"the `{name}` command is not installed next to this Python (pip install -e .)")
    return found


def feast_executable() -> str:
    return installed_script("feast")


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Env for child processes: the project importable even when not pip-installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("FEAST_USAGE", "False")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Importing feast.metrics set these to this process's own directory of metric files: a
    # child Feast (feast serve --metrics) makes its own, or its scrapes would add ours in.
    for name in ("PROMETHEUS_MULTIPROCESS_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    if extra:
        env.update(extra)
    return env


def feast_cli(repo: E2ERepo, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess:
    """Run `feast -c <repo> <args...>`; on failure raise with its output attached."""
    cmd = [feast_executable(), "-c", str(repo.path), *args]
    proc = subprocess.run(
        cmd,
        cwd=repo.path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[1:])} exited {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def iso(ts: datetime) -> str:
    """CLI date argument: ISO-8601 UTC, seconds precision."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def ts_field_text(ts: Any) -> str:
    """What the store keeps in `_ts:<view>`: integer microseconds since the epoch."""
    import pandas as pd

    stamp = pd.Timestamp(ts).tz_convert("UTC")
    return str(stamp.value // 1000)


# ------------------------------------------------------------------ feast serve


def http_json(url: str, payload: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """POST (or GET without payload) JSON; raise with the body on HTTP errors."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url} -> HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None
    return json.loads(body) if body else None


def http_post(url: str, payload: dict[str, Any], timeout: float = 60) -> tuple[int, str]:
    """(status, body) of a JSON POST, error statuses included."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class FeastServe:
    """`feast -c <repo> serve` on a free port, started in its own process group."""

    def __init__(
        self, repo: E2ERepo, log_path: Path, feast_args: Sequence[str] = (), serve_args: Sequence[str] = ()
    ) -> None:
        self.repo = repo
        self.feast_args = list(feast_args)  # before the subcommand, e.g. ["--log-level", "DEBUG"]
        self.serve_args = list(serve_args)  # after it, e.g. ["--workers", "2"]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> FeastServe:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    feast_executable(),
                    *self.feast_args,
                    "-c",
                    str(self.repo.path),
                    "serve",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "--no-access-log",
                    *self.serve_args,
                ],
                cwd=self.repo.path,
                env=subprocess_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() reaches the gunicorn workers
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"feast serve exited {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                if r.status == 200:
                    return self
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"feast serve not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> FeastServe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, rows: dict[str, list[Any]], source: str = "user_activity_push") -> None:
        http_json(f"{self.url}/push", {"push_source_name": source, "df": rows, "to": "online"})

    def get_online_features(self, features: Sequence[str], user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{feature_name: {"values": [...], "statuses": [...]}} from /get-online-features."""
        reply = http_json(
            f"{self.url}/get-online-features",
            {"features": list(features), "entities": {"user_id": list(user_ids)}},
        )
        names = reply["metadata"]["feature_names"]
        return {name: result for name, result in zip(names, reply["results"])}


# ------------------------------------------------------------------ Redis


def hgetall_text(client, key: bytes) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(key).items()}


def field_ttls(client, key: bytes, fields: Sequence[str]) -> dict[str, int]:
    """HTTL per field: -2 no such field, -1 no expiry, else seconds left."""
    reply = client.execute_command("HTTL", key, "FIELDS", len(fields), *fields)
    return dict(zip(fields, (int(v) for v in reply)))


def field_pttls(client, key: bytes, fields: Sequence[str]) -> dict[str, int]:
    reply = client.execute_command("HPTTL", key, "FIELDS", len(fields), *fields)
    return dict(zip(fields, (int(v) for v in reply)))


def project_keys(client, key_prefix: str, project: str) -> list[bytes]:
    """The project's entity keys: every key under its prefix but `feast apply`'s own record
    of the views (`<prefix>:<project>:_views`, maintenance.py), which outlives the entities."""
    record = record_key(key_prefix, project, "none")
    return sorted(key for key in client.scan_iter(match=f"{key_prefix}:{project}:*", count=1000) if key != record)


def online_dict(store, features: Sequence[str], user_ids: Sequence[str]) -> dict[str, list[Any]]:
    return store.get_online_features(features=list(features), entity_rows=[{"user_id": u} for u in user_ids]).to_dict()


# ------------------------------------------------------------------ expectations


def redis_text(value: Any) -> str:
    """The readable text the store keeps for a Python/pandas value."""
    import numpy as np
    import pandas as pd

    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (pd.Timestamp, datetime)):
        return str(int(pd.Timestamp(value).timestamp()))  # UNIX_TIMESTAMP: epoch seconds
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # shortest round-trip text
    return str(value)


def latest_per_user(df, start: datetime | None = None, end: datetime | None = None):
    """What materialize writes: per user the newest row with start <= ts < end."""
    if start is not None:
        df = df[df["event_timestamp"] >= start]
    if end is not None:
        df = df[df["event_timestamp"] < end]
    df = df.sort_values(["event_timestamp", "created"])
    return {uid: rows.iloc[-1] for uid, rows in df.groupby("user_id")}


def expected_fields(view: str, row) -> dict[str, str]:
    """The hash fields one view's row becomes: features plus `_ts:<view>`."""
    out = {name: redis_text(row[name]) for name in FEATURES[view]}
    out[f"_ts:{view}"] = ts_field_text(row["event_timestamp"])
    return out


def online_statuses(response) -> dict[str, list[str]]:
    """{feature_name: [FieldStatus name per entity]} from an OnlineResponse."""
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    names = list(response.proto.metadata.feature_names.val)
    return {name: [FieldStatus.Name(s) for s in result.statuses] for name, result in zip(names, response.proto.results)}


def activity_frame(user_ids: Sequence[str], event_time: datetime, **overrides: Any):
    """A push payload for user_activity: one row per user, recognisable values."""
    import pandas as pd

    rows = []
    for i, uid in enumerate(user_ids):
        row = {
            "user_id": uid,
            "last_login_ts": (event_time.replace(microsecond=0)),
            "last_device_id": f"dev-push-{i}",
            "tx_count_5m": 10 + i,
            "failed_logins_15m": i,
            "session_country": "PT",
            "event_timestamp": event_time,
            "created": event_time,
        }
        row.update(overrides)
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("event_timestamp", "created", "last_login_ts"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def clear_project(client, repo: E2ERepo) -> None:
    """Delete one project's keys: isolation that is also safe on a shared REDIS_URL."""
    keys = project_keys(client, repo.key_prefix, repo.project)
    if keys:
        client.delete(*keys)
