"""A credential provider that rotates: what a cloud token provider does, with a file in
place of the cloud. The store names it as `tests.support.credentials:from_env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from redis.credentials import CredentialProvider

ENV = "HEXPIRE_TEST_CREDENTIALS"
REFERENCE = "tests.support.credentials:from_env"


class FileCredentialProvider(CredentialProvider):
    """Reads `username:password` from a file on every call, so every new connection takes
    the credentials current at that moment; counts its calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls = 0

    def get_credentials(self) -> tuple[str, str]:
        self.calls += 1
        username, password = self.path.read_text().split(":", 1)
        return username, password

    async def get_credentials_async(self) -> tuple[str, str]:
        return self.get_credentials()


def from_env() -> FileCredentialProvider:
    """The factory of `credential_provider`: the file named by $HEXPIRE_TEST_CREDENTIALS."""
    return FileCredentialProvider(Path(os.environ[ENV]))


def set_credentials(path: Path, username: str, password: str) -> None:
    """Replace the file whole (rename), so a reader never sees half of it."""
    staged = path.with_suffix(".new")
    staged.write_text(f"{username}:{password}")
    staged.replace(path)


def use_provider(monkeypatch: Any, path: Path, username: str, password: str) -> str:
    """Point `from_env` at a file holding these credentials; returns the config value."""
    set_credentials(path, username, password)
    monkeypatch.setenv(ENV, str(path))
    return REFERENCE


def round_trip_through_provider(store: Any, config: Any, count: int = 30) -> None:
    """Write and read a batch view, sync and async, logged in by the provider alone (the
    connection string holds no password): what comes back is what was written."""
    from tests.support.store import batch_view, now, plain, row, run_async, user_key

    view = batch_view()
    keys = [user_key(f"u{i}") for i in range(count)]
    store.online_write_batch(config, view, [row(f"u{i}", now(), tx_count_7d=i) for i in range(count)], None)
    assert [plain(v)["tx_count_7d"] for _, v in store.online_read(config, view, keys)] == list(range(count))

    async def async_round_trip() -> list[Any]:
        rows = [row(f"u{i}", now(), tx_count_7d=i + 100) for i in range(count)]
        await store.online_write_batch_async(config, view, rows, None)
        return await store.online_read_async(config, view, keys)

    result = run_async(store, async_round_trip)
    assert [plain(v)["tx_count_7d"] for _, v in result] == [i + 100 for i in range(count)]
