"""`python -m demo` as a user runs it (what `make demo` runs): the operator CLI lines it
prints on start really reach its Redis and working repo when pasted into a fresh shell
(no virtualenv activated, another directory), the seed's option spelling is accepted, and
nothing it prints shows a password, whichever way the URL came in."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.commands import cli_invocation, operator_commands
from devsupport.net import free_port, wait_until
from devsupport.redis_server import LocalRedisServer
from tests.support.e2e import installed_script, subprocess_env

pytestmark = pytest.mark.e2e

SECRET = "s3cret-Pw-" + uuid.uuid4().hex[:8]
CLI = "feast-redis-hexpire"


class DemoProcess:
    """`python -m demo` in a subprocess, its output collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo", "--port", str(self.port), "--no-worker", *args],
            env=subprocess_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 120) -> None:
        wait_until(
            lambda: self.proc.poll() is not None or "Demo ready" in self.output,
            timeout=timeout,
            interval=0.2,
            what="the demo to start",
        )
        assert self.proc.poll() is None, self.output

    def wait_exit(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)  # the last lines are read
        return code

    def commands(self) -> list[str]:
        return [line.strip() for line in self.lines if line.startswith("  /") and f"/{CLI} " in line]

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/state", timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.wait_exit(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.wait_exit()


@pytest.fixture
def run_demo() -> Iterator:
    started: list[DemoProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> DemoProcess:
        demo = DemoProcess(*args, env=env)
        started.append(demo)
        return demo

    yield start
    for demo in started:
        demo.stop()


@pytest.fixture(scope="module")
def open_redis() -> Iterator[LocalRedisServer]:
    """A Redis of the test's own, without a password (REDIS_URL, if set, may have one)."""
    with LocalRedisServer(log=lambda m: None) as server:
        yield server


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[LocalRedisServer]:
    """A Redis that wants a password, as a REDIS_URL with credentials points at."""
    with LocalRedisServer(extra_args=["--requirepass", SECRET], log=lambda m: None) as server:
        yield server


def fresh_shell_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A new terminal's environment: no virtualenv activated, nothing of it on $PATH."""
    env = subprocess_env(extra)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = "/usr/bin:/bin"
    return env


def run_printed(lines: list[str], cwd: Path, env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Run printed lines exactly as a user pastes them into a fresh shell in another
    directory (so "$REDIS_URL" expands), side by side (each imports Feast: seconds)."""
    procs = []
    for line in lines:
        procs.append(
            subprocess.Popen(
                ["bash", "-c", line],
                env=fresh_shell_env(env),
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_printed_commands_reach_the_demos_redis_and_repo(run_demo, open_redis, tmp_path):
    project = f"t_{uuid.uuid4().hex[:8]}_cmd"
    workdir = tmp_path / "work"
    demo = run_demo(
        "--redis-url",
        open_redis.url,
        "--project",
        project,
        "--users",
        "12",
        "--streaming-ttl-seconds",  # the seed's spelling of --stream-ttl-seconds
        "45",
        "--workdir",
        str(workdir),
    )
    demo.wait_ready()
    assert demo.state()["ttl"]["stream_seconds"] == 45
    lines = demo.commands()
    target = f"--repo {workdir.resolve()} --redis-url {open_redis.url}"
    command = installed_script(CLI)  # the venv's own script, by its absolute path
    assert os.path.isabs(command)
    assert lines == [
        f"{command} inspect u0001 {target}",
        f"{command} stats {target}",
        f"{command} doctor {target}",
    ], demo.output
    # Pasted as printed, the bare command name would not be found there:
    bare = subprocess.run(["bash", "-c", f"{CLI} --help"], env=fresh_shell_env(), capture_output=True, text=True)
    assert bare.returncode == 127, bare

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    inspect, stats, doctor = run_printed(lines, elsewhere)
    assert inspect.returncode == 0, inspect.stderr
    assert f"fs:{project}:user_id=u0001" in inspect.stdout and "risk_segment" in inspect.stdout
    assert stats.returncode == 0, stats.stderr
    assert "12 entities" in stats.stdout
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "stream TTL 45s" in doctor.stdout


def test_a_password_in_redis_url_is_never_printed(run_demo, locked_redis, tmp_path):
    """REDIS_URL with a password: the demo works, prints `--redis-url "$REDIS_URL"` (exact in
    a shell with the same environment) and the password nowhere."""
    url = f"redis://:{SECRET}@127.0.0.1:{locked_redis.port}"
    demo = run_demo("--users", "5", "--project", f"t_{uuid.uuid4().hex[:8]}_pw", env={"REDIS_URL": url})
    demo.wait_ready()
    assert demo.state()["users_loaded"] == 5
    assert "***" in demo.state()["redis"]["where"] and SECRET not in json.dumps(demo.state())
    lines = demo.commands()
    assert len(lines) == 3 and all('--redis-url "$REDIS_URL"' in line for line in lines), demo.output
    (stats,) = run_printed(lines[1:2], tmp_path, env={"REDIS_URL": url})
    assert stats.returncode == 0, stats.stderr
    assert "5 entities" in stats.stdout
    demo.stop()
    assert "demo stopped" in demo.output
    assert SECRET not in demo.output


def test_a_password_given_on_the_command_line_is_redacted(run_demo, locked_redis):
    url = f"redis://:{SECRET}@127.0.0.1:{locked_redis.port}"
    demo = run_demo("--users", "3", "--redis-url", url, "--project", f"t_{uuid.uuid4().hex[:8]}_pw")
    demo.wait_ready()
    lines = demo.commands()
    assert len(lines) == 3 and all("--redis-url 'redis://:***@127.0.0.1:" in line for line in lines), demo.output
    assert "password is shown as ***" in demo.output
    demo.stop()
    assert SECRET not in demo.output


def test_a_wrong_password_fails_without_printing_it(run_demo, locked_redis):
    wrong = "wr0ng-" + uuid.uuid4().hex[:8]
    demo = run_demo("--users", "3", env={"REDIS_URL": f"redis://:{wrong}@127.0.0.1:{locked_redis.port}"})
    assert demo.wait_exit(120) == 2, demo.output
    assert "error" in demo.output and "demo stopped" not in demo.output
    assert wrong not in demo.output


@pytest.mark.parametrize("from_env", [False, True])
def test_operator_commands_quote_paths_and_redact(tmp_path, from_env):
    repo = tmp_path / "a repo; rm -rf x"
    lines = operator_commands(repo, f"redis://user:{SECRET}@h:1", "u10000", from_env=from_env)
    assert all(SECRET not in line for line in lines)
    assert shlex.split(lines[0])[:4] == [installed_script(CLI), "inspect", "u10000", "--repo"]
    assert shlex.split(lines[0])[4] == str(repo)
    plain = operator_commands(repo, "redis://h:1", "u0001")
    assert len(plain) == 3 and shlex.split(plain[1])[-2:] == ["--redis-url", "redis://h:1"]
    assert os.path.sep in shlex.split(plain[2])[3]


def test_cli_invocation_without_a_console_script_uses_the_interpreter(tmp_path):
    """A Python with no `feast-redis-hexpire` beside it (and none on $PATH): the line runs
    that interpreter with -m, by its absolute path, and works from a fresh shell."""
    lone = tmp_path / "bin with space" / "python3"
    lone.parent.mkdir()
    lone.symlink_to(sys.executable)
    saved = os.environ["PATH"]
    os.environ["PATH"] = "/usr/bin:/bin"
    try:
        line = cli_invocation(str(lone))
    finally:
        os.environ["PATH"] = saved
    assert shlex.split(line) == [str(lone), "-m", "feast_redis_hexpire.cli"]
    done = subprocess.run(
        ["bash", "-c", f"{line} --help"], env=fresh_shell_env(), cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and "inspect" in done.stdout, done
