"""A job that fails after creating its run folder removes it again, unless
the folder holds a resumable checkpoint."""

import json

import keras
import pytest

from keras_ecg import jobs
from keras_ecg.callbacks import StepCheckpoint
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import run_job

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="no backend work: runs in the tensorflow pass",
)


class _Data:
    record_ids, signals, lead_names, classes, labels = ["a"], [], ["I"], [], None
    sampling_rate, num_classes = 100, 0

    def __len__(self):
        return 1


def _failing_job(checkpoint=False):
    def job(settings):
        folder = run_folder(settings, "pretrain", _Data())
        folder.check()
        folder.create()
        if checkpoint:
            backup = folder.path + "/backup"
            ckpt = StepCheckpoint(backup)
            import os

            os.makedirs(backup)
            with open(os.path.join(backup, "weights.weights.h5"), "w") as f:
                f.write("x")
            with open(os.path.join(backup, ckpt.METADATA), "w") as f:
                json.dump({"weights_file": "weights.weights.h5", "epoch": 0}, f)
        raise RuntimeError("failed after the folder was created")

    return job


def test_a_failed_run_removes_the_folder_it_created(tmp_path):
    out = tmp_path / "run"
    settings = jobs.PretrainSettings(method="simclr", output=str(out))
    with pytest.raises(RuntimeError, match="failed after"):
        run_job(_failing_job(), settings)
    assert not out.exists()
    # An empty folder that was there before stays, empty.
    out.mkdir()
    with pytest.raises(RuntimeError):
        run_job(_failing_job(), settings)
    assert out.is_dir() and not list(out.iterdir())


def test_a_failed_run_keeps_a_resumable_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    settings = jobs.PretrainSettings(method="simclr", output=str(out))
    with pytest.raises(RuntimeError):
        run_job(_failing_job(checkpoint=True), settings)
    assert (out / "manifest.json").exists() and (out / "backup").is_dir()
    assert "holds a resumable checkpoint" in capsys.readouterr().out
    # Resumed (same settings) and failed again: the folder is kept.
    (out / "backup" / StepCheckpoint.METADATA).unlink()
    with pytest.raises(RuntimeError):
        run_job(_failing_job(), settings)
    assert (out / "manifest.json").exists()
