"""Alert rules: promtool lint and unit tests, one firing and one quiet case per alert, runbooks,
and the copies (PrometheusRule, the Helm chart's file) equal to the plain rules file."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploylib import CHART, ROOT, helm_template, run

ALERTS = ROOT / "alerts"
RULES = ALERTS / "prescale-rules.yml"
TESTS = sorted(ALERTS.glob("*_test.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: run scripts/setup.sh (Debian package prometheus)")
    return found


def groups() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return loaded


def alerts() -> list[dict[str, Any]]:
    return [r for g in groups() for r in g["rules"] if "alert" in r]


def test_rules_pass_promtool_check() -> None:
    done = run([promtool(), "check", "rules", str(RULES)])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    done = run([promtool(), "test", "rules", str(test_file)], cwd=ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_in_one_case_and_stays_quiet_in_another() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness itself: a test that expects GPULost to stay quiet while a GPU is lost fails."""
    shutil.copy(RULES, tmp_path / RULES.name)
    bad = {"rule_files": [RULES.name], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": 'gpu_up{gpu="0",node="n"}', "values": "0x10"}],
        "alert_rule_test": [{"eval_time": "5m", "alertname": "GPULost", "exp_alerts": []}]}]}
    (tmp_path / "bad_test.yml").write_text(yaml.safe_dump(bad))
    done = run([promtool(), "test", "rules", "bad_test.yml"], cwd=tmp_path)
    assert done.returncode != 0
    assert "GPULost" in done.stdout + done.stderr


def anchors(markdown: str) -> set[str]:
    """GitHub heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+\s+(.+)$", markdown, re.M)}


def test_every_alert_has_labels_and_a_runbook_that_exists() -> None:
    known = anchors(OPERATIONS.read_text())
    for a in alerts():
        assert a["labels"]["severity"] in ("critical", "warning"), a["alert"]
        assert a["labels"]["component"] in ("gpu", "serving", "capacity", "autoscaler"), a["alert"]
        assert {"summary", "description", "runbook_url"} <= set(a["annotations"]), a["alert"]
        url = a["annotations"]["runbook_url"]
        assert url.startswith("https://github.com/prescale-dev/prescale/blob/main/docs/operations.md#")
        assert url.split("#", 1)[1] in known, f"{a['alert']}: no heading for {url} in docs/operations.md"


def test_prometheusrule_and_chart_copy_equal_the_rules_file() -> None:
    plain = yaml.safe_load(RULES.read_text())
    operator = yaml.safe_load((ALERTS / "prometheusrule.yaml").read_text())
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"] == plain, "alerts/prometheusrule.yaml differs from prescale-rules.yml"
    chart_copy = CHART / "files" / "prescale-rules.yml"
    assert chart_copy.read_text() == RULES.read_text(), f"copy alerts/prescale-rules.yml to {chart_copy}"


def test_the_chart_renders_the_same_groups(helm: Path) -> None:

    objects = helm_template(helm, {"monitoring": {"prometheusRule": "enabled"}})
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
