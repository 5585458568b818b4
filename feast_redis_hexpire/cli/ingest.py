"""`feast-redis-hexpire ingest`: run a StreamIngester from the command line.

    feast-redis-hexpire ingest --repo feature_repo --push-source user_activity_push \\
        --stream events --group feast [--consumer worker-1] [--metrics-port 8000]

It loads the repo's FeatureStore (the registry `feast apply` wrote), then consumes until
SIGTERM or SIGINT, which stop it after the batch in hand is written and acknowledged. The
stream is read on the store's own Redis. On exit it prints what it did as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from .helpers import EXIT_ERROR, EXIT_OK, describe_error, err


def add_ingest_parser(sub: Any) -> None:
    p = sub.add_parser("ingest", help="write a Redis Stream's entries as events of a push source (consumer group)")
    p.add_argument("--repo", default="feature_repo", help="Feast repo directory (default: %(default)s)")
    p.add_argument("--push-source", required=True, help="the push source (or stream view) the entries are events of")
    p.add_argument("--stream", required=True, help="the stream key")
    p.add_argument("--group", required=True, help="the consumer group (created at the stream's start if missing)")
    p.add_argument("--consumer", default=None, help="this consumer's name (default: <hostname>-<pid>)")
    p.add_argument("--batch", type=int, default=1000, help="entries per read and write (default: %(default)s)")
    p.add_argument("--block-ms", type=int, default=500, help="how long a read waits for entries (default: %(default)s)")
    p.add_argument(
        "--claim-idle-ms",
        type=int,
        default=30_000,
        help="claim entries pending this long with another consumer (default: %(default)s)",
    )
    p.add_argument("--dead-letter-stream", default=None, help="where unwritable entries go (default: <stream>:dead)")
    p.add_argument(
        "--start-id", default="0", help="where a group created here starts: 0 (default) or $ (only new entries)"
    )
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.add_argument("-v", "--verbose", action="store_true")


def run_ingest(args: argparse.Namespace) -> int:
    from feast import FeatureStore

    from ..stream_ingest import StreamIngester

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("feast").setLevel(logging.WARNING)
    try:
        store = FeatureStore(repo_path=args.repo)
        ingester = StreamIngester(
            store,
            args.push_source,
            args.stream,
            args.group,
            consumer=args.consumer,
            batch=args.batch,
            block_ms=args.block_ms,
            claim_idle_ms=args.claim_idle_ms,
            dead_letter_stream=args.dead_letter_stream,
            start_id=args.start_id,
        )
        ingester.ensure_group()
    except Exception as exc:  # noqa: BLE001 - a CLI reports, it does not trace back
        err(f"error: could not start ingesting: {describe_error(exc)}")
        return EXIT_ERROR
    if args.metrics_port is not None:
        from feast import metrics as feast_metrics

        feast_metrics.start_metrics_server(
            store, args.metrics_port, start_resource_monitoring=False, start_freshness_monitoring=False
        )
    err(f"ingesting stream {args.stream!r} as {ingester.consumer!r} of group {args.group!r} into {args.push_source!r}")
    stats = ingester.run(handle_signals=True)
    print(json.dumps(stats.as_dict()), flush=True)
    return EXIT_OK
