"""Model runtimes behind one interface, picked by the file found in a version directory.

A runtime module exposes ``load(version_dir, signature) -> Model``. Each is imported only
when a model needs it, so a server with scikit-learn models never imports ONNX Runtime or
PyTorch (each is an optional extra).
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from serving.errors import RepositoryError

# KServe v2 datatypes and the numpy dtypes they map to.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The v2 datatype name of a numpy dtype (``BYTES`` for anything else)."""
    for name, dt in DATATYPES.items():
        if dt == dtype:
            return name
    return "BYTES"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, v2 datatype and shape without the batch dimension (-1: any)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        return DATATYPES[self.datatype]


@dataclass(frozen=True)
class Signature:
    """What a model takes and returns; the batch dimension is always the first one."""

    input: TensorSpec
    output: TensorSpec


class Model(Protocol):
    """A loaded model: a batch of rows in, one output row per input row out.

    ``predict`` runs in a worker thread and may be called from several threads at once.
    """

    runtime: str
    signature: Signature

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RuntimeSpec:
    """Where a runtime lives and the model file that selects it."""

    module: str
    filename: str


RUNTIMES: dict[str, RuntimeSpec] = {
    "sklearn": RuntimeSpec("serving.runtimes.sklearn", "model.joblib"),
    "onnx": RuntimeSpec("serving.runtimes.onnx", "model.onnx"),
    "torch": RuntimeSpec("serving.runtimes.torch", "model.pt"),
}

METADATA_FILE = "metadata.json"


def _spec(d: Any, where: str) -> TensorSpec:
    if not isinstance(d, dict) or d.get("datatype") not in DATATYPES or not isinstance(d.get("shape"), list):
        raise RepositoryError(f"{where}: needs 'datatype' (one of {', '.join(DATATYPES)}) and 'shape'")
    return TensorSpec(str(d.get("name", where)), d["datatype"], tuple(int(s) for s in d["shape"]))


def read_metadata(version_dir: Path) -> tuple[str | None, Signature | None]:
    """The optional ``metadata.json``: ``{"runtime", "input": {...}, "output": {...}}``."""
    path = version_dir / METADATA_FILE
    if not path.exists():
        return None, None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RepositoryError(f"{path}: unreadable metadata: {e}") from e
    if not isinstance(meta, dict):
        raise RepositoryError(f"{path}: metadata must be a JSON object")
    runtime = meta.get("runtime")
    sig = None
    if "input" in meta or "output" in meta:
        sig = Signature(_spec(meta.get("input"), "input"), _spec(meta.get("output"), "output"))
    return (str(runtime) if runtime is not None else None), sig


def detect_runtime(version_dir: Path, declared: str | None) -> str:
    """The runtime named in metadata, else the one whose model file is present."""
    if declared is not None:
        if declared not in RUNTIMES:
            known = ", ".join(RUNTIMES)
            raise RepositoryError(f"{version_dir}: unknown runtime {declared!r}; known: {known}")
        return declared
    found = [name for name, spec in RUNTIMES.items() if (version_dir / spec.filename).exists()]
    if len(found) != 1:
        files = ", ".join(spec.filename for spec in RUNTIMES.values())
        raise RepositoryError(f"{version_dir}: expected exactly one of {files}, found {len(found)}")
    return found[0]


def load_model(version_dir: Path) -> Model:
    """Load the model in one version directory with the runtime its files select."""
    declared, signature = read_metadata(version_dir)
    name = detect_runtime(version_dir, declared)
    spec = RUNTIMES[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as e:
        raise RepositoryError(f"{version_dir}: runtime {name!r} is not installed ({e.name}); "
                              f"install the prescale[{name}] extra") from e
    model: Model = module.load(version_dir / spec.filename, signature)
    return model
