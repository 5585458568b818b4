"""What vector and text retrieval adds to the reader and writer roles (roles.SEARCH_ROLES):
the code sends no other Query Engine command, docs/topologies.md documents exactly these
rules, and real ACL users made from the documented lines can do their part (and no more)
on a search-enabled Redis, as `doctor --role` also finds."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
import redis
import yaml
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Array, Float32, String
from feast.value_type import ValueType

from devsupport.feature_stores import feature_store
from feast_redis_hexpire import clients, roles
from feast_redis_hexpire.cli.main import main
from feast_redis_hexpire.errors import RedisPermissionError
from tests.support.e2e import make_repo
from tests.support.topology import ACL_RULES, DOCS, create_acl_user

PACKAGE = Path(roles.__file__).parent
ITEM = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING)
VIEW = FeatureView(
    name="docs",
    entities=[ITEM],
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="emb", dtype=Array(Float32), vector_index=True, vector_length=2),
        Field(name="title", dtype=String),
    ],
    source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
)


def documented_search_rules() -> dict[str, str]:
    rules = {}
    for role in ("reader", "writer"):
        start = f"ACL SETUSER feast-{role} +ft"
        found = [line for line in DOCS.read_text().splitlines() if line.startswith(start)]
        assert len(found) == 1, role
        rules[role] = found[0][len(f"ACL SETUSER feast-{role} ") :]
    return rules


SEARCH_RULES = documented_search_rules()


def test_the_documented_search_rules_are_the_lists_and_the_code_sends_no_other():
    assert {role: roles.search_acl_rules(role) for role in ("reader", "writer")} == SEARCH_RULES
    assert roles.search_acl_rules("operator") == ""
    sent = set(re.findall(r'"(FT\.[A-Z_]+)"', (PACKAGE / "search_io.py").read_text()))
    sent |= set(re.findall(r'"(FT\.[A-Z_]+)"', (PACKAGE / "search_index.py").read_text()))
    sent |= set(re.findall(r'"(FT\.[A-Z_]+)"', (PACKAGE / "search_query.py").read_text()))
    assert {name.lower() for name in sent} == {c.acl for c in roles.SEARCH_WRITER}
    assert {c.acl for c in roles.SEARCH_READER} == {"ft.search", "ft._list"}
    for command in roles.SEARCH_WRITER:  # the docs' prose names every command
        assert command.acl.upper() in DOCS.read_text()


@pytest.fixture
def admin(search_server):
    client = redis.Redis.from_url(search_server.url)
    yield client
    client.close()


def _user(admin, role: str, extra: str = "") -> str:
    name = f"v-{role}-{uuid.uuid4().hex[:6]}"
    create_acl_user(admin, name, "pw", "fs", f"{ACL_RULES[role]} {SEARCH_RULES.get(role, '')} {extra}".strip())
    return name


def _as(search_server, name: str) -> str:
    return f"127.0.0.1:{search_server.port},username={name},password=pw"


def test_documented_writer_and_reader_users_apply_write_search_and_no_more(search_server, admin, tmp_path):
    writer = _user(admin, "writer")
    reader = _user(admin, "reader")
    denied = _user(admin, "reader", "-ft.search")
    try:
        fs = feature_store(search_server, tmp_path, vector_enabled=True)
        fs.config.online_store.connection_string = _as(search_server, writer)
        fs.apply([ITEM, VIEW])  # builds the index as the writer
        now = datetime.now(timezone.utc)
        fs.write_to_online_store(
            "docs",
            pd.DataFrame(
                {
                    "item_id": ["a", "b"],
                    "emb": [[1.0, 0.0], [0.0, 1.0]],
                    "title": ["x", "y"],
                    "event_timestamp": [now, now],
                }
            ),
        )
        as_writer = fs.retrieve_online_documents_v2(features=["docs:title"], query=[1.0, 0.1], top_k=1).to_dict()
        assert as_writer["item_id"] == ["a"]
        fs.config.online_store.connection_string = _as(search_server, reader)
        assert (
            fs.retrieve_online_documents_v2(features=["docs:title"], query=[1.0, 0.1], top_k=1).to_dict() == as_writer
        )
        fs.config.online_store.connection_string = _as(search_server, denied)
        with pytest.raises(RedisPermissionError, match="may not run FT.SEARCH"):
            fs.retrieve_online_documents_v2(features=["docs:title"], query=[1.0, 0.1], top_k=1)
        fs.config.online_store.connection_string = _as(search_server, writer)
        fs.teardown()  # drops the index as the writer
        assert not [n for n in admin.execute_command("FT._LIST") if n.decode().startswith(f"fs:{fs.project}:")]
    finally:
        for name in (writer, reader, denied):
            admin.acl_deluser(name)
        clients.reset_clients()


@pytest.fixture(scope="module")
def vector_repo_path(search_server, tmp_path_factory) -> Path:
    repo = make_repo(
        tmp_path_factory.mktemp("vroles"), f"t_{uuid.uuid4().hex[:8]}_vroles", search_server.connection_string
    )
    settings_path = repo.path / "feature_store.yaml"
    settings = yaml.safe_load(settings_path.read_text())
    settings["online_store"]["vector_enabled"] = True
    settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return repo.path


def _doctor(capsys, search_server, admin, repo_path: Path, role: str, extra: str = "") -> tuple[int, str]:
    name = _user(admin, role, extra)
    try:
        code = main(
            ["doctor", "--repo", str(repo_path), "--connection-string", _as(search_server, name), "--role", role]
        )
        return code, capsys.readouterr().out
    finally:
        admin.acl_deluser(name)


@pytest.mark.parametrize("role", ["reader", "writer"])
def test_doctor_passes_the_documented_lines_with_vector_enabled(capsys, search_server, admin, vector_repo_path, role):
    code, out = _doctor(capsys, search_server, admin, vector_repo_path, role)
    assert code == 0, out


@pytest.mark.parametrize("command", [c.acl for c in roles.SEARCH_WRITER])
def test_doctor_fails_the_writer_without_any_search_command(capsys, search_server, admin, vector_repo_path, command):
    code, out = _doctor(capsys, search_server, admin, vector_repo_path, "writer", f"-{command}")
    assert code == 1, out
    assert re.search(rf"may not run: {re.escape(command.upper())}$", out, re.MULTILINE), out
