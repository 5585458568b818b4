"""Turn the results dict into ratios, PASS/MISS target checks and a readable table."""

from __future__ import annotations

import math
from typing import Any

# Measured on the reference machine (2 cores, 20k users), from the issue. Shown next to
# this run's built-in / raw figures so a reader can tell whether the machine behaves alike.
ANCHORS = {
    "builtin_materialize_rows_per_s": 15800,
    "builtin_push_rows_per_s": 15400,
    "raw_hset_expire_rows_per_s": 92000,
    "raw_hset_hexpire_rows_per_s": 75000,
    "builtin_gof_p50_ms": {1: 0.39, 10: 0.97, 100: 7.0, 1000: 74.0},
    "raw_hmget_p50_ms": {1: 0.13, 10: 0.22, 100: 0.89, 1000: 6.3},
}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def _lat(results: dict[str, Any], target: str, n: int, stat: str, frozen: bool = False) -> float | None:
    mode = "gc_frozen" if frozen else "gc_normal"
    try:
        return results["latency"][str(n)][mode][target][stat]
    except KeyError:
        return None


def _tp(results: dict[str, Any], name: str) -> float | None:
    entry = results["throughput"].get(name)
    return entry["rows_per_s"] if entry else None


def compute_ratios(results: dict[str, Any]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    results["throughput"]
    for metric in ("materialize", "push"):
        ours = _tp(results, f"hexpire_{metric}")
        ratios[f"{metric}_vs_builtin"] = _ratio(ours, _tp(results, f"builtin_{metric}"))
    ours = _tp(results, "hexpire_materialize")
    ratios["materialize_vs_raw_hset_expire"] = _ratio(ours, _tp(results, "raw_hset_expire"))
    ratios["materialize_vs_raw_hset_hexpire"] = _ratio(ours, _tp(results, "raw_hset_hexpire"))
    for n in results["latency"]:
        for mode, frozen in (("gc_normal", False), ("gc_frozen", True)):
            for stat in ("p50_ms", "p99_ms"):
                for path in ("gof", "grouped_read", "online_read"):
                    ours = _lat(results, f"hexpire.{path}", int(n), stat, frozen)
                    ratios[f"{path}_{n}_{stat}_{mode}_vs_builtin"] = _ratio(
                        ours, _lat(results, f"builtin.{path}", int(n), stat, frozen)
                    )
                    ratios[f"{path}_{n}_{stat}_{mode}_vs_raw_hmget5"] = _ratio(
                        ours, _lat(results, "raw.hmget5", int(n), stat, frozen)
                    )
    mem = results.get("memory", {})
    if mem.get("hexpire") and mem.get("builtin"):
        ratios["memory_vs_builtin"] = _ratio(mem["hexpire"]["bytes_mean"], mem["builtin"]["bytes_mean"])
    if mem.get("hexpire") and mem.get("raw_hset_expire"):
        ratios["memory_vs_raw_hset_expire"] = _ratio(mem["hexpire"]["bytes_mean"], mem["raw_hset_expire"]["bytes_mean"])
    return {k: (round(v, 4) if v is not None else None) for k, v in ratios.items()}


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each as PASS/MISS from this run's ratios (n/a when not measured)."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, kind: str, detail: str) -> None:
        if value is None:
            verdict = "n/a"
        elif kind == "max":
            verdict = "PASS" if value <= limit else "MISS"
        else:
            verdict = "PASS" if value >= limit else "MISS"
        op = "<=" if kind == "max" else ">="
        checks.append(
            {
                "target": name,
                "ratio": None if value is None else round(value, 3),
                "limit": f"{op} {limit}x",
                "result": verdict,
                "detail": detail,
            }
        )

    for n in (100, 1000):
        for stat, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
            for frozen in (False,) if stat == "p50_ms" else (False, True):
                ours = _lat(results, "hexpire.gof", n, stat, frozen)
                theirs = _lat(results, "builtin.gof", n, stat, frozen)
                tag = "" if stat == "p50_ms" else (" (gc.freeze)" if frozen else " (gc normal)")
                add(
                    f"get_online_features {n} ent {label}{tag} vs built-in",
                    _ratio(ours, theirs),
                    0.4,
                    "max",
                    f"{_fmt_ms(ours)} vs {_fmt_ms(theirs)}",
                )
    for n in (1, 10, 100, 1000):
        ours = _lat(results, "hexpire.grouped_read", n, "p50_ms")
        raw = _lat(results, "raw.hmget5", n, "p50_ms")
        add(
            f"store read path (grouped) {n} ent p50 vs raw HMGET",
            _ratio(ours, raw),
            1.5,
            "max",
            f"{_fmt_ms(ours)} vs {_fmt_ms(raw)}",
        )
    ours = _lat(results, "hexpire.gof", 1, "p50_ms")
    theirs = _lat(results, "builtin.gof", 1, "p50_ms")
    add(
        "get_online_features 1 ent p50 vs built-in",
        _ratio(ours, theirs),
        0.7,
        "max",
        f"{_fmt_ms(ours)} vs {_fmt_ms(theirs)}",
    )
    ours = _tp(results, "hexpire_materialize")
    add(
        "materialize rows/s vs built-in",
        _ratio(ours, _tp(results, "builtin_materialize")),
        2.0,
        "min",
        f"{_fmt_rate(ours)} vs {_fmt_rate(_tp(results, 'builtin_materialize'))}",
    )
    add(
        "materialize rows/s vs raw HSET+EXPIRE",
        _ratio(ours, _tp(results, "raw_hset_expire")),
        0.5,
        "min",
        f"{_fmt_rate(ours)} vs {_fmt_rate(_tp(results, 'raw_hset_expire'))}",
    )
    ours = _tp(results, "hexpire_push")
    add(
        "push rows/s vs built-in",
        _ratio(ours, _tp(results, "builtin_push")),
        1.5,
        "min",
        f"{_fmt_rate(ours)} vs {_fmt_rate(_tp(results, 'builtin_push'))}",
    )
    return checks


# ---------------------------------------------------------------- formatting


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} ms" if v < 10 else f"{v:.1f} ms"


def _fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}/s"


def _fmt_x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in rows])


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    p = results["params"]
    load = m.get("loadavg") or []
    load_end = m.get("loadavg_end") or []
    out.append(
        f"feast-redis-hexpire benchmark  {m['date']}  load avg start {' '.join(f'{x:.2f}' for x in load)} "
        f"end {' '.join(f'{x:.2f}' for x in load_end)}  elapsed {results.get('elapsed_s')} s"
    )
    out.append(
        f"feast-redis-hexpire benchmark  {m['date']}  users={p['users']}  "
        f"cpus={m['cpu_count']}  python {m['python']}  redis-server {m['redis_server_version']}  "
        f"feast {m['feast']}  redis-py {m['redis_py']}  hiredis {m.get('hiredis')}"
    )
    out.append("")

    tp = results["throughput"]
    rows = []

    def tp_row(label, ours_key, builtin_key, raw_key=None):
        ours = _tp(results, ours_key) if ours_key else None
        theirs = _tp(results, builtin_key) if builtin_key else None
        raw = _tp(results, raw_key) if raw_key else None
        rows.append(
            [
                label,
                _fmt_rate(ours),
                _fmt_rate(theirs),
                _fmt_rate(raw),
                _fmt_x(_ratio(ours, theirs)),
                _fmt_x(_ratio(ours, raw)),
            ]
        )

    tp_row(
        f"materialize ({tp['hexpire_materialize']['rows']:,} rows, 3 views)",
        "hexpire_materialize",
        "builtin_materialize",
        "raw_hset_expire",
    )
    rows.append(
        [
            "  raw HSET+HEXPIRE (same rows)",
            "",
            "",
            _fmt_rate(_tp(results, "raw_hset_hexpire")),
            "",
            _fmt_x(_ratio(_tp(results, "hexpire_materialize"), _tp(results, "raw_hset_hexpire"))),
        ]
    )
    tp_row(f"push ({tp['hexpire_push']['rows']:,} rows, {p['push_batch']}/push)", "hexpire_push", "builtin_push")

    def cpu_rate(key):
        e = tp.get(key)
        return e.get("rows_per_cpu_s") if e else None

    for label, ours_key, builtin_key, raw_key in (
        ("materialize, rows per client CPU-second", "hexpire_materialize", "builtin_materialize", "raw_hset_expire"),
        ("push, rows per client CPU-second", "hexpire_push", "builtin_push", None),
    ):
        ours, theirs = cpu_rate(ours_key), cpu_rate(builtin_key)
        raw = cpu_rate(raw_key) if raw_key else None
        rows.append(
            [
                label,
                _fmt_rate(ours),
                _fmt_rate(theirs),
                _fmt_rate(raw),
                _fmt_x(_ratio(ours, theirs)),
                _fmt_x(_ratio(ours, raw)),
            ]
        )
    out.append(
        f"Write throughput (rows/s, median of {p.get('repeats', 1)} runs; higher is better; "
        "raw = pipelined HSET+EXPIRE unless noted)"
    )
    out.append(_table(["metric", "this store", "built-in", "raw redis-py", "this/built-in", "this/raw"], rows))
    out.append("")

    rows = []
    for key, label in (
        ("hexpire_materialize", "materialize, this store"),
        ("builtin_materialize", "materialize, built-in"),
        ("raw_hset_expire", "raw HSET+EXPIRE"),
        ("raw_hset_hexpire", "raw HSET+HEXPIRE"),
        ("hexpire_push", "push, this store"),
        ("builtin_push", "push, built-in"),
    ):
        e = tp.get(key)
        if not e:
            continue
        rows_n = e["rows"]
        wb = e.get("online_write_batch")
        server = e.get("redis_server", {})
        rows.append(
            [
                label,
                f"{e['seconds']:.2f} s",
                f"{1e6 * e['seconds'] / rows_n:.1f}",
                f"{1e6 * wb['seconds'] / rows_n:.1f}" if wb else "-",
                f"{1e6 * e['feast_seconds'] / rows_n:.1f}" if wb else "-",
                f"{1e6 * e['cpu_seconds'] / rows_n:.1f}",
                f"{server.get('usec_per_row', '-')}",
            ]
        )
    out.append(
        "Where write time goes (median run; us per row): the store's online_write_batch vs the rest of Feast, "
        "and Redis server time (commandstats; EVALSHA includes its script's commands)"
    )
    out.append(
        _table(
            [
                "run",
                "wall",
                "wall us/row",
                "in online_write_batch",
                "Feast (rest)",
                "client CPU us/row",
                "Redis server us/row",
            ],
            rows,
        )
    )
    out.append("")

    for frozen in (False, True):
        mode = "gc.freeze() after warm-up" if frozen else "gc normal"
        rows = []
        for n in sorted(int(k) for k in results["latency"]):
            for path, label in (
                ("gof", "get_online_features"),
                ("grouped_read", "grouped read (_read_features_per_fv)"),
                ("online_read", "online_read x3 views"),
            ):
                for stat in ("p50_ms", "p99_ms"):
                    ours = _lat(results, f"hexpire.{path}", n, stat, frozen)
                    theirs = _lat(results, f"builtin.{path}", n, stat, frozen)
                    raw = _lat(results, "raw.hmget5", n, stat, frozen)
                    rows.append(
                        [
                            f"{n:>4} ent  {label} {stat[:3]}",
                            _fmt_ms(ours),
                            _fmt_ms(theirs),
                            _fmt_ms(raw),
                            _fmt_x(_ratio(ours, theirs)),
                            _fmt_x(_ratio(ours, raw)),
                        ]
                    )
            raw8 = _lat(results, "raw.hmget8", n, "p50_ms", frozen)
            rows.append([f"{n:>4} ent  (raw HMGET 5 fields + 3 _ts fields p50)", "", "", _fmt_ms(raw8), "", ""])
        out.append(f"Read latency, {mode} (ms; lower is better; raw = pipelined HMGET of the same 5 fields)")
        out.append(_table(["metric", "this store", "built-in", "raw redis-py", "this/built-in", "this/raw"], rows))
        out.append("")

    rows = []
    for n in sorted(int(k) for k in results["latency"]):
        for path, label in (("gof", "get_online_features"), ("grouped_read", "grouped read")):
            ours = _lat(results, f"hexpire.{path}", n, "cpu_p50_ms")
            theirs = _lat(results, f"builtin.{path}", n, "cpu_p50_ms")
            raw = _lat(results, "raw.hmget5", n, "cpu_p50_ms")
            rows.append(
                [
                    f"{n:>4} ent  {label}",
                    _fmt_ms(ours),
                    _fmt_ms(theirs),
                    _fmt_ms(raw),
                    _fmt_x(_ratio(ours, theirs)),
                    _fmt_x(_ratio(ours, raw)),
                ]
            )
    out.append(
        "Client CPU time per call, p50, gc normal (thread CPU; excludes waiting on Redis; a busy machine "
        "inflates wall time far more than this)"
    )
    out.append(_table(["metric", "this store", "built-in", "raw redis-py", "this/built-in", "this/raw"], rows))
    out.append("")

    mem = results.get("memory", {})
    if mem:
        rows = []
        for key, label in (
            ("hexpire", "this store"),
            ("builtin", "built-in"),
            ("raw_hset_expire", "raw HSET+EXPIRE"),
            ("raw_hset_hexpire", "raw HSET+HEXPIRE"),
        ):
            e = mem.get(key)
            if e:
                rows.append(
                    [
                        label,
                        f"{e['bytes_mean']:.0f}",
                        f"{e['fields_per_key']}",
                        ",".join(e["encodings"]),
                        _fmt_x(_ratio(e["bytes_mean"], mem.get("builtin", {}).get("bytes_mean"))),
                    ]
                )
        out.append(f"Redis memory per entity (MEMORY USAGE SAMPLES 0, mean over {mem['hexpire']['sampled']} keys)")
        out.append(_table(["store", "bytes/entity", "fields", "encoding", "vs built-in"], rows))
        out.append("")

    checks = results.get("targets", [])
    if checks:
        out.append("Targets (ratios from this run)")
        out.append(
            _table(
                ["target", "ratio", "limit", "result", "this vs other"],
                [
                    [
                        c["target"],
                        "-" if c["ratio"] is None else f"{c['ratio']:.3f}x",
                        c["limit"],
                        c["result"],
                        c["detail"],
                    ]
                    for c in checks
                ],
            )
        )
        passed = sum(c["result"] == "PASS" for c in checks)
        out.append(f"{passed}/{len(checks)} PASS")
        out.append("")

    rows = [
        [
            "built-in materialize rows/s",
            _fmt_rate(_tp(results, "builtin_materialize")),
            _fmt_rate(ANCHORS["builtin_materialize_rows_per_s"]),
        ],
        [
            "built-in push rows/s",
            _fmt_rate(_tp(results, "builtin_push")),
            _fmt_rate(ANCHORS["builtin_push_rows_per_s"]),
        ],
        [
            "raw HSET+EXPIRE rows/s",
            _fmt_rate(_tp(results, "raw_hset_expire")),
            _fmt_rate(ANCHORS["raw_hset_expire_rows_per_s"]),
        ],
        [
            "raw HSET+HEXPIRE rows/s",
            _fmt_rate(_tp(results, "raw_hset_hexpire")),
            _fmt_rate(ANCHORS["raw_hset_hexpire_rows_per_s"]),
        ],
    ]
    for n in (1, 10, 100, 1000):
        rows.append(
            [
                f"built-in gof {n} ent p50",
                _fmt_ms(_lat(results, "builtin.gof", n, "p50_ms")),
                _fmt_ms(ANCHORS["builtin_gof_p50_ms"][n]),
            ]
        )
        rows.append(
            [
                f"raw HMGET {n} ent p50",
                _fmt_ms(_lat(results, "raw.hmget5", n, "p50_ms")),
                _fmt_ms(ANCHORS["raw_hmget_p50_ms"][n]),
            ]
        )
    out.append("Environment check: this run's baselines vs the issue's anchors (20k users, reference machine)")
    out.append(_table(["baseline", "this run", "anchor"], rows))
    out.append("")

    gcs = []
    for n, modes in sorted(results["latency"].items(), key=lambda kv: int(kv[0])):
        for target, s in modes["gc_normal"].items():
            g = s["gc"]
            if g["gen2"]:
                gcs.append(f"{target} {n} ent: {g['gen2']} full collections, max pause {g['pause_ms_max']} ms")
    out.append("Full (gen2) GC passes during gc-normal latency series: " + ("; ".join(gcs) if gcs else "none"))
    return "\n".join(out)


def render_scale(scale: dict[str, Any]) -> str:
    rows = []
    for entry in scale["points"]:
        rows.append(
            [
                entry["store"],
                f"{entry['users']:,}",
                f"{entry['rows']:,}",
                f"{entry['seconds']:.2f} s",
                _fmt_rate(entry["rows_per_s"]),
                f"{entry['us_per_row']:.2f} us",
                f"{entry.get('relative_us_per_row', 1.0):.2f}x",
                _us(entry, "online_write_batch_seconds"),
                _us(entry, "feast_seconds"),
                f"{entry.get('redis_server_usec_per_row') or '-'}",
                f"{entry.get('redis_used_memory_mb', 0):.0f} MB",
                f"{entry.get('process_max_rss_mb', 0):.0f} MB",
            ]
        )
    return "Materialize scaling (3 views, one row per user per view)\n" + _table(
        [
            "store",
            "users",
            "rows",
            "time",
            "rows/s",
            "per row",
            "vs smallest",
            "store us/row",
            "Feast us/row",
            "Redis us/row",
            "redis mem",
            "proc max RSS",
        ],
        rows,
    )


def _us(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    return "-" if value is None else f"{1e6 * value / entry['rows']:.1f} us"
