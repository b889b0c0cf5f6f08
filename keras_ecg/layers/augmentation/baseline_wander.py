"""Baseline wander: a sum of low-frequency sinusoids."""

import math

import keras
import numpy as np

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_ecg")
class BaselineWander(ECGAugmentation):
    """Adds baseline wander, a random sum of low-frequency sinusoids.

    Following the reference `noise_baseline_wander` (after Bayan et al.,
    PMC5361052), per example:
    `n(t) = C * sum_{k=1..K} a_k cos(2 pi k df t + phi_k)`, `t = i / fs`,
    `K = round(cutoff_frequency / frequency_resolution)`, `C ~ U(0, c_max)`,
    `a_k ~ U(0, 1)`, `phi_k ~ U(0, 2 pi)`; every lead gets its own gain
    `g_c = sign_c * N(1, 1)` (random sign), `y[:, c] = x[:, c] + g_c n`.
    The per-lead gains are the reference's numpy variant (its torch variant
    adds the same wander to every lead). Defaults `c_max=0.1`,
    `cutoff_frequency=0.5` Hz and `frequency_resolution=0.01` Hz (50
    components) are the reference's pretraining settings (`bw_cmax`) at
    `sampling_rate=100` Hz.

    Args:
        c_max: maximum strength `C`. Defaults to `0.1`.
        cutoff_frequency: highest component frequency (Hz). Defaults to `0.5`.
        frequency_resolution: spacing `df` of the component frequencies (Hz).
            Defaults to `0.01`.
        sampling_rate: sampling rate of the input (Hz). Defaults to `100`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.zeros((4, 250, 12), "float32")
    y = keras_ecg.layers.BaselineWander(c_max=0.1, sampling_rate=100)(x)
    ```
    """

    _REQUIRES_SAMPLING_RATE = True

    def __init__(
        self,
        c_max=0.1,
        cutoff_frequency=0.5,
        frequency_resolution=0.01,
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
        self.cutoff_frequency = check_non_negative(
            name, "cutoff_frequency", cutoff_frequency
        )
        self.frequency_resolution = check_non_negative(
            name, "frequency_resolution", frequency_resolution
        )
        if self.frequency_resolution == 0:
            raise ValueError(f"{name}: `frequency_resolution` must be > 0.")
        self.num_components = int(
            round(self.cutoff_frequency / self.frequency_resolution)
        )
        if self.num_components < 1:
            raise ValueError(
                f"{name}: `cutoff_frequency / frequency_resolution` must be >= 1 "
                f"component. Received: {cutoff_frequency}/{frequency_resolution}."
            )

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        k = self.num_components
        return {
            "amplitude": self._uniform((batch_size,), 0.0, self.c_max, seed),
            "component_amplitudes": self._uniform((batch_size, k), 0.0, 1.0, seed),
            "phases": self._uniform((batch_size, k), 0.0, 2.0 * math.pi, seed),
            "lead_gains": self._random_sign((batch_size, leads), seed)
            * self._normal((batch_size, leads), 1.0, 1.0, seed),
        }

    def _transform(self, x, parameters):
        ops = self.backend.numpy
        timesteps = x.shape[1]
        # The time basis is static: built in float64 numpy, no per-batch trig.
        frequencies = np.arange(1, self.num_components + 1) * self.frequency_resolution
        angle = 2 * np.pi * frequencies[:, None] * np.arange(timesteps)[None, :]
        angle = angle / self.sampling_rate
        cos_basis = self._constant(np.cos(angle))
        sin_basis = self._constant(np.sin(angle))
        a = parameters["component_amplitudes"]
        phases = parameters["phases"]
        # cos(wt + phi) = cos(wt) cos(phi) - sin(wt) sin(phi)
        noise = ops.matmul(a * ops.cos(phases), cos_basis) - ops.matmul(
            a * ops.sin(phases), sin_basis
        )
        noise = parameters["amplitude"][:, None] * noise
        return x + noise[:, :, None] * parameters["lead_gains"][:, None, :]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "c_max": self.c_max,
                "cutoff_frequency": self.cutoff_frequency,
                "frequency_resolution": self.frequency_resolution,
            }
        )
        return config
