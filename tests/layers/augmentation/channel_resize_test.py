import numpy as np
import pytest

from keras_ecg.layers import ChannelResize
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return ChannelResize(magnitude_range=(0.5, 2.0), **kwargs)


def reference(x, params):
    return x * params["factors"][:, None, :]


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference)
    factors = params["factors"]
    assert factors.shape == (checks.BATCH, checks.LEADS)
    assert np.all((factors >= 0.5 - 1e-6) & (factors <= 2.0 + 1e-6))


def test_tf_data():
    checks.check_tf_data(make, reference)


def test_common_behaviour():
    checks.check_common(make)


def test_log_uniform_factors():
    layer = ChannelResize(magnitude_range=(0.25, 4.0), seed=0)
    factors = layer.get_random_transformation((64, 250, 12))["factors"]
    log_factor = np.log(checks.to_numpy(factors))
    # Symmetric in log space: as many shrunk as grown leads, uniform spread.
    assert abs(log_factor.mean()) < 0.1
    assert abs(log_factor.std() - 2 * np.log(4) / np.sqrt(12)) < 0.05
    y = checks.to_numpy(layer(np.ones((4, 250, 12), "float32")))
    np.testing.assert_allclose(y, y[:, :1, :] * np.ones_like(y))  # constant in time


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="positive"):
        ChannelResize(magnitude_range=(0.0, 2.0))
    with pytest.raises(ValueError, match="low <= high"):
        ChannelResize(magnitude_range=(2.0, 0.5))
