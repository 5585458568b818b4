"""The Grafana dashboard and the monitoring doc against the metrics the store exports.

The dashboard's PromQL is plain text Grafana only checks when someone opens it: a renamed
metric would leave a panel silently empty. So every metric a query names must be one the
store exports, every exported metric must be on some panel, and docs/monitoring.md must
name each of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from feast_redis_hexpire import metrics

DOCS = Path(__file__).resolve().parent.parent / "docs"
PANELS = {
    "Served age p50 / p99 per view, beside its TTL",
    "Absent ratio per view, by kind",
    "Skipped rows by reason",
    "Rows written by path",
    "Redis round-trip latency p50/p99 by op",
    "Redis round trips, retries and errors",
    "Stream ingester: event age at write p50 / p99",
    "Stream ingester: entries, pending and lag",
}


def _panels() -> list[dict]:
    return json.loads((DOCS / "grafana-dashboard.json").read_text())["panels"]


def _referenced() -> set[str]:
    exprs = [target["expr"] for panel in _panels() for target in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"feast_[a-z_]+", expr)}


def test_dashboard_panels_have_queries() -> None:
    panels = _panels()
    assert {panel["title"] for panel in panels} == PANELS
    assert len(panels) == len(PANELS)
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


def test_dashboard_queries_only_exported_metrics() -> None:
    assert _referenced() <= metrics.exported_names()


def test_dashboard_shows_every_exported_metric() -> None:
    referenced = _referenced()
    for metric in metrics.EXPORTED:
        base = metric._name
        assert any(name == base or name.startswith(base + "_") for name in referenced), base


def test_monitoring_doc_names_every_metric() -> None:
    doc = (DOCS / "monitoring.md").read_text()
    for metric in metrics.EXPORTED:
        assert metric._name in doc, metric._name
