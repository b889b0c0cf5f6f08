import numpy as np
import pytest

from keras_ecg.layers import GaussianBlur
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    # 5 taps, sigma 0.5-1.5 samples at 100 Hz.
    return GaussianBlur(
        kernel_seconds=0.05, sigma_seconds_range=(0.005, 0.015), **kwargs
    )


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


@pytest.mark.parametrize("rate, taps", [(100, 5), (250, 13), (500, 25)])
def test_kernel_spans_the_same_seconds_at_any_rate(rate, taps):
    layer = GaussianBlur(sampling_rate=rate, seed=0)
    assert layer.kernel_size == taps
    x = np.zeros((2, 2 * rate, 1), "float32")
    x[:, rate, 0] = 1.0  # an impulse: the output is the kernel itself
    y = checks.to_numpy(layer(x))[:, :, 0]
    sigma_samples = layer.get_random_transformation(x.shape)["sigma"]
    sigma_seconds = checks.to_numpy(sigma_samples) / rate
    assert np.all((sigma_seconds >= 0.008) & (sigma_seconds <= 0.012))
    # The impulse response's spread in seconds is the drawn sigma (truncated
    # at the kernel edge), whatever the rate.
    t = (np.arange(2 * rate) - rate) / rate
    spread = np.sqrt((y * t**2).sum(1) / y.sum(1))
    assert np.all((spread > 0.006) & (spread < 0.0125)), spread


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kernel_seconds"):
        GaussianBlur(kernel_seconds=0)
    with pytest.raises(ValueError, match="> 0"):
        GaussianBlur(sigma_seconds_range=(0.0, 0.01))
    with pytest.raises(ValueError, match="sampling_rate"):
        GaussianBlur(sampling_rate=None)
