"""Prometheus and Alertmanager from the Debian packages, as plain processes on loopback with
temporary storage, plus fast history loading through ``promtool tsdb create-blocks-from``."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from prescale.stack import procs
from prescale.stack.errors import StackError
from prescale.stack.kube_api import http_ok


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"'{tool}' not found on PATH: install the Debian packages "
                         "'prometheus prometheus-alertmanager' (scripts/setup.sh does)")
    return path


@dataclass
class Prometheus:
    """A running Prometheus; ``url`` is its base URL."""

    url: str
    process: procs.Process
    config_path: Path
    storage: Path

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or at unix time ``at``); the ``result`` list of a vector."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = _get_json(f"{self.url}/api/v1/query?{urlencode(params)}")
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def reload(self, config: Mapping[str, Any]) -> None:
        """Replace the configuration and reload (needs --web.enable-lifecycle, which we pass)."""
        self.config_path.write_text(yaml.safe_dump(dict(config)))
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def scraped_after(self, t: float) -> float | None:
        """Once every active target has been scraped successfully after unix time ``t``: the
        latest of those scrapes; None before. A failed scrape marks all its series stale, so
        after Prometheus was paused this (then :meth:`evaluated_after`) is when queries see
        every series again."""
        targets = self._active_targets()
        scraped = [_unix(x["lastScrape"]) for x in targets if x["health"] == "up"]
        if not targets or len(scraped) < len(targets) or min(scraped) <= t:
            return None
        return max(scraped)

    def evaluated_after(self, t: float) -> bool:
        """Every rule group was evaluated after unix time ``t``."""
        return all(_unix(g["lastEvaluation"]) > t for g in self._rule_groups())

    def scrape_state(self) -> str:
        """The targets' health and last scrapes and the rule groups' last evaluations, for errors."""
        targets, groups = self._active_targets(), self._rule_groups()
        return "; ".join([
            *(f"{x['scrapePool']} {x['scrapeUrl']}: {x['health']} at {x['lastScrape']} {x['lastError']}"
              for x in targets),
            *(f"rule group {g['name']} evaluated at {g['lastEvaluation']}" for g in groups)])

    def _active_targets(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.url}/api/v1/targets?state=active")["data"]["activeTargets"])

    def _rule_groups(self) -> list[dict[str, Any]]:
        return list(_get_json(f"{self.url}/api/v1/rules")["data"]["groups"])

    def stop(self) -> None:
        self.process.stop()


def _unix(rfc3339: str) -> float:
    """Prometheus's RFC 3339 times as unix seconds (beyond microseconds is dropped)."""
    return datetime.fromisoformat(rfc3339).timestamp()


@dataclass
class Alertmanager:
    url: str
    process: procs.Process

    def alerts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = _get_json(f"{self.url}/api/v2/alerts")
        return result

    def stop(self) -> None:
        self.process.stop()


@dataclass(frozen=True)
class Series:
    """One series to backfill: metric name, labels and (unix seconds, value) samples."""

    name: str
    labels: Mapping[str, str]
    samples: Iterable[tuple[float, float]] = field(default_factory=tuple)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _label_str(labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}" if inner else ""


def backfill(storage: Path, series: Iterable[Series], kind: str = "gauge") -> None:
    """Write history into ``storage`` before Prometheus starts (OpenMetrics -> TSDB blocks).

    Keep it to a few series at 1-5 min resolution: promtool 2.42 cuts 2 h blocks and is slow
    on large inputs.
    """
    storage.mkdir(parents=True, exist_ok=True)
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    lines: list[str] = []
    for name, group in by_name.items():
        lines.append(f"# TYPE {name} {kind}")
        for s in group:
            lab = _label_str(s.labels)
            lines.extend(f"{name}{lab} {v!r} {t:.3f}" for t, v in s.samples)
    lines.append("# EOF")
    om = storage / "backfill.om"
    om.write_text("\n".join(lines) + "\n")
    done = subprocess.run([require("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                           str(om), str(storage)], capture_output=True, text=True, check=False)
    om.unlink()
    if done.returncode != 0:
        raise StackError(f"promtool backfill failed: {done.stderr.strip()[-2000:]}")


def start_prometheus(work_dir: Path, config: Mapping[str, Any], *, retention: str = "60d",
                     storage: Path | None = None, timeout_s: float = 30.0) -> Prometheus:
    """Start Prometheus on a free loopback port with ``config`` (a prometheus.yml mapping)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    cfg_path = work_dir / "prometheus.yml"
    cfg_path.write_text(yaml.safe_dump(dict(config)))
    storage = storage or work_dir / "tsdb"
    p = procs.start("prometheus", [
        require("prometheus"), f"--config.file={cfg_path}", f"--storage.tsdb.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
        f"--storage.tsdb.retention.time={retention}", "--log.level=warn",
        # Alertmanager discovery lags the first rule evaluation by up to 5 s; the upstream
        # resend delay (1 m) would then hold the first notification back for a minute.
        "--rules.alert.resend-delay=2s",
    ], work_dir / "prometheus.log")
    url = f"http://127.0.0.1:{port}"
    p.wait_ready(lambda: http_ok(f"{url}/-/ready"), timeout_s, "ready (/-/ready)")
    return Prometheus(url=url, process=p, config_path=cfg_path, storage=storage)


def start_alertmanager(work_dir: Path, config: Mapping[str, Any], timeout_s: float = 30.0) -> Alertmanager:
    """Start Alertmanager on a free loopback port, clustering off."""
    work_dir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    cfg_path = work_dir / "alertmanager.yml"
    cfg_path.write_text(yaml.safe_dump(dict(config)))
    p = procs.start("alertmanager", [
        require("prometheus-alertmanager"), f"--config.file={cfg_path}",
        f"--storage.path={work_dir / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=", "--log.level=warn",
    ], work_dir / "alertmanager.log")
    url = f"http://127.0.0.1:{port}"
    p.wait_ready(lambda: http_ok(f"{url}/-/ready"), timeout_s, "ready (/-/ready)")
    return Alertmanager(url=url, process=p)
