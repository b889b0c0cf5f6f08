"""`from_preset`: the backbone, task model or preprocessor of a preset."""

import importlib
import os

import keras

from keras_ecg.presets.handles import get_preset_dir
from keras_ecg.presets.preset_files import CONFIG_FILE
from keras_ecg.presets.preset_files import MODEL_WEIGHTS_FILE
from keras_ecg.presets.preset_files import PREPROCESSOR_CONFIG_FILE
from keras_ecg.presets.preset_files import TASK_CONFIG_FILE
from keras_ecg.presets.preset_files import TASK_WEIGHTS_FILE
from keras_ecg.presets.preset_files import PresetError
from keras_ecg.presets.preset_files import class_label
from keras_ecg.presets.preset_files import first_line
from keras_ecg.presets.preset_files import preset_file
from keras_ecg.presets.preset_files import read_metadata
from keras_ecg.presets.preset_files import read_serialized
from keras_ecg.presets.preset_files import registered_name

COMPONENTS = ("auto", "backbone", "task", "preprocessor")


def from_preset(handle, component="auto", load_weights=True):
    """Loads a part of a preset: its task model, backbone or preprocessor.

    Args:
        handle: a preset folder, `hf://org/name[@revision]` or
            `kaggle://owner/model/framework/variation[/version]` (see
            `get_preset_dir`).
        component: `"task"` (the full model of `task.json`, e.g. a pretrained
            `SimCLR` or an `ECGClassifier`, carrying the preset's
            preprocessor), `"backbone"` (the encoder of `config.json`),
            `"preprocessor"` (the `ECGPreprocessor`), or `"auto"`: the task
            when the preset has one, else the backbone.
        load_weights: `False` builds the architecture with fresh weights.

    Returns:
        The Keras model (or `ECGPreprocessor`).

    Raises:
        PresetError: the preset lacks the component, a file is missing or
            corrupt, the weights do not fit the config, or a class is unknown
            to this keras-ecg (one line naming the preset and the file).
        ValueError: an unknown `component`.

    Example:

    ```python
    simclr = keras_ecg.presets.from_preset("hf://my-lab/ecg-simclr")  # the task
    encoder = keras_ecg.presets.from_preset("hf://my-lab/ecg-simclr", "backbone")
    ```
    """
    if component not in COMPONENTS:
        raise ValueError(
            f"from_preset: unknown component {component!r}; expected one of "
            f"{COMPONENTS}."
        )
    path = get_preset_dir(handle)
    handle = os.fspath(handle)
    if component == "auto":
        has_task = os.path.isfile(os.path.join(path, TASK_CONFIG_FILE))
        component = "task" if has_task else "backbone"
    if component == "backbone":
        return load_backbone(path, handle, load_weights)
    if component == "task":
        return load_task(path, handle, load_weights)
    return load_preprocessor(path, handle)


def load_preset_as(cls, handle, load_weights=True, **kwargs):
    """`cls.from_preset(handle)`: the preset's backbone or task, which must be a
    `cls` (see `keras_ecg.presets.PresetMixin`)."""
    path = get_preset_dir(handle)
    handle = os.fspath(handle)
    backbone_config = read_serialized(path, CONFIG_FILE, handle)
    if kwargs:
        argument = getattr(cls, "preset_backbone_argument", None)
        if argument is None:
            raise TypeError(
                f"{cls.__name__}.from_preset takes no constructor arguments, got "
                f"{sorted(kwargs)}."
            )
        return _build_around_backbone(cls, argument, path, handle, load_weights, kwargs)
    if cls.preset_component == "backbone":
        found = resolve_class(backbone_config, CONFIG_FILE, handle)
        if not issubclass(found, cls):
            raise PresetError(
                f"preset {handle}: its backbone is of class "
                f"{class_label(backbone_config)} ({CONFIG_FILE}), not {cls.__name__}."
            )
        return load_backbone(path, handle, load_weights)
    task_config = read_serialized(path, TASK_CONFIG_FILE, handle, required=False)
    if task_config is None:
        raise PresetError(
            f"preset {handle} holds no task model (no {TASK_CONFIG_FILE}), only a "
            f"backbone of class {class_label(backbone_config)}: load it with "
            f"{class_label(backbone_config)}.from_preset or "
            "keras_ecg.presets.from_preset(handle, component='backbone')."
        )
    found = resolve_class(task_config, TASK_CONFIG_FILE, handle)
    if not issubclass(found, cls):
        raise PresetError(
            f"preset {handle} holds a task of class {class_label(task_config)} "
            f"({TASK_CONFIG_FILE}), not {cls.__name__}: load it with "
            f"{class_label(task_config)}.from_preset."
        )
    return load_task(path, handle, load_weights)


def _build_around_backbone(cls, argument, path, handle, load_weights, kwargs):
    """A new `cls` on the preset's backbone (and preprocessor), e.g. an
    `ECGClassifier` with a fresh head of `num_classes` outputs."""
    backbone = load_backbone(path, handle, load_weights)
    kwargs = dict(kwargs)
    if "preprocessor" not in kwargs and os.path.isfile(
        os.path.join(path, PREPROCESSOR_CONFIG_FILE)
    ):
        kwargs["preprocessor"] = load_preprocessor(path, handle)
    return cls(**{argument: backbone}, **kwargs)


def resolve_class(serialized, name, handle):
    """The class a serialized object names.

    Raises:
        PresetError: no such class in this keras-ecg / Keras (a preset of a
            newer model, or of a package not imported).
    """
    import keras_ecg.models  # noqa: F401  (registers keras-ecg's classes)
    from keras_ecg.version import __version__

    registered = registered_name(serialized)
    found = keras.saving.get_registered_object(registered)
    if found is None:
        module = serialized.get("module")
        try:
            found = getattr(importlib.import_module(module), serialized["class_name"])
        except (ImportError, AttributeError, TypeError, ValueError):
            found = None
    if not isinstance(found, type):
        raise PresetError(
            f"preset {handle}: {name} needs the class {registered!r}, which this "
            f"keras-ecg ({__version__}) does not know; upgrade keras-ecg, or "
            "import the package that registers it."
        )
    return found


def _deserialize(serialized, name, handle):
    resolve_class(serialized, name, handle)
    try:
        return keras.saving.deserialize_keras_object(serialized)
    except Exception as error:  # Keras raises many types for a bad config.
        raise PresetError(
            f"preset {handle}: {name} does not build a model "
            f"({type(error).__name__}: {first_line(error)})."
        ) from error


def _ensure_built(layer, serialized, name, handle):
    """Builds a layer that deserialization left unbuilt (no build config, or a
    wrapper such as CPC's encoder + context `Sequential`)."""
    if layer.built:
        return
    shape = (serialized.get("build_config") or {}).get("input_shape")
    if shape is None:
        raise PresetError(
            f"preset {handle}: {name} has no build_config to create the "
            f"{type(layer).__name__}'s variables before loading its weights."
        )
    layer.build(tuple(shape) if isinstance(shape, list) else shape)


def _load_weights(model, path, name, handle, objects_to_skip=None):
    try:
        keras.saving.load_weights(model, path, objects_to_skip=objects_to_skip)
    except Exception as error:  # h5py / Keras raise many types.
        raise PresetError(
            f"preset {handle}: {name} does not fit the model "
            f"({type(error).__name__}: {first_line(error)})."
        ) from error


def load_backbone(path, handle, load_weights=True):
    """The backbone of the preset folder `path` (see `from_preset`)."""
    read_metadata(path, handle)
    config = read_serialized(path, CONFIG_FILE, handle)
    backbone = _deserialize(config, CONFIG_FILE, handle)
    if load_weights:
        weights = preset_file(path, MODEL_WEIGHTS_FILE, handle)
        _ensure_built(backbone, config, CONFIG_FILE, handle)
        _load_weights(backbone, weights, MODEL_WEIGHTS_FILE, handle)
    return backbone


def load_task(path, handle, load_weights=True):
    """The task model of the preset folder `path`, with its preprocessor."""
    from keras_ecg.models.ecg_preprocessor import PreprocessorAttribute

    read_metadata(path, handle)
    task_config = read_serialized(path, TASK_CONFIG_FILE, handle)
    backbone_config = read_serialized(path, CONFIG_FILE, handle)
    task = _deserialize(task_config, TASK_CONFIG_FILE, handle)
    backbone = getattr(task, "backbone", None)
    if not isinstance(backbone, keras.layers.Layer):
        raise PresetError(
            f"preset {handle}: the {type(task).__name__} of {TASK_CONFIG_FILE} has "
            "no `backbone` to load model.weights.h5 into."
        )
    if load_weights:
        weights = preset_file(path, MODEL_WEIGHTS_FILE, handle)
        task_weights = preset_file(path, TASK_WEIGHTS_FILE, handle, required=False)
        _ensure_built(task, task_config, TASK_CONFIG_FILE, handle)
        if task_weights is not None:
            _load_weights(
                task,
                task_weights,
                TASK_WEIGHTS_FILE,
                handle,
                objects_to_skip=list(backbone._flatten_layers()),
            )
        _ensure_built(backbone, backbone_config, CONFIG_FILE, handle)
        _load_weights(backbone, weights, MODEL_WEIGHTS_FILE, handle)
    if isinstance(task, PreprocessorAttribute) and os.path.isfile(
        os.path.join(path, PREPROCESSOR_CONFIG_FILE)
    ):
        task.preprocessor = load_preprocessor(path, handle)
    return task


def load_preprocessor(path, handle):
    """The `ECGPreprocessor` of the preset folder `path`."""
    from keras_ecg.models.ecg_preprocessor import ECGPreprocessor

    read_metadata(path, handle)
    config = read_serialized(path, PREPROCESSOR_CONFIG_FILE, handle)
    preprocessor = _deserialize(config, PREPROCESSOR_CONFIG_FILE, handle)
    if not isinstance(preprocessor, ECGPreprocessor):
        raise PresetError(
            f"preset {handle}: {PREPROCESSOR_CONFIG_FILE} holds a "
            f"{type(preprocessor).__name__}, not an ECGPreprocessor."
        )
    return preprocessor
