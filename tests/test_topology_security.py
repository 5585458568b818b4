"""ACL users and TLS against real servers on 127.0.0.1: the documented least-privilege
ACL user runs the whole workflow, a user missing a needed permission is refused at
`feast apply` with the command named, and `rediss://` / `ssl=true` work sync and async
with a CA, server and client certificates made by the test."""

from __future__ import annotations

import asyncio
import pytest
import redis

from feast_redis_hexpire import RedisHexpireOnlineStore, connection
from feast_redis_hexpire.connection import RedisPermissionError
from feast_redis_hexpire.local_redis import RedisProvisioningError, free_port

from e2e_helpers import feast_cli, make_repo
from store_helpers import USER, batch_view, now, plain, repo_config, row, stream_view, user_key
from topology_helpers import (
    STORE_ACL_RULES,
    Topology,
    admin,
    create_acl_user,
    feast_workflow,
    make_certificates,
    tls_server_args,
)

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
                "server", ["--requirepass", ADMIN_PASSWORD, *tls_server_args(certs, tls_port)])
        except RedisProvisioningError as exc:
            if "tls" in str(exc).lower():
                pytest.skip(f"this Redis build has no TLS support: {exc}")
            raise
        server.tls_port = tls_port
        server.certs = certs
        yield server
    connection.reset_clients()


@pytest.fixture
def root_client(secured):
    client = admin(secured.port, password=ADMIN_PASSWORD)
    client.acl_log_reset()
    yield client
    client.close()


def user(root_client, name: str, rules: str = STORE_ACL_RULES, key_prefix: str = "fs") -> str:
    create_acl_user(root_client, name, f"{name}-pw", key_prefix, rules)
    return f"username={name},password={name}-pw"


# ---------------------------------------------------------------- ACL


def test_documented_acl_user_runs_the_whole_workflow(secured, root_client, tmp_path, unique_project):
    credentials = user(root_client, "feast")
    feast_workflow(tmp_path / "repo", unique_project, f"127.0.0.1:{secured.port},{credentials}", root_client)
    assert root_client.acl_log() == []  # nothing the store sent was denied


@pytest.mark.parametrize(
    "rules, named",
    [
        (STORE_ACL_RULES + " -hpexpireat", "HPEXPIREAT"),
        (STORE_ACL_RULES + " -pexpire", "PEXPIRE"),
        (STORE_ACL_RULES + " -time", "TIME"),
        (STORE_ACL_RULES + " -hget", "HGET"),
        (STORE_ACL_RULES + " -hset", "HSET"),
        (STORE_ACL_RULES + " -hdel", "HDEL"),
        (STORE_ACL_RULES + " -evalsha", "EVALSHA"),
        (STORE_ACL_RULES + " -script|load", "SCRIPT|LOAD"),
        (STORE_ACL_RULES + " -hmget", "HMGET"),
        (STORE_ACL_RULES + " -scan", "SCAN"),
        (STORE_ACL_RULES + " -unlink", "UNLINK"),
        (STORE_ACL_RULES + " -info", "INFO"),
    ],
)
def test_missing_permission_is_refused_at_apply_naming_the_command(
        secured, root_client, tmp_path, unique_project, rules, named):
    credentials = user(root_client, f"limited{abs(hash(rules)) % 10000}", rules)
    config = repo_config(f"127.0.0.1:{secured.port},{credentials}", unique_project, tmp_path)
    with pytest.raises(RedisPermissionError) as err:
        RedisHexpireOnlineStore().update(config, [], [batch_view(), stream_view()], [], [USER], partial=False)
    message = str(err.value)
    assert f"may not run {named}" in message, message
    assert "-pw" not in message and "password=***" in message  # no secret in the error


def test_key_pattern_that_misses_the_prefix_is_refused(secured, root_client, tmp_path, unique_project):
    credentials = user(root_client, "elsewhere", key_prefix="other")
    config = repo_config(f"127.0.0.1:{secured.port},{credentials}", unique_project, tmp_path)
    with pytest.raises(RedisPermissionError, match=r"may not access keys matching fs:\*"):
        RedisHexpireOnlineStore().update(config, [], [batch_view()], [], [USER], partial=False)


def test_feast_apply_cli_names_the_missing_hexpire_permission(secured, root_client, tmp_path, unique_project):
    credentials = user(root_client, "nohexpire", STORE_ACL_RULES + " -hpexpireat")
    repo = make_repo(tmp_path / "repo", unique_project, f"127.0.0.1:{secured.port},{credentials}", count=2)
    proc = feast_cli(repo, "apply", check=False)
    assert proc.returncode != 0
    assert "RedisPermissionError" in proc.stderr and "may not run HPEXPIREAT" in proc.stderr, proc.stderr[-3000:]
    assert "nohexpire-pw" not in proc.stderr


# ---------------------------------------------------------------- TLS


def tls_strings(secured, credentials: str = "") -> dict:
    certs = secured.certs
    feast_format = (f"127.0.0.1:{secured.tls_port},ssl=true,ssl_ca_certs={certs.ca},"
                    f"ssl_certfile={certs.client_cert},ssl_keyfile={certs.client_key}")
    url_user = ""
    if credentials:
        feast_format += f",{credentials}"
        name, password = (part.split("=", 1)[1] for part in credentials.split(","))
        url_user = f"{name}:{password}@"
    url = (f"rediss://{url_user}127.0.0.1:{secured.tls_port}/0?ssl_ca_certs={certs.ca}"
           f"&ssl_certfile={certs.client_cert}&ssl_keyfile={certs.client_key}")
    return {"feast": feast_format, "url": url}


@pytest.mark.parametrize("form", ["feast", "url"])
def test_tls_workflow_sync_and_async(secured, root_client, tmp_path, unique_project, form):
    """As the ACL user over TLS with a client certificate: the full workflow, then direct
    async writes and reads."""
    connection_string = tls_strings(secured, user(root_client, "feast"))[form]
    feast_workflow(tmp_path / "repo", unique_project, connection_string, root_client, count=8)

    store = RedisHexpireOnlineStore()
    config = repo_config(connection_string, unique_project, tmp_path)

    async def async_round_trip():
        try:
            await store.online_write_batch_async(config, stream_view(), [row("u1", now(), tx_count_5m=3)], None)
            return await store.online_read_async(config, stream_view(), [user_key("u1")])
        finally:
            await store.close()

    assert plain(asyncio.run(async_round_trip())[0][1]) == {"tx_count_5m": 3}
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
    config = repo_config(f"127.0.0.1:{secured.tls_port},{options},password={ADMIN_PASSWORD}",
                         unique_project, tmp_path, retry_attempts=0)
    with pytest.raises(redis.ConnectionError, match=error):
        RedisHexpireOnlineStore().online_read(config, batch_view(), [user_key("u1")])
