"""keras-ecg: self-supervised representation learning on 12-lead ECG with Keras 3."""

import os as _os
import sys as _sys

from keras_ecg.version import __version__

_SUBMODULES = (
    "layers",
    "losses",
    "models",
    "data",
    "evaluation",
    "tuning",
    "presets",
)


def _started_as_cli():
    """Whether this import is the `keras-ecg` command resolving its entry point.

    The CLI must set the Keras backend from `--backend` before Keras is
    imported, and Python imports this package before `keras_ecg.cli`. While
    `python -m keras_ecg.cli` locates the module, `sys.argv[0]` is `"-m"`
    (documented CPython behaviour); the console script runs as `keras-ecg`.
    """
    argv0 = _sys.argv[0] if _sys.argv else ""
    name = _os.path.basename(argv0).lower()
    return argv0 == "-m" or name in (
        "keras-ecg",
        "keras-ecg.exe",
        "keras-ecg-script.py",
    )


if _started_as_cli():
    # The CLI imports what it needs after choosing the backend; the rest of
    # the package stays reachable as attributes.
    def __getattr__(name):
        if name in _SUBMODULES:
            import importlib

            return importlib.import_module(f"keras_ecg.{name}")
        if name in ("ECGClassifier", "ECGPreprocessor"):
            from keras_ecg import models

            return getattr(models, name)
        raise AttributeError(f"module 'keras_ecg' has no attribute {name!r}")

else:
    # Importing the layers and models registers every serializable class, so
    # `import keras_ecg` is enough for `keras.saving.load_model` on a
    # keras-ecg `.keras` file.
    from keras_ecg import layers
    from keras_ecg import losses
    from keras_ecg import models
    from keras_ecg import presets
    from keras_ecg.models import ECGClassifier
    from keras_ecg.models import ECGPreprocessor
