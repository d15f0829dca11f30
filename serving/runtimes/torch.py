"""PyTorch TorchScript models (the ``torch`` extra), on CUDA when a GPU is present.

``model.pt`` is a TorchScript module (``torch.jit.save``); ``metadata.json`` must give the
input and output specs because a scripted module does not describe them. torch is imported
lazily here and nowhere else, so the server runs without it.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.errors import RepositoryError
from serving.runtimes import Signature


class TorchModel:
    """A TorchScript module in eval mode under ``inference_mode``, on ``device``."""

    runtime = "torch"

    def __init__(self, torch: Any, module: Any, signature: Signature, device: str) -> None:
        self._torch = torch
        self._module = module
        self.signature = signature
        self.device = device
        # One CUDA stream per thread would allow overlap; a lock keeps the GPU path simple and safe.
        self._lock = threading.Lock()

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        torch = self._torch
        with self._lock, torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
            y = self._module(x)
            return np.asarray(y.detach().to("cpu").numpy())

    def close(self) -> None:
        self._module = None
        if self.device == "cuda":
            self._torch.cuda.empty_cache()


def load(path: Path, signature: Signature | None, device: str | None = None) -> TorchModel:
    if signature is None:
        raise RepositoryError(f"{path}: a TorchScript model needs metadata.json with input and output")
    torch = importlib.import_module("torch")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as e:  # torch raises RuntimeError or pickle errors for bad files
        raise RepositoryError(f"{path}: cannot load: {type(e).__name__}: {e}") from e
    module.eval()
    return TorchModel(torch, module, signature, device)
