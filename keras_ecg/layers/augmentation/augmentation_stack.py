"""A sequence of augmentation layers applied in order."""

import keras

from keras_ecg.layers.augmentation.ecg_augmentation import ECGAugmentation


@keras.saving.register_keras_serializable(package="keras_ecg")
class AugmentationStack(ECGAugmentation):
    """Applies a list of augmentation layers in order (one random view).

    Each layer keeps its own probability and random state. With
    `probability < 1` the whole stack is applied to a random subset of the
    examples. Like its members, the stack runs in `tf.data` under every
    backend, eagerly, and inside a model (identity when `training=False`).

    Args:
        layers: list of augmentation layers (usually `ECGAugmentation`s).
        probability: probability to apply the stack to each example. Defaults
            to `1.0`.
        seed: optional integer seed (for the stack's own `probability`).
        **kwargs: base layer arguments.

    Example:

    ```python
    stack = keras_ecg.layers.AugmentationStack(
        [keras_ecg.layers.RandomResizedCrop(), keras_ecg.layers.TimeOut()]
    )
    dataset = dataset.map(lambda x: (stack(x), stack(x)))  # two views
    ```
    """

    def __init__(self, layers, probability=1.0, seed=None, **kwargs):
        super().__init__(probability=probability, seed=seed, **kwargs)
        layers = list(layers)
        for layer in layers:
            if not isinstance(layer, keras.layers.Layer):
                raise TypeError(
                    f"{type(self).__name__}: every element of `layers` must be a "
                    f"Keras layer. Received: {layer!r}"
                )
        self.layers = layers

    def build(self, input_shape):
        for layer in self.layers:
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def _sample_parameters(self, batch_size, timesteps, leads, seed):
        return {}

    def _transform(self, x, parameters):
        for layer in self.layers:
            x = layer(x, training=True)
        return x

    def get_config(self):
        config = super().get_config()
        config["layers"] = [keras.saving.serialize_keras_object(x) for x in self.layers]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [
            keras.saving.deserialize_keras_object(x) for x in config["layers"]
        ]
        return cls(**config)
