"""`feast-redis-hexpire inspect | stats | doctor` on a populated store: a copy of
feature_repo/ applied and materialized into the test Redis, then the CLI in-process
(``main([...])``) and as a real subprocess."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from datetime import timedelta

import pytest

from feast_redis_hexpire.cli.main import main
from feast_redis_hexpire.repo_loading import load_definitions
from feature_repo.generate_data import user_ids_for
from tests.support.e2e import (
    STREAM_FIELDS as E2E_STREAM_FIELDS,
)
from tests.support.e2e import E2ERepo, free_port, installed_script, make_repo, subprocess_env

pytestmark = pytest.mark.e2e

USERS = 12
STREAM_FIELDS = set(E2E_STREAM_FIELDS)
BATCH_FIELDS = {
    "country_iso",
    "risk_segment",
    "account_age_days",
    "_ts:user_profile",
    "tx_count_7d",
    "avg_amount_30d",
    "chargeback_count_180d",
    "_ts:user_tx_stats",
}


def _apply_and_materialize(repo: E2ERepo) -> None:
    store = repo.store()
    store.apply(load_definitions(repo.path).objects())
    now = repo.data["now"]
    store.materialize(now - timedelta(days=repo.days + 1), now + timedelta(seconds=1))


@pytest.fixture(scope="module")
def repo(redis_server, tmp_path_factory) -> E2ERepo:
    repo = make_repo(
        tmp_path_factory.mktemp("cli_repo"),
        f"t_{uuid.uuid4().hex[:8]}_cli",
        redis_server.connection_string,
        batch_ttl_seconds=3600,
        stream_ttl_seconds=600,
        count=USERS,
        days=2,
    )
    _apply_and_materialize(repo)
    return repo


def run(capsys, *argv: str) -> tuple:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


# ---------------------------------------------------------------- inspect


def test_inspect_prints_fields_values_and_ttls(repo, raw, capsys):
    code, out, err = run(capsys, "inspect", "u0001", "--repo", str(repo.path))
    assert code == 0, err
    key = repo.key("u0001").decode()
    assert f"key {key}" in out
    stored = raw.hgetall(key)
    assert set(stored) == STREAM_FIELDS | BATCH_FIELDS
    lines = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in stored}
    assert set(lines) == set(stored)
    for field, value in stored.items():
        assert value[:39] in lines[field]
        assert ("stream" if field in STREAM_FIELDS else "batch") in lines[field]
        if field in BATCH_FIELDS:
            assert "(key TTL)" in lines[field]  # HTTL -1: the key's TTL applies
    assert "key TTL (TTL):" in out and "fields (HLEN): 14" in out and "MEMORY USAGE" in out


def test_inspect_json_matches_httl_and_ttl(repo, raw, redis_server, capsys):
    code, out, _ = run(
        capsys, "inspect", "user_id=u0002", "--repo", str(repo.path), "--redis-url", redis_server.url, "--json"
    )
    assert code == 0
    body = json.loads(out)
    key = repo.key("u0002").decode()
    assert body["key"] == key and body["exists"] is True
    fields = {f["field"]: f for f in body["fields"]}
    assert {name: f["value"] for name, f in fields.items()} == raw.hgetall(key)
    httl = dict(zip(fields, raw.httl(key, *fields)))
    for name, info in fields.items():
        assert abs(info["ttl_seconds"] - httl[name]) <= 1, name
        assert (info["ttl_seconds"] == -1) == (name in BATCH_FIELDS)
    assert abs(body["key_ttl_seconds"] - raw.ttl(key)) <= 1
    assert 3500 < body["key_ttl_seconds"] <= 3600


def test_inspect_missing_entity_and_bad_entity(repo, capsys):
    code, out, _ = run(capsys, "inspect", "u9999", "--repo", str(repo.path))
    assert code == 1 and "no such key" in out
    code, _, err = run(capsys, "inspect", "user_id=u0001,oops", "--repo", str(repo.path))
    assert code == 2 and "join_key=value" in err
    code, _, err = run(capsys, "inspect", "u0001", "--repo", str(repo.path / "nowhere"))
    assert code == 2 and "feature_store.yaml" in err


def test_inspect_and_stats_follow_the_hash_tag_layout(redis_server, tmp_path, capsys):
    """`hash_tag: project` keys are `fs:{<project>}:user_id=...`: the CLI finds them."""
    import yaml

    tagged = make_repo(
        tmp_path / "tagged", f"t_{uuid.uuid4().hex[:8]}_tag", redis_server.connection_string, count=3, days=1
    )
    config = yaml.safe_load((tagged.path / "feature_store.yaml").read_text())
    config["online_store"]["hash_tag"] = "project"
    (tagged.path / "feature_store.yaml").write_text(yaml.safe_dump(config))
    _apply_and_materialize(tagged)
    code, out, _ = run(capsys, "inspect", "u0002", "--repo", str(tagged.path))
    assert code == 0 and f"key fs:{{{tagged.project}}}:user_id=u0002" in out
    code, out, _ = run(capsys, "stats", "--repo", str(tagged.path), "--json")
    stats = json.loads(out)
    assert stats["entities"] == 3 and stats["key_pattern"] == f"fs:{{{tagged.project}}}:*"


# ---------------------------------------------------------------- stats


def test_stats_counts_entities_and_samples_ttls_and_memory(repo, capsys):
    code, out, err = run(capsys, "stats", "--repo", str(repo.path))
    assert code == 0, err
    assert f"{USERS} entities (SCAN)" in out
    assert f"sample: {USERS} keys" in out
    for row in ("keys (TTL)", "batch fields (HTTL)", "stream fields (HTTL)", "p50", "memory per entity"):
        assert row in out
    assert "scanning" in err and f"sampled {USERS} of {USERS} keys" in err  # progress on stderr

    code, out, _ = run(capsys, "stats", "--repo", str(repo.path), "--json", "--sample", "5", "--seed", "1")
    stats = json.loads(out)
    assert stats["entities"] == USERS and stats["sampled"] == 5
    assert 3500 < stats["key_ttl"]["min"] <= stats["key_ttl"]["p50"] <= stats["key_ttl"]["max"] <= 3600
    assert stats["key_ttl"]["no_expiry"] == 0
    batch, stream = stats["field_ttl"]["batch"], stats["field_ttl"]["stream"]
    assert batch["count"] == batch["no_expiry"] == 5 * len(BATCH_FIELDS)  # batch fields: key TTL only
    assert stream["no_expiry"] == 0 and 0 < stream["min"] <= stream["max"] <= 600
    assert stats["memory_bytes_avg"] > 0 and stats["fields_per_entity_avg"] == 14


def test_stats_reports_each_views_served_age_from_its_ts(repo, raw, capsys):
    code, out, err = run(capsys, "stats", "--repo", str(repo.path), "--json")
    assert code == 0, err
    ages = json.loads(out)["served_age"]
    assert set(ages) == {"user_profile", "user_tx_stats", "user_activity"}
    seconds, micros = raw.time()
    now = seconds + micros / 1e6
    for view, age in ages.items():
        stamps = [raw.hget(repo.key(u).decode(), f"_ts:{view}") for u in user_ids_for(USERS)]
        expected = sorted(now - int(stamp) / 1e6 for stamp in stamps if stamp is not None)
        assert age["count"] == len(expected) > 0, view
        assert expected[0] - 2 <= age["min"] <= expected[0] + 1, (view, age, expected[0])
        assert expected[-1] - 2 <= age["max"] <= expected[-1] + 1, (view, age, expected[-1])
    code, out, _ = run(capsys, "stats", "--repo", str(repo.path))
    assert "served age (server time minus _ts:<view>)" in out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("user_")] == list(ages)
    # The age table has no column of zeros headed "-": an age has no "no expiry" count.
    [header] = [line.split() for line in out.splitlines() if line.startswith("age of view")]
    assert header == ["age", "of", "view", "count", "min", "p50", "p90", "max"]
    for line in out.splitlines():
        if line.startswith("user_"):
            assert len(line.split()) == 6 and int(line.split()[1]) == ages[line.split()[0]]["count"]


def test_stats_rejects_bad_sample_size(repo, capsys):
    code, _, err = run(capsys, "stats", "--repo", str(repo.path), "--sample", "0")
    assert code == 2 and "--sample" in err


# ---------------------------------------------------------------- doctor


@pytest.mark.both_servers
def test_doctor_reports_version_permissions_and_views_without_writing(repo, raw, capsys):
    keys_before, changes_before = raw.dbsize(), _changes(raw)
    code, out, err = run(capsys, "doctor", "--repo", str(repo.path))
    assert code == 0, out + err
    hello = dict(zip(*[iter(raw.execute_command("HELLO"))] * 2))
    assert f"{hello['server'].capitalize()} {hello['version']}" in out  # Redis 8.x.y / Valkey 9.x.y
    assert "[ok  ] version" in out and "per-field expiry" in out
    assert "write mode hsetex: stream fields and their expiry are set with one HSETEX" in out
    for role in ("a reader", "a writer", "an operator"):
        assert f"[ok  ] permissions the user may run what {role} sends" in out
    view_lines = {line.split()[3]: line for line in out.splitlines() if line.startswith("[ok  ] view")}
    assert set(view_lines) == {"user_profile", "user_tx_stats", "user_activity"}
    assert " batch " in view_lines["user_profile"] and "key TTL 3600s" in view_lines["user_profile"]
    assert "from batch_ttl_seconds" in view_lines["user_profile"]
    assert " stream " in view_lines["user_activity"] and "per-field TTL 600s" in view_lines["user_activity"]
    assert "from stream_ttl_seconds" in view_lines["user_activity"]
    assert "hexpire.kind=stream" in view_lines["user_activity"]
    assert all("join keys (user_id)" in line for line in view_lines.values())  # inferred as apply does
    assert "no two views of one entity write the same hash field" in out
    assert "everything looks fine" in out
    assert (raw.dbsize(), _changes(raw)) == (keys_before, changes_before)  # doctor never writes


def _changes(raw) -> int:
    """Every write counts here (its permission probes fail after the ACL check, or touch no key)."""
    return int(raw.info("persistence")["rdb_changes_since_last_save"])


def test_doctor_reports_bad_view_tags(repo, tmp_path, capsys):
    bad = tmp_path / "bad_repo"
    shutil.copytree(repo.path, bad, ignore=shutil.ignore_patterns("data", "__pycache__"))
    with open(bad / "features.py", "a") as f:
        f.write(
            "\n\nuser_bad_tag = FeatureView(\n"
            "    name='user_bad_tag', entities=[user], ttl=timedelta(days=1),\n"
            "    schema=[Field(name='something_else', dtype=String)],\n"
            "    source=user_profile_source, online=True, tags={'hexpire.ttl_seconds': 'soon'},\n"
            ")\n"
        )
    code, out, _ = run(capsys, "doctor", "--repo", str(bad))
    assert code == 1
    assert re.search(r"\[FAIL\] view\s+user_bad_tag", out) and "hexpire.ttl_seconds" in out
    assert "[ok  ] version" in out  # the server is fine; the repo is not
    assert "problem(s) found" in out


def test_doctor_unreachable_redis(repo, capsys):
    code, out, _ = run(capsys, "doctor", "--repo", str(repo.path), "--redis-url", f"redis://127.0.0.1:{free_port()}")
    assert code == 1
    assert "[FAIL] connect" in out
    assert "[ok  ] view" in out  # the views are still checked


def test_doctor_reports_field_conflict(repo, tmp_path, capsys):
    bad = tmp_path / "conflict_repo"
    shutil.copytree(repo.path, bad, ignore=shutil.ignore_patterns("data", "__pycache__"))
    with open(bad / "features.py", "a") as f:
        f.write(
            "\n\nuser_risk_copy = FeatureView(\n"
            "    name='user_risk_copy', entities=[user], ttl=timedelta(days=1),\n"
            "    schema=[Field(name='risk_segment', dtype=String)],\n"
            "    source=user_profile_source, online=True,\n"
            ")\n"
        )
    code, out, _ = run(capsys, "doctor", "--repo", str(bad))
    assert code == 1
    assert "[FAIL] fields" in out and "risk_segment" in out and "user_risk_copy" in out


# ---------------------------------------------------------------- real subprocess


def test_console_script_inspect_and_help(repo, tmp_path):
    script = installed_script("feast-redis-hexpire")
    proc = subprocess.run(
        [script, "inspect", "u0003", "--repo", str(repo.path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"key {repo.key('u0003').decode()}" in proc.stdout
    assert "_ts:user_activity" in proc.stdout and "key TTL (TTL):" in proc.stdout
    assert "Traceback" not in proc.stderr

    help_proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert help_proc.returncode == 0
    for command in ("inspect", "stats", "doctor"):
        assert command in help_proc.stdout
    assert "demo" not in help_proc.stdout  # the demo lives in the checkout (`make demo`), not the wheel
