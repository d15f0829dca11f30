"""Dashboards and alerts on real data: the GPU exporter (simulated GPUs), the bundled model
server under load and the metrics adapter, scraped by a real Prometheus that evaluates the
alert rules and sends to a real Alertmanager.

Every dashboard query and alert expression is evaluated on the live data; queries must return
series unless they read a part that does not run here (controller, kube-state-metrics,
kube-apiserver) or a fault the healthy stack does not have. Then faults are induced (a GPU is
lost, XID 79, and a batch timeout that makes every request slower than the SLO) and the alerts
reach Alertmanager. The rules are the committed ones with ``for:`` set to 0s so the test does
not wait minutes; the expressions are unchanged.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import matplotlib.image
import numpy as np
import pytest
import yaml
from dashboard_render import Source, render_png
from deploylib import ROOT
from metric_catalog import EXTERNAL, controller_names, metric_names
from real_stack import DEPLOYMENT, NAMESPACE, NODE, Exporter, Traffic, adapter, insecure, serving

from prescale.stack import polling
from prescale.stack import prometheus as prom

pytestmark = pytest.mark.prometheus

RULES = ROOT / "alerts" / "prescale-rules.yml"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
VARIABLES = {"node": NODE, "model": ".*", "namespace": NAMESPACE, "deployment": DEPLOYMENT,
             "target": DEPLOYMENT, "horizon": ".*"}
NOT_RUNNING = (controller_names() | EXTERNAL
               | {"inference_prompt_tokens_total", "inference_generation_tokens_total"})
"""Metrics of parts this test does not run (the bundled server has no token counters)."""
FAULT_ONLY = ("gpu_xid_errors_total{",)
"""Queries that only have series once something fails (the exporter creates an XID series at
its first XID)."""


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str) -> Any:
    return polling.wait_for(cond, timeout_s, what, interval_s=0.5)


def concrete(expr: str) -> str:
    expr = expr.replace("$__rate_interval", "10s").replace("$__interval", "5s").replace("$__range", "1m")
    return re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), m.group(0)), expr)


def dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for p in doc["panels"]:
            out += [(f"{doc['uid']}: {p['title']}", t["expr"]) for t in p.get("targets", [])]
    return out


def fast_rules(tmp: Path) -> Path:
    """The committed rules with every ``for`` at 0s and 1s group intervals."""
    doc = yaml.safe_load(RULES.read_text())
    for g in doc["groups"]:
        g["interval"] = "1s"
        for r in g["rules"]:
            if "for" in r:
                r["for"] = "0s"
    path = tmp / "rules.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def may_be_empty(expr: str) -> bool:
    return bool(metric_names(expr) & NOT_RUNNING) or any(f in expr for f in FAULT_ONLY)


def query(p: prom.Prometheus, expr: str) -> list[dict[str, Any]]:
    try:
        return p.query(expr)
    except urllib.error.HTTPError as e:
        pytest.fail(f"Prometheus rejected {expr!r}: {e.read().decode()[:500]}")


def firing(am: prom.Alertmanager, name: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == name
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def test_dashboards_and_alerts_on_real_data(tmp_path: Path, start_prometheus: Any,
                                             start_alertmanager: Any) -> None:
    am = start_alertmanager({"route": {"receiver": "null", "group_wait": "0s", "group_interval": "1s"},
                             "receivers": [{"name": "null"}]})
    with serving(tmp_path, batch_timeout_ms=700) as serving_url, Exporter(serving_url) as exporter, \
            Traffic(serving_url) as traffic:
        exporter_job = {"job_name": "prescale-exporter",
                        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(fast_rules(tmp_path))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am.url.removeprefix("http://")]}]}]},
            "scrape_configs": [exporter_job],
        }
        p = start_prometheus(config)
        with adapter(tmp_path, p.url) as adapter_url:
            adapter_job = {"job_name": "prescale-adapter", "scheme": "https",
                           "tls_config": {"insecure_skip_verify": True},
                           "static_configs": [{"targets": [adapter_url.removeprefix("https://")]}]}
            p.reload({**config, "scrape_configs": [exporter_job, adapter_job]})
            _ask_adapter(adapter_url)
            wait_for(lambda: query(p, 'rate(inference_requests_total{code="200"}[10s]) > 0'), 60,
                     "inference traffic through the exporter")
            wait_for(lambda: query(p, "prescale_adapter_requests_total"), 60, "adapter metrics")
            _check_dashboards(p)
            _check_alert_expressions(p)
            assert not firing(am, "GPULost")
            exporter.backend.lost_indices.add(1)
            exporter.backend.inject_xid(0, 79)
            wait_for(lambda: firing(am, "GPULost", gpu="1", node=NODE), 60, "GPULost in Alertmanager")
            wait_for(lambda: firing(am, "GPUXidCritical", xid="79", gpu="0"), 60,
                     "GPUXidCritical in Alertmanager")
            wait_for(lambda: firing(am, "InferenceLatencyBudgetBurnFast", namespace=NAMESPACE, model="iris"),
                     60, "the latency SLO burn in Alertmanager")
            assert not firing(am, "InferenceErrorBudgetBurnFast"), "no 5xx was served"
            _render_live(p, tmp_path)
    assert traffic.sent > 0


def _ask_adapter(url: str) -> None:
    """A few external-metrics requests so the adapter's own metrics have series."""
    for _ in range(3):
        req = (f"{url}/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}"
               "/inference_requests_per_second")
        try:
            with urllib.request.urlopen(req, timeout=5, context=insecure()) as r:
                r.read()
        except urllib.error.HTTPError:
            pass  # an empty metric answers 404 until Prometheus has the series: still a counted request


def _check_dashboards(p: prom.Prometheus) -> None:
    empty = [(where, expr) for where, expr in dashboard_queries()
             if not query(p, concrete(expr)) and not may_be_empty(expr)]
    assert not empty, "dashboard queries without series on real data:\n" + "\n".join(
        f"  {w}: {concrete(e)}" for w, e in empty)


def _check_alert_expressions(p: prom.Prometheus) -> None:
    doc = yaml.safe_load(RULES.read_text())
    for g in doc["groups"]:
        for r in g["rules"]:
            query(p, r["expr"])  # parses and evaluates on the live data
    recorded = [r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r]
    wait_for(lambda: query(p, "namespace_model:inference_error_ratio:rate5m"), 30, "SLO recording rules")
    for name in recorded:
        assert query(p, name), f"recording rule {name} has no series on real data"


def _legend(legend: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend filled from one series' labels."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), legend)


def live_source(p: prom.Prometheus, start: float, end: float, step: float = 1.0) -> Source:
    """Range queries against the live Prometheus, on one time grid (gaps are NaN)."""
    grid = np.arange(start, end + step / 2, step)

    def source(expr: str, legend: str, unit: str) -> dict[str, np.ndarray]:
        params = urlencode({"query": concrete(expr), "start": start, "end": end, "step": step})
        with urllib.request.urlopen(f"{p.url}/api/v1/query_range?{params}", timeout=10) as r:
            result = json.load(r)["data"]["result"]
        out: dict[str, np.ndarray] = {}
        for series in result:
            name = _legend(legend, series["metric"]) or "value"
            values = np.full(len(grid), np.nan)
            for t, v in series["values"]:
                values[min(len(grid) - 1, round((float(t) - start) / step))] = float(v)
            out[name if name not in out else f"{name} {len(out)}"] = values
        return out

    return source


def _render_live(p: prom.Prometheus, tmp_path: Path) -> None:
    """Each dashboard drawn from the live data (PRESCALE_DASHBOARD_PREVIEWS=DIR keeps copies)."""
    end = time.time()
    source = live_source(p, end - 20, end, step=0.5)
    keep = os.environ.get("PRESCALE_DASHBOARD_PREVIEWS")
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for out_dir in [tmp_path, *([Path(keep)] if keep else [])]:
            png = render_png(doc, out_dir / f"{path.stem}.png", source)
        image = matplotlib.image.imread(png)
        assert image.std() > 0.05, f"{png} is blank"
