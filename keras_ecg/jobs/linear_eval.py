"""`keras-ecg linear-eval`: a linear probe on a frozen encoder.

The job is `keras_ecg.jobs.downstream`'s, with the protocol of the command.
"""

import dataclasses
from typing import ClassVar

from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.downstream import ClassifierSettings
from keras_ecg.jobs.downstream import run_downstream


@dataclasses.dataclass(kw_only=True)
class LinearEvalSettings(ClassifierSettings):
    """The settings of `keras-ecg linear-eval` (its flags, same defaults)."""

    command: ClassVar[str] = "linear-eval"

    output: str = "runs/linear-eval"


def run(settings):
    """Runs `keras-ecg linear-eval` with `settings`; returns the results (also
    in `linear-eval_results.json` of `settings.output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (data, checkpoint, preset, run folder).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_downstream, settings)
