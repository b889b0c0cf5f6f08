"""Abrupt baseline shifts."""

import math

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_ecg")
class BaselineShift(ECGAugmentation):
    """Adds abrupt baseline steps: random segments shifted by a constant.

    Following the reference `noise_baseline_shift` (after Friesen et al. 1990),
    per example: `S = ceil(max_segments_per_second * T / fs)` segment slots, of
    which the first `n ~ randint(0, S)` (inclusive) are used. Segment `j` has a
    centre `m_j ~ randint(0, T - 1)`, a duration `d_j ~ N(mean, (0.2 mean)^2)`
    seconds and a level `l_j ~ U(-1, 1)`, and covers samples
    `max(0, floor(m_j - fs d_j / 2)) .. min(T - 1, floor(m_j + fs d_j / 2))`
    (later segments overwrite earlier ones). The step signal is scaled by
    `C ~ U(0, c_max)` and every lead by a gain `g_c = sign_c * N(1, 1)` with a
    random sign. The reference's torch variant computes
    `2 * randint - 1 * normal` (operator precedence); the intended
    `(2 * randint - 1) * normal` is implemented here. Defaults `c_max=1.0`
    (pretraining `bs_cmax`), `mean_segment_length=3` s,
    `max_segments_per_second=0.3`, `sampling_rate=100` Hz.

    Args:
        c_max: maximum shift amplitude `C`. Defaults to `1.0`.
        mean_segment_length: mean segment duration (seconds). Defaults to `3.0`.
        max_segments_per_second: maximum number of segments per second of
            signal. Defaults to `0.3`.
        sampling_rate: sampling rate of the input (Hz). Defaults to `100`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.zeros((4, 1000, 12), "float32")
    y = keras_ecg.layers.BaselineShift(c_max=1.0, sampling_rate=100, seed=1)(x)
    ```
    """

    _REQUIRES_SAMPLING_RATE = True

    def __init__(
        self,
        c_max=1.0,
        mean_segment_length=3.0,
        max_segments_per_second=0.3,
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
        self.mean_segment_length = check_non_negative(
            name, "mean_segment_length", mean_segment_length
        )
        self.max_segments_per_second = check_non_negative(
            name, "max_segments_per_second", max_segments_per_second
        )

    def max_segments(self, timesteps):
        """Number of segment slots `S` for a window of `timesteps` samples."""
        return int(
            math.ceil(self.max_segments_per_second * timesteps / self.sampling_rate)
        )

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        ops = self.backend.numpy
        slots = self.max_segments(timesteps)
        count = self._uniform((batch_size,), 0.0, 1.0, seed) * (slots + 1)
        mean = self.mean_segment_length
        return {
            "num_segments": ops.minimum(ops.floor(count), float(slots)),
            "centers": ops.minimum(
                ops.floor(
                    self._uniform((batch_size, slots), 0.0, 1.0, seed) * timesteps
                ),
                float(timesteps - 1),
            ),
            "durations": self._normal((batch_size, slots), mean, 0.2 * mean, seed),
            "levels": self._uniform((batch_size, slots), -1.0, 1.0, seed),
            "amplitude": self._uniform((batch_size,), 0.0, self.c_max, seed),
            "lead_gains": self._random_sign((batch_size, leads), seed)
            * self._normal((batch_size, leads), 1.0, 1.0, seed),
        }

    def _transform(self, x, parameters):
        ops = self.backend.numpy
        timesteps = x.shape[1]
        slots = parameters["centers"].shape[1]
        t = ops.arange(timesteps, dtype=self.compute_dtype)[None, :]
        half = 0.5 * self.sampling_rate * parameters["durations"]
        left = ops.maximum(ops.floor(parameters["centers"] - half), 0.0)
        right = ops.minimum(
            ops.floor(parameters["centers"] + half), float(timesteps - 1)
        )
        slot = ops.arange(1, slots + 1, dtype=self.compute_dtype)[None, :, None]
        active = parameters["num_segments"][:, None, None] >= slot
        cover = ops.logical_and(
            ops.logical_and(
                t[:, None, :] >= left[:, :, None], t[:, None, :] <= right[:, :, None]
            ),
            active,
        )
        # Later segments overwrite earlier ones: take the level of the last
        # covering slot (index 0 = no segment, level 0).
        last = ops.max(ops.where(cover, slot, 0.0), axis=1)
        levels = ops.concatenate(
            [ops.zeros_like(parameters["levels"][:, :1]), parameters["levels"]], axis=1
        )
        steps = ops.take_along_axis(levels, self.backend.cast(last, "int32"), axis=1)
        steps = parameters["amplitude"][:, None] * steps
        return x + steps[:, :, None] * parameters["lead_gains"][:, None, :]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "c_max": self.c_max,
                "mean_segment_length": self.mean_segment_length,
                "max_segments_per_second": self.max_segments_per_second,
            }
        )
        return config
