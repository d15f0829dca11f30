"""Models in worker processes: same answers as in-process, restart after a crash, clean exit."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from serving_testlib import config, deps_for, start

from serving.errors import RepositoryError
from serving.model_process import ModelProcessError, ProcessModel
from serving.runtimes import load_model

ROWS = np.asarray([[6.7, 3.0, 5.2, 2.3], [5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_answers_like_the_model_in_process_and_closes_its_processes(example_repo_once: Path) -> None:
    version_dir = example_repo_once / "iris" / "1"
    model = ProcessModel(version_dir, processes=2, warm_rows=(1, 32))
    try:
        pids = model.pids
        assert len(pids) == 2
        assert os.getpid() not in pids
        assert model.runtime == "sklearn"
        assert model.signature == load_model(version_dir).signature
        np.testing.assert_array_equal(model.predict(ROWS), load_model(version_dir).predict(ROWS))
    finally:
        model.close()
    assert model.pids == []
    assert not any(_alive(pid) for pid in pids)


def test_a_killed_model_process_fails_its_batch_and_is_replaced(example_repo_once: Path) -> None:
    model = ProcessModel(example_repo_once / "iris" / "1", processes=1, warm_rows=(1,))
    try:
        (pid,) = model.pids
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ModelProcessError, match="died"):
            model.predict(ROWS)
        assert list(model.predict(ROWS)) == [2, 0, 1]
        (new_pid,) = model.pids
        assert new_pid != pid
    finally:
        model.close()


def test_a_version_that_cannot_load_names_the_directory(tmp_path: Path) -> None:
    bad = tmp_path / "broken" / "1"
    bad.mkdir(parents=True)
    (bad / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(RepositoryError, match=str(bad)):
        ProcessModel(bad, processes=1, warm_rows=(1,))


async def test_server_with_the_process_executor_serves_and_stops_its_model_processes(
        example_repo: Path) -> None:
    cfg = config(example_repo, models=["iris"], batching={"executor": "process", "workers": 2})
    deps = deps_for(cfg)
    client = await start(deps)
    try:
        model = deps.repository.get("iris").model
        assert isinstance(model, ProcessModel)
        pids = model.pids
        assert len(pids) == 2
        resp = await client.post("/v1/models/iris:predict", json={"instances": ROWS.tolist()})
        assert resp.status == 200
        assert (await resp.json())["predictions"] == [2, 0, 1]
    finally:
        await client.close()
    assert not any(_alive(pid) for pid in pids)
