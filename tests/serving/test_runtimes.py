"""One contract every runtime passes: load, describe the input, answer a batch row for row."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from serving import example
from serving.errors import RepositoryError
from serving.runtimes import RUNTIMES, Model, load_model

HAS_TORCH = importlib.util.find_spec("torch") is not None


def torch_model_dir(root: Path) -> Path:
    """A TorchScript linear classifier over the iris features, with its metadata."""
    torch = importlib.import_module("torch")  # only reached when torch is installed
    torch.manual_seed(0)
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=1)))
    version = root / "iris-torch" / "1"
    version.mkdir(parents=True)
    torch.jit.save(module, str(version / "model.pt"))
    (version / "metadata.json").write_text(json.dumps({
        "input": {"name": "input", "datatype": "FP32", "shape": [4]},
        "output": {"name": "probabilities", "datatype": "FP32", "shape": [3]}}))
    return version


@pytest.fixture(params=sorted(RUNTIMES))
def loaded(request: pytest.FixtureRequest, example_repo_once: Path, tmp_path: Path) -> Model:
    runtime: str = request.param
    if runtime == "torch":
        if not HAS_TORCH:
            pytest.skip("torch is not installed (the optional prescale[torch] extra; its wheel is gigabytes)")
        return load_model(torch_model_dir(tmp_path))
    name = {"sklearn": example.SKLEARN_MODEL, "onnx": example.ONNX_MODEL}[runtime]
    return load_model(example_repo_once / name / "1")


def test_runtime_contract(loaded: Model) -> None:
    sig = loaded.signature
    assert sig.input.shape == (example.N_FEATURES,)
    x, _ = example.iris()
    for n in (1, 7, 150):
        y = loaded.predict(x[:n].astype(sig.input.dtype))
        assert len(y) == n
        assert y.shape[1:] == tuple(d for d in sig.output.shape if d != -1)
    loaded.close()


def test_sklearn_and_onnx_agree_on_all_of_iris(example_repo_once: Path) -> None:
    x, y = example.iris()
    sk = load_model(example_repo_once / example.SKLEARN_MODEL / "1").predict(x)
    ox = load_model(example_repo_once / example.ONNX_MODEL / "1").predict(x)
    assert np.array_equal(sk, ox)
    assert (sk == y).mean() > 0.95


def test_training_is_reproducible() -> None:
    x, _ = example.iris()
    assert np.array_equal(example.train().predict_proba(x), example.train().predict_proba(x))


@pytest.mark.parametrize(("files", "message"), [
    ({}, "expected exactly one of"),
    ({"model.joblib": b"x", "model.onnx": b"x"}, "found 2"),
    ({"metadata.json": b'{"runtime": "tensorflow"}'}, "unknown runtime 'tensorflow'"),
    ({"metadata.json": b"{"}, "unreadable metadata"),
    ({"metadata.json": b'{"input": {"datatype": "STRING"}}'}, "needs 'datatype'"),
    ({"model.onnx": b"garbage"}, "cannot load"),
    ({"model.pt": b"x"}, "needs metadata.json"),
])
def test_bad_version_directories_raise_repository_errors(tmp_path: Path, files: dict[str, bytes],
                                                         message: str) -> None:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(RepositoryError, match=None) as exc:
        load_model(tmp_path)
    assert message in str(exc.value)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the optional prescale[torch] extra)")
def test_torch_runs_on_cuda_when_a_gpu_is_present(tmp_path: Path) -> None:
    torch = importlib.import_module("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = load_model(torch_model_dir(tmp_path))
    assert getattr(model, "device", None) == "cuda"
    x, _ = example.iris()
    assert model.predict(x).shape == (150, 3)
