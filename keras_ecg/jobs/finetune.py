"""`keras-ecg finetune`: finetune an encoder (LP-FT), or train one from
scratch (`random_init`).

The job is `keras_ecg.jobs.downstream`'s, with the protocol of the command.
"""

import dataclasses
from typing import ClassVar

from keras_ecg.jobs.common import run_job
from keras_ecg.jobs.downstream import ClassifierSettings
from keras_ecg.jobs.downstream import run_downstream
from keras_ecg.jobs.settings import FinetuneStageSettings


@dataclasses.dataclass(kw_only=True)
class FinetuneSettings(ClassifierSettings, FinetuneStageSettings):
    """The settings of `keras-ecg finetune` (its flags, same defaults)."""

    command: ClassVar[str] = "finetune"

    output: str = "runs/finetune"


def run(settings):
    """Runs `keras-ecg finetune` with `settings`; returns the results (also
    in `finetune_results.json` of `settings.output`).

    Raises:
        SettingsError: a setting out of its range (nothing is written).
        InputError: unusable input (data, checkpoint, preset, run folder).
    """
    settings = dataclasses.replace(settings).validate()
    return run_job(run_downstream, settings)
