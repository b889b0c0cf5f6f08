"""Tiny models with every weight set to seeded random values, for preset tests.

Random values (not the initial ones, which repeat across layers: zeros, ones)
make a round trip that loads a weight into the wrong variable fail.
"""

import keras
import numpy as np

from keras_ecg.models import ECGClassifier
from keras_ecg.models import ECGPreprocessor
from keras_ecg.models import build_method

LENGTHS = {"simclr": 250, "byol": 250, "swav": 250, "cpc": 200, "jepa": 200}


def preprocessor():
    """A preprocessor with non-trivial statistics and windows."""
    rng = np.random.default_rng(7)
    return ECGPreprocessor(
        sampling_rate=100,
        mean=rng.normal(size=12).round(3).tolist(),
        std=rng.uniform(0.5, 2.0, size=12).round(3).tolist(),
        window_seconds=2.0,
        stride_seconds=0.5,
    )


def randomize(model, seed=0):
    """Sets every float weight to U(0.5, 1.5) (positive: valid BN variances)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "float" in str(variable.dtype):
            variable.assign(rng.uniform(0.5, 1.5, size=variable.shape))
    return model


def method_model(method, seed=0, encoder=None):
    """A built tiny `method` model with random weights, its inputs and preprocessor."""
    kwargs = {"num_negatives": 4} if method == "cpc" else {}
    model = build_method(method, size="tiny", encoder=encoder, **kwargs)
    x = np.random.default_rng(seed).normal(size=(2, LENGTHS[method], 12))
    x = x.astype("float32")
    model(x, training=False)
    model.preprocessor = preprocessor()
    return randomize(model, seed), x


def classifier(seed=0):
    """A built `ECGClassifier` on a tiny XResNet1D, with random weights."""
    backbone = build_method("simclr", size="tiny").backbone
    model = ECGClassifier(
        backbone,
        num_classes=3,
        head_hidden_dims=(8,),
        use_batch_norm=True,
        preprocessor=preprocessor(),
        class_names=["NORM", "MI", "STTC"],
        label_set="superdiagnostic",
        label_vocabulary="scp",
    )
    x = np.random.default_rng(seed).normal(size=(2, 250, 12)).astype("float32")
    model(x, training=False)
    return randomize(model, seed), x


def numpy_tree(outputs):
    return keras.tree.flatten(
        keras.tree.map_structure(keras.ops.convert_to_numpy, outputs)
    )


def assert_same_weights(actual, expected):
    """Same number of weights, bit-equal in the same order."""
    assert len(actual.weights) == len(expected.weights)
    for a, e in zip(actual.weights, expected.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(e), err_msg=a.path
        )


def assert_same_outputs(actual, expected, atol=1e-6):
    for a, e in zip(numpy_tree(actual), numpy_tree(expected), strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=1e-6)
