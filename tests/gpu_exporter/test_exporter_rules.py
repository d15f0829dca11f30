"""The shipped recording rules: valid for promtool, and equal to the exporter's normalization."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gpu_exporter import presets
from gpu_exporter.presets import FAMILY_TYPES

RULES = Path(presets.__file__).parent / "rules" / "inference-recording-rules.yaml"


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'); rule checks not run")
    return path


def test_rules_record_only_contract_families() -> None:
    doc = yaml.safe_load(RULES.read_text())
    records = {r["record"] for g in doc["groups"] for r in g["rules"]}
    bases = {r.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for r in records}
    assert bases <= FAMILY_TYPES.keys() | {"inference_request_duration_seconds", "inference_batch_size"}
    assert "inference_requests_total" in records


def test_promtool_checks_and_unit_tests_the_rules(promtool: str, tmp_path: Path) -> None:
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True,
                           check=False, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = tmp_path / "rules_test.yaml"
    tests.write_text(yaml.safe_dump({
        "rule_files": [str(RULES)], "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": [
            {"series": 'vllm:request_success_total{finished_reason="stop",model_name="llama",pod="p"}',
             "values": "0+9x8"},
            {"series": 'vllm:request_success_total{finished_reason="length",model_name="llama",pod="p"}',
             "values": "0+1x8"},
            {"series": 'tgi_queue_size{pod="t"}', "values": "3x8"}],
            "promql_expr_test": [
                {"expr": "inference_requests_total", "eval_time": "1m", "exp_samples": [
                    {"labels": 'inference_requests_total{code="200",model="llama",pod="p",server="vllm"}',
                     "value": 40}]},
                {"expr": "inference_queue_depth", "eval_time": "1m", "exp_samples": [
                    {"labels": 'inference_queue_depth{pod="t",server="tgi"}', "value": 3}]}]}]}))
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True,
                            check=False, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
