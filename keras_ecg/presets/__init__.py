"""keras_ecg.presets: pretrained models with their preprocessing, in keras-hub's
preset layout, from a local folder, the Hugging Face Hub or Kaggle Models.

`save_to_preset` and `from_preset` need Keras and are imported on first use:
reading a preset's description (`preset_info`, `keras-ecg preset info`) and
resolving a handle (`get_preset_dir`) import no framework.
"""

from keras_ecg.presets.handles import HubPackageError
from keras_ecg.presets.handles import get_preset_dir
from keras_ecg.presets.preset_files import FORMAT_VERSION
from keras_ecg.presets.preset_files import PresetError
from keras_ecg.presets.preset_info import preset_info
from keras_ecg.presets.preset_mixin import PresetMixin

_NEED_KERAS = {
    "save_to_preset": "keras_ecg.presets.preset_saver",
    "from_preset": "keras_ecg.presets.preset_loader",
}


def __getattr__(name):
    if name in _NEED_KERAS:
        import importlib

        return getattr(importlib.import_module(_NEED_KERAS[name]), name)
    raise AttributeError(f"module 'keras_ecg.presets' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_NEED_KERAS))
