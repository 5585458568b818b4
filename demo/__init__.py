"""The demo web app: ``make demo`` (``python -m demo``).

``runtime.DemoRuntime`` holds the demo's state and hands each job to its module:
``loading`` (working copy of feature_repo/, bulk loads, reset), ``reads`` (timed
``get_online_features``), ``inspection`` (a user's hash; entity count, coverage and served
age), ``catalog`` (the views' features and the loaded users), ``similar`` (KNN over the
user_embedding view on the Query Engine). Beside them ``worker`` (the
streaming worker's lifecycle) runs in ``worker_process``, a process of its own (its pushes
would hold the GIL the reads wait for); ``coverage`` and ``freshness`` measure stream
fields and served age in Redis, ``latency`` keeps recent reads for the chart, ``errors``
the user-facing errors. ``app.create_app`` puts a page and a JSON API on it;
``server.run_demo`` is the command and ``commands`` the operator CLI lines it prints.
Static files live in ``static/`` (no build step).
"""

from pathlib import Path

# Shared by the command line (which must not import Feast just to print --help) and the runtime.
CHECKOUT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE_REPO = CHECKOUT / "feature_repo"
DEFAULT_USERS = 200
MAX_USERS = 10_000
MAX_TTL_SECONDS = 365 * 86400
