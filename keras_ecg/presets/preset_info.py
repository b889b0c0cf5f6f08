"""What a preset holds, read from its JSON files without building a model."""

import os

from keras_ecg.presets.handles import get_preset_dir
from keras_ecg.presets.preset_files import CONFIG_FILE
from keras_ecg.presets.preset_files import MODEL_WEIGHTS_FILE
from keras_ecg.presets.preset_files import PREPROCESSOR_CONFIG_FILE
from keras_ecg.presets.preset_files import TASK_CONFIG_FILE
from keras_ecg.presets.preset_files import TASK_WEIGHTS_FILE
from keras_ecg.presets.preset_files import class_label
from keras_ecg.presets.preset_files import preset_file
from keras_ecg.presets.preset_files import read_metadata
from keras_ecg.presets.preset_files import read_serialized
from keras_ecg.presets.preset_files import registered_name

_PREPROCESSOR_KEYS = (
    "sampling_rate",
    "lead_names",
    "window_seconds",
    "stride_seconds",
    "aggregation",
)


def preset_info(handle):
    """The metadata of a preset and what it contains, without loading weights.

    Args:
        handle: a preset folder, `hf://...` or `kaggle://...` handle (see
            `get_preset_dir`; a remote preset is downloaded, or read from the
            cache).

    Returns:
        A dict with
        - `"handle"`, `"path"` (the local folder) and `"files"` (its files);
        - `"metadata"`: the content of `metadata.json`;
        - `"components"`: the loadable parts, among `"backbone"`, `"task"`,
          `"preprocessor"`;
        - `"backbone"`: `{"class_name", "registered_name", "config"}`;
        - `"task"`: the same for the task model, or None;
        - `"preprocessor"`: the `ECGPreprocessor` settings (`sampling_rate`,
          `lead_names`, `window_seconds`, `stride_seconds`, `aggregation`,
          `standardized`), or None.

    Raises:
        PresetError: the preset cannot be read (one line naming the file).

    Example:

    ```python
    info = keras_ecg.presets.preset_info("runs/simclr_preset")
    info["task"]["class_name"], info["metadata"]["parameter_count"]
    # ('SimCLR', 76544)
    ```
    """
    path = get_preset_dir(handle)
    handle = os.fspath(handle)
    metadata = read_metadata(path, handle)
    backbone = read_serialized(path, CONFIG_FILE, handle)
    preset_file(path, MODEL_WEIGHTS_FILE, handle)
    task = read_serialized(path, TASK_CONFIG_FILE, handle, required=False)
    preprocessor = read_serialized(
        path, PREPROCESSOR_CONFIG_FILE, handle, required=False
    )
    components = ["backbone"]
    if task is not None:
        components.append("task")
    if preprocessor is not None:
        components.append("preprocessor")
    return {
        "handle": handle,
        "path": path,
        "files": sorted(
            name
            for name in os.listdir(path)
            if os.path.isfile(os.path.join(path, name))
        ),
        "metadata": metadata,
        "components": components,
        "backbone": _describe(backbone),
        "task": None if task is None else _describe(task),
        "has_task_weights": os.path.isfile(os.path.join(path, TASK_WEIGHTS_FILE)),
        "preprocessor": None if preprocessor is None else _preprocessing(preprocessor),
    }


def _describe(serialized):
    config = dict(serialized["config"])
    # The task's config nests the backbone and the preprocessor, listed apart.
    for key in ("preprocessor",):
        config.pop(key, None)
    return {
        "class_name": class_label(serialized),
        "registered_name": registered_name(serialized),
        "config": config,
    }


def _preprocessing(serialized):
    config = serialized["config"]
    settings = {key: config.get(key) for key in _PREPROCESSOR_KEYS}
    settings["standardized"] = config.get("mean") is not None
    return settings
