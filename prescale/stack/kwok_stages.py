"""The KWOK stage set the local cluster runs with.

We take KWOK's own ``general`` pod stages and ``fast`` node stages from the copy that
``scripts/build-k8s.sh`` keeps beside the binaries, and change two delays:
- pod creation and init containers happen at once;
- a pod becomes Ready exactly ``pod_ready_delay_s`` after it starts (the model-loading time
  of a GPU replica), overridable per pod with the annotation
  ``pod-ready.stage.kwok.x-k8s.io/delay: "90s"``. KWOK uses the jitter as the delay when
  jitter <= duration, so both read the same annotation and the delay is exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from prescale.stack.errors import StackError

READY_DELAY_ANNOTATION: Final = "pod-ready.stage.kwok.x-k8s.io/delay"
_POD_FILES: Final = ("pod-create", "pod-init-container-running", "pod-init-container-completed",
                     "pod-ready", "pod-complete", "pod-delete")
_NODE_FILES: Final = ("fast/node-initialize", "heartbeat-with-lease/node-heartbeat-with-lease")


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise StackError(f"KWOK stage {path}: {e}; re-run scripts/build-k8s.sh") from e
    if not isinstance(doc, dict) or doc.get("kind") != "Stage":
        raise StackError(f"KWOK stage {path}: not a Stage document")
    return doc


def _exact_delay(stage: dict[str, Any], default_ms: int, annotation: str) -> None:
    expr = {"expressionFrom": f'.metadata.annotations["{annotation}"]'}
    stage["spec"]["delay"] = {
        "durationMilliseconds": default_ms, "durationFrom": expr,
        "jitterDurationMilliseconds": default_ms, "jitterDurationFrom": expr,
    }


def build_stages(stage_dir: Path, pod_ready_delay_s: float) -> list[dict[str, Any]]:
    stages = [_load(stage_dir / "node" / f"{n}.yaml") for n in _NODE_FILES]
    for name in _POD_FILES:
        stage = _load(stage_dir / "pod" / "general" / f"{name}.yaml")
        if name == "pod-ready":
            _exact_delay(stage, int(pod_ready_delay_s * 1000), READY_DELAY_ANNOTATION)
        elif name in ("pod-create", "pod-init-container-running", "pod-init-container-completed"):
            _exact_delay(stage, 0, f"{name}.stage.kwok.x-k8s.io/delay")
        stages.append(stage)
    return stages


def write_stages(path: Path, stage_dir: Path, pod_ready_delay_s: float) -> None:
    path.write_text(yaml.safe_dump_all(build_stages(stage_dir, pod_ready_delay_s), sort_keys=False))
