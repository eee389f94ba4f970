"""Jobs train with ``Settings.train_threads`` CPU threads (torch and BLAS), set only around the training step."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from threadpoolctl import threadpool_info

from app.jobs.runner import run_job, training_threads
from app.settings import Settings
from tests.app.loop_helpers import create, import_series


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_training_threads_sets_and_restores_torch_and_blas():
    before, blas_before = torch.get_num_threads(), _blas_threads()
    target = 2 if before == 1 else 1
    with training_threads(target):
        assert torch.get_num_threads() == target
        assert _blas_threads() <= {target}
    assert torch.get_num_threads() == before
    assert _blas_threads() == blas_before


def test_training_threads_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"), training_threads(2 if before == 1 else 1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_zero_leaves_the_libraries_alone():
    before = torch.get_num_threads()
    with training_threads(0):
        assert torch.get_num_threads() == before


def test_setting_from_the_environment(monkeypatch):
    assert Settings().train_threads == 1
    monkeypatch.setenv("ANOMALOOP_TRAIN_THREADS", "3")
    assert Settings().train_threads == 3
    monkeypatch.setenv("ANOMALOOP_TRAIN_THREADS", "-1")
    with pytest.raises(ValidationError):
        Settings()


def test_a_job_trains_with_the_configured_threads(database, shared_data, tmp_path, monkeypatch):
    from app.versions import service as versions

    seen: list[int] = []
    real_train = versions.train

    def recording_train(inp, device, progress=None):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return real_train(inp, device, progress=progress)

    monkeypatch.setattr(versions, "train", recording_train)
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    dataset_id = import_series(
        database, shared_data / "kpi/a8c06b47-cc41-3738-9110-12df0ee4c721.csv.gz", "threads", limit_points=600
    )
    project_id, job_id = create(database, dataset_id, name="threads", detector="iforest", window=25)
    settings = Settings(database_url=database.url, data_dir=tmp_path, device="cpu", train_threads=wanted)
    assert run_job(database, settings, job_id, lambda _: None) == "done"
    assert seen == [wanted]
    assert torch.get_num_threads() == before
