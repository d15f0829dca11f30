"""Dashboards: the committed JSON is what the generator writes, the structure is sound, every
query parses (promtool) and names only metrics the code exports, and each renders to a PNG."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import yaml
from dashboard_render import render_png
from deploylib import ROOT, run
from metric_catalog import exported_names, metric_names, unknown

DASHBOARDS = ROOT / "dashboards"
FILES = sorted(DASHBOARDS.glob("*.json"))
VARIABLES = {"node", "model", "namespace", "deployment", "target", "horizon", "datasource"}


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in doc["panels"] for t in p.get("targets", [])]


def variable_queries(doc: dict[str, Any]) -> list[str]:
    """The selector inside each ``label_values(selector, label)``."""
    out = []
    for v in doc["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.+),\s*\w+\)", str(v.get("query", "")))
        if v["type"] == "query":
            assert m, f"{v['name']}: expected label_values(selector, label), got {v.get('query')}"
            out.append(m.group(1))
    return out


def promql(expr: str) -> str:
    """Grafana's macros and variables replaced by values Prometheus accepts."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", "x", expr)


def test_there_are_three_dashboards() -> None:
    assert [p.name for p in FILES] == ["prescale-autoscaler.json", "prescale-gpu-fleet.json",
                                       "prescale-serving.json"]


def test_committed_json_matches_the_generator(tmp_path: Path) -> None:
    done = run([sys.executable, "-m", "dashboards.generate", "--out", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    for path in FILES:
        assert (tmp_path / path.name).read_text() == path.read_text(), (
            f"{path} drifted from dashboards/definitions.py: run python -m dashboards.generate")
    check = run([sys.executable, "-m", "dashboards.generate", "--check"])
    assert check.returncode == 0, check.stderr


def test_check_mode_reports_drift(tmp_path: Path) -> None:
    for path in FILES:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / FILES[0].name).write_text("{}\n")
    done = run([sys.executable, "-m", "dashboards.generate", "--check", "--out", str(tmp_path)])
    assert done.returncode == 1
    assert FILES[0].name in done.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_structure(path: Path) -> None:
    doc = load(path)
    assert doc["uid"] == path.stem
    assert doc["title"].startswith("prescale / ")
    assert doc["schemaVersion"] >= 39, "generated for the Grafana 11 line (pinned SDK)"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in doc["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0, (p["title"], g)
        assert g["x"] + g["w"] <= 24, (p["title"], g)
        assert g["h"] > 0, (p["title"], g)
        covered = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not covered & cells, f"{p['title']} overlaps another panel"
        cells |= covered
        if p["type"] == "row":
            continue
        assert p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["targets"], p["title"]
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        assert p["fieldConfig"]["defaults"]["unit"], p["title"]
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names[0] == "datasource"
    assert len(names) == len(set(names))
    used = set(re.findall(r"\$(\w+)", json.dumps([t["expr"] for t in targets(doc)] + variable_queries(doc))))
    assert used - {"__rate_interval", "__range", "__interval"} <= set(names), "undefined variable"


def test_dashboards_are_templated_by_namespace_deployment_and_node() -> None:
    names = {p.stem: {v["name"] for v in load(p)["templating"]["list"]} for p in FILES}
    assert "node" in names["prescale-gpu-fleet"]
    assert {"namespace", "deployment"} <= names["prescale-serving"]
    assert {"namespace", "target"} <= names["prescale-autoscaler"]


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    exprs = [promql(t["expr"]) for p in FILES for t in targets(load(p))]
    exprs += [promql(q) for p in FILES for q in variable_queries(load(p))]
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run scripts/setup.sh (Debian package prometheus)")
    done = run([promtool, "check", "rules", str(tmp_path / "rules.yml")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_the_promql_parse_check_catches_a_broken_query(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(x[1m])"}]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    done = run(["promtool", "check", "rules", str(tmp_path / "rules.yml")])
    assert done.returncode != 0
    assert "unclosed left parenthesis" in done.stdout + done.stderr


def test_every_metric_in_dashboards_and_alerts_is_exported_by_the_code() -> None:
    rules = yaml.safe_load((ROOT / "alerts" / "prescale-rules.yml").read_text())["groups"]
    recorded = {r["record"] for g in rules for r in g["rules"] if "record" in r}
    exprs = [r["expr"] for g in rules for r in g["rules"]]
    exprs += [t["expr"] for p in FILES for t in targets(load(p))]
    exprs += [q for p in FILES for q in variable_queries(load(p))]
    assert unknown(exprs, recorded, exported_names()) == {}


def test_metric_name_extraction() -> None:
    expr = ('sum by (namespace, le) (rate(inference_request_duration_seconds_bucket{le="0.5", a=~"b"}[5m])) '
            '/ on () count(up{job="x"} == 1) > 0 or vector(0) unless foo:bar:rate5m offset 10m')
    assert metric_names(expr) == {"inference_request_duration_seconds_bucket", "up", "foo:bar:rate5m"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_dashboard_renders_to_a_picture(path: Path, tmp_path: Path) -> None:
    png = render_png(load(path), tmp_path / f"{path.stem}.png")
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 400
    assert image.shape[1] > 1000
    assert image.std() > 0.05, "the picture is blank"
