"""`keras-ecg tune`: a KerasTuner search of a method's hyperparameters,
scored by a downstream probe AUC."""

import dataclasses
import os
from typing import ClassVar

from keras_ecg import choices
from keras_ecg.data.lead_standardizer import LeadStandardizer
from keras_ecg.jobs.common import check_encoder
from keras_ecg.jobs.common import fit_verbosity
from keras_ecg.jobs.common import load_data
from keras_ecg.jobs.common import print_header
from keras_ecg.jobs.common import run_folder
from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.common import split_data
from keras_ecg.jobs.settings import DataSettings
from keras_ecg.jobs.settings import ModelSettings
from keras_ecg.training_logs import TrainingLogs


@dataclasses.dataclass(kw_only=True)
class TuneSettings(DataSettings, ModelSettings):
    """The settings of `keras-ecg tune` (its flags, same defaults)."""

    command: ClassVar[str] = "tune"
    RULES: ClassVar[dict] = {
        "max_trials": ">= 1",
        "epochs": ">= 1",
        "batch_size": ">= 1",
    }
    CHOICES: ClassVar[dict] = {
        "method": choices.METHODS,
        "encoder": choices.ENCODERS,
        "tuner": choices.TUNERS,
    }

    output: str = "runs/tune"
    overwrite: bool = False
    method: str
    encoder: str | None = None
    tuner: str = "random"
    max_trials: int = 10
    epochs: int = 10
    batch_size: int = 64


def run(settings):
    """Runs `keras-ecg tune` with `settings`; returns the results
    (also in `tune_results.json` of `settings.output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (data, run folder).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_tune, settings)


def plot_trial_curves(project_dir, method):
    """`training_curves.png` beside each trial's CSV log of a search."""
    import glob

    from keras_ecg import plot
    from keras_ecg.training_logs import CSV_NAME
    from keras_ecg.training_logs import CURVES_NAME

    for path in sorted(glob.glob(os.path.join(project_dir, "trial_*", CSV_NAME))):
        trial = os.path.basename(os.path.dirname(path))
        try:
            plot.plot_training_log(
                path,
                title=f"tune {method}: {trial}",
                path=os.path.join(os.path.dirname(path), CURVES_NAME),
            )
        except ImportError:
            print(f"no {CURVES_NAME}: it needs matplotlib", flush=True)
            return


def run_tune(settings):
    print_header(settings, "tune")
    from keras_ecg.tuning import run_search

    check_encoder(settings)
    data = load_data(settings, settings.sampling_rate or 100)
    train, val, _ = split_data(settings, data)
    folder = run_folder(settings, "tune", data)
    folder.check()
    # Fitted streaming; every trial's pipelines apply it (no copies).
    standardizer = LeadStandardizer().fit(train)
    folder.create()
    # One CSV log per trial (in its trial folder) and one TensorBoard run.
    logs = TrainingLogs(settings.output, "tune")
    print(logs.describe(), flush=True)
    result = run_search(
        settings.method,
        train,
        val,
        standardizer=standardizer,
        tuner=settings.tuner,
        max_trials=settings.max_trials,
        epochs=settings.epochs,
        directory=settings.output,
        seed=settings.seed,
        size=settings.size,
        batch_size=settings.batch_size,
        verbose=fit_verbosity(),
        encoder=settings.encoder,
        callbacks=logs.callbacks,
    )
    plot_trial_curves(result["project_dir"], settings.method)
    print(
        f"best probe AUC {result['best_score']:.4f} with "
        f"{result['best_hyperparameters']}; model: {result['best_model_path']}"
    )
    out = folder.finish(result)
    print(f"Results written to {out}")
    return result
