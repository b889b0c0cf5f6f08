"""A pre-norm transformer block (ViT)."""

import keras

from keras_ecg.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_ecg.utils import fresh_initializer


@keras.saving.register_keras_serializable(package="keras_ecg")
class TransformerBlock(keras.layers.Layer):
    """`x + Attention(LayerNorm(x))`, then `x + MLP(LayerNorm(x))`.

    The ViT block of kweimann/ECG-JEPA (`models/modules.py` `Block`, without
    LayerScale, which its configurations leave off): multi-head
    self-attention (`MultiHeadSelfAttention`, with an optional key mask) and
    an MLP `Dense(mlp_ratio * dim) -> GELU (exact, erf) -> Dense(dim)`, each
    after a LayerNorm and added to the residual stream.

    Args:
        num_heads: attention heads.
        mlp_ratio: MLP hidden width over the token width.
        use_qkv_bias: whether the query/key/value projection has a bias.
        use_bias: whether the other dense layers and the LayerNorms have a
            bias (the reference's `bias`).
        layer_norm_epsilon: LayerNorm epsilon.
        dropout: dropout after the attention projection and in the MLP.
        kernel_initializer: initializer of the query/key/value kernel and
            the first MLP layer.
        output_kernel_initializer: initializer of the two residual-branch
            outputs (attention projection, second MLP layer).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, tokens, dim)`.
        key_mask: optional boolean `(batch, tokens)` (see
            `MultiHeadSelfAttention`).
        training: whether dropout is active.

    Example:

    >>> import numpy as np
    >>> block = TransformerBlock(num_heads=2)
    >>> tuple(block(np.ones((3, 5, 8), "float32")).shape)
    (3, 5, 8)
    """

    def __init__(
        self,
        num_heads,
        mlp_ratio=4.0,
        use_qkv_bias=False,
        use_bias=True,
        layer_norm_epsilon=1e-6,
        dropout=0.0,
        kernel_initializer=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.use_qkv_bias = bool(use_qkv_bias)
        self.use_bias = bool(use_bias)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout = float(dropout)
        default = keras.initializers.RandomNormal(stddev=0.02)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or default)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or default
        )
        self.attention_norm = self._layer_norm("attention_norm")
        self.attention = MultiHeadSelfAttention(
            self.num_heads,
            use_qkv_bias=self.use_qkv_bias,
            use_bias=self.use_bias,
            dropout=self.dropout,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            output_kernel_initializer=fresh_initializer(self.output_kernel_initializer),
            dtype=self.dtype_policy,
            name="attention",
        )
        self.mlp_norm = self._layer_norm("mlp_norm")
        self.mlp_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def _layer_norm(self, name):
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon,
            center=self.use_bias,
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        dim = int(input_shape[-1])
        hidden = int(dim * self.mlp_ratio)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden = keras.layers.Dense(
            hidden,
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="mlp_hidden",
        )
        self.mlp_hidden.build(input_shape)
        self.mlp_output = keras.layers.Dense(
            dim,
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(self.output_kernel_initializer),
            dtype=self.dtype_policy,
            name="mlp_output",
        )
        self.mlp_output.build(input_shape[:-1] + (hidden,))
        self.built = True

    def call(self, inputs, key_mask=None, training=None):
        x = inputs + self.attention(
            self.attention_norm(inputs), key_mask=key_mask, training=training
        )
        hidden = keras.activations.gelu(
            self.mlp_hidden(self.mlp_norm(x)), approximate=False
        )
        hidden = self.mlp_dropout(hidden, training=training)
        return x + self.mlp_dropout(self.mlp_output(hidden), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_ratio": self.mlp_ratio,
                "use_qkv_bias": self.use_qkv_bias,
                "use_bias": self.use_bias,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "output_kernel_initializer": keras.initializers.serialize(
                    self.output_kernel_initializer
                ),
            }
        )
        return config
