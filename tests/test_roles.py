"""One list of the commands each role sends (roles.py), and everything that must agree
with it: the commands the store's code calls, the ACL lines of docs/topologies.md, and
`doctor --role`, run against a real server as ACL users made from the documented lines
(issue 19, item 2)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import redis

from feast_redis_hexpire import roles
from feast_redis_hexpire.cli.main import main
from feast_redis_hexpire.redis_version import HSETEX_VERSION, parse_version
from tests.support.e2e import make_repo
from tests.support.topology import ACL_RULES, DOCS, create_acl_user

PACKAGE = Path(roles.__file__).parent


def _names(role: str) -> set[str]:
    return {command.acl for command in roles.ROLES[role]}


# ---------------------------------------------------------------- the list against the code


def test_the_writer_list_holds_every_command_the_write_script_calls():
    script = (PACKAGE / "write_script.lua").read_text()
    called = {name.lower() for name in re.findall(r"\b(?:call|pcall_|redis\.call)\('([A-Z]+)'", script)}
    assert {"time", "hget", "hset", "hsetex", "hpexpireat", "pexpire", "hdel"} <= called
    assert called <= _names("writer")


def test_the_lists_hold_every_command_the_python_code_sends():
    sent = {
        "reader": {"HMGET", "EXISTS"},  # redis_io.hmget, redis_io.exists (metrics on)
        "writer": {"HMGET", "EVALSHA", "SCRIPT|LOAD", "SCAN", "HDEL", "UNLINK", "HGETALL", "HSET"},
        "operator": {
            "HGETALL",
            "PTTL",
            "MEMORY|USAGE",
            "HPTTL",
            "HKEYS",
            "SCAN",
            "HMGET",
            "TIME",
        },  # inspection.py, cli/
    }
    code = {
        "reader": (PACKAGE / "redis_io.py").read_text(),
        "writer": (PACKAGE / "redis_io.py").read_text() + (PACKAGE / "maintenance.py").read_text(),
        "operator": "".join(
            (PACKAGE / name).read_text() for name in ("inspection.py", "cli/stats.py", "cli/doctor.py")
        ),
    }
    spelled = {"SCRIPT|LOAD": "script_load", "MEMORY|USAGE": "memory_usage", "SCAN": "scan"}
    for role, commands in sent.items():
        for command in commands:
            shown = spelled.get(command, command)
            assert shown.lower() in code[role].lower(), f"{role}: {command} is no longer sent; update this test"
            assert command.lower() in _names(role), (role, command)


# ---------------------------------------------------------------- the list against the docs


def test_the_documented_acl_lines_are_the_lists():
    text = DOCS.read_text()
    for role in roles.ROLES:
        assert roles.acl_line(role) in text.splitlines(), role
        assert ACL_RULES[role] == roles.acl_rules(role)
    confined = roles.acl_line("writer", "~fs:fraud:* ~fs:{fraud}:*", user="feast-fraud")
    assert confined in text.splitlines()
    cluster_reader = f"{roles.acl_line('reader')} {' '.join('+' + c for c in roles.CLUSTER_EXTRA)} +readonly"
    assert cluster_reader in text.splitlines()
    for command in roles.WRITER:  # the table of what each user runs names every command
        assert command.acl.upper().replace("|", " ") in text


# ---------------------------------------------------------------- doctor as the documented users


@pytest.fixture(scope="module")
def repo_path(redis_server, tmp_path_factory) -> Path:
    repo = make_repo(
        tmp_path_factory.mktemp("roles_repo"), f"t_{uuid.uuid4().hex[:8]}_roles", redis_server.connection_string
    )
    return repo.path


@pytest.fixture(scope="module")
def hsetex(redis_server) -> bool:
    client = redis.Redis(port=redis_server.port)
    version = parse_version(str(client.info("server")["redis_version"]))
    client.close()
    return version >= HSETEX_VERSION


def _doctor(capsys, redis_server, repo_path: Path, rules: str, role: str) -> tuple[int, str]:
    name = f"role-{uuid.uuid4().hex[:8]}"
    admin = redis.Redis(port=redis_server.port)
    try:
        create_acl_user(admin, name, "pw", "fs", rules)
        before = admin.info("persistence")["rdb_changes_since_last_save"]
        code = main(
            [
                "doctor",
                "--repo",
                str(repo_path),
                "--connection-string",
                f"127.0.0.1:{redis_server.port},username={name},password=pw",
                "--role",
                role,
            ]
        )
        out = capsys.readouterr().out
        assert admin.info("persistence")["rdb_changes_since_last_save"] == before, "doctor changed data"
    finally:
        admin.acl_deluser(name)
        admin.close()
    return code, out


@pytest.mark.parametrize("role", sorted(roles.ROLES))
def test_each_documented_line_passes_doctor_for_its_role(capsys, redis_server, repo_path, role):
    code, out = _doctor(capsys, redis_server, repo_path, ACL_RULES[role], role)
    assert code == 0, out
    article = "an" if role == "operator" else "a"
    assert f"[ok  ] permissions the user may run what {article} {role} sends" in out


def test_a_line_fails_doctor_for_a_role_it_does_not_cover(capsys, redis_server, repo_path):
    code, out = _doctor(capsys, redis_server, repo_path, ACL_RULES["reader"], "writer")
    assert code == 1
    assert "[FAIL] permissions as a writer, the user may not run: EVALSHA, SCRIPT LOAD, HGET" in out


@pytest.mark.parametrize("command", [command.acl for command in roles.WRITER])
def test_the_writer_line_minus_any_command_it_sends_fails_doctor(capsys, redis_server, repo_path, hsetex, command):
    code, out = _doctor(capsys, redis_server, repo_path, f"{ACL_RULES['writer']} -{command}", "writer")
    needed = next(c for c in roles.WRITER if c.acl == command).needed(hsetex)
    if needed:
        assert code == 1, out
        assert re.search(rf"may not run: {command.upper().replace('|', ' ')}$", out, re.MULTILINE), out
    else:  # HPEXPIREAT where the script writes with HSETEX: listed for Redis 7.4 only
        assert code == 0, out
