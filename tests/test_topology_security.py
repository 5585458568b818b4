"""ACL users and TLS against real servers on 127.0.0.1: the documented reader, writer and
operator users (read from docs/topologies.md) each do their job and nothing else, a user
confined to one project's keys runs that project's whole life, a missing permission fails
the operation that needs it with the command, key and view named, and `rediss://` /
`ssl=true` work sync and async with a CA, server and client certificates made by the test."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

import pytest
import redis

from devsupport.net import free_port
from devsupport.redis_binary import RedisProvisioningError
from devsupport.topologies import Topology, admin, make_certificates, tls_server_args
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.errors import RedisPermissionError
from tests.support.e2e import ALL_FEATURE_REFS, installed_script, make_repo, subprocess_env
from tests.support.store import USER, batch_view, now, plain, repo_config, row, run_async, stream_view, user_key
from tests.support.topology import ACL_RULES, STORE_ACL_RULES, create_acl_user, feast_objects, feast_workflow

pytestmark = pytest.mark.topology

ADMIN_PASSWORD = "admin-pw"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """One server: a password on the default user (the admin), TLS on a second port with
    client certificates required, plain port kept for the admin."""
    root = tmp_path_factory.mktemp("secured")
    certs = make_certificates(root / "certs")
    tls_port = free_port()
    with Topology(root) as topology:
        try:
            server = topology.start_server(
                "server", ["--requirepass", ADMIN_PASSWORD, *tls_server_args(certs, tls_port)]
            )
        except RedisProvisioningError as exc:
            if "tls" in str(exc).lower():
                pytest.fail(f"this Redis build has no TLS support (install libssl-dev and rebuild): {exc}")
            raise
        server.tls_port = tls_port
        server.certs = certs
        yield server
    clients.reset_clients()


@pytest.fixture
def root_client(secured):
    client = admin(secured.port, password=ADMIN_PASSWORD)
    client.acl_log_reset()
    yield client
    client.close()


def user(root_client, name: str, rules: str = STORE_ACL_RULES, key_prefix: str = "fs", keys=()) -> str:
    create_acl_user(root_client, name, f"{name}-pw", key_prefix, rules, keys)
    return f"username={name},password={name}-pw"


def denied(root_client) -> list[str]:
    """What the ACL log recorded as refused (one entry per distinct refusal)."""
    return [f"{entry['reason']}:{entry['object']}" for entry in root_client.acl_log()]


# ---------------------------------------------------------------- the three documented users


def test_documented_writer_runs_the_whole_workflow(secured, root_client, tmp_path, unique_project):
    credentials = user(root_client, "feast-writer", ACL_RULES["writer"])
    feast_workflow(tmp_path / "repo", unique_project, f"127.0.0.1:{secured.port},{credentials}", root_client)
    assert denied(root_client) == []  # nothing the store sent was refused


def test_documented_reader_serves_reads_and_cannot_write(secured, root_client, tmp_path, unique_project):
    """`feast serve` as a read-only user: it starts (the start-up check never writes), reads
    sync and async, and a write fails naming the command it lacks."""
    writer = user(root_client, "feast-writer", ACL_RULES["writer"])
    reader = user(root_client, "feast-reader", ACL_RULES["reader"])
    repo = make_repo(tmp_path / "repo", unique_project, f"127.0.0.1:{secured.port},{writer}", count=6)
    store = repo.store()
    store.apply(feast_objects(repo))
    start = repo.data["now"] - timedelta(days=repo.days + 1)
    store.materialize(start, datetime.now(timezone.utc) + timedelta(seconds=5))
    rows = [{"user_id": uid} for uid in repo.data["user_ids"]]
    expected = store.get_online_features(features=ALL_FEATURE_REFS, entity_rows=rows).to_dict()
    clients.reset_clients()

    reading = make_repo(tmp_path / "reader", unique_project, f"127.0.0.1:{secured.port},{reader}", count=6)
    (reading.path / "data" / "registry.db").write_bytes((repo.path / "data" / "registry.db").read_bytes())
    serving = reading.store()
    root_client.acl_log_reset()
    assert serving.get_online_features(features=ALL_FEATURE_REFS, entity_rows=rows).to_dict() == expected

    async def read_async():
        response = await serving.get_online_features_async(features=ALL_FEATURE_REFS, entity_rows=rows)
        return response.to_dict()

    assert run_async(serving, read_async) == expected
    assert denied(root_client) == []

    online = serving._get_provider().online_store
    view = serving.get_feature_view("user_profile")
    with pytest.raises(RedisPermissionError) as err:
        online.online_write_batch(serving.config, view, [row("u0001", now(), risk_segment="low")], None)
    message = str(err.value)
    assert "may not run EVALSHA" in message and "'user_profile'" in message and "user_id=u0001" in message
    assert "feast-reader-pw" not in message and "password=***" in message


def test_documented_operator_runs_the_cli(secured, root_client, tmp_path, unique_project):
    writer = user(root_client, "feast-writer", ACL_RULES["writer"])
    operator = user(root_client, "feast-operator", ACL_RULES["operator"])
    feast_workflow_keys = make_repo(tmp_path / "repo", unique_project, f"127.0.0.1:{secured.port},{writer}", count=4)
    store = feast_workflow_keys.store()
    store.apply(feast_objects(feast_workflow_keys))
    store.materialize(feast_workflow_keys.data["now"] - timedelta(days=4), datetime.now(timezone.utc))
    root_client.acl_log_reset()
    script = installed_script("feast-redis-hexpire")
    url = f"127.0.0.1:{secured.port},{operator}"
    outputs = {}
    for command in (["inspect", "u0001"], ["stats"], ["doctor", "--role", "operator"]):
        proc = subprocess.run(
            [script, *command, "--repo", str(feast_workflow_keys.path), "--connection-string", url],
            capture_output=True,
            text=True,
            timeout=120,
            env=subprocess_env(),
        )
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        assert "feast-operator-pw" not in proc.stdout + proc.stderr
        outputs[command[0]] = proc.stdout
    assert "_ts:user_profile" in outputs["inspect"] and "4 entities" in outputs["stats"]
    assert "the user may run what an operator sends" in outputs["doctor"]
    assert denied(root_client) == []
    clients.reset_clients()


@pytest.mark.parametrize("hash_tag", ["none", "project"])
def test_user_confined_to_one_project_runs_its_whole_life(secured, root_client, tmp_path, unique_project, hash_tag):
    """`~fs:<project>:* ~fs:{<project>}:*` is all a project's user needs: apply, materialize,
    push, read and teardown touch no key outside it."""
    keys = (f"~fs:{unique_project}:*", f"~fs:{{{unique_project}}}:*")
    credentials = user(root_client, f"only-{hash_tag}", ACL_RULES["writer"], keys=keys)
    other = "fs:another_project:user_id=u1"
    root_client.hset(other, "f", "v")
    feast_workflow(
        tmp_path / "repo", unique_project, f"127.0.0.1:{secured.port},{credentials}", root_client, hash_tag=hash_tag
    )
    assert denied(root_client) == []
    assert root_client.hget(other, "f") == b"v"
    confined = redis.Redis(port=secured.port, username=f"only-{hash_tag}", password=f"only-{hash_tag}-pw")
    with pytest.raises(redis.exceptions.NoPermissionError):
        confined.hget(other, "f")
    confined.close()


@pytest.mark.parametrize(
    "removed, operation",
    [
        ("hsetex", "stream write"),
        ("pexpire", "batch write"),
        ("time", "batch write"),
        ("hget", "batch write"),
        ("hset", "batch write"),
        ("hdel", "null write"),
        ("evalsha", "batch write"),
        ("script|load", "batch write after SCRIPT FLUSH"),
        ("hmget", "read"),
        ("scan", "teardown"),
        ("unlink", "teardown"),
        ("hgetall", "apply"),
    ],
)
def test_missing_permission_fails_the_operation_naming_the_command(
    secured, root_client, tmp_path, unique_project, removed, operation
):
    name = f"lacks-{removed.replace('|', '-')}"
    credentials = user(root_client, name, f"{ACL_RULES['writer']} -{removed}")
    config = repo_config(f"127.0.0.1:{secured.port},{credentials}", unique_project, tmp_path)
    store = RedisHexpireOnlineStore()
    if operation == "batch write after SCRIPT FLUSH":
        root_client.script_flush()
    actions = {
        "stream write": lambda: store.online_write_batch(
            config, stream_view(), [row("u1", now(), tx_count_5m=1)], None
        ),
        "batch write": lambda: store.online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=1)], None),
        "batch write after SCRIPT FLUSH": lambda: store.online_write_batch(
            config, batch_view(), [row("u1", now(), tx_count_7d=1)], None
        ),
        "null write": lambda: store.online_write_batch(
            config, batch_view(), [row("u1", now(), tx_count_7d=None)], None
        ),
        "read": lambda: store.online_read(config, batch_view(), [user_key("u1")]),
        "teardown": lambda: store.teardown(config, [batch_view()], [USER]),
        "apply": lambda: store.update(config, [], [batch_view()], [], [USER], partial=False),
    }
    if operation == "teardown":
        root_client.hset(f"fs:{unique_project}:user_id=u1", "x", "1")
    with pytest.raises((RedisPermissionError, redis.exceptions.NoPermissionError)) as err:
        actions[operation]()
    message = str(err.value)
    assert f"may not run {removed.upper()}" in message or f"'{removed}' command" in message, message
    assert f"{name}-pw" not in message


def test_key_pattern_that_misses_the_prefix_names_the_keys(secured, root_client, tmp_path, unique_project):
    credentials = user(root_client, "elsewhere", key_prefix="other")
    config = repo_config(f"127.0.0.1:{secured.port},{credentials}", unique_project, tmp_path)
    with pytest.raises(RedisPermissionError, match=rf"may not access keys like fs:{unique_project}:user_id=u1"):
        RedisHexpireOnlineStore().online_write_batch(config, batch_view(), [row("u1", now(), tx_count_7d=1)], None)


# ---------------------------------------------------------------- TLS


def tls_strings(secured, credentials: str = "") -> dict:
    certs = secured.certs
    feast_format = (
        f"127.0.0.1:{secured.tls_port},ssl=true,ssl_ca_certs={certs.ca},"
        f"ssl_certfile={certs.client_cert},ssl_keyfile={certs.client_key}"
    )
    url_user = ""
    if credentials:
        feast_format += f",{credentials}"
        name, password = (part.split("=", 1)[1] for part in credentials.split(","))
        url_user = f"{name}:{password}@"
    url = (
        f"rediss://{url_user}127.0.0.1:{secured.tls_port}/0?ssl_ca_certs={certs.ca}"
        f"&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}"
    )
    return {"feast": feast_format, "url": url}


@pytest.mark.parametrize("form", ["feast", "url"])
def test_tls_workflow_sync_and_async(secured, root_client, tmp_path, unique_project, form):
    """As the ACL user over TLS with a client certificate: the full workflow, then direct
    async writes and reads."""
    connection_string = tls_strings(secured, user(root_client, "feast"))[form]
    feast_workflow(tmp_path / "repo", unique_project, connection_string, root_client, count=8)

    store = RedisHexpireOnlineStore()
    config = repo_config(connection_string, unique_project, tmp_path, field_naming="plain")

    async def async_round_trip():
        await store.online_write_batch_async(config, stream_view(), [row("u1", now(), tx_count_5m=3)], None)
        return await store.online_read_async(config, stream_view(), [user_key("u1")])

    assert plain(run_async(store, async_round_trip)[0][1]) == {"tx_count_5m": 3}
    assert root_client.hget(f"fs:{unique_project}:user_id=u1", "tx_count_5m") == b"3"
    clients = root_client.client_list()
    assert any(int(c["laddr"].rsplit(":", 1)[1]) == secured.tls_port for c in clients)  # we came in over TLS


@pytest.mark.parametrize(
    "options, error",
    [
        ("ssl=true", "CERTIFICATE_VERIFY_FAILED"),  # our CA is not trusted by default
        ("ssl=true,ssl_ca_certs={ca}", None),  # trusted, but no client certificate: the server hangs up
    ],
)
def test_tls_needs_the_ca_and_the_client_certificate(secured, tmp_path, unique_project, options, error):
    options = options.format(ca=secured.certs.ca)
    config = repo_config(
        f"127.0.0.1:{secured.tls_port},{options},password={ADMIN_PASSWORD}", unique_project, tmp_path, retry_attempts=0
    )
    with pytest.raises(redis.ConnectionError, match=error):
        RedisHexpireOnlineStore().online_read(config, batch_view(), [user_key("u1")])
