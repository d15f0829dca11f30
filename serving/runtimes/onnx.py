"""ONNX Runtime models (the ``onnx`` extra); the first model output is the answer.

The session is created with the CUDA provider first when ONNX Runtime offers it, so the same
file runs on a GPU node and on a laptop.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.errors import RepositoryError
from serving.runtimes import Signature, TensorSpec

# ONNX tensor element types (as onnxruntime names them) -> v2 datatypes.
_ONNX_TYPES = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int8)": "INT8",
    "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL",
}


class OnnxModel:
    """An InferenceSession; ``run`` is thread-safe, so workers share one session."""

    runtime = "onnx"

    def __init__(self, session: Any, signature: Signature) -> None:
        self._session = session
        self._input_name: str = session.get_inputs()[0].name
        self._output_name: str = session.get_outputs()[0].name
        self.signature = signature

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        outputs = self._session.run([self._output_name], {self._input_name: batch})
        return np.asarray(outputs[0])

    def close(self) -> None:
        self._session = None


def _spec(arg: Any) -> TensorSpec:
    datatype = _ONNX_TYPES.get(arg.type)
    if datatype is None:
        raise RepositoryError(f"ONNX tensor {arg.name!r} has unsupported type {arg.type}")
    dims = tuple(d if isinstance(d, int) else -1 for d in arg.shape[1:])
    return TensorSpec(arg.name, datatype, dims)


def load(path: Path, signature: Signature | None) -> OnnxModel:
    ort = importlib.import_module("onnxruntime")
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in wanted if p in ort.get_available_providers()]
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # onnxruntime raises its own untyped exceptions
        raise RepositoryError(f"{path}: cannot load: {type(e).__name__}: {e}") from e
    if signature is None:
        signature = Signature(_spec(session.get_inputs()[0]), _spec(session.get_outputs()[0]))
    return OnnxModel(session, signature)
