"""The demo web app: ``make demo`` (``python -m demo``).

``runtime.DemoRuntime`` does the work (working copy of feature_repo/, apply, bulk loads,
reads); beside it ``worker`` (the streaming worker's lifecycle) run by ``worker_process`` in
a process of its own (its pushes would hold the GIL the reads wait for), ``coverage`` (fresh stream
fields, measured in Redis), ``latency`` (recent reads for the chart) and ``errors``.
``app.create_app`` puts a page and a JSON API on it; ``server.run_demo`` is the command
and ``commands`` the operator CLI lines it prints. Static files live in ``static/`` (no
build step).
"""

from pathlib import Path

# Shared by the command line (which must not import Feast just to print --help) and the runtime.
CHECKOUT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE_REPO = CHECKOUT / "feature_repo"
DEFAULT_USERS = 200
MAX_USERS = 10_000
MAX_TTL_SECONDS = 365 * 86400
