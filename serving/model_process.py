"""Models in worker processes, so a GIL-bound runtime does not starve the event loop.

A scikit-learn forest holds the GIL for its whole ``predict``. Called from a thread of the
server process it competes with the event loop that reads, parses and answers requests: under
overload even the cheap 429s wait behind the model, and the latency of the accepted requests
grows with the offered load. With ``executor: process`` each batch worker has a model process
of its own (started with ``spawn``, so none of the server's threads or sockets is inherited):
the server process keeps its GIL for HTTP and batching, and the model runs on other cores.
Batches travel over a pipe, pickled; a batch of rows is small next to the model call.

The model processes ignore SIGINT and SIGTERM: the server drains first and then closes them
(a closed pipe ends a model process, so they also go when the server is killed).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.errors import RepositoryError
from serving.runtimes import Model, Signature, load_model

log = logging.getLogger(__name__)
_SPAWN = mp.get_context("spawn")
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0


class ModelProcessError(RuntimeError):
    """The model raised in its process, or the process died during a call."""


def warm_up(model: Model, rows: tuple[int, ...]) -> None:
    """Run zero batches of each size so the first request pays no warm-up."""
    shape = tuple(max(1, d) for d in model.signature.input.shape)
    for n in rows:
        model.predict(np.zeros((n, *shape), dtype=model.signature.input.dtype))


def _serve(conn: Connection, version_dir: str, warm_rows: tuple[int, ...]) -> None:
    """A model process: load, warm up, say ready, then answer batches until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        model = load_model(Path(version_dir))
        warm_up(model, warm_rows)
    except Exception as e:  # reported to the server, which logs it and skips the version
        conn.send(("error", str(e) if isinstance(e, RepositoryError) else f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", (model.runtime, model.signature)))
    while True:
        try:
            batch = conn.recv()
        except EOFError:  # the server closed the pipe or is gone
            break
        if batch is None:
            break
        out: tuple[str, Any]
        try:
            out = ("ok", model.predict(batch))
        except Exception as e:
            out = ("error", f"{type(e).__name__}: {e}")
        conn.send(out)
    model.close()


class _Worker:
    """One model process and the server's end of its pipe."""

    def __init__(self, version_dir: Path, warm_rows: tuple[int, ...]) -> None:
        self._dir = version_dir
        self._warm_rows = warm_rows
        self._conn: Connection | None = None
        self._proc: BaseProcess | None = None

    def spawn(self) -> None:
        ours, theirs = _SPAWN.Pipe()
        self._proc = _SPAWN.Process(target=_serve, args=(theirs, str(self._dir), self._warm_rows),
                                    name=f"model-{self._dir.parent.name}-{self._dir.name}", daemon=True)
        self._proc.start()
        theirs.close()
        self._conn = ours

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> tuple[str, Signature]:
        assert self._conn is not None
        try:
            if not self._conn.poll(timeout_s):
                raise RepositoryError(f"{self._dir}: the model process did not load within {timeout_s:.0f} s")
            status, payload = self._conn.recv()
        except (EOFError, OSError):
            raise RepositoryError(f"{self._dir}: the model process exited while loading") from None
        if status != "ready":
            raise RepositoryError(f"{self._dir}: {payload}")
        runtime, signature = payload
        return str(runtime), signature

    def call(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self._conn is None:  # died during an earlier call: start a new one
            log.warning("starting a new model process", extra={"fields": {"model_dir": str(self._dir)}})
            try:
                self.spawn()
                self.wait_ready()
            except RepositoryError as e:
                self.stop()
                raise ModelProcessError(f"cannot restart the model process: {e}") from None
        assert self._conn is not None
        try:
            self._conn.send(batch)
            status, payload = self._conn.recv()
        except (EOFError, OSError) as e:
            self.stop()
            raise ModelProcessError(f"the model process died ({type(e).__name__})") from None
        if status != "ok":
            raise ModelProcessError(str(payload))
        return np.asarray(payload)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        conn, proc, self._conn, self._proc = self._conn, self._proc, None, None
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            conn.close()
        if proc is not None:
            proc.join(STOP_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join(STOP_TIMEOUT_S)


class ProcessModel:
    """A :class:`Model` whose ``predict`` runs in one of ``processes`` model processes.

    Each call borrows an idle process for its batch, so up to ``processes`` batches run at
    once (the batcher's worker threads only wait on pipes, without the GIL).
    """

    def __init__(self, version_dir: Path, processes: int, warm_rows: tuple[int, ...]) -> None:
        started = time.monotonic()
        self._workers = [_Worker(version_dir, warm_rows) for _ in range(processes)]
        try:
            for w in self._workers:
                w.spawn()
            infos = [w.wait_ready() for w in self._workers]
        except BaseException:
            self.close()
            raise
        self.runtime, self.signature = infos[0]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for w in self._workers:
            self._idle.put(w)
        log.info("model processes ready", extra={"fields": {
            "model_dir": str(version_dir), "processes": processes,
            "start_s": round(time.monotonic() - started, 3)}})

    @property
    def pids(self) -> list[int]:
        """The model processes running now."""
        return [w.pid for w in self._workers if w.pid is not None]

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        worker = self._idle.get()
        try:
            return worker.call(batch)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        for w in self._workers:
            w.stop()


def process_loader(processes: int, warm_rows: tuple[int, ...]) -> Callable[[Path], Model]:
    """A repository loader that puts each model version into ``processes`` model processes."""

    def load(version_dir: Path) -> Model:
        return ProcessModel(version_dir, processes, warm_rows)

    return load
