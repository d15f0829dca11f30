"""``prescale exporter`` flag handling and backend choice (no server started)."""

from __future__ import annotations

import logging

import pytest

from gpu_exporter import cli
from gpu_exporter.backend import SimulatedBackend


def test_auto_falls_back_to_simulated_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    args = cli.parser().parse_args(["--backend", "auto", "--simulated", "l4x2", "--node-name", "n"])
    with caplog.at_level(logging.WARNING):
        backend = cli.choose_backend(args)
    assert isinstance(backend, SimulatedBackend)
    assert len(backend.devices) == 2
    assert "falling back to the SIMULATED backend" in caplog.text


@pytest.mark.parametrize(("argv", "message"), [
    (["--backend", "nvml"], "--backend nvml: NVML init failed"),
    (["--interval", "0"], "--interval 0.0: must be > 0"),
    (["--backend", "simulated", "--simulated", "h100-80gb:mig=9g.1gb"], "not available"),
    (["--backend", "simulated", "--simulated-load", "square"], "allowed sine"),
    (["--target", "ns-only=http://x"], "expected NS/POD=URL"),
    (["--tls-cert", "/nonexistent.pem"], "go together"),
])
def test_bad_flags_exit_2_with_one_line(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*argv, "--no-pod-attribution"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_parse_target() -> None:
    target = cli.parse_target("serving/llm-0=http://10.0.0.1:8000/metrics,vllm")
    assert (target.namespace, target.pod, target.preset) == ("serving", "llm-0", "vllm")
