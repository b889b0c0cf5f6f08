import numpy as np
import pytest

from keras_ecg.layers import PowerlineNoise
from tests.layers.augmentation import augmentation_checks as checks


def make(**kwargs):
    return PowerlineNoise(
        c_max=0.5, frequency=50.0, harmonics=3, sampling_rate=500, **kwargs
    )


def powerline(params, b, timesteps, frequency, fs):
    i = np.arange(timesteps)
    k = np.arange(1, params["harmonic_amplitudes"].shape[1] + 1)[:, None]
    tones = np.cos(2 * np.pi * k * frequency * i[None, :] / fs + params["phase"][b])
    amplitudes = params["harmonic_amplitudes"][b][:, None]
    return params["amplitude"][b] * np.sum(amplitudes * tones, axis=0)


def reference_for(frequency, fs):
    def reference(x, params):
        y = x.astype("float64")
        for b in range(x.shape[0]):
            noise = powerline(params, b, x.shape[1], frequency, fs)
            y[b] += noise[:, None] * params["lead_gains"][b][None, :]
        return y

    return reference


def test_matches_numpy_reference():
    _, params = checks.check_reference(make, reference_for(50.0, 500.0))
    np.testing.assert_array_equal(params["harmonic_amplitudes"][:, 0], 1.0)
    assert np.all(np.abs(params["lead_gains"]) <= 1.0)


def test_tf_data():
    checks.check_tf_data(make, reference_for(50.0, 500.0))


def test_common_behaviour():
    checks.check_common(make)


def _noise(frequency, fs, timesteps=250, seed=0):
    layer = PowerlineNoise(c_max=1.0, frequency=frequency, sampling_rate=fs, seed=seed)
    y, params = layer(np.zeros((4, timesteps, 12), "float32"), return_parameters=True)
    return checks.to_numpy(y), checks.to_numpy(params)


def _peak_frequency(y, fs):
    spectrum = np.abs(np.fft.rfft(y[:, :, 0], axis=1)).sum(axis=0)
    return np.fft.rfftfreq(y.shape[1], d=1.0 / fs)[np.argmax(spectrum)]


def test_frequency_is_correct_at_the_sampling_rate():
    y, _ = _noise(50.0, 500.0)
    assert _peak_frequency(y, 500.0) == pytest.approx(50.0)
    y, _ = _noise(60.0, 500.0)
    assert _peak_frequency(y, 500.0) == pytest.approx(60.0)


def test_aliasing_at_100_hz():
    # 50 Hz at 100 Hz sampling sits at Nyquist: C cos(phi) g (-1)^i.
    y, params = _noise(50.0, 100.0)
    sign = (-1.0) ** np.arange(y.shape[1])
    np.testing.assert_allclose(y, y[:, :1, :] * sign[None, :, None], atol=1e-5)
    expected = (params["amplitude"] * np.cos(params["phase"]))[:, None] * params[
        "lead_gains"
    ]
    np.testing.assert_allclose(y[:, 0, :], expected, atol=1e-5)
    # 60 Hz aliases to 100 - 60 = 40 Hz.
    y, _ = _noise(60.0, 100.0)
    assert _peak_frequency(y, 100.0) == pytest.approx(40.0)


def test_amplitude_is_linear_in_c_not_squared():
    y, params = _noise(50.0, 500.0)
    # Ten samples per period: the sampled peak is within cos(pi / 10) of C.
    peak = np.abs(y[:, :, 0]).max(axis=1) / np.abs(params["lead_gains"][:, 0])
    c = params["amplitude"]
    assert np.all(peak <= c + 1e-5) and np.all(peak >= 0.95 * c)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="harmonics"):
        PowerlineNoise(harmonics=0)
