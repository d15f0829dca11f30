"""scikit-learn models saved with joblib (the ``sklearn`` extra).

The output is ``predict`` (class labels or regression values). joblib files are pickles:
load only repositories you trust, exactly as with the TF Serving or Triton repositories.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt

from serving.errors import RepositoryError
from serving.runtimes import Signature, TensorSpec, datatype_of


class SklearnModel:
    """An estimator with ``predict``; thread-safe for concurrent predictions."""

    runtime = "sklearn"

    def __init__(self, estimator: Any, signature: Signature) -> None:
        self._estimator = estimator
        self.signature = signature

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.asarray(self._estimator.predict(batch))

    def close(self) -> None:
        self._estimator = None


def _infer_signature(estimator: Any) -> Signature:
    n_features = getattr(estimator, "n_features_in_", None)
    if not isinstance(n_features, int):
        raise RepositoryError("the estimator has no n_features_in_; add metadata.json with the input shape")
    out_dtype = np.asarray(getattr(estimator, "classes_", np.zeros(1))).dtype
    output = TensorSpec("predict", datatype_of(out_dtype), ())
    return Signature(TensorSpec("input", "FP32", (n_features,)), output)


def load(path: Path, signature: Signature | None) -> SklearnModel:
    try:
        estimator = joblib.load(path)
    except Exception as e:  # a corrupt pickle can raise nearly anything
        raise RepositoryError(f"{path}: cannot load: {type(e).__name__}: {e}") from e
    if not callable(getattr(estimator, "predict", None)):
        raise RepositoryError(f"{path}: the object has no predict() method")
    return SklearnModel(estimator, signature or _infer_signature(estimator))
