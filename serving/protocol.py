"""Request and response bodies of KServe v1 and the Open Inference Protocol (v2).

Parsing is pure: a decoded JSON document and the model's signature in, a numpy batch out, or
``BadRequest`` naming what is wrong (missing key, ragged rows, shape, datatype).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import numpy.typing as npt

from serving.errors import BadRequest
from serving.runtimes import DATATYPES, Signature, datatype_of

Array = npt.NDArray[Any]


def decode_json(body: bytes) -> Any:
    """Parse a request body; malformed JSON is a 400 that quotes the parser's complaint."""
    if not body:
        raise BadRequest("empty request body; expected a JSON object")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON: {e}") from None


def _check_rows(x: Array, sig: Signature, where: str) -> Array:
    want = sig.input.shape
    if x.ndim == 0 or x.shape[0] == 0:
        raise BadRequest(f"{where}: needs at least one instance")
    got = x.shape[1:]
    if len(got) != len(want) or any(w not in (-1, g) for w, g in zip(want, got, strict=True)):
        shape = ["batch", *(("any" if w == -1 else w) for w in want)]
        raise BadRequest(f"{where}: each instance has shape {list(got)}; the model expects {shape}")
    return x


def parse_v1(doc: Any, sig: Signature) -> Array:
    """``{"instances": [row, ...]}`` -> a batch in the model's input dtype."""
    if not isinstance(doc, dict) or "instances" not in doc:
        raise BadRequest("expected a JSON object with an 'instances' list")
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise BadRequest(f"'instances' must be a list, not {type(instances).__name__}")
    try:
        x = np.asarray(instances, dtype=sig.input.dtype)
    except (ValueError, TypeError, OverflowError) as e:
        message = f"'instances' is not a rectangular list of {sig.input.datatype} numbers: {e}"
        raise BadRequest(message) from None
    return _check_rows(x, sig, "instances")


def format_v1(y: Array) -> dict[str, Any]:
    return {"predictions": y.tolist()}


def _v2_tensor(t: Any, sig: Signature) -> Array:
    if not isinstance(t, dict):
        raise BadRequest("each entry of 'inputs' must be an object with name, shape, datatype, data")
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in t]
    if missing:
        raise BadRequest(f"input tensor is missing {', '.join(repr(k) for k in missing)}")
    shape, datatype = t["shape"], t["datatype"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"'shape' must be a list of non-negative integers, not {shape!r}")
    if datatype not in DATATYPES or datatype == "BOOL":
        raise BadRequest(f"datatype {datatype!r} is not supported; use one of "
                         f"{', '.join(d for d in DATATYPES if d != 'BOOL')}")
    src = DATATYPES[datatype]
    if not np.can_cast(src, sig.input.dtype, casting="same_kind"):
        raise BadRequest(f"datatype {datatype} cannot be converted to the model's {sig.input.datatype}")
    try:
        flat = np.asarray(t["data"], dtype=src).reshape(-1)
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"'data' is not a list of {datatype} numbers: {e}") from None
    if flat.size != int(np.prod(shape)):
        raise BadRequest(f"'data' has {flat.size} elements but shape {shape} needs {int(np.prod(shape))}")
    return _check_rows(flat.reshape(shape).astype(sig.input.dtype, copy=False), sig, f"input {t['name']!r}")


def parse_v2(doc: Any, sig: Signature) -> tuple[Array, str | None]:
    """An inference request -> (batch, request id); the model takes exactly one input."""
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequest("expected a JSON object with an 'inputs' list")
    inputs = doc["inputs"]
    if len(inputs) != 1:
        raise BadRequest(f"the model takes exactly 1 input ({sig.input.name!r}), got {len(inputs)}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    return _v2_tensor(inputs[0], sig), request_id


def format_v2(model: str, version: int, sig: Signature, y: Array, request_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model_name": model,
        "model_version": str(version),
        "outputs": [{
            "name": sig.output.name,
            "shape": list(y.shape),
            "datatype": datatype_of(y.dtype),
            "data": y.reshape(-1).tolist(),
        }],
    }
    if request_id is not None:
        out["id"] = request_id
    return out


def tensor_metadata(sig: Signature) -> dict[str, Any]:
    """The ``inputs``/``outputs`` of v2 model metadata (-1 marks the batch dimension)."""
    def one(spec: Any) -> dict[str, Any]:
        return {"name": spec.name, "datatype": spec.datatype, "shape": [-1, *spec.shape]}
    return {"inputs": [one(sig.input)], "outputs": [one(sig.output)]}
