"""A Vision-Transformer encoder over time patches of the 12 leads (ECG-JEPA)."""

import math

import keras
from keras import ops

from keras_ecg.layers.patch_embedding import PatchEmbedding
from keras_ecg.layers.position_embedding import sincos_position_embedding
from keras_ecg.layers.transformer_block import TransformerBlock
from keras_ecg.presets.preset_mixin import PresetMixin

TRANSFORMER_POOLING_MODES = ("avg", "register", None)


def gather_tokens(tokens, indices):
    """`tokens[b, indices[b, j]]`: `(batch, N, D)`, `(batch, K)` -> `(batch, K, D)`."""
    indices = ops.cast(indices, "int32")
    return ops.take_along_axis(tokens, ops.expand_dims(indices, -1), axis=1)


@keras.saving.register_keras_serializable(package="keras_ecg")
class ECGTransformer(PresetMixin, keras.Model):
    """ViT encoder of kweimann/ECG-JEPA (`models/vision_transformer.py`).

    The input `(batch, T, leads)` is cut into `T / patch_size` patches of
    all leads together, each linearly embedded into one token
    (`PatchEmbedding`); fixed sine-cosine position embeddings are added
    (`sincos_position_embedding`, positions 0 .. N-1, so any length that is a
    multiple of `patch_size` works, e.g. 10 s crops in pretraining and 2.5 s
    windows downstream as in the reference); `num_registers` learned
    register tokens (without position) are prepended; then `num_layers`
    pre-norm `TransformerBlock`s and a final LayerNorm. Weights start as the
    reference's: normal with std 0.02 (its `trunc_normal_(std=0.02)`, whose
    +-2 bounds are absolute), the two residual-branch outputs of every block
    with std `0.02 / sqrt(2 * num_layers)`, zero biases, unit LayerNorms.

    Interface used by `keras_ecg.models.JEPA` (what any JEPA encoder must
    implement, see `JEPA`):

    - `model(x, return_tokens=True)`: the final-normed patch tokens
      `(batch, N, hidden_dim)` (registers dropped), N = `num_tokens(T)`.
    - `model(x, token_indices=idx, token_valid=valid, return_tokens=True)`:
      only the tokens at positions `idx` (`(batch, K)` int) are encoded, the
      others are dropped before the first block (the JEPA context); tokens
      whose `valid` is False are padding (they keep batches rectangular
      when the samples keep different numbers of tokens) and no token
      attends to them. Returns `(batch, K, hidden_dim)`, in the order of
      `idx`.
    - `num_tokens(timesteps)`, `hidden_dim`, and a `get_config()` that fully
      describes the architecture (JEPA's target is a config clone).

    Called plainly (`model(x)`), it is a downstream backbone: `pooling="avg"`
    averages the patch tokens to `(batch, hidden_dim)`, `"register"` returns
    the first register token (the reference's `finetune.yaml` head input),
    `None` the patch tokens `(batch, N, hidden_dim)`.

    Args:
        patch_size: samples per patch (the reference: 25 at 500 Hz, i.e.
            50 ms; 5 at 100 Hz).
        hidden_dim: token width.
        num_layers: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width over `hidden_dim`.
        use_qkv_bias: whether queries/keys/values have a bias.
        use_bias: whether the other dense layers, the patch embedding and
            the LayerNorms have a bias.
        num_registers: register tokens.
        layer_norm_epsilon: LayerNorm epsilon.
        dropout: dropout in the blocks (attention projection and MLP).
        pooling: `"avg"`, `"register"` or `None` (see above).
        input_leads: number of leads (used to build without an input).
        **kwargs: base `keras.Model` arguments.

    Example:

    >>> import numpy as np
    >>> encoder = ECGTransformer(patch_size=10, hidden_dim=16, num_layers=1,
    ...                          num_heads=2)
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
        hidden_dim=192,
        num_layers=8,
        num_heads=4,
        mlp_ratio=4.0,
        use_qkv_bias=False,
        use_bias=False,
        num_registers=1,
        layer_norm_epsilon=1e-6,
        dropout=0.0,
        pooling="avg",
        input_leads=12,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in TRANSFORMER_POOLING_MODES:
            raise ValueError(
                f"ECGTransformer: unknown pooling {pooling!r}; expected one of "
                f"{TRANSFORMER_POOLING_MODES}."
            )
        if pooling == "register" and int(num_registers) < 1:
            raise ValueError(
                "ECGTransformer: pooling='register' needs num_registers >= 1."
            )
        if int(hidden_dim) % 2 or int(hidden_dim) % int(num_heads):
            raise ValueError(
                f"ECGTransformer: hidden_dim {hidden_dim} must be even (sine-"
                f"cosine positions) and a multiple of num_heads={num_heads}."
            )
        if int(num_layers) < 1 or int(num_registers) < 0:
            raise ValueError(
                f"ECGTransformer: num_layers must be >= 1 and num_registers >= 0, "
                f"got {num_layers} and {num_registers}."
            )
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.use_qkv_bias = bool(use_qkv_bias)
        self.use_bias = bool(use_bias)
        self.num_registers = int(num_registers)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout = float(dropout)
        self.pooling = pooling
        self.input_leads = int(input_leads)
        self.patch_embedding = PatchEmbedding(
            self.hidden_dim,
            self.patch_size,
            use_bias=self.use_bias,
            dtype=self.dtype_policy,
            name="patch_embedding",
        )
        residual_std = 0.02 / math.sqrt(2 * self.num_layers)
        self.blocks = [
            TransformerBlock(
                self.num_heads,
                mlp_ratio=self.mlp_ratio,
                use_qkv_bias=self.use_qkv_bias,
                use_bias=self.use_bias,
                layer_norm_epsilon=self.layer_norm_epsilon,
                dropout=self.dropout,
                output_kernel_initializer=keras.initializers.RandomNormal(
                    stddev=residual_std
                ),
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(self.num_layers)
        ]
        self.output_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            center=self.use_bias,
            dtype=self.dtype_policy,
            name="output_norm",
        )

    def build(self, input_shape=None):
        if input_shape is None:
            input_shape = (None, None, self.input_leads)
        input_shape = tuple(input_shape)
        self.patch_embedding.build(input_shape)
        token_shape = (input_shape[0], None, self.hidden_dim)
        for block in self.blocks:
            block.build(token_shape)
        self.output_norm.build(token_shape)
        self.registers = None
        if self.num_registers:
            self.registers = self.add_weight(
                shape=(1, self.num_registers, self.hidden_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
                name="registers",
            )
        self.built = True

    def num_tokens(self, timesteps):
        """Patch tokens of an input of `timesteps` samples.

        Raises:
            ValueError: `timesteps` is not a multiple of `patch_size`.
        """
        if int(timesteps) % self.patch_size:
            raise ValueError(
                f"ECGTransformer: {timesteps} time steps are not a multiple of "
                f"the patch size {self.patch_size}."
            )
        return int(timesteps) // self.patch_size

    def call(
        self,
        inputs,
        token_indices=None,
        token_valid=None,
        return_tokens=False,
        training=None,
    ):
        x = self.patch_embedding(inputs)
        num_patches = x.shape[1]
        if num_patches is None:
            num_patches = ops.shape(x)[1]
        x = x + ops.expand_dims(
            sincos_position_embedding(
                ops.arange(num_patches), self.hidden_dim, dtype=x.dtype
            ),
            0,
        )
        key_mask = None
        if (token_indices is not None or token_valid is not None) and not (
            return_tokens
        ):
            raise ValueError(
                "ECGTransformer: token_indices / token_valid select the tokens "
                "to encode; pass return_tokens=True (pooling them is not defined)."
            )
        if token_indices is not None:
            x = gather_tokens(x, token_indices)
        if token_valid is not None:
            key_mask = ops.cast(token_valid, "bool")
        if self.num_registers:
            batch = ops.shape(x)[0]
            registers = ops.cast(self.registers, x.dtype)
            registers = ops.broadcast_to(
                registers, (batch, self.num_registers, self.hidden_dim)
            )
            x = ops.concatenate([registers, x], axis=1)
            if key_mask is not None:
                key_mask = ops.concatenate(
                    [ops.ones((batch, self.num_registers), dtype="bool"), key_mask],
                    axis=1,
                )
        for block in self.blocks:
            x = block(x, key_mask=key_mask, training=training)
        x = self.output_norm(x)
        tokens = x[:, self.num_registers :]
        if return_tokens or self.pooling is None:
            return tokens
        if self.pooling == "register":
            return x[:, 0]
        return ops.mean(tokens, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "use_qkv_bias": self.use_qkv_bias,
                "use_bias": self.use_bias,
                "num_registers": self.num_registers,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "dropout": self.dropout,
                "pooling": self.pooling,
                "input_leads": self.input_leads,
            }
        )
        return config
