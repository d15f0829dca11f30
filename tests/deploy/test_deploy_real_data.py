"""Dashboards and alerts on real data: the GPU exporter (simulated GPUs), the bundled model
server under load, the metrics adapter behind real APIServices, the PredictiveAutoscaler
controller (``prescale forecaster``) and kube-state-metrics, all against the real test control
plane, scraped by a real Prometheus (the kube-apiserver's own metrics too) that evaluates the
alert rules and sends to a real Alertmanager.

Every dashboard query must return series on the live data, every dashboard variable must offer
the value the test fills in, and every vector selector of every alert expression must select
series, except the token counters in ``NO_SOURCE_HERE``. Faults are induced (a GPU is lost,
XIDs 79 and 31, a batch timeout that makes every request slower than the SLO, Prometheus
stalling under the adapter); the GPU and SLO alerts must reach Alertmanager, and the queries
that only have series once something failed are checked after the faults. The rules are the
committed ones with ``for:`` set to 0s so the test does not wait minutes; the expressions are
unchanged.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import matplotlib.image
import numpy as np
import pytest
import yaml
from dashboard_render import Source, render_png
from deploylib import ROOT
from metric_catalog import metric_names, selectors
from real_cluster import apiserver_job, controller, job, pa_status, workload
from real_stack import DEPLOYMENT, NAMESPACE, NODE, Exporter, Traffic, adapter, serving

from prescale.stack import aggregation, kube_api, polling
from prescale.stack import prometheus as prom
from prescale.stack.adapter import LocalAdapter
from prescale.stack.cluster import Cluster
from prescale.stack.ksm import run_kube_state_metrics

pytestmark = [pytest.mark.prometheus, pytest.mark.cluster]

RULES = ROOT / "alerts" / "prescale-rules.yml"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
VARIABLES = {"node": NODE, "model": ".*", "namespace": NAMESPACE, "deployment": DEPLOYMENT,
             "target": DEPLOYMENT, "horizon": ".*"}
NO_SOURCE_HERE = frozenset({"inference_prompt_tokens_total", "inference_generation_tokens_total"})
"""Token counters come from LLM servers (vLLM, TGI, through the exporter's traffic presets); the
only model server that runs here is the bundled one, which serves tabular models and counts no
tokens. Queries over these are evaluated (they must parse) but may be empty."""
FAULT_ONLY = frozenset({"gpu_xid_errors_total"})
"""Only exist once something failed (the exporter creates an XID series at its first XID):
checked after the faults are induced."""
CRITICAL_XID, OTHER_XID = 79, 31


def wait_for(cond: Callable[[], Any], timeout_s: float, what: str,
             context: Callable[[], str] | None = None) -> Any:
    return polling.wait_for(cond, timeout_s, what, context, interval_s=0.5)


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


def dashboard_variables() -> list[tuple[str, str, str]]:
    """``(dashboard uid, variable, label_values query)`` of every query variable."""
    out = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        out += [(doc["uid"], v["name"], v["query"]) for v in doc.get("templating", {}).get("list", [])
                if v.get("type") == "query"]
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


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def query(p: prom.Prometheus, expr: str) -> list[dict[str, Any]]:
    try:
        return p.query(expr)
    except urllib.error.HTTPError as e:
        pytest.fail(f"Prometheus rejected {expr!r}: {e.read().decode()[:500]}")


def firing(am: prom.Alertmanager, name: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in am.alerts() if a["labels"].get("alertname") == name
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def test_dashboards_and_alerts_on_real_data(tmp_path: Path, cluster: Cluster, private_address: str,
                                             start_prometheus: Any, start_alertmanager: Any) -> None:
    am = start_alertmanager({"route": {"receiver": "null", "group_wait": "0s", "group_interval": "1s"},
                             "receivers": [{"name": "null"}]})
    with workload(cluster), serving(tmp_path, batch_timeout_ms=700) as serving_url, \
            Exporter(serving_url) as exporter, Traffic(serving_url) as traffic:
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(fast_rules(tmp_path))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am.url.removeprefix("http://")]}]}]},
            "scrape_configs": [job("prescale-exporter", f"127.0.0.1:{exporter.port}"),
                               apiserver_job(cluster)],
        }
        p = start_prometheus(config)
        with adapter(cluster, tmp_path, private_address, p.url) as running, \
                run_kube_state_metrics(cluster, tmp_path, namespaces=[NAMESPACE]) as ksm, \
                controller(cluster, tmp_path, p.url) as controller_target:
            p.reload({**config, "scrape_configs": [
                *config["scrape_configs"],
                job("prescale-adapter", running.url.removeprefix("https://"), scheme="https",
                    tls_config={"ca_file": str(running.ca)}),
                job("kube-state-metrics", ksm.target), job("prescale-controller", controller_target)]})
            _wait_healthy(cluster, p, running)
            _check_dashboards(p, skip=FAULT_ONLY | NO_SOURCE_HERE)
            _check_variables(p)
            _induce_faults(am, exporter, cluster, p, running)
            _check_dashboards(p, skip=NO_SOURCE_HERE)
            _check_alert_expressions(p)
            _render_live(p, tmp_path)
    assert traffic.sent > 0


_SEL = f'namespace="{NAMESPACE}"'
CONTROLLER_HEALTHY = [
    ("prescale_controller_leader == 1", "the controller leading"),
    (f'prescale_forecast_requests_per_second{{{_SEL}, quantile="0.99"}}', "a calibrated forecast"),
    (f"prescale_forecast_error_ratio{{{_SEL}}}", "the forecast error"),
    (f"prescale_interval_coverage_ratio{{{_SEL}}}", "the forecast coverage"),
    (f"prescale_node_headroom_gpus{{{_SEL}}}", "node headroom"),
]
"""The controller's series while its forecast is healthy (a reconcile that cannot read
Prometheus publishes no forecast, error or coverage until the next one that can)."""


def _wait_healthy(cluster: Cluster, p: prom.Prometheus, running: LocalAdapter) -> None:
    """Every part reports: traffic through the exporter, the adapter answering through the
    aggregator, kube-state-metrics, the apiserver, and the controller leading with a
    calibrated forecast (its model first needs some live demand)."""
    for b in running.backends:
        aggregation.wait_available(cluster, b.name, 60)
    wait_for(lambda: query(p, 'rate(inference_requests_total{code="200"}[10s]) > 0'), 60,
             "inference traffic through the exporter")
    wait_for(lambda: _ask_adapter(cluster), 60, "the external metric through the aggregator")
    sel = f'namespace="{NAMESPACE}"'
    for expr, what in [
        (f"kube_horizontalpodautoscaler_status_current_replicas{{{sel}}} > 0",
         "the HPA in kube-state-metrics"),
        (f'kube_deployment_status_replicas_ready{{{sel}, deployment="{DEPLOYMENT}"}} > 0',
         "ready replicas in kube-state-metrics"),
        ('aggregator_unavailable_apiservice{name="v1beta1.external.metrics.k8s.io"} == 0',
         "the apiserver reporting the adapter's APIService available"),
        *CONTROLLER_HEALTHY,
    ]:
        wait_for(functools.partial(query, p, expr), 180, what, lambda: pa_status(cluster))


def _induce_faults(am: prom.Alertmanager, exporter: Exporter, cluster: Cluster, p: prom.Prometheus,
                   running: LocalAdapter) -> None:
    """A GPU lost, a critical and an ordinary XID, Prometheus stalling under the adapter; the
    GPU alerts and the latency burn (every request is slower than the SLO) reach Alertmanager."""
    assert not firing(am, "GPULost")
    exporter.backend.lost_indices.add(1)
    exporter.backend.inject_xid(0, CRITICAL_XID)
    exporter.backend.inject_xid(0, OTHER_XID)
    _stall_prometheus_under_adapter(cluster, p, running)
    wait_for(lambda: firing(am, "GPULost", gpu="1", node=NODE), 60, "GPULost in Alertmanager")
    wait_for(lambda: firing(am, "GPUXidCritical", xid=str(CRITICAL_XID), gpu="0"), 60,
             "GPUXidCritical in Alertmanager")
    wait_for(lambda: firing(am, "GPUXidErrors", xid=str(OTHER_XID), gpu="0"), 60,
             "GPUXidErrors in Alertmanager")
    wait_for(lambda: firing(am, "InferenceLatencyBudgetBurnFast", namespace=NAMESPACE, model="iris"),
             60, "the latency SLO burn in Alertmanager")
    assert not firing(am, "InferenceErrorBudgetBurnFast"), "no 5xx was served"
    # The XID counters were born just before Prometheus stalled: windowed queries over them
    # need two scrapes after it resumed.
    wait_for(lambda: query(p, "increase(gpu_xid_errors_total[10s])"), 30, "two scrapes of the XID counters")


def _ask_adapter(cluster: Cluster) -> bool:
    """The HPA's question through the aggregator: the adapter answers with a value."""
    selector = quote(f"namespace={NAMESPACE},deployment={DEPLOYMENT}")
    doc = cluster.get(f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}"
                      f"/inference_requests_per_second?labelSelector={selector}")
    return bool(doc.get("items"))


def _stall_prometheus_under_adapter(cluster: Cluster, p: prom.Prometheus, running: LocalAdapter) -> None:
    """Prometheus stops answering (SIGSTOP) while a metric request waits on it: the adapter
    answers 503 within its deadline and counts the upstream error; then Prometheus resumes."""
    url = (f"{cluster.server}/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}"
           f"/inference_queue_depth?labelSelector={quote(f'deployment={DEPLOYMENT}')}")
    os.kill(p.process.popen.pid, signal.SIGSTOP)
    try:
        kube_api.get_json(url, kube_api.admin_context(cluster.pki), timeout_s=30)
    except urllib.error.HTTPError as e:
        with e:
            code, body = e.code, e.read().decode()[:500]
    else:
        pytest.fail("the adapter answered while Prometheus was stopped")
    finally:
        os.kill(p.process.popen.pid, signal.SIGCONT)
        resumed = time.time()
    assert code == 503, body
    log = running.process.log_path.read_text()
    assert "prometheus query failed" in log, "the adapter saw no upstream error"
    wait_for(lambda: query(p, 'prescale_adapter_requests_total{code="503"}'), 30,
             "the adapter's 503 in Prometheus")
    # The scrapes that timed out during the pause marked their series stale.
    def state() -> str:
        return f"resumed at {resumed:.3f}; {p.scrape_state()}"

    scraped = wait_for(lambda: p.scraped_after(resumed), 30, "every target scraped after Prometheus resumed",
                       state)
    wait_for(lambda: p.evaluated_after(scraped), 30, "every rule group evaluated after those scrapes", state)
    for expr, what in CONTROLLER_HEALTHY:
        wait_for(functools.partial(query, p, expr), 60, f"{what} again after Prometheus resumed",
                 lambda: pa_status(cluster))


def _check_dashboards(p: prom.Prometheus, skip: frozenset[str]) -> None:
    queries = dashboard_queries()
    empty = [(where, expr) for where, expr in queries
             if not query(p, concrete(expr)) and not metric_names(expr) & skip]
    assert not empty, "dashboard queries without series on real data:\n" + "\n".join(
        f"  {w}: {concrete(e)}" for w, e in empty)


def _check_variables(p: prom.Prometheus) -> None:
    """Each ``label_values(selector, label)`` variable offers the value the queries were run with."""
    for uid, name, q in dashboard_variables():
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
        assert m, f"{uid}: variable {name}: not a label_values query: {q}"
        values = {s["metric"].get(m.group(2)) for s in query(p, concrete(m.group(1)))}
        want = VARIABLES[name]
        offered = sorted(v for v in values if v)
        assert offered, f"{uid}: variable {name} ({concrete(q)}) offers nothing"
        assert want == ".*" or want in offered, \
            f"{uid}: variable {name} ({concrete(q)}) offers {offered}, not {want!r}"


def _check_alert_expressions(p: prom.Prometheus) -> None:
    """Every rule parses and evaluates, every recording rule has series, and every vector
    selector of every alert selects series (recording rules may hold ``A or B * 0`` fallbacks
    whose left side is rightly empty, so their own series are what is checked)."""
    missing = []
    for r in rules():
        query(p, r["expr"])
        if "record" in r:
            assert query(p, r["record"]), f"recording rule {r['record']} has no series on real data"
            continue
        for s in sorted(selectors(r["expr"])):
            names = metric_names(s)
            if names & NO_SOURCE_HERE:
                continue
            if not query(p, s):
                missing.append((r["alert"], s))
    assert not missing, "alert selectors without series on real data:\n" + "\n".join(
        f"  {name}: {s}" for name, s in missing)


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
