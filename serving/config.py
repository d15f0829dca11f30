"""Server configuration: frozen dataclasses, a pure ``from_mapping``, strict validation.

File reading lives in :func:`load_file`; :func:`from_mapping` only checks a mapping, so the
same validation serves the YAML file, the command line and tests. Unknown keys are errors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from serving.errors import ConfigError

EXECUTORS = ("thread", "process")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve (TF Serving's ``model_version_policy``)."""

    latest: int = 1
    """Serve the N highest version numbers found on disk (ignored when ``versions`` is set)."""
    versions: tuple[int, ...] = ()
    """Pin these exact versions instead; the highest loaded one answers unversioned requests."""

    def select(self, on_disk: list[int]) -> list[int]:
        """The versions to load out of those on disk, highest first."""
        ordered = sorted(on_disk, reverse=True)
        if self.versions:
            return [v for v in ordered if v in self.versions]
        return ordered[: self.latest]


@dataclass(frozen=True)
class BatchConfig:
    """Dynamic batching and admission control, per loaded model version."""

    max_batch_size: int = 32
    """Most rows (instances) one model call receives; 1 turns batching off."""
    batch_timeout_s: float = 0.002
    """How long a worker waits for more requests after the first one of a batch (seconds)."""
    workers: int = 2
    """Batches that run in parallel (threads calling the model, or model processes)."""
    executor: str = "thread"
    """Where the model runs: ``thread`` (threads of the server process; for runtimes that
    release the GIL, such as ONNX Runtime or PyTorch on CUDA) or ``process`` (one model process
    per worker; for GIL-bound models such as scikit-learn, so the event loop keeps its GIL)."""
    max_queue_size: int = 256
    """Requests waiting for a worker; past this the server answers 429 with Retry-After."""
    request_timeout_s: float = 10.0
    """Deadline of one request from arrival (seconds); a client header may only shorten it."""
    max_wait_s: float = 0.0
    """Admission budget: a request whose expected wait (event-loop lag + queued batches) exceeds
    it is refused at once with 429, before its body is read. 0 turns it off (only the queue
    bound applies)."""


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``prescale serve`` needs; defaults suit one replica in a pod."""

    model_repository: Path
    """Root of a TF-Serving-style repository: ``<repo>/<model>/<version>/model.*``."""
    models: tuple[str, ...] = ()
    """Models to serve; empty means every model directory found in the repository."""
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    """Which versions to keep loaded."""
    batching: BatchConfig = field(default_factory=BatchConfig)
    """Dynamic batching and the bounded queue."""
    host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on all interfaces
    """Listen address."""
    port: int = 8080
    """Listen port."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body accepted; bigger bodies get 413."""
    poll_interval_s: float = 10.0
    """How often the repository is rescanned for new versions; 0 disables hot loading."""
    drain_delay_s: float = 0.0
    """After SIGTERM, keep accepting requests (while unready) this long so balancers notice."""
    grace_period_s: float = 30.0
    """Total time from SIGTERM to exit; in-flight and queued requests must finish within it."""
    namespace: str = ""
    """Value of the ``namespace`` metric label (the downward API's POD_NAMESPACE)."""
    pod: str = ""
    """Value of the ``pod`` metric label (the downward API's POD_NAME)."""


def _reject_unknown(section: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{section}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _number(key: str, value: Any, *, minimum: float, integer: bool = False) -> Any:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {kind} >= {minimum}")
    return value


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected one of {', '.join(allowed)}")
    return str(value)


def _policy(data: Any) -> VersionPolicy:
    if not isinstance(data, Mapping):
        raise ConfigError(f"version_policy: {data!r} is not a mapping with 'latest' or 'versions'")
    _reject_unknown("version_policy", data, {"latest", "versions"})
    if "versions" in data:
        raw = data["versions"]
        if not isinstance(raw, list | tuple) or not raw:
            raise ConfigError(f"version_policy.versions: {raw!r} is not a non-empty list of integers")
        pinned = tuple(_number("version_policy.versions", v, minimum=0, integer=True) for v in raw)
        return VersionPolicy(versions=pinned)
    latest = _number("version_policy.latest", data.get("latest", 1), minimum=1, integer=True)
    return VersionPolicy(latest=latest)


def _batching(data: Any) -> BatchConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"batching: {data!r} is not a mapping")
    _reject_unknown("batching", data, {f.name for f in fields(BatchConfig)})
    d = BatchConfig()
    return BatchConfig(
        max_batch_size=_number("batching.max_batch_size", data.get("max_batch_size", d.max_batch_size),
                               minimum=1, integer=True),
        batch_timeout_s=float(_number("batching.batch_timeout_s",
                                      data.get("batch_timeout_s", d.batch_timeout_s), minimum=0)),
        workers=_number("batching.workers", data.get("workers", d.workers), minimum=1, integer=True),
        executor=_choice("batching.executor", data.get("executor", d.executor), EXECUTORS),
        max_queue_size=_number("batching.max_queue_size", data.get("max_queue_size", d.max_queue_size),
                               minimum=1, integer=True),
        request_timeout_s=float(_number("batching.request_timeout_s",
                                        data.get("request_timeout_s", d.request_timeout_s), minimum=0.001)),
        max_wait_s=float(_number("batching.max_wait_s", data.get("max_wait_s", d.max_wait_s), minimum=0)),
    )


def _models(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(m, str) for m in raw):
        raise ConfigError(f"models: {raw!r} is not a list of model names")
    for name in raw:
        if not MODEL_NAME.match(name):
            raise ConfigError(f"models: {name!r} is not a valid model name (letters, digits, '_.-')")
    return tuple(raw)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: {value!r} is not a string")
    return value


def from_mapping(data: Mapping[str, Any]) -> ServeConfig:
    """Validate a configuration mapping (parsed YAML or built from flags) into a ServeConfig."""
    _reject_unknown("config", data, {f.name for f in fields(ServeConfig)})
    if "model_repository" not in data:
        raise ConfigError("model_repository: required (the directory holding <model>/<version>/)")
    d = ServeConfig(model_repository=Path())
    grace = float(_number("grace_period_s", data.get("grace_period_s", d.grace_period_s), minimum=0))
    drain = float(_number("drain_delay_s", data.get("drain_delay_s", d.drain_delay_s), minimum=0))
    if drain >= grace > 0:
        raise ConfigError(f"drain_delay_s: {drain} must be shorter than grace_period_s ({grace})")
    return ServeConfig(
        model_repository=Path(_text("model_repository", data["model_repository"])),
        models=_models(data.get("models", [])),
        version_policy=_policy(data.get("version_policy", {})),
        batching=_batching(data.get("batching", {})),
        host=_text("host", data.get("host", d.host)),
        port=_number("port", data.get("port", d.port), minimum=0, integer=True),
        max_body_bytes=_number("max_body_bytes", data.get("max_body_bytes", d.max_body_bytes),
                               minimum=1024, integer=True),
        poll_interval_s=float(_number("poll_interval_s", data.get("poll_interval_s", d.poll_interval_s),
                                      minimum=0)),
        drain_delay_s=drain,
        grace_period_s=grace,
        namespace=_text("namespace", data.get("namespace", d.namespace)),
        pod=_text("pod", data.get("pod", d.pod)),
    )


def load_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping (validation is :func:`from_mapping`'s job)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, not {type(data).__name__}")
    return data
