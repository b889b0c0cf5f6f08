"""Powerline (mains) interference."""

import math

import keras
import numpy as np

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_ecg")
class PowerlineNoise(ECGAugmentation):
    """Adds powerline interference at the mains frequency, sampled correctly.

    Per example, `C ~ U(0, c_max)`, `phi ~ U(0, 2 pi)` and
    `n[i] = C * sum_{k=1..harmonics} a_k cos(2 pi k f i / fs + phi)` with
    `a_1 = 1` and `a_k ~ U(0, 1)` for `k >= 2`; every lead gets a gain
    `g_c ~ U(-1, 1)`, `y[:, c] = x[:, c] + g_c n`. The time axis is
    `i / sampling_rate`, so the tone sits at `f` Hz at any sampling rate.
    Unlike the reference `noise_powerline`, the amplitude is `C`, not `C^2`
    (the reference multiplies by `C` twice). Defaults `c_max=0.2` (the
    reference pretraining `pl_cmax`), 50 Hz, `sampling_rate=100` Hz.

    Aliasing: at 100 Hz sampling, 50 Hz is exactly the Nyquist frequency, so
    the noise is `C cos(phi) (-1)^i`, an alternating sequence whose amplitude
    depends on the phase; 60 Hz aliases to 40 Hz. A harmonic `k f` above
    Nyquist aliases likewise (100 Hz to DC at 100 Hz sampling), which is why
    the default keeps one component (`harmonics=1`) where the reference uses 3.

    Args:
        c_max: maximum amplitude `C`. Defaults to `0.2`.
        frequency: mains frequency (Hz), typically 50 or 60. Defaults to `50.0`.
        harmonics: number of harmonics `k = 1..harmonics`. Defaults to `1`.
        sampling_rate: sampling rate of the input (Hz). Defaults to `100`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.zeros((4, 1000, 12), "float32")
    y = keras_ecg.layers.PowerlineNoise(frequency=60.0, sampling_rate=500)(x)
    ```
    """

    _REQUIRES_SAMPLING_RATE = True

    def __init__(
        self,
        c_max=0.2,
        frequency=50.0,
        harmonics=1,
        sampling_rate=100,
        probability=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            probability=probability, sampling_rate=sampling_rate, seed=seed, **kwargs
        )
        name = type(self).__name__
        self.c_max = check_non_negative(name, "c_max", c_max)
        self.frequency = check_non_negative(name, "frequency", frequency)
        if (
            isinstance(harmonics, bool)
            or not isinstance(harmonics, int)
            or harmonics < 1
        ):
            raise ValueError(
                f"{name}: `harmonics` must be an integer >= 1. Received: {harmonics!r}"
            )
        self.harmonics = harmonics

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        ops = self.backend.numpy
        harmonic_amplitudes = ops.ones((batch_size, 1), dtype=self.compute_dtype)
        if self.harmonics > 1:
            higher = self._uniform((batch_size, self.harmonics - 1), 0.0, 1.0, seed)
            harmonic_amplitudes = ops.concatenate([harmonic_amplitudes, higher], axis=1)
        return {
            "amplitude": self._uniform((batch_size,), 0.0, self.c_max, seed),
            "phase": self._uniform((batch_size,), 0.0, 2.0 * math.pi, seed),
            "harmonic_amplitudes": harmonic_amplitudes,
            "lead_gains": self._uniform((batch_size, leads), -1.0, 1.0, seed),
        }

    def _transform(self, x, parameters):
        ops = self.backend.numpy
        timesteps = x.shape[1]
        # Phase in float64 numpy: 2 pi k f i / fs, reduced modulo 2 pi.
        k = np.arange(1, self.harmonics + 1)
        cycles = k[:, None] * self.frequency * np.arange(timesteps)[None, :]
        angle = 2 * np.pi * np.mod(cycles / self.sampling_rate, 1.0)
        cos_basis = self._constant(np.cos(angle))
        sin_basis = self._constant(np.sin(angle))
        a = parameters["harmonic_amplitudes"]
        phase = parameters["phase"][:, None]
        noise = ops.matmul(a * ops.cos(phase), cos_basis) - ops.matmul(
            a * ops.sin(phase), sin_basis
        )
        noise = parameters["amplitude"][:, None] * noise
        return x + noise[:, :, None] * parameters["lead_gains"][:, None, :]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "c_max": self.c_max,
                "frequency": self.frequency,
                "harmonics": self.harmonics,
            }
        )
        return config
