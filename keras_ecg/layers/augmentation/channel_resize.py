"""Per-lead random amplitude scaling."""

import math

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_range


@keras.saving.register_keras_serializable(package="keras_ecg")
class ChannelResize(ECGAugmentation):
    """Scales each lead by its own random factor, log-uniform in a range.

    `y[:, c] = s_c * x[:, c]` with `log s_c ~ U(log low, log high)`, drawn per
    example and lead. Default `(0.5, 2.0)` is the reference code's pretraining
    default (`--magnitude_range`); log-uniform sampling makes shrinking and
    growing by the same factor equally likely.

    Args:
        magnitude_range: `(low, high)` positive factors. Defaults to
            `(0.5, 2.0)`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.ones((4, 250, 12), "float32")
    y = keras_ecg.layers.ChannelResize(magnitude_range=(0.5, 2.0), seed=1)(x)
    ```
    """

    def __init__(
        self, magnitude_range=(0.5, 2.0), probability=1.0, seed=None, **kwargs
    ):
        super().__init__(probability=probability, seed=seed, **kwargs)
        low, high = check_range(type(self).__name__, "magnitude_range", magnitude_range)
        if low <= 0:
            raise ValueError(
                f"{type(self).__name__}: `magnitude_range` must be positive. "
                f"Received: {magnitude_range!r}"
            )
        self.magnitude_range = (low, high)

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        low, high = self.magnitude_range
        log_factor = self._uniform(
            (batch_size, leads), math.log(low), math.log(high), seed
        )
        return {"factors": self.backend.numpy.exp(log_factor)}

    def _transform(self, x, parameters):
        return x * parameters["factors"][:, None, :]

    def get_config(self):
        config = super().get_config()
        config.update({"magnitude_range": list(self.magnitude_range)})
        return config
