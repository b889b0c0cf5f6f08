"""SimCLR (Chen et al. 2020) for ECG, as a backend-agnostic `keras.Model`."""

import keras
from keras import ops

from keras_ecg.distribute import gather_across_replicas
from keras_ecg.distribute import scale_loss_for_replicas
from keras_ecg.losses.nt_xent import multi_view_nt_xent_loss
from keras_ecg.models.self_supervised_model import SelfSupervisedModel


def _is_shape(value):
    return isinstance(value, (list, tuple)) and all(
        d is None or isinstance(d, int) for d in value
    )


def _view_shape(input_shape, augmenter=None):
    """The shape of one view, from a single shape or a tuple of view shapes."""
    if _is_shape(input_shape):
        shape = tuple(input_shape)
        if augmenter is not None:
            # Augmenters may crop: build the encoder for what they output.
            shape = tuple(augmenter.compute_output_shape(shape))
        return shape
    if isinstance(input_shape, (list, tuple)) and input_shape:
        return tuple(input_shape[0])
    raise ValueError(f"Cannot infer a view shape from input shape {input_shape}.")


def _build_layer(layer, input_shape):
    if not layer.built:
        layer.build(input_shape)
    return layer.compute_output_shape(input_shape)


def _split_views(inputs, augmenter, num_views):
    """Returns `(views, multi_view)` for a tuple of views or one batch tensor.

    A single tensor becomes `num_views` augmented views when an augmenter is
    given (also outside training: validation losses need views too), else it
    stays one view (inference, e.g. `predict`).
    """
    if isinstance(inputs, dict):
        raise ValueError(
            "Expected a tuple of views or one (batch, timesteps, leads) tensor, "
            f"got a dict with keys {sorted(inputs)}."
        )
    if isinstance(inputs, (list, tuple)):
        return list(inputs), True
    if augmenter is not None:
        return [augmenter(inputs, training=True) for _ in range(num_views)], True
    return [inputs], False


def _regularization_loss(model):
    losses = [ops.sum(ops.cast(loss, "float32")) for loss in model.losses]
    return ops.sum(ops.stack(losses)) if losses else None


@keras.saving.register_keras_serializable(package="keras_ecg")
class SimCLR(SelfSupervisedModel):
    """SimCLR: contrast two augmented views of each ECG with NT-Xent.

    Each view goes separately through the shared `encoder` and
    `projection_head` (as in the reference implementation, so BatchNorm
    statistics are per view); the NT-Xent loss
    (`keras_ecg.losses.nt_xent`) treats each projection as an anchor whose
    positive is the other view of the same record, with the other 2N - 2
    projections of the batch as negatives. More than two views average the
    loss over all pairs of views. Trains with plain `compile()` + `fit()` on
    every backend; logs `loss` and `contrastive_accuracy` (fraction of anchors
    whose positive is their most similar projection).

    Inputs: a tuple of views, each `(batch, timesteps, leads)` (a `tf.data`
    dataset yields `((view_1, view_2),)`), or one batch tensor when an
    `augmenter` makes the views. Calling the model returns a dict with lists
    `"embeddings"` (encoder outputs) and `"projections"`, one entry per view;
    on a single tensor without an augmenter, the two tensors themselves.

    Args:
        encoder: the network to pretrain, `(batch, timesteps, leads)` to
            `(batch, features)`; exposed as `backbone`.
        projection_head: layer mapping features to the contrastive space;
            defaults to `ProjectionHead(hidden_dims=(512,), output_dim=16,
            use_batch_norm=False)`, the reference's projector (512 -> 512 ->
            ReLU -> 16, as `build_method("simclr", size="paper")` builds; it
            had `output_dim=128` before). `ProjectionHead(hidden_dims=(512,),
            output_dim=128)` is the BatchNorm head of the SimCLR paper.
        temperature: NT-Xent temperature (0.5 in the paper for ECG).
        augmenter: optional Keras layer; when given and the input is a single
            tensor, `num_views` views are made with
            `augmenter(x, training=True)` on device.
        num_views: number of augmented views made by `augmenter` (>= 2).
        **kwargs: base `keras.Model` arguments (`name`, `dtype`, ...).

    Example:

    >>> import keras, numpy as np
    >>> encoder = keras.Sequential([
    ...     keras.layers.Conv1D(8, 5, activation="relu"),
    ...     keras.layers.GlobalAveragePooling1D()])
    >>> model = SimCLR(encoder, temperature=0.5)
    >>> model.compile(optimizer="adam")
    >>> views = np.random.normal(size=(2, 16, 250, 12)).astype("float32")
    >>> _ = model.fit((views[0], views[1]), batch_size=8, verbose=0)
    >>> tuple(model.backbone(views[0]).shape)
    (16, 8)
    """

    def __init__(
        self,
        encoder,
        projection_head=None,
        temperature=0.5,
        augmenter=None,
        num_views=2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if float(temperature) <= 0:
            raise ValueError(f"SimCLR: temperature must be > 0, got {temperature}.")
        if int(num_views) < 2:
            raise ValueError(f"SimCLR: num_views must be >= 2, got {num_views}.")
        if projection_head is None:
            from keras_ecg.layers.projection_head import ProjectionHead

            projection_head = ProjectionHead(
                hidden_dims=(512,),
                output_dim=16,
                use_batch_norm=False,
                name="projection_head",
                dtype=self.dtype_policy,
            )
        self.encoder = encoder
        self.projection_head = projection_head
        self.augmenter = augmenter
        self.temperature = float(temperature)
        self.num_views = int(num_views)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="contrastive_accuracy")

    @property
    def backbone(self):
        """The encoder, `(batch, timesteps, leads) -> (batch, features)`."""
        return self.encoder

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def build(self, input_shape):
        view_shape = _view_shape(input_shape, self.augmenter)
        if self.augmenter is not None and not self.augmenter.built:
            if _is_shape(input_shape):
                self.augmenter.build(tuple(input_shape))
        feature_shape = _build_layer(self.encoder, view_shape)
        _build_layer(self.projection_head, feature_shape)
        self.built = True

    def call(self, inputs, training=None):
        views, multi_view = _split_views(inputs, self.augmenter, self.num_views)
        embeddings = [self.encoder(v, training=training) for v in views]
        projections = [self.projection_head(h, training=training) for h in embeddings]
        if not multi_view:
            return {"embeddings": embeddings[0], "projections": projections[0]}
        return {"embeddings": embeddings, "projections": projections}

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if y_pred is None:
            y_pred = self(x, training=training)
        projections = y_pred["projections"]
        if not isinstance(projections, (list, tuple)) or len(projections) < 2:
            raise ValueError(
                "SimCLR needs at least two views per sample: feed a tuple of views "
                "(a dataset yielding ((view_1, view_2),)) or construct the model "
                "with an `augmenter`."
            )
        # Under TF MirroredStrategy each replica contrasts its local anchors
        # with the projections of the whole global batch (identity otherwise).
        keys, offset = [], 0
        for z in projections:
            gathered, offset = gather_across_replicas(z, return_offset=True)
            keys.append(gathered)
        loss, accuracy = multi_view_nt_xent_loss(
            projections,
            temperature=self.temperature,
            return_accuracy=True,
            keys=keys,
            offset=offset,
        )
        self.accuracy_tracker.update_state(accuracy)
        regularization = _regularization_loss(self)
        if regularization is not None:
            loss = loss + regularization
        self.loss_tracker.update_state(loss)
        return scale_loss_for_replicas(loss)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "projection_head": keras.saving.serialize_keras_object(
                    self.projection_head
                ),
                "temperature": self.temperature,
                "augmenter": keras.saving.serialize_keras_object(self.augmenter)
                if self.augmenter is not None
                else None,
                "num_views": self.num_views,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "projection_head", "augmenter"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
