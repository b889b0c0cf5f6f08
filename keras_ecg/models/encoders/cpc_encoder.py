"""CPC encoder (per-timestep MLP or strided convolutions) and LSTM context."""

import keras


@keras.saving.register_keras_serializable(package="keras_ecg")
class CPCEncoder(keras.layers.Layer):
    """Stack of Conv1D -> [BatchNorm] -> ReLU blocks mapping ECG to a sequence.

    With kernel sizes and strides of 1 (the default) every layer is a dense
    layer applied per time step: the paper's 4-layer "fc" CPC encoder, which
    keeps the time resolution (`T' = T`). `cpc_strided_encoder()` builds the
    convolutional variant (kernels 10, 4, 4, 4, strides 2, 2, 2, 2;
    `T' = ceil(T / 16)`). Convolutions use "same" padding.

    Args:
        filters: output channels of each layer.
        kernel_sizes: kernel size of each layer (an int applies to all).
        strides: stride of each layer (an int applies to all).
        use_batch_norm: add BatchNormalization before each ReLU.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> encoder = CPCEncoder(filters=(16, 16))
    >>> tuple(encoder(np.zeros((2, 100, 12), "float32")).shape)
    (2, 100, 16)
    """

    def __init__(
        self,
        filters=(512, 512, 512, 512),
        kernel_sizes=1,
        strides=1,
        use_batch_norm=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.kernel_sizes = _per_layer(kernel_sizes, len(self.filters))
        self.strides = _per_layer(strides, len(self.filters))
        if not (len(self.filters) == len(self.kernel_sizes) == len(self.strides)):
            raise ValueError(
                "CPCEncoder: filters, kernel_sizes and strides must have the same "
                f"length, got {self.filters}, {self.kernel_sizes}, {self.strides}."
            )
        if not self.filters:
            raise ValueError("CPCEncoder: at least one layer is required.")
        self.use_batch_norm = bool(use_batch_norm)
        self.conv_layers = []
        self.norm_layers = []
        for i, (f, k, s) in enumerate(
            zip(self.filters, self.kernel_sizes, self.strides)
        ):
            self.conv_layers.append(
                keras.layers.Conv1D(
                    f,
                    k,
                    strides=s,
                    padding="same",
                    # The following BatchNorm has its own shift.
                    use_bias=not self.use_batch_norm,
                    dtype=self.dtype_policy,
                    name=f"conv_{i}",
                )
            )
            if self.use_batch_norm:
                self.norm_layers.append(
                    keras.layers.BatchNormalization(
                        dtype=self.dtype_policy, name=f"bn_{i}"
                    )
                )

    @property
    def output_dim(self):
        return self.filters[-1]

    @property
    def downsampling_factor(self):
        factor = 1
        for s in self.strides:
            factor *= s
        return factor

    def build(self, input_shape):
        shape = tuple(input_shape)
        for i, conv in enumerate(self.conv_layers):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            if self.use_batch_norm:
                self.norm_layers[i].build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for i, conv in enumerate(self.conv_layers):
            x = conv(x)
            if self.use_batch_norm:
                x = self.norm_layers[i](x, training=training)
            x = keras.ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.conv_layers:
            shape = conv.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_sizes": self.kernel_sizes,
                "strides": self.strides,
                "use_batch_norm": self.use_batch_norm,
            }
        )
        return config


def _per_layer(value, num_layers):
    if isinstance(value, int):
        return (value,) * num_layers
    return tuple(int(v) for v in value)


def cpc_fc_encoder(filters=(512, 512, 512, 512), use_batch_norm=True, **kwargs):
    """The paper's per-timestep MLP CPC encoder (kernels and strides of 1)."""
    return CPCEncoder(filters, 1, 1, use_batch_norm=use_batch_norm, **kwargs)


def cpc_strided_encoder(
    filters=(512, 512, 512, 512),
    kernel_sizes=(10, 4, 4, 4),
    strides=(2, 2, 2, 2),
    use_batch_norm=True,
    **kwargs,
):
    """The strided convolutional CPC encoder (`T' = ceil(T / 16)` by default)."""
    return CPCEncoder(
        filters, kernel_sizes, strides, use_batch_norm=use_batch_norm, **kwargs
    )


@keras.saving.register_keras_serializable(package="keras_ecg")
class CPCContext(keras.layers.Layer):
    """Unidirectional stacked LSTM returning the full context sequence.

    Causal by construction, so the context at step `t` only sees encodings up
    to `t`, as CPC's prediction task requires.

    Args:
        units: LSTM units per layer (the context dimension).
        num_layers: number of stacked LSTM layers.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    >>> import numpy as np
    >>> context = CPCContext(units=8, num_layers=2)
    >>> tuple(context(np.zeros((2, 20, 16), "float32")).shape)
    (2, 20, 8)
    """

    def __init__(self, units=512, num_layers=2, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_layers = int(num_layers)
        if self.units < 1 or self.num_layers < 1:
            raise ValueError(
                "CPCContext: units and num_layers must be positive, got "
                f"units={units}, num_layers={num_layers}."
            )
        self.lstm_layers = [
            keras.layers.LSTM(
                self.units,
                return_sequences=True,
                dtype=self.dtype_policy,
                name=f"lstm_{i}",
            )
            for i in range(self.num_layers)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for lstm in self.lstm_layers:
            lstm.build(shape)
            shape = shape[:-1] + (self.units,)
        self.built = True

    def call(self, inputs, training=None):
        x = inputs
        for lstm in self.lstm_layers:
            x = lstm(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "num_layers": self.num_layers})
        return config
