"""SwAV prototype layer with in-graph L2 normalisation of the prototypes."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_ecg")
class SwAVPrototypes(keras.layers.Layer):
    """Bias-free linear layer whose weight columns are unit-norm prototypes.

    The reference implementation re-normalises the prototype matrix after every
    optimizer step; normalising in the forward pass instead keeps the constraint
    exact on every backend without a callback, and the scores stay cosine
    similarities because the inputs are expected to be L2-normalised.

    Args:
        num_prototypes: number of prototype vectors `K`.
        epsilon: floor on the prototype norms, to avoid division by zero.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> layer = SwAVPrototypes(num_prototypes=10)
    >>> z = np.ones((4, 16), "float32") / 4.0  # unit-norm rows
    >>> layer(z).shape
    (4, 10)
    """

    def __init__(self, num_prototypes=300, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.num_prototypes = int(num_prototypes)
        if self.num_prototypes <= 0:
            raise ValueError(
                "SwAVPrototypes: num_prototypes must be positive, got "
                f"{num_prototypes}."
            )
        self.epsilon = float(epsilon)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(
                "SwAVPrototypes: the last input dimension must be known, got "
                f"input shape {input_shape}."
            )
        # Stored as (dim, K) so the scores are a plain `inputs @ prototypes`.
        self.prototypes = self.add_weight(
            name="prototypes",
            shape=(dim, self.num_prototypes),
            initializer="glorot_uniform",
            trainable=True,
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: dim})
        self.built = True

    @property
    def normalized_prototypes(self):
        """The unit-norm prototypes as a `(num_prototypes, dim)` tensor."""
        return ops.transpose(self._normalized_kernel())

    def _normalized_kernel(self):
        kernel = ops.convert_to_tensor(self.prototypes)
        norm = ops.sqrt(ops.sum(ops.square(kernel), axis=0, keepdims=True))
        return kernel / ops.maximum(norm, self.epsilon)

    def call(self, inputs):
        kernel = ops.cast(self._normalized_kernel(), inputs.dtype)
        return ops.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_prototypes,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_prototypes": self.num_prototypes, "epsilon": self.epsilon})
        return config
