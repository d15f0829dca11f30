"""The real Prometheus and Alertmanager: scrape, backfill, and a rule firing into Alertmanager."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from prescale.stack import procs
from prescale.stack import prometheus as prom
from prescale.stack.polling import wait_for

pytestmark = pytest.mark.prometheus


@pytest.fixture
def test_exporter() -> Iterator[tuple[int, Gauge]]:
    registry = CollectorRegistry()
    gauge = Gauge("smoke_gpu_utilization_ratio", "test gauge", ["gpu"], registry=registry)
    gauge.labels(gpu="0").set(0.42)
    port = procs.free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield port, gauge
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_prometheus_scrapes_a_test_exporter(start_prometheus: Any, test_exporter: tuple[int, Gauge]) -> None:
    port, gauge = test_exporter
    p = start_prometheus({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "smoke", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    })
    result = wait_for(lambda: p.query("smoke_gpu_utilization_ratio"), 30, "first scraped sample")
    assert result[0]["metric"]["gpu"] == "0"
    assert float(result[0]["value"][1]) == pytest.approx(0.42)
    gauge.labels(gpu="0").set(0.9)
    wait_for(lambda: [r for r in p.query("smoke_gpu_utilization_ratio") if float(r["value"][1]) == 0.9],
             30, "the changed value")


def test_backfilled_history_is_queryable(start_prometheus: Any) -> None:
    now = time.time()
    start = now - 2 * 86400
    samples = [(start + i * 300, float(i % 288)) for i in range(int((now - 3 * 3600 - start) / 300))]
    p = start_prometheus(backfill=[prom.Series("smoke_qps", {"ns": "a"}, samples)])
    t, v = samples[100]
    got = p.query("smoke_qps", at=t)
    assert [(r["metric"]["ns"], float(r["value"][1])) for r in got] == [("a", v)]


def test_rule_fires_into_alertmanager(tmp_path: Any, start_prometheus: Any, start_alertmanager: Any) -> None:
    am = start_alertmanager({
        "route": {"receiver": "null", "group_wait": "0s"},
        "receivers": [{"name": "null"}],
    })
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n- name: smoke\n  interval: 1s\n  rules:\n"
        "  - alert: SmokeAlwaysFiring\n    expr: vector(1) > 0\n"
        "    labels: {severity: info}\n    annotations: {summary: smoke test}\n"
    )
    host_port = am.url.removeprefix("http://")
    start_prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [host_port]}]}]},
    })
    alerts = wait_for(lambda: [a for a in am.alerts() if a["labels"].get("alertname") == "SmokeAlwaysFiring"],
                      60, "the alert in Alertmanager")
    assert alerts[0]["labels"]["severity"] == "info"
    assert alerts[0]["status"]["state"] == "active"
