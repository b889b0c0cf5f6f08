"""Downstream classifier: a (pre-trained) backbone plus a pooling/MLP head."""

import keras

from keras_ecg.layers.global_pooling import POOLING_MODES
from keras_ecg.layers.global_pooling import GlobalPooling1D


@keras.saving.register_keras_serializable(package="keras_ecg")
class ECGClassifier(keras.Model):
    """Backbone -> [pooling] -> fastai-style MLP head -> class logits.

    The backbone maps `(batch, timesteps, leads)` to a vector `(batch, D)`, used
    as is, or to a sequence `(batch, timesteps', D)`, pooled with `pooling`
    (the CPC downstream head concat-pools its LSTM outputs). Each head layer is
    fastai's `bn_drop_lin`: `[BatchNorm] -> Dropout -> Dense`, with ReLU after
    the hidden ones. The output is logits unless `activation` is given; for
    multi-label targets compile with `BinaryCrossentropy(from_logits=True)`.

    `freeze_backbone=True` is the linear-evaluation protocol: the backbone is
    set non-trainable, which in Keras 3 also runs its BatchNorm layers in
    inference mode, so neither its weights nor its moving statistics change.

    Args:
        backbone: a `keras.Model` / layer taking `(batch, timesteps, leads)`.
        num_classes: number of outputs.
        pooling: `"avg"`, `"max"`, `"last"`, `"concat"` (max, avg) or
            `"concat_last"` (max, avg, last); only used for sequence outputs.
        head_hidden_dims: widths of the hidden head layers; `()` gives a linear
            head.
        dropout: dropout rate before every head `Dense`.
        use_batch_norm: whether to batch-normalise the input of every head
            `Dense`.
        activation: activation of the output layer; `None` returns logits.
        freeze_backbone: whether to freeze the backbone (linear evaluation).
        output_initializer: initializer of the output layer's kernel; linear
            probes usually start from a near-zero head (e.g.
            `keras.initializers.TruncatedNormal(stddev=0.01)`, as MAE's), so
            that the few steps of a linear evaluation are not spent undoing a
            random initial ranking.
        **kwargs: base `keras.Model` arguments (`name`, `trainable`, ...).

    Example:

    >>> import numpy as np
    >>> from keras_ecg.models.encoders import XResNet1D
    >>> backbone = XResNet1D(block_depths=(1,), widths=(8,), expansion=1,
    ...                      stem_filters=(8,), pooling=None)
    >>> classifier = ECGClassifier(backbone, num_classes=5, pooling="concat",
    ...                            freeze_backbone=True)
    >>> classifier(np.zeros((2, 250, 12), "float32")).shape
    (2, 5)
    """

    def __init__(
        self,
        backbone,
        num_classes,
        pooling="concat",
        head_hidden_dims=(),
        dropout=0.0,
        use_batch_norm=False,
        activation=None,
        freeze_backbone=False,
        output_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(
                f"ECGClassifier: num_classes must be positive, got {num_classes}."
            )
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"ECGClassifier: unknown pooling {pooling!r}; expected one of "
                f"{POOLING_MODES}."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(
                f"ECGClassifier: dropout must be in [0, 1), got {dropout}."
            )
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.pooling = pooling
        self.head_hidden_dims = tuple(int(d) for d in head_hidden_dims)
        self.dropout = float(dropout)
        self.use_batch_norm = bool(use_batch_norm)
        self.activation = activation
        self.freeze_backbone = bool(freeze_backbone)
        self.output_initializer = keras.initializers.get(output_initializer)
        if self.freeze_backbone:
            _freeze(self.backbone)

        self.pool = GlobalPooling1D(pooling, name="pool")
        self.head_norms = []
        self.head_dropouts = []
        self.head_denses = []
        dims = self.head_hidden_dims + (self.num_classes,)
        for i, dim in enumerate(dims):
            last = i == len(dims) - 1
            suffix = "output" if last else f"hidden_{i}"
            if self.use_batch_norm:
                self.head_norms.append(
                    keras.layers.BatchNormalization(
                        momentum=0.9, epsilon=1e-5, name=f"head_bn_{suffix}"
                    )
                )
            self.head_dropouts.append(
                keras.layers.Dropout(self.dropout, name=f"head_dropout_{suffix}")
            )
            self.head_denses.append(
                keras.layers.Dense(
                    dim,
                    activation=activation if last else "relu",
                    kernel_initializer=self.output_initializer
                    if last
                    else "glorot_uniform",
                    name=f"head_{suffix}",
                )
            )

    def _features(self, inputs, training):
        x = self.backbone(inputs, training=training)
        if len(x.shape) == 3:
            x = self.pool(x)
        elif len(x.shape) != 2:
            raise ValueError(
                "ECGClassifier: the backbone must return (batch, dim) or "
                f"(batch, timesteps, dim), got shape {tuple(x.shape)}."
            )
        return x

    def build(self, input_shape):
        if not self.backbone.built:
            self.backbone.build(input_shape)
        if self.freeze_backbone:
            # Variables created while building an unbuilt backbone start
            # trainable: freeze again once they exist.
            _freeze(self.backbone)
        # A symbolic call works for functional and subclassed backbones alike.
        spec = self.backbone.compute_output_spec(
            keras.KerasTensor(tuple(input_shape), dtype=self.compute_dtype)
        )
        shape = tuple(spec.shape)
        if len(shape) == 3:
            shape = self.pool.compute_output_shape(shape)
        if shape[-1] is None:
            raise ValueError(
                "ECGClassifier: the backbone's feature dimension must be known, "
                f"got output shape {shape}."
            )
        for i, dense in enumerate(self.head_denses):
            if self.use_batch_norm:
                self.head_norms[i].build(shape)
            dense.build(shape)
            shape = tuple(shape[:-1]) + (dense.units,)
        self.built = True

    def call(self, inputs, training=None):
        x = self._features(inputs, training)
        for i, dense in enumerate(self.head_denses):
            if self.use_batch_norm:
                x = self.head_norms[i](x, training=training)
            x = self.head_dropouts[i](x, training=training)
            x = dense(x)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "pooling": self.pooling,
            "head_hidden_dims": list(self.head_hidden_dims),
            "dropout": self.dropout,
            "use_batch_norm": self.use_batch_norm,
            "activation": self.activation
            if self.activation is None or isinstance(self.activation, str)
            else keras.activations.serialize(self.activation),
            "freeze_backbone": self.freeze_backbone,
            "output_initializer": keras.initializers.serialize(self.output_initializer),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        # `output_initializer` stays serialized: __init__'s initializers.get
        # takes the dict.
        return cls(**config)


def _freeze(layer):
    """Sets `trainable=False` on `layer` and, explicitly, on every nested layer.

    A functional model rebuilt from its config does not always propagate its
    own `trainable` flag to its layers, so the flag is set at every level.
    """
    layer.trainable = False
    for sublayer in getattr(layer, "layers", ()):
        _freeze(sublayer)
