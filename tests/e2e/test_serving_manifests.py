"""deploy/serving applied to the real control plane: every object admitted (the
PredictiveAutoscaler by the real CRD schema and its validation rules, pods by the restricted
Pod Security level) and the Deployment Available on KWOK GPU nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from prescale.stack.cluster import Cluster
from prescale.stack.errors import StackError

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
NS = "prescale-serving"


def test_serving_manifests_apply_and_become_available(cluster: Cluster) -> None:
    crd = ROOT / "deploy" / "crds" / "predictiveautoscalers.yaml"
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    cluster.wait_established("predictiveautoscalers.autoscaling.prescale.dev", timeout_s=60.0)
    try:
        cluster.kubectl("apply", "-k", str(ROOT / "deploy" / "serving"))
        deadline = time.monotonic() + 90
        while True:
            dep = json.loads(cluster.kubectl("get", "deployment", "prescale-serving", "-n", NS, "-o", "json"))
            conds = {c["type"]: c["status"] for c in dep.get("status", {}).get("conditions", [])}
            ready = dep["status"].get("readyReplicas") == dep["spec"]["replicas"]
            if conds.get("Available") == "True" and ready:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"prescale-serving not Available: {dep.get('status')}\n{cluster.logs()}")
            time.sleep(0.5)
        pa = json.loads(cluster.kubectl("get", "pa", "prescale-serving", "-n", NS, "-o", "json"))
        assert pa["spec"]["actuation"]["hpaName"] == "prescale-serving"
        # The same object with an inconsistent spec is refused at admission, naming the field.
        bad = yaml.safe_load((ROOT / "deploy" / "serving" / "predictiveautoscaler.yaml").read_text())
        bad["metadata"]["name"] = "inconsistent"
        bad["spec"]["minReplicas"], bad["spec"]["maxReplicas"] = 10, 2
        with pytest.raises(StackError, match="maxReplicas"):
            cluster.apply(yaml.safe_dump(bad))
    finally:
        cluster.kubectl("delete", "namespace", NS, "--wait=false", "--ignore-not-found")
