"""The files of a preset folder, in keras-hub's layout, and reading them.

A preset is a folder (local, or downloaded from a hub by
`keras_ecg.presets.get_preset_dir`) holding:

- `config.json` + `model.weights.h5`: the backbone (the encoder);
- `task.json` + `task.weights.h5` (optional): the full model, e.g. a
  pretrained `SimCLR` or an `ECGClassifier`; `task.weights.h5` holds only the
  weights that are not the backbone's, as keras-hub's `Task` does;
- `preprocessor.json` (optional): the `ECGPreprocessor` (rate, leads,
  standardisation statistics, windows);
- `metadata.json`: versions, backend, parameter count, date, format version
  and what else is known (method, size, data fingerprint, description);
- `record_fingerprints.npz` (optional): content fingerprints of the records
  the model was pretrained / trained on (`keras_ecg.data.fingerprints`), so
  that a downstream run can count the test records it has seen;
- `README.md` (optional): a model card.

Nothing here imports Keras: `keras-ecg preset info` reads a preset without a
framework.
"""

import json
import os

CONFIG_FILE = "config.json"
MODEL_WEIGHTS_FILE = "model.weights.h5"
TASK_CONFIG_FILE = "task.json"
TASK_WEIGHTS_FILE = "task.weights.h5"
PREPROCESSOR_CONFIG_FILE = "preprocessor.json"
METADATA_FILE = "metadata.json"
README_FILE = "README.md"
# keras_ecg.data.fingerprints.PRESET_FILE (not imported: no numpy here).
RECORD_FINGERPRINTS_FILE = "record_fingerprints.npz"

# Every file a keras-ecg preset may hold; a new save replaces all of them.
PRESET_FILES = (
    CONFIG_FILE,
    MODEL_WEIGHTS_FILE,
    TASK_CONFIG_FILE,
    TASK_WEIGHTS_FILE,
    PREPROCESSOR_CONFIG_FILE,
    METADATA_FILE,
    RECORD_FINGERPRINTS_FILE,
)

# Version of the layout and metadata written here. A reader refuses presets of
# a newer format (written by a newer keras-ecg) instead of misreading them.
FORMAT_VERSION = 1
FORMAT_KEY = "keras_ecg_preset_format"


class PresetError(ValueError):
    """A preset that cannot be used: one line naming the preset (handle or
    folder), the file when there is one, and the problem."""


def check_destination(preset_dir, overwrite, flag):
    """Refuses a preset destination that is a file, a folder holding
    something else, or an existing preset without `overwrite`.

    Args:
        preset_dir: the folder a preset is about to be written to.
        overwrite: whether an existing preset there may be replaced.
        flag: how the user named it (e.g. `"--output"`), for the message.

    Raises:
        PresetError: one line naming `flag`, the folder and the problem.
    """
    if not os.path.exists(preset_dir):
        return
    if not os.path.isdir(preset_dir):
        raise PresetError(f"{flag} {preset_dir} exists and is not a folder.")
    if not os.listdir(preset_dir):
        return
    if not os.path.isfile(os.path.join(preset_dir, METADATA_FILE)):
        raise PresetError(
            f"{flag} {preset_dir} is not empty and holds no preset: nothing in it "
            "is touched; choose a new or empty folder."
        )
    if not overwrite:
        raise PresetError(
            f"{flag} {preset_dir} already holds a preset; pass --overwrite to "
            "replace it."
        )


def preset_file(preset_dir, name, handle=None, required=True):
    """The path of `name` in `preset_dir`, or None when optional and absent.

    Raises:
        PresetError: a required file is missing.
    """
    path = os.path.join(preset_dir, name)
    if os.path.isfile(path):
        return path
    if required:
        raise PresetError(
            f"preset {handle or preset_dir}: {name} is missing; "
            f"{_what_is_missing(name)}"
        )
    return None


def _what_is_missing(name):
    if name == METADATA_FILE:
        return (
            "not a keras-ecg preset (save one with keras_ecg.presets.save_to_preset)."
        )
    if name == TASK_CONFIG_FILE:
        return "the preset holds no task model, only a backbone."
    if name == PREPROCESSOR_CONFIG_FILE:
        return "the preset was saved without an ECGPreprocessor."
    return "the preset is incomplete (an interrupted save or download?)."


def read_json(preset_dir, name, handle=None, required=True):
    """The parsed JSON file `name` of a preset, or None when optional and absent.

    Raises:
        PresetError: the file is missing (and required) or not valid JSON.
    """
    path = preset_file(preset_dir, name, handle, required)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PresetError(
            f"preset {handle or preset_dir}: {name} is not readable JSON ({error})."
        ) from error
    if not isinstance(content, dict):
        raise PresetError(
            f"preset {handle or preset_dir}: {name} holds a "
            f"{type(content).__name__}, expected a JSON object."
        )
    return content


def read_serialized(preset_dir, name, handle=None, required=True):
    """A serialized Keras object (`class_name`, `config`, ...) from `name`."""
    content = read_json(preset_dir, name, handle, required)
    if content is None:
        return None
    if not isinstance(content.get("config"), dict) or "class_name" not in content:
        raise PresetError(
            f"preset {handle or preset_dir}: {name} is not a serialized Keras "
            "object (no class_name / config)."
        )
    return content


def read_metadata(preset_dir, handle=None):
    """`metadata.json`, checked to be of a format this keras-ecg reads.

    Raises:
        PresetError: missing, unreadable, or of a newer format.
    """
    from keras_ecg.version import __version__

    metadata = read_json(preset_dir, METADATA_FILE, handle)
    version = metadata.get(FORMAT_KEY)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PresetError(
            f"preset {handle or preset_dir}: {METADATA_FILE} has no valid "
            f"{FORMAT_KEY!r} ({version!r}); not a keras-ecg preset."
        )
    if version > FORMAT_VERSION:
        raise PresetError(
            f"preset {handle or preset_dir} is in preset format {version} "
            f"(written by keras-ecg {metadata.get('keras_ecg_version', '?')}); "
            f"this keras-ecg ({__version__}) reads format {FORMAT_VERSION} and "
            "older: upgrade keras-ecg."
        )
    return metadata


def registered_name(serialized):
    """The name Keras resolves a serialized object's class by."""
    return serialized.get("registered_name") or serialized["class_name"]


def class_label(serialized):
    """A short class name for messages: `SimCLR`, `Sequential`, ..."""
    return str(serialized.get("class_name") or registered_name(serialized))


def first_line(error, limit=300):
    """An exception's message on one line: its first non-empty line, and the
    next one when the first only announces it (ends with ":", as Keras'
    "could not be loaded. Example error message for object <...>:")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} {lines[1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
