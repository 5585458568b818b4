"""Feast's own quickstart (`feast init`, then its `test_workflow.py`), unchanged except
for the `online_store:` block, serves on this store exactly what it serves on Feast's
reference sqlite store.

The workflow applies, fetches historical features, materializes incrementally, reads
online features three ways (feature list with on-demand views, a feature service, a
feature service over a push-fed view), pushes one row with
PushMode.ONLINE_AND_OFFLINE, reads again, and tears down. It pushes into the repo's
parquet file, so each store runs in its own copy of one generated repo (identical data).
Every online-features section it prints must hold equal values on both stores.

It runs in the time zone furthest east of UTC (UTC+14). The quickstart stamps its data,
its materialization end and its pushed row with naive `datetime.now()` times, which Feast
reads as UTC: there they lie 14 hours in the future. sqlite stores them; so must this
store with its default `max_future_seconds` (a day), which still refuses rows dated
years ahead.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.e2e import installed_script, subprocess_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SECTION = re.compile(r"^--- (.*?)\s*---$")
ONLINE_BLOCK = re.compile(r"^online_store:\n(?:[ \t]+.*\n)+", re.MULTILINE)


TIME_ZONE = "Pacific/Kiritimati"  # UTC+14


def workflow_env() -> dict[str, str]:
    """The real `feast` CLI first on PATH (the workflow shells out to `feast apply` and
    `feast teardown`), this checkout importable, the time zone furthest east of UTC."""
    bin_dir = str(Path(installed_script("feast")).parent)
    return subprocess_env({"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "TZ": TIME_ZONE})


def feast_init(parent: Path, name: str) -> Path:
    proc = subprocess.run(
        [installed_script("feast"), "init", name],
        cwd=parent,
        env=workflow_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"feast init failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return parent / name


def use_this_store(feature_repo: Path, connection_string: str, key_prefix: str) -> None:
    """Replace the `online_store:` block of the generated yaml, and nothing else."""
    import yaml

    path = feature_repo / "feature_store.yaml"
    text = path.read_text()
    block = (
        "online_store:\n"
        "    type: feast_redis_hexpire.RedisHexpireOnlineStore\n"
        f'    connection_string: "{connection_string}"\n'
        f"    key_prefix: {key_prefix}\n"
    )
    new_text, count = ONLINE_BLOCK.subn(block, text)
    assert count == 1, f"expected one online_store block in:\n{text}"
    path.write_text(new_text)
    before, after = yaml.safe_load(text), yaml.safe_load(new_text)
    assert before["online_store"]["type"] == "sqlite"
    assert {k: v for k, v in before.items() if k != "online_store"} == {
        k: v for k, v in after.items() if k != "online_store"
    }


def sections(stdout: str) -> list[tuple[str, list[str]]]:
    """The workflow's printed sections: ("title", [lines]) in order."""
    out: list[tuple[str, list[str]]] = []
    for line in stdout.splitlines():
        match = SECTION.match(line.strip())
        if match:
            out.append((match.group(1), []))
        elif out and line.strip():
            out[-1][1].append(line)
    return out


def online_values(lines: list[str]) -> dict[str, Any]:
    """`name  :  [values]` lines (the workflow prints `to_dict()` sorted by name) as Python
    values, so dicts compare regardless of key order."""
    values: dict[str, Any] = {}
    for line in lines:
        name, sep, text = line.partition("  :  ")
        assert sep, f"unexpected line in an online-features section: {line!r}"
        values[name.strip()] = ast.literal_eval(text.strip())
    return values


def run_workflows(repos: dict[str, Path]) -> dict[str, subprocess.CompletedProcess]:
    """Both stores' workflows side by side (each ~20 s, mostly imports)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "test_workflow.py"],
            cwd=repo,
            env=workflow_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, repo in repos.items()
    }
    done = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=600)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return done


def test_quickstart_workflow_serves_what_sqlite_serves(tmp_path: Path, redis_server) -> None:
    name = f"qs_{uuid.uuid4().hex[:8]}"
    generated = feast_init(tmp_path, name)
    repos = {}
    for store in ("sqlite", "hexpire"):
        shutil.copytree(generated, tmp_path / store / name)
        repos[store] = tmp_path / store / name / "feature_repo"
    key_prefix = f"qs{uuid.uuid4().hex[:8]}"
    use_this_store(repos["hexpire"], redis_server.connection_string, key_prefix)

    runs = run_workflows(repos)

    for store, run in runs.items():
        assert run.returncode == 0, f"{store}: test_workflow.py exited {run.returncode}\n{run.stderr[-4000:]}"
        # The workflow ignores the exit status of `feast apply` / `feast teardown`.
        assert "Traceback" not in run.stderr + run.stdout, f"{store}:\n{run.stderr[-4000:]}"
    reference, ours = sections(runs["sqlite"].stdout), sections(runs["hexpire"].stdout)
    assert [title for title, _ in ours] == [title for title, _ in reference]

    online = [i for i, (title, _) in enumerate(reference) if title.startswith("Online features")]
    assert len(online) == 4, [title for title, _ in reference]
    results = []
    for i in online:
        title, expected_lines = reference[i]
        expected = online_values(expected_lines)
        assert expected and all(v is not None for values in expected.values() for v in values), (title, expected)
        assert online_values(ours[i][1]) == expected, title
        results.append(expected)
    # The last read follows the push: it must have changed what the push-fed service serves.
    assert results[-1] != results[-2]

    # `feast teardown` at the end of the workflow removed every key the store wrote.
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert list(client.scan_iter(match=f"{key_prefix}:*")) == []
    finally:
        client.close()
