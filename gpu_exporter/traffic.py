"""Inference traffic: find the serving pods on this node, scrape them, normalize (``presets``).

Discovery reads the node's pod list from the kubelet (``/pods``, the same JSON as a PodList):
a running pod is a target when it has the annotation ``prescale.dev/scrape: "true"`` (with
optional ``prescale.dev/preset``, ``prescale.dev/port``, ``prescale.dev/path``), or when one of
its container images matches a preset (vLLM, Triton, TGI, TF Serving, KServe, the bundled
server). Scrapes run concurrently on the collection loop with a per-target timeout; a failing
target drops only its own series and shows ``inference_target_up 0``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gpu_exporter.presets import PRESETS, Labels, TrafficSample, normalize

log = logging.getLogger(__name__)

ANNOTATION_SCRAPE = "prescale.dev/scrape"
ANNOTATION_PRESET = "prescale.dev/preset"
ANNOTATION_PORT = "prescale.dev/port"
ANNOTATION_PATH = "prescale.dev/path"
IMAGE_PRESETS: tuple[tuple[str, str], ...] = (
    ("vllm/vllm-openai", "vllm"), ("tritonserver", "triton"), ("text-generation-inference", "tgi"),
    ("tensorflow/serving", "tfserving"), ("kserve", "kserve"), ("prescale", "prescale"),
)
"""Image substring -> preset, checked in order, for pods without the scrape annotation."""
DEFAULT_ENDPOINTS: Mapping[str, tuple[int, str]] = {
    "vllm": (8000, "/metrics"), "triton": (8002, "/metrics"), "tgi": (80, "/metrics"),
    "tfserving": (8501, "/monitoring/prometheus/metrics"), "kserve": (8080, "/metrics"),
    "prescale": (8080, "/metrics"),
}
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    """A serving pod to scrape."""

    namespace: str
    pod: str
    deployment: str
    url: str
    preset: str


@dataclass(frozen=True)
class TrafficResult:
    """One round of traffic scraping: normalized samples (with pod labels) and target health."""

    samples: tuple[TrafficSample, ...] = ()
    up: tuple[tuple[Target, bool], ...] = ()


def deployment_of(pod: Mapping[str, Any]) -> str:
    """The owning workload name: a ReplicaSet's Deployment, else the owner's name, else ''."""
    meta = pod.get("metadata", {})
    for owner in meta.get("ownerReferences", ()):
        name = str(owner.get("name", ""))
        if owner.get("kind") == "ReplicaSet":
            suffix = meta.get("labels", {}).get("pod-template-hash", "")
            return name.removesuffix("-" + suffix) if suffix else name.rsplit("-", 1)[0]
        return name
    return ""


def _preset_of(pod: Mapping[str, Any]) -> str | None:
    annotations = pod.get("metadata", {}).get("annotations", {}) or {}
    if annotations.get(ANNOTATION_SCRAPE) == "false":
        return None
    if ANNOTATION_PRESET in annotations:
        return str(annotations[ANNOTATION_PRESET])
    images = [str(c.get("image", "")) for c in pod.get("spec", {}).get("containers", ())]
    for needle, preset in IMAGE_PRESETS:
        if any(needle in image for image in images):
            return preset
    return "prescale" if annotations.get(ANNOTATION_SCRAPE) == "true" else None


def targets_from_pods(pod_list: Mapping[str, Any]) -> tuple[Target, ...]:
    """Targets among the running pods of a PodList; unknown presets are skipped with a log."""
    targets: list[Target] = []
    for pod in pod_list.get("items", ()):
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        preset = _preset_of(pod)
        if preset is None or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if preset not in PRESETS:
            log.warning("unknown preset", extra={"fields": {"pod": meta.get("name"), "preset": preset}})
            continue
        port, path = DEFAULT_ENDPOINTS[preset]
        annotations = meta.get("annotations", {}) or {}
        port = int(annotations.get(ANNOTATION_PORT, port))
        path = str(annotations.get(ANNOTATION_PATH, path))
        targets.append(Target(str(meta.get("namespace", "")), str(meta.get("name", "")), deployment_of(pod),
                              f"http://{status['podIP']}:{port}{path}", preset))
    return tuple(sorted(targets, key=lambda t: (t.namespace, t.pod)))


@dataclass(frozen=True)
class KubeletPods:
    """Reads the node's pods from the kubelet's ``/pods`` endpoint (bearer token when given)."""

    url: str
    token_path: Path | None = None
    verify_tls: bool = False
    """The kubelet serves a self-signed certificate on most distributions."""

    async def targets(self, session: aiohttp.ClientSession, timeout_s: float) -> tuple[Target, ...]:
        headers = {}
        if self.token_path is not None:
            headers["Authorization"] = "Bearer " + self.token_path.read_text().strip()
        async with session.get(self.url, headers=headers, ssl=self.verify_tls,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            resp.raise_for_status()
            return targets_from_pods(await resp.json())


def _with_pod(sample: TrafficSample, target: Target) -> TrafficSample:
    extra: Labels = (("deployment", target.deployment), ("namespace", target.namespace), ("pod", target.pod))
    return TrafficSample(sample.family, sample.name, tuple(sorted(sample.labels + extra)), sample.value)


async def scrape_target(session: aiohttp.ClientSession, target: Target,
                        timeout_s: float) -> tuple[TrafficSample, ...]:
    """Normalized samples of one target; raises on any HTTP, timeout or parse failure."""
    async with session.get(target.url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        resp.raise_for_status()
        body = await resp.content.read(MAX_BODY_BYTES)
    return tuple(_with_pod(s, target) for s in normalize(body.decode(), PRESETS[target.preset]))


async def scrape_all(session: aiohttp.ClientSession, targets: Sequence[Target],
                     timeout_s: float) -> TrafficResult:
    """Scrape every target concurrently; one failure never blanks the others."""
    results = await asyncio.gather(*(scrape_target(session, t, timeout_s) for t in targets),
                                   return_exceptions=True)
    samples: list[TrafficSample] = []
    up: list[tuple[Target, bool]] = []
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            error = f"{type(result).__name__}: {result}"[:200]
            log.info("traffic scrape failed",
                     extra={"fields": {"pod": f"{target.namespace}/{target.pod}", "error": error}})
            up.append((target, False))
        else:
            samples.extend(result)
            up.append((target, True))
    return TrafficResult(tuple(samples), tuple(up))
