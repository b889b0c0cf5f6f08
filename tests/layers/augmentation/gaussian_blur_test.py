import numpy as np
import pytest

from keras_ecg.layers import GaussianBlur
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return GaussianBlur(kernel_size=5, sigma_range=(0.5, 1.5), **kwargs)


def reference(x, params):
    batch, timesteps, leads = x.shape
    y = np.empty_like(x)
    offsets = np.arange(-2, 3)
    for b in range(batch):
        kernel = np.exp(-(offsets**2) / (2 * params["sigma"][b] ** 2))
        kernel /= kernel.sum()
        for c in range(leads):
            padded = np.pad(x[b, :, c], 2, mode="edge")
            y[b, :, c] = np.convolve(padded, kernel, mode="valid")
    return y


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference)
    assert np.all((params["sigma"] >= 0.5) & (params["sigma"] <= 1.5))


def test_tf_data():
    checks.check_tf_data(make, reference)


def test_common_behaviour():
    checks.check_common(make)


def test_preserves_constants_and_smooths():
    x = np.full((4, 250, 12), 2.5, "float32")
    np.testing.assert_allclose(checks.to_numpy(make(seed=0)(x)), x, rtol=1e-6)
    alternating = np.tile(((-1.0) ** np.arange(250))[None, :, None], (4, 1, 12))
    y = checks.to_numpy(make(seed=0)(alternating.astype("float32")))
    assert np.abs(y[:, 2:-2]).max() < 0.6  # the Nyquist tone is damped


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="odd"):
        GaussianBlur(kernel_size=4)
    with pytest.raises(ValueError, match="> 0"):
        GaussianBlur(sigma_range=(0.0, 1.0))
