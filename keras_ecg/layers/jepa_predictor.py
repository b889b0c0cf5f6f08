"""JEPA's narrow transformer predicting masked tokens from the context."""

import math

import keras
from keras import ops

from keras_ecg.layers.position_embedding import sincos_position_embedding
from keras_ecg.layers.transformer_block import TransformerBlock
from keras_ecg.utils import fresh_initializer


@keras.saving.register_keras_serializable(package="keras_ecg")
class JEPAPredictor(keras.layers.Layer):
    """Predicts the target encoder's tokens at masked positions.

    kweimann/ECG-JEPA's `Predictor` (`models/predictor.py`): the context
    tokens are projected to the predictor width and get the sine-cosine
    embedding of their positions; one learned mask token per target
    position, plus that position's embedding, is appended; `num_layers`
    `TransformerBlock`s and a LayerNorm run over the concatenation; the
    outputs at the mask tokens are projected back to the encoder width.
    Padded context or target slots (`valid` False, see
    `keras_ecg.models.jepa_masks`) are never attended to, so the real
    predictions equal the reference's unpadded ones.

    Args:
        hidden_dim: predictor width (the reference: half the encoder's).
        num_layers: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP width over `hidden_dim`.
        use_qkv_bias: whether queries/keys/values have a bias.
        use_bias: whether the other dense layers and LayerNorms have a bias.
        layer_norm_epsilon: LayerNorm epsilon.
        dropout: dropout in the blocks.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        context: `(batch, K, encoder_dim)` context tokens.
        context_indices: int `(batch, K)` their positions.
        target_indices: int `(batch, M)` the positions to predict.
        context_valid: optional boolean `(batch, K)`, False = padding.
        target_valid: optional boolean `(batch, M)`, False = padding.
        training: whether dropout is active.

    Returns:
        `(batch, M, encoder_dim)` predictions, in the order of
        `target_indices`.

    Example:

    >>> import numpy as np
    >>> predictor = JEPAPredictor(hidden_dim=8, num_layers=1, num_heads=2)
    >>> context = np.ones((2, 3, 16), "float32")
    >>> out = predictor(context, np.array([[0, 1, 2]] * 2),
    ...                 np.array([[3, 4, 5, 6]] * 2))
    >>> tuple(out.shape)
    (2, 4, 16)
    """

    def __init__(
        self,
        hidden_dim=96,
        num_layers=8,
        num_heads=4,
        mlp_ratio=4.0,
        use_qkv_bias=False,
        use_bias=False,
        layer_norm_epsilon=1e-6,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(hidden_dim) % 2 or int(hidden_dim) % int(num_heads):
            raise ValueError(
                f"JEPAPredictor: hidden_dim {hidden_dim} must be even and a "
                f"multiple of num_heads={num_heads}."
            )
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.use_qkv_bias = bool(use_qkv_bias)
        self.use_bias = bool(use_bias)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout = float(dropout)
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

    def build(self, context_shape):
        context_shape = tuple(context_shape)
        self.encoder_dim = int(context_shape[-1])
        normal = keras.initializers.RandomNormal(stddev=0.02)
        self.input_projection = keras.layers.Dense(
            self.hidden_dim,
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(normal),
            dtype=self.dtype_policy,
            name="input_projection",
        )
        self.input_projection.build(context_shape)
        token_shape = (context_shape[0], None, self.hidden_dim)
        for block in self.blocks:
            block.build(token_shape)
        self.output_norm.build(token_shape)
        self.output_projection = keras.layers.Dense(
            self.encoder_dim,
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(normal),
            dtype=self.dtype_policy,
            name="output_projection",
        )
        self.output_projection.build(token_shape)
        self.mask_token = self.add_weight(
            shape=(1, 1, self.hidden_dim),
            initializer=fresh_initializer(normal),
            name="mask_token",
        )
        self.built = True

    def call(
        self,
        context,
        context_indices,
        target_indices,
        context_valid=None,
        target_valid=None,
        training=None,
    ):
        x = self.input_projection(context)
        x = x + sincos_position_embedding(context_indices, self.hidden_dim, x.dtype)
        queries = ops.cast(self.mask_token, x.dtype) + sincos_position_embedding(
            target_indices, self.hidden_dim, x.dtype
        )
        num_targets = target_indices.shape[1]
        if num_targets is None:
            num_targets = ops.shape(target_indices)[1]
        x = ops.concatenate([x, queries], axis=1)
        key_mask = None
        if context_valid is not None or target_valid is not None:
            parts = []
            for valid, indices in (
                (context_valid, context_indices),
                (target_valid, target_indices),
            ):
                if valid is None:
                    valid = ops.ones(ops.shape(indices), dtype="bool")
                parts.append(ops.cast(valid, "bool"))
            key_mask = ops.concatenate(parts, axis=1)
        for block in self.blocks:
            x = block(x, key_mask=key_mask, training=training)
        x = self.output_norm(x)
        return self.output_projection(x[:, -num_targets:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "use_qkv_bias": self.use_qkv_bias,
                "use_bias": self.use_bias,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "dropout": self.dropout,
            }
        )
        return config
