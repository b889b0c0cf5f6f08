"""Sign flip of the signal."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation


@keras.saving.register_keras_serializable(package="keras_ecg")
class Negation(ECGAugmentation):
    """Multiplies the signal by -1 (all leads).

    The reference code always negates (`probability=1.0`, the default here); a
    lower `probability` negates a random subset of the examples.

    Args:
        probability: probability to negate each example. Defaults to `1.0`.
        seed: optional integer seed.
        **kwargs: base layer arguments.

    Example:

    ```python
    x = np.ones((4, 250, 12), "float32")
    y = keras_ecg.layers.Negation(probability=0.5, seed=1)(x)
    ```
    """

    def __init__(self, probability=1.0, seed=None, **kwargs):
        super().__init__(probability=probability, seed=seed, **kwargs)

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        return {}

    def _transform(self, x, parameters):
        return -x
