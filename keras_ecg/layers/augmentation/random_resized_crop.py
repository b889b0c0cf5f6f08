"""Random crop resized back to the full window."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_range


@keras.saving.register_keras_serializable(package="keras_ecg")
class RandomResizedCrop(ECGAugmentation):
    """Crops a random fraction of the window and stretches it to full length.

    Per example, `r ~ U(crop_ratio_range)`, the crop has
    `L = clip(floor(r * timesteps), 2, timesteps)` samples and starts at `s`,
    uniform in `[0, timesteps - L]`. The crop is resampled to `timesteps`
    points by linear interpolation on a regular grid:
    `y[i] = x(s + i * (L - 1) / (timesteps - 1))`, all leads alike. Default
    `(0.5, 1.0)` is the reference code's pretraining default
    (`--rr_crop_ratio_range`), part of the paper's best setting
    RandomResizedCrop + TimeOut. The reference places the crop samples at
    random sorted output positions before interpolating; a regular grid is the
    usual random-resized-crop and can be vectorised per batch. The output keeps
    the input length (the reference's `output_size` equals it, 250).

    Args:
        crop_ratio_range: `(low, high)` crop fractions in `(0, 1]`. Defaults to
            `(0.5, 1.0)`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.random.normal(size=(4, 250, 12)).astype("float32")
    y = keras_ecg.layers.RandomResizedCrop(crop_ratio_range=(0.5, 1.0))(x)
    ```
    """

    def __init__(
        self, crop_ratio_range=(0.5, 1.0), probability=1.0, seed=None, **kwargs
    ):
        super().__init__(probability=probability, seed=seed, **kwargs)
        self.crop_ratio_range = check_range(
            type(self).__name__, "crop_ratio_range", crop_ratio_range, 0.0, 1.0
        )
        if self.crop_ratio_range[0] <= 0:
            raise ValueError(
                f"{type(self).__name__}: `crop_ratio_range` must be > 0. "
                f"Received: {crop_ratio_range!r}"
            )

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        ops = self.backend.numpy
        low, high = self.crop_ratio_range
        ratio = self._uniform((batch_size,), low, high, seed)
        length = ops.clip(ops.floor(ratio * timesteps), 2.0, float(timesteps))
        draw = self._uniform((batch_size,), 0.0, 1.0, seed)
        start = ops.minimum(
            ops.floor(draw * (timesteps - length + 1)), timesteps - length
        )
        return {"start": start, "length": length}

    def _transform(self, x, parameters):
        ops = self.backend.numpy
        timesteps = x.shape[1]
        grid = ops.arange(timesteps, dtype=self.compute_dtype)[None, :] / (
            timesteps - 1
        )
        step = (parameters["length"] - 1.0)[:, None]
        positions = parameters["start"][:, None] + grid * step
        return self._resample(x, positions)

    def get_config(self):
        config = super().get_config()
        config.update({"crop_ratio_range": list(self.crop_ratio_range)})
        return config
