import numpy as np
import pytest

from keras_ecg.layers import BaselineWander
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return BaselineWander(c_max=0.3, sampling_rate=100, **kwargs)


def wander(params, b, timesteps, fs=100.0, df=0.01):
    t = np.arange(timesteps) / fs
    k = np.arange(1, params["phases"].shape[1] + 1)[:, None]
    a = params["component_amplitudes"][b][:, None]
    phi = params["phases"][b][:, None]
    return params["amplitude"][b] * np.sum(
        a * np.cos(2 * np.pi * k * df * t[None, :] + phi), axis=0
    )


def reference(x, params):
    y = x.astype("float64")
    for b in range(x.shape[0]):
        noise = wander(params, b, x.shape[1])
        y[b] += noise[:, None] * params["lead_gains"][b][None, :]
    return y


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference, atol=2e-5)
    assert params["phases"].shape == (checks.BATCH, 50)  # 0.5 Hz / 0.01 Hz
    assert np.all(params["amplitude"] <= 0.3)


def test_tf_data():
    checks.check_tf_data(make, reference, atol=2e-5)


def test_common_behaviour():
    checks.check_common(make)


def test_low_frequency_with_per_lead_gain():
    # 25 s at 10 Hz; components at multiples of 0.04 Hz fill whole cycles.
    x = np.zeros((4, 250, 12), "float32")
    layer = BaselineWander(
        c_max=1.0, frequency_resolution=0.04, sampling_rate=10, seed=0
    )
    y = checks.to_numpy(layer(x))
    spectrum = np.abs(np.fft.rfft(y, axis=1)) ** 2
    freqs = np.fft.rfftfreq(250, d=0.1)
    assert spectrum[:, freqs > 0.6].sum() < 0.01 * spectrum.sum()
    # Leads differ by a constant gain: the lead-by-time matrix has rank one.
    singular = np.linalg.svd(y[0], compute_uv=False)
    assert singular[1] < 1e-4 * singular[0]
    assert not np.allclose(y[0, :, 0], y[0, :, 1])


def test_needs_valid_sampling_rate():
    with pytest.raises(ValueError, match="sampling_rate"):
        BaselineWander(sampling_rate=None)
    with pytest.raises(ValueError, match="sampling_rate"):
        BaselineWander(sampling_rate=-100)
