"""Turn the results dict into ratios, PASS/MISS target checks and readable tables."""

from __future__ import annotations

import math
from typing import Any

# Measured on the reference machine (2 cores, 20k users), from the issue. Shown next to
# this run's built-in / raw figures so a reader can tell whether the machine behaves alike.
ANCHORS = {
    "builtin_materialize_rows_per_s": 15800,
    "builtin_push_rows_per_s": 15400,
    "raw_hset_expire_rows_per_s": 92000,
    "builtin_gof_p50_ms": {1: 0.39, 10: 0.97, 100: 7.0, 1000: 74.0},
    "raw_hmget_p50_ms": {1: 0.13, 10: 0.22, 100: 0.89, 1000: 6.3},
}

PATH_LABELS = {
    "builtin": "built-in (type: redis)",
    "hexpire": "this store (plain names)",
    "hexpire_qualified": "this store (qualified names)",
    "hexpire_fast": "this store + HexpireProvider",
    "raw_hset_expire": "raw HSET+EXPIRE",
    "raw_hsetex": "raw HSET+EXPIRE / HSETEX",
}
STORES = ("hexpire", "hexpire_fast")  # the paths the targets are about


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
    entry = results.get("throughput", {}).get(name)
    return entry["rows_per_s"] if entry else None


def _cpu(results: dict[str, Any], name: str, figure: str = "us_per_row") -> float | None:
    """Redis CPU per row: `us_per_row` (the process), `main_thread_us_per_row`,
    `net_of_idle_us_per_row`."""
    entry = results.get("throughput", {}).get(name)
    return entry["redis_cpu"].get(figure) if entry else None


def _mem(results: dict[str, Any], path: str) -> float | None:
    entry = results.get("throughput", {}).get(f"{path}_materialize")
    return entry["used_memory_per_entity"]["steady"] if entry and "used_memory_per_entity" in entry else None


def _mem_usage(results: dict[str, Any], path: str) -> float | None:
    entry = results.get("memory_usage", {}).get(path)
    return entry["bytes_mean"] if entry else None


def _rss(results: dict[str, Any], kind: str) -> float | None:
    entry = results.get("peak_rss", {}).get("kinds", {}).get(kind)
    return entry.get("peak_rss_mib") if entry else None


def _instructions(results: dict[str, Any], variant: str, what: str) -> float | None:
    entry = results.get("server_cost", {}).get("variants", {}).get(variant)
    return entry["per_row"][what] if entry and "per_row" in entry else None


def compute_ratios(results: dict[str, Any]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for path in PATH_LABELS:
        if path == "builtin":
            continue
        for op in ("materialize", "push"):
            ratios[f"{path}_{op}_rows_per_s_vs_builtin"] = _ratio(
                _tp(results, f"{path}_{op}"), _tp(results, f"builtin_{op}")
            )
            ratios[f"{path}_{op}_redis_cpu_vs_builtin"] = _ratio(
                _cpu(results, f"{path}_{op}"), _cpu(results, f"builtin_{op}")
            )
            for figure in ("main_thread_us_per_row", "net_of_idle_us_per_row"):
                ratios[f"{path}_{op}_redis_cpu_{figure}_vs_builtin"] = _ratio(
                    _cpu(results, f"{path}_{op}", figure), _cpu(results, f"builtin_{op}", figure)
                )
            ratios[f"{path}_{op}_instructions_vs_builtin"] = _ratio(
                _instructions(results, path, op), _instructions(results, "builtin", op)
            )
        ratios[f"{path}_used_memory_vs_builtin"] = _ratio(_mem(results, path), _mem(results, "builtin"))
        ratios[f"{path}_memory_usage_vs_builtin"] = _ratio(_mem_usage(results, path), _mem_usage(results, "builtin"))
    ratios["hexpire_fast_peak_rss_vs_hexpire"] = _ratio(_rss(results, "hexpire_fast"), _rss(results, "hexpire"))
    for n in results.get("latency", {}):
        for mode, frozen in (("gc_normal", False), ("gc_frozen", True)):
            for stat in ("p50_ms", "p99_ms"):
                for target in ("hexpire.gof", "hexpire_fast.gof", "hexpire.grouped_read", "hexpire.online_read"):
                    theirs = "builtin." + target.split(".")[1]
                    ratios[f"{target}_{n}_{stat}_{mode}_vs_builtin"] = _ratio(
                        _lat(results, target, int(n), stat, frozen), _lat(results, theirs, int(n), stat, frozen)
                    )
                ratios[f"hexpire.grouped_read_{n}_{stat}_{mode}_vs_raw_hmget5"] = _ratio(
                    _lat(results, "hexpire.grouped_read", int(n), stat, frozen),
                    _lat(results, "raw.hmget5", int(n), stat, frozen),
                )
    return {k: (round(v, 4) if v is not None else None) for k, v in ratios.items()}


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets ("writes", item 4), each PASS/MISS from this run's ratios; n/a
    when not measured (a kind not available, a phase skipped)."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, kind: str, detail: str) -> None:
        if value is None:
            verdict = "n/a"
        elif kind == "max":
            verdict = "PASS" if value <= limit else "MISS"
        else:
            verdict = "PASS" if value >= limit else "MISS"
        checks.append(
            {
                "target": name,
                "ratio": None if value is None else round(value, 3),
                "limit": f"{'<=' if kind == 'max' else '>='} {limit}x",
                "result": verdict,
                "detail": detail,
            }
        )

    unavailable = results.get("unavailable", {})
    for store in STORES:
        label = PATH_LABELS[store]
        if store in unavailable:
            add(f"{label}: measured", None, 1.0, "max", f"not available: {unavailable[store][:90]}")
            continue
        for op in ("materialize", "push"):
            ours, theirs = _cpu(results, f"{store}_{op}"), _cpu(results, f"builtin_{op}")
            net = _ratio(
                _cpu(results, f"{store}_{op}", "net_of_idle_us_per_row"),
                _cpu(results, f"builtin_{op}", "net_of_idle_us_per_row"),
            )
            add(
                f"{label}: Redis CPU/row, {op}",
                _ratio(ours, theirs),
                1.0,
                "max",
                f"{_fmt(ours, US)} vs {_fmt(theirs, US)} (INFO cpu, process; net of idle {_fmt(net, X)})",
            )
            ours, theirs = _instructions(results, store, op), _instructions(results, "builtin", op)
            if ours is not None:
                add(
                    f"{label}: instructions/row, {op}",
                    _ratio(ours, theirs),
                    1.0,
                    "max",
                    f"{ours:,.0f} vs {theirs:,.0f} (callgrind)" if theirs else f"{ours:,.0f}",
                )
    ours, theirs = _mem(results, "hexpire"), _mem(results, "builtin")
    usage = _ratio(_mem_usage(results, "hexpire"), _mem_usage(results, "builtin"))
    add(
        "memory/entity, plain names (used_memory, steady)",
        _ratio(ours, theirs),
        1.5,
        "max",
        f"{_fmt(ours, BYTES)} vs {_fmt(theirs, BYTES)}; MEMORY USAGE {_fmt(usage, X)}; qualified "
        f"{_fmt(_ratio(_mem(results, 'hexpire_qualified'), theirs), X)}",
    )
    fast = PATH_LABELS["hexpire_fast"]
    for op, limit in (("materialize", 3.0), ("push", 2.0)):
        ours, theirs = _tp(results, f"hexpire_fast_{op}"), _tp(results, f"builtin_{op}")
        add(f"{fast}: {op} rows/s", _ratio(ours, theirs), limit, "min", f"{_fmt(ours, RATE)} vs {_fmt(theirs, RATE)}")
    rss = results.get("peak_rss", {})
    ours, theirs = _rss(results, "hexpire_fast"), _rss(results, "hexpire")
    add(
        f"{fast}: peak RSS of materialize vs default path",
        _ratio(ours, theirs),
        0.25,
        "max",
        (
            f"{_fmt(ours, MIB)} vs {_fmt(theirs, MIB)} at {rss['users']:,} users"
            + ("" if rss["users"] == 1_000_000 else " (the issue: 1,000,000)")
        )
        if rss
        else "not measured (--rss-users 0)",
    )
    for store in STORES:
        for n, limit in ((1, 0.7), (100, 0.4), (1000, 0.4)):
            ours, theirs = _lat(results, f"{store}.gof", n, "p50_ms"), _lat(results, "builtin.gof", n, "p50_ms")
            if store != "hexpire" and ours is None:
                continue
            add(
                f"{PATH_LABELS[store]}: get_online_features {n} ent p50",
                _ratio(ours, theirs),
                limit,
                "max",
                f"{_fmt_ms(ours)} vs {_fmt_ms(theirs)}",
            )
    return checks


# ---------------------------------------------------------------- formatting


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f} ms" if v < 10 else f"{v:.1f} ms"


RATE, X, US, BYTES, MIB, COUNT = "{:,.0f}/s", "{:.2f}x", "{:.2f} us", "{:.0f} B", "{:,.0f} MiB", "{:,.0f}"


def _fmt(v: float | None, spec: str) -> str:
    """A figure in `spec`, or "-" when it was not measured."""
    return "-" if v is None else spec.format(v)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep] + [line(r) for r in rows])


WRITE_COLUMNS = ["path", "rows/s", "vs built-in", "Redis CPU/row", "main thread", "net of idle", "vs built-in"]


def _write_row(results: dict[str, Any], path: str, op: str) -> list[str]:
    """A path's rows/s and Redis CPU per row for one operation, each beside the built-in's."""
    name, base = f"{path}_{op}", f"builtin_{op}"
    return [
        PATH_LABELS[path],
        _fmt(_tp(results, name), RATE),
        _fmt(_ratio(_tp(results, name), _tp(results, base)), X),
        _fmt(_cpu(results, name), US),
        _fmt(_cpu(results, name, "main_thread_us_per_row"), US),
        _fmt(_cpu(results, name, "net_of_idle_us_per_row"), US),
        _fmt(_ratio(_cpu(results, name), _cpu(results, base)), X),
    ]


def _write_tables(results: dict[str, Any], out: list[str]) -> None:
    tp = results["throughput"]
    p = results["params"]
    paths = [path for path in PATH_LABELS if f"{path}_materialize" in tp]
    rows = [
        _write_row(results, path, "materialize")
        + [
            _fmt(_mem(results, path), BYTES),
            _fmt(_mem_usage(results, path), BYTES),
            _fmt(_ratio(_mem(results, path), _mem(results, "builtin")), X),
        ]
        for path in paths
    ]
    rows_total = tp[f"{paths[0]}_materialize"]["rows"] if paths else 0
    out.append(
        f"Materialize, {rows_total:,} rows over 3 views into an empty keyspace (medians of {p['repeats']} repeats, "
        "paths interleaved; Redis CPU = INFO cpu delta / rows; memory = used_memory delta / entity from repeat 2 on, "
        "and MEMORY USAGE of sampled keys)"
    )
    out.append(_table([*WRITE_COLUMNS, "used_memory/entity", "MEMORY USAGE/key", "vs built-in"], rows))
    out.append("")

    rows = [_write_row(results, path, "push") for path in PATH_LABELS if f"{path}_push" in tp]
    if rows:
        push_rows = tp.get("builtin_push", {}).get("rows", 0)
        out.append(f"Push, {push_rows:,} stream rows onto materialized keys, {p['push_batch']} rows per push")
        out.append(_table(WRITE_COLUMNS, rows))
        out.append("")

    rows = []
    for name, e in tp.items():
        path, _, op = name.rpartition("_")
        wb = e.get("online_write_batch")
        n = e["rows"]
        rows.append(
            [
                f"{op}, {PATH_LABELS.get(path, path)}",
                f"{1e6 * e['seconds'] / n:.1f}",
                f"{1e6 * wb['seconds'] / n:.1f}" if wb else "-",
                f"{1e6 * e['feast_seconds'] / n:.1f}" if wb else "-",
                f"{1e6 * e['cpu_seconds'] / n:.1f}",
                f"{', '.join(f'{r:,.0f}' for r in e['rows_per_s_all'])}",
            ]
        )
    out.append(
        "Where the client's time goes (run of median wall time; us per row): the store's online_write_batch "
        "vs the rest of Feast ('-': HexpireProvider and raw paths do not call it)"
    )
    out.append(
        _table(["run", "wall", "online_write_batch", "Feast (rest)", "client CPU", "rows/s of every repeat"], rows)
    )
    idle = results.get("redis_idle_cpu_us_per_s")
    if idle:
        shares = [
            idle * e["seconds"] / (e["redis_cpu"]["us_per_row"] * e["rows"])
            for e in tp.values()
            if e["redis_cpu"]["us_per_row"]
        ]
        out.append(
            f"Redis idle CPU (serverCron): {idle:.0f} us per wall second, inside every delta above: "
            f"{100 * min(shares):.0f}-{100 * max(shares):.0f}% of them (the slower a path, the more)."
        )
    out.append("")


def _rss_table(results: dict[str, Any], out: list[str]) -> None:
    rss = results.get("peak_rss")
    if not rss:
        return
    rows = []
    for kind, e in rss["kinds"].items():
        if "error" in e:
            rows.append([PATH_LABELS.get(kind, kind), "failed", "", "", "", ""])
            continue
        rows.append(
            [
                PATH_LABELS.get(kind, kind),
                _fmt(e["peak_rss_mib"], MIB),
                _fmt(e["rss_before_materialize_mib"], MIB),
                _fmt(e["materialize_growth_mib"], MIB),
                f"{e['materialize_seconds']:.1f} s",
                _fmt(e["rows_per_s"], RATE),
            ]
        )
    out.append(
        f"Peak RSS of a whole materialize, {rss['users']:,} users ({rss['rows']:,} rows), a fresh process per path "
        "(the child's VmHWM)"
    )
    out.append(_table(["path", "peak RSS", "before materialize", "growth", "materialize", "rows/s"], rows))
    out.append("")


_FLOOR_SEGMENTS = ("materialize", "batch", "stream", "push")


def render_server_cost(results: dict[str, Any]) -> str:
    """The callgrind section: instructions per row by variant, then where they go."""
    sc = results.get("server_cost", results)
    out: list[str] = []
    variants = sc.get("variants", {})
    if not variants:
        return ""
    base = variants.get("builtin", {}).get("per_row", {})
    rows = []
    for name, v in variants.items():
        if "error" in v:
            rows.append([name, "-", "", "", "", "", ""])
            continue
        r = v["per_row"]
        rows.append(
            [
                name,
                _fmt(r["materialize"], COUNT),
                _fmt(_ratio(r["materialize"], base.get("materialize")), X),
                _fmt(r["batch"], COUNT),
                _fmt(r["stream"], COUNT),
                _fmt(r["push"], COUNT),
                _fmt(_ratio(r["push"], base.get("push")), X),
            ]
        )
    out.append(
        f"Redis server instructions per written row (callgrind, {sc['users']:,} users; materialize = batch + stream "
        f"rows; excluding {sc['per_row_excludes']}; deterministic: machine load does not change them)"
    )
    out.append(
        _table(["variant", "materialize", "vs built-in", "batch rows", "stream rows", "push rows", "vs built-in"], rows)
    )
    for name, v in variants.items():
        out.append(f"  {name}: {v.get('about', '')}" + (f" -- {v['error']}" if "error" in v else ""))
    floor = variants.get("hexpire_no_script", {}).get("per_row")
    if floor:
        out.append("")
        out.append("The script's cost over the floor (hexpire_no_script: the same rows without the script), per row")
        over = []
        for name in ("hexpire", "hexpire_fast", "hexpire_qualified"):
            r = variants.get(name, {}).get("per_row")
            if r:
                over.append(
                    [name]
                    + [
                        f"{r[seg] - floor[seg]:+,.0f} ({_fmt(_ratio(r[seg], floor[seg]), X)})"
                        for seg in _FLOOR_SEGMENTS
                    ]
                )
        over.append(
            ["floor itself, vs built-in"] + [_fmt(_ratio(floor[seg], base.get(seg)), X) for seg in _FLOOR_SEGMENTS]
        )
        out.append(_table(["", *_FLOOR_SEGMENTS], over))
    out.append("")
    for name, v in variants.items():
        segments = v.get("segments", {})
        if not any("self_per_row" in s for s in segments.values()):
            continue
        out.append(f"Where {name}'s instructions go, per row (a command's row includes what it calls)")
        labels = [label for seg in segments.values() for label in seg["breakdown_per_row"]]
        labels = list(dict.fromkeys(labels))
        out.append(
            _table(
                ["", *segments],
                [
                    [label, *(_fmt(seg["breakdown_per_row"].get(label), COUNT) for seg in segments.values())]
                    for label in labels
                ],
            )
        )
        for seg_name, seg in segments.items():
            top = list(seg["self_per_row"].items())[:8]
            out.append(f"  top self, {seg_name}: " + "; ".join(f"{fn} {cost:,.0f}" for fn, cost in top))
        out.append("")
    return "\n".join(out)


def _latency_tables(results: dict[str, Any], out: list[str]) -> None:
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
                            _fmt(_ratio(ours, theirs), X),
                            _fmt(_ratio(ours, raw), X),
                        ]
                    )
            fast = _lat(results, "hexpire_fast.gof", n, "p50_ms", frozen)
            if fast is not None:
                theirs = _lat(results, "builtin.gof", n, "p50_ms", frozen)
                rows.append(
                    [
                        f"{n:>4} ent  get_online_features p50, HexpireProvider repo",
                        _fmt_ms(fast),
                        _fmt_ms(theirs),
                        "",
                        _fmt(_ratio(fast, theirs), X),
                        "",
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
                    _fmt(_ratio(ours, theirs), X),
                    _fmt(_ratio(ours, raw), X),
                ]
            )
    out.append(
        "Client CPU time per call, p50, gc normal (thread CPU; excludes waiting on Redis; a busy machine "
        "inflates wall time far more than this)"
    )
    out.append(_table(["metric", "this store", "built-in", "raw redis-py", "this/built-in", "this/raw"], rows))
    out.append("")


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    p = results["params"]
    load = m.get("loadavg") or []
    load_end = m.get("loadavg_end") or []
    out.append(
        f"feast-redis-hexpire benchmark  {m['date']}  users={p['users']}  cpus={m['cpu_count']}  "
        f"load avg start {' '.join(f'{x:.2f}' for x in load)} end {' '.join(f'{x:.2f}' for x in load_end)}  "
        f"elapsed {results.get('elapsed_s')} s"
    )
    out.append(
        f"python {m['python']}  redis-server {m['redis_server_version']}  feast {m['feast']}  "
        f"redis-py {m['redis_py']}  hiredis {m.get('hiredis')}  git {str(m.get('git', {}).get('head'))[:10]}"
    )
    for kind, reason in results.get("unavailable", {}).items():
        out.append(f"NOT AVAILABLE: {PATH_LABELS.get(kind, kind)}: {reason}")
    out.append("")
    _write_tables(results, out)
    _rss_table(results, out)
    if results.get("server_cost"):
        out.append(render_server_cost(results))
    if results.get("latency"):
        _latency_tables(results, out)

    checks = results.get("targets", [])
    if checks:
        out.append("Targets (the issue 'writes', item 4; ratios from this run)")
        out.append(
            _table(
                ["target", "ratio", "limit", "result", "this vs built-in"],
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
        missed = sum(c["result"] == "MISS" for c in checks)
        out.append(f"{passed} PASS, {missed} MISS, {len(checks) - passed - missed} n/a")
        out.append("")

    rows = [
        [
            "built-in materialize rows/s",
            _fmt(_tp(results, "builtin_materialize"), RATE),
            _fmt(ANCHORS["builtin_materialize_rows_per_s"], RATE),
        ],
        [
            "built-in push rows/s",
            _fmt(_tp(results, "builtin_push"), RATE),
            _fmt(ANCHORS["builtin_push_rows_per_s"], RATE),
        ],
        [
            "raw HSET+EXPIRE rows/s",
            _fmt(_tp(results, "raw_hset_expire_materialize"), RATE),
            _fmt(ANCHORS["raw_hset_expire_rows_per_s"], RATE),
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
    for n, modes in sorted(results.get("latency", {}).items(), key=lambda kv: int(kv[0])):
        for target, s in modes["gc_normal"].items():
            g = s["gc"]
            if g["gen2"]:
                gcs.append(f"{target} {n} ent: {g['gen2']} full collections, max pause {g['pause_ms_max']} ms")
    out.append("Full (gen2) GC passes during gc-normal latency series: " + ("; ".join(gcs) if gcs else "none"))
    return "\n".join(out)
