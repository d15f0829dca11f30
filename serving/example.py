"""Build the example model repository: a random forest trained on scikit-learn's iris data.

Training is reproducible (fixed ``random_state``, a dataset shipped inside scikit-learn), so
two builds give the same predictions. The forest's fixed cost per call (about 2-3 ms for 50
trees whatever the batch size) resembles a GPU model's launch overhead, which is what dynamic
batching amortizes.

    python -m serving.example DIR          # or: prescale serve --make-example-repo DIR

writes ``DIR/iris/1/model.joblib`` (scikit-learn) and ``DIR/iris-onnx/1/model.onnx``.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

SKLEARN_MODEL = "iris"
ONNX_MODEL = "iris-onnx"
N_FEATURES = 4
_METADATA = {
    "input": {"name": "input", "datatype": "FP32", "shape": [N_FEATURES]},
    "output": {"name": "label", "datatype": "INT64", "shape": []},
}


def iris() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The iris features (float32) and labels."""
    datasets = importlib.import_module("sklearn.datasets")
    x, y = datasets.load_iris(return_X_y=True)
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)


def train() -> Any:
    """A 50-tree random forest, deterministic for a given scikit-learn version."""
    ensemble = importlib.import_module("sklearn.ensemble")
    x, y = iris()
    forest = ensemble.RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0)
    return forest.fit(x, y)


def _write_onnx(forest: Any, path: Path) -> None:
    skl2onnx = importlib.import_module("skl2onnx")
    types = importlib.import_module("skl2onnx.common.data_types")
    onnx_model = skl2onnx.convert_sklearn(
        forest,
        initial_types=[("input", types.FloatTensorType([None, N_FEATURES]))],
        options={id(forest): {"zipmap": False}},
        target_opset=17,
    )
    path.write_bytes(onnx_model.SerializeToString())


def build(repo: Path, *, version: int = 1, onnx: bool = True) -> Path:
    """Write the example models under ``repo`` and return it; the ONNX copy needs skl2onnx."""
    forest = train()
    sk_dir = repo / SKLEARN_MODEL / str(version)
    sk_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(forest, sk_dir / "model.joblib")
    (sk_dir / "metadata.json").write_text(json.dumps({"runtime": "sklearn", **_METADATA}, indent=2))
    if onnx:
        onnx_dir = repo / ONNX_MODEL / str(version)
        onnx_dir.mkdir(parents=True, exist_ok=True)
        _write_onnx(forest, onnx_dir / "model.onnx")
    return repo


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m serving.example DIR", file=sys.stderr)
        return 2
    build(Path(argv[0]))
    print(f"example repository written to {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
