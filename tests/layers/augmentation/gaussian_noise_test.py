import numpy as np
import pytest

from keras_ecg.layers import GaussianNoise
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return GaussianNoise(scale=0.05, **kwargs)


def reference(x, params):
    return x + 0.05 * params["noise"]


def test_matches_numpy_reference():
    checks.check_reference(make, reference)


def test_tf_data():
    checks.check_tf_data(make, reference)


def test_common_behaviour():
    checks.check_common(make)


def test_noise_statistics_and_default():
    layer = GaussianNoise(seed=0)
    assert layer.scale == 0.005  # reference pretraining default
    x = np.zeros((4, 250, 12), "float32")
    y = checks.to_numpy(GaussianNoise(scale=0.2, seed=0)(x))
    assert abs(y.std() - 0.2) < 0.01 and abs(y.mean()) < 0.01


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        GaussianNoise(scale=-1.0)
    with pytest.raises(ValueError, match="probability"):
        GaussianNoise(probability=1.5)
