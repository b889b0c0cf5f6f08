"""Additive white Gaussian noise."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_ecg")
class GaussianNoise(ECGAugmentation):
    """Adds i.i.d. Gaussian noise `scale * N(0, 1)` to every sample and lead.

    Default `scale=0.005` is the reference code's pretraining default
    (`--gaussian_scale`, tmehari/ecg-selfsupervised), in the units of the input
    (mV for raw PTB-XL).

    Args:
        scale: standard deviation of the noise. Defaults to `0.005`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.zeros((4, 250, 12), "float32")
    y = keras_ecg.layers.GaussianNoise(scale=0.01, seed=1)(x)
    ```
    """

    def __init__(self, scale=0.005, probability=1.0, seed=None, **kwargs):
        super().__init__(probability=probability, seed=seed, **kwargs)
        self.scale = check_non_negative(type(self).__name__, "scale", scale)

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        noise = self._normal((batch_size, timesteps, leads), 0.0, 1.0, seed)
        return {"noise": noise}

    def _transform(self, x, parameters):
        return x + self.scale * parameters["noise"]

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config
