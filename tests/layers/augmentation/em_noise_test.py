import numpy as np
import pytest

from keras_ecg.layers import EMNoise
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return EMNoise(c_max=0.5, **kwargs)


def reference(x, params):
    return x + params["amplitude"][:, None, None] * params["noise"]


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference)
    assert np.all((params["amplitude"] >= 0) & (params["amplitude"] <= 0.5))


def test_tf_data():
    checks.check_tf_data(make, reference)


def test_common_behaviour():
    checks.check_common(make)


def test_per_example_strength():
    x = np.zeros((4, 250, 12), "float32")
    y, params = EMNoise(c_max=1.0, seed=3)(x, return_parameters=True)
    std = checks.to_numpy(y).std(axis=(1, 2))
    np.testing.assert_allclose(std, checks.to_numpy(params["amplitude"]), rtol=0.06)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="c_max"):
        EMNoise(c_max=float("nan"))
