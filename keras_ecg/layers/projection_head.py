"""MLP projector / predictor heads of the contrastive and BYOL-style methods."""

import keras


@keras.saving.register_keras_serializable(package="keras_ecg")
class ProjectionHead(keras.layers.Layer):
    """MLP: `Dense -> [BatchNorm] -> activation` per hidden layer, then `Dense`.

    Serves as the SimCLR / BYOL / SwAV projector and as BYOL's predictor. The
    output layer has no normalisation or activation; the losses normalise.

    Args:
        hidden_dims: widths of the hidden layers; `()` gives a linear head.
        output_dim: width of the output.
        use_batch_norm: whether to batch-normalise each hidden layer.
        activation: activation of each hidden layer (any `keras.activations`
            identifier, or `None`).
        use_bias_last: whether the output `Dense` has a bias.
        use_bias_hidden: whether the hidden `Dense` layers have a bias. The
            reference BYOL projector/predictor has none (the BatchNorm that
            follows has its own shift); `True` (the default, and what a saved
            head without this key had) keeps one.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> head = ProjectionHead(hidden_dims=(32,), output_dim=8)
    >>> tuple(head(np.ones((4, 16), "float32")).shape)
    (4, 8)
    """

    def __init__(
        self,
        hidden_dims=(512,),
        output_dim=128,
        use_batch_norm=True,
        activation="relu",
        use_bias_last=True,
        use_bias_hidden=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dims = tuple(int(d) for d in hidden_dims)
        self.output_dim = int(output_dim)
        if self.output_dim <= 0 or any(d <= 0 for d in self.hidden_dims):
            raise ValueError(
                "ProjectionHead: hidden_dims and output_dim must be positive, got "
                f"hidden_dims={hidden_dims}, output_dim={output_dim}."
            )
        self.use_batch_norm = bool(use_batch_norm)
        self.activation = keras.activations.get(activation)
        self._activation_config = activation
        self.use_bias_last = bool(use_bias_last)
        self.use_bias_hidden = bool(use_bias_hidden)
        self.hidden_layers = []
        self.batch_norms = []
        for i, dim in enumerate(self.hidden_dims):
            self.hidden_layers.append(
                keras.layers.Dense(
                    dim,
                    use_bias=self.use_bias_hidden,
                    name=f"hidden_{i}",
                    dtype=self.dtype_policy,
                )
            )
            if self.use_batch_norm:
                # torch BatchNorm1d defaults, as in the reference projectors.
                self.batch_norms.append(
                    keras.layers.BatchNormalization(
                        momentum=0.9,
                        epsilon=1e-5,
                        name=f"hidden_bn_{i}",
                        dtype=self.dtype_policy,
                    )
                )
        self.output_layer = keras.layers.Dense(
            self.output_dim,
            use_bias=self.use_bias_last,
            name="output",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, dense in enumerate(self.hidden_layers):
            dense.build(shape)
            shape = shape[:-1] + (dense.units,)
            if self.use_batch_norm:
                self.batch_norms[i].build(shape)
        self.output_layer.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for i, dense in enumerate(self.hidden_layers):
            x = dense(x)
            if self.use_batch_norm:
                x = self.batch_norms[i](x, training=training)
            x = self.activation(x)
        return self.output_layer(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dims": list(self.hidden_dims),
                "output_dim": self.output_dim,
                "use_batch_norm": self.use_batch_norm,
                "activation": keras.activations.serialize(self.activation)
                if self._activation_config is not None
                else None,
                "use_bias_last": self.use_bias_last,
                "use_bias_hidden": self.use_bias_hidden,
            }
        )
        return config
