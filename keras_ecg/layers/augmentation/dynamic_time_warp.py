"""Smooth random monotonic time warp."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_ecg")
class DynamicTimeWarp(ECGAugmentation):
    """Stretches and squeezes the signal along time with a smooth random warp.

    Per example, a log playback speed is drawn at `warps + 2` equally spaced
    knots, `z_k ~ N(0, strength^2)`, and linearly interpolated to every
    timestep. The speed `v(t) = exp(z(t)) > 0` is integrated into a strictly
    increasing map onto the window,
    `w(t) = (V(t) - V(0)) / (V(T-1) - V(0)) * (T - 1)` with `V = cumsum(v)`,
    and `y(t) = x(w(t))` by linear interpolation (all leads alike). The end
    points are fixed, so the output spans the same window.

    The reference `DynamicTimeWarp` squeezes `warps=3` random neighbourhoods of
    `radius=10` samples by a factor `step=2` and refills by interpolation; its
    index bookkeeping cannot be vectorised per batch. This smooth variant keeps
    its spirit: `warps=3` local changes of playback speed of the order of the
    reference's factor `step=2` (`strength=0.5`: 95% of the knot speeds lie
    within a factor `exp(1) ~ 2.7` of normal speed).

    Args:
        warps: number of interior knots of the speed profile. Defaults to `3`.
        strength: standard deviation of the log speed. Defaults to `0.5`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.random.normal(size=(4, 250, 12)).astype("float32")
    y = keras_ecg.layers.DynamicTimeWarp(warps=3, strength=0.5, seed=1)(x)
    ```
    """

    def __init__(self, warps=3, strength=0.5, probability=1.0, seed=None, **kwargs):
        super().__init__(probability=probability, seed=seed, **kwargs)
        if isinstance(warps, bool) or not isinstance(warps, int) or warps < 0:
            raise ValueError(
                f"{type(self).__name__}: `warps` must be an integer >= 0. "
                f"Received: {warps!r}"
            )
        self.warps = warps
        self.strength = check_non_negative(type(self).__name__, "strength", strength)

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        shape = (batch_size, self.warps + 2)
        return {"log_speed": self._normal(shape, 0.0, self.strength, seed)}

    def _transform(self, x, parameters):
        ops = self.backend.numpy
        timesteps = x.shape[1]
        knots = self.warps + 2
        # Knot k sits at timestep k * (T - 1) / (knots - 1).
        u = ops.arange(timesteps, dtype=self.compute_dtype) * (
            (knots - 1) / (timesteps - 1)
        )
        left = ops.clip(ops.floor(u), 0.0, float(knots - 2))
        weight = (u - left)[None, :]
        left = self.backend.cast(left, "int32")
        z = parameters["log_speed"]
        z_left = ops.take(z, left, axis=1)
        z_right = ops.take(z, left + 1, axis=1)
        speed = ops.exp(z_left + weight * (z_right - z_left))
        cumulative = ops.cumsum(speed, axis=1)
        cumulative = cumulative - cumulative[:, :1]
        positions = cumulative / cumulative[:, -1:] * (timesteps - 1)
        return self._resample(x, positions)

    def get_config(self):
        config = super().get_config()
        config.update({"warps": self.warps, "strength": self.strength})
        return config
