"""`feast-redis-hexpire doctor`: is this repo ready to serve from this Redis?

It runs the store's own start-up check (every node's version, never a write), then
asks Redis whether the configured user may run what readers, writers and operators send
(roles.py: each command is sent once in a form that passes the ACL check and then changes
nothing), and validates every view as `feast apply` would.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..errors import HexpireError
from ..redis_version import REQUIREMENT, FieldExpiry
from ..roles import ROLES, commands
from ..server_checks import check_server, probe_permissions, server_infos
from ..views import ViewKind, check_field_conflicts
from .helpers import EXIT_OK, EXIT_PROBLEM, client_of, describe_error, format_ttl, load, redis_errors, where

_ARTICLE = {"reader": "a reader", "writer": "a writer", "operator": "an operator"}


class _Report:
    def __init__(self) -> None:
        self.problems = 0

    def __call__(self, label: str, ok: bool | None, text: str) -> None:
        mark = {True: "ok  ", False: "FAIL", None: "    "}[ok]
        if ok is False:
            self.problems += 1
        print(f"[{mark}] {label:<11} {text}", flush=True)


def run_doctor(args: argparse.Namespace) -> int:
    report = _Report()
    try:
        repo = load(args)
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not trace back
        report("repo", False, f"{args.repo}: {describe_error(exc)}")
        return EXIT_PROBLEM
    store_config = repo.store_config
    report("repo", True, f"{repo.path} (project {repo.project}, key prefix {store_config.key_prefix})")
    report(
        "config",
        None,
        f"batch TTL {store_config.effective_batch_ttl_seconds}s, stream TTL {store_config.stream_ttl_seconds}s, "
        f"field_naming={store_config.field_naming.value}, redis_type={store_config.redis_type.value}, "
        f"max_future_seconds={store_config.max_future_seconds}",
    )
    _check_server(report, repo, args.role)
    _check_views(report, repo)
    print()
    if report.problems:
        print(f"doctor: {report.problems} problem(s) found")
        return EXIT_PROBLEM
    print("doctor: everything looks fine")
    return EXIT_OK


def _check_server(report: _Report, repo: Any, args_role: str | None) -> None:
    try:
        client = client_of(repo)
    except Exception as exc:  # noqa: BLE001 - bad connection strings land here
        report("connect", False, f"{where(repo)}: {describe_error(exc)}")
        return
    try:
        started = time.perf_counter()
        hello_at = {"target_nodes": client.get_random_node()} if hasattr(client, "get_random_node") else {}
        client.execute_command("HELLO", **hello_at)  # what every user may run, unlike PING (one node of a cluster)
        report("connect", True, f"{where(repo)} (HELLO {(time.perf_counter() - started) * 1000:.1f} ms)")
        servers = server_infos(client)
        shown = ", ".join(sorted({str(server) for server in servers}))
        try:
            expiry = check_server(client, repo.store_config)
            report("version", True, f"{shown}: has per-field expiry (needs {REQUIREMENT})")
        except HexpireError as exc:
            report("version", False, str(exc))
            return
        how = "one HSETEX per row" if expiry is FieldExpiry.hsetex else "HSET + HPEXPIREAT per row"
        report("writes", None, f"write mode {expiry.value}: stream fields and their expiry are set with {how}")
        _check_permissions(report, client, repo, args_role, hsetex=expiry is FieldExpiry.hsetex)
        if repo.store_config.vector_enabled:
            _check_indexes(report, client, repo)
    except redis_errors() as exc:
        report("connect", False, f"{where(repo)}: {describe_error(exc)}")
    finally:
        client.close()


def _check_permissions(report: _Report, client: Any, repo: Any, role: str | None, hsetex: bool) -> None:
    """With a role: FAIL unless the user may run all it sends. Without: say which roles
    the user may act as, and FAIL only if none."""
    from redis.cluster import RedisCluster

    from ..keys import project_prefix

    if isinstance(client, RedisCluster):  # ACL rules are per node
        report("permissions", None, "not checked on a cluster client")
        return
    store_config = repo.store_config
    key = project_prefix(store_config.key_prefix, repo.project, store_config.hash_tag) + "_doctor_probe"
    roles = [role] if role else list(ROLES)
    allowed = 0
    for name in roles:
        sent = commands(name, hsetex, search=bool(store_config.vector_enabled))
        reasons = probe_permissions(client, [[part.format(key=key) for part in command.probe] for command in sent])
        denied = [command.acl.upper().replace("|", " ") for command, reason in zip(sent, reasons) if reason]
        if not denied:
            allowed += 1
            report("permissions", True, f"the user may run what {_ARTICLE[name]} sends")
        else:
            refused = ", ".join(denied)
            report("permissions", False if role else None, f"as {_ARTICLE[name]}, the user may not run: {refused}")
    if not role and not allowed:
        report("permissions", False, "the user may run what none of reader, writer and operator sends")


def _check_indexes(report: _Report, client: Any, repo: Any) -> None:
    """Each view's search index on every primary (FT._LIST, no write): after resharding, a
    primary without a copy it can serve fails every search of the view until feast apply."""
    from ..search_io import index_coverage
    from ..store import index_schema_of

    for fv in sorted(repo.online_views(), key=lambda v: v.name):
        try:
            schema = index_schema_of(fv, repo.config)
        except HexpireError:
            continue  # _check_views reports the view
        if schema is None:
            continue
        try:
            served, unserved = index_coverage(client, schema)
        except HexpireError as exc:
            report("search", None, f"{fv.name}: not checked: {exc}")
            continue
        except redis_errors() as exc:
            report("search", None, f"{fv.name}: not checked: {describe_error(exc)}")
            continue
        if not unserved:
            on = "the server" if served == ["the server"] else f"every primary ({len(served)})"
            report("search", True, f"{fv.name}: an index on {on}")
        elif not served:
            report("search", None, f"{fv.name}: no index yet (feast apply builds it)")
        else:
            report(
                "search",
                False,
                f"{fv.name}: no index that {', '.join(unserved)} can serve (its slots changed since the last "
                "feast apply: resharding, or a new primary); searches of the view fail until feast apply",
            )


def _check_views(report: _Report, repo: Any) -> None:
    views = repo.online_views()
    if not views:
        report("views", False, "the repo defines no online feature views")
        return
    layouts = []
    for fv in sorted(views, key=lambda v: v.name):
        try:
            layout = repo.layout(fv)
        except HexpireError as exc:
            report("view", False, f"{fv.name}: {exc}")
            continue
        layouts.append(layout)
        where_ttl = "key" if layout.kind is ViewKind.batch else "per-field"
        ttl = (
            "no expiry"
            if not layout.ttl_seconds
            else f"{where_ttl} TTL {layout.ttl_seconds}s ({format_ttl(layout.ttl_millis)}, from {layout.ttl_source})"
        )
        tags = ", ".join(f"{k}={v}" for k, v in sorted((fv.tags or {}).items()) if k.startswith("hexpire."))
        report(
            "view",
            True,
            f"{layout.name:<16} {layout.kind.value:<6} {ttl:<44} {len(layout.features)} features, "
            f"join keys ({', '.join(layout.join_keys)}){', ' + tags if tags else ''}",
        )
    if len(layouts) == len(views):
        try:
            check_field_conflicts(layouts)
            report("fields", True, "no two views of one entity write the same hash field")
        except HexpireError as exc:
            report("fields", False, str(exc))
