"""`python -m demo`: the live demo page on a local Redis (what `make demo` runs)."""

import argparse
import sys

from .server import add_demo_arguments, run_demo


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="The feast-redis-hexpire demo: a local Redis, the sample repo materialized, a streaming "
        "worker, and a page at http://127.0.0.1:8091.",
    )
    add_demo_arguments(parser)
    print("feast-redis-hexpire demo: starting (importing Feast takes a few seconds) ...", flush=True)
    return run_demo(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
