"""Non-overlapping time patches of all leads, projected to tokens."""

import keras

from keras_ecg.utils import fresh_initializer


@keras.saving.register_keras_serializable(package="keras_ecg")
class PatchEmbedding(keras.layers.Layer):
    """Cuts `(batch, T, leads)` into `T / patch_size` patches, one token each.

    Every patch holds `patch_size` consecutive samples of ALL leads and is
    mapped linearly to `hidden_dim` features: a convolution with kernel size
    and stride `patch_size`, as kweimann/ECG-JEPA's `PatchEmbedding`
    (`nn.Conv1d(leads, dim, patch_size, stride=patch_size)`). `T` must be a
    multiple of `patch_size`.

    Args:
        hidden_dim: token width.
        patch_size: samples per patch.
        use_bias: whether the projection has a bias.
        kernel_initializer: initializer of the projection; default normal
            with std 0.02 (the reference's `trunc_normal_(std=0.02)`, whose
            truncation at +-2 in absolute value leaves a plain normal).
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> layer = PatchEmbedding(hidden_dim=16, patch_size=5)
    >>> tuple(layer(np.zeros((2, 250, 12), "float32")).shape)
    (2, 50, 16)
    """

    def __init__(
        self,
        hidden_dim,
        patch_size,
        use_bias=True,
        kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = int(hidden_dim)
        self.patch_size = int(patch_size)
        if self.hidden_dim < 1 or self.patch_size < 1:
            raise ValueError(
                "PatchEmbedding: hidden_dim and patch_size must be positive, got "
                f"{hidden_dim} and {patch_size}."
            )
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer or keras.initializers.RandomNormal(stddev=0.02)
        )
        self.projection = keras.layers.Conv1D(
            self.hidden_dim,
            self.patch_size,
            strides=self.patch_size,
            padding="valid",
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="projection",
        )

    def _check_length(self, timesteps):
        if timesteps is not None and int(timesteps) % self.patch_size:
            raise ValueError(
                f"PatchEmbedding: {timesteps} time steps are not a multiple of "
                f"the patch size {self.patch_size}; crop the input to a "
                "multiple of it."
            )

    def build(self, input_shape):
        self._check_length(input_shape[1])
        self.projection.build(tuple(input_shape))
        self.built = True

    def call(self, inputs):
        self._check_length(inputs.shape[1])
        return self.projection(inputs)

    def compute_output_shape(self, input_shape):
        timesteps = input_shape[1]
        tokens = None if timesteps is None else int(timesteps) // self.patch_size
        return (input_shape[0], tokens, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "patch_size": self.patch_size,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config
