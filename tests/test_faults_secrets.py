"""No secret of a connection string in anything captured, along the failure paths
(issue: reliability): a refused login, an unreachable server and a malformed config, for
each way a connection string carries a secret (`password=`, `sentinel_password=`,
`ssl_password=`, `redis://user:pw@`, `unix://:pw@`, `?password=`).

Captured: the store's exceptions with their whole chain, logs at DEBUG, the `feast` CLI's
stdout and stderr, a `feast serve`'s log and HTTP answers, and `python -m devsupport`.
The secret holds `&` and `@`, which end a value in one syntax and not in another, and is
also looked for percent-encoded and in pieces."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import traceback
import urllib.parse
from pathlib import Path

import pytest
import yaml

from devsupport.net import free_port
from devsupport.redis_binary import RedisProvisioningError
from devsupport.redis_server import server_for_local_use
from devsupport.sample_repo import write_yaml
from devsupport.topologies import Topology
from feast_redis_hexpire import RedisHexpireOnlineStore, clients
from tests.support.e2e import FeastServe, feast_executable, http_post, make_repo, subprocess_env
from tests.support.faults import VIEWS, base_time, stamped_rows
from tests.support.store import repo_config, run_async, user_key
from tests.support.topology import feast_objects

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

SECRET = "Tr0ub4dor&3@horse"
QUOTED = urllib.parse.quote(SECRET, safe="")
PIECES = (SECRET, QUOTED, "Tr0ub4dor", "3@horse", "horse", "ub4dor%26")
RIGHT_PASSWORD = "right-pw"

FORMS = ("password=", "sentinel_password=", "ssl_password=", "redis://user:pw@", "unix://:pw@", "?password=")
PATHS = ("auth", "unreachable", "bad config")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        found = [piece for piece in PIECES if piece in text]
        assert not found, f"secret pieces {found} in:\n{text[-3000:]}"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server that wants another password, on a TCP port and a unix socket."""
    root = tmp_path_factory.mktemp("secrets")
    with Topology(root) as topology:
        server = topology.start_server(
            "guarded",
            ["--requirepass", RIGHT_PASSWORD, "--unixsocket", str(root / "redis.sock"), "--unixsocketperm", "700"],
        )
        server.socket = root / "redis.sock"
        yield server
    clients.reset_clients()


def connection_for(form: str, path: str, guarded) -> tuple[str, dict]:
    """(connection_string, other online_store settings) of one form on one failure path:
    `auth` reaches the guarded server with the secret as its password (a TLS form reaches
    its plain port, which refuses the handshake), `unreachable` a port or socket nobody
    listens on, `bad config` has a mistake next to the secret."""
    port = guarded.port if path == "auth" else free_port()
    socket = guarded.socket if path == "auth" else guarded.socket.with_name("nobody.sock")
    broken = ",socket_timeout=soon" if path == "bad config" else ""
    if form == "password=":
        return f"127.0.0.1:{port},password={SECRET}{broken}", {}
    if form == "sentinel_password=":
        settings = {"redis_type": "redis_sentinel", "sentinel_master": "mymaster"}
        return f"127.0.0.1:{port},sentinel_password={SECRET}{broken}", settings
    if form == "ssl_password=":
        quick = ",socket_timeout=0.3,socket_connect_timeout=0.3"
        return f"127.0.0.1:{port},ssl=true,ssl_password={SECRET}{quick}{broken}", {}
    if form == "redis://user:pw@":
        return f"redis://default:{SECRET}@127.0.0.1:{'notaport' if broken else port}/0", {}
    if form == "unix://:pw@":
        return f"unix://:{SECRET}@{'' if broken else socket}", {}
    assert form == "?password="
    return f"redis://127.0.0.1:{port}/0?password={QUOTED}{'&socket_timeout=soon' if broken else ''}", {}


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows: its traceback with the whole chain, repr and args."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)


# ---------------------------------------------------------------- the store's own errors and logs


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("form", FORMS)
def test_no_secret_in_errors_or_debug_logs(guarded, tmp_path, unique_project, caplog, form, path):
    caplog.set_level(logging.DEBUG)
    clients.reset_clients()
    connection, settings = connection_for(form, path, guarded)
    texts: list[str] = []
    try:
        config = repo_config(connection, unique_project, tmp_path, retry_attempts=1, **settings)
    except Exception as exc:  # noqa: BLE001 - the error is what is examined
        texts.append(exception_text(exc))
        assert path == "bad config", texts[-1]
    else:
        assert path != "bad config"
        store, view, base = RedisHexpireOnlineStore(), VIEWS[0], base_time()
        rows, keys = stamped_rows(view, ["u1"], 1, base), [user_key("u1")]
        operations = (
            lambda: store.online_read(config, view, keys),
            lambda: store.online_write_batch(config, view, rows, None),
            lambda: run_async(store, lambda: store.online_read_async(config, view, keys)),
            lambda: run_async(store, lambda: store.online_write_batch_async(config, view, rows, None)),
        )
        for operation in operations:
            with pytest.raises(Exception) as err:
                operation()
            texts.append(exception_text(err.value))
    assert_no_secret(*texts, caplog.text)
    clients.reset_clients()


# ---------------------------------------------------------------- the feast CLI and feast serve


@pytest.fixture(scope="module")
def applied_repo(guarded, tmp_path_factory):
    """A copy of feature_repo/ applied through the right password: the registry the CLI
    and `feast serve` runs below read."""
    project = "secrets_repo"
    repo = make_repo(tmp_path_factory.mktemp("repo"), project, f"127.0.0.1:{guarded.port},password={RIGHT_PASSWORD}")
    repo.store().apply(feast_objects(repo))
    clients.reset_clients()
    return repo


def with_connection(repo, dest: Path, connection: str, settings: dict):
    """A copy of `repo` whose feature_store.yaml names another connection."""
    shutil.copytree(repo.path, dest)
    config = yaml.safe_load((dest / "feature_store.yaml").read_text())
    config["online_store"].update({"connection_string": connection, "retry_attempts": 1, **settings})
    write_yaml(dest, config)
    return type(repo)(**{**vars(repo), "path": dest})


CLI_CASES = [  # one per failure path; every form is covered in-process above
    ("password=", "auth", ["apply"], "invalid username-password pair"),
    ("redis://user:pw@", "unreachable", ["materialize", "2020-01-01T00:00:00", "2030-01-01T00:00:00"], "Error 111"),
    ("?password=", "bad config", ["apply"], "Invalid value for 'socket_timeout'"),
]


def test_no_secret_in_feast_cli_output(guarded, applied_repo, tmp_path):
    """`feast --log-level DEBUG <command>` failing on each path: the failure is shown, the
    secret is not (run side by side: each `feast` pays its own start-up)."""
    runs = []
    for number, (form, path, command, shown) in enumerate(CLI_CASES):
        connection, settings = connection_for(form, path, guarded)
        repo = with_connection(applied_repo, tmp_path / f"repo{number}", connection, settings)
        process = subprocess.Popen(
            [feast_executable(), "--log-level", "DEBUG", "-c", str(repo.path), *command],
            cwd=repo.path,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append((form, path, command, shown, process))
    for form, path, command, shown, process in runs:
        stdout, stderr = process.communicate(timeout=150)
        assert process.returncode != 0, (form, path, command, stdout, stderr)
        assert shown in stdout + stderr, (form, path, command, stderr[-3000:])
        assert_no_secret(stdout, stderr)


def test_no_secret_in_feast_serve_log_or_answers(guarded, applied_repo, tmp_path):
    """A `feast serve` whose password is refused answers reads and pushes with an error,
    and neither the answers nor its DEBUG log show the password."""
    connection, settings = connection_for("redis://user:pw@", "auth", guarded)
    repo = with_connection(applied_repo, tmp_path / "repo", connection, settings)
    log = tmp_path / "serve.log"
    with FeastServe(repo, log, feast_args=["--log-level", "DEBUG"]) as serve:
        status, body = http_post(
            f"{serve.url}/get-online-features",
            {"features": ["user_profile:risk_segment"], "entities": {"user_id": ["u0001"]}},
        )
        assert status >= 500, body
        push = {
            "push_source_name": "user_activity_push",
            "to": "online",
            "df": {
                "user_id": ["u0001"],
                "last_login_ts": ["2026-01-01T00:00:00Z"],
                "last_device_id": ["d"],
                "tx_count_5m": [1],
                "failed_logins_15m": [0],
                "session_country": ["PT"],
                "event_timestamp": ["2026-01-01T00:00:00Z"],
                "created": ["2026-01-01T00:00:00Z"],
            },
        }
        push_status, push_body = http_post(f"{serve.url}/push", push)
        assert push_status >= 500, push_body
    text = log.read_text(errors="replace")
    assert "invalid username-password pair" in text  # the failure was logged
    assert_no_secret(body, push_body, text)


# ---------------------------------------------------------------- devsupport


def test_no_secret_from_devsupport(guarded, monkeypatch):
    """`python -m devsupport serve` (here failing: its port is taken) with a secret in the
    environment, and the REDIS_URL check the demo and the benchmarks run."""
    url = f"redis://default:{QUOTED}@127.0.0.1:{guarded.port}/0"
    proc = subprocess.run(
        [sys.executable, "-m", "devsupport", "serve", "--port", str(guarded.port)],
        env=subprocess_env({"REDIS_URL": url, "REDIS_PASSWORD": SECRET}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Address already in use" in proc.stdout + proc.stderr
    assert_no_secret(proc.stdout, proc.stderr)

    for where in (url, f"redis://default:{QUOTED}@127.0.0.1:{free_port()}/0"):  # refused login, nobody there
        monkeypatch.setenv("REDIS_URL", where)
        with pytest.raises(RedisProvisioningError) as err, server_for_local_use(log=lambda _: None):
            pass
        assert_no_secret(exception_text(err.value))
