"""``prescale adapter`` as a process: starts over TLS, answers, stops on SIGTERM; one-line errors."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from adapter_prom import free_port

from adapter.cli import main, parse_target
from adapter.kube import KubeError, request_header_from_configmap

RUN = "import sys; from adapter.cli import main; sys.exit(main(sys.argv[1:]))"


def _get(url: str) -> tuple[int, bytes]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # self-signed serving certificate
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 20) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"adapter exited with {proc.returncode}"
        try:
            if _get(url)[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def test_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    args = [
        "--insecure-no-auth",
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        str(port),
        "--prometheus-url",
        f"http://127.0.0.1:{free_port()}",
        "--prometheus-timeout",
        "0.5",
        "--preset",
        "forecast",
    ]
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", RUN, *args], stderr=stderr)
    base = f"https://127.0.0.1:{port}"
    try:
        _wait(f"{base}/healthz", proc)
        code, body = _get(f"{base}/apis/external.metrics.k8s.io/v1beta1")
        assert code == 200
        assert "prescale_forecast_requests_per_second" in body.decode()
        started = time.monotonic()
        code, body = _get(
            f"{base}/apis/external.metrics.k8s.io/v1beta1/namespaces/llm/prescale_desired_replicas"
        )
        assert code == 503  # nothing listens at the Prometheus URL: a Status, quickly
        assert json.loads(body)["reason"] == "ServiceUnavailable"
        assert time.monotonic() - started < 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_bad_rules_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("rules:\n  - name: m\n    query: q\n    colour: red\n")
    assert (
        main(
            [
                "--insecure-no-auth",
                "--rules",
                str(bad),
                "--secure-port",
                str(free_port()),
                "--bind-address",
                "127.0.0.1",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "unknown key 'colour'" in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_parse_target() -> None:
    t = parse_target("http://10.0.0.5:8000/metrics namespace=llm pod=a")
    assert t.url == "http://10.0.0.5:8000/metrics"
    assert dict(t.labels) == {"namespace": "llm", "pod": "a"}
    with pytest.raises(ValueError, match="label=value"):
        parse_target("http://x/metrics nolabel")


def test_configmap_parsing() -> None:
    cfg = request_header_from_configmap(
        {
            "requestheader-client-ca-file": "PEM",
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        }
    )
    assert cfg.allowed_names == ("front-proxy-client",)
    assert cfg.client_ca_pem == b"PEM"
    assert cfg.uid_headers == ()
    with pytest.raises(KubeError, match="no requestheader-client-ca-file"):
        request_header_from_configmap({})
    with pytest.raises(KubeError, match="JSON list"):
        request_header_from_configmap(
            {"requestheader-client-ca-file": "PEM", "requestheader-allowed-names": "x"}
        )
