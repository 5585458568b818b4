"""`feast-redis-hexpire`: look into what the store keeps in Redis, check a setup, run the demo.

    feast-redis-hexpire inspect u0001 [--repo feature_repo] [--redis-url redis://...]
    feast-redis-hexpire stats  [--repo feature_repo] [--sample 1000]
    feast-redis-hexpire doctor [--repo feature_repo]
    feast-redis-hexpire demo   [--port 8091] [--users 200] [--redis-url ...] [--no-reset]

The repo's feature_store.yaml gives the project, key prefix and connection string;
``--redis-url`` / ``--connection-string`` overrides the latter (a redis:// URL or
Feast's ``host:port[,password=...]``). The sample repo's yaml reads
``${REDIS_CONNECTION_STRING:-localhost:6379}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import List, Optional, Sequence

EXIT_OK = 0
EXIT_PROBLEM = 1  # doctor found something wrong
EXIT_ERROR = 2  # could not do what was asked (bad arguments, unreachable Redis, missing repo)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_repo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="feature_repo", help="Feast repo directory (default: %(default)s)")
    parser.add_argument(
        "--redis-url", "--connection-string", dest="connection", metavar="URL",
        help="Redis to use instead of the repo's connection_string (redis://host:port or host:port[,k=v])",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feast-redis-hexpire",
        description="Inspect and check the feast-redis-hexpire online store, or run its demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="one entity's hash: fields, values, per-field TTLs and key TTL")
    p.add_argument("entity", help="u0001 (single join key) or user_id=u0001 (a=1,b=2 for composite keys)")
    _add_repo_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("stats", help="entity count, TTL distribution and memory per entity (sampled)")
    _add_repo_options(p)
    p.add_argument("--sample", type=int, default=1000, help="keys to sample (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("doctor", help="check the server (version, HEXPIRE) and the repo's views")
    _add_repo_options(p)

    p = sub.add_parser("demo", help="run the demo web app (http://127.0.0.1:8091)")
    from .demo.server import add_demo_arguments

    add_demo_arguments(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"inspect": cmd_inspect, "stats": cmd_stats, "doctor": cmd_doctor, "demo": cmd_demo}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


# ------------------------------------------------------------------ shared


def _load(args: argparse.Namespace, definitions: bool = True):
    from .inspection import load_repo

    _err(f"loading feature repo {args.repo} ...")
    return load_repo(args.repo, args.connection, definitions=definitions)


def _client(repo):
    from .connection import build_sync_client

    return build_sync_client(repo.store_config)


def _redis_errors() -> tuple:
    import redis

    return (redis.RedisError, OSError)


def _where(store_config) -> str:
    """The connection string without its password."""
    from . import connection

    redact = getattr(connection, "redacted", None)
    return redact(store_config.connection_string) if redact else store_config.connection_string


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if "\n" in text and len(text) > 300 else text


# ------------------------------------------------------------------ inspect


def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspection import entity_key, format_hash_table, hash_tag_of, inspect_key

    try:
        repo = _load(args)
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not trace back
        _err(f"error: could not load the repo: {_describe_error(exc)}")
        return EXIT_ERROR
    try:
        key = entity_key(
            repo.store_config.key_prefix, repo.project, args.entity, repo.definitions.join_keys(),
            hash_tag_of(repo.store_config),
        )
    except ValueError as exc:
        _err(f"error: {exc}")
        return EXIT_ERROR
    client = _client(repo)
    try:
        entity = inspect_key(client, key, repo.layouts())
    except _redis_errors() as exc:
        _err(f"error: Redis at {_where(repo.store_config)}: {_describe_error(exc)}")
        return EXIT_ERROR
    finally:
        client.close()
    if args.json:
        print(json.dumps(entity.as_dict(), indent=2))
    else:
        print(format_hash_table(entity))
    return EXIT_OK if entity.exists else EXIT_PROBLEM


# ------------------------------------------------------------------ stats


class _ScanProgress:
    """`scanned N keys` on stderr: rewritten in place on a terminal, a line per 10k otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, scanned: int) -> None:
        rate = scanned / max(time.monotonic() - self.started, 1e-6)
        text = f"scanned {scanned} keys ({rate:,.0f}/s)"
        if self.tty:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
        elif scanned % 10000 == 0:
            _err(text)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


def cmd_stats(args: argparse.Namespace) -> int:
    from .inspection import format_stats, hash_tag_of, sample_project

    if args.sample < 1:
        _err("error: --sample must be >= 1")
        return EXIT_ERROR
    try:
        repo = _load(args)
    except Exception as exc:  # noqa: BLE001
        _err(f"error: could not load the repo: {_describe_error(exc)}")
        return EXIT_ERROR
    client = _client(repo)
    progress = _ScanProgress()
    _err(f"scanning the keys of project {repo.project} on {_where(repo.store_config)} ...")
    try:
        stats = sample_project(
            client, repo.store_config.key_prefix, repo.project, repo.layouts(),
            sample_size=args.sample, progress=progress, seed=args.seed, hash_tag=hash_tag_of(repo.store_config),
        )
    except _redis_errors() as exc:
        progress.done()
        _err(f"error: Redis at {_where(repo.store_config)}: {_describe_error(exc)}")
        return EXIT_ERROR
    finally:
        client.close()
    progress.done()
    _err(f"sampled {stats.sampled} of {stats.entities} keys in {time.monotonic() - progress.started:.2f}s")
    if args.json:
        print(json.dumps({"project": repo.project, **stats.as_dict()}, indent=2))
    else:
        print(f"project {repo.project} on {_where(repo.store_config)}")
        print(format_stats(stats))
    return EXIT_OK


# ------------------------------------------------------------------ doctor


def _server_versions(client) -> List[str]:
    info = client.info("server")
    if isinstance(info, dict) and "redis_version" not in info:  # cluster: one dict per node
        return sorted({str(v.get("redis_version", "?")) for v in info.values() if isinstance(v, dict)})
    return [str(info.get("redis_version", "?"))]


def _hexpire_probe(client) -> str:
    """HSET / HEXPIRE / HTTL on a scratch key, deleted afterwards; returns a summary."""
    key = f"feast-redis-hexpire:doctor:{uuid.uuid4().hex}"
    try:
        client.hset(key, mapping={"probe": "1", "keep": "1"})
        set_codes = client.hexpire(key, 60, "probe")
        ttls = client.httl(key, "probe", "keep")
    finally:
        client.delete(key)
    if list(set_codes) != [1]:
        raise RuntimeError(f"HEXPIRE answered {set_codes}, expected [1]")
    if not (0 < int(ttls[0]) <= 60) or int(ttls[1]) != -1:
        raise RuntimeError(f"HTTL answered {ttls}, expected [<=60, -1]")
    return f"HSET + HEXPIRE 60 + HTTL -> {int(ttls[0])}s on the field, -1 on its sibling; scratch key deleted"


def cmd_doctor(args: argparse.Namespace) -> int:
    from .connection import MIN_SERVER_VERSION
    from .errors import HexpireStoreError
    from .inspection import format_ttl
    from .views import check_views, view_layout

    problems = 0

    def report(label: str, ok: Optional[bool], text: str) -> None:
        nonlocal problems
        mark = {True: "ok  ", False: "FAIL", None: "    "}[ok]
        if ok is False:
            problems += 1
        print(f"[{mark}] {label:<10} {text}", flush=True)

    try:
        repo = _load(args)
    except Exception as exc:  # noqa: BLE001
        report("repo", False, f"{args.repo}: {_describe_error(exc)}")
        return EXIT_PROBLEM
    store_config = repo.store_config
    report("repo", True, f"{repo.path} (project {repo.project}, key prefix {store_config.key_prefix})")
    report(
        "config", None,
        f"batch_ttl_seconds={store_config.batch_ttl_seconds} stream_ttl_seconds={store_config.stream_ttl_seconds} "
        f"field_naming={store_config.field_naming.value} redis_type={store_config.redis_type.value}",
    )

    # --- server
    where = _where(store_config)
    try:
        client = _client(repo)
    except Exception as exc:  # noqa: BLE001 - bad connection strings land here
        report("connect", False, f"{where}: {_describe_error(exc)}")
        client = None
    if client is not None:
        try:
            started = time.perf_counter()
            client.ping()
            rtt = (time.perf_counter() - started) * 1000
            report("connect", True, f"{where} (PING {rtt:.1f} ms)")
            versions = _server_versions(client)
            old = [v for v in versions if tuple(int(p) for p in v.split(".")[:3] if p.isdigit()) < MIN_SERVER_VERSION]
            minimum = ".".join(map(str, MIN_SERVER_VERSION))
            report(
                "version", not old,
                f"Redis {', '.join(versions)}" + (f": needs >= {minimum} for HEXPIRE" if old else f" (>= {minimum})"),
            )
            try:
                report("HEXPIRE", True, _hexpire_probe(client))
            except Exception as exc:  # noqa: BLE001 - e.g. "unknown command 'HEXPIRE'"
                report("HEXPIRE", False, f"per-field expiry does not work here: {_describe_error(exc)}")
        except _redis_errors() as exc:
            report("connect", False, f"{where}: {_describe_error(exc)}")
        finally:
            client.close()

    # --- views
    views = repo.online_views()
    if not views:
        report("views", False, "the repo defines no online feature views")
    layouts = []
    for fv in sorted(views, key=lambda v: v.name):
        try:
            layout = view_layout(fv, store_config)
        except HexpireStoreError as exc:
            report("view", False, f"{fv.name}: {exc}")
            continue
        layouts.append(layout)
        ttl = (
            "no expiry" if not layout.ttl_seconds
            else f"{'key' if layout.kind.value == 'batch' else 'per-field'} TTL {layout.ttl_seconds}s ({format_ttl(layout.ttl_millis)})"
        )
        tags = ", ".join(f"{k}={v}" for k, v in sorted((fv.tags or {}).items()) if k.startswith("hexpire.")) or "no hexpire tags"
        report(
            "view", True,
            f"{layout.name:<16} {layout.kind.value:<6} {ttl:<34} {len(layout.features)} features, "
            f"join keys ({', '.join(layout.join_keys) or '-'}), {tags}",
        )
    if views and len(layouts) == len(views):
        try:
            check_views(views, store_config)
            report("fields", True, "no two views of one entity write the same hash field")
        except HexpireStoreError as exc:
            report("fields", False, str(exc))

    print()
    if problems:
        print(f"doctor: {problems} problem(s) found")
        return EXIT_PROBLEM
    print("doctor: everything looks fine")
    return EXIT_OK


# ------------------------------------------------------------------ demo


def cmd_demo(args: argparse.Namespace) -> int:
    print("feast-redis-hexpire demo: starting (importing Feast takes a few seconds) ...", flush=True)
    from .demo.server import run_demo

    return run_demo(args)


if __name__ == "__main__":
    raise SystemExit(main())
