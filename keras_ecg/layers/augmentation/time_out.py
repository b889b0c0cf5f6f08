"""Zeroing of a random contiguous segment."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_range


@keras.saving.register_keras_serializable(package="keras_ecg")
class TimeOut(ECGAugmentation):
    """Sets a random contiguous segment of all leads to zero.

    Per example, `r ~ U(crop_ratio_range)`, the segment length is
    `L = floor(r * timesteps)` and its start `s` is uniform in
    `[0, timesteps - L]`; `y[s:s + L] = 0`. Default `(0.2, 0.4)` is the
    reference code's pretraining default (`--to_crop_ratio_range`), used in the
    paper's best setting RandomResizedCrop + TimeOut.

    Args:
        crop_ratio_range: `(low, high)` fractions of the window in `[0, 1]`.
            Defaults to `(0.2, 0.4)`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.ones((4, 250, 12), "float32")
    y = keras_ecg.layers.TimeOut(crop_ratio_range=(0.2, 0.4), seed=1)(x)
    ```
    """

    def __init__(
        self, crop_ratio_range=(0.2, 0.4), probability=1.0, seed=None, **kwargs
    ):
        super().__init__(probability=probability, seed=seed, **kwargs)
        self.crop_ratio_range = check_range(
            type(self).__name__, "crop_ratio_range", crop_ratio_range, 0.0, 1.0
        )

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        ops = self.backend.numpy
        low, high = self.crop_ratio_range
        ratio = self._uniform((batch_size,), low, high, seed)
        length = ops.clip(ops.floor(ratio * timesteps), 0.0, float(timesteps))
        draw = self._uniform((batch_size,), 0.0, 1.0, seed)
        start = ops.minimum(
            ops.floor(draw * (timesteps - length + 1)), timesteps - length
        )
        return {"start": start, "length": length}

    def _transform(self, x, parameters):
        ops = self.backend.numpy
        t = ops.arange(x.shape[1], dtype=self.compute_dtype)[None, :]
        start = parameters["start"][:, None]
        end = start + parameters["length"][:, None]
        keep = ops.logical_or(t < start, t >= end)
        return ops.where(keep[:, :, None], x, ops.zeros_like(x))

    def get_config(self):
        config = super().get_config()
        config.update({"crop_ratio_range": list(self.crop_ratio_range)})
        return config
