"""A residual stack of S4 blocks, as the S4 model of the ECG-CPC reference."""

import keras

from keras_ecg.layers.global_pooling import GlobalPooling1D
from keras_ecg.layers.s4 import S4
from keras_ecg.layers.s4 import torch_linear_initializers
from keras_ecg.presets.preset_mixin import PresetMixin

S4_POOLING_MODES = ("concat", "avg", "max", None)
NORMS = ("layer", "batch")


@keras.saving.register_keras_serializable(package="keras_ecg")
class S4Encoder(PresetMixin, keras.Model):
    """S4 encoder: input projection, `num_layers` residual S4 blocks, pooling.

    The structure of the reference's `S4Model` (tmehari/ssm_ecg,
    `code/dl_models/s4_model.py` / `modified_s4_model.py`): a position-wise
    linear map from the input channels to `d_model` (its `nn.Conv1d(d_input,
    d_model, 1)` / `nn.Linear`), then per layer

        z = norm(x) if prenorm else x
        z = channel_dropout(S4(z))
        x = z + x
        x = x if prenorm else norm(x)

    with LayerNorm (PyTorch's epsilon 1e-5) or BatchNorm, no final norm, and
    the time axis pooled at the end (`"avg"`: the reference's mean pooling)
    or kept (`pooling=None`: `(batch, T, d_model)`, e.g. as CPC's context
    network). Every block is causal unless `bidirectional`, so with
    `bidirectional=False` and LayerNorm the output at `t` depends on the
    inputs up to `t` only. Inputs are `(batch, T, input_channels)` of any
    length.

    Args:
        d_model: width of the residual stream (the reference's `d_model`).
        num_layers: number of S4 blocks.
        d_state: state size of each S4 block (see `keras_ecg.layers.S4`).
        dropout: rate of the channel dropout inside each S4 block and on
            its output (the reference uses the same rate for both).
        bidirectional: non-causal S4 blocks (see `S4`).
        prenorm: normalise before each block (pre-norm) instead of after
            the residual sum (post-norm, the reference's default).
        norm: `"layer"` (the reference's default) or `"batch"`.
        pooling: `"avg"`, `"max"`, `"concat"` (max then average, as
            `XResNet1D`) or `None` (the sequence).
        initialization: S4D initialisation, `"legs"` or `"lin"`.
        dt_min, dt_max: range of the initial S4 steps.
        train_ssm: whether the S4 blocks' `A`, `B` and `dt` train (see `S4`).
        input_channels: number of input channels (ECG leads, or the
            features of CPC's encoder).
        input_projection: whether the input is first mapped to `d_model`
            by a position-wise linear map (the reference's); `False` feeds
            the input, which must then have `d_model` channels, to the
            first block as is (e.g. tokens embedded by the caller, as
            `S4TokenEncoder`).
        synchronized_batch_norm: with `norm="batch"`, TensorFlow and torch:
            compute the BatchNorm statistics over the global batch of a
            distributed step; JAX's are global anyway.
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, `trainable`).

    Example:

    >>> import numpy as np
    >>> encoder = S4Encoder(d_model=16, num_layers=2, d_state=4)
    >>> tuple(encoder(np.zeros((2, 250, 12), "float32")).shape)
    (2, 16)
    >>> encoder.output_dim
    16
    """

    preset_component = "backbone"

    def __init__(
        self,
        d_model=512,
        num_layers=4,
        d_state=8,
        dropout=0.2,
        bidirectional=True,
        prenorm=False,
        norm="layer",
        pooling="avg",
        initialization="legs",
        dt_min=1e-3,
        dt_max=1e-1,
        train_ssm=True,
        input_channels=12,
        synchronized_batch_norm=False,
        input_projection=True,
        **kwargs,
    ):
        if int(d_model) < 1 or int(num_layers) < 1 or int(input_channels) < 1:
            raise ValueError(
                "S4Encoder: d_model, num_layers and input_channels must be "
                f"positive, got {d_model}, {num_layers}, {input_channels}."
            )
        if norm not in NORMS:
            raise ValueError(f"S4Encoder: unknown norm {norm!r}; expected {NORMS}.")
        if pooling not in S4_POOLING_MODES:
            raise ValueError(
                f"S4Encoder: unknown pooling {pooling!r}; expected one of "
                f"{S4_POOLING_MODES}."
            )
        if not input_projection and int(input_channels) != int(d_model):
            raise ValueError(
                "S4Encoder: without input_projection the input must have "
                f"d_model={d_model} channels, got input_channels={input_channels}."
            )
        dtype = kwargs.get("dtype")

        # === Functional model ===
        inputs = keras.Input(shape=(None, int(input_channels)), name="ecg")
        x = inputs
        if input_projection:
            kernel_init, bias_init = torch_linear_initializers(input_channels)
            x = keras.layers.Dense(
                int(d_model),
                kernel_initializer=kernel_init,
                bias_initializer=bias_init,
                dtype=dtype,
                name="input_projection",
            )(inputs)
        for i in range(int(num_layers)):
            normalize = _norm_layer(norm, synchronized_batch_norm, dtype, f"norm_{i}")
            z = normalize(x) if prenorm else x
            z = S4(
                d_state=d_state,
                bidirectional=bidirectional,
                initialization=initialization,
                dt_min=dt_min,
                dt_max=dt_max,
                train_ssm=train_ssm,
                dropout=dropout,
                dtype=dtype,
                name=f"s4_{i}",
            )(z)
            if float(dropout) > 0:
                z = keras.layers.SpatialDropout1D(
                    float(dropout), dtype=dtype, name=f"dropout_{i}"
                )(z)
            x = keras.layers.Add(dtype=dtype, name=f"residual_{i}")([z, x])
            if not prenorm:
                x = normalize(x)
        if pooling is not None:
            x = GlobalPooling1D(pooling, dtype=dtype, name="pool")(x)
        super().__init__(inputs=inputs, outputs=x, **kwargs)

        # === Config ===
        self.d_model = int(d_model)
        self.num_layers = int(num_layers)
        self.d_state = int(d_state)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.prenorm = bool(prenorm)
        self.norm = norm
        self.pooling = pooling
        self.initialization = initialization
        self.dt_min = float(dt_min)
        self.dt_max = float(dt_max)
        self.train_ssm = bool(train_ssm)
        self.input_channels = int(input_channels)
        self.synchronized_batch_norm = bool(synchronized_batch_norm)
        self.input_projection = bool(input_projection)
        # A functional model does not keep a `dtype` given to it; its layers
        # got it, and the config records it.
        self._dtype_argument = dtype

    @property
    def output_dim(self):
        """Size of the representation (`d_model`, twice that with concat)."""
        return self.d_model * (2 if self.pooling == "concat" else 1)

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "d_model": self.d_model,
            "num_layers": self.num_layers,
            "d_state": self.d_state,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "prenorm": self.prenorm,
            "norm": self.norm,
            "pooling": self.pooling,
            "initialization": self.initialization,
            "dt_min": self.dt_min,
            "dt_max": self.dt_max,
            "train_ssm": self.train_ssm,
            "input_channels": self.input_channels,
            "synchronized_batch_norm": self.synchronized_batch_norm,
            "input_projection": self.input_projection,
        }
        if self._dtype_argument is not None:
            config["dtype"] = keras.saving.serialize_keras_object(
                keras.dtype_policies.get(self._dtype_argument)
            )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.saving.deserialize_keras_object(config["dtype"])
        return cls(**config)


def _norm_layer(norm, synchronized, dtype, name):
    if norm == "layer":
        # PyTorch's nn.LayerNorm epsilon (Keras defaults to 1e-3).
        return keras.layers.LayerNormalization(epsilon=1e-5, dtype=dtype, name=name)
    from keras_ecg.distribute import synchronize_batch_norm

    layer = keras.layers.BatchNormalization(
        # PyTorch's nn.BatchNorm1d defaults (momentum 0.1 is Keras' 0.9).
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        name=name,
    )
    # TF: Keras' `synchronized`; torch: keras-ecg's all-reduced moments;
    # JAX's statistics are global anyway.
    synchronize_batch_norm(layer, synchronized)
    return layer
