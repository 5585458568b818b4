"""The `feast-redis-hexpire` command: argument parsing and the subcommands.

    feast-redis-hexpire inspect u0001 [--repo feature_repo] [--redis-url redis://...]
    feast-redis-hexpire stats  [--repo feature_repo] [--sample 1000]
    feast-redis-hexpire doctor [--repo feature_repo] [--role reader|writer|operator]
    feast-redis-hexpire ingest --push-source P --stream S --group G [--repo feature_repo] [--consumer C]

The repo's feature_store.yaml gives the project, key prefix and connection string;
`--redis-url` / `--connection-string` overrides the latter (a redis:// URL or Feast's
`host:port[,password=...]`). Exit codes: 0 fine, 1 a problem found, 2 could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from .helpers import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_PROBLEM,
    client_of,
    describe_error,
    err,
    format_hash_table,
    load_or_report,
    redis_errors,
    where,
)


def _add_repo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default="feature_repo", help="Feast repo directory (default: %(default)s)")
    parser.add_argument(
        "--redis-url",
        "--connection-string",
        dest="connection",
        metavar="URL",
        help="Redis to use instead of the repo's connection_string (redis://host:port or host:port[,k=v])",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feast-redis-hexpire", description="Inspect and check the feast-redis-hexpire online store."
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

    p = sub.add_parser("doctor", help="check the server (version, per-field expiry, permissions) and the views")
    _add_repo_options(p)
    p.add_argument(
        "--role",
        choices=("reader", "writer", "operator"),
        default=None,
        help="fail unless the user may run what this kind of process sends (default: report each role)",
    )

    from .ingest import add_ingest_parser

    add_ingest_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"inspect": cmd_inspect, "stats": cmd_stats, "doctor": cmd_doctor, "ingest": cmd_ingest}[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        err("interrupted")
        return 130


# ------------------------------------------------------------------ inspect


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..errors import InvalidEntityKey
    from ..inspection import entity_key, hash_tag_of, inspect_key

    repo = load_or_report(args)
    if repo is None:
        return EXIT_ERROR
    try:
        key = entity_key(
            repo.store_config.key_prefix,
            repo.project,
            args.entity,
            repo.definitions.join_keys(),
            hash_tag_of(repo.store_config),
        )
    except InvalidEntityKey as exc:
        err(f"error: {exc}")
        return EXIT_ERROR
    client = client_of(repo)
    try:
        entity = inspect_key(client, key, repo.layouts())
    except redis_errors() as exc:
        err(f"error: Redis at {where(repo)}: {describe_error(exc)}")
        return EXIT_ERROR
    finally:
        client.close()
    print(json.dumps(entity.as_dict(), indent=2) if args.json else format_hash_table(entity))
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
            err(text)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


def cmd_stats(args: argparse.Namespace) -> int:
    from ..inspection import hash_tag_of
    from .stats import format_stats, sample_project

    if args.sample < 1:
        err("error: --sample must be >= 1")
        return EXIT_ERROR
    repo = load_or_report(args)
    if repo is None:
        return EXIT_ERROR
    client = client_of(repo)
    progress = _ScanProgress()
    err(f"scanning the keys of project {repo.project} on {where(repo)} ...")
    try:
        stats = sample_project(
            client,
            repo.store_config.key_prefix,
            repo.project,
            repo.layouts(),
            sample_size=args.sample,
            progress=progress,
            seed=args.seed,
            hash_tag=hash_tag_of(repo.store_config),
        )
    except redis_errors() as exc:
        progress.done()
        err(f"error: Redis at {where(repo)}: {describe_error(exc)}")
        return EXIT_ERROR
    finally:
        client.close()
    progress.done()
    err(f"sampled {stats.sampled} of {stats.entities} keys in {time.monotonic() - progress.started:.2f}s")
    if args.json:
        print(json.dumps({"project": repo.project, **stats.as_dict()}, indent=2))
    else:
        print(f"project {repo.project} on {where(repo)}")
        print(format_stats(stats))
    return EXIT_OK


# ------------------------------------------------------------------ doctor


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(args)


# ------------------------------------------------------------------ ingest


def cmd_ingest(args: argparse.Namespace) -> int:
    from .ingest import run_ingest

    return run_ingest(args)


if __name__ == "__main__":
    raise SystemExit(main())
