"""`keras-ecg preset save RUN_DIR PRESET_DIR`: the model of a finished run
folder as a preset (keras-hub layout)."""

import dataclasses
import os
from typing import ClassVar

from keras_ecg.data import fingerprints as record_fingerprints
from keras_ecg.jobs.common import load_keras
from keras_ecg.jobs.common import require_preprocessor
from keras_ecg.jobs.leakage import fingerprint_sets
from keras_ecg.jobs.settings import InputError
from keras_ecg.jobs.settings import Settings


@dataclasses.dataclass(kw_only=True)
class PresetSaveSettings(Settings):
    """The settings of `keras-ecg preset save` (its arguments and flags)."""

    command: ClassVar[str] = "preset"

    run_dir: str
    preset_dir: str
    description: str | None = None
    overwrite: bool = False


def run(settings):
    """Saves the model of the finished run folder `settings.run_dir` as a
    preset in `settings.preset_dir`; returns `{"preset", "model"}`.

    Raises:
        SettingsError: a setting out of its range.
        InputError: not a finished run folder, or an occupied `preset_dir`.
    """
    settings = dataclasses.replace(settings).validate()
    return run_preset_save(settings)


# The model a run folder's preset holds: the classifier of a downstream run,
# else the pretrained model.
_RUN_MODELS = ("classifier.keras", "pretrained.keras")
# Settings kept out of a preset's metadata: local paths.
_LOCAL_SETTINGS = ("data", "checkpoint")


def run_preset_save(settings):
    """`keras-ecg preset save RUN_DIR PRESET_DIR`."""
    import json

    from keras_ecg.presets import PresetError
    from keras_ecg.presets import save_to_preset
    from keras_ecg.presets.preset_files import check_destination
    from keras_ecg.run_folder import MANIFEST

    run_dir, preset_dir = settings.run_dir, settings.preset_dir
    manifest_path = os.path.join(run_dir, MANIFEST)
    if not os.path.isdir(run_dir):
        raise InputError(f"RUN_DIR {run_dir}: no such folder.")
    if not os.path.isfile(manifest_path):
        raise InputError(
            f"RUN_DIR {run_dir}: not a keras-ecg run folder (no {MANIFEST})."
        )
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as error:
        raise InputError(f"{manifest_path} is unreadable ({error}).") from error
    command = manifest.get("command")
    if manifest.get("status") != "finished":
        raise InputError(
            f"RUN_DIR {run_dir}: its {command} run is not finished (status "
            f"{manifest.get('status')!r}); finish it first."
        )
    model_path = next(
        (
            os.path.join(run_dir, name)
            for name in _RUN_MODELS
            if os.path.isfile(os.path.join(run_dir, name))
        ),
        None,
    )
    if model_path is None:
        raise InputError(
            f"RUN_DIR {run_dir}: its {command} run left no "
            f"{' or '.join(_RUN_MODELS)} to save."
        )
    try:
        check_destination(preset_dir, settings.overwrite, "PRESET_DIR")
    except PresetError as error:
        raise InputError(str(error)) from None
    model = load_keras(model_path, "RUN_DIR")
    preprocessor = require_preprocessor(model, model_path, "RUN_DIR")
    recorded = {
        key: value
        for key, value in (manifest.get("settings") or {}).items()
        if key not in _LOCAL_SETTINGS
    }
    data = dict(manifest.get("data") or {})
    path = data.pop("path", None)
    if path is not None:
        data["source"] = path if path == "synthetic" else os.path.basename(path)
    metadata = {
        "training_run": {"command": command, "settings": recorded, "data": data},
    }
    if data.get("fingerprint"):
        metadata["data_fingerprint"] = data["fingerprint"]
    if command in ("pretrain", "demo") and os.path.basename(model_path) == (
        "pretrained.keras"
    ):
        metadata.update(
            {key: recorded[key] for key in ("method", "size") if key in recorded}
        )
    if settings.description:
        metadata["description"] = settings.description
    fingerprints = fingerprint_sets(
        lambda: record_fingerprints.model_fingerprints(model_path), "RUN_DIR"
    )
    save_to_preset(
        model,
        preset_dir,
        preprocessor=preprocessor,
        metadata=metadata,
        record_fingerprints=fingerprints,
    )
    backbone = getattr(model, "backbone", None)
    print(
        f"preset saved to {preset_dir}: the {type(model).__name__} of "
        f"{model_path}"
        + (f" with its {type(backbone).__name__} backbone" if backbone else "")
        + f", preprocessing {preprocessor.sampling_rate} Hz / "
        f"{preprocessor.num_leads} leads",
        flush=True,
    )
    return {"preset": preset_dir, "model": model_path}
