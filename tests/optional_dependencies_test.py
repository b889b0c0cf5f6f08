"""keras-ecg's models train where TensorFlow and wfdb are not installed.

A GPU image with only JAX or PyTorch (the lent GPU machine has no TensorFlow,
and its wheels are too large to carry) must still import `keras_ecg`, build
every method and train it on arrays: the tf.data pipelines and the WFDB
readers are imported on first use only.
"""

import subprocess
import sys
import textwrap

import keras
import pytest

from keras_ecg.testing.test_case import subprocess_env

# Makes `tensorflow` and `wfdb` look uninstalled: the path finder reports no
# spec for them, which is what `import` and `importlib.util.find_spec` see
# when a package is absent.
_SCRIPT = textwrap.dedent(
    """
    import importlib.machinery
    import sys

    _find = importlib.machinery.PathFinder.find_spec.__func__

    def _find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "wfdb"):
            return None
        return _find(cls, name, path, target)

    importlib.machinery.PathFinder.find_spec = classmethod(_find_spec)

    import numpy as np

    import keras_ecg
    from keras_ecg.models import build_method

    for method in ("byol", "swav", "cpc", "jepa"):
        build_method(method, size="tiny").build((None, 1000, 12))
    model = build_method("simclr", size="tiny")
    model.compile(optimizer="adam")
    x = np.random.default_rng(0).normal(size=(4, 250, 12)).astype("float32")
    history = model.fit((x, x + 0.1), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("the blocker let tensorflow in")
    print("loaded:", "tensorflow" in sys.modules, "wfdb" in sys.modules)
    """
)


@pytest.mark.skipif(
    keras.backend.backend() == "tensorflow",
    reason="checks the jax and torch backends without TensorFlow",
)
def test_models_train_without_tensorflow_and_wfdb():
    process = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "loaded: False False" in process.stdout
