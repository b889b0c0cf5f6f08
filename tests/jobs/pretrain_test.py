"""`keras_ecg.jobs.pretrain` from Python: no argparse, the CLI's manifest."""

import json

import keras
import pytest

from keras_ecg import cli
from keras_ecg import jobs
from keras_ecg.jobs.settings import NOT_SETTINGS


def test_pretrain_runs_from_settings_and_records_the_cli_manifest(tmp_path):
    out = tmp_path / "api"
    settings = jobs.PretrainSettings(
        method="simclr",
        size="tiny",
        num_records=40,
        batch_size=8,
        epochs=1,
        probe="none",
        output=str(out),
    )
    results = jobs.pretrain(settings)
    assert (out / "pretrained.keras").exists()
    assert len(results["loss"]) == 1
    with open(out / "manifest.json") as f:
        manifest = json.load(f)
    assert manifest["status"] == "finished" and manifest["command"] == "pretrain"
    # The same settings as the CLI would record for the same flags.
    argv = ["pretrain", "--method", "simclr", "--size", "tiny"]
    argv += ["--num-records", "40", "--batch-size", "8", "--epochs", "1"]
    argv += ["--probe", "none"]
    namespace = cli.build_parser().parse_args(argv)
    expected = jobs.settings_of(
        jobs.settings_from_namespace(jobs.PretrainSettings, namespace)
    )
    expected["encoder"] = "xresnet1d"  # resolved by the run
    assert manifest["settings"] == json.loads(json.dumps(expected))
    dests = set(vars(namespace)) - set(NOT_SETTINGS)
    assert set(manifest["settings"]) == dests
    assert manifest["settings"]["backend"] is None
    assert keras.backend.backend()  # ran under the active backend


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="no training: runs in the tensorflow pass",
)
def test_pretrain_crop_longer_than_the_records_is_refused(tmp_path):
    settings = jobs.PretrainSettings(
        method="simclr",
        size="tiny",
        num_records=40,
        crop_seconds=60.0,
        output=str(tmp_path / "run"),
    )
    with pytest.raises(jobs.SettingsError) as info:
        jobs.pretrain(settings)
    assert str(info.value) == (
        "--crop-seconds must be > 0 and at most the longest training record, "
        "10 s (got 60)"
    )
    assert not (tmp_path / "run").exists()
