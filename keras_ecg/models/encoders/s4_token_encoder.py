"""An S4 stack over time-patch tokens: JEPA's encoder interface for S4."""

import keras
from keras import ops

from keras_ecg.layers.global_pooling import GlobalPooling1D
from keras_ecg.layers.s4 import torch_linear_initializers
from keras_ecg.models.encoders.ecg_transformer import gather_tokens
from keras_ecg.models.encoders.s4_encoder import S4_POOLING_MODES
from keras_ecg.models.encoders.s4_encoder import S4Encoder
from keras_ecg.presets.preset_mixin import PresetMixin


def visible_token_mask(token_indices, token_valid, num_tokens):
    """Boolean `(batch, num_tokens)`: True at the positions `idx` lists as valid.

    Args:
        token_indices: int `(batch, K)` positions.
        token_valid: optional boolean `(batch, K)`; False slots (padding)
            mark nothing.
        num_tokens: `N`, the sequence length.
    """
    hits = ops.one_hot(ops.cast(token_indices, "int32"), num_tokens)
    if token_valid is not None:
        hits = hits * ops.cast(token_valid, hits.dtype)[..., None]
    return ops.max(hits, axis=1) > 0


@keras.saving.register_keras_serializable(package="keras_ecg")
class S4TokenEncoder(PresetMixin, keras.Model):
    """S4 encoder over patch tokens, with JEPA's context interface.

    The input `(batch, T, leads)` is cut into `T / patch_size` patches of all
    leads together, each mapped linearly to one `d_model` token (the S4
    reference's position-wise input map, here per patch); a residual stack
    of S4 blocks (`S4Encoder` without its own input map: the ECG-CPC
    reference's `S4Model` blocks, post-norm LayerNorm by default, so every
    output token is layer-normed) runs over the token sequence. No position
    embedding: the S4 convolution sees the order itself.

    Interface used by `keras_ecg.models.JEPA` (see `JEPA`):

    - `model(x, return_tokens=True)`: all tokens `(batch, N, d_model)`.
    - `model(x, token_indices=idx, token_valid=valid, return_tokens=True)`:
      the JEPA context. An S4 layer cannot drop tokens, so every token NOT
      at a valid position of `idx` is replaced by a learned `mask_token`
      BEFORE the first block, the whole sequence runs, and the outputs at
      `idx` are returned `(batch, K, d_model)`: nothing of the signal
      outside the valid context reaches them (padding slots, `valid`
      False, are masked positions too; their outputs are meaningless and
      JEPA ignores them). With `bidirectional=True` a context token sees
      the context on both sides of a masked block, as the transformer's.
    - `num_tokens(timesteps)`, `hidden_dim` (= `d_model`) and a complete
      `get_config()` (JEPA's target encoder is a config clone).

    Called plainly (`model(x)`), it is a downstream backbone: the tokens
    pooled over time (`pooling="avg"`: their mean, `(batch, d_model)`), or
    the token sequence (`pooling=None`).

    Args:
        patch_size: samples per token (5 at 100 Hz: ViT-XS's 50 ms).
        d_model: token width (the S4 reference's `d_model`).
        num_layers: S4 blocks.
        d_state: state size of each S4 block.
        dropout: channel dropout inside and after each block (see
            `S4Encoder`).
        bidirectional: non-causal S4 blocks.
        prenorm: pre-norm blocks, then a final LayerNorm (default: the
            reference's post-norm blocks, whose last LayerNorm ends the
            stack).
        initialization, dt_min, dt_max, train_ssm: see `keras_ecg.layers.S4`.
        pooling: `"avg"`, `"max"`, `"concat"` or `None` (see `S4Encoder`).
        input_leads: number of leads.
        **kwargs: base `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> encoder = S4TokenEncoder(patch_size=10, d_model=16, num_layers=1,
    ...                          d_state=4)
    >>> x = np.random.randn(2, 250, 12).astype("float32")
    >>> tuple(encoder(x).shape)
    (2, 16)
    >>> tuple(encoder(x, return_tokens=True).shape)
    (2, 25, 16)
    >>> idx = np.array([[0, 3, 7], [1, 2, 24]])
    >>> tuple(encoder(x, token_indices=idx, return_tokens=True).shape)
    (2, 3, 16)
    """

    preset_component = "backbone"

    def __init__(
        self,
        patch_size=5,
        d_model=512,
        num_layers=4,
        d_state=8,
        dropout=0.0,
        bidirectional=True,
        prenorm=False,
        initialization="legs",
        dt_min=1e-3,
        dt_max=1e-1,
        train_ssm=True,
        pooling="avg",
        input_leads=12,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in S4_POOLING_MODES:
            raise ValueError(
                f"S4TokenEncoder: unknown pooling {pooling!r}; expected one of "
                f"{S4_POOLING_MODES}."
            )
        if int(patch_size) < 1 or int(input_leads) < 1:
            raise ValueError(
                "S4TokenEncoder: patch_size and input_leads must be positive, "
                f"got {patch_size} and {input_leads}."
            )
        self.patch_size = int(patch_size)
        self.d_model = int(d_model)
        self.num_layers = int(num_layers)
        self.d_state = int(d_state)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.prenorm = bool(prenorm)
        self.initialization = initialization
        self.dt_min = float(dt_min)
        self.dt_max = float(dt_max)
        self.train_ssm = bool(train_ssm)
        self.pooling = pooling
        self.input_leads = int(input_leads)
        patch_inputs = self.patch_size * self.input_leads
        kernel_init, bias_init = torch_linear_initializers(patch_inputs)
        self.patch_projection = keras.layers.Dense(
            self.d_model,
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            dtype=self.dtype_policy,
            name="patch_projection",
        )
        self.s4_stack = S4Encoder(
            d_model=self.d_model,
            num_layers=self.num_layers,
            d_state=self.d_state,
            dropout=self.dropout,
            bidirectional=self.bidirectional,
            prenorm=self.prenorm,
            norm="layer",
            pooling=None,
            initialization=self.initialization,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            train_ssm=self.train_ssm,
            input_channels=self.d_model,
            input_projection=False,
            dtype=self.dtype_policy,
            name="s4_stack",
        )
        self.output_norm = None
        if self.prenorm:
            self.output_norm = keras.layers.LayerNormalization(
                epsilon=1e-5, dtype=self.dtype_policy, name="output_norm"
            )
        self.pool = None
        if self.pooling is not None:
            self.pool = GlobalPooling1D(
                self.pooling, dtype=self.dtype_policy, name="pool"
            )

    @property
    def hidden_dim(self):
        """The token width (`d_model`), as JEPA reads it."""
        return self.d_model

    @property
    def output_dim(self):
        """Size of the pooled representation (twice `d_model` with concat)."""
        return self.d_model * (2 if self.pooling == "concat" else 1)

    def build(self, input_shape=None):
        if input_shape is None:
            input_shape = (None, None, self.input_leads)
        batch = input_shape[0]
        self.patch_projection.build((batch, None, self.patch_size * self.input_leads))
        token_shape = (batch, None, self.d_model)
        self.mask_token = self.add_weight(
            shape=(self.d_model,),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="mask_token",
        )
        if self.output_norm is not None:
            self.output_norm.build(token_shape)
        self.built = True

    def num_tokens(self, timesteps):
        """Tokens of an input of `timesteps` samples.

        Raises:
            ValueError: `timesteps` is not a multiple of `patch_size`.
        """
        if int(timesteps) % self.patch_size:
            raise ValueError(
                f"S4TokenEncoder: {timesteps} time steps are not a multiple of "
                f"the patch size {self.patch_size}."
            )
        return int(timesteps) // self.patch_size

    def embed(self, inputs):
        """Patch tokens `(batch, N, d_model)` of `(batch, T, leads)`."""
        timesteps = inputs.shape[1]
        if timesteps is not None:
            self.num_tokens(timesteps)  # a clear error for a bad length
            patches = timesteps // self.patch_size
        else:
            patches = ops.shape(inputs)[1] // self.patch_size
        leads = inputs.shape[-1] or self.input_leads
        flat = ops.reshape(inputs, (-1, patches, self.patch_size * leads))
        return self.patch_projection(flat)

    def call(
        self,
        inputs,
        token_indices=None,
        token_valid=None,
        return_tokens=False,
        training=None,
    ):
        if (token_indices is not None or token_valid is not None) and not (
            return_tokens
        ):
            raise ValueError(
                "S4TokenEncoder: token_indices / token_valid select the context "
                "tokens; pass return_tokens=True (pooling them is not defined)."
            )
        x = self.embed(inputs)
        if token_indices is not None or token_valid is not None:
            if token_indices is not None:
                num_tokens = x.shape[1]
                if num_tokens is None:
                    num_tokens = ops.shape(x)[1]
                visible = visible_token_mask(token_indices, token_valid, num_tokens)
            else:
                visible = ops.cast(token_valid, "bool")
            # Masked positions become the mask token before any S4 block:
            # their signal cannot reach the context tokens.
            mask_token = ops.cast(self.mask_token, x.dtype)
            x = ops.where(visible[..., None], x, mask_token[None, None, :])
        x = self.s4_stack(x, training=training)
        if self.output_norm is not None:
            x = self.output_norm(x)
        if token_indices is not None:
            x = gather_tokens(x, token_indices)
        if return_tokens or self.pool is None:
            return x
        return self.pool(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "d_model": self.d_model,
                "num_layers": self.num_layers,
                "d_state": self.d_state,
                "dropout": self.dropout,
                "bidirectional": self.bidirectional,
                "prenorm": self.prenorm,
                "initialization": self.initialization,
                "dt_min": self.dt_min,
                "dt_max": self.dt_max,
                "train_ssm": self.train_ssm,
                "pooling": self.pooling,
                "input_leads": self.input_leads,
            }
        )
        return config
