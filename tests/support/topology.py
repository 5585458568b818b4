"""Helpers of the topology and security tests: the ACL lines as docs/topologies.md
documents them, round-trip counting, and the whole Feast workflow on any topology."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

DOCS = Path(__file__).resolve().parents[2] / "docs" / "topologies.md"
_ACL_LINE = "ACL SETUSER feast-{role} on >CHANGE-ME resetkeys ~fs:* resetchannels -@all "
_CLUSTER_EXTRA = "+cluster|slots +command"


def documented_acl_rules() -> dict[str, str]:
    """The command rules of the reader, writer and operator lines in docs/topologies.md,
    read from the doc itself so the tests grant exactly what it says."""
    rules: dict[str, str] = {}
    for role in ("reader", "writer", "operator"):
        start = _ACL_LINE.format(role=role)
        found = [line[len(start) :].strip() for line in DOCS.read_text().splitlines() if line.startswith(start)]
        assert found, f"no {role} ACL line in {DOCS}"
        rules[role] = found[0]
    assert _CLUSTER_EXTRA in DOCS.read_text(), f"{DOCS} no longer says what Cluster users add"
    return rules


ACL_RULES = documented_acl_rules()
STORE_ACL_RULES = ACL_RULES["writer"]
CLUSTER_STORE_ACL_RULES = f"{ACL_RULES['writer']} {_CLUSTER_EXTRA}"


def create_acl_user(
    client: redis.Redis, user: str, password: str, key_prefix: str, rules: str, keys: Sequence[str] = ()
) -> None:
    """`ACL SETUSER <user> reset on ><password> ~<key_prefix>:* resetchannels -@all <rules>`;
    `keys` replaces the key pattern (e.g. one project's `~fs:proj:*` and `~fs:{proj}:*`)."""
    patterns = list(keys) or [f"~{key_prefix}:*"]
    client.execute_command(
        "ACL", "SETUSER", user, "reset", "on", f">{password}", *patterns, "resetchannels", "-@all", *rules.split()
    )


# ------------------------------------------------------------------ round trips


@contextlib.contextmanager
def count_round_trips() -> Iterator[dict[str, int]]:
    """Counts packed sends per server ("host:port") for sync and async redis-py
    connections: one send of a pipeline is one round trip to that server."""
    import redis.asyncio.connection as async_connection
    import redis.connection as sync_connection

    counts: dict[str, int] = {}
    sync_send = sync_connection.AbstractConnection.send_packed_command
    async_send = async_connection.AbstractConnection.send_packed_command

    def counted_sync(self, command, check_health=True):
        name = f"{self.host}:{self.port}"
        counts[name] = counts.get(name, 0) + 1
        return sync_send(self, command, check_health)

    async def counted_async(self, command, check_health=True):
        name = f"{self.host}:{self.port}"
        counts[name] = counts.get(name, 0) + 1
        return await async_send(self, command, check_health)

    sync_connection.AbstractConnection.send_packed_command = counted_sync
    async_connection.AbstractConnection.send_packed_command = counted_async
    try:
        yield counts
    finally:
        sync_connection.AbstractConnection.send_packed_command = sync_send
        async_connection.AbstractConnection.send_packed_command = async_send


# ------------------------------------------------------------------ the Feast workflow


def feast_objects(repo) -> list:
    """Every Feast object defined in the repo copy's features.py (what `feast apply` finds)."""
    import importlib.util

    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    spec = importlib.util.spec_from_file_location(f"features_{repo.project}", repo.path / "features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kinds = (Entity, FeatureView, FeatureService, DataSource)
    return [value for value in vars(module).values() if isinstance(value, kinds)]


def feast_workflow(
    repo_dir: Path, project: str, connection_string: str, raw, *, count: int = 30, **online
) -> dict[str, object]:
    """apply, materialize, push, read (sync and async, all entities in one batch, in a
    shuffled order), teardown: the whole life of a feature repo against one topology.

    `raw` is an admin client on the same topology (RedisCluster for a cluster) used to
    check what landed in Redis. `online` overrides online_store settings (redis_type,
    hash_tag, ...). Returns the entity keys written, for topology-specific checks."""
    import random
    from datetime import datetime, timedelta, timezone

    import yaml
    from feast.data_source import PushMode

    from feast_redis_hexpire.keys import project_prefix
    from tests.support.e2e import (
        ALL_FEATURE_REFS,
        FEATURES,
        activity_frame,
        expected_fields,
        hgetall_text,
        latest_per_user,
        make_repo,
    )
    from tests.support.store import run_async

    repo = make_repo(repo_dir, project, connection_string, count=count)
    settings_path = repo.path / "feature_store.yaml"
    settings = yaml.safe_load(settings_path.read_text())
    settings["online_store"].update(online)
    settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
    prefix = project_prefix(repo.key_prefix, project, online.get("hash_tag", "none"))

    def key(uid: str) -> bytes:
        return f"{prefix}user_id={uid}".encode()

    now = repo.regenerate(datetime.now(timezone.utc))["now"]
    users = repo.data["user_ids"]
    store = repo.store()
    store.apply(feast_objects(repo))  # `feast apply`: the store's update() and its checks

    end = datetime.now(timezone.utc) + timedelta(seconds=5)
    store.materialize(now - timedelta(days=3), end)
    latest = {view: latest_per_user(repo.frame(view), end=end) for view in FEATURES}
    for uid in users:
        want: dict[str, str] = {}
        for view in FEATURES:
            want.update(expected_fields(view, latest[view][uid]))
        assert hgetall_text(raw, key(uid)) == want, uid

    pushed = users[: max(1, count // 5)]
    store.push("user_activity_push", activity_frame(pushed, datetime.now(timezone.utc)), to=PushMode.ONLINE)

    order = list(users)
    random.Random(7).shuffle(order)
    rows = [{"user_id": uid} for uid in order]
    got = store.get_online_features(features=ALL_FEATURE_REFS, entity_rows=rows).to_dict()
    assert got["user_id"] == order
    for i, uid in enumerate(order):
        assert got["risk_segment"][i] == latest["user_profile"][uid]["risk_segment"], uid
        assert got["tx_count_7d"][i] == latest["user_tx_stats"][uid]["tx_count_7d"], uid
        if uid in pushed:
            assert got["tx_count_5m"][i] == 10 + pushed.index(uid), uid
            assert got["last_device_id"][i] == f"dev-push-{pushed.index(uid)}", uid
        else:
            assert got["tx_count_5m"][i] == latest["user_activity"][uid]["tx_count_5m"], uid

    async def read_async():
        response = await store.get_online_features_async(features=ALL_FEATURE_REFS, entity_rows=rows)
        return response.to_dict()

    assert run_async(store, read_async) == got

    keys = [key(uid) for uid in users]
    store.teardown()  # `feast teardown`: every key of the project, on every primary
    leftovers = list(raw.scan_iter(match=f"{repo.key_prefix}:*{project}*", count=1000))
    assert leftovers == [], leftovers[:5]
    return {"keys": keys, "users": users}
