"""Credentials that rotate (issue 17): `credential_provider` names a factory of a redis-py
CredentialProvider; every new connection asks it, so a password (a cloud token) can be
replaced while the store serves. Tested on a real server whose ACL password rotates
under a bounded read/write load, the old password removed and every connection cut
after each rotation."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid

import pytest
import redis

from devsupport.redis_server import LocalRedisServer
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from feast_redis_hexpire.errors import ConfigError
from tests.support.credentials import ENV, REFERENCE, set_credentials
from tests.support.faults import base_time, read_generation, stamped_rows
from tests.support.store import repo_config, stream_view, user_key

USER_NAME = "rotating"
USERS = [f"u{i}" for i in range(20)]
ROTATIONS = 3


def _rotate(admin: redis.Redis, path, old: str, new: str) -> None:
    """What a token rotation does to the server: the new secret is valid first, clients
    are handed it, then the old one is removed and every connection that used it is cut
    (as a server restart or failover would), so the store must reconnect with the new."""
    admin.execute_command("ACL", "SETUSER", USER_NAME, f">{new}")
    set_credentials(path, USER_NAME, new)
    time.sleep(0.2)
    admin.execute_command("ACL", "SETUSER", USER_NAME, f"<{old}")
    admin.execute_command("CLIENT", "KILL", "USER", USER_NAME)


@pytest.mark.both_servers
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_password_rotation_under_load_fails_no_request_and_prints_no_secret(
    tmp_path, unique_project, monkeypatch, caplog, capfd, mode
):
    secrets = [f"secret-{uuid.uuid4().hex}" for _ in range(ROTATIONS + 1)]
    path = tmp_path / "credentials"
    set_credentials(path, USER_NAME, secrets[0])
    monkeypatch.setenv(ENV, str(path))
    caplog.set_level(logging.DEBUG)
    clients.reset_clients()
    with LocalRedisServer(workdir=tmp_path / "server", log=lambda _: None) as server:
        admin = redis.Redis(port=server.port)
        admin.execute_command("ACL", "SETUSER", USER_NAME, "on", f">{secrets[0]}", "~*", "+@all")
        config = repo_config(
            server.connection_string, unique_project, tmp_path, credential_provider=REFERENCE, stream_ttl_seconds=600
        )
        store, view, base = RedisHexpireOnlineStore(), stream_view(), base_time()
        keys = [user_key(uid) for uid in USERS]
        errors: list[str] = []
        acked = [0]
        stop = threading.Event()

        def check(generation: int, results) -> None:
            for ts, values in results:
                seen = read_generation(view.name, ts, values, base)
                assert seen is not None and seen >= generation, (seen, generation)

        def load_sync() -> None:
            while not stop.is_set() and acked[0] < 5000:
                generation = acked[0] + 1
                store.online_write_batch(config, view, stamped_rows(view, USERS, generation, base), None)
                acked[0] = generation
                check(generation, store.online_read(config, view, keys))

        async def load_async() -> None:
            while not stop.is_set() and acked[0] < 5000:
                generation = acked[0] + 1
                await store.online_write_batch_async(config, view, stamped_rows(view, USERS, generation, base), None)
                acked[0] = generation
                check(generation, await store.online_read_async(config, view, keys))
            await store.close()

        def run() -> None:
            try:
                load_sync() if mode == "sync" else asyncio.run(load_async())
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                errors.append(f"{type(exc).__name__}: {exc}")

        worker = threading.Thread(target=run)
        worker.start()
        try:
            for old, new in itertools.pairwise(secrets):
                before = acked[0]
                deadline = time.monotonic() + 20
                while acked[0] < before + 5 and time.monotonic() < deadline and worker.is_alive():
                    time.sleep(0.02)  # the load runs on the current password first
                _rotate(admin, path, old, new)
            before = acked[0]
            deadline = time.monotonic() + 20
            while acked[0] < before + 5 and time.monotonic() < deadline and worker.is_alive():
                time.sleep(0.02)  # ...and goes on after the last rotation
        finally:
            stop.set()
            worker.join(60)
        assert errors == []
        assert acked[0] >= 5 * (ROTATIONS + 1), acked[0]
        with pytest.raises(redis.AuthenticationError):  # the old passwords are gone...
            redis.Redis(port=server.port, username=USER_NAME, password=secrets[0]).ping()
        check(acked[0], store.online_read(config, view, keys))
        connected = [c for c in admin.client_list() if c["user"] == USER_NAME]  # ...and the store logs in
        assert connected
    clients.reset_clients()
    out, err = capfd.readouterr()
    for secret in secrets:
        assert secret not in caplog.text and secret not in out and secret not in err


def test_a_provider_together_with_a_password_is_a_config_error(tmp_path):
    for connection_string in ("127.0.0.1:6379,password=hunter2", "redis://app:hunter2@127.0.0.1:6379"):
        with pytest.raises(ConfigError) as err:
            repo_config(connection_string, "p", tmp_path, credential_provider=REFERENCE)
        message = str(err.value)
        assert "credential_provider" in message and "password" in message and "hunter2" not in message


def test_a_malformed_or_missing_factory_is_a_config_error(tmp_path, unique_project):
    with pytest.raises(ConfigError, match="package.module:callable"):
        repo_config("127.0.0.1:6379", "p", tmp_path, credential_provider="not a reference")
    config = repo_config("127.0.0.1:6379", unique_project, tmp_path, credential_provider="tests.support.nothing:here")
    with pytest.raises(ConfigError, match=r"tests\.support\.nothing:here.*cannot be loaded"):
        RedisHexpireOnlineStore().online_read(config, stream_view(), [user_key("u1")])
    clients.reset_clients()
