"""Config validation: defaults, unknown keys, messages that name the key and the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serving.cli import main, shutdown_timeout_s
from serving.config import BatchConfig, VersionPolicy, from_mapping, load_file
from serving.errors import ConfigError


def test_defaults() -> None:
    cfg = from_mapping({"model_repository": "/models"})
    assert cfg.model_repository == Path("/models")
    assert cfg.batching == BatchConfig()
    assert cfg.version_policy == VersionPolicy(latest=1)
    assert shutdown_timeout_s(cfg) == pytest.approx(29.0)


@pytest.mark.parametrize(("data", "message"), [
    ({}, "model_repository: required"),
    ({"model_repository": "/m", "colour": 1}, "unknown key 'colour'"),
    ({"model_repository": "/m", "batching": {"max_batch": 4}}, "batching: unknown key 'max_batch'"),
    ({"model_repository": "/m", "batching": {"max_batch_size": 0}}, "batching.max_batch_size: 0"),
    ({"model_repository": "/m", "batching": {"workers": 1.5}}, "expected an integer"),
    ({"model_repository": "/m", "batching": {"batch_timeout_s": float("nan")}}, "batch_timeout_s: nan"),
    ({"model_repository": "/m", "batching": {"executor": "gpu"}},
     "batching.executor: 'gpu' is not allowed; expected one of thread, process"),
    ({"model_repository": "/m", "batching": {"max_wait_s": -1}}, "batching.max_wait_s: -1"),
    ({"model_repository": "/m", "version_policy": {"latest": 0}}, "version_policy.latest: 0"),
    ({"model_repository": "/m", "version_policy": {"versions": []}}, "non-empty list"),
    ({"model_repository": "/m", "models": ["../etc"]}, "not a valid model name"),
    ({"model_repository": "/m", "port": True}, "port: True"),
    ({"model_repository": "/m", "drain_delay_s": 40}, "must be shorter than grace_period_s"),
])
def test_invalid_config_names_the_problem(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as exc:
        from_mapping(data)
    assert message in str(exc.value)


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("model_repository: /m\nbatching:\n  max_batch_size: 8\n")
    assert from_mapping(load_file(path)).batching.max_batch_size == 8
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_file(path)


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model-repository", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["--model-repository", str(tmp_path), "--max-batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "batching.max_batch_size: 0" in err
    assert main(["--model-repository", str(tmp_path), "--versions", "1,x"]) == 2


def test_cli_builds_the_example_repo(tmp_path: Path) -> None:
    assert main(["--make-example-repo", str(tmp_path / "repo")]) == 0
    assert (tmp_path / "repo" / "iris" / "1" / "model.joblib").is_file()
    assert (tmp_path / "repo" / "iris-onnx" / "1" / "model.onnx").is_file()


def test_the_server_process_tunes_the_collector() -> None:
    """In a process of its own: the settings are process-wide."""
    code = ("import gc; from serving.cli import GC_GEN0_THRESHOLD, tune_gc; before = gc.get_threshold(); "
            "tune_gc(); print(gc.get_threshold()[0] == GC_GEN0_THRESHOLD, "
            "gc.get_threshold()[1:] == before[1:], gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]
