"""Peak memory of a whole materialize: one fresh Python process per write path.

The parent writes the parquet files once; each child imports Feast, applies the repo,
notes its RSS, runs `FeatureStore.materialize` over the three views and reports its peak
RSS: VmHWM, the high-water mark of its own address space since exec. The parent also
records the child's `ru_maxrss` from `os.wait4` as a cross-check; Linux carries the
pre-exec RSS into it, so a large parent can raise it above the child's own peak. The
parent then removes the child's keys.

    python -m benchmarks.rss --child hexpire --data DIR --connection-string HOST:PORT --users N --workdir DIR
is the child; `measure_peak_rss` runs it.
"""

from __future__ import annotations

import os

os.environ.setdefault("FEAST_USAGE", "False")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import repo as benchrepo

MARK = "RSS_RESULT "
CHILD_TIMEOUT_S = 3600


def _status_kib(field: str) -> int:
    """VmRSS / VmHWM of this process, KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rss --child")
    parser.add_argument("--child", required=True, choices=sorted(benchrepo.KINDS))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--connection-string", required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)
    from .measure import quiet
    from .paths import materialize_window

    paths = {view: args.data / f"{view}.parquet" for view in benchrepo.VIEWS}
    with quiet():
        repo = benchrepo.build_repo(
            args.child, args.connection_string, paths, benchrepo.new_run_id(), root=args.workdir
        )
    before = {"rss_kib": _status_kib("VmRSS"), "hwm_kib": _status_kib("VmHWM")}
    start, end = materialize_window()
    t0 = time.perf_counter()
    with quiet():
        repo.store.materialize(start, end)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - t0
    result = {
        "kind": args.child,
        "provider": type(repo.store._get_provider()).__name__,  # type: ignore[attr-defined]
        "project": repo.project,
        "key_pattern": repo.key_pattern(),
        "users": args.users,
        "rows": args.users * len(benchrepo.VIEWS),
        "materialize_seconds": round(seconds, 3),
        "rows_per_s": round(args.users * len(benchrepo.VIEWS) / seconds, 1),
        "rss_before_materialize_mib": round(before["rss_kib"] / 1024, 1),
        "peak_before_materialize_mib": round(before["hwm_kib"] / 1024, 1),
        "peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
    }
    print(MARK + json.dumps(result), flush=True)
    return 0


def _run_child(cmd: list[str], cwd: Path, log_path: Path) -> tuple[int, Any]:
    """Start the child and reap it with wait4, which returns that child's rusage only."""
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
                return proc.returncode, usage
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.2)


def measure_peak_rss(
    kinds: Sequence[str],
    users: int,
    connection_string: str,
    client: Any,
    root: Path,
    seed: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Materialize `users` users in a fresh process per kind; peak RSS, time, rows/s."""
    from .harness import delete_prefix

    out: dict[str, Any] = {"users": users, "rows": users * len(benchrepo.VIEWS), "kinds": {}}
    workdir = Path(tempfile.mkdtemp(prefix="feast-hexpire-rss-"))
    try:
        log(f"peak RSS: generating {users:,} users for a fresh process per path")
        frames = benchrepo.generate(users, seed=seed)
        benchrepo.write_parquet(frames, workdir / "data")
        del frames
        for kind in kinds:
            cmd = [sys.executable, "-m", "benchmarks.rss", "--child", kind, "--data", str(workdir / "data")]
            cmd += ["--connection-string", connection_string, "--users", str(users), "--workdir", str(workdir)]
            log_path = workdir / f"{kind}.log"
            code, usage = _run_child(cmd, root, log_path)
            text = log_path.read_text(errors="replace")
            lines = [line for line in text.splitlines() if line.startswith(MARK)]
            if code != 0 or not lines:
                out["kinds"][kind] = {"error": f"child exited {code}: {text[-2000:]}"}
                log(f"peak RSS {kind}: FAILED (exit {code})")
                continue
            result = json.loads(lines[-1][len(MARK) :])
            result["ru_maxrss_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
            result["materialize_growth_mib"] = round(result["peak_rss_mib"] - result["rss_before_materialize_mib"], 1)
            out["kinds"][kind] = result
            deleted = delete_prefix(client, result["key_pattern"])
            log(
                f"peak RSS {kind}: {result['peak_rss_mib']:,.0f} MiB (before materialize "
                f"{result['rss_before_materialize_mib']:,.0f} MiB), {result['rows']:,} rows in "
                f"{result['materialize_seconds']:.1f} s; removed {deleted:,} keys"
            )
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return out


if __name__ == "__main__":
    sys.exit(child(sys.argv[1:]))
