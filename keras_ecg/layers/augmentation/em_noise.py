"""Electromyographic (muscle) noise."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation
from keras_ecg.layers.augmentation.ecg_augmentation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_ecg")
class EMNoise(ECGAugmentation):
    """Adds electromyographic (EMG, high-frequency) noise.

    As in the reference code (`noise_electromyographic`, after Friesen et al.
    1990, IEEE TBME 37(1)), EMG noise is modelled as white Gaussian noise over
    all samples and leads, with a per-example strength `C ~ U(0, c_max)`:
    `y = x + C * N(0, 1)`. Default `c_max=0.5` is the reference pretraining
    setting (`em_cmax`); the robustness levels use 0.25 to 2
    (`keras_ecg.layers.physiological_noise`).

    Args:
        c_max: maximum noise standard deviation (input units). Defaults to `0.5`.
        probability: probability to augment each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.zeros((4, 250, 12), "float32")
    y = keras_ecg.layers.EMNoise(c_max=0.25, seed=1)(x)
    ```
    """

    def __init__(self, c_max=0.5, probability=1.0, seed=None, **kwargs):
        super().__init__(probability=probability, seed=seed, **kwargs)
        self.c_max = check_non_negative(type(self).__name__, "c_max", c_max)

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        return {
            "amplitude": self._uniform((batch_size,), 0.0, self.c_max, seed),
            "noise": self._normal((batch_size, timesteps, leads), 0.0, 1.0, seed),
        }

    def _transform(self, x, parameters):
        return x + parameters["amplitude"][:, None, None] * parameters["noise"]

    def get_config(self):
        config = super().get_config()
        config.update({"c_max": self.c_max})
        return config
