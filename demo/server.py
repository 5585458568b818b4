"""`python -m demo` (`make demo`): pick a Redis, build the demo runtime, serve the page.

Redis: ``--redis-url``, else ``$REDIS_URL``, else a private local redis-server (built
once from source if no Redis >= 7.4 is installed) that is stopped on exit. Once ready it
prints the operator CLI lines that reach that Redis and the working repo
(``commands.py``); nothing it prints shows a password.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import DEFAULT_SOURCE_REPO, DEFAULT_USERS, MAX_USERS
from .commands import operator_commands

DEFAULT_PORT = 8091
DEFAULT_STREAM_TTL = 60


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        "--connection-string",
        dest="redis_url",
        metavar="URL",
        help="Redis >= 7.4 to use (default: $REDIS_URL, else start a private local redis-server)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port (default: %(default)s)")
    parser.add_argument(
        "--users", type=int, default=DEFAULT_USERS, help=f"users loaded at start, 1..{MAX_USERS} (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-ttl-seconds",
        type=int,
        default=None,
        help="key TTL of batch writes (default: the repo's batch_ttl_seconds, 172800)",
    )
    parser.add_argument(
        "--stream-ttl-seconds",
        "--streaming-ttl-seconds",
        dest="stream_ttl_seconds",
        type=int,
        default=DEFAULT_STREAM_TTL,
        help="per-field TTL of streamed features (default: %(default)s, shorter than the repo's 300 "
        "so that pausing the worker shows its effect within a minute)",
    )
    parser.add_argument(
        "--no-reset",
        dest="reset",
        action="store_false",
        help="keep the demo project's existing keys (default: delete them first)",
    )
    parser.add_argument("--repo", default=None, help="feature repo to copy (default: the checkout's feature_repo/)")
    parser.add_argument("--project", default=None, help="Feast project name (default: the repo's, hexpire_demo)")
    parser.add_argument(
        "--workdir",
        default=None,
        help="where to put the working copy of the repo (default: a temporary directory, removed on exit)",
    )
    parser.add_argument("--worker-interval", type=float, default=1.0, help="seconds between stream pushes")
    parser.add_argument(
        "--worker-batch-size",
        type=int,
        default=5,
        help="least users per stream push (default: %(default)s; the worker pushes as many as keep every "
        "user refreshed twice per stream TTL)",
    )
    parser.add_argument("--no-worker", dest="worker", action="store_false", help="start with the worker paused")


def _source_repo(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    for candidate in (DEFAULT_SOURCE_REPO, Path.cwd() / "feature_repo"):
        if (candidate / "feature_store.yaml").is_file():
            return candidate
    return DEFAULT_SOURCE_REPO


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SystemExit(f"error: cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None


@contextlib.contextmanager
def _redis(url: str | None) -> Iterator[Any]:
    from devsupport.redis_server import ExternalRedis, check_server_version, server_for_local_use
    from feast_redis_hexpire.redaction import redact

    if url:
        if "://" not in url:
            url = f"redis://{url}"
        version = check_server_version(url)
        print(
            f"[redis] using {redact(url)} (Redis {'.'.join(map(str, version))}); it will be left running",
            flush=True,
        )
        yield ExternalRedis.from_url(url)
        return
    with server_for_local_use(log=lambda m: print(m, flush=True), search=True) as server:
        yield server


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("feast", "feature_repo.stream_producer", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    from devsupport.redis_binary import RedisProvisioningError
    from feast_redis_hexpire.redaction import redact

    from .errors import DemoError

    _configure_logging()
    if not 1 <= args.users <= MAX_USERS:
        print(f"error: --users must be between 1 and {MAX_USERS}", file=sys.stderr)
        return 2
    for name in ("batch_ttl_seconds", "stream_ttl_seconds"):
        value = getattr(args, name)
        if value is not None and value < 0:
            print(f"error: --{name.replace('_', '-')} must be >= 0 (0 = no expiry)", file=sys.stderr)
            return 2
    _check_port_free(args.host, args.port)

    if threading.current_thread() is threading.main_thread():
        # SIGTERM must unwind like Ctrl-C: stop the worker, the local Redis, remove the temp dir.
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="feast-hexpire-demo-"))
    try:
        with _redis(args.redis_url) as server:
            from .runtime import DemoRuntime  # imports Feast: only once Redis answered

            runtime = DemoRuntime(
                server.connection_string,
                workdir,
                source_repo=_source_repo(args.repo),
                project=args.project,
                users=args.users,
                batch_ttl_seconds=args.batch_ttl_seconds,
                stream_ttl_seconds=args.stream_ttl_seconds,
                reset=args.reset,
                worker_interval=args.worker_interval,
                worker_batch_size=args.worker_batch_size,
                start_worker=args.worker,
                redis_label=server.url,
                log=lambda m: print(m, flush=True),
            )
            try:
                runtime.setup()
                _print_commands(runtime, server.url, from_env=not args.redis_url and bool(os.environ.get("REDIS_URL")))
                serve(runtime, args.host, args.port)
            except KeyboardInterrupt:  # uvicorn re-raises the SIGINT/SIGTERM it shut down on
                pass
            finally:
                runtime.close()  # before a local Redis stops: the worker's last push must not fail
    except (RedisProvisioningError, DemoError, FileNotFoundError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("demo stopped", flush=True)
    return 0


def _print_commands(runtime: Any, url: str, *, from_env: bool) -> None:
    lines = operator_commands(runtime.workdir, url, runtime.user_ids[0], from_env=from_env)
    print(
        "\n[demo] the operator CLI on this demo's Redis and working repo, to paste into any shell "
        "while the demo runs (no venv needed):",
        flush=True,
    )
    for line in lines:
        print(f"  {line}", flush=True)


def serve(runtime: Any, host: str, port: int) -> None:
    """Serve in the foreground until Ctrl-C / SIGTERM."""
    import uvicorn

    from .app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(runtime), host=host, port=port, log_level="warning", access_log=False)
    )
    announce = threading.Thread(target=_announce, args=(server, host, port), daemon=True)
    announce.start()
    server.run()


def _announce(server: Any, host: str, port: int) -> None:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if server.started:
        print(f"\nDemo ready: http://{host}:{port}/   (JSON API: /state, /docs; Ctrl-C to stop)\n", flush=True)


class BackgroundServer:
    """uvicorn in a daemon thread on a free port: for tests and scripts."""

    def __init__(self, runtime: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        import uvicorn

        from .app import create_app

        if port is None:
            with socket.socket() as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(runtime), host=host, port=port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, name="demo-http", daemon=True)

    def start(self, timeout: float = 30) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"demo server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
