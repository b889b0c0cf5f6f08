"""Multi-head self-attention over tokens, with an optional key mask."""

import keras
from keras import ops

from keras_ecg.utils import fresh_initializer


@keras.saving.register_keras_serializable(package="keras_ecg")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Self-attention of ViT (`softmax(q k^T / sqrt(d_head)) v`, then a projection).

    One dense layer computes queries, keys and values together (output
    columns `[q | k | v]`, each split into `num_heads` heads of
    `dim / num_heads`, as timm's and kweimann/ECG-JEPA's `Attention`); the
    attention itself is `keras.ops.dot_product_attention` (a fused kernel on
    GPUs). `key_mask` lets padded tokens take no part: a query attends only
    to keys whose mask is True, so the outputs of the real tokens equal
    those of the sequence without the padding. Every row of the mask must
    hold at least one True.

    Args:
        num_heads: attention heads; must divide the input width.
        use_qkv_bias: whether the query/key/value projection has a bias.
        use_bias: whether the output projection has a bias.
        dropout: dropout rate after the output projection.
        kernel_initializer: initializer of the query/key/value kernel.
        output_kernel_initializer: initializer of the output projection
            (ViT-style residual branches start smaller: see
            `keras_ecg.models.encoders.ECGTransformer`).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(batch, tokens, dim)`.
        key_mask: optional boolean `(batch, tokens)`; True = may be attended.
        training: whether dropout is active.

    Example:

    >>> import numpy as np
    >>> attention = MultiHeadSelfAttention(num_heads=2)
    >>> tuple(attention(np.ones((3, 5, 8), "float32")).shape)
    (3, 5, 8)
    """

    def __init__(
        self,
        num_heads,
        use_qkv_bias=False,
        use_bias=True,
        dropout=0.0,
        kernel_initializer=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        if self.num_heads < 1:
            raise ValueError(
                f"MultiHeadSelfAttention: num_heads must be positive, got {num_heads}."
            )
        self.use_qkv_bias = bool(use_qkv_bias)
        self.use_bias = bool(use_bias)
        self.dropout = float(dropout)
        default = keras.initializers.RandomNormal(stddev=0.02)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or default)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or default
        )
        self.supports_masking = False

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None or int(dim) % self.num_heads:
            raise ValueError(
                f"MultiHeadSelfAttention: the token width {dim} must be a "
                f"multiple of num_heads={self.num_heads}."
            )
        self.dim = int(dim)
        self.qkv = keras.layers.Dense(
            3 * self.dim,
            use_bias=self.use_qkv_bias,
            kernel_initializer=fresh_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv.build(tuple(input_shape))
        self.output_dense = keras.layers.Dense(
            self.dim,
            use_bias=self.use_bias,
            kernel_initializer=fresh_initializer(self.output_kernel_initializer),
            dtype=self.dtype_policy,
            name="output",
        )
        self.output_dense.build(tuple(input_shape))
        self.output_dropout = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy
        )
        self.built = True

    def call(self, inputs, key_mask=None, training=None):
        tokens = inputs.shape[1]
        if tokens is None:
            tokens = ops.shape(inputs)[1]
        head_dim = self.dim // self.num_heads
        qkv = ops.reshape(self.qkv(inputs), (-1, tokens, 3, self.num_heads, head_dim))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        mask = None
        if key_mask is not None:
            # (batch, 1 head, 1 query, keys): the same keys for every query.
            mask = ops.expand_dims(ops.expand_dims(ops.cast(key_mask, "bool"), 1), 1)
        x = ops.dot_product_attention(query, key, value, mask=mask)
        x = ops.reshape(x, (-1, tokens, self.dim))
        return self.output_dropout(self.output_dense(x), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "use_qkv_bias": self.use_qkv_bias,
                "use_bias": self.use_bias,
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
