"""What every benchmark script shares: the repo root, logging, the Redis server and client
for a run, the machine and code a result was measured on, and writing a results file.

Every script (run, serving, serve_load, server_cost, profiling, rss) imports from here and
from the modules below it (measure, paths, repo, report); none imports another script.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- redis


@contextlib.contextmanager
def redis_server(url: str | None) -> Iterator[Any]:
    from devsupport.redis_server import ExternalRedis, check_server_version, server_for_local_use

    if url:
        version = check_server_version(url)
        log(f"using --redis-url {url} (version {'.'.join(map(str, version))}); it is left running")
        yield ExternalRedis.from_url(url)
        return
    with server_for_local_use(log=lambda m: log(m)) as server:
        yield server


def redis_client(server: Any):
    import redis

    return redis.Redis.from_url(server.url)


def delete_prefix(client, pattern: str) -> int:
    """DEL (not UNLINK) every key matching `pattern`: memory is free when this returns."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def server_has_hsetex(client) -> bool:
    """As the store decides: HELLO's server and version (Valkey's INFO says 7.2.4)."""
    from feast_redis_hexpire.redis_version import hello_info

    return hello_info(client.execute_command("HELLO")).has_hsetex


# ---------------------------------------------------------------- machine info


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is reported as None
        return None


def machine_info(client) -> dict[str, Any]:
    from feast_redis_hexpire.redis_version import hello_info, version_text

    info = client.info("server")
    hello = hello_info(client.execute_command("HELLO"))
    git: dict[str, Any] = {}
    try:
        git["head"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        git["package_changes"] = subprocess.run(
            ["git", "status", "--porcelain", "--", "feast_redis_hexpire"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except Exception:  # noqa: BLE001 - no git: the run is still valid
        pass
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "server": hello.name,
        "server_version": version_text(hello.version),
        "redis_server_version": info.get("redis_version"),
        "redis_server_arch_bits": info.get("arch_bits"),
        "redis_allocator": client.info("memory").get("mem_allocator"),
        "feast": _version("feast"),
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "protobuf": _version("protobuf"),
        "numpy": _version("numpy"),
        "pandas": _version("pandas"),
        "pyarrow": _version("pyarrow"),
        "feast_redis_hexpire": _version("feast-redis-hexpire"),
        "git": git,
        "package_sha256": package_fingerprint(),
    }


def package_fingerprint() -> str:
    """Hash of the store's source files: the tree changes under us, so say which code was measured."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "feast_redis_hexpire").glob("*")):
        if path.suffix in (".py", ".lua"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- feast


def share_feature_resolution_cache(repos: dict[str, Any]) -> None:
    """Let every FeatureStore of this process use Feast's feature-resolution cache at once.

    feast.utils._get_cached_request_context keeps ONE process-wide cache and clears it
    whenever it sees a registry whose `cached_registry_proto_created` differs from the last
    one. A server process has one FeatureStore, so it always hits; here the stores take turns
    call by call, and every get_online_features would rebuild its FeatureViews from protos
    (~10 ms, typeguard-heavy) for every store. Giving the registries the same timestamp
    (cache_ttl_seconds is 0: it never expires) keeps each store's entries (keyed by project)
    alive, i.e. the one-store-per-process situation being measured."""
    stamps = [r.store.registry.cached_registry_proto_created for r in repos.values()]
    shared = max(s for s in stamps if s is not None)
    for r in repos.values():
        r.store.registry.cached_registry_proto_created = shared


# ---------------------------------------------------------------- results


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
