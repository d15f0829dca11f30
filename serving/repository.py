"""The model repository: what is on disk, what is loaded, and hot loading between the two.

Layout (as TF Serving): ``<repo>/<model>/<version>/`` with an integer version directory
holding one model file (see :mod:`serving.runtimes`). :meth:`Repository.sync` loads the
versions the policy selects and unloads the rest; the server calls it at start-up and then
every ``poll_interval_s``, so a new version directory goes live without a restart. A version
serves only after it has been loaded and warmed up; loading runs in a thread so health checks
keep answering meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serving.batching import Batcher
from serving.config import MODEL_NAME, ServeConfig
from serving.errors import NotFound, RepositoryError
from serving.metrics import ServerMetrics
from serving.model_process import process_loader, warm_up
from serving.runtimes import Model, load_model

log = logging.getLogger(__name__)
UNLOAD_TIMEOUT_S = 30.0


@dataclass
class LoadedVersion:
    """A version that is serving: its model, its batcher and how long it took to load."""

    model_name: str
    version: int
    model: Model
    batcher: Batcher
    load_s: float


def scan(root: Path, wanted: tuple[str, ...]) -> dict[str, list[int]]:
    """Model name -> integer version directories found under ``root``."""
    found: dict[str, list[int]] = {name: [] for name in wanted}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        name = model_dir.name
        if (wanted and name not in wanted) or not MODEL_NAME.match(name):
            continue
        found[name] = sorted(int(v.name) for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit())
    return found


class Repository:
    """Loaded versions by model, kept in line with the disk and the version policy."""

    def __init__(self, cfg: ServeConfig, metrics: ServerMetrics,
                 loader: Callable[[Path], Model] | None = None) -> None:
        self._cfg = cfg
        self._metrics = metrics
        self._warm_rows = tuple(sorted({1, cfg.batching.max_batch_size}))
        if loader is None:
            b = cfg.batching
            loader = process_loader(b.workers, self._warm_rows) if b.executor == "process" else load_model
        self._loader = loader
        self._loaded: dict[str, dict[int, LoadedVersion]] = {}
        self._failed: dict[tuple[str, int], str] = {}
        self._expected: set[str] = set(cfg.models)
        self._lock = asyncio.Lock()
        self.synced_once = False

    @property
    def ready(self) -> bool:
        """Every expected model has at least one loaded version (and there is a model at all)."""
        return (self.synced_once and bool(self._expected)
                and all(self._loaded.get(m) for m in self._expected))

    def models(self) -> list[str]:
        return sorted(self._expected | set(self._loaded))

    def versions(self, model: str) -> list[int]:
        """Loaded versions of ``model``, highest first."""
        return sorted(self._loaded.get(model, {}), reverse=True)

    def get(self, model: str, version: int | None = None) -> LoadedVersion:
        """The version to serve: the given one, or the highest loaded (raises NotFound)."""
        loaded = self._loaded.get(model)
        if not loaded:
            if model in self._expected:
                raise NotFound(f"model {model!r} has no loaded version yet")
            raise NotFound(f"unknown model {model!r}; serving: {', '.join(self.models()) or 'none'}")
        if version is None:
            return loaded[max(loaded)]
        if version not in loaded:
            have = ", ".join(str(v) for v in self.versions(model))
            raise NotFound(f"model {model!r} has no loaded version {version}; loaded: {have}")
        return loaded[version]

    async def sync(self) -> None:
        """Load what the policy selects from disk and unload what it no longer selects."""
        async with self._lock:
            try:
                on_disk = await asyncio.to_thread(scan, self._cfg.model_repository, self._cfg.models)
            except OSError as e:
                log.error("cannot scan the model repository", extra={"fields": {"error": str(e)}})
                return
            if not self._cfg.models:
                self._expected = set(on_disk)
            for model, versions in on_disk.items():
                wanted = self._cfg.version_policy.select(versions)
                for version in sorted(set(wanted) - set(self._loaded.get(model, {}))):
                    await self._load(model, version)
                for version in sorted(set(self._loaded.get(model, {})) - set(wanted)):
                    await self._unload(model, version)
            self.synced_once = True

    async def _load(self, model: str, version: int) -> None:
        path = self._cfg.model_repository / model / str(version)
        started = time.monotonic()
        try:
            loaded = await asyncio.to_thread(self._load_and_warm, path)
        except RepositoryError as e:
            if self._failed.get((model, version)) != str(e):  # log each distinct failure once
                log.error("model version failed to load",
                          extra={"fields": {"model": model, "version": version, "error": str(e)}})
                self._metrics.load_failed(model)
            self._failed[(model, version)] = str(e)
            return
        self._failed.pop((model, version), None)
        load_s = time.monotonic() - started
        batcher = Batcher(loaded, self._cfg.batching, self._metrics.for_model(model))
        batcher.start()
        self._loaded.setdefault(model, {})[version] = LoadedVersion(model, version, loaded, batcher, load_s)
        self._metrics.model_loaded(model, version, loaded.runtime, load_s, len(self._loaded[model]))
        log.info("model version loaded", extra={"fields": {
            "model": model, "version": version, "runtime": loaded.runtime, "load_s": round(load_s, 3)}})

    def _load_and_warm(self, path: Path) -> Model:
        """Load, then run a one-row and a full-batch call so the first request pays no warm-up."""
        model = self._loader(path)
        try:
            warm_up(model, self._warm_rows)
        except Exception as e:  # a model that cannot answer zeros is not ready to serve
            model.close()
            raise RepositoryError(f"{path}: warm-up failed: {type(e).__name__}: {e}") from e
        return model

    async def _unload(self, model: str, version: int) -> None:
        lv = self._loaded[model].pop(version)
        await lv.batcher.stop(UNLOAD_TIMEOUT_S)
        lv.model.close()
        self._metrics.model_unloaded(model, version, lv.model.runtime, len(self._loaded[model]))
        log.info("model version unloaded", extra={"fields": {"model": model, "version": version}})

    async def close(self, timeout_s: float) -> None:
        """Stop every batcher (letting queued requests finish within ``timeout_s``)."""
        async with self._lock:
            versions = [lv for vs in self._loaded.values() for lv in vs.values()]
            await asyncio.gather(*(lv.batcher.stop(timeout_s) for lv in versions))
            for vs in self._loaded.values():
                for lv in vs.values():
                    lv.model.close()
            self._loaded.clear()
