"""Settings are validated once, with one line naming the flag and its range."""

import dataclasses
import sys

import keras
import pytest

from keras_ecg import jobs
from keras_ecg.jobs import SettingsError
from keras_ecg.jobs.settings import settings_of

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="no backend work: runs in the tensorflow pass",
)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(epochs=0), "--epochs must be >= 1 (got 0)"),
        (dict(epochs=1.5), "--epochs must be an integer >= 1 (got 1.5)"),
        (dict(epochs=True), "--epochs must be an integer >= 1 (got True)"),
        (dict(batch_size=-1), "--batch-size must be >= 1 (got -1)"),
        (dict(lr=-1.0), "--lr must be > 0 (got -1)"),
        (dict(lr=0.0), "--lr must be > 0 (got 0)"),
        (dict(lr=float("nan")), "--lr must be > 0 (got nan)"),
        (dict(lr="0.1"), "--lr must be a number > 0 (got '0.1')"),
        (dict(crop_seconds=0.0), "--crop-seconds must be > 0 (got 0)"),
        (dict(probe_every=0), "--probe-every must be >= 1 (got 0)"),
        (dict(probe_val_fraction=1.0), "--probe-val-fraction must be in (0, 1)"),
        (dict(num_processes=0), "--num-processes must be >= 1 (got 0)"),
        (dict(seed=-1), "--seed must be >= 0 (got -1)"),
        (dict(method="mae"), "--method must be one of simclr, byol, swav, cpc"),
        (dict(size="huge"), "--size must be one of paper, small, tiny"),
        (dict(val_folds="9", test_folds="9"), "--val-folds 9 and --test-folds 9"),
        (dict(train_folds="1-8", val_folds="8"), "share fold 8"),
        (dict(val_fraction=0.6, test_fraction=0.5), "add up to 1.1"),
        (dict(data="/no/such/folder"), "--data '/no/such/folder' is neither"),
    ],
)
def test_pretrain_settings_refuse_with_the_flag_and_range(settings, message):
    with pytest.raises(SettingsError) as info:
        jobs.PretrainSettings(**{"method": "simclr", **settings}).validate()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_defaults_are_valid_and_validate_returns_the_settings():
    settings = jobs.PretrainSettings(method="simclr")
    assert settings.validate() is settings
    assert jobs.DemoSettings().validate().epochs is None


@pytest.mark.parametrize(
    "settings_class, settings, message",
    [
        (jobs.FinetuneSettings, dict(), "exactly one of --checkpoint"),
        (
            jobs.LinearEvalSettings,
            dict(random_init=True, checkpoint=sys.executable),
            "exactly one of --checkpoint",
        ),
        (
            jobs.DownstreamSettings,
            dict(protocol="linear", random_init=True, head_dropout=1.0),
            "--head-dropout must be in [0, 1) (got 1)",
        ),
        (
            jobs.DownstreamSettings,
            dict(protocol="linear", random_init=True, head_hidden_dims=[64, 0]),
            "--head-hidden-dims must be >= 1 (got 0)",
        ),
        (
            jobs.FinetuneSettings,
            dict(random_init=True, window_seconds=-2.5),
            "--window-seconds must be > 0 (got -2.5)",
        ),
        (
            jobs.FinetuneSettings,
            dict(random_init=True, linear_probe_epochs=-1),
            "--linear-probe-epochs must be >= 0 (got -1)",
        ),
        (
            jobs.FinetuneSettings,
            dict(checkpoint="/no/such.keras"),
            "--checkpoint /no/such.keras: file not found.",
        ),
        (
            jobs.EvaluateSettings,
            dict(model=sys.executable, bootstrap_resamples=-1),
            "--bootstrap-resamples must be >= 0 (got -1)",
        ),
        (jobs.EvaluateSettings, dict(model="/no/m.keras"), "--model /no/m.keras"),
        (
            jobs.PredictSettings,
            dict(model=sys.executable, data=["x"], threshold=1.5),
            "--threshold must be in [0, 1] (got 1.5)",
        ),
        (
            jobs.PredictSettings,
            dict(model=sys.executable, data=["x"], explain=0),
            "--explain 0: K must be between 1",
        ),
        (
            jobs.PredictSettings,
            dict(model=sys.executable, data="x.hea"),
            "--data must be a list",
        ),
        (
            jobs.TuneSettings,
            dict(method="simclr", max_trials=0),
            "--max-trials must be >= 1 (got 0)",
        ),
        (
            jobs.DemoSettings,
            dict(label_fractions=[0.0]),
            "--label-fractions 0: expected a share in (0, 1].",
        ),
        (
            jobs.EmbedSettings,
            dict(checkpoint=sys.executable, stride_seconds=0.0),
            "--stride-seconds must be > 0 (got 0)",
        ),
    ],
)
def test_every_job_validates_its_settings(settings_class, settings, message):
    with pytest.raises(SettingsError) as info:
        settings_class(**settings).validate()
    assert message in str(info.value)


def test_settings_of_is_what_the_manifest_records():
    settings = jobs.PretrainSettings(method="simclr", output="x", verbose=True)
    recorded = settings_of(settings)
    assert "output" not in recorded and "verbose" not in recorded
    assert recorded["method"] == "simclr" and recorded["epochs"] == 20
    assert list(recorded) == sorted(recorded)
    assert set(recorded) <= {f.name for f in dataclasses.fields(settings)}


def test_jobs_are_the_functions_and_modules_stay_reachable():
    for name, (settings_class, job) in jobs.COMMANDS.items():
        module = sys.modules[settings_class.__module__]
        assert job is module.run, name
        assert settings_class.command == name.split()[0]


def test_a_job_refuses_bad_settings_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    settings = jobs.PretrainSettings(method="simclr", epochs=0, output=str(out))
    with pytest.raises(SettingsError, match="--epochs must be >= 1"):
        jobs.pretrain(settings)
    assert not out.exists()
    # The caller's settings are not changed by a run (it works on a copy).
    assert settings.encoder is None
