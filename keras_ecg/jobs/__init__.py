"""The jobs behind the CLI, one module per command, each run with one
settings object: no argparse needed.

```python
from keras_ecg import jobs

settings = jobs.PretrainSettings(method="simclr", size="tiny", epochs=1)
results = jobs.pretrain(settings)  # writes runs/pretrain, as the CLI does
```

Each `<Command>Settings` dataclass holds the command's flags (same names,
with `_` for `-`, and the CLI's defaults). A job validates its settings
before anything is read or written (`SettingsError`, one line naming the
flag and its valid range), records them in the run folder's manifest, and
removes the folder it created if it fails later, unless the folder holds a
resumable checkpoint. `keras-ecg` parses its flags into these settings
(`settings_from_namespace`) and calls these jobs.

Importing this package imports Keras: set the backend first.
"""

from keras_ecg.jobs.common import LostProcessError
from keras_ecg.jobs.demo import DemoSettings
from keras_ecg.jobs.demo import run as demo
from keras_ecg.jobs.downstream import ClassifierSettings
from keras_ecg.jobs.downstream import DownstreamSettings
from keras_ecg.jobs.downstream import run as downstream
from keras_ecg.jobs.embed import EmbedSettings
from keras_ecg.jobs.embed import run as embed
from keras_ecg.jobs.evaluate import EvaluateSettings
from keras_ecg.jobs.evaluate import run as evaluate
from keras_ecg.jobs.finetune import FinetuneSettings
from keras_ecg.jobs.finetune import run as finetune
from keras_ecg.jobs.linear_eval import LinearEvalSettings
from keras_ecg.jobs.linear_eval import run as linear_eval
from keras_ecg.jobs.predict import PredictSettings
from keras_ecg.jobs.predict import run as predict
from keras_ecg.jobs.preset_save import PresetSaveSettings
from keras_ecg.jobs.preset_save import run as preset_save
from keras_ecg.jobs.pretrain import PretrainSettings
from keras_ecg.jobs.pretrain import run as pretrain
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import Settings
from keras_ecg.jobs.settings import SettingsError
from keras_ecg.jobs.settings import settings_from_namespace
from keras_ecg.jobs.settings import settings_of
from keras_ecg.jobs.tune import TuneSettings
from keras_ecg.jobs.tune import run as tune

# `jobs.pretrain` (...) is the job, bound after its module was imported; the
# module is `sys.modules["keras_ecg.jobs.pretrain"]` (a test checks both).

# CLI command -> (settings class, job).
COMMANDS = {
    "demo": (DemoSettings, demo),
    "pretrain": (PretrainSettings, pretrain),
    "linear-eval": (LinearEvalSettings, linear_eval),
    "finetune": (FinetuneSettings, finetune),
    "downstream": (DownstreamSettings, downstream),
    "evaluate": (EvaluateSettings, evaluate),
    "embed": (EmbedSettings, embed),
    "predict": (PredictSettings, predict),
    "tune": (TuneSettings, tune),
    "preset save": (PresetSaveSettings, preset_save),
}


def run(settings):
    """Runs the job of a settings object (`PretrainSettings` -> `pretrain`)."""
    for settings_class, job in COMMANDS.values():
        if type(settings) is settings_class:
            return job(settings)
    raise TypeError(f"not the settings of a job: {type(settings).__name__}")


__all__ = [
    "COMMANDS",
    "ClassifierSettings",
    "DemoSettings",
    "DownstreamSettings",
    "EmbedSettings",
    "EvaluateSettings",
    "FinetuneSettings",
    "InputError",
    "LinearEvalSettings",
    "LostProcessError",
    "PredictSettings",
    "PresetSaveSettings",
    "PretrainSettings",
    "Settings",
    "SettingsError",
    "TuneSettings",
    "demo",
    "downstream",
    "embed",
    "evaluate",
    "finetune",
    "linear_eval",
    "predict",
    "preset_save",
    "pretrain",
    "run",
    "settings_from_namespace",
    "settings_of",
    "tune",
]
